#!/usr/bin/env bash
# What the recorder writes to the flash, by category, per hour and as a ratio to the PCM it
# captured (2 ch 48 kHz S16 from the synth backend: 192,000 B/s):
#   1. `edgerec record` for REC_SECONDS, and the same with `--sync-interval 10s` as a
#      peer (what the 1 s fdatasync of the power-cut promise costs);
#   2. a JOB_SECONDS WAV job and a JOB_SECONDS FLAC job of an agent against the reference
#      controller (claim, capture, finalize, upload), then IDLE_SECONDS of the same agent
#      with nothing to do.
# Sources:
#   - total: /proc/PID/io write_bytes (bytes the process dirtied for the storage layer;
#     for `record`, read from a wrapper shell after it reaped the process, which adds a
#     reaped child's counters to its own);
#   - journal: the bytes of write/pwrite64/writev calls on edgerec.db and its -wal/-journal
#     (strace -y; logical bytes, what SQLite hands the kernel);
#   - segments and output: the sizes of the segment files and of recording.* (each is
#     written once); other: total - the three (timeline.json, render.json, run files...);
#   - fsync/s idle: fsync + fdatasync calls counted by strace -f over IDLE_SECONDS.
# The state directory is on /tmp (must not be a tmpfs: write_bytes is 0 there).
# Bytes do not depend on the build profile: PROFILE=debug skips a release build.
#
# Usage: benches/flash_wear.sh      (60 s record, 60 s job, 60 s idle; release build)
#        REC_SECONDS=30 JOB_SECONDS=30 IDLE_SECONDS=30 PROFILE=debug benches/flash_wear.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
REC=${REC_SECONDS:-60}
JOB=${JOB_SECONDS:-60}
IDLE=${IDLE_SECONDS:-60}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v strace >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace >/dev/null; }
flag=(); [ "$PROFILE" = release ] && flag=(--release)
(cd "$ROOT" && cargo build "${flag[@]}" -q -p edgerec -p edgerec-controller)
BIN=$ROOT/target/$PROFILE/edgerec
CTL=$ROOT/target/$PROFILE/edgerec-controller
T=$(mktemp -d /tmp/edgerec-flash.XXXXXX)
[ "$(stat -f -c %T "$T")" = tmpfs ] && { echo "flash_wear: $T is a tmpfs: write_bytes would be 0" >&2; exit 2; }
# The box keeps run/ (beats, progress, meters) on a tmpfs (EDGEREC_RUN_DIR, set by the
# systemd units); RUN_TMPFS=0 leaves it in the state directory, on the disk.
RUNDIR=
if [ "${RUN_TMPFS:-1}" = 1 ]; then
  RUNDIR=$(mktemp -d /dev/shm/edgerec-run.XXXXXX)
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "$RUNDIR" ] && rm -rf "$RUNDIR"; [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"; }
trap cleanup EXIT
PCM_RATE=192000 # bytes per second of 2 ch 48 kHz S16

# Journal bytes and fsync calls in an strace -y log.
journal_bytes() { { grep -E '<[^>]*edgerec\.db(-wal|-journal)?>' "$1" || true; } | sed -nE 's/.*= ([0-9]+)$/\1/p' | awk '{s+=$1} END{print s+0}'; }
syncs() { grep -cE '(fsync|fdatasync)\(' "$1" || true; }
sizes() { { find "$@" -type f -printf '%s\n' 2>/dev/null || true; } | awk '{s+=$1} END{print s+0}'; }
# Journal bytes of an strace -tt log between two times of day (seconds since midnight).
journal_bytes_between() {
  { grep -E '<[^>]*edgerec\.db(-wal|-journal)?>' "$1" || true; } | awk -v a="$2" -v b="$3" '
    { split($2, t, ":"); s = t[1]*3600 + t[2]*60 + t[3]
      if (s >= a && s < b && match($0, /= [0-9]+$/)) n += substr($0, RSTART + 2) }
    END { print n+0 }'
}
sod() { date +%H:%M:%S.%N | awk -F: '{print $1*3600 + $2*60 + $3}'; }
mb_h() { awk -v b="$1" -v s="$2" 'BEGIN{printf "%.2f", b*3600/s/1e6}'; }
# report LABEL SECONDS TOTAL SEGMENTS OUTPUT JOURNAL
report() {
  local pcm other ratio
  pcm=$(( $2 * PCM_RATE ))
  other=$(( $3 - $4 - $5 - $6 )); [ "$other" -lt 0 ] && other=0
  ratio() { awk -v a="$1" -v p="$pcm" 'BEGIN{printf "%.3f", a/p}'; }
  printf '%s: %s s, PCM %s B\n' "$1" "$2" "$pcm"
  printf '  %-9s %12s B  %9s MB/h  %6s x PCM\n' \
    total "$3" "$(mb_h "$3" "$2")" "$(ratio "$3")" \
    segments "$4" "$(mb_h "$4" "$2")" "$(ratio "$4")" \
    output "$5" "$(mb_h "$5" "$2")" "$(ratio "$5")" \
    journal "$6" "$(mb_h "$6" "$2")" "$(ratio "$6")" \
    other "$other" "$(mb_h "$other" "$2")" "$(ratio "$other")"
  printf '  RATIO %s: written / (PCM + output) = %s\n' "$1" \
    "$(awk -v a="$3" -v p="$pcm" -v o="$5" 'BEGIN{printf "%.3f", a/(p+o)}')"
}

# 1. record (and a peer with a 10 s sync interval: what the 1 s fdatasync promise costs)
record_run() {
  local label=$1 dir=$T/rec-$2; shift 2
  [ -n "$RUNDIR" ] && export EDGEREC_RUN_DIR=$RUNDIR/$(basename "$dir")
  sh -c 'd=$1; b=$2; n=$3; shift 3
         strace -f -qq -y -e trace=write,pwrite64,writev,fsync,fdatasync -o "$d.strace" \
           "$b" record --backend synth --device sine:440 --duration "$n"s --out "$d" "$@" >/dev/null 2>&1
         cat /proc/$$/io' _ "$dir" "$BIN" "$REC" "$@" >"$dir.io"
  report "$label" "$REC" "$(awk '/^write_bytes/{print $2}' "$dir.io")" \
    "$(sizes "$dir"/*/[0-9]*.wav)" "$(sizes "$dir"/*/recording.*)" "$(journal_bytes "$dir.strace")"
}
record_run "record" a
record_run "record --sync-interval 10s (peer)" b --sync-interval 10s

# 2. agent: one job, then idle
start_controller "$T" flash-box
[ -n "$RUNDIR" ] && export EDGEREC_RUN_DIR=$RUNDIR/agent
EDGEREC_LOG=warn "$BIN" agent --state-dir "$T/agent" --controller "http://127.0.0.1:$PORT/api/v1" \
  --node-id "$NODE" --token-file "$T/token" --backend-override synth 2>"$T/agent.log" &
AGENT=$!; pids+=($AGENT)
sleep 3
io() { awk '/^write_bytes/{print $2}' "/proc/$AGENT/io"; }
# agent_job LABEL [job add flags]: claim to completed, this job's files only
agent_job() {
  local label=$1; shift
  ls -d "$T"/agent/ctl-* 2>/dev/null | sort >"$T/dirs.before" || true
  strace -f -qq -tt -y -p "$AGENT" -e trace=write,pwrite64,writev,fsync,fdatasync -o "$T/job.strace" &
  TRACE=$!; pids+=($TRACE)
  sleep 1
  local before after dir
  before=$(io)
  local t0; t0=$(sod)
  JOBID=$("$CTL" job add --db "$T/ctl.db" --node "$NODE" --device sine:440 --duration "${JOB}s" "$@" 2>/dev/null)
  for _ in $(seq $(( JOB + 120 ))); do
    case $(status) in completed|failed|cancelled) break;; esac
    sleep 1
  done
  echo "job $JOBID: $(status)"
  sleep 2 # the upload's acknowledgement
  after=$(io)
  kill "$TRACE"; wait "$TRACE" 2>/dev/null || true
  dir=$(ls -d "$T"/agent/ctl-* | sort | comm -13 "$T/dirs.before" -)
  report "$label" "$JOB" "$(( after - before ))" "$(sizes "$dir"/[0-9]*.wav)" \
    "$(sizes "$dir"/recording.*)" "$(journal_bytes "$T/job.strace")"
  # While it captures: from 5 s after the claim to 2 s before the window ends (the
  # claim, the start and the end are events, each a commit).
  local a b cap
  a=$(awk -v t="$t0" 'BEGIN{print t + 5}'); b=$(awk -v t="$t0" -v j="$JOB" 'BEGIN{print t + j - 2}')
  cap=$(journal_bytes_between "$T/job.strace" "$a" "$b")
  printf '  journal while capturing: %s B in %s s = %s MB/h\n' "$cap" "$(( JOB - 7 ))" "$(mb_h "$cap" $(( JOB - 7 )))"
}
status() { "$CTL" job show --db "$T/ctl.db" "$JOBID" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["status"])'; }
agent_job "agent WAV job"
agent_job "agent FLAC job" --codec flac

sleep 5 # the job's last acknowledgements
strace -f -qq -y -p "$AGENT" -tt -e trace=write,pwrite64,writev,fsync,fdatasync -o "$T/idle.strace" &
TRACE=$!; pids+=($TRACE)
sleep 1
before=$(io); sleep "$IDLE"; after=$(io)
kill "$TRACE"; wait "$TRACE" 2>/dev/null || true
jb=$(journal_bytes "$T/idle.strace")
n=$(syncs "$T/idle.strace")
echo "idle agent: ${IDLE} s"
echo "  total     $(( after - before )) B  $(mb_h $(( after - before )) "$IDLE") MB/h (write_bytes)"
echo "  journal   $jb B  $(mb_h "$jb" "$IDLE") MB/h (strace, logical)"
echo "  fsync     $n calls = $(awk -v n="$n" -v s="$IDLE" 'BEGIN{printf "%.3f", n/s}') per s (strace -f: fsync + fdatasync)"
