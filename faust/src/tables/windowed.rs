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

use std::{
    collections::{BTreeMap, BTreeSet},
    marker::PhantomData,
    sync::Arc,
    time::Duration,
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tracing::{debug, warn};

use super::{
    apply, decode_value, encode,
    manager::{TablePartition, TableState},
    state,
    store::Store,
    TableDescriptor,
};
use crate::{clock, event, registry::BoxFuture, Error, Result};

/// A time window, `[start, end)` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Where a windowed table takes an event's time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeReference {
    /// The message timestamp (the default); `update_at` passes a time of your own, such
    /// as a field of the value.
    Event,
    /// The wall clock when the event is processed.
    Wall,
}

/// The callback `on_window_close` registers: key and final value as JSON.
pub type OnClose = fn(Vec<u8>, Window, Vec<u8>) -> BoxFuture<Result<()>>;

/// The windows of a table, from `#[faust::table(tumbling | hopping, step, expires, time)]`.
#[derive(Debug)]
pub struct WindowSpec {
    pub size_ms: i64,
    /// Equal to `size_ms` for tumbling windows.
    pub step_ms: i64,
    pub expires_ms: i64,
    pub time: TimeReference,
    pub on_close: Option<OnClose>,
}

impl WindowSpec {
    /// The windows holding `t`, oldest first.
    pub fn windows_at(&self, t: i64) -> Vec<Window> {
        let mut start = t.div_euclid(self.step_ms) * self.step_ms;
        let mut windows = Vec::new();
        while start > t.saturating_sub(self.size_ms) {
            windows.push(self.window(start));
            start -= self.step_ms;
        }
        windows.reverse();
        windows
    }

    fn window(&self, start: i64) -> Window {
        Window {
            start,
            end: start.saturating_add(self.size_ms),
        }
    }

    /// The stream time at which `window` closes.
    fn closes_at(&self, window: Window) -> i64 {
        window.end.saturating_add(self.expires_ms)
    }

    /// "tumbling 10s, expires 10s" / "hopping 20s every 10s, expires 1h" (listings).
    pub fn describe(&self) -> String {
        let shape = if self.step_ms == self.size_ms {
            format!("tumbling {}", duration_text(self.size_ms))
        } else {
            format!(
                "hopping {} every {}",
                duration_text(self.size_ms),
                duration_text(self.step_ms)
            )
        };
        format!("{shape}, expires {}", duration_text(self.expires_ms))
    }

    /// How long the changelog keeps a window's records: until it has surely closed.
    pub(crate) fn retention_ms(&self) -> i64 {
        (self.size_ms + self.expires_ms).max(60_000) * 2
    }

    /// How often the worker looks for windows to close.
    pub(crate) fn tick(&self) -> Duration {
        Duration::from_millis((self.step_ms / 4).clamp(100, 1000) as u64)
    }
}

/// How far ahead of the wall clock an event time may move the stream time: a record
/// stamped far in the future (seconds taken for milliseconds, say) would otherwise close
/// every window at once.
const MAX_AHEAD_MS: i64 = 3_600_000;

/// The store key under which a partition keeps its stream time, so that a late event
/// cannot reopen a closed window after a restart or a rebalance. Not a window key (a
/// JSON string, not `[key, start]`), so windows never collide with it.
const STREAM_TIME_KEY: &[u8] = b"\"__faust_stream_time\"";

/// `ms` in the largest unit that divides it: `1h`, `90s`, `250ms`.
fn duration_text(ms: i64) -> String {
    [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ]
    .iter()
    .find(|(unit, _)| ms % unit == 0 && ms != 0)
    .map_or_else(
        || format!("{ms}ms"),
        |(unit, name)| format!("{}{name}", ms / unit),
    )
}

/// A table partition's stream time: the newest event time seen; while the partition is
/// caught up (nothing waiting to be processed), it moves on with the wall clock from
/// when that event was seen. Never goes back.
#[derive(Debug, Default)]
struct StreamTime {
    /// (event time, wall clock when it was seen)
    seen: Option<(i64, i64)>,
    last: i64,
}

