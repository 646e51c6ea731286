//! Python Faust's windowed_aggregation example: a timer sends a random value ten times a
//! second; an agent collects them in 10-second tumbling windows at each event's own
//! `date`; when a window closes, its count and mean go to `agg-event`.
//!
//! ```sh
//! cargo run --example windowed_aggregation -- worker     # embedded broker
//! cargo test --example windowed_aggregation              # its test, without a broker
//! ```
//!
//! App id `windowed-agg`, one partition; topic `raw-event` (JSON
//! `{"date": <seconds since the epoch>, "value": 0.42}`); table `tumbling_table`, key
//! `events`, value the window's events; `agg-event` gets `{"date": <the window's start,
//! seconds>, "count": 100, "mean": 0.5}` per window, a second after the window ends (its
//! `expires`), whether or not more events come. Faust's `relative_to_field(RawModel.date)`
//! is `update_at` with the field's time.

use faust::{
    prelude::*,
    tables::{Window, WindowedTable},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawModel {
    /// Seconds since the Unix epoch.
    date: i64,
    value: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct AggModel {
    /// The window's start, seconds since the Unix epoch.
    date: i64,
    count: usize,
    mean: f64,
}

/// "events" -> the events of each 10-second window, closed a second after it ends.
#[faust::table(
    tumbling = "10s",
    expires = "1s",
    on_window_close = window_processor
)]
static TUMBLING_TABLE: WindowedTable<String, Vec<RawModel>>;

async fn window_processor(
    _key: String,
    window: Window,
    events: Vec<RawModel>,
) -> faust::Result<()> {
    let count = events.len();
    let mean = events.iter().map(|e| e.value).sum::<f64>() / count as f64;
    let timestamp = window.start / 1000;
    println!("processing window:{count} events,mean: {mean:.2},timestamp {timestamp}");
    let aggregate = AggModel {
        date: timestamp,
        count,
        mean,
    };
    faust::send("agg-event", None::<&str>, &aggregate).await?;
    Ok(())
}

#[faust::agent(topic = "raw-event")]
async fn print_windowed_events(mut events: Stream<RawModel>) -> faust::Result<()> {
    let key = "events".to_owned();
    while let Some(event) = events.next().await {
        let at = event.date * 1000;
        TUMBLING_TABLE.update_at(&key, at, |window| window.push(event.clone()))?;
    }
    Ok(())
}

/// Ten times a second, on every worker (as in Faust).
#[faust::timer(interval = "100ms")]
async fn produce() -> faust::Result<()> {
    let event = RawModel {
        date: faust::clock::now_ms() / 1000,
        value: rand::random(),
    };
    faust::send("raw-event", None::<&str>, &event).await?;
    Ok(())
}

faust::main!(
    id = "windowed-agg",
    partitions = 1,
    topic = faust::Topic::new("raw-event").create(true)
);

/// The timer, the agent and the window callback, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn each_closed_window_sends_its_count_and_mean_once() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(35)).await?;
        assert_eq!(ctx.sent("raw-event").len(), 350);
        let closed: Vec<AggModel> = ctx.sent_json("agg-event")?;
        assert!(closed.len() >= 2, "{closed:?}");
        // The first window started before the test; every later one holds 100 events.
        for window in &closed[1..] {
            assert_eq!(window.count, 100, "{closed:?}");
            assert!((0.0..1.0).contains(&window.mean), "{closed:?}");
        }
        for pair in closed.windows(2) {
            assert_eq!(pair[1].date - pair[0].date, 10, "{closed:?}");
        }
        let end_of_last = closed[closed.len() - 1].date * 1000 + 10_000;
        let now = faust::clock::now_ms();
        assert!(
            now < end_of_last + 1_000 + 10_000,
            "a window due was left open"
        );

        ctx.disable_timer("produce")?;
        ctx.advance(Duration::from_secs(60)).await?;
        let all: Vec<AggModel> = ctx.sent_json("agg-event")?;
        let counts: usize = all.iter().map(|w| w.count).sum();
        assert_eq!(
            counts, 350,
            "every event in exactly one closed window: {all:?}"
        );
        Ok(())
    }
}
