//! The TableManager: opens each table's partition stores as the consumer is assigned
//! partitions (recovering them from the changelog first), routes reads and writes to
//! the store of the event's partition, makes changelog writes durable before the
//! consumer commits, and closes stores on revocation.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use tracing::info;

use super::{
    cache::{self, WriteCache},
    global::Follower,
    recovery::{self, Committed},
    store::{self, Batch, Store},
    windowed::{self, WindowIndex},
    TableDescriptor,
};
use crate::{
    app::App,
    event::{self, Header},
    sensors::Sensors,
    transport::{
        consumer::{PartitionListener, TopicPartition},
        partitioner::partition_for_key,
        producer::{Delivery, Producer, Record},
    },
    Error, Result,
};

/// Headers on changelog records naming the event that caused them, so that recovery can
/// leave out the effects of events the group has not committed (they will run again).
pub(crate) const SOURCE_TOPIC: &str = "faust-source-topic";
pub(crate) const SOURCE_PARTITION: &str = "faust-source-partition";
pub(crate) const SOURCE_OFFSET: &str = "faust-source-offset";
/// On global tables' records: the worker that wrote it (its follower skips its own).
pub(crate) const WRITER: &str = "faust-writer";

pub(crate) struct TableManager {
    tables: Vec<Arc<TableState>>,
    bootstrap: String,
    runtime: tokio::runtime::Handle,
    followers: Mutex<Vec<Follower>>,
    /// Closes windowed tables' windows on time.
    closer: Mutex<
        Option<(
            tokio::task::JoinHandle<()>,
            tokio::sync::watch::Sender<bool>,
        )>,
    >,
    broken: Broken,
}

/// The first table write that failed, if any. Once set, no flush succeeds, so the
/// consumer never commits an event whose table change is not in the changelog.
type Broken = Arc<Mutex<Option<String>>>;

pub(crate) struct TableState {
    broken: Broken,
    /// Marks this worker's changelog records, so a global table's follower skips them.
    pub(crate) writer: Arc<str>,
    pub(crate) descriptor: &'static TableDescriptor,
    pub(crate) changelog: String,
    pub(crate) partitions: i32,
    memory: bool,
    /// `{datadir}/{app_id}/tables`
    dir: PathBuf,
    producer: Producer,
    pub(crate) sensors: Sensors,
    held: RwLock<HashMap<i32, Arc<TablePartition>>>,
}

pub(crate) struct TablePartition {
    pub(crate) partition: i32,
    /// Tells this holding of the partition from earlier and later ones.
    pub(crate) id: u64,
    pub(crate) store: Box<dyn Store>,
    /// Changelog records sent since the last flush, with when they were queued.
    pending: Mutex<Vec<(Delivery, Instant)>>,
    /// Held across a read-modify-write, so concurrent updates of a partition serialize.
    writing: Mutex<()>,
    /// Writes from events, until the commit that sends them to the changelog.
    cache: Mutex<WriteCache>,
    /// A windowed table's live windows and stream time.
    pub(crate) windows: Mutex<WindowIndex>,
}

impl TablePartition {
    fn new(partition: i32, store: Box<dyn Store>) -> TablePartition {
        static HOLDINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        TablePartition {
            partition,
            id: HOLDINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            store,
            pending: Mutex::default(),
            writing: Mutex::default(),
            cache: Mutex::default(),
            windows: Mutex::default(),
        }
    }
}

/// Takes the datadir for this worker alone (when a table is on disk): the lock is
/// held until the returned file is dropped.
pub(crate) fn lock_datadir(app: &App) -> Result<Option<std::fs::File>> {
    let on_disk = app.registry().tables.iter().any(|t| t.store != "memory");
    on_disk
        .then(|| store::lock_dir(&tables_dir(app)))
        .transpose()
}

/// Where an app's table stores live.
pub(crate) fn tables_dir(app: &App) -> PathBuf {
    app.config().datadir.join(&app.config().id).join("tables")
}

