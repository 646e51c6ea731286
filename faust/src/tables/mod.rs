//! Tables: partitioned key-value state that survives restarts and follows its
//! partitions across workers.
//!
//! A table is partitioned like the topic that feeds it. Every write from an agent goes
//! to the local store of the partition of the event being processed, and at the next
//! commit (once per key, see `cache`) to the same partition of the table's compacted
//! changelog topic `{app_id}-{table}-changelog` (JSON key and value, deletes as null:
//! the format Python Faust writes). When a partition is assigned, the worker replays
//! the changelog into the store before the agents see that partition's events.
//!
//! ```no_run
//! use faust::prelude::*;
//!
//! #[faust::table(name = "word_counts", default = 0)]
//! static COUNTS: Table<String, u64>;
//!
//! #[faust::agent(topic = "words")]
//! async fn count(mut words: Stream<String>) -> faust::Result<()> {
//!     while let Some(word) = words.next().await {
//!         let n = COUNTS.update(&word, |n| *n += 1)?;
//!         println!("{word}: {n}");
//!     }
//!     Ok(())
//! }
//! # faust::main!(id = "demo");
//! ```

mod cache;
mod changelog;
mod closer;
mod global;
pub(crate) mod manager;
mod recovery;
mod set;
mod standby;
mod state;
mod store;
mod table;
mod windowed;
mod windows;

use serde::{de::DeserializeOwned, Serialize};

pub use crate::descriptor::{TimeReference, Window};
#[cfg(any(test, feature = "testing"))]
pub(crate) use closer::close_due;
pub(crate) use closer::close_windows;
pub(crate) use manager::{lock_datadir, tables_dir, Lookup, RecoveredHook, TableManager};
pub use set::SetTable;
pub(crate) use standby::{Claim, Claims};
pub(crate) use state::TableState;
pub(crate) use store::count_keys;
pub use table::Table;
pub use windowed::WindowedTable;

use crate::{context, descriptor::TableDescriptor, Error, Result};

fn decode_value<V: DeserializeOwned>(descriptor: &TableDescriptor, bytes: &[u8]) -> Result<V> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Table(format!(
            "table '{}' holds a value that is not a {}: {e}",
            descriptor.name, descriptor.value_type
        ))
    })
}

/// What an update writes: the value `change` makes of the stored one (or the default).
fn apply<V: Serialize + DeserializeOwned>(
    descriptor: &TableDescriptor,
    default: fn() -> V,
    current: Option<Vec<u8>>,
    change: impl FnOnce(&mut V),
) -> Result<(Option<Vec<u8>>, V)> {
    let mut value = match current {
        Some(bytes) => decode_value(descriptor, &bytes)?,
        None => default(),
    };
    change(&mut value);
    let bytes = encode(descriptor, "value", &value)?;
    Ok((Some(bytes), value))
}

fn encode<T: Serialize>(descriptor: &TableDescriptor, what: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Encode {
        target: format!("the {what} of table '{}'", descriptor.name),
        message: e.to_string(),
    })
}

/// The state of `descriptor`'s table in the worker the caller runs in.
fn state(descriptor: &'static TableDescriptor) -> Result<std::sync::Arc<TableState>> {
    let outside = || {
        Error::Table(format!(
            "table '{}' is used outside a running worker; tables live in workers: use them \
             in agents, tasks, timers and commands (a task you spawn yourself keeps the \
             worker with faust::spawn, not tokio::spawn), or in a test through a TestContext",
            descriptor.name
        ))
    };
    let worker = context::current().ok_or_else(outside)?;
    worker
        .tables
        .as_ref()
        .ok_or_else(outside)?
        .table(descriptor.name)
}
