//! Workers of the test app against the real broker (started by `scripts/broker.sh`).

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use common::{
    all_committed, create_topic, items, partitions, processed, produce_json, read_all, stats,
    track_topics, unique, wait_until, Worker,
};
use serde_json::json;

const READY: Duration = Duration::from_secs(60);
const DONE: Duration = Duration::from_secs(90);

#[test]
fn an_agent_forwards_decoded_records_to_its_sink() {
    needs_broker!();
    let app = unique("sink");
    let orders_topic = format!("{app}-double");
    create_topic(&orders_topic, 4);
    create_topic("faust-test-doubled", 4);
    let mut worker = Worker::start(&app, "w", &[]);
    worker.expect_log("worker ready", READY);

    let nonce = unique("order");
    let orders: Vec<_> = (0..50)
        .map(|i| {
            (
                json!(format!("{nonce}-{i}")),
                json!({ "id": format!("{nonce}-{i}"), "amount": i }),
            )
        })
        .collect();
    produce_json(&orders_topic, &orders);

    let mut doubled = Vec::new();
    let all_there = wait_until(DONE, || {
        doubled = read_all("faust-test-doubled")
            .into_iter()
            .filter(|r| {
                r.json()["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(&nonce))
            })
            .collect();
        doubled.len() >= 50
    });
    assert!(
        all_there,
        "{} of 50 doubled orders arrived:\n{}",
        doubled.len(),
        worker.log()
    );
    assert_eq!(doubled.len(), 50, "each order forwarded once");
    for record in &doubled {
        let value = record.json();
        let i: i64 = value["id"]
            .as_str()
            .unwrap()
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(value["amount"], json!(i * 2));
        assert_eq!(
            record.key,
            Some(common::key_bytes(&value["id"])),
            "the sink keeps the event's key"
        );
    }
    worker.stop();
}

#[test]
fn two_workers_split_a_topic_and_one_takes_over_when_the_other_stops() {
    needs_broker!();
    let app = unique("split");
    let (input, out) = track_topics(&app);
    let mut a = Worker::start(&app, "a", &[]);
    a.expect_log("worker ready", READY);
    let mut b = Worker::start(&app, "b", &[]);
    b.expect_log("partitions assigned", READY);

    produce_json(&input, &items(0..2000));
    let mut seen = BTreeMap::new();
    let done = wait_until(DONE, || {
        seen = processed(&out);
        seen.len() == 2000
    });
    assert!(
        done,
        "{} of 2000 processed\nA:\n{}\nB:\n{}",
        seen.len(),
        a.log(),
        b.log()
    );
    let workers: HashSet<&String> = seen.values().flatten().collect();
    assert_eq!(workers.len(), 2, "both workers took a share: {workers:?}");

    b.stop();
    produce_json(&input, &items(2000..4000));
    let done = wait_until(DONE, || {
        seen = processed(&out);
        seen.len() == 4000
    });
    assert!(
        done,
        "{} of 4000 processed after B left\nA:\n{}",
        seen.len(),
        a.log()
    );
    for n in 2000..4000 {
        assert_eq!(seen[&n], ["a"], "item {n} was processed by A alone, once");
    }
    a.stop();
}

#[test]
fn a_warm_shutdown_under_load_commits_exactly_what_was_processed() {
    needs_broker!();
    let app = unique("warm");
    let (input, out) = track_topics(&app);
    produce_json(&input, &items(0..3000));

    let slow = [("TEST_DELAY_MS", "2"), ("FAUST_LOGLEVEL", "debug")];
    let mut first = Worker::start(&app, "first", &slow);
    first.expect_log("worker ready", READY);
    let started = wait_until(DONE, || processed(&out).len() >= 300);
    assert!(
        started,
        "the first worker processed too little:\n{}",
        first.log()
    );
    first.stop();
    // 750 items per partition against a buffer of 64: the consumer must pause and resume.
    assert!(
        first
            .log()
            .contains("pausing a partition with a full buffer"),
        "{}",
        first.log()
    );
    assert!(
        first.log().contains("resuming drained partitions"),
        "{}",
        first.log()
    );
    let after_first = processed(&out).len();
    assert!(
        after_first < 3000,
        "the stop should land mid-stream; raise the load"
    );

    let mut second = Worker::start(&app, "second", &[]);
    let mut seen = BTreeMap::new();
    let done = wait_until(DONE, || {
        seen = processed(&out);
        seen.len() == 3000
    });
    assert!(done, "{} of 3000 processed\n{}", seen.len(), second.log());
    second.stop();

    let seen = processed(&out);
    let twice: Vec<_> = seen.iter().filter(|(_, w)| w.len() > 1).collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    assert_eq!(seen.len(), 3000, "none skipped");
}

#[test]
fn a_replication_factor_above_the_broker_count_is_clamped_with_a_warning() {
    needs_broker!();
    let app = unique("replicas");
    let mut worker = Worker::start(&app, "w", &[("FAUST_TOPIC_REPLICATION_FACTOR", "3")]);
    worker.expect_log("worker ready", READY);
    worker.stop();
    let log = worker.log();
    assert!(
        log.contains("more than the cluster has brokers: creating topics with 1 replicas"),
        "{log}"
    );
    // The test broker is a single node: the topics the worker created have one replica.
    assert_eq!(
        common::replicas(&format!("{app}-sums-changelog")),
        vec![1; 4]
    );
}

#[test]
fn a_declared_topic_is_created_as_declared_and_an_existing_one_that_differs_is_reported() {
    needs_broker!();
    let app = unique("declared");
    let declared = format!("{app}-declared");
    let mut worker = Worker::start(&app, "w", &[]);
    worker.expect_log("worker ready", READY);
    worker.stop();
    // Declared: 3 partitions, 3 replicas (clamped to the one broker), an hour's
    // retention, a larger message size.
    assert_eq!(common::replicas(&declared), vec![1; 3]);
    let setting = |name| common::topic_setting(&declared, name);
    assert_eq!(setting("retention.ms").as_deref(), Some("3600000"));
    assert_eq!(setting("max.message.bytes").as_deref(), Some("2000000"));
    let log = worker.log();
    assert!(
        log.contains("more than the cluster has brokers: creating topics with 1 replicas"),
        "{log}"
    );

    // The same declaration, meeting a topic made otherwise: used, and reported.
    let app = unique("declared-differs");
    let declared = format!("{app}-declared");
    common::create_topic_with(&declared, 2, &[("retention.ms", "60000")]);
    let mut worker = Worker::start(&app, "w", &[]);
    worker.expect_log("worker ready", READY);
    worker.stop();
    let log = worker.log();
    let warnings: Vec<&str> = (log.lines())
        .filter(|l| l.contains(" WARN ") && l.contains(&declared))
        .collect();
    assert_eq!(warnings.len(), 3, "{log}");
    assert!(warnings
        .iter()
        .any(|l| l.contains("has 2 partitions where the app declares 3")));
    assert!(warnings
        .iter()
        .any(|l| l.contains("retention.ms=60000 where the app declares retention.ms=3600000")));
    assert!(warnings.iter().any(|l| l.contains("max.message.bytes=")));
    assert_eq!(common::replicas(&declared).len(), 2, "used as it is");
}

#[test]
fn by_default_a_missing_source_topic_stops_the_worker_with_its_name_and_nothing_is_created() {
    needs_broker!();
    let app = unique("sources");
    let posts = format!("{app}-posts");
    create_topic(&posts, 4);
    let mut worker = Worker::start(&app, "w", &[("FAUST_CREATE_TOPICS", "internal")]);
    let status = worker.wait_exit(DONE);
    assert_eq!(status.code(), Some(1), "{}", worker.log());
    let log = worker.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("these topics do not exist"), "{log}");
    // Each missing source names its reader; neither an existing source nor an internal
    // topic (an agent's own, which would be created) is named.
    let missing = format!("{app}-from-python (read by agent 'answers')");
    assert!(last.contains(&missing), "{last}");
    assert!(last.contains("--create-topics all"), "{last}");
    assert!(!last.contains(&format!("{posts} ")), "{last}");
    assert!(!last.contains(&format!("{app}-count ")), "{last}");
    // Refused before anything was created, internal topics included.
    assert!(!common::topic_exists(&format!("{app}-count")));
    assert!(!common::topic_exists(&format!("{app}-declared")));
}

