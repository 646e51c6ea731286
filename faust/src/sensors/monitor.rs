//! The Monitor: the built-in sensor. It keeps counters, gauges and latency histograms
//! per topic partition, agent, sink topic and table, and hands out a [`Stats`] snapshot
//! for `/stats` and `/metrics`. Each kind of figure has its own lock, so the consumer
//! thread, the actors and the producer's delivery thread rarely meet.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{Histogram, Sensor};

#[derive(Debug)]
/// The built-in sensor: keeps the figures `/metrics`, `/stats` and the status page show ([`crate::Worker::monitor`]).
pub struct Monitor {
    started: Instant,
    phase: AtomicU8,
    rebalancing: AtomicBool,
    /// Topic -> partition -> figures (by topic first, so lookups need no allocation).
    partitions: Mutex<BTreeMap<String, BTreeMap<i32, PartitionStats>>>,
    agents: Mutex<BTreeMap<String, AgentStats>>,
    sends: Mutex<Sends>,
    commits: Mutex<Commits>,
    tables: Mutex<BTreeMap<String, TableStats>>,
    recovery: Mutex<BTreeMap<(String, i32), RecoveryStats>>,
    standbys: Mutex<BTreeMap<(String, i32), StandbyStats>>,
    rebalances: Mutex<Histogram>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            started: Instant::now(),
            phase: AtomicU8::new(Phase::Starting as u8),
            rebalancing: AtomicBool::new(false),
            partitions: Mutex::default(),
            agents: Mutex::default(),
            sends: Mutex::default(),
            commits: Mutex::default(),
            tables: Mutex::default(),
            recovery: Mutex::default(),
            standbys: Mutex::default(),
            rebalances: Mutex::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Sends {
    topics: BTreeMap<String, SendStats>,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Commits {
    latency: Histogram,
    errors: u64,
}

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Joining the group, recovering the first partitions' tables.
    Starting = 0,
    /// Agents take events.
    Ready = 1,
    /// A shutdown began.
    Stopping = 2,
}

/// Everything the Monitor knows, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Recovery of the first assignment is done and agents take events.
    pub ready: bool,
    /// Where the worker is in its lifecycle.
    pub phase: Phase,
    /// Seconds since the worker started.
    pub uptime_seconds: f64,
    /// A rebalance is under way.
    pub rebalancing: bool,
    /// Partitions of source topics this worker holds or held.
    pub partitions: Vec<PartitionStats>,
    /// Per agent.
    pub agents: Vec<AgentStats>,
    /// Per topic sent to.
    pub sends: Vec<SendStats>,
    /// Time from handing a message to the producer until the broker acknowledged it.
    pub send_latency: Histogram,
    /// Time to flush table changes and commit offsets.
    pub commit_latency: Histogram,
    /// Commits that failed.
    pub commit_errors: u64,
    /// Per table.
    pub tables: Vec<TableStats>,
    /// Per table partition recovered.
    pub recovery: Vec<RecoveryStats>,
    /// Per table partition this worker keeps warm for another (standby replicas).
    pub standbys: Vec<StandbyStats>,
    /// How long each rebalance took, until this worker had its partitions recovered.
    pub rebalances: Histogram,
}

#[derive(Debug, Clone, Default, Serialize)]
/// One source topic partition's figures.
pub struct PartitionStats {
    /// The topic.
    pub topic: String,
    /// Its partition number.
    pub partition: i32,
    /// Whether this worker holds it now.
    pub assigned: bool,
    /// Messages fetched from it.
    pub messages_received: u64,
    /// One past the last message fetched from it since this worker was given it.
    pub fetched_offset: Option<i64>,
    /// The offset the group committed (where consumption resumes).
    pub committed_offset: Option<i64>,
    /// One past the last offset in the partition, as the broker last reported it.
    pub high_watermark: Option<i64>,
    /// Messages not yet committed: high watermark minus committed offset.
    pub lag: Option<i64>,
    /// The partition has lag but its committed offset has not moved for the stall timeout.
    pub stalled: bool,
    /// When the committed offset last moved (or the partition was assigned).
    #[serde(skip)]
    progressed_at: Option<Instant>,
    /// The group gave it to this worker, which may still be recovering its tables.
    #[serde(skip)]
    given: bool,
}

/// A partition whose committed offset has not moved for the stall timeout while it has messages waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Its committed offset.
    pub committed: i64,
    /// Messages waiting after it.
    pub lag: i64,
    /// One past the last message fetched from it since this worker was given it.
    pub fetched: Option<i64>,
}

