//! Procedural macros for faust-rs. Each one parses, checks and emits a constant
//! descriptor submitted to the runtime's registry; the runtime does the work.
//! Use them through the `faust` crate (`#[faust::agent]`, ...), not directly.

mod agent;
mod main_macro;
mod options;
mod page;
mod table;
mod task;

use proc_macro::TokenStream;

/// Registers an `async fn` as an agent: `#[faust::agent(topic = "orders")]`.
///
/// Options:
/// - `topic`: a topic or a list (`["a", "b"]`); default `{app_id}-{name}`;
/// - `name`: default the fn's name;
/// - `concurrency`: actors running the fn, default 1 (partition `p` goes to actor
///   `p % concurrency`);
/// - `isolated_partitions = true`: instead, an actor per topic partition, started at its first
///   event and stopped when the partition is revoked (its stream then ends);
/// - `codec`: `json` (default), `raw`, `string`, or a path to a type implementing
///   `faust::codec::{Decode, Encode}`;
/// - `key_codec`: how `group_by` writes its keys: `"raw"` (default: a string key as its
///   UTF-8 bytes, as Python Faust writes it; other keys as JSON) or `"json"`;
/// - `sink`: a topic or a list; the fn then takes a second parameter, a `Sink`;
/// - `group_by`: a name or a list, each a repartition topic the stream may be regrouped
///   through (`Stream::group_by`);
/// - `through`: a topic or a list the stream may be forwarded through (`Stream::through`);
/// - `on_error`: what becomes of an event the fn failed on (returned an error or
///   panicked): `"skip"` (default: acknowledged), `"dead_letter"` (copied to the app's
///   dead-letter topic, then acknowledged) or `"stop"` (the worker stops, the event
///   unacknowledged); see `faust::OnError`;
/// - `retries`: how many times such an event runs again first, default 0.
///
/// Topic names may contain `{app_id}`.
#[proc_macro_attribute]
pub fn agent(args: TokenStream, item: TokenStream) -> TokenStream {
    agent::expand(args.into(), item.into()).into()
}

/// Declares a table: `#[faust::table(name = "totals", default = 0)] static TOTALS: Table<String, i64>;`
///
/// Options:
/// - `name`: default the static's name in lower case;
/// - `default`: the value of a missing key, an expression; default `Default::default()`;
/// - `partitions`: default the app's;
/// - `global`: every worker holds every partition (bool);
/// - `store`: `"rocksdb"` (default) or `"memory"`;
/// - `use_partitioner`: writes outside events go to the key's partition (bool);
/// - `on_recover`: an `async fn() -> faust::Result<()>` run once the table's partitions
///   of an assignment are recovered, before their events;
/// - `on_changelog_event`: a `fn(K, Option<V>)` called with each changelog record
///   recovery applies (and a global table follows), for `Table<K, V>`.
///
/// A `WindowedTable<K, V>` also takes `tumbling = "1h"` or `hopping = "1h"` with
/// `step = "10m"`, `expires` (default: the window's size), `time` (`"event"`, the
/// default, or `"wall"`) and `on_window_close` (an async fn of key, window and value).
#[proc_macro_attribute]
pub fn table(args: TokenStream, item: TokenStream) -> TokenStream {
    table::expand(args.into(), item.into()).into()
}

/// Registers an `async fn() -> faust::Result<()>` run once when the worker is ready.
/// Options: `name`, `on_leader` (run once this worker is the group's leader).
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand_scheduled(args.into(), item.into(), task::Kind::Task).into()
}

/// Runs an `async fn() -> faust::Result<()>` every interval once the worker is ready:
/// `#[faust::timer(interval = "10s")]`. Options: `interval` (`"500ms"`, `"10s"`, `"5m"`,
/// `"1h"`, `"1d"`, or seconds), `on_leader` (run on the group's leader only), `name`.
#[proc_macro_attribute]
pub fn timer(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand_scheduled(args.into(), item.into(), task::Kind::Timer).into()
}

/// Runs an `async fn() -> faust::Result<()>` on a crontab schedule, in UTC or a time zone:
/// `#[faust::crontab("16 20 * * *", timezone = "America/Los_Angeles", on_leader = true)]`.
/// Options: `on_leader`, `name`, `timezone` (an IANA name; checked when the worker starts).
#[proc_macro_attribute]
pub fn crontab(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand_scheduled(args.into(), item.into(), task::Kind::Crontab).into()
}

/// Registers an `async fn([args: Vec<String>]) -> faust::Result<()>` as a CLI command.
/// Options: `name` (default: the fn's name), `about` (default: the fn's doc comment).
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    task::expand_command(args.into(), item.into()).into()
}

/// Serves an axum handler on the worker's web server, as Python Faust's `@app.page`:
/// `#[faust::page("/count/{partition}")]` on an `async fn` taking axum extractors
/// (`axum::extract::Path`, `Query`, `Json`, ...) and returning a response. It runs inside
/// the worker (tables, `faust::send`, agent asks work), behind the same token and client
/// certificate as `/stats`. Options: `method` (`"get"`, the default, `"post"`, `"put"`,
/// `"delete"`, `"patch"`).
#[proc_macro_attribute]
pub fn page(args: TokenStream, item: TokenStream) -> TokenStream {
    page::expand(args.into(), item.into()).into()
}

/// Generates `main`: `faust::main!(id = "orders-app", partitions = 4);`. Every option
/// but `id` calls the `faust::AppBuilder` method of the same name.
#[proc_macro]
pub fn main(input: TokenStream) -> TokenStream {
    main_macro::expand(input.into()).into()
}
