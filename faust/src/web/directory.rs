//! Which worker holds which table partitions, for table lookups sent to the wrong worker.
//!
//! Each worker announces its web URL and the table partitions it holds to the
//! one-partition compacted topic `{app_id}-__web-directory` (key: its URL, value: JSON;
//! a tombstone when it stops), whenever that set changes, and reads every worker's
//! announcements from the same topic. For a partition, the latest announcement that
//! claims it wins: the worker that took it over announced after the one that lost it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    message::Message as _,
    ClientConfig, Offset, TopicPartitionList,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{
    tables::{Claim, TableManager},
    transport::{
        connection::{Connection, Role},
        producer::{Producer, Record},
    },
    Error, Result,
};

/// How often a worker compares what it holds with what it announced.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long an announcement may take; a later check sends it again (and a worker
/// stopping while the broker is away does not wait for it).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Announcement {
    /// Table name -> partitions held.
    tables: BTreeMap<String, Vec<i32>>,
}

/// Every worker's latest announcement, with its offset in the topic.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    workers: RwLock<HashMap<String, (i64, Announcement)>>,
}

impl Directory {
    /// The URL of the worker that most recently claimed `partition` of `table`.
    pub(crate) fn owner(&self, table: &str, partition: i32) -> Option<String> {
        let workers = self.workers.read().unwrap_or_else(|e| e.into_inner());
        workers
            .iter()
            .filter(|(_, (_, a))| a.tables.get(table).is_some_and(|p| p.contains(&partition)))
            .max_by_key(|(_, (offset, _))| *offset)
            .map(|(url, _)| url.clone())
    }

    /// Every worker's latest announcement, oldest first: what standbys are placed from.
    pub(crate) fn claims(&self) -> Vec<Claim> {
        let workers = self.workers.read().unwrap_or_else(|e| e.into_inner());
        let mut latest: Vec<_> = workers.iter().collect();
        latest.sort_by_key(|(_, (offset, _))| *offset);
        latest
            .into_iter()
            .map(|(url, (_, announcement))| Claim {
                worker: url.clone(),
                tables: announcement.tables.clone(),
            })
            .collect()
    }

    fn apply(&self, url: &str, offset: i64, value: Option<&[u8]>) {
        let mut workers = self.workers.write().unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<Announcement>) {
            Some(Ok(announcement)) => {
                workers.insert(url.to_owned(), (offset, announcement));
            }
            Some(Err(e)) => {
                warn!(worker = url, error = %e, "ignoring an unreadable web directory entry")
            }
            None => {
                workers.remove(url);
            }
        }
    }
}

/// Announces this worker and follows the others, on a thread of its own.
pub(crate) struct DirectoryService {
    pub(crate) directory: Arc<Directory>,
    running: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl DirectoryService {
    pub(crate) fn start(
        connection: &Connection,
        topic: String,
        url: String,
        tables: Arc<TableManager>,
        producer: Producer,
    ) -> Result<DirectoryService> {
        let consumer: BaseConsumer = connection
            .apply(
                Role::Consumer,
                ClientConfig::new()
                    .set("group.id", format!("{topic}-reader"))
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.wait.max.ms", "100"),
            )
            .create()
            .map_err(|e| Error::kafka("creating the web directory reader", e))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, Offset::Beginning)
            .and_then(|()| consumer.assign(&list))
            .map_err(|e| Error::kafka(format!("reading '{topic}'"), e))?;
        let directory = Arc::new(Directory::default());
        let running = Arc::new(AtomicBool::new(true));
        let announcer = Announcer {
            topic,
            url,
            tables,
            producer,
            runtime: tokio::runtime::Handle::current(),
            announced: None,
            failing: false,
        };
        let thread = {
            let (directory, running) = (directory.clone(), running.clone());
            std::thread::Builder::new()
                .name("faust-web-directory".into())
                .spawn(move || follow(consumer, announcer, &directory, &running))
                .map_err(|e| Error::Io {
                    context: "starting the web directory thread".into(),
                    source: e,
                })?
        };
        Ok(DirectoryService {
            directory,
            running,
            thread,
        })
    }

