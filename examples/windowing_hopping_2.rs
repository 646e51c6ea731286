//! Python Faust's windowing/hopping_2 example: a timer sends an event ten times a
//! second; an agent keeps each 6-second window's events (a window every 3 seconds, at
//! each event's own `date`), numbering each event one past the last of its newest
//! window; a window's event count is printed when it closes, a minute after its end.
//!
//! ```sh
//! cargo run --example windowing_hopping_2 -- worker     # embedded broker
//! cargo test --example windowing_hopping_2              # its test, without a broker
//! ```
//!
//! App id `windowed-hopping`, one partition; topic `raw-event` (JSON
//! `{"date": <seconds since the epoch>, "value": 1}`); table `hopping_table`, key
//! `events`. Faust's version assigns the newest window's list to every window of the
//! event (`table['events'] = value_list`), so an older window ends up with its newer
//! neighbour's events; here each window keeps its own.

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

/// "events" -> the events of each 6-second window, one every 3 s, closed a minute after it ends.
#[faust::table(
    hopping = "6s",
    step = "3s",
    expires = "60s",
    on_window_close = window_processor
)]
static HOPPING_TABLE: WindowedTable<String, Vec<RawModel>>;

async fn window_processor(
    _key: String,
    window: Window,
    events: Vec<RawModel>,
) -> faust::Result<()> {
    let timestamp = window.start / 1000;
    println!(
        "processing window:{} events,timestamp {timestamp}",
        events.len()
    );
    Ok(())
}

#[faust::agent(topic = "raw-event")]
async fn print_windowed_events(mut events: Stream<RawModel>) -> faust::Result<()> {
    let key = "events".to_owned();
    while let Some(mut event) = events.next().await {
        let at = event.date * 1000;
        if let Some(last) = HOPPING_TABLE.at(&key, at)?.last() {
            event.value = last.value + 1.0;
        }
        println!("Receive message : {event:?}");
        HOPPING_TABLE.update_at(&key, at, |window| window.push(event.clone()))?;
    }
    Ok(())
}

/// Ten times a second, on every worker (as in Faust).
#[faust::timer(interval = "100ms")]
async fn produce() -> faust::Result<()> {
    let event = RawModel {
        date: faust::clock::now_ms() / 1000,
        value: 1.0,
    };
    faust::send("raw-event", None::<&str>, &event).await?;
    Ok(())
}

faust::main!(
    id = "windowed-hopping",
    partitions = 1,
    topic = faust::Topic::new("raw-event").create(true)
);

/// The timer, the agent and the table, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn each_window_numbers_its_events_and_closes_a_minute_after_its_end() -> faust::Result<()>
    {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(20)).await?;
        let key = "events".to_owned();
        let windows = HOPPING_TABLE.windows(&key)?;
        let counts: Vec<usize> = windows.iter().map(|(_, events)| events.len()).collect();
        assert_eq!(
            counts.iter().sum::<usize>(),
            400,
            "each of 200 events in two windows"
        );
        // Whole windows (not the first two, begun before the test, nor the last two,
        // still filling) hold 6 seconds of events.
        assert!(counts.len() >= 6, "{counts:?}");
        assert!(
            counts[2..counts.len() - 2].iter().all(|n| *n == 60),
            "{counts:?}"
        );
        let newest = &windows[windows.len() - 1].1;
        let values: Vec<f64> = newest.iter().map(|e| e.value).collect();
        let numbered: Vec<f64> = (1..=values.len()).map(|n| n as f64).collect();
        assert_eq!(values, numbered, "numbered one past the last");

        // A minute after the last window's end every window has closed.
        ctx.disable_timer("produce")?;
        ctx.advance(Duration::from_secs(70)).await?;
        assert!(HOPPING_TABLE.windows(&key)?.is_empty());
        Ok(())
    }
}
