use faust::prelude::*;

#[faust::table(name = "totals", shards = 2)]
static TOTALS: Table<String, i64>;

#[faust::agent(topic = "orders")]
async fn totals(mut orders: Stream<String>) -> faust::Result<()> {
    while let Some(account) = orders.next().await {
        TOTALS.update(&account, |t| *t += 1)?;
    }
    Ok(())
}

fn main() {}
