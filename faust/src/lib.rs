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
//! What an app author uses is here: the [`prelude`], [`Stream`] and [`Sink`] for agents,
//! [`Table`] and the windowed tables in [`tables`], [`Event`] and [`event::current`],
//! [`send`], [`spawn`], [`is_leader`] and [`clock::now_ms`] for code running in a
//! worker, [`App`], [`AppBuilder`] and [`Config`] to configure it, [`Worker`] to run it
//! from code, [`sensors`] to observe it, your own [`codec`]s, and, with the `testing`
//! feature, [`testing::TestContext`] to test agents without a broker.
//!
//! How the runtime is built is drawn in `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

mod agents;
mod app;
mod cli;
pub mod codec;
mod config;
mod context;
mod descriptor;
mod error;
pub mod event;
mod leader;
mod origin;
mod registry;
mod request;
mod rpc;
mod send;
pub mod sensors;
mod service;
pub mod tables;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod transport;
pub mod web;
mod worker;

pub use agents::{Held, OnError, Sink, Stream};
pub use app::{App, AppBuilder};
/// The axum the worker's web server is built with: `#[faust::page]` handlers take its
/// extractors and return its responses (`use faust::axum;`).
pub use axum;
/// The clap faust's command line is built with: a command's typed arguments derive its
/// `Args` (`use faust::clap; #[derive(clap::Args)]`).
pub use clap;
pub use config::{
    BrokerSpec, ClientSetting, Clients, Config, CreateTopics, OffsetReset, RestartLimit, Sasl,
    SaslMechanism, Secret, Tls, Topic, WebTls,
};
pub use context::{config, is_leader, spawn, WorkerHandle};
pub use error::{Error, KafkaError, Result};
pub use event::Event;
pub use faust_macros::{agent, command, crontab, main, page, table, task, timer};
pub use rpc::{Agent, Replies};
pub use send::{send, send_bytes, Outgoing, Sent};
pub use service::Service;
pub use tables::{SetTable, Table, WindowedTable};
pub use transport::record::Delivered;
pub use worker::Worker;

/// The worker's clock.
pub mod clock {
    pub use crate::context::now_ms;
}

/// What an app module usually needs.
pub mod prelude {
    pub use crate::{
        agents::{Sink, Stream},
        event::Event,
        tables::{SetTable, Table, WindowedTable},
        Error, Result,
    };
    pub use serde::{Deserialize, Serialize};
}

/// What the macros' generated code names (`::faust::__private::...`); not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::{
        agents::{ActorContext, AgentDescriptor, OnError},
        app::{App, AppBuilder, MainApp},
        cli::main as cli_main,
        codec,
        descriptor::{
            free_arguments, free_arguments_of, typed_arguments, BoxFuture, CommandDescriptor,
            PageDescriptor, Schedule, TableDescriptor, TaskDescriptor, TimeReference,
            TimerDescriptor, WindowSpec, INVALID_TABLE,
        },
        Result,
    };
    pub use axum;
    pub use inventory;

    /// Boxes a registered function's future.
    pub fn boxed<F>(future: F) -> BoxFuture<F::Output>
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
