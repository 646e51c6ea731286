//! Python Faust's hello_world example: an agent prints the greetings of `greetings`, and
//! a timer sends a hundred of them every 5 seconds.
//!
//! ```sh
//! cargo run --example hello_world -- worker     # embedded broker
//! cargo test --example hello_world              # its test, without a broker
//! ```
//!
//! App id `hello-world`; topic `greetings`, each message a JSON string. As in Faust,
//! every worker's timer sends (Faust's `@app.timer(5)` is not leader-only either).

use faust::prelude::*;

/// Prints each greeting.
#[faust::agent(topic = "greetings")]
async fn print_greetings(mut greetings: Stream<String>) -> faust::Result<()> {
    while let Some(greeting) = greetings.next().await {
        println!("{greeting}");
    }
    Ok(())
}

/// Every 5 seconds, sends `hello 0` to `hello 99`.
#[faust::timer(interval = "5s")]
async fn produce() -> faust::Result<()> {
    for i in 0..100 {
        faust::send("greetings", None::<&str>, &format!("hello {i}")).await?;
    }
    Ok(())
}

faust::main!(
    id = "hello-world",
    // Faust relies on the broker creating a topic at its first message; faust-rs creates
    // the topics the app owns, and this one it declares its own.
    topic = faust::Topic::new("greetings").create(true)
);

/// The agent and the timer, run in-process by faust's test context: no broker needed.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use faust::testing::TestContext;

    #[tokio::test]
    async fn every_five_seconds_a_hundred_greetings_are_sent_and_printed() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_millis(4_999)).await?;
        assert!(
            ctx.sent("greetings").is_empty(),
            "the timer waits its interval first"
        );
        ctx.advance(Duration::from_millis(1)).await?;
        let greetings: Vec<String> = ctx.sent_json("greetings")?;
        let expected: Vec<String> = (0..100).map(|i| format!("hello {i}")).collect();
        assert_eq!(greetings, expected);
        ctx.advance(Duration::from_secs(5)).await?;
        assert_eq!(ctx.sent("greetings").len(), 200);
        Ok(())
    }
}
