//! What becomes of an event an agent fails on: `retries` and `on_error` (skip, dead
//! letter, stop), in the test context. Its own binary: an agent that dead-letters needs
//! every context of the binary to have a dead-letter topic.

use std::sync::atomic::{AtomicU32, Ordering};

use faust::{prelude::*, testing::TestContext, App};

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

/// Fails on a value `n` until its n-th run, then reports it to `flaky-done`.
#[faust::agent(topic = "flaky", sink = "flaky-done", retries = 2)]
async fn flaky(mut values: Stream<u32>, done: Sink<u32>) -> faust::Result<()> {
    while let Some(n) = values.next().await {
        let run = FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
        if run < n {
            return Err(faust::Error::msg(format!("run {run} of {n} fails")));
        }
        FLAKY_RUNS.store(0, Ordering::SeqCst);
        done.send(&n).await?;
    }
    Ok(())
}

static STUBBORN_RUNS: AtomicU32 = AtomicU32::new(0);

/// Fails on odd values, every time; reports even ones to `stubborn-done`.
#[faust::agent(
    topic = "stubborn",
    sink = "stubborn-done",
    retries = 1,
    on_error = "dead_letter"
)]
async fn stubborn(mut values: Stream<u32>, done: Sink<u32>) -> faust::Result<()> {
    while let Some(n) = values.next().await {
        if n % 2 == 1 {
            STUBBORN_RUNS.fetch_add(1, Ordering::SeqCst);
            panic!("{n} is odd");
        }
        done.send(&n).await?;
    }
    Ok(())
}

/// Fails on 0, and stops the worker when it does.
#[faust::agent(topic = "strict", on_error = "stop")]
async fn strict(mut values: Stream<u32>) -> faust::Result<()> {
    while let Some(n) = values.next().await {
        if n == 0 {
            return Err(faust::Error::msg("zero"));
        }
    }
    Ok(())
}

async fn context() -> faust::Result<TestContext> {
    TestContext::with_app(App::builder("errors").dead_letter_topic("dead")).await
}

#[tokio::test]
async fn a_failed_event_runs_again_up_to_its_retries() -> faust::Result<()> {
    let mut ctx = context().await?;
    // Fails twice, then works on the second retry.
    let failed = ctx.send("flaky", None::<&str>, &3u32).await;
    assert!(failed.is_err(), "the failures are reported");
    assert_eq!(ctx.sent_json::<u32>("flaky-done")?, vec![3]);
    // The retried event ran first: the next one follows it.
    ctx.send("flaky", None::<&str>, &1u32).await?;
    assert_eq!(ctx.sent_json::<u32>("flaky-done")?, vec![3, 1]);
    assert!(ctx.sent("dead").is_empty());
    Ok(())
}

#[tokio::test]
async fn an_event_that_fails_past_its_retries_goes_to_the_dead_letter_topic() -> faust::Result<()> {
    let mut ctx = context().await?;
    let failed = ctx.send("stubborn", None::<&str>, &7u32).await;
    assert!(failed.is_err());
    assert_eq!(
        STUBBORN_RUNS.load(Ordering::SeqCst),
        2,
        "once, then one retry"
    );
    let dead = ctx.sent("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&b"7"[..]));
    let error = dead[0]
        .headers
        .iter()
        .find(|h| h.key == "faust-error")
        .and_then(|h| h.value.clone())
        .expect("a faust-error header");
    assert!(String::from_utf8_lossy(&error).contains("7 is odd"));
    // It was acknowledged: the agent goes on with the next event.
    ctx.send("stubborn", None::<&str>, &4u32).await?;
    assert_eq!(ctx.sent_json::<u32>("stubborn-done")?, vec![4]);
    Ok(())
}

#[tokio::test]
async fn an_agent_that_stops_on_error_stops_the_worker() -> faust::Result<()> {
    let mut ctx = context().await?;
    ctx.send("strict", None::<&str>, &1u32).await?;
    let stopped = ctx.send("strict", None::<&str>, &0u32).await;
    let error = stopped.expect_err("the worker stops").to_string();
    assert!(
        error.contains("agent 'strict' failed at strict[0]@1") && error.contains("\"stop\""),
        "{error}"
    );
    Ok(())
}
