//! Scenarios that run the examples users write (`examples/*.rs`, built in release mode)
//! next to Python Faust running Faust's own example of the same app, on the same broker
//! and the same input, in the same run.

use std::collections::BTreeMap;

use super::*;

/// Distinct words in the generated posts.
const VOCABULARY: u64 = 1000;

/// Post `i`: 3 to 12 words of the vocabulary, lower case, one space apart, so that
/// faust-rs's split and Python's `str.split()` find the same words.
fn post(i: u64) -> String {
    let len = 3 + (i * 7) % 10;
    (0..len)
        .map(|j| format!("w{}", (i * 31 + j * 17 + i / 7) % VOCABULARY))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What one contender did over a run: from "ready" until its last stage committed
/// `events`.
pub(crate) struct ExampleRun {
    pub(crate) events: u64,
    pub(crate) seconds: f64,
    /// Events per second between 10% and 90% of the run's events.
    pub(crate) steady_rate: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_mb: f64,
}

impl ExampleRun {
    pub(crate) fn json(&self) -> Value {
        json!({
            "events": self.events,
            "seconds": round(self.seconds),
            "events_per_s": round(self.events as f64 / self.seconds),
            "steady_events_per_s": round(self.steady_rate),
            "cpu_s_per_1000_events": round(self.cpu_seconds * 1000.0 / self.events as f64),
            "peak_rss_mb": round(self.peak_rss_mb),
        })
    }
}

fn round(x: f64) -> f64 {
    if x.abs() >= 100.0 {
        x.round()
    } else {
        (x * 1000.0).round() / 1000.0
    }
}

impl Bench {
    /// `examples/word_count.rs` against Faust's examples/word_count.py: unkeyed posts
    /// split into words, repartitioned by word, counted in a table. Both count every
    /// word of the same posts: one post per 25 messages of `FAUST_BENCH_MESSAGES`
    /// (20,000 posts, 150,000 words by default: a few minutes of Python Faust).
    pub(crate) fn example_word_count(&mut self) -> Result<Value> {
        let posts = (self.messages / 25).max(1_000);
        // `posts` is the example's own topic: it must hold this run's input only.
        match create_topics(&self.broker, &["posts"], false) {
            Err(e) if e.contains("already exists") => {
                return Err(
                    "topic 'posts' exists on the broker already; run the example \
                     benchmarks on a fresh broker (scripts/bench.sh starts one)"
                        .into(),
                )
            }
            other => other?,
        }
        preload_unkeyed(&self.broker, "posts", posts, |i| json!(post(i)))?;
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..posts {
            for word in post(i).split(' ') {
                *expected.entry(word.to_owned()).or_default() += 1;
            }
        }
        let words: u64 = expected.values().sum();
        // The ceiling: how fast any consumer here reads the posts.
        let raw_posts_per_s = raw_consume(&self.broker, "posts", posts)?;

        let id = self.unique("word-count");
        let program = self.example("word_count")?;
        let mut command = Command::new(program);
        command.arg("worker").envs(self.worker_env(&id));
        let worker = WorkerProcess::spawn(command, self.scratch.join(format!("{id}.log")))?;
        let count_topic = format!("{id}-count_words");
        let faust = self.run_until_committed(
            worker,
            "worker ready",
            &id,
            &[("posts".to_owned(), posts), (count_topic, words)],
        )?;
        // Every word counted exactly once: the table's changelog, last value per word.
        let counts = read_latest(&self.broker, &format!("{id}-word_counts-changelog"))?;
        let wrong: Vec<_> = expected
            .iter()
            .filter_map(|(word, n)| {
                let key = serde_json::to_vec(word).unwrap_or_default();
                let found = counts
                    .get(&key)
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                (found.as_deref() != Some(n.to_string().as_str())).then_some((word, n, found))
            })
            .collect();
        let counts_check = match wrong.is_empty() {
            true => "exact".to_owned(),
            false => {
                self.failed = true;
                format!(
                    "WRONG for {} of {} words, e.g. (word, expected, in the changelog) {:?}",
                    wrong.len(),
                    expected.len(),
                    &wrong[..wrong.len().min(5)]
                )
            }
        };

        let python = match self.python.clone() {
            Some(python) => Some(self.python_word_count(&python, posts, words)?),
            None => None,
        };
        Ok(json!({
            "scenario": "word_count", "broker": self.broker_name(),
            "input": {"posts": posts, "words": words, "distinct_words": expected.len()},
            "raw_consume_posts_per_s": round(raw_posts_per_s),
            "faust_rs": faust.json(), "faust_rs_counts": counts_check,
            "python_faust": python.as_ref().map(ExampleRun::json),
            "steady_ratio_to_python_faust": python.as_ref().map(|p| round(faust.steady_rate / p.steady_rate)),
            "cpu_ratio_python_faust_to_faust_rs": python.as_ref().map(|p| {
                round((p.cpu_seconds / p.events as f64) / (faust.cpu_seconds / faust.events as f64))
            }),
        }))
    }

    /// Faust's word count over the same posts, until it counted all `words`.
    fn python_word_count(
        &mut self,
        python: &PathBuf,
        posts: u64,
        words: u64,
    ) -> Result<ExampleRun> {
        let id = self.unique("py-word-count");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/word_count.py");
        let mut command = Command::new(python);
        command
            .arg(script)
            .args(["worker", "-l", "warn"])
            .env("BENCH_BROKER", &self.broker)
            .env("BENCH_APP", &id)
            .env("BENCH_PARTITIONS", PARTITIONS.to_string())
            .env("BENCH_DATADIR", self.scratch.join(&id));
        let log = self.scratch.join(format!("{id}.log"));
        let mut worker = WorkerProcess::spawn(command, log)?;
        worker.wait_for("BENCH READY", Duration::from_secs(300))?;
        let topic = worker
            .log()
            .lines()
            .find_map(|l| field(l, "count_words_topic=").map(str::to_owned))
            .ok_or("Python Faust did not name its count_words topic")?;
        let stages = [("posts".to_owned(), posts), (topic, words)];
        self.run_until_committed(worker, "BENCH READY", &id, &stages)
    }

    /// The release build of `examples/<name>.rs`: next to this binary, or in
    /// `FAUST_BENCH_EXAMPLES` (to compare builds).
    fn example(&self, name: &str) -> Result<PathBuf> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = std::env::var_os("FAUST_BENCH_EXAMPLES")
            .map_or_else(|| exe.with_file_name("examples"), PathBuf::from);
        let path = dir.join(name);
        match path.exists() {
            true => Ok(path),
            false => Err(format!(
                "{} is missing: build it with cargo build --release --example {name}",
                path.display()
            )),
        }
    }

    /// Waits for `ready` in the worker's log, then until `group` committed at least the
    /// given number of events on each topic; stops the worker. The figures count the
    /// last topic's events.
    fn run_until_committed(
        &self,
        mut worker: WorkerProcess,
        ready: &str,
        group: &str,
        stages: &[(String, u64)],
    ) -> Result<ExampleRun> {
        worker.wait_for(ready, Duration::from_secs(300))?;
        let started = Instant::now();
        let cpu_at_start = worker.cpu_seconds();
        let consumer = consumer(&self.broker, group)?;
        let (last_topic, events) = stages.last().ok_or("no stages")?.clone();
        let mut samples: Vec<(f64, u64)> = Vec::new();
        let deadline = started + Duration::from_secs(3600);
        loop {
            let mut done = true;
            for (topic, target) in stages {
                let committed = committed_sum(&consumer, topic).unwrap_or(0);
                if *topic == last_topic {
                    samples.push((started.elapsed().as_secs_f64(), committed));
                }
                done &= committed >= *target;
            }
            if done {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{group} did not finish within an hour:\n{}",
                    worker.log()
                ));
            }
            if let Ok(Some(status)) = worker.child.try_wait() {
                return Err(format!("{group} exited ({status}):\n{}", worker.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = worker.cpu_seconds() - cpu_at_start;
        let peak_rss_mb = worker.peak_rss_mb();
        worker.stop();
        let at = |share: f64| {
            samples
                .iter()
                .find(|(_, n)| *n as f64 >= share * events as f64)
                .copied()
                .unwrap_or((seconds, events))
        };
        let ((t10, n10), (t90, n90)) = (at(0.1), at(0.9));
        let steady_rate = match t90 > t10 {
            true => (n90 - n10) as f64 / (t90 - t10),
            false => events as f64 / seconds,
        };
        Ok(ExampleRun {
            events,
            seconds,
            steady_rate,
            cpu_seconds,
            peak_rss_mb,
        })
    }

    /// What a faust-rs worker process of app `id` is given.
    fn worker_env(&self, id: &str) -> Vec<(String, String)> {
        let datadir = self.scratch.join(id).to_string_lossy().into_owned();
        [
            ("FAUST_ID", id),
            ("FAUST_BROKER", &self.broker),
            ("FAUST_DATADIR", &datadir),
            ("FAUST_COMMIT_INTERVAL", "100ms"),
            ("FAUST_WEB_PORT", "0"),
            ("FAUST_WEB_BIND", "127.0.0.1"),
            ("FAUST_WEB_HOST", "127.0.0.1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// Writes `n` unkeyed records (spread over the partitions) made by `make`.
fn preload_unkeyed(broker: &str, topic: &str, n: u64, make: impl Fn(u64) -> Value) -> Result<()> {
    let producer = producer(broker, "20")?;
    for i in 0..n {
        let bytes = make(i).to_string().into_bytes();
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&bytes);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| e.to_string())
}

/// The last value of each key of `topic`, read to its end.
fn read_latest(broker: &str, topic: &str) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
    let consumer = consumer(broker, &format!("{topic}-check"))?;
    assign_all(&consumer, topic, Offset::Beginning)?;
    let mut latest = HashMap::new();
    let mut at_end = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while at_end < PARTITIONS && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if let (Some(key), Some(value)) = (m.key(), m.payload()) {
                    latest.insert(key.to_vec(), value.to_vec());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    Ok(latest)
}
