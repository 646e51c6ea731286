//! `Table<K, V>`: the handle a user declares with `#[faust::table]`. It names a table;
//! the running worker's context (see [`crate::context`]) holds its state.

use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Serialize};

use super::{apply, decode_value, encode, state};
use crate::{descriptor::TableDescriptor, Error, Result};

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

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.descriptor.name
    }

    pub(super) fn descriptor(&self) -> &'static TableDescriptor {
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
    /// Decodes a changelog record's key and value for `on_changelog_event` (macro use).
    #[doc(hidden)]
    pub fn decode_entry(key: &[u8], value: Option<&[u8]>) -> Result<(K, Option<V>)> {
        let problem = |what: &str, e: serde_json::Error| {
            Error::Table(format!("a changelog record's {what} does not decode: {e}"))
        };
        let key = serde_json::from_slice(key).map_err(|e| problem("key", e))?;
        let value = value
            .map(serde_json::from_slice)
            .transpose()
            .map_err(|e| problem("value", e))?;
        Ok((key, value))
    }

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

    /// Whether `key` has a value.
    pub fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.try_get(key)?.is_some())
    }

    /// Sets `key`'s value.
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

    /// Removes `key` (a tombstone in the changelog).
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
            .map(|bytes| self.decode_key(bytes))
            .collect()
    }

    /// The keys and values of the partitions this worker holds (Faust's `table.items()`).
    pub fn local_items(&self) -> Result<Vec<(K, V)>> {
        let state = state(self.descriptor)?;
        state
            .local_items()?
            .iter()
            .map(|(key, value)| Ok((self.decode_key(key)?, decode_value(self.descriptor, value)?)))
            .collect()
    }

    /// The values of the partitions this worker holds (Faust's `table.values()`).
    pub fn local_values(&self) -> Result<Vec<V>> {
        Ok(self
            .local_items()?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }

    fn decode_key(&self, bytes: &[u8]) -> Result<K> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::Table(format!(
                "table '{}' holds a key that is not a {}: {e}",
                self.descriptor.name, self.descriptor.key_type
            ))
        })
    }
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
