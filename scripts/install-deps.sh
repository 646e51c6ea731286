#!/usr/bin/env bash
# Installs the system packages the build needs: libclang, for the RocksDB bindings
# (bindgen). Everything else comes from crates.io. Run as root or with sudo.
set -euo pipefail

if dpkg -s libclang-dev >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq libclang-dev
