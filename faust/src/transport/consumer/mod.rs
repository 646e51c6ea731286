//! The Kafka consumer: one consumer-group member per worker (group id = app id, or
//! `group_id`).
//!
//! A dedicated thread polls librdkafka, routes each message to the actors of the agents
//! subscribed to its topic (one actor per partition, so order within a partition holds),
//! and commits the contiguous acknowledged prefix of each partition (see [`offsets`]) on an
//! interval, every N acknowledgements, on revocation and on shutdown. A partition whose
//! events pile up is paused until its actors catch up. Rebalance callbacks run on the
//! same thread, so waiting there for in-flight events to finish is safe.

mod group;
mod offsets;
mod routes;
mod takeover;
mod watchdog;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    message::{Headers as _, Message as _},
    ClientConfig, TopicPartitionList,
};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

pub(crate) use offsets::{OffsetTracker, TopicPartition, Tracked};
pub(crate) use routes::{Inbox, Isolated, Readers, Routes};
pub(crate) use takeover::copy_offsets;

use group::{commit_points, GroupContext};
use watchdog::Watchdog;

use super::{broker::Broker, connection::Role, KafkaHealth};
use crate::{
    config::Config,
    event::{Ack, Header, Message},
    leader::Leadership,
    sensors::Sensors,
    Error, Result,
};

/// How long one poll waits for a message before the loop checks commits and shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Long enough for librdkafka's next heartbeat (every 3 s at most) to learn whether the group
/// still counts this worker in.
const HEARTBEAT_WAIT: Duration = Duration::from_secs(5);
/// How often the poll loop looks for partitions that stopped making progress.
const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A component that follows the consumer's partitions (the tables).
pub(crate) trait PartitionListener: Send + Sync {
    /// Partitions were assigned; runs, on a thread of its own, before any of their
    /// events are fetched, so state can be recovered first; returns early once
    /// [`PartitionListener::cancel_recovery`] is called. `committed` holds the group's committed offsets of the
    /// assigned partitions (where nothing was committed: where auto.offset.reset starts).
    /// Events of this assignment carry `generation` or a later one; an event with an
    /// earlier one was fetched before a revocation, and its changes must be refused.
    fn assigned(
        &self,
        partitions: &[TopicPartition],
        committed: &HashMap<TopicPartition, i64>,
        generation: u64,
    ) -> Result<()>;
    /// Stops a recovery under way in [`PartitionListener::assigned`] (which then returns
    /// early); the next call of `assigned` clears this.
    fn cancel_recovery(&self);
    /// Makes the effects of the events up to the commit `points` durable; runs before
    /// each commit, and returns the points to commit (lower where not all is durable yet).
    fn flush(&self, points: &[(TopicPartition, i64)]) -> Result<Vec<(TopicPartition, i64)>>;
    /// Partitions were revoked, after their final commit.
    fn revoked(&self, partitions: &[TopicPartition]);
    /// Whether partition `p` of every source topic must be held by one worker (it feeds
    /// table partition `p`).
    fn co_partitioned(&self) -> bool;
}

/// What the consumer reports to the worker when it cannot go on.
pub(crate) type Fatal = UnboundedSender<Error>;

