//! A table's state in this worker: the partitions it holds (each a store, a write
//! cache and its pending changelog records), and the reads and writes that go to the
//! partition of the event being processed.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use super::{
    cache::WriteCache,
    changelog::WRITER,
    standby::Standbys,
    store::{Batch, Store},
    windows::WindowIndex,
};
use crate::{
    codec::raw_key,
    descriptor::TableDescriptor,
    event::{self, source_headers, Header},
    origin::Mark,
    sensors::Sensors,
    time::Clock,
    transport::{
        partitioner::partition_for_key,
        producer::{Delivery, Producer, Record},
    },
    Error, Result,
};

/// The partition of a table key (in its stored JSON form) by Kafka's default partitioner,
/// hashing the key as `faust::send` writes it: where a table keyed like its source topic
/// holds it (Faust's rule), so lookups and writes outside events find it there.
pub(crate) fn key_partition(key: &[u8], partitions: i32) -> i32 {
    partition_for_key(&raw_key(key), partitions)
}

/// The first table write that failed, if any. Once set, no flush succeeds, so the
/// consumer never commits an event whose table change is not in the changelog.
pub(super) type Broken = Arc<Mutex<Option<String>>>;

pub(crate) struct TableState {
    pub(super) broken: Broken,
    /// Marks this worker's changelog records, so a global table's follower skips them.
    pub(crate) writer: Arc<str>,
    pub(crate) descriptor: &'static TableDescriptor,
    pub(crate) changelog: String,
    pub(crate) partitions: i32,
    pub(super) memory: bool,
    /// `{datadir}/{app_id}/tables`
    pub(super) dir: PathBuf,
    pub(super) producer: Producer,
    pub(crate) sensors: Sensors,
    /// The worker's clock (windows' stream time).
    pub(crate) clock: Clock,
    pub(super) held: RwLock<HashMap<i32, Arc<TablePartition>>>,
    /// A global table's keys this worker wrote whose changelog records its follower has
    /// not seen yet, with how many (see `global::follow`).
    pub(super) unechoed: Mutex<HashMap<Vec<u8>, u32>>,
    /// The partitions this worker keeps warm for others (see `standby`).
    pub(super) standbys: Mutex<Standbys>,
}

pub(crate) struct TablePartition {
    pub(crate) partition: i32,
    /// The consumer generation this holding began at (see `PartitionListener::assigned`):
    /// it tells this holding from earlier and later ones, and an event fetched under an
    /// earlier holding (revoked while it ran, the drain timeout passed) may not write here.
    pub(crate) since: u64,
    pub(crate) store: Box<dyn Store>,
    /// Changelog records sent since the last flush, with when they were queued.
    pub(super) pending: Mutex<Vec<(Delivery, Instant)>>,
    /// Held across a read-modify-write, so concurrent updates of a partition serialize.
    writing: Mutex<()>,
    /// Writes from events, until the commit that sends them to the changelog and the
    /// store; reads look here first.
    pub(super) cache: Mutex<WriteCache>,
    /// A windowed table's live windows and stream time.
    pub(crate) windows: Mutex<WindowIndex>,
    /// The origin marks applied here (see `origin`), read from the store on first use.
    marks: Mutex<HashMap<Box<[u8]>, Option<Mark>>>,
}

impl TablePartition {
    /// Held across a read-modify-write of the partition, and across a flush's sending.
    pub(super) fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn new(partition: i32, store: Box<dyn Store>, since: u64) -> TablePartition {
        TablePartition {
            partition,
            since,
            store,
            pending: Mutex::default(),
            writing: Mutex::default(),
            cache: Mutex::default(),
            windows: Mutex::default(),
            marks: Mutex::default(),
        }
    }

