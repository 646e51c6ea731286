#[faust::task]
async fn start(n: u32) -> faust::Result<()> {
    let _ = n;
    Ok(())
}

fn main() {}
