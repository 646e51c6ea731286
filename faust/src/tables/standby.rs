//! Standby replicas: table partitions this worker keeps warm for others.
//!
//! With `standby_replicas = N`, each partition of a (non-global) table is followed by up
//! to N workers besides its owner. A standby reads the partition's changelog into the
//! partition's own store under the datadir, the one the worker would recover into, and
//! serves nothing from it. When the group gives this worker the partition, recovery
//! takes the standby's store as it is and replays only the changelog's tail.
//!
//! A standby applies a changelog record only once the group has committed the event it
//! came from (as recovery would, see `recovery`): the records of an event the owner
//! processed but did not commit before it died are applied once the new owner has
//! processed the event again, after which its own records follow them.
//!
//! **Placement.** librdkafka has no custom assignors, so standbys go where the group's
//! own assignor will put a partition next. The group uses librdkafka's range assignor:
//! members sorted by id, each taking a contiguous run of partitions. Every worker
//! announces what it owns in the web directory, so the members' order can be read from
//! their runs; a partition's standby is the worker that the range assignor would give it
//! to if its owner left, then the one it would go to if that one left too, and so on.
//! See docs/ARCHITECTURE.md for how often that guess is right.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    message::Message as _,
    ClientConfig, Offset, TopicPartitionList,
};
use tracing::{debug, info, warn};

use super::{
    recovery::{self, Committed},
    state::TableState,
    store::{self, Batch, Store},
};
use crate::{
    codec::canonical_json,
    transport::connection::{Connection, Role},
    Error, Result,
};

/// How often the placement is worked out again from the directory.
const PLACE_EVERY: Duration = Duration::from_secs(1);
/// How often the group's commits are read while records wait for them.
const COMMITS_EVERY: Duration = Duration::from_millis(200);
/// How often the changelogs' ends are read, for the lag shown.
const ENDS_EVERY: Duration = Duration::from_secs(5);
/// How long a request to the broker may take here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What one worker last announced it owns: table name -> partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The worker's key in the directory (its web URL).
    pub(crate) worker: String,
    pub(crate) tables: BTreeMap<String, Vec<i32>>,
}

/// Every worker's latest claim, oldest first (a later claim of a partition wins).
pub(crate) type Claims = Arc<dyn Fn() -> Vec<Claim> + Send + Sync>;

/// The standbys of one table held by this worker, and the partitions being taken over.
#[derive(Default)]
pub(super) struct Standbys {
    following: HashMap<i32, Standby>,
    /// Partitions a recovery is taking over: no standby opens their store meanwhile.
    claimed: HashSet<i32>,
    /// Stores of partitions revoked in the rebalance under way: an eager rebalance
    /// revokes every partition and often gives most back, and keeping their stores open
    /// spares closing and reopening them (RocksDB flushes its memtables on close).
    parked: HashMap<i32, Box<dyn Store>>,
}

struct Standby {
    store: Box<dyn Store>,
    /// The first changelog offset not applied yet (`None`: the changelog's beginning).
    next: Option<i64>,
    /// Records read but not applied yet: their events are not committed yet.
    waiting: VecDeque<Waiting>,
    /// The changelog's end, as last read.
    end: i64,
}

struct Waiting {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// The event the record came from: (topic, offset).
    source: Option<(String, i64)>,
}

impl TableState {
    fn standbys(&self) -> MutexGuard<'_, Standbys> {
        self.standbys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the store this worker kept of `partition`, for a recovery to go on from:
    /// its standby's, or its own from before the rebalance (see [`Kept`]); until the
    /// returned claim is dropped, no standby opens the partition's store.
    pub(super) fn take_kept(&self, partition: i32) -> (Kept, Taken<'_>) {
        let mut standbys = self.standbys();
        standbys.claimed.insert(partition);
        let kept = match standbys.following.remove(&partition) {
            Some(standby) => {
                self.standby_stopped(partition);
                Kept::Standby(standby.store)
            }
            None => match standbys.parked.remove(&partition) {
                Some(store) => Kept::Parked(store),
                None => Kept::Nothing,
            },
        };
        (kept, Taken(self, partition))
    }

    /// Keeps the store of a partition revoked in the rebalance under way, for
    /// [`TableState::take_kept`] if the partition comes back.
    pub(super) fn park(&self, partition: i32, store: Box<dyn Store>) {
        self.standbys().parked.insert(partition, store);
    }

