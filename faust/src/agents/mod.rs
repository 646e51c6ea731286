//! The AgentManager: starts each agent's actors, gives them their streams, and
//! supervises them. An actor that fails (returns an error or panics) is logged with the
//! event it was processing and restarted; one that fails too often stops the worker.
//! Tasks, timers and crontabs (`tasks`) run once the worker is ready.

pub mod cron;
mod outbox;
mod stream;
mod tasks;

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch, Mutex},
    task::JoinHandle,
};
use tracing::{error, info, warn};

pub use stream::{Sink, Stream, ERROR_HEADER, OMITTED_HEADER};
pub use tasks::{Schedule, TaskDescriptor, TimerDescriptor};

use crate::{
    app::App,
    codec::{Decode, Encode},
    event::{self, Slot},
    registry::BoxFuture,
    sensors::Sensors,
    transport::{consumer::Routes, producer::Producer},
    Error, Result,
};
use outbox::Outbox;
use stream::{DeadLetters, SharedInbox};

/// What `#[faust::agent]` registers.
#[derive(Debug)]
pub struct AgentDescriptor {
    pub name: &'static str,
    /// Source topics; empty means the agent's own topic, `{app_id}-{name}`.
    pub topics: &'static [&'static str],
    pub sinks: &'static [&'static str],
    /// Names of the agent's `group_by` repartition topics (see [`Stream::group_by`]).
    pub group_by: &'static [&'static str],
    /// Topics the agent's stream is forwarded through (see [`Stream::through`]).
    pub through: &'static [&'static str],
    pub concurrency: usize,
    /// The codec's and the value type's names, for `agents` listings.
    pub codec: &'static str,
    pub value_type: &'static str,
    pub location: &'static str,
    pub run: fn(ActorContext) -> BoxFuture<Result<()>>,
}

inventory::collect!(AgentDescriptor);

impl AgentDescriptor {
    /// The topics this agent consumes in the app `app_id`: its own, then those its
    /// stream is repartitioned or forwarded through.
    pub fn source_topics(&self, app_id: &str) -> Vec<String> {
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
    pub fn sink_topics(&self, app_id: &str) -> Vec<String> {
        self.sinks.iter().map(|t| topic_name(t, app_id)).collect()
    }

    /// The internal topic of the agent's `group_by(name, ...)`.
    pub fn repartition_topic(&self, app_id: &str, name: &str) -> String {
        format!("{app_id}-{}-{name}-repartition", self.name)
    }
}

/// A topic name as declared, with `{app_id}` replaced by the app's id.
pub fn topic_name(declared: &str, app_id: &str) -> String {
    declared.replace("{app_id}", app_id)
}

/// What one run of an agent actor receives; the macro turns it into the agent's arguments.
pub struct ActorContext {
    agent: &'static AgentDescriptor,
    app_id: Arc<str>,
    inbox: SharedInbox,
    sinks: Arc<[String]>,
    slot: Slot,
    producer: Producer,
    sensors: Sensors,
    stopping: watch::Receiver<bool>,
    dead_letters: Option<DeadLetters>,
    outbox: Outbox,
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

/// How often an actor may fail before the worker gives up on it.
#[derive(Debug, Clone, Copy)]
pub struct RestartLimit {
    pub failures: usize,
    pub within: Duration,
}

impl Default for RestartLimit {
    fn default() -> Self {
        RestartLimit {
            failures: 10,
            within: Duration::from_secs(10),
        }
    }
}

/// The running actors of every agent.
pub(crate) struct AgentManager {
    actors: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    stopping: watch::Sender<bool>,
}

impl AgentManager {
    /// Starts every agent's actors and returns the consumer's routes to their inboxes.
    /// A supervisor that gives up reports on `fatal`.
    pub(crate) fn start(
        app: &App,
        producer: &Producer,
        sensors: &Sensors,
        fatal: &mpsc::UnboundedSender<Error>,
    ) -> (AgentManager, Routes) {
        let mut routes = Routes::default();
        let mut actors = Vec::new();
        let (stopping, stop_signal) = watch::channel(false);
        let dead_letters = app
            .config()
            .dead_letter_topic
            .as_ref()
            .map(|topic| DeadLetters {
                topic: Arc::from(topic.as_str()),
                producer: producer.clone(),
            });
        for &agent in &app.registry().agents {
            let sinks: Arc<[String]> = agent.sink_topics(&app.config().id).into();
            let mut inboxes = Vec::new();
            for index in 0..agent.concurrency.max(1) {
                let (inbox, messages) = mpsc::unbounded_channel();
                inboxes.push(inbox);
                let supervisor = Supervisor {
                    agent,
                    app_id: Arc::from(app.config().id.as_str()),
                    index,
                    inbox: Arc::new(Mutex::new(messages)),
                    sinks: sinks.clone(),
                    producer: producer.clone(),
                    sensors: sensors.clone(),
                    limit: app.config().restart_limit,
                    fatal: fatal.clone(),
                    stopping: stop_signal.clone(),
                    dead_letters: dead_letters.clone(),
                };
                actors.push(tokio::spawn(supervisor.run()));
            }
            let topics = agent.source_topics(&app.config().id);
            info!(agent = agent.name, topics = ?topics, concurrency = inboxes.len(), "agent started");
            for topic in &topics {
                routes.add(topic, agent.name, inboxes.clone());
            }
        }
        let manager = AgentManager {
            actors,
            tasks: Vec::new(),
            stopping,
        };
        (manager, routes)
    }

