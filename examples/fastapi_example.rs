//! Python Faust's fastapi_example: hello_world inside a web app of your own. The worker
//! and the web server (axum here, FastAPI there) share one process and one runtime, so
//! an endpoint sends to a topic directly.
//!
//! ```sh
//! cargo run --example fastapi_example         # embedded broker; the API on 127.0.0.1:8000
//! curl 127.0.0.1:8000/produce                 # a hundred greetings, printed by the agent
//! cargo test --example fastapi_example        # its test, without a broker
//! ```
//!
//! The program has a `main` of its own instead of `faust::main!`: it builds the app with
//! `build_from_env` (so `FAUST_BROKER`, `FAUST_DATADIR` and the other `FAUST_*` variables
//! apply as they do to `worker`), runs the worker beside the server, and stops both on
//! SIGINT/SIGTERM. `API_ADDR` moves the server (`127.0.0.1:0` picks a free port; the
//! address is printed). As in Faust's example, the worker's own web server is off; turn
//! it on with `FAUST_WITHOUT_WEB=false` to have `/stats` and `/metrics` on its port too.

use std::process::ExitCode;

use faust::{
    axum::{
        extract::{Path, Query},
        routing::get,
        Json, Router,
    },
    prelude::*,
    App, AppBuilder, WorkerHandle,
};
use serde_json::{json, Value};

/// Prints each greeting.
#[faust::agent(topic = "greetings")]
async fn print_greetings(mut greetings: Stream<String>) -> faust::Result<()> {
    while let Some(greeting) = greetings.next().await {
        println!("{greeting}");
    }
    Ok(())
}

/// Sends `hello 0` to `hello {count - 1}`: queued one after the other, then awaited
/// together.
async fn produce_greetings(count: usize) -> faust::Result<()> {
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        sent.push(faust::send("greetings", None::<&str>, &format!("hello {i}")).await?);
    }
    for greeting in sent {
        greeting.delivered().await?;
    }
    Ok(())
}

/// Every 5 seconds, a hundred greetings (Faust's `@faust_app.timer(5)`).
#[faust::timer(interval = "5s")]
async fn produce_periodically() -> faust::Result<()> {
    produce_greetings(100).await
}

async fn read_root() -> Json<Value> {
    Json(json!({ "Hello": "World" }))
}

#[derive(Deserialize)]
struct Item {
    q: Option<String>,
}

async fn read_item(Path(item_id): Path<i64>, Query(item): Query<Item>) -> Json<Value> {
    Json(json!({ "item_id": item_id, "q": item.q }))
}

async fn produce() -> Json<Value> {
    match produce_greetings(100).await {
        Ok(()) => Json(json!({ "success": true })),
        Err(e) => Json(json!({ "success": false, "error": e.to_string() })),
    }
}

/// The web app: its handlers run inside the worker, so they can send and read tables.
fn api(worker: WorkerHandle) -> Router {
    let routes = Router::new()
        .route("/", get(read_root))
        .route("/items/{item_id}", get(read_item))
        .route("/produce", get(produce));
    worker.inside(routes)
}

/// The Faust app: `web_enabled=False`, since this program serves the web itself.
fn app() -> AppBuilder {
    App::builder("hello-world-fastapi")
        .web_enabled(false)
        // Faust relies on the broker creating the topic at its first message.
        .topic(faust::Topic::new("greetings").create(true))
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the worker and the web server until SIGINT/SIGTERM (or until either fails).
async fn serve() -> faust::Result<()> {
    let worker = faust::Worker::new(app().build_from_env()?);
    let api = api(worker.handle());
    let addr = std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| faust::Error::Config(format!("cannot listen on {addr} (API_ADDR): {e}")))?;
    if let Ok(bound) = listener.local_addr() {
        println!("api listening on http://{bound}");
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let server =
        faust::axum::serve(listener, api).with_graceful_shutdown(stopped(stopping.clone()));
    let server = async {
        server
            .await
            .map_err(|e| faust::Error::Worker(format!("the web server stopped: {e}")))
    };
    let worker = worker.run_until(stopped(stopping));
    let signal = async {
        shutdown_signal().await;
        stop.send_replace(true);
    };
    let (worker, server, ()) = tokio::join!(
        async {
            let outcome = worker.await;
            stop.send_replace(true); // a worker that fails takes the server down with it
            outcome
        },
        server,
        signal
    );
    worker.and(server)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The web app and the agent, run in-process by faust's test context: no broker needed.
#[cfg(test)]
mod tests {
    use faust::{
        axum::{body::Body, http::Request},
        testing::TestContext,
    };
    use tower::ServiceExt as _;

    use super::*;

    async fn get(ctx: &mut TestContext, uri: &str) -> faust::Result<Value> {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = ctx.run(api(ctx.handle()).oneshot(request)).await?.unwrap();
        let body = faust::axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        Ok(serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn the_api_answers_and_its_produce_endpoint_sends_a_hundred_greetings(
    ) -> faust::Result<()> {
        let mut ctx = TestContext::with_app(app()).await?;
        ctx.disable_timer("produce_periodically")?;
        assert_eq!(get(&mut ctx, "/").await?, json!({ "Hello": "World" }));
        assert_eq!(
            get(&mut ctx, "/items/5?q=somequery").await?,
            json!({ "item_id": 5, "q": "somequery" })
        );
        assert_eq!(
            get(&mut ctx, "/items/7").await?,
            json!({ "item_id": 7, "q": null })
        );
        assert!(ctx.sent("greetings").is_empty());
        assert_eq!(get(&mut ctx, "/produce").await?, json!({ "success": true }));
        let greetings: Vec<String> = ctx.sent_json("greetings")?;
        let expected: Vec<String> = (0..100).map(|i| format!("hello {i}")).collect();
        assert_eq!(greetings, expected);
        Ok(())
    }

    #[tokio::test]
    async fn the_timer_sends_a_hundred_greetings_every_five_seconds() -> faust::Result<()> {
        let mut ctx = TestContext::with_app(app()).await?;
        ctx.advance(std::time::Duration::from_secs(5)).await?;
        assert_eq!(ctx.sent("greetings").len(), 100);
        Ok(())
    }
}
