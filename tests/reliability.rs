//! Faults inflicted on real worker processes: poison input, a stuck agent and two
//! workers on one datadir. (A broker outage is in `outage.rs`, crashes and rebalances in
//! `chaos.rs`.)

mod common;

use std::time::Duration;

use common::{
    agent, all_committed, create_topic, items, partitions, processed, produce, produce_json,
    read_all, stats, track_topics, unique, wait_until, Worker,
};

const DONE: Duration = Duration::from_secs(90);

#[test]
fn poison_input_is_logged_counted_skipped_and_dead_lettered() {
    needs_broker!();
    let app = unique("poison");
    let (input, out) = track_topics(&app);
    let (shout, shouted) = (format!("{app}-shout"), format!("{app}-shouted"));
    create_topic(&shout, 4);
    create_topic(&shouted, 4);
    let dead = format!("{app}-dead");

    let good = |n: u64| {
        (
            Some(n.to_string().into_bytes()),
            Some(format!("{{\"n\": {n}}}").into_bytes()),
        )
    };
    let huge = serde_json::to_vec(&"x".repeat(1_000_000 - 100)).unwrap();
    let poison: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("malformed JSON", Some(b"{not json".to_vec())),
        ("wrong shape", Some(br#"{"m": "wrong shape"}"#.to_vec())),
        ("empty value", Some(Vec::new())),
        ("null value (tombstone)", None),
        ("1 MB value", Some(huge)),
    ];
    let mut records: Vec<_> = (0..10).map(good).collect();
    for (i, (_, value)) in poison.iter().enumerate() {
        records.push((Some(format!("bad{i}").into_bytes()), value.clone()));
    }
    records.extend((10..20).map(good));
    produce(&input, &records);
    produce(
        &shout,
        &[
            (None, Some(b"hello".to_vec())),
            (None, Some(vec![0x66, 0x6f, 0xff, 0xfe])), // not UTF-8
            (None, Some(b"world".to_vec())),
        ],
    );

    let mut worker = Worker::start(&app, "w", &[("FAUST_DEAD_LETTER_TOPIC", &dead)]);
    assert!(
        wait_until(DONE, || processed(&out).len() == 20
            && read_all(&shouted).len() == 2),
        "the valid messages were not all processed:\n{}",
        worker.log()
    );
    // Offsets advance past the poison: nothing is left waiting.
    assert!(
        wait_until(DONE, || all_committed(
            &partitions(&stats(&worker), &input),
            25
        ) && all_committed(
            &partitions(&stats(&worker), &shout),
            3
        )),
        "{}",
        stats(&worker)
    );
    let figures = stats(&worker);
    assert_eq!(agent(&figures, "track")["decode_errors"], 5, "{figures}");
    assert_eq!(agent(&figures, "shout")["decode_errors"], 1, "{figures}");
    worker.stop();

    let log = worker.log();
    let skipped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cannot be decoded"))
        .collect();
    assert_eq!(skipped.len(), 6, "one warning per bad message:\n{log}");
    assert!(
        skipped
            .iter()
            .all(|l| l.contains("offset=") && l.contains("partition=")),
        "{skipped:?}"
    );
    assert!(
        log.contains("decode_errors=6"),
        "the final counters:\n{log}"
    );
    let sensed = log
        .lines()
        .filter(|l| l.starts_with("test sensor: ") && l.contains("could not decode"))
        .count();
    assert_eq!(sensed, 6, "the app's own sensor saw each of them:\n{log}");

    // Each bad message is in the dead-letter topic, as it was, with why and whence.
    let letters = read_all(&dead);
    assert_eq!(letters.len(), 6, "{letters:?}");
    for (i, (what, value)) in poison.iter().enumerate() {
        let key = format!("bad{i}").into_bytes();
        let letter = letters
            .iter()
            .find(|l| l.key.as_deref() == Some(key.as_slice()))
            .unwrap_or_else(|| panic!("no dead letter for the {what}"));
        if letter.headers.contains_key("faust-value-omitted") {
            // Too large to copy: the letter says where the original is.
            assert_eq!(*what, "1 MB value");
            assert_eq!(letter.value, None);
        } else {
            assert_eq!(&letter.value, value, "the {what} is kept as it was");
        }
        assert!(!letter.headers["faust-error"].is_empty(), "{what}");
        assert_eq!(letter.headers["faust-agent"], "track");
        assert_eq!(letter.headers["faust-source-topic"], input);
        assert!(letter.headers.contains_key("faust-source-offset"), "{what}");
    }
    let not_utf8 = letters
        .iter()
        .find(|l| l.headers["faust-agent"] == "shout")
        .expect("the invalid UTF-8 line is a dead letter");
    assert_eq!(
        not_utf8.value.as_deref(),
        Some(&[0x66, 0x6f, 0xff, 0xfe][..])
    );
}

#[test]
fn a_partition_that_stops_making_progress_is_reported() {
    needs_broker!();
    let app = unique("stall");
    let (input, out) = track_topics(&app);
    // Each event takes 8 s; the stall timeout is 2 s.
    let env = [("TEST_DELAY_MS", "8000"), ("FAUST_STALL_TIMEOUT", "2s")];
    let mut worker = Worker::start(&app, "w", &env);
    worker.expect_log("worker ready", DONE);
    produce_json(&input, &items(0..1));
    worker.expect_log("no progress for 2s", DONE);
    let log = worker.log();
    let warning = log
        .lines()
        .find(|l| l.contains("no progress for 2s"))
        .unwrap();
    assert!(
        warning.contains(&format!("topic={input}"))
            && warning.contains("agents=track")
            && warning.contains("an agent may be stuck"),
        "{warning}"
    );
    let metrics = common::http_get(&format!("{}/metrics", worker.web_url())).body;
    let stalled: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("faust_partition_stalled{") && l.ends_with(" 1"))
        .collect();
    assert_eq!(stalled.len(), 1, "{metrics}");
    assert!(stalled[0].contains(&input), "{stalled:?}");

    // Once the event is done and committed, the partition is no longer stalled.
    assert!(wait_until(DONE, || processed(&out).len() == 1));
    assert!(
        wait_until(DONE, || partitions(&stats(&worker), &input)
            .iter()
            .all(|p| p["stalled"] == false)),
        "{}",
        stats(&worker)
    );
    worker.stop();
}

