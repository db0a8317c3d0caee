#!/bin/bash
# Simulates faults on a fakemic device made by setup.sh.
# Usage: mic.sh unplug|replug|stall|unstall NAME DIR
#   unplug   the running stream goes DISCONNECTED (reads fail with ENODEV), opening fails
#            with ENODEV, and the device leaves `arecord -L` / cpal's list
#   replug   undoes unplug
#   stall    the device delivers no frames and reports no error (a wedged USB interface)
#   unstall  frames flow again
set -eu
[ $# -eq 3 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
op=$1; n=$2; DIR=$3
# A new inode for the top config makes ALSA re-read it (it compares mtime, in seconds, and inode).
bump() { cp "$DIR/fakemic.conf" "$DIR/.fm.tmp.$$" && mv -f "$DIR/.fm.tmp.$$" "$DIR/fakemic.conf"; }
case $op in
  unplug) rm -f "$DIR/$n.present"; mv -f "$DIR/devices/$n.conf" "$DIR/unplugged/" 2>/dev/null || true; bump ;;
  replug) mv -f "$DIR/unplugged/$n.conf" "$DIR/devices/" 2>/dev/null || true; touch "$DIR/$n.present"; bump ;;
  stall) touch "$DIR/$n.stall" ;;
  unstall) rm -f "$DIR/$n.stall" ;;
  *) echo "usage: $0 unplug|replug|stall|unstall NAME DIR" >&2; exit 2 ;;
esac
