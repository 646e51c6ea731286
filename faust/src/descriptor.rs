//! What the macros register: constant descriptors (names, options and fn pointers)
//! submitted through `inventory`, one kind per macro. They are plain data, low in the
//! tree, so that everything above can read them. The agent's descriptor lives with the
//! agents (`crate::agents::AgentDescriptor`): its entry point takes an `ActorContext`.

use std::{future::Future, pin::Pin, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{time::Crontab, Result};

/// A boxed, sendable future: what registered functions return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A topic name as declared, with `{app_id}` replaced by the app's id.
pub(crate) fn topic_name(declared: &str, app_id: &str) -> String {
    declared.replace("{app_id}", app_id)
}

/// What `#[faust::table]` registers.
#[derive(Debug)]
pub struct TableDescriptor {
    /// The table's name (its changelog is `{app_id}-{name}-changelog`).
    pub name: &'static str,
    /// The key type's name, for listings.
    pub key_type: &'static str,
    /// The value type's name, for listings.
    pub value_type: &'static str,
    /// `None`: the app's default topic partitions.
    pub partitions: Option<i32>,
    /// Every worker holds every partition.
    pub global: bool,
    /// `"memory"`, or `"rocksdb"` (the default).
    pub store: &'static str,
    /// Writes outside event processing go to the key's partition (murmur2, as Kafka's
    /// default partitioner) instead of being refused.
    pub use_partitioner: bool,
    /// Its values are served at `/tables/{name}/{key}` (also when the app lists it in
    /// `web_tables`).
    pub web: bool,
    /// Where it is declared (`file:line`).
    pub location: &'static str,
    /// A key given as text (web lookups) in its stored form; see `Table::key_from_text`.
    pub key_from_text: fn(&str) -> std::result::Result<Vec<u8>, String>,
    /// The windows of a windowed table.
    pub window: Option<WindowSpec>,
    /// Runs in the worker once an assignment's partitions of the table are recovered
    /// (and once a global table is, at start), before their events are processed.
    pub on_recover: Option<fn() -> BoxFuture<Result<()>>>,
    /// Called with each changelog record recovery applies (and, for a global table,
    /// each one its follower reads while the worker runs): key and value as stored
    /// (`None`: a delete).
    pub on_changelog_event: Option<OnChangelogEvent>,
}

inventory::collect!(TableDescriptor);

/// What `#[faust::table]` puts in a static whose declaration has an error, so that the
/// error is the only one reported (it is never registered or run).
pub const INVALID_TABLE: TableDescriptor = TableDescriptor {
    name: "<invalid>",
    key_type: "",
    value_type: "",
    partitions: None,
    global: false,
    store: "memory",
    use_partitioner: false,
    web: false,
    location: "",
    key_from_text: |_| Err(String::new()),
    window: None,
    on_recover: None,
    on_changelog_event: None,
};

impl TableDescriptor {
    /// The changelog topic of this table in the app `app_id`.
    pub(crate) fn changelog_topic(&self, app_id: &str) -> String {
        format!("{app_id}-{}-changelog", self.name)
    }

    /// Its partitions, given the app's default.
    pub(crate) fn partitions_or(&self, default: i32) -> i32 {
        self.partitions.unwrap_or(default)
    }
}

/// A time window, `[start, end)` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// The first millisecond in the window.
    pub start: i64,
    /// The first millisecond after it.
    pub end: i64,
}

/// Where a windowed table takes an event's time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeReference {
    /// The message timestamp (the default); `update_at` passes a time of your own, such
    /// as a field of the value.
    Event,
    /// The wall clock when the event is processed.
    Wall,
}

/// A table's `on_changelog_event` hook: the record's key and value as stored.
pub type OnChangelogEvent = fn(&[u8], Option<&[u8]>) -> Result<()>;

/// The callback `on_window_close` registers: key and final value as JSON.
pub type OnClose = fn(Vec<u8>, Window, Vec<u8>) -> BoxFuture<Result<()>>;

/// The windows of a table, from `#[faust::table(tumbling | hopping, step, expires, time)]`.
#[derive(Debug)]
pub struct WindowSpec {
    /// How long a window is, in milliseconds.
    pub size_ms: i64,
    /// Equal to `size_ms` for tumbling (and sliding) windows.
    pub step_ms: i64,
    /// Sliding windows (Faust's `SlidingWindow`): every event has a window of its own,
    /// from this long before its time to `size_ms - before_ms` after it.
    pub before_ms: Option<i64>,
    /// How long after its end a window stays open for late events.
    pub expires_ms: i64,
    /// Where events' times come from.
    pub time: TimeReference,
    /// Called with each closed window's key, window and final value.
    pub on_close: Option<OnClose>,
}