impl Stalled {
    /// Nothing past the committed offset came from the broker: the fetch is stuck, not
    /// an agent.
    pub fn fetch_stuck(&self) -> bool {
        self.fetched.is_none_or(|fetched| fetched <= self.committed)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
/// One agent's figures.
pub struct AgentStats {
    /// The agent's name.
    pub agent: String,
    /// Events processed.
    pub events: u64,
    /// Time spent per event.
    pub event_duration: Histogram,
    /// Messages skipped as undecodable.
    pub decode_errors: u64,
    /// Messages skipped as repeats of records already applied (see `repeat_skipped`).
    pub repeats_skipped: u64,
    /// Actor failures (errors and panics).
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
/// Messages sent to one topic.
pub struct SendStats {
    /// The topic.
    pub topic: String,
    /// Messages the broker acknowledged.
    pub messages: u64,
    /// Messages refused or timed out.
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
/// One table's reads and writes.
pub struct TableStats {
    /// The table's name.
    pub table: String,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Deletes.
    pub deletes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
/// The latest recovery of one table partition.
pub struct RecoveryStats {
    /// The table's name.
    pub table: String,
    /// The partition.
    pub partition: i32,
    /// Changelog records applied so far.
    pub records_applied: u64,
    /// Changelog records still to read.
    pub records_remaining: u64,
    /// Whether it finished.
    pub done: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
/// A table partition this worker keeps warm for another: a standby replica.
pub struct StandbyStats {
    /// The table's name.
    pub table: String,
    /// The partition.
    pub partition: i32,
    /// The next changelog offset it applies.
    pub offset: i64,
    /// Changelog records it has not applied yet.
    pub lag: i64,
}

/// The totals the worker logs when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages fetched.
    pub messages_received: u64,
    /// Events agents processed.
    pub events_processed: u64,
    /// Messages skipped as undecodable.
    pub decode_errors: u64,
    /// Agent actor failures.
    pub agent_errors: u64,
    /// Messages the broker acknowledged.
    pub messages_sent: u64,
    /// Messages refused or timed out.
    pub send_errors: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Monitor {
    /// Lists the app's agents and tables, so they show (with zeros) before any event.
    pub(crate) fn register<'a>(
        &self,
        agents: impl IntoIterator<Item = &'a str>,
        tables: impl IntoIterator<Item = &'a str>,
    ) {
        let mut known = lock(&self.agents);
        for agent in agents {
            agent_entry(&mut known, agent);
        }
        let mut known = lock(&self.tables);
        for table in tables {
            table_entry(&mut known, table);
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Where the worker is in its lifecycle.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Stopping,
        }
    }

    /// The group gave this worker `partitions`; their tables are recovered next.
    pub(crate) fn given(&self, partitions: impl IntoIterator<Item = (String, i32)>) {
        let mut known = lock(&self.partitions);
        for (topic, partition) in partitions {
            partition_entry(&mut known, topic, partition).given = true;
        }
    }

    /// The consumer now holds `partitions`, to be read from these committed offsets.
    pub(crate) fn assigned(&self, partitions: impl IntoIterator<Item = (String, i32, i64)>) {
        let mut known = lock(&self.partitions);
        for (topic, partition, committed) in partitions {
            let stats = partition_entry(&mut known, topic, partition);
            stats.assigned = true;
            stats.fetched_offset = None;
            stats.committed_offset = Some(committed);
            stats.lag = lag(stats);
            stats.progressed_at = Some(Instant::now());
            stats.stalled = false;
        }
    }

    pub(crate) fn revoked(&self, partitions: impl IntoIterator<Item = (String, i32)>) {
        let mut known = lock(&self.partitions);
        for key in partitions {
            if let Some(stats) = known.get_mut(&key.0).and_then(|p| p.get_mut(&key.1)) {
                stats.assigned = false;
                stats.given = false;
                stats.stalled = false;
            }
        }
    }

    /// The group committed `offset` (the next to read) of a partition.
    pub(crate) fn committed(&self, topic: &str, partition: i32, offset: i64) {
        let mut known = lock(&self.partitions);
        let stats = partition_entry(&mut known, topic.to_owned(), partition);
        if stats.committed_offset != Some(offset) {
            stats.progressed_at = Some(Instant::now());
            stats.stalled = false;
        }
        stats.committed_offset = Some(offset);
        stats.lag = lag(stats);
    }

    /// Marks assigned partitions that have lag and whose committed offset has not moved
    /// for `timeout`; returns the ones newly found stalled.
    pub(crate) fn check_stalled(&self, timeout: Duration) -> Vec<Stalled> {
        let mut known = lock(&self.partitions);
        let mut newly = Vec::new();
        for stats in known.values_mut().flat_map(|p| p.values_mut()) {
            let waiting = stats.assigned && stats.lag.is_some_and(|lag| lag > 0);
            let still = stats
                .progressed_at
                .is_some_and(|at| at.elapsed() >= timeout);
            let stalled = waiting && still;
            if stalled && !stats.stalled {
                newly.push(Stalled {
                    topic: stats.topic.clone(),
                    partition: stats.partition,
                    committed: stats.committed_offset.unwrap_or_default(),
                    lag: stats.lag.unwrap_or_default(),
                    fetched: stats.fetched_offset,
                });
            }
            stats.stalled = stalled;
        }
        newly
    }

    /// Whether the group gave this worker the partition (recovering it or processing it).
    pub(crate) fn holds(&self, topic: &str, partition: i32) -> bool {
        let known = lock(&self.partitions);
        known
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .is_some_and(|stats| stats.given || stats.assigned)
    }

    /// Whether every assigned topic partition numbered `partition` has all its messages
    /// committed, as far as known (nothing waiting to be processed there).
    pub(crate) fn caught_up(&self, partition: i32) -> bool {
        let known = lock(&self.partitions);
        known
            .values()
            .filter_map(|topic| topic.get(&partition))
            .filter(|stats| stats.assigned)
            .all(|stats| stats.lag.is_none_or(|lag| lag == 0))
    }

    /// The broker reported the end of a partition.
    pub(crate) fn high_watermark(&self, topic: &str, partition: i32, high: i64) {
        let mut known = lock(&self.partitions);
        if let Some(stats) = known.get_mut(topic).and_then(|p| p.get_mut(&partition)) {
            stats.high_watermark = Some(high);
            stats.lag = lag(stats);
        }
    }

    /// A snapshot of every figure.
    pub fn stats(&self) -> Stats {
        let sends = lock(&self.sends);
        let commits = lock(&self.commits);
        Stats {
            ready: self.phase() == Phase::Ready,
            phase: self.phase(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            rebalancing: self.rebalancing.load(Ordering::Relaxed),
            partitions: lock(&self.partitions)
                .values()
                .flat_map(|p| p.values().cloned())
                .collect(),
            agents: lock(&self.agents).values().cloned().collect(),
            sends: sends.topics.values().cloned().collect(),
            send_latency: sends.latency.clone(),
            commit_latency: commits.latency.clone(),
            commit_errors: commits.errors,
            tables: lock(&self.tables).values().cloned().collect(),
            recovery: lock(&self.recovery).values().cloned().collect(),
            standbys: lock(&self.standbys).values().cloned().collect(),
            rebalances: lock(&self.rebalances).clone(),
        }
    }

    /// The totals, for the last log line.
    pub fn counters(&self) -> Counters {
        let stats = self.stats();
        let agents = &stats.agents;
        Counters {
            messages_received: stats.partitions.iter().map(|p| p.messages_received).sum(),
            events_processed: agents.iter().map(|a| a.events).sum(),
            decode_errors: agents.iter().map(|a| a.decode_errors).sum(),
            agent_errors: agents.iter().map(|a| a.errors).sum(),
            messages_sent: stats.sends.iter().map(|s| s.messages).sum(),
            send_errors: stats.sends.iter().map(|s| s.errors).sum(),
        }
    }
}

/// The entry for `name`, made by `new` the first time; an existing entry is found
/// without allocating, as the hot path needs.
fn named<'a, T>(
    known: &'a mut BTreeMap<String, T>,
    name: &str,
    new: impl FnOnce(String) -> T,
) -> &'a mut T {
    if !known.contains_key(name) {
        known.insert(name.to_owned(), new(name.to_owned()));
    }
    known.get_mut(name).expect("inserted above")
}

fn agent_entry<'a>(known: &'a mut BTreeMap<String, AgentStats>, agent: &str) -> &'a mut AgentStats {
    named(known, agent, |agent| AgentStats {
        agent,
        ..AgentStats::default()
    })
}

fn table_entry<'a>(known: &'a mut BTreeMap<String, TableStats>, table: &str) -> &'a mut TableStats {
    named(known, table, |table| TableStats {
        table,
        ..TableStats::default()
    })
}

