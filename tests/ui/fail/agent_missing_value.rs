use faust::prelude::*;

#[faust::agent(topic)]
async fn orders(mut stream: Stream<String>) -> faust::Result<()> {
    while stream.next().await.is_some() {}
    Ok(())
}

fn main() {}
