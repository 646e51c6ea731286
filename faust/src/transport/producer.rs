//! The Kafka producer, and `send`: how agents, tasks and commands write to topics.
//!
//! A producer without a broker ([`Producer::in_memory`]) keeps what it is given in a
//! [`MemoryLog`]: the test context's topics.
//!
//! librdkafka batches sends (linger) and retries them; each send returns once the broker
//! acknowledged it. Keys sent without an explicit partition go through Kafka's murmur2
//! partitioner, as in the Java client and Python Faust, so that faust-rs and other
//! producers agree on which partition a key lives in.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use rdkafka::{
    error::KafkaError,
    message::{Header as KafkaHeader, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _},
    types::RDKafkaErrorCode,
    util::Timeout,
    ClientConfig,
};
use serde::Serialize;

use super::partitioner::partition_for_key;
use super::LogContext;
use crate::{event::Header, sensors::Sensors, Error, Result};

/// The outcome of one attempt to queue a record.
enum Offer<'a> {
    Queued(DeliveryFuture),
    /// librdkafka's queue is full: here is the record back, to try again.
    Full(FutureRecord<'a, [u8], [u8]>),
}

/// How long a send may wait for room in librdkafka's queue before it fails.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a sent message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// One message to send, as bytes.
#[derive(Debug, Default, Clone)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// `None` lets the partitioner choose (by key hash, or spread when there is no key).
    pub partition: Option<i32>,
    pub headers: &'a [Header],
    /// Milliseconds since the Unix epoch; `None`: when it is sent.
    pub timestamp: Option<i64>,
}

/// A handle on the worker's producer; cheap to clone.
#[derive(Clone)]
pub struct Producer {
    backend: Backend,
    sensors: Sensors,
}

#[derive(Clone)]
enum Backend {
    Kafka(FutureProducer<LogContext>),
    Memory(Arc<MemoryLog>),
}

/// A queued record's delivery: resolves once the broker has it (or at once in memory).
pub(crate) enum Delivery {
    Kafka(DeliveryFuture),
    Done(Delivered),
}

impl Delivery {
    /// Where the record landed, or why it was not delivered.
    pub(crate) async fn wait(self) -> std::result::Result<Delivered, String> {
        match self {
            Delivery::Done(delivered) => Ok(delivered),
            Delivery::Kafka(future) => match future.await {
                Ok(Ok(d)) => Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("the producer stopped".to_owned()),
            },
        }
    }
}

/// A record kept by an in-memory producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch: given, or the clock's when it was sent.
    pub timestamp: Option<i64>,
}

/// What an in-memory producer was given, in order; partitions chosen by key (murmur2)
/// among `partitions`.
pub(crate) struct MemoryLog {
    partitions: i32,
    records: Mutex<Vec<SentRecord>>,
    /// The next offset of each topic partition.
    ends: Mutex<HashMap<(String, i32), i64>>,
}

impl MemoryLog {
    pub(crate) fn new(partitions: i32) -> MemoryLog {
        MemoryLog {
            partitions,
            records: Mutex::default(),
            ends: Mutex::default(),
        }
    }

    /// The records from position `from` on (positions count every record of every topic).
    pub(crate) fn since(&self, from: usize) -> Vec<SentRecord> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.get(from..).unwrap_or_default().to_vec()
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
            timestamp: Some(record.timestamp.unwrap_or_else(crate::clock::now_ms)),
        });
        Delivered { partition, offset }
    }
}

impl Producer {
    pub(crate) fn connect(bootstrap: &str, client_id: &str, sensors: Sensors) -> Result<Self> {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", client_id)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            // Retries keep their order and never duplicate: a changelog must not end on
            // an older value than the last one written.
            .set("enable.idempotence", "true")
            // A delivery gives up well within the consumer's 5-minute poll interval, so a
            // flush before a commit cannot cost the worker its group membership.
            .set("message.timeout.ms", "120000")
            // A send to a missing topic fails within seconds rather than librdkafka's 30 s.
            .set("topic.metadata.propagation.max.ms", "5000")
            .create_with_context(LogContext)
            .map_err(|e| Error::kafka("creating the producer", e))?;
        Ok(Producer {
            backend: Backend::Kafka(inner),
            sensors,
        })
    }

