#!/usr/bin/env bash
# A/B of the CPU each thread of `edgerec record` spends, two binaries in one command:
# a 30 s capture of 48 kHz stereo S16_LE from the same fakemic device, A then B in each
# of RUNS runs, and per thread (writer, capture, main) the nanoseconds on CPU from
# /proc/PID/task/TID/schedstat, sampled every 0.2 s while the process lives (the last
# sample of a thread is its figure: up to 0.2 s of its end can be missed, alike for A and
# B; the main thread is the one whose id is the process's). Prints each run and, per
# binary, min/median/max of each thread, then B/A of the writer's medians.
#
# Usage: A=/work/main/target/release/edgerec B=target/release/edgerec benches/writer_cpu.sh
#        SECONDS_TO_CAPTURE=30 RUNS=3 (the defaults)
# B defaults to this tree's release binary (built with `cargo build --release` first when
# B is not given). Needs the fakemic build deps (tests/fakemic/setup.sh installs them).
set -euo pipefail

SECS=${SECONDS_TO_CAPTURE:-30}
RUNS=${RUNS:-3}
[[ $RUNS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS and SECONDS_TO_CAPTURE: whole numbers" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${B:-}" ]; then
  (cd "$ROOT" && cargo build --release -p edgerec) >&2
  B=${CARGO_TARGET_DIR:-$ROOT/target}/release/edgerec
fi
A=${A:?A=path of the other edgerec binary}
for bin in "$A" "$B"; do [ -x "$bin" ] || { echo "writer_cpu: $bin is not executable" >&2; exit 1; }; done
DEVICE=fakemic_writer_cpu
WORK=$(mktemp -d /tmp/edgerec-writer-cpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
export_line=$("$ROOT/tests/fakemic/setup.sh" "$WORK/fakemic" "$DEVICE" --rate 48000 --channels 2 | tail -n 1)
case $export_line in
  "export ALSA_CONFIG_PATH="*) eval "$export_line" ;;
  *) echo "writer_cpu: unexpected output from setup.sh: $export_line" >&2; exit 1 ;;
esac

# sample PID OUT: while PID lives, the newest "name ns" of each of its threads in OUT.
sample() {
  local pid=$1 out=$2 t name ns
  declare -A seen=()
  while [ -d "/proc/$pid/task" ]; do
    for t in /proc/"$pid"/task/*; do
      # The main thread is named after the binary's file: called "main" here.
      if [ "${t##*/}" = "$pid" ]; then name=main; else name=$(cat "$t/comm" 2>/dev/null) || continue; fi
      read -r ns _ 2>/dev/null <"$t/schedstat" || continue
      seen[$name]=$ns
    done
    sleep 0.2
  done
  for name in "${!seen[@]}"; do echo "$name ${seen[$name]}"; done >"$out"
}

# one LABEL BIN RUN: a capture; leaves LABEL.RUN.threads ("name ns" lines).
one() {
  local label=$1 bin=$2 r=$3
  rm -rf "$WORK/out"; mkdir -p "$WORK/out"
  "$bin" record --backend alsa --device "$DEVICE" --format S16_LE --rate 48000 --channels 2 \
    --duration "${SECS}s" --out "$WORK/out" >"$WORK/$label.$r.out" 2>"$WORK/$label.$r.err" &
  local pid=$!
  sample "$pid" "$WORK/$label.$r.threads"
  wait "$pid" || { echo "writer_cpu: $label run $r failed:"; tail -n 5 "$WORK/$label.$r.err"; exit 1; }
}

ns_of() { awk -v n="$2" '$1 == n { print $2; f=1 } END { if (!f) print 0 }' "$1"; }

echo "== $(date -u +%FT%TZ)  $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A: $A"
echo "B: $B"
printf '%-4s %-2s %14s %14s %14s\n' run ab writer_ns capture_ns main_ns
for r in $(seq "$RUNS"); do
  for label in A B; do
    bin=$A; [ "$label" = B ] && bin=$B
    one "$label" "$bin" "$r"
    f=$WORK/$label.$r.threads
    w=$(ns_of "$f" edgerec-writer); c=$(ns_of "$f" edgerec-capture); m=$(ns_of "$f" main)
    printf '%-4s %-2s %14s %14s %14s\n' "$r" "$label" "$w" "$c" "$m"
    echo "$w" >>"$WORK/$label.writer"; echo "$c" >>"$WORK/$label.capture"; echo "$m" >>"$WORK/$label.main"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
stats() { sort -g "$1" | awk '{v[NR]=$1} END { printf "min %.1f  median %.1f  max %.1f ms", v[1]/1e6, v[int((NR+1)/2)]/1e6, v[NR]/1e6 }'; }
median() { sort -g "$1" | awk '{v[NR]=$1} END { print v[int((NR+1)/2)] }'; }
for label in A B; do
  for t in writer capture main; do
    printf '%s %-8s over %d runs: %s\n' "$label" "$t" "$RUNS" "$(stats "$WORK/$label.$t")"
  done
done
awk -v a="$(median "$WORK/A.writer")" -v b="$(median "$WORK/B.writer")" \
  'BEGIN { printf "writer thread B/A (medians): %.2f\n", (a > 0 ? b / a : 0) }'
