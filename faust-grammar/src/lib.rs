//! The small grammars faust-rs reads both at compile time, in its macros (so that a
//! mistake is a compile error pointing at it), and at run time (flags, `FAUST_*`
//! variables): crontab expressions ([`cron`]) and durations ([`duration`]). No
//! dependencies, so the macro crate stays thin.

pub mod cron;
pub mod duration;

pub use cron::Cron;
pub use duration::parse_duration;

/// Property tests run 5,000 cases each, or `PROPTEST_CASES` (for long runs by hand).
#[cfg(test)]
fn property_test_config() -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(5000);
    proptest::prelude::ProptestConfig::with_cases(cases)
}