/// A running consumer. A warm stop is two steps: [`Consumer::stop_fetching`], then,
/// once the agents finished their current events, [`Consumer::shutdown`].
pub(crate) struct Consumer {
    /// Turns true once the first assignment is complete (state recovered).
    pub(crate) ready: tokio::sync::watch::Receiver<bool>,
    fetching: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Consumer {
    /// Joins the group and starts routing `routes`' topics.
    pub(crate) fn start(
        config: &Config,
        broker: &Broker,
        routes: Routes,
        leader: (&str, Leadership),
        sensors: Sensors,
        listener: Arc<dyn PartitionListener>,
        fatal: Fatal,
    ) -> Result<Consumer> {
        let tracker = Arc::new(OffsetTracker::new(config.max_buffered_per_partition));
        let fetching = Arc::new(AtomicBool::new(true));
        let (ready_sender, ready) = tokio::sync::watch::channel(false);
        let (leader_topic, leadership) = leader;
        let health = broker.health().clone();
        let context = GroupContext {
            ready: ready_sender,
            offset_reset: config.auto_offset_reset,
            tracker: tracker.clone(),
            drain_timeout: config.drain_timeout,
            listener: listener.clone(),
            fatal: fatal.clone(),
            fetching: fetching.clone(),
            sensors: sensors.clone(),
            rebalance_started: Mutex::default(),
            awaiting_assignment: Mutex::default(),
            in_callbacks: Mutex::default(),
            recovery: Mutex::default(),
            leader_topic: leader_topic.to_owned(),
            leadership: leadership.clone(),
            health: health.clone(),
            isolated: routes.isolated(),
        };
        let mut client = ClientConfig::new();
        if let Some(instance) = &config.instance_id {
            // Static membership: a restarted worker takes its old place without a rebalance.
            client.set("group.instance.id", instance);
        }
        client
            .set("group.id", config.group())
            .set("client.id", format!("{}-consumer", config.id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", config.auto_offset_reset.as_kafka())
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            // A tenth of the session (librdkafka's default is 3 s): the other workers
            // learn of a rebalance, such as one evicting a dead worker, that much sooner.
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout.as_millis() / 10)
                    .clamp(100, 3000)
                    .to_string(),
            )
            .set(
                "max.poll.interval.ms",
                config
                    .broker_max_poll_interval
                    .max(config.session_timeout)
                    .as_millis()
                    .to_string(),
            )
            // For the partitions' high watermarks (consumer lag).
            .set("statistics.interval.ms", "1000")
            // Kafka answers a fetch as soon as there is data (fetch.min.bytes=1); some
            // brokers (tansu) only when the wait is over: keep that short. On tansu 0.6.0
            // a bare consumer reads 2.5 M records/s with 5 ms, 0.43 M with 100 ms
            // (docs/BENCHMARKS.md, "ceiling").
            .set("fetch.wait.max.ms", "10");
        let consumer: BaseConsumer<GroupContext> = broker
            .connection()
            .apply(Role::Consumer, &mut client)
            .create_with_context(context)
            .map_err(|e| Error::kafka("creating the consumer", e))?;
        let mut topics = routes.topics();
        topics.push(leader_topic);
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::kafka(format!("subscribing to {topics:?}"), e))?;
        info!(topics = ?topics, group = config.group(), "consumer subscribed");

        let running = Arc::new(AtomicBool::new(true));
        let mut watchdog_client = ClientConfig::new();
        watchdog_client
            .set("group.id", config.group())
            .set("client.id", format!("{}-watchdog", config.id))
            .set("enable.auto.commit", "false");
        broker
            .connection()
            .apply(Role::Consumer, &mut watchdog_client);
        let watchdog = Watchdog::new(
            &watchdog_client,
            routes.topics().into_iter().map(str::to_owned).collect(),
            config.stall_timeout,
            sensors.monitor().clone(),
        )
        .map_err(|e| Error::kafka("creating the group watchdog", e))?;
        let watching = running.clone();
        std::thread::Builder::new()
            .name("faust-watchdog".into())
            .spawn(move || watchdog.run(&watching))
            .map_err(|e| Error::Io {
                context: "starting the group watchdog thread".into(),
                source: e,
            })?;
        let poller = Poller {
            consumer,
            routes,
            tracker,
            sensors,
            listener,
            fatal: fatal.clone(),
            fetching: fetching.clone(),
            running: running.clone(),
            commit_interval: config.commit_interval,
            commit_every: config.commit_every,
            stall_timeout: config.stall_timeout,
            session_timeout: config.session_timeout,
            leadership,
            health,
        };
        let thread = std::thread::Builder::new()
            .name("faust-consumer".into())
            .spawn(move || {
                // A panic here must not leave the worker idling without a consumer.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poller.run()));
                if outcome.is_err() {
                    let _ = fatal.send(Error::Worker(
                        "the consumer thread panicked; see the log above".into(),
                    ));
                }
            })
            .map_err(|e| Error::Io {
                context: "starting the consumer thread".into(),
                source: e,
            })?;
        Ok(Consumer {
            ready,
            fetching,
            running,
            thread,
        })
    }

    /// Pauses every partition; polling goes on so that the group and commits are served.
    pub(crate) fn stop_fetching(&self) {
        self.fetching.store(false, Ordering::SeqCst);
    }

    /// Commits the acknowledged prefix of every partition, leaves the group and closes
    /// the actors' inboxes. Events never acknowledged are read again after a restart.
    /// Waits at most `patience`: librdkafka's commit waits for a coordinator as long as
    /// none answers, and a broker that went away during the last commit must not keep the
    /// worker from exiting (what was not committed runs again after the restart).
    pub(crate) async fn shutdown(self, patience: Duration) {
        self.fetching.store(false, Ordering::SeqCst);
        self.running.store(false, Ordering::SeqCst);
        let thread = self.thread;
        match tokio::time::timeout(patience, tokio::task::spawn_blocking(move || thread.join()))
            .await
        {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => warn!("the consumer thread ended abnormally during shutdown"),
            Err(_) => warn!(
                ?patience,
                "the consumer did not stop in time (a commit waiting for the broker?); \
                 exiting without it: events processed since the last commit run again \
                 after the restart"
            ),
        }
    }
}