#[test]
fn a_failing_agent_is_logged_with_its_event_and_restarted() {
    needs_broker!();
    let app = unique("failing");
    let (input, out) = track_topics(&app);
    let mut records = items(0..10);
    records.push((json!(100), json!({ "n": 100, "fail": true })));
    records.push((json!(101), json!({ "n": 101, "panic": true })));
    records.extend(items(10..20));
    produce_json(&input, &records);

    let mut worker = Worker::start(&app, "w", &[]);
    let done = wait_until(DONE, || processed(&out).len() == 20);
    assert!(
        done,
        "processing stalled after the failures:\n{}",
        worker.log()
    );
    // The failing events were acknowledged: every partition's offsets moved past them.
    let committed_all = || {
        let parts = partitions(&stats(&worker), &input);
        parts.len() == 4 && all_committed(&parts, 22)
    };
    assert!(wait_until(DONE, committed_all), "{}", stats(&worker));
    worker.stop();
    let log = worker.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("agent failed at"))
        .collect();
    assert_eq!(failures.len(), 2, "{log}");
    assert!(
        failures
            .iter()
            .any(|l| l.contains("item 100 asked to fail")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|l| l.contains("panicked: item 101 asked to panic")),
        "{failures:?}"
    );
    assert!(
        failures.iter().all(|l| l.contains(&format!("{input}["))),
        "the event's position: {failures:?}"
    );
    assert!(
        !processed(&out).contains_key(&100),
        "the failing event is not reported as processed"
    );
}