    /// A producer that keeps what it is given in `log` instead of sending it.
    pub(crate) fn in_memory(log: Arc<MemoryLog>, sensors: Sensors) -> Producer {
        Producer {
            backend: Backend::Memory(log),
            sensors,
        }
    }

    /// Sends one record to `topic` and waits until the broker has it.
    pub async fn send_record(&self, topic: &str, record: Record<'_>) -> Result<Delivered> {
        let inner = match &self.backend {
            Backend::Kafka(inner) => inner,
            Backend::Memory(log) => return Ok(log.append(topic, &record)),
        };
        let future = record.to_kafka(topic);
        self.sensors.each(|s| s.send_start(topic));
        let started = Instant::now();
        let outcome = inner.send(future, Timeout::After(QUEUE_TIMEOUT)).await;
        let error = outcome.as_ref().err().map(|(e, _)| e.to_string());
        self.sensors
            .each(|s| s.send_end(topic, started.elapsed(), error.as_deref()));
        match outcome {
            Ok(delivery) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Err((e, _)) => {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                    return Err(Error::Send(format!(
                        "topic '{topic}' does not exist on the broker; create it (a worker creates \
                         the topics its agents read and write when it starts)"
                    )));
                }
                Err(Error::kafka(format!("sending to topic '{topic}'"), e))
            }
        }
    }

    /// Queues one record without waiting; the returned future resolves on delivery,
    /// which the caller reports with [`Producer::delivered`].
    /// For synchronous callers (tables): a full queue is retried for up to 30 s.
    pub(crate) fn enqueue(&self, topic: &str, record: Record<'_>) -> Result<Delivery> {
        if let Backend::Memory(log) = &self.backend {
            return Ok(Delivery::Done(log.append(topic, &record)));
        }
        let mut record = record.to_kafka(topic);
        self.sensors.each(|s| s.send_start(topic));
        let deadline = Instant::now() + QUEUE_TIMEOUT;
        loop {
            match self.offer(topic, record, deadline)? {
                Offer::Queued(delivery) => return Ok(Delivery::Kafka(delivery)),
                Offer::Full(back) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// [`Producer::enqueue`] for async callers: a full queue is waited out without
    /// blocking the runtime.
    pub(crate) async fn enqueue_async(&self, topic: &str, record: Record<'_>) -> Result<Delivery> {
        if let Backend::Memory(log) = &self.backend {
            return Ok(Delivery::Done(log.append(topic, &record)));
        }
        let mut record = record.to_kafka(topic);
        self.sensors.each(|s| s.send_start(topic));
        let deadline = Instant::now() + QUEUE_TIMEOUT;
        loop {
            match self.offer(topic, record, deadline)? {
                Offer::Queued(delivery) => return Ok(Delivery::Kafka(delivery)),
                Offer::Full(back) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// One attempt to queue `record`; a failure other than a full queue (before the
    /// deadline) is reported to the sensors and returned.
    fn offer<'a>(
        &self,
        topic: &str,
        record: FutureRecord<'a, [u8], [u8]>,
        deadline: Instant,
    ) -> Result<Offer<'a>> {
        let Backend::Kafka(inner) = &self.backend else {
            return Err(Error::Send("an in-memory producer has no queue".into()));
        };
        match inner.send_result(record) {
            Ok(delivery) => Ok(Offer::Queued(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < deadline =>
            {
                Ok(Offer::Full(back))
            }
            Err((e, _)) => {
                let error = e.to_string();
                self.sensors
                    .each(|s| s.send_end(topic, Duration::ZERO, Some(&error)));
                Err(Error::kafka(
                    format!("queueing a record for topic '{topic}'"),
                    e,
                ))
            }
        }
    }

    /// Reports the outcome of an [`Producer::enqueue`]d record, seen `took` after it was queued.
    pub(crate) fn delivered(&self, topic: &str, took: Duration, error: Option<&str>) {
        self.sensors.each(|s| s.send_end(topic, took, error));
    }

    /// Waits until every queued message is delivered, up to `timeout`.
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        let Backend::Kafka(inner) = &self.backend else {
            return Ok(());
        };
        let inner = inner.clone();
        tokio::task::spawn_blocking(move || inner.flush(Timeout::After(timeout)))
            .await
            .map_err(|e| Error::Send(format!("the producer flush was interrupted: {e}")))?
            .map_err(|e| Error::kafka("flushing the producer", e))
    }
}

impl<'a> Record<'a> {
    fn to_kafka(&self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let mut future = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(key) = self.key {
            future = future.key(key);
        }
        if let Some(value) = self.value {
            future = future.payload(value);
        }
        if let Some(partition) = self.partition {
            future = future.partition(partition);
        }
        if !self.headers.is_empty() {
            future = future.headers(kafka_headers(self.headers));
        }
        if let Some(timestamp) = self.timestamp {
            future = future.timestamp(timestamp);
        }
        future
    }
}

fn kafka_headers(headers: &[Header]) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new(), |hs, h| {
        hs.insert(KafkaHeader {
            key: &h.key,
            value: h.value.as_deref(),
        })
    })
}

/// What `send` needs from the running app: its producer, and agent names to resolve.
pub(crate) struct Sender {
    pub(crate) producer: Producer,
    /// Agent name -> the topic it consumes.
    pub(crate) agents: HashMap<String, String>,
}

static SENDER: RwLock<Option<Arc<Sender>>> = RwLock::new(None);

/// Makes `send` use this producer (the worker and the CLI call it once they are connected).
pub(crate) fn install(sender: Sender) {
    *SENDER.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(sender));
}

pub(crate) fn uninstall() {
    *SENDER.write().unwrap_or_else(|e| e.into_inner()) = None;
}

fn sender() -> Result<Arc<Sender>> {
    SENDER
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| {
            Error::Send(
                "send needs a broker: it works inside a running worker, and in commands given \
                 --broker kafka://host:port (or FAUST_BROKER)"
                    .into(),
            )
        })
}

