#!/usr/bin/env bash
# Renders one stereo 48 kHz speech-like input with edgerec and with the reference tools,
# in one run, and prints wall/CPU ratios and sizes:
#   FLAC  edgerec --codec flac        vs  flac -5
#   MP3   edgerec --codec mp3 --vbr --bitrate 190 (V2)  vs  lame -V2   (1 core and 2 cores),
#         and edgerec on 2 cores vs itself on one thread (EDGEREC_RENDER_CORES=1, not pinned)
#   rate  edgerec --codec wav --rate 44100              vs  sox -r 44100 (its default "high")
# Every command runs at nice 10 (edgerec's render threads run there), pinned to one core
# with taskset where the row says "1 core".
# Usage: benches/compare_render.sh [MINUTES=30] [--rss HOURS]   (needs espeak-ng sox flac lame)
#   --rss HOURS: also the peak RSS of rendering an HOURS-long stereo input to each codec.
# On x86_64 the FLAC and rate rows are also run with an x86-64-v3 build (target/bench-v3,
# built once): baseline x86-64 has no FMA, so flacenc's LPC and rubato's FFT pay a libm
# call per multiply-add there, which the box (aarch64: FMA and NEON in the base ISA) does
# not. flac and sox pick their SIMD at run time. V3=0 skips those rows.
set -euo pipefail
minutes=${1:-30}
rss_hours=""
[ "${2:-}" = "--rss" ] && rss_hours=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${EDGEREC:-$here/target/release/edgerec}
[ -x "$bin" ] || (cd "$here" && cargo build --release -q)
bin_v3=""
if [ "$(uname -m)" = x86_64 ] && [ "${V3:-1}" != 0 ]; then
  bin_v3=$here/target/bench-v3/release/edgerec
  (cd "$here" && RUSTFLAGS="-C target-cpu=x86-64-v3" cargo build --release -q \
    --target-dir target/bench-v3 --bin edgerec)
fi
for t in espeak-ng sox flac lame taskset; do
  command -v "$t" >/dev/null || { echo "compare_render: $t missing (scripts/deps.sh test)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Speech: espeak-ng reads a paragraph; repeated to length, a second voice slightly later
# on the right, a low noise floor so no stretch is digital silence.
make_input() { # seconds out.wav
  local secs=$1 out=$2
  espeak-ng -v en -s 160 -w "$work/voice.wav" \
    "Good morning. This is a recording of a meeting in room A. We begin with the minutes \
of the last session, then the budget, and then any other business. Please speak clearly \
into the microphone and wait for the chair before you begin. Thank you all for coming."
  sox "$work/voice.wav" -r 48000 -c 1 "$work/v48.wav"
  local len reps
  len=$(soxi -D "$work/v48.wav")
  reps=$(awk -v s="$secs" -v l="$len" 'BEGIN { print int(s / l) + 1 }')
  sox "$work/v48.wav" "$work/left.wav" repeat "$reps" trim 0 "$secs"
  sox "$work/left.wav" "$work/right.wav" pad 0.0137 trim 0 "$secs" vol 0.8
  sox -n -r 48000 -c 1 "$work/noise.wav" synth "$secs" pinknoise vol 0.003
  sox -m "$work/right.wav" "$work/noise.wav" "$work/right2.wav"
  sox -M "$work/left.wav" "$work/right2.wav" -b 16 "$out"
  rm -f "$work"/voice.wav "$work"/v48.wav "$work"/left.wav "$work"/right.wav "$work"/right2.wav "$work"/noise.wav
}

# run NAME CMD...: wall and CPU seconds, peak RSS KiB into $work/NAME.time
run() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/$name.time" nice -n 10 "$@" >/dev/null 2>&1
}
wall() { awk '{print $1}' "$work/$1.time"; }
cpu() { awk '{print $2 + $3}' "$work/$1.time"; }
rss() { awk '{print $4}' "$work/$1.time"; }
size() { stat -c %s "$1"; }

in="$work/in.wav"
make_input $((minutes * 60)) "$in"
echo "input: $minutes min stereo 48 kHz S16 speech ($(size "$in") bytes)"

