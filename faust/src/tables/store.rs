//! Where a table partition's data lives: in memory, or in a RocksDB database of its
//! own. Next to the data, each store keeps the next changelog offset to read and the
//! source offsets whose effects it holds, written in the same batch as the data so that
//! a crash can never separate them.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Mutex,
};

use crate::{origin::is_mark_key, Error, Result};

/// One atomic change to a store.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Key -> new value, or `None` to delete.
    pub(crate) writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The next changelog offset to read, once these writes are applied.
    pub(crate) changelog_offset: Option<i64>,
    /// The source events these writes came from, the last per topic: (topic, offset).
    pub(crate) sources: Vec<(String, i64)>,
}

/// What a store remembers besides its data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) changelog_offset: Option<i64>,
    /// Source topic -> highest offset whose writes the store holds.
    pub(crate) sources: HashMap<String, i64>,
}

pub(crate) trait Store: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn write(&self, batch: Batch) -> Result<()>;
    /// The table's keys, without the origin marks kept beside them (see `origin`).
    fn keys(&self) -> Result<Vec<Vec<u8>>>;
    fn checkpoint(&self) -> Result<Checkpoint>;
    /// Forgets the data and the checkpoint (before a rebuild from the changelog).
    fn clear(&self) -> Result<()>;
}

/// Takes the lock that gives one worker at a time the table stores under `dir`
/// (creating it), released when the returned file is dropped. A second worker fails
/// here, at start, rather than when the group hands it a partition.
pub(crate) fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let io = |doing: &str, source| Error::Io {
        context: format!(
            "{doing} {} (is the datadir a writable directory?)",
            dir.display()
        ),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
    let lock = std::fs::File::create(dir.join("LOCK")).map_err(|e| io("writing in", e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::DatadirLocked {
            path: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io("locking", e)),
    }
}

/// Opens the store of one table partition.
pub(crate) fn open(memory: bool, path: &Path) -> Result<Box<dyn Store>> {
    if memory {
        return Ok(Box::new(MemoryStore::default()));
    }
    #[cfg(feature = "rocksdb")]
    return Ok(Box::new(RocksStore::open(path)?));
    #[cfg(not(feature = "rocksdb"))]
    Err(Error::Table(format!(
        "{} needs RocksDB, and faust was built without its `rocksdb` feature; enable it, or \
         declare the table with store = \"memory\"",
        path.display()
    )))
}

/// [`open`], waiting up to `patience` while the store is still held open in this
/// process: by an earlier holding of the partition that is going away (an event or
/// a window callback of the revoked holding still finishing with it).
pub(crate) fn open_when_free(
    memory: bool,
    path: &Path,
    patience: std::time::Duration,
) -> Result<Box<dyn Store>> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match open(memory, path) {
            Err(Error::StoreLocked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => return opened,
        }
    }
}

/// The keys of the store on disk at `path`, without holding it open (for the CLI).
pub(crate) fn count_keys(path: &Path) -> Result<usize> {
    #[cfg(feature = "rocksdb")]
    return RocksStore::count_keys(path);
    #[cfg(not(feature = "rocksdb"))]
    {
        let _ = path;
        Ok(0)
    }
}

/// A store that lives as long as the partition is held; rebuilt from the changelog on
/// every assignment.
#[derive(Default)]
pub(crate) struct MemoryStore {
    state: Mutex<MemoryState>,
}

type MemoryState = (BTreeMap<Vec<u8>, Vec<u8>>, Checkpoint);

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().0.get(key).cloned())
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let mut state = self.lock();
        let (data, checkpoint) = &mut *state;
        for (key, value) in batch.writes {
            match value {
                Some(value) => data.insert(key, value),
                None => data.remove(&key),
            };
        }
        if let Some(offset) = batch.changelog_offset {
            checkpoint.changelog_offset = Some(offset);
        }
        for (topic, offset) in batch.sources {
            let seen = checkpoint.sources.entry(topic).or_insert(offset);
            *seen = (*seen).max(offset);
        }
        Ok(())
    }

    fn keys(&self) -> Result<Vec<Vec<u8>>> {
        let state = self.lock();
        Ok(state
            .0
            .keys()
            .filter(|k| !is_mark_key(k))
            .cloned()
            .collect())
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(self.lock().1.clone())
    }

    fn clear(&self) -> Result<()> {
        *self.lock() = Default::default();
        Ok(())
    }
}

