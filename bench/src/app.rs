//! The app the benchmarks run as a worker process (`faust-bench-app worker`).
//!
//! - `passthrough` reads `{app_id}-passthrough`, decodes each JSON record and forwards
//!   it to `bench-out`, keyed as it came.
//! - `count_words` reads `{app_id}-count_words` (keyed by word) and counts each word in the
//!   RocksDB table `word_counts` (its changelog gets one record per key and commit).
//! - `count_windows` reads `{app_id}-count_windows` the same way and counts each word per
//!   10-second window (message time) in the windowed table `windowed_counts`.

use faust::{prelude::*, tables::WindowedTable};

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

// Never pause a partition: after a pause librdkafka fetches again from inside a record
// batch, and tansu 0.6.0 then answers with the next batch, silently skipping the rest
// (see docs/BENCHMARKS.md). The pre-loaded input is batched, so that would lose records.
faust::main!(
    id = "faust-bench",
    partitions = 4,
    max_buffered_per_partition = 10_000_000
);
