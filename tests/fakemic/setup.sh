#!/bin/bash
# Builds and configures "fakemic" ALSA capture devices for tests (no sound card or kernel
# module needed; see fakemic.c for what the device does).
#
# Usage: setup.sh DIR NAME [OPTIONS] [NAME [OPTIONS]]...
#   DIR      where to put the plugin (.so), fakemic.conf, devices/NAME.conf, NAME.present
#   NAME     an ALSA PCM name to create; options after a NAME apply to that device only:
#     --file PATH     loop this raw S16_LE interleaved file instead of a sine (bit-exact:
#                     S32_LE reads as v << 16, FLOAT_LE as v / 32768)
#     --channels N    fixed channel count (default 2)
#     --rate R        fixed sample rate in Hz (default 48000)
#     --freq F        sine frequency in Hz (default 440; ignored with --file)
#     --exclusive     one opener at a time; a second open fails with EBUSY (like hw:)
#     --pointer P     period (default): the pointer moves a period at a time, as a kernel
#                     driver publishes it; frame: exact to the frame on every query
# Prints, as its last line, the line to evaluate before any ALSA call:
#   export ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:DIR/fakemic.conf
# Needs gcc, pkg-config, libasound2-dev (and alsa-utils for arecord); installs them with
# apt-get when missing and running as root. Re-running it for the same DIR adds/overwrites
# devices. Simulate faults with mic.sh (unplug|replug|stall|unstall NAME DIR).
set -euo pipefail
usage() { sed -n '2,22p' "$0" >&2; exit 2; }
KIT=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || usage
DIR=$1; shift
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

have_tools() {
  command -v gcc >/dev/null && command -v pkg-config >/dev/null && pkg-config --exists alsa
}
if ! have_tools; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev libasound2-dev alsa-utils pkg-config >&2
  else
    echo "setup.sh: need gcc, pkg-config and libasound2-dev (run as root to install them)" >&2
    exit 1
  fi
fi

mkdir -p "$DIR/devices" "$DIR/unplugged"
SO="$DIR/libasound_module_pcm_fakemic.so"
if [ ! -e "$SO" ] || [ "$KIT/fakemic.c" -nt "$SO" ]; then
  # Build to a temp name and rename: a process may be loading the plugin concurrently.
  gcc -O2 -Wall -DPIC -fPIC -shared -o "$SO.tmp.$$" "$KIT/fakemic.c" \
      $(pkg-config --cflags --libs alsa) -lm
  mv -f "$SO.tmp.$$" "$SO"
fi
write_top() {
  cat > "$DIR/.fm.tmp.$$" <<CONF
pcm_type.fakemic { lib "$SO" }
@hooks [ { func load files [ "$DIR/devices" ] errors false } ]
CONF
  mv -f "$DIR/.fm.tmp.$$" "$DIR/fakemic.conf"   # new inode => ALSA re-reads its config
}

write_device() {   # name file channels rate freq exclusive pointer
  local n=$1 file=$2 ch=$3 rate=$4 freq=$5 excl=$6 pointer=$7 src lock=""
  if [ -n "$file" ]; then
    [ -r "$file" ] || { echo "setup.sh: --file $file is not readable" >&2; exit 2; }
    src="file \"$(cd "$(dirname "$file")" && pwd)/$(basename "$file")\"   # raw S16_LE interleaved, looped"
  else
    src="freq $freq"
  fi
  [ "$excl" = 1 ] && lock="exclusive \"$DIR/$n.lock\"   # held by the opener: a second open is EBUSY"
  rm -f "$DIR/unplugged/$n.conf" "$DIR/$n.stall"
  cat > "$DIR/devices/$n.conf" <<CONF
pcm.$n {
    type fakemic
    present "$DIR/$n.present"   # rm to unplug; touch to replug
    stall "$DIR/$n.stall"       # touch to stall the device (no frames, no error); rm to resume
    rate $rate
    channels $ch
    pointer $pointer
    $src
    $lock
    hint { show on description "fakemic $n (test capture device)" }
}
CONF
  touch "$DIR/$n.present"
}

name=""; file=""; ch=2; rate=48000; freq=440; excl=0; pointer=period
flush() {
  [ -z "$name" ] || write_device "$name" "$file" "$ch" "$rate" "$freq" "$excl" "$pointer"
  file=""; ch=2; rate=48000; freq=440; excl=0; pointer=period
}
while [ $# -gt 0 ]; do
  case $1 in
    --file) [ -n "$name" ] && [ $# -ge 2 ] || usage; file=$2; shift 2 ;;
    --channels) [ -n "$name" ] && [ $# -ge 2 ] || usage; ch=$2; shift 2 ;;
    --rate) [ -n "$name" ] && [ $# -ge 2 ] || usage; rate=$2; shift 2 ;;
    --freq) [ -n "$name" ] && [ $# -ge 2 ] || usage; freq=$2; shift 2 ;;
    --exclusive) [ -n "$name" ] || usage; excl=1; shift ;;
    --pointer) [ -n "$name" ] && [ $# -ge 2 ] || usage
      case $2 in period|frame) pointer=$2 ;; *) usage ;; esac; shift 2 ;;
    -*) usage ;;
    *) flush; name=$1; shift ;;
  esac
done
flush
write_top
echo "export ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:$DIR/fakemic.conf"