    /// Withdraws this worker's announcement and stops.
    pub(crate) fn stop(self) {
        self.running.store(false, Ordering::SeqCst);
        if self.thread.join().is_err() {
            warn!("the web directory thread ended abnormally");
        }
    }
}

fn follow(
    consumer: BaseConsumer,
    mut announcer: Announcer,
    directory: &Directory,
    running: &AtomicBool,
) {
    let mut last_check: Option<Instant> = None;
    while running.load(Ordering::SeqCst) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(url) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                directory.apply(url, message.offset(), message.payload());
            }
        }
        if last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY) {
            last_check = Some(Instant::now());
            announcer.announce_changes();
        }
    }
    announcer.withdraw();
}

struct Announcer {
    topic: String,
    url: String,
    tables: Arc<TableManager>,
    producer: Producer,
    runtime: tokio::runtime::Handle,
    announced: Option<Announcement>,
    /// The last send failed: the next failures are not logged again (a broker outage).
    failing: bool,
}

impl Announcer {
    fn announce_changes(&mut self) {
        let current = Announcement {
            tables: self
                .tables
                .assignment()
                .into_iter()
                .filter(|(table, _)| !self.tables.is_global(table))
                .map(|(table, partitions)| (table.to_owned(), partitions))
                .collect(),
        };
        if self.announced.as_ref() == Some(&current) {
            return;
        }
        let Ok(value) = serde_json::to_vec(&current) else {
            return;
        };
        if self.send(Some(&value)) {
            debug!(tables = ?current.tables, "announced the table partitions this worker holds");
            self.announced = Some(current);
        }
    }

    fn withdraw(&mut self) {
        if self.announced.is_some() {
            self.send(None);
        }
    }

    /// Sends this worker's entry and waits for it; a failure is retried at the next check.
    fn send(&mut self, value: Option<&[u8]>) -> bool {
        let record = Record {
            key: Some(self.url.as_bytes()),
            value,
            partition: Some(0),
            headers: &[],
            timestamp: None,
        };
        let queued = Instant::now();
        let outcome = self
            .producer
            .enqueue(&self.topic, record)
            .and_then(|delivery| {
                // The timer is made inside the runtime: it needs its time driver.
                let answer = async { tokio::time::timeout(SEND_TIMEOUT, delivery.wait()).await };
                match self.runtime.block_on(answer) {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(Error::Send(format!("writing to '{}': {e}", self.topic))),
                    Err(_) => Err(Error::Send(format!("no answer within {SEND_TIMEOUT:?}"))),
                }
            });
        let error = outcome.as_ref().err().map(ToString::to_string);
        self.producer
            .delivered(&self.topic, queued.elapsed(), error.as_deref());
        match (&error, self.failing) {
            (Some(error), false) => warn!(
                %error,
                "could not announce this worker's table partitions; retrying (repeats of this \
                 are logged at debug level)"
            ),
            (Some(error), true) => {
                debug!(%error, "could not announce this worker's table partitions; retrying")
            }
            (None, true) => info!("announced this worker's table partitions again"),
            (None, false) => {}
        }
        self.failing = error.is_some();
        error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_claim_wins() {
        let directory = Directory::default();
        let claim = |parts: &[i32]| {
            serde_json::to_vec(&Announcement {
                tables: BTreeMap::from([("counts".to_owned(), parts.to_vec())]),
            })
            .unwrap()
        };
        directory.apply("http://a:1", 0, Some(&claim(&[0, 1])));
        directory.apply("http://b:1", 1, Some(&claim(&[1])));
        assert_eq!(directory.owner("counts", 0).as_deref(), Some("http://a:1"));
        assert_eq!(directory.owner("counts", 1).as_deref(), Some("http://b:1"));
        assert_eq!(directory.owner("counts", 2), None);
        assert_eq!(directory.owner("other", 0), None);
        directory.apply("http://b:1", 2, None);
        assert_eq!(directory.owner("counts", 1).as_deref(), Some("http://a:1"));
    }
}