    /// Closes the stores parked in a rebalance that did not give their partitions back.
    pub(super) fn close_parked(&self) {
        // Taken out first: closing RocksDB takes a while, not under the lock.
        let parked = std::mem::take(&mut self.standbys().parked);
        drop(parked);
    }

    fn standby_stopped(&self, partition: i32) {
        let name = self.descriptor.name;
        self.sensors.each(|s| s.standby_stopped(name, partition));
    }

    fn standby_progress(&self, partition: i32, standby: &Standby) {
        let (name, offset) = (self.descriptor.name, standby.next.unwrap_or(0));
        let lag = (standby.end - offset).max(0);
        self.sensors
            .each(|s| s.standby_progress(name, partition, offset, lag));
    }
}

/// The store this worker kept of a partition it is given.
pub(super) enum Kept {
    /// Its standby's.
    Standby(Box<dyn Store>),
    /// Its own, revoked in this rebalance and given back.
    Parked(Box<dyn Store>),
    Nothing,
}

impl Standby {
    /// Where the consumer reads next: past the records waiting.
    fn read(&self) -> Option<i64> {
        self.waiting.back().map(|w| w.offset + 1).or(self.next)
    }
}

/// A partition a recovery is taking over (see [`TableState::take_kept`]).
pub(super) struct Taken<'a>(&'a TableState, i32);

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.0.standbys().claimed.remove(&self.1);
    }
}

/// The partitions of `table` (of `partitions`) that worker `me` keeps standbys of, given
/// the directory's `claims`: for each partition owned by another worker, the `replicas`
/// workers the range assignor would hand it to if its owner left, then if that one left
/// too, and so on. Members are the workers owning some partition of any table, and `me`.
/// `None` while a partition has no owner: the group is moving them (in an eager
/// rebalance every worker announces that it holds nothing for a moment), and the
/// standbys stay as they are until it is done.
pub(crate) fn placement(
    claims: &[Claim],
    me: &str,
    table: &str,
    partitions: i32,
    replicas: usize,
) -> Option<Vec<i32>> {
    // Who owns what now: the latest claim of each partition.
    let mut owners: HashMap<(&str, i32), &str> = HashMap::new();
    for claim in claims {
        for (name, held) in &claim.tables {
            for &p in held {
                owners.insert((name.as_str(), p), claim.worker.as_str());
            }
        }
    }
    let mut first_owned: BTreeMap<&str, i32> = BTreeMap::from([(me, i32::MAX)]);
    for (&(name, p), &worker) in &owners {
        let first = first_owned.entry(worker).or_insert(i32::MAX);
        if name == table {
            *first = (*first).min(p);
        }
    }
    // The range assignor's order: by the first partition each member owns; members
    // owning none come last (the assignor runs out of partitions before them).
    let mut members: Vec<(&str, i32)> = first_owned.into_iter().collect();
    members.sort_by_key(|&(worker, first)| (first, worker));
    let members: Vec<&str> = members.into_iter().map(|(worker, _)| worker).collect();
    let mut placed = Vec::new();
    for p in 0..partitions {
        let &owner = owners.get(&(table, p))?;
        let mut left: Vec<&str> = members.iter().copied().filter(|&w| w != owner).collect();
        for _ in 0..replicas {
            if left.is_empty() {
                break;
            }
            let next = range_member(p, partitions, left.len());
            if left[next] == me {
                placed.push(p);
                break;
            }
            left.remove(next);
        }
    }
    Some(placed)
}

/// The member (by its place in the sorted order) that the range assignor gives
/// partition `p` of `partitions` to, among `members`.
fn range_member(p: i32, partitions: i32, members: usize) -> usize {
    let (p, n, m) = (p as usize, partitions as usize, members);
    let (each, extra) = (n / m, n % m);
    let long_runs = extra * (each + 1);
    if p < long_runs {
        p / (each + 1)
    } else {
        extra + (p - long_runs) / each
    }
}