impl WindowSpec {
    /// The windows holding `t`, oldest first.
    pub fn windows_at(&self, t: i64) -> Vec<Window> {
        if let Some(before) = self.before_ms {
            return vec![self.window(t.saturating_sub(before))];
        }
        let mut start = t.div_euclid(self.step_ms) * self.step_ms;
        let mut windows = Vec::new();
        while start > t.saturating_sub(self.size_ms) {
            windows.push(self.window(start));
            start -= self.step_ms;
        }
        windows.reverse();
        windows
    }

    pub(crate) fn window(&self, start: i64) -> Window {
        Window {
            start,
            end: start.saturating_add(self.size_ms),
        }
    }

    /// The stream time at which `window` closes.
    pub(crate) fn closes_at(&self, window: Window) -> i64 {
        window.end.saturating_add(self.expires_ms)
    }

    /// "tumbling 10s, expires 10s" / "hopping 20s every 10s, expires 1h" (listings).
    pub fn describe(&self) -> String {
        let shape = if let Some(before) = self.before_ms {
            format!(
                "sliding {} before, {} after",
                duration_text(before),
                duration_text(self.size_ms - before)
            )
        } else if self.step_ms == self.size_ms {
            format!("tumbling {}", duration_text(self.size_ms))
        } else {
            format!(
                "hopping {} every {}",
                duration_text(self.size_ms),
                duration_text(self.step_ms)
            )
        };
        format!("{shape}, expires {}", duration_text(self.expires_ms))
    }

    /// How long the changelog keeps a window's records: until it has surely closed. The
    /// broker counts retention in wall time, windows close in stream time: a backlog or a
    /// stopped app delays closing by as long as it lasts, so a day is added (as Kafka
    /// Streams' `windowstore.changelog.additional.retention.ms` does).
    pub(crate) fn retention_ms(&self) -> i64 {
        (self.size_ms + self.expires_ms).max(60_000) * 2 + DAY_MS
    }

