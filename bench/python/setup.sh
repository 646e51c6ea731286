#!/usr/bin/env bash
# Creates (once) the virtualenv the Python Faust baseline runs in and prints its python.
#
#   bench/python/setup.sh          -> last line: /path/to/venv/bin/python
#
# The venv lives at $FAUST_BENCH_VENV (default ~/.cache/faust-rs/bench-venv), outside
# the clone, so later runs on the same machine reuse it. Installing is skipped when the
# marker in the venv records this exact requirements.txt content.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${FAUST_BENCH_VENV:-$HOME/.cache/faust-rs/bench-venv}"
REQS="$HERE/requirements.txt"
MARKER="$VENV/.bench-requirements.sha256"
PYTHON_BIN="${PYTHON:-python3}"

want="$(sha256sum "$REQS" | cut -d' ' -f1)"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating virtualenv $VENV with $("$PYTHON_BIN" --version 2>&1)" >&2
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON_BIN" -m venv "$VENV"
fi

if [[ ! -f "$MARKER" || "$(cat "$MARKER")" != "$want" ]]; then
    echo "installing $REQS into $VENV" >&2
    rm -f "$MARKER"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQS" >&2
    echo "$want" >"$MARKER"
else
    echo "requirements already installed in $VENV" >&2
fi

echo "$VENV/bin/python"
