//! `Sink<U>`: what an agent emits to its declared sink topics.

use std::{sync::Arc, time::Instant};

use super::{
    outbox::{Outbox, Pending},
    ActorContext,
};
use crate::{
    event::{self, Slot},
    transport::producer::{Producer, Record},
    Error, Result,
};

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
            producer: actor.worker.producer.clone(),
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
