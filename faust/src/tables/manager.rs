//! The TableManager: opens each table's partition stores as the consumer is assigned
//! partitions (recovering them from the changelog first), makes changelog writes
//! durable before the consumer commits, closes stores on revocation, and answers
//! lookups for the web server. Reads and writes go through each table's `TableState`.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock, RwLock,
    },
    time::{Duration, Instant},
};

use tracing::{debug, info};

use super::{
    cache::{self, WriteCache},
    global::Follower,
    recovery::{self, Committed},
    standby::{Claims, Kept, StandbyFollower},
    state::{key_partition, Broken, TablePartition, TableState},
    store::{self, Batch},
    windows::{self, WindowIndex},
};
use crate::{
    config::Config,
    descriptor::TableDescriptor,
    event::source_headers,
    origin::Mark,
    sensors::Sensors,
    time::Clock,
    transport::{
        connection::Connection,
        consumer::{PartitionListener, TopicPartition},
        producer::Producer,
        KafkaHealth,
    },
    Error, Result,
};

/// How long a commit waits for its changelog records before it leaves them for the next
/// commit: well within the consumer's poll interval, whatever the producer's timeout.
const FLUSH_WAIT: Duration = Duration::from_secs(30);

/// Table partitions recovered at once, each on a thread of its own.
const PARALLEL_RECOVERIES: usize = 8;

/// How long a re-assigned partition's store waits for its previous holding to let go.
const STORE_PATIENCE: Duration = Duration::from_secs(10);

pub(crate) struct TableManager {
    tables: Vec<Arc<TableState>>,
    connection: Connection,
    health: KafkaHealth,
    runtime: tokio::runtime::Handle,
    followers: Mutex<Vec<Follower>>,
    standbys: Mutex<Option<StandbyFollower>>,
    broken: Broken,
    /// Set to stop the recovery under way (see `PartitionListener::cancel_recovery`).
    cancel_recovery: AtomicBool,
    /// Runs a table's `on_recover` (in the worker), set by the worker.
    on_recovered: OnceLock<RecoveredHook>,
}

