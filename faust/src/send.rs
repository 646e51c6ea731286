//! Sending from user code: `faust::send` and `faust::send_bytes`, through the producer
//! of the worker the caller runs in. A send queues the message and returns; the
//! broker's acknowledgement comes later, through the [`Sent`] handle and, inside an
//! agent, before the event being processed is acknowledged.

use std::sync::Arc;

use serde::Serialize;

use crate::{
    agents::outbox,
    codec::KeyCodec,
    context,
    event::Header,
    transport::producer::{Delivered, Delivery, Record},
    Error, Result,
};

/// Why a send (or an ask) outside a worker cannot go anywhere.
pub(crate) const NO_WORKER: &str =
    "send needs a broker (so do an agent's ask and cast): it works inside a running worker \
     (agents, tasks, timers, pages; a task you spawn yourself keeps the worker with \
     faust::spawn), and in commands given --broker kafka://host:port (or FAUST_BROKER)";

/// A message [`send`] queued. Await [`Sent::delivered`] to learn where it landed, or
/// drop it: inside an agent, the event being processed is acknowledged only once the
/// broker has every message it sent; elsewhere a failed delivery is logged and counted.
pub struct Sent {
    topic: Arc<str>,
    delivery: Delivery,
}

impl Sent {
    /// Waits until the broker has the message: where it landed, or why it was not
    /// delivered (after the producer's retries, up to its `message.timeout.ms`).
    pub async fn delivered(self) -> Result<Delivered> {
        self.delivery
            .wait()
            .await
            .map_err(|e| e.into_error(&self.topic))
    }

    /// The topic it was sent to (an agent's name resolved to the topic it reads).
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sent").field("topic", &self.topic).finish()
    }
}

/// Sends `value` (as JSON) with an optional `key` to a topic, to an agent by its name, or
/// to one of the app's in-memory channels (see `AppBuilder::channel`).
/// It returns once the message is queued, like Python Faust's `await topic.send(...)`,
/// without waiting a round trip to the broker. [`Outgoing`] says more about a message:
/// its partition, headers and timestamp.
///
/// Keys are written as Python Faust writes them ([`KeyCodec::Raw`]): a string key as its
/// UTF-8 bytes, so it lands in the partition Faust or a Java producer would send it to;
/// any other key as JSON. For other key bytes, encode them yourself and use
/// [`send_bytes`].
///
/// Inside an agent the event being processed is acknowledged (and its offset
/// committed) only after the broker has every message it sent; a message that cannot be
/// delivered stops the worker with the event unacknowledged, so it runs again after a
/// restart. Elsewhere (tasks, timers, commands, web handlers) await
/// [`Sent::delivered`] when the outcome matters.
///
/// ```no_run
/// # async fn demo() -> faust::Result<()> {
/// faust::send("orders", Some(&"alice"), &serde_json::json!({"amount": 3})).await?;
/// let sent = faust::send("audit", None::<&str>, &"paid").await?;
/// let landed = sent.delivered().await?; // waits for the broker
/// println!("partition {} offset {}", landed.partition, landed.offset);
/// # Ok(()) }
/// ```
pub async fn send<K, V>(target: &str, key: Option<&K>, value: &V) -> Result<Sent>
where
    K: Serialize + ?Sized,
    V: Serialize + ?Sized,
{
    let outgoing = Outgoing::to(target);
    match key {
        Some(key) => outgoing.key(key),
        None => outgoing,
    }
    .send(value)
    .await
}

/// Sends raw bytes to a topic or agent, optionally to a given partition; queued like
/// [`send`].
pub async fn send_bytes(
    target: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    partition: Option<i32>,
) -> Result<Sent> {
    let outgoing = Outgoing::to(target);
    let outgoing = match key {
        Some(key) => outgoing.key_bytes(key),
        None => outgoing,
    };
    match partition {
        Some(partition) => outgoing.partition(partition),
        None => outgoing,
    }
    .send_bytes(value)
    .await
}

/// A message to send, with everything a send can say about it (Python Faust's
/// `topic.send(key=, value=, partition=, timestamp=, headers=)`): queued like [`send`],
/// owed by the event being processed like it.
///
/// ```no_run
/// # async fn demo(order: serde_json::Value) -> faust::Result<()> {
/// let sent = faust::Outgoing::to("orders")
///     .key(&"alice")
///     .partition(2)
///     .header("trace-id", "7f3a")
///     .timestamp_ms(1_700_000_000_000)
///     .send(&order)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "an Outgoing message is sent by `.send(&value)` or `.send_bytes(..)`"]
pub struct Outgoing {
    target: String,
    /// The key's bytes, or why it could not be encoded (reported by the send).
    key: std::result::Result<Option<Vec<u8>>, String>,
    partition: Option<i32>,
    headers: Vec<Header>,
    timestamp: Option<i64>,
}

impl Outgoing {
    /// A message for a topic, an agent (by its name) or a channel.
    pub fn to(target: &str) -> Outgoing {
        Outgoing {
            target: target.to_owned(),
            key: Ok(None),
            partition: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Its key, written as [`send`] writes keys (a string as its UTF-8 bytes, anything
    /// else as JSON).
    pub fn key<K: Serialize + ?Sized>(mut self, key: &K) -> Outgoing {
        self.key = KeyCodec::Raw.encode(key).map(Some);
        self
    }

    /// Its key, as these bytes.
    pub fn key_bytes(mut self, key: &[u8]) -> Outgoing {
        self.key = Ok(Some(key.to_vec()));
        self
    }

    /// The partition to write to, instead of the key's (or a spread one without a key).
    pub fn partition(mut self, partition: i32) -> Outgoing {
        self.partition = Some(partition);
        self
    }

    /// Adds a header (a name may be given more than once, as Kafka allows).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Outgoing {
        self.headers.push(Header {
            key: name.to_owned(),
            value: Some(value.as_ref().to_vec()),
        });
        self
    }

    /// Its timestamp, in milliseconds since the Unix epoch (default: when it is sent).
    /// Windows on event time place it by this.
    pub fn timestamp_ms(mut self, timestamp: i64) -> Outgoing {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sends it with `value` as JSON.
    pub async fn send<V: Serialize + ?Sized>(self, value: &V) -> Result<Sent> {
        let value = serde_json::to_vec(value).map_err(|e| self.encode_error("value", e))?;
        self.send_bytes(Some(&value)).await
    }

    /// Sends it with `value` as it is (`None`: no value, a tombstone).
    pub async fn send_bytes(self, value: Option<&[u8]>) -> Result<Sent> {
        let key = self.key.clone().map_err(|e| self.encode_error("key", e))?;
        let worker = context::current().ok_or_else(|| Error::Send(NO_WORKER.into()))?;
        let record = Record {
            key: key.as_deref(),
            value,
            partition: self.partition,
            headers: &self.headers,
            timestamp: self.timestamp,
        };
        let (topic, delivery) = outbox::queue_to(&worker, &self.target, record).await?;
        Ok(Sent { topic, delivery })
    }

    fn encode_error(&self, what: &str, error: impl std::fmt::Display) -> Error {
        Error::Encode {
            target: self.target.clone(),
            message: format!("{what}: {error}"),
        }
    }
}
