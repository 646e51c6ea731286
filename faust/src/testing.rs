//! Testing agents without a broker, in a plain `#[tokio::test]`.
//!
//! A [`TestContext`] runs the app's agents in-process: what the test sends goes to the
//! agents reading that topic (or to the agent of that name), what the agents send (sinks,
//! `faust::send`, `group_by`, `through`) is kept and routed on to the agents that read
//! it, tables live in memory, and the test moves the clock for windows and timers.
//!
//! ```no_run
//! use faust::prelude::*;
//! use faust::testing::TestContext;
//!
//! #[faust::table(name = "word_counts", default = 0)]
//! static COUNTS: Table<String, u64>;
//!
//! #[faust::agent(topic = "words", sink = "counted")]
//! async fn count(mut words: Stream<String>, counted: Sink<(String, u64)>) -> faust::Result<()> {
//!     while let Some(word) = words.next().await {
//!         let n = COUNTS.update(&word, |n| *n += 1)?;
//!         counted.send(&(word, n)).await?;
//!     }
//!     Ok(())
//! }
//!
//! #[tokio::test]
//! async fn counts_words() -> faust::Result<()> {
//!     let mut ctx = TestContext::new().await?;
//!     ctx.send("count", Some("fox"), &"fox").await?;   // by agent name, or a topic
//!     ctx.send("words", Some("fox"), &"fox").await?;
//!     assert_eq!(COUNTS.get(&"fox".to_owned())?, 2);
//!     let counted: Vec<(String, u64)> = ctx.sent_json("counted")?;
//!     assert_eq!(counted, [("fox".to_owned(), 1), ("fox".to_owned(), 2)]);
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! Each `send` returns once every agent is done with the event and with whatever it
//! caused; an agent that fails makes it return the error. A `take(max, within)` batch
//! ends as soon as no more events are waiting, instead of waiting `within`. Each context
//! is a worker of its own (tables, clock, sent records), so tests run in parallel; while
//! it lives, code on the test's thread (the test body reading a table, say) uses it.
//! Tasks (`#[faust::task]`) do not run; timers run when [`TestContext::advance`] passes
//! their time, and this worker is the leader.
//!
//! It needs the `testing` feature: `faust = { version = "...", features = ["testing"] }`
//! in `[dev-dependencies]`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc, watch, Notify};

pub use crate::transport::memory::SentRecord;
use crate::{
    agents::AgentManager,
    app::{App, AppBuilder, MainApp, Parts},
    codec::KeyCodec,
    context::{Attached, Entered, WorkerContext, WorkerHandle},
    descriptor::TimerDescriptor,
    event::{self, Ack, Acknowledge, Message},
    leader::Leadership,
    origin::Lineage,
    registry::Registry,
    sensors::{Monitor, Sensor, Sensors},
    tables::{self, TableManager},
    time::Clock,
    transport::{
        connection::Connection,
        consumer::Routes,
        memory::MemoryLog,
        partitioner::partition_for_key,
        producer::{Producer, Record},
        replies::ReplyTopic,
    },
    Error, Result,
};

/// How long `send` and `advance` wait for the agents to finish before giving up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// An app running in-process, without a broker, for tests.
pub struct TestContext {
    app: App,
    worker: Arc<WorkerContext>,
    log: Arc<MemoryLog>,
    /// How many records of the log were handed to agents.
    routed: usize,
    routes: Routes,
    acks: Arc<Acks>,
    agents: AgentManager,
    tables: Arc<TableManager>,
    /// Each timer and when it is next due (clock milliseconds).
    timers: Vec<(&'static TimerDescriptor, i64)>,
    failures: Arc<Mutex<Vec<String>>>,
    fatal: mpsc::UnboundedReceiver<Error>,
    /// What its handles see: this worker, running.
    attached: watch::Sender<Attached>,
    /// Makes this the worker of code on the test's thread.
    _entered: Entered,
}

/// Counts the acknowledgements the agents still owe.
#[derive(Default)]
struct Acks {
    owed: AtomicUsize,
    changed: Notify,
}

impl Acknowledge for Acks {
    fn begin(&self, _: &Arc<str>, _: i32, _: u64, _: i64) -> bool {
        true
    }

