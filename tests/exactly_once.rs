//! Exact counts across internal topics through crashes (README, "Processing
//! guarantees"): the word count example (posts split, the words repartitioned by word
//! and counted) and a three-stage pipeline of the test app (two repartitions) are each
//! SIGKILLed 30 times mid-stream while posts keep coming, and end with every count
//! exact. A post split again after a kill sends its words again; the counting agent
//! knows them by their origin and skips them.

mod common;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{
    create_topic,
    durable::{own_broker_on, Engine},
    read_all, unique, wait_until, Worker,
};

const KILLS: u32 = 30;
const PARTITIONS: i32 = 4;
const READY: Duration = Duration::from_secs(120);
const WORDS: [&str; 12] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima",
];

/// A small xorshift generator: the test's randomness, repeatable from its seed.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let seed = std::env::var("FAUST_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("seed {seed} (FAUST_TEST_SEED repeats it)");
        Random(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Sends posts of 3 to 8 words to `topic`, 20 every 50 ms, until `stop`.
fn feed(topic: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        while !stop.load(Ordering::SeqCst) {
            let posts: Vec<common::KeyValue> = (0..20)
                .map(|_| {
                    let words: Vec<&str> = (0..3 + random.below(6))
                        .map(|_| WORDS[random.below(WORDS.len() as u64) as usize])
                        .collect();
                    let post = serde_json::to_vec(&words.join(" ")).unwrap();
                    (None, Some(post))
                })
                .collect();
            common::produce(&topic, &posts);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Starts a worker (the `n`th life of one member) with `start`, lets it work for a
/// random while once ready, and kills it, `KILLS` times, while `posts` are fed; then
/// stops feeding and returns the last life, started and ready.
fn crash_repeatedly(posts: &str, start: impl Fn(u32) -> Worker) -> Worker {
    let mut random = Random::seeded();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(posts.to_owned(), stop.clone());
    for life in 0..KILLS {
        let mut worker = start(life);
        worker.expect_log("worker ready", READY);
        std::thread::sleep(Duration::from_millis(200 + random.below(1800)));
        worker.signal("KILL");
        worker.wait_exit(Duration::from_secs(30));
    }
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let last = start(KILLS);
    last.expect_log("worker ready", READY);
    last
}

/// Waits until `worker` has committed every record of `topics` (its `/stats`: the lag
/// of each partition, from the fetches' high watermarks; tansu 0.6.0's ListOffsets
/// answers ends below the committed offsets), then stops it.
fn finish(mut worker: Worker, topics: &[&str]) {
    let done = wait_until(Duration::from_secs(300), || {
        let stats = common::stats(&worker);
        topics.iter().all(|topic| {
            let partitions = common::partitions(&stats, topic);
            partitions.len() == PARTITIONS as usize && partitions.iter().all(|p| p["lag"] == 0)
        })
    });
    assert!(done, "not everything was committed:\n{}", worker.log());
    worker.stop();
}

/// A table's last value per key in its changelog (its origin marks left out).
fn table(changelog: &str) -> BTreeMap<String, u64> {
    let mut last = BTreeMap::new();
    for record in read_all(changelog) {
        let key = record.key.as_deref().unwrap_or_default();
        if key.first() == Some(&0) {
            continue; // an origin mark, not a count
        }
        let key: String = serde_json::from_slice(key).unwrap();
        last.insert(key, record.json().as_u64().unwrap_or(0));
    }
    last
}

/// The posts of `topic`, as text.
fn posts_in(topic: &str) -> Vec<String> {
    read_all(topic)
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect()
}

/// The table in `changelog` against the `expected` counts: a line for the log, or the
/// counts that differ, as `key: counted (expected)`.
fn verdict(
    run: &str,
    what: &str,
    changelog: &str,
    expected: &BTreeMap<String, u64>,
    started: Instant,
) -> Result<String, Vec<String>> {
    let counted = table(changelog);
    let keys: std::collections::BTreeSet<&String> = counted.keys().chain(expected.keys()).collect();
    let wrong: Vec<String> = keys
        .into_iter()
        .filter(|k| counted.get(*k) != expected.get(*k))
        .map(|k| format!("{k}: {:?} ({:?})", counted.get(k), expected.get(k)))
        .collect();
    if !wrong.is_empty() {
        return Err(wrong);
    }
    Ok(format!(
        "{run}: {KILLS} kills, {} {what} counted exactly in {:?}",
        expected.values().sum::<u64>(),
        started.elapsed()
    ))
}

/// The word count example under `KILLS` kills: its wrong counts, or a line for the log.
fn word_count(worker_env: &[(&str, &str)]) -> Result<String, Vec<String>> {
    let started = Instant::now();
    let app = unique("exact-words");
    // The example reads `posts`.
    create_topic("posts", PARTITIONS);
    let datadir = common::scratch().join(format!("{app}-data"));
    let datadir = datadir.to_str().unwrap();
    let broker = common::broker();
    let mut env = std::collections::HashMap::from([
        ("FAUST_BROKER", broker.as_str()),
        ("FAUST_ID", app.as_str()),
        ("FAUST_DATADIR", datadir),
        ("FAUST_COMMIT_INTERVAL", "500ms"),
        // A restarted member takes its old place at once.
        ("FAUST_INSTANCE_ID", "words"),
        ("FAUST_SESSION_TIMEOUT", "45s"),
    ]);
    env.extend(worker_env.iter().copied());
    let start = |life: u32| {
        let name = format!("words-{life}");
        Worker::spawn(common::example("word_count"), &["worker"], &env, &name)
    };
    let last = crash_repeatedly("posts", start);
    let words = format!("{app}-count_words");
    finish(last, &["posts", &words]);

    let mut expected = BTreeMap::new();
    for post in posts_in("posts") {
        // The example's split: runs of letters and digits, lower-cased.
        for word in post
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *expected.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    let changelog = format!("{app}-word_counts-changelog");
    verdict("word count", "words", &changelog, &expected, started)
}

/// The three-stage pipeline of the test app under `KILLS` kills.
fn three_stages(worker_env: &[(&str, &str)]) -> Result<String, Vec<String>> {
    let started = Instant::now();
    let app = unique("exact-chain");
    let posts = format!("{app}-chain-posts");
    create_topic(&posts, PARTITIONS);
    let datadir = common::scratch().join(format!("{app}-data"));
    let mut env = vec![
        ("FAUST_COMMIT_INTERVAL", "500ms"),
        ("FAUST_INSTANCE_ID", "chain"),
        ("FAUST_SESSION_TIMEOUT", "45s"),
    ];
    env.extend_from_slice(worker_env);
    let start = |life: u32| Worker::start_on(&app, &format!("chain-{life}"), &datadir, &env);
    let last = crash_repeatedly(&posts, start);
    let (initials, counts) = (
        format!("{app}-chain_initials"),
        format!("{app}-chain_count"),
    );
    finish(last, &[&posts, &initials, &counts]);

    let mut expected = BTreeMap::new();
    for post in posts_in(&posts) {
        for word in post.split_whitespace() {
            *expected.entry(word[..1].to_owned()).or_insert(0) += 1;
        }
    }
    let changelog = format!("{app}-initials-changelog");
    verdict("three stages", "initials", &changelog, &expected, started)
}

/// Both at once, on a nisshi of their own: tansu 0.6.0 answers a fetch from inside a
/// record batch with the next batch (README, Brokers), so a worker restarted at its
/// committed offset in an internal topic (whose records the producer batches) would
/// skip records there, whatever the worker does.
#[test]
fn counts_across_internal_topics_stay_exact_through_thirty_kills() {
    needs_broker!();
    let engine = Engine::nisshi_in_memory();
    let (_broker, _address, _alone) = own_broker_on(engine.clone());
    let (words, chain) = std::thread::scope(|s| {
        let words = s.spawn(|| word_count(engine.worker_env));
        let chain = s.spawn(|| three_stages(engine.worker_env));
        (words.join().unwrap(), chain.join().unwrap())
    });
    for line in [&words, &chain].into_iter().flatten() {
        println!("{line}");
    }
    assert!(
        words.is_ok(),
        "the word count example: wrong counts {words:?}"
    );
    assert!(
        chain.is_ok(),
        "the three-stage pipeline: wrong counts {chain:?}"
    );
}
