//! Sensors observe the worker. Each hook of [`Sensor`] is called where the event happens
//! (message in, event start and end, send, commit, table access, rebalance, recovery,
//! errors); the built-in [`Monitor`] keeps the figures the web server serves. Users add
//! their own with [`crate::AppBuilder::sensor`].
//!
//! Hooks run on the hot path: keep them short and never block in them.

mod histogram;
mod monitor;
mod prometheus;

use std::{sync::Arc, time::Duration};

pub use histogram::{Histogram, BUCKETS};
pub use monitor::{
    AgentStats, Counters, Monitor, PartitionStats, Phase, RecoveryStats, SendStats, Stalled,
    StandbyStats, Stats, TableStats,
};
pub use prometheus::render as prometheus_text;

/// What a sensor can observe. Every hook has an empty default: implement the ones you need.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use faust::sensors::Sensor;
///
/// #[derive(Default)]
/// struct SlowEvents(AtomicU64);
///
/// impl Sensor for SlowEvents {
///     fn event_end(&self, _agent: &str, took: std::time::Duration) {
///         if took.as_millis() > 100 {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
/// // faust::main!(id = "app", sensor = SlowEvents::default());
/// ```
#[allow(unused_variables)]
pub trait Sensor: Send + Sync + 'static {
    /// The consumer fetched a message of a topic some agent reads.
    fn message_in(&self, topic: &str, partition: i32, offset: i64) {}
    /// An agent actor took an event.
    fn event_start(&self, agent: &str, topic: &str, partition: i32, offset: i64) {}
    /// An agent actor finished its event (asked for the next one, or ended).
    fn event_end(&self, agent: &str, took: Duration) {}
    /// A message is handed to the producer.
    fn send_start(&self, topic: &str) {}
    /// The broker acknowledged (or refused: `error`) a message.
    fn send_end(&self, topic: &str, took: Duration, error: Option<&str>) {}
    /// The consumer committed offsets (or failed to: `error`).
    fn commit(&self, took: Duration, error: Option<&str>) {}
    /// A table was read.
    fn table_get(&self, table: &str) {}
    /// A table key was written.
    fn table_set(&self, table: &str) {}
    /// A table key was deleted.
    fn table_delete(&self, table: &str) {}
    /// The group started moving partitions; this worker stops taking events.
    fn rebalance_start(&self) {}
    /// This worker has its new partitions, with their tables recovered.
    fn rebalance_end(&self, took: Duration) {}
    /// A table partition is being rebuilt from its changelog: `applied` records so far,
    /// `remaining` still to read (0 and `done` at the end).
    fn recovery_progress(
        &self,
        table: &str,
        partition: i32,
        applied: u64,
        remaining: u64,
        done: bool,
    ) {
    }
    /// A table partition this worker keeps warm for another (a standby replica) has
    /// applied its changelog up to `offset` (the next to apply), `lag` records behind.
    fn standby_progress(&self, table: &str, partition: i32, offset: i64, lag: i64) {}
    /// This worker no longer keeps a standby of the partition (it took it over, or the
    /// placement moved the standby elsewhere).
    fn standby_stopped(&self, table: &str, partition: i32) {}
    /// A message an agent could not decode; it is skipped.
    fn decode_error(&self, agent: &str, topic: &str, partition: i32, offset: i64, error: &str) {}
    /// A message repeating one the agent already applied (its origin mark is in the
    /// agent's tables: the sender ran an event again after a crash); it is skipped.
    fn repeat_skipped(&self, agent: &str, topic: &str, partition: i32) {}
    /// An agent actor failed (error or panic) and is restarted.
    fn agent_error(&self, agent: &str, error: &str) {}
}

/// The Monitor and the user's sensors, called in that order.
#[derive(Clone)]
pub(crate) struct Sensors {
    monitor: Arc<Monitor>,
    all: Arc<[Arc<dyn Sensor>]>,
}

impl Sensors {
    pub(crate) fn new(monitor: Arc<Monitor>, user: &[Arc<dyn Sensor>]) -> Sensors {
        let mut all: Vec<Arc<dyn Sensor>> = vec![monitor.clone()];
        all.extend(user.iter().cloned());
        Sensors {
            monitor,
            all: all.into(),
        }
    }

    pub(crate) fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Calls `hook` on every sensor. A user sensor that panics is logged and skipped:
    /// it must not take down the thread or task that reported to it.
    #[inline]
    pub(crate) fn each(&self, hook: impl Fn(&dyn Sensor)) {
        hook(self.monitor.as_ref());
        for sensor in self.all.iter().skip(1) {
            let call = std::panic::AssertUnwindSafe(|| hook(sensor.as_ref()));
            if std::panic::catch_unwind(call).is_err() {
                tracing::error!("a sensor panicked in one of its hooks; fix the sensor");
            }
        }
    }
}

impl std::fmt::Debug for Sensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensors")
            .field("count", &self.all.len())
            .finish()
    }
}
