use faust::prelude::*;

#[faust::agent(topic = "orders", isolated_partitions = true, concurrency = 4)]
async fn orders(mut stream: Stream<String>) -> faust::Result<()> {
    while stream.next().await.is_some() {}
    Ok(())
}

fn main() {}