    /// How often the worker looks for windows to close.
    pub(crate) fn tick(&self) -> Duration {
        Duration::from_millis((self.step_ms / 4).clamp(100, 1000) as u64)
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// `ms` in the largest unit that divides it: `1h`, `90s`, `250ms`.
fn duration_text(ms: i64) -> String {
    [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ]
    .iter()
    .find(|(unit, _)| ms % unit == 0 && ms != 0)
    .map_or_else(
        || format!("{ms}ms"),
        |(unit, name)| format!("{}{name}", ms / unit),
    )
}

/// What `#[faust::task]` registers: an async fn run once when the worker is ready.
#[derive(Debug)]
pub struct TaskDescriptor {
    /// The task's name.
    pub name: &'static str,
    /// Where it is declared (`file:line`).
    pub location: &'static str,
    /// Run only on the group's leader.
    pub on_leader: bool,
    /// Runs it.
    pub run: fn() -> BoxFuture<Result<()>>,
}

inventory::collect!(TaskDescriptor);

/// When a timer runs.
#[derive(Debug, Clone, Copy)]
pub enum Schedule {
    /// Every interval, the first one interval after the worker is ready.
    Every(Duration),
    /// A crontab expression (minute, hour, day of month, month, day of week) read in a
    /// time zone (an IANA name; UTC when none).
    Cron {
        /// The five fields.
        expression: &'static str,
        /// The time zone, e.g. `America/Los_Angeles`.
        timezone: Option<&'static str>,
    },
}

/// What `#[faust::timer]` and `#[faust::crontab]` register.
#[derive(Debug)]
pub struct TimerDescriptor {
    /// The timer's name.
    pub name: &'static str,
    /// Where it is declared (`file:line`).
    pub location: &'static str,
    /// When it runs.
    pub schedule: Schedule,
    /// Run only on the group's leader.
    pub on_leader: bool,
    /// Runs it once.
    pub run: fn() -> BoxFuture<Result<()>>,
}

inventory::collect!(TimerDescriptor);

impl TimerDescriptor {
    /// Refuses a crontab expression that does not parse, naming the timer.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        match self.schedule {
            Schedule::Cron {
                expression,
                timezone,
            } => Crontab::new(expression, timezone)
                .map(drop)
                .map_err(|e| format!("crontab '{}' ({}): {e}", self.name, self.location)),
            Schedule::Every(interval) if interval.is_zero() => Err(format!(
                "timer '{}' ({}) has a zero interval",
                self.name, self.location
            )),
            Schedule::Every(_) => Ok(()),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    /// When the timer is next due after `now` (clock milliseconds).
    pub(crate) fn next_due(&self, now: i64) -> Option<i64> {
        match self.schedule {
            Schedule::Every(interval) => Some(now + interval.as_millis() as i64),
            Schedule::Cron {
                expression,
                timezone,
            } => Crontab::new(expression, timezone).ok()?.next_after(now),
        }
    }
}

/// Names the app's own commands may not take.
pub(crate) const BUILTIN_COMMANDS: &[&str] = &[
    "worker",
    "send",
    "agents",
    "tables",
    "reset",
    "copy-offsets",
    "help",
];

/// What `#[faust::page]` registers: a route of the worker's web server.
#[derive(Debug)]
pub struct PageDescriptor {
    /// Its path, in axum's syntax (`/count/{partition}`).
    pub path: &'static str,
    /// The HTTP method it answers (`get`, `post`, ...).
    pub method: &'static str,
    /// Where it is declared (`file:line`).
    pub location: &'static str,
    /// Adds it to a router.
    pub route: fn(axum::Router) -> axum::Router,
}

inventory::collect!(PageDescriptor);

/// What `#[faust::command]` registers: an async fn run by `<binary> <name> [args...]`.
#[derive(Debug)]
pub struct CommandDescriptor {
    /// The command's name on the command line.
    pub name: &'static str,
    /// Its one-line help.
    pub about: &'static str,
    /// Where it is declared (`file:line`).
    pub location: &'static str,
    /// Adds its arguments to its subcommand: a `clap::Args` type's, or free ones.
    pub arguments: fn(clap::Command) -> clap::Command,
    /// Runs it with its parsed arguments.
    pub run: fn(&clap::ArgMatches) -> BoxFuture<Result<()>>,
}

/// The arguments of a command that takes `args: Vec<String>`: whatever follows its name.
pub fn free_arguments(command: clap::Command) -> clap::Command {
    command.arg(
        clap::Arg::new("args")
            .num_args(0..)
            .trailing_var_arg(true)
            .allow_hyphen_values(true),
    )
}

/// The values of [`free_arguments`].
pub fn free_arguments_of(matches: &clap::ArgMatches) -> Vec<String> {
    let values = matches.get_many::<String>("args");
    values.into_iter().flatten().cloned().collect()
}

/// A command's typed arguments (`A: clap::Args`), or a future of the error that says
/// why they do not parse.
pub fn typed_arguments<A: clap::FromArgMatches>(
    matches: &clap::ArgMatches,
) -> std::result::Result<A, BoxFuture<Result<()>>> {
    A::from_arg_matches(matches).map_err(|e| {
        let error = crate::Error::Config(e.to_string());
        Box::pin(async move { Err(error) }) as BoxFuture<Result<()>>
    })
}

inventory::collect!(CommandDescriptor);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(size_ms: i64, step_ms: i64, expires_ms: i64) -> WindowSpec {
        WindowSpec {
            size_ms,
            step_ms,
            before_ms: None,
            expires_ms,
            time: TimeReference::Event,
            on_close: None,
        }
    }

    #[test]
    fn a_windowed_changelog_outlives_a_day_of_downtime_after_its_windows_close() {
        let ten_seconds = spec(10_000, 10_000, 10_000);
        assert!(ten_seconds.retention_ms() >= 20_000 + DAY_MS);
        let an_hour = spec(3_600_000, 3_600_000, 0);
        assert!(an_hour.retention_ms() >= 3_600_000 + DAY_MS);
    }

    #[test]
    fn tumbling_and_hopping_windows_hold_the_right_times() {
        let tumbling = spec(10, 10, 0);
        assert_eq!(tumbling.windows_at(0), [Window { start: 0, end: 10 }]);
        assert_eq!(tumbling.windows_at(19), [Window { start: 10, end: 20 }]);
        assert_eq!(tumbling.windows_at(-1), [Window { start: -10, end: 0 }]);
        let hopping = spec(10, 5, 0);
        assert_eq!(
            hopping.windows_at(12),
            [Window { start: 5, end: 15 }, Window { start: 10, end: 20 }]
        );
        assert_eq!(spec(30, 10, 0).windows_at(30).len(), 3);
    }

    #[test]
    fn a_sliding_window_is_each_events_own() {
        // Faust's SlidingWindow(before=5, after=2): [t - 5, t + 2] for each time t.
        let sliding = WindowSpec {
            before_ms: Some(5),
            ..spec(7, 7, 0)
        };
        assert_eq!(sliding.windows_at(12), [Window { start: 7, end: 14 }]);
        assert_eq!(sliding.windows_at(13), [Window { start: 8, end: 15 }]);
        assert_eq!(sliding.windows_at(0), [Window { start: -5, end: 2 }]);
        assert_eq!(
            sliding.describe(),
            "sliding 5ms before, 2ms after, expires 0ms"
        );
    }

    #[test]
    fn windows_describe_themselves() {
        assert_eq!(
            spec(10_000, 10_000, 10_000).describe(),
            "tumbling 10s, expires 10s"
        );
        assert_eq!(
            spec(3_600_000, 60_000, 90_000).describe(),
            "hopping 1h every 1m, expires 90s"
        );
        assert_eq!(spec(250, 250, 0).describe(), "tumbling 250ms, expires 0ms");
    }
}
