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

use super::{
    dead_letters::DeadLetters,
    outbox::{self, Outbox},
    panic_message, tasks, ActorContext, AgentDescriptor, SharedInbox,
};
use crate::{
    config::{Config, RestartLimit},
    context::WorkerContext,
    descriptor::{TaskDescriptor, TimerDescriptor},
    event::{self, Slot},
    sensors::Sensors,
    transport::consumer::Routes,
    Error,
};

/// The running actors of every agent.
pub(crate) struct AgentManager {
    actors: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    stopping: watch::Sender<bool>,
    worker: Arc<WorkerContext>,
}

impl AgentManager {
    /// Starts every agent's actors and returns the consumer's routes to their inboxes.
    /// A supervisor that gives up reports on `fatal`.
    /// Their code runs inside `worker`.
    pub(crate) fn start(
        config: &Config,
        agents: &[&'static AgentDescriptor],
        worker: &Arc<WorkerContext>,
        sensors: &Sensors,
        fatal: &mpsc::UnboundedSender<Error>,
    ) -> (AgentManager, Routes) {
        let mut routes = Routes::default();
        let mut actors = Vec::new();
        let (stopping, stop_signal) = watch::channel(false);
        let dead_letters = config.dead_letter_topic.as_ref().map(|topic| DeadLetters {
            topic: Arc::from(topic.as_str()),
            producer: worker.producer.clone(),
        });
        for &agent in agents {
            let sinks: Arc<[Arc<str>]> = agent
                .sink_topics(&config.id)
                .into_iter()
                .map(Arc::from)
                .collect();
            let mut inboxes = Vec::new();
            for index in 0..agent.concurrency.max(1) {
                let (inbox, messages) = mpsc::unbounded_channel();
                inboxes.push(inbox);
                let supervisor = Supervisor {
                    agent,
                    worker: worker.clone(),
                    index,
                    inbox: Arc::new(Mutex::new(messages)),
                    sinks: sinks.clone(),
                    sensors: sensors.clone(),
                    limit: config.restart_limit,
                    fatal: fatal.clone(),
                    stopping: stop_signal.clone(),
                    dead_letters: dead_letters.clone(),
                };
                actors.push(tokio::spawn(supervisor.run()));
            }
            let topics = agent.source_topics(&config.id);
            info!(agent = agent.name, topics = ?topics, concurrency = inboxes.len(), "agent started");
            for topic in &topics {
                routes.add(topic, agent.name, inboxes.clone());
            }
        }
        let manager = AgentManager {
            actors,
            tasks: Vec::new(),
            stopping,
            worker: worker.clone(),
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
    pub(crate) fn start_tasks(
        &mut self,
        tasks: &[&'static TaskDescriptor],
        timers: &[&'static TimerDescriptor],
    ) {
        self.tasks = tasks::start(tasks, timers, &self.worker);
    }
}

struct Supervisor {
    agent: &'static AgentDescriptor,
    worker: Arc<WorkerContext>,
    index: usize,
    inbox: SharedInbox,
    sinks: Arc<[Arc<str>]>,
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
        let (outbox, acker) = Outbox::start(self.worker.producer.clone(), self.fatal.clone());
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
                worker: self.worker.clone(),
                inbox: self.inbox.clone(),
                sinks: self.sinks.clone(),
                slot: slot.clone(),
                sensors: self.sensors.clone(),
                stopping: self.stopping.clone(),
                dead_letters: self.dead_letters.clone(),
                outbox: outbox.clone(),
            };
            let run = self.worker.spawn(event::scope(
                slot.clone(),
                outbox::scope(outbox.clone(), (self.agent.run)(context)),
            ));
            let failure = match run.await {
                Ok(Ok(())) if *self.stopping.borrow() => return,
                Ok(Ok(())) => {
                    let inbox = self.inbox.lock().await;
                    if inbox.is_closed() && inbox.is_empty() {
                        return;
                    }
                    "the agent returned before its stream ended".to_owned()
                }
                // Not the agent's fault: its event is the next owner's now.
                Ok(Err(e @ Error::Revoked { .. })) => {
                    warn!(
                        agent = self.agent.name,
                        actor = self.index,
                        "{e}; the actor restarts"
                    );
                    continue;
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
