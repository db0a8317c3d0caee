#!/usr/bin/env bash
# Runs every test binary of the workspace, LANES at a time (default 2), slowest first.
# Most of the suite's time is real-time waiting (a job records for its window, a device
# stays unplugged for seconds), not CPU: two binaries side by side halve the wall time
# on two cores. Each binary's output is printed whole when it ends, with its duration,
# so the log reads as if the binaries had run one after another.
# Usage: scripts/run-tests.sh [extra args for each test binary, e.g. --test-threads=2]
set -euo pipefail
cd "$(dirname "$0")/.."
lanes=${LANES:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Test executables and the package directory each runs in (cargo runs tests there).
# A build failure stops here (pipefail), with cargo's errors on stderr.
cargo test --workspace --locked --no-run --message-format=json |
  python3 -c '
import json, os, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(os.path.dirname(m["manifest_path"]) + "\t" + m["executable"])
' >"$work/all"
[ -s "$work/all" ] || { echo "run-tests: cargo listed no test executables" >&2; exit 1; }

# The slowest binaries first (measured with this script; "took N s" lines), so the two
# lanes end together. Any binary not named here runs after them.
slow_first="controller_e2e recovery_alsa chunked_upload controller_faults hostile_controller
  journal_faults record_synth job_end_paths device_flaps render crash_resume crash_repair
  record_alsa enhanced_rendition slow_clients render_delivery disk_fill_moments metering
  metrics_textfile retention properties"
: >"$work/ordered"
for name in $slow_first; do
  grep -E "/${name}-[0-9a-f]+$" "$work/all" >>"$work/ordered" || true
done
grep -v -F -x -f "$work/ordered" "$work/all" >>"$work/ordered" || true

run_one() { # "dir<TAB>exe" extra-args...
  local line=$1
  shift
  local dir=${line%%$'\t'*} exe=${line#*$'\t'}
  local name out start status=0
  name=$(basename "$exe")
  out=$(mktemp "$WORK/out.XXXXXX")
  start=$(date +%s)
  (cd "$dir" && CARGO_MANIFEST_DIR=$dir "$exe" "$@") >"$out" 2>&1 || status=$?
  times >"$out.times" # this shell's children: the binary (and mktemp, date)
  {
    flock 9
    echo "     Running ${name%-*} ($dir)"
    cat "$out"
    echo "     ${name%-*}: took $(($(date +%s) - start)) s, CPU $(awk -F'[ ms]+' 'NR == 2 { printf "%d", $1 * 60 + $2 + $3 * 60 + $4 }' "$out.times") s, exit $status"
  } 9>>"$WORK/print.lock"
  [ "$status" -eq 0 ] || touch "$WORK/failed"
  return 0
}
export -f run_one
export WORK=$work
tr '\n' '\0' <"$work/ordered" | xargs -0 -P "$lanes" -I{} bash -c 'run_one "$@"' _ {} "$@"
# Doc tests are not test executables: cargo runs them.
cargo test --workspace --locked --doc 2>&1
[ ! -e "$work/failed" ]
