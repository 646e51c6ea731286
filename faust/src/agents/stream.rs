//! What an agent actor works with: its [`Stream`] of decoded values and its [`Sink`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc::UnboundedReceiver, watch, Mutex};
use tracing::warn;

use serde::Serialize;

use super::{
    outbox::{Outbox, Pending},
    ActorContext, AgentDescriptor,
};
use crate::{
    codec::DecodeError,
    descriptor::topic_name,
    event::{self, Event, Header, Message, Slot},
    sensors::Sensors,
    time::Clock,
    transport::producer::{Producer, Record},
    Error, Result,
};

/// An actor's inbox. It outlives the actor's runs so a restarted actor continues
/// where the failed one stopped.
pub(crate) type SharedInbox = Arc<Mutex<UnboundedReceiver<Message>>>;

/// Turns a payload into the stream's value; `None` leaves the event out (`filter`).
type Parse<T> = Box<dyn FnMut(&[u8]) -> Result<Option<T>, DecodeError> + Send>;
/// A codec's decoder.
type Decoder<T> = fn(&[u8]) -> Result<T, DecodeError>;
/// The new key of a payload, as JSON (`group_by`).
type Rekey = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, DecodeError> + Send>;

/// The decoded values of the events routed to one agent actor, in partition order.
///
/// An event is acknowledged when the actor asks for the next one (or ends), so the
/// consumer never commits an event the agent has not finished with.
///
/// Operators: [`filter`](Stream::filter), [`map`](Stream::map),
/// [`enumerate`](Stream::enumerate), batches with [`take`](Stream::take), and
/// repartitioning with [`group_by`](Stream::group_by) or [`through`](Stream::through).
pub struct Stream<T> {
    agent: &'static AgentDescriptor,
    app_id: Arc<str>,
    inbox: SharedInbox,
    parse: Parse<T>,
    /// The codec's decoder while no operator changed the values; `group_by` needs it.
    decode: Option<Decoder<T>>,
    /// Where events of the agent's own topics are forwarded (`group_by`, `through`).
    relay: Option<Relay>,
    /// The events being processed (one, or a `take` batch) and when each started,
    /// acknowledged when the actor moves on.
    current: Vec<(Message, Instant)>,
    slot: Slot,
    sensors: Sensors,
    /// Turns true on shutdown: the stream ends after the current event.
    stopping: watch::Receiver<bool>,
    dead_letters: Option<DeadLetters>,
    producer: Producer,
    outbox: Outbox,
    clock: Clock,
}

/// A topic the stream forwards its source events to, and continues from.
struct Relay {
    topic: Arc<str>,
    /// The new key of a forwarded event (`group_by`); `None` keeps its key (`through`).
    key: Option<Rekey>,
}

/// Where undecodable messages are copied (the `dead_letter_topic` setting).
#[derive(Clone)]
pub(crate) struct DeadLetters {
    pub(crate) topic: Arc<str>,
    pub(crate) producer: Producer,
}

/// Header of a dead letter saying why it could not be processed.
pub const ERROR_HEADER: &str = "faust-error";
/// Header of a dead letter sent without its value, saying why.
pub const OMITTED_HEADER: &str = "faust-value-omitted";

/// Runs an operator's closure (the codec, `filter`, `map`, a `group_by` key); a panic
/// becomes a decode error, so the event is skipped and acknowledged like an undecodable
/// one instead of being dropped unacknowledged (which would hold its partition back).
fn guarded<T>(run: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let message = super::panic_text(panic.as_ref());
        Err(DecodeError(format!("an operator panicked: {message}")))
    })
}

/// `text`, cut to at most `max` bytes (on a character boundary) with a note of the cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let cut = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} bytes cut)", &text[..cut], text.len() - cut)
}

