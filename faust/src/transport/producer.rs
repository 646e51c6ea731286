//! The Kafka producer: how agents, tasks, tables and commands write to topics.
//!
//! Records are queued in librdkafka, which batches them (linger) and retries them; each
//! queued record has a [`Delivery`] that resolves once the broker has it. Keys sent
//! without an explicit partition go through Kafka's murmur2 partitioner, as in the Java
//! client and Python Faust, so that faust-rs and other producers agree on which
//! partition a key lives in.

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use futures_util::future::{FutureExt, Map, Shared};
use rdkafka::{
    error::KafkaError,
    message::{Header as KafkaHeader, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _},
    types::RDKafkaErrorCode,
    util::Timeout,
    ClientConfig,
};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

#[cfg(any(test, feature = "testing"))]
use super::memory::MemoryLog;
pub(crate) use super::record::{Delivered, Record};
use super::{broker::Broker, connection::Role, LogContext};
use crate::{event::Header, sensors::Sensors, Error, Result};

/// The outcome of one attempt to queue a record.
enum Offer<'a> {
    Queued(DeliveryFuture),
    /// librdkafka's queue is full: here is the record back, to try again.
    Full(FutureRecord<'a, [u8], [u8]>),
}

/// How long a send may wait for room in librdkafka's queue before it fails.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle on the worker's producer; cheap to clone.
#[derive(Clone)]
pub(crate) struct Producer {
    backend: Backend,
    sensors: Sensors,
    /// Where deliveries nobody is bound to wait for are reported (see [`Producer::watch`]);
    /// its task starts with the first of them.
    watcher: Arc<OnceLock<mpsc::UnboundedSender<Watched>>>,
}

/// A delivery handed to the watcher: its topic, when it was queued, and its outcome.
type Watched = (Arc<str>, Instant, Delivery);

#[derive(Clone)]
enum Backend {
    Kafka(FutureProducer<LogContext>),
    #[cfg(any(test, feature = "testing"))]
    Memory(Arc<MemoryLog>),
}

/// Why a queued record was not delivered.
#[derive(Debug, Clone)]
pub(crate) enum Undelivered {
    /// The producer gave up on it (after its retries, or at once for a missing topic).
    Kafka(KafkaError),
    /// The producer was dropped before it knew.
    ProducerGone,
    /// Sent to an in-memory channel, it was dropped before its agents processed it (the
    /// worker stopped).
    Unprocessed,
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undelivered::Kafka(e) => e.fmt(f),
            Undelivered::ProducerGone => {
                f.write_str("the producer stopped before it was delivered")
            }
            Undelivered::Unprocessed => {
                f.write_str("the worker stopped before the channel's agents processed it")
            }
        }
    }
}

impl Undelivered {
    /// The error for a record to `topic` that was not delivered.
    pub(crate) fn into_error(self, topic: &str) -> Error {
        match self {
            Undelivered::Kafka(e)
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) =>
            {
                Error::Send(format!(
                    "topic '{topic}' does not exist on the broker; create it (a worker creates \
                     the topics its agents read and write when it starts)"
                ))
            }
            Undelivered::Kafka(e) => Error::kafka(format!("sending to topic '{topic}'"), e),
            Undelivered::ProducerGone => Error::Send(format!(
                "a message to topic '{topic}' was dropped: the producer stopped before it was \
                 delivered"
            )),
            Undelivered::Unprocessed => Error::Send(format!(
                "a message to channel '{topic}' was dropped: the worker stopped before the \
                 channel's agents processed it"
            )),
        }
    }
}

/// Where a record landed, or why it was not delivered.
pub(crate) type Outcome = std::result::Result<Delivered, Undelivered>;

type Awaited = <DeliveryFuture as std::future::Future>::Output;

/// A delivery several owners may await (the sender and whoever acknowledges its event).
type SharedDelivery = Shared<Map<DeliveryFuture, fn(Awaited) -> Outcome>>;

/// A queued record's delivery: resolves once the broker has it (or at once in memory).
pub(crate) enum Delivery {
    Kafka(DeliveryFuture),
    Shared(SharedDelivery),
    /// Handed to a channel's agents: done once every one acknowledged it (`offset` is
    /// its number in the channel).
    Channel {
        processed: Shared<oneshot::Receiver<()>>,
        offset: i64,
    },
    #[cfg(any(test, feature = "testing"))]
    Done(Delivered),
}

fn outcome(awaited: Awaited) -> Outcome {
    match awaited {
        Ok(Ok(d)) => Ok(Delivered {
            partition: d.partition,
            offset: d.offset,
        }),
        Ok(Err((e, _))) => Err(Undelivered::Kafka(e)),
        Err(_) => Err(Undelivered::ProducerGone),
    }
}

