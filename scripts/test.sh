#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine (as root): installs what is
# missing, then builds and runs every test. The tests build and configure the fakemic
# ALSA test device themselves (tests/fakemic/).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh test
cargo build --all-targets --locked 2>&1 | tail -n 3
# Unit, integration and doc tests; real-time tests serialize themselves on a lock.
cargo test --locked -- --test-threads=2
# Each criterion bench once, as a smoke test (the measurements are run by hand: benches/).
cargo test --locked --benches
