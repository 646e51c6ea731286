//! Python Faust's `examples/tabletest.py`: a count per partition, checked for gaps, and
//! a web page that answers for any partition from whichever worker holds it.
//!
//! ```sh
//! cargo run --example tabletest -- worker                                # embedded broker
//! cargo run --example tabletest -- produce --broker kafka://localhost:9092
//! curl -L http://localhost:6066/count/2/
//! ```
//!
//! `produce` sends the numbers 0, 1, 2, ... four times, keyed "0" to "3" (Faust's
//! example names them partitions and sends key `j` to partition `j`; here each goes to
//! its key's partition, the one `table_route` looks in, as Kafka's partitioner puts
//! it); `count` checks each key's numbers
//! come in order (printing `!!!` on a gap, where Faust's example sleeps for an hour) and
//! adds them to the table `counts`. The page `/count/{partition}/` answers with the
//! partition's total; a worker that does not hold it redirects to the one that does
//! (`faust::web::table_route`, Faust's `@app.table_route`). Every 10 seconds the worker
//! prints the totals it holds. Not ported: the print after each rebalance
//! (`on_rebalance_complete`; faust-rs has no rebalance hooks for apps).

use std::{collections::HashMap, sync::Mutex};

use faust::{
    axum::{
        extract::Path,
        http::{StatusCode, Uri},
        response::{IntoResponse, Response},
        Json,
    },
    clap,
    prelude::*,
};

/// Numbers sent under each key by `produce` (Faust's `ITERATIONS`).
const ITERATIONS: u64 = 10_000;
const PARTITIONS: i32 = 4;

/// partition (as text) -> the total of its numbers.
#[faust::table(name = "counts", default = 0)]
static COUNTS: Table<String, u64>;

/// The last number and offset seen of each partition, by this worker.
static SEEN: Mutex<Option<HashMap<String, (u64, i64)>>> = Mutex::new(None);

#[faust::agent(topic = "countstopic", codec = json)]
async fn count(mut stream: Stream<u64>) -> faust::Result<()> {
    while let Some(event) = stream.next_event().await {
        let Some(partition) = event.decode_key::<String>()? else {
            continue;
        };
        let count = event.value;
        let previous = {
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            let seen = seen.get_or_insert_with(HashMap::new);
            seen.insert(partition.clone(), (count, event.offset))
        };
        if let Some((previous, offset)) = previous {
            if count != previous + 1 {
                println!("!!! PREV {partition} WAS {previous} NOW {count}");
                println!("OFFSET: {} PREV: {offset}", event.offset);
            }
        }
        COUNTS.update(&partition, |total| *total += count)?;
    }
    Ok(())
}

/// `{partition: total}`, from the worker that holds the partition.
#[faust::page("/count/{partition}/")]
async fn get_count(Path(partition): Path<String>, uri: Uri) -> Response {
    if let Some(elsewhere) = faust::web::table_route(COUNTS.name(), &partition, &uri) {
        return elsewhere;
    }
    match COUNTS.get(&partition) {
        Ok(total) => Json(serde_json::json!({ partition: total })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Prints the totals this worker holds.
#[faust::timer(interval = "10s")]
async fn dump_count() -> faust::Result<()> {
    let mut totals = COUNTS.local_items()?;
    totals.sort();
    println!("$$ TALLY $$");
    for (partition, total) in totals {
        println!("  {partition}: {total}");
    }
    Ok(())
}

/// How many numbers `produce` sends to each partition.
#[derive(clap::Args)]
struct Produce {
    /// Numbers per key
    #[arg(long, default_value_t = ITERATIONS)]
    iterations: u64,
}

/// Sends 0, 1, 2, ... under each of the keys "0" to "3" to `countstopic`.
#[faust::command]
async fn produce(run: Produce) -> faust::Result<()> {
    let mut last = None;
    for i in 0..run.iterations {
        for partition in 0..PARTITIONS {
            let key = partition.to_string();
            last = Some(faust::send("countstopic", Some(&key), &i).await?);
        }
        if i % 100 == 0 {
            println!("{i}");
        }
    }
    if let Some(last) = last {
        last.delivered().await?;
    }
    Ok(())
}

faust::main!(
    id = "tabletest",
    partitions = PARTITIONS,
    topic = faust::Topic::new("countstopic").create(true),
);

/// The agent and the page, run in-process by faust's test context: no broker needed.
#[cfg(test)]
mod tests {
    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn counts_each_key_and_the_page_answers_its_total() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        for i in 0..50_u64 {
            for key in ["0", "1"] {
                ctx.send("countstopic", Some(key), &i).await?;
            }
        }
        let total: u64 = (0..50).sum();
        assert_eq!(COUNTS.get(&"0".to_owned())?, total);
        assert_eq!(COUNTS.get(&"1".to_owned())?, total);

        let uri: Uri = "/count/1/".parse().unwrap();
        let response = ctx.run(get_count(Path("1".to_owned()), uri)).await?;
        assert_eq!(response.status(), StatusCode::OK);
        let body = faust::axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(json, serde_json::json!({ "1": total }));
        Ok(())
    }

    #[tokio::test]
    async fn the_produce_command_sends_every_number_under_every_key() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.run(produce(Produce { iterations: 10 })).await??;
        assert_eq!(ctx.sent("countstopic").len(), 40);
        for key in ["0", "1", "2", "3"] {
            assert_eq!(COUNTS.get(&key.to_owned())?, 45, "key {key}");
        }
        Ok(())
    }
}
