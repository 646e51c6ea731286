#[faust::timer(interval = "10 parsecs")]
async fn tick() -> faust::Result<()> {
    Ok(())
}

#[faust::timer]
async fn no_interval() -> faust::Result<()> {
    Ok(())
}

#[faust::crontab(on_leader = true)]
async fn no_schedule() -> faust::Result<()> {
    Ok(())
}

faust::main!(id = "app");
