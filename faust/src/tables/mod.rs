//! Tables: partitioned key-value state that survives restarts and follows its
//! partitions across workers.
//!
//! A table is partitioned like the topic that feeds it. Every write from an agent goes
//! to the local store of the partition of the event being processed, and at the next
//! commit (once per key, see `cache`) to the same partition of the table's compacted
//! changelog topic `{app_id}-{table}-changelog` (JSON key and value, deletes as null:
//! the format Python Faust writes). When a partition is assigned, the worker replays
//! the changelog into the store before the agents see that partition's events.
//!
//! ```no_run
//! use faust::prelude::*;
//!
//! #[faust::table(name = "word_counts", default = 0)]
//! static COUNTS: Table<String, u64>;
//!
//! #[faust::agent(topic = "words")]
//! async fn count(mut words: Stream<String>) -> faust::Result<()> {
//!     while let Some(word) = words.next().await {
//!         let n = COUNTS.update(&word, |n| *n += 1)?;
//!         println!("{word}: {n}");
//!     }
//!     Ok(())
//! }
//! # faust::main!(id = "demo");
//! ```

mod cache;
mod global;
mod manager;
mod recovery;
mod store;
mod windowed;

use std::{
    marker::PhantomData,
    sync::{Arc, RwLock},
};

use serde::{de::DeserializeOwned, Serialize};

pub(crate) use manager::{check_copartitioning, lock_datadir, tables_dir, Lookup, TableManager};
pub(crate) use store::count_keys;
pub use windowed::{OnClose, TimeReference, Window, WindowSpec, WindowedTable};

use crate::{Error, Result};
use manager::TableState;

/// What `#[faust::table]` registers.
#[derive(Debug)]
pub struct TableDescriptor {
    pub name: &'static str,
    pub key_type: &'static str,
    pub value_type: &'static str,
    /// `None`: the app's default topic partitions.
    pub partitions: Option<i32>,
    pub global: bool,
    /// `"memory"`, or `"rocksdb"` (the default).
    pub store: &'static str,
    /// Writes outside event processing go to the key's partition (murmur2, as Kafka's
    /// default partitioner) instead of being refused.
    pub use_partitioner: bool,
    pub location: &'static str,
    /// A key given as text (web lookups) in its stored form; see [`Table::key_from_text`].
    pub key_from_text: fn(&str) -> std::result::Result<Vec<u8>, String>,
    /// The windows of a [`WindowedTable`].
    pub window: Option<WindowSpec>,
}

inventory::collect!(TableDescriptor);

impl TableDescriptor {
    /// The changelog topic of this table in the app `app_id`.
    pub fn changelog_topic(&self, app_id: &str) -> String {
        format!("{app_id}-{}-changelog", self.name)
    }
}

/// A table of `K` to `V`, declared with `#[faust::table]`. Keys and values are stored
/// as JSON.
pub struct Table<K, V> {
    descriptor: &'static TableDescriptor,
    default: fn() -> V,
    _key: PhantomData<fn() -> K>,
}

impl<K, V> Table<K, V> {
    #[doc(hidden)]
    pub const fn new(descriptor: &'static TableDescriptor, default: fn() -> V) -> Self {
        Table {
            descriptor,
            default,
            _key: PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.descriptor.name
    }

    pub fn descriptor(&self) -> &'static TableDescriptor {
        self.descriptor
    }

    /// The value a missing key reads as.
    pub fn default_value(&self) -> V {
        (self.default)()
    }
}

