//! Rebuilding a table partition from its changelog.
//!
//! The store remembers the next changelog offset to read; recovery replays from there
//! to the end of the partition as fetch responses report it (partition EOF), never from
//! ListOffsets, which some brokers (tansu) answer wrongly. Records caused by events the
//! group has not committed are left out: those events will be processed again, and
//! applying their effects now would count them twice. A store holding such effects
//! (after a crash) is rebuilt from the start of the changelog.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    error::KafkaError,
    message::{Headers as _, Message as _},
    ClientConfig, Offset, TopicPartitionList,
};
use tracing::{info, warn};

use super::{
    state::{TablePartition, TableState},
    store::{Batch, Checkpoint, Store},
};
use crate::{
    codec::canonical_json,
    event::{SOURCE_OFFSET, SOURCE_TOPIC},
    transport::{
        connection::{Connection, Role},
        consumer::TopicPartition,
    },
    Error, Result,
};

/// Recovery fails, rather than hangs, when the changelog yields nothing for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Records applied per store write.
const BATCH: usize = 1000;

/// The group's committed offsets of the source partitions that feed one table partition.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    /// Source topic -> committed offset; a topic with no commit maps to 0.
    by_topic: HashMap<String, i64>,
}

impl Committed {
    /// Source topic -> the group's committed offset, as read for a standby.
    pub(super) fn of(by_topic: HashMap<String, i64>) -> Committed {
        Committed { by_topic }
    }

    pub(crate) fn for_partition(all: &HashMap<TopicPartition, i64>, partition: i32) -> Committed {
        Committed {
            by_topic: all
                .iter()
                .filter(|(tp, _)| tp.partition == partition)
                .map(|(tp, offset)| (tp.topic.to_string(), *offset))
                .collect(),
        }
    }

    /// Whether a record caused by `topic`@`offset` reflects a committed event. Records
    /// from topics this worker does not consume are kept.
    pub(super) fn includes(&self, topic: &str, offset: i64) -> bool {
        self.by_topic
            .get(topic)
            .is_none_or(|committed| offset < *committed)
    }
}

/// The source event a changelog record names in its headers, if any.
pub(super) fn source_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<(String, i64)> {
    let headers = message.headers()?;
    source_in(headers.iter().map(|h| (h.key, h.value)))
}