#[test]
fn a_second_worker_on_the_same_datadir_is_refused_and_the_first_keeps_running() {
    needs_broker!();
    let app = unique("datadir");
    let (input, out) = track_topics(&app);
    let datadir = common::scratch().join(unique("shared-data"));
    let dir = datadir.to_str().unwrap();
    let mut first = Worker::start(&app, "first", &[("FAUST_DATADIR", dir)]);
    first.expect_log("worker ready", DONE);

    let mut second = Worker::start(&app, "second", &[("FAUST_DATADIR", dir)]);
    let status = second.wait_exit(DONE);
    assert_eq!(status.code(), Some(1));
    let log = second.log();
    assert!(
        log.contains("is in use by another running worker") && log.contains("--datadir"),
        "{log}"
    );
    assert!(
        !log.contains("partitions assigned"),
        "refused before joining the group:\n{log}"
    );

    produce_json(&input, &items(0..20));
    assert!(
        wait_until(DONE, || processed(&out).len() == 20),
        "the first worker stopped processing:\n{}",
        first.log()
    );
    first.stop();
}

#[test]
fn an_event_whose_output_was_not_delivered_is_not_committed_and_runs_again() {
    needs_broker!();
    let app = unique("undelivered");
    let (shout, shouted) = (format!("{app}-shout"), format!("{app}-shouted"));
    create_topic(&shout, 4);
    // `shout` sends each line on to `shouted`, which does not exist yet (the broker does
    // not create topics on produce): `faust::send` queues the line and returns, and its
    // delivery fails a few seconds later.
    produce(&shout, &[(None, Some(b"hello".to_vec()))]);
    let mut worker = Worker::start(&app, "w", &[]);
    let status = worker.wait_exit(DONE);
    let log = worker.log();
    assert!(!status.success(), "the worker must stop:\n{log}");
    assert!(
        log.contains("was not delivered") && log.contains(&shouted),
        "one error names the topic the message did not reach:\n{log}"
    );
    assert!(
        !log.contains("agent failed"),
        "the send itself returned at once, without an error:\n{log}"
    );

    // The event was not committed: once the topic exists, it runs again.
    create_topic(&shouted, 4);
    let mut again = Worker::start(&app, "again", &[]);
    assert!(
        wait_until(DONE, || !read_all(&shouted).is_empty()),
        "the line was lost:\n{}",
        again.log()
    );
    let lines: Vec<_> = read_all(&shouted).into_iter().map(|r| r.json()).collect();
    assert_eq!(lines, [serde_json::json!("HELLO")]);
    again.stop();
}

#[test]
fn a_message_a_timer_sent_that_was_not_delivered_is_logged_and_the_worker_goes_on() {
    needs_broker!();
    let app = unique("timer-undelivered");
    // The heartbeat timer (and the leader's task) send to topics that do not exist.
    // The first sends return at once, and their failed deliveries are reported when
    // they come; once the producer knows the topic is missing, a send fails at once and
    // the timer reports that itself. Either way the worker goes on.
    let mut worker = Worker::start(&app, "w", &[("TEST_HEARTBEAT", "1")]);
    let heartbeats = format!("{app}-heartbeats");
    let lines = |log: &str, needle: &str| {
        log.lines()
            .filter(|l| l.contains(needle) && l.contains(&heartbeats))
            .count()
    };
    assert!(
        wait_until(DONE, || lines(
            &worker.log(),
            "a message sent outside an event was not delivered"
        ) >= 1),
        "a lost heartbeat is reported:\n{}",
        worker.log()
    );
    let seen = lines(&worker.log(), &heartbeats);
    assert!(
        wait_until(DONE, || lines(&worker.log(), &heartbeats) >= seen + 2),
        "the timer keeps running, and each lost heartbeat is reported:\n{}",
        worker.log()
    );
    worker.stop();
}