fn partition_entry(
    known: &mut BTreeMap<String, BTreeMap<i32, PartitionStats>>,
    topic: String,
    partition: i32,
) -> &mut PartitionStats {
    known
        .entry(topic.clone())
        .or_default()
        .entry(partition)
        .or_insert_with(|| PartitionStats {
            topic,
            partition,
            ..PartitionStats::default()
        })
}

fn lag(stats: &PartitionStats) -> Option<i64> {
    Some((stats.high_watermark? - stats.committed_offset?).max(0))
}

impl Sensor for Monitor {
    fn message_in(&self, topic: &str, partition: i32, offset: i64) {
        let mut known = lock(&self.partitions);
        // Looked up by reference first: the hot path allocates nothing.
        let note = |stats: &mut PartitionStats| {
            stats.messages_received += 1;
            stats.fetched_offset = Some(offset + 1);
        };
        if let Some(stats) = known.get_mut(topic).and_then(|p| p.get_mut(&partition)) {
            note(stats);
        } else {
            note(partition_entry(&mut known, topic.to_owned(), partition));
        }
    }

    fn event_end(&self, agent: &str, took: Duration) {
        let mut known = lock(&self.agents);
        let stats = agent_entry(&mut known, agent);
        stats.events += 1;
        stats.event_duration.observe(took);
    }