/// Follows the changelog partitions this worker stands by for, on a thread of its own.
pub(crate) struct StandbyFollower {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl StandbyFollower {
    /// Starts keeping `replicas` standbys of `tables`' partitions, placed from the
    /// directory's `claims`, as the worker `me` (its directory key); `group` is the
    /// consumer group whose commits tell which records may be applied.
    pub(crate) fn start(
        connection: &Connection,
        group: &str,
        tables: Vec<Arc<TableState>>,
        (claims, me): (Claims, String),
        replicas: usize,
    ) -> Result<StandbyFollower> {
        // The group's id, to read its commits; the consumer is assigned partitions
        // by hand and never joins the group nor commits.
        let consumer: BaseConsumer = connection
            .apply(
                Role::Consumer,
                ClientConfig::new()
                    .set("group.id", group)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.wait.max.ms", "100"),
            )
            .create()
            .map_err(|e| Error::kafka("creating the standby follower", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut follower = Follower {
            consumer,
            tables,
            claims,
            me,
            replicas,
            assigned: BTreeSet::new(),
            failing: false,
        };
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("faust-standby".into())
            .spawn(move || follower.run(&stopping))
            .map_err(|e| Error::Io {
                context: "starting the standby follower".into(),
                source: e,
            })?;
        Ok(StandbyFollower { stop, thread })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            warn!("the standby follower ended abnormally");
        }
    }
}

struct Follower {
    consumer: BaseConsumer,
    tables: Vec<Arc<TableState>>,
    claims: Claims,
    me: String,
    replicas: usize,
    /// (table index, partition) the consumer reads.
    assigned: BTreeSet<(usize, i32)>,
    /// The last request to the broker failed: repeats are logged at debug level.
    failing: bool,
}

impl Follower {
    fn run(&mut self, stop: &AtomicBool) {
        let mut placed: Option<Instant> = None;
        let mut commits_read = Instant::now();
        let mut ends_read: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            if placed.is_none_or(|t| t.elapsed() >= PLACE_EVERY) {
                placed = Some(Instant::now());
                self.place();
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => self.read(&message),
                Some(Err(e)) => self.failed(&Error::kafka("reading the standbys' changelogs", e)),
                None => {}
            }
            if commits_read.elapsed() >= COMMITS_EVERY {
                commits_read = Instant::now();
                self.apply_committed();
            }
            if ends_read.is_none_or(|t| t.elapsed() >= ENDS_EVERY) {
                ends_read = Some(Instant::now());
                self.read_ends();
            }
        }
        for table in &self.tables {
            let stopped: Vec<i32> = table.standbys().following.drain().map(|(p, _)| p).collect();
            for p in stopped {
                table.standby_stopped(p);
            }
        }
    }

    /// Opens and drops standbys as the placement says, and reassigns the consumer.
    fn place(&mut self) {
        let claims = (self.claims)();
        let mut wanted = BTreeSet::new();
        for (index, table) in self.tables.clone().iter().enumerate() {
            let name = table.descriptor.name;
            // While the group moves partitions, the standbys stay as they are.
            if let Some(placed) =
                placement(&claims, &self.me, name, table.partitions, self.replicas)
            {
                self.follow(table, &placed);
            }
            let standbys = table.standbys();
            wanted.extend(standbys.following.keys().map(|&p| (index, p)));
        }
        if wanted != self.assigned {
            self.assign(wanted);
        }
    }

    /// Makes `table`'s standbys those of `placed` this worker does not hold.
    fn follow(&mut self, table: &TableState, placed: &[i32]) {
        let name = table.descriptor.name;
        // Lock order: `standbys`, then `held` (see `TableManager::revoked`).
        let to_open: Vec<i32> = {
            let mut standbys = table.standbys();
            let held = table.held();
            let mut stopped = Vec::new();
            standbys.following.retain(|p, _| {
                let keep = placed.contains(p) && !held.contains_key(p);
                if !keep {
                    stopped.push(*p);
                }
                keep
            });
            for p in stopped {
                info!(table = name, partition = p, "standby stopped");
                table.standby_stopped(p);
            }
            let free = |p: &&i32| {
                !held.contains_key(p)
                    && !standbys.claimed.contains(p)
                    && !standbys.parked.contains_key(p)
                    && !standbys.following.contains_key(p)
            };
            placed.iter().filter(free).copied().collect()
        };
        // Opened without the locks: a recovery taking the partition over meanwhile
        // waits for the store, which is then dropped here.
        for p in to_open {
            let standby = match self.open(table, p) {
                Ok(standby) => standby,
                // Still open in this worker (a holding going away): the next placement
                // tries again.
                Err(Error::StoreLocked { .. }) => continue,
                Err(e) => {
                    self.failed(&e);
                    continue;
                }
            };
            let mut standbys = table.standbys();
            if standbys.claimed.contains(&p) || table.held().contains_key(&p) {
                continue;
            }
            info!(
                table = name,
                partition = p,
                from = standby.next.unwrap_or(0),
                "standby started: following the partition's changelog"
            );
            table.standby_progress(p, &standby);
            standbys.following.insert(p, standby);
        }
    }

