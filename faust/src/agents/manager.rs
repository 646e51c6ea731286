use std::{
    collections::{HashMap, VecDeque},
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
    panic_message, tasks, ActorContext, AgentDescriptor, Handback, OnError, SharedInbox,
};
use crate::{
    config::{Config, RestartLimit},
    context::WorkerContext,
    descriptor::{TaskDescriptor, TimerDescriptor},
    event::{self, Message, Slot},
    sensors::Sensors,
    transport::{
        channel::Channels,
        consumer::{Inbox, Isolated, Readers, Routes},
    },
    Error,
};

/// The actors' tasks: started with the agents, and (isolated partitions) as partitions
/// come.
type Actors = Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>;

/// The running actors of every agent.
pub(crate) struct AgentManager {
    actors: Actors,
    tasks: Vec<JoinHandle<()>>,
    stopping: watch::Sender<bool>,
    worker: Arc<WorkerContext>,
}

impl AgentManager {
    /// Starts every agent's actors and returns the consumer's routes to their inboxes
    /// (those of the app's channels go to the worker context).
    /// A supervisor that gives up reports on `fatal`.
    /// Their code runs inside `worker`.
    pub(crate) fn start(
        config: &Config,
        agents: &[&'static AgentDescriptor],
        worker: &Arc<WorkerContext>,
        sensors: &Sensors,
        fatal: &mpsc::UnboundedSender<Error>,
    ) -> (AgentManager, Routes) {
        let (mut routes, mut channels) = (Routes::default(), Routes::default());
        let actors: Actors = Arc::default();
        let (stopping, stop_signal) = watch::channel(false);
        let dead_letters = config.dead_letter_topic.as_ref().map(|topic| DeadLetters {
            topic: Arc::from(topic.as_str()),
            producer: worker.producer.clone(),
        });
        // Actors are spawned from the consumer's thread too (isolated partitions).
        let runtime = tokio::runtime::Handle::current();
        for &agent in agents {
            // A sink may name another agent (its topic) or a channel.
            let sinks: Arc<[Arc<str>]> = agent
                .sink_topics(&config.id)
                .iter()
                .map(|sink| worker.topic(sink))
                .collect();
            let spawn = {
                // Weak: the routes that keep this (a channel's, in the worker context)
                // must not keep the worker context alive.
                let worker = Arc::downgrade(worker);
                let (sensors, fatal) = (sensors.clone(), fatal.clone());
                let (stopping, dead_letters) = (stop_signal.clone(), dead_letters.clone());
                let (actors, runtime, limit) =
                    (actors.clone(), runtime.clone(), config.restart_limit);
                move |index: usize| -> Inbox {
                    let (inbox, messages) = mpsc::unbounded_channel();
                    let Some(worker) = worker.upgrade() else {
                        return inbox; // the worker is gone: its receiver too, so it is closed
                    };
                    let supervisor = Supervisor {
                        agent,
                        worker,
                        index,
                        inbox: Arc::new(Mutex::new(messages)),
                        sinks: sinks.clone(),
                        sensors: sensors.clone(),
                        limit,
                        fatal: fatal.clone(),
                        stopping: stopping.clone(),
                        dead_letters: dead_letters.clone(),
                    };
                    let mut actors = actors.lock().unwrap_or_else(|e| e.into_inner());
                    actors.retain(|actor| !actor.is_finished());
                    actors.push(runtime.spawn(supervisor.run()));
                    inbox
                }
            };
            let topics = agent.source_topics(&config.id);
            let readers = match agent.isolated_partitions {
                true => {
                    info!(agent = agent.name, topics = ?topics, "agent started, an actor per partition");
                    let isolated = Isolated::new(agent.name, move |partition| {
                        spawn(partition.unsigned_abs() as usize)
                    });
                    Readers::Isolated(Arc::new(isolated))
                }
                false => {
                    let inboxes: Vec<Inbox> = (0..agent.concurrency.max(1)).map(spawn).collect();
                    info!(agent = agent.name, topics = ?topics, concurrency = inboxes.len(), "agent started");
                    Readers::Actors(inboxes)
                }
            };
            for topic in &topics {
                match config.channels.contains(topic) {
                    true => channels.add_readers(topic, agent.name, readers.clone()),
                    false => routes.add_readers(topic, agent.name, readers.clone()),
                }
            }
        }
        let channels = Channels::new(channels, worker.clock.clone(), worker.producer.clone());
        // Set once per worker: its agents start once.
        let _ = worker.channels.set(channels);
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
            // Until none is left: a partition assigned meanwhile spawns an isolated actor.
            loop {
                let actors =
                    std::mem::take(&mut *self.actors.lock().unwrap_or_else(|e| e.into_inner()));
                if actors.is_empty() {
                    break;
                }
                for actor in actors {
                    let _ = actor.await;
                }
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
        let handback = Arc::new(Handback::default());
        // Runs so far of each event being retried.
        let mut runs: HashMap<(Arc<str>, i32, i64), u32> = HashMap::new();
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
                handback: handback.clone(),
            };
            let run = self.worker.spawn(event::scope(
                slot.clone(),
                outbox::scope(outbox.clone(), (self.agent.run)(context)),
            ));
            let outcome = run.await;
            let mut ended: Vec<Message> = handback
                .take_ended()
                .into_iter()
                .map(|(message, started)| {
                    self.sensors
                        .each(|s| s.event_end(self.agent.name, started.elapsed()));
                    message
                })
                .collect();
            let failure = match outcome {
                Ok(Ok(())) if *self.stopping.borrow() => {
                    outbox.finish(ended);
                    return;
                }
                Ok(Ok(())) => {
                    outbox.finish(std::mem::take(&mut ended));
                    let inbox = self.inbox.lock().await;
                    if inbox.is_closed() && inbox.is_empty() {
                        return;
                    }
                    "the agent returned before its stream ended".to_owned()
                }
                // Not the agent's fault: its event is the next owner's now.
                Ok(Err(e @ Error::Revoked { .. })) => {
                    outbox.finish(std::mem::take(&mut ended));
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
            if !self
                .handle_failed(ended, &failure, &at, &mut runs, &handback, outbox)
                .await
            {
                return;
            }
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

    /// Acts on the events an actor failed on, by the agent's `retries` and `on_error`.
    /// Returns false if the actor must not restart (the worker stops).
    async fn handle_failed(
        &self,
        ended: Vec<Message>,
        failure: &str,
        at: &str,
        runs: &mut HashMap<(Arc<str>, i32, i64), u32>,
        handback: &Handback,
        outbox: &Outbox,
    ) -> bool {
        let (agent, actor) = (self.agent.name, self.index);
        let key = |m: &Message| (m.topic.clone(), m.partition, m.offset);
        let run = ended
            .iter()
            .map(|m| runs.get(&key(m)).copied().unwrap_or(1))
            .max()
            .unwrap_or(1);
        if !ended.is_empty() && run <= self.agent.retries {
            error!(agent, actor, error = %failure, "agent failed {at}; the event runs again ({run} of {} retries)", self.agent.retries);
            let mut replay = handback.replay.lock().unwrap_or_else(|e| e.into_inner());
            for message in ended.into_iter().rev() {
                runs.insert(key(&message), run + 1);
                replay.push_front(message);
            }
            return true;
        }
        for message in &ended {
            runs.remove(&key(message));
        }
        match self.agent.on_error {
            OnError::Skip => {
                error!(agent, actor, error = %failure, "agent failed {at}; the event is acknowledged and the actor restarted");
                outbox.finish(ended);
                true
            }
            OnError::DeadLetter => {
                error!(agent, actor, error = %failure, "agent failed {at}; the event goes to the dead-letter topic and the actor restarts");
                let Some(dead) = &self.dead_letters else {
                    outbox.finish(ended); // refused at start: cannot happen
                    return true;
                };
                let mut stopping = self.stopping.clone();
                for message in &ended {
                    let payload = message.payload.as_deref();
                    if !dead
                        .bury(agent, message, payload, failure, &mut stopping)
                        .await
                    {
                        return false; // stopping: left unacknowledged, for the next start
                    }
                }
                outbox.finish(ended);
                true
            }
            OnError::Stop => {
                error!(agent, actor, error = %failure, "agent failed {at}; stopping the worker with the event unacknowledged");
                let _ = self.fatal.send(Error::Worker(format!(
                    "agent '{agent}' failed {at} ({failure}), and its on_error is \"stop\": \
                     the event runs again after a restart"
                )));
                false
            }
        }
    }
}