    /// The value of `key`: the newest write waiting for a commit, else the store's.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.latest(key) {
            Some(value) => Ok(value.map(<[u8]>::to_vec)),
            // Read under the cache's lock: a commit moves writes from it to the store
            // under that lock, so a read cannot fall between the two.
            None => self.store.get(key),
        }
    }

    /// The partition's keys: the store's, with those written since the last commit,
    /// without those deleted since (and without origin marks).
    pub(crate) fn keys(&self) -> Result<Vec<Vec<u8>>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: std::collections::BTreeSet<Vec<u8>> =
            self.store.keys()?.into_iter().collect();
        for (key, value) in cache.latest_all() {
            match value {
                Some(_) if !crate::origin::is_mark_key(key) => keys.insert(key.to_vec()),
                Some(_) => false,
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// Whether the mark applied under `key` (see `origin`) is at or past `mark`: the
    /// record it stands for was applied already.
    pub(crate) fn applied(&self, key: &[u8], mark: &Mark) -> bool {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        self.stored_mark(&mut marks, key)
            .is_some_and(|applied| *applied >= *mark)
    }

    /// The mark applied under `key`, read from the store into `marks` on first use; a
    /// store that cannot be read answers none, so a record is applied again rather than
    /// dropped.
    fn stored_mark<'m>(
        &self,
        marks: &'m mut HashMap<Box<[u8]>, Option<Mark>>,
        key: &[u8],
    ) -> Option<&'m mut Mark> {
        if !marks.contains_key(key) {
            let stored = match self.store.get(key) {
                Ok(stored) => stored.as_deref().and_then(Mark::decode),
                Err(e) => {
                    tracing::warn!(partition = self.partition, error = %e, "reading an origin mark");
                    return None;
                }
            };
            marks.insert(key.into(), stored);
        }
        marks.get_mut(key)?.as_mut()
    }

    /// The write of `event`'s origin mark, if it is above the applied one; the caller
    /// stores it with the event's table writes.
    fn mark_write(&self, event: &event::Position) -> Option<(Vec<u8>, Vec<u8>)> {
        let (key, mark) = event.lineage.as_ref()?.applied()?;
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        match self.stored_mark(&mut marks, key) {
            Some(applied) if *applied >= *mark => return None,
            Some(applied) => applied.clone_from(mark),
            None => {
                marks.insert(key.into(), Some(mark.clone()));
            }
        }
        Some((key.to_vec(), mark.encode()))
    }
}

