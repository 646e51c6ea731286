//! Helpers for integration tests: the broker started by `scripts/broker.sh`, topics,
//! producing and reading back with rdkafka, and worker processes of the test app.
#![allow(dead_code)] // each test binary uses its own subset

pub mod durable;
pub mod secured;

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    io::Write as _,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::Headers,
    producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer},
    types::RDKafkaErrorCode,
    ClientConfig, Message, Offset, TopicPartitionList,
};

/// The broker's `host:port`: `FAUST_TEST_BROKER`, or where `scripts/broker.sh` starts it.
pub fn broker() -> String {
    std::env::var("FAUST_TEST_BROKER").unwrap_or_else(|_| {
        let port = std::env::var("FAUST_TEST_BROKER_PORT").unwrap_or_else(|_| "19092".into());
        format!("127.0.0.1:{port}")
    })
}

/// The tansu binary `scripts/broker.sh install` builds (or `FAUST_TEST_TANSU`).
pub fn tansu_program() -> PathBuf {
    program("FAUST_TEST_TANSU", "tansu-0.6.0/bin/tansu")
}

/// The nisshi binary `scripts/broker.sh install` builds (or `FAUST_TEST_NISSHI`).
pub fn nisshi_program() -> PathBuf {
    program("FAUST_TEST_NISSHI", "nisshi-0.8.1/bin/nisshi")
}

fn program(variable: &str, cached: &str) -> PathBuf {
    std::env::var(variable).map_or_else(
        |_| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/faust-rs")
                .join(cached)
        },
        PathBuf::from,
    )
}

/// Tests of one binary that point the helpers at a broker of their own
/// (`FAUST_TEST_BROKER`) take turns: the guard is their turn.
pub fn own_broker_turn() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client of the test broker ([`broker`]), with the properties of `FAUST_TEST_CLIENT`
/// (`key=value;key=value`) for a test that points the helpers at a secured broker.
pub fn client() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker());
    let settings = std::env::var("FAUST_TEST_CLIENT").unwrap_or_default();
    for (key, value) in settings.split(';').filter_map(|kv| kv.split_once('=')) {
        config.set(key, value);
    }
    config
}

/// Whether the broker answers at [`broker`]. A test that needs it returns early
/// without it (see [`needs_broker!`]), saying how to run it, so that `cargo test` passes
/// on a fresh clone; `scripts/test.sh` sets `FAUST_TEST_REQUIRE_BROKER`, and then a
/// missing broker fails the test instead.
pub fn broker_available(test: &str) -> bool {
    let address = broker();
    let reachable = address
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
    if reachable {
        return true;
    }
    if std::env::var_os("FAUST_TEST_REQUIRE_BROKER").is_some() {
        panic!("{test}: no broker answers at {address}; scripts/test.sh starts one (scripts/broker.sh start)");
    }
    // Straight to stderr: the test harness would hold back an eprintln! of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: no broker at {address}; run it with scripts/test.sh, which starts one"
    );
    false
}

/// The python of a virtualenv with faust-streaming (`FAUST_TEST_PYTHON`, which
/// `scripts/test.sh` sets from `bench/python/setup.sh`), for tests that run a real
/// Python Faust worker. Without it such a test is skipped, saying how to run it, or
/// fails where `scripts/test.sh` requires everything.
pub fn python_faust(test: &str) -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("FAUST_TEST_PYTHON") {
        return Some(PathBuf::from(python));
    }
    if std::env::var_os("FAUST_TEST_REQUIRE_BROKER").is_some() {
        panic!(
            "{test}: FAUST_TEST_PYTHON is not set; scripts/test.sh sets it (bench/python/setup.sh)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: no Python Faust; run it with scripts/test.sh, which installs one"
    );
    None
}

/// Returns from the calling test when no broker runs (see [`broker_available`]).
#[macro_export]
macro_rules! needs_broker {
    () => {
        // The test's own name: the path of a fn declared in it, less the fn.
        fn here() {}
        let here = std::any::type_name_of_val(&here);
        if !common::broker_available(here.strip_suffix("::here").unwrap_or(here)) {
            return;
        }
    };
}

