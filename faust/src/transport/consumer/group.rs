//! The group member's librdkafka callbacks: rebalances (revocation drains and commits,
//! assignment recovers tables before any event of the partition is fetched), commit
//! outcomes and client logs; and the commit itself.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance},
    ClientContext, Offset, TopicPartitionList,
};
use tracing::{debug, info, warn};

use super::{offsets::OffsetTracker, routes::Isolated, Fatal, PartitionListener, TopicPartition};
use crate::{
    config::OffsetReset,
    leader::Leadership,
    sensors::Sensors,
    transport::{all_brokers_up, KafkaHealth},
    Error,
};

/// Commits `points`; returns whether the broker took them.
pub(super) fn commit_points(
    consumer: &BaseConsumer<GroupContext>,
    points: Vec<(TopicPartition, i64)>,
) -> bool {
    if points.is_empty() {
        return true;
    }
    let mut list = TopicPartitionList::new();
    for (tp, offset) in &points {
        if let Err(e) = list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
        {
            warn!(error = %e, "could not build the commit request");
            return false;
        }
    }
    // Synchronous: the commit's outcome is known here (rust-rdkafka's BaseConsumer never
    // delivers asynchronous commit results), and a commit a second costs one round trip.
    let started = Instant::now();
    let result = consumer.commit(&list, CommitMode::Sync);
    let ok = result.is_ok();
    if ok {
        debug!(partitions = points.len(), "offsets committed");
    }
    consumer
        .context()
        .committed(&list, started.elapsed(), result);
    ok
}

fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements().iter().map(TopicPartition::of).collect()
}

fn describe(partitions: &[TopicPartition]) -> String {
    let mut names: Vec<String> = partitions
        .iter()
        .map(|tp| format!("{}[{}]", tp.topic, tp.partition))
        .collect();
    names.sort();
    names.join(", ")
}

/// librdkafka callbacks: rebalances, commit results and client logs.
pub(super) struct GroupContext {
    pub(super) ready: tokio::sync::watch::Sender<bool>,
    pub(super) offset_reset: OffsetReset,
    pub(super) tracker: Arc<OffsetTracker>,
    pub(super) drain_timeout: Duration,
    pub(super) listener: Arc<dyn PartitionListener>,
    pub(super) fatal: Fatal,
    pub(super) fetching: Arc<AtomicBool>,
    pub(super) sensors: Sensors,
    /// When the rebalance under way began (the first revocation or assignment).
    pub(super) rebalance_started: Mutex<Option<Instant>>,
    /// Since when this worker, its revocation done, waits for the group's next assignment.
    pub(super) awaiting_assignment: Mutex<Option<Instant>>,
    /// Time spent in rebalance callbacks, all told (librdkafka heartbeats meanwhile).
    pub(super) in_callbacks: Mutex<Duration>,
    /// The recovery of the last assignment's tables, while it runs.
    pub(super) recovery: Mutex<Option<Recovery>>,
    /// Holding its one partition makes this worker the leader (see `crate::leader`).
    pub(super) leader_topic: String,
    pub(super) leadership: Leadership,
    pub(super) health: KafkaHealth,
    /// The agents with an actor per partition, whose actors stop with their partitions.
    pub(super) isolated: Vec<Arc<Isolated>>,
}

impl GroupContext {
    /// Records the outcome of a commit of `offsets`.
    fn committed(
        &self,
        offsets: &TopicPartitionList,
        took: Duration,
        result: rdkafka::error::KafkaResult<()>,
    ) {
        match result {
            Ok(()) => {
                for element in offsets.elements() {
                    if let Offset::Offset(offset) = element.offset() {
                        let tp = TopicPartition::of(&element);
                        self.tracker.committed(&tp, offset);
                        self.sensors
                            .monitor()
                            .committed(&tp.topic, tp.partition, offset);
                    }
                }
                self.sensors.each(|s| s.commit(took, None));
            }
            Err(e) => {
                self.health.error(&format!(
                    "committing offsets failed ({e}); the next commit retries"
                ));
                let error = e.to_string();
                self.sensors.each(|s| s.commit(took, Some(&error)));
            }
        }
    }