    /// The standby of partition `p` of `table`: its store, and where it goes on from.
    /// The store is opened after the changelog's bounds are read, and held for one
    /// request at most: a recovery taking the partition over waits for it.
    fn open(&self, table: &TableState, p: i32) -> Result<Standby> {
        let (low, end) = self
            .consumer
            .fetch_watermarks(&table.changelog, p, REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka(format!("reading the bounds of '{}'", table.changelog), e))?;
        let store = store::open(table.memory, &table.store_path(p))?;
        let checkpoint = store.checkpoint()?;
        let commits = self.commits(checkpoint.sources.keys().map(|t| (t.as_str(), p)))?;
        let next = recovery::prepare(&*store, table, p, &committed_at(&commits, p), low)?;
        Ok(Standby {
            store,
            next,
            waiting: VecDeque::new(),
            end,
        })
    }

    /// Reads `wanted` from where each standby stopped (records waiting are read again).
    fn assign(&mut self, wanted: BTreeSet<(usize, i32)>) {
        let mut list = TopicPartitionList::new();
        for &(index, p) in &wanted {
            let table = &self.tables[index];
            let mut standbys = table.standbys();
            let Some(standby) = standbys.following.get_mut(&p) else {
                continue;
            };
            standby.waiting.clear();
            let offset = standby.next.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = list.add_partition_offset(&table.changelog, p, offset) {
                warn!(error = %e, "preparing the standby follower");
            }
        }
        match self.consumer.assign(&list) {
            Ok(()) => self.assigned = wanted,
            Err(e) => warn!(error = %e, "assigning the standby follower its changelogs"),
        }
    }

    /// Queues a changelog record for its standby.
    fn read(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(table) = self.tables.iter().find(|t| t.changelog == message.topic()) else {
            return;
        };
        let mut standbys = table.standbys();
        // Taken over, or stopped, since the consumer was assigned it.
        let Some(standby) = standbys.following.get_mut(&message.partition()) else {
            return;
        };
        let offset = message.offset();
        if standby.read().is_some_and(|read| offset < read) {
            return;
        }
        standby.end = standby.end.max(offset + 1);
        standby.waiting.push_back(Waiting {
            offset,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            source: recovery::source_of(message),
        });
    }

    /// Applies, in each standby, the records waiting up to the first whose event the
    /// group has not committed yet.
    fn apply_committed(&mut self) {
        let mut asked: BTreeSet<(String, i32)> = BTreeSet::new();
        for table in &self.tables {
            for (&p, standby) in &table.standbys().following {
                let sources = standby.waiting.iter().filter_map(|w| w.source.as_ref());
                asked.extend(sources.map(|(topic, _)| (topic.clone(), p)));
            }
        }
        let commits = match asked.is_empty() {
            true => HashMap::new(),
            false => match self.commits(asked.iter().map(|(t, p)| (t.as_str(), *p))) {
                Ok(commits) => {
                    self.failing = false;
                    commits
                }
                Err(e) => return self.failed(&e),
            },
        };
        for table in &self.tables {
            let mut standbys = table.standbys();
            let mut broken = Vec::new();
            for (&p, standby) in standbys.following.iter_mut() {
                if let Err(e) = apply(table, p, standby, &commits) {
                    broken.push((p, e));
                }
            }
            // Its store could not take the records: dropped (the next placement opens
            // it again, from what it holds), so that records do not pile up unapplied.
            for (p, error) in broken {
                standbys.following.remove(&p);
                table.standby_stopped(p);
                warn!(table = table.descriptor.name, partition = p, %error, "a standby could not apply its changelog: stopped");
            }
        }
    }