impl TableManager {
    pub(crate) fn new(
        app: &App,
        producer: &Producer,
        sensors: &Sensors,
        bootstrap: &str,
    ) -> Result<TableManager> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Table("the table manager needs a running async runtime".into()))?;
        let broken = Broken::default();
        let writer: Arc<str> = Arc::from(format!(
            "{}-{}-{}",
            app.config().id,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let tables = app
            .registry()
            .tables
            .iter()
            .map(|&descriptor| {
                Arc::new(TableState {
                    broken: broken.clone(),
                    writer: writer.clone(),
                    descriptor,
                    changelog: descriptor.changelog_topic(&app.config().id),
                    partitions: descriptor
                        .partitions
                        .unwrap_or(app.config().topic_partitions),
                    memory: descriptor.store == "memory",
                    dir: tables_dir(app),
                    producer: producer.clone(),
                    sensors: sensors.clone(),
                    held: RwLock::default(),
                })
            })
            .collect();
        Ok(TableManager {
            tables,
            bootstrap: bootstrap.to_owned(),
            runtime,
            followers: Mutex::default(),
            closer: Mutex::default(),
            broken,
        })
    }

    /// Recovers every partition of every global table, then follows their changelogs.
    pub(crate) fn start_global_tables(&self) -> Result<()> {
        for table in self.tables.iter().filter(|t| t.descriptor.global) {
            for partition in 0..table.partitions {
                table.hold(&self.bootstrap, partition, &Committed::default())?;
            }
            let follower = Follower::start(&self.bootstrap, table.clone())?;
            self.followers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(follower);
        }
        Ok(())
    }

    /// Starts closing windowed tables' windows on time.
    pub(crate) fn start_window_closer(&self) {
        let windowed: Vec<_> = self
            .tables
            .iter()
            .filter(|t| t.descriptor.window.is_some())
            .cloned()
            .collect();
        if !windowed.is_empty() {
            let (stop, stopping) = tokio::sync::watch::channel(false);
            let task = self
                .runtime
                .spawn(windowed::close_windows(windowed, stopping));
            *self.closer.lock().unwrap_or_else(|e| e.into_inner()) = Some((task, stop));
        }
    }

    /// Closes the windows due now, once (the test context moves the clock itself).
    pub(crate) async fn close_due_windows(&self) {
        let (_running, stop) = tokio::sync::watch::channel(false);
        for table in &self.tables {
            if let Some(spec) = &table.descriptor.window {
                windowed::close_due(table, spec, &stop).await;
            }
        }
    }

    /// Holds every partition of every table, empty and in memory, without a broker
    /// (the test context).
    pub(crate) fn hold_all_in_memory(&self) -> Result<()> {
        for table in &self.tables {
            let mut held = table.held.write().unwrap_or_else(|e| e.into_inner());
            for partition in 0..table.partitions {
                let store = store::open(true, &table.dir)?;
                held.insert(partition, Arc::new(TablePartition::new(partition, store)));
            }
        }
        Ok(())
    }

    /// Stops closing windows (shutdown), letting a window being closed finish.
    pub(crate) async fn stop_window_closer(&self) {
        let closer = self.closer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((task, stop)) = closer {
            stop.send_replace(true);
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .is_err()
            {
                // Its window stays in the store and closes after the restart.
                tracing::warn!("an on_window_close callback did not finish within 30 s; stopped");
                abort.abort();
            }
        }
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
        for (table, partitions) in &held {
            for partition in partitions {
                let p = partition.partition;
                let limits = by_partition.get(&p);
                let committing = |topic: &str, offset: i64| {
                    limits
                        .and_then(|l| l.get(topic))
                        .is_some_and(|c| offset < *c)
                };
                let records = partition
                    .cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain(committing);
                for record in records {
                    let headers = source_headers(&record.topic, p, record.offset);
                    table.send(partition, &record.key, record.value.as_deref(), &headers)?;
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
                for (delivery, queued) in pending {
                    let outcome = self.runtime.block_on(delivery.wait());
                    let error = outcome.as_ref().err();
                    table.producer.delivered(
                        &table.changelog,
                        queued.elapsed(),
                        error.map(String::as_str),
                    );
                    let offset = match outcome {
                        Ok(delivered) => delivered.offset,
                        Err(e) => {
                            return Err(Error::Table(format!(
                                "writing to changelog '{}' failed: {e}",
                                table.changelog
                            )))
                        }
                    };
                    last = last.max(Some(offset));
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
        let partition = partition_for_key(&key, table.partitions);
        let Some(held) = table.held().get(&partition).cloned() else {
            return Ok(Lookup::Elsewhere { partition });
        };
        table.sensors.each(|s| s.table_get(table.descriptor.name));
        if let Some(spec) = &table.descriptor.window {
            return Ok(match windowed::windows_json(&held, spec, &key)? {
                Some(windows) => Lookup::Found(windows),
                None => Lookup::Missing,
            });
        }
        Ok(match held.store.get(&key)? {
            Some(value) => Lookup::Found(value),
            None => Lookup::Missing,
        })
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

impl PartitionListener for TableManager {
    fn assigned(
        &self,
        assigned: &[TopicPartition],
        committed: &HashMap<TopicPartition, i64>,
    ) -> Result<()> {
        let mut numbers: Vec<i32> = assigned.iter().map(|tp| tp.partition).collect();
        numbers.sort_unstable();
        numbers.dedup();
        for table in &self.tables {
            for &partition in &numbers {
                if table.descriptor.global
                    || partition >= table.partitions
                    || table.held().contains_key(&partition)
                {
                    continue;
                }
                let committed = Committed::for_partition(committed, partition);
                table.hold(&self.bootstrap, partition, &committed)?;
            }
        }
        Ok(())
    }

    fn flush(&self, points: &[(TopicPartition, i64)]) -> Result<Vec<(TopicPartition, i64)>> {
        self.flush_all(points)
    }

    fn revoked(&self, revoked: &[TopicPartition]) {
        for table in self.tables.iter().filter(|t| !t.descriptor.global) {
            let mut held = table.held.write().unwrap_or_else(|e| e.into_inner());
            for tp in revoked {
                if held.remove(&tp.partition).is_some() {
                    info!(
                        table = table.descriptor.name,
                        partition = tp.partition,
                        "table partition closed"
                    );
                }
            }
        }
    }
}

impl TableState {
    fn held(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i32, Arc<TablePartition>>> {
        self.held.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn held_partitions(&self) -> Vec<Arc<TablePartition>> {
        self.held().values().cloned().collect()
    }

    /// Opens the store of one partition, recovers it from the changelog, and holds it.
    fn hold(&self, bootstrap: &str, partition: i32, committed: &Committed) -> Result<()> {
        let path = self
            .dir
            .join(format!("{}-{partition}", self.descriptor.name));
        let held = Arc::new(TablePartition::new(
            partition,
            store::open(self.memory, &path)?,
        ));
        recovery::recover(bootstrap, self, &held, committed)?;
        if self.descriptor.window.is_some() {
            let index = WindowIndex::load(&*held.store)?;
            *held.windows.lock().unwrap_or_else(|e| e.into_inner()) = index;
        }
        self.held
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, held);
        Ok(())
    }

    /// The partition a read or write of `key` goes to: the event's, or the key's.
    pub(crate) fn partition_of(
        &self,
        key: &[u8],
        writing: bool,
    ) -> Result<(i32, Option<event::Position>)> {
        let current = event::current();
        if self.descriptor.global {
            return Ok((partition_for_key(key, self.partitions), current));
        }
        if let Some(position) = current {
            return Ok((position.partition, Some(position)));
        }
        if writing && !self.descriptor.use_partitioner {
            return Err(Error::Table(format!(
                "table '{}' was written outside of event processing, so there is no event \
                 partition to write to; write from an agent, or declare the table with \
                 `use_partitioner = true` to send such writes to the key's partition",
                self.descriptor.name
            )));
        }
        Ok((partition_for_key(key, self.partitions), None))
    }

    pub(crate) fn held_partition(&self, partition: i32) -> Result<Arc<TablePartition>> {
        self.held().get(&partition).cloned().ok_or_else(|| {
            if partition >= self.partitions {
                Error::Table(format!(
                    "table '{}' has {} partitions but the event came from partition {partition}; \
                     a table must have as many partitions as the topics that feed it",
                    self.descriptor.name, self.partitions
                ))
            } else {
                Error::Table(format!(
                    "partition {partition} of table '{}' is not held by this worker",
                    self.descriptor.name
                ))
            }
        })
    }

    pub(crate) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (partition, _) = self.partition_of(key, false)?;
        self.read_in(partition, key)
    }

    /// Reads `key` in `partition` (windowed tables partition by a part of their keys).
    pub(crate) fn read_in(&self, partition: i32, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.sensors.each(|s| s.table_get(self.descriptor.name));
        self.held_partition(partition)?.store.get(key)
    }

    pub(crate) fn write(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        self.update(key, |_| Ok((value, ())))
    }

    /// Reads the key's value and writes what `change` makes of it, with no other write
    /// to the partition in between.
    pub(crate) fn update<T>(
        &self,
        key: Vec<u8>,
        change: impl FnOnce(Option<Vec<u8>>) -> Result<(Option<Vec<u8>>, T)>,
    ) -> Result<T> {
        let (partition, source) = self.partition_of(&key, true)?;
        let held = self.held_partition(partition)?;
        self.update_in(&held, source, key, change)
    }

    /// [`TableState::update`] in a given partition, as the event `source` (if any).
    pub(crate) fn update_in<T>(
        &self,
        held: &TablePartition,
        source: Option<event::Position>,
        key: Vec<u8>,
        change: impl FnOnce(Option<Vec<u8>>) -> Result<(Option<Vec<u8>>, T)>,
    ) -> Result<T> {
        let _writing = held.writing.lock().unwrap_or_else(|e| e.into_inner());
        let (value, result) = change(held.store.get(&key)?)?;
        let name = self.descriptor.name;
        match value {
            Some(_) => self.sensors.each(|s| s.table_set(name)),
            None => self.sensors.each(|s| s.table_delete(name)),
        }
        let outcome = match source {
            // A write from an event waits in the cache for the commit (see `cache`).
            Some(event) if !self.descriptor.global => {
                held.cache.lock().unwrap_or_else(|e| e.into_inner()).record(
                    key.clone(),
                    event.topic.clone(),
                    event.offset,
                    value.clone(),
                );
                held.store.write(Batch {
                    writes: vec![(key, value)],
                    changelog_offset: None,
                    source: Some((event.topic.to_string(), event.offset)),
                })
            }
            _ => self.write_through(held, key, value, source),
        };
        if let Err(e) = &outcome {
            // The changelog and the store may now disagree: refuse to commit from here on.
            let mut broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
            broken.get_or_insert_with(|| format!("table '{}': {e}", self.descriptor.name));
        }
        outcome.map(|()| result)
    }

    /// Sends a write to the changelog now: global tables (other workers follow them
    /// as they change) and writes outside events.
    fn write_through(
        &self,
        held: &TablePartition,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        source: Option<event::Position>,
    ) -> Result<()> {
        let mut headers = source
            .as_ref()
            .map(|p| source_headers(&p.topic, p.partition, p.offset))
            .unwrap_or_default();
        if self.descriptor.global {
            headers.push(header(WRITER, self.writer.as_bytes()));
        } else {
            // Cached writes of this key are older: sent at the next commit, they would
            // overwrite this one in the changelog.
            held.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(&key);
        }
        self.send(held, &key, value.as_deref(), &headers)?;
        held.store.write(Batch {
            writes: vec![(key, value)],
            changelog_offset: None,
            source: source.map(|p| (p.topic.to_string(), p.offset)),
        })
    }

    /// Queues a changelog record of `held`'s partition; the next flush awaits it.
    fn send(
        &self,
        held: &TablePartition,
        key: &[u8],
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<()> {
        let record = Record {
            key: Some(key),
            value,
            partition: Some(held.partition),
            headers,
            timestamp: None,
        };
        let delivery = self.producer.enqueue(&self.changelog, record)?;
        held.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((delivery, Instant::now()));
        Ok(())
    }

    pub(crate) fn local_keys(&self) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        for partition in self.held_partitions() {
            keys.extend(partition.store.keys()?);
        }
        Ok(keys)
    }
}

/// The headers naming the event a changelog record reflects.
fn source_headers(topic: &str, partition: i32, offset: i64) -> Vec<Header> {
    vec![
        header(SOURCE_TOPIC, topic.as_bytes()),
        header(SOURCE_PARTITION, partition.to_string().as_bytes()),
        header(SOURCE_OFFSET, offset.to_string().as_bytes()),
    ]
}

fn header(key: &str, value: &[u8]) -> Header {
    Header {
        key: key.to_owned(),
        value: Some(value.to_vec()),
    }
}

/// Refuses to start when a table and a topic that feeds the app disagree on partitions.
pub(crate) fn check_copartitioning(
    app: &App,
    partition_counts: &HashMap<String, i32>,
) -> Result<()> {
    for &table in &app.registry().tables {
        let partitions = table.partitions.unwrap_or(app.config().topic_partitions);
        if table.global {
            continue; // every worker holds every partition: nothing to line up
        }
        let changelog = table.changelog_topic(&app.config().id);
        if let Some(&actual) = partition_counts.get(&changelog) {
            if actual != partitions {
                return Err(Error::Config(format!(
                    "table '{}' is declared with {partitions} partitions but its changelog '{changelog}' \
                     has {actual}; declare the table with partitions = {actual}, or recreate the changelog",
                    table.name
                )));
            }
        }
        for agent in &app.registry().agents {
            for topic in agent.source_topics(&app.config().id) {
                match partition_counts.get(&topic) {
                    Some(&actual) if actual != partitions => {
                        return Err(Error::Config(format!(
                            "table '{}' has {partitions} partitions but topic '{topic}' (read by agent \
                             '{}') has {actual}; tables are partitioned like the topics that feed them, \
                             so give both the same count (table `partitions = ...`, or repartition the topic)",
                            table.name, agent.name
                        )))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
