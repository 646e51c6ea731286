//! The benchmark runner: `faust-bench [scenario...]` (see docs/BENCHMARKS.md).
//!
//! Each scenario pre-loads its input on the broker, runs a faust-rs worker process
//! (`faust-bench-app`), a hand-written rdkafka loop and, when its virtualenv exists,
//! Python Faust on the same input, and prints one JSON line with the figures and the
//! ratios. Throughput is measured from the worker's "ready" to the moment the group's
//! committed offsets cover the whole input (commits every 100 ms for every contender).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{BorrowedMessage, Message},
    producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer},
    ClientConfig, Offset, TopicPartitionList,
};
use serde_json::{json, Value};

const PARTITIONS: i32 = 4;
const WORDS: usize = 1000;
const LATENCY_RATE: u64 = 10_000;
const LATENCY_SECONDS: u64 = 10;
const RECOVERY_KEYS: u64 = 1_000_000;

mod ceiling;
mod examples;
mod failover;

type Result<T> = std::result::Result<T, String>;

struct Bench {
    broker: String,
    messages: u64,
    /// `faust-bench-app`, next to this binary.
    app: PathBuf,
    /// The Python Faust baseline's interpreter, when `bench/python/setup.sh` made it.
    python: Option<PathBuf>,
    scratch: PathBuf,
    run: u32,
    /// A scenario printed its figures but failed a check (the runner exits 1 at the end).
    failed: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenarios: Vec<&str> = if args.is_empty() {
        vec![
            "passthrough",
            "word_count",
            "windowed_count",
            "recovery",
            "latency",
            "idle",
            "monitor",
            "ceiling",
            "rpc",
        ]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let mut bench = match Bench::new() {
        Ok(bench) => bench,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    for scenario in scenarios {
        let outcome = match scenario {
            "passthrough" => bench.passthrough(),
            "word_count" => bench.example_word_count(),
            "windowed_count" => bench.word_count("windowed_count", "count_windows"),
            "recovery" => bench.recovery(),
            "latency" => bench.latency(),
            "idle" => bench.idle(),
            "monitor" => Ok(monitor_overhead()),
            "ceiling" => bench.ceiling(),
            "rpc" => bench.rpc(),
            "failover" => bench.failover(),
            other => Err(format!(
                "unknown scenario '{other}'; use passthrough, word_count, windowed_count, recovery, latency, idle, monitor, ceiling, rpc or failover"
            )),
        };
        match outcome {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("error in {scenario}: {e}");
                std::process::exit(1);
            }
        }
    }
    if bench.failed {
        eprintln!("error: a scenario's results failed their check (see its line)");
        std::process::exit(1);
    }
}

impl Bench {
    fn new() -> Result<Bench> {
        let broker =
            std::env::var("FAUST_BENCH_BROKER").unwrap_or_else(|_| "127.0.0.1:19092".into());
        let messages = std::env::var("FAUST_BENCH_MESSAGES")
            .ok()
            .map(|m| {
                m.parse()
                    .map_err(|_| format!("FAUST_BENCH_MESSAGES '{m}' is not a number"))
            })
            .transpose()?
            .unwrap_or(500_000);
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let app = exe.with_file_name("faust-bench-app");
        if !app.exists() {
            return Err(format!(
                "{} is missing: build with cargo build --release -p faust-bench",
                app.display()
            ));
        }
        let python = std::env::var("FAUST_BENCH_PYTHON")
            .ok()
            .map(PathBuf::from)
            .filter(|p| p.exists());
        let scratch = std::env::temp_dir().join(format!("faust-bench-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        Ok(Bench {
            broker,
            messages,
            app,
            python,
            scratch,
            run: 0,
            failed: false,
        })
    }

    fn unique(&mut self, what: &str) -> String {
        self.run += 1;
        format!("bench-{what}-{}-{}", std::process::id(), self.run)
    }

