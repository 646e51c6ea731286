//! `Sink<U>`: what an agent emits to its declared sink topics (or channels).

use std::sync::Arc;

use super::{outbox, ActorContext};
use crate::{
    context::WorkerContext,
    event::{self, Slot},
    transport::producer::Record,
    Error, Result,
};

/// Forwards values an agent emits to its sink topics (`#[faust::agent(sink = ...)]`),
/// keyed like the event being processed so that partitioning is kept.
pub struct Sink<U: ?Sized> {
    agent: &'static str,
    topics: Arc<[Arc<str>]>,
    /// Its producer, and the app's channels among the sinks.
    worker: Arc<WorkerContext>,
    encode: fn(&U) -> Result<Vec<u8>, String>,
    slot: Slot,
}

impl<U: ?Sized> Sink<U> {
    pub(crate) fn new(actor: &ActorContext, encode: fn(&U) -> Result<Vec<u8>, String>) -> Self {
        Sink {
            agent: actor.agent.name,
            topics: actor.sinks.clone(),
            worker: actor.worker.clone(),
            encode,
            slot: actor.slot.clone(),
        }
    }

    /// Queues `value` for every sink topic, without waiting for the broker. The event
    /// being processed is acknowledged (its offset committed) only once the broker has
    /// every message it sent. Outside an event a failed delivery is logged.
    pub async fn send(&self, value: &U) -> Result<()> {
        let bytes = (self.encode)(value).map_err(|message| Error::Encode {
            target: format!("the sink of agent '{}'", self.agent),
            message,
        })?;
        let key = event::get(&self.slot).and_then(|p| p.key);
        for topic in self.topics.iter() {
            let record = Record {
                key: key.as_deref(),
                value: Some(&bytes),
                ..Record::default()
            };
            match self.worker.channel(topic)? {
                Some(channels) => {
                    outbox::queue_channel(channels, &self.worker.producer, topic, record)?;
                }
                None => outbox::queue(&self.worker.producer, topic, record).await?,
            }
        }
        Ok(())
    }
}