    fn acknowledge(&self, _: &Arc<str>, _: i32, _: u64, _: i64) {
        self.owed.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// Keeps agent failures, which `send` and `advance` return.
struct Failures(Arc<Mutex<Vec<String>>>);

impl Sensor for Failures {
    fn agent_error(&self, agent: &str, error: &str) {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        failures.push(format!("agent '{agent}' failed: {error}"));
    }
}

impl TestContext {
    /// The app registered in this test binary, with the id and settings its
    /// `faust::main!` gives (an example's tests see its real topic names), or, in a test
    /// without one, the id `test-app` and defaults.
    pub async fn new() -> Result<TestContext> {
        let builder = MainApp::builder().unwrap_or_else(|| App::builder("test-app"));
        TestContext::with_app(builder).await
    }

    /// The app registered in this test binary, configured by `builder` (partitions,
    /// sensors; broker settings are not used).
    pub async fn with_app(builder: AppBuilder) -> Result<TestContext> {
        // Services do not run here, as tasks do not.
        let Parts {
            config,
            sensors: user_sensors,
            ..
        } = builder.into_parts()?;
        // An ask nobody answers fails (NoReply) before the context gives up waiting.
        let mut config = config;
        config.reply_timeout = config.reply_timeout.min(SETTLE_TIMEOUT / 2);
        let mut app = App::new(config, Registry::collect()?)?;
        for sensor in user_sensors {
            app = app.with_sensor(sensor);
        }
        let config = app.config();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut all: Vec<Arc<dyn Sensor>> = app.sensors().to_vec();
        all.push(Arc::new(Failures(failures.clone())));
        let sensors = Sensors::new(Arc::new(Monitor::default()), &all);

        let clock = Clock::adjustable();
        let log = Arc::new(MemoryLog::new(config.topic_partitions, clock.clone()));
        let producer = Producer::in_memory(log.clone(), sensors.clone());
        let tables = Arc::new(TableManager::new(
            config,
            &app.registry().tables,
            &producer,
            &sensors,
            &Connection::new(String::new(), config, false),
            &clock,
            &Default::default(),
        )?);
        tables.hold_all_in_memory()?;
        let leader = Leadership::default();
        leader.set(true);
        let worker = Arc::new(WorkerContext {
            channels: Default::default(),
            config: Arc::new(config.clone()),
            producer,
            agents: app.agent_targets(),
            tables: Some(tables.clone()),
            replies: ReplyTopic::handed(config),
            clock,
            leader,
        });
        let (fatal_sender, fatal) = mpsc::unbounded_channel();
        let (agents, routes) = AgentManager::start(
            config,
            &app.registry().agents,
            &worker,
            &sensors,
            &fatal_sender,
        );
        let now = worker.clock.now_ms();
        let timers = app
            .registry()
            .timers
            .iter()
            .filter_map(|&timer| Some((timer, timer.next_due(now)?)))
            .collect();
        Ok(TestContext {
            _entered: worker.enter(),
            attached: watch::Sender::new(Attached::Running(worker.clone())),
            app,
            worker,
            log,
            routed: 0,
            routes,
            acks: Arc::default(),
            agents,
            tables,
            timers,
            failures,
            fatal,
        })
    }

    /// Sends `value` (as JSON) with `key` (written as [`crate::send`] writes it) to a topic, or to an agent by its
    /// name, stamped with the clock's now, and waits until the agents are done with it.
    pub async fn send<K, V>(&mut self, target: &str, key: Option<&K>, value: &V) -> Result<()>
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        self.send_at(target, key, value, self.worker.clock.now_ms())
            .await
    }

    /// [`TestContext::send`] with a timestamp (milliseconds since the Unix epoch), for
    /// windows on event time.
    pub async fn send_at<K, V>(
        &mut self,
        target: &str,
        key: Option<&K>,
        value: &V,
        timestamp_ms: i64,
    ) -> Result<()>
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        let key = key
            .map(|key| KeyCodec::Raw.encode(key))
            .transpose()
            .map_err(|message| Error::Encode {
                target: target.to_owned(),
                message: format!("key: {message}"),
            })?;
        let value = serde_json::to_vec(value)?;
        self.send_bytes(target, key.as_deref(), Some(&value), Some(timestamp_ms))
            .await
    }

    /// Sends raw bytes (for agents with the `raw` or `string` codecs, or bad input).
    pub async fn send_bytes(
        &mut self,
        target: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) -> Result<()> {
        let topic = self.worker.topic(target).to_string();
        if let Some(channels) = self.worker.channel(&topic)? {
            let record = Record {
                key,
                value,
                partition: None,
                headers: &[],
                timestamp: timestamp_ms,
            };
            channels.send(&topic, &record)?;
            return self.settle().await;
        }
        let partitions = self.app.config().topic_partitions;
        let record = Record {
            key,
            value,
            partition: Some(key.map_or(0, |k| partition_for_key(k, partitions))),
            headers: &[],
            timestamp: timestamp_ms,
        };
        self.log.append(&topic, &record);
        self.settle().await
    }

