#!/usr/bin/env bash
# Runs every test (unit, macro UI, integration, doc) against a real tansu broker:
# installs tansu into ~/.cache on first use, starts it on 127.0.0.1, runs
# `cargo test --workspace` (extra arguments are passed on), and stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/broker.sh install
scripts/broker.sh start
trap 'scripts/broker.sh stop' EXIT
# The tests' worker logs and datadirs, from the previous run.
rm -rf "${TMPDIR:-/tmp}/faust-rs-tests"
cargo test --workspace --no-fail-fast "$@"
