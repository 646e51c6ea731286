//! Python Faust's crontab/tz_unaware example: at the start of every minute the leader
//! sends a random value to `tz_unaware_topic`, and an agent prints what arrives.
//!
//! ```sh
//! cargo run --example crontab_tz_unaware -- worker     # embedded broker
//! cargo test --example crontab_tz_unaware              # its test, without a broker
//! ```
//!
//! App id `tz_unaware`; topic `tz_unaware_topic` (JSON `{"random": 0.42}`). A crontab
//! without a time zone runs in UTC, as in Faust (whose `timezone` setting defaults to UTC).

use faust::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Model {
    random: f64,
}

#[faust::agent(topic = "tz_unaware_topic")]
async fn consume(mut records: Stream<Model>) -> faust::Result<()> {
    while let Some(record) = records.next().await {
        println!("record: {record:?}");
    }
    Ok(())
}

/// At the start of every minute, on the leader only.
#[faust::crontab("*/1 * * * *", on_leader = true)]
async fn publish_every_minute() -> faust::Result<()> {
    println!("-- We should send a message every minute --");
    println!(
        "Sending message at: {} ms since the epoch",
        faust::clock::now_ms()
    );
    let random = (rand::random::<f64>() * 100.0).round() / 100.0;
    faust::send("tz_unaware_topic", None::<&str>, &Model { random }).await?;
    Ok(())
}

faust::main!(
    id = "tz_unaware",
    topic = faust::Topic::new("tz_unaware_topic").create(true)
);

/// The crontab and the agent, run in-process by faust's test context (the leader).
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faust::testing::TestContext;

    #[tokio::test]
    async fn a_message_is_sent_at_the_start_of_every_minute() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(180)).await?;
        let sent = ctx.sent("tz_unaware_topic");
        let times: Vec<i64> = sent.iter().filter_map(|r| r.timestamp).collect();
        assert_eq!(times.len(), 3, "three minutes, three messages: {times:?}");
        assert!(times.iter().all(|t| t % 60_000 == 0), "{times:?}");
        assert!(times.windows(2).all(|w| w[1] - w[0] == 60_000), "{times:?}");
        Ok(())
    }
}
