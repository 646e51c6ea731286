//! The worker's clock: what windows, crontabs and in-memory records read as "now". A
//! worker's is the system clock; a test context's stands still until moved forward
//! (`advance`) and does not wait for more events to come (everything a test sends is
//! already queued).
//! And crontab schedules in a time zone.

use faust_grammar::Cron;
use jiff::{tz::TimeZone, Timestamp};
use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A clock; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    /// A test's clock: the time it reads, which only [`Clock::advance`] moves. `None`
    /// for the system clock.
    set: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub(crate) fn system() -> Clock {
        Clock::default()
    }

    #[cfg(any(test, feature = "testing"))]
    /// A clock that starts at the system time and stands still but for
    /// [`Clock::advance`], so what a test sees at a time does not depend on how fast it
    /// ran; waits for more events end at once.
    pub(crate) fn adjustable() -> Clock {
        Clock {
            set: Some(Arc::new(AtomicI64::new(system_now_ms()))),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        match &self.set {
            Some(now) => now.load(Ordering::Relaxed),
            None => system_now_ms(),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    /// Moves a test's clock forward by `ms`.
    pub(crate) fn advance(&self, ms: i64) {
        if let Some(now) = &self.set {
            now.fetch_add(ms, Ordering::Relaxed);
        }
    }

    /// How long to wait for more events that may come within `within`.
    pub(crate) fn wait_for_more(&self, within: Duration) -> Duration {
        match self.set {
            None => within,
            Some(_) => within.min(Duration::from_millis(1)),
        }
    }
}

/// The system clock's milliseconds since the Unix epoch.
pub(crate) fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A crontab schedule, read in a time zone (UTC when none is given, as in Faust).
#[derive(Debug, Clone)]
pub(crate) struct Crontab {
    cron: Cron,
    zone: Option<TimeZone>,
}

impl Crontab {
    /// Parses the expression, and looks the time zone up by its IANA name
    /// (`America/Los_Angeles`) in the system's time zone database, or the one built in.
    pub(crate) fn new(expression: &str, timezone: Option<&str>) -> Result<Crontab, String> {
        let cron = Cron::parse(expression)?;
        let zone = timezone
            .map(|name| {
                TimeZone::get(name).map_err(|e| {
                    format!(
                        "'{name}' is not a known time zone ({e}); give an IANA name such as \
                         \"America/Los_Angeles\" or \"Europe/Oslo\""
                    )
                })
            })
            .transpose()?;
        Ok(Crontab { cron, zone })
    }

    /// The first time (milliseconds since the epoch) strictly after `after_ms` whose
    /// local time matches, or `None` if none comes within five years. A local time a
    /// daylight-saving change skips runs as the clock would have read it without the
    /// change (`02:30` becomes `03:30`); a repeated hour runs once, on its first pass.
    pub(crate) fn next_after(&self, after_ms: i64) -> Option<i64> {
        let Some(zone) = &self.zone else {
            return self.cron.next_after(after_ms);
        };
        // The grammar reads times as UTC: give it local times, as if they were.
        let offset_ms = |ms: i64| -> Option<i64> {
            let offset = zone.to_offset(Timestamp::from_millisecond(ms).ok()?);
            Some(i64::from(offset.seconds()) * 1000)
        };
        let mut local = after_ms + offset_ms(after_ms)?;
        loop {
            local = self.cron.next_after(local)?;
            let civil = TimeZone::UTC.to_datetime(Timestamp::from_millisecond(local).ok()?);
            let at = zone
                .to_ambiguous_timestamp(civil)
                .compatible()
                .ok()?
                .as_millisecond();
            // A repeated hour's second pass maps to its first, already past.
            if at > after_ms {
                return Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_only_when_advanced_and_does_not_wait() {
        let clock = Clock::adjustable();
        let before = clock.now_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), before, "stands still");
        clock.clone().advance(60_000);
        assert_eq!(clock.now_ms(), before + 60_000);
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

    /// Milliseconds of a UTC date and time.
    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_crontab_without_a_zone_runs_in_utc() {
        let crontab = Crontab::new("16 20 * * *", None).unwrap();
        let next = crontab.next_after(utc("2026-06-01T12:00:00Z"));
        assert_eq!(next, Some(utc("2026-06-01T20:16:00Z")));
    }

    #[test]
    fn a_crontab_in_a_zone_runs_at_its_local_time_in_summer_and_winter() {
        let pacific = Crontab::new("16 20 * * *", Some("America/Los_Angeles")).unwrap();
        // 20:16 PDT (UTC-7) in June, 20:16 PST (UTC-8) in December.
        let june = pacific.next_after(utc("2026-06-01T12:00:00Z"));
        assert_eq!(june, Some(utc("2026-06-02T03:16:00Z")));
        let december = pacific.next_after(utc("2026-12-01T12:00:00Z"));
        assert_eq!(december, Some(utc("2026-12-02T04:16:00Z")));
        let oslo = Crontab::new("0 9 * * 1", Some("Europe/Oslo")).unwrap();
        // Monday 2026-11-30 09:00 CET is 08:00 UTC.
        let monday = oslo.next_after(utc("2026-11-29T00:00:00Z"));
        assert_eq!(monday, Some(utc("2026-11-30T08:00:00Z")));
    }

    #[test]
    fn a_skipped_local_time_runs_an_hour_later_and_a_repeated_one_runs_once() {
        // 2026-03-08: Los Angeles clocks go from 02:00 PST to 03:00 PDT.
        let spring = Crontab::new("30 2 * * *", Some("America/Los_Angeles")).unwrap();
        let skipped = spring.next_after(utc("2026-03-08T08:00:00Z"));
        assert_eq!(skipped, Some(utc("2026-03-08T10:30:00Z")), "03:30 PDT");
        // 2026-11-01: from 02:00 PDT back to 01:00 PST; 01:30 comes twice.
        let autumn = Crontab::new("30 1 * * *", Some("America/Los_Angeles")).unwrap();
        let first = autumn.next_after(utc("2026-11-01T07:00:00Z"));
        assert_eq!(first, Some(utc("2026-11-01T08:30:00Z")), "01:30 PDT");
        let next = autumn.next_after(first.unwrap());
        assert_eq!(
            next,
            Some(utc("2026-11-02T09:30:00Z")),
            "not 01:30 PST again"
        );
        // Every 20 minutes through the repeated hour: its second pass runs nothing.
        let often = Crontab::new("*/20 * * * *", Some("America/Los_Angeles")).unwrap();
        let mut at = utc("2026-11-01T07:50:00Z"); // 00:50 PDT
        let mut runs = Vec::new();
        while at < utc("2026-11-01T11:00:00Z") {
            at = often.next_after(at).unwrap();
            runs.push(at);
        }
        let expected = [
            "08:00", "08:20", "08:40", // 01:00-01:40 PDT
            "10:00", "10:20", "10:40", "11:00", // 02:00-03:00 PST
        ];
        let expected: Vec<i64> = expected
            .iter()
            .map(|hm| utc(&format!("2026-11-01T{hm}:00Z")))
            .collect();
        assert_eq!(runs, expected);
    }

    #[test]
    fn an_unknown_time_zone_is_refused_with_what_to_give() {
        let e = Crontab::new("* * * * *", Some("US/Pacfic")).unwrap_err();
        assert!(e.contains("'US/Pacfic' is not a known time zone"), "{e}");
        assert!(e.contains("IANA name"), "{e}");
    }
}