/// Where the tests' worker logs and datadirs go (`scripts/test.sh` empties it first).
pub fn scratch() -> PathBuf {
    std::env::temp_dir().join("faust-rs-tests")
}

/// A name no earlier run used, so tests never share topics or consumer groups.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// How many replicas each partition of `topic` has.
pub fn replicas(topic: &str) -> Vec<usize> {
    let consumer: BaseConsumer = client().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .collect()
}

/// Whether the broker knows the topic.
pub fn topic_exists(topic: &str) -> bool {
    let consumer: BaseConsumer = client().create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    metadata.topics().iter().any(|t| t.name() == topic)
}

pub fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]);
}

/// [`create_topic`] with topic settings (`cleanup.policy`, ...).
pub fn create_topic_with(name: &str, partitions: i32, settings: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
    let topic = settings.iter().fold(
        NewTopic::new(name, partitions, TopicReplication::Fixed(1)),
        |topic, (key, value)| topic.set(key, value),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = runtime()
        .block_on(admin.create_topics([&topic], &options))
        .unwrap_or_else(|e| panic!("cannot create topic {name} at {}: {e}; is the broker running (scripts/broker.sh start)?", broker()));
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("creating {topic}: {code}"),
        }
    }
}

/// A topic's setting, as the broker describes it.
pub fn topic_setting(name: &str, setting: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
    let described = runtime()
        .block_on(admin.describe_configs(
            [&rdkafka::admin::ResourceSpecifier::Topic(name)],
            &AdminOptions::new(),
        ))
        .unwrap_or_else(|e| panic!("describing {name}: {e}"));
    let resource = described[0]
        .as_ref()
        .unwrap_or_else(|e| panic!("describing {name}: {e}"));
    resource.get(setting).and_then(|entry| entry.value.clone())
}

/// A record to produce: optional key and value bytes.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A record to produce with its timestamp (milliseconds since the epoch), if given.
pub type TimedKeyValue = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

/// Sends `(key, value)` records and waits for every delivery.
///
/// Each record goes in a batch of its own: tansu 0.6.0 answers a fetch from an offset
/// inside a record batch with the *next* batch, silently skipping the rest of the batch
/// (real Kafka returns the batch and the client skips ahead). A worker resuming from a
/// committed offset would then skip records, so inputs here must not share batches.
pub fn produce(topic: &str, records: &[KeyValue]) {
    let records: Vec<_> = records
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), None))
        .collect();
    produce_timed(topic, &records);
}

/// [`produce`] with an optional timestamp (milliseconds since the epoch) per record.
pub fn produce_timed(topic: &str, records: &[TimedKeyValue]) {
    produce_into(topic, None, records);
}

/// [`produce`] into one partition.
pub fn produce_to(topic: &str, partition: i32, records: &[KeyValue]) {
    let records: Vec<_> = records
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), None))
        .collect();
    produce_into(topic, Some(partition), &records);
}

fn produce_into(topic: &str, partition: Option<i32>, records: &[TimedKeyValue]) {
    let producer: ThreadedProducer<DefaultProducerContext> = client()
        .set("partitioner", "murmur2_random")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    for (key, value, timestamp) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(timestamp) = timestamp {
            record = record.timestamp(*timestamp);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    // Generous: on a busy machine the broker may be slow to take a batch of records.
    producer.flush(Duration::from_secs(180)).unwrap();
    assert_eq!(
        producer.in_flight_count(),
        0,
        "undelivered messages to {topic}"
    );
}

/// A key as `faust::send`, Python Faust and Java's `StringSerializer` write it: a string
/// as its UTF-8 text, anything else as JSON.
pub fn key_bytes(key: &serde_json::Value) -> Vec<u8> {
    match key {
        serde_json::Value::String(text) => text.as_bytes().to_vec(),
        other => serde_json::to_vec(other).unwrap(),
    }
}

/// JSON values with keys as [`key_bytes`] writes them, each with a timestamp.
pub fn produce_json_at(topic: &str, records: &[(serde_json::Value, serde_json::Value, i64)]) {
    let bytes: Vec<_> = records
        .iter()
        .map(|(k, v, t)| {
            (
                Some(key_bytes(k)),
                Some(serde_json::to_vec(v).unwrap()),
                Some(*t),
            )
        })
        .collect();
    produce_timed(topic, &bytes);
}

/// JSON values with keys as [`key_bytes`] writes them.
pub fn produce_json(topic: &str, records: &[(serde_json::Value, serde_json::Value)]) {
    let bytes: Vec<_> = records
        .iter()
        .map(|(k, v)| (Some(key_bytes(k)), Some(serde_json::to_vec(v).unwrap())))
        .collect();
    produce(topic, &bytes);
}

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header name -> value (lossy UTF-8).
    pub headers: HashMap<String, String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or(b"null")).unwrap()
    }
}