    /// Runs the last record of `topic` again, as a worker that crashed before committing
    /// it would, and checks that the agents reading it send what they sent the first
    /// time, in the same order: what exact results across internal topics rest on
    /// (README, "Processing guarantees"). The agents downstream get the repeats and skip
    /// those their tables applied already, as on a broker. An error says what differed.
    pub async fn replay_last(&mut self, topic: &str) -> Result<()> {
        let topic = self.worker.topic(topic);
        let log = self.log.since(0);
        let record = log
            .iter()
            .rev()
            .find(|r| *r.topic == *topic)
            .cloned()
            .ok_or_else(|| Error::msg(format!("nothing was sent to '{topic}' to replay")))?;
        let origin = event::origin_of(&record.headers);
        let lineage = Lineage::of("", &topic, record.partition, record.offset, origin);
        // Each output as (its origin, "topic key value"), sorted: two agents reading the
        // topic may interleave differently, each in its own order (its indices).
        let outputs = |records: &[SentRecord]| {
            let text = |b: &Option<Vec<u8>>| match b {
                Some(b) => String::from_utf8_lossy(b).into_owned(),
                None => "-".to_owned(),
            };
            let mut sent: Vec<(Vec<u8>, String)> = records
                .iter()
                .filter_map(|r| {
                    let origin = event::origin_of(&r.headers).filter(|v| lineage.sent(v))?;
                    let shown = format!("{} {} {}", r.topic, text(&r.key), text(&r.value));
                    Some((origin.to_vec(), shown))
                })
                .collect();
            sent.sort();
            sent
        };
        let before = outputs(&log);
        let from = self.log.len();
        if !self.route(&record) {
            return Err(Error::msg(format!("no agent reads '{topic}'")));
        }
        self.settle().await?;
        let after = outputs(&self.log.since(from));
        if before == after {
            return Ok(());
        }
        let show = |sent: &[(Vec<u8>, String)]| {
            let shown: Vec<&str> = sent.iter().map(|(_, shown)| shown.as_str()).collect();
            shown.join("; ")
        };
        Err(Error::msg(format!(
            "replaying {topic}[{}]@{} sent [{}], where the first run sent [{}]: an agent whose \
             outputs differ when an event runs again can count records twice or lose them \
             downstream after a crash",
            record.partition,
            record.offset,
            show(&after),
            show(&before)
        )))
    }

    /// Every record of `topic` (or channel): what the app sent to it (and what the test
    /// sent there).
    pub fn sent(&self, topic: &str) -> Vec<SentRecord> {
        self.log
            .since(0)
            .into_iter()
            .filter(|r| r.topic == topic)
            .collect()
    }

