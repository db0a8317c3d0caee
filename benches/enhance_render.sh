#!/usr/bin/env bash
# The enhanced rendition's cost against the plain render of the same input, in one run:
# wall and CPU time ratios and peak RSS of `edgerec render --enhance` (RNNoise, 80 Hz
# high-pass, -16 LUFS in two passes) and of the plain `edgerec render`, for FLAC, at two
# lengths, so a bounded memory shows as the same RSS at both.
# Usage: benches/enhance_render.sh [SHORT_MINUTES=10] [LONG_MINUTES=60]   (needs sox)
set -euo pipefail
short=${1:-10}
long=${2:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${EDGEREC:-$here/target/release/edgerec}
[ -x "$bin" ] || (cd "$here" && cargo build --release -q)
command -v sox >/dev/null || { echo "enhance_render: sox missing (scripts/deps.sh test)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # NAME CMD...: wall, CPU seconds and peak RSS KiB into $work/NAME.time
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/$name.time" nice -n 10 "$@" >/dev/null 2>&1
}
field() { awk -v f="$2" '{ if (f == "cpu") print $2 + $3; else if (f == "wall") print $1; else print $4 }' "$work/$1.time"; }

for m in $short $long; do
  # A tone on the left, white noise on the right: stereo 48 kHz S16.
  sox -n -r 48000 -c 2 -b 16 "$work/in.wav" synth $((m * 60)) sine 440 whitenoise vol 0.2
  run plain "$bin" render "$work/in.wav" --codec flac --out "$work/plain.flac"
  run enh "$bin" render "$work/in.wav" --codec flac --enhance --out "$work/enh.flac"
  awk -v m="$m" -v pw="$(field plain wall)" -v pc="$(field plain cpu)" -v pr="$(field plain rss)" \
      -v ew="$(field enh wall)" -v ec="$(field enh cpu)" -v er="$(field enh rss)" 'BEGIN {
    printf "%3d min: plain %.1f s wall %.1f s cpu %.1f MiB | enhanced %.1f s wall %.1f s cpu %.1f MiB | ratio wall %.2fx cpu %.2fx | %.0fx real time\n",
      m, pw, pc, pr / 1024, ew, ec, er / 1024, ew / pw, ec / pc, m * 60 / ew }'
  rm -f "$work/in.wav" "$work"/*.flac
done
