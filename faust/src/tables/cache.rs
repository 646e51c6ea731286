//! Coalescing of table writes between commits, as Kafka Streams' record cache does:
//! a key updated a thousand times between two commits gets one changelog record and
//! one store write. Until then the cache is where reads find the key's newest value.
//!
//! Each write from an event is remembered with the event's topic and offset. At a
//! commit, every key gives the changelog its value after the longest run of its oldest
//! writes whose events are being committed; later writes stay for the next commit.
//! The record is tagged with the last event it includes, so recovery's rule (leave out
//! records of uncommitted events) keeps holding: a record's new effects are committed
//! exactly when its tag is. A write left behind holds back the commit of its topic's
//! partition at its offset, so no committed event's effect is missing from the log.

use std::{collections::HashMap, sync::Arc};

use super::store::Batch;

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

    /// `key`'s newest value here (`Some(None)`: deleted), if it was written since the
    /// last commit that took it.
    pub(crate) fn latest(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let last = self.keys.get(key)?.last()?;
        Some(last.value.as_deref())
    }

    /// The keys written since the last commit that took them, with their newest value
    /// (`None`: deleted).
    pub(crate) fn latest_all(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.keys
            .iter()
            .filter_map(|(key, writes)| Some((key.as_slice(), writes.last()?.value.as_deref())))
    }

    /// Drops the cached writes of `key`, superseded by a write sent to the changelog now.
    pub(crate) fn forget(&mut self, key: &[u8]) {
        self.keys.remove(key);
    }

    /// Per topic, the lowest offset of a write that [`WriteCache::drain`] with the same
    /// `committing` would leave behind: the commit must not pass it.
    fn holds(&self, committing: &impl Fn(&str, i64) -> bool) -> HashMap<Arc<str>, i64> {
        let mut holds: HashMap<Arc<str>, i64> = HashMap::new();
        for writes in self.keys.values() {
            for write in writes.iter().skip_while(|w| committing(&w.topic, w.offset)) {
                let hold = holds.entry(write.topic.clone()).or_insert(write.offset);
                *hold = (*hold).min(write.offset);
            }
        }
        holds
    }

    /// Takes the records a commit sends; `committing(topic, offset)` says whether that
    /// event is among those being committed (see [`commit_limits`]).
    pub(crate) fn drain(&mut self, committing: impl Fn(&str, i64) -> bool) -> Vec<Record> {
        let mut records = Vec::new();
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
            !writes.is_empty()
        });
        records
    }
}

/// The store write of a commit's `records`: their values, and per topic the last
/// event they include.
pub(crate) fn store_batch(records: &[Record]) -> Batch {
    let mut sources: HashMap<&str, i64> = HashMap::new();
    for record in records {
        let last = sources.entry(&record.topic).or_insert(record.offset);
        *last = (*last).max(record.offset);
    }
    Batch {
        writes: records
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect(),
        changelog_offset: None,
        sources: sources
            .into_iter()
            .map(|(topic, offset)| (topic.to_owned(), offset))
            .collect(),
    }
}

/// The commit points (topic -> offset) of one partition number, lowered until no cache
/// of that partition leaves behind a write of an event being committed. Lowering one
/// topic's point can leave more writes behind (of any topic, in any table), so this
/// repeats until nothing moves; points only go down, so it ends.
pub(crate) fn commit_limits(
    caches: &[&WriteCache],
    mut points: HashMap<Arc<str>, i64>,
) -> HashMap<Arc<str>, i64> {
    loop {
        let mut lowered = false;
        for cache in caches {
            let committing =
                |topic: &str, offset: i64| points.get(topic).is_some_and(|c| offset < *c);
            for (topic, hold) in cache.holds(&committing) {
                if let Some(point) = points.get_mut(&topic) {
                    if hold < *point {
                        *point = hold;
                        lowered = true;
                    }
                }
            }
        }
        if !lowered {
            return points;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(n: u8) -> Option<Vec<u8>> {
        Some(vec![n])
    }

    fn committing<'a>(points: &'a HashMap<Arc<str>, i64>) -> impl Fn(&str, i64) -> bool + 'a {
        move |topic, offset| points.get(topic).is_some_and(|c| offset < *c)
    }

    #[test]
    fn a_key_gets_one_record_per_commit_with_its_committed_value() {
        let words: Arc<str> = Arc::from("words");
        let mut cache = WriteCache::default();
        for (offset, n) in [(10, 1), (11, 2), (12, 3), (13, 4)] {
            cache.record(b"k".to_vec(), words.clone(), offset, value(n));
        }
        cache.record(b"gone".to_vec(), words.clone(), 13, None);
        // Reads see the newest write, a deletion too, before any commit.
        assert_eq!(cache.latest(b"k"), Some(Some([4].as_slice())));
        assert_eq!(cache.latest(b"gone"), Some(None));
        assert_eq!(cache.latest(b"other"), None);
        // Events up to 12 are being committed; 13 is still in flight.
        let points = commit_limits(&[&cache], HashMap::from([(words.clone(), 13)]));
        assert_eq!(points[&words], 13);
        let records = cache.drain(committing(&points));
        assert_eq!(
            records,
            vec![Record {
                key: b"k".to_vec(),
                value: value(3),
                topic: words.clone(),
                offset: 12
            }]
        );
        // The store takes the committed value, and the event it includes.
        let batch = store_batch(&records);
        assert_eq!(batch.writes, vec![(b"k".to_vec(), value(3))]);
        assert_eq!(batch.sources, vec![("words".to_owned(), 12)]);
        // The write of the event in flight stays readable until a commit takes it.
        assert_eq!(cache.latest(b"k"), Some(Some([4].as_slice())));
        let mut records = cache.drain(|_, _| true);
        records.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(records[0].value, None);
        assert_eq!(records[1].value, value(4));
        assert_eq!(cache.latest(b"k"), None);
        assert_eq!(cache.latest_all().count(), 0);
        assert_eq!(cache.drain(|_, _| true), vec![]);
    }

    /// k1 holds `a` back at 45 (its write of a@45 follows b@100, which is not being
    /// committed); so k2 must not send its value after a@46 either, though a@46 < 47.
    #[test]
    fn holding_one_topic_back_holds_back_every_key_that_depends_on_it() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut cache = WriteCache::default();
        cache.record(b"k1".to_vec(), b.clone(), 100, value(1));
        cache.record(b"k1".to_vec(), a.clone(), 45, value(2));
        cache.record(b"k2".to_vec(), a.clone(), 40, value(3));
        cache.record(b"k2".to_vec(), a.clone(), 46, value(4));
        let points = commit_limits(&[&cache], HashMap::from([(a.clone(), 47), (b.clone(), 90)]));
        assert_eq!(points, HashMap::from([(a.clone(), 45), (b.clone(), 90)]));
        let records = cache.drain(committing(&points));
        assert_eq!(
            records,
            vec![Record {
                key: b"k2".to_vec(),
                value: value(3),
                topic: a.clone(),
                offset: 40
            }],
            "k2 sends its value after a@40 only; k1 sends nothing"
        );
    }
}
