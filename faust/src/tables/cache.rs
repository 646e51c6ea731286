//! Coalescing of table writes between commits, as Kafka Streams' record cache does:
//! a key updated a thousand times between two commits gets one changelog record.
//!
//! Each write from an event is remembered with the event's topic and offset. At a
//! commit, every key gives the changelog its value after the longest run of its oldest
//! writes whose events are being committed; later writes stay for the next commit.
//! The record is tagged with the last event it includes, so recovery's rule (leave out
//! records of uncommitted events) keeps holding: a record's new effects are committed
//! exactly when its tag is. A write left behind holds back the commit of its topic's
//! partition at its offset, so no committed event's effect is missing from the log.

use std::{collections::HashMap, sync::Arc};

struct Write {
    topic: Arc<str>,
    offset: i64,
    value: Option<Vec<u8>>,
}

/// A changelog record to send: `key`'s value after the event `topic`@`offset`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) topic: Arc<str>,
    pub(crate) offset: i64,
}

/// The writes of one table partition since its last commit.
#[derive(Default)]
pub(crate) struct WriteCache {
    keys: HashMap<Vec<u8>, Vec<Write>>,
}

impl WriteCache {
    /// `key` became `value` through the event `topic`@`offset`.
    pub(crate) fn record(
        &mut self,
        key: Vec<u8>,
        topic: Arc<str>,
        offset: i64,
        value: Option<Vec<u8>>,
    ) {
        self.keys.entry(key).or_default().push(Write {
            topic,
            offset,
            value,
        });
    }

    /// Takes the records a commit sends; `committing(topic, offset)` says whether that
    /// event is among those being committed. Returns the records and, per topic, the
    /// lowest offset of a write left behind: the commit must not pass it.
    pub(crate) fn drain(
        &mut self,
        committing: impl Fn(&str, i64) -> bool,
    ) -> (Vec<Record>, HashMap<Arc<str>, i64>) {
        let mut records = Vec::new();
        let mut holds: HashMap<Arc<str>, i64> = HashMap::new();
        self.keys.retain(|key, writes| {
            let done = writes
                .iter()
                .take_while(|w| committing(&w.topic, w.offset))
                .count();
            if done > 0 {
                let last = &writes[done - 1];
                records.push(Record {
                    key: key.clone(),
                    value: last.value.clone(),
                    topic: last.topic.clone(),
                    offset: last.offset,
                });
                writes.drain(..done);
            }
            for write in writes.iter() {
                let hold = holds.entry(write.topic.clone()).or_insert(write.offset);
                *hold = (*hold).min(write.offset);
            }
            !writes.is_empty()
        });
        (records, holds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(n: u8) -> Option<Vec<u8>> {
        Some(vec![n])
    }

    #[test]
    fn a_key_gets_one_record_per_commit_with_its_committed_value() {
        let words: Arc<str> = Arc::from("words");
        let mut cache = WriteCache::default();
        for (offset, n) in [(10, 1), (11, 2), (12, 3), (13, 4)] {
            cache.record(b"k".to_vec(), words.clone(), offset, value(n));
        }
        // Events up to 12 are committed; 13 is still in flight.
        let (records, holds) = cache.drain(|_, offset| offset < 13);
        assert_eq!(
            records,
            vec![Record {
                key: b"k".to_vec(),
                value: value(3),
                topic: words.clone(),
                offset: 12
            }]
        );
        assert_eq!(holds, HashMap::from([(words.clone(), 13)]));
        let (records, holds) = cache.drain(|_, _| true);
        assert_eq!(records[0].value, value(4));
        assert!(holds.is_empty());
        assert_eq!(cache.drain(|_, _| true).0, vec![]);
    }

    #[test]
    fn a_write_left_behind_holds_back_what_follows_it_from_other_topics() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut cache = WriteCache::default();
        cache.record(b"k".to_vec(), a.clone(), 100, value(1)); // not committing
        cache.record(b"k".to_vec(), b.clone(), 50, value(2)); // committing, but after it
        let (records, holds) = cache.drain(|topic, _| topic == "b");
        assert!(records.is_empty(), "the value after b@50 includes a@100");
        assert_eq!(holds, HashMap::from([(a, 100), (b, 50)]));
    }
}
