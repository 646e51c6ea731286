//! The Worker: the process-level runtime that drives an App's lifecycle.
//!
//! Start order: monitor, broker connection and topics (with the co-partitioning
//! check), producer, tables, web server, global tables, services, agents, consumer; "ready" is
//! logged once the first assignment's tables are recovered, and tasks start then. The
//! first SIGINT/SIGTERM starts a warm shutdown (stop fetching, let in-flight events
//! finish, commit, flush the producer); a second one exits at once. A fatal error stops
//! the worker the same way and is returned.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt as _;

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use crate::{
    agents::AgentManager,
    app::App,
    context::{Attached, WorkerContext, WorkerHandle},
    error::panic_text,
    leader::{self, Leadership},
    sensors::{Monitor, Phase, Sensors},
    service::Hooks,
    tables::{self, TableManager},
    time::Clock,
    transport::{broker::Broker, consumer::Consumer, producer::Producer, replies::ReplyTopic},
    web::WebServer,
    Error, Result,
};

/// How long shutdown waits for agents after their streams closed, and for the producer.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs an [`App`]: `Worker::new(app).run().await`, or [`Worker::run_until`] to stop
/// it from code (several workers can run in one process, each with its own state).
pub struct Worker {
    app: App,
    monitor: Arc<Monitor>,
    /// What the worker's handles see.
    attached: watch::Sender<Attached>,
}

/// What a started worker runs, until it shuts down.
struct Running {
    /// Held until shutdown ends: a second worker on this datadir stops at start.
    datadir: Option<std::fs::File>,
    broker: Broker,
    replies: Arc<ReplyTopic>,
    producer: Producer,
    tables: Arc<TableManager>,
    web: Option<WebServer>,
    agents: AgentManager,
    consumer: Consumer,
    closer: Option<(JoinHandle<()>, watch::Sender<bool>)>,
    services: Services,
    fatal: mpsc::UnboundedReceiver<Error>,
}

/// The app's services, started, with their background loops.
struct Services {
    worker: Arc<WorkerContext>,
    started: Vec<Arc<dyn Hooks>>,
    loops: Vec<JoinHandle<()>>,
}

impl Services {
    /// Runs each service's `on_start` in order, then spawns its `run` loop; a loop's
    /// error or panic is fatal. If one fails to start, those started are stopped.
    async fn start(
        services: &[Arc<dyn Hooks>],
        worker: &Arc<WorkerContext>,
        fatal: &mpsc::UnboundedSender<Error>,
    ) -> Result<Services> {
        let mut started = Services {
            worker: worker.clone(),
            started: Vec::new(),
            loops: Vec::new(),
        };
        for service in services {
            let name = service.name();
            let starting = AssertUnwindSafe(worker.scope(service.clone().start())).catch_unwind();
            let failed = match starting.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(panic) => Some(format!("it panicked: {}", panic_text(panic.as_ref()))),
            };
            if let Some(problem) = failed {
                started.stop().await;
                return Err(Error::Worker(format!(
                    "service '{name}' failed to start: {problem}"
                )));
            }
            info!(service = %name, "service started");
            started.started.push(service.clone());
        }
        started.loops = started
            .started
            .iter()
            .map(|service| {
                let (service, fatal) = (service.clone(), fatal.clone());
                worker.spawn(async move {
                    let name = service.name();
                    let outcome = AssertUnwindSafe(service.run()).catch_unwind().await;
                    let problem = match outcome {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(panic) => format!("it panicked: {}", panic_text(panic.as_ref())),
                    };
                    let _ =
                        fatal.send(Error::Worker(format!("service '{name}' failed: {problem}")));
                })
            })
            .collect();
        Ok(started)
    }

    /// Cancels the loops (and waits until they are gone), then runs each `on_stop` in
    /// reverse order.
    async fn stop(self) {
        for running in self.loops {
            running.abort();
            let _ = tokio::time::timeout(STOP_TIMEOUT, running).await;
        }
        for service in self.started.iter().rev() {
            let name = service.name();
            let stopping =
                AssertUnwindSafe(self.worker.scope(service.clone().stop())).catch_unwind();
            match tokio::time::timeout(STOP_TIMEOUT, stopping).await {
                Ok(Ok(Ok(()))) => info!(service = %name, "service stopped"),
                Ok(Ok(Err(e))) => error!(service = %name, error = %e, "a service failed to stop"),
                Ok(Err(panic)) => {
                    error!(service = %name, panic = %panic_text(panic.as_ref()), "a service panicked while stopping")
                }
                Err(_) => warn!(service = %name, "a service did not stop within 30 s"),
            }
        }
    }
}

impl Worker {
    /// A worker for `app`.
    pub fn new(app: App) -> Self {
        Worker {
            app,
            monitor: Arc::new(Monitor::default()),
            attached: watch::Sender::default(),
        }
    }

