//! Stream operators against the real broker: group_by with two workers, filter, map,
//! enumerate and take, and through.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{create_topic, produce_json, read_all, stats, unique, wait_until, Worker};
use serde_json::{json, Value};

const DONE: Duration = Duration::from_secs(120);

/// Whether the worker holds partitions of `topic` (its first assignment is done).
fn holds(worker: &Worker, topic: &str) -> bool {
    stats(worker)["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["topic"] == topic && p["assigned"] == true)
}

#[test]
fn group_by_repartitions_so_counts_by_the_new_key_are_exact_on_two_workers() {
    needs_broker!();
    let app = unique("regroup");
    let (input, out) = (format!("{app}-regroup"), format!("{app}-regrouped"));
    let repartition = format!("{app}-regroup-country-repartition");
    create_topic(&input, 4);
    create_topic(&out, 4);
    let mut first = Worker::start(&app, "first", &[]);
    let mut second = Worker::start(&app, "second", &[]);
    // Both members hold partitions before any input, so no rebalance moves events.
    assert!(
        wait_until(DONE, || holds(&first, &repartition)
            && holds(&second, &repartition)),
        "{}\n{}",
        first.log(),
        second.log()
    );

    // Keyed by user (A); counted by country (B).
    let countries = ["no", "se", "dk", "fi", "is", "ee"];
    let visits: Vec<(Value, Value)> = (0..120)
        .map(|i| {
            let user = format!("user-{}", i % 17);
            let country = countries[(i * 7 + i / 5) % countries.len()];
            (json!(user), json!({ "user": user, "country": country }))
        })
        .collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (_, visit) in &visits {
        *expected
            .entry(visit["country"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    produce_json(&input, &visits);

    let reports = || -> Vec<Value> { read_all(&out).iter().map(|r| r.json()).collect() };
    let done = wait_until(DONE, || reports().len() == visits.len());
    let reports = reports();
    assert!(
        done,
        "{} reports\n{}\n{}",
        reports.len(),
        first.log(),
        second.log()
    );
    first.stop();
    second.stop();

    // Every country's counts are 1..=n, each once: nothing lost, nothing counted twice.
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for report in &reports {
        assert_eq!(report["topic"], repartition.as_str(), "{report}");
        assert_eq!(
            report["key"], report["country"],
            "keyed by the new key: {report}"
        );
        counts
            .entry(report["country"].as_str().unwrap().to_owned())
            .or_default()
            .push(report["count"].as_u64().unwrap());
    }
    for (country, n) in &expected {
        let mut seen = counts.remove(country).unwrap_or_default();
        seen.sort_unstable();
        assert_eq!(seen, (1..=*n).collect::<Vec<_>>(), "counts of {country}");
    }
    assert!(counts.is_empty(), "unexpected countries: {counts:?}");
    let workers: std::collections::BTreeSet<&str> = reports
        .iter()
        .filter_map(|r| r["worker"].as_str())
        .collect();
    assert_eq!(workers.len(), 2, "both workers counted: {workers:?}");
}

#[test]
fn filter_map_enumerate_and_take_batch_the_kept_values_and_commit_the_rest() {
    needs_broker!();
    let app = unique("batches");
    let (input, out) = (format!("{app}-batches"), format!("{app}-batched"));
    create_topic(&input, 4);
    create_topic(&out, 1); // batches are read back in the order they were sent
                           // One partition's worth of order: all in partition 0 (key 0).
    let numbers: Vec<(Value, Value)> = (0..40u64).map(|n| (json!(0), json!(n))).collect();
    produce_json(&input, &numbers);
    let mut worker = Worker::start(&app, "w", &[]);

    let batches = || -> Vec<Vec<(u64, u64)>> {
        read_all(&out)
            .iter()
            .map(|r| serde_json::from_value(r.json()).unwrap())
            .collect()
    };
    let done = wait_until(DONE, || batches().iter().map(Vec::len).sum::<usize>() == 20);
    assert!(done, "{:?}\n{}", batches(), worker.log());
    let batches = batches();
    assert!(
        batches.iter().all(|b| !b.is_empty() && b.len() <= 5),
        "{batches:?}"
    );
    // The input was there before the worker: batches fill up.
    assert!(batches.iter().any(|b| b.len() == 5), "{batches:?}");
    let values: Vec<(u64, u64)> = batches.concat();
    let expected: Vec<(u64, u64)> = (0..20).map(|i| (i, i * 20)).collect();
    assert_eq!(
        values, expected,
        "even numbers times ten, numbered in order"
    );
    // The odd numbers, left out, are acknowledged too: the partition commits to its end.
    let committed = wait_until(DONE, || {
        common::all_committed(&common::partitions(&stats(&worker), &input), 40)
    });
    assert!(committed, "{}", stats(&worker));
    worker.stop();
}

#[test]
fn through_forwards_to_the_topic_and_continues_from_it() {
    needs_broker!();
    let app = unique("relay");
    let (input, out) = (format!("{app}-relay"), format!("{app}-relayed"));
    create_topic(&input, 4);
    create_topic(&out, 4);
    let values: Vec<(Value, Value)> = (0..10)
        .map(|i| (json!(i), json!(format!("{app}-{i}"))))
        .collect();
    produce_json(&input, &values);
    let mut worker = Worker::start(&app, "w", &[]);
    let reports = || -> Vec<Value> { read_all(&out).iter().map(|r| r.json()).collect() };
    let done = wait_until(DONE, || reports().len() >= 10);
    assert!(done, "{:?}\n{}", reports(), worker.log());
    worker.stop();
    let reports = reports();
    assert_eq!(reports.len(), 10, "each value once: {reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r["topic"] == format!("{app}-through")),
        "{reports:?}"
    );
}

#[test]
fn a_leader_timer_runs_on_one_worker_and_moves_when_it_stops() {
    needs_broker!();
    let app = unique("leader");
    let (beats, tasks) = (format!("{app}-heartbeats"), format!("{app}-leader-tasks"));
    create_topic(&beats, 1);
    create_topic(&tasks, 1);
    let env = [("TEST_HEARTBEAT", "1")];
    let mut workers = vec![
        Worker::start(&app, "first", &env),
        Worker::start(&app, "second", &env),
    ];
    let input = format!("{app}-track");
    assert!(
        wait_until(DONE, || workers.iter().all(|w| holds(w, &input))),
        "{}\n{}",
        workers[0].log(),
        workers[1].log()
    );
    let senders = |from: usize| -> Vec<String> {
        read_all(&beats)
            .iter()
            .skip(from)
            .map(|r| r.json()["worker"].as_str().unwrap().to_owned())
            .collect()
    };
    // The group is settled: from here on one worker leads.
    let settled = read_all(&beats).len();
    assert!(wait_until(DONE, || senders(settled).len() >= 8));
    let leaders: std::collections::BTreeSet<String> = senders(settled).into_iter().collect();
    assert_eq!(leaders.len(), 1, "one leader at a time: {leaders:?}");
    let leader = leaders.into_iter().next().unwrap();
    // Leadership may have moved when the second worker joined; the leader holds it now,
    // and the other gave it up if it ever had it.
    let index = if leader == "first" { 0 } else { 1 };
    let holds_leadership = |log: String| {
        let took = log.rfind("this worker is now the leader");
        let gave_up = log.rfind("this worker is no longer the leader");
        took.is_some_and(|t| gave_up.is_none_or(|g| g < t))
    };
    assert!(holds_leadership(workers[index].log()));
    assert!(!holds_leadership(workers[1 - index].log()));

    let mut stopped = workers.remove(index);
    stopped.stop();
    let after = read_all(&beats).len();
    let follower = if leader == "first" { "second" } else { "first" };
    let moved = wait_until(DONE, || {
        senders(after).iter().filter(|w| *w == follower).count() >= 3
    });
    assert!(moved, "{:?}\n{}", senders(after), workers[0].log());
    assert!(
        senders(after).iter().all(|w| w == follower),
        "{:?}",
        senders(after)
    );
    workers[0].stop();

    // The on_leader task ran once on each worker that became the leader: the first
    // leader, and the follower when it took over.
    let ran: Vec<String> = read_all(&tasks)
        .iter()
        .map(|r| r.json()["worker"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ran.contains(&leader) && ran.contains(&follower.to_owned()),
        "{ran:?}"
    );
    assert_eq!(ran.len(), 2, "once per worker: {ran:?}");
}

#[test]
fn a_crontab_runs_in_a_worker_at_the_start_of_its_minute() {
    needs_broker!();
    let app = unique("crontab");
    let out = format!("{app}-minutely");
    create_topic(&out, 1);
    let mut worker = Worker::start(&app, "w", &[("TEST_CRONTAB", "1")]);
    // "* * * * *": within a minute (and a little) of the worker being ready.
    let ran = wait_until(Duration::from_secs(80), || !read_all(&out).is_empty());
    assert!(ran, "{}", worker.log());
    worker.stop();
    let at = read_all(&out)[0].json()["at"].as_i64().unwrap();
    assert!(
        at % 60_000 < 5_000,
        "ran {} ms into its minute, not at its start",
        at % 60_000
    );
}

#[test]
fn a_take_batch_spanning_partitions_may_not_write_tables() {
    needs_broker!();
    let app = unique("tally");
    let (input, out) = (format!("{app}-tally"), format!("{app}-tallied"));
    create_topic(&input, 4);
    create_topic(&out, 1);
    // 40 numbers over the 4 partitions, there before the worker: a batch of 25 holds
    // events of several of them.
    let numbers: Vec<common::KeyValue> = (0..40u64)
        .map(|n| {
            (
                Some(n.to_string().into_bytes()),
                Some(n.to_string().into_bytes()),
            )
        })
        .collect();
    common::produce(&input, &numbers);
    let mut worker = Worker::start(&app, "w", &[]);
    let reports =
        || -> Vec<serde_json::Value> { read_all(&out).iter().map(|r| r.json()).collect() };
    let all = wait_until(DONE, || {
        reports()
            .iter()
            .filter_map(|r| r["size"].as_u64())
            .sum::<u64>()
            == 40
    });
    assert!(all, "{:?}\n{}", reports(), worker.log());
    let refused: Vec<String> = reports()
        .iter()
        .filter_map(|r| r["refused"].as_str().map(str::to_owned))
        .collect();
    assert!(!refused.is_empty(), "no batch was refused: {:?}", reports());
    assert!(
        refused
            .iter()
            .all(|e| e.contains("take() batch that holds events of partitions")),
        "{refused:?}"
    );
    worker.stop();
}

#[test]
fn a_held_event_is_committed_once_acknowledged_and_runs_again_if_it_never_is() {
    needs_broker!();
    let app = unique("hold");
    let topic = format!("{app}-hold_three");
    let mut worker = Worker::start(&app, "hold", &[]);
    worker.expect_log("worker ready", Duration::from_secs(60));
    let records: Vec<common::KeyValue> = (0..4)
        .map(|n| (None, Some(n.to_string().into_bytes())))
        .collect();
    common::produce_to(&topic, 0, &records);
    // The agent holds each event and acknowledges them three at a time: the fourth is
    // held, unacknowledged, when the worker stops.
    worker.expect_log("ACKED [0, 1, 2]", DONE);
    worker.expect_log("HELD 3", DONE);
    worker.stop(); // a warm shutdown commits exactly what was acknowledged
    assert_eq!(common::committed(&app, &topic, 4)[0], 3, "{}", worker.log());
    assert!(
        worker
            .log()
            .contains("a held event was dropped without ack()"),
        "{}",
        worker.log()
    );
    // So the next worker runs it again.
    let mut again = Worker::start(&app, "hold-again", &[]);
    again.expect_log("HELD 3", DONE);
    assert!(!again.log().contains("HELD 2"), "{}", again.log());
    again.stop();
}
