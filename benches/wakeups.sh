#!/usr/bin/env bash
# Wake-ups per second per thread: the voluntary + nonvoluntary context switches of each
# thread (/proc/PID/task/*/status) over a window, for
#   1. `edgerec record` capturing 2 ch 48 kHz S16 from a fakemic ALSA device, beside
#      `arecord` on the same device in the same run (the ratio is printed);
#   2. an idle `edgerec agent` (enrolled with the reference controller, nothing queued);
#   3. a busy `edgerec agent` (one synth job capturing).
# Each window is WINDOW seconds (default 30), after a warm-up; RUNS (default 3) runs
# print min/median/max of the process totals. Everything on loopback, temp files removed.
# The count is voluntary + nonvoluntary switches; the voluntary column alone leaves out
# preemption by other load (it still holds each wait for the disk inside fdatasync, three
# per sync on ext4: the data, the inode and the cache flush).
#
# Usage: benches/wakeups.sh                  (30 s windows, 3 runs)
#        WINDOW=10 RUNS=1 benches/wakeups.sh
#        ONLY=agent benches/wakeups.sh     (the agent's windows only)
#
# The agent keeps run/ (beats, node facts, meters) on a tmpfs under /dev/shm, as the
# systemd units do (EDGEREC_RUN_DIR=/run/edgerec); RUN_TMPFS=0 leaves it in the state
# directory under /tmp, where each run file's replacement on an ext4 mounted with
# `discard` waits for the disk (one more wake-up each). The reference controller keeps
# connections alive, as HTTP/1.1 servers do by default (`serve --keep-alive`);
# KEEP_ALIVE=0 serves one request per connection, as the tests run it.
#
# Thread names are the kernel's 15 characters: the capture role's thread
# (edgerec-capture-role) and a capture thread (edgerec-capture-alsa/-synth) both show as
# edgerec-capture. A thread born inside the window counts from 0; one that ends inside it is not counted
# (the report says how many threads each snapshot saw). Uses the release binaries (built
# here with `cargo build --release` when missing or older than the sources).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
WINDOW=${WINDOW:-30}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p edgerec -p edgerec-controller) >&2
BIN=$TARGET/release/edgerec
CTL=$TARGET/release/edgerec-controller
command -v arecord >/dev/null || { echo "wakeups: needs arecord (alsa-utils)" >&2; exit 1; }
T=$(mktemp -d /tmp/edgerec-wakeups.XXXXXX)
RUNDIR=
[ "${RUN_TMPFS:-1}" = 1 ] && RUNDIR=$(mktemp -d /dev/shm/edgerec-run.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; [ -n "$RUNDIR" ] && rm -rf "$RUNDIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# snapshot PID FILE: "tid name switches voluntary" per thread of PID.
snapshot() {
  local pid=$1 out=$2 t
  : >"$out"
  for t in /proc/"$pid"/task/*; do
    awk -v tid="${t##*/}" '/^Name:/{n=$2} /_ctxt_switches:/{s+=$2} /^voluntary_ctxt_switches:/{v=$2}
      END{if (n!="") print tid, n, s, v}' "$t/status" 2>/dev/null >>"$out" || true
  done
}

# window LABEL PID: prints per-thread wake-ups/s over WINDOW s; appends the total to LABEL.totals.
window() {
  local label=$1 pid=$2
  snapshot "$pid" "$T/a"
  sleep "$WINDOW"
  snapshot "$pid" "$T/b"
  awk -v w="$WINDOW" -v label="$label" -v tot="$T/$label.totals" '
    NR==FNR { a[$1]=$3; av[$1]=$4; next }
    { d = $3 - (($1 in a) ? a[$1] : 0); v = $4 - (($1 in av) ? av[$1] : 0)
      per[$2] += d; vol[$2] += v; n[$2]++; all += d; allv += v }
    END {
      printf "  %-28s %8s %8s %10s\n", label " thread", "threads", "wake/s", "voluntary"
      for (k in per) printf "  %-28s %8d %8.2f %10.2f\n", k, n[k], per[k] / w, vol[k] / w
      printf "  %-28s %8s %8.2f %10.2f\n", "TOTAL", "", all / w, allv / w
      printf "%.2f\n", all / w >> tot
    }' "$T/a" "$T/b"
}