    fn rebalance_starts(&self) {
        let mut started = self
            .rebalance_started
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if started.is_none() {
            *started = Some(Instant::now());
            self.sensors.each(|s| s.rebalance_start());
        }
    }

    /// How long this worker has waited for the group to assign partitions again after
    /// it gave its own up, if it is waiting.
    pub(super) fn awaiting_assignment_for(&self) -> Option<Duration> {
        self.awaiting_assignment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|since| since.elapsed())
    }

    fn await_assignment(&self, waiting: bool) {
        *self
            .awaiting_assignment
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = waiting.then(Instant::now);
    }

    fn rebalance_ends(&self) {
        let started = self
            .rebalance_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(started) = started {
            let took = started.elapsed();
            self.sensors.each(|s| s.rebalance_end(took));
        }
    }

    /// Where consumption of a partition with no committed offset starts. Its bounds are
    /// asked for three times; a guess (its start, under `latest`) would reprocess it all.
    fn reset_offset(
        &self,
        consumer: &BaseConsumer<Self>,
        topic: &str,
        partition: i32,
    ) -> Result<i64, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok((low, high)) => {
                    return Ok(match self.offset_reset {
                        OffsetReset::Earliest => low,
                        OffsetReset::Latest => high,
                    })
                }
                Err(e) if attempt < 3 => {
                    warn!(topic, partition, error = %e, "could not read the partition's bounds; asking again");
                }
                Err(e) => {
                    return Err(Error::kafka(
                        format!(
                            "reading where partition {partition} of '{topic}' begins and ends \
                             (it has no committed offset, so auto.offset.reset decides where \
                             to start)"
                        ),
                        e,
                    ))
                }
            }
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, revoked: &[TopicPartition]) {
        // Once fetching stopped, no actor takes new events: waiting would only stall.
        let timeout = if self.fetching.load(Ordering::SeqCst) {
            self.drain_timeout
        } else {
            Duration::ZERO
        };
        // Actors finish the events they started; queued ones stay uncommitted for the
        // new owner, so a deep buffer never stalls the rebalance.
        self.tracker.stop_starting(revoked);
        if !consumer.assignment_lost() && !self.tracker.wait_started(revoked, timeout) {
            warn!(
                ?timeout,
                "events of revoked partitions are still being processed; their new owner will process them again"
            );
        }
        let points: Vec<_> = revoked
            .iter()
            .filter_map(|tp| self.tracker.revoke(tp).map(|offset| (tp.clone(), offset)))
            .collect();
        if !points.is_empty() && !consumer.assignment_lost() {
            match self.listener.flush(&points) {
                Ok(points) => {
                    commit_points(consumer, points);
                }
                Err(e) => {
                    let _ = self.fatal.send(e);
                }
            }
        }
        self.released(revoked);
        self.sensors.monitor().revoked(
            revoked
                .iter()
                .map(|tp| (tp.topic.to_string(), tp.partition)),
        );
    }

    /// Partitions are no longer this worker's: their tables and isolated actors go.
    fn released(&self, partitions: &[TopicPartition]) {
        self.listener.revoked(partitions);
        self.isolated
            .iter()
            .for_each(|agent| agent.release(partitions));
    }

    /// Takes the leader partition out of `partitions` (it carries no events), and notes
    /// whether this worker holds it now.
    fn take_leadership(&self, partitions: &mut Vec<TopicPartition>, assigned: bool) {
        let before = partitions.len();
        partitions.retain(|tp| *tp.topic != *self.leader_topic);
        if partitions.len() != before {
            self.leadership.set(assigned);
        }
    }

    /// Where each of `assigned` starts: its committed offset, or where auto.offset.reset says.
    fn start_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        assigned: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        if assigned.is_empty() {
            return Ok(HashMap::new());
        }
        let mut list = TopicPartitionList::new();
        for tp in assigned {
            list.add_partition(&tp.topic, tp.partition);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(30))
            .map_err(|e| Error::kafka("reading the group's committed offsets", e))?;
        committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => self.reset_offset(consumer, e.topic(), e.partition())?,
                };
                Ok((TopicPartition::of(e), offset))
            })
            .collect()
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, assigned: Vec<TopicPartition>) {
        if self.listener.co_partitioned() {
            let subscribed: Vec<String> = consumer
                .subscription()
                .map(|list| {
                    list.elements()
                        .iter()
                        .map(|e| e.topic().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let subscribed: Vec<&str> = subscribed
                .iter()
                .map(String::as_str)
                .filter(|t| *t != self.leader_topic)
                .collect();
            if let Some(problem) = split_partition(&subscribed, &assigned) {
                let _ = self.fatal.send(Error::Worker(problem));
                return;
            }
        }
        let committed = match self.start_offsets(consumer, &assigned) {
            Ok(committed) => committed,
            Err(e) => {
                let _ = self.fatal.send(e);
                return;
            }
        };
        // Recovery runs on a thread of its own while the partitions stay paused and the
        // consumer keeps polling: a long one no longer costs the group membership
        // (max.poll.interval.ms), and a revocation or a stop can cut it short.
        let generation = self.tracker.next_generation();
        self.sensors.monitor().given(
            assigned
                .iter()
                .map(|tp| (tp.topic.to_string(), tp.partition)),
        );
        let listener = self.listener.clone();
        let (partitions, offsets) = (assigned.clone(), committed.clone());
        let thread = std::thread::Builder::new()
            .name("faust-recovery".into())
            .spawn(move || listener.assigned(&partitions, &offsets, generation));
        match thread {
            Ok(thread) => {
                *self.recovery.lock().unwrap_or_else(|e| e.into_inner()) = Some(Recovery {
                    thread,
                    assigned,
                    committed,
                });
            }
            Err(e) => {
                let _ = self.fatal.send(Error::Io {
                    context: "starting the recovery thread".into(),
                    source: e,
                });
            }
        }
    }

    /// Whether a recovery is under way.
    fn recovering(&self) -> bool {
        self.recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Once the recovery under way is done, starts its partitions: they are tracked and
    /// fetched from then on. Called by the poll loop.
    pub(super) fn start_recovered(&self, consumer: &BaseConsumer<Self>) {
        let finished = {
            let mut recovery = self.recovery.lock().unwrap_or_else(|e| e.into_inner());
            match &*recovery {
                Some(r) if r.thread.is_finished() => recovery.take(),
                _ => None,
            }
        };
        let Some(Recovery {
            thread,
            assigned,
            committed,
        }) = finished
        else {
            return;
        };
        let outcome = thread.join().unwrap_or_else(|_| {
            Err(Error::Worker(
                "table recovery panicked; see the log above".into(),
            ))
        });
        if let Err(e) = outcome {
            let _ = self.fatal.send(e);
            return;
        }
        self.sensors.monitor().assigned(
            committed
                .iter()
                .map(|(tp, offset)| (tp.topic.to_string(), tp.partition, *offset)),
        );
        let mut list = TopicPartitionList::new();
        for tp in assigned {
            list.add_partition(&tp.topic, tp.partition);
            // librdkafka asks the broker for the committed offset a second time, and
            // tansu was seen to answer one commit behind: an event before the offset
            // recovery was given has its effect in the table already, and is dropped.
            let start = committed.get(&tp).copied();
            self.tracker.assign(tp, start);
        }
        if self.fetching.load(Ordering::SeqCst) {
            if let Err(e) = consumer.resume(&list) {
                warn!(error = %e, "could not resume the recovered partitions");
            }
        }
        self.rebalance_ends();
        self.ready.send_replace(true);
    }

    /// Stops the recovery under way, if any, and waits for its thread.
    pub(super) fn abandon_recovery(&self) {
        let abandoned = self
            .recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(recovery) = abandoned {
            self.listener.cancel_recovery();
            let _ = recovery.thread.join();
        }
    }
}

/// A recovery of the tables of an assignment, on its own thread.
pub(super) struct Recovery {
    thread: std::thread::JoinHandle<crate::Result<()>>,
    assigned: Vec<TopicPartition>,
    committed: HashMap<TopicPartition, i64>,
}

impl GroupContext {
    /// A rebalance callback: revocation drains and commits, assignment recovers.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                self.rebalance_starts();
                self.abandon_recovery();
                let mut revoked = partitions(list);
                self.take_leadership(&mut revoked, false);
                if !revoked.is_empty() {
                    info!(partitions = %describe(&revoked), "partitions revoked; finishing their events in flight");
                    self.revoke(consumer, &revoked);
                }
                self.await_assignment(true);
            }
            Rebalance::Assign(list) => {
                self.rebalance_starts();
                let mut assigned = partitions(list);
                info!(partitions = %describe(&assigned), "partitions assigned");
                self.await_assignment(false);
                self.take_leadership(&mut assigned, true);
                self.assign(consumer, assigned);
            }
            Rebalance::Error(e) => {
                // librdkafka drops the assignment: forget it here too, tables included,
                // so the next assignment recovers them afresh.
                warn!(error = %e, "rebalance failed; the partitions will be assigned again");
                self.abandon_recovery();
                self.await_assignment(false);
                self.leadership.set(false);
                let held = self.tracker.clear();
                self.released(&held);
            }
        }
    }

    /// Time spent in rebalance callbacks so far.
    pub(super) fn in_callbacks(&self) -> Duration {
        *self.in_callbacks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.health.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.health.error(&format!("{error}: {reason}"));
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        if all_brokers_up(&statistics) {
            self.health.healthy();
        }
        let monitor = self.sensors.monitor();
        for (name, topic) in &statistics.topics {
            for partition in topic.partitions.values() {
                // -1 is librdkafka's "unknown"; the internal partition -1 is skipped too.
                if partition.partition >= 0 && partition.hi_offset >= 0 {
                    monitor.high_watermark(name, partition.partition, partition.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let started = Instant::now();
        self.rebalance(consumer, rebalance);
        *self.in_callbacks.lock().unwrap_or_else(|e| e.into_inner()) += started.elapsed();
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // librdkafka keeps an application pause across reassignment: undo a pause for
        // back-pressure from before the rebalance, or pause if the worker is stopping.
        if let Rebalance::Assign(list) = rebalance {
            // Fetching waits for their recovery (see `start_recovered`).
            let result = if self.fetching.load(Ordering::SeqCst) && !self.recovering() {
                consumer.resume(list)
            } else {
                consumer.pause(list)
            };
            if let Err(e) = result {
                warn!(error = %e, "could not set the paused state of assigned partitions");
            }
        }
    }
}

/// Why `assigned` splits a table partition, if it does: it holds partition `p` of some
/// `subscribed` topics but not of others. Under the range assignor that happens only
/// when the group's members subscribe to different topics (a rolling deploy that adds
/// or removes a source topic): partition `p` of the new topic then goes to another
/// worker than partition `p` of the others, and two workers would write table
/// partition `p`.
fn split_partition(subscribed: &[&str], assigned: &[TopicPartition]) -> Option<String> {
    let held: std::collections::BTreeSet<i32> = assigned.iter().map(|tp| tp.partition).collect();
    for p in held {
        let (with, without): (Vec<&str>, Vec<&str>) = subscribed.iter().partition(|topic| {
            assigned
                .iter()
                .any(|tp| tp.partition == p && &*tp.topic == **topic)
        });
        if !without.is_empty() {
            return Some(format!(
                "the group gave this worker partition {p} of {with:?} but not of {without:?}, \
                 which feed the same table partitions: the group's workers subscribe to \
                 different topics (a rolling deploy that adds or removes a source topic?), \
                 and table partition {p} would be written by two workers. Stopping instead. \
                 Stop the workers of the old version before starting the new one, or give \
                 the new version its own app id"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }

    #[test]
    fn a_partition_held_for_every_topic_is_not_split() {
        let assigned = [tp("a", 2), tp("b", 2), tp("a", 3), tp("b", 3)];
        assert_eq!(split_partition(&["a", "b"], &assigned), None);
        assert_eq!(split_partition(&["a", "b"], &[]), None);
    }

    #[test]
    fn a_partition_held_for_some_topics_only_is_named() {
        let assigned = [tp("a", 0), tp("b", 0), tp("b", 1)];
        let problem = split_partition(&["a", "b"], &assigned).unwrap();
        assert!(
            problem.contains("partition 1 of [\"b\"] but not of [\"a\"]"),
            "{problem}"
        );
    }
}
