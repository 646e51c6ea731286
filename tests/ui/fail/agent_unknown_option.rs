use faust::prelude::*;

#[faust::agent(topic = "orders", partitons = 3)]
async fn orders(mut stream: Stream<String>) -> faust::Result<()> {
    while stream.next().await.is_some() {}
    Ok(())
}

fn main() {}
