//! The worker's reply topic and the asks waiting on it (agent RPC).
//!
//! Every worker (and a command given a broker) has a reply topic of its own, Faust's
//! `f-reply-{uuid}` unless `reply_to` names one: one partition, records deleted after
//! `reply_expires`. It is created and read from the first ask on, by a consumer on a
//! thread of its own that hands each reply to the ask waiting for its correlation id.
//! In a test context there is no consumer: the context hands it the replies agents sent.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures_util::future::{FutureExt as _, Shared};
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    message::Message as _,
    ClientConfig, Offset, TopicPartitionList,
};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    broker::{Broker, TopicSpec},
    connection::Role,
};
use crate::{
    config::Config,
    descriptor::BoxFuture,
    request::{self as wire, ReplyAddress},
    Error, Result,
};

/// Creating the reply topic and starting its reader, awaited by every ask (the error
/// as text, since the outcome is shared).
type Starting = Shared<BoxFuture<std::result::Result<(), String>>>;

/// A reply: the request it answers and its value, as JSON.
pub(crate) struct Reply {
    pub(crate) correlation_id: String,
    pub(crate) value: Box<RawValue>,
}

/// One worker's reply topic and the asks waiting for replies on it.
pub(crate) struct ReplyTopic {
    topic: Arc<str>,
    /// Correlation id -> where its reply goes (one channel may wait for many ids).
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Reply>>>,
    listener: Listener,
    /// Creating the topic and starting its reader (Kafka only): the first ask starts it,
    /// every ask awaits it.
    starting: Mutex<Option<Starting>>,
    stop: Arc<AtomicBool>,
}

enum Listener {
    Kafka {
        broker: Broker,
        config: Arc<Config>,
    },
    /// The test context delivers replies itself.
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    Handed,
}

/// The asks of one caller: its replies, until dropped.
pub(crate) struct Waiter {
    replies: Arc<ReplyTopic>,
    ids: Vec<String>,
    receiver: mpsc::UnboundedReceiver<Reply>,
}

impl Waiter {
    /// The next reply to one of its requests, or `None` once `within` passed without one.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Reply> {
        tokio::time::timeout(within, self.receiver.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiting = self.replies.lock_waiting();
        for id in &self.ids {
            waiting.remove(id);
        }
    }
}

impl ReplyTopic {
    /// Replies read from the broker `broker` connects to.
    pub(crate) fn kafka(broker: Broker, config: Arc<Config>) -> Arc<ReplyTopic> {
        ReplyTopic::new(
            &config,
            Listener::Kafka {
                broker,
                config: config.clone(),
            },
        )
    }

