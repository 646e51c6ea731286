//! Python Faust's kubernetes example, the consumer's part: the app `scores` counts the
//! scores another program writes to the topic `test`, regrouped by `index % 2`, in the
//! table `totals`. This folder also holds what deploys it (see its README.md): a
//! Dockerfile, a StatefulSet that keeps each worker's datadir on a volume, and the
//! producer Job, which writes the scores without faust, as Faust's does.
//!
//! ```sh
//! cargo run --example kubernetes -- worker         # embedded broker
//! cargo test --example kubernetes                  # its test, without a broker
//! ```

use faust::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Score {
    index: u64,
    value: f64,
}

/// `"totals"` and `"partition: 0"`/`"partition: 1"` -> scores counted. Written from the
/// regrouped stream, so each key's count lives in the partition its events are in (as
/// in Faust's: `"totals"` is then the total of that partition's events).
#[faust::table(name = "totals", default = 0)]
static TABLE: Table<String, u64>;

fn score_key(score: &Score) -> String {
    format!("partition: {}", score.index % 2)
}

#[faust::agent(topic = "test", group_by = "index_partition")]
async fn print_totals(stream: Stream<Score>) -> faust::Result<()> {
    let mut scores = stream.group_by("index_partition", score_key)?;
    while let Some(score) = scores.next().await {
        let ind = score_key(&score);
        let total = TABLE.update(&"totals".to_owned(), |n| *n += 1)?;
        let of_partition = TABLE.update(&ind, |n| *n += 1)?;
        println!("Total: {total}, Partition {ind}: {of_partition}");
    }
    Ok(())
}

faust::main!(id = "scores");

/// The agent, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use faust::testing::TestContext;

    use super::*;

    #[tokio::test]
    async fn scores_are_counted_by_index_parity() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        for index in 0..7 {
            let score = Score { index, value: 0.5 };
            ctx.send("test", Some("score"), &score).await?;
        }
        assert_eq!(TABLE.get(&"partition: 0".to_owned())?, 4);
        assert_eq!(TABLE.get(&"partition: 1".to_owned())?, 3);
        Ok(())
    }
}
