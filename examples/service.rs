//! Python Faust's `examples/advanced/service.py`: a service the worker starts and
//! stops with itself, beside an agent a timer feeds.
//!
//! ```sh
//! cargo run --example service -- worker     # embedded broker; Ctrl-C prints STOPPED
//! ```
//!
//! `MyService` says `STARTED` as the worker starts (before the agents) and `STOPPED` as
//! it stops (after them); in between its background loop beats once a second, which
//! Faust's example leaves out (a `mode.Service` would use `@Service.task`). Every second
//! the timer sends `hello` to the agent `consumer`, which prints it.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use faust::prelude::*;

/// Faust's `MyService`, with a heartbeat.
#[derive(Default)]
struct MyService {
    beats: AtomicU64,
}

impl faust::Service for MyService {
    async fn on_start(&self) -> faust::Result<()> {
        println!("STARTED");
        Ok(())
    }

    async fn run(&self) -> faust::Result<()> {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.beats.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn on_stop(&self) -> faust::Result<()> {
        println!("STOPPED after {} beats", self.beats.load(Ordering::Relaxed));
        Ok(())
    }
}

/// Prints each message of its own topic (`service-example-consumer`).
#[faust::agent]
async fn consumer(mut stream: Stream<String>) -> faust::Result<()> {
    while let Some(message) = stream.next().await {
        println!("Received: {message:?}");
    }
    Ok(())
}

/// Every second, sends `hello` to the agent.
#[faust::timer(interval = "1s")]
async fn producer() -> faust::Result<()> {
    faust::send("consumer", None::<&str>, &"hello").await?;
    Ok(())
}

faust::main!(id = "service-example", service = MyService::default());

/// The agent, the timer and the service's hooks, without a broker. (A test context runs
/// no services, as it runs no tasks; the worker test runs this example whole.)
#[cfg(test)]
mod tests {
    use super::*;
    use faust::{testing::TestContext, Service};

    #[tokio::test]
    async fn the_timer_says_hello_to_the_agent_every_second() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.advance(Duration::from_secs(3)).await?;
        let sent: Vec<String> = ctx.sent_json("service-example-consumer")?;
        assert_eq!(sent, ["hello", "hello", "hello"]);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn the_service_beats_while_it_runs() -> faust::Result<()> {
        let service = std::sync::Arc::new(MyService::default());
        service.on_start().await?;
        let running = tokio::spawn({
            let service = service.clone();
            async move { service.run().await }
        });
        // Time is paused: it moves only as the tasks wait, so 2.5 s hold two beats.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        running.abort();
        assert_eq!(service.beats.load(Ordering::Relaxed), 2);
        service.on_stop().await
    }
}
