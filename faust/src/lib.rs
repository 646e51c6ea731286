//! # faust-rs
//!
//! Stateful stream processing on Kafka, in the spirit of Python's Faust. Annotate async
//! functions with `#[faust::agent]`, declare tables with `#[faust::table]`, end the binary
//! with `faust::main!(id = "...")`, and `cargo run -- worker` runs it.
//!
//! ```no_run
//! use faust::prelude::*;
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Order { account: String, amount: i64 }
//!
//! #[faust::agent(topic = "orders", sink = "large-orders")]
//! async fn large_orders(mut orders: Stream<Order>, large: Sink<Order>) -> faust::Result<()> {
//!     while let Some(order) = orders.next().await {
//!         if order.amount > 1000 {
//!             large.send(&order).await?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! faust::main!(id = "orders-app");
//! ```
//!
//! The tree follows the architecture: [`cli`] controls the [`worker`], which drives the
//! [`app`]; the app's services are the [`transport`] (producer, consumer), [`agents`],
//! [`tables`] and [`sensors`]. [`event`] is the event being processed, shared by all.

pub mod agents;
pub mod app;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
mod error;
pub mod event;
pub mod leader;
pub mod registry;
pub mod sensors;
pub mod tables;
pub mod testing;
pub mod transport;
mod web;
pub mod worker;

pub use agents::{Sink, Stream};
pub use app::{App, AppBuilder};
pub use error::{Error, Result};
pub use event::Event;
pub use faust_macros::{agent, command, crontab, main, table, task, timer};
pub use leader::is_leader;
pub use tables::Table;
pub use transport::producer::{send, send_bytes, Delivered};
pub use worker::Worker;

/// What an app module usually needs.
pub mod prelude {
    pub use crate::{
        agents::{Sink, Stream},
        event::Event,
        tables::Table,
        Error, Result,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Paths used by the macros' generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::{
        agents::{ActorContext, AgentDescriptor, Schedule, TaskDescriptor, TimerDescriptor},
        cli::{main as cli_main, CommandDescriptor},
        codec,
        tables::TableDescriptor,
    };
    pub use inventory;

    /// Boxes a registered function's future.
    pub fn boxed<F>(future: F) -> crate::registry::BoxFuture<F::Output>
    where
        F: std::future::Future + Send + 'static,
    {
        Box::pin(future)
    }
}

/// Property tests run 5,000 cases each, or `PROPTEST_CASES` (for long runs by hand).
#[cfg(test)]
fn property_test_config() -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(5000);
    proptest::prelude::ProptestConfig::with_cases(cases)
}

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
