//! `SetTable<K, T>`: a table whose values are sets (Python Faust's `app.SetTable`).

use std::collections::BTreeSet;

use serde::{de::DeserializeOwned, Serialize};

use super::{decode_value, encode, state, Table};
use crate::{descriptor::TableDescriptor, Result};

/// A table of `K` to a set of `T`, declared with `#[faust::table]` on
/// `static NAME: SetTable<K, T>;` (with `global = true`, Faust's `SetGlobalTable`):
///
/// ```no_run
/// use faust::{prelude::*, tables::SetTable};
///
/// #[faust::table(name = "people")]
/// static PEOPLE: SetTable<String, String>;
///
/// #[faust::agent(topic = "joining")]
/// async fn join(mut joins: Stream<String>) -> faust::Result<()> {
///     while let Some(event) = joins.next_event().await {
///         let Some(place) = event.decode_key::<String>()? else { continue };
///         PEOPLE.add(&place, event.value)?;
///     }
///     Ok(())
/// }
/// # faust::main!(id = "demo");
/// ```
///
/// A missing key reads as the empty set, and a set emptied is removed (a tombstone).
/// Each change writes the key's whole set, as a JSON array in order, to the changelog,
/// which is compacted like any table's: recovery needs only each key's last record.
/// (Faust writes single operations keyed `[operation, key]` to a changelog it does not
/// compact; faust-rs does not read that format.) Members are kept in order (a
/// `BTreeSet`), so `T` is `Ord`.
pub struct SetTable<K, T> {
    table: Table<K, BTreeSet<T>>,
}

impl<K, T> SetTable<K, T> {
    #[doc(hidden)]
    pub const fn new(descriptor: &'static TableDescriptor, empty: fn() -> BTreeSet<T>) -> Self {
        SetTable {
            table: Table::new(descriptor, empty),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.table.name()
    }
}

impl<K: Serialize + DeserializeOwned, T> SetTable<K, T> {
    /// A key given as text, in its stored form (see [`Table::key_from_text`]).
    pub fn key_from_text(text: &str) -> std::result::Result<Vec<u8>, String> {
        Table::<K, T>::key_from_text(text)
    }
}

impl<K, T> SetTable<K, T>
where
    K: Serialize + DeserializeOwned,
    T: Ord + Serialize + DeserializeOwned,
{
    /// The set of `key` (empty when it has none).
    pub fn get(&self, key: &K) -> Result<BTreeSet<T>> {
        self.table.get(key)
    }

    /// Whether `key`'s set holds `member`.
    pub fn contains(&self, key: &K, member: &T) -> Result<bool> {
        Ok(self.get(key)?.contains(member))
    }

    /// Adds `member` to `key`'s set; whether it was new.
    pub fn add(&self, key: &K, member: T) -> Result<bool> {
        self.change(key, |set| set.insert(member))
    }

    /// Takes `member` out of `key`'s set; whether it was there.
    pub fn discard(&self, key: &K, member: &T) -> Result<bool> {
        self.change(key, |set| set.remove(member))
    }

    /// Changes `key`'s set in place and returns it: the rest of Faust's set operations,
    /// `SETS.update(&key, |s| s.retain(|m| others.contains(m)))` (an intersection),
    /// `s.extend(more)` (a union), and so on.
    pub fn update(&self, key: &K, change: impl FnOnce(&mut BTreeSet<T>)) -> Result<BTreeSet<T>>
    where
        T: Clone,
    {
        self.change(key, |set| {
            change(set);
            set.clone()
        })
    }

    /// Empties `key`'s set (a tombstone in the changelog).
    pub fn clear(&self, key: &K) -> Result<()> {
        self.table.remove(key)
    }

    /// The keys of the partitions this worker holds.
    pub fn local_keys(&self) -> Result<Vec<K>> {
        self.table.local_keys()
    }

    /// Applies `change` to `key`'s set and writes the set: an empty one as a tombstone.
    fn change<R>(&self, key: &K, change: impl FnOnce(&mut BTreeSet<T>) -> R) -> Result<R> {
        let descriptor = self.table.descriptor();
        let state = state(descriptor)?;
        let key = encode(descriptor, "key", key)?;
        state.update(key, |current| {
            let mut set: BTreeSet<T> = match &current {
                Some(bytes) => decode_value(descriptor, bytes)?,
                None => self.table.default_value(),
            };
            let result = change(&mut set);
            let value = match set.is_empty() {
                true => None,
                false => Some(encode(descriptor, "value", &set)?),
            };
            Ok((value, result))
        })
    }
}