#[test]
fn an_event_revoked_while_running_does_not_write_into_its_partitions_next_holding() {
    needs_broker!();
    let app = unique("revoked");
    let (input, counted) = common::count_topics(&app);
    let elsewhere = format!("{app}-elsewhere");
    create_topic(&elsewhere, 1);
    // `count` takes 15 s per word; a rebalance waits 1 s for it.
    let env = [
        ("TEST_DELAY_MS", "15000"),
        ("FAUST_DRAIN_TIMEOUT", "1s"),
        ("FAUST_STALL_TIMEOUT", "2s"),
    ];
    let mut worker = Worker::start(&app, "w", &env);
    worker.expect_log("worker ready", DONE);
    common::produce_json(
        &input,
        &[(serde_json::json!("stale"), serde_json::json!("stale"))],
    );
    worker.expect_log("no progress for 2s", DONE);

    // A member reading another topic joins the group: the worker's partitions are
    // revoked while the word is being counted, and all come back to it.
    let member = common::Member::join(&app, &[&elsewhere]);
    worker.expect_log("still being processed", DONE);
    assert!(
        wait_until(DONE, || worker.log().matches("partitions assigned").count()
            >= 2),
        "the partitions did not come back:\n{}",
        worker.log()
    );

    // The word runs again from the committed offset: it counts once, however the
    // revoked run ends.
    assert!(
        wait_until(DONE, || all_committed(
            &partitions(&stats(&worker), &input),
            1
        )),
        "{}",
        worker.log()
    );
    let counts: Vec<serde_json::Value> = read_all(&counted)
        .into_iter()
        .map(|r| r.json()["count"].clone())
        .collect();
    assert_eq!(counts, [serde_json::json!(1)], "{}", worker.log());
    assert!(
        worker.log().contains("the partition was revoked"),
        "the revoked run's write was refused:\n{}",
        worker.log()
    );
    drop(member);
    worker.stop();
}

#[test]
fn a_rebalance_that_does_not_end_is_reported() {
    needs_broker!();
    let app = unique("stuck-rebalance");
    let (input, out) = track_topics(&app);
    let elsewhere = format!("{app}-elsewhere");
    create_topic(&elsewhere, 1);
    // The group's first member reads another topic; the worker joins after it.
    let first = common::Member::join(&app, &[&elsewhere]);
    let mut worker = Worker::start(&app, "w", &[("FAUST_STALL_TIMEOUT", "2s")]);
    worker.expect_log("worker ready", DONE);

    // The first member stops polling: it takes no part in the next rebalance, which a
    // newcomer starts, and which cannot end without it.
    first.hold(true);
    let newcomer = common::Member::join(&app, &[&elsewhere]);
    worker.expect_log("gave up its partitions in a rebalance", DONE);

    // Once the member is back, the rebalance ends and the worker processes again.
    first.hold(false);
    produce_json(&input, &items(0..1));
    assert!(
        wait_until(DONE, || processed(&out).len() == 1),
        "{}",
        worker.log()
    );
    drop((first, newcomer));
    worker.stop();
}

#[test]
fn an_agent_that_stops_on_error_leaves_its_event_for_the_next_start() {
    needs_broker!();
    let app = unique("strict");
    let (input, out) = (format!("{app}-strict"), format!("{app}-strict-out"));
    create_topic(&input, 4);
    create_topic(&out, 1);
    let datadir = common::scratch().join(unique("strict-data"));
    let mut worker = Worker::start_on(&app, "w", &datadir, &[("TEST_STRICT", "1")]);
    worker.expect_log("worker ready", DONE);
    let item = |n: u64, fail: bool| {
        let value = serde_json::json!({ "n": n, "fail": fail }).to_string();
        // One key: one partition, in this order.
        (Some(b"k".to_vec()), Some(value.into_bytes()))
    };
    produce(&input, &[item(0, false), item(1, true), item(2, false)]);
    let status = worker.wait_exit(DONE);
    let log = worker.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("its on_error is \"stop\""), "{log}");
    let reported = || -> Vec<u64> {
        read_all(&out)
            .iter()
            .filter_map(|r| r.json().as_u64())
            .collect()
    };
    let before = reported();
    assert!(
        !before.contains(&1) && !before.contains(&2),
        "nothing from the failed item on ran: {before:?}"
    );

    // Restarted (now accepting it), the worker runs the failed item again, then the rest.
    let mut again = Worker::start_on(&app, "w2", &datadir, &[]);
    assert!(
        wait_until(DONE, || reported().contains(&2)),
        "{}",
        again.log()
    );
    let after = reported();
    let first = |n: u64| after.iter().position(|&m| m == n);
    assert!(first(1).is_some() && first(1) < first(2), "{after:?}");
    again.stop();
}

