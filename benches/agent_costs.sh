#!/usr/bin/env bash
# What the agent costs on a box: the CPU of an idle `edgerec agent` (connected to the
# reference controller, nothing queued) over IDLE_SECONDS, and the bytes the journal takes
# (writes to edgerec.db and its WAL, counted with strace) while one JOB_SECONDS job runs,
# extrapolated to an hour. Everything on loopback; temp files removed on exit.
#
# Usage: benches/agent_costs.sh              (60 s idle, 60 s job)
#        IDLE_SECONDS=20 JOB_SECONDS=20 benches/agent_costs.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
IDLE=${IDLE_SECONDS:-60}
JOB=${JOB_SECONDS:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v strace >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace >/dev/null; }
(cd "$ROOT" && cargo build --release -q -p edgerec -p edgerec-controller)
BIN=$ROOT/target/release/edgerec
CTL=$ROOT/target/release/edgerec-controller
T=$(mktemp -d /tmp/edgerec-costs.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
start_controller "$T" costs-box
EDGEREC_LOG=warn "$BIN" agent --state-dir "$T/agent" --controller "http://127.0.0.1:$PORT/api/v1" \
  --node-id "$NODE" --token-file "$T/token" --backend-override synth 2>"$T/agent.log" &
AGENT=$!; pids+=($AGENT)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
sleep 5
a=$(ticks $AGENT); sleep "$IDLE"; b=$(ticks $AGENT)
cpu_ms=$(( (b - a) * 1000 / hz ))
echo "idle agent: ${cpu_ms} ms CPU in ${IDLE} s = $(awk -v c=$cpu_ms -v s=$IDLE 'BEGIN{printf "%.3f", c/(s*10)}') % of one core"

"$CTL" job add --db "$T/ctl.db" --node "$NODE" --device sine:440 --duration "${JOB}s" >/dev/null
for _ in $(seq 100); do grep -q capturing <("$BIN" status --state-dir "$T/agent" 2>/dev/null || true) && break; sleep 0.1; done
sleep 2
timeout "$JOB" strace -f -qq -p "$AGENT" -e trace=write,pwrite64,writev -y -o "$T/strace.out" || true
bytes=$(grep -E '<[^>]*edgerec\.db(-wal)?>' "$T/strace.out" | sed -nE 's/.*= ([0-9]+)$/\1/p' | awk '{s+=$1} END{print s+0}')
calls=$(grep -cE '<[^>]*edgerec\.db(-wal)?>' "$T/strace.out" || true)
echo "journal writes during ${JOB} s of a running job: ${bytes} bytes in ${calls} calls" \
     "= $(awk -v b=$bytes -v s=$JOB 'BEGIN{printf "%.1f", b*3600/s/1048576}') MiB per hour"
