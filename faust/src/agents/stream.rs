//! `Stream<T>`: the decoded values of the events routed to one agent actor, and when
//! each is acknowledged. Operators are in `operators`, dead letters in `dead_letters`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc::UnboundedReceiver, watch, Mutex};
use tracing::{debug, warn};

use super::{
    dead_letters::DeadLetters,
    outbox::{Outbox, Pending},
    ActorContext, AgentDescriptor, Handback,
};
use crate::{
    codec::DecodeError,
    context::WorkerContext,
    event::{self, Event, Message, Slot},
    origin::Lineage,
    request::{self, ReplyAddress},
    sensors::Sensors,
    transport::producer::Record,
    Error, Result,
};

/// An actor's inbox. It outlives the actor's runs so a restarted actor continues
/// where the failed one stopped.
pub(crate) type SharedInbox = Arc<Mutex<UnboundedReceiver<Message>>>;

/// Turns a payload into the stream's value; `None` leaves the event out (`filter`).
pub(super) type Parse<T> = Box<dyn FnMut(&[u8]) -> Result<Option<T>, DecodeError> + Send>;
/// A codec's decoder.
pub(super) type Decoder<T> = fn(&[u8]) -> Result<T, DecodeError>;
/// The new key of a payload, as JSON (`group_by`).
pub(super) type Rekey = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, DecodeError> + Send>;

/// The decoded values of the events routed to one agent actor, in partition order.
///
/// An event is acknowledged when the actor asks for the next one (or ends), so the
/// consumer never commits an event the agent has not finished with.
///
/// Operators: [`filter`](Stream::filter), [`map`](Stream::map),
/// [`enumerate`](Stream::enumerate), batches with [`take`](Stream::take), and
/// repartitioning with [`group_by`](Stream::group_by) or [`through`](Stream::through).
pub struct Stream<T> {
    pub(super) agent: &'static AgentDescriptor,
    /// The worker it runs in: its app id, producer and clock.
    pub(super) worker: Arc<WorkerContext>,
    pub(super) inbox: SharedInbox,
    pub(super) parse: Parse<T>,
    /// The codec's decoder while no operator changed the values; `group_by` needs it.
    pub(super) decode: Option<Decoder<T>>,
    /// Where events of the agent's own topics are forwarded (`group_by`, `through`).
    pub(super) relay: Option<Relay>,
    /// The events being processed (one, or a `take` batch) and when each started,
    /// acknowledged when the actor moves on.
    pub(super) current: Vec<(Message, Instant)>,
    pub(super) slot: Slot,
    pub(super) sensors: Sensors,
    /// Turns true on shutdown: the stream ends after the current event.
    pub(super) stopping: watch::Receiver<bool>,
    pub(super) dead_letters: Option<DeadLetters>,
    pub(super) outbox: Outbox,
    /// Where the events being processed go when the actor ends, for its supervisor.
    pub(super) handback: Arc<Handback>,
    /// Where the reply to the event being processed goes, if it is a request (agent
    /// RPC), with the event's key.
    pub(super) request: Option<(ReplyAddress, Option<Vec<u8>>)>,
}

/// A topic the stream forwards its source events to, and continues from.
pub(super) struct Relay {
    pub(super) topic: Arc<str>,
    /// The new key of a forwarded event (`group_by`); `None` keeps its key (`through`).
    pub(super) key: Option<Rekey>,
}