/// Polled in place, a delivery can be waited for a while and kept if it is not done.
impl std::future::Future for Delivery {
    type Output = Outcome;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Outcome> {
        match self.get_mut() {
            #[cfg(any(test, feature = "testing"))]
            Delivery::Done(delivered) => std::task::Poll::Ready(Ok(*delivered)),
            Delivery::Kafka(future) => std::pin::Pin::new(future).poll(cx).map(outcome),
            Delivery::Shared(shared) => std::pin::Pin::new(shared).poll(cx),
            Delivery::Channel { processed, offset } => {
                std::pin::Pin::new(processed)
                    .poll(cx)
                    .map(|done| match done {
                        Ok(()) => Ok(Delivered {
                            partition: 0,
                            offset: *offset,
                        }),
                        Err(_) => Err(Undelivered::Unprocessed),
                    })
            }
        }
    }
}

impl Delivery {
    /// Where the record landed, or why it was not delivered.
    pub(crate) async fn wait(self) -> Outcome {
        self.await
    }

    /// Two handles on this delivery, each resolving to its outcome.
    pub(crate) fn share(self) -> (Delivery, Delivery) {
        let shared = match self {
            #[cfg(any(test, feature = "testing"))]
            Delivery::Done(delivered) => {
                return (Delivery::Done(delivered), Delivery::Done(delivered))
            }
            Delivery::Kafka(future) => future.map(outcome as fn(Awaited) -> Outcome).shared(),
            Delivery::Shared(shared) => shared,
            Delivery::Channel { processed, offset } => {
                let kept = Delivery::Channel {
                    processed: processed.clone(),
                    offset,
                };
                return (kept, Delivery::Channel { processed, offset });
            }
        };
        (Delivery::Shared(shared.clone()), Delivery::Shared(shared))
    }
}

impl Producer {
    /// A producer of `broker`, reporting its troubles to the broker's health, retrying a
    /// message for up to `request_timeout` before its delivery fails.
    pub(crate) fn connect(
        broker: &Broker,
        client_id: &str,
        request_timeout: Duration,
        sensors: Sensors,
    ) -> Result<Self> {
        // librdkafka takes a 32-bit count of milliseconds; 0 would mean "forever".
        let timeout_ms = request_timeout.as_millis().clamp(1, i32::MAX as u128);
        let mut client = ClientConfig::new();
        client
            .set("client.id", client_id)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            // Retries keep their order and never duplicate: a changelog must not end on
            // an older value than the last one written.
            .set("enable.idempotence", "true")
            // Through a broker outage librdkafka retries, in order, for this long. (A
            // flush before a commit waits a bounded time; see the table manager.)
            .set("message.timeout.ms", timeout_ms.to_string())
            // A send to a missing topic fails within seconds rather than librdkafka's 30 s.
            .set("topic.metadata.propagation.max.ms", "5000");
        let inner = broker
            .connection()
            .apply(Role::Producer, &mut client)
            .create_with_context(LogContext(broker.health().clone()))
            .map_err(|e| Error::kafka("creating the producer", e))?;
        Ok(Producer {
            backend: Backend::Kafka(inner),
            sensors,
            watcher: Arc::default(),
        })
    }

