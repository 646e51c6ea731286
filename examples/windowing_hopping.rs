//! Python Faust's windowing/hopping example: a timer sends an event every 2 seconds, and
//! an agent counts them in a table of 10-second windows starting every 5 seconds,
//! printing the count of the newest window now, of the event's newest window, and of the
//! one 30 seconds before.
//!
//! ```sh
//! cargo run --example windowing_hopping -- worker     # embedded broker
//! cargo test --example windowing_hopping              # its test, without a broker
//! ```
//!
//! App id `windowing`, one partition; topic `hopping_topic` (JSON `{"random": 0.42}`); table
//! `hopping_table`, key `counter`. Each event lands in two windows. The newest window
//! started at most 5 seconds ago, so `now()` and `current()` stay between 1 and 3;
//! `delta(30s)` is 0 for at least the first 22 seconds (windows align to the epoch, not to the start) and 5 (a whole window) from 40 seconds on.
//! Faust's `value()`, which reads at the table's time reference (the event's time here),
//! is `current()`.

use std::time::Duration;

use faust::{prelude::*, tables::WindowedTable};

#[derive(Debug, Serialize, Deserialize)]
struct Model {
    random: f64,
}

/// "counter" -> events per 10 seconds, a window every 5, kept 10 minutes after each ends.
#[faust::table(default = 0, hopping = "10s", step = "5s", expires = "10m")]
static HOPPING_TABLE: WindowedTable<String, u64>;

#[faust::agent(topic = "hopping_topic")]
async fn print_windowed_events(mut events: Stream<Model>) -> faust::Result<()> {
    let counter = "counter".to_owned();
    while events.next().await.is_some() {
        HOPPING_TABLE.update(&counter, |n| *n += 1)?;
        println!("-- New Event (every 2 secs) written to hopping(10, 5) --");
        let now = HOPPING_TABLE.now(&counter)?;
        println!("now() should have values between 1-3: {now}");
        let current = HOPPING_TABLE.current(&counter)?;
        println!("current() should have values between 1-3: {current}");
        println!("value() should have values between 1-3: {current}");
        let delta = HOPPING_TABLE.delta(&counter, Duration::from_secs(30))?;
        println!("delta(30) should start at 0 and after 40 secs be 5: {delta}");
    }
    Ok(())
}

/// Every 2 seconds, on the leader only.
#[faust::timer(interval = "2s", on_leader = true)]
async fn publish_every_2secs() -> faust::Result<()> {
    let random = (rand::random::<f64>() * 100.0).round() / 100.0;
    faust::send("hopping_topic", None::<&str>, &Model { random }).await?;
    Ok(())
}

// One partition, so the one counter sees every event: the timer's events have no key
// and would spread over partitions, each counting its share apart (as in Faust, whose
// example leaves its eight partitions).
faust::main!(
    id = "windowing",
    partitions = 1,
    topic = faust::Topic::new("hopping_topic").create(true)
);

/// The timer, the agent and the table, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn each_event_lands_in_two_overlapping_windows() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let counter = "counter".to_owned();
        for tick in 1..=30 {
            let at = 2 * tick;
            ctx.advance(Duration::from_secs(2)).await?;
            let now = HOPPING_TABLE.now(&counter)?;
            assert!(
                (1..=3).contains(&now),
                "at {at}s the newest window holds {now}"
            );
            let delta = HOPPING_TABLE.delta(&counter, Duration::from_secs(30))?;
            // The newest window holding `now - 30s` ends by `now - 20s`: empty while that
            // is before the first event (2 s), whole once it starts after the test began.
            match at {
                ..=22 => assert_eq!(delta, 0, "at {at}s nothing was sent 30s ago"),
                40.. => assert_eq!(delta, 5, "at {at}s"),
                _ => assert!(delta <= 5, "at {at}s"),
            }
        }
        let windows = HOPPING_TABLE.windows(&counter)?;
        let counts: Vec<u64> = windows.iter().map(|(_, n)| *n).collect();
        assert_eq!(
            counts.iter().sum::<u64>(),
            60,
            "each of 30 events twice: {counts:?}"
        );
        for pair in windows.windows(2) {
            assert_eq!(pair[1].0.start - pair[0].0.start, 5_000, "{windows:?}");
        }
        Ok(())
    }
}