/// Runs the `on_recover` hook of a table whose partitions were just recovered, and
/// returns when it is done (recovery threads wait for it, so events wait too).
pub(crate) type RecoveredHook = Box<dyn Fn(&'static TableDescriptor) + Send + Sync>;

/// Takes the datadir for this worker alone (when a table is on disk): the lock is
/// held until the returned file is dropped.
pub(crate) fn lock_datadir(
    config: &Config,
    tables: &[&TableDescriptor],
) -> Result<Option<std::fs::File>> {
    let on_disk = tables.iter().any(|t| t.store != "memory");
    on_disk
        .then(|| store::lock_dir(&tables_dir(config)))
        .transpose()
}

/// Where an app's table stores live.
pub(crate) fn tables_dir(config: &Config) -> PathBuf {
    config.datadir.join(&config.id).join("tables")
}

impl TableManager {
    /// The tables `descriptors` of the app configured by `config`, holding no partition yet.
    pub(crate) fn new(
        config: &Config,
        descriptors: &[&'static TableDescriptor],
        producer: &Producer,
        sensors: &Sensors,
        connection: &Connection,
        clock: &Clock,
        health: &KafkaHealth,
    ) -> Result<TableManager> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Table("the table manager needs a running async runtime".into()))?;
        let broken = Broken::default();
        let writer: Arc<str> = Arc::from(format!(
            "{}-{}-{}",
            config.id,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let tables = descriptors
            .iter()
            .map(|&descriptor| {
                Arc::new(TableState {
                    broken: broken.clone(),
                    writer: writer.clone(),
                    descriptor,
                    changelog: descriptor.changelog_topic(&config.id),
                    partitions: descriptor.partitions_or(config.topic_partitions),
                    memory: descriptor.store == "memory",
                    dir: tables_dir(config),
                    producer: producer.clone(),
                    sensors: sensors.clone(),
                    clock: clock.clone(),
                    held: RwLock::default(),
                    unechoed: Mutex::default(),
                    standbys: Mutex::default(),
                })
            })
            .collect();
        Ok(TableManager {
            tables,
            connection: connection.clone(),
            health: health.clone(),
            runtime,
            followers: Mutex::default(),
            standbys: Mutex::default(),
            broken,
            cancel_recovery: AtomicBool::new(false),
            on_recovered: OnceLock::new(),
        })
    }

    /// Sets what runs the tables' `on_recover` hooks (once; the worker sets it).
    pub(crate) fn on_recovered(&self, hook: RecoveredHook) {
        let _ = self.on_recovered.set(hook);
    }

    /// Runs the `on_recover` hook of each of `tables` that has one.
    fn recovered<'a>(&self, tables: impl IntoIterator<Item = &'a Arc<TableState>>) {
        let Some(hook) = self.on_recovered.get() else {
            return;
        };
        for table in tables {
            if table.descriptor.on_recover.is_some() {
                hook(table.descriptor);
            }
        }
    }

    /// Recovers every partition of every global table, then follows their changelogs.
    pub(crate) fn start_global_tables(&self) -> Result<()> {
        for table in self.tables.iter().filter(|t| t.descriptor.global) {
            for partition in 0..table.partitions {
                let never = AtomicBool::new(false);
                hold(
                    table,
                    &self.connection,
                    partition,
                    &Committed::default(),
                    0,
                    &never,
                )?;
            }
            self.recovered([table]);
            let follower = Follower::start(&self.connection, table.clone(), self.health.clone())?;
            self.followers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(follower);
        }
        Ok(())
    }

    /// Keeps `replicas` standbys of the partitions of the tables not global, placed from
    /// the web directory's `claims` for this worker, `me` (see `standby`).
    pub(crate) fn start_standbys(
        &self,
        group: &str,
        directory: (Claims, String),
        replicas: usize,
    ) -> Result<()> {
        let tables: Vec<_> = self
            .tables
            .iter()
            .filter(|t| !t.descriptor.global)
            .cloned()
            .collect();
        if replicas == 0 || tables.is_empty() {
            return Ok(());
        }
        let follower =
            StandbyFollower::start(&self.connection, group, tables, directory, replicas)?;
        *self.standbys.lock().unwrap_or_else(|e| e.into_inner()) = Some(follower);
        Ok(())
    }

    /// Stops following the standbys' changelogs (their stores stay for the next run).
    pub(crate) fn stop_standbys(&self) {
        let follower = self
            .standbys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(follower) = follower {
            follower.stop();
        }
    }

    /// The windowed tables, whose windows `closer` closes.
    pub(crate) fn windowed(&self) -> Vec<Arc<TableState>> {
        self.tables
            .iter()
            .filter(|t| t.descriptor.window.is_some())
            .cloned()
            .collect()
    }

    #[cfg(any(test, feature = "testing"))]
    /// Holds every partition of every table, empty and in memory, without a broker
    /// (the test context).
    pub(crate) fn hold_all_in_memory(&self) -> Result<()> {
        for table in &self.tables {
            let mut held = table.held.write().unwrap_or_else(|e| e.into_inner());
            for partition in 0..table.partitions {
                let store = store::open(true, &table.dir)?;
                held.insert(
                    partition,
                    Arc::new(TablePartition::new(partition, store, 0)),
                );
            }
        }
        Ok(())
    }

    /// Stops following global tables' changelogs.
    pub(crate) fn stop_global_tables(&self) {
        let followers =
            std::mem::take(&mut *self.followers.lock().unwrap_or_else(|e| e.into_inner()));
        for follower in followers {
            follower.stop();
        }
    }

    pub(crate) fn table(&self, name: &str) -> Result<Arc<TableState>> {
        self.tables
            .iter()
            .find(|t| t.descriptor.name == name)
            .cloned()
            .ok_or_else(|| Error::Table(format!("table '{name}' is not registered in this worker")))
    }

    /// Sends the cached writes of the events being committed (`points`), waits for
    /// every changelog record sent so far, records in each store the next changelog
    /// offset to read, and returns the commit points, held back where a write is left
    /// behind in a cache.
    fn flush_all(&self, points: &[(TopicPartition, i64)]) -> Result<Vec<(TopicPartition, i64)>> {
        if let Some(reason) = self
            .broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(Error::Table(format!(
                "a table change could not be made durable ({reason}); stopping without \
                 committing, so the events concerned are processed again after a restart"
            )));
        }
        let outcome = self.flush_tables(points);
        if let Err(e) = &outcome {
            *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
        outcome
    }

    fn flush_tables(&self, points: &[(TopicPartition, i64)]) -> Result<Vec<(TopicPartition, i64)>> {
        // Per partition number: how far each topic may commit without passing a write
        // left behind in any of its tables' caches.
        let mut by_partition: HashMap<i32, HashMap<Arc<str>, i64>> = HashMap::new();
        for (tp, offset) in points {
            by_partition
                .entry(tp.partition)
                .or_default()
                .insert(tp.topic.clone(), *offset);
        }
        let held: Vec<(&Arc<TableState>, Vec<Arc<TablePartition>>)> = self
            .tables
            .iter()
            .map(|table| (table, table.held_partitions()))
            .collect();
        for (&p, limits) in by_partition.iter_mut() {
            let guards: Vec<_> = held
                .iter()
                .flat_map(|(_, partitions)| partitions.iter().filter(|h| h.partition == p))
                .map(|h| h.cache.lock().unwrap_or_else(|e| e.into_inner()))
                .collect();
            let caches: Vec<&WriteCache> = guards.iter().map(|g| &**g).collect();
            *limits = cache::commit_limits(&caches, std::mem::take(limits));
        }
        // How long a commit waits for changelog deliveries, all partitions together.
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut held_back = Vec::new();
        for (table, partitions) in &held {
            for partition in partitions {
                let p = partition.partition;
                let limits = by_partition.get(&p);
                let committing = |topic: &str, offset: i64| {
                    limits
                        .and_then(|l| l.get(topic))
                        .is_some_and(|c| offset < *c)
                };
                {
                    // A write sent at once (a window's tombstone, a write outside events)
                    // goes before or after these records, never between the cache's
                    // drain and their sending: the changelog must end on the newest value.
                    let _writing = partition.writing();
                    let mut cache = partition.cache.lock().unwrap_or_else(|e| e.into_inner());
                    let records = cache.drain(committing);
                    // The store takes them before the cache lets go (reads look in the
                    // cache first), with the events they include, in one write.
                    if !records.is_empty() {
                        partition.store.write(cache::store_batch(&records))?;
                    }
                    drop(cache);
                    for record in records {
                        let headers = source_headers(&record.topic, p, record.offset);
                        table.send(partition, &record.key, record.value.as_deref(), &headers)?;
                    }
                }
                let pending = std::mem::take(
                    &mut *partition.pending.lock().unwrap_or_else(|e| e.into_inner()),
                );
                if pending.is_empty() {
                    continue;
                }
                let mut last = None;
                // A global table's stores record the offset its follower applied: records
                // of other workers may sit before this worker's own.
                let global = table.descriptor.global;
                let mut pending = pending.into_iter();
                while let Some((mut delivery, queued)) = pending.next() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // The timer is made inside the runtime, which drives it.
                    let waited = self
                        .runtime
                        .block_on(async { tokio::time::timeout(left, &mut delivery).await });
                    let Ok(outcome) = waited else {
                        // The broker is slow or away, and the producer keeps retrying (up to
                        // its request timeout): hold this partition's commit back until
                        // the records are delivered, and keep polling meanwhile, so that
                        // a long outage does not cost the group membership.
                        let mut back: Vec<_> =
                            std::iter::once((delivery, queued)).chain(pending).collect();
                        let mut later = partition.pending.lock().unwrap_or_else(|e| e.into_inner());
                        back.append(&mut later);
                        *later = back;
                        held_back.push(p);
                        debug!(
                            table = table.descriptor.name,
                            partition = p,
                            "changelog records not delivered yet; the commit waits"
                        );
                        break;
                    };
                    let error = outcome.as_ref().err().map(ToString::to_string);
                    table
                        .producer
                        .delivered(&table.changelog, queued.elapsed(), error.as_deref());
                    match outcome {
                        Ok(delivered) => last = last.max(Some(delivered.offset)),
                        Err(e) => {
                            return Err(Error::Table(format!(
                                "writing to changelog '{}' failed: {e}",
                                table.changelog
                            )))
                        }
                    }
                }
                if held_back.contains(&p) {
                    continue;
                }
                if !global {
                    partition.store.write(Batch {
                        changelog_offset: last.map(|o| o + 1),
                        ..Batch::default()
                    })?;
                }
            }
        }
        Ok(points
            .iter()
            .filter(|(tp, _)| !held_back.contains(&tp.partition))
            .map(|(tp, offset)| {
                let limit = by_partition
                    .get(&tp.partition)
                    .and_then(|l| l.get(&tp.topic))
                    .copied()
                    .unwrap_or(*offset);
                (tp.clone(), limit)
            })
            .collect())
    }
}