#[test]
fn a_partition_no_worker_processes_is_reported_even_when_its_holder_took_the_leaders_partition() {
    needs_broker!();
    let app = unique("unheld");
    let (input, _out) = track_topics(&app);
    let mut worker = Worker::start(&app, "w", &[("FAUST_STALL_TIMEOUT", "2s")]);
    worker.expect_log("worker ready", DONE);
    // A member that takes half of every topic's partitions and never processes them, as
    // a dead member the broker does not evict does. It takes the leader's partition too
    // (the range assignor gives a one-partition topic to the first member id, and its
    // `rdkafka-...` sorts before the worker's `unheld-...`): a soak run on tansu ended
    // with a ghost holding partitions and the leader's, and a watchdog run only by the
    // leader then told nobody.
    let log = worker.log();
    let subscribed = log
        .lines()
        .find(|l| l.contains("consumer subscribed"))
        .and_then(|l| l.split("topics=[").nth(1))
        .and_then(|l| l.split(']').next())
        .unwrap()
        .to_owned();
    let topics: Vec<&str> = subscribed
        .split(", ")
        .map(|t| t.trim_matches('"'))
        .collect();
    let silent = common::Member::join(&app, &topics);
    assert!(
        wait_until(DONE, || {
            let log = worker.log();
            log.matches("partitions assigned").count() >= 2
        }),
        "{}",
        worker.log()
    );
    produce_json(&input, &items(0..40));
    worker.expect_log("in a partition this worker does not hold", DONE);
    // It names the member's partitions, not its own, and it does not lead.
    let log = worker.log();
    let leadership = log
        .lines()
        .rfind(|l| l.contains("the leader"))
        .unwrap_or_default();
    assert!(
        leadership.contains("no longer the leader"),
        "the silent member should have taken the leader's partition: {leadership}"
    );
    let own: Vec<String> = log
        .lines()
        .rfind(|l| l.contains("partitions assigned"))
        .unwrap()
        .split(", ")
        .filter_map(|tp| tp.rsplit_once(&format!("{input}[")))
        .map(|(_, p)| format!("partition={}", p.trim_end_matches(']')))
        .collect();
    let named: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("in a partition this worker does not hold"))
        .collect();
    assert!(!own.is_empty(), "{log}");
    assert!(
        named
            .iter()
            .all(|l| !own.iter().any(|p| l.contains(&format!("{p} ")))),
        "the worker holds {own:?}; named: {named:#?}"
    );
    assert!(
        named.iter().any(|l| l.contains(&format!("topic={input} "))),
        "{named:#?}"
    );
    drop(silent);
    worker.stop();
}

#[test]
fn a_worker_refuses_an_assignment_that_splits_a_table_partition() {
    needs_broker!();
    let app = unique("split");
    let (input, _out) = track_topics(&app);
    let mut worker = Worker::start(&app, "w", &[]);
    worker.expect_log("worker ready", DONE);
    // A member of another version: it reads one of the worker's topics only, so the
    // range assignor gives it some of that topic's partitions, whose numbers the worker
    // keeps for its other topics (and for the tables they feed).
    let other = common::Member::join(&app, &[&input]);
    let status = worker.wait_exit(DONE);
    let log = worker.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("the group's workers subscribe to different topics"),
        "{log}"
    );
    drop(other);
}

#[test]
fn a_worker_that_stood_still_past_its_session_waits_before_it_commits_again() {
    needs_broker!();
    let app = unique("standstill");
    let (input, out) = track_topics(&app);
    let env = [("FAUST_SESSION_TIMEOUT", "6s")];
    let mut worker = Worker::start(&app, "w", &env);
    worker.expect_log("worker ready", DONE);
    produce_json(&input, &items(0..10));
    assert!(wait_until(DONE, || processed(&out).len() == 10));

    // Stopped (as a paused VM or a stopped process is) for longer than its session.
    worker.signal("STOP");
    std::thread::sleep(Duration::from_secs(8));
    worker.signal("CONT");
    worker.expect_log(
        "the consumer did not run for longer than the group's session timeout",
        DONE,
    );
    // Then it goes on, losing nothing.
    produce_json(&input, &items(10..20));
    assert!(
        wait_until(DONE, || processed(&out).len() == 20),
        "{}",
        worker.log()
    );
    worker.stop();
}
