#!/usr/bin/env bash
# Installs the system packages faust-rs needs from Debian:
#
#   scripts/install-deps.sh          what the tests need too (scripts/test.sh runs this)
#   scripts/install-deps.sh --build  only what building needs (the README's first command)
#
# Building needs libclang, for the RocksDB bindings (bindgen). The tests also need
# chromium and promtool (package prometheus), with which they check the status page and
# the /metrics text. Everything else comes from crates.io. Run as root or with sudo.
set -euo pipefail

PACKAGES=(libclang-dev)
case "${1:-}" in
    --build) ;;
    "") PACKAGES+=(chromium prometheus) ;;
    *) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
$SUDO apt-get update -qq
# Only promtool is used from prometheus; no service is started here.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
