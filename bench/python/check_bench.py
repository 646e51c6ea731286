"""Stand-alone check of faust_bench.py against a broker (used to verify the baseline).

    python check_bench.py --broker 127.0.0.1:19092 --scenario passthrough --messages 20000
    python check_bench.py --broker 127.0.0.1:19092 --scenario word_count --messages 20000

Creates fresh input (and output) topics, produces the input first, starts the
Faust worker, waits for its ``BENCH READY`` line, polls the group's committed
offsets until they add up to the input size, prints the rate, then counts the
output / changelog records by reading them to the end (partition EOF, not
ListOffsets: tansu's ListOffsets(latest) under-reports the end) and stops the
worker. The Rust bench runner does the same with its own client.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))


def create_topics(broker, names, partitions):
    admin = AdminClient({"bootstrap.servers": broker})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    )
    for name, fut in futures.items():
        try:
            fut.result(10)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise


def produce(broker, topic, scenario, n, words):
    p = Producer({"bootstrap.servers": broker, "linger.ms": 5, "acks": "all"})
    pad = "x" * 60
    for i in range(n):
        if scenario == "passthrough":
            key = json.dumps(f"k{i}")
            value = json.dumps({"id": i, "text": "t" * 80})  # ~100 bytes
        else:
            w = f"w{i % words}"
            key = json.dumps(w)
            value = json.dumps({"word": w, "pad": pad})
        while True:
            try:
                p.produce(topic, key=key.encode(), value=value.encode())
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(30)
    if left:
        sys.exit(f"{left} messages not delivered")


def committed_total(broker, group, topic, partitions):
    c = Consumer(
        {"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False}
    )
    try:
        tps = c.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def count_records(broker, topic, partitions, timeout=30.0, latest=None):
    """Read every partition to its end (partition EOF) and count the records.

    With ``latest`` (a dict), also keep the last JSON value of each key.
    """
    c = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": f"check-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    n = 0
    eof = set()
    deadline = time.monotonic() + timeout
    while len(eof) < partitions and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    eof.add(m.partition())
                else:
                    raise KafkaException(m.error())
            else:
                n += 1
                eof.discard(m.partition())
                if latest is not None:
                    latest[m.key()] = json.loads(m.value())
    c.close()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", default="127.0.0.1:19092")
    ap.add_argument("--scenario", choices=["passthrough", "word_count"], required=True)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--words", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    app_id = f"pybench-{args.scenario}-{run}"
    inp = f"pybench-in-{run}"
    out = f"pybench-out-{run}"
    create_topics(
        args.broker,
        [inp, out] if args.scenario == "passthrough" else [inp],
        args.partitions,
    )
    t = time.monotonic()
    produce(args.broker, inp, args.scenario, args.messages, args.words)
    print(f"produced {args.messages} to {inp} in {time.monotonic() - t:.2f}s")

    datadir = tempfile.mkdtemp(prefix="faust-bench-")
    env = dict(
        os.environ,
        BENCH_BROKER=args.broker,
        BENCH_APP=app_id,
        BENCH_SCENARIO=args.scenario,
        BENCH_INPUT=inp,
        BENCH_OUTPUT=out,
        BENCH_PARTITIONS=str(args.partitions),
        BENCH_DATADIR=datadir,
    )
    errlog = open(os.path.join(datadir, "worker.stderr"), "w+")
    t_start = time.monotonic()
    worker = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "faust_bench.py"), "worker", "-l", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=errlog,  # the READY line must come on stdout alone
        text=True,
        cwd=datadir,
    )
    ready = threading.Event()
    log = []

    def pump():
        for line in worker.stdout:
            log.append(line)
            if "BENCH READY" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if worker.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)
                sys.exit("no BENCH READY (worker exited or 60s passed)")
        t_ready = time.monotonic()
        print(f"READY after {t_ready - t_start:.2f}s from spawn")
        total = 0
        while time.monotonic() - t_ready < args.timeout:
            total = committed_total(args.broker, app_id, inp, args.partitions)
            if total >= args.messages:
                break
            if worker.poll() is not None:
                sys.exit("worker exited before finishing")
            time.sleep(0.05)
        elapsed = time.monotonic() - t_ready
        print(
            f"committed {total}/{args.messages} in {elapsed:.2f}s after READY"
            f" -> {total / elapsed:,.0f} msg/s"
        )
        if args.scenario == "passthrough":
            n = count_records(args.broker, out, args.partitions)
            print(f"output topic {out}: {n} records")
        else:
            changelog = f"{app_id}-word_counts-changelog"
            latest = {}
            n = count_records(args.broker, changelog, args.partitions, latest=latest)
            print(
                f"changelog topic {changelog}: {n} records, {len(latest)} keys,"
                f" final counts add up to {sum(latest.values())}"
            )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        print("--- worker stdout ---")
        print("".join(log), end="")
        errlog.seek(0)
        print("--- worker stderr (last 40 lines) ---")
        print("".join(errlog.readlines()[-40:]), end="")
        errlog.close()
        shutil.rmtree(datadir, ignore_errors=True)


if __name__ == "__main__":
    main()
