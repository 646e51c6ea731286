//! Word count, the classic Faust example, with its counts in a table.
//!
//! ```sh
//! cargo run --example word_count -- worker                    # embedded broker
//! cargo run --example word_count -- worker --broker kafka://localhost:9092 --datadir /tmp/wc --create-topics all
//! cargo run --example word_count -- send posts '"the fox and the dog"' --broker kafka://localhost:9092
//! ```
//!
//! App id `word-count`; input topic `posts`, each message a JSON string holding one line
//! of text; counts in the table `word_counts` (key: the word as a JSON string, value: the
//! count as a JSON number), whose changelog is `word-count-word_counts-changelog`. These
//! names are stable: tools and operators rely on them.
//!
//! On the embedded broker a task sends three sample posts at start, so a newcomer sees
//! counts printed; on a real broker it sends nothing (`posts` is yours: without
//! `--create-topics all` the worker creates only its internal topics, and says so if
//! `posts` is missing).

use faust::prelude::*;

/// word -> how often it was seen.
#[faust::table(name = "word_counts", default = 0)]
static WORD_COUNTS: Table<String, u64>;

/// Splits each post into lower-case words and sends each to `count_words` keyed by the
/// word, so every occurrence of a word lands in the same partition: the one that holds
/// its count.
#[faust::agent(topic = "posts")]
async fn split(mut posts: Stream<String>) -> faust::Result<()> {
    while let Some(post) = posts.next().await {
        for word in post
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let word = word.to_lowercase();
            faust::send("count_words", Some(&word), &word).await?;
        }
    }
    Ok(())
}

/// Counts words (its topic is `word-count-count_words`).
#[faust::agent]
async fn count_words(mut words: Stream<String>) -> faust::Result<()> {
    while let Some(word) = words.next().await {
        let count = WORD_COUNTS.update(&word, |n| *n += 1)?;
        println!("{word}: {count}");
    }
    Ok(())
}

/// Sends the sample posts, on the embedded broker only.
#[faust::task]
async fn sample_posts() -> faust::Result<()> {
    let embedded = faust::config().is_some_and(|c| c.broker == faust::BrokerSpec::Embedded);
    if !embedded {
        return Ok(());
    }
    for post in [
        "The quick brown fox jumps over the lazy dog",
        "The dog sleeps; the fox runs",
        "A fox, a dog, and the stream that counts them",
    ] {
        faust::send("posts", None::<&str>, &post).await?;
    }
    Ok(())
}

faust::main!(id = "word-count", partitions = 4);

/// The agents, run in-process by faust's test context: no broker needed.
#[cfg(test)]
mod tests {
    use super::*;
    use faust::testing::TestContext;

    #[tokio::test]
    async fn posts_are_split_and_their_words_counted() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.send("posts", None::<&str>, "The fox and the dog")
            .await?;
        ctx.send("posts", None::<&str>, "the end").await?;
        assert_eq!(WORD_COUNTS.get(&"the".to_owned())?, 3);
        assert_eq!(WORD_COUNTS.get(&"fox".to_owned())?, 1);
        assert_eq!(WORD_COUNTS.get(&"cat".to_owned())?, 0);
        // `split` sent each word to `count_words`, keyed by the word as Python Faust
        // keys it: its UTF-8 bytes, so it hashes to the partition Faust would use.
        let words: Vec<String> = ctx.sent_json("word-count-count_words")?;
        assert_eq!(words, ["the", "fox", "and", "the", "dog", "the", "end"]);
        let keys: Vec<Vec<u8>> = ctx
            .sent("word-count-count_words")
            .into_iter()
            .filter_map(|r| r.key)
            .collect();
        assert_eq!(keys[..2], [b"the".to_vec(), b"fox".to_vec()]);
        Ok(())
    }

    /// A post split again (its worker crashed before committing it) sends the same
    /// words, which `count_words` recognises and does not count twice.
    #[tokio::test]
    async fn a_post_split_again_after_a_crash_is_counted_once() -> faust::Result<()> {
        let mut ctx = TestContext::new().await?;
        ctx.send("posts", None::<&str>, "the fox and the dog")
            .await?;
        ctx.replay_last("posts").await?;
        assert_eq!(WORD_COUNTS.get(&"the".to_owned())?, 2);
        assert_eq!(WORD_COUNTS.get(&"dog".to_owned())?, 1);
        assert_eq!(ctx.sent("word-count-count_words").len(), 10, "sent twice");
        Ok(())
    }

    /// With `--origin-headers false` nothing tells a repeat: at-least-once.
    #[tokio::test]
    async fn without_origin_headers_a_post_split_again_is_counted_twice() -> faust::Result<()> {
        let app = faust::App::builder("word-count").origin_headers(false);
        let mut ctx = TestContext::with_app(app).await?;
        ctx.send("posts", None::<&str>, "the fox").await?;
        ctx.replay_last("posts").await?;
        assert_eq!(WORD_COUNTS.get(&"fox".to_owned())?, 2);
        let sent = ctx.sent("word-count-count_words");
        assert!(sent.iter().all(|r| r.headers.is_empty()), "{sent:?}");
        Ok(())
    }
}