    /// Replies handed over by whoever reads the topic (the test context).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn handed(config: &Config) -> Arc<ReplyTopic> {
        ReplyTopic::new(config, Listener::Handed)
    }

    fn new(config: &Config, listener: Listener) -> Arc<ReplyTopic> {
        let topic = config
            .reply_to
            .clone()
            .unwrap_or_else(|| format!("f-reply-{}", random_uuid()));
        Arc::new(ReplyTopic {
            topic: topic.into(),
            waiting: Mutex::default(),
            listener,
            starting: Mutex::default(),
            stop: Arc::default(),
        })
    }

    /// The reply topic's name.
    pub(crate) fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Registers `count` new requests: their addresses, and the waiter their replies
    /// come to. The reply topic is created and read before the first one returns, so
    /// no reply can come before it is listened for.
    pub(crate) async fn expect(
        self: &Arc<Self>,
        count: usize,
    ) -> Result<(Vec<ReplyAddress>, Waiter)> {
        self.start().await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let ids: Vec<String> = (0..count).map(|_| random_uuid()).collect();
        {
            let mut waiting = self.lock_waiting();
            for id in &ids {
                waiting.insert(id.clone(), sender.clone());
            }
        }
        let addresses = ids
            .iter()
            .map(|id| ReplyAddress {
                reply_to: self.topic.to_string(),
                correlation_id: id.clone(),
            })
            .collect();
        let waiter = Waiter {
            replies: self.clone(),
            ids,
            receiver,
        };
        Ok((addresses, waiter))
    }

    /// Hands a record of the reply topic to the ask waiting for it; others (late
    /// replies of asks that gave up, replies another run asked for) are dropped.
    pub(crate) fn deliver(&self, payload: &[u8]) {
        let Some(response) = wire::parse_response(payload) else {
            warn!(topic = %self.topic, "skipping a record of the reply topic that is no reply");
            return;
        };
        let waiting = self.lock_waiting();
        match waiting.get(&response.correlation_id) {
            Some(sender) => {
                let _ = sender.send(Reply {
                    correlation_id: response.correlation_id,
                    value: response.value,
                });
            }
            None => debug!(
                correlation_id = %response.correlation_id,
                "a reply nobody waits for (its ask gave up)"
            ),
        }
    }

    /// Stops reading the reply topic.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn lock_waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Reply>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the reply topic and starts reading it from its end, once. The work runs
    /// as a task of its own that every ask awaits, so an ask given up halfway (a
    /// dropped page request) neither leaves it half done nor starts a second reader.
    async fn start(self: &Arc<Self>) -> Result<()> {
        let Listener::Kafka { broker, config } = &self.listener else {
            return Ok(());
        };
        let starting = {
            let mut slot = self.starting.lock().unwrap_or_else(|e| e.into_inner());
            let start = || {
                let (replies, broker, config) = (self.clone(), broker.clone(), config.clone());
                let task =
                    tokio::spawn(async move { replies.create_and_read(broker, config).await });
                let joined: BoxFuture<std::result::Result<(), String>> = Box::pin(async move {
                    match task.await {
                        Ok(started) => started.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                });
                joined.shared()
            };
            slot.get_or_insert_with(start).clone()
        };
        starting.await.map_err(|message| {
            // A later ask tries again.
            *self.starting.lock().unwrap_or_else(|e| e.into_inner()) = None;
            Error::Worker(format!(
                "could not start reading the reply topic '{}': {message}",
                self.topic
            ))
        })
    }

    async fn create_and_read(self: Arc<Self>, broker: Broker, config: Arc<Config>) -> Result<()> {
        let mut spec = TopicSpec::new(self.topic.to_string(), 1, "agent replies (rpc)");
        spec.internal = true;
        let retention = config.reply_expires.as_millis().to_string();
        spec.settings = vec![
            ("cleanup.policy".into(), "delete".into()),
            ("retention.ms".into(), retention),
        ];
        let partitions = broker.ensure_topics(&[spec], &config).await?;
        // A topic named with --reply-to may have more partitions: replies are unkeyed.
        let partitions = partitions.get(&*self.topic).copied().unwrap_or(1).max(1);
        tokio::task::spawn_blocking(move || self.listen(&broker, partitions))
            .await
            .map_err(|e| Error::Worker(format!("starting the reply consumer: {e}")))?
    }

    /// Assigns the reply topic's partitions at their ends (so the positions are fixed
    /// before any request goes out) and reads them on a thread until stopped.
    fn listen(self: Arc<Self>, broker: &Broker, partitions: i32) -> Result<()> {
        let consumer: BaseConsumer = broker
            .connection()
            .apply(
                Role::Consumer,
                ClientConfig::new()
                    .set("group.id", format!("{}-replies", self.topic))
                    .set("enable.auto.commit", "false")
                    .set("fetch.wait.max.ms", "10"),
            )
            .create()
            .map_err(|e| Error::kafka("creating the reply consumer", e))?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            let (_, end) = consumer
                .fetch_watermarks(&self.topic, partition, Duration::from_secs(30))
                .map_err(|e| {
                    Error::kafka(
                        format!("reading the end of reply topic '{}'", self.topic),
                        e,
                    )
                })?;
            list.add_partition_offset(&self.topic, partition, Offset::Offset(end))
                .map_err(|e| Error::kafka("preparing the reply consumer", e))?;
        }
        consumer
            .assign(&list)
            .map_err(|e| Error::kafka(format!("reading reply topic '{}'", self.topic), e))?;
        let health = broker.health().clone();
        std::thread::Builder::new()
            .name("faust-replies".into())
            .spawn(move || {
                while !self.stop.load(Ordering::SeqCst) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(message)) => self.deliver(message.payload().unwrap_or_default()),
                        Some(Err(e)) => {
                            health.error(&format!("reading reply topic '{}': {e}", self.topic))
                        }
                        None => {}
                    }
                }
            })
            .map_err(|e| Error::Io {
                context: "starting the reply consumer".into(),
                source: e,
            })?;
        Ok(())
    }
}

/// A random UUID (version 4) as text, as Faust names reply topics and requests.
/// The standard library's hasher keys are random per process; hashing a counter and
/// the time under fresh keys gives independent 64-bit halves.
pub(crate) fn random_uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let half = || {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    };
    let bits = (u128::from(half()) << 64 | u128::from(half())) & !(0xf000 << 64) & !(0xc << 60)
        | (0x4000 << 64)
        | (0x8 << 60);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| random_uuid()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(20) {
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "version nibble of {id}");
            assert!("89ab".contains(&id[19..20]), "variant nibble of {id}");
        }
    }

    #[tokio::test]
    async fn a_reply_reaches_the_ask_waiting_for_it_and_no_other() {
        let replies = ReplyTopic::handed(&Config::new("app"));
        assert!(replies.topic().starts_with("f-reply-"));
        let (first, mut waiter) = replies.expect(2).await.unwrap();
        let (_, mut other) = replies.expect(1).await.unwrap();
        let value = RawValue::from_string("7".into()).unwrap();
        replies.deliver(&wire::response(None, &value, &first[1].correlation_id));
        let reply = waiter.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(reply.correlation_id, first[1].correlation_id);
        assert_eq!(reply.value.get(), "7");
        assert!(other.next(Duration::from_millis(50)).await.is_none());
        drop(waiter);
        assert_eq!(
            replies.lock_waiting().len(),
            1,
            "a dropped waiter's ids are gone"
        );
    }
}
