use faust::prelude::*;
use std::rc::Rc;

#[faust::agent(topic = "orders")]
async fn holds_an_rc(mut orders: Stream<String>) -> faust::Result<()> {
    let seen = Rc::new(0);
    while let Some(order) = orders.next().await {
        println!("{order} after {seen}");
    }
    Ok(())
}

fn main() {}
