//! Windowed tables: a value per key and time window, for "totals per user per hour".
//!
//! ```no_run
//! use faust::prelude::*;
//! use faust::tables::{Window, WindowedTable};
//!
//! /// user -> total of the hour (event time), kept two hours after each hour ends.
//! #[faust::table(name = "hourly", default = 0, tumbling = "1h", expires = "2h", on_window_close = closed)]
//! static HOURLY: WindowedTable<String, i64>;
//!
//! async fn closed(user: String, window: Window, total: i64) -> faust::Result<()> {
//!     faust::send("hourly-totals", Some(&user), &(window.start, total)).await?;
//!     Ok(())
//! }
//! # faust::main!(id = "demo");
//! ```
//!
//! A window `[start, end)` starts at a multiple of its step (of its size, for tumbling
//! windows); an event at time `t` updates every window holding `t` (one when tumbling,
//! size/step when hopping). Each window is a key `[key, start]` of the table's store and
//! changelog, so windows recover and move with their partitions like any table key.
//!
//! **Time.** Each table partition has a stream time: the newest event time seen, moving
//! on with the wall clock between events. So windows close on time even when no event
//! comes (in Python Faust they expire only when new events arrive), and replaying old
//! events still sees them in their own windows. A window closes once the stream time
//! passes its end plus `expires`: it is removed from the store, a tombstone goes to the
//! changelog (created `compact,delete` with a retention of size + expires), and
//! `on_window_close` receives its final value. Events arriving later for a closed window
//! are left out (`update` returns `None`). After a recovery or a rebalance the stream
//! time restarts from the newest recovered window, so old windows close there too.

use std::{marker::PhantomData, time::Duration};

use serde::{de::DeserializeOwned, Serialize};
use tracing::debug;

use super::{apply, decode_value, encode, state, windows, Table};
use crate::{
    context,
    descriptor::{TableDescriptor, TimeReference, Window, WindowSpec},
    event, Error, Result,
};

/// A windowed table of `K` to `V`, declared with `#[faust::table]` and `tumbling` or
/// `hopping`. Keys and values are stored as JSON.
pub struct WindowedTable<K, V> {
    descriptor: &'static TableDescriptor,
    default: fn() -> V,
    _key: PhantomData<fn() -> K>,
}

impl<K, V> WindowedTable<K, V> {
    #[doc(hidden)]
    pub const fn new(descriptor: &'static TableDescriptor, default: fn() -> V) -> Self {
        WindowedTable {
            descriptor,
            default,
            _key: PhantomData,
        }
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.descriptor.name
    }

    fn spec(&self) -> Result<&'static WindowSpec> {
        self.descriptor.window.as_ref().ok_or_else(|| {
            Error::Table(format!(
                "table '{}' has no windows; declare it with `tumbling = \"...\"` or `hopping = \"...\"`",
                self.descriptor.name
            ))
        })
    }
}

impl<K: Serialize + DeserializeOwned, V> WindowedTable<K, V> {
    /// A key given as text in its stored form, as [`super::Table::key_from_text`].
    pub fn key_from_text(text: &str) -> std::result::Result<Vec<u8>, String> {
        Table::<K, V>::key_from_text(text)
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> WindowedTable<K, V> {
    /// Adds the event to `key`'s windows at the table's time reference (the event's
    /// timestamp, or the wall clock) and returns the value of the newest of them, or
    /// `None` if the event came after its windows closed (it is then left out).
    pub fn update(&self, key: &K, change: impl FnMut(&mut V)) -> Result<Option<V>> {
        self.update_at(key, self.reference_time()?, change)
    }

    /// [`WindowedTable::update`] at a time of your own, such as a field of the value
    /// (milliseconds since the Unix epoch).
    pub fn update_at(
        &self,
        key: &K,
        time_ms: i64,
        mut change: impl FnMut(&mut V),
    ) -> Result<Option<V>> {
        let spec = self.spec()?;
        let state = state(self.descriptor)?;
        let key = encode(self.descriptor, "key", key)?;
        let (held, source) = state.write_target(&key)?;
        let mut index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = index
            .observe(time_ms, spec.time, state.clock.now_ms())
            .unwrap_or(time_ms);
        let mut newest = None;
        for window in spec.windows_at(time_ms) {
            if spec.closes_at(window) <= now {
                debug!(
                    table = self.descriptor.name,
                    ?window,
                    "an event for a closed window is left out"
                );
                continue;
            }
            let store_key = windows::store_key(&key, window);
            let value = state.update_in(&held, source.clone(), store_key.clone(), |current| {
                apply(self.descriptor, self.default, current, &mut change)
            })?;
            index.add(window.start, store_key);
            newest = Some(value);
        }
        Ok(newest)
    }

    /// The value of `key`'s newest window holding the current event's time (or now,
    /// outside events).
    pub fn current(&self, key: &K) -> Result<V> {
        self.at(key, self.reference_time()?)
    }

    /// The value of `key`'s newest window holding the wall clock's now.
    pub fn now(&self, key: &K) -> Result<V> {
        self.at(key, context::now_ms())
    }

    /// The value of `key`'s newest window holding the current event's time minus `ago`.
    pub fn delta(&self, key: &K, ago: Duration) -> Result<V> {
        self.at(key, self.reference_time()? - ago.as_millis() as i64)
    }

    /// The value of `key`'s newest window holding `time_ms`.
    pub fn at(&self, key: &K, time_ms: i64) -> Result<V> {
        let spec = self.spec()?;
        let Some(window) = spec.windows_at(time_ms).pop() else {
            return Ok((self.default)());
        };
        Ok(self
            .get_window(key, window)?
            .unwrap_or_else(|| (self.default)()))
    }

    /// `key`'s value in `window`, if the window is live and has one.
    pub fn get_window(&self, key: &K, window: Window) -> Result<Option<V>> {
        let state = state(self.descriptor)?;
        let key = encode(self.descriptor, "key", key)?;
        let (partition, _) = state.partition_of(&key, false)?;
        state
            .read_in(partition, &windows::store_key(&key, window))?
            .map(|bytes| self.decode(&bytes))
            .transpose()
    }

    /// Every live window of `key` with its value, oldest first.
    pub fn windows(&self, key: &K) -> Result<Vec<(Window, V)>> {
        let spec = self.spec()?;
        let state = state(self.descriptor)?;
        let key = encode(self.descriptor, "key", key)?;
        let (partition, _) = state.partition_of(&key, false)?;
        let held = state.held_partition(partition)?;
        windows::live_windows(&held.windows, &|k| held.get(k), spec, &key)?
            .into_iter()
            .map(|(window, bytes)| Ok((window, self.decode(&bytes)?)))
            .collect()
    }

    /// The time the table reads events at: the event's timestamp (or the wall clock).
    fn reference_time(&self) -> Result<i64> {
        let spec = self.spec()?;
        // The worker's clock, without looking the table up (update does that next).
        let now = context::now_ms();
        Ok(match (spec.time, event::current()) {
            (TimeReference::Event, Some(position)) => position.timestamp.unwrap_or(now),
            _ => now,
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<V> {
        decode_value(self.descriptor, bytes)
    }

    /// Decodes a closed window's key and value for `on_window_close` (macro use).
    #[doc(hidden)]
    pub fn decode_closed(key: &[u8], value: &[u8]) -> Result<(K, V)> {
        let key = serde_json::from_slice(key)
            .map_err(|e| Error::Table(format!("a closed window's key does not decode: {e}")))?;
        let value = serde_json::from_slice(value)
            .map_err(|e| Error::Table(format!("a closed window's value does not decode: {e}")))?;
        Ok((key, value))
    }
}
