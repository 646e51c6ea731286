use faust::prelude::*;

#[faust::agent(topic = 7, concurrency = "two", codec = "yaml")]
async fn orders(mut stream: Stream<String>) -> faust::Result<()> {
    while stream.next().await.is_some() {}
    Ok(())
}

fn main() {}

#[faust::agent(topic = ["my orders", "a", "a"], name = "bad/name")]
async fn names(mut stream: Stream<String>) -> faust::Result<()> {
    while stream.next().await.is_some() {}
    Ok(())
}

#[faust::agent(topic = "orders", key_codec = "yaml")]
async fn keys(mut stream: Stream<String>) -> faust::Result<()> {
    while stream.next().await.is_some() {}
    Ok(())
}