/// The source topic and offset among a record's headers, if both are there and readable.
fn source_in<'a>(
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Option<(String, i64)> {
    let mut topic = None;
    let mut offset = None;
    for (key, value) in headers {
        let value = value.and_then(|v| std::str::from_utf8(v).ok());
        match key {
            SOURCE_TOPIC => topic = value.map(str::to_owned),
            SOURCE_OFFSET => offset = value.and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some((topic?, offset?))
}

/// Where recovery of a partition starts reading its changelog.
#[derive(Debug, PartialEq, Eq)]
struct Start {
    /// `None`: from the changelog's beginning, wherever the broker has it. (Not from the
    /// low watermark: tansu answers ListOffsets wrongly, and a start past the real one
    /// would skip records.)
    from: Option<i64>,
    /// Why the store must be emptied first and rebuilt, if it must.
    rebuild: Option<Rebuild>,
}

#[derive(Debug, PartialEq, Eq)]
enum Rebuild {
    /// The store holds effects of an event the group has not committed: it runs again.
    Uncommitted { topic: String, offset: i64 },
    /// The changelog no longer holds the offset the store stopped at.
    Truncated { stored: i64 },
}

/// What a recovery from the log's start saw of the records it left out: keys whose
/// left-out record came after compaction had removed records (a gap in the offsets).
/// Any of them without a value in the end lost the one it fell back on, or never had one.
struct Fallbacks {
    next: i64,
    thinned: bool,
    unbacked: HashSet<Vec<u8>>,
}

impl Fallbacks {
    fn new(low: i64) -> Fallbacks {
        Fallbacks {
            next: low,
            thinned: false,
            unbacked: HashSet::new(),
        }
    }

    fn read(&mut self, offset: i64, key: &[u8], kept: bool) {
        self.thinned |= offset > self.next;
        self.next = offset + 1;
        if !kept && self.thinned {
            self.unbacked.insert(key.to_vec());
        }
    }
}

/// Where to start, given what the store holds (`checkpoint`), what the group committed
/// and the changelog's first offset as the broker reports it (`low`): where the store
/// stopped, or from the beginning when the store is empty, ahead of the commits, or
/// older than the changelog (a `low` reported too high costs a rebuild, never records).
fn where_to_start(checkpoint: &Checkpoint, committed: &Committed, low: i64) -> Start {
    let ahead = checkpoint
        .sources
        .iter()
        .filter(|(topic, offset)| !committed.includes(topic, **offset))
        .min();
    if let Some((topic, offset)) = ahead {
        return Start {
            from: None,
            rebuild: Some(Rebuild::Uncommitted {
                topic: topic.clone(),
                offset: *offset,
            }),
        };
    }
    match checkpoint.changelog_offset {
        Some(stored) if stored < low && stored > 0 => Start {
            from: None,
            rebuild: Some(Rebuild::Truncated { stored }),
        },
        Some(stored) => Start {
            from: Some(stored),
            rebuild: None,
        },
        None => Start {
            from: None,
            rebuild: None,
        },
    }
}

/// Decides where a store of `table`'s `partition` goes on from (see `where_to_start`;
/// `None`: the changelog's beginning), emptying it first when it must be rebuilt.
pub(super) fn prepare(
    store: &dyn Store,
    table: &TableState,
    partition: i32,
    committed: &Committed,
    low: i64,
) -> Result<Option<i64>> {
    let name = table.descriptor.name;
    let Start { from, rebuild } = where_to_start(&store.checkpoint()?, committed, low);
    match &rebuild {
        Some(Rebuild::Uncommitted { topic, offset }) => warn!(
            table = name,
            partition,
            "the store holds effects of {topic}@{offset}, which the group has not committed \
             (a worker stopped abruptly, or the broker lost the group's offsets); rebuilding it \
             from the changelog"
        ),
        Some(Rebuild::Truncated { stored }) => warn!(
            table = name,
            partition,
            stored,
            earliest = low,
            "the changelog no longer holds the stored offset; rebuilding from its earliest record"
        ),
        None => {}
    }
    if rebuild.is_some() {
        store.clear()?;
    }
    Ok(from)
}

/// Replays the changelog into `held`'s store; returns false if `cancelled` turned true
/// first (the partition was revoked, or the worker stops).
pub(crate) fn recover(
    connection: &Connection,
    table: &TableState,
    held: &TablePartition,
    committed: &Committed,
    cancelled: &AtomicBool,
) -> Result<bool> {
    let name = table.descriptor.name;
    let partition = held.partition;
    let started = Instant::now();
    let mut client = ClientConfig::new();
    client
        .set("group.id", format!("{}-recovery", table.changelog))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // The end of a partition shows as an empty fetch: don't let each wait long.
        .set("fetch.wait.max.ms", "10");
    let consumer: BaseConsumer = connection
        .apply(Role::Consumer, &mut client)
        .create()
        .map_err(|e| Error::kafka("creating the recovery consumer", e))?;
    let (low, high) = consumer
        .fetch_watermarks(&table.changelog, partition, STALL_TIMEOUT)
        .map_err(|e| Error::kafka(format!("reading the bounds of '{}'", table.changelog), e))?;
    let from = prepare(&*held.store, table, partition, committed, low)?;
    // Only an estimate for progress reports: some brokers under-report the end here.
    let estimated_total = (high - from.unwrap_or(low)).max(0);

    let mut list = TopicPartitionList::new();
    let offset = from.map_or(Offset::Beginning, Offset::Offset);
    list.add_partition_offset(&table.changelog, partition, offset)
        .map_err(|e| Error::kafka("preparing recovery", e))?;
    consumer
        .assign(&list)
        .map_err(|e| Error::kafka(format!("reading changelog '{}'", table.changelog), e))?;

    let (mut applied, mut skipped) = (0u64, 0u64);
    // From the log's start, a left-out record falls back on its key's previous one.
    let mut fallbacks = from.is_none().then(|| Fallbacks::new(low));
    let progress = |applied: u64, read: u64, done: bool| {
        let remaining = if done {
            0
        } else {
            (estimated_total as u64).saturating_sub(read)
        };
        table
            .sensors
            .each(|s| s.recovery_progress(name, partition, applied, remaining, done));
    };
    progress(0, 0, false);
    let mut batch = Batch::default();
    let mut last_progress = Instant::now();
    let mut last_record = Instant::now();
    loop {
        if cancelled.load(Ordering::SeqCst) {
            // What was applied stays, with the offset it reached: the next holding goes on.
            held.store.write(batch)?;
            info!(
                table = name,
                partition, "recovery stopped: the partition was revoked, or the worker stops"
            );
            return Ok(false);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_record = Instant::now();
                let keep = source_of(&message)
                    .is_none_or(|(topic, offset)| committed.includes(&topic, offset));
                if let (Some(fallbacks), Some(key)) = (&mut fallbacks, message.key()) {
                    fallbacks.read(message.offset(), key, keep);
                }
                if let (true, Some(key)) = (keep, message.key()) {
                    // Python Faust's `"caf\u00e9"` is stored as the `"café"` lookups use.
                    let key = canonical_json(key).into_owned();
                    table.changelog_event(&key, message.payload());
                    batch
                        .writes
                        .push((key, message.payload().map(<[u8]>::to_vec)));
                    applied += 1;
                } else {
                    skipped += 1;
                }
                batch.changelog_offset = Some(message.offset() + 1);
                if batch.writes.len() >= BATCH {
                    held.store.write(std::mem::take(&mut batch))?;
                    progress(applied, applied + skipped, false);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => warn!(table = name, partition, error = %e, "reading the changelog"),
            None => {}
        }
        if last_record.elapsed() > STALL_TIMEOUT {
            return Err(Error::Table(format!(
                "recovery of table '{name}' partition {partition} received nothing from '{}' for {:?} \
                 (at offset {}); is the broker reachable?",
                table.changelog,
                STALL_TIMEOUT,
                batch.changelog_offset.or(from).unwrap_or(0)
            )));
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            let done = applied + skipped;
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            let total = estimated_total.max(done as i64);
            let eta = (total - done as i64).max(0) as f64 / rate.max(1.0);
            info!(
                table = name,
                partition,
                done,
                total,
                rate = rate as u64,
                eta_s = eta as u64,
                "recovering"
            );
        }
    }
    held.store.write(batch)?;
    if let Some(fallbacks) = fallbacks {
        let mut lost = 0;
        for key in &fallbacks.unbacked {
            lost += usize::from(held.store.get(&canonical_json(key))?.is_none());
        }
        if lost > 0 {
            warn!(
                table = name,
                partition,
                keys = lost,
                "recovery left out records of events the group has not committed, and found \
                 no earlier record of their keys to fall back on in a changelog compaction has \
                 thinned: if the broker compacted records younger than min.compaction.lag.ms, \
                 the committed values of these keys are lost (Kafka honours the lag; nisshi \
                 0.8.1 on SQLite does not)"
            );
        }
    }
    progress(applied, applied + skipped, true);
    info!(
        table = name,
        partition,
        records = applied,
        skipped,
        from = from.unwrap_or(0),
        seconds = format!("{:.3}", started.elapsed().as_secs_f64()),
        "table partition recovered"
    );
    // Closing a librdkafka client takes about 100 ms (its threads wind down): more than
    // a small partition's whole recovery. The next partition need not wait for it.
    std::thread::spawn(move || drop(consumer));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::Strategy as _;

    use super::*;

    proptest::proptest! {
        #![proptest_config(crate::property_test_config())]

        /// Changelog headers come from the broker, written by anyone: any keys and
        /// bytes parse to a source or to none, never a panic, and a source found is
        /// one the headers name.
        #[test]
        fn any_headers_parse_without_panic(
            headers in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::prelude::Just(SOURCE_TOPIC.to_owned()),
                        proptest::prelude::Just(SOURCE_OFFSET.to_owned()),
                        ".*",
                    ],
                    proptest::option::of(proptest::prop_oneof![
                        proptest::prelude::any::<i64>().prop_map(|n| n.to_string().into_bytes()),
                        proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
                    ]),
                ),
                0..6,
            )
        ) {
            let parsed = source_in(headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
            if let Some((topic, offset)) = parsed {
                let value_of = |key: &str, wanted: &dyn Fn(&[u8]) -> bool| {
                    headers.iter().any(|(k, v)| k == key && v.as_deref().is_some_and(wanted))
                };
                let topic_named = value_of(SOURCE_TOPIC, &|v| v == topic.as_bytes());
                let offset_named = value_of(SOURCE_OFFSET, &|v| {
                    std::str::from_utf8(v).ok().and_then(|t| t.parse().ok()) == Some(offset)
                });
                proptest::prop_assert!(topic_named && offset_named);
            }
        }
    }

    #[test]
    fn recovery_starts_where_the_store_stopped_unless_it_cannot() {
        let committed = Committed {
            by_topic: HashMap::from([("words".to_owned(), 100)]),
        };
        let stored = |offset: Option<i64>, sources: &[(&str, i64)]| Checkpoint {
            changelog_offset: offset,
            sources: sources.iter().map(|(t, o)| (t.to_string(), *o)).collect(),
        };
        let start = |from, rebuild| Start { from, rebuild };
        // A store behind the commits continues where it stopped.
        assert_eq!(
            where_to_start(&stored(Some(40), &[("words", 99)]), &committed, 0),
            start(Some(40), None)
        );
        // An empty store reads the whole changelog.
        assert_eq!(
            where_to_start(&stored(None, &[]), &committed, 5),
            start(None, None)
        );
        // A store holding an uncommitted event's effects is rebuilt from the start.
        assert_eq!(
            where_to_start(&stored(Some(40), &[("words", 100)]), &committed, 3),
            start(
                None,
                Some(Rebuild::Uncommitted {
                    topic: "words".into(),
                    offset: 100
                })
            )
        );
        // A changelog compacted or deleted past the store's offset: rebuilt too.
        assert_eq!(
            where_to_start(&stored(Some(40), &[("words", 7)]), &committed, 50),
            start(None, Some(Rebuild::Truncated { stored: 40 }))
        );
        // Offset 0 stored is the start of an empty changelog, not a truncation (reading
        // before the beginning starts at the beginning: auto.offset.reset=earliest).
        assert_eq!(
            where_to_start(&stored(Some(0), &[]), &committed, 10),
            start(Some(0), None)
        );
    }

    #[test]
    fn a_left_out_record_after_a_gap_in_the_log_is_named() {
        // Contiguous: a left-out record's key falls back on what came before.
        let mut whole = Fallbacks::new(0);
        whole.read(0, b"a", true);
        whole.read(1, b"a", false);
        assert!(whole.unbacked.is_empty());
        // Offsets 1 and 2 compacted away: "a" may have lost its fallback.
        let mut thinned = Fallbacks::new(0);
        thinned.read(0, b"b", true);
        thinned.read(3, b"a", false);
        thinned.read(4, b"b", true);
        assert_eq!(thinned.unbacked, HashSet::from([b"a".to_vec()]));
        // A log whose first records are gone counts as thinned too.
        let mut headless = Fallbacks::new(0);
        headless.read(5, b"c", false);
        assert!(headless.unbacked.contains(b"c".as_slice()));
    }

    #[test]
    fn records_of_uncommitted_events_are_left_out() {
        let tp = |topic: &str, partition| TopicPartition {
            topic: Arc::from(topic),
            partition,
        };
        let all = HashMap::from([
            (tp("words", 0), 100),
            (tp("words", 1), 7),
            (tp("posts", 0), 0),
        ]);
        let committed = Committed::for_partition(&all, 0);
        assert!(committed.includes("words", 99));
        assert!(
            !committed.includes("words", 100),
            "not committed yet: will run again"
        );
        assert!(
            !committed.includes("posts", 0),
            "nothing of posts was committed"
        );
        assert!(
            committed.includes("elsewhere", 5),
            "unknown sources are kept"
        );
    }
}
