//! The AgentManager: starts each agent's actors, gives them their streams, and
//! supervises them. An actor that fails (returns an error or panics) is logged with the
//! event it was processing and restarted; one that fails too often stops the worker.
//! Tasks, timers and crontabs (`tasks`) run once the worker is ready.

mod dead_letters;
mod manager;
mod operators;
pub(crate) mod outbox;
mod sink;
mod stream;
mod tasks;

use std::sync::Arc;

use tokio::sync::watch;

pub(crate) use manager::AgentManager;
pub use sink::Sink;
pub use stream::{Held, Stream};

use crate::{
    codec::{Decode, Encode, KeyCodec},
    context::WorkerContext,
    descriptor::{topic_name, BoxFuture},
    event::{Message, Slot},
    sensors::Sensors,
    Result,
};
use dead_letters::DeadLetters;
use outbox::Outbox;
use stream::SharedInbox;

/// What `#[faust::agent]` registers.
#[derive(Debug)]
pub struct AgentDescriptor {
    /// The agent's name.
    pub name: &'static str,
    /// Source topics; empty means the agent's own topic, `{app_id}-{name}`.
    pub topics: &'static [&'static str],
    /// Topics its `Sink` writes to, as declared.
    pub sinks: &'static [&'static str],
    /// Names of the agent's `group_by` repartition topics (see [`Stream::group_by`]).
    pub group_by: &'static [&'static str],
    /// Topics the agent's stream is forwarded through (see [`Stream::through`]).
    pub through: &'static [&'static str],
    /// Actors running the agent's fn.
    pub concurrency: usize,
    /// One actor per topic partition, started with its first event and stopped when the
    /// partition is revoked (Python Faust's `isolated_partitions`), instead of
    /// `concurrency` actors.
    pub isolated_partitions: bool,
    /// What becomes of an event the agent failed on (returned an error or panicked),
    /// once `retries` are spent.
    pub on_error: OnError,
    /// How many times an event the agent failed on is run again (by the restarted
    /// actor, before any other event) before `on_error` applies.
    pub retries: u32,
    /// The codec's and the value type's names, for `agents` listings.
    pub codec: &'static str,
    /// How `group_by` writes the keys it repartitions by.
    pub key_codec: KeyCodec,
    /// The value type's name, for listings.
    pub value_type: &'static str,
    /// Where it is declared (`file:line`).
    pub location: &'static str,
    /// Runs one actor: the macro's wrapper around the user's fn.
    pub run: fn(ActorContext) -> BoxFuture<Result<()>>,
}

inventory::collect!(AgentDescriptor);

/// What becomes of an event an agent failed on (`#[faust::agent(on_error = "...")]`).
/// In every case the failure is logged with the event's position and counted, and the
/// actor restarts (within the worker's `restart_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Acknowledge it and go on (the default, as in Faust): a poison event cannot wedge
    /// its partition.
    Skip,
    /// Copy it to the app's `dead_letter_topic` (with the error in the `faust-error`
    /// header), then acknowledge it.
    DeadLetter,
    /// Stop the worker with the event unacknowledged: it runs again after a restart.
    Stop,
}

/// An actor's events, handed from its stream to its supervisor when the actor ends
/// (on error: to be retried, dead-lettered, skipped or kept, by the agent's policy).
#[derive(Default)]
pub(crate) struct Handback {
    /// The events the actor was processing when it ended.
    ended: std::sync::Mutex<Vec<(Message, std::time::Instant)>>,
    /// Events to run again before the inbox's next ones.
    replay: std::sync::Mutex<std::collections::VecDeque<Message>>,
}

impl Handback {
    fn take_ended(&self) -> Vec<(Message, std::time::Instant)> {
        std::mem::take(&mut *self.ended.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn next_replay(&self) -> Option<Message> {
        self.replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

impl AgentDescriptor {
    /// The topics this agent consumes in the app `app_id`: its own, then those its
    /// stream is repartitioned or forwarded through.
    pub(crate) fn source_topics(&self, app_id: &str) -> Vec<String> {
        let mut topics: Vec<String> = if self.topics.is_empty() {
            vec![format!("{app_id}-{}", self.name)]
        } else {
            self.topics.iter().map(|t| topic_name(t, app_id)).collect()
        };
        topics.extend(
            self.group_by
                .iter()
                .map(|n| self.repartition_topic(app_id, n)),
        );
        topics.extend(self.through.iter().map(|t| topic_name(t, app_id)));
        topics
    }

    /// The topics the agent's `Sink` writes to in the app `app_id`.
    pub(crate) fn sink_topics(&self, app_id: &str) -> Vec<String> {
        self.sinks.iter().map(|t| topic_name(t, app_id)).collect()
    }

    /// The internal topic of the agent's `group_by(name, ...)`.
    pub(crate) fn repartition_topic(&self, app_id: &str, name: &str) -> String {
        format!("{app_id}-{}-{name}-repartition", self.name)
    }
}

/// What one run of an agent actor receives; the macro turns it into the agent's arguments.
pub struct ActorContext {
    agent: &'static AgentDescriptor,
    /// The worker it runs in: its app id, producer and clock.
    worker: Arc<WorkerContext>,
    inbox: SharedInbox,
    sinks: Arc<[Arc<str>]>,
    slot: Slot,
    sensors: Sensors,
    stopping: watch::Receiver<bool>,
    dead_letters: Option<DeadLetters>,
    outbox: Outbox,
    handback: Arc<Handback>,
}

impl ActorContext {
    /// The actor's stream, decoding values with the codec `C`.
    pub fn stream<C: Decode<T>, T: 'static>(&self) -> Stream<T> {
        Stream::new(self, C::decode)
    }

    /// The actor's sink, encoding values with the codec `C`.
    pub fn sink<C: Encode<U>, U: ?Sized>(&self) -> Sink<U> {
        Sink::new(self, C::encode)
    }
}

pub(crate) fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => crate::error::panic_text(payload.as_ref()),
        Err(e) => e.to_string(),
    }
}
