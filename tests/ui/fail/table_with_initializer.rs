#[faust::table(name = "totals")]
static TOTALS: faust::Table<String, i64> = todo!();

fn main() {}
