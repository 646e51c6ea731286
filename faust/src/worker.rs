//! The Worker: the process-level runtime that drives an App's lifecycle.
//!
//! Start order: monitor, broker connection and topics (with the co-partitioning
//! check), producer, tables, web server, global tables, agents, consumer; "ready" is
//! logged once the first assignment's tables are recovered, and tasks start then. The first SIGINT/SIGTERM starts a warm
//! shutdown (stop fetching, let in-flight events finish, commit, flush the producer); a
//! second one exits at once. A fatal error stops the worker the same way and is returned.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{
    agents::AgentManager,
    app::App,
    leader,
    sensors::{Monitor, Phase, Sensors},
    tables::{self, TableManager},
    transport::{
        broker::Broker,
        consumer::Consumer,
        producer::{self, Producer, Sender},
    },
    web::WebServer,
    Error, Result,
};

/// How long shutdown waits for agents after their streams closed, and for the producer.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Worker {
    app: App,
    monitor: Arc<Monitor>,
}

impl Worker {
    pub fn new(app: App) -> Self {
        Worker {
            app,
            monitor: Arc::new(Monitor::default()),
        }
    }

    /// The worker's counters.
    pub fn monitor(&self) -> Arc<Monitor> {
        self.monitor.clone()
    }

    /// Runs until a signal or a fatal error; returns the fatal error, if any.
    pub async fn run(self) -> Result<()> {
        let Worker { app, monitor } = self;
        let config = app.config();
        app.registry().ensure_runnable()?;
        // Before anything else: a second worker on this datadir stops here.
        let _datadir = tables::lock_datadir(&app)?;
        info!(app = %config.id, agents = app.registry().agents.len(), "starting worker");
        let sensors = Sensors::new(monitor.clone(), app.sensors());
        monitor.register(
            app.registry().agents.iter().map(|a| a.name),
            app.registry().tables.iter().map(|t| t.name),
        );

        let broker = Broker::connect(config).await?;
        let partitions = broker
            .ensure_topics(&app.topics(), config.create_topics)
            .await?;
        tables::check_copartitioning(&app, &partitions)?;
        let producer = Producer::connect(
            broker.bootstrap(),
            &format!("{}-producer", config.id),
            sensors.clone(),
        )?;
        producer::install(Sender {
            producer: producer.clone(),
            agents: app.agent_targets(),
        });

        let tables = Arc::new(TableManager::new(
            &app,
            &producer,
            &sensors,
            broker.bootstrap(),
        )?);
        let web = match config.web_enabled {
            true => Some(
                WebServer::start(
                    &app,
                    broker.bootstrap(),
                    monitor.clone(),
                    tables.clone(),
                    producer.clone(),
                )
                .await?,
            ),
            false => None,
        };
        tables.start_global_tables()?;
        tables::install(tables.clone());
        tables.start_window_closer();

        let (fatal, mut fatal_errors) = mpsc::unbounded_channel();
        let (mut agents, routes) = AgentManager::start(&app, &producer, &sensors, &fatal);
        let consumer = Consumer::start(
            config,
            broker.bootstrap(),
            routes,
            &leader::topic(&config.id),
            sensors.clone(),
            tables.clone(),
            fatal.clone(),
        )?;
        let mut ready = consumer.ready.clone();
        let early_stop = tokio::select! {
            _ = ready.wait_for(|r| *r) => None,
            stop = stop_reason(&mut fatal_errors) => Some(stop),
        };
        let outcome = match early_stop {
            Some(stop) => stop,
            None => {
                monitor.set_phase(Phase::Ready);
                info!(app = %config.id, "worker ready");
                agents.start_tasks(&app);
                stop_reason(&mut fatal_errors).await
            }
        };
        // A second signal, during the shutdown that follows, exits at once.
        tokio::spawn(async {
            let signal = shutdown_signal().await;
            error!(signal, "second signal: exiting immediately");
            std::process::exit(130);
        });
        let outcome = match outcome {
            Ok(signal) => {
                info!(signal, "warm shutdown: finishing the events being processed (send the signal again to exit at once)");
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "fatal error: stopping the worker");
                Err(e)
            }
        };
        monitor.set_phase(Phase::Stopping);
        // Stop fetching, let each actor finish the event it is on, then commit what was
        // acknowledged. Events still queued are not acknowledged, so they come back after
        // a restart: nothing is skipped and nothing processed is processed again.
        consumer.stop_fetching();
        agents.stop(STOP_TIMEOUT).await;
        tables.stop_window_closer().await;
        consumer.shutdown().await;
        if let Some(web) = web {
            web.stop().await;
        }
        tables.stop_global_tables();
        if let Err(e) = producer.flush(STOP_TIMEOUT).await {
            warn!(error = %e, "some sent messages may not have been delivered");
        }
        producer::uninstall();
        tables::uninstall();
        // Every client before the broker, which may be the embedded one.
        drop(tables);
        drop(producer);
        drop(broker);
        info!(counters = %monitor.counters(), "worker stopped");
        outcome
    }
}

/// Waits for what stops the worker: a signal (named) or a fatal error.
async fn stop_reason(fatal: &mut mpsc::UnboundedReceiver<Error>) -> Result<&'static str> {
    tokio::select! {
        signal = shutdown_signal() => Ok(signal),
        Some(e) = fatal.recv() => Err(e),
    }
}

/// Waits for SIGINT or SIGTERM and names it.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot listen for signals; stop the worker with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
