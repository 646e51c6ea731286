//! Python Faust's `examples/advanced/rpc.py`: agents that answer, asked by a timer, a
//! command and each other (agent RPC).
//!
//! ```sh
//! cargo run --example rpc -- worker                                   # embedded broker
//! cargo run --example rpc -- x100 4.5 --broker kafka://localhost:9092 # with a worker running
//! ```
//!
//! `mul` multiplies by 100; `pow` squares its value and asks `mul` for the product. Every
//! 10 seconds a timer asks `pow` for seven values twice: with `join` (the replies in the
//! order asked) and with `map` (as they come). Each ask goes to the agent's topic with
//! the address of this worker's reply topic (`f-reply-{uuid}`, created at the first
//! ask); the agent answers with `stream.reply()`, Faust's `yield`. The app id is Faust's
//! (`RPC99`), and the requests and replies are Faust's records, so a Python Faust
//! worker of rpc.py can serve or ask these agents.

use faust::{clap, prelude::*, Agent};

/// The values the timer asks about.
const VALUES: [f64; 7] = [30.3, 40.4, 50.5, 60.6, 70.7, 80.8, 90.9];

/// Squares its value, then asks `mul` for that times 100.
#[faust::agent(topic = "RPC__pow")]
async fn pow(mut stream: Stream<f64>) -> faust::Result<()> {
    while let Some(value) = stream.next().await {
        let product: f64 = Agent::named("mul").ask(&(value * value)).await?;
        stream.reply(&product).await?;
    }
    Ok(())
}

/// Multiplies its value by 100.
#[faust::agent(topic = "RPC__mul")]
async fn mul(mut stream: Stream<f64>) -> faust::Result<()> {
    while let Some(value) = stream.next().await {
        stream.reply(&(value * 100.0)).await?;
    }
    Ok(())
}

/// Asks `pow` about every value, in order (`join`) and as the replies come (`map`).
#[faust::timer(interval = "10s")]
async fn sender() -> faust::Result<()> {
    let joined: Vec<f64> = Agent::named("pow").join(VALUES).await?;
    println!("JOINED: {joined:?}");
    let mut replies = Agent::named("pow").map::<_, f64>(VALUES).await?;
    while let Some(reply) = replies.next().await {
        println!("RECEIVED REPLY: {}", reply?);
    }
    Ok(())
}

/// The command's argument (Faust's `argument('x')`).
#[derive(clap::Args)]
struct Number {
    /// The number to multiply
    x: f64,
}

/// Asks `mul` for x * 100: `x100 X`.
#[faust::command]
async fn x100(number: Number) -> faust::Result<()> {
    let product: f64 = Agent::named("mul").ask(&number.x).await?;
    println!("{} * 100 = {product}", number.x);
    Ok(())
}

faust::main!(
    id = "RPC99",
    topic = faust::Topic::new("RPC__pow").create(true),
    topic = faust::Topic::new("RPC__mul").create(true),
);

/// The agents, run in-process by faust's test context: no broker needed.
#[cfg(test)]
mod tests {
    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn mul_answers_an_ask() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let product: f64 = ctx.run(Agent::named("mul").ask(&4.5)).await??;
        assert_eq!(product, 450.0);
        Ok(())
    }

    #[tokio::test]
    async fn pow_asks_mul_and_join_keeps_the_order() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let joined: Vec<f64> = ctx.run(Agent::named("pow").join(VALUES)).await??;
        let expected: Vec<f64> = VALUES.iter().map(|v| v * v * 100.0).collect();
        assert_eq!(joined, expected);
        Ok(())
    }

    #[tokio::test]
    async fn map_gives_every_reply() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let replies = ctx
            .run(async {
                let mut replies = Agent::named("pow").map::<_, f64>(VALUES).await?;
                let mut all = Vec::new();
                while let Some(reply) = replies.next().await {
                    all.push(reply?);
                }
                Ok::<_, faust::Error>(all)
            })
            .await??;
        let mut sorted = replies.clone();
        sorted.sort_by(f64::total_cmp);
        let expected: Vec<f64> = VALUES.iter().map(|v| v * v * 100.0).collect();
        assert_eq!(sorted, expected);
        Ok(())
    }

    #[tokio::test]
    async fn the_timer_and_the_command_ask_too() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(std::time::Duration::from_secs(10)).await?;
        // The timer's asks reached pow (7 for join, 7 for map), and pow's reached mul.
        assert_eq!(ctx.sent("RPC__pow").len(), 14);
        assert_eq!(ctx.sent("RPC__mul").len(), 14);
        ctx.run(x100(Number { x: 2.0 })).await??;
        assert_eq!(ctx.sent("RPC__mul").len(), 15);
        Ok(())
    }

    #[tokio::test]
    async fn an_ask_nobody_answers_fails_with_a_clear_error() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let nobody =
            Agent::named("nobody-reads-this").timeout(std::time::Duration::from_millis(200));
        let error = ctx.run(nobody.ask::<_, f64>(&1.0)).await?.unwrap_err();
        assert!(
            matches!(
                error,
                faust::Error::NoReply {
                    missing: 1,
                    asked: 1,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("nobody-reads-this"), "{error}");
        Ok(())
    }
}
