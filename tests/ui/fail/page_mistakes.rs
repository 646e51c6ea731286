#[faust::page("count/{partition}")]
async fn no_leading_slash() -> &'static str {
    "x"
}

#[faust::page("/x", method = "fetch")]
async fn unknown_method() -> &'static str {
    "x"
}

#[faust::page]
async fn no_path() -> &'static str {
    "x"
}

#[faust::page("/sync")]
fn not_async() -> &'static str {
    "x"
}

fn main() {}
