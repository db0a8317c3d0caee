#!/usr/bin/env bash
# Channel sweep: `edgerec record --backend synth` at 96 kHz S32_LE with 2, 8, 32, 64, 128
# and 256 channels (the full pipeline: synth capture thread, ring, writer, segments on
# disk, journal, meter), printing per run the overruns, the CPU % of one core and the
# RSS while capturing, the ring the byte budget gave, and the MB/s landed on disk.
#
# Usage: benches/channel_sweep.sh                      (10 s per channel count)
#        SECONDS_PER_RUN=20 CHANNELS="2 128" benches/channel_sweep.sh
#        LONG_MINUTES=10 benches/channel_sweep.sh      (also the 128 ch long run)
#
# CPU and RSS are read from /proc/PID while capturing (from WARMUP s to 1 s before the
# end), so the stitch at the end is not in them; the peak RSS of the whole process
# (VmHWM) is printed beside. Overruns are the `overrun` timeline events (device or ring).
#
# Each run is killed (SIGKILL) once measured, before its finalize: the stitch would need
# as much room again, and it is not the capture path. Overruns come from the journal,
# which has each one as it happens. The long run (128 ch x 96 kHz x S32, 49 MB/s) writes
# 29 GB in 10 minutes, so closed segments older than the newest two are deleted as it
# goes (PRUNE=0 keeps them).
set -euo pipefail
SECS=${SECONDS_PER_RUN:-10}
CHANNELS=${CHANNELS:-"2 8 32 64 128 256"}
LONG=${LONG_MINUTES:-0}
PRUNE=${PRUNE:-1}
WARMUP=${WARMUP:-2}
RATE=96000
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p edgerec) >&2
BIN=$TARGET/release/edgerec
command -v sqlite3 >/dev/null || { echo "channel_sweep: needs sqlite3" >&2; exit 1; }
T=$(mktemp -d "${SWEEP_DIR:-/var/tmp}/edgerec-sweep.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1==k":"{print $2}' "/proc/$1/status"; }

# one CH SECONDS [prune]: one record run; prints a table row.
one() {
  local ch=$1 secs=$2 prune=${3:-0} out="$T/out-$1" pid a b t0 t1 rss_max=0 rss
  rm -rf "$out"; mkdir -p "$out"
  EDGEREC_LOG=debug "$BIN" record --backend synth --device sine:997 --format S32_LE \
    --rate "$RATE" --channels "$ch" --segment-seconds 10 --duration "${secs}s" \
    --out "$out" >"$T/run.out" 2>"$T/run.err" &
  pid=$!; pids+=($pid)
  sleep "$WARMUP"
  a=$(ticks "$pid"); t0=$(date +%s.%N)
  local until=$(( $(date +%s) + secs - WARMUP - 1 ))
  while [ "$(date +%s)" -lt "$until" ] && kill -0 "$pid" 2>/dev/null; do
    rss=$(kib "$pid" VmRSS); [ "${rss:-0}" -gt "$rss_max" ] && rss_max=$rss
    if [ "$prune" = 1 ]; then
      ls "$out"/job_*/[0-9]*.wav 2>/dev/null | sort | head -n -2 | xargs -r rm -f
    fi
    sleep 1
  done
  b=$(ticks "$pid"); t1=$(date +%s.%N)
  local hwm; hwm=$(kib "$pid" VmHWM)
  local ring; ring=$(sed -n 's/.*ring \([0-9.]* s, [0-9.]* MiB\).*/\1/p' "$T/run.err" | head -n 1)
  # Killed once measured: the capture path is what is measured, not the stitch (which
  # would need as much room again); the journal has every overrun already.
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local db; db=$(ls "$out"/edgerec.db)
  local overruns lost
  overruns=$(sqlite3 "$db" "select count(*) from events where kind='overrun'" 2>/dev/null || echo "?")
  lost=$(sqlite3 "$db" "select coalesce(sum(gap_frames),0) from events where kind='overrun'" 2>/dev/null || echo "?")
  local mbps; mbps=$(awk -v c="$ch" -v r="$RATE" 'BEGIN{printf "%.1f", c*r*4/1e6}')
  awk -v ch="$ch" -v s="$secs" -v o="$overruns" -v l="$lost" -v a="$a" -v b="$b" -v hz="$hz" \
      -v t0="$t0" -v t1="$t1" -v rss="$rss_max" -v hwm="${hwm:-0}" -v mb="$mbps" -v ring="${ring:-?}" \
    'BEGIN{printf "%4d ch %5d s  overruns %3s (%s frames)  CPU %6.1f %%  RSS %6.1f MiB  (peak %6.1f MiB)  %6s MB/s  ring %s\n",
      ch, s, o, l, (b-a)*100/hz/(t1-t0), rss/1024, hwm/1024, mb, ring}'
  rm -rf "$out"
}

echo "== $(date -u +%FT%TZ)  $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), disk $(df -h "$T" | awk 'NR==2{print $4}') free"
echo "== channel sweep: 96 kHz S32_LE, ${SECS} s each, through $BIN"
for ch in $CHANNELS; do one "$ch" "$SECS"; done
if [ "$LONG" -gt 0 ]; then
  echo "== long run: 128 ch x 96 kHz x S32_LE for ${LONG} min (prune=$PRUNE)"
  one 128 $((LONG * 60)) "$PRUNE"
fi