    /// A way into this worker for code outside it, such as the handlers of your own
    /// web server: see [`WorkerHandle`].
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle::new(self.attached.subscribe())
    }

    /// The worker's counters.
    pub fn monitor(&self) -> Arc<Monitor> {
        self.monitor.clone()
    }

    /// Runs until SIGINT/SIGTERM or a fatal error; returns the fatal error, if any. A
    /// second signal during the warm shutdown exits the process at once.
    pub async fn run(self) -> Result<()> {
        // Listening from the start: a signal during start-up (topics, global tables) ends
        // in a warm shutdown once the worker is up, instead of killing it halfway.
        let mut signals = Signals::listen();
        let stop = async move {
            let signal = signals.next().await;
            info!(signal, "warm shutdown: finishing the events being processed (send the signal again to exit at once)");
            tokio::spawn(async move {
                let signal = signals.next().await;
                error!(signal, "second signal: exiting immediately");
                std::process::exit(130);
            });
        };
        self.run_until(stop).await
    }

    /// Runs until `stop` completes (then shuts down warmly) or a fatal error.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<()> {
        let Worker {
            app,
            monitor,
            attached,
        } = self;
        let mut running = match start(&app, &monitor).await {
            Ok(running) => running,
            Err(e) => {
                attached.send_replace(Attached::Stopped);
                return Err(e);
            }
        };
        attached.send_replace(Attached::Running(running.services.worker.clone()));
        let mut stop = std::pin::pin!(stop);
        let outcome = async {
            let mut ready = running.consumer.ready.clone();
            tokio::select! {
                _ = ready.wait_for(|r| *r) => {}
                () = &mut stop => return Ok(()),
                Some(e) = running.fatal.recv() => return Err(e),
            }
            monitor.set_phase(Phase::Ready);
            info!(app = %app.config().id, "worker ready");
            let registry = app.registry();
            running
                .agents
                .start_tasks(&registry.tasks, &registry.timers);
            tokio::select! {
                () = &mut stop => Ok(()),
                Some(e) = running.fatal.recv() => Err(e),
            }
        }
        .await;
        if let Err(e) = &outcome {
            error!(error = %e, "fatal error: stopping the worker");
        }
        monitor.set_phase(Phase::Stopping);
        attached.send_replace(Attached::Stopped);
        shutdown(running).await;
        info!(counters = %monitor.counters(), "worker stopped");
        outcome
    }
}

/// Starts every service of `app`, in order; the consumer joins the group last.
async fn start(app: &App, monitor: &Arc<Monitor>) -> Result<Running> {
    let config = app.config();
    let registry = app.registry();
    registry.ensure_runnable()?;
    registry.check_dead_letters(config.dead_letter_topic.as_deref())?;
    // Before anything else: a second worker on this datadir stops here.
    let datadir = tables::lock_datadir(config, &registry.tables)?;
    info!(app = %config.id, agents = registry.agents.len(), "starting worker");
    let sensors = Sensors::new(monitor.clone(), app.sensors());
    monitor.register(
        registry.agents.iter().map(|a| a.name),
        registry.tables.iter().map(|t| t.name),
    );

    let broker = Broker::connect(config).await?;
    let partitions = broker.ensure_topics(&app.topics(), config).await?;
    app.check_copartitioning(&partitions)?;
    let producer = Producer::connect(
        &broker,
        &format!("{}-producer", config.id),
        config.producer_request_timeout,
        sensors.clone(),
    )?;
    let clock = Clock::system();
    let tables = Arc::new(TableManager::new(
        config,
        &registry.tables,
        &producer,
        &sensors,
        broker.connection(),
        &clock,
        broker.health(),
    )?);
    let leadership = Leadership::default();
    let shared_config = Arc::new(config.clone());
    let worker = Arc::new(WorkerContext {
        channels: Default::default(),
        replies: ReplyTopic::kafka(broker.clone(), shared_config.clone()),
        config: shared_config,
        producer: producer.clone(),
        agents: app.agent_targets(),
        tables: Some(tables.clone()),
        clock,
        leader: leadership.clone(),
    });
    tables.on_recovered(on_recover_hooks(&worker));
    if !config.web_enabled && !registry.pages.is_empty() {
        warn!(
            pages = registry.pages.len(),
            "the web server is off (--without-web), so the app's pages are not served"
        );
    }
    let web = match config.web_enabled {
        true => Some(
            WebServer::start(
                config,
                (&registry.agents, &registry.pages),
                broker.connection(),
                monitor.clone(),
                worker.clone(),
                tables.clone(),
            )
            .await?,
        ),
        false => None,
    };
    match (&web, config.standby_replicas) {
        (_, 0) => {}
        (Some(web), replicas) => tables.start_standbys(config.group(), web.claims(), replicas)?,
        (None, replicas) => warn!(
            replicas,
            "standby replicas are placed through the web server's directory of who holds \
             what; with the web server off (--without-web), none are kept"
        ),
    }
    // Recovery reads whole changelogs: off the async threads.
    let recovering = tables.clone();
    tokio::task::spawn_blocking(move || recovering.start_global_tables())
        .await
        .map_err(|e| Error::Worker(format!("global table recovery stopped: {e}")))??;

    let closer = start_window_closer(&tables, &worker);
    let (fatal_sender, fatal) = mpsc::unbounded_channel();
    let services = match Services::start(app.services(), &worker, &fatal_sender).await {
        Ok(services) => services,
        Err(e) => {
            worker.replies.stop(); // a service's on_start may have asked
            return Err(e);
        }
    };
    let (agents, routes) =
        AgentManager::start(config, &registry.agents, &worker, &sensors, &fatal_sender);
    let consumer = match Consumer::start(
        config,
        &broker,
        routes,
        (&leader::topic(&config.id), leadership),
        sensors,
        tables.clone(),
        fatal_sender,
    ) {
        Ok(consumer) => consumer,
        Err(e) => {
            agents.stop(STOP_TIMEOUT).await;
            services.stop().await;
            worker.replies.stop();
            return Err(e);
        }
    };
    Ok(Running {
        datadir,
        replies: worker.replies.clone(),
        broker,
        producer,
        tables,
        web,
        agents,
        consumer,
        closer,
        services,
        fatal,
    })
}