impl Sender {
    /// An agent's name stands for the topic it consumes; anything else is a topic name.
    pub(crate) fn resolve<'a>(&'a self, target: &'a str) -> &'a str {
        self.agents.get(target).map_or(target, String::as_str)
    }
}

/// Sends `value` (as JSON) with an optional `key` (as JSON, like Python Faust) to a topic,
/// or to an agent by its name, and waits for the broker's acknowledgement.
///
/// ```no_run
/// # async fn demo() -> faust::Result<()> {
/// faust::send("orders", Some(&"alice"), &serde_json::json!({"amount": 3})).await?;
/// # Ok(()) }
/// ```
pub async fn send<K, V>(target: &str, key: Option<&K>, value: &V) -> Result<Delivered>
where
    K: Serialize + ?Sized,
    V: Serialize + ?Sized,
{
    let encode = |what: &str, e: serde_json::Error| Error::Encode {
        target: target.to_owned(),
        message: format!("{what}: {e}"),
    };
    let key = key
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| encode("key", e))?;
    let value = serde_json::to_vec(value).map_err(|e| encode("value", e))?;
    send_bytes(target, key.as_deref(), Some(&value), None).await
}

/// Sends raw bytes to a topic or agent, optionally to a given partition.
pub async fn send_bytes(
    target: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    partition: Option<i32>,
) -> Result<Delivered> {
    let sender = sender()?;
    let topic = sender.resolve(target);
    let record = Record {
        key,
        value,
        partition,
        headers: &[],
        timestamp: None,
    };
    sender.producer.send_record(topic, record).await
}
