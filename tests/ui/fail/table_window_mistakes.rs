#![allow(unused_imports)]
use faust::prelude::*;
use faust::tables::WindowedTable;

#[faust::table(tumbling = "1h")]
static PLAIN: Table<String, i64>;

#[faust::table(name = "no_windows")]
static NO_WINDOWS: WindowedTable<String, i64>;

#[faust::table(hopping = "10s")]
static NO_STEP: WindowedTable<String, i64>;

#[faust::table(expires = "1h")]
static EXPIRES_ALONE: Table<String, i64>;

#[faust::table(tumbling = "1h", time = "processing")]
static BAD_TIME: WindowedTable<String, i64>;

#[faust::table(tumbling = "1h", sliding = "5s")]
static TWO_KINDS: WindowedTable<String, i64>;

#[faust::table(sliding = "5s", step = "1s")]
static SLIDING_STEP: WindowedTable<String, i64>;

#[faust::table(tumbling = "1h", after = "5s")]
static AFTER_ALONE: WindowedTable<String, i64>;

faust::main!(id = "app");