/// Each key's last record among `records`: a changelog's view of its table (a tombstone
/// is a record without a value).
pub fn last_per_key(records: &[Record]) -> BTreeMap<Vec<u8>, &Record> {
    let keyed = records.iter().map(|r| {
        let key = r.key.clone().expect("a changelog record has a key");
        (key, r)
    });
    keyed.collect()
}

/// A fetch wait at which nisshi 0.8.1's memory engine reads long partitions of small
/// batches (all 80,000 one-record batches of four partitions in 0.7 s, where 10 ms read
/// none): what the soak's workers are given too (`consumer.fetch.wait.max.ms`).
pub const NISSHI_FETCH_WAIT: &str = "100";

/// The longest [`read_all`] reads one topic.
const LONG_READ: Duration = Duration::from_secs(300);

/// Every record of `topic`, read to the end each partition had when reached. The end
/// comes from fetch responses (partition EOF), not ListOffsets, which tansu gets wrong.
pub fn read_all(topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = client()
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // tansu answers a fetch only when the wait is over, so keep it short (a topic
        // written to all the time, heartbeats, reaches its end only between writes); but
        // nisshi's memory engine lists every batch of a partition within half the wait
        // and answers nothing when that runs out: at 10 ms a partition of 20,000
        // one-record batches reads nothing, from its start or its end (NISSHI_FETCH_WAIT).
        .set("fetch.wait.max.ms", NISSHI_FETCH_WAIT)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata for {topic}: {e}"));
    let partitions = metadata.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let mut at_end = vec![false; partitions as usize];
    // A slow read is fine (a busy machine, a broker on SQLite); one that stops is not.
    let (started, mut moved) = (Instant::now(), Instant::now());
    while at_end.iter().any(|e| !e) {
        if moved.elapsed() > Duration::from_secs(30) || started.elapsed() > LONG_READ {
            // Where each partition stands, to tell a stopped fetch from a slow one.
            let stand: Vec<String> = (0..partitions)
                .map(|p| {
                    let read = records.iter().filter(|r: &&Record| r.partition == p);
                    let (count, last) = read.fold((0, -1), |(n, _), r| (n + 1, r.offset));
                    let marks = consumer.fetch_watermarks(topic, p, Duration::from_secs(5));
                    format!(
                        "p{p}: {count} read, last offset {last}, at end {}, watermarks {marks:?}",
                        at_end[p as usize]
                    )
                })
                .collect();
            panic!(
                "reading {topic}: nothing new for 30 s, or not at its end after {LONG_READ:?} \
                 ({} records read; {})",
                records.len(),
                stand.join("; ")
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                moved = Instant::now();
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    let value = h.value.map(String::from_utf8_lossy);
                                    (h.key.to_owned(), value.unwrap_or_default().into_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end[p as usize] = true;
                moved = Instant::now();
            }
            // librdkafka reconnects by itself (a broker just restarted): within the deadline.
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
            ))) => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}

/// A fresh directory under [`scratch`], for a worker's datadir.
pub fn datadir(name: &str) -> PathBuf {
    let dir = scratch().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The highest count the test app's `count` agent reported per word on `out`.
pub fn reported(out: &str) -> HashMap<String, u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for record in read_all(out) {
        let value = record.json();
        let count = counts
            .entry(value["word"].as_str().unwrap().to_owned())
            .or_default();
        *count = (*count).max(value["count"].as_u64().unwrap());
    }
    counts
}

