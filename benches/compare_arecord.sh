#!/usr/bin/env bash
# Compares edgerec with `arecord` capturing the same stream from the same device, one right
# after the other in the same run: user and sys CPU time, wall time and peak RSS of each
# (from /usr/bin/time), and the CPU ratio to arecord of each row in each of RUNS runs with
# their min/median/max, then the size of the stripped release binary. The rows:
#   record          `edgerec record` at its default config (segments, then recording.wav)
#   record_nostitch `edgerec record --no-stitch` (the segments only)
#   record_nostitch_sync10s  the same at `--sync-interval 10s`: a peer that shows what the
#                   default 1 s sync (the crash-safety promise) costs
#   capture_role    the agent's capture role (`edgerec capture`, what the box runs) on a
#                   WAV job claimed from the reference controller on loopback by the sync
#                   role (a separate process, not counted), with run/ on a tmpfs as the
#                   systemd units set it (EDGEREC_RUN_DIR)
#
# Usage: benches/compare_arecord.sh            (60 s each, 3 runs: min/median/max ratio)
#        SECONDS_TO_CAPTURE=10 RUNS=1 benches/compare_arecord.sh
#
# The device is a fakemic ALSA test device (tests/fakemic/setup.sh): a real alsa-lib PCM
# paced by a timerfd, 48 kHz stereo S16_LE, no sound card needed. Both tools read it through
# the same alsa-lib. Its pointer moves a period at a time, as a kernel driver publishes it:
# with a pointer exact to the frame, alsa-lib's blocking readi (arecord's) reads whatever
# few frames arrived since its last look and looks again, chasing the clock between polls
# (up to 300,000 pointer queries in 10 s under strace), and arecord's cost then swung 2x
# from run to run; a device that does that is no peer to measure against. Builds edgerec with `cargo build --release` first. Installs what it needs
# when missing (as root, with apt-get): time, alsa-utils, binutils, and the compiler and
# ALSA headers the fakemic plugin is built with. Everything happens under one temp dir, which
# is removed on exit; no network besides apt-get when something is missing.
#
# Caveats: `edgerec record` also finalizes when the capture ends (stitches its segments into
# one WAV, writes timeline.json, commits the journal), and that is in its figures; arecord
# writes one WAV and nothing else. Every edgerec row fdatasyncs its segments about once
# a second (the crash-safety promise: a power cut loses at most the sync interval);
# arecord never syncs. The capture role's row includes its start-up, its journal work and
# its finalize (no stitched copy: the sync role streams the WAV into the upload). /usr/bin/time prints CPU seconds with 2 decimals, so the
# ratio is computed from bash's `time` (getrusage, ms) over the same process.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SECS=${SECONDS_TO_CAPTURE:-60}
RUNS=${RUNS:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a whole number" >&2; exit 2; }
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "SECONDS_TO_CAPTURE must be a whole number of seconds" >&2; exit 2; }
RATE=48000
CHANNELS=2
FORMAT=S16_LE
DEVICE=fakemic_compare

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/edgerec-compare.XXXXXX)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- What this needs ----
need=()
[ -x /usr/bin/time ] || need+=(time)
command -v arecord >/dev/null || need+=(alsa-utils)
command -v strip >/dev/null || need+=(binutils)
command -v soxi >/dev/null || need+=(sox)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "compare_arecord: need ${need[*]} (run as root to install them with apt-get)" >&2
    exit 1
  fi
  echo "compare_arecord: installing ${need[*]}" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "compare_arecord: no cargo on PATH" >&2; exit 1; }

# ---- Build ----
echo "== cargo build --release" >&2
(cd "$ROOT" && cargo build --release -p edgerec -p edgerec-controller) >&2
EDGEREC=${CARGO_TARGET_DIR:-$ROOT/target}/release/edgerec
CTL=${CARGO_TARGET_DIR:-$ROOT/target}/release/edgerec-controller
[ -x "$EDGEREC" ] && [ -x "$CTL" ] || { echo "compare_arecord: no binaries in ${EDGEREC%/*}" >&2; exit 1; }

