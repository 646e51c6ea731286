use faust::prelude::*;

#[faust::agent(topic = "orders")]
async fn orders(mut stream: Stream<String>) {
    while stream.next().await.is_some() {}
}

fn main() {}
