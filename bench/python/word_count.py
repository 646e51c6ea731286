#!/usr/bin/env python
"""Faust's own examples/word_count.py (faust-streaming), for the word-count benchmark.

The agents and the table are the example's, unchanged. What differs, so that the
benchmark runner can drive it on the same broker and input as faust-rs's
examples/word_count.rs:

* app id, broker and partitions come from the environment (BENCH_APP, BENCH_BROKER,
  BENCH_PARTITIONS); the store is ``memory://`` (Faust's RocksDB extra does not build
  here) and the web server is off;
* the ``sender`` task is left out: the runner pre-loads ``posts``;
* ``on_rebalance_complete`` prints ``BENCH READY`` (once) instead of the tally;
* commits every 100 ms (``broker_commit_interval``), as the runner asks of every
  contender, so that it sees progress in the group's committed offsets.
"""
import os
import sys

import faust

app = faust.App(
    os.environ.get("BENCH_APP", "word-counts"),
    broker=f"kafka://{os.environ.get('BENCH_BROKER', '127.0.0.1:19092')}",
    store="memory://",
    version=1,
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")),
    web_enabled=False,
    worker_redirect_stdouts=False,
    broker_commit_interval=0.1,
    # tansu numbers the first generation 0 and aiokafka sends no LeaveGroup then:
    # keep a stopped worker's membership short.
    broker_session_timeout=10,
    autodiscover=False,
    topic_disable_leader=True,
    datadir=os.environ.get("BENCH_DATADIR", "/tmp/faust-bench-word-counts"),
)

posts_topic = app.topic('posts', value_type=str)
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


_ready = False


@app.on_rebalance_complete.connect
async def on_rebalance_complete(sender, **kwargs):
    global _ready
    if not _ready:
        _ready = True
        print(f"BENCH READY count_words_topic={count_words.channel.get_topic_name()}",
              file=sys.__stdout__, flush=True)


if __name__ == '__main__':
    argv = sys.argv
    if "worker" in argv and "--without-web" not in argv:
        argv.insert(argv.index("worker") + 1, "--without-web")
    app.main()