impl<K: Serialize + DeserializeOwned, V> Table<K, V> {
    /// A key given as text, as a `K` in its stored (JSON) form: the text is read as JSON
    /// first (`42`, `"alice"`, `[1,2]`), else as a plain string (`alice`).
    pub fn key_from_text(text: &str) -> std::result::Result<Vec<u8>, String> {
        let key: K = serde_json::from_str(text)
            .or_else(|_| serde_json::from_value(serde_json::Value::String(text.to_owned())))
            .map_err(|e| format!("'{text}' is not a {}: {e}", std::any::type_name::<K>()))?;
        serde_json::to_vec(&key).map_err(|e| format!("'{text}' cannot be encoded as a key: {e}"))
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Table<K, V> {
    /// The value for `key`, or `None` when it has none.
    pub fn try_get(&self, key: &K) -> Result<Option<V>> {
        let state = state(self.descriptor)?;
        let key = encode(self.descriptor, "key", key)?;
        state
            .read(&key)?
            .map(|bytes| decode_value(self.descriptor, &bytes))
            .transpose()
    }

    /// The value for `key`, or the table's default when it has none.
    pub fn get(&self, key: &K) -> Result<V> {
        Ok(self.try_get(key)?.unwrap_or_else(self.default))
    }

    pub fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.try_get(key)?.is_some())
    }

    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        let state = state(self.descriptor)?;
        let key = encode(self.descriptor, "key", key)?;
        let value = encode(self.descriptor, "value", value)?;
        state.write(key, Some(value))
    }

    /// Changes the value for `key` in place (starting from the default when missing),
    /// writes it, and returns it: `COUNTS.update(&word, |n| *n += 1)?`.
    ///
    /// The read and the write are one step: concurrent updates of the same partition
    /// (two agents, say) cannot lose each other's changes.
    pub fn update(&self, key: &K, change: impl FnOnce(&mut V)) -> Result<V> {
        let state = state(self.descriptor)?;
        let key = encode(self.descriptor, "key", key)?;
        state.update(key, |current| {
            apply(self.descriptor, self.default, current, change)
        })
    }

    pub fn remove(&self, key: &K) -> Result<()> {
        let state = state(self.descriptor)?;
        let key = encode(self.descriptor, "key", key)?;
        state.write(key, None)
    }

    /// The keys of the partitions this worker holds.
    pub fn local_keys(&self) -> Result<Vec<K>> {
        let state = state(self.descriptor)?;
        state
            .local_keys()?
            .iter()
            .map(|bytes| {
                serde_json::from_slice(bytes).map_err(|e| {
                    Error::Table(format!(
                        "table '{}' holds a key that is not a {}: {e}",
                        self.descriptor.name, self.descriptor.key_type
                    ))
                })
            })
            .collect()
    }
}

fn decode_value<V: DeserializeOwned>(descriptor: &TableDescriptor, bytes: &[u8]) -> Result<V> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Table(format!(
            "table '{}' holds a value that is not a {}: {e}",
            descriptor.name, descriptor.value_type
        ))
    })
}

/// What an update writes: the value `change` makes of the stored one (or the default).
fn apply<V: Serialize + DeserializeOwned>(
    descriptor: &TableDescriptor,
    default: fn() -> V,
    current: Option<Vec<u8>>,
    change: impl FnOnce(&mut V),
) -> Result<(Option<Vec<u8>>, V)> {
    let mut value = match current {
        Some(bytes) => decode_value(descriptor, &bytes)?,
        None => default(),
    };
    change(&mut value);
    let bytes = encode(descriptor, "value", &value)?;
    Ok((Some(bytes), value))
}

fn encode<T: Serialize>(descriptor: &TableDescriptor, what: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Encode {
        target: format!("the {what} of table '{}'", descriptor.name),
        message: e.to_string(),
    })
}

/// The running worker's tables.
static MANAGER: RwLock<Option<Arc<TableManager>>> = RwLock::new(None);

pub(crate) fn install(manager: Arc<TableManager>) {
    *MANAGER.write().unwrap_or_else(|e| e.into_inner()) = Some(manager);
}

pub(crate) fn uninstall() {
    *MANAGER.write().unwrap_or_else(|e| e.into_inner()) = None;
}

fn state(descriptor: &'static TableDescriptor) -> Result<Arc<TableState>> {
    let manager = MANAGER.read().unwrap_or_else(|e| e.into_inner()).clone();
    let manager = manager.ok_or_else(|| {
        Error::Table(format!(
            "table '{}' is used outside a running worker; tables live in workers",
            descriptor.name
        ))
    })?;
    manager.table(descriptor.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_json_or_as_plain_text() {
        assert_eq!(
            Table::<String, u64>::key_from_text("alice").unwrap(),
            b"\"alice\""
        );
        assert_eq!(
            Table::<String, u64>::key_from_text("\"alice\"").unwrap(),
            b"\"alice\""
        );
        assert_eq!(
            Table::<String, u64>::key_from_text("42").unwrap(),
            b"\"42\""
        );
        assert_eq!(Table::<u64, u64>::key_from_text("42").unwrap(), b"42");
        let err = Table::<u64, u64>::key_from_text("abc").unwrap_err();
        assert!(err.contains("not a u64"), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(crate::property_test_config())]

        /// Keys come from URLs: any text parses or is refused, never a panic, and a
        /// string key always parses.
        #[test]
        fn any_key_text_is_parsed_or_refused(text in "\\PC{0,40}") {
            proptest::prop_assert!(Table::<String, u64>::key_from_text(&text).is_ok());
            let _ = Table::<u64, u64>::key_from_text(&text);
            let _ = Table::<(i32, String), u64>::key_from_text(&text);
        }
    }
}
