//! Python Faust's crontab/tz_aware example: every day at 20:16 Pacific time the leader
//! sends a random value to `tz_aware_topic`, and an agent prints what arrives.
//!
//! ```sh
//! cargo run --example crontab_tz_aware -- worker     # embedded broker
//! cargo test --example crontab_tz_aware              # its test, without a broker
//! ```
//!
//! App id `tz_aware`; topic `tz_aware_topic` (JSON `{"random": 0.42}`). Faust's
//! `tz=pytz.timezone('US/Pacific')` is `timezone = "US/Pacific"`: any IANA name, looked
//! up in the system's time zone database (or the one built into faust-rs), so 20:16 is
//! 04:16 UTC in winter and 03:16 UTC in summer.

use faust::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Model {
    random: f64,
}

#[faust::agent(topic = "tz_aware_topic")]
async fn consume(mut records: Stream<Model>) -> faust::Result<()> {
    while let Some(record) = records.next().await {
        println!("record: {record:?}");
    }
    Ok(())
}

/// Every day at 20:16 in the US/Pacific time zone, on the leader only.
#[faust::crontab("16 20 * * *", timezone = "US/Pacific", on_leader = true)]
async fn publish_at_8_20_pm_pacific() -> faust::Result<()> {
    println!("-- This should be sent at 20:16 Pacific time --");
    println!(
        "Sending message at: {} ms since the epoch",
        faust::clock::now_ms()
    );
    let random = (rand::random::<f64>() * 100.0).round() / 100.0;
    faust::send("tz_aware_topic", None::<&str>, &Model { random }).await?;
    Ok(())
}

faust::main!(
    id = "tz_aware",
    topic = faust::Topic::new("tz_aware_topic").create(true)
);

/// The crontab and the agent, run in-process by faust's test context (the leader).
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faust::testing::TestContext;

    #[tokio::test]
    async fn a_message_is_sent_once_a_day_at_20_16_pacific() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(48 * 3600)).await?;
        let times: Vec<i64> = ctx
            .sent("tz_aware_topic")
            .iter()
            .filter_map(|r| r.timestamp)
            .collect();
        assert_eq!(times.len(), 2, "two days, two messages: {times:?}");
        const UTC_0416: i64 = (4 * 60 + 16) * 60_000; // 20:16 PST (UTC-8)
        const UTC_0316: i64 = (3 * 60 + 16) * 60_000; // 20:16 PDT (UTC-7)
        for t in &times {
            let time_of_day = t % (24 * 3600 * 1000);
            assert!(
                time_of_day == UTC_0416 || time_of_day == UTC_0316,
                "{t} is not 20:16 in Los Angeles"
            );
        }
        Ok(())
    }
}
