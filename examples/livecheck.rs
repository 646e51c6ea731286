//! Python Faust's livecheck example, on agent RPC: a stock-ordering system (a page that
//! takes orders, an agent that records them, one that executes them) and a live check
//! that sends fake orders through the running system and verifies every stage.
//!
//! ```sh
//! cargo run --example livecheck -- worker                      # the system, embedded broker
//! cargo run --example livecheck -- livecheck --broker kafka://127.0.0.1:PORT   # the check
//! curl 127.0.0.1:6066/order/init/sell/                         # an order, over the web
//! cargo run --example livecheck -- post-order --side buy --broker kafka://127.0.0.1:PORT
//! cargo test --example livecheck                               # its tests
//! ```
//!
//! **How it differs.** Faust's LiveCheck is a framework of its own: test cases triggered
//! with a probability by live requests, `LiveCheck-Test-*` headers carried through
//! every HTTP call and message, `Signal`s each stage sends to a separate livecheck
//! worker, and Redis. faust-rs has no LiveCheck; the same check is a short program on
//! agent RPC: the `livecheck` command asks `create_order` about a fake order, and each
//! stage answers only once the next one has (Faust's signals): `execute_order` answers
//! with its execution id, `create_order` with what it recorded and that id. The check
//! then holds Faust's contract (same order id, same side, recorded, executed) within a
//! deadline, and says which stage did not answer when one does not. Fake orders flow
//! through the real system and are not executed (`fake: true`), as in Faust's.

use std::time::{Duration, Instant};

use faust::{
    axum::{
        extract::Path,
        http::StatusCode,
        response::{IntoResponse, Response},
        Json,
    },
    clap,
    prelude::*,
    Agent,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    user_id: String,
    side: String,
    quantity: f64,
    price: f64,
    /// Fake orders are not executed.
    #[serde(default)]
    fake: bool,
}

/// What `create_order` answers: the order as recorded, and its execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recorded {
    order: Order,
    execution_id: String,
}

const SIDES: [&str; 2] = ["sell", "buy"];

/// Order id -> user id: the orders recorded (Faust's example keeps them in Redis).
#[faust::table(name = "orders-by-id")]
static ORDERS: Table<String, String>;

fn uuid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// An order of `side` for a new user, keyed by its id.
fn new_order(side: &str, fake: bool) -> Order {
    Order {
        id: uuid(),
        user_id: uuid(),
        side: side.to_owned(),
        quantity: 1.0,
        price: 3.33,
        fake,
    }
}

/// Records each order, has it executed, and answers (when asked) once both are done.
#[faust::agent(topic = "orders")]
async fn create_order(mut orders: Stream<Order>) -> faust::Result<()> {
    while let Some(order) = orders.next().await {
        println!("1. ORDER SENT TO DB");
        ORDERS.insert(&order.id, &order.user_id)?;
        println!("2. ORDER CACHED");
        let execution_id: String = Agent::named("execute_order")
            .key(&order.id)
            .ask(&order)
            .await?;
        println!("3. ORDER SENT TO EXECUTION AGENT");
        orders
            .reply(&Recorded {
                order,
                execution_id,
            })
            .await?;
    }
    Ok(())
}

/// Executes each order (not the fake ones) and answers with the execution's id.
#[faust::agent(topic = "order-execution")]
async fn execute_order(mut orders: Stream<Order>) -> faust::Result<()> {
    while let Some(order) = orders.next().await {
        let execution_id = uuid();
        if !order.fake {
            // The exchange would be called here.
        }
        println!("5. ORDER EXECUTED BY EXECUTION AGENT");
        orders.reply(&execution_id).await?;
    }
    Ok(())
}

