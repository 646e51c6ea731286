//! The command line of the test app, as documented in the README.

mod common;

use std::process::{Command, Output};

use common::{broker, create_topic, read_all, unique};

fn app(args: &[&str]) -> Output {
    // A worker's default datadir (`{id}-data`) lands in the scratch folder, not the clone.
    let scratch = common::scratch();
    std::fs::create_dir_all(&scratch).unwrap();
    Command::new(env!("CARGO_BIN_EXE_faust-test-app"))
        .args(args)
        .current_dir(scratch)
        .env_remove("FAUST_BROKER")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_every_command_and_setting() {
    let help = app(&["--help"]);
    assert!(help.status.success());
    for command in ["worker", "send", "agents", "tables", "echo"] {
        assert!(
            stdout(&help).contains(command),
            "--help lacks {command}:\n{}",
            stdout(&help)
        );
    }
    let worker = app(&["worker", "--help"]);
    assert!(worker.status.success());
    for flag in [
        "--broker",
        "FAUST_BROKER",
        "--partitions",
        "--commit-interval",
        "--loglevel",
        "SIGTERM",
    ] {
        assert!(
            stdout(&worker).contains(flag),
            "worker --help lacks {flag}:\n{}",
            stdout(&worker)
        );
    }
    let version = app(&["--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("faust-test-app {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn agents_lists_topics_sinks_and_concurrency() {
    let output = app(&["agents", "--id", "listing"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let double = text.lines().find(|l| l.starts_with("double")).unwrap();
    assert!(
        double.contains("listing-double") && double.contains("faust-test-doubled"),
        "{double}"
    );
    let track = text.lines().find(|l| l.starts_with("track")).unwrap();
    assert!(
        track.contains("listing-track") && track.contains(" 2 "),
        "agent topic defaults to {{id}}-{{name}}: {track}"
    );
}

#[test]
fn tables_lists_declared_tables_with_their_changelogs() {
    let output = app(&["tables", "--id", "listing", "--partitions", "4"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let counts = text
        .lines()
        .find(|l| l.starts_with("counts"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        counts.contains("listing-counts-changelog")
            && counts.contains(" 4 ")
            && counts.contains("String -> u64"),
        "{counts}"
    );
}

#[test]
fn a_missing_topic_stops_the_worker_when_topic_creation_is_off() {
    needs_broker!();
    let url = format!("kafka://{}", broker());
    let id = unique("strict");
    let output = app(&[
        "worker",
        "--create-topics",
        "none",
        "--id",
        &id,
        "--broker",
        &url,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("these topics do not exist"), "{message}");
    // Internal topics too: an agent's own, a changelog.
    assert!(
        message.contains(&format!("{id}-track (read by agent 'track')"))
            && message.contains(&format!(
                "{id}-counts-changelog (the changelog of table 'counts')"
            )),
        "{message}"
    );
    assert!(message.contains("it creates none now"), "{message}");
}

#[test]
fn send_writes_to_a_topic_and_to_an_agent_by_name() {
    needs_broker!();
    let id = unique("send");
    let topic = format!("{id}-track");
    create_topic(&topic, 2);
    let url = format!("kafka://{}", broker());
    let to_topic = app(&[
        "send",
        &topic,
        r#"{"n": 1}"#,
        "--key",
        "1",
        "--partition",
        "1",
        "--broker",
        &url,
    ]);
    assert!(to_topic.status.success(), "{}", stderr(&to_topic));
    assert!(
        stdout(&to_topic).contains("partition 1 offset 0"),
        "{}",
        stdout(&to_topic)
    );
    let to_agent = app(&[
        "send",
        "track",
        r#"{"n": 2}"#,
        "--repeat",
        "3",
        "--id",
        &id,
        "--broker",
        &url,
    ]);
    assert!(to_agent.status.success(), "{}", stderr(&to_agent));
    assert_eq!(stdout(&to_agent).lines().count(), 3);

    let typed = app(&[
        "send",
        &topic,
        r#"{"n": 3}"#,
        "--key",
        "42",
        "--key-codec",
        "json",
        "--value-codec",
        "json",
        "-H",
        "trace-id=7f3a",
        "--timestamp",
        "1700000000000",
        "--partition",
        "0",
        "--broker",
        &url,
    ]);
    assert!(typed.status.success(), "{}", stderr(&typed));
    // Checked before anything is sent: the value is not JSON.
    let refused = app(&[
        "send",
        &topic,
        "not json",
        "--value-codec",
        "json",
        "--broker",
        &url,
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("the value is not JSON"),
        "{}",
        stderr(&refused)
    );

    let records = read_all(&topic);
    assert_eq!(records.len(), 5);
    let typed = records
        .iter()
        .find(|r| r.json() == serde_json::json!({"n": 3}))
        .unwrap();
    assert_eq!(typed.key.as_deref(), Some(&b"42"[..]));
    assert_eq!(typed.timestamp, Some(1_700_000_000_000));
    assert_eq!(
        typed.headers.get("trace-id").map(String::as_str),
        Some("7f3a")
    );
    let first = records
        .iter()
        .find(|r| r.partition == 1 && r.offset == 0)
        .unwrap();
    assert_eq!(first.key.as_deref(), Some(&b"1"[..]));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.json() == serde_json::json!({"n": 2}))
            .count(),
        3
    );
}

#[test]
fn mistakes_get_one_clear_error() {
    let no_port = app(&["worker", "--broker", "kafka://localhost"]);
    assert_eq!(no_port.status.code(), Some(2));
    assert!(
        stderr(&no_port).contains("has no port"),
        "{}",
        stderr(&no_port)
    );

    let partitions = app(&["worker", "--partitions", "0"]);
    assert!(
        stderr(&partitions).contains("at least 1"),
        "{}",
        stderr(&partitions)
    );

    let unreachable = app(&[
        "worker",
        "--broker",
        "kafka://127.0.0.1:1",
        "--id",
        "nobody",
    ]);
    assert_eq!(unreachable.status.code(), Some(1));
    let message = stderr(&unreachable);
    assert!(
        message.contains("could not reach the broker at 127.0.0.1:1"),
        "{message}"
    );

    let port = app(&["worker", "--web-port", "70000"]);
    assert_eq!(port.status.code(), Some(2));
    assert!(stderr(&port).contains("70000"), "{}", stderr(&port));

    let bind = app(&["worker", "--web-bind", "everywhere"]);
    assert!(
        stderr(&bind).contains("'everywhere' is not an IP address"),
        "{}",
        stderr(&bind)
    );

    // A datadir that cannot be one is refused at once, before any broker is tried.
    let datadir = app(&[
        "worker",
        "--broker",
        "kafka://127.0.0.1:1",
        "--datadir",
        "/dev/null/state",
    ]);
    assert_eq!(datadir.status.code(), Some(1));
    let message = stderr(&datadir);
    assert!(
        message.contains("creating /dev/null/state") && message.contains("writable directory"),
        "{message}"
    );
    assert!(!message.contains("broker"), "{message}");

    let no_broker = app(&["send", "somewhere", "x"]);
    assert!(
        stderr(&no_broker).contains("send needs a broker"),
        "{}",
        stderr(&no_broker)
    );
}

#[test]
fn user_commands_get_their_arguments() {
    let output = app(&["echo", "a", "--b", "c"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "echo: a --b c");
}

#[test]
fn reset_deletes_local_table_state_only_when_confirmed() {
    let datadir = common::scratch().join(unique("reset"));
    let tables = datadir.join("resetting").join("tables").join("counts-0");
    std::fs::create_dir_all(&tables).unwrap();
    let dir = datadir.to_str().unwrap();

    let refused = app(&["reset", "--id", "resetting", "--datadir", dir]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("confirm with --yes"),
        "{}",
        stderr(&refused)
    );
    assert!(tables.exists(), "nothing deleted without confirmation");

    let confirmed = app(&["reset", "--yes", "--id", "resetting", "--datadir", dir]);
    assert!(confirmed.status.success(), "{}", stderr(&confirmed));
    assert!(!datadir.join("resetting").join("tables").exists());
}
