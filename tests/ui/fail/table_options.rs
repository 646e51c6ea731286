#[faust::table(name = "", partitions = 0, global = "yes", store = "rocksdb")]
static TOTALS: faust::Table<String, i64>;

fn main() {}