    /// The values of `topic`'s records, decoded from JSON.
    pub fn sent_json<T: DeserializeOwned>(&self, topic: &str) -> Result<Vec<T>> {
        self.sent(topic)
            .iter()
            .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()))
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::from)
    }

    /// Stops the timer (or crontab) `name` from running in this test.
    pub fn disable_timer(&mut self, name: &str) -> Result<()> {
        let before = self.timers.len();
        self.timers.retain(|(timer, _)| timer.name != name);
        if self.timers.len() == before {
            return Err(Error::msg(format!("there is no timer named '{name}'")));
        }
        Ok(())
    }

    /// Moves the clock forward: timers run at each time they are due (on the leader,
    /// which this is), windows due close (their `on_window_close` runs), and whatever
    /// that sends is processed.
    pub async fn advance(&mut self, by: Duration) -> Result<()> {
        let clock = self.worker.clock.clone();
        let target = clock.now_ms() + by.as_millis() as i64;
        while let Some(due) = self
            .timers
            .iter()
            .map(|(_, due)| *due)
            .filter(|due| *due <= target)
            .min()
        {
            clock.advance((due - clock.now_ms()).max(0));
            for index in 0..self.timers.len() {
                let (timer, at) = self.timers[index];
                if at != due {
                    continue;
                }
                // Routed while it runs: a timer may ask agents and wait for replies.
                self.run((timer.run)()).await??;
                self.timers[index].1 = timer.next_due(due).unwrap_or(i64::MAX);
            }
            self.close_windows_and_settle().await?;
        }
        clock.advance((target - clock.now_ms()).max(0));
        self.close_windows_and_settle().await
    }

    async fn close_windows_and_settle(&mut self) -> Result<()> {
        self.settle().await?;
        let (_running, stop) = tokio::sync::watch::channel(false);
        for table in self.tables.windowed() {
            self.worker.scope(tables::close_due(&table, &stop)).await;
        }
        self.settle().await
    }

    /// A handle into this worker, as [`crate::Worker::handle`] gives one: a router
    /// made with it ([`WorkerHandle::inside`]) runs its handlers here (run requests
    /// through [`TestContext::run`] so that the agents process what they send).
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle::new(self.attached.subscribe())
    }

    /// Runs `future` (a call of the app's own code: `Agent::named("mul").ask(..)`, a
    /// command's or task's fn) inside this worker while the agents process what it
    /// sends, and returns its output once it is done and the agents settled.
    ///
    /// ```no_run
    /// # async fn demo(ctx: &mut faust::testing::TestContext) -> faust::Result<()> {
    /// let product: f64 = ctx.run(faust::Agent::named("mul").ask(&3.0)).await??;
    /// # Ok(()) }
    /// ```
    pub async fn run<F: std::future::Future>(&mut self, future: F) -> Result<F::Output> {
        let worker = self.worker.clone();
        let mut future = std::pin::pin!(worker.scope(future));
        let output = loop {
            tokio::select! {
                output = &mut future => break output,
                routed = self.settle() => {
                    routed?;
                    // Settled while the future still runs: wait for what it sends next.
                    let appended = self.log.appended.notified();
                    if self.log.len() <= self.routed {
                        tokio::select! {
                            output = &mut future => break output,
                            _ = appended => {}
                        }
                    }
                }
            }
        };
        self.settle().await?;
        Ok(output)
    }

    /// Hands every new record to the agents that read its topic (and replies to the
    /// asks waiting for them) and waits until the agents acknowledged everything, again
    /// while they send more.
    async fn settle(&mut self) -> Result<()> {
        loop {
            let new = self.log.since(self.routed);
            self.routed += new.len();
            let reply_topic = self.worker.replies.topic().clone();
            for record in new {
                if *record.topic == *reply_topic {
                    self.worker
                        .replies
                        .deliver(record.value.as_deref().unwrap_or_default());
                    continue;
                }
                self.route(&record);
            }
            // Done once everything is acknowledged and nothing new was sent; an agent
            // waiting for a reply sends first, so new records are routed as they come.
            let (acks, log) = (self.acks.clone(), self.log.clone());
            // Messages in the app's channels are waited for like events.
            let channels = self.worker.channels.get().map(|c| c.busy().clone());
            let routed = self.routed;
            let progress = async move {
                loop {
                    let changed = acks.changed.notified();
                    let appended = log.appended.notified();
                    let never = Notify::new();
                    let idle = channels.as_ref().map_or(&never, |b| &b.changed).notified();
                    let mut changed = std::pin::pin!(changed);
                    let mut appended = std::pin::pin!(appended);
                    let mut idle = std::pin::pin!(idle);
                    changed.as_mut().enable();
                    appended.as_mut().enable();
                    idle.as_mut().enable();
                    if log.len() > routed {
                        return false; // more to route
                    }
                    let channels_idle = channels.as_ref().is_none_or(|busy| busy.count() == 0);
                    if acks.owed.load(Ordering::SeqCst) == 0 && channels_idle {
                        return true;
                    }
                    tokio::select! {
                        _ = changed => {}
                        _ = appended => {}
                        _ = idle => {}
                    }
                }
            };
            // An agent past its restart limit is fatal: say so at once.
            let fatal = &mut self.fatal;
            let waited = tokio::time::timeout(SETTLE_TIMEOUT, async {
                tokio::select! {
                    done = progress => Ok(done),
                    Some(e) = fatal.recv() => Err(e),
                }
            })
            .await;
            match waited {
                Ok(Ok(true)) => return self.check(),
                Ok(Ok(false)) => self.check()?,
                Ok(Err(fatal)) => return Err(fatal),
                Err(_) => {
                    self.check()?;
                    return Err(Error::msg(format!(
                        "the agents did not finish their events within {SETTLE_TIMEOUT:?}; \
                         one may be stuck (waiting on something that never comes?)"
                    )));
                }
            }
        }
    }

    /// Hands `record` to the agents that read its topic, owing their acknowledgements;
    /// false if none does.
    fn route(&self, record: &SentRecord) -> bool {
        let Some(readers) = self.routes.readers(&record.topic) else {
            return false;
        };
        self.acks.owed.fetch_add(readers, Ordering::SeqCst);
        self.routes
            .deliver(&record.topic, record.partition, |topic| Message {
                topic,
                partition: record.partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.clone(),
                payload: record.value.clone(),
                headers: record.headers.clone(),
                ack: Ack {
                    sink: self.acks.clone(),
                    generation: 0,
                },
            });
        true
    }

    /// The first agent failure or fatal error since the last check, as an error.
    fn check(&mut self) -> Result<()> {
        if let Ok(fatal) = self.fatal.try_recv() {
            return Err(fatal);
        }
        let failure = {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *failures).into_iter().next()
        };
        match failure {
            Some(failure) => Err(Error::msg(failure)),
            None => Ok(()),
        }
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        self.agents.signal_stop();
    }
}
