#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine (as root): installs what is
# missing, then builds and runs every test. The tests build and configure the fakemic
# ALSA test device themselves (tests/fakemic/).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh test
cargo build --all-targets --locked 2>&1 | tail -n 3
cargo test --all-targets --locked -- --test-threads=2