    fn passthrough(&mut self) -> Result<Value> {
        let n = self.messages;
        let record = |i: u64| json!({"id": i, "sent_us": 0, "text": "lorem ipsum dolor sit amet, consectetur adipiscing elit sed do"});
        let mut results = HashMap::new();
        // Every contender reads the same input from its start, in a group of its own. The
        // input is the agent's own topic in the worker's app (its group), so the worker's
        // other agent has nothing to do.
        let group = self.unique("passthrough");
        let input = format!("{group}-passthrough");
        self.ensure_topics(&[&input, "bench-out"])?;
        preload(&self.broker, &input, n, |i| {
            (Some(i.to_string()), record(i))
        })?;
        // The raw loop: consume, decode, encode, produce; no framework.
        let raw = raw_passthrough(&self.broker, &input, n, None, Offset::Beginning)?;
        results.insert("raw", raw.rate);

        let faust = self.run_worker(&group, &input, n)?;
        results.insert("faust_rs", faust.rate);

        let python = match self.python.clone() {
            Some(python) => {
                let pn = n.min(100_000);
                let group = self.unique("py-passthrough");
                Some(self.run_python(&python, &group, "passthrough", &input, pn)?)
            }
            None => None,
        };
        Ok(json!({
            "scenario": "passthrough", "broker": self.broker_name(), "messages": n,
            "seconds": faust.seconds, "messages_per_s": faust.rate, "peak_rss_mb": faust.peak_rss_mb,
            "cpu_s_per_1000": faust.cpu_per_1000,
            "raw_messages_per_s": raw.rate, "ratio_to_raw": faust.rate / raw.rate,
            "python_faust_messages_per_s": python.as_ref().map(|p| p.rate),
            "python_faust_cpu_s_per_1000": python.as_ref().map(|p| p.cpu_per_1000),
            "python_faust_peak_rss_mb": python.as_ref().map(|p| p.peak_rss_mb),
            "ratio_to_python_faust": python.as_ref().map(|p| faust.rate / p.rate),
        }))
    }

    /// Words counted by `agent` (`count_words`: a table; `count_windows`: a windowed one).
    fn word_count(&mut self, scenario: &str, agent: &str) -> Result<Value> {
        let n = self.messages;
        let word = |i: u64| {
            let w = format!("w{}", i % WORDS as u64);
            (
                serde_json::to_string(&w).ok(),
                json!({"word": w, "pad": "x".repeat(70)}),
            )
        };
        let group = self.unique("words");
        let input = format!("{group}-{agent}");
        self.ensure_topics(&[&input, "bench-out"])?;
        preload(&self.broker, &input, n, word)?;
        let faust = self.run_worker(&group, &input, n)?;
        let python = match self.python.clone() {
            Some(python) => {
                let pn = n.min(50_000);
                let group = self.unique("py-words");
                Some(self.run_python(&python, &group, scenario, &input, pn)?)
            }
            None => None,
        };
        Ok(json!({
            "scenario": scenario, "broker": self.broker_name(), "messages": n, "distinct_words": WORDS,
            "seconds": faust.seconds, "messages_per_s": faust.rate, "peak_rss_mb": faust.peak_rss_mb,
            "cpu_s_per_1000": faust.cpu_per_1000,
            "python_faust_messages_per_s": python.as_ref().map(|p| p.rate),
            "python_faust_cpu_s_per_1000": python.as_ref().map(|p| p.cpu_per_1000),
            "python_faust_peak_rss_mb": python.as_ref().map(|p| p.peak_rss_mb),
            "ratio_to_python_faust": python.as_ref().map(|p| faust.rate / p.rate),
        }))
    }