/// Notices when the poll loop stood still (the process was stopped, the machine paused)
/// for longer than the group's session, which may have given its partitions to others:
/// librdkafka learns so from its next heartbeat, and a flush before that would write
/// stale records into changelogs their new owners write. Commits wait until then.
struct Standstill {
    last_loop: Instant,
    /// Time spent in rebalance callbacks, as last seen, and in the last commit: both may
    /// take long without the group minding (librdkafka heartbeats meanwhile).
    callbacks_seen: Duration,
    committing: Duration,
    suspect_until: Option<Instant>,
}

impl Default for Standstill {
    fn default() -> Self {
        Standstill {
            last_loop: Instant::now(),
            callbacks_seen: Duration::ZERO,
            committing: Duration::ZERO,
            suspect_until: None,
        }
    }
}

impl Standstill {
    /// At the top of each loop, with the time spent in callbacks so far.
    fn check(&mut self, in_callbacks: Duration, session_timeout: Duration) {
        let stood_still = self
            .last_loop
            .elapsed()
            .saturating_sub(in_callbacks.saturating_sub(self.callbacks_seen))
            .saturating_sub(self.committing);
        self.callbacks_seen = in_callbacks;
        self.committing = Duration::ZERO;
        self.last_loop = Instant::now();
        if stood_still > session_timeout {
            warn!(
                ?stood_still,
                "the consumer did not run for longer than the group's session timeout; commits \
                 wait until the group confirms this worker still holds its partitions"
            );
            self.suspect_until = Some(Instant::now() + HEARTBEAT_WAIT);
        }
    }

    fn suspect(&self) -> bool {
        self.suspect_until.is_some_and(|t| Instant::now() < t)
    }
}

struct Poller {
    consumer: BaseConsumer<GroupContext>,
    routes: Routes,
    tracker: Arc<OffsetTracker>,
    sensors: Sensors,
    listener: Arc<dyn PartitionListener>,
    fatal: Fatal,
    fetching: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    commit_interval: Duration,
    commit_every: u64,
    stall_timeout: Duration,
    session_timeout: Duration,
    leadership: Leadership,
    health: KafkaHealth,
}

impl Poller {
    fn run(self) {
        let mut last_commit = Instant::now();
        let mut last_stall_check = Instant::now();
        let mut rebalance_warned = None;
        let mut paused_all = false;
        let mut standstill = Standstill::default();
        while self.running.load(Ordering::SeqCst) {
            standstill.check(self.consumer.context().in_callbacks(), self.session_timeout);
            if !self.fetching.load(Ordering::SeqCst) && !paused_all {
                self.pause_all();
                paused_all = true;
            }
            if !paused_all {
                self.resume_drained();
            }
            self.consumer.context().start_recovered(&self.consumer);
            match self.consumer.poll(POLL_INTERVAL) {
                Some(Ok(message)) => self.dispatch(&message),
                Some(Err(e)) => self.health.error(&e.to_string()),
                None => {}
            }
            if !standstill.suspect()
                && (last_commit.elapsed() >= self.commit_interval
                    || self.tracker.acked_since_commit() >= self.commit_every)
            {
                let started = Instant::now();
                let _ = self.commit();
                standstill.committing = started.elapsed();
                last_commit = Instant::now();
            }
            if last_stall_check.elapsed() >= STALL_CHECK_EVERY {
                self.warn_stalled();
                self.warn_stuck_rebalance(&mut rebalance_warned);
                last_stall_check = Instant::now();
            }
        }
        self.finish();
    }

    /// Python Faust's livelock warning: a partition with messages waiting whose
    /// committed offset has not moved for `stall_timeout` is named, with its agents.
    fn warn_stalled(&self) {
        let monitor = self.sensors.monitor();
        for stalled in monitor.check_stalled(self.stall_timeout) {
            let agents = self
                .routes
                .topics
                .get(&stalled.topic)
                .map(|r| r.names.join(", "))
                .unwrap_or_default();
            let cause = match stalled.fetch_stuck() {
                // Seen on nisshi in memory, whose fetches of a long partition of small
                // batches run out of time at a short fetch wait (README, Brokers).
                true => {
                    "the broker has returned none of them since this worker was given the \
                     partition: the fetch is stuck, not an agent (a broker that needs a longer \
                     consumer.fetch.wait.max.ms? see the README's Brokers section)"
                }
                false => "an agent may be stuck on the event at the committed offset",
            };
            warn!(
                topic = %stalled.topic,
                partition = stalled.partition,
                committed = stalled.committed,
                lag = stalled.lag,
                agents = %agents,
                "no progress for {:?}: the partition has messages waiting but its committed \
                 offset has not moved; {cause}",
                self.stall_timeout
            );
        }
    }