#[test]
fn an_agent_that_keeps_failing_stops_the_worker_with_a_clear_error() {
    needs_broker!();
    let app = unique("crashloop");
    let (input, _) = track_topics(&app);
    let failing: Vec<_> = (0..30)
        .map(|n| (json!(n), json!({ "n": n, "fail": true })))
        .collect();
    produce_json(&input, &failing);

    let mut worker = Worker::start(&app, "w", &[]);
    let status = worker.wait_exit(DONE);
    assert_eq!(status.code(), Some(1), "{}", worker.log());
    let log = worker.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: agent 'track' failed 11 times within 10s"),
        "one clear last line: {last}\n{log}"
    );
}

#[test]
fn the_hello_world_example_prints_the_greetings_its_timer_sends() {
    let mut worker = embedded_example("hello_world", "hello-world");
    let all_printed = wait_until(DONE, || {
        let log = worker.log();
        let printed: std::collections::HashSet<&str> = log.lines().collect();
        (0..100).all(|i| printed.contains(format!("hello {i}").as_str()))
    });
    assert!(all_printed, "{}", worker.log());
    worker.signal("INT");
    let status = worker.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}:\n{}", worker.log());
}

#[test]
fn the_word_count_example_runs_on_the_embedded_broker() {
    let mut worker = embedded_example("word_count", "word-count");
    worker.expect_log("embedded in-process broker", READY);
    // "the" occurs five times in the example's three sentences.
    worker.expect_log("the: 5", DONE);
    worker.signal("INT");
    let status = worker.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}:\n{}", worker.log());
    assert!(worker.log().contains("worker stopped"));
}

/// `worker` of the example `name` on its embedded broker, with a fresh datadir.
fn embedded_example(example: &str, name: &str) -> Worker {
    let datadir = common::scratch().join(unique(&format!("{name}-data")));
    let env = HashMap::from([
        ("FAUST_DATADIR", datadir.to_str().unwrap()),
        ("FAUST_LOGLEVEL", "info"),
    ]);
    Worker::spawn(common::example(example), &["worker"], &env, name)
}

/// The environment of an example's worker of app `app` on the test broker, with a
/// fresh datadir named after `name`.
fn example_env(app: &str, name: &str) -> HashMap<&'static str, String> {
    let datadir = common::scratch().join(unique(name));
    HashMap::from([
        ("FAUST_BROKER", common::broker()),
        ("FAUST_ID", app.to_owned()),
        ("FAUST_DATADIR", datadir.to_str().unwrap().to_owned()),
    ])
}