    fn recovery(&mut self) -> Result<Value> {
        let group = self.unique("recovery");
        let changelog = format!("{group}-word_counts-changelog");
        create_topics(&self.broker, &[&changelog], true)?;
        preload(&self.broker, &changelog, RECOVERY_KEYS, |i| {
            (Some(format!("\"k{i}\"")), json!(i))
        })?;
        let raw = raw_consume(&self.broker, &changelog, RECOVERY_KEYS)?;
        let mut worker = self.spawn_worker(&self.app, &group)?;
        worker.wait_for("worker ready", Duration::from_secs(600))?;
        let log = worker.log();
        let peak_rss_mb = worker.peak_rss_mb();
        worker.stop();
        // Recovery runs partition after partition; its own log lines time each one.
        let mut records = 0u64;
        let mut seconds = 0f64;
        for line in log
            .lines()
            .filter(|l| l.contains("table partition recovered") && l.contains("word_counts"))
        {
            records += field(line, "records=")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            seconds += field(line, "seconds=")
                .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
                .unwrap_or(0.0);
        }
        if records != RECOVERY_KEYS {
            return Err(format!(
                "the worker recovered {records} of {RECOVERY_KEYS} records:\n{log}"
            ));
        }
        let rate = records as f64 / seconds;
        Ok(json!({
            "scenario": "recovery", "broker": self.broker_name(), "records": records,
            "seconds": seconds, "records_per_s": rate, "peak_rss_mb": peak_rss_mb,
            "raw_consume_records_per_s": raw, "ratio_to_raw": rate / raw,
        }))
    }

    fn latency(&mut self) -> Result<Value> {
        let total = LATENCY_RATE * LATENCY_SECONDS;
        let group = self.unique("latency");
        let input = format!("{group}-passthrough");
        self.ensure_topics(&[&input, "bench-out"])?;
        let mut worker = self.spawn_worker(&self.app, &group)?;
        worker.wait_for("worker ready", Duration::from_secs(120))?;
        let faust = paced_latency(&self.broker, &input, total)?;
        let peak_rss_mb = worker.peak_rss_mb();
        worker.stop();

        // The raw loop gets an input topic of its own, read from its start.
        let raw_input = format!("{group}-raw");
        self.ensure_topics(&[&raw_input])?;
        let broker = self.broker.clone();
        let loop_input = raw_input.clone();
        let raw_loop = std::thread::spawn(move || {
            raw_passthrough(
                &broker,
                &loop_input,
                total,
                Some(Duration::from_secs(LATENCY_SECONDS + 60)),
                Offset::Beginning,
            )
        });
        std::thread::sleep(Duration::from_secs(2)); // the loop's consumer gets its partitions
        let raw = paced_latency(&self.broker, &raw_input, total)?;
        let _ = raw_loop.join();
        Ok(json!({
            "scenario": "latency", "broker": self.broker_name(), "messages": total, "rate_per_s": LATENCY_RATE,
            "p50_ms": faust.0, "p99_ms": faust.1, "p999_ms": faust.2, "peak_rss_mb": peak_rss_mb,
            "raw_p50_ms": raw.0, "raw_p99_ms": raw.1, "raw_p999_ms": raw.2,
        }))
    }

