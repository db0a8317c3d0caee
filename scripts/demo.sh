#!/usr/bin/env bash
# The main job, end to end: records 10 s from the synth backend (with a scripted
# 0.5 s drop-out), then prints where the recording is and what is on its timeline.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh build
cargo build --release --locked 2>&1 | tail -n 1
out=${EDGEREC_DEMO_OUT:-/tmp/edgerec-demo}
exec target/release/edgerec demo --dir "$out"