    /// A producer that keeps what it is given in `log` instead of sending it.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn in_memory(log: Arc<MemoryLog>, sensors: Sensors) -> Producer {
        Producer {
            backend: Backend::Memory(log),
            sensors,
            watcher: Arc::default(),
        }
    }

    /// Sends one record to `topic` and waits until the broker has it.
    pub(crate) async fn send_record(&self, topic: &str, record: Record<'_>) -> Result<Delivered> {
        // A single arm without the `testing` feature, which adds the in-memory one.
        #[allow(clippy::infallible_destructuring_match)]
        let inner = match &self.backend {
            Backend::Kafka(inner) => inner,
            #[cfg(any(test, feature = "testing"))]
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
            Err((e, _)) => Err(Undelivered::Kafka(e).into_error(topic)),
        }
    }

    /// Queues one record without waiting; the returned future resolves on delivery,
    /// which the caller awaits and reports with [`Producer::settle`].
    /// For synchronous callers (tables): a full queue is retried for up to 30 s. On a
    /// runtime thread the wait is announced to tokio (`block_in_place`), which moves the
    /// thread's other tasks elsewhere meanwhile.
    pub(crate) fn enqueue(&self, topic: &str, record: Record<'_>) -> Result<Delivery> {
        #[cfg(any(test, feature = "testing"))]
        if let Backend::Memory(log) = &self.backend {
            return Ok(Delivery::Done(log.append(topic, &record)));
        }
        let mut record = record.to_kafka(topic);
        self.sensors.each(|s| s.send_start(topic));
        let deadline = Some(Instant::now() + QUEUE_TIMEOUT);
        match self.offer(topic, record, deadline)? {
            Offer::Queued(delivery) => return Ok(Delivery::Kafka(delivery)),
            Offer::Full(back) => record = back,
        }
        let wait_for_room = || loop {
            std::thread::sleep(Duration::from_millis(1));
            match self.offer(topic, record, deadline)? {
                Offer::Queued(delivery) => return Ok(Delivery::Kafka(delivery)),
                Offer::Full(back) => record = back,
            }
        };
        let on_multi_thread_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|r| r.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        match on_multi_thread_runtime {
            true => tokio::task::block_in_place(wait_for_room),
            false => wait_for_room(),
        }
    }

    /// [`Producer::enqueue`] for async callers: a full queue is waited out without
    /// blocking the runtime, for as long as it takes when `patient` (an event's output:
    /// the broker may be away, and failing would lose it), else up to 30 s.
    pub(crate) async fn enqueue_async(
        &self,
        topic: &str,
        record: Record<'_>,
        patient: bool,
    ) -> Result<Delivery> {
        #[cfg(any(test, feature = "testing"))]
        if let Backend::Memory(log) = &self.backend {
            return Ok(Delivery::Done(log.append(topic, &record)));
        }
        let mut record = record.to_kafka(topic);
        self.sensors.each(|s| s.send_start(topic));
        let deadline = (!patient).then(|| Instant::now() + QUEUE_TIMEOUT);
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
        deadline: Option<Instant>,
    ) -> Result<Offer<'a>> {
        // A single arm without the `testing` feature, which adds the in-memory one.
        #[allow(clippy::infallible_destructuring_match)]
        let inner = match &self.backend {
            Backend::Kafka(inner) => inner,
            #[cfg(any(test, feature = "testing"))]
            Backend::Memory(_) => {
                return Err(Error::Send("an in-memory producer has no queue".into()))
            }
        };
        match inner.send_result(record) {
            Ok(delivery) => Ok(Offer::Queued(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if deadline.is_none_or(|d| Instant::now() < d) =>
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

    /// Reports `delivery` once it resolves, for a record whose sender may never wait for
    /// it (a task's `send` whose handle was dropped): to the sensors, and a failure in
    /// the log. Deliveries are awaited in the order given, by one task per producer.
    pub(crate) fn watch(&self, topic: Arc<str>, queued: Instant, delivery: Delivery) {
        let watcher = self.watcher.get_or_init(|| {
            let (watcher, deliveries) = mpsc::unbounded_channel();
            tokio::spawn(report(deliveries, self.sensors.clone()));
            watcher
        });
        // The watcher lives as long as the producer: this send cannot fail.
        let _ = watcher.send((topic, queued, delivery));
    }

    /// In a test context, keeps a copy of `record`, sent to the channel `channel`, in the
    /// in-memory log (where the test reads what the app sent); otherwise nothing.
    pub(crate) fn tap(&self, channel: &str, record: &Record<'_>) {
        #[cfg(any(test, feature = "testing"))]
        if let Backend::Memory(log) = &self.backend {
            log.append(channel, record);
        }
        let _ = (channel, record);
    }

    /// Waits for the delivery of a record queued for `topic` at `queued`, and reports its
    /// outcome to the sensors.
    pub(crate) async fn settle(&self, topic: &str, queued: Instant, delivery: Delivery) -> Outcome {
        settle(&self.sensors, topic, queued, delivery).await
    }

    /// Reports the outcome of an [`Producer::enqueue`]d record, seen `took` after it was queued.
    pub(crate) fn delivered(&self, topic: &str, took: Duration, error: Option<&str>) {
        self.sensors.each(|s| s.send_end(topic, took, error));
    }

    /// Waits until every queued message is delivered, up to `timeout`.
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        // A single arm without the `testing` feature, which adds the in-memory one.
        #[allow(clippy::infallible_destructuring_match)]
        let inner = match &self.backend {
            Backend::Kafka(inner) => inner.clone(),
            #[cfg(any(test, feature = "testing"))]
            Backend::Memory(_) => return Ok(()),
        };
        tokio::task::spawn_blocking(move || inner.flush(Timeout::After(timeout)))
            .await
            .map_err(|e| Error::Send(format!("the producer flush was interrupted: {e}")))?
            .map_err(|e| Error::kafka("flushing the producer", e))
    }
}

/// [`Producer::settle`], for the watcher, which holds the sensors and not the producer
/// (whose last clone ends the watcher).
async fn settle(sensors: &Sensors, topic: &str, queued: Instant, delivery: Delivery) -> Outcome {
    if let Delivery::Channel { .. } = delivery {
        return delivery.wait().await; // never went through the producer
    }
    let outcome = delivery.wait().await;
    let error = outcome.as_ref().err().map(ToString::to_string);
    sensors.each(|s| s.send_end(topic, queued.elapsed(), error.as_deref()));
    outcome
}

/// The watcher's task: reports each delivery handed to it.
async fn report(mut deliveries: mpsc::UnboundedReceiver<Watched>, sensors: Sensors) {
    while let Some((topic, queued, delivery)) = deliveries.recv().await {
        if let Err(error) = settle(&sensors, &topic, queued, delivery).await {
            error!(%topic, %error, "a message sent outside an event was not delivered");
        }
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