    /// Agent RPC on one worker: the bench app's `rpc` command asks its `times100` agent
    /// (sequential asks, then joins of 100) and reports rates and round trips.
    fn rpc(&mut self) -> Result<Value> {
        let group = self.unique("rpc");
        self.ensure_topics(&["bench-out"])?; // the bench app's sink
        let mut worker = self.spawn_worker(&self.app, &group)?;
        worker.wait_for("worker ready", Duration::from_secs(120))?;
        let cpu_before = worker.cpu_seconds();
        let output = Command::new(&self.app)
            .arg("rpc")
            .env("FAUST_ID", &group)
            .env("FAUST_BROKER", &self.broker)
            .output()
            .map_err(|e| format!("running the rpc command: {e}"))?;
        let worker_cpu = worker.cpu_seconds() - cpu_before;
        let peak_rss_mb = worker.peak_rss_mb();
        worker.stop();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RPC "))
            .ok_or_else(|| {
                format!(
                    "the rpc command printed no figures: {}\n{}",
                    stdout,
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        let mut figures: Value =
            serde_json::from_str(line).map_err(|e| format!("the rpc figures: {e}"))?;
        let requests = figures["asks"].as_f64().unwrap_or(0.0)
            + figures["joins"].as_f64().unwrap_or(0.0)
                * figures["join_batch"].as_f64().unwrap_or(0.0);
        figures["scenario"] = json!("rpc");
        figures["broker"] = json!(self.broker_name());
        figures["worker_cpu_s_per_1000"] = json!(worker_cpu / requests * 1000.0);
        figures["worker_peak_rss_mb"] = json!(peak_rss_mb);
        Ok(figures)
    }

    fn idle(&mut self) -> Result<Value> {
        let group = self.unique("idle");
        let started = Instant::now();
        let mut worker = self.spawn_worker(&self.app, &group)?;
        worker.wait_for("worker ready", Duration::from_secs(120))?;
        let ready = started.elapsed();
        let cpu_before = worker.cpu_seconds();
        std::thread::sleep(Duration::from_secs(10));
        let cpu = (worker.cpu_seconds() - cpu_before) / 10.0;
        let rss = worker.rss_mb();
        worker.stop();
        Ok(json!({
            "scenario": "idle", "broker": self.broker_name(), "start_to_ready_s": ready.as_secs_f64(),
            "rss_mb": rss, "cpu_percent": cpu * 100.0,
        }))
    }

    fn broker_name(&self) -> String {
        std::env::var("FAUST_BENCH_BROKER_NAME")
            .unwrap_or_else(|_| format!("tansu 0.6.0 at {}", self.broker))
    }

    /// Creates the topics that do not exist yet. (Deleting and creating them again is no
    /// way to empty them: tansu 0.6.0 keeps serving the old records.)
    fn ensure_topics(&self, topics: &[&str]) -> Result<()> {
        for topic in topics {
            match create_topics(&self.broker, &[topic], false) {
                Err(e) if e.contains("already exists") => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// `program worker` (the bench app or an example) as app `group`.
    fn spawn_worker(&self, program: &Path, group: &str) -> Result<WorkerProcess> {
        self.spawn_named(program, group, group, &[])
    }

    /// [`Bench::spawn_worker`] with a datadir and log named `name`, and `env` set too.
    fn spawn_named(
        &self,
        program: &Path,
        group: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<WorkerProcess> {
        let datadir = self.scratch.join(name);
        let log = self.scratch.join(format!("{name}.log"));
        let mut command = Command::new(program);
        command
            .arg("worker")
            .env("FAUST_ID", group)
            .env("FAUST_BROKER", &self.broker)
            .env("FAUST_DATADIR", &datadir)
            .env("FAUST_COMMIT_INTERVAL", "100ms")
            .env("FAUST_WEB_PORT", "0")
            .env("FAUST_WEB_BIND", "127.0.0.1")
            .env("FAUST_WEB_HOST", "127.0.0.1")
            .envs(env.iter().copied());
        WorkerProcess::spawn(command, log)
    }

    /// Runs a worker over `n` pre-loaded messages of `topic`.
    fn run_worker(&self, group: &str, topic: &str, n: u64) -> Result<Run> {
        let mut worker = self.spawn_worker(&self.app, group)?;
        worker.wait_for("worker ready", Duration::from_secs(120))?;
        let log = worker.log.clone();
        let stages = [(topic.to_owned(), n)];
        let run = self.measure(worker, group, &stages, Duration::from_secs(1800))?;
        // Committed offsets can pass records a broker never delivered (tansu after a
        // pause): the worker, now stopped, must have processed all it committed.
        let committed = committed_sum(&consumer(&self.broker, group)?, topic)?;
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let processed = field(&log, "processed=").and_then(|v| v.parse::<u64>().ok());
        if processed != Some(committed) {
            return Err(format!(
                "the worker processed {processed:?} records but its group committed {committed}:\n{log}"
            ));
        }
        Ok(run)
    }

    /// From now until `group` committed at least the given number of events on each
    /// topic (within `timeout`); stops the worker. The figures count the last topic's
    /// events.
    fn measure(
        &self,
        mut worker: WorkerProcess,
        group: &str,
        stages: &[(String, u64)],
        timeout: Duration,
    ) -> Result<Run> {
        let started = Instant::now();
        let cpu_at_start = worker.cpu_seconds();
        let consumer = consumer(&self.broker, group)?;
        let (last_topic, events) = stages.last().ok_or("no stages")?.clone();
        let mut samples: Vec<(f64, u64)> = Vec::new();
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
            if started.elapsed() > timeout {
                return Err(format!(
                    "group {group} did not commit {stages:?} within {timeout:?}:\n{}",
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
        Ok(Run {
            events,
            seconds,
            rate: events as f64 / seconds,
            steady_rate,
            peak_rss_mb,
            cpu_per_1000: cpu_seconds * 1000.0 / events as f64,
        })
    }

    fn run_python(
        &self,
        python: &PathBuf,
        group: &str,
        scenario: &str,
        topic: &str,
        n: u64,
    ) -> Result<Run> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/faust_bench.py");
        let log = self.scratch.join(format!("{group}.log"));
        let mut command = Command::new(python);
        command
            .arg(script)
            .args(["worker", "-l", "warning"])
            .env("BENCH_BROKER", &self.broker)
            .env("BENCH_APP", group)
            .env("BENCH_SCENARIO", scenario)
            .env("BENCH_INPUT", topic)
            .env("BENCH_OUTPUT", "bench-out")
            .env("BENCH_PARTITIONS", PARTITIONS.to_string())
            .env("BENCH_DATADIR", self.scratch.join(group));
        let mut worker = WorkerProcess::spawn(command, log)?;
        worker.wait_for("BENCH READY", Duration::from_secs(300))?;
        let stages = [(topic.to_owned(), n)];
        self.measure(worker, group, &stages, Duration::from_secs(3600))
    }
}

/// What one contender did over a run.
struct Run {
    events: u64,
    seconds: f64,
    rate: f64,
    /// Events per second between 10% and 90% of the run's events.
    steady_rate: f64,
    peak_rss_mb: f64,
    /// The worker's CPU seconds (user + system) per 1,000 events; 0 for the raw loop,
    /// which runs inside the runner.
    cpu_per_1000: f64,
}

impl Run {
    fn json(&self) -> Value {
        json!({
            "events": self.events,
            "seconds": examples::round(self.seconds),
            "events_per_s": examples::round(self.rate),
            "steady_events_per_s": examples::round(self.steady_rate),
            "cpu_s_per_1000_events": examples::round(self.cpu_per_1000),
            "peak_rss_mb": examples::round(self.peak_rss_mb),
        })
    }
}

/// The value after `name` in a log line, up to the next space.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(name)? + name.len();
    line[at..].split_whitespace().next()
}

struct WorkerProcess {
    child: Child,
    log: PathBuf,
}

impl WorkerProcess {
    fn spawn(mut command: Command, log: PathBuf) -> Result<WorkerProcess> {
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {command:?}: {e}"))?;
        Ok(WorkerProcess { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the worker exited ({status}) before '{needle}':\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(format!("no '{needle}' within {timeout:?}:\n{}", self.log()))
    }

    fn status_kb(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        BufReader::new(status.as_bytes())
            .lines()
            .map_while(std::io::Result::ok)
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0.0)
    }

    fn peak_rss_mb(&self) -> f64 {
        self.status_kb("VmHWM:") / 1024.0
    }

    fn rss_mb(&self) -> f64 {
        self.status_kb("VmRSS:") / 1024.0
    }

    /// User plus system CPU time so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        ticks / 100.0 // USER_HZ
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn admin(broker: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()
        .map_err(|e| e.to_string())
}

fn create_topics(broker: &str, topics: &[&str], compacted: bool) -> Result<()> {
    create_topics_with(broker, topics, compacted, PARTITIONS)
}

fn create_topics_with(
    broker: &str,
    topics: &[&str],
    compacted: bool,
    partitions: i32,
) -> Result<()> {
    let admin = admin(broker)?;
    let config = if compacted {
        vec![("cleanup.policy", "compact")]
    } else {
        vec![]
    };
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            config.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(1)),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    let results = runtime()?
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .map_err(|e| format!("creating {topics:?}: {e}"))?;
    for result in results {
        if let Err((topic, e)) = result {
            return Err(format!("creating {topic}: {e}"));
        }
    }
    Ok(())
}

fn producer(broker: &str, linger_ms: &str) -> Result<ThreadedProducer<DefaultProducerContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", linger_ms)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| e.to_string())
}

/// Sends one record, waiting out a full queue.
fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: Option<&str>,
    value: &[u8],
) {
    let mut record = BaseRecord::<str, [u8]>::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Writes `n` records made by `make` (key, or none to spread them over the partitions;
/// JSON value) to `topic`, batched.
fn preload(
    broker: &str,
    topic: &str,
    n: u64,
    make: impl Fn(u64) -> (Option<String>, Value),
) -> Result<()> {
    let producer = producer(broker, "20")?;
    for i in 0..n {
        let (key, value) = make(i);
        send(
            &producer,
            topic,
            key.as_deref(),
            value.to_string().as_bytes(),
        );
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| e.to_string())
}

fn consumer(broker: &str, group: &str) -> Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // tansu answers a fetch only when its wait is over, however much data it has:
        // keep the wait short, as Kafka's fetch.min.bytes=1 would.
        .set("fetch.wait.max.ms", "5")
        .create()
        .map_err(|e| e.to_string())
}

fn assign_all(consumer: &BaseConsumer, topic: &str, start: Offset) -> Result<()> {
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset(topic, p, start)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&list).map_err(|e| e.to_string())
}

/// The committed offsets of `topic`'s partitions, added up, for `consumer`'s group.
fn committed_sum(consumer: &BaseConsumer, topic: &str) -> Result<u64> {
    Ok(committed(consumer, topic, PARTITIONS)?
        .values()
        .sum::<i64>() as u64)
}

/// `consumer`'s group's committed offset of each of `topic`'s `partitions` (0 where none).
fn committed(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), o),
            _ => (e.partition(), 0),
        })
        .collect())
}

/// Reads `topic` to its end; records per second.
fn raw_consume(broker: &str, topic: &str, n: u64) -> Result<f64> {
    read_to_end(&consumer(broker, &format!("{topic}-raw"))?, topic, n)
}

/// Reads all `n` records of `topic` from its start; records per second from the first.
fn read_to_end(consumer: &BaseConsumer, topic: &str, n: u64) -> Result<f64> {
    let (mut seen, mut started) = (0u64, None);
    read_partitions(consumer, topic, None, |m| {
        started.get_or_insert_with(Instant::now);
        seen += 1;
        std::hint::black_box(m.payload());
    })?;
    if seen != n {
        return Err(format!("read {seen} of {n} records of {topic}"));
    }
    Ok(seen as f64 / started.map_or(f64::MAX, |s| s.elapsed().as_secs_f64()))
}

/// Reads every partition of `topic` from its start to its end (partition EOF, from
/// fetch responses), or until `deadline`, handing each record to `each`.
fn read_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    deadline: Option<Instant>,
    mut each: impl FnMut(&BorrowedMessage),
) -> Result<()> {
    assign_all(consumer, topic, Offset::Beginning)?;
    let mut at_end = 0;
    while at_end < PARTITIONS && deadline.is_none_or(|d| Instant::now() < d) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => each(&m),
            Some(Err(KafkaError::PartitionEOF(_))) => at_end += 1,
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    id: u64,
    sent_us: u64,
    text: String,
}

/// The limit: consume `input`, decode, encode, produce to `bench-out`, for `n`
/// records (or until `timeout`), then flush. Rate from the first record to the flush.
fn raw_passthrough(
    broker: &str,
    input: &str,
    n: u64,
    timeout: Option<Duration>,
    start: Offset,
) -> Result<Run> {
    let consumer = consumer(broker, &format!("raw-{}", std::process::id()))?;
    assign_all(&consumer, input, start)?;
    let producer = producer(broker, "5")?;
    let mut first = None;
    let mut done = 0;
    let deadline = timeout.map(|t| Instant::now() + t);
    while done < n {
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                let record: Record = serde_json::from_slice(m.payload().unwrap_or_default())
                    .map_err(|e| e.to_string())?;
                let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
                let key = std::str::from_utf8(m.key().unwrap_or_default()).unwrap_or_default();
                send(&producer, "bench-out", Some(key), &bytes);
                done += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())?;
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    let rate = done as f64 / seconds;
    Ok(Run {
        events: done,
        seconds,
        rate,
        steady_rate: rate,
        peak_rss_mb: 0.0,
        cpu_per_1000: 0.0,
    })
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Sends `total` records to `input` at `LATENCY_RATE` a second, each stamped with
/// its send time, and reads them back from `bench-out`: p50, p99 and p99.9 in ms.
fn paced_latency(broker: &str, input: &str, total: u64) -> Result<(f64, f64, f64)> {
    let reader = consumer(broker, &format!("latency-reader-{}", now_us()))?;
    // `bench-out` holds earlier runs' records too: only those sent from now on count.
    // (Starting at its end instead would ask tansu for the end, which it can misplace.)
    assign_all(&reader, "bench-out", Offset::Beginning)?;
    let run_started_us = now_us();
    let (broker_owned, input) = (broker.to_owned(), input.to_owned());
    let sender = std::thread::spawn(move || -> Result<()> {
        // tansu takes about a thousand produce requests a second: batch for 2 ms.
        let producer = producer(&broker_owned, "2")?;
        let started = Instant::now();
        for i in 0..total {
            let due = started + Duration::from_secs_f64(i as f64 / LATENCY_RATE as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let record = Record {
                id: i,
                sent_us: now_us(),
                text: "lorem ipsum dolor sit amet, consectetur adipiscing elit sed do".into(),
            };
            let bytes = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
            send(&producer, &input, Some(&i.to_string()), &bytes);
        }
        producer
            .flush(Duration::from_secs(60))
            .map_err(|e| e.to_string())
    });
    let mut latencies = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(LATENCY_SECONDS + 120);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let received = now_us();
            let record = serde_json::from_slice::<Record>(m.payload().unwrap_or_default()).ok();
            if let Some(record) = record.filter(|r| r.sent_us >= run_started_us) {
                latencies.push(received.saturating_sub(record.sent_us));
            }
        }
    }
    sender
        .join()
        .map_err(|_| "the paced sender panicked".to_string())??;
    if (latencies.len() as u64) < total {
        return Err(format!(
            "only {} of {total} records came back",
            latencies.len()
        ));
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64 / 1000.0
    };
    Ok((at(0.50), at(0.99), at(0.999)))
}

/// What the Monitor costs per event: the hooks one table-updating, forwarding event
/// triggers, called on the built-in Monitor in a loop.
fn monitor_overhead() -> Value {
    use faust::sensors::{Monitor, Sensor};
    let monitor = Monitor::default();
    let rounds = 2_000_000u32;
    let started = Instant::now();
    for i in 0..rounds {
        let partition = (i % 4) as i32;
        monitor.message_in("bench-in", partition, i64::from(i));
        monitor.event_start("passthrough", "bench-in", partition, i64::from(i));
        monitor.table_get("word_counts");
        monitor.table_set("word_counts");
        monitor.send_start("bench-out");
        monitor.send_end("bench-out", Duration::from_micros(800), None);
        monitor.event_end("passthrough", Duration::from_micros(20));
    }
    let per_event = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    json!({ "scenario": "monitor", "hooks_per_event": 7, "ns_per_event": per_event })
}