impl<T: 'static> Stream<T> {
    pub(crate) fn new(actor: &ActorContext, decode: Decoder<T>) -> Self {
        Stream {
            agent: actor.agent,
            app_id: actor.app_id.clone(),
            inbox: actor.inbox.clone(),
            parse: Box::new(move |bytes| decode(bytes).map(Some)),
            decode: Some(decode),
            relay: None,
            current: Vec::new(),
            slot: actor.slot.clone(),
            sensors: actor.sensors.clone(),
            stopping: actor.stopping.clone(),
            dead_letters: actor.dead_letters.clone(),
            producer: actor.producer.clone(),
            outbox: actor.outbox.clone(),
            clock: actor.clock.clone(),
        }
    }

    /// The next value, or `None` once the worker is shutting down (events still queued
    /// are then left unacknowledged, for the next start).
    ///
    /// Let it finish: a `next()` cancelled while it forwards an event (`group_by`) or
    /// copies it to the dead-letter topic loses track of that event, which then holds
    /// its partition's commits back until a restart. For time-bounded reads use
    /// [`take`](Stream::take).
    pub async fn next(&mut self) -> Option<T> {
        self.next_event().await.map(|event| event.value)
    }

    /// The next value with its key and metadata (topic, partition, offset, timestamp, headers).
    pub async fn next_event(&mut self) -> Option<Event<T>> {
        self.finish_current();
        self.receive(None).await
    }

    /// The next batch: up to `max` values, or fewer if `within` passes after the first
    /// arrived. `None` once the worker is shutting down. The batch's events are
    /// acknowledged together when the actor asks for the next batch.
    ///
    /// A batch can hold events of several partitions, and tables see the batch's last
    /// event as the current one: update tables from `next()` streams, not from batches.
    /// A rebalance waits for a batch being gathered (up to the drain timeout), so keep
    /// `within` short of it.
    pub async fn take(&mut self, max: usize, within: Duration) -> Option<Vec<T>> {
        self.finish_current();
        let first = self.receive(None).await?;
        let deadline = tokio::time::Instant::now() + self.clock.wait_for_more(within);
        let mut values = vec![first.value];
        while values.len() < max.max(1) {
            match self.receive(Some(deadline)).await {
                Some(event) => values.push(event.value),
                None => break,
            }
        }
        Some(values)
    }

    /// Only the values for which `keep` is true; the others are acknowledged and skipped.
    pub fn filter(self, mut keep: impl FnMut(&T) -> bool + Send + 'static) -> Stream<T> {
        self.with_parse(move |mut parse| {
            Box::new(move |bytes| Ok(parse(bytes)?.filter(|value| keep(value))))
        })
    }

    /// Each value changed by `change` (events keep their key and metadata).
    pub fn map<U: 'static>(self, mut change: impl FnMut(T) -> U + Send + 'static) -> Stream<U> {
        self.with_parse(move |mut parse| Box::new(move |bytes| Ok(parse(bytes)?.map(&mut change))))
    }

    /// Each value with its position in this stream, from 0.
    pub fn enumerate(self) -> Stream<(usize, T)> {
        let mut next = 0;
        self.map(move |value| {
            next += 1;
            (next - 1, value)
        })
    }

    /// Repartitions the stream by a new key: each event of the agent's topics is sent,
    /// keyed by `key(&value)` (as JSON, like `faust::send`), to the internal topic
    /// `{app_id}-{agent}-{name}-repartition`, and the stream continues with the events of
    /// that topic. A table keyed by the new key and written from this stream is then
    /// co-partitioned with it. The agent declares the name:
    /// `#[faust::agent(topic = "orders", group_by = "account")]`.
    ///
    /// An event is acknowledged once the broker has its forwarded copy. Call it on the
    /// stream as the agent receives it, before `filter`, `map` and the like.
    pub fn group_by<K: Serialize>(
        self,
        name: &str,
        key: impl Fn(&T) -> K + Send + 'static,
    ) -> Result<Stream<T>> {
        let Some(decode) = self.decode else {
            return Err(self.misplaced("group_by"));
        };
        let topic = self.agent.repartition_topic(&self.app_id, name);
        if !self.agent.group_by.contains(&name) {
            return Err(Error::Config(format!(
                "agent '{}' calls group_by(\"{name}\") but does not declare it; add \
                 `group_by = \"{name}\"` to its #[faust::agent(...)] so that the worker \
                 creates and reads the topic '{topic}'",
                self.agent.name,
            )));
        }
        let key = move |bytes: &[u8]| {
            serde_json::to_vec(&key(&decode(bytes)?))
                .map_err(|e| DecodeError(format!("the group_by key cannot be encoded: {e}")))
        };
        self.relay_through(topic, Some(Box::new(key)))
    }

    /// Forwards each event of the agent's topics, with its key, to `topic` and continues
    /// with the events of that topic. The agent declares it: `through = "topic"` (the
    /// same text: `through("{app_id}-prices")` for `through = "{app_id}-prices"`).
    pub fn through(self, topic: &str) -> Result<Stream<T>> {
        if self.decode.is_none() {
            return Err(self.misplaced("through"));
        }
        if !self.agent.through.contains(&topic) {
            return Err(Error::Config(format!(
                "agent '{}' calls through(\"{topic}\") but does not declare it; add \
                 `through = \"{topic}\"` to its #[faust::agent(...)] so that the worker reads it",
                self.agent.name
            )));
        }
        let topic = topic_name(topic, &self.app_id);
        self.relay_through(topic, None)
    }

    fn relay_through(mut self, topic: String, key: Option<Rekey>) -> Result<Stream<T>> {
        if let Some(relay) = &self.relay {
            return Err(Error::Config(format!(
                "agent '{}' already forwards its stream to '{}'; a stream is repartitioned once",
                self.agent.name, relay.topic
            )));
        }
        self.relay = Some(Relay {
            topic: Arc::from(topic),
            key,
        });
        Ok(self)
    }

    fn misplaced(&self, operator: &str) -> Error {
        Error::Config(format!(
            "agent '{}' calls {operator} after an operator that changes values; call it first, \
             on the stream the agent receives",
            self.agent.name
        ))
    }

    /// The same stream with its parsing wrapped by an operator.
    fn with_parse<U: 'static>(mut self, wrap: impl FnOnce(Parse<T>) -> Parse<U>) -> Stream<U> {
        let parse = std::mem::replace(&mut self.parse, Box::new(|_| Ok(None)));
        Stream {
            agent: self.agent,
            app_id: self.app_id.clone(),
            inbox: self.inbox.clone(),
            parse: wrap(parse),
            decode: None,
            relay: self.relay.take(),
            current: std::mem::take(&mut self.current),
            slot: self.slot.clone(),
            sensors: self.sensors.clone(),
            stopping: self.stopping.clone(),
            dead_letters: self.dead_letters.clone(),
            producer: self.producer.clone(),
            outbox: self.outbox.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<T> Stream<T> {
    /// Waits for the next event for the agent (until `deadline`, if given): forwards
    /// events to be repartitioned, skips those left out and those that cannot be decoded.
    async fn receive(&mut self, deadline: Option<tokio::time::Instant>) -> Option<Event<T>> {
        // Between events there is no current event: a table write now is refused rather
        // than tagged with an event already acknowledged.
        if self.current.is_empty() {
            event::set(&self.slot, None);
        }
        loop {
            let mut message = {
                let mut inbox = self.inbox.lock().await;
                let expired = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = self.stopping.wait_for(|stop| *stop) => return None,
                    _ = expired => return None,
                    message = inbox.recv() => message?,
                }
            };
            if !message.begin() {
                continue; // its partition was revoked: the next owner processes it
            }
            let payload = message.payload.take();
            let bytes = payload.as_deref().unwrap_or_default();
            let relay = self.relay.as_mut().filter(|r| r.topic != message.topic);
            let parsed = match relay {
                Some(relay) => match relay
                    .key
                    .as_mut()
                    .map(|key| guarded(|| key(bytes)))
                    .transpose()
                {
                    Ok(key) => {
                        if !self.forward(message, key, payload).await {
                            return None;
                        }
                        continue;
                    }
                    Err(error) => Err(error),
                },
                None => guarded(|| (self.parse)(bytes)),
            };
            match parsed {
                Ok(Some(value)) => {
                    event::set(&self.slot, Some(message.position()));
                    let event = Event {
                        value,
                        key: message.key.take(),
                        topic: message.topic.clone(),
                        partition: message.partition,
                        offset: message.offset,
                        timestamp: message.timestamp,
                        headers: std::mem::take(&mut message.headers),
                    };
                    let (agent, topic) = (self.agent.name, &event.topic);
                    self.sensors
                        .each(|s| s.event_start(agent, topic, event.partition, event.offset));
                    self.current.push((message, Instant::now()));
                    return Some(event);
                }
                Ok(None) => message.ack(), // left out by `filter`
                Err(error) => {
                    // A decoder may quote the whole payload: keep log lines short.
                    let error = shorten(&error.to_string(), 300);
                    warn!(
                        agent = self.agent.name,
                        topic = %message.topic,
                        partition = message.partition,
                        offset = message.offset,
                        %error,
                        "skipping a message that cannot be decoded"
                    );
                    self.sensors.each(|s| {
                        s.decode_error(
                            self.agent.name,
                            &message.topic,
                            message.partition,
                            message.offset,
                            &error,
                        )
                    });
                    if !self.bury(&message, payload.as_deref(), &error).await {
                        return None; // stopping: left unacknowledged, for the next start
                    }
                    message.ack();
                }
            }
        }
    }

    /// Sends an event on to the relay topic (with `key`, or its own); it is acknowledged
    /// once the broker has it. A send that cannot be queued is retried, so nothing is
    /// lost. Returns false if the worker began stopping first.
    async fn forward(
        &mut self,
        message: Message,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
    ) -> bool {
        let Some(relay) = &self.relay else {
            return true;
        };
        let topic = relay.topic.clone();
        loop {
            let record = Record {
                key: key.as_deref().or(message.key.as_deref()),
                value: payload.as_deref(),
                partition: None,
                headers: &message.headers,
                // Event time travels with the event, for windows downstream.
                timestamp: message.timestamp,
            };
            let queued = Instant::now();
            match self.producer.enqueue_async(&topic, record).await {
                Ok(delivery) => {
                    self.outbox.add(Pending {
                        topic,
                        queued,
                        delivery,
                    });
                    self.outbox.finish(vec![message]);
                    return true;
                }
                // Retrying cannot help: handled like an undecodable event (logged, copied
                // to the dead-letter topic if there is one, skipped).
                Err(e) if e.is_message_too_large() => {
                    let error = format!("too large to forward to '{topic}': {e}");
                    warn!(agent = self.agent.name, event = %message.position(), %error, "skipping an event");
                    if !self.bury(&message, payload.as_deref(), &error).await {
                        return false;
                    }
                    message.ack();
                    return true;
                }
                Err(e) => warn!(
                    agent = self.agent.name,
                    event = %message.position(),
                    error = %e,
                    "could not forward an event to '{topic}'; retrying (it stays unacknowledged)"
                ),
            }
            tokio::select! {
                _ = self.stopping.wait_for(|stop| *stop) => return false,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Copies an undecodable message to the dead-letter topic, if there is one, retrying
    /// until the broker has it: it is acknowledged only then, so none is lost. Returns
    /// false if the worker began stopping first.
    async fn bury(&mut self, message: &Message, payload: Option<&[u8]>, error: &str) -> bool {
        let Some(dead) = self.dead_letters.clone() else {
            return true;
        };
        let header = |key: &str, value: &[u8]| Header {
            key: key.to_owned(),
            value: Some(value.to_vec()),
        };
        let mut headers = message.headers.clone();
        headers.extend([
            header(ERROR_HEADER, error.as_bytes()),
            header("faust-agent", self.agent.name.as_bytes()),
            header("faust-source-topic", message.topic.as_bytes()),
            header(
                "faust-source-partition",
                message.partition.to_string().as_bytes(),
            ),
            header("faust-source-offset", message.offset.to_string().as_bytes()),
        ]);
        let mut value = payload;
        loop {
            let record = Record {
                key: message.key.as_deref(),
                value,
                partition: None,
                headers: &headers,
                timestamp: message.timestamp,
            };
            match dead.producer.send_record(&dead.topic, record).await {
                Ok(_) => return true,
                // Retrying cannot help: send the letter without the value, which stays
                // in the source topic at the offset the headers give.
                Err(e) if e.is_message_too_large() && value.is_some() => {
                    let size = value.map_or(0, <[u8]>::len);
                    let note = format!("the value ({size} bytes) is over the broker's message size limit; read it at the source offset");
                    headers.push(header(OMITTED_HEADER, note.as_bytes()));
                    value = None;
                    continue;
                }
                Err(e) => warn!(
                    agent = self.agent.name,
                    topic = %message.topic,
                    partition = message.partition,
                    offset = message.offset,
                    error = %e,
                    "could not copy an undecodable message to dead-letter topic '{}'; retrying (it stays unacknowledged)",
                    dead.topic
                ),
            }
            tokio::select! {
                _ = self.stopping.wait_for(|stop| *stop) => return false,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Acknowledges the event being processed. The slot keeps its position, so that a
    /// failure right after is reported with the event that caused it.
    fn finish_current(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let mut messages = Vec::with_capacity(self.current.len());
        for (message, started) in self.current.drain(..) {
            let took = started.elapsed();
            self.sensors.each(|s| s.event_end(self.agent.name, took));
            messages.push(message);
        }
        self.outbox.finish(messages);
    }
}

impl<T> Drop for Stream<T> {
    /// An actor that returns, fails or panics is done with its event: the failing event is
    /// acknowledged (and logged by the supervisor), never retried forever.
    fn drop(&mut self) {
        self.finish_current();
    }
}
