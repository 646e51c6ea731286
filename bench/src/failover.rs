//! Failover: three workers count 1,000,000 distinct words into a table over 8
//! partitions; then, while words keep coming, one of them is SIGKILLed. Reported: how
//! long each of its partitions stands still (from the kill until the group's committed
//! offset on it moves again) and how many changelog records the new owners replay for
//! them, with standby replicas off and on.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rdkafka::consumer::Consumer as _;
use serde_json::{json, Value};

use super::{
    committed, consumer, create_topics_with, field, preload, producer, send, Bench, Result,
    WorkerProcess,
};

const KEYS: u64 = 1_000_000;
const PARTITIONS: i32 = 8;
const WORKERS: usize = 3;
/// Words per second while the kill happens.
const RATE: u64 = 2_000;
const SESSION_TIMEOUT: &str = "10s";
const SETTLE: Duration = Duration::from_secs(900);

impl Bench {
    pub(crate) fn failover(&mut self) -> Result<Value> {
        let off = self.failover_run(0)?;
        let on = self.failover_run(1)?;
        Ok(json!({
            "scenario": "failover", "broker": self.broker_name(), "keys": KEYS,
            "partitions": PARTITIONS, "workers": WORKERS, "session_timeout": SESSION_TIMEOUT,
            "standbys_off": off, "standbys_on": on,
        }))
    }

