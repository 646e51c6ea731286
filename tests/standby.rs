//! Standby replicas against the real broker: a killed owner's partitions resume on the
//! worker keeping their standby, which replays only the changelog's tail, with every
//! count exact; placement follows the group through joins and leaves.
//!
//! Each test runs on a nisshi 0.8.1 of its own: its group coordinator evicts a killed
//! worker when its session ends, where tansu 0.6.0 may keep it as a ghost holding its
//! partitions (docs/RELIABILITY.md), and no failover would follow.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use common::{
    all_equal, count_topics, datadir,
    durable::{own_broker_on, Engine},
    http_get, kill_when_busy, produce_json, read_all, reported, stats, unique, wait_until, words,
    Worker,
};
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(60);
const DONE: Duration = Duration::from_secs(180);

/// The partitions of table `counts` this worker owns, from `/assignment`.
fn owned(worker: &Worker) -> BTreeSet<i64> {
    let assignment = http_get(&format!("{}/assignment", worker.web_url())).json();
    assignment["tables"]["counts"]
        .as_array()
        .map(|p| p.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// The standby partitions of table `counts` this worker keeps: partition -> lag.
fn standbys(worker: &Worker) -> BTreeMap<i64, i64> {
    stats(worker)["standbys"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|s| s["table"] == "counts")
                .map(|s| (s["partition"].as_i64().unwrap(), s["lag"].as_i64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// The records each recovery of `counts` replayed, from a worker's log.
fn recoveries(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("table partition recovered") && l.contains("table=\"counts\""))
        .map(|l| {
            let at = l.find("records=").unwrap() + "records=".len();
            l[at..].split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect()
}

/// Whether every partition of `counts` (of 4) has exactly one standby, on a worker
/// other than its owner, caught up.
fn one_warm_standby_each(workers: &[&Worker]) -> bool {
    let mut owners = BTreeMap::new();
    let mut kept: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, worker) in workers.iter().enumerate() {
        for p in owned(worker) {
            owners.insert(p, i);
        }
        for (p, lag) in standbys(worker) {
            if lag > 0 {
                return false;
            }
            kept.entry(p).or_default().push(i);
        }
    }
    owners.len() == 4
        && (0..4).all(|p| {
            kept.get(&p)
                .is_some_and(|k| k.len() == 1 && k[0] != owners[&p])
        })
}

#[test]
fn a_killed_owners_partitions_resume_on_its_standby_which_replays_only_the_tail() {
    needs_broker!();
    let engine = Engine::nisshi_in_memory();
    let (_broker, _address, _alone) = own_broker_on(engine.clone());
    let app = unique("standby");
    let (input, out) = count_topics(&app);
    // Slow events, so that B is still busy when it is killed; a short session, so that
    // the group notices soon.
    let mut env = vec![
        ("FAUST_STANDBY_REPLICAS", "1"),
        ("TEST_DELAY_MS", "30"),
        ("FAUST_SESSION_TIMEOUT", "6s"),
    ];
    env.extend_from_slice(engine.worker_env);
    let mut a = Worker::start_on(&app, "a", &datadir("standby-a"), &env);
    a.expect_log("worker ready", READY);
    let mut b = Worker::start_on(&app, "b", &datadir("standby-b"), &env);
    b.expect_log("worker ready", READY);
    a.expect_log("partitions revoked", READY);
    assert!(
        wait_until(READY, || one_warm_standby_each(&[&a, &b])),
        "no standby of each partition of counts on the other worker:\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let b_partitions = owned(&b);

    produce_json(&input, &words(40, 50));
    kill_when_busy(&mut b, "b", &out, 300);

    let done = wait_until(DONE, || all_equal(&reported(&out), 40, 50));
    let counts = reported(&out);
    assert!(
        done,
        "after B was killed, the counts reached {counts:?}\nA:\n{}",
        a.log()
    );
    a.stop();
    let log = a.log();
    for p in &b_partitions {
        let took_over = log.lines().any(|l| {
            l.contains("taking over from this worker's standby")
                && l.contains("table=\"counts\"")
                && l.split_whitespace().any(|w| w == format!("partition={p}"))
        });
        assert!(
            took_over,
            "A did not take partition {p} over from its standby:\n{log}"
        );
    }
    // A recovered nothing before B joined (empty changelogs): what it replayed is the
    // tail of B's partitions its standbys had not applied yet.
    let replayed: u64 = recoveries(&log).iter().sum();
    assert!(
        !log.contains("rebuilding it from the changelog"),
        "a store was rebuilt:\n{log}"
    );
    let changelog = read_all(&format!("{app}-counts-changelog"));
    let of_b = changelog
        .iter()
        .filter(|r| b_partitions.contains(&i64::from(r.partition)))
        .count() as u64;
    println!("the takeover replayed {replayed} of the {of_b} changelog records of B's partitions");
    assert!(
        of_b > 100 && replayed * 10 < of_b,
        "replayed {replayed} of {of_b} records:\n{log}"
    );
    // Exact: the standby applied nothing of events B had not committed.
    let last: HashMap<Vec<u8>, Value> = common::last_per_key(&changelog)
        .into_iter()
        .map(|(key, record)| (key, record.json()))
        .collect();
    assert_eq!(last.len(), 40);
    assert!(last.values().all(|v| *v == json!(50)), "{last:?}");
}

#[test]
fn standbys_are_placed_again_as_workers_join_and_leave() {
    needs_broker!();
    let engine = Engine::nisshi_in_memory();
    let (_broker, _address, _alone) = own_broker_on(engine.clone());
    let app = unique("placement");
    let (input, out) = count_topics(&app);
    let mut env = vec![("FAUST_STANDBY_REPLICAS", "1")];
    env.extend_from_slice(engine.worker_env);
    produce_json(&input, &words(20, 2));
    let mut a = Worker::start_on(&app, "a", &datadir("placement-a"), &env);
    a.expect_log("worker ready", READY);
    assert!(wait_until(DONE, || all_equal(&reported(&out), 20, 2)));
    // Alone, A keeps no standby: there is nobody to keep one for.
    assert!(standbys(&a).is_empty(), "{}", stats(&a));

    let mut b = Worker::start_on(&app, "b", &datadir("placement-b"), &env);
    b.expect_log("worker ready", READY);
    assert!(
        wait_until(READY, || one_warm_standby_each(&[&a, &b])),
        "after B joined:\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let mut c = Worker::start_on(&app, "c", &datadir("placement-c"), &env);
    c.expect_log("worker ready", READY);
    produce_json(&input, &words(20, 1));
    assert!(wait_until(DONE, || all_equal(&reported(&out), 20, 3)));
    assert!(
        wait_until(READY, || one_warm_standby_each(&[&a, &b, &c])),
        "after C joined:\nA:\n{}\nB:\n{}\nC:\n{}",
        a.log(),
        b.log(),
        c.log()
    );
    c.stop();
    produce_json(&input, &words(20, 1));
    assert!(wait_until(DONE, || all_equal(&reported(&out), 20, 4)));
    assert!(
        wait_until(READY, || one_warm_standby_each(&[&a, &b])),
        "after C left:\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    b.stop();
    a.stop();
}