impl TableState {
    /// Hands a changelog record that was applied to the table's `on_changelog_event`
    /// hook, if it has one; a hook that fails is logged (the record stays applied).
    pub(crate) fn changelog_event(&self, key: &[u8], value: Option<&[u8]>) {
        let Some(hook) = self.descriptor.on_changelog_event else {
            return;
        };
        if crate::origin::is_mark_key(key) {
            return; // not the table's: the origin mark of an agent (see `origin`)
        }
        let outcome = std::panic::catch_unwind(|| hook(key, value));
        let problem = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => format!("it panicked: {}", crate::error::panic_text(panic.as_ref())),
        };
        tracing::warn!(table = self.descriptor.name, %problem, "on_changelog_event failed");
    }

    /// Where partition `partition`'s store lives (on disk; a standby's too).
    pub(super) fn store_path(&self, partition: i32) -> PathBuf {
        self.dir
            .join(format!("{}-{partition}", self.descriptor.name))
    }

    pub(super) fn held(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i32, Arc<TablePartition>>> {
        self.held.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn held_partitions(&self) -> Vec<Arc<TablePartition>> {
        self.held().values().cloned().collect()
    }

    /// The partition a read or write of `key` goes to: the event's, or the key's.
    pub(crate) fn partition_of(
        &self,
        key: &[u8],
        writing: bool,
    ) -> Result<(i32, Option<event::Position>)> {
        // A channel's event has no partition: its writes are as outside any event.
        let current = event::current().filter(|p| p.partition != event::CHANNEL_PARTITION);
        if self.descriptor.global {
            return Ok((key_partition(key, self.partitions), current));
        }
        if let Some(position) = current {
            if let (true, Some((a, b))) = (writing, position.batch_partitions) {
                return Err(Error::Table(format!(
                    "table '{}' was written while processing a take() batch that holds events \
                     of partitions {a} and {b}: a table write belongs to the partition of one \
                     event, and committing the batch would commit it for the others too; \
                     update tables from next() or next_event(), and batch only what leaves \
                     the app",
                    self.descriptor.name
                )));
            }
            return Ok((position.partition, Some(position)));
        }
        if writing && !self.descriptor.use_partitioner {
            return Err(Error::Table(format!(
                "table '{}' was written outside of event processing (or by an agent reading \
                 a channel), so there is no event partition to write to; write from an agent \
                 reading a topic, or declare the table with `use_partitioner = true` to send \
                 such writes to the key's partition",
                self.descriptor.name
            )));
        }
        Ok((key_partition(key, self.partitions), None))
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

    /// The partition a write of `key` goes to, and the event writing it, if any. An
    /// event whose partition was revoked while it ran may not write (see `since`).
    pub(crate) fn write_target(
        &self,
        key: &[u8],
    ) -> Result<(Arc<TablePartition>, Option<event::Position>)> {
        let (partition, source) = self.partition_of(key, true)?;
        let held = match (self.held_partition(partition), &source) {
            (Ok(held), _) => held,
            (Err(_), Some(event)) if partition < self.partitions && !self.descriptor.global => {
                return Err(self.revoked(event))
            }
            (Err(e), _) => return Err(e),
        };
        if let Some(event) = source.as_ref().filter(|e| e.generation < held.since) {
            return Err(self.revoked(event));
        }
        Ok((held, source))
    }

    pub(crate) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (partition, _) = self.partition_of(key, false)?;
        self.read_in(partition, key)
    }

    /// Reads `key` in `partition` (windowed tables partition by a part of their keys).
    pub(crate) fn read_in(&self, partition: i32, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.sensors.each(|s| s.table_get(self.descriptor.name));
        self.held_partition(partition)?.get(key)
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
        let (held, source) = self.write_target(&key)?;
        self.update_in(&held, source, key, change)
    }

    /// [`TableState::update`] in a given partition (from [`TableState::write_target`]),
    /// as the event `source` (if any).
    pub(crate) fn update_in<T>(
        &self,
        held: &TablePartition,
        source: Option<event::Position>,
        key: Vec<u8>,
        change: impl FnOnce(Option<Vec<u8>>) -> Result<(Option<Vec<u8>>, T)>,
    ) -> Result<T> {
        let _writing = held.writing();
        let (value, result) = change(held.get(&key)?)?;
        let name = self.descriptor.name;
        match value {
            Some(_) => self.sensors.each(|s| s.table_set(name)),
            None => self.sensors.each(|s| s.table_delete(name)),
        }
        let outcome = match source {
            // A write from an event waits in the cache for the commit (see `cache`).
            // The store gets it with the commit that takes it (see `cache`).
            Some(event) if !self.descriptor.global => {
                // The event's origin mark goes with its writes (see `origin`).
                let mark = held.mark_write(&event);
                let mut cache = held.cache.lock().unwrap_or_else(|e| e.into_inner());
                cache.record(key, event.topic.clone(), event.offset, value);
                if let Some((key, mark)) = mark {
                    cache.record(key, event.topic.clone(), event.offset, Some(mark));
                }
                Ok(())
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

    /// The refusal of a write from `event`, whose partition was revoked while it ran.
    fn revoked(&self, event: &event::Position) -> Error {
        Error::Revoked {
            table: self.descriptor.name.to_owned(),
            event: event.to_string(),
        }
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
            headers.push(Header::new(WRITER, self.writer.as_bytes()));
            *self
                .unechoed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key.clone())
                .or_default() += 1;
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
            sources: source
                .map(|p| (p.topic.to_string(), p.offset))
                .into_iter()
                .collect(),
        })
    }

    /// Queues a changelog record of `held`'s partition; the next flush awaits it.
    pub(super) fn send(
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
            keys.extend(partition.keys()?);
        }
        Ok(keys)
    }

    /// The keys and values of the partitions this worker holds.
    pub(crate) fn local_items(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut items = Vec::new();
        for partition in self.held_partitions() {
            for key in partition.keys()? {
                if let Some(value) = partition.get(&key)? {
                    items.push((key, value));
                }
            }
        }
        Ok(items)
    }
}