run ours_flac "$bin" render "$in" --codec flac --out "$work/ours.flac"
run ref_flac flac -5 -f -s -o "$work/ref.flac" "$in"
run ours_mp3_1 taskset -c 0 "$bin" render "$in" --codec mp3 --vbr --bitrate 190 --out "$work/ours1.mp3"
run ref_mp3_1 taskset -c 0 lame --quiet -V2 "$in" "$work/ref1.mp3"
run ours_mp3_2 "$bin" render "$in" --codec mp3 --vbr --bitrate 190 --out "$work/ours2.mp3"
run ours_mp3_1t env EDGEREC_RENDER_CORES=1 "$bin" render "$in" --codec mp3 --vbr --bitrate 190 --out "$work/ours1t.mp3"
run ours_rate "$bin" render "$in" --codec wav --rate 44100 --out "$work/ours44.wav"
if [ -n "$bin_v3" ]; then
  run v3_flac "$bin_v3" render "$in" --codec flac --out "$work/v3.flac"
  run v3_rate "$bin_v3" render "$in" --codec wav --rate 44100 --out "$work/v3_44.wav"
fi
run ref_rate sox "$in" -r 44100 "$work/ref44.wav"

row() { # label ours ref ours_file ref_file
  awk -v l="$1" -v ow="$(wall "$2")" -v oc="$(cpu "$2")" -v rw="$(wall "$3")" -v rc="$(cpu "$3")" \
      -v os="$(size "$4")" -v rs="$(size "$5")" 'BEGIN {
    printf "%-22s wall %7.2fs vs %7.2fs (%5.2fx)  cpu %7.2fs vs %7.2fs (%5.2fx)  size %11d vs %11d (%+.2f%%)\n",
      l, ow, rw, rw / (ow > 0 ? ow : 1e-9), oc, rc, rc / (oc > 0 ? oc : 1e-9), os, rs, (os / rs - 1) * 100 }'
}
echo "edgerec vs reference (ratio > 1: edgerec faster)"
row "FLAC vs flac -5" ours_flac ref_flac "$work/ours.flac" "$work/ref.flac"
row "MP3 V2 vs lame, 1 core" ours_mp3_1 ref_mp3_1 "$work/ours1.mp3" "$work/ref1.mp3"
row "MP3 V2 2 cores vs lame" ours_mp3_2 ref_mp3_1 "$work/ours2.mp3" "$work/ref1.mp3"
row "MP3 2 cores vs 1 thread" ours_mp3_2 ours_mp3_1t "$work/ours2.mp3" "$work/ours1t.mp3"
row "44.1 kHz vs sox rate" ours_rate ref_rate "$work/ours44.wav" "$work/ref44.wav"
if [ -n "$bin_v3" ]; then
  row "FLAC (v3) vs flac -5" v3_flac ref_flac "$work/v3.flac" "$work/ref.flac"
  row "44.1 kHz (v3) vs sox" v3_rate ref_rate "$work/v3_44.wav" "$work/ref44.wav"
fi
for f in "$work"/ours.flac ${bin_v3:+"$work"/v3.flac}; do
  flac -t -s "$f" && echo "flac -t: $(basename "$f") ok"
done
rm -f "$work"/*.flac "$work"/*.mp3 "$work"/*44.wav

if [ -n "$rss_hours" ]; then
  rm -f "$in"
  long="$work/long.wav"
  sox -n -r 48000 -c 2 -b 16 "$long" synth $((rss_hours * 3600)) pinknoise vol 0.1
  echo "peak RSS rendering $rss_hours h stereo 48 kHz (target < 64 MiB):"
  for c in wav flac mp3; do
    run "rss_$c" "$bin" render "$long" --codec "$c" --out "$work/out.$c"
    printf "  %-5s %6d KiB  (wall %.1fs)\n" "$c" "$(rss "rss_$c")" "$(wall "rss_$c")"
    rm -f "$work/out.$c"
  done
  run rss_rate "$bin" render "$long" --codec flac --rate 44100 --out "$work/long44.flac"
  printf "  %-5s %6d KiB  (wall %.1fs)\n" "flac@44.1k" "$(rss rss_rate)" "$(wall rss_rate)"
fi