/// Polls `condition` every 200 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An HTTP response: status, headers (names lowercase) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A plain HTTP/1.1 GET of `url` (`http://host:port/path`), without following redirects.
pub fn http_get(url: &str) -> Response {
    http_get_with(url, &[])
}

/// [`http_get`] with extra request headers.
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> Response {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("cannot connect to {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// What `track` reported: n -> the workers that processed it (once per processing).
pub fn processed(out: &str) -> BTreeMap<u64, Vec<String>> {
    let mut seen: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for record in read_all(out) {
        let value = record.json();
        seen.entry(value["n"].as_u64().unwrap())
            .or_default()
            .push(value["worker"].as_str().unwrap().to_owned());
    }
    seen
}

/// Each word `w{i}` (i < words) `times` times, keyed by the word, interleaved.
pub fn words(words: usize, times: usize) -> Vec<(serde_json::Value, serde_json::Value)> {
    (0..times)
        .flat_map(|_| {
            (0..words).map(|i| {
                (
                    serde_json::json!(format!("w{i}")),
                    serde_json::json!(format!("w{i}")),
                )
            })
        })
        .collect()
}

/// SIGKILLs `worker` once it has reported (as `name`) at least `events` to `out`.
pub fn kill_when_busy(worker: &mut Worker, name: &str, out: &str, events: usize) {
    let busy = wait_until(Duration::from_secs(120), || {
        let reported = read_all(out);
        reported
            .iter()
            .filter(|r| r.json()["worker"] == name)
            .count()
            >= events
    });
    assert!(busy, "{name} never got going:\n{}", worker.log());
    worker.signal("KILL");
    worker.wait_exit(Duration::from_secs(10));
}

/// Whether `counts` holds `words` words, each counted `expected` times.
pub fn all_equal(counts: &HashMap<String, u64>, words: usize, expected: u64) -> bool {
    counts.len() == words && counts.values().all(|&c| c == expected)
}

pub fn items(range: std::ops::Range<u64>) -> Vec<(serde_json::Value, serde_json::Value)> {
    range
        .map(|n| (serde_json::json!(n), serde_json::json!({ "n": n })))
        .collect()
}

/// The app's topics, created up front so records can be produced before a worker runs.
pub fn track_topics(app: &str) -> (String, String) {
    let (input, out) = (format!("{app}-track"), format!("{app}-out"));
    create_topic(&input, 4);
    create_topic(&out, 4);
    (input, out)
}

/// `count`'s topics (input and report), created up front.
pub fn count_topics(app: &str) -> (String, String) {
    let (input, out) = (format!("{app}-count"), format!("{app}-counted"));
    create_topic(&input, 4);
    create_topic(&out, 4);
    (input, out)
}

/// Whether `partitions` (from [`partitions`]) are all committed to their end, `total`
/// messages in all.
pub fn all_committed(partitions: &[serde_json::Value], total: u64) -> bool {
    !partitions.is_empty()
        && partitions.iter().all(|p| p["lag"] == 0)
        && partitions
            .iter()
            .map(|p| p["committed_offset"].as_u64().unwrap_or(0))
            .sum::<u64>()
            == total
}

/// The offsets `group` has committed in `topic`'s partitions `0..partitions` (0 where
/// none, or when the broker does not answer).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = client().set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let Ok(list) = consumer.committed_offsets(list, Duration::from_secs(10)) else {
        return vec![0; partitions as usize];
    };
    list.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .collect()
}

/// The end (high watermark) of `topic`'s partitions `0..partitions`.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = client().create().unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_or(-1, |(_, high)| high)
        })
        .collect()
}

/// A worker's `/stats`.
pub fn stats(worker: &Worker) -> serde_json::Value {
    http_get(&format!("{}/stats", worker.web_url())).json()
}

/// The figures of one agent in `/stats`.
pub fn agent(stats: &serde_json::Value, name: &str) -> serde_json::Value {
    stats["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no agent {name} in {stats}"))
}

