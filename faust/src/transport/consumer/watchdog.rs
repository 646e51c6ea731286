//! The group's watchdog, run by every worker: names a source partition that has messages
//! waiting and whose committed offset has not moved for `stall_timeout`, when this worker
//! does not hold it.
//!
//! Each worker names its own stalled partitions (the poll loop's stall warning). No live
//! worker holds a partition that the group gave to a member that is gone but was never
//! evicted (seen on tansu 0.6.0, for minutes), or to nobody, so every worker watches the
//! others' partitions: not only the leader, since the member that is gone may hold the
//! leader's partition too (a soak run showed that, and nobody reported the stop).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig, Offset, TopicPartitionList,
};
use tracing::{debug, warn};

use crate::sensors::Monitor;

/// How long one question to the broker may take.
const ASK: Duration = Duration::from_secs(5);

/// A partition's committed offset, and since when it has not moved.
struct Seen {
    committed: i64,
    since: Instant,
    warned: bool,
}

pub(crate) struct Watchdog {
    /// A consumer of the group that never joins it: it only asks for committed offsets
    /// and watermarks.
    consumer: BaseConsumer,
    topics: Vec<String>,
    timeout: Duration,
    monitor: Arc<Monitor>,
    seen: HashMap<(String, i32), Seen>,
}

impl Watchdog {
    pub(crate) fn new(
        client: &ClientConfig,
        topics: Vec<String>,
        timeout: Duration,
        monitor: Arc<Monitor>,
    ) -> rdkafka::error::KafkaResult<Watchdog> {
        Ok(Watchdog {
            consumer: client.create()?,
            topics,
            timeout,
            monitor,
            seen: HashMap::new(),
        })
    }

    /// Checks every `timeout / 4` while `running`.
    pub(crate) fn run(mut self, running: &AtomicBool) {
        let every = (self.timeout / 4).max(Duration::from_millis(250));
        let mut last = Instant::now();
        while running.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            if last.elapsed() < every {
                continue;
            }
            last = Instant::now();
            self.check();
        }
    }

    fn check(&mut self) {
        let mut list = TopicPartitionList::new();
        for topic in &self.topics {
            let Ok(metadata) = self.consumer.fetch_metadata(Some(topic), ASK) else {
                return; // the broker is away: the outage is reported elsewhere
            };
            for t in metadata.topics() {
                for p in t.partitions() {
                    list.add_partition(topic, p.id());
                }
            }
        }
        let committed = match self.consumer.committed_offsets(list, ASK) {
            Ok(committed) => committed,
            Err(e) => {
                debug!(error = %e, "the watchdog could not read the group's offsets");
                return;
            }
        };
        for element in committed.elements() {
            let (topic, partition) = (element.topic().to_owned(), element.partition());
            let Ok((low, high)) = self.consumer.fetch_watermarks(&topic, partition, ASK) else {
                continue;
            };
            let at = match element.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            let now = Instant::now();
            let seen = self.seen.entry((topic.clone(), partition)).or_insert(Seen {
                committed: at,
                since: now,
                warned: false,
            });
            if seen.committed != at || high <= at {
                *seen = Seen {
                    committed: at,
                    since: now,
                    warned: false,
                };
                continue;
            }
            if seen.warned
                || seen.since.elapsed() < self.timeout
                || self.monitor.holds(&topic, partition)
            {
                continue;
            }
            seen.warned = true;
            warn!(
                %topic,
                partition,
                committed = at,
                lag = high - at,
                "no progress for {:.0?} in a partition this worker does not hold: it has \
                 messages waiting and the group's committed offset has not moved. If no \
                 worker reports it stalled, the group gave it to a member that is gone (the \
                 broker has not evicted it) or to none; see the broker's log, and restart \
                 the group's workers if it lasts",
                self.timeout
            );
        }
    }
}
