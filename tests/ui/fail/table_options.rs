#[faust::table(name = "", partitions = 0, global = "yes", store = "redis", shards = 2)]
static TOTALS: faust::Table<String, i64>;

fn main() {}
