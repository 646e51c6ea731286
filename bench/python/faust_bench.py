"""Python Faust (faust-streaming) baseline for the faust-rs benchmarks.

Run as a worker, configured by environment variables:

    BENCH_BROKER=127.0.0.1:19092 BENCH_APP=bench-pt BENCH_SCENARIO=passthrough \
    BENCH_INPUT=in BENCH_OUTPUT=out BENCH_PARTITIONS=4 BENCH_DATADIR=/tmp/x \
        python faust_bench.py worker -l warning

Optional: BENCH_SESSION_TIMEOUT (seconds, default 10; see below).

Scenarios:

* ``passthrough``: decode each JSON value of BENCH_INPUT and send it, same key,
  to BENCH_OUTPUT.
* ``word_count``: ``counts[value['word']] += 1`` in the table ``word_counts``
  (one changelog record per update, Faust's default).

Prints a line containing ``BENCH READY`` to stdout once partitions are
assigned and the (empty) table recovery is over, i.e. once the agents process
records. The bench runner measures completion from the group's committed
offsets (``broker_commit_interval=0.1``) or from the output topic.
"""

import os
import sys
from datetime import timedelta

import faust

BROKER = os.environ.get("BENCH_BROKER", "127.0.0.1:19092")
APP_ID = os.environ.get("BENCH_APP", "faust-bench")
SCENARIO = os.environ.get("BENCH_SCENARIO", "passthrough")
INPUT = os.environ.get("BENCH_INPUT", "bench-input")
OUTPUT = os.environ.get("BENCH_OUTPUT", "bench-output")
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "4"))
SESSION_TIMEOUT = float(os.environ.get("BENCH_SESSION_TIMEOUT", "10"))
DATADIR = os.environ.get("BENCH_DATADIR") or os.path.join(
    "/tmp", f"faust-bench-{APP_ID}"
)

if SCENARIO not in ("passthrough", "word_count", "windowed_count"):
    sys.exit(
        "BENCH_SCENARIO must be passthrough, word_count or windowed_count, "
        f"not {SCENARIO!r}"
    )

app = faust.App(
    APP_ID,  # app id == consumer group id
    broker=f"kafka://{BROKER}",
    # In-memory tables: no RocksDB, table state lives only in the process
    # (and in its changelog topic), like the Rust side's in-memory store.
    store="memory://",
    datadir=DATADIR,
    topic_partitions=PARTITIONS,
    # Faust creates the internal topics it owns (the table's changelog).
    topic_allow_declare=True,
    # No web server (no port to clash with, no aiohttp work in the loop).
    # Note: `faust worker` overwrites this from its --with-web/--without-web
    # flag (default: with), so __main__ below also adds --without-web.
    web_enabled=False,
    # Keep print() on the real stdout: by default the worker redirects
    # stdout into its logger (stderr), which would hide the READY line.
    worker_redirect_stdouts=False,
    # Commit often so the runner can see completion through committed offsets.
    broker_commit_interval=0.1,
    # Faust's default is 60 s. tansu numbers the first group generation 0, and
    # aiokafka sends no LeaveGroup at generation 0, so a stopped worker stays in
    # the group until this timeout: a restart in the same group waits for it.
    broker_session_timeout=SESSION_TIMEOUT,
    key_serializer="json",
    value_serializer="json",
    autodiscover=False,
    # No `<app>-__assignor-__leader` topic (only used by leader-only timers):
    # one internal topic fewer to create on the broker.
    topic_disable_leader=True,
)

input_topic = app.topic(
    INPUT,
    key_type=str,
    value_type=None,  # plain JSON -> dict
    key_serializer="json",
    value_serializer="json",
    partitions=PARTITIONS,
)

if SCENARIO == "passthrough":
    output_topic = app.topic(
        OUTPUT,
        key_type=str,
        key_serializer="json",
        value_serializer="json",
        partitions=PARTITIONS,
    )

    @app.agent(input_topic)
    async def passthrough(stream):
        async for key, value in stream.items():
            await output_topic.send(key=key, value=value)

elif SCENARIO == "windowed_count":
    # Per word and 10-second window (message time), kept 10 s after each window.
    windowed = app.Table(
        "windowed_counts",
        default=int,
        partitions=PARTITIONS,
        key_type=str,
        value_type=int,
    ).tumbling(10, expires=timedelta(seconds=10))

    @app.agent(input_topic)
    async def windowed_count(stream):
        async for value in stream:
            windowed[value["word"]] += 1

else:
    counts = app.Table(
        "word_counts",
        default=int,
        partitions=PARTITIONS,
        key_type=str,
        value_type=int,
    )

    @app.agent(input_topic)
    async def word_count(stream):
        async for value in stream:
            counts[value["word"]] += 1


_ready_printed = False


@app.on_rebalance_complete.connect
async def _bench_ready(sender, **kwargs):
    # Sent by the recovery service once the assignment is in place and the
    # (here empty) changelog recovery is done, just before the stream
    # partitions are resumed: the agents process from here on.
    global _ready_printed
    if not _ready_printed:
        _ready_printed = True
        out = sys.__stdout__
        out.write(
            f"BENCH READY scenario={SCENARIO} app={APP_ID} "
            f"assigned={len(app.consumer.assignment())}\n"
        )
        out.flush()


def _normalize_argv(argv):
    """Fix up the ``worker`` command line for the bench runner.

    * Faust's CLI accepts ``-l warn`` but rejects ``-l warning``: accept both.
    * Add ``--without-web`` (the CLI default would re-enable the web server).
    """
    out = list(argv)
    if "worker" in out and not any(
        a in ("--with-web", "--without-web") for a in out
    ):
        out.insert(out.index("worker") + 1, "--without-web")
    for i, arg in enumerate(out):
        if arg in ("-l", "--loglevel") and i + 1 < len(out):
            if out[i + 1].lower() == "warning":
                out[i + 1] = "warn"
        elif arg.startswith("--loglevel=") and arg.split("=", 1)[1].lower() == "warning":
            out[i] = "--loglevel=warn"
    return out


if __name__ == "__main__":
    sys.argv = _normalize_argv(sys.argv)
    app.main()