    fn failover_run(&mut self, standbys: usize) -> Result<Value> {
        let group = self.unique("failover");
        let input = format!("{group}-count_words");
        create_topics_with(&self.broker, &[&input], false, PARTITIONS)?;
        self.ensure_topics(&["bench-out"])?; // the bench app's sink
        let replicas = standbys.to_string();
        let env = [
            ("FAUST_TOPIC_PARTITIONS", "8"),
            ("FAUST_STANDBY_REPLICAS", replicas.as_str()),
            ("FAUST_SESSION_TIMEOUT", SESSION_TIMEOUT),
        ];
        let mut workers = Vec::new();
        for i in 0..WORKERS {
            let name = format!("{group}-w{i}");
            workers.push(self.spawn_named(&self.app, &group, &name, &env)?);
        }
        let mut urls = Vec::new();
        for worker in &mut workers {
            worker.wait_for("worker ready", SETTLE)?;
            urls.push(worker.web_url()?);
        }
        wait(SETTLE, "every partition held by one worker", || {
            Ok(owners(&urls)?.len() == PARTITIONS as usize)
        })?;

        // The table: each worker counts the words of its partitions.
        preload(&self.broker, &input, KEYS, |i| {
            let word = format!("k{i}");
            (serde_json::to_string(&word).ok(), json!({ "word": word }))
        })?;
        let group_consumer = consumer(&self.broker, &group)?;
        wait(SETTLE, "the words counted", || {
            Ok(committed(&group_consumer, &input, PARTITIONS)?
                .values()
                .sum::<i64>()
                >= KEYS as i64)
        })?;
        wait(SETTLE, "the standbys caught up", || {
            standbys_caught_up(&urls, standbys)
        })?;

        // Words keep coming while the victim dies.
        let streaming = Arc::new(AtomicBool::new(true));
        let stream = {
            let (broker, input, streaming) =
                (self.broker.clone(), input.clone(), streaming.clone());
            std::thread::spawn(move || stream_words(&broker, &input, &streaming))
        };
        std::thread::sleep(Duration::from_secs(3));
        let owners = owners(&urls)?;
        let victim = 1;
        let lost: BTreeSet<i32> = owners
            .iter()
            .filter(|(_, &owner)| owner == victim)
            .map(|(&p, _)| p)
            .collect();
        let before = committed(&group_consumer, &input, PARTITIONS)?;
        let logged: Vec<usize> = workers.iter().map(|w| w.log().len()).collect();
        workers[victim].kill();
        let killed = Instant::now();
        let killed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut resumed: BTreeMap<i32, f64> = BTreeMap::new();
        while resumed.len() < lost.len() && killed.elapsed() < Duration::from_secs(300) {
            let now = committed(&group_consumer, &input, PARTITIONS)?;
            for &p in &lost {
                if !resumed.contains_key(&p) && now.get(&p) > before.get(&p) {
                    resumed.insert(p, killed.elapsed().as_secs_f64());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The survivors' logs up to now: what they did about the kill.
        let logs: Vec<String> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| match i == victim {
                true => String::new(),
                false => w.log()[logged[i]..].to_owned(),
            })
            .collect();
        if resumed.len() < lost.len() {
            return Err(format!(
                "partitions {lost:?} of the killed worker did not resume within 300 s (resumed: {resumed:?})"
            ));
        }
        // A worker joins: how long does every partition stand still meanwhile?
        std::thread::sleep(Duration::from_secs(3));
        let joiner = format!("{group}-w{WORKERS}");
        workers.push(self.spawn_named(&self.app, &group, &joiner, &env)?);
        let pauses = join_pauses(
            &group_consumer,
            &input,
            workers.last_mut().ok_or("no joiner")?,
        )?;
        streaming.store(false, Ordering::SeqCst);
        let _ = stream.join();
        for (i, worker) in workers.iter_mut().enumerate() {
            if i != victim {
                worker.stop();
            }
        }
        // What the survivors replayed of the lost partitions, and when the group moved
        // them (the first revocation) and they were recovered, from the logs.
        let mut replayed = 0u64;
        let (mut rebalanced, mut recovered): (Option<f64>, Option<f64>) = (None, None);
        let since_kill = |line: &str| clock_seconds(line).map(|t| t - killed_at % 86_400.0);
        for line in logs.iter().flat_map(|log| log.lines()) {
            if line.contains("partitions revoked") {
                if let Some(t) = since_kill(line) {
                    rebalanced = Some(rebalanced.map_or(t, |r: f64| r.min(t)));
                }
            }
            if !(line.contains("table partition recovered")
                && line.contains("table=\"word_counts\""))
            {
                continue;
            }
            let partition = field(line, "partition=").and_then(|p| p.parse().ok());
            if partition.is_some_and(|p| lost.contains(&p)) {
                replayed += field(line, "records=")
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0);
                if let Some(t) = since_kill(line) {
                    recovered = Some(recovered.map_or(t, |r: f64| r.max(t)));
                }
            }
        }
        let changelog = format!("{group}-word_counts-changelog");
        let mut logged_records = 0i64;
        for &p in &lost {
            let (low, high) = group_consumer
                .fetch_watermarks(&changelog, p, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            logged_records += high - low;
        }
        let slowest = resumed.values().copied().fold(0.0, f64::max);
        Ok(json!({
            "standby_replicas": standbys, "lost_partitions": lost, "killed_at_unix_s": killed_at,
            "seconds_until_resumed": resumed, "slowest_resume_s": slowest,
            "rebalance_began_s": rebalanced, "lost_partitions_recovered_s": recovered,
            "records_replayed": replayed, "changelog_records_of_lost_partitions": logged_records,
            "join_pause_s": pauses,
            "replayed_share": replayed as f64 / logged_records.max(1) as f64,
        }))
    }
}

/// Seconds since midnight (UTC) of a log line's timestamp (`2026-12-03T19:20:10.266394Z`).
fn clock_seconds(line: &str) -> Option<f64> {
    let time = line
        .split_whitespace()
        .next()?
        .split_once('T')?
        .1
        .strip_suffix('Z')?;
    let mut parts = time.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// While `joiner` joins the group (until 5 s after it is ready), the longest time each
/// partition's committed offset stood still, in seconds.
fn join_pauses(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    joiner: &mut WorkerProcess,
) -> Result<BTreeMap<i32, f64>> {
    let started = Instant::now();
    let mut last = committed(consumer, topic, PARTITIONS)?;
    let mut moved: BTreeMap<i32, Instant> = last.keys().map(|&p| (p, started)).collect();
    let mut longest: BTreeMap<i32, f64> = BTreeMap::new();
    let mut ready: Option<Instant> = None;
    while ready.is_none_or(|t| t.elapsed() < Duration::from_secs(5)) {
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the joining worker was not ready within 300 s".into());
        }
        if ready.is_none() && joiner.log().contains("worker ready") {
            ready = Some(Instant::now());
        }
        let now = committed(consumer, topic, PARTITIONS)?;
        for (&p, &offset) in &now {
            if last.get(&p) != Some(&offset) {
                let still = moved.get(&p).map_or(0.0, |t| t.elapsed().as_secs_f64());
                let entry = longest.entry(p).or_insert(0.0);
                *entry = entry.max(still);
                moved.insert(p, Instant::now());
            }
        }
        last = now;
        std::thread::sleep(Duration::from_millis(20));
    }
    for (p, since) in moved {
        let entry = longest.entry(p).or_insert(0.0);
        *entry = entry.max(since.elapsed().as_secs_f64());
    }
    Ok(longest)
}

/// Checks `condition` every 100 ms until it holds, or fails after `timeout`.
fn wait(timeout: Duration, what: &str, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        // A worker busy recovering may not answer yet: try again.
        if condition().unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what}: not within {timeout:?}"))
}

/// Partition of `word_counts` -> the worker (index in `urls`) holding it; fails on a
/// partition claimed twice (a rebalance under way).
fn owners(urls: &[String]) -> Result<BTreeMap<i32, usize>> {
    let mut owners = BTreeMap::new();
    for (i, url) in urls.iter().enumerate() {
        let assignment = get_json(url, "/assignment")?;
        for p in assignment["tables"]["word_counts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let p = p.as_i64().ok_or("a partition that is not a number")? as i32;
            if owners.insert(p, i).is_some() {
                return Err(format!("partition {p} held twice"));
            }
        }
    }
    Ok(owners)
}

/// Whether each partition of `word_counts` has `replicas` standbys with nothing left
/// to apply.
fn standbys_caught_up(urls: &[String], replicas: usize) -> Result<bool> {
    let mut kept = 0;
    for url in urls {
        let stats = get_json(url, "/stats")?;
        for standby in stats["standbys"].as_array().into_iter().flatten() {
            if standby["table"] == "word_counts" {
                if standby["lag"].as_i64() != Some(0) {
                    return Ok(false);
                }
                kept += 1;
            }
        }
    }
    Ok(kept == replicas * PARTITIONS as usize)
}

/// Sends words of the table's keys to `topic`, `RATE` a second, until `streaming` ends.
fn stream_words(broker: &str, topic: &str, streaming: &AtomicBool) {
    let Ok(producer) = producer(broker, "5") else {
        return;
    };
    let started = Instant::now();
    let mut sent = 0u64;
    while streaming.load(Ordering::SeqCst) {
        let due = (started.elapsed().as_secs_f64() * RATE as f64) as u64;
        while sent < due {
            // Spread over the keys (and so the partitions): a multiplicative hash.
            let word = format!("k{}", sent.wrapping_mul(2_654_435_761) % KEYS);
            let key = serde_json::to_string(&word).unwrap_or_default();
            send(
                &producer,
                topic,
                Some(&key),
                json!({ "word": word }).to_string().as_bytes(),
            );
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30));
}

/// GETs `path` from a worker's web server (plain HTTP) as JSON.
fn get_json(url: &str, path: &str) -> Result<Value> {
    let address = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).map_err(|e| format!("GET {path}: {e}"))
}

impl WorkerProcess {
    /// The worker's web URL, from its log.
    fn web_url(&self) -> Result<String> {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("web server listening"))
            .ok_or("the worker logged no web URL")?;
        field(line, "url=")
            .map(str::to_owned)
            .ok_or_else(|| format!("no url in '{line}'"))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