    /// Ends every stream after the event its actor is processing, without waiting.
    pub(crate) fn signal_stop(&self) {
        self.tasks.iter().for_each(JoinHandle::abort);
        self.stopping.send_replace(true);
    }

    /// Ends every stream after the event its actor is processing, and waits for the
    /// actors to return.
    pub(crate) async fn stop(self, timeout: Duration) {
        self.signal_stop();
        let all = async {
            for actor in self.actors {
                let _ = actor.await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            warn!(
                ?timeout,
                "some agent actors did not finish their event in time"
            );
        }
    }

    /// Starts the tasks, timers and crontabs; they stop with the agents.
    pub(crate) fn start_tasks(&mut self, app: &App) {
        let registry = app.registry();
        self.tasks = tasks::start(&registry.tasks, &registry.timers);
    }
}

struct Supervisor {
    agent: &'static AgentDescriptor,
    app_id: Arc<str>,
    index: usize,
    inbox: SharedInbox,
    sinks: Arc<[String]>,
    producer: Producer,
    sensors: Sensors,
    limit: RestartLimit,
    fatal: mpsc::UnboundedSender<Error>,
    stopping: watch::Receiver<bool>,
    dead_letters: Option<DeadLetters>,
}

impl Supervisor {
    /// Runs the actor, restarting it when it fails, then waits until what it sent is
    /// delivered (and its events acknowledged).
    async fn run(self) {
        let (outbox, acker) = Outbox::start(self.producer.clone(), self.fatal.clone());
        self.supervise(&outbox).await;
        drop(outbox);
        let _ = acker.await;
    }

    async fn supervise(&self, outbox: &Outbox) {
        let mut failures: VecDeque<Instant> = VecDeque::new();
        loop {
            let slot = Slot::default();
            let context = ActorContext {
                agent: self.agent,
                app_id: self.app_id.clone(),
                inbox: self.inbox.clone(),
                sinks: self.sinks.clone(),
                slot: slot.clone(),
                producer: self.producer.clone(),
                sensors: self.sensors.clone(),
                stopping: self.stopping.clone(),
                dead_letters: self.dead_letters.clone(),
                outbox: outbox.clone(),
            };
            let run = tokio::spawn(event::scope(slot.clone(), (self.agent.run)(context)));
            let failure = match run.await {
                Ok(Ok(())) if *self.stopping.borrow() => return,
                Ok(Ok(())) => {
                    let inbox = self.inbox.lock().await;
                    if inbox.is_closed() && inbox.is_empty() {
                        return;
                    }
                    "the agent returned before its stream ended".to_owned()
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e)),
                Err(_) => return, // cancelled: the runtime is going away
            };
            self.sensors
                .each(|s| s.agent_error(self.agent.name, &failure));
            let at = event::get(&slot).map_or_else(
                || "before its first event".to_owned(),
                |p| format!("at {p}"),
            );
            error!(
                agent = self.agent.name,
                actor = self.index,
                error = %failure,
                "agent failed {at}; the event is acknowledged and the actor restarted"
            );
            let now = Instant::now();
            failures.push_back(now);
            while failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.limit.within)
            {
                failures.pop_front();
            }
            if failures.len() > self.limit.failures {
                let _ = self.fatal.send(Error::AgentCrashLoop {
                    agent: self.agent.name.to_owned(),
                    restarts: failures.len(),
                    window: self.limit.within,
                    last_error: failure,
                });
                return;
            }
        }
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => panic_text(payload.as_ref()),
        Err(e) => e.to_string(),
    }
}

/// What a panic said, from its payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}
