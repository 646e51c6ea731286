//! The wall clock the framework reads (windows, crontabs): the system's, plus whatever a
//! test moved it forward with [`crate::testing::TestContext::advance`].

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    system + OFFSET_MS.load(Ordering::Relaxed)
}

/// Moves the clock forward (tests).
#[allow(dead_code)]
pub(crate) fn advance(ms: i64) {
    OFFSET_MS.fetch_add(ms, Ordering::Relaxed);
}
