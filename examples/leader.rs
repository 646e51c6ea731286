//! Python Faust's leader example: every 2 seconds the group's leader, and only the
//! leader, sends a random number to the agent `say`, which prints it.
//!
//! ```sh
//! cargo run --example leader -- worker     # embedded broker
//! cargo test --example leader              # its test, without a broker
//! ```
//!
//! App id `leader-example`; `say` reads `leader-example-say`, each message the number as
//! plain text (Faust's `value_serializer='raw'`). Start two workers on one broker (with
//! their own `--datadir` and `--web-port`): only one prints `PUBLISHING ON LEADER!`,
//! and when it stops the other takes over at the next rebalance.

use faust::prelude::*;

/// Prints each greeting.
#[faust::agent(codec = "string")]
async fn say(mut greetings: Stream<String>) -> faust::Result<()> {
    while let Some(greeting) = greetings.next().await {
        println!("{greeting}");
    }
    Ok(())
}

/// Every 2 seconds, on the leader only.
#[faust::timer(interval = "2s", on_leader = true)]
async fn publish_greetings() -> faust::Result<()> {
    println!("PUBLISHING ON LEADER!");
    let greeting = rand::random::<f64>().to_string();
    faust::send_bytes("say", None, Some(greeting.as_bytes()), None).await?;
    Ok(())
}

faust::main!(id = "leader-example");

/// The timer and the agent, run in-process by faust's test context (which is the leader).
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faust::testing::TestContext;

    #[tokio::test]
    async fn the_leader_sends_a_random_number_to_say_every_two_seconds() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(7)).await?;
        let sent = ctx.sent("leader-example-say");
        assert_eq!(sent.len(), 3, "at 2, 4 and 6 seconds");
        let numbers: Vec<f64> = sent
            .iter()
            .map(|record| {
                let text = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
                text.parse::<f64>()
                    .unwrap_or_else(|e| panic!("{text:?} is not a number: {e}"))
            })
            .collect();
        assert!(
            numbers.iter().all(|n| (0.0..1.0).contains(n)),
            "{numbers:?}"
        );
        assert!(numbers.windows(2).all(|w| w[0] != w[1]), "{numbers:?}");
        Ok(())
    }
}