// Key layout: data under `d` + key, metadata under `m` + name; both sort inside [a, z).
#[cfg(feature = "rocksdb")]
const DATA: u8 = b'd';
#[cfg(feature = "rocksdb")]
const CHANGELOG_OFFSET: &[u8] = b"m:changelog-offset";
#[cfg(feature = "rocksdb")]
const SOURCE: &[u8] = b"m:source:";

/// One RocksDB database per table partition.
#[cfg(feature = "rocksdb")]
pub(crate) struct RocksStore {
    db: rocksdb::DB,
    path: std::path::PathBuf,
    /// The highest source offset stored per topic: events of two agents (or actors) on
    /// one topic finish out of order, and the store must keep the highest, not the last.
    sources: Mutex<HashMap<String, i64>>,
}

#[cfg(feature = "rocksdb")]
impl RocksStore {
    pub(crate) fn open(path: &Path) -> Result<RocksStore> {
        std::fs::create_dir_all(path).map_err(|e| Error::Io {
            context: format!("creating the table directory {}", path.display()),
            source: e,
        })?;
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let db = rocksdb::DB::open(&options, path).map_err(|e| open_error(path, e))?;
        let mut store = RocksStore {
            db,
            path: path.to_owned(),
            sources: Mutex::default(),
        };
        store.sources = Mutex::new(store.checkpoint()?.sources);
        Ok(store)
    }

    fn count_keys(path: &Path) -> Result<usize> {
        let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), path, false)
            .map_err(|e| open_error(path, e))?;
        let count = db
            .prefix_iterator([DATA])
            .take_while(|item| item.as_ref().is_ok_and(|(k, _)| k.first() == Some(&DATA)))
            .filter(|item| item.as_ref().is_ok_and(|(k, _)| !is_mark_key(&k[1..])))
            .count();
        Ok(count)
    }

    fn error(&self, doing: &str, e: rocksdb::Error) -> Error {
        Error::Store {
            path: self.path.clone(),
            message: format!("{doing}: {e}"),
        }
    }
}

#[cfg(feature = "rocksdb")]
fn open_error(path: &Path, e: rocksdb::Error) -> Error {
    let message = e.to_string();
    if message.contains("lock") {
        Error::StoreLocked {
            path: path.to_owned(),
            message,
        }
    } else {
        Error::Store {
            path: path.to_owned(),
            message: format!("opening: {message}"),
        }
    }
}

/// Writes skip RocksDB's write-ahead log, as Kafka Streams' stores do: the changelog is
/// the durable copy. A crash loses the newest writes with the checkpoint that records
/// them (the store comes back as it was at an earlier point, which recovery continues
/// from); a clean close flushes everything.
#[cfg(feature = "rocksdb")]
fn no_wal() -> rocksdb::WriteOptions {
    let mut options = rocksdb::WriteOptions::default();
    options.disable_wal(true);
    options
}

#[cfg(feature = "rocksdb")]
fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA);
    k.extend_from_slice(key);
    k
}