/// The partitions of `topic` in `/stats`.
pub fn partitions(stats: &serde_json::Value, topic: &str) -> Vec<serde_json::Value> {
    stats["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["topic"] == topic)
        .cloned()
        .collect()
}

/// A worker process of the test app (or of another binary), logging to a file.
pub struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// `faust-test-app worker` with the given app id, worker name and environment.
    pub fn start(app_id: &str, name: &str, env: &[(&str, &str)]) -> Worker {
        let mut all: HashMap<&str, &str> = HashMap::from([
            ("FAUST_ID", app_id),
            ("TEST_WORKER", name),
            ("FAUST_TOPIC_PARTITIONS", "4"),
            ("FAUST_COMMIT_INTERVAL", "200ms"),
        ]);
        all.extend(env.iter().copied());
        let broker = broker();
        all.entry("FAUST_BROKER").or_insert(&broker);
        // Each worker gets its own datadir unless the test shares one on purpose.
        let datadir = scratch().join(unique(&format!("{name}-data")));
        let datadir = datadir.to_string_lossy().into_owned();
        all.entry("FAUST_DATADIR").or_insert(&datadir);
        Worker::spawn(
            PathBuf::from(env!("CARGO_BIN_EXE_faust-test-app")),
            &["worker"],
            &all,
            name,
        )
    }

    /// [`Worker::start`] with its own `datadir` (kept across restarts by the caller).
    pub fn start_on(
        app_id: &str,
        name: &str,
        datadir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Worker {
        let dir = datadir.to_str().unwrap();
        let mut all = vec![("FAUST_DATADIR", dir)];
        all.extend_from_slice(env);
        Worker::start(app_id, name, &all)
    }

    /// Starts `program`; its web server (if any) listens on a free port of 127.0.0.1
    /// unless `env` says otherwise (see [`Worker::web_url`]).
    pub fn spawn(program: PathBuf, args: &[&str], env: &HashMap<&str, &str>, name: &str) -> Worker {
        let dir = scratch();
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{}.log", unique(name)));
        let file = File::create(&log).unwrap();
        let mut all: HashMap<&str, &str> = HashMap::from([
            ("FAUST_WEB_PORT", "0"),
            ("FAUST_WEB_BIND", "127.0.0.1"),
            ("FAUST_WEB_HOST", "127.0.0.1"),
        ]);
        all.extend(env.iter().map(|(k, v)| (*k, *v)));
        let child = Command::new(&program)
            .args(args)
            .envs(all.iter())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Worker { child, log }
    }

    /// The web server's URL, from the worker's log line saying it listens.
    pub fn web_url(&self) -> String {
        self.expect_log("web server listening", Duration::from_secs(30));
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("web server listening"))
            .unwrap();
        let url = line.split("url=").nth(1).expect("the line names the url");
        url.split_whitespace().next().unwrap().to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log if it does not.
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        if !wait_until(timeout, || self.log().contains(needle)) {
            panic!(
                "worker log never said {needle:?} within {timeout:?}:\n{}",
                self.log()
            );
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit; panics with the log if it does not in time.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("worker did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then expects a clean exit.
    pub fn stop(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(60));
        assert!(
            status.success(),
            "worker exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain consumer in `group` reading `topic`, polling on a thread of its own: its
/// joining makes the group rebalance. While held, it stops polling, so it takes no
/// part in a rebalance (it neither gives up its partitions nor rejoins). It leaves the
/// group when dropped.
pub struct Member {
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    pub fn join(group: &str, topics: &[&str]) -> Member {
        let consumer: BaseConsumer = client()
            .set("group.id", group)
            // It reads, but never commits: what it holds does not progress.
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(topics).unwrap();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (polling, holding) = (running.clone(), held.clone());
        let thread = std::thread::spawn(move || {
            while polling.load(Ordering::SeqCst) {
                if holding.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                } else {
                    let _ = consumer.poll(Duration::from_millis(100));
                }
            }
        });
        Member {
            running,
            held,
            thread: Some(thread),
        }
    }

    /// Stops (`true`) or resumes its polling.
    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An example's program: cargo builds examples next to the test binaries
/// (target/<profile>/examples/).
pub fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let example = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        example.exists(),
        "{} missing: run the tests with cargo test/nextest, which build examples",
        example.display()
    );
    example
}
