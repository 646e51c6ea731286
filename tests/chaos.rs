//! The chaos test, after Faust's own tabletest: each of 8 partitions carries the
//! sequence 0..N; the `sequence` agent checks every value follows the previous one and
//! keeps per-partition sums in a RocksDB table. While it runs, one worker is killed
//! (SIGKILL) and restarted, another stopped (SIGTERM) and restarted, and a fourth joins
//! and leaves. At the end every sum must be exact, no worker may have seen a gap or a
//! repeat, and the changelog must hold each partition's running sums in order.

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{broker, create_topic, read_all, unique, Worker};
use rdkafka::{
    producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer},
    ClientConfig,
};
use serde_json::Value;

const PARTITIONS: i32 = 8;
/// Values per partition.
const N: u64 = 20_000;
const TOTAL: i64 = PARTITIONS as i64 * N as i64;
const LONG: Duration = Duration::from_secs(300);

/// Writes 0..N to every partition, one record per batch (tansu skips the rest of a
/// batch when a consumer resumes inside it).
fn produce_sequences(topic: String, queued: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", broker())
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            // A retried request must not write a value twice (a slow broker under load
            // times requests out): that would look like the worker processing it twice.
            .set("enable.idempotence", "true")
            // A short queue: the loop below waits on it, so the final flush is short too,
            // however slow the broker is on a busy machine.
            .set("queue.buffering.max.messages", "10000")
            .set("message.timeout.ms", "0")
            .create()
            .unwrap();
        for value in 0..N {
            for partition in 0..PARTITIONS {
                let key = partition.to_string();
                let payload = value.to_string();
                let mut record = BaseRecord::<str, str>::to(&topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&payload);
                loop {
                    match producer.send(record) {
                        Ok(()) => {
                            queued.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err((_, back)) => {
                            record = back;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            }
        }
        producer.flush(LONG).unwrap();
    })
}

/// A worker of the app; a restarted one (same `slot`) keeps its datadir, so a killed
/// worker's store comes back with the effects of events it never committed.
fn start(app: &str, name: &str, slot: &str, static_member: bool) -> Worker {
    let datadir = common::scratch().join(format!("{app}-{slot}-data"));
    let datadir = datadir.to_str().unwrap();
    let mut env = vec![
        ("FAUST_TOPIC_PARTITIONS", "8"),
        ("FAUST_COMMIT_INTERVAL", "2s"),
        ("FAUST_DATADIR", datadir),
    ];
    if static_member {
        // A restarted member takes its old place well before the session ends: tansu
        // 0.6.0 never completes a rebalance whose leader it evicted (README, Brokers).
        env.push(("FAUST_INSTANCE_ID", slot));
        env.push(("FAUST_SESSION_TIMEOUT", "45s"));
    }
    Worker::start(app, name, &env)
}

#[test]
fn sums_stay_exact_through_crashes_restarts_and_rebalances() {
    needs_broker!();
    let started = Instant::now();
    let app = unique("chaos");
    let input = format!("{app}-sequence");
    create_topic(&input, PARTITIONS);
    // Waits for the group to commit `share` of the input. On a busy machine the test's
    // producer (one record per request) can be the slow part: only a commit total that
    // stands still for LONG, while input waits, is a stall.
    let queued = Arc::new(AtomicU64::new(0));
    let progress = |share: f64| {
        let target = (TOTAL as f64 * share) as i64;
        let (mut best, mut moved) = (-1, Instant::now());
        loop {
            let done: i64 = common::committed(&app, &input, PARTITIONS).iter().sum();
            if done >= target {
                return;
            }
            if done > best {
                (best, moved) = (done, Instant::now());
            }
            assert!(
                moved.elapsed() < LONG,
                "processing stalled: {best} of {TOTAL} committed (waiting for {target}) and no \
                 commit for {LONG:?}; the producer had queued {}",
                queued.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };

    // Static member ids let a restarted worker take its place back at once, without a
    // rebalance: with dynamic members coming and going tansu was seen to hand a partition
    // to a new member before the old one had given it up (two owners at once, which
    // Kafka's generations prevent), and to leave a rebalance without a leader after
    // evicting one. The fourth worker is dynamic, so it leaves the group when stopped.
    let mut workers: HashMap<&str, Worker> = HashMap::new();
    let mut logs = Vec::new();
    for name in ["w1", "w2", "w3"] {
        workers.insert(name, start(&app, name, name, true));
    }
    for worker in workers.values() {
        worker.expect_log("worker ready", LONG);
    }
    let producing = Instant::now();
    let producer = produce_sequences(input.clone(), queued.clone());

    progress(0.15);
    // Half a commit interval after a commit: the worker killed now has processed
    // events it has not committed, and its store (RocksDB without a write-ahead log)
    // loses what it wrote since its last flush.
    std::thread::sleep(Duration::from_secs(1));
    let mut killed = workers.remove("w1").unwrap();
    killed.signal("KILL");
    killed.wait_exit(LONG);
    logs.push(killed.log());
    workers.insert("w1", start(&app, "w1-again", "w1", true));

    progress(0.40);
    let mut stopped = workers.remove("w2").unwrap();
    stopped.stop();
    logs.push(stopped.log());
    workers.insert("w2", start(&app, "w2-again", "w2", true));

    progress(0.60);
    let fourth = start(&app, "w4", "w4", false);
    fourth.expect_log("partitions assigned", LONG);
    workers.insert("w4", fourth);

    progress(0.80);
    let mut fourth = workers.remove("w4").unwrap();
    fourth.stop();
    logs.push(fourth.log());

    producer.join().unwrap();
    let produced_in = producing.elapsed();
    progress(1.0);
    let mut restarted_log = String::new();
    for (slot, mut worker) in workers.drain() {
        worker.stop();
        if slot == "w1" {
            restarted_log = worker.log();
        }
        logs.push(worker.log());
    }
    // The restarted worker rebuilt its partitions from the changelog: the kill hit
    // state that only recovery could bring back.
    let recovered: u64 = restarted_log
        .lines()
        .filter(|l| l.contains("table partition recovered") && l.contains("table=\"sums\""))
        .filter_map(|l| {
            l.split("records=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        recovered > 0,
        "the restarted worker recovered nothing:\n{restarted_log}"
    );

    // The input holds each value once per partition, so a repeat below is the worker's.
    let mut seen: HashMap<i32, u64> = HashMap::new();
    for record in read_all(&input) {
        *seen.entry(record.partition).or_default() += 1;
    }
    assert!(
        seen.values().all(|&n| n == N),
        "the input itself holds values twice: {seen:?}"
    );

    // No worker saw a value out of order: state and offsets always agreed.
    for log in &logs {
        let broken: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("sequence gap") || l.starts_with("sequence repeat"))
            .collect();
        assert!(broken.is_empty(), "{broken:?}");
    }

    // The changelog holds each partition's running sums: consistent records (the sum of
    // every value before `next`, so none was skipped or counted twice), further along
    // than the last one (writes between commits are coalesced), except where a killed
    // worker's unfinished work was dropped by recovery and done again (at most once per
    // partition).
    let mut last: HashMap<i32, (u64, u64)> = HashMap::new();
    let mut rewinds: HashMap<i32, u32> = HashMap::new();
    for record in read_all(&format!("{app}-sums-changelog")) {
        let partition: i32 = serde_json::from_slice(record.key.as_deref().unwrap()).unwrap();
        let value: Value = record.json();
        let (next, sum) = (
            value["next"].as_u64().unwrap(),
            value["sum"].as_u64().unwrap(),
        );
        assert_eq!(sum, next * (next - 1) / 2, "partition {partition}: {value}");
        if let Some(&(previous, _)) = last.get(&partition) {
            if next <= previous {
                *rewinds.entry(partition).or_default() += 1;
            }
        }
        last.insert(partition, (next, sum));
    }
    for partition in 0..PARTITIONS {
        assert_eq!(
            last.get(&partition),
            Some(&(N, N * (N - 1) / 2)),
            "partition {partition}"
        );
    }
    assert!(rewinds.values().all(|&r| r <= 1), "{rewinds:?}");

    let rebalances: usize = logs
        .iter()
        .map(|l| l.matches("partitions assigned").count())
        .sum();
    let rebuilt: usize = logs
        .iter()
        .map(|l| l.matches("which the group has not committed").count())
        .sum();
    println!(
        "chaos: {TOTAL} events (produced in {produced_in:.0?}), {rebalances} assignments seen \
         by the workers, {recovered} changelog records replayed by the restarted worker, \
         {rebuilt} stores found holding uncommitted effects, rewound partitions: \
         {rewinds:?}, finished in {:.0?}",
        started.elapsed()
    );
}