impl StreamTime {
    /// The stream time; `caught_up` lets it run on with the clock. Events waiting to be
    /// processed keep it at the newest event time, so a slow agent or a backlog does not
    /// make in-order events late.
    fn now(&mut self, reference: TimeReference, caught_up: bool) -> Option<i64> {
        let now = match (reference, self.seen) {
            (TimeReference::Wall, _) => clock::now_ms(),
            (TimeReference::Event, Some((time, wall))) if caught_up => {
                time.saturating_add(clock::now_ms().saturating_sub(wall).max(0))
            }
            (TimeReference::Event, Some((time, _))) => time,
            (TimeReference::Event, None) => return None,
        };
        self.last = self.last.max(now);
        Some(self.last)
    }

    /// An event at `time` arrived; times far ahead of the clock are not believed.
    fn observe(&mut self, time: i64, reference: TimeReference) {
        if time > clock::now_ms().saturating_add(MAX_AHEAD_MS) {
            return;
        }
        if self.now(reference, false).is_none_or(|now| time > now) {
            self.seen = Some((time, clock::now_ms()));
            self.last = self.last.max(time);
        }
    }
}

/// The live windows of one table partition and its stream time.
#[derive(Debug, Default)]
pub(crate) struct WindowIndex {
    /// window start -> the store keys (`[key, start]`) of the windows starting then
    starts: BTreeMap<i64, BTreeSet<Vec<u8>>>,
    time: StreamTime,
    /// Closed windows whose `on_window_close` failed, waiting to be tried again.
    retries: Vec<Retry>,
}

/// A closed window to hand to `on_window_close` again.
#[derive(Debug)]
struct Retry {
    window: Window,
    key: Vec<u8>,
    failures: u32,
    /// When (`clock::now_ms`) to try again.
    at: i64,
}

/// A closed window on its way to `on_window_close`.
struct Closed {
    window: Window,
    key: Vec<u8>,
    value: Vec<u8>,
    /// How often its callback failed before.
    failures: u32,
}

impl WindowIndex {
    /// The index of a recovered partition's store (see [`WindowIndex::rebuild`]).
    pub(crate) fn load(store: &dyn Store) -> Result<WindowIndex> {
        let stored = store.get(STREAM_TIME_KEY)?;
        let stored = stored.and_then(|t| std::str::from_utf8(&t).ok()?.parse().ok());
        Ok(WindowIndex::rebuild(store.keys()?, stored))
    }

    /// The index of recovered `keys`: their windows, and its stream time from the one
    /// stored when windows last closed, or else from the newest window.
    fn rebuild(keys: impl IntoIterator<Item = Vec<u8>>, stored_time: Option<i64>) -> WindowIndex {
        let mut index = WindowIndex::default();
        for key in keys {
            if let Some((_, start)) = split_key(&key) {
                index.add(start, key);
            }
        }
        let newest = index.starts.last_key_value().map(|(start, _)| *start);
        if let Some(time) = newest.max(stored_time) {
            index.time.seen = Some((time, clock::now_ms()));
            index.time.last = time;
        }
        index
    }

    /// Indexes the window starting at `start` with store key `key`.
    fn add(&mut self, start: i64, key: Vec<u8>) {
        self.starts.entry(start).or_default().insert(key);
    }

    /// Drops a window from the index (closed by an earlier holding of the partition).
    fn forget(&mut self, start: i64, key: &[u8]) {
        if let Some(keys) = self.starts.get_mut(&start) {
            keys.remove(key);
            if keys.is_empty() {
                self.starts.remove(&start);
            }
        }
        self.retries.retain(|r| r.key != key);
    }

