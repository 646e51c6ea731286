//! The event being processed: what agents receive, what they owe (an acknowledgement),
//! and where tables look up "the current event" (its topic, partition and offset).
//!
//! This module sits low in the tree so that agents, tables and the consumer share it
//! without depending on each other. Apps use [`Event`] (from `Stream::next_event`),
//! [`current`] and [`Position`].

use std::sync::{Arc, Mutex};

use crate::origin;

/// A message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Its name.
    pub key: String,
    /// Its value; `None` for a header without one.
    pub value: Option<Vec<u8>>,
}

impl Header {
    pub(crate) fn new(key: &str, value: &[u8]) -> Header {
        Header {
            key: key.to_owned(),
            value: Some(value.to_vec()),
        }
    }
}

/// Headers naming the event that caused a record: on changelog records (recovery leaves
/// out the effects of events the group has not committed; they run again) and on dead
/// letters (where to find the original).
pub(crate) const SOURCE_TOPIC: &str = "faust-source-topic";
pub(crate) const SOURCE_PARTITION: &str = "faust-source-partition";
pub(crate) const SOURCE_OFFSET: &str = "faust-source-offset";

/// The headers naming the event at `topic`, `partition`, `offset`.
pub(crate) fn source_headers(topic: &str, partition: i32, offset: i64) -> Vec<Header> {
    vec![
        Header::new(SOURCE_TOPIC, topic.as_bytes()),
        Header::new(SOURCE_PARTITION, partition.to_string().as_bytes()),
        Header::new(SOURCE_OFFSET, offset.to_string().as_bytes()),
    ]
}

/// A decoded event with its key and metadata, from [`crate::Stream::next_event`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event<T> {
    /// The decoded value.
    pub value: T,
    /// The message key, as bytes: for a string key sent by faust-rs or Python Faust its
    /// UTF-8 text, for other keys JSON ([`Event::decode_key`] reads either).
    pub key: Option<Vec<u8>>,
    /// The topic it was read from.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the message carries a timestamp.
    pub timestamp: Option<i64>,
    /// Its headers.
    pub headers: Vec<Header>,
}

impl<T> Event<T> {
    /// Decodes the key as `faust::send` and Python Faust write keys: a string as its
    /// text, anything else as JSON (see [`crate::codec::decode_key`]).
    pub fn decode_key<K: serde::de::DeserializeOwned>(&self) -> crate::Result<Option<K>> {
        self.key
            .as_deref()
            .map(crate::codec::decode_key)
            .transpose()
            .map_err(|e| {
                crate::Error::msg(format!(
                    "the key of {}[{}]@{} cannot be decoded: {e}",
                    self.topic, self.partition, self.offset
                ))
            })
    }
}

/// Receives acknowledgements; the consumer's offset tracker implements it.
pub(crate) trait Acknowledge: Send + Sync {
    /// An actor is about to process the event; `false` means its partition is being
    /// revoked (or was), so the event must be dropped, unacknowledged, for the next owner.
    fn begin(&self, topic: &Arc<str>, partition: i32, generation: u64, offset: i64) -> bool;
    /// The event is done: its offset may be committed.
    fn acknowledge(&self, topic: &Arc<str>, partition: i32, generation: u64, offset: i64);
}

/// What a delivered message owes the consumer: one acknowledgement once its agent is
/// done with it. Dropping an `Ack` without calling [`Ack::done`] leaves the event
/// unacknowledged, so its offset is never committed and it is read again after a
/// restart: losing track of an event must never look like finishing it.
pub(crate) struct Ack {
    pub(crate) sink: Arc<dyn Acknowledge>,
    pub(crate) generation: u64,
}

/// A raw message on its way from the consumer to one agent actor.
pub(crate) struct Message {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) headers: Vec<Header>,
    pub(crate) ack: Ack,
}