    /// A rebalance that does not end leaves every partition of the worker unprocessed,
    /// and no partition is then held to be reported as stalled: name the wait itself,
    /// every `stall_timeout` while it lasts.
    fn warn_stuck_rebalance(&self, warned: &mut Option<Instant>) {
        let Some(waited) = self.consumer.context().awaiting_assignment_for() else {
            *warned = None;
            return;
        };
        if waited < self.stall_timeout || warned.is_some_and(|w| w.elapsed() < self.stall_timeout) {
            return;
        }
        *warned = Some(Instant::now());
        warn!(
            "this worker gave up its partitions in a rebalance {:.0?} ago and the group has \
             not assigned any since, so nothing is processed; the group coordinator may be \
             waiting for a member that is gone or still finishing its events (see the \
             broker's log and the other workers')",
            waited
        );
    }

    fn dispatch(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(route) = self.routes.topics.get(message.topic()) else {
            return;
        };
        let tp = TopicPartition {
            topic: route.topic.clone(),
            partition: message.partition(),
        };
        let offset = message.offset();
        self.sensors
            .each(|s| s.message_in(&tp.topic, tp.partition, offset));
        let owed = route.agents.len() as u32;
        let (generation, pause) = match self.tracker.track(&tp, message.offset(), owed) {
            Tracked::Deliver { generation, pause } => (generation, pause),
            Tracked::NotAssigned => return,
            Tracked::Done => {
                debug!(topic = %tp.topic, partition = tp.partition, offset, "dropping an event before the start of its assignment, or fetched twice");
                return;
            }
        };
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sink: Arc<dyn crate::event::Acknowledge> = self.tracker.clone();
        self.routes
            .deliver(&tp.topic, tp.partition, |topic| Message {
                topic,
                partition: tp.partition,
                offset,
                timestamp: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: Vec::clone(&headers),
                ack: Ack {
                    sink: sink.clone(),
                    generation,
                },
            });
        if pause {
            debug!(topic = %tp.topic, partition = tp.partition, "pausing a partition with a full buffer");
            self.set_paused(&[tp], true);
        }
    }

    fn resume_drained(&self) {
        let ready = self.tracker.take_resumable();
        if !ready.is_empty() {
            debug!(partitions = ready.len(), "resuming drained partitions");
            self.set_paused(&ready, false);
        }
    }

    fn set_paused(&self, partitions: &[TopicPartition], paused: bool) {
        let mut list = TopicPartitionList::new();
        for tp in partitions {
            list.add_partition(&tp.topic, tp.partition);
        }
        let result = if paused {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        if let Err(e) = result {
            warn!(error = %e, paused, "could not change the paused state of partitions");
        }
    }

    /// Flushes table changes, then commits; a failed flush commits nothing and stops
    /// the worker, since committing would lose the changes of acknowledged events.
    /// Returns whether the commit went through (or there was nothing to commit).
    fn commit(&self) -> bool {
        // librdkafka's synchronous commit waits for a coordinator as long as none answers:
        // with the broker away, commits wait for it to be back (a later one covers them).
        if self.health.troubled() {
            return false;
        }
        // Lost to the group (its session ended): the partitions are someone else's now.
        if self.consumer.assignment_lost() {
            return false;
        }
        let points = self.tracker.commit_points();
        if points.is_empty() {
            return true;
        }
        match self.listener.flush(&points) {
            Ok(points) => commit_points(&self.consumer, points),
            Err(e) => {
                let _ = self.fatal.send(e);
                self.running.store(false, Ordering::SeqCst);
                false
            }
        }
    }

    fn pause_all(&self) {
        info!("stopped fetching");
        if let Ok(assignment) = self.consumer.assignment() {
            if let Err(e) = self.consumer.pause(&assignment) {
                warn!(error = %e, "could not pause the assigned partitions");
            }
        }
    }

    /// Commits what was acknowledged and leaves the group.
    fn finish(self) {
        let unfinished = self.tracker.in_flight();
        if unfinished > 0 {
            info!(
                unfinished,
                "events fetched but not processed are left for the next start"
            );
        }
        if self.health.troubled() {
            warn!(
                "the broker is not reachable: the final commit is skipped, and the events \
                 processed since the last commit run again after a restart"
            );
        }
        self.consumer.context().abandon_recovery();
        // A sink's outputs would be sent again after the restart: a failed final commit
        // is tried twice more.
        for attempt in 1..=3 {
            if self.commit() || self.health.troubled() || self.consumer.assignment_lost() {
                break;
            }
            if attempt < 3 {
                warn!(attempt, "the final commit failed; trying again in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Everything is committed: leaving the group must not wait for events again.
        let held = self.tracker.clear();
        self.listener.revoked(&held);
        self.leadership.set(false);
        let Poller {
            consumer, routes, ..
        } = self;
        drop(routes); // closes the actors' inboxes
        consumer.unsubscribe();
        drop(consumer); // leaves the group
        info!("consumer stopped");
    }
}