    /// The group's committed offsets of `partitions`; `None` where it committed none.
    fn commits<'a>(
        &self,
        partitions: impl Iterator<Item = (&'a str, i32)>,
    ) -> Result<HashMap<(String, i32), Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for (topic, p) in partitions {
            list.add_partition(topic, p);
        }
        if list.count() == 0 {
            return Ok(HashMap::new());
        }
        let committed = self
            .consumer
            .committed_offsets(list, REQUEST_TIMEOUT)
            .map_err(|e| Error::kafka("reading the group's commits for the standbys", e))?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                ((e.topic().to_owned(), e.partition()), offset)
            })
            .collect())
    }

    /// Reads the end of each standby's changelog partition, for its lag.
    fn read_ends(&mut self) {
        for table in &self.tables {
            let partitions: Vec<i32> = table.standbys().following.keys().copied().collect();
            for p in partitions {
                match self
                    .consumer
                    .fetch_watermarks(&table.changelog, p, REQUEST_TIMEOUT)
                {
                    Ok((_, end)) => {
                        if let Some(standby) = table.standbys().following.get_mut(&p) {
                            standby.end = standby.end.max(end);
                            table.standby_progress(p, standby);
                        }
                    }
                    Err(e) => return self.failed(&Error::kafka("reading a changelog's end", e)),
                }
            }
        }
        self.failing = false;
    }

    fn failed(&mut self, error: &Error) {
        match self.failing {
            false => warn!(%error, "standbys wait: retrying (repeats are logged at debug level)"),
            true => debug!(%error, "standbys wait: retrying"),
        }
        self.failing = true;
    }
}

/// The group's commits at partition `p` of `commits`, for `Committed::includes`: a topic
/// without a commit is left out, so its records count as committed.
fn committed_at(commits: &HashMap<(String, i32), Option<i64>>, p: i32) -> Committed {
    Committed::of(
        commits
            .iter()
            .filter(|((_, partition), _)| *partition == p)
            .filter_map(|((topic, _), offset)| Some((topic.clone(), (*offset)?)))
            .collect(),
    )
}

