use faust::prelude::*;

#[faust::agent(topic = "orders", sink = "out")]
async fn orders(mut stream: Stream<String>) -> faust::Result<()> {
    while stream.next().await.is_some() {}
    Ok(())
}

#[faust::agent(topic = "more")]
async fn more(mut stream: Stream<String>, out: Sink<String>) -> faust::Result<()> {
    while let Some(v) = stream.next().await {
        out.send(&v).await?;
    }
    Ok(())
}

fn main() {}