# ---- The device (setup.sh builds the plugin and installs its own build deps) ----
echo "== fakemic device $DEVICE" >&2
export_line=$("$ROOT/tests/fakemic/setup.sh" "$WORK/fakemic" "$DEVICE" \
  --rate "$RATE" --channels "$CHANNELS" | tail -n 1)
case $export_line in
  "export ALSA_CONFIG_PATH="*) eval "$export_line" ;;
  *) echo "compare_arecord: unexpected output from setup.sh: $export_line" >&2; exit 1 ;;
esac

# ---- The agent's side: the reference controller and the sync role, on loopback ----
pids=()
SHM=$(mktemp -d /dev/shm/edgerec-compare.XXXXXX)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK" "$SHM"; }
start_controller "$WORK" compare-box
STATE=$WORK/agent
export EDGEREC_RUN_DIR=$SHM
EDGEREC_LOG=warn "$EDGEREC" sync --state-dir "$STATE" --controller "http://127.0.0.1:$PORT/api/v1" \
  --node-id "$NODE" --token-file "$WORK/token" 2>"$WORK/sync.log" &
pids+=($!)
unset EDGEREC_RUN_DIR

# segment_frames DIR: the frames the segments in DIR hold (their data chunks, from sox).
segment_frames() {
  local n=0 f
  for f in "$1"/0*.wav; do
    [ -f "$f" ] && n=$((n + $(soxi -s "$f" 2>/dev/null || echo 0)))
  done
  echo "$n"
}

# ---- Measure ----
# run NAME CMD...: runs CMD under /usr/bin/time (user sys wall maxrss) and bash's `time`
# (user sys, ms); leaves NAME.time, NAME.rusage, NAME.out, NAME.err and NAME.rc in $WORK.
run() {
  local name=$1; shift
  local TIMEFORMAT='%3U %3S'
  local rc=0
  { time /usr/bin/time -f '%U %S %e %M' -o "$WORK/$name.time" "$@" \
      >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?; } 2>"$WORK/$name.rusage"
  echo "$rc" >"$WORK/$name.rc"
}

