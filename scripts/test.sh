#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine (as root): installs what is
# missing, then builds and runs every test. The tests build and configure the fakemic
# ALSA test device themselves (tests/fakemic/) and mount their own small tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh test
# The whole workspace: the agent's integration tests run the reference controller
# (target/debug/edgerec-controller) as a separate program.
cargo build --workspace --all-targets --locked 2>&1 | tail -n 3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Each criterion bench once, as a smoke test (the measurements are run by hand: benches/).
cargo test --locked --bench ring --bench segment_writer 2>&1 | tee -a "$log"
# Unit, integration and doc tests of every crate (agent, protocol, sqlite, controller),
# two test binaries at a time; every binary runs, so one failure does not hide the others.
status=0
scripts/run-tests.sh --test-threads=2 2>&1 | tee -a "$log" || status=$?
# The appliance: systemd units, the Yocto layer's lint, the .deb and its install check,
# the aarch64 cross-build (scripts/appliance.sh; each step prints its time).
scripts/appliance.sh all 2>&1 | tee -a "$log" || status=$?
passed=$(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed.*/\1/p' "$log" | awk '{s+=$1} END{print s+0}')
failed=$(sed -nE 's/^test result: .* ([0-9]+) failed.*/\1/p' "$log" | awk '{s+=$1} END{print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