/// What a table lookup by key found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The stored value (JSON).
    Found(Vec<u8>),
    Missing,
    /// The key lives in this partition, which this worker does not hold.
    Elsewhere {
        partition: i32,
    },
}

impl TableManager {
    /// Looks `key` (as text, see `Table::key_from_text`) up in the partition the default
    /// partitioner gives it: where tables keyed like their source topic keep it. A
    /// windowed table answers the key's live windows.
    pub(crate) fn lookup(&self, table: &str, key: &str) -> Result<Lookup> {
        let table = self.table(table)?;
        let key = (table.descriptor.key_from_text)(key).map_err(Error::Config)?;
        let partition = key_partition(&key, table.partitions);
        let Some(held) = table.held().get(&partition).cloned() else {
            return Ok(Lookup::Elsewhere { partition });
        };
        table.sensors.each(|s| s.table_get(table.descriptor.name));
        if let Some(spec) = &table.descriptor.window {
            return Ok(
                match windows::windows_json(&held.windows, &|k| held.get(k), spec, &key)? {
                    Some(windows) => Lookup::Found(windows),
                    None => Lookup::Missing,
                },
            );
        }
        Ok(match held.get(&key)? {
            Some(value) => Lookup::Found(value),
            None => Lookup::Missing,
        })
    }