/// Runs an operator's closure (the codec, `filter`, `map`, a `group_by` key); a panic
/// becomes a decode error, so the event is skipped and acknowledged like an undecodable
/// one instead of being dropped unacknowledged (which would hold its partition back).
fn guarded<T>(run: impl FnOnce() -> Result<T, DecodeError>) -> Result<T, DecodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let message = crate::error::panic_text(panic.as_ref());
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
            worker: actor.worker.clone(),
            inbox: actor.inbox.clone(),
            parse: Box::new(move |bytes| decode(bytes).map(Some)),
            decode: Some(decode),
            relay: None,
            current: Vec::new(),
            slot: actor.slot.clone(),
            sensors: actor.sensors.clone(),
            stopping: actor.stopping.clone(),
            dead_letters: actor.dead_letters.clone(),
            outbox: actor.outbox.clone(),
            handback: actor.handback.clone(),
            request: None,
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
    /// A batch can hold events of several partitions: tables then refuse its writes
    /// (with an error saying so), since a write belongs to one event's partition. Update
    /// tables from `next()` streams, and batch what leaves the app.
    /// A rebalance waits for a batch being gathered (up to the drain timeout), so keep
    /// `within` short of it.
    pub async fn take(&mut self, max: usize, within: Duration) -> Option<Vec<T>> {
        let events = self.take_events(max, within).await?;
        Some(events.into_iter().map(|event| event.value).collect())
    }

    /// [`take`](Stream::take) with each value's key and metadata (Faust's
    /// `stream.take_events`).
    pub async fn take_events(&mut self, max: usize, within: Duration) -> Option<Vec<Event<T>>> {
        self.finish_current();
        let first = self.receive(None).await?;
        let deadline = tokio::time::Instant::now() + self.worker.clock.wait_for_more(within);
        let mut events = vec![first];
        while events.len() < max.max(1) {
            match self.receive(Some(deadline)).await {
                Some(event) => events.push(event),
                None => break,
            }
        }
        // Tables see the batch's last event; one spanning partitions may not write.
        let first_partition = self.current.first().map(|(m, _)| m.partition);
        let other = self
            .current
            .iter()
            .map(|(m, _)| m.partition)
            .find(|p| Some(*p) != first_partition);
        if let Some(mut last) = event::get(&self.slot) {
            if let (Some(a), Some(b)) = (first_partition, other) {
                last.batch_partitions = Some((a, b));
            }
            // A batch's bounds depend on timing, so a replay may batch and send otherwise:
            // its outputs carry no origin, its writes no mark (see `origin`).
            last.lineage = None;
            event::set(&self.slot, Some(last));
        }
        Some(events)
    }

    /// Answers the event `next()` returned, if it is a request (an
    /// [`Agent::ask`](crate::Agent::ask), `join` or `map` from faust-rs or Python
    /// Faust): `value` goes (as JSON) to the asker's reply topic. For any other event it
    /// does nothing, as a Faust agent's `yield` without a requester. Queued like
    /// [`crate::send`]: the event is acknowledged once the broker has the reply. A reply
    /// that cannot be sent or delivered (the asker's reply topic is gone) is logged, not
    /// returned: one asker cannot stop the agent. After a `take` batch it answers the
    /// batch's last event. The error is for a value that cannot be encoded as JSON.
    pub async fn reply<R: serde::Serialize + ?Sized>(&mut self, value: &R) -> Result<()> {
        let Some((address, key)) = &self.request else {
            return Ok(());
        };
        let value = serde_json::value::to_raw_value(value).map_err(|e| Error::Encode {
            target: format!("the reply of agent '{}'", self.agent.name),
            message: e.to_string(),
        })?;
        let payload = request::response(key.as_deref(), &value, &address.correlation_id);
        let record = Record {
            value: Some(&payload),
            ..Record::default()
        };
        let topic: Arc<str> = Arc::from(address.reply_to.as_str());
        super::outbox::queue_reply(&self.worker.producer, &topic, record).await;
        Ok(())
    }

    /// Keeps the event being processed (or the `take` batch) unacknowledged past the
    /// loop: the stream moves on without acknowledging it, and it is acknowledged when
    /// [`Held::ack`] is called, once what it sent before `hold()` is delivered (send
    /// first, then hold: what is sent after `hold()` counts for the next event) (Python Faust's
    /// `stream.noack()` and `event.ack()`). Its partition commits nothing past it
    /// meanwhile, and a rebalance waits for it as for an event in flight (up to
    /// `drain_timeout`), so ack it soon; a `Held` dropped without `ack` leaves the
    /// event, and what came after it on its partition, to run again after a restart.
    pub fn hold(&mut self) -> Held {
        let events = self.current.len();
        let messages: Vec<Message> = (self.current.drain(..))
            .map(|(message, started)| {
                self.sensors
                    .each(|s| s.event_end(self.agent.name, started.elapsed()));
                message
            })
            .collect();
        if events == 0 {
            warn!(
                agent = self.agent.name,
                "hold() with no event being processed: nothing is held"
            );
        }
        Held {
            pending: self.outbox.take_pending(),
            messages,
            outbox: self.outbox.clone(),
        }
    }

    /// Sends the event being processed as it came (its key, value and headers) to
    /// `target`, a topic, an agent by its name, or a channel: Python Faust's
    /// `event.forward(topic)`. Queued like [`crate::send`]: the event is acknowledged
    /// once the broker has the copy. After a `take` batch it forwards every event of
    /// the batch, in order.
    pub async fn forward(&mut self, target: &str) -> Result<()> {
        for (message, _) in &self.current {
            let record = Record {
                key: message.key.as_deref(),
                value: message.payload.as_deref(),
                headers: &message.headers,
                ..Record::default()
            };
            super::outbox::queue_to(&self.worker, target, record).await?;
        }
        Ok(())
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
            self.request = None;
        }
        loop {
            // An event the agent failed on, to run again first: it began already.
            let replayed = self.handback.next_replay();
            let fresh = replayed.is_none();
            let mut message = if let Some(message) = replayed {
                message
            } else {
                let message = {
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
                message
            };
            let payload = message.payload.take();
            let bytes = payload.as_deref().unwrap_or_default();
            // A request (agent RPC) wrapped in Faust's record is decoded from inside it;
            // forwarded, it stays whole, so the agent downstream can reply.
            let (address, body) = match request::request(&message.headers, bytes) {
                Some(found) => (Some(found.address), found.unwrapped.unwrap_or(bytes)),
                None => (None, bytes),
            };
            let lineage = self.lineage(&message, address.is_some());
            let relaying = self
                .relay
                .as_ref()
                .is_some_and(|r| r.topic != message.topic);
            if let (true, false, Some(lineage)) = (fresh, relaying, &lineage) {
                if self.applied(&message, lineage) {
                    message.ack();
                    continue;
                }
            }
            let relay = self.relay.as_mut().filter(|_| relaying);
            let parsed = match relay {
                Some(relay) => match relay
                    .key
                    .as_mut()
                    .map(|key| guarded(|| key(body)))
                    .transpose()
                {
                    Ok(key) => {
                        if !self.relay(message, key, payload, lineage).await {
                            return None;
                        }
                        continue;
                    }
                    Err(error) => Err(error),
                },
                None => guarded(|| (self.parse)(body)),
            };
            // The message stays whole: to be run again, dead-lettered or forwarded.
            message.payload = payload;
            match parsed {
                Ok(Some(value)) => {
                    let mut position = message.position();
                    position.lineage = lineage;
                    event::set(&self.slot, Some(position));
                    self.request = address.map(|address| (address, message.key.clone()));
                    let event = Event {
                        value,
                        key: message.key.clone(),
                        topic: message.topic.clone(),
                        partition: message.partition,
                        offset: message.offset,
                        timestamp: message.timestamp,
                        headers: message.headers.clone(),
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
                    if !self
                        .bury(&message, message.payload.as_deref(), &error)
                        .await
                    {
                        return None; // stopping: left unacknowledged, for the next start
                    }
                    message.ack();
                }
            }
        }
    }

    /// The lineage of `message` for this agent (see `origin`): none when origins are off,
    /// for agents whose actors share a partition (their events finish out of order), for
    /// requests (an ask replayed must be answered again) and for channels.
    fn lineage(&self, message: &Message, request: bool) -> Option<Arc<Lineage>> {
        let kept = self.worker.config.origin_headers
            && self.agent.concurrency <= 1
            && !request
            && message.partition != event::CHANNEL_PARTITION;
        kept.then(|| {
            Arc::new(Lineage::of(
                self.agent.name,
                &message.topic,
                message.partition,
                message.offset,
                event::origin_of(&message.headers),
            ))
        })
    }

    /// Whether this agent's tables hold `message`'s origin mark already: the message
    /// repeats one it applied (its sender ran an event again after a crash).
    fn applied(&self, message: &Message, lineage: &Lineage) -> bool {
        let (Some((key, mark)), Some(tables)) = (lineage.applied(), &self.worker.tables) else {
            return false;
        };
        let applied = tables.applied(message.partition, key, mark);
        if applied {
            debug!(
                agent = self.agent.name,
                event = %message.position(),
                "skipping a repeat of a record already applied"
            );
            self.sensors
                .each(|s| s.repeat_skipped(self.agent.name, &message.topic, message.partition));
        }
        applied
    }

    /// Sends an event on to the relay topic (with `key`, or its own); it is acknowledged
    /// once the broker has it. A send that cannot be queued is retried, so nothing is
    /// lost. Returns false if the worker began stopping first.
    async fn relay(
        &mut self,
        message: Message,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        lineage: Option<Arc<Lineage>>,
    ) -> bool {
        let Some(relay) = &self.relay else {
            return true;
        };
        let topic = relay.topic.clone();
        let origin = lineage.map(|l| event::origin_header(&l, &topic));
        let headers = event::with_origin(&message.headers, origin);
        loop {
            let record = Record {
                key: key.as_deref().or(message.key.as_deref()),
                value: payload.as_deref(),
                partition: None,
                headers: &headers,
                // Event time travels with the event, for windows downstream.
                timestamp: message.timestamp,
            };
            let queued = Instant::now();
            match self
                .worker
                .producer
                .enqueue_async(&topic, record, true)
                .await
            {
                Ok(delivery) => {
                    self.outbox.add(Pending {
                        topic,
                        queued,
                        delivery,
                        essential: true,
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

    /// Copies an undecodable message to the dead-letter topic, if there is one (see
    /// [`DeadLetters::bury`]). Returns false if the worker began stopping first.
    async fn bury(&mut self, message: &Message, payload: Option<&[u8]>, error: &str) -> bool {
        match self.dead_letters.clone() {
            Some(dead) => {
                dead.bury(self.agent.name, message, payload, error, &mut self.stopping)
                    .await
            }
            None => true,
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

/// An event kept unacknowledged past the loop ([`Stream::hold`]).
#[must_use = "a held event is acknowledged by `ack()`; dropped, it runs again after a restart"]
pub struct Held {
    pending: Vec<Pending>,
    messages: Vec<Message>,
    outbox: Outbox,
}

impl Held {
    /// Acknowledges the held event, once what it sent is delivered.
    pub fn ack(mut self) {
        let (pending, messages) = (
            std::mem::take(&mut self.pending),
            std::mem::take(&mut self.messages),
        );
        self.outbox.finish_with(pending, messages);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(message) = self.messages.first() {
            warn!(
                event = %message.position(),
                "a held event was dropped without ack(): it stays unacknowledged, so its \
                 partition commits nothing past it and it runs again after a restart"
            );
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let events: Vec<String> = self
            .messages
            .iter()
            .map(|m| m.position().to_string())
            .collect();
        f.debug_struct("Held").field("events", &events).finish()
    }
}

impl<T> Drop for Stream<T> {
    /// An actor that returns, fails or panics leaves its events to its supervisor, which
    /// acknowledges them, or on a failure acts by the agent's `on_error` and `retries`.
    fn drop(&mut self) {
        let mut ended = self
            .handback
            .ended
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        ended.append(&mut self.current);
    }
}