/// Takes an order: `GET /order/init/{side}/` (Faust's `OrderView`, which then posts to
/// its `/order/create/`; here the page sends the order itself).
#[faust::page("/order/init/{side}/")]
async fn init_order(Path(side): Path<String>) -> Response {
    let side = side.to_lowercase();
    if !SIDES.contains(&side.as_str()) {
        let error = format!("side is one of {SIDES:?}, not {side:?}");
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response();
    }
    let order = new_order(&side, false);
    let sent = faust::Outgoing::to("create_order")
        .key(&order.id)
        .header("origin", "web")
        .send(&order)
        .await;
    match sent {
        Ok(_) => {
            Json(serde_json::json!({ "status": "success", "order_id": order.id })).into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// Sends one fake order of `side` through the system and checks every stage's answer
/// within `deadline`; the error says what went wrong.
async fn check_order(side: &str, deadline: Duration) -> faust::Result<Recorded> {
    let order = new_order(side, true);
    let recorded: Recorded = Agent::named("create_order")
        .key(&order.id)
        .timeout(deadline)
        .ask(&order)
        .await?;
    let broken = |what: &str| Err(faust::Error::msg(format!("order {}: {what}", order.id)));
    if recorded.order.id != order.id {
        return broken(&format!("answered about order {}", recorded.order.id));
    }
    if recorded.order.side != side {
        return broken(&format!("the side became {}", recorded.order.side));
    }
    if recorded.execution_id.is_empty() {
        return broken("it was not executed");
    }
    Ok(recorded)
}

#[derive(clap::Args)]
struct LiveCheck {
    /// Seconds between checks (Faust's case `frequency=0.5`: every 2 s)
    #[arg(long, default_value_t = 2.0)]
    every: f64,
    /// How many checks to run (without it, until stopped)
    #[arg(long)]
    runs: Option<u64>,
    /// Seconds an order may take through every stage
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

/// `value` seconds, or an error naming `flag` for a negative or endless one.
fn seconds(flag: &str, value: f64) -> faust::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| faust::Error::Config(format!("{flag} is a number of seconds, not {value}")))
}

/// Checks the live system: a fake order through every stage, again and again.
#[faust::command]
async fn livecheck(options: LiveCheck) -> faust::Result<()> {
    let mut failed = 0;
    for run in 0..options.runs.unwrap_or(u64::MAX) {
        if run > 0 {
            tokio::time::sleep(seconds("--every", options.every)?).await;
        }
        let side = SIDES[run as usize % SIDES.len()];
        let started = Instant::now();
        match check_order(side, seconds("--timeout", options.timeout)?).await {
            Ok(recorded) => println!(
                "test_order PASSED in {:?}: order {} ({side}) executed as {}",
                started.elapsed(),
                recorded.order.id,
                recorded.execution_id
            ),
            Err(e) => {
                failed += 1;
                println!("test_order FAILED after {:?}: {e}", started.elapsed());
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(faust::Error::msg(format!("{n} live checks failed"))),
    }
}

#[derive(clap::Args)]
struct PostOrder {
    /// Order side: buy, sell
    #[arg(long, default_value = "sell")]
    side: String,
}

/// Sends one (real) order.
#[faust::command]
async fn post_order(options: PostOrder) -> faust::Result<()> {
    let order = new_order(&options.side, false);
    faust::Outgoing::to("create_order")
        .key(&order.id)
        .header("origin", "cli")
        .timestamp_ms(faust::clock::now_ms())
        .send(&order)
        .await?
        .delivered()
        .await?;
    println!("order {} sent", order.id);
    Ok(())
}

faust::main!(
    id = "orders",
    topic = faust::Topic::new("orders").create(true),
    topic = faust::Topic::new("order-execution").create(true)
);

/// The system and its check, run in-process by faust's test context.
#[cfg(test)]
mod tests {
    use faust::testing::TestContext;

    use super::*;

    #[tokio::test]
    async fn a_fake_order_passes_every_stage_and_is_recorded() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        let recorded = ctx
            .run(check_order("buy", Duration::from_secs(5)))
            .await??;
        assert!(recorded.order.fake);
        assert_eq!(recorded.order.side, "buy");
        assert_eq!(recorded.execution_id.len(), 32);
        let user = ORDERS.try_get(&recorded.order.id)?;
        assert_eq!(user.as_deref(), Some(recorded.order.user_id.as_str()));
        Ok(())
    }
}
