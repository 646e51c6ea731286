//! The test context's producer backend: a log that keeps what it is given, in order,
//! instead of sending it (compiled for tests and the `testing` feature only).

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::Notify;

use super::{
    partitioner::partition_for_key,
    record::{Delivered, Record},
};
use crate::{event::Header, time::Clock};

/// A record kept by an in-memory producer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentRecord {
    /// The topic it was sent to.
    pub topic: String,
    /// Its partition: the one given, or the key's (murmur2), or 0.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key, as bytes.
    pub key: Option<Vec<u8>>,
    /// Its value, as bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Its headers.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch: given, or the clock's when it was sent.
    pub timestamp: Option<i64>,
}

/// What an in-memory producer was given, in order; partitions chosen by key (murmur2)
/// among `partitions`.
pub(crate) struct MemoryLog {
    partitions: i32,
    clock: Clock,
    records: Mutex<Vec<SentRecord>>,
    /// The next offset of each topic partition.
    ends: Mutex<HashMap<(String, i32), i64>>,
    /// Wakes whoever routes the log when a record is appended.
    pub(crate) appended: Notify,
}

impl MemoryLog {
    pub(crate) fn new(partitions: i32, clock: Clock) -> MemoryLog {
        MemoryLog {
            partitions,
            clock,
            records: Mutex::default(),
            ends: Mutex::default(),
            appended: Notify::new(),
        }
    }

    /// The records from position `from` on (positions count every record of every topic).
    pub(crate) fn since(&self, from: usize) -> Vec<SentRecord> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.get(from..).unwrap_or_default().to_vec()
    }

    /// How many records it holds.
    pub(crate) fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Keeps `record`, stamped with its timestamp or the clock's now.
    pub(crate) fn append(&self, topic: &str, record: &Record<'_>) -> Delivered {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let partition = record.partition.unwrap_or_else(|| {
            record
                .key
                .map_or(0, |key| partition_for_key(key, self.partitions))
        });
        let offset = {
            let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
            let end = ends.entry((topic.to_owned(), partition)).or_default();
            *end += 1;
            *end - 1
        };
        records.push(SentRecord {
            topic: topic.to_owned(),
            partition,
            offset,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record.headers.to_vec(),
            timestamp: Some(record.timestamp.unwrap_or_else(|| self.clock.now_ms())),
        });
        self.appended.notify_waiters();
        Delivered { partition, offset }
    }
}
