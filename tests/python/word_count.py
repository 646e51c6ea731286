#!/usr/bin/env python
"""Faust's own examples/word_count.py (faust-streaming), for faust-rs's migration test
(tests/faust_interop.rs): the agents and the table are the example's; the settings are
faust_test_app's, the posts topic is ``{app_id}-posts`` (one per test run), and batches
hold one record (see below).
"""
import faust

import faust_test_app

app = faust_test_app.app(
    # One record per batch: tansu 0.6.0 (the test broker) answers a fetch that starts
    # inside a record batch with the next batch, so faust-rs resuming where Faust stopped
    # would skip the rest of Faust's last batch (docs/BENCHMARKS.md). Kafka needs no such
    # setting.
    producer_max_batch_size=1,
)

posts_topic = app.topic(f"{app.conf.id}-posts", value_type=str)
word_counts = app.Table('word_counts', default=int,
                        help='Keep count of words (str to int).')


@app.agent(posts_topic)
async def shuffle_words(posts):
    async for post in posts:
        for word in post.split():
            await count_words.send(key=word, value=word)


@app.agent(value_type=str)
async def count_words(words):
    """Count words from blog post article body."""
    async for word in words:
        word_counts[word] += 1


if __name__ == "__main__":
    app.main()
