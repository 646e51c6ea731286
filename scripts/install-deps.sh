#!/usr/bin/env bash
# Installs the system packages faust-rs needs from Debian:
#
#   scripts/install-deps.sh          what the tests need too (scripts/test.sh runs this)
#   scripts/install-deps.sh --build  only what building needs (the README's first command)
#
# Building needs libclang, for the RocksDB bindings (bindgen), and OpenSSL's headers
# (with pkg-config), for TLS to the brokers. The tests also need chromium and promtool
# (package prometheus), with which they check the status page and the /metrics text,
# openssl and stunnel4, which make certificates and put TLS in front of the test
# broker, and curl, which asks the web server over HTTPS with a client certificate. Everything else comes from crates.io. Run as root or with sudo.
set -euo pipefail

PACKAGES=(libclang-dev libssl-dev pkg-config)
case "${1:-}" in
    --build) ;;
    "") PACKAGES+=(chromium prometheus openssl stunnel4 curl) ;;
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
