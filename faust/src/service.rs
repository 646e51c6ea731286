//! Services: parts of an app the worker starts and stops with itself (Python Faust's
//! `@app.service`, a `mode.Service`), given to the app with `service = ...` in
//! `faust::main!` or [`crate::AppBuilder::service`].

use std::{future::Future, sync::Arc};

use crate::{descriptor::BoxFuture, Result};

/// A part of the app with a lifecycle of its own: `on_start` runs once the worker is up
/// (after its tables and web server, before the agents), `run` is its background loop
/// for as long as the worker runs, and `on_stop` runs at shutdown, after the agents
/// stopped. All three run inside the worker, so `faust::send` works in them; tables
/// and asks to the app's own agents belong in `run` (when `on_start` runs, no partition
/// is assigned yet and the agents have not started, so such an ask would wait out its
/// timeout). An error or a panic in `on_start` or `run` stops the worker, naming the
/// service; one in `on_stop` is logged.
///
/// ```no_run
/// struct Heartbeat;
///
/// impl faust::Service for Heartbeat {
///     async fn on_start(&self) -> faust::Result<()> {
///         println!("STARTED");
///         Ok(())
///     }
///
///     async fn run(&self) -> faust::Result<()> {
///         loop {
///             tokio::time::sleep(std::time::Duration::from_secs(5)).await;
///             println!("still here");
///         }
///     }
///
///     async fn on_stop(&self) -> faust::Result<()> {
///         println!("STOPPED");
///         Ok(())
///     }
/// }
/// # #[faust::agent(topic = "t")]
/// # async fn a(mut s: faust::Stream<String>) -> faust::Result<()> { Ok(()) }
/// faust::main!(id = "service-example", service = Heartbeat);
/// ```
pub trait Service: Send + Sync + 'static {
    /// Its name in the log (default: its type's).
    fn name(&self) -> String {
        std::any::type_name::<Self>().to_owned()
    }

    /// Runs once as the worker starts.
    fn on_start(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Its background loop: runs from start until the worker stops, which cancels it
    /// (at an `.await`). Returning `Ok` early just ends it.
    fn run(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Runs once as the worker stops.
    fn on_stop(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// A [`Service`] as the worker holds it: each hook as a boxed future.
pub(crate) trait Hooks: Send + Sync {
    fn name(&self) -> String;
    fn start(self: Arc<Self>) -> BoxFuture<Result<()>>;
    fn run(self: Arc<Self>) -> BoxFuture<Result<()>>;
    fn stop(self: Arc<Self>) -> BoxFuture<Result<()>>;
}

impl<S: Service> Hooks for S {
    fn name(&self) -> String {
        Service::name(self)
    }

    fn start(self: Arc<Self>) -> BoxFuture<Result<()>> {
        Box::pin(async move { self.on_start().await })
    }

    fn run(self: Arc<Self>) -> BoxFuture<Result<()>> {
        Box::pin(async move { Service::run(&*self).await })
    }

    fn stop(self: Arc<Self>) -> BoxFuture<Result<()>> {
        Box::pin(async move { self.on_stop().await })
    }
}
