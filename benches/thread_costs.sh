#!/usr/bin/env bash
# Where a capture's CPU goes, thread by thread, and how often it waits in fsync: this
# build against a peer binary (PEER, e.g. main's release build), alternating run by run in
# the same command, for
#   record        `edgerec record` 2 ch 48 kHz S16 from a fakemic device (segments, then
#                 recording.wav)
#   capture_role  `edgerec capture --exit-when-idle` on a WAV job claimed from the reference
#                 controller by a sync role (a separate process, not counted), run/ on a tmpfs
# CPU per thread is the scheduler's own count (the sched:sched_stat_runtime tracepoint,
# what /proc/PID/task/*/schedstat sums), so a thread that ends before the process is still
# counted; `main` is the process's first thread. Then one run of each under `strace -f -c`
# for the fsync and fdatasync calls (strace slows the process; its CPU is not reported).
#
# Usage: PEER=/work/main/target/release/edgerec benches/thread_costs.sh
#        SECONDS_TO_CAPTURE=10 RUNS=1 PEER=... benches/thread_costs.sh
# Needs perf and strace (and what tests/fakemic/setup.sh installs); temp files removed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SECS=${SECONDS_TO_CAPTURE:-30}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PEER=${PEER:?PEER=path of the edgerec binary to compare with}
(cd "$ROOT" && cargo build --release -q -p edgerec -p edgerec-controller) >&2
BIN=$TARGET/release/edgerec
CTL=$TARGET/release/edgerec-controller
for tool in perf strace; do
  command -v $tool >/dev/null || { echo "thread_costs: needs $tool" >&2; exit 1; }
done
W=$(mktemp -d /tmp/edgerec-threads.XXXXXX)
SHM=$(mktemp -d /dev/shm/edgerec-threads.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W" "$SHM"; }
trap cleanup EXIT
DEVICE=fakemic_threads
eval "$("$ROOT/tests/fakemic/setup.sh" "$W/fakemic" $DEVICE --rate 48000 --channels 2 | tail -n 1)"
start_controller "$W" threads-box
STATE=$W/agent
EDGEREC_RUN_DIR=$SHM EDGEREC_LOG=warn "$BIN" sync --state-dir "$STATE" \
  --controller "http://127.0.0.1:$PORT/api/v1" --node-id "$NODE" --token-file "$W/token" \
  2>"$W/sync.log" &
pids+=($!)
FMT=(--format S16_LE --rate 48000 --channels 2)

# both WRAP... BIN NAME: runs record, then the capture role on a new job, each under WRAP
# (with NAME.record / NAME.capture as its output file).
both() {
  local bin=$1 name=$2; shift 2
  rm -rf "$W/out"; mkdir -p "$W/out"
  "$@" "$W/$name.record" "$bin" record --backend alsa --device $DEVICE "${FMT[@]}" \
    --duration "${SECS}s" --out "$W/out" >/dev/null 2>&1
  "$CTL" job add --db "$W/ctl.db" --node "$NODE" --device $DEVICE "${FMT[@]}" \
    --duration "${SECS}s" >/dev/null
  for _ in $(seq 200); do
    grep -q claimed <("$bin" status --state-dir "$STATE" 2>/dev/null || true) && break
    sleep 0.1
  done
  EDGEREC_RUN_DIR=$SHM "$@" "$W/$name.capture" "$bin" capture --state-dir "$STATE" \
    --exit-when-idle >/dev/null 2>&1
}
runtime() { local out=$1; shift; perf record -q -e sched:sched_stat_runtime -o "$out" -- "$@"; }
syscalls() { local out=$1; shift; strace -f -c -o "$out" -- "$@"; }
# CPU ms per thread name (the first thread as `main`), and the total.
per_thread() {
  perf script -i "$1" -F pid,tid,trace 2>/dev/null | awk '
  { split($1, pt, "/"); comm = ""; rt = 0; who = ""
    for (i = 2; i <= NF; i++) {
      if ($i ~ /^comm=/) comm = substr($i, 6)
      if ($i ~ /^pid=/) who = substr($i, 5)
      if ($i ~ /^runtime=/) rt = substr($i, 9)
    }
    # Only our threads own time: an update made for another task on our watch is its.
    if (who != pt[2]) next
    name = (pt[1] == pt[2]) ? "main" : comm; sub(/edgerec-job-.*/, "edgerec-job", name)
    r[name] += rt; tot += rt }
  END { for (n in r) printf "%s %.1f  ", n, r[n] / 1e6; printf "| total %.1f\n", tot / 1e6 }'
}

echo "== $(date -u +%FT%TZ)  $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ${SECS} s each, CPU ms per thread"
for r in $(seq "$RUNS"); do
  for who in peer this; do
    bin=$BIN; [ $who = peer ] && bin=$PEER
    both "$bin" "$who.$r" runtime
    for row in record capture; do
      printf 'run %s %-4s %-8s %s\n' "$r" "$who" "$row" "$(per_thread "$W/$who.$r.$row")"
    done
  done
done
echo "== fsync and fdatasync calls (strace -f -c, one run each)"
for who in peer this; do
  bin=$BIN; [ $who = peer ] && bin=$PEER
  both "$bin" "$who.strace" syscalls
  for row in record capture; do
    printf '%-4s %-8s %s\n' "$who" "$row" "$(awk '$NF == "fsync" || $NF == "fdatasync" { printf "%s %s  ", $NF, $4 }' "$W/$who.strace.$row")"
  done
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
