//! Where the consumer hands each message: for every agent reading its topic, the inbox
//! of the actor for its partition.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::mpsc::UnboundedSender;

use crate::event::Message;

/// One agent actor's inbox.
pub(crate) type Inbox = UnboundedSender<Message>;

/// Where each topic's messages go: for every subscribed agent, its actors' inboxes.
#[derive(Default)]
pub(crate) struct Routes {
    pub(super) topics: HashMap<String, Route>,
}

pub(super) struct Route {
    pub(super) topic: Arc<str>,
    pub(super) agents: Vec<Vec<Inbox>>,
    /// The agents' names, for messages about the topic.
    pub(super) names: Vec<&'static str>,
}

impl Routes {
    /// Subscribes the agent `name`, whose actors read `inboxes`, to `topic`.
    pub(crate) fn add(&mut self, topic: &str, name: &'static str, inboxes: Vec<Inbox>) {
        let route = self
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| Route {
                topic: Arc::from(topic),
                agents: Vec::new(),
                names: Vec::new(),
            });
        route.agents.push(inboxes);
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
        for actors in &route.agents {
            let actor = &actors[partition.unsigned_abs() as usize % actors.len()];
            // A closed inbox means the agent gave up and the worker is stopping: the
            // event stays unacknowledged and is read again after a restart.
            let _ = actor.send(message(route.topic.clone()));
        }
    }

    pub(crate) fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.topics.keys().map(String::as_str).collect();
        topics.sort_unstable();
        topics
    }
}
