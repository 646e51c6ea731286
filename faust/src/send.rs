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
/// without waiting a round trip to the broker.
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
    let encode = |what: &str, e: String| Error::Encode {
        target: target.to_owned(),
        message: format!("{what}: {e}"),
    };
    let key = key
        .map(|key| KeyCodec::Raw.encode(key))
        .transpose()
        .map_err(|e| encode("key", e))?;
    let value = serde_json::to_vec(value).map_err(|e| encode("value", e.to_string()))?;
    send_bytes(target, key.as_deref(), Some(&value), None).await
}

/// Sends raw bytes to a topic or agent, optionally to a given partition; queued like
/// [`send`].
pub async fn send_bytes(
    target: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    partition: Option<i32>,
) -> Result<Sent> {
    let worker = context::current().ok_or_else(|| Error::Send(NO_WORKER.into()))?;
    let record = Record {
        key,
        value,
        partition,
        headers: &[],
        timestamp: None,
    };
    if let Some(channels) = worker.channel(target) {
        let channel = Arc::from(target);
        let delivery = outbox::queue_channel(channels, &worker.producer, &channel, record)?;
        return Ok(Sent {
            topic: channel,
            delivery,
        });
    }
    let topic = worker.topic(target);
    let delivery = outbox::queue_kept(&worker.producer, &topic, record).await?;
    Ok(Sent { topic, delivery })
}