echo "== $(date -u +%FT%TZ)  $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
expected=$((SECS * RATE))
status=0
echo
echo "Same device ($DEVICE: ${RATE} Hz, ${CHANNELS} ch, $FORMAT), ${SECS} s each, one after the other, ${RUNS} runs"
echo "edgerec at its default config (period, ring, flush and sync as shipped)"
ROWS=(record record_nostitch record_nostitch_sync10s capture_role)
printf '%-4s %-24s %8s %8s %9s %12s %10s %12s %7s %s\n' run tool user_s sys_s wall_s max_rss_KiB cpu_ms frames ratio exit
for r in $(seq "$RUNS"); do
  echo "== run $r/$RUNS: arecord, ${SECS} s" >&2
  rm -f "$WORK/arecord.wav"
  run arecord arecord -q -D "$DEVICE" -f "$FORMAT" -c "$CHANNELS" -r "$RATE" -d "$SECS" \
    -t wav "$WORK/arecord.wav"
  echo "== run $r/$RUNS: edgerec record, ${SECS} s" >&2
  rm -rf "$WORK/out"; mkdir -p "$WORK/out"
  run record "$EDGEREC" record --backend alsa --device "$DEVICE" --format "$FORMAT" \
    --rate "$RATE" --channels "$CHANNELS" --duration "${SECS}s" --out "$WORK/out"
  frames_record=$(sed -n 's/^recording: .*, \([0-9][0-9]*\) frames)$/\1/p' "$WORK/record.out" | head -n 1)
  for peer in nostitch nostitch_sync10s; do
    sync_args=(); [ "$peer" = nostitch_sync10s ] && sync_args=(--sync-interval 10s)
    echo "== run $r/$RUNS: edgerec record --no-stitch ${sync_args[*]}, ${SECS} s" >&2
    rm -rf "$WORK/out"; mkdir -p "$WORK/out"
    run "record_$peer" "$EDGEREC" record --no-stitch "${sync_args[@]}" --backend alsa \
      --device "$DEVICE" --format "$FORMAT" --rate "$RATE" --channels "$CHANNELS" \
      --duration "${SECS}s" --out "$WORK/out"
    eval "frames_record_$peer=$(segment_frames "$(ls -d "$WORK"/out/job_* | head -n 1)")"
  done
  rm -rf "$WORK/out"
  echo "== run $r/$RUNS: the capture role on a ${SECS} s job" >&2
  "$CTL" job add --db "$WORK/ctl.db" --node "$NODE" --device "$DEVICE" --format "$FORMAT" \
    --rate "$RATE" --channels "$CHANNELS" --duration "${SECS}s" >/dev/null
  for _ in $(seq 200); do
    grep -q claimed <("$EDGEREC" status --state-dir "$STATE" 2>/dev/null || true) && break
    sleep 0.1
  done
  EDGEREC_RUN_DIR=$SHM run capture_role "$EDGEREC" capture --state-dir "$STATE" --exit-when-idle
  # This run's job: the newest directory holding segments.
  newest=$(ls -td "$STATE"/*/ | while read -r d; do
    compgen -G "${d}0*.wav" >/dev/null && { echo "$d"; break; }; done)
  frames_capture_role=$(segment_frames "$newest")
  frames_arecord=0
  if [ -f "$WORK/arecord.wav" ]; then
    frames_arecord=$(( ($(stat -c %s "$WORK/arecord.wav") - 44) / (CHANNELS * 2) ))
  fi
  for t in arecord "${ROWS[@]}"; do
    read -r u s e m <"$WORK/$t.time" 2>/dev/null || { u=? s=? e=? m=?; }
    # /usr/bin/time writes "Command exited with non-zero status N" first on failure.
    if [ "$(wc -l <"$WORK/$t.time")" -gt 1 ]; then read -r u s e m < <(tail -n 1 "$WORK/$t.time"); fi
    read -r ru rs <"$WORK/$t.rusage"
    cpu_ms=$(awk -v a="$ru" -v b="$rs" 'BEGIN { printf "%.0f", (a + b) * 1000 }')
    eval "cpu_$t=$cpu_ms"
    frames_var=frames_$t
    ratio=-
    if [ "$t" != arecord ] && [ "$(cat "$WORK/$t.rc")" = 0 ] && [ "$(cat "$WORK/arecord.rc")" = 0 ] && [ "${cpu_arecord:-0}" -gt 0 ]; then
      ratio=$(awk -v e="$cpu_ms" -v a="$cpu_arecord" 'BEGIN { printf "%.3f", e / a }')
      echo "$ratio" >>"$WORK/ratios.$t"
    fi
    printf '%-4s %-24s %8s %8s %9s %12s %10s %12s %7s %s\n' "$r" "$t" "$u" "$s" "$e" "$m" "$cpu_ms" \
      "${!frames_var:-0}" "$ratio" "$(cat "$WORK/$t.rc")"
    if [ "$(cat "$WORK/$t.rc")" != 0 ]; then
      status=1
      echo "$t FAILED (exit $(cat "$WORK/$t.rc")); its stderr ends:"
      tail -n 15 "$WORK/$t.err" | sed 's/^/  /'
    fi
  done
done
echo "expected frames: $expected; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${ROWS[@]}"; do
  if [ -s "$WORK/ratios.$t" ]; then
    sort -g "$WORK/ratios.$t" | awk -v t="$t" '{v[NR]=$1} END { printf "CPU ratio %-24s / arecord (user+sys) over %d runs: min %.2f  median %.2f  max %.2f\n", t, NR, v[1], v[int((NR+1)/2)], v[NR] }'
  else
    echo "CPU ratio $t / arecord: n/a (a tool failed, or arecord used under 1 ms of CPU)"
  fi
done

# ---- Binary size ----
cp "$EDGEREC" "$WORK/edgerec.stripped"
strip "$WORK/edgerec.stripped"
printf 'release binary: %s bytes as built, %s bytes stripped (%s)\n' \
  "$(stat -c %s "$EDGEREC")" "$(stat -c %s "$WORK/edgerec.stripped")" \
  "$(numfmt --to=iec-i --suffix=B "$(stat -c %s "$WORK/edgerec.stripped")")"
exit $status
