#!/usr/bin/env bash
# Runs the benchmarks (docs/BENCHMARKS.md): builds faust-bench in release mode, starts
# the tansu broker (the calfkit build; FAUST_BROKER_BUILD= for tansu 0.6.0) unless
# FAUST_BENCH_BROKER points elsewhere, sets up the Python Faust
# baseline's virtualenv (skip it with FAUST_BENCH_NO_PYTHON=1), and runs the given
# scenarios (default: all), printing one JSON line each.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
if [[ -z "${FAUST_BENCH_BROKER:-}" ]]; then
    # The calfkit build of tansu unless told otherwise (see scripts/broker.sh).
    export FAUST_BROKER_BUILD="${FAUST_BROKER_BUILD-calfkit}"
    export FAUST_BENCH_BROKER_NAME="${FAUST_BENCH_BROKER_NAME:-tansu ${FAUST_BROKER_BUILD:-0.6.0} build on 127.0.0.1:19092}"
    scripts/broker.sh install
    # A fresh broker: tansu's memory storage keeps what earlier runs wrote, and slows.
    scripts/broker.sh stop
    scripts/broker.sh start
    trap 'scripts/broker.sh stop' EXIT
fi
if [[ -z "${FAUST_BENCH_NO_PYTHON:-}" ]]; then
    FAUST_BENCH_PYTHON="$(bench/python/setup.sh | tail -n 1)"
    export FAUST_BENCH_PYTHON
fi
cargo build --release -p faust-bench
# The scenarios that run the examples themselves (word_count) need their release builds.
cargo build --release --example word_count
"${CARGO_TARGET_DIR:-target}/release/faust-bench" "$@"
