//! The app the benchmarks run as a worker process (`faust-bench-app worker`).
//!
//! - `passthrough` reads `{app_id}-passthrough`, decodes each JSON record and forwards
//!   it to `bench-out`, keyed as it came.
//! - `count_words` reads `{app_id}-count_words` (keyed by word) and counts each word in the
//!   RocksDB table `word_counts` (its changelog gets one record per key and commit).
//! - `count_windows` reads `{app_id}-count_windows` the same way and counts each word per
//!   10-second window (message time) in the windowed table `windowed_counts`.
//! - `times100` answers asks with the value times 100; the command `rpc` asks it one
//!   request at a time, then in joins, and prints round-trip figures as one JSON line.

use std::time::{Duration, Instant};

use faust::{clap, prelude::*, tables::WindowedTable, Agent};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: u64,
    /// Microseconds since the epoch when the record was produced (latency runs).
    sent_us: u64,
    text: String,
}

#[faust::agent(sink = "bench-out")]
async fn passthrough(mut records: Stream<Record>, out: Sink<Record>) -> faust::Result<()> {
    while let Some(record) = records.next().await {
        out.send(&record).await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Word {
    word: String,
}

#[faust::table(name = "word_counts", default = 0)]
static WORD_COUNTS: Table<String, u64>;

#[faust::agent]
async fn count_words(mut words: Stream<Word>) -> faust::Result<()> {
    while let Some(word) = words.next().await {
        WORD_COUNTS.update(&word.word, |n| *n += 1)?;
    }
    Ok(())
}

#[faust::table(
    name = "windowed_counts",
    default = 0,
    tumbling = "10s",
    expires = "10s"
)]
static WINDOWED_COUNTS: WindowedTable<String, u64>;

#[faust::agent]
async fn count_windows(mut words: Stream<Word>) -> faust::Result<()> {
    while let Some(word) = words.next().await {
        WINDOWED_COUNTS.update(&word.word, |n| *n += 1)?;
    }
    Ok(())
}

#[faust::agent]
async fn times100(mut values: Stream<f64>) -> faust::Result<()> {
    while let Some(value) = values.next().await {
        values.reply(&(value * 100.0)).await?;
    }
    Ok(())
}

/// How many asks the `rpc` command makes.
#[derive(clap::Args)]
struct RpcRun {
    /// Asks made one after the other
    #[arg(long, default_value_t = 2_000)]
    asks: usize,
    /// Joins made one after the other...
    #[arg(long, default_value_t = 200)]
    joins: usize,
    /// ...of this many values each
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

/// Asks `times100` one request at a time, then in joins; prints requests per second and
/// round-trip percentiles as one JSON line (the runner's `rpc` scenario).
#[faust::command]
async fn rpc(run: RpcRun) -> faust::Result<()> {
    let agent = Agent::named("times100");
    // The first ask creates this command's reply topic and starts reading it.
    let _: f64 = agent.ask(&0.0).await?;
    let mut asks = Vec::with_capacity(run.asks);
    let started = Instant::now();
    for i in 0..run.asks {
        let asked = Instant::now();
        let reply: f64 = agent.ask(&(i as f64)).await?;
        asks.push(asked.elapsed());
        if reply != i as f64 * 100.0 {
            return Err(faust::Error::msg(format!("ask {i}: wrong reply {reply}")));
        }
    }
    let ask_seconds = started.elapsed().as_secs_f64();
    let values: Vec<f64> = (0..run.batch).map(|i| i as f64).collect();
    let expected: Vec<f64> = values.iter().map(|v| v * 100.0).collect();
    let mut joins = Vec::with_capacity(run.joins);
    let started = Instant::now();
    for _ in 0..run.joins {
        let asked = Instant::now();
        let replies: Vec<f64> = agent.join(&values).await?;
        joins.push(asked.elapsed());
        if replies != expected {
            return Err(faust::Error::msg(
                "a join's replies are wrong or out of order",
            ));
        }
    }
    let join_seconds = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "asks": run.asks,
        "asks_per_s": run.asks as f64 / ask_seconds,
        "ask_p50_ms": percentile_ms(&mut asks, 0.50),
        "ask_p99_ms": percentile_ms(&mut asks, 0.99),
        "joins": run.joins,
        "join_batch": run.batch,
        "join_requests_per_s": (run.joins * run.batch) as f64 / join_seconds,
        "join_p50_ms": percentile_ms(&mut joins, 0.50),
        "join_p99_ms": percentile_ms(&mut joins, 0.99),
    });
    println!("RPC {line}");
    Ok(())
}

fn percentile_ms(times: &mut [Duration], at: f64) -> f64 {
    times.sort();
    let index = ((times.len() as f64 * at).ceil() as usize).clamp(1, times.len().max(1)) - 1;
    times.get(index).map_or(0.0, |t| t.as_secs_f64() * 1000.0)
}

// Never pause a partition: after a pause librdkafka fetches again from inside a record
// batch, and tansu 0.6.0 then answers with the next batch, silently skipping the rest
// (see docs/BENCHMARKS.md). The pre-loaded input is batched, so that would lose records.
faust::main!(
    id = "faust-bench",
    partitions = 4,
    max_buffered_per_partition = 10_000_000
);
