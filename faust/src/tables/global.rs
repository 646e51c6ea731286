//! Global tables: every worker holds every partition, recovered at start, and follows
//! the changelog for the writes of other workers. Reads stay local; writes go to the
//! key's partition. A worker's own writes show at once; other workers' writes show as
//! soon as their changelog records arrive (eventual consistency, as in Python Faust).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    message::{Headers as _, Message as _},
    ClientConfig, Offset, TopicPartitionList,
};
use tracing::{info, warn};

use super::{changelog::WRITER, state::TableState, store::Batch};
use crate::{
    codec::canonical_json,
    transport::{
        connection::{Connection, Role},
        KafkaHealth,
    },
    Error, Result,
};

/// Applies other workers' changelog records to a global table until stopped.
pub(crate) struct Follower {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Follower {
    /// Starts following every partition of `table` from where its stores are.
    pub(crate) fn start(
        connection: &Connection,
        table: Arc<TableState>,
        health: KafkaHealth,
    ) -> Result<Follower> {
        let consumer: BaseConsumer = connection
            .apply(
                Role::Consumer,
                ClientConfig::new()
                    .set("group.id", format!("{}-follower", table.changelog))
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest"),
            )
            .create()
            .map_err(|e| Error::kafka("creating the global table follower", e))?;
        let mut list = TopicPartitionList::new();
        for held in table.held_partitions() {
            let from = held.store.checkpoint()?.changelog_offset.unwrap_or(0);
            list.add_partition_offset(&table.changelog, held.partition, Offset::Offset(from))
                .map_err(|e| Error::kafka("preparing the global table follower", e))?;
        }
        consumer
            .assign(&list)
            .map_err(|e| Error::kafka(format!("following changelog '{}'", table.changelog), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("faust-follow-{}", table.descriptor.name))
            .spawn(move || follow(&consumer, &table, &stopping, &health))
            .map_err(|e| Error::Io {
                context: "starting the global table follower".into(),
                source: e,
            })?;
        Ok(Follower { stop, thread })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            warn!("a global table follower ended abnormally");
        }
    }
}

fn follow(consumer: &BaseConsumer, table: &TableState, stop: &AtomicBool, health: &KafkaHealth) {
    info!(
        table = table.descriptor.name,
        "following the changelog of a global table"
    );
    while !stop.load(Ordering::SeqCst) {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match result {
            Ok(message) => message,
            Err(e) => {
                health.error(&format!("following changelog '{}': {e}", table.changelog));
                continue;
            }
        };
        let Some(key) = message.key() else { continue };
        // Python Faust's `"caf\u00e9"` is stored as the `"café"` lookups use.
        let key = &*canonical_json(key);
        let own = message.headers().is_some_and(|headers| {
            headers
                .iter()
                .any(|h| h.key == WRITER && h.value == Some(table.writer.as_bytes()))
        });
        let Ok(held) = table.held_partition(message.partition()) else {
            continue;
        };
        // Every worker ends on the changelog's last record of a key. While this worker's
        // own write of the key is on its way there, records before it (its own older
        // ones, other workers' too) would only roll the newer local value back: skipped.
        let later_own_write = {
            let mut unechoed = table.unechoed.lock().unwrap_or_else(|e| e.into_inner());
            if own {
                if let Some(count) = unechoed.get_mut(key) {
                    *count -= 1;
                    if *count == 0 {
                        unechoed.remove(key);
                    }
                }
            }
            unechoed.contains_key(key)
        };
        let writes = match later_own_write {
            true => Vec::new(),
            false => vec![(key.to_vec(), message.payload().map(<[u8]>::to_vec))],
        };
        let batch = Batch {
            writes,
            changelog_offset: Some(message.offset() + 1),
            sources: Vec::new(),
        };
        match held.store.write(batch) {
            Ok(()) if !later_own_write => table.changelog_event(key, message.payload()),
            Ok(()) => {}
            Err(e) => {
                warn!(table = table.descriptor.name, error = %e, "could not apply a changelog record")
            }
        }
    }
}
