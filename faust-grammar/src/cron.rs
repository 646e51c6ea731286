//! Crontab schedules (`#[faust::crontab("*/5 * * * *")]`): the five standard fields,
//! minute, hour, day of month, month and day of week, evaluated in UTC.
//!
//! Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of
//! those separated by commas. Day of week runs 0-6 from Sunday (7 is Sunday too). As in
//! cron, when both day fields are restricted a day matching either one matches.

/// A parsed crontab expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether each day field is restricted (not `*`), for cron's either-day rule.
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "'{expression}' has {} fields; a crontab has five: minute hour day-of-month \
                 month day-of-week, e.g. \"*/5 * * * *\"",
                fields.len()
            ));
        };
        let field = |text: &str, name: &str, min: u32, max: u32| {
            parse_field(text, min, max)
                .map_err(|e| format!("'{expression}': the {name} field '{text}' {e}"))
        };
        let mut weekdays = field(weekday, "day-of-week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7); // 7 is Sunday as well as 0
        }
        Ok(Cron {
            minutes: field(minute, "minute", 0, 59)?,
            hours: field(hour, "hour", 0, 23)?,
            days: field(day, "day-of-month", 1, 31)?,
            months: field(month, "month", 1, 12)?,
            weekdays,
            // As in Vixie cron, a field starting with `*` (`*/2` too) is not a restriction.
            days_restricted: !day.starts_with('*'),
            weekdays_restricted: !weekday.starts_with('*'),
        })
    }

    /// The first matching minute strictly after `after_ms` (milliseconds since the
    /// epoch, UTC), or `None` if none comes within five years (`0 0 31 2 *`).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let mut t = (after_ms.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
        let limit = after_ms + 5 * 366 * DAY_MS;
        while t <= limit {
            let days = t.div_euclid(DAY_MS);
            let (_, month, day) = civil_from_days(days);
            let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if !self.day_matches(month, day, weekday) {
                t = (days + 1) * DAY_MS;
                continue;
            }
            let minute_of_day = (t - days * DAY_MS) / MINUTE_MS;
            let (hour, minute) = ((minute_of_day / 60) as u32, (minute_of_day % 60) as u32);
            if !bit(self.hours, hour) {
                t += (60 - i64::from(minute)) * MINUTE_MS;
                continue;
            }
            if bit(self.minutes, minute) {
                return Some(t);
            }
            t += MINUTE_MS;
        }
        None
    }

    fn day_matches(&self, month: u32, day: u32, weekday: u32) -> bool {
        if !bit(self.months, month) {
            return false;
        }
        let by_day = bit(self.days, day);
        let by_weekday = bit(self.weekdays, weekday);
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }
}

fn bit(set: u64, n: u32) -> bool {
    set & (1 << n) != 0
}

/// The values a field allows, as a bit set.
fn parse_field(text: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 =
                    step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("has a step '{step}' that is not a positive number")
                    })?;
                (range, step)
            }
            None => (part, 1),
        };
        let number = |s: &str| -> Result<u32, String> {
            s.parse()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("has '{s}', which is not a number from {min} to {max}"))
        };
        let (from, to) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(range)?, max),
                None => (number(range)?, number(range)?),
            },
        };
        if from > to {
            return Err(format!("has the empty range '{range}'"));
        }
        set |= (from..=to)
            .step_by(step as usize)
            .fold(0, |s, n| s | 1 << n);
    }
    Ok(set)
}