#[cfg(feature = "rocksdb")]
impl Store for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get(data_key(key))
            .map_err(|e| self.error("reading", e))
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let mut write = rocksdb::WriteBatch::default();
        for (key, value) in &batch.writes {
            match value {
                Some(value) => write.put(data_key(key), value),
                None => write.delete(data_key(key)),
            }
        }
        if let Some(offset) = batch.changelog_offset {
            write.put(CHANGELOG_OFFSET, offset.to_be_bytes());
        }
        // Held across the write, so that two writers cannot store their offsets out of order.
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut highest = Vec::new();
        for (topic, offset) in batch.sources {
            if sources.get(&topic).is_none_or(|&seen| offset > seen) {
                let mut key = SOURCE.to_vec();
                key.extend_from_slice(topic.as_bytes());
                write.put(key, offset.to_be_bytes());
                highest.push((topic, offset));
            }
        }
        self.db
            .write_opt(write, &no_wal())
            .map_err(|e| self.error("writing", e))?;
        sources.extend(highest);
        Ok(())
    }

    fn keys(&self) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        for item in self.db.prefix_iterator([DATA]) {
            let (key, _) = item.map_err(|e| self.error("iterating", e))?;
            if key.first() != Some(&DATA) {
                break;
            }
            if !is_mark_key(&key[1..]) {
                keys.push(key[1..].to_vec());
            }
        }
        Ok(keys)
    }

    fn checkpoint(&self) -> Result<Checkpoint> {
        let offset = |bytes: &[u8]| bytes.try_into().ok().map(i64::from_be_bytes);
        let changelog_offset = self
            .db
            .get(CHANGELOG_OFFSET)
            .map_err(|e| self.error("reading the checkpoint", e))?
            .and_then(|b| offset(&b));
        let mut sources = HashMap::new();
        for item in self.db.prefix_iterator(SOURCE) {
            let (key, value) = item.map_err(|e| self.error("reading the checkpoint", e))?;
            let Some(topic) = key.strip_prefix(SOURCE) else {
                break;
            };
            if let Some(o) = offset(&value) {
                sources.insert(String::from_utf8_lossy(topic).into_owned(), o);
            }
        }
        Ok(Checkpoint {
            changelog_offset,
            sources,
        })
    }

    fn clear(&self) -> Result<()> {
        let mut write = rocksdb::WriteBatch::default();
        write.delete_range(&b"a"[..], &b"z"[..]);
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        self.db
            .write_opt(write, &no_wal())
            .map_err(|e| self.error("clearing", e))?;
        sources.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(store: &dyn Store) {
        store
            .write(Batch {
                writes: vec![
                    (b"\"a\"".to_vec(), Some(b"1".to_vec())),
                    (b"\"b\"".to_vec(), Some(b"2".to_vec())),
                ],
                changelog_offset: Some(2),
                sources: vec![("words".into(), 41)],
            })
            .unwrap();
        store
            .write(Batch {
                writes: vec![(b"\"b\"".to_vec(), None)],
                changelog_offset: Some(3),
                sources: vec![("words".into(), 42)],
            })
            .unwrap();
        // Two agents read the topic: the other one finishes an earlier event last.
        store
            .write(Batch {
                writes: vec![(b"\"c\"".to_vec(), None)],
                changelog_offset: None,
                sources: vec![("words".into(), 40)],
            })
            .unwrap();
        assert_eq!(store.get(b"\"a\"").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(b"\"b\"").unwrap(), None);
        assert_eq!(store.keys().unwrap(), vec![b"\"a\"".to_vec()]);
        let checkpoint = store.checkpoint().unwrap();
        assert_eq!(checkpoint.changelog_offset, Some(3));
        assert_eq!(
            checkpoint.sources,
            HashMap::from([("words".to_owned(), 42)]),
            "the highest source offset written, not the last"
        );
        store.clear().unwrap();
        assert_eq!(store.keys().unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(store.checkpoint().unwrap(), Checkpoint::default());
    }

    #[test]
    fn memory_store() {
        exercise(&MemoryStore::default());
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocksdb_store_persists_and_refuses_a_second_opener() {
        let dir = std::env::temp_dir().join(format!("faust-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = RocksStore::open(&dir).unwrap();
            exercise(&store);
            store
                .write(Batch {
                    writes: vec![(b"k".to_vec(), Some(b"v".to_vec()))],
                    changelog_offset: Some(9),
                    sources: Vec::new(),
                })
                .unwrap();
            let err = RocksStore::open(&dir).err().unwrap().to_string();
            assert!(
                err.contains("locked") && err.contains(&dir.display().to_string()),
                "{err}"
            );
        }
        // A handle still held is waited for, within the patience given.
        let held = RocksStore::open(&dir).unwrap();
        let err = open_when_free(false, &dir, std::time::Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(err.to_string().contains("locked"), "{err}");
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(held);
        });
        drop(open_when_free(false, &dir, std::time::Duration::from_secs(10)).unwrap());
        dropper.join().unwrap();
        let reopened = RocksStore::open(&dir).unwrap();
        assert_eq!(reopened.get(b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(reopened.checkpoint().unwrap().changelog_offset, Some(9));
        assert_eq!(RocksStore::count_keys(&dir).unwrap(), 1);
        drop(reopened);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
