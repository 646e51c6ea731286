//! Every macro with every option, as a user would write them.

use faust::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    account: String,
    amount: i64,
}

#[faust::table(name = "totals", default = 0, partitions = 4)]
static TOTALS: Table<String, i64>;

#[faust::table(tumbling = "1h", expires = "1d", on_window_close = hour_closed)]
static HOURLY: faust::tables::WindowedTable<String, i64>;

#[faust::table(default = 0, hopping = "10s", step = "5s", time = "wall", store = "memory")]
static RECENT: faust::tables::WindowedTable<String, u64>;

async fn hour_closed(account: String, window: faust::tables::Window, total: i64) -> faust::Result<()> {
    println!("{account} {}..{}: {total}", window.start, window.end);
    Ok(())
}

#[faust::table(store = "memory", use_partitioner = true)]
static SETTINGS: Table<String, String>;

#[faust::agent(topic = ["orders", "more-orders"], name = "orders", concurrency = 4, sink = "large")]
async fn process(mut orders: Stream<Order>, large: Sink<Order>) -> faust::Result<()> {
    while let Some(event) = orders.next_event().await {
        let _key: Option<String> = event.decode_key()?;
        if event.value.amount > 100 {
            large.send(&event.value).await?;
        }
    }
    Ok(())
}

#[faust::agent(topic = "visits", group_by = ["account", "other"], through = "relayed")]
async fn regroup(orders: Stream<Order>) -> faust::Result<()> {
    let mut by_account = orders.group_by("account", |o| o.account.clone())?;
    while by_account.next().await.is_some() {}
    Ok(())
}

#[faust::agent(codec = raw)]
async fn raw(mut bytes: Stream<Vec<u8>>) -> faust::Result<()> {
    while bytes.next().await.is_some() {}
    Ok(())
}

#[faust::agent(topic = "lines", codec = "string", sink = ["a", "b"])]
async fn lines(mut lines: Stream<String>, out: Sink<String>) -> faust::Result<()> {
    while let Some(line) = lines.next().await {
        out.send(&line).await?;
    }
    Ok(())
}

#[faust::task(name = "once-on-the-leader", on_leader = true)]
async fn leader_only() -> faust::Result<()> {
    Ok(())
}

#[faust::timer(interval = "10s")]
async fn every_ten_seconds() -> faust::Result<()> {
    Ok(())
}

#[faust::timer(interval = 0.5, on_leader = true, name = "half")]
async fn twice_a_second() -> faust::Result<()> {
    let _leading: bool = faust::is_leader();
    Ok(())
}

#[faust::crontab("*/5 * * * *", on_leader = true)]
async fn every_five_minutes() -> faust::Result<()> {
    Ok(())
}

#[faust::task]
async fn hello() -> faust::Result<()> {
    faust::send("orders", Some(&"alice"), &Order { account: "alice".into(), amount: 3 }).await?;
    Ok(())
}

/// Prints the tables' names.
#[faust::command]
async fn names() -> faust::Result<()> {
    println!("{} {} {}", TOTALS.name(), SETTINGS.name(), TOTALS.default_value());
    Ok(())
}

#[faust::command(name = "say", about = "Says its arguments")]
async fn say(args: Vec<String>) -> faust::Result<()> {
    println!("{}", args.join(" "));
    Ok(())
}

use faust::clap;

/// A command's typed arguments (`clap` is faust's).
#[derive(clap::Args)]
struct Greeting {
    /// Whom to greet
    name: String,
    /// How often
    #[arg(long, default_value_t = 1)]
    times: u32,
}

/// Greets someone.
#[faust::command]
async fn greet(greeting: Greeting) -> faust::Result<()> {
    for _ in 0..greeting.times {
        println!("hello {}", greeting.name);
    }
    Ok(())
}

// The generated main would print the CLI's help and exit 2 when trybuild runs it, so it
// lives in a module here and the test's own main only checks that it exists.
#[allow(dead_code)]
mod generated {
    faust::main!(id = "everything", partitions = 4, broker = "kafka://localhost:9092", commit_every = 100);
}

fn main() {}
