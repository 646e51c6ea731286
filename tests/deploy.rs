//! The Kubernetes example's manifests (examples/kubernetes) against each other and the
//! image: nothing here runs a cluster, so this is what keeps the files consistent when
//! one of them changes.

use std::path::Path;

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kubernetes")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value given to the environment variable `name` in a manifest.
fn env_value(yaml: &str, name: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != format!("- name: {name}"));
    lines.next().unwrap_or_else(|| panic!("no env {name}"));
    let value = lines.next().unwrap_or_default().trim();
    let value = value
        .strip_prefix("value:")
        .unwrap_or_else(|| panic!("{name}: {value}"));
    value.trim().trim_matches('"').to_owned()
}

/// The value of the first `key:` line in `text`.
fn field(text: &str, key: &str) -> String {
    (text.lines())
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key}"))
        .trim()
        .to_owned()
}

#[test]
fn the_statefulset_keeps_the_datadir_on_a_volume_and_agrees_with_the_image() {
    let set = read("statefulset.yaml");
    let image = read("Dockerfile");
    assert!(set.contains("kind: StatefulSet") && set.contains("volumeClaimTemplates:"));
    // The volume is mounted where the worker keeps its stores.
    let datadir = env_value(&set, "FAUST_DATADIR");
    assert_eq!(field(&set, "mountPath"), datadir);
    assert!(
        image.contains(&format!("FAUST_DATADIR={datadir}")),
        "{image}"
    );
    // The probes ask the worker's web port for /health.
    let port = env_value(&set, "FAUST_WEB_PORT");
    assert_eq!(field(&set, "containerPort"), port);
    assert_eq!(field(&set, "path"), "/health");
    assert!(image.contains(&format!("EXPOSE {port}")), "{image}");
    // Static membership and redirects use the pod's own name.
    assert_eq!(env_value(&set, "FAUST_INSTANCE_ID"), "$(POD_NAME)");
    assert!(env_value(&set, "FAUST_WEB_HOST").starts_with("$(POD_NAME)."));
    // The warm shutdown fits in the grace period: its steps (agents, window callbacks,
    // the last commit, the producer's flush) wait at most 30 s each.
    let grace: u64 = field(&set, "terminationGracePeriodSeconds")
        .parse()
        .unwrap();
    assert!(grace >= 4 * 30, "{grace}");
    // The image builds the example this folder holds.
    assert!(image.contains("--example kubernetes"));
}

#[test]
fn the_producer_writes_the_topic_the_workers_read() {
    let producer = read("producer.yaml");
    let app = read("main.rs");
    assert!(producer.contains("--topic test"), "{producer}");
    assert!(app.contains("#[faust::agent(topic = \"test\""), "{app}");
}
