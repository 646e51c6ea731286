use faust::prelude::*;

#[faust::agent(topic = "orders")]
fn orders(mut stream: Stream<String>) -> faust::Result<()> {
    let _ = &mut stream;
    Ok(())
}

fn main() {}
