//! The small grammars faust-rs reads both at compile time, in its macros (so that a
//! mistake is a compile error pointing at it), and at run time (flags, `FAUST_*`
//! variables): crontab expressions ([`cron`]) and durations ([`duration`]). No
//! dependencies, so the macro crate stays thin.

pub mod cron;
pub mod duration;

pub use cron::Cron;
pub use duration::parse_duration;
