//! The worker's clock: what windows, crontabs and in-memory records read as "now". A
//! worker's is the system clock; a test context's can be moved forward (`advance`) and
//! does not wait for more events to come (everything a test sends is already queued).

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A clock; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    /// Added to the system time: what tests moved it forward by.
    offset: Arc<AtomicI64>,
    /// Whether a wait for more events (a `take` batch) takes real time.
    waits: bool,
}

impl Clock {
    /// The system clock.
    pub(crate) fn system() -> Clock {
        Clock {
            offset: Arc::default(),
            waits: true,
        }
    }

    #[cfg(any(test, feature = "testing"))]
    /// A clock that starts at the system time and moves on with it, and further with
    /// [`Clock::advance`]; waits for more events end at once.
    pub(crate) fn adjustable() -> Clock {
        Clock {
            offset: Arc::default(),
            waits: false,
        }
    }

    /// Milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        system_now_ms() + self.offset.load(Ordering::Relaxed)
    }

    #[cfg(any(test, feature = "testing"))]
    /// Moves the clock forward by `ms`.
    pub(crate) fn advance(&self, ms: i64) {
        self.offset.fetch_add(ms, Ordering::Relaxed);
    }

    /// How long to wait for more events that may come within `within`.
    pub(crate) fn wait_for_more(&self, within: Duration) -> Duration {
        match self.waits {
            true => within,
            false => within.min(Duration::from_millis(1)),
        }
    }
}

/// The system clock's milliseconds since the Unix epoch.
pub(crate) fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_forward_and_does_not_wait() {
        let clock = Clock::adjustable();
        let before = clock.now_ms();
        clock.clone().advance(60_000);
        assert!(clock.now_ms() >= before + 60_000);
        assert_eq!(
            clock.wait_for_more(Duration::from_secs(30)),
            Duration::from_millis(1)
        );
        let system = Clock::system();
        assert!(system.now_ms() < before + 60_000);
        assert_eq!(
            system.wait_for_more(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}