stats() { # LABEL: min/median/max of the totals
  sort -g "$T/$1.totals" | awk -v l="$1" '{v[NR]=$1} END{printf "%-16s wake-ups/s over %d runs: min %.2f  median %.2f  max %.2f\n", l, NR, v[1], v[int((NR+1)/2)], v[NR]}'
}

# ---- 1. record vs arecord on the same fakemic device ----
DEVICE=fakemic_wakeups
line=$("$ROOT/tests/fakemic/setup.sh" "$T/fakemic" "$DEVICE" --rate 48000 --channels 2 | tail -n 1)
case $line in "export ALSA_CONFIG_PATH="*) eval "$line" ;; *) echo "wakeups: setup.sh said: $line" >&2; exit 1 ;; esac
LEN=$((WARMUP + WINDOW + 2))
[ "${ONLY:-}" = agent ] || for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS: record and arecord, 2 ch 48 kHz S16_LE, ${WINDOW} s windows"
  arecord -q -D "$DEVICE" -f S16_LE -c 2 -r 48000 -d "$LEN" -t wav "$T/arecord.wav" &
  ar=$!; pids+=($ar)
  sleep "$WARMUP"; window arecord "$ar"; wait "$ar" || true
  rm -rf "$T/rec"; mkdir -p "$T/rec"
  EDGEREC_LOG=warn "$BIN" record --backend alsa --device "$DEVICE" --format S16_LE --rate 48000 \
    --channels 2 --duration "${LEN}s" --out "$T/rec" >/dev/null 2>"$T/rec.log" &
  rec=$!; pids+=($rec)
  sleep "$WARMUP"; window record "$rec"; wait "$rec" || { echo "record failed:"; tail "$T/rec.log"; exit 1; }
done

# ---- 2 and 3. the agent, idle and with a job capturing ----
ka=(); [ "${KEEP_ALIVE:-1}" = 1 ] && ka=(--keep-alive)
start_controller "$T" wakeups-box "${ka[@]}"
[ -n "$RUNDIR" ] && export EDGEREC_RUN_DIR=$RUNDIR/agent
EDGEREC_LOG=warn "$BIN" agent --state-dir "$T/agent" --controller "http://127.0.0.1:$PORT/api/v1" \
  --node-id "$NODE" --token-file "$T/token" --backend-override synth 2>"$T/agent.log" &
AGENT=$!; pids+=($AGENT)
sleep $((WARMUP + 2))
for run in $(seq "$RUNS"); do
  echo "== run $run/$RUNS: idle agent"
  window idle_agent "$AGENT"
  echo "== run $run/$RUNS: busy agent (a 2 ch 48 kHz synth job)"
  "$CTL" job add --db "$T/ctl.db" --node "$NODE" --device sine:440 --duration "$((WINDOW + 15))s" >/dev/null
  for _ in $(seq 100); do grep -q capturing <("$BIN" status --state-dir "$T/agent" 2>/dev/null || true) && break; sleep 0.1; done
  sleep "$WARMUP"
  window busy_agent "$AGENT"
  # Let the job end, finalize and upload before the next idle window.
  for _ in $(seq 300); do grep -q capturing <("$BIN" status --state-dir "$T/agent" 2>/dev/null || true) || break; sleep 0.2; done
  sleep 10
done

echo
echo "== summary ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
for l in arecord record idle_agent busy_agent; do
  if [ -s "$T/$l.totals" ]; then stats "$l"; fi
done
if [ -s "$T/record.totals" ]; then
  paste "$T/record.totals" "$T/arecord.totals" | awk '{print $1/$2}' | sort -g |
    awk '{r[NR]=$1} END{printf "record/arecord wake-up ratio: min %.2f  median %.2f  max %.2f\n", r[1], r[int((NR+1)/2)], r[NR]}'
fi
