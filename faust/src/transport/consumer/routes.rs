//! Where the consumer hands each message: for every agent reading its topic, the inbox
//! of the actor for its partition (of its own actor, for an agent with
//! `isolated_partitions`, started at the partition's first message and stopped when the
//! partition is revoked).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc::UnboundedSender;
use tracing::info;

use super::TopicPartition;
use crate::event::Message;

/// One agent actor's inbox.
pub(crate) type Inbox = UnboundedSender<Message>;

/// The actors of one agent reading a topic.
#[derive(Clone)]
pub(crate) enum Readers {
    /// A fixed set: partition `p` goes to actor `p % n`.
    Actors(Vec<Inbox>),
    /// One actor per partition (`isolated_partitions`).
    Isolated(Arc<Isolated>),
}

/// The per-partition actors of an agent with `isolated_partitions`: one for each
/// partition of each topic it reads, as in Faust.
pub(crate) struct Isolated {
    agent: &'static str,
    actors: Mutex<HashMap<(Arc<str>, i32), Inbox>>,
    /// Starts the actor of a partition and returns its inbox.
    start: Box<dyn Fn(i32) -> Inbox + Send + Sync>,
}

impl Isolated {
    pub(crate) fn new(
        agent: &'static str,
        start: impl Fn(i32) -> Inbox + Send + Sync + 'static,
    ) -> Isolated {
        Isolated {
            agent,
            actors: Mutex::default(),
            start: Box::new(start),
        }
    }

    /// The inbox of the actor of `topic`'s `partition`, started now if it has none.
    fn inbox(&self, topic: &Arc<str>, partition: i32) -> Inbox {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        actors
            .entry((topic.clone(), partition))
            .or_insert_with(|| {
                info!(agent = self.agent, %topic, partition, "isolated partition: actor started");
                (self.start)(partition)
            })
            .clone()
    }

    /// The partitions of `revoked` that this agent reads lose their actors: each ends
    /// once it has gone through what is in its inbox (events of a revoked partition are
    /// dropped unstarted, for the new owner).
    pub(crate) fn release(&self, revoked: &[TopicPartition]) {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        for TopicPartition { topic, partition } in revoked {
            if actors.remove(&(topic.clone(), *partition)).is_some() {
                info!(agent = self.agent, %topic, partition, "isolated partition revoked: its actor stops");
            }
        }
    }
}

/// Where each topic's messages go: for every subscribed agent, its actors' inboxes.
#[derive(Default)]
pub(crate) struct Routes {
    pub(super) topics: HashMap<String, Route>,
}

pub(super) struct Route {
    pub(super) topic: Arc<str>,
    pub(super) agents: Vec<Readers>,
    /// The agents' names, for messages about the topic.
    pub(super) names: Vec<&'static str>,
}

impl Routes {
    /// Subscribes the agent `name`, whose actors read `inboxes`, to `topic`.
    #[cfg(test)]
    pub(crate) fn add(&mut self, topic: &str, name: &'static str, inboxes: Vec<Inbox>) {
        self.add_readers(topic, name, Readers::Actors(inboxes));
    }

    /// Subscribes the agent `name`, whose actors `readers` are, to `topic`.
    pub(crate) fn add_readers(&mut self, topic: &str, name: &'static str, readers: Readers) {
        let route = self
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| Route {
                topic: Arc::from(topic),
                agents: Vec::new(),
                names: Vec::new(),
            });
        route.agents.push(readers);
        route.names.push(name);
    }

    /// How many agents read `topic` (each owes a message of it one acknowledgement).
    pub(crate) fn readers(&self, topic: &str) -> Option<usize> {
        self.topics.get(topic).map(|route| route.agents.len())
    }

    /// Hands a message of `topic` (made by `message` from the topic's name) to the actor
    /// for `partition` of each agent reading the topic.
    pub(crate) fn deliver(
        &self,
        topic: &str,
        partition: i32,
        message: impl Fn(Arc<str>) -> Message,
    ) {
        let Some(route) = self.topics.get(topic) else {
            return;
        };
        for readers in &route.agents {
            // A closed inbox means the agent gave up and the worker is stopping: the
            // event stays unacknowledged and is read again after a restart.
            let _ = match readers {
                Readers::Actors(actors) => actors[partition.unsigned_abs() as usize % actors.len()]
                    .send(message(route.topic.clone())),
                Readers::Isolated(isolated) => isolated
                    .inbox(&route.topic, partition)
                    .send(message(route.topic.clone())),
            };
        }
    }

    /// The agents with `isolated_partitions`, each once.
    pub(crate) fn isolated(&self) -> Vec<Arc<Isolated>> {
        let mut found: Vec<Arc<Isolated>> = Vec::new();
        for readers in self.topics.values().flat_map(|r| &r.agents) {
            if let Readers::Isolated(isolated) = readers {
                if !found.iter().any(|f| Arc::ptr_eq(f, isolated)) {
                    found.push(isolated.clone());
                }
            }
        }
        found
    }

    pub(crate) fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.topics.keys().map(String::as_str).collect();
        topics.sort_unstable();
        topics
    }
}