impl Message {
    pub(crate) fn position(&self) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref().map(Arc::from),
            timestamp: self.timestamp,
            generation: self.ack.generation,
            batch_partitions: None,
            lineage: None,
        }
    }

    /// Claims the message for processing; `false`: drop it, its partition moved on.
    pub(crate) fn begin(&self) -> bool {
        self.ack.sink.begin(
            &self.topic,
            self.partition,
            self.ack.generation,
            self.offset,
        )
    }

    /// Marks this message as fully processed.
    pub(crate) fn ack(self) {
        let Message {
            topic,
            partition,
            offset,
            ack,
            ..
        } = self;
        ack.sink
            .acknowledge(&topic, partition, ack.generation, offset);
    }
}

/// The partition of an event from an in-memory channel, which has none.
pub(crate) const CHANNEL_PARTITION: i32 = -1;

/// Where the event being processed came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Position {
    /// The topic it was read from.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key, as bytes.
    pub key: Option<Arc<[u8]>>,
    /// Milliseconds since the Unix epoch, when the message carries a timestamp.
    pub timestamp: Option<i64>,
    /// The consumer's assignment of the partition the event was fetched under: a table
    /// partition held since a later one refuses the event's writes (see `TablePartition`).
    pub(crate) generation: u64,
    /// Set when the event ends a `take()` batch that holds events of several partitions
    /// (two of them): such a batch may not write to tables.
    pub(crate) batch_partitions: Option<(i32, i32)>,
    /// Its origin and the origins of what it sends (see `origin`); `None` where they
    /// are not kept (concurrent actors, batches).
    pub(crate) lineage: Option<Arc<origin::Lineage>>,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.partition {
            CHANNEL_PARTITION => write!(f, "{}@{}", self.topic, self.offset),
            partition => write!(f, "{}[{}]@{}", self.topic, partition, self.offset),
        }
    }
}

/// One actor's "current event" slot, shared by its stream, its sink and tables.
pub(crate) type Slot = Arc<Mutex<Option<Position>>>;

tokio::task_local! {
    static CURRENT: Slot;
}

/// The event the calling agent actor is processing, if any.
pub fn current() -> Option<Position> {
    CURRENT.try_with(get).ok().flatten()
}

/// Whether the caller is an agent actor processing an event (cheaper than [`current`]).
pub(crate) fn in_event() -> bool {
    CURRENT
        .try_with(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).is_some())
        .unwrap_or(false)
}

/// The origin header of the next record the event being processed sends to `to`, if
/// its agent keeps origins (see `origin`).
pub(crate) fn stamp(to: &str) -> Option<Header> {
    CURRENT
        .try_with(|slot| {
            let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            Some(origin_header(slot.as_ref()?.lineage.as_ref()?, to))
        })
        .ok()
        .flatten()
}

/// The origin header of the next record `lineage`'s event sends to `to`.
pub(crate) fn origin_header(lineage: &origin::Lineage, to: &str) -> Header {
    Header {
        key: origin::HEADER.to_owned(),
        value: Some(lineage.next_origin(to)),
    }
}

/// The value of a record's origin header (the last, if several), if any.
pub(crate) fn origin_of(headers: &[Header]) -> Option<&[u8]> {
    headers
        .iter()
        .rev()
        .find(|h| h.key == origin::HEADER)
        .and_then(|h| h.value.as_deref())
}

/// `headers` without an origin header, and with `origin` (if any) last: a record sent
/// on carries the origin of the event sending it, not the one it was copied from.
pub(crate) fn with_origin(headers: &[Header], origin: Option<Header>) -> Vec<Header> {
    headers
        .iter()
        .filter(|h| h.key != origin::HEADER)
        .cloned()
        .chain(origin)
        .collect()
}

/// Runs `future` with `slot` as its current-event slot.
pub(crate) async fn scope<F: std::future::Future>(slot: Slot, future: F) -> F::Output {
    CURRENT.scope(slot, future).await
}

/// Sets a slot, surviving a poisoned lock (a panicking actor must not silence the next).
pub(crate) fn set(slot: &Slot, position: Option<Position>) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = position;
}

/// Reads a slot, surviving a poisoned lock.
pub(crate) fn get(slot: &Slot) -> Option<Position> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
