//! Two workers of two apps in one process, against the real broker: each has its own
//! tables, producer, clock and leadership (the worker context), so neither sees the
//! other's state.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{create_topic, produce_json, read_all, unique, wait_until};
use faust::prelude::*;
use serde_json::json;

#[faust::table(name = "counts", default = 0)]
static COUNTS: Table<String, u64>;

/// Counts words per app: each app reads its own topic and reports to its own.
#[faust::agent(topic = "{app_id}-words", sink = "{app_id}-counted")]
async fn count(mut words: Stream<String>, counted: Sink<(String, u64)>) -> faust::Result<()> {
    while let Some(word) = words.next().await {
        let n = COUNTS.update(&word, |n| *n += 1)?;
        counted.send(&(word, n)).await?;
    }
    Ok(())
}

/// The highest count reported per word on `topic`.
fn reported(topic: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for record in read_all(topic) {
        let (word, n): (String, u64) = serde_json::from_value(record.json()).unwrap();
        let count = counts.entry(word).or_default();
        *count = n.max(*count);
    }
    counts
}

fn app(id: &str) -> faust::App {
    let datadir = common::scratch().join(id);
    faust::App::builder(id)
        .broker(&common::broker())
        .datadir(datadir)
        .partitions(2)
        .web_enabled(false)
        .session_timeout(Duration::from_secs(6))
        .commit_interval(Duration::from_millis(200))
        .build()
        .unwrap()
}

#[test]
fn two_apps_in_one_process_keep_their_own_tables() {
    needs_broker!();
    let (a, b) = (unique("two-a"), unique("two-b"));
    for id in [&a, &b] {
        create_topic(&format!("{id}-words"), 2);
        create_topic(&format!("{id}-counted"), 2);
    }
    let words = |word: &str, times: usize| vec![(json!(word), json!(word)); times];
    produce_json(
        &format!("{a}-words"),
        &[words("fox", 3), words("owl", 1)].concat(),
    );
    produce_json(&format!("{b}-words"), &words("fox", 5));
    let expected_a = HashMap::from([("fox".to_owned(), 3), ("owl".to_owned(), 1)]);
    let expected_b = HashMap::from([("fox".to_owned(), 5)]);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = |id: &str| {
        let mut stopped = stopped.clone();
        let worker = faust::Worker::new(app(id));
        runtime.spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            worker.run_until(stop).await
        })
    };
    let (worker_a, worker_b) = (run(&a), run(&b));
    let (out_a, out_b) = (format!("{a}-counted"), format!("{b}-counted"));
    let both_done = wait_until(Duration::from_secs(120), || {
        reported(&out_a) == expected_a && reported(&out_b) == expected_b
    });
    stop.send_replace(true);
    let outcomes = runtime.block_on(async { (worker_a.await, worker_b.await) });
    assert!(
        both_done,
        "app a reported {:?}, app b {:?}",
        reported(&out_a),
        reported(&out_b)
    );
    assert!(matches!(outcomes, (Ok(Ok(())), Ok(Ok(())))), "{outcomes:?}");
    // Nothing more came after the expected counts: no count ran on from the other app.
    assert_eq!(reported(&out_a), expected_a);
    assert_eq!(reported(&out_b), expected_b);
    assert_eq!(read_all(&out_a).len(), 4);
    assert_eq!(read_all(&out_b).len(), 5);
}
