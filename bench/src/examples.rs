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

pub(crate) fn round(x: f64) -> f64 {
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
        preload(&self.broker, "posts", posts, |i| (None, json!(post(i))))?;
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
        let mut worker = self.spawn_worker(&self.example("word_count")?, &id)?;
        worker.wait_for("worker ready", Duration::from_secs(300))?;
        let stages = [
            ("posts".to_owned(), posts),
            (format!("{id}-count_words"), words),
        ];
        let faust = self.measure(worker, &id, &stages, Duration::from_secs(3600))?;
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
            "python_faust": python.as_ref().map(Run::json),
            "steady_ratio_to_python_faust": python.as_ref().map(|p| round(faust.steady_rate / p.steady_rate)),
            "cpu_ratio_python_faust_to_faust_rs": python.as_ref().map(|p| round(p.cpu_per_1000 / faust.cpu_per_1000)),
        }))
    }

    /// Faust's word count over the same posts, until it counted all `words`.
    fn python_word_count(&mut self, python: &PathBuf, posts: u64, words: u64) -> Result<Run> {
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
        self.measure(worker, &id, &stages, Duration::from_secs(3600))
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
}

/// The last value of each key of `topic`, read to its end (for at most 5 minutes).
fn read_latest(broker: &str, topic: &str) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
    let consumer = consumer(broker, &format!("{topic}-check"))?;
    let mut latest = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    read_partitions(&consumer, topic, Some(deadline), |m| {
        if let (Some(key), Some(value)) = (m.key(), m.payload()) {
            latest.insert(key.to_vec(), value.to_vec());
        }
    })?;
    Ok(latest)
}
