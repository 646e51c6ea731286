//! Word count, the classic Faust example.
//!
//! `cargo run --example word_count -- worker` runs it on the embedded broker: a task sends
//! a few sentences, `split` splits them into words keyed by word, and `count` counts them
//! and prints each count as it changes. Counts live in the actor's memory here; with
//! tables (`#[faust::table]`) they would survive restarts.

use std::collections::HashMap;

use faust::prelude::*;

const SENTENCES: &str = "word-count-sentences";
const WORDS: &str = "word-count-words";

/// Splits each line into lower-case words, sent keyed by word so that every occurrence
/// of a word lands in the same partition (and so with the same actor).
#[faust::agent(topic = "word-count-sentences", codec = string)]
async fn split(mut lines: Stream<String>) -> faust::Result<()> {
    while let Some(line) = lines.next().await {
        for word in line
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let word = word.to_lowercase();
            faust::send(WORDS, Some(&word), &word).await?;
        }
    }
    Ok(())
}

#[faust::agent(topic = "word-count-words")]
async fn count(mut words: Stream<String>) -> faust::Result<()> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    while let Some(word) = words.next().await {
        let n = counts.entry(word.clone()).or_default();
        *n += 1;
        println!("{word}: {n}");
    }
    Ok(())
}

/// Feeds the example its input, so a newcomer sees results without a producer.
#[faust::task]
async fn produce_sentences() -> faust::Result<()> {
    for line in [
        "The quick brown fox jumps over the lazy dog",
        "The dog sleeps; the fox runs",
        "A fox, a dog, and the stream that counts them",
    ] {
        faust::send_bytes(SENTENCES, None, Some(line.as_bytes()), None).await?;
    }
    Ok(())
}

faust::main!(id = "word-count", partitions = 4);