    /// Takes out the windows closed at the partition's stream time.
    fn take_closed(&mut self, spec: &WindowSpec, caught_up: bool) -> Vec<(Window, Vec<u8>)> {
        let Some(now) = self.time.now(spec.time, caught_up) else {
            return Vec::new();
        };
        let mut closed = Vec::new();
        while let Some(entry) = self.starts.first_entry() {
            let window = spec.window(*entry.key());
            if spec.closes_at(window) > now {
                break;
            }
            closed.extend(entry.remove().into_iter().map(|key| (window, key)));
        }
        closed
    }
}

/// The store key of `key`'s window starting at `start`: `[key, start]` in JSON.
fn store_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(key.len() + 24);
    bytes.push(b'[');
    bytes.extend_from_slice(key);
    bytes.push(b',');
    bytes.extend_from_slice(start.to_string().as_bytes());
    bytes.push(b']');
    bytes
}

/// `(key, start)` of a store key made by [`store_key`].
fn split_key(bytes: &[u8]) -> Option<(&[u8], i64)> {
    let inner = bytes.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let comma = inner.iter().rposition(|b| *b == b',')?;
    let start = std::str::from_utf8(&inner[comma + 1..])
        .ok()?
        .parse()
        .ok()?;
    Some((&inner[..comma], start))
}

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
        super::Table::<K, V>::key_from_text(text)
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
        let (partition, source) = state.partition_of(&key, true)?;
        let held = state.held_partition(partition)?;
        let mut index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
        index.time.observe(time_ms, spec.time);
        let now = index.time.now(spec.time, false).unwrap_or(time_ms);
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
            let store_key = store_key(&key, window.start);
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
        self.at(key, clock::now_ms())
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
            .read_in(partition, &store_key(&key, window.start))?
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
        live_windows(&held, spec, &key)?
            .into_iter()
            .map(|(window, bytes)| Ok((window, self.decode(&bytes)?)))
            .collect()
    }

    /// The time the table reads events at: the event's timestamp (or the wall clock).
    fn reference_time(&self) -> Result<i64> {
        let spec = self.spec()?;
        let current = event::current();
        Ok(match (spec.time, current) {
            (TimeReference::Event, Some(position)) => {
                position.timestamp.unwrap_or_else(clock::now_ms)
            }
            _ => clock::now_ms(),
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

/// `key`'s live windows in `held` as JSON, `[{"start", "end", "value"}, ...]` oldest
/// first, or `None` when it has none (web lookups).
pub(crate) fn windows_json(
    held: &TablePartition,
    spec: &WindowSpec,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    let mut windows = Vec::new();
    for (window, bytes) in live_windows(held, spec, key)? {
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        windows
            .push(serde_json::json!({ "start": window.start, "end": window.end, "value": value }));
    }
    Ok((!windows.is_empty())
        .then(|| serde_json::to_vec(&windows))
        .transpose()?)
}

/// `key`'s live windows in `held` with their stored values, oldest first.
fn live_windows(
    held: &TablePartition,
    spec: &WindowSpec,
    key: &[u8],
) -> Result<Vec<(Window, Vec<u8>)>> {
    let starts: Vec<i64> = {
        let index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
        index
            .starts
            .iter()
            .filter(|(start, keys)| keys.contains(&store_key(key, **start)))
            .map(|(start, _)| *start)
            .collect()
    };
    let mut windows = Vec::new();
    for start in starts {
        if let Some(bytes) = held.store.get(&store_key(key, start))? {
            windows.push((spec.window(start), bytes));
        }
    }
    Ok(windows)
}

/// Closes the due windows of every windowed table partition this worker holds, until
/// `stop` turns true (between two windows, never between a callback and its tombstone).
pub(crate) async fn close_windows(
    tables: Vec<Arc<TableState>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tick = tables
        .iter()
        .filter_map(|t| t.descriptor.window.as_ref().map(WindowSpec::tick))
        .min();
    let Some(tick) = tick else {
        return;
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        for table in &tables {
            if let Some(spec) = &table.descriptor.window {
                close_due(table, spec, &stop).await;
            }
        }
    }
}

/// Closes one table's due windows: the final values go to `on_window_close`, then the
/// windows leave the store and the changelog. A callback that fails is retried at the
/// next tick, so no final value is lost. No partition is held across a callback: one
/// revoked meanwhile is left to its new owner, which recovers and closes its windows.
///
/// `stop` turning true ends this between two windows (shutdown): the windows left are
/// still in the store, and close after the restart.
pub(crate) async fn close_due(
    table: &TableState,
    spec: &WindowSpec,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let partitions: Vec<i32> = table
        .held_partitions()
        .iter()
        .map(|held| held.partition)
        .collect();
    for partition in partitions {
        let Ok(held) = table.held_partition(partition) else {
            continue;
        };
        let caught_up = table.sensors.monitor().caught_up(partition);
        let (closed, time) = final_values(table, &held, spec, caught_up);
        // The partition may move, and even come back, during a callback: `held` is this
        // holding of it, told apart from a later one by its id.
        let holding = held.id;
        drop(held);
        if closed.is_empty() {
            continue;
        }
        for Closed {
            window,
            key,
            value,
            failures,
        } in closed
        {
            if *stop.borrow() {
                return;
            }
            if let (Some(on_close), Some((user_key, _))) = (spec.on_close, split_key(&key)) {
                // Spawned, so that a panicking callback is a failure, not a dead closer.
                let outcome = match tokio::spawn(on_close(user_key.to_vec(), window, value)).await {
                    Ok(outcome) => outcome,
                    Err(e) => Err(Error::msg(format!("on_window_close panicked: {e}"))),
                };
                if let Err(e) = outcome {
                    // Tried again later, backing off up to 5 minutes: never given up on.
                    let failures = failures + 1;
                    let delay_ms = 1_000i64 << failures.min(9);
                    let delay_ms = delay_ms.min(300_000);
                    warn!(
                        table = table.descriptor.name,
                        ?window,
                        error = %e,
                        failures,
                        "on_window_close failed; trying again in {} s",
                        delay_ms / 1000
                    );
                    // A later holding rebuilt its own index, with this window in it.
                    if let Some(held) = table
                        .held_partition(partition)
                        .ok()
                        .filter(|h| h.id == holding)
                    {
                        let mut index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
                        index.retries.push(Retry {
                            window,
                            key,
                            failures,
                            at: clock::now_ms().saturating_add(delay_ms),
                        });
                    }
                    continue;
                }
            }
            let Ok(held) = table.held_partition(partition) else {
                break;
            };
            if held.id != holding {
                // Back after a move: its rebuilt index must not close this window again.
                let mut index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
                index.forget(window.start, &key);
            }
            if let Err(e) = table.update_in(&held, None, key, |_| Ok((None, ()))) {
                warn!(table = table.descriptor.name, ?window, error = %e, "could not remove a closed window");
            }
        }
        // The partition's stream time goes with its windows: a new owner then refuses
        // late events for windows closed here instead of opening them again.
        if let (Some(time), Ok(held)) = (time, table.held_partition(partition)) {
            let time = time.to_string().into_bytes();
            let stored = table.update_in(&held, None, STREAM_TIME_KEY.to_vec(), |_| {
                Ok((Some(time), ()))
            });
            if let Err(e) = stored {
                warn!(table = table.descriptor.name, error = %e, "could not store the stream time");
            }
        }
    }
}

/// Takes the partition's due windows out of its index with their final values, read
/// under the index lock: a write to a window checks the same stream time under it, so
/// none lands after its final value was read.
/// Also returns the stream time they closed at.
/// Windows whose callback failed come back when their retry is due.
fn final_values(
    table: &TableState,
    held: &TablePartition,
    spec: &WindowSpec,
    caught_up: bool,
) -> (Vec<Closed>, Option<i64>) {
    let mut index = held.windows.lock().unwrap_or_else(|e| e.into_inner());
    let now = clock::now_ms();
    let (due, waiting): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut index.retries)
        .into_iter()
        .partition(|r| r.at <= now);
    index.retries = waiting;
    let closing = index.take_closed(spec, caught_up);
    let retried = due.into_iter().map(|r| (r.window, r.key, r.failures));
    let mut closed = Vec::new();
    for (window, key, failures) in closing.into_iter().map(|(w, k)| (w, k, 0)).chain(retried) {
        match held.store.get(&key) {
            Ok(Some(value)) => closed.push(Closed {
                window,
                key,
                value,
                failures,
            }),
            Ok(None) => {}
            Err(e) => {
                warn!(table = table.descriptor.name, ?window, error = %e, "could not read a closed window; retrying at the next tick");
                index.add(window.start, key);
            }
        }
    }
    (closed, index.time.now(spec.time, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size_ms: i64, step_ms: i64, expires_ms: i64) -> WindowSpec {
        WindowSpec {
            size_ms,
            step_ms,
            expires_ms,
            time: TimeReference::Event,
            on_close: None,
        }
    }

    #[test]
    fn tumbling_and_hopping_windows_hold_the_right_times() {
        let tumbling = spec(10, 10, 0);
        assert_eq!(tumbling.windows_at(0), [Window { start: 0, end: 10 }]);
        assert_eq!(tumbling.windows_at(19), [Window { start: 10, end: 20 }]);
        assert_eq!(tumbling.windows_at(-1), [Window { start: -10, end: 0 }]);
        let hopping = spec(10, 5, 0);
        assert_eq!(
            hopping.windows_at(12),
            [Window { start: 5, end: 15 }, Window { start: 10, end: 20 }]
        );
        assert_eq!(spec(30, 10, 0).windows_at(30).len(), 3);
    }

    #[test]
    fn windows_describe_themselves() {
        assert_eq!(
            spec(10_000, 10_000, 10_000).describe(),
            "tumbling 10s, expires 10s"
        );
        assert_eq!(
            spec(3_600_000, 60_000, 90_000).describe(),
            "hopping 1h every 1m, expires 90s"
        );
        assert_eq!(spec(250, 250, 0).describe(), "tumbling 250ms, expires 0ms");
    }

    #[test]
    fn store_keys_split_back() {
        let key = store_key(br#"["a,b",1]"#, -42);
        assert_eq!(key, br#"[["a,b",1],-42]"#);
        assert_eq!(split_key(&key), Some((&br#"["a,b",1]"#[..], -42)));
        assert_eq!(split_key(b"\"plain\""), None);
    }

    #[test]
    fn windows_close_when_stream_time_passes_their_end_and_expiry() {
        let spec = spec(10, 10, 5);
        let mut index =
            WindowIndex::rebuild([store_key(b"\"a\"", 0), store_key(b"\"b\"", 10)], None);
        // The stream time restarts at the newest recovered window (10): none is due yet.
        assert!(index.take_closed(&spec, false).is_empty());
        index.time.observe(15, TimeReference::Event);
        let closed = index.take_closed(&spec, false);
        assert_eq!(
            closed,
            [(Window { start: 0, end: 10 }, store_key(b"\"a\"", 0))]
        );
        // An older event does not move time back.
        index.time.observe(3, TimeReference::Event);
        index.time.observe(25, TimeReference::Event);
        assert_eq!(index.take_closed(&spec, false).len(), 1);
        assert!(index.starts.is_empty());
    }

    #[test]
    fn stream_time_moves_on_with_the_clock_between_events() {
        let mut time = StreamTime::default();
        assert_eq!(time.now(TimeReference::Event, true), None);
        time.observe(1_000, TimeReference::Event);
        let now = time.now(TimeReference::Event, true).unwrap();
        assert!((1_000..1_000 + 60_000).contains(&now), "{now}");
        let later = time.now(TimeReference::Event, true).unwrap();
        assert!(later >= now);
    }
}