    fn send_end(&self, topic: &str, took: Duration, error: Option<&str>) {
        let mut sends = lock(&self.sends);
        sends.latency.observe(took);
        let stats = named(&mut sends.topics, topic, |topic| SendStats {
            topic,
            ..SendStats::default()
        });
        match error {
            None => stats.messages += 1,
            Some(_) => stats.errors += 1,
        }
    }

    fn commit(&self, took: Duration, error: Option<&str>) {
        let mut commits = lock(&self.commits);
        match error {
            None => commits.latency.observe(took),
            Some(_) => commits.errors += 1,
        }
    }

    fn table_get(&self, table: &str) {
        table_entry(&mut lock(&self.tables), table).reads += 1;
    }

    fn table_set(&self, table: &str) {
        table_entry(&mut lock(&self.tables), table).writes += 1;
    }

    fn table_delete(&self, table: &str) {
        table_entry(&mut lock(&self.tables), table).deletes += 1;
    }

    fn rebalance_start(&self) {
        self.rebalancing.store(true, Ordering::Relaxed);
    }

    fn rebalance_end(&self, took: Duration) {
        lock(&self.rebalances).observe(took);
        self.rebalancing.store(false, Ordering::Relaxed);
    }

    fn recovery_progress(
        &self,
        table: &str,
        partition: i32,
        applied: u64,
        remaining: u64,
        done: bool,
    ) {
        lock(&self.recovery).insert(
            (table.to_owned(), partition),
            RecoveryStats {
                table: table.to_owned(),
                partition,
                records_applied: applied,
                records_remaining: remaining,
                done,
            },
        );
    }

    fn standby_progress(&self, table: &str, partition: i32, offset: i64, lag: i64) {
        lock(&self.standbys).insert(
            (table.to_owned(), partition),
            StandbyStats {
                table: table.to_owned(),
                partition,
                offset,
                lag,
            },
        );
    }

    fn standby_stopped(&self, table: &str, partition: i32) {
        lock(&self.standbys).remove(&(table.to_owned(), partition));
    }

    fn decode_error(&self, agent: &str, _topic: &str, _partition: i32, _offset: i64, _error: &str) {
        agent_entry(&mut lock(&self.agents), agent).decode_errors += 1;
    }

    fn repeat_skipped(&self, agent: &str, _topic: &str, _partition: i32) {
        agent_entry(&mut lock(&self.agents), agent).repeats_skipped += 1;
    }

    fn agent_error(&self, agent: &str, _error: &str) {
        agent_entry(&mut lock(&self.agents), agent).errors += 1;
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received={} processed={} decode_errors={} agent_errors={} sent={} send_errors={}",
            self.messages_received,
            self.events_processed,
            self.decode_errors,
            self.agent_errors,
            self.messages_sent,
            self.send_errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled(monitor: &Monitor) -> Vec<(i32, bool)> {
        let found = monitor.check_stalled(Duration::ZERO);
        found
            .iter()
            .map(|s| (s.partition, s.fetch_stuck()))
            .collect()
    }

    #[test]
    fn a_stall_tells_a_stuck_fetch_from_a_stuck_agent() {
        let monitor = Monitor::default();
        monitor.assigned([("t".to_owned(), 0, 100), ("t".to_owned(), 1, 100)]);
        monitor.high_watermark("t", 0, 200);
        monitor.high_watermark("t", 1, 200);
        // Partition 1's event at the committed offset came and is still running;
        // partition 0 got nothing from the broker.
        monitor.message_in("t", 1, 100);
        assert_eq!(stalled(&monitor), [(0, true), (1, false)]);

        // Given again, a partition has fetched nothing yet, whatever it fetched before.
        monitor.revoked([("t".to_owned(), 1)]);
        monitor.assigned([("t".to_owned(), 1, 150)]);
        assert_eq!(stalled(&monitor), [(1, true)]);
    }
}