/// `env` as [`Worker::spawn`] takes it.
fn borrowed<'a>(env: &'a HashMap<&'static str, String>) -> HashMap<&'static str, &'a str> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The last changelog record of each of `keys` in `changelog` (`None`: a tombstone or
/// no record), as JSON text.
fn last_records(changelog: &str, keys: &[String]) -> Vec<Option<String>> {
    let records = read_all(changelog);
    let last = common::last_per_key(&records);
    keys.iter()
        .map(|key| {
            let record = last.get(&serde_json::to_vec(key).unwrap())?;
            let value = record.value.as_deref()?;
            Some(String::from_utf8_lossy(value).into_owned())
        })
        .collect()
}

#[test]
fn the_tableofset_example_keeps_its_sets_across_two_workers_and_a_takeover() {
    needs_broker!();
    let example = common::example("tableofset");
    let app = unique("tableofset");
    // The example's topics are fixed names: this run's places are its own.
    let nonce = unique("place");
    let places: Vec<String> = (0..8).map(|i| format!("{nonce}-{i}")).collect();
    let (joining, leaving) = ("people_joining2", "people_leaving2");
    create_topic(joining, 4);
    create_topic(leaving, 4);
    let broker = common::broker();
    let (env_a, env_b) = (
        example_env(&app, "tableofset-a"),
        example_env(&app, "tableofset-b"),
    );
    let mut a = Worker::spawn(example.clone(), &["worker"], &borrowed(&env_a), "a");
    let mut b = Worker::spawn(example, &["worker"], &borrowed(&env_b), "b");
    a.expect_log("worker ready", READY);
    b.expect_log("worker ready", READY);

    let record = |place: &String, name: &str| {
        let value = serde_json::to_vec(name).unwrap();
        (Some(place.as_bytes().to_vec()), Some(value))
    };
    let joins: Vec<_> = (places.iter())
        .flat_map(|p| ["alice", "bob", "carol"].map(|n| record(p, n)))
        .collect();
    common::produce(joining, &joins);
    let changelog = format!("{app}-people-changelog");
    let expect = |members: &str| vec![Some(members.to_owned()); places.len()];
    assert!(
        wait_until(DONE, || last_records(&changelog, &places)
            == expect(r#"["alice","bob","carol"]"#)),
        "{:?}\n{}\n{}",
        last_records(&changelog, &places),
        a.log(),
        b.log()
    );
    let bob_leaves: Vec<_> = places.iter().map(|p| record(p, "bob")).collect();
    common::produce(leaving, &bob_leaves);
    assert!(
        wait_until(DONE, || last_records(&changelog, &places)
            == expect(r#"["alice","carol"]"#)),
        "{:?}",
        last_records(&changelog, &places)
    );
    // Both held places: each printed some of them.
    assert!(a.log().contains("TABLE CUR") && b.log().contains("TABLE CUR"));

    // b leaves; a takes its partitions over and recovers their sets from the changelog
    // (discarding from a set it had not recovered would leave nothing, a tombstone).
    b.stop();
    let alice_leaves: Vec<_> = places.iter().map(|p| record(p, "alice")).collect();
    common::produce(leaving, &alice_leaves);
    assert!(
        wait_until(DONE, || last_records(&changelog, &places)
            == expect(r#"["carol"]"#)),
        "{:?}\n{}",
        last_records(&changelog, &places),
        a.log()
    );
    // The example's own command sends a join as the agent reads it.
    let joined = std::process::Command::new(common::example("tableofset"))
        .args(["joining", &places[0], "dave"])
        .env("FAUST_BROKER", &broker)
        .env("FAUST_ID", &app)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&joined.stderr);
    assert!(joined.status.success(), "{stderr}");
    let first = std::slice::from_ref(&places[0]);
    let dave = [Some(r#"["carol","dave"]"#.to_owned())];
    assert!(
        wait_until(DONE, || last_records(&changelog, first) == dave),
        "{:?}\n{}",
        last_records(&changelog, first),
        a.log()
    );
    a.stop();
}

#[test]
fn the_rpc_example_answers_its_timers_and_its_command_across_two_workers() {
    needs_broker!();
    let (app, reply_to) = (unique("rpc"), unique("rpc-replies"));
    let broker = common::broker();
    let (env_a, env_b) = (example_env(&app, "rpc-a"), example_env(&app, "rpc-b"));
    let example = common::example("rpc");
    let mut a = Worker::spawn(example.clone(), &["worker"], &borrowed(&env_a), "a");
    let mut b = Worker::spawn(example, &["worker"], &borrowed(&env_b), "b");
    a.expect_log("worker ready", READY);
    b.expect_log("worker ready", READY);

    // The command asks `mul` through a reply topic of its own, created at the ask.
    let asked = std::process::Command::new(common::example("rpc"))
        .args(["x100", "4.5"])
        .env("FAUST_BROKER", &broker)
        .env("FAUST_ID", &app)
        .env("FAUST_REPLY_TO", &reply_to)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&asked.stdout),
        String::from_utf8_lossy(&asked.stderr),
    );
    assert!(asked.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("4.5 * 100 = 450"), "{stdout}\n{stderr}");
    assert_eq!(
        common::topic_setting(&reply_to, "cleanup.policy").as_deref(),
        Some("delete")
    );
    let reply = read_all(&reply_to);
    assert_eq!(reply.len(), 1, "one reply: {reply:?}");
    assert_eq!(reply[0].json()["__faust"]["ns"], "@ReqRepResponse");

    // Each worker's timer asks `pow` (which asks `mul`) for seven values, in order with
    // `join`, then as they come with `map`. The partitions are split between the two, so
    // requests and the asks they make cross between workers; each reply finds its way
    // to the reply topic of the worker that asked.
    let values = [30.3, 40.4, 50.5, 60.6, 70.7, 80.8, 90.9_f64];
    let joined = format!("JOINED: {:?}", values.map(|v| v * v * 100.0));
    let mapped = |log: &str| -> Vec<String> {
        let mut replies: Vec<String> = (log.lines())
            .filter_map(|l| l.split("RECEIVED REPLY: ").nth(1).map(str::to_owned))
            .take(values.len())
            .collect();
        replies.sort();
        replies
    };
    let mut expected: Vec<String> = values.iter().map(|v| (v * v * 100.0).to_string()).collect();
    expected.sort();
    for worker in [&a, &b] {
        worker.expect_log(&joined, DONE);
        assert!(
            wait_until(DONE, || mapped(&worker.log()) == expected),
            "{:?}\n{}",
            mapped(&worker.log()),
            worker.log()
        );
    }
    a.stop();
    b.stop();
}

#[test]
fn the_tabletest_example_answers_every_key_from_the_worker_that_holds_it() {
    needs_broker!();
    let app = unique("tabletest");
    let broker = common::broker();
    let env = |name: &str| {
        let mut env = example_env(&app, name);
        env.extend([
            // `countstopic` is the example's fixed name, with earlier runs' numbers in
            // it: this group counts only what is sent after it joined.
            ("FAUST_AUTO_OFFSET_RESET", "latest".to_owned()),
            ("FAUST_WEB_PORT", "0".to_owned()),
            ("FAUST_WEB_BIND", "127.0.0.1".to_owned()),
            ("FAUST_WEB_HOST", "127.0.0.1".to_owned()),
        ]);
        env
    };
    let (env_a, env_b) = (env("tabletest-a"), env("tabletest-b"));
    let example = common::example("tabletest");
    let mut a = Worker::spawn(example.clone(), &["worker"], &borrowed(&env_a), "a");
    a.expect_log("worker ready", READY);
    let mut b = Worker::spawn(example, &["worker"], &borrowed(&env_b), "b");
    b.expect_log("worker ready", READY);
    let urls = [a.web_url(), b.web_url()];

    let produced = std::process::Command::new(common::example("tabletest"))
        .args(["produce", "--iterations", "100"])
        .env("FAUST_BROKER", &broker)
        .env("FAUST_ID", &app)
        .output()
        .unwrap();
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );

    // Each key's total, asked of both workers: the one holding it answers, the other
    // redirects there.
    let total: u64 = (0..100).sum();
    let answers = |key: &str| -> Vec<(u16, Option<String>, String)> {
        urls.iter()
            .map(|url| {
                let got = common::http_get(&format!("{url}/count/{key}/"));
                (got.status, got.headers.get("location").cloned(), got.body)
            })
            .collect()
    };
    for key in ["0", "1", "2", "3"] {
        let settled = || {
            let got = answers(key);
            let here = got.iter().position(|(status, _, _)| *status == 200);
            let Some(here) = here else { return false };
            let other = &got[1 - here];
            let redirected = other.0 == 307
                && other
                    .1
                    .as_deref()
                    .is_some_and(|l| l.starts_with(&urls[here]));
            let body: serde_json::Value = serde_json::from_str(&got[here].2).unwrap_or_default();
            redirected && body == json!({ key: total })
        };
        assert!(
            wait_until(DONE, settled),
            "key {key}: {:?}\n{}\n{}",
            answers(key),
            a.log(),
            b.log()
        );
        // Following the redirect gets the same answer.
        let (_, location, _) = answers(key)
            .into_iter()
            .find(|(s, _, _)| *s == 307)
            .unwrap();
        let followed = common::http_get(&location.unwrap());
        assert_eq!(followed.status, 200, "{followed:?}");
        assert_eq!(followed.json(), json!({ key: total }));
    }
    assert!(!a.log().contains("!!!") && !b.log().contains("!!!"));
    a.stop();
    b.stop();
}

#[test]
fn the_service_example_starts_its_service_before_the_agents_and_stops_it_after() {
    let mut worker = embedded_example("service", "service");
    worker.expect_log("Received: \"hello\"", DONE);
    // Beats are counted by the service's own loop, once a second.
    worker.expect_log("worker ready", READY);
    std::thread::sleep(Duration::from_secs(3));
    worker.signal("INT");
    let status = worker.wait_exit(Duration::from_secs(60));
    let log = worker.log();
    assert!(status.success(), "{status}:\n{log}");
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?}:\n{log}"))
    };
    assert!(at("STARTED") < at("Received: \"hello\""), "{log}");
    assert!(at("service stopped") > at("STOPPED after"), "{log}");
    let beats: u64 = log
        .split("STOPPED after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(beats >= 3, "{log}");
}

#[test]
fn the_fastapi_example_serves_its_api_and_sends_from_it_inside_the_worker() {
    needs_broker!();
    let mut env = example_env(&unique("fastapi"), "fastapi");
    env.insert("API_ADDR", "127.0.0.1:0".to_owned());
    let mut worker = Worker::spawn(
        common::example("fastapi_example"),
        &[],
        &borrowed(&env),
        "fastapi",
    );
    worker.expect_log("api listening on", READY);
    let log = worker.log();
    let url = log
        .split("api listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(common::http_get(&url).json(), json!({ "Hello": "World" }));
    assert_eq!(
        common::http_get(&format!("{url}/items/5?q=somequery")).json(),
        json!({ "item_id": 5, "q": "somequery" })
    );
    // The handler sends inside the worker (its producer, on the test broker), and the
    // worker's agent prints what arrives; the timer adds a hundred more every 5 s.
    let produced = common::http_get(&format!("{url}/produce"));
    assert_eq!(
        produced.json(),
        json!({ "success": true }),
        "{}",
        worker.log()
    );
    let all_printed = wait_until(DONE, || {
        let log = worker.log();
        let printed: HashSet<&str> = log.lines().collect();
        (0..100).all(|i| printed.contains(format!("hello {i}").as_str()))
    });
    assert!(all_printed, "{}", worker.log());
    // Its FAUST_* variables applied, as they do to `worker`.
    let log = worker.log();
    assert!(
        log.contains(&format!("worker ready app={}", env["FAUST_ID"])),
        "{log}"
    );
    assert!(!log.contains("embedded in-process broker"), "{log}");
    // SIGTERM stops both: the worker warmly, the server gracefully.
    worker.stop();
    assert!(worker.log().contains("worker stopped"), "{}", worker.log());
}

#[test]
fn the_bound_agent_example_chains_its_agents_through_channels_without_the_broker() {
    let mut worker = embedded_example("bound_agent", "bound-agent");
    // Every action the timer sends ends at stage 2 or as a dead letter, whatever the
    // second it is processed in.
    let reached_the_end = |log: &str| {
        log.lines().any(|l| {
            l.starts_with("[stage2] action arrived") || l.starts_with("[dead letter] arrived")
        })
    };
    assert!(
        wait_until(DONE, || reached_the_end(&worker.log())),
        "{}",
        worker.log()
    );
    let log = worker.log();
    // The channels are the worker's own: no topic of theirs is subscribed to.
    let subscribed = log
        .lines()
        .find(|l| l.contains("consumer subscribed"))
        .unwrap_or_default();
    assert!(!subscribed.contains("device-actions"), "{subscribed}");
    worker.signal("INT");
    let status = worker.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}:\n{}", worker.log());
}

#[test]
fn the_isolated_partitions_example_keeps_an_actor_per_partition_across_two_workers_and_crashes() {
    needs_broker!();
    let app = unique("isolated");
    let example = common::example("isolated_partitions_crashing");
    let (mut env_a, mut env_b) = (
        example_env(&app, "isolated-a"),
        example_env(&app, "isolated-b"),
    );
    // Every 25th event of an actor's run fails once, and runs again after the restart.
    env_a.insert("CRASH_EVERY", "25".into());
    env_b.insert("CRASH_EVERY", "25".into());
    let produce = |n: u64| {
        let sent = std::process::Command::new(common::example("isolated_partitions_crashing"))
            .args([
                "produce",
                "--max-latency",
                "0",
                "--max-messages",
                &n.to_string(),
            ])
            .env("FAUST_BROKER", common::broker())
            .env("FAUST_ID", &app)
            .output()
            .unwrap();
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
    };
    let changelog = format!("{app}-withdrawal-counts-changelog");
    let counted = || -> u64 {
        let records = read_all(&changelog);
        (common::last_per_key(&records).values())
            .filter_map(|r| r.value.as_deref())
            .map(|v| serde_json::from_slice::<u64>(v).unwrap())
            .sum()
    };

    let mut a = Worker::spawn(example.clone(), &["worker"], &borrowed(&env_a), "a");
    a.expect_log("worker ready", READY);
    produce(400);
    assert!(
        wait_until(DONE, || counted() == 400),
        "{}\n{}",
        counted(),
        a.log()
    );
    // All four partitions are a's: four actors, one per partition.
    assert_eq!(
        a.log().matches("isolated partition: actor started").count(),
        4,
        "{}",
        a.log()
    );

    // A second worker takes half: a's actors of those partitions stop, b starts its own.
    let mut b = Worker::spawn(example, &["worker"], &borrowed(&env_b), "b");
    b.expect_log("worker ready", READY);
    a.expect_log("isolated partition revoked: its actor stops", DONE);
    produce(400);
    assert!(
        wait_until(DONE, || counted() == 800),
        "{}\n{}\n{}",
        counted(),
        a.log(),
        b.log()
    );
    b.expect_log("isolated partition: actor started", DONE);
    for worker in [&a, &b] {
        let log = worker.log();
        assert!(!log.contains("was given an event of partition"), "{log}");
    }
    assert!(
        a.log().contains("OH NO") && a.log().contains("runs again"),
        "the actors crashed and ran their event again:\n{}",
        a.log()
    );
    a.stop();
    b.stop();
}

#[test]
fn the_livecheck_example_checks_the_running_system_through_every_stage() {
    needs_broker!();
    let app = unique("livecheck");
    let env = example_env(&app, "livecheck");
    let example = common::example("livecheck");
    let mut worker = Worker::spawn(example.clone(), &["worker"], &borrowed(&env), "orders");
    worker.expect_log("worker ready", READY);
    let url = worker.web_url();
    let taken = common::http_get(&format!("{url}/order/init/sell/"));
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(taken.json()["status"], "success");
    let refused = common::http_get(&format!("{url}/order/init/hold/"));
    assert_eq!(refused.status, 400, "{}", refused.body);

    // The check runs as a program of its own, as Faust's livecheck worker does.
    let command = |args: &[&str]| {
        let out = std::process::Command::new(&example)
            .args(args)
            .env("FAUST_BROKER", common::broker())
            .env("FAUST_ID", &app)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let checked = command(&["livecheck", "--runs", "3", "--every", "0.2"]);
    assert_eq!(checked.matches("test_order PASSED").count(), 3, "{checked}");
    let posted = command(&["post-order", "--side", "buy"]);
    assert!(posted.contains("sent"), "{posted}");
    // The page's order, the three checks and the posted one: five executions at least
    // (a shared topic may hold earlier runs' orders too).
    assert!(
        wait_until(DONE, || worker.log().matches("5. ORDER EXECUTED").count()
            >= 5),
        "{}",
        worker.log()
    );
    worker.stop();
}
