#!/usr/bin/env bash
# What the 1 s power-cut bound costs in CPU on this machine, apart from edgerec: a plain
# process appends a 2 ch 48 kHz S16 stream (192,000 bytes a second, in two writes a
# second, as edgerec's writer turns do) to a file on DIR for SECS seconds, once with no
# sync (arecord's way: the kernel's flusher writes the pages back, on its own account),
# once with an fdatasync every second (edgerec's default) and once every 10 s. It prints
# each arm's CPU (getrusage of the process, user + sys) and what a sync adds per second,
# min / median / max over RUNS rounds (the arms alternate within a round).
#
# The difference between the arms is the kernel's work for the sync, charged to the
# process that asks for it: the data pages' writeback, the inode's write and the cache
# flush, each a block request (on a VM each request's doorbell is a trap to the host).
# compare_arecord.sh's `record_nostitch_sync10s` row is edgerec's own view of it.
#
# Usage: benches/sync_cost.sh [DIR]     (DIR defaults to /tmp; SECS=20 RUNS=3)
set -euo pipefail
DIR=${1:-/tmp}
SECS=${SECS:-20}
RUNS=${RUNS:-3}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "SECS must be a whole number of seconds" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a whole number" >&2; exit 2; }
[ -d "$DIR" ] && [ -w "$DIR" ] || { echo "sync_cost: $DIR is not a writable directory" >&2; exit 2; }
command -v python3 >/dev/null || { echo "sync_cost: needs python3" >&2; exit 1; }

python3 - "$DIR" "$SECS" "$RUNS" <<'EOF'
import os, resource, statistics, sys, tempfile, time

directory, secs, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
HALF_SECOND = bytes(96_000)  # 0.5 s of 2 ch 48 kHz S16

def cpu_ms():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000

def arm(sync_every):
    """CPU ms of `secs` seconds of appends, fdatasync every `sync_every` writes (0: never)."""
    fd, path = tempfile.mkstemp(dir=directory, prefix=".sync-cost.")
    try:
        start, before, offset = time.monotonic(), cpu_ms(), 0
        for n in range(1, 2 * secs + 1):
            offset += os.pwrite(fd, HALF_SECOND, offset)
            if sync_every and n % sync_every == 0:
                os.fdatasync(fd)
            time.sleep(max(0.0, start + n * 0.5 - time.monotonic()))
        return cpu_ms() - before
    finally:
        os.close(fd)
        os.unlink(path)

arms = {"no sync": 0, "fdatasync every 1 s": 2, "fdatasync every 10 s": 20}
got = {name: [] for name in arms}
for r in range(runs):
    for name, every in arms.items():
        got[name].append(arm(every))
        print(f"run {r + 1}/{runs} {name:22s} {got[name][-1]:7.1f} ms CPU in {secs} s", file=sys.stderr)

def mmm(values):
    v = sorted(values)
    return f"min {v[0]:.3f}  median {statistics.median(v):.3f}  max {v[-1]:.3f}"

print(f"Appending 192,000 B/s on {directory} for {secs} s, {runs} runs (CPU ms per second of audio)")
for name in arms:
    print(f"{name:22s} {mmm([ms / secs for ms in got[name]])}")
added = [(s - n) / secs for s, n in zip(got["fdatasync every 1 s"], got["no sync"])]
print(f"{'the 1 s sync adds':22s} {mmm(added)}")
EOF
