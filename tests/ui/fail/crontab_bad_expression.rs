#[faust::crontab("*/5 * * *")]
async fn short_of_a_field() -> faust::Result<()> {
    Ok(())
}

#[faust::crontab("61 * * * *", on_leader = true)]
async fn minute_out_of_range() -> faust::Result<()> {
    Ok(())
}

fn main() {}
