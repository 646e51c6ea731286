//! Python Faust's windowing/tumbling example: a timer sends an event every 2 seconds, and
//! an agent counts them in a table of 10-second tumbling windows, printing the count of
//! the window now, of the event's window, and of the window 30 seconds before.
//!
//! ```sh
//! cargo run --example windowing_tumbling -- worker     # embedded broker
//! cargo test --example windowing_tumbling              # its test, without a broker
//! ```
//!
//! App id `windowing`, one partition; topic `tumbling_topic` (JSON `{"random": 0.42}`); table
//! `tumbling_table`, key `counter`. With an event every 2 seconds a 10-second window
//! holds five, so `now()` and `current()` go from 1 to 5, and `delta(30s)` is 0 for about
//! the first 30 seconds (at least 22: windows align to the epoch, not to the start) and 5 from 40 on. Faust's `value()`,
//! which reads at the table's time reference (the event's time here), is `current()`.

use std::time::Duration;

use faust::{prelude::*, tables::WindowedTable};

#[derive(Debug, Serialize, Deserialize)]
struct Model {
    random: f64,
}

/// "counter" -> events per 10 seconds, kept 10 minutes after each window ends.
#[faust::table(default = 0, tumbling = "10s", expires = "10m")]
static TUMBLING_TABLE: WindowedTable<String, u64>;

#[faust::agent(topic = "tumbling_topic")]
async fn print_windowed_events(mut events: Stream<Model>) -> faust::Result<()> {
    let counter = "counter".to_owned();
    while events.next().await.is_some() {
        TUMBLING_TABLE.update(&counter, |n| *n += 1)?;
        println!("-- New Event (every 2 secs) written to tumbling(10) --");
        println!(
            "now() should go from 1 to 5: {}",
            TUMBLING_TABLE.now(&counter)?
        );
        let current = TUMBLING_TABLE.current(&counter)?;
        println!("current() should go from 1 to 5: {current}");
        println!("value() should go from 1 to 5: {current}");
        let delta = TUMBLING_TABLE.delta(&counter, Duration::from_secs(30))?;
        println!("delta(30) should start at 0 and after 40 secs be 5: {delta}");
    }
    Ok(())
}

/// Every 2 seconds, on the leader only.
#[faust::timer(interval = "2s", on_leader = true)]
async fn publish_every_2secs() -> faust::Result<()> {
    let random = (rand::random::<f64>() * 100.0).round() / 100.0;
    faust::send("tumbling_topic", None::<&str>, &Model { random }).await?;
    Ok(())
}

// One partition, so the one counter sees every event: the timer's events have no key
// and would spread over partitions, each counting its share apart (as in Faust, whose
// example leaves its eight partitions).
faust::main!(
    id = "windowing",
    partitions = 1,
    topic = faust::Topic::new("tumbling_topic").create(true)
);

/// The timer, the agent and the table, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn each_ten_second_window_counts_five_events() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let counter = "counter".to_owned();
        for tick in 1..=30 {
            ctx.advance(Duration::from_secs(2)).await?;
            let now = TUMBLING_TABLE.now(&counter)?;
            assert!(
                (1..=5).contains(&now),
                "at {}s the window holds {now}",
                2 * tick
            );
            let delta = TUMBLING_TABLE.delta(&counter, Duration::from_secs(30))?;
            // The window holding `now - 30s` ends by `now - 20s`: empty while that is
            // before the first event (2 s), whole once it starts after the test began.
            match tick * 2 {
                ..=22 => assert_eq!(delta, 0, "at {}s nothing was sent 30s ago", 2 * tick),
                40.. => assert_eq!(delta, 5, "at {}s", 2 * tick),
                _ => assert!(delta <= 5),
            }
        }
        assert_eq!(ctx.sent("tumbling_topic").len(), 30);
        let windows = TUMBLING_TABLE.windows(&counter)?;
        let counts: Vec<u64> = windows.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts.iter().sum::<u64>(), 30, "{counts:?}");
        let whole = &counts[1..counts.len() - 1];
        assert!(whole.iter().all(|n| *n == 5), "{counts:?}");
        for pair in windows.windows(2) {
            assert_eq!(pair[1].0.start - pair[0].0.start, 10_000, "{windows:?}");
        }
        Ok(())
    }
}
