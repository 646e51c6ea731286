use faust::prelude::*;

struct Order {
    amount: i64,
}

#[faust::agent(topic = "orders")]
async fn orders(mut stream: Stream<Order>) -> faust::Result<()> {
    while let Some(order) = stream.next().await {
        let _ = order.amount;
    }
    Ok(())
}

fn main() {}
