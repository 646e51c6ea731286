//! Python Faust's concurrency example: an agent that makes a slow request (an HTTP
//! lookup in Faust's) for every record, 200 at a time, and a `produce` command that
//! sends it 10,000 records.
//!
//! ```sh
//! cargo run --example concurrency -- worker          # embedded broker
//! cargo run --example concurrency -- produce --broker kafka://127.0.0.1:PORT   # the port it logs
//! cargo test --example concurrency                   # its test, without a broker
//! ```
//!
//! App id `concurrency`; topic `concurrency`, each record `{"value": n}`.
//!
//! **How it differs.** Faust's `concurrency=200` runs 200 actors over one stream and
//! lets them finish in any order. faust-rs's `concurrency` keeps each partition's order
//! (partition `p` goes to actor `p % n`), so it adds nothing past the partition count.
//! For many requests in flight, one actor takes up to 200 events at a time
//! (`Stream::take`) and runs their requests together; the batch is acknowledged once
//! every request of it is done, so no offset is committed past a request still running.
//! The request here is simulated (this machine has no internet): a 100 ms wait.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use faust::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    value: u64,
}

/// Requests in flight now, and the most there were at once.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MOST_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Requests done.
static DONE: AtomicUsize = AtomicUsize::new(0);

/// Stands for Faust's `session.get(f'http://www.google.com/?#q={record.value}')`.
async fn lookup(value: u64) {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100 + value % 7)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    DONE.fetch_add(1, Ordering::SeqCst);
}

#[faust::agent(topic = "concurrency")]
async fn mytask(mut records: Stream<Record>) -> faust::Result<()> {
    while let Some(batch) = records.take(200, Duration::from_millis(50)).await {
        let mut requests = tokio::task::JoinSet::new();
        for record in batch {
            requests.spawn(lookup(record.value));
        }
        while let Some(done) = requests.join_next().await {
            done.map_err(|e| faust::Error::msg(format!("a lookup failed: {e}")))?;
        }
        println!(
            "{} lookups done, at most {} at once",
            DONE.load(Ordering::SeqCst),
            MOST_IN_FLIGHT.load(Ordering::SeqCst)
        );
    }
    Ok(())
}

/// Sends 10,000 records (Faust's `producer()`), then waits until the broker has them.
#[faust::command]
async fn produce() -> faust::Result<()> {
    let mut sent = Vec::with_capacity(10_000);
    for value in 0..10_000 {
        sent.push(faust::send("concurrency", None::<&str>, &Record { value }).await?);
    }
    for record in sent {
        record.delivered().await?;
    }
    println!("sent 10000 records");
    Ok(())
}

faust::main!(
    id = "concurrency",
    topic = faust::Topic::new("concurrency").create(true)
);

/// The agent, run in-process by faust's test context, on tokio's paused clock (the
/// simulated requests take no real time).
#[cfg(test)]
mod tests {
    use faust::testing::TestContext;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_thousand_records_are_looked_up_two_hundred_at_a_time() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.run(async {
            for value in 0..1_000 {
                faust::send("concurrency", None::<&str>, &Record { value }).await?;
            }
            Ok::<_, faust::Error>(())
        })
        .await??;
        assert_eq!(DONE.load(Ordering::SeqCst), 1_000);
        assert_eq!(IN_FLIGHT.load(Ordering::SeqCst), 0);
        assert_eq!(MOST_IN_FLIGHT.load(Ordering::SeqCst), 200);
        Ok(())
    }
}