/// Runs a table's `on_recover` inside the worker, blocking the recovery thread that
/// calls it until it is done (so the partitions' events wait for it). A hook that fails
/// is logged; processing goes on.
fn on_recover_hooks(worker: &Arc<WorkerContext>) -> tables::RecoveredHook {
    // Weak: the worker context holds the table manager, which holds this hook.
    let worker = Arc::downgrade(worker);
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |table| {
        let (Some(hook), Some(worker)) = (table.on_recover, worker.upgrade()) else {
            return;
        };
        let running = AssertUnwindSafe(worker.scope(hook())).catch_unwind();
        match runtime.block_on(running) {
            Ok(Ok(())) => info!(table = table.name, "on_recover ran"),
            Ok(Err(e)) => error!(table = table.name, error = %e, "on_recover failed"),
            Err(panic) => {
                error!(table = table.name, panic = %panic_text(panic.as_ref()), "on_recover panicked")
            }
        }
    })
}

/// Closes windowed tables' windows on time, inside the worker (callbacks may send).
fn start_window_closer(
    tables: &TableManager,
    worker: &Arc<WorkerContext>,
) -> Option<(JoinHandle<()>, watch::Sender<bool>)> {
    let windowed = tables.windowed();
    if windowed.is_empty() {
        return None;
    }
    let (stop, stopping) = watch::channel(false);
    let task = worker.spawn(tables::close_windows(windowed, stopping));
    Some((task, stop))
}

/// Warm shutdown: stop fetching, let each actor finish the event it is on, then commit
/// what was acknowledged. Events still queued are not acknowledged, so they come back
/// after a restart: nothing is skipped and nothing processed is processed again.
async fn shutdown(running: Running) {
    running.consumer.stop_fetching();
    running.agents.stop(STOP_TIMEOUT).await;
    if let Some((task, stop)) = running.closer {
        stop.send_replace(true);
        let abort = task.abort_handle();
        if tokio::time::timeout(STOP_TIMEOUT, task).await.is_err() {
            // Its window stays in the store and closes after the restart.
            warn!("an on_window_close callback did not finish within 30 s; stopped");
            abort.abort();
        }
    }
    running.consumer.shutdown(STOP_TIMEOUT).await;
    // After the agents (they may use a service), before the producer's flush (a
    // service may send as it stops).
    running.services.stop().await;
    if let Some(web) = running.web {
        web.stop().await;
    }
    running.tables.stop_global_tables();
    running.tables.stop_standbys();
    running.replies.stop();
    if let Err(e) = running.producer.flush(STOP_TIMEOUT).await {
        warn!(error = %e, "some sent messages may not have been delivered");
    }
    // Every client before the broker, which may be the embedded one; the datadir's
    // lock last.
    drop(running.tables);
    drop(running.producer);
    drop(running.broker);
    drop(running.datadir);
}

/// SIGINT and SIGTERM, listened to from when [`Signals::listen`] is called.
struct Signals {
    listening: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let listening = match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
            _ => {
                warn!("cannot listen for signals; stop the worker with SIGKILL");
                None
            }
        };
        Signals { listening }
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        let Some((interrupt, terminate)) = &mut self.listening else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
}