    /// Whether a table partition `partition` holds a mark at or past `mark` under `key`:
    /// the record it stands for was applied already (see `origin`).
    pub(crate) fn applied(&self, partition: i32, key: &[u8], mark: &Mark) -> bool {
        self.tables
            .iter()
            .filter(|t| !t.descriptor.global)
            .filter_map(|t| t.held().get(&partition).cloned())
            .any(|held| held.applied(key, mark))
    }

    /// The partition of `key` (a table key: JSON) in `table`, and whether this worker
    /// holds it (a global table's every partition is held).
    pub(crate) fn partition_of(&self, table: &str, key: &[u8]) -> Result<(i32, bool)> {
        let table = self.table(table)?;
        let partition = key_partition(key, table.partitions);
        let held = table.descriptor.global || table.held().contains_key(&partition);
        Ok((partition, held))
    }

    /// Table name -> the partitions this worker holds, sorted.
    pub(crate) fn assignment(&self) -> std::collections::BTreeMap<&'static str, Vec<i32>> {
        self.tables
            .iter()
            .map(|table| {
                let mut held: Vec<i32> = table.held().keys().copied().collect();
                held.sort_unstable();
                (table.descriptor.name, held)
            })
            .collect()
    }

    /// Whether the table is global (every worker holds all of it).
    pub(crate) fn is_global(&self, table: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t.descriptor.name == table && t.descriptor.global)
    }
}

