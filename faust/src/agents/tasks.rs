//! Tasks, timers and crontabs: async fns the worker runs besides its agents, once it is
//! ready. `#[faust::task]` runs once, `#[faust::timer(interval = "10s")]` every interval,
//! `#[faust::crontab("*/5 * * * *")]` on a UTC schedule. With `on_leader = true` they run
//! only on the group's leader ([`crate::leader`]): a timer checks at each tick, so the
//! work moves with the leadership; a task waits until its worker becomes the leader, and
//! is stopped if the worker stops being the leader before it ends. A failing run is
//! logged; the next tick runs again.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::panic_message;
use crate::{
    context::WorkerContext,
    descriptor::{BoxFuture, Schedule, TaskDescriptor, TimerDescriptor},
    time::Crontab,
    Result,
};

/// Starts every task and timer; the handles stop them on shutdown.
pub(crate) fn start(
    tasks: &[&'static TaskDescriptor],
    timers: &[&'static TimerDescriptor],
    worker: &Arc<WorkerContext>,
) -> Vec<JoinHandle<()>> {
    let tasks = tasks.iter().map(|&task| {
        let worker = worker.clone();
        worker.clone().spawn(async move {
            if !task.on_leader {
                info!(task = task.name, "task started");
                if run_once("task", task.name, task.run).await {
                    info!(task = task.name, "task finished");
                }
                return;
            }
            worker.leader.gained().await;
            info!(task = task.name, "task started on the leader");
            tokio::select! {
                done = run_once("task", task.name, task.run) => if done {
                    info!(task = task.name, "task finished");
                },
                _ = worker.leader.lost() => {
                    warn!(task = task.name, "this worker is no longer the leader: task stopped");
                }
            }
        })
    });
    let timers = timers
        .iter()
        .map(|&timer| worker.spawn(run_timer(timer, worker.clone())));
    tasks.chain(timers).collect()
}

async fn run_timer(timer: &'static TimerDescriptor, worker: Arc<WorkerContext>) {
    let mut schedule = match timer.schedule {
        Schedule::Cron {
            expression,
            timezone,
        } => match Crontab::new(expression, timezone) {
            Ok(crontab) => Ticks::Cron(CronTicks::new(crontab)),
            Err(e) => return error!(timer = timer.name, error = %e, "timer not started"),
        },
        Schedule::Every(interval) => Ticks::Every {
            interval,
            next: tokio::time::Instant::now(),
        },
    };
    loop {
        match &mut schedule {
            Ticks::Cron(ticks) => loop {
                match ticks.step(worker.clock.now_ms()) {
                    Some(CronStep::Run) => break,
                    // Sleeps are capped, so that a clock step forward is noticed within
                    // a minute.
                    Some(CronStep::Sleep(wait)) => {
                        tokio::time::sleep(wait.min(Duration::from_secs(60))).await
                    }
                    None => return warn!(timer = timer.name, "the crontab never matches again"),
                }
            },
            Ticks::Every { interval, next } => {
                // Ticks keep their rhythm however long a run takes (a late one is not
                // made up for).
                *next = (*next + *interval).max(tokio::time::Instant::now());
                tokio::time::sleep_until(*next).await;
            }
        }
        if timer.on_leader && !worker.leader.is_leader() {
            debug!(timer = timer.name, "not the leader: skipping this tick");
            continue;
        }
        run_once("timer", timer.name, timer.run).await;
    }
}

/// When a timer runs next.
enum Ticks {
    Every {
        interval: Duration,
        next: tokio::time::Instant,
    },
    Cron(CronTicks),
}

/// A crontab's progress on the wall clock: the time it waits for, and the last it ran at.
struct CronTicks {
    cron: Crontab,
    due: Option<i64>,
    last_run: i64,
}

/// What a crontab does at a given time.
#[derive(Debug, PartialEq, Eq)]
enum CronStep {
    Run,
    Sleep(Duration),
}

impl CronTicks {
    fn new(cron: Crontab) -> CronTicks {
        CronTicks {
            cron,
            due: None,
            last_run: i64::MIN,
        }
    }

    /// At `now` (wall clock, ms): run, or sleep this long and ask again; `None` when the
    /// crontab never matches again. A time is run once, and never before it comes, even
    /// when the wall clock lags the sleep that waited for it.
    fn step(&mut self, now: i64) -> Option<CronStep> {
        let at = match self.due {
            Some(at) => at,
            None => self.cron.next_after(now.max(self.last_run))?,
        };
        if at > now {
            self.due = Some(at);
            return Some(CronStep::Sleep(Duration::from_millis((at - now) as u64)));
        }
        self.due = None;
        self.last_run = at;
        Some(CronStep::Run)
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
    let mut running = Running(crate::context::spawn(run()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crontab_runs_each_matching_minute_once_and_never_early() {
        let mut ticks = CronTicks::new(Crontab::new("*/5 * * * *", None).unwrap());
        let minute = 60_000;
        // 00:03: wait two minutes for 00:05.
        assert_eq!(
            ticks.step(3 * minute),
            Some(CronStep::Sleep(Duration::from_millis(2 * minute as u64)))
        );
        // Woken a little early (the wall clock lags): sleep the rest, then run.
        assert_eq!(
            ticks.step(5 * minute - 7),
            Some(CronStep::Sleep(Duration::from_millis(7)))
        );
        assert_eq!(ticks.step(5 * minute + 2), Some(CronStep::Run));
        // Right after: 00:05 is done, so wait for 00:10.
        assert_eq!(
            ticks.step(5 * minute + 3),
            Some(CronStep::Sleep(Duration::from_millis(
                (5 * minute - 3) as u64
            )))
        );
        // A clock that stepped back to before 00:05 does not run 00:05 again.
        let mut late = CronTicks::new(Crontab::new("*/5 * * * *", None).unwrap());
        assert_eq!(
            late.step(5 * minute),
            Some(CronStep::Sleep(Duration::from_millis(5 * minute as u64)))
        );
        assert_eq!(late.step(10 * minute), Some(CronStep::Run));
        assert!(matches!(late.step(9 * minute), Some(CronStep::Sleep(_))));
        assert_eq!(late.due, Some(15 * minute));
        let never = CronTicks::new(Crontab::new("0 0 31 2 *", None).unwrap()).step(0);
        assert_eq!(never, None);
    }
}
