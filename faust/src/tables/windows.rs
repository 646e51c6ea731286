//! The live windows of windowed tables' partitions and their stream time: which windows
//! are open, which are due to close, and the store keys (`[key,[start,end]]`, as Python
//! Faust writes them) they live under.
//! `closer` closes them; `windowed` is the table users write to.
//!
//! **Time.** Each table partition has a stream time: the newest event time seen, moving
//! on with the wall clock between events while the partition is caught up. So windows
//! close on time even when no event comes (in Python Faust they expire only when new
//! events arrive), and replaying old events still sees them in their own windows. After
//! a recovery or a rebalance the stream time restarts from the one stored when windows
//! last closed, or the newest recovered window.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use tracing::warn;

use super::store::Store;
use crate::{
    descriptor::{TimeReference, Window, WindowSpec},
    Result,
};

/// How far ahead of the wall clock an event time may move the stream time: a record
/// stamped far in the future (seconds taken for milliseconds, say) would otherwise close
/// every window at once.
const MAX_AHEAD_MS: i64 = 3_600_000;

/// Reads a value of the partition: its write cache, else its store
/// (`TablePartition::get`).
pub(crate) type Read<'a> = &'a dyn Fn(&[u8]) -> Result<Option<Vec<u8>>>;

/// The store key under which a partition keeps its stream time, so that a late event
/// cannot reopen a closed window after a restart or a rebalance. Not a window key (a
/// JSON string, not `[key,[start,end]]`), so windows never collide with it.
pub(super) const STREAM_TIME_KEY: &[u8] = b"\"__faust_stream_time\"";

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
    /// `wall` is the clock's now.
    fn now(&mut self, reference: TimeReference, caught_up: bool, wall: i64) -> Option<i64> {
        let now = match (reference, self.seen) {
            (TimeReference::Wall, _) => wall,
            (TimeReference::Event, Some((time, seen_at))) if caught_up => {
                time.saturating_add(wall.saturating_sub(seen_at).max(0))
            }
            (TimeReference::Event, Some((time, _))) => time,
            (TimeReference::Event, None) => return None,
        };
        self.last = self.last.max(now);
        Some(self.last)
    }

    /// An event at `time` arrived; times far ahead of the clock are not believed.
    fn observe(&mut self, time: i64, reference: TimeReference, wall: i64) {
        if time > wall.saturating_add(MAX_AHEAD_MS) {
            return;
        }
        if self
            .now(reference, false, wall)
            .is_none_or(|now| time > now)
        {
            self.seen = Some((time, wall));
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
    /// When (clock milliseconds) to try again.
    at: i64,
}

/// A closed window on its way to `on_window_close`.
pub(super) struct Closed {
    pub(super) window: Window,
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
    /// How often its callback failed before.
    pub(super) failures: u32,
}

impl WindowIndex {
    /// The index of a recovered partition's store (see [`WindowIndex::rebuild`]).
    pub(crate) fn load(store: &dyn Store, wall: i64) -> Result<WindowIndex> {
        let stored = store.get(STREAM_TIME_KEY)?;
        let stored = stored.and_then(|t| std::str::from_utf8(&t).ok()?.parse().ok());
        Ok(WindowIndex::rebuild(store.keys()?, stored, wall))
    }

    /// The index of recovered `keys`: their windows, and its stream time from the one
    /// stored when windows last closed, or else from the newest window.
    fn rebuild(
        keys: impl IntoIterator<Item = Vec<u8>>,
        stored_time: Option<i64>,
        wall: i64,
    ) -> WindowIndex {
        let mut index = WindowIndex::default();
        for key in keys {
            if let Some((_, start)) = split_key(&key) {
                index.add(start, key);
            }
        }
        let newest = index.starts.last_key_value().map(|(start, _)| *start);
        if let Some(time) = newest.max(stored_time) {
            index.time.seen = Some((time, wall));
            index.time.last = time;
        }
        index
    }

    /// An event at `time` arrived (the clock reads `wall`): returns the stream time.
    pub(super) fn observe(
        &mut self,
        time: i64,
        reference: TimeReference,
        wall: i64,
    ) -> Option<i64> {
        self.time.observe(time, reference, wall);
        self.time.now(reference, false, wall)
    }

    /// Hands a closed window to `on_window_close` again at `at` (clock milliseconds).
    pub(super) fn retry_later(&mut self, window: Window, key: Vec<u8>, failures: u32, at: i64) {
        self.retries.push(Retry {
            window,
            key,
            failures,
            at,
        });
    }

    /// Indexes the window starting at `start` with store key `key`.
    pub(super) fn add(&mut self, start: i64, key: Vec<u8>) {
        self.starts.entry(start).or_default().insert(key);
    }

    /// Drops a window from the index (closed by an earlier holding of the partition).
    pub(super) fn forget(&mut self, start: i64, key: &[u8]) {
        if let Some(keys) = self.starts.get_mut(&start) {
            keys.remove(key);
            if keys.is_empty() {
                self.starts.remove(&start);
            }
        }
        self.retries.retain(|r| r.key != key);
    }

    /// Takes out the windows closed at the partition's stream time.
    fn take_closed(
        &mut self,
        spec: &WindowSpec,
        caught_up: bool,
        wall: i64,
    ) -> Vec<(Window, Vec<u8>)> {
        let Some(now) = self.time.now(spec.time, caught_up, wall) else {
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

/// The store (and changelog) key of `key`'s `window`, as Python Faust writes it: the
/// JSON `[key,[start,end]]` in seconds, `end = start + size - 0.1`, floats spelled as
/// Python's `repr` spells them (`["café",[1700000000.0,1700000009.9]]`), so a
/// faust-rs table and a Faust one continue each other's changelog.
pub(super) fn store_key(key: &[u8], window: Window) -> Vec<u8> {
    let start = window.start as f64 / 1000.0;
    let size = (window.end - window.start) as f64 / 1000.0;
    // Python's `start + size - 0.1`, in the same order, so the same double.
    let end = start + size - 0.1;
    let mut bytes = Vec::with_capacity(key.len() + 32);
    bytes.push(b'[');
    bytes.extend_from_slice(key);
    // `{:?}` is the shortest text that reads back as the same double, as Python's repr,
    // and like it ends whole numbers in `.0` (the two spell exponents differently, but
    // only from 1e16 s on).
    bytes.extend_from_slice(format!(",[{start:?},{end:?}]]").as_bytes());
    bytes
}

/// `(key, start in milliseconds)` of a window's store key (see [`store_key`]), written
/// by faust-rs or Python Faust.
pub(super) fn split_key(bytes: &[u8]) -> Option<(&[u8], i64)> {
    let inner = bytes.strip_prefix(b"[")?.strip_suffix(b"]")?;
    // The window is the last `[start,end]`: numbers hold no `[`.
    let open = inner.iter().rposition(|b| *b == b'[')?;
    let key = inner[..open].strip_suffix(b",")?;
    let window = std::str::from_utf8(inner[open + 1..].strip_suffix(b"]")?).ok()?;
    let (start, _end) = window.split_once(',')?;
    let start: f64 = start.trim().parse().ok()?;
    Some((key, (start * 1000.0).round() as i64))
}

/// `key`'s live windows in `held` as JSON, `[{"start", "end", "value"}, ...]` oldest
/// first, or `None` when it has none (web lookups).
pub(crate) fn windows_json(
    index: &Mutex<WindowIndex>,
    read: Read<'_>,
    spec: &WindowSpec,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    let mut windows = Vec::new();
    for (window, bytes) in live_windows(index, read, spec, key)? {
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        windows
            .push(serde_json::json!({ "start": window.start, "end": window.end, "value": value }));
    }
    Ok((!windows.is_empty())
        .then(|| serde_json::to_vec(&windows))
        .transpose()?)
}

/// `key`'s live windows in `held` with their stored values, oldest first.
pub(super) fn live_windows(
    index: &Mutex<WindowIndex>,
    read: Read<'_>,
    spec: &WindowSpec,
    key: &[u8],
) -> Result<Vec<(Window, Vec<u8>)>> {
    let starts: Vec<i64> = {
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        index
            .starts
            .iter()
            .filter(|(start, keys)| keys.contains(&store_key(key, spec.window(**start))))
            .map(|(start, _)| *start)
            .collect()
    };
    let mut windows = Vec::new();
    for start in starts {
        if let Some(bytes) = read(&store_key(key, spec.window(start)))? {
            windows.push((spec.window(start), bytes));
        }
    }
    Ok(windows)
}

/// Takes the partition's due windows out of its index with their final values, read
/// under the index lock: a write to a window checks the same stream time under it, so
/// none lands after its final value was read.
/// Also returns the stream time they closed at.
/// Windows whose callback failed come back when their retry is due.
pub(crate) fn final_values(
    table: &str,
    index: &Mutex<WindowIndex>,
    read: Read<'_>,
    spec: &WindowSpec,
    caught_up: bool,
    now: i64,
) -> (Vec<Closed>, Option<i64>) {
    let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
    let (due, waiting): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut index.retries)
        .into_iter()
        .partition(|r| r.at <= now);
    index.retries = waiting;
    let closing = index.take_closed(spec, caught_up, now);
    let retried = due.into_iter().map(|r| (r.window, r.key, r.failures));
    let mut closed = Vec::new();
    for (window, key, failures) in closing.into_iter().map(|(w, k)| (w, k, 0)).chain(retried) {
        match read(&key) {
            Ok(Some(value)) => closed.push(Closed {
                window,
                key,
                value,
                failures,
            }),
            Ok(None) => {}
            Err(e) => {
                warn!(table, ?window, error = %e, "could not read a closed window; retrying at the next tick");
                index.add(window.start, key);
            }
        }
    }
    let time = index.time.now(spec.time, false, now);
    (closed, time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::tests::spec;

    #[test]
    fn store_keys_are_spelled_as_python_faust_spells_them_and_split_back() {
        // What faust-streaming 0.15.3 serializes for a table keyed "café" (tumbling 10 s
        // and hopping 10 s every 5 s, an event at 1700000003.25), after
        // `codec::canonical_json` (Python escapes the é).
        let tumbling = Window {
            start: 1_700_000_000_000,
            end: 1_700_000_010_000,
        };
        let key = store_key("\"café\"".as_bytes(), tumbling);
        assert_eq!(key, "[\"café\",[1700000000.0,1700000009.9]]".as_bytes());
        let hopping = Window {
            start: 1_699_999_995_000,
            end: 1_700_000_005_000,
        };
        let key = store_key("\"café\"".as_bytes(), hopping);
        assert_eq!(key, "[\"café\",[1699999995.0,1700000004.9]]".as_bytes());
        assert_eq!(
            split_key(&key),
            Some(("\"café\"".as_bytes(), 1_699_999_995_000))
        );
        // Keys that are JSON arrays, or hold brackets and commas, split back whole.
        let key = store_key(br#"["a,[b",1]"#, tumbling);
        assert_eq!(
            split_key(&key),
            Some((&br#"["a,[b",1]"#[..], 1_700_000_000_000))
        );
        assert_eq!(split_key(b"\"plain\""), None);
        assert_eq!(split_key(br#"["a",17]"#), None);
    }

    #[test]
    fn windows_close_when_stream_time_passes_their_end_and_expiry() {
        let spec = spec(10, 10, 5);
        let mut index = WindowIndex::rebuild(
            [
                store_key(b"\"a\"", spec.window(0)),
                store_key(b"\"b\"", spec.window(10)),
            ],
            None,
            0,
        );
        // The stream time restarts at the newest recovered window (10): none is due yet.
        assert!(index.take_closed(&spec, false, 0).is_empty());
        index.time.observe(15, TimeReference::Event, 0);
        let closed = index.take_closed(&spec, false, 0);
        assert_eq!(
            closed,
            [(
                Window { start: 0, end: 10 },
                store_key(b"\"a\"", spec.window(0))
            )]
        );
        // An older event does not move time back.
        index.time.observe(3, TimeReference::Event, 0);
        index.time.observe(25, TimeReference::Event, 0);
        assert_eq!(index.take_closed(&spec, false, 0).len(), 1);
        assert!(index.starts.is_empty());
    }

    #[test]
    fn stream_time_moves_on_with_the_clock_between_events() {
        let mut time = StreamTime::default();
        assert_eq!(time.now(TimeReference::Event, true, 5_000), None);
        time.observe(1_000, TimeReference::Event, 5_000);
        // Caught up, it runs on with the clock from when the event was seen...
        assert_eq!(time.now(TimeReference::Event, true, 7_000), Some(3_000));
        // ...not while events wait, and it never goes back.
        assert_eq!(time.now(TimeReference::Event, false, 9_000), Some(3_000));
        // An event far ahead of the clock is not believed.
        time.observe(5_000 + MAX_AHEAD_MS + 1, TimeReference::Event, 5_000);
        assert_eq!(time.now(TimeReference::Event, false, 9_000), Some(3_000));
    }
}
