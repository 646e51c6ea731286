#!/usr/bin/env bash
# Runs every test (unit, macro UI, integration, doc) against a real tansu broker:
# installs tansu (and a Python Faust for the interop tests) into ~/.cache on first use,
# starts it on 127.0.0.1, runs
# `cargo test --workspace` and `cargo test --examples` (extra arguments are passed on),
# and stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/broker.sh install
scripts/broker.sh start
trap 'scripts/broker.sh stop' EXIT
# Here a broker test without its broker fails (plain `cargo test` skips those tests).
export FAUST_TEST_REQUIRE_BROKER=1
# The interop tests run a real Python Faust worker (faust-streaming, pinned in
# bench/python/requirements.txt) from a virtualenv under ~/.cache, made on first use.
FAUST_TEST_PYTHON="$(bench/python/setup.sh | tail -n 1)"
export FAUST_TEST_PYTHON
# The tests' worker logs and datadirs, from the previous run.
rm -rf "${TMPDIR:-/tmp}/faust-rs-tests"
cargo test --workspace --no-fail-fast "$@"
# The examples' own tests (their agents in faust's test context, no broker). Not in the
# run above: that one builds the examples as programs, which tests/worker.rs runs.
cargo test --examples "$@"
