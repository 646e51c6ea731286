#[faust::agent(topic = "orders")]
async fn orders() -> faust::Result<()> {
    Ok(())
}

fn main() {}
