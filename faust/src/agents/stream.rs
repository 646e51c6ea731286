//! What an agent actor works with: its [`Stream`] of decoded values and its [`Sink`].

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc::UnboundedReceiver, watch, Mutex};
use tracing::warn;

use super::{
    outbox::{Outbox, Pending},
    ActorContext,
};
use crate::{
    codec::DecodeError,
    event::{self, Event, Header, Message, Slot},
    sensors::Sensors,
    transport::producer::{Producer, Record},
    Error, Result,
};

/// An actor's inbox. It outlives the actor's runs so a restarted actor continues
/// where the failed one stopped.
pub(crate) type SharedInbox = Arc<Mutex<UnboundedReceiver<Message>>>;

/// The decoded values of the events routed to one agent actor, in partition order.
///
/// An event is acknowledged when the actor asks for the next one (or ends), so the
/// consumer never commits an event the agent has not finished with.
pub struct Stream<T> {
    agent: &'static str,
    inbox: SharedInbox,
    decode: fn(&[u8]) -> Result<T, DecodeError>,
    /// The event being processed and when it started, acknowledged when the actor moves on.
    current: Option<(Message, Instant)>,
    slot: Slot,
    sensors: Sensors,
    /// Turns true on shutdown: the stream ends after the current event.
    stopping: watch::Receiver<bool>,
    dead_letters: Option<DeadLetters>,
    outbox: Outbox,
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

impl<T> Stream<T> {
    pub(crate) fn new(actor: &ActorContext, decode: fn(&[u8]) -> Result<T, DecodeError>) -> Self {
        Stream {
            agent: actor.agent.name,
            inbox: actor.inbox.clone(),
            decode,
            current: None,
            slot: actor.slot.clone(),
            sensors: actor.sensors.clone(),
            stopping: actor.stopping.clone(),
            dead_letters: actor.dead_letters.clone(),
            outbox: actor.outbox.clone(),
        }
    }

    /// The next value, or `None` once the worker is shutting down (events still queued
    /// are then left unacknowledged, for the next start).
    pub async fn next(&mut self) -> Option<T> {
        self.next_event().await.map(|event| event.value)
    }

    /// The next value with its key and metadata (topic, partition, offset, timestamp, headers).
    pub async fn next_event(&mut self) -> Option<Event<T>> {
        self.finish_current();
        // Between events there is no current event: a table write now is refused rather
        // than tagged with an event already acknowledged.
        event::set(&self.slot, None);
        loop {
            let mut message = {
                let mut inbox = self.inbox.lock().await;
                tokio::select! {
                    biased;
                    _ = self.stopping.wait_for(|stop| *stop) => return None,
                    message = inbox.recv() => message?,
                }
            };
            if !message.begin() {
                continue; // its partition was revoked: the next owner processes it
            }
            let payload = message.payload.take();
            match (self.decode)(payload.as_deref().unwrap_or_default()) {
                Ok(value) => {
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
                    let (agent, topic) = (self.agent, &event.topic);
                    self.sensors
                        .each(|s| s.event_start(agent, topic, event.partition, event.offset));
                    self.current = Some((message, Instant::now()));
                    return Some(event);
                }
                Err(error) => {
                    // A decoder may quote the whole payload: keep log lines short.
                    let error = shorten(&error.to_string(), 300);
                    warn!(
                        agent = self.agent,
                        topic = %message.topic,
                        partition = message.partition,
                        offset = message.offset,
                        %error,
                        "skipping a message that cannot be decoded"
                    );
                    self.sensors.each(|s| {
                        s.decode_error(
                            self.agent,
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
            header("faust-agent", self.agent.as_bytes()),
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
                    agent = self.agent,
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
        if let Some((message, started)) = self.current.take() {
            let took = started.elapsed();
            self.sensors.each(|s| s.event_end(self.agent, took));
            self.outbox.finish(message);
        }
    }
}

impl<T> Drop for Stream<T> {
    /// An actor that returns, fails or panics is done with its event: the failing event is
    /// acknowledged (and logged by the supervisor), never retried forever.
    fn drop(&mut self) {
        self.finish_current();
    }
}

/// Forwards values an agent emits to its sink topics (`#[faust::agent(sink = ...)]`),
/// keyed like the event being processed so that partitioning is kept.
pub struct Sink<U: ?Sized> {
    agent: &'static str,
    topics: Arc<[String]>,
    producer: Producer,
    encode: fn(&U) -> Result<Vec<u8>, String>,
    slot: Slot,
    outbox: Outbox,
}

impl<U: ?Sized> Sink<U> {
    pub(crate) fn new(actor: &ActorContext, encode: fn(&U) -> Result<Vec<u8>, String>) -> Self {
        Sink {
            agent: actor.agent.name,
            topics: actor.sinks.clone(),
            producer: actor.producer.clone(),
            encode,
            slot: actor.slot.clone(),
            outbox: actor.outbox.clone(),
        }
    }

    /// Queues `value` for every sink topic. The event being processed is acknowledged
    /// (its offset committed) only once the broker has every message it sent, so this
    /// returns without waiting for the broker. Outside an event it waits.
    pub async fn send(&self, value: &U) -> Result<()> {
        let bytes = (self.encode)(value).map_err(|message| Error::Encode {
            target: format!("the sink of agent '{}'", self.agent),
            message,
        })?;
        let event = event::get(&self.slot);
        let key = event.as_ref().and_then(|p| p.key.clone());
        for topic in self.topics.iter() {
            let record = Record {
                key: key.as_deref(),
                value: Some(&bytes),
                ..Record::default()
            };
            if event.is_none() {
                self.producer.send_record(topic, record).await?;
                continue;
            }
            let queued = Instant::now();
            let delivery = self.producer.enqueue_async(topic, record).await?;
            self.outbox.add(Pending {
                topic: Arc::from(topic.as_str()),
                queued,
                delivery,
            });
        }
        Ok(())
    }
}
