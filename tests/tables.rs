//! Tables against the real broker and real RocksDB: counts, changelogs, recovery after
//! restarts and crashes, co-partitioning, and changelogs written by Python Faust.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    all_equal, count_topics, create_topic, datadir, kill_when_busy, produce, produce_json,
    produce_to, read_all, reported, unique, wait_until, words, Worker,
};
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(60);
const DONE: Duration = Duration::from_secs(120);

/// Each string key's last value (null for a tombstone) among a changelog's records.
fn latest_json(records: &[common::Record]) -> HashMap<String, Value> {
    (common::last_per_key(records).into_iter())
        .map(|(key, record)| (serde_json::from_slice(&key).unwrap(), record.json()))
        .collect()
}

/// The changelog's last value per key, and how many records it holds.
fn changelog(app: &str) -> (HashMap<String, Value>, usize) {
    let records = read_all(&format!("{app}-counts-changelog"));
    (latest_json(&records), records.len())
}

/// Records of `counts` replayed by the worker's recoveries, from its log.
fn recovered_records(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("table partition recovered") && l.contains("table=\"counts\""))
        .map(|l| {
            let at = l.find("records=").unwrap() + "records=".len();
            l[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

#[test]
fn counts_are_exact_and_the_changelog_agrees_with_the_table() {
    needs_broker!();
    let app = unique("count");
    let (input, out) = count_topics(&app);
    produce_json(&input, &words(20, 10));
    // No commit before the shutdown's: all 200 updates meet in the write cache.
    let once = [("FAUST_COMMIT_INTERVAL", "1h")];
    let mut worker = Worker::start_on(&app, "w", &datadir("count"), &once);
    let done = wait_until(DONE, || all_equal(&reported(&out), 20, 10));
    assert!(done, "counts: {:?}\n{}", reported(&out), worker.log());
    worker.stop();

    let (last, records) = changelog(&app);
    assert_eq!(records, 20, "one changelog record per key and commit");
    assert_eq!(last.len(), 20);
    assert!(
        last.values().all(|v| *v == json!(10)),
        "the changelog agrees: {last:?}"
    );
}

#[test]
fn a_restart_recovers_only_the_tail_and_an_empty_datadir_rebuilds_everything() {
    needs_broker!();
    let app = unique("restart");
    let (input, out) = count_topics(&app);
    let kept = datadir("kept");
    produce_json(&input, &words(10, 10));
    let mut first = Worker::start_on(&app, "first", &kept, &[]);
    assert!(
        wait_until(DONE, || all_equal(&reported(&out), 10, 10)),
        "{}",
        first.log()
    );
    first.stop();

    produce_json(&input, &words(10, 5));
    let mut second = Worker::start_on(&app, "second", &kept, &[]);
    assert!(
        wait_until(DONE, || all_equal(&reported(&out), 10, 15)),
        "{}",
        second.log()
    );
    second.stop();
    let replayed = recovered_records(&second.log());
    assert_eq!(
        replayed, 0,
        "the kept store was up to date, yet replayed {replayed} changelog records"
    );
    // The table's on_recover hook ran once its partitions were recovered, and its
    // on_changelog_event saw every record replayed (none here, all below).
    assert!(
        second
            .log()
            .contains("COUNTS RECOVERED after 0 changelog events"),
        "{}",
        second.log()
    );

    produce_json(&input, &words(10, 1));
    let (_, logged) = changelog(&app);
    let mut fresh = Worker::start_on(&app, "fresh", &datadir("fresh"), &[]);
    assert!(
        wait_until(DONE, || all_equal(&reported(&out), 10, 16)),
        "{}",
        fresh.log()
    );
    fresh.stop();
    assert_eq!(
        recovered_records(&fresh.log()) as usize,
        logged,
        "an empty datadir replays the whole changelog"
    );
    let hooked = format!("COUNTS RECOVERED after {logged} changelog events");
    assert!(
        fresh.log().contains(&hooked),
        "{hooked}:
{}",
        fresh.log()
    );
    let (last, _) = changelog(&app);
    assert!(last.values().all(|v| *v == json!(16)), "{last:?}");
}

#[test]
fn a_killed_worker_loses_nothing_and_its_partitions_count_nothing_twice() {
    needs_broker!();
    let app = unique("kill");
    let (input, out) = count_topics(&app);
    // Slow enough that B is still busy when the test, reading its output, kills it: on a
    // busy machine at 3 ms an event B had finished its share by then, its store flushed
    // at its last commit, and there was nothing left to recover.
    let slow = [("TEST_DELAY_MS", "30"), ("FAUST_COMMIT_INTERVAL", "500ms")];
    let mut a = Worker::start_on(&app, "a", &datadir("a"), &slow);
    a.expect_log("worker ready", READY);
    let b_dir = datadir("b");
    let mut b_env = slow.to_vec();
    b_env.push(("FAUST_INSTANCE_ID", "b"));
    let mut b = Worker::start_on(&app, "b", &b_dir, &b_env);
    b.expect_log("worker ready", READY);
    a.expect_log("partitions revoked", READY);

    produce_json(&input, &words(40, 50));
    kill_when_busy(&mut b, "b", &out, 200);
    // The killed worker comes back under the same static group membership
    // (FAUST_INSTANCE_ID) and takes its partitions back, as a restarted pod would (tansu
    // 0.6.0 evicts a dead member only when another member's heartbeat notices; if that
    // happened first, the other worker holds them and this one joins anew). Its store
    // may hold effects of events the group never committed, which recovery must not
    // count twice.
    let mut b2 = Worker::start_on(&app, "b2", &b_dir, &b_env);

    let done = wait_until(DONE, || all_equal(&reported(&out), 40, 50));
    let counts = reported(&out);
    assert!(
        done,
        "after B was killed, the counts reached {counts:?}\nA:\n{}\nB2:\n{}",
        a.log(),
        b2.log()
    );
    b2.stop();
    a.stop();
    let (last, _) = changelog(&app);
    assert_eq!(last.len(), 40);
    assert!(
        last.values().all(|v| *v == json!(50)),
        "no update lost or doubled: {last:?}"
    );
    let recovered = recovered_records(&a.log()) + recovered_records(&b2.log());
    assert!(
        recovered > 0,
        "B's partitions were recovered from the changelog"
    );
}

#[test]
fn a_table_and_its_source_topic_must_have_the_same_partitions() {
    needs_broker!();
    let app = unique("copart");
    create_topic(&format!("{app}-count"), 2);
    let mut worker = Worker::start_on(&app, "w", &datadir("copart"), &[]);
    let status = worker.wait_exit(READY);
    assert_eq!(status.code(), Some(1), "{}", worker.log());
    let log = worker.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        // Every table of the app is checked; the first one named is the first by name.
        last.contains("has 4 partitions but topic")
            && last.contains(&format!("'{app}-count'"))
            && last.contains("has 2"),
        "{log}"
    );
}

#[test]
fn a_changelog_written_by_python_faust_is_recovered() {
    needs_broker!();
    let app = unique("python");
    let (input, out) = count_topics(&app);
    // As Python Faust writes them (docs/FAUST-FORMATS.md): the input's keys raw UTF-8
    // (its default key_serializer), so a word's events land in murmur2(word)'s partition;
    // the table's changelog keyed by the word as JSON, non-ASCII escaped (Python's
    // ensure_ascii), in the partition of the event that wrote it, no faust-rs headers,
    // a delete as a null value.
    let words = ["apple", "pear", "café"];
    produce(
        &input,
        &words.map(|w| {
            (
                Some(w.as_bytes().to_vec()),
                Some(serde_json::to_vec(w).unwrap()),
            )
        }),
    );
    let partition: HashMap<String, i32> = read_all(&input)
        .into_iter()
        .map(|r| (String::from_utf8(r.key.unwrap()).unwrap(), r.partition))
        .collect();
    let changelog = format!("{app}-counts-changelog");
    create_topic(&changelog, 4);
    let faust_wrote = |word: &str, key: &str, value: Option<&str>| {
        let record = (
            Some(key.as_bytes().to_vec()),
            value.map(|v| v.as_bytes().to_vec()),
        );
        produce_to(&changelog, partition[word], &[record]);
    };
    faust_wrote("apple", r#""apple""#, Some("5"));
    faust_wrote("pear", r#""pear""#, Some("3"));
    faust_wrote("café", r#""caf\u00e9""#, Some("4"));
    faust_wrote("apple", r#""apple""#, Some("7"));
    faust_wrote("pear", r#""pear""#, None);

    let mut worker = Worker::start_on(&app, "w", &datadir("python"), &[]);
    let done = wait_until(DONE, || reported(&out).len() == 3);
    assert!(done, "{}", worker.log());
    worker.stop();
    let counts = reported(&out);
    assert_eq!(counts["apple"], 8, "recovered 7, then one more");
    assert_eq!(counts["pear"], 1, "the delete was applied");
    assert_eq!(counts["café"], 5, "\"caf\\u00e9\" is the key \"café\"");
}

#[test]
fn a_write_outside_event_processing_is_refused_with_a_clear_error() {
    needs_broker!();
    let app = unique("outside");
    count_topics(&app);
    let mut worker = Worker::start_on(
        &app,
        "w",
        &datadir("outside"),
        &[("TEST_WRITE_OUTSIDE", "1")],
    );
    worker.expect_log("task failed", READY);
    worker.stop();
    let log = worker.log();
    let failure = log.lines().find(|l| l.contains("task failed")).unwrap();
    assert!(
        failure.contains("table 'counts' was written outside of event processing")
            && failure.contains("use_partitioner = true"),
        "{failure}"
    );
}

#[test]
fn every_worker_reads_the_whole_global_table() {
    needs_broker!();
    let app = unique("global");
    for topic in ["configure", "lookup", "looked-up"] {
        create_topic(&format!("{app}-{topic}"), 4);
    }
    let mut a = Worker::start_on(&app, "a", &datadir("global-a"), &[]);
    a.expect_log("worker ready", READY);
    let mut b = Worker::start_on(&app, "b", &datadir("global-b"), &[]);
    b.expect_log("worker ready", READY);
    a.expect_log("partitions revoked", READY);

    let settings: Vec<_> = (0..4)
        .map(|i| {
            (
                json!(format!("s{i}")),
                json!({ "key": format!("k{i}"), "value": format!("v{i}") }),
            )
        })
        .collect();
    produce_json(&format!("{app}-configure"), &settings);

    // Lookups keyed all over the partitions reach both workers; each must answer every
    // key with the value, whichever worker wrote it.
    let mut round = 0;
    let mut answered = std::collections::HashSet::new();
    let done = wait_until(DONE, || {
        let lookups: Vec<_> = (0..16)
            .map(|i| (json!(format!("q{round}-{i}")), json!(format!("k{}", i % 4))))
            .collect();
        round += 1;
        produce_json(&format!("{app}-lookup"), &lookups);
        for record in read_all(&format!("{app}-looked-up")) {
            let answer = record.json();
            let key = answer["key"].as_str().unwrap().to_owned();
            if answer["value"] == json!(key.replace('k', "v")) {
                answered.insert((answer["worker"].as_str().unwrap().to_owned(), key));
            }
        }
        answered.len() == 8
    });
    assert!(
        done,
        "correct answers: {answered:?}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    a.stop();
    b.stop();
}

#[test]
fn changelogs_keep_records_from_compaction_for_a_day_and_an_existing_one_that_does_not_is_named() {
    needs_broker!();
    let app = unique("compaction-lag");
    // An existing changelog compacted without a lag, one not compacted at all, and one
    // the worker creates.
    let existing = format!("{app}-lengths-changelog");
    common::create_topic_with(
        &existing,
        4,
        &[
            ("cleanup.policy", "compact"),
            ("min.compaction.lag.ms", "0"),
        ],
    );
    let uncompacted = format!("{app}-sums-changelog");
    common::create_topic_with(&uncompacted, 4, &[("cleanup.policy", "delete")]);
    let mut worker = Worker::start_on(&app, "w", &datadir("compaction-lag-data"), &[]);
    worker.expect_log("worker ready", READY);
    assert_eq!(
        common::topic_setting(&format!("{app}-counts-changelog"), "min.compaction.lag.ms")
            .as_deref(),
        Some("86400000")
    );
    let log = worker.log();
    let warning = log
        .lines()
        .find(|l| l.contains("min.compaction.lag.ms to 86400000"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains(&existing), "{warning}");
    assert_eq!(
        log.matches("min.compaction.lag.ms to 86400000").count(),
        1,
        "only the changelog without the lag:\n{log}"
    );
    let warning = log
        .lines()
        .find(|l| l.contains("this changelog is not compacted"))
        .unwrap_or_else(|| panic!("no warning about the uncompacted changelog:\n{log}"));
    assert!(warning.contains(&uncompacted), "{warning}");
    worker.stop();
}

#[test]
fn workers_writing_one_key_of_a_global_table_agree_on_the_changelogs_last_value() {
    needs_broker!();
    let app = unique("global-race");
    let configure = format!("{app}-configure");
    create_topic(&configure, 4);
    let mut a = Worker::start_on(&app, "a", &datadir("global-race-a"), &[]);
    a.expect_log("worker ready", READY);
    let mut b = Worker::start_on(&app, "b", &datadir("global-race-b"), &[]);
    b.expect_log("worker ready", READY);
    a.expect_log("partitions revoked", READY);
    assert!(wait_until(READY, || a
        .log()
        .matches("partitions assigned")
        .count()
        >= 2));

    // Partitions 0 and 2 are read by different workers (range assignment of 4 to 2):
    // both write each key at about the same time.
    const KEYS: usize = 200;
    let writes = |side: &str| -> Vec<common::KeyValue> {
        (0..KEYS)
            .map(|i| {
                let setting = json!({ "key": format!("c{i}"), "value": format!("{side}{i}") });
                (None, Some(serde_json::to_vec(&setting).unwrap()))
            })
            .collect()
    };
    let (left, right) = (writes("a"), writes("b"));
    let other = {
        let configure = configure.clone();
        std::thread::spawn(move || common::produce_to(&configure, 2, &right))
    };
    common::produce_to(&configure, 0, &left);
    other.join().unwrap();

    // Once every write is in the changelog, both workers hold its last value of each key.
    let changelog = format!("{app}-settings-changelog");
    let last = || latest_json(&read_all(&changelog));
    assert!(wait_until(DONE, || read_all(&changelog).len() == 2 * KEYS));
    let last = last();
    let holds = |worker: &Worker| {
        (0..KEYS).all(|i| {
            let key = format!("c{i}");
            let url = format!("{}/tables/settings/{key}", worker.web_url());
            common::http_get(&url).json() == last[&key]
        })
    };
    assert!(
        wait_until(DONE, || holds(&a) && holds(&b)),
        "the workers disagree with the changelog"
    );
    a.stop();
    b.stop();
}
