#!/usr/bin/env bash
# Installs the system packages the build and tests need: libclang, for the RocksDB
# bindings (bindgen); chromium and promtool (package prometheus), with which the tests
# check the status page and the /metrics text. Everything else comes from crates.io.
# Run as root or with sudo.
set -euo pipefail

PACKAGES=(libclang-dev chromium prometheus)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
$SUDO apt-get update -qq
# Only promtool is used from prometheus; no service is started here.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