impl TableManager {
    /// Recovers and holds the table partitions of an assignment (see
    /// [`PartitionListener::assigned`]).
    fn hold_assigned(
        &self,
        assigned: &[TopicPartition],
        committed: &HashMap<TopicPartition, i64>,
        generation: u64,
    ) -> Result<()> {
        self.cancel_recovery.store(false, Ordering::SeqCst);
        let mut numbers: Vec<i32> = assigned.iter().map(|tp| tp.partition).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let wanted: Vec<(&Arc<TableState>, i32)> = self
            .tables
            .iter()
            .filter(|t| !t.descriptor.global)
            .flat_map(|table| numbers.iter().map(move |&p| (table, p)))
            .filter(|(table, p)| *p < table.partitions && !table.held().contains_key(p))
            .collect();
        // A few partitions at a time, each on a thread with its own changelog reader: a
        // recovery spends most of its time waiting for the broker (a small one, for
        // the fetch that reports the changelog's end), so they overlap well.
        for batch in wanted.chunks(PARALLEL_RECOVERIES) {
            let outcomes: Vec<Result<bool>> = std::thread::scope(|scope| {
                let recovering: Vec<_> = batch
                    .iter()
                    .map(|&(table, partition)| {
                        let committed = Committed::for_partition(committed, partition);
                        scope.spawn(move || {
                            hold(
                                table,
                                &self.connection,
                                partition,
                                &committed,
                                generation,
                                &self.cancel_recovery,
                            )
                        })
                    })
                    .collect();
                recovering
                    .into_iter()
                    .map(|thread| {
                        thread.join().unwrap_or_else(|panic| {
                            Err(Error::Table(format!(
                                "a table recovery panicked: {}",
                                crate::error::panic_text(panic.as_ref())
                            )))
                        })
                    })
                    .collect()
            });
            for outcome in outcomes {
                if !outcome? {
                    return Ok(()); // cancelled
                }
            }
        }
        let mut recovered: Vec<&Arc<TableState>> = wanted.iter().map(|&(t, _)| t).collect();
        recovered.dedup_by(|a, b| Arc::ptr_eq(a, b));
        self.recovered(recovered);
        Ok(())
    }
}

impl PartitionListener for TableManager {
    fn assigned(
        &self,
        assigned: &[TopicPartition],
        committed: &HashMap<TopicPartition, i64>,
        generation: u64,
    ) -> Result<()> {
        let outcome = self.hold_assigned(assigned, committed, generation);
        // The stores of partitions the rebalance did not give back are closed.
        for table in &self.tables {
            table.close_parked();
        }
        outcome
    }

    fn cancel_recovery(&self) {
        self.cancel_recovery.store(true, Ordering::SeqCst);
    }

    fn flush(&self, points: &[(TopicPartition, i64)]) -> Result<Vec<(TopicPartition, i64)>> {
        self.flush_all(points)
    }

    fn co_partitioned(&self) -> bool {
        self.tables.iter().any(|t| !t.descriptor.global)
    }

    fn revoked(&self, revoked: &[TopicPartition]) {
        for table in self.tables.iter().filter(|t| !t.descriptor.global) {
            let closed: Vec<Arc<TablePartition>> = {
                let mut held = table.held.write().unwrap_or_else(|e| e.into_inner());
                revoked
                    .iter()
                    .filter_map(|tp| held.remove(&tp.partition))
                    .collect()
            };
            // Parked after `held` is let go: the standby thread takes `standbys`, then
            // `held`; the other order here could deadlock with it.
            for partition in closed {
                let p = partition.partition;
                info!(
                    table = table.descriptor.name,
                    partition = p,
                    "table partition closed"
                );
                // Nothing else uses it (no event of it runs): kept for the assignment
                // that follows. Its write cache holds only writes of uncommitted events,
                // which run again: the store is as a reopened one would be.
                if let Ok(partition) = Arc::try_unwrap(partition) {
                    table.park(p, partition.store);
                }
            }
        }
    }
}

/// Opens the store of one of `table`'s partitions, recovers it from the changelog, and
/// holds it for the events of consumer generation `since` on; false if `cancelled`
/// stopped the recovery first (the partition is not held then).
fn hold(
    table: &TableState,
    connection: &Connection,
    partition: i32,
    committed: &Committed,
    since: u64,
    cancelled: &AtomicBool,
) -> Result<bool> {
    let (kept, _taken) = table.take_kept(partition);
    let store = match kept {
        Kept::Standby(store) => {
            info!(
                table = table.descriptor.name,
                partition, "taking over from this worker's standby: recovering the tail"
            );
            store
        }
        Kept::Parked(store) => store,
        Kept::Nothing => {
            store::open_when_free(table.memory, &table.store_path(partition), STORE_PATIENCE)?
        }
    };
    let held = Arc::new(TablePartition::new(partition, store, since));
    if !recovery::recover(connection, table, &held, committed, cancelled)? {
        return Ok(false);
    }
    if table.descriptor.window.is_some() {
        let index = WindowIndex::load(&*held.store, table.clock.now_ms())?;
        *held.windows.lock().unwrap_or_else(|e| e.into_inner()) = index;
    }
    table
        .held
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(partition, held);
    Ok(true)
}
