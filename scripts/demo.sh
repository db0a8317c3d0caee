#!/usr/bin/env bash
# The main job, end to end, on loopback: starts the reference controller, queues a 20 s
# job on the synth backend with an injected 1.5 s device drop-out, runs the agent, and
# prints the delivered recording (path, duration, the controller's checksum, timeline).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/deps.sh build
# Both programs: `edgerec demo` runs target/release/edgerec-controller as its own process.
cargo build --release --locked -p edgerec -p edgerec-controller 2>&1 | tail -n 1
out=${EDGEREC_DEMO_OUT:-/tmp/edgerec-demo}
rm -rf "$out"   # a fresh controller and agent each run
exec target/release/edgerec demo --dir "$out"
