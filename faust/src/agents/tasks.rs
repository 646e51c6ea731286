//! Tasks, timers and crontabs: async fns the worker runs besides its agents, once it is
//! ready. `#[faust::task]` runs once, `#[faust::timer(interval = "10s")]` every interval,
//! `#[faust::crontab("*/5 * * * *")]` on a UTC schedule. With `on_leader = true` they run
//! only on the group's leader ([`crate::leader`]): a timer checks at each tick, so the
//! work moves with the leadership; a task waits until its worker becomes the leader, and
//! is stopped if the worker stops being the leader before it ends. A failing run is
//! logged; the next tick runs again.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::{cron::Cron, panic_message};
use crate::{clock, leader, registry::BoxFuture, Result};

/// What `#[faust::task]` registers: an async fn run once when the worker is ready.
#[derive(Debug)]
pub struct TaskDescriptor {
    pub name: &'static str,
    pub location: &'static str,
    pub on_leader: bool,
    pub run: fn() -> BoxFuture<Result<()>>,
}

inventory::collect!(TaskDescriptor);

/// When a timer runs.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// Every interval, the first one interval after the worker is ready.
    Every(Duration),
    /// A crontab expression, in UTC (see [`super::cron`]).
    Cron(&'static str),
}

/// What `#[faust::timer]` and `#[faust::crontab]` register.
#[derive(Debug)]
pub struct TimerDescriptor {
    pub name: &'static str,
    pub location: &'static str,
    pub schedule: Schedule,
    pub on_leader: bool,
    pub run: fn() -> BoxFuture<Result<()>>,
}

inventory::collect!(TimerDescriptor);

impl TimerDescriptor {
    /// Refuses a crontab expression that does not parse, naming the timer.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        match self.schedule {
            Schedule::Cron(expression) => Cron::parse(expression)
                .map(drop)
                .map_err(|e| format!("crontab '{}' ({}): {e}", self.name, self.location)),
            Schedule::Every(interval) if interval.is_zero() => Err(format!(
                "timer '{}' ({}) has a zero interval",
                self.name, self.location
            )),
            Schedule::Every(_) => Ok(()),
        }
    }
}

/// Starts every task and timer; the handles stop them on shutdown.
pub(crate) fn start(
    tasks: &[&'static TaskDescriptor],
    timers: &[&'static TimerDescriptor],
) -> Vec<JoinHandle<()>> {
    let tasks = tasks.iter().map(|&task| {
        tokio::spawn(async move {
            if !task.on_leader {
                info!(task = task.name, "task started");
                if run_once("task", task.name, task.run).await {
                    info!(task = task.name, "task finished");
                }
                return;
            }
            leader::became_leader().await;
            info!(task = task.name, "task started on the leader");
            tokio::select! {
                done = run_once("task", task.name, task.run) => if done {
                    info!(task = task.name, "task finished");
                },
                _ = leader::lost_leadership() => {
                    warn!(task = task.name, "this worker is no longer the leader: task stopped");
                }
            }
        })
    });
    let timers = timers.iter().map(|&timer| tokio::spawn(run_timer(timer)));
    tasks.chain(timers).collect()
}

async fn run_timer(timer: &'static TimerDescriptor) {
    let cron = match timer.schedule {
        Schedule::Cron(expression) => match Cron::parse(expression) {
            Ok(cron) => Some(cron),
            Err(e) => return error!(timer = timer.name, error = %e, "timer not started"),
        },
        Schedule::Every(_) => None,
    };
    let mut next = tokio::time::Instant::now();
    // The last crontab time run: the clock may lag behind the sleep that waited for it.
    let mut last_run = i64::MIN;
    loop {
        let wait = match (&cron, timer.schedule) {
            (Some(cron), _) => {
                let now = clock::now_ms();
                let Some(at) = cron.next_after(now.max(last_run)) else {
                    return warn!(timer = timer.name, "the crontab never matches again");
                };
                // Woken early (a wall clock that stepped back, or lags the monotonic
                // clock)? Sleep again rather than run before the time; sleeps are capped
                // so a clock step forward is noticed within a minute.
                let wait = Duration::from_millis((at - now).max(0) as u64);
                if wait > Duration::ZERO {
                    tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
                    continue;
                }
                last_run = at;
                Duration::ZERO
            }
            (None, Schedule::Every(interval)) => {
                // Ticks keep their rhythm however long a run takes (a late one is not
                // made up for).
                next += interval;
                next.saturating_duration_since(tokio::time::Instant::now())
            }
            (None, Schedule::Cron(_)) => return,
        };
        tokio::time::sleep(wait).await;
        if timer.on_leader && !leader::is_leader() {
            debug!(timer = timer.name, "not the leader: skipping this tick");
            continue;
        }
        run_once("timer", timer.name, timer.run).await;
        if next < tokio::time::Instant::now() {
            next = tokio::time::Instant::now();
        }
    }
}

/// Runs `run` to the end, logging a failure or a panic; true when it succeeded. Dropping
/// this future (shutdown, lost leadership) stops the run too.
async fn run_once(kind: &str, name: &str, run: fn() -> BoxFuture<Result<()>>) -> bool {
    /// Aborts the spawned run when dropped.
    struct Running(JoinHandle<Result<()>>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut running = Running(tokio::spawn(run()));
    match (&mut running.0).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            error!(kind, name, error = %e, "{kind} failed");
            false
        }
        Err(e) if e.is_panic() => {
            error!(kind, name, panic = %panic_message(e), "{kind} panicked");
            false
        }
        Err(_) => false,
    }
}
