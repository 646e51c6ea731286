//! Operators that change a stream before the loop: `filter`, `map`, `enumerate`, and
//! repartitioning with `group_by` and `through`.

use std::sync::Arc;

use serde::Serialize;

use super::stream::{Parse, Rekey, Relay, Stream};
use crate::{codec::DecodeError, descriptor::topic_name, Error, Result};

impl<T: 'static> Stream<T> {
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
    /// keyed by `key(&value)` (written as `faust::send` writes keys, or as the agent's
    /// `key_codec` says), to the internal topic
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
        let topic = self.agent.repartition_topic(&self.worker.config.id, name);
        if !self.agent.group_by.contains(&name) {
            return Err(Error::Config(format!(
                "agent '{}' calls group_by(\"{name}\") but does not declare it; add \
                 `group_by = \"{name}\"` to its #[faust::agent(...)] so that the worker \
                 creates and reads the topic '{topic}'",
                self.agent.name,
            )));
        }
        let codec = self.agent.key_codec;
        let key = move |bytes: &[u8]| {
            codec
                .encode(&key(&decode(bytes)?))
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
        let topic = topic_name(topic, &self.worker.config.id);
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
            worker: self.worker.clone(),
            inbox: self.inbox.clone(),
            parse: wrap(parse),
            decode: None,
            relay: self.relay.take(),
            current: std::mem::take(&mut self.current),
            slot: self.slot.clone(),
            sensors: self.sensors.clone(),
            stopping: self.stopping.clone(),
            dead_letters: self.dead_letters.clone(),
            outbox: self.outbox.clone(),
            handback: self.handback.clone(),
            request: self.request.take(),
        }
    }
}