/// (year, month 1-12, day 1-31) of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC date and time (tests only; days from a known epoch day).
    fn at(days_since_epoch: i64, hour: i64, minute: i64) -> i64 {
        days_since_epoch * DAY_MS + (hour * 60 + minute) * MINUTE_MS
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_819), (2027, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn next_matches_follow_the_fields() {
        let every_five = Cron::parse("*/5 * * * *").unwrap();
        assert_eq!(every_five.next_after(at(0, 0, 0)), Some(at(0, 0, 5)));
        assert_eq!(every_five.next_after(at(0, 0, 3) + 1), Some(at(0, 0, 5)));
        let daily = Cron::parse("30 2 * * *").unwrap();
        assert_eq!(daily.next_after(at(0, 3, 0)), Some(at(1, 2, 30)));
        // 1970-01-04 was a Sunday.
        let sundays = Cron::parse("0 12 * * 0").unwrap();
        assert_eq!(sundays.next_after(at(0, 0, 0)), Some(at(3, 12, 0)));
        assert_eq!(Cron::parse("0 12 * * 7").unwrap(), sundays);
        // Leap day: the next 29 February after 2024-03-01 is in 2028.
        let leap = Cron::parse("0 0 29 2 *").unwrap();
        assert_eq!(leap.next_after(at(19_783, 0, 0)), Some(at(21_243, 0, 0)));
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(0), None);
        // Odd days that are Mondays: both must hold, since a field starting with `*` does
        // not count as restricted. 1970-01-05 is one; the 12th is even; the 19th is next.
        let every_other = Cron::parse("0 0 */2 * 1").unwrap();
        assert_eq!(every_other.next_after(at(0, 0, 0)), Some(at(4, 0, 0)));
        assert_eq!(every_other.next_after(at(4, 0, 0)), Some(at(18, 0, 0)));
        // Either day field matches when both are restricted: the 2nd, or a Sunday.
        let either = Cron::parse("0 0 2 * 0").unwrap();
        assert_eq!(either.next_after(at(0, 0, 0)), Some(at(1, 0, 0)));
        assert_eq!(either.next_after(at(1, 0, 0)), Some(at(3, 0, 0)));
        let list = Cron::parse("1,2-3,10-20/5 * * * *").unwrap();
        let minutes: Vec<i64> = std::iter::successors(Some(0), |t| list.next_after(*t))
            .skip(1)
            .take(6)
            .map(|t| t / MINUTE_MS)
            .collect();
        assert_eq!(minutes, [1, 2, 3, 10, 15, 20]);
    }

    #[test]
    fn mistakes_are_explained() {
        let err = |e: &str| Cron::parse(e).unwrap_err();
        assert!(err("* * * *").contains("five"), "{}", err("* * * *"));
        assert!(
            err("60 * * * *").contains("0 to 59"),
            "{}",
            err("60 * * * *")
        );
        assert!(
            err("*/0 * * * *").contains("step"),
            "{}",
            err("*/0 * * * *")
        );
        assert!(err("5-1 * * * *").contains("empty range"));
        assert!(err("* * * * mon").contains("day-of-week"));
    }

    /// The next match is after the given time, matches, and no minute between does:
    /// checked for many expressions and times, drawn by a fixed pseudo-random sequence
    /// (`FAUST_GRAMMAR_CASES` cases, 3,000 by default), so that a failure repeats.
    #[test]
    fn next_after_agrees_with_checking_every_minute() {
        let cases = std::env::var("FAUST_GRAMMAR_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(3000);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        for _ in 0..cases {
            let minute = match next(3) {
                0 => "*".to_owned(),
                1 => next(60).to_string(),
                _ => format!("*/{}", next(9) + 1),
            };
            let hour = match next(2) {
                0 => "*".to_owned(),
                _ => next(24).to_string(),
            };
            let after = next(4_000_000_000_000) as i64;
            let expression = format!("{minute} {hour} * * *");
            let cron = Cron::parse(&expression).unwrap();
            let found = cron.next_after(after).unwrap();
            assert!(
                found > after && found - after <= DAY_MS + MINUTE_MS,
                "{expression} after {after}: {found}"
            );
            let matches = |t: i64| {
                let m = (t.rem_euclid(DAY_MS)) / MINUTE_MS;
                bit(cron.hours, (m / 60) as u32) && bit(cron.minutes, (m % 60) as u32)
            };
            assert!(matches(found), "{expression}: {found} does not match");
            let mut t = (after.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
            while t < found {
                assert!(!matches(t), "{expression}: {t} matches before {found}");
                t += MINUTE_MS;
            }
        }
    }
}
