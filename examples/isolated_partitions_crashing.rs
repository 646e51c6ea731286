//! Python Faust's advanced/isolated_partitions_crashing example: an agent with
//! `isolated_partitions`, so each partition of its topic has an actor of its own,
//! started with the partition's first event and stopped when the partition is revoked.
//! It counts withdrawals per user in a table; a task reports every 5 seconds whether
//! the worker is progressing; the `produce` command sends random withdrawals.
//!
//! ```sh
//! cargo run --example isolated_partitions_crashing -- worker          # embedded broker
//! cargo run --example isolated_partitions_crashing -- produce --max-messages 1000 \
//!     --max-latency 0 --broker kafka://127.0.0.1:PORT                  # the port it logs
//! CRASH_EVERY=25 cargo run --example isolated_partitions_crashing -- worker
//! cargo test --example isolated_partitions_crashing                   # its tests
//! ```
//!
//! App id `isolated-partitions`, 4 partitions; topic `isolated-partitions-withdrawals`
//! (`{app_id}-withdrawals`), keyed by user; table `withdrawal-counts`. Each actor checks that every event it gets is of its
//! own partition (Faust's `assert event.message.tp in withdrawals.active_partitions`).
//! Faust's example has the crash commented out ("uncomment to raise exceptions during
//! processing to test agents restarting"); here `CRASH_EVERY=n` makes every n-th event
//! of an actor's run fail once: the actor restarts and runs it again (`retries = 1`),
//! so every withdrawal is still counted once.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use faust::{clap, prelude::*};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Withdrawal {
    user: String,
    country: String,
    amount: f64,
    /// Milliseconds since the Unix epoch.
    date: i64,
}

/// user -> withdrawals seen.
#[faust::table(name = "withdrawal-counts", default = 0)]
static WITHDRAWAL_COUNTS: Table<String, u64>;

/// Events seen by this worker, for `report_progress` (Faust's `global seen_events`).
static SEEN_EVENTS: AtomicU64 = AtomicU64::new(0);

/// `CRASH_EVERY`: every n-th event of an actor's run fails (0, the default: none).
fn crash_every() -> u64 {
    std::env::var("CRASH_EVERY")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[faust::agent(
    topic = "{app_id}-withdrawals",
    isolated_partitions = true,
    retries = 1
)]
async fn track_user_withdrawal(mut withdrawals: Stream<Withdrawal>) -> faust::Result<()> {
    let crash_every = crash_every();
    let mut mine = None; // the partition this actor was started for
    let mut i = 0;
    while let Some(event) = withdrawals.next_event().await {
        let partition = *mine.get_or_insert(event.partition);
        if event.partition != partition {
            return Err(faust::Error::msg(format!(
                "the actor of partition {partition} was given an event of partition {}",
                event.partition
            )));
        }
        i += 1;
        if crash_every > 0 && i % crash_every == 0 {
            return Err(faust::Error::msg("OH NO")); // Faust's `raise KeyError('OH NO')`
        }
        SEEN_EVENTS.fetch_add(1, Ordering::Relaxed);
        WITHDRAWAL_COUNTS.update(&event.value.user, |n| *n += 1)?;
    }
    Ok(())
}

#[faust::task]
async fn report_progress() -> faust::Result<()> {
    let mut prev_count = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let seen = SEEN_EVENTS.load(Ordering::Relaxed);
        match seen <= prev_count {
            true => println!("Not progressing: was {prev_count} now {seen}"),
            false => println!("Progressing: was {prev_count} now {seen}"),
        }
        prev_count = seen;
    }
}

#[derive(clap::Args)]
struct Produce {
    /// Add a delay of (at most) n seconds between publishing
    #[arg(long, default_value_t = 0.5, env = "PRODUCE_LATENCY")]
    max_latency: f64,
    /// Send at most N messages (without it, until stopped)
    #[arg(long)]
    max_messages: Option<u64>,
}

/// Produce example Withdrawal events.
#[faust::command]
async fn produce(options: Produce) -> faust::Result<()> {
    let mut sent = Vec::new();
    for i in 0..options.max_messages.unwrap_or(u64::MAX) {
        let withdrawal = generate_withdrawal();
        sent.push(faust::send("track_user_withdrawal", Some(&withdrawal.user), &withdrawal).await?);
        if i % 10_000 == 0 {
            println!("+SEND {i}");
        }
        if options.max_latency > 0.0 {
            let latency = rand::random_range(0.0..options.max_latency);
            tokio::time::sleep(Duration::from_secs_f64(latency)).await;
        }
    }
    for withdrawal in sent {
        withdrawal.delivered().await?;
    }
    Ok(())
}

/// A random withdrawal: one of 500 users, 90% of them in `country_0`.
fn generate_withdrawal() -> Withdrawal {
    let country = match rand::random_bool(0.9) {
        true => 0,
        false => rand::random_range(1..5),
    };
    Withdrawal {
        user: format!("user_{}", rand::random_range(0..500)),
        country: format!("country_{country}"),
        amount: rand::random_range(0.0..25_000.0),
        date: faust::clock::now_ms(),
    }
}

faust::main!(
    id = "isolated-partitions",
    partitions = 4,
    topic = faust::Topic::new("{app_id}-withdrawals").create(true)
);

/// The agent, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use faust::testing::TestContext;

    use super::*;

    fn withdrawal(user: &str) -> Withdrawal {
        Withdrawal {
            user: user.to_owned(),
            country: "country_0".to_owned(),
            amount: 10.0,
            date: 0,
        }
    }

    #[tokio::test]
    async fn each_partition_has_an_actor_of_its_own_and_every_withdrawal_is_counted(
    ) -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let users: Vec<String> = (0..40).map(|u| format!("user_{u}")).collect();
        for round in 0..3 {
            for user in &users[..users.len() - round * 10] {
                ctx.send("track_user_withdrawal", Some(user), &withdrawal(user))
                    .await?;
            }
        }
        // An actor given an event of another partition fails, and a failure is the
        // send's error: every send succeeding says each actor kept to its partition.
        for (u, user) in users.iter().enumerate() {
            let expected = (0..3).filter(|round| u < 40 - round * 10).count() as u64;
            assert_eq!(WITHDRAWAL_COUNTS.get(user)?, expected, "{user}");
        }
        let partitions: std::collections::BTreeSet<i32> = (ctx
            .sent("isolated-partitions-withdrawals"))
        .iter()
        .map(|r| r.partition)
        .collect();
        assert_eq!(
            partitions.len(),
            4,
            "the users spread over the 4 partitions"
        );
        Ok(())
    }
}