/// Applies `standby`'s waiting records, in order, up to the first whose event is not
/// committed (`commits`: the group's commits; `None`, no commit: such records are
/// applied, and a recovery rebuilds a store holding uncommitted effects).
fn apply(
    table: &TableState,
    p: i32,
    standby: &mut Standby,
    commits: &HashMap<(String, i32), Option<i64>>,
) -> Result<()> {
    let committed = committed_at(commits, p);
    let mut batch = Batch::default();
    let mut sources: HashMap<String, i64> = HashMap::new();
    while let Some(record) = standby.waiting.front() {
        if let Some((topic, offset)) = &record.source {
            let read = commits.contains_key(&(topic.clone(), p));
            if !read || !committed.includes(topic, *offset) {
                break;
            }
        }
        let Some(record) = standby.waiting.pop_front() else {
            break;
        };
        if let Some((topic, offset)) = record.source {
            let last = sources.entry(topic).or_insert(offset);
            *last = (*last).max(offset);
        }
        if let Some(key) = record.key {
            // Python Faust's `"caf\u00e9"` is stored as the `"café"` lookups use.
            let key = canonical_json(&key).into_owned();
            table.changelog_event(&key, record.value.as_deref());
            batch.writes.push((key, record.value));
        }
        batch.changelog_offset = Some(record.offset + 1);
    }
    let Some(next) = batch.changelog_offset else {
        return Ok(());
    };
    batch.sources = sources.into_iter().collect();
    standby.store.write(batch)?;
    standby.next = Some(next);
    table.standby_progress(p, standby);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(worker: &str, held: &[i32]) -> Claim {
        Claim {
            worker: worker.into(),
            tables: BTreeMap::from([("counts".to_owned(), held.to_vec())]),
        }
    }

    #[test]
    fn the_range_assignor_gives_longer_runs_first() {
        // 8 partitions over 3 members: 0-2, 3-5, 6-7.
        let owners: Vec<usize> = (0..8).map(|p| range_member(p, 8, 3)).collect();
        assert_eq!(owners, [0, 0, 0, 1, 1, 1, 2, 2]);
        // More members than partitions: the first ones get one each.
        assert_eq!(
            (0..2).map(|p| range_member(p, 2, 3)).collect::<Vec<_>>(),
            [0, 1]
        );
    }

    #[test]
    fn a_standby_is_where_the_partition_goes_if_its_owner_leaves() {
        // a: 0-2, b: 3-5, c: 6-7. If a leaves, b takes 0-3 and c 4-7.
        let claims = [
            claim("a", &[0, 1, 2]),
            claim("b", &[3, 4, 5]),
            claim("c", &[6, 7]),
        ];
        let standbys = |me| placement(&claims, me, "counts", 8, 1).unwrap();
        assert_eq!(standbys("b"), [0, 1, 2, 6, 7]); // a leaving: b 0-3; c leaving: b 4-7
        assert_eq!(standbys("c"), [4, 5]); // b leaving: a 0-3, c 4-7
        assert_eq!(standbys("a"), [3]);
        // Two replicas: every other worker.
        assert_eq!(
            placement(&claims, "a", "counts", 8, 2).unwrap(),
            [3, 4, 5, 6, 7]
        );
        // A partition nobody owns (a rebalance under way): no placement, the standbys
        // stay as they are.
        assert_eq!(placement(&claims, "b", "other", 8, 1), None);
        let moving = [claim("a", &[0, 1, 2]), claim("b", &[]), claim("c", &[6, 7])];
        assert_eq!(placement(&moving, "a", "counts", 8, 1), None);
        // A later claim wins: a's old claim of 3 does not make it 3's owner.
        let moved = [
            claim("a", &[0, 1, 2, 3]),
            claim("b", &[3, 4, 5]),
            claim("c", &[6, 7]),
        ];
        assert_eq!(
            placement(&moved, "b", "counts", 8, 1).unwrap(),
            [0, 1, 2, 6, 7]
        );
    }

    /// The placement against the range assignor itself, over random groups of at most
    /// as many workers as partitions: a single leave always moves each of the leaver's
    /// partitions to a worker standing by for it. Joins are counted, not asserted (the
    /// newcomer's place in the order cannot be known): `--nocapture` prints how many
    /// of the partitions moving between the workers already there land on a standby.
    #[test]
    fn a_single_leave_always_lands_on_a_standby() {
        use proptest::{prelude::*, test_runner::TestRunner};
        let mut runner = TestRunner::new(crate::property_test_config());
        let group = (2i32..=16).prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::btree_set("[a-z]{6}", 2..=n as usize),
            )
        });
        let scenario = (group, "[a-z]{6}", any::<usize>());
        let joins = std::cell::Cell::new((0u32, 0u32));
        runner
            .run(&scenario, |((partitions, members), newcomer, leaving)| {
                let members: Vec<String> = members.into_iter().collect();
                let claims = assign(&members, partitions);
                let owner_after = |after: &[Claim], p: i32| -> String {
                    let claim = after.iter().find(|c| c.tables["counts"].contains(&p));
                    claim.expect("every partition is assigned").worker.clone()
                };
                let leaver = &members[leaving % members.len()];
                let rest: Vec<String> = members.iter().filter(|m| *m != leaver).cloned().collect();
                let after = assign(&rest, partitions);
                for p in owned(&claims, leaver) {
                    let new_owner = owner_after(&after, p);
                    let placed = placement(&claims, &new_owner, "counts", partitions, 1);
                    prop_assert!(placed.is_some_and(|placed| placed.contains(&p)));
                }
                if !members.contains(&newcomer) {
                    let mut joined = members.clone();
                    joined.push(newcomer.clone());
                    let after = assign(&joined, partitions);
                    for claim in &claims {
                        for &p in &claim.tables["counts"] {
                            let new_owner = owner_after(&after, p);
                            if new_owner != claim.worker && new_owner != newcomer {
                                let placed =
                                    placement(&claims, &new_owner, "counts", partitions, 1);
                                let hit = placed.is_some_and(|placed| placed.contains(&p));
                                let (moved, hits) = joins.get();
                                joins.set((moved + 1, hits + u32::from(hit)));
                            }
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
        let (moved, hits) = joins.get();
        eprintln!("joins: {hits} of {moved} partitions moving between workers already there landed on a standby");
    }

    /// The range assignor's claims for `members` (sorted by id, as librdkafka sorts).
    fn assign(members: &[String], partitions: i32) -> Vec<Claim> {
        let mut sorted = members.to_vec();
        sorted.sort();
        sorted
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let held: Vec<i32> = (0..partitions)
                    .filter(|&p| range_member(p, partitions, sorted.len()) == i)
                    .collect();
                claim(m, &held)
            })
            .collect()
    }

    fn owned(claims: &[Claim], worker: &str) -> Vec<i32> {
        claims
            .iter()
            .find(|c| c.worker == worker)
            .map(|c| c.tables["counts"].clone())
            .unwrap_or_default()
    }
}
