//! A long recovery: 2.5 million changelog records for one table partition, with the
//! consumer's poll interval lowered below the recovery's length. A test binary of its
//! own, so that its load on the broker does not slow the other table tests down.

mod common;

use std::time::Duration;

use common::{count_topics, datadir, produce_json, reported, unique, wait_until, Worker};
use serde_json::json;

const DONE: Duration = Duration::from_secs(120);

#[test]
fn a_recovery_longer_than_the_poll_interval_keeps_the_membership_reports_progress_and_stops_on_sigterm(
) {
    needs_broker!();
    let app = unique("long-recovery");
    let (input, counted) = count_topics(&app);
    // A changelog of 2.5 million records for partition 0 of `counts`, sent in batches.
    let changelog = format!("{app}-counts-changelog");
    common::create_topic_with(&changelog, 4, &[("cleanup.policy", "compact")]);
    const RECORDS: u64 = 2_500_000;
    {
        use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
        let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", common::broker())
                .set("linger.ms", "20")
                .create()
                .unwrap();
        for i in 0..RECORDS {
            let (key, value) = (format!("\"w{}\"", i % 1000), (i / 1000 + 1).to_string());
            let mut record = BaseRecord::<str, str>::to(&changelog)
                .partition(0)
                .key(&key)
                .payload(&value);
            while let Err((_, back)) = producer.send(record) {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        producer.flush(Duration::from_secs(120)).unwrap();
    }

    // The consumer must poll every 6 s (librdkafka heartbeats every 3 s); the recovery
    // takes longer.
    let env = [
        ("FAUST_SESSION_TIMEOUT", "6s"),
        ("FAUST_BROKER_MAX_POLL_INTERVAL", "6s"),
    ];
    let mut worker = Worker::start_on(&app, "w", &datadir("long-recovery-data"), &env);
    worker.expect_log("worker ready", Duration::from_secs(300));
    let log = worker.log();
    let recovered = log
        .lines()
        .find(|l| {
            l.contains("table partition recovered")
                && l.contains("table=\"counts\"")
                && l.contains("partition=0 ")
        })
        .unwrap_or_else(|| panic!("counts partition 0 not recovered:\n{log}"));
    assert!(
        recovered.contains(&format!("records={RECORDS}")),
        "{recovered}"
    );
    let seconds: f64 = recovered
        .split("seconds=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        seconds > 5.0,
        "the recovery was too short to show anything: {recovered}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("recovering") && l.contains("eta_s=")),
        "no progress reported:\n{log}"
    );
    assert_eq!(
        log.matches("partitions assigned").count(),
        1,
        "the worker lost its membership during the recovery:\n{log}"
    );
    // The recovered counts are there: a word counted once more goes on from them (keyed
    // `w3`, as faust::send and Python Faust key it, the word lands in partition 0).
    produce_json(&input, &[(json!("w3"), json!("w3"))]);
    assert!(
        wait_until(DONE, || reported(&counted).get("w3") == Some(&2501)),
        "{}",
        worker.log()
    );
    worker.stop();

    // A worker stopped while it recovers stops the recovery instead of waiting for it.
    let mut again = Worker::start_on(&app, "again", &datadir("long-recovery-again"), &env);
    again.expect_log("eta_s=", Duration::from_secs(300));
    again.signal("TERM");
    assert!(again.wait_exit(DONE).success(), "{}", again.log());
    let log = again.log();
    assert!(log.contains("recovery stopped"), "{log}");
    assert!(
        !log.contains("table partition recovered table=\"counts\" partition=0 "),
        "the stop waited for the recovery:\n{log}"
    );
}
