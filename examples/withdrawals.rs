//! Python Faust's withdrawals example: totals per user per hour, and per country per
//! 10 seconds through a `group_by`, in windowed tables.
//!
//! ```sh
//! cargo run --example withdrawals -- worker     # embedded broker; a timer makes up withdrawals
//! cargo test --example withdrawals              # its tests, without a broker
//! ```
//!
//! Topic `withdrawals` (JSON `{"user", "country", "amount", "date"}`, `date` in
//! milliseconds since the epoch, keyed by user). Each country's 10-second window is
//! reported to `country-totals` once it closes, 10 seconds after it ends, whether or
//! not more withdrawals come, and printed from there.

use faust::{
    prelude::*,
    tables::{Window, WindowedTable},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdrawal {
    user: String,
    country: String,
    amount: i64,
    /// Milliseconds since the Unix epoch.
    date: i64,
}

/// user -> total withdrawn per hour (at the message timestamp), kept a day.
#[faust::table(name = "user_to_total", default = 0, tumbling = "1h", expires = "1d")]
static USER_TO_TOTAL: WindowedTable<String, i64>;

/// country -> total withdrawn per 10 s (at the withdrawal's `date`), kept 10 s more.
#[faust::table(
    name = "country_to_total",
    default = 0,
    tumbling = "10s",
    expires = "10s",
    on_window_close = country_window_closed
)]
static COUNTRY_TO_TOTAL: WindowedTable<String, i64>;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct CountryTotal {
    country: String,
    start: i64,
    end: i64,
    total: i64,
}

/// Reports each country's window when it closes.
async fn country_window_closed(country: String, window: Window, total: i64) -> faust::Result<()> {
    let report = CountryTotal {
        country: country.clone(),
        start: window.start,
        end: window.end,
        total,
    };
    faust::send("country-totals", Some(&country), &report).await?;
    Ok(())
}

#[faust::agent(topic = "withdrawals")]
async fn track_user_withdrawal(mut withdrawals: Stream<Withdrawal>) -> faust::Result<()> {
    while let Some(w) = withdrawals.next().await {
        if let Some(total) = USER_TO_TOTAL.update(&w.user, |t| *t += w.amount)? {
            println!("{}: {total} this hour", w.user);
        }
    }
    Ok(())
}

/// Regroups withdrawals by country, so each country's total lives in one partition.
#[faust::agent(topic = "withdrawals", group_by = "country")]
async fn track_country_withdrawal(withdrawals: Stream<Withdrawal>) -> faust::Result<()> {
    let mut by_country = withdrawals.group_by("country", |w| w.country.clone())?;
    while let Some(w) = by_country.next().await {
        COUNTRY_TO_TOTAL.update_at(&w.country, w.date, |t| *t += w.amount)?;
    }
    Ok(())
}

/// Prints each country's closed window (reading `country-totals` also makes the worker
/// create that topic).
#[faust::agent(topic = "country-totals")]
async fn print_country_totals(mut totals: Stream<CountryTotal>) -> faust::Result<()> {
    while let Some(t) = totals.next().await {
        println!("{}: {} from {} to {}", t.country, t.total, t.start, t.end);
    }
    Ok(())
}

/// Makes up a few withdrawals every 10 seconds, on one worker of the group.
#[faust::timer(interval = "10s", on_leader = true)]
async fn generate_withdrawals() -> faust::Result<()> {
    let now = faust::clock::now_ms();
    for i in 0..5 {
        let n = (now / 1000 + i) as usize;
        let w = Withdrawal {
            user: ["alice", "bob", "carol"][n % 3].to_owned(),
            country: ["NO", "SE", "DK", "FI"][n % 4].to_owned(),
            amount: (n % 100) as i64 + 1,
            date: now,
        };
        faust::send("withdrawals", Some(&w.user), &w).await?;
    }
    Ok(())
}

faust::main!(
    id = "withdrawals",
    partitions = 4,
    // Its timer makes up the withdrawals, and its agents report to country-totals.
    topic = faust::Topic::new("withdrawals").create(true),
    topic = faust::Topic::new("country-totals").create(true)
);

/// The agents, tables and timer, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use faust::testing::TestContext;

    const HOUR: i64 = 3_600_000;

    fn withdrawal(user: &str, country: &str, amount: i64, date: i64) -> Withdrawal {
        Withdrawal {
            user: user.into(),
            country: country.into(),
            amount,
            date,
        }
    }

    #[tokio::test]
    async fn users_are_totalled_per_hour_with_late_events_until_expiry() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.disable_timer("generate_withdrawals")?;
        let h0 = faust::clock::now_ms() / HOUR * HOUR - 3 * HOUR;
        for (amount, at) in [
            (10, h0 + 60_000),
            (20, h0 + HOUR + 1),
            (5, h0 + 50 * 60_000),
        ] {
            let w = withdrawal("alice", "NO", amount, at);
            ctx.send_at("withdrawals", Some(&w.user), &w, at).await?;
        }
        let alice = "alice".to_owned();
        let hours: Vec<(i64, i64)> = USER_TO_TOTAL
            .windows(&alice)?
            .into_iter()
            .map(|(window, total)| (window.start - h0, total))
            .collect();
        assert_eq!(
            hours,
            [(0, 15), (HOUR, 20)],
            "the late 5 still counts in hour 0"
        );
        // Outside an event, reads are relative to the clock: hour 0 was three hours ago.
        let three_hours = Duration::from_secs(3 * 3600);
        assert_eq!(USER_TO_TOTAL.delta(&alice, three_hours)?, 15);
        assert_eq!(USER_TO_TOTAL.now(&alice)?, 0, "nothing this hour");

        // A day later both hours have closed: a late event for hour 0 is left out.
        ctx.advance(Duration::from_secs(25 * 3600)).await?;
        assert!(USER_TO_TOTAL.windows(&alice)?.is_empty());
        let late = withdrawal("alice", "NO", 1000, h0 + 1);
        ctx.send_at("withdrawals", Some(&late.user), &late, late.date)
            .await?;
        assert!(USER_TO_TOTAL.windows(&alice)?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_country_window_is_reported_once_when_it_closes_even_without_more_events(
    ) -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.disable_timer("generate_withdrawals")?;
        let t0 = faust::clock::now_ms() / 10_000 * 10_000;
        for (user, amount) in [("alice", 3), ("bob", 4)] {
            let w = withdrawal(user, "NO", amount, t0 + 1_000);
            ctx.send("withdrawals", Some(&w.user), &w).await?;
        }
        assert_eq!(COUNTRY_TO_TOTAL.at(&"NO".to_owned(), t0)?, 7);
        assert!(ctx.sent("country-totals").is_empty(), "still open");

        // No more withdrawals: the window [t0, t0 + 10 s) closes 10 s after its end.
        ctx.advance(Duration::from_secs(25)).await?;
        let closed: Vec<CountryTotal> = ctx.sent_json("country-totals")?;
        let expected = CountryTotal {
            country: "NO".into(),
            start: t0,
            end: t0 + 10_000,
            total: 7,
        };
        assert_eq!(closed, [expected]);
        ctx.advance(Duration::from_secs(60)).await?;
        assert_eq!(ctx.sent("country-totals").len(), 1, "closed once");
        Ok(())
    }

    #[tokio::test]
    async fn the_timer_makes_up_withdrawals_every_ten_seconds() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(25)).await?;
        let made: Vec<Withdrawal> = ctx.sent_json("withdrawals")?;
        assert_eq!(made.len(), 10, "two ticks of five");
        Ok(())
    }
}
