#!/bin/sh
# Runs every test program of a build folder (and the fuzz corpus replays) from the repository
# root and sums their "N passed, N failed" lines. A program that crashes or prints no summary
# counts as one failure. Usage: tests/run.sh BUILD_DIR [LABEL]
BUILD=${1:-build}
LABEL=${2:-}
cd "$(dirname "$0")/.." || exit 1
# Tests time nothing: let idle OpenMP threads sleep instead of spinning, so a loaded machine
# (or a sanitizer build) is not slowed down further by busy-waiting.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
passed=0
failed=0
bad=""
for t in "$BUILD"/tests/test_* "$BUILD"/fuzz/replay_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out=$("$t" 2>&1)
    rc=$?
    line=$(printf '%s\n' "$out" | grep -oE '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(printf '%s' "$line" | awk '{print $1}')
    f=$(printf '%s' "$line" | awk '{print $3}')
    if [ -z "$p" ]; then p=0; f=1; fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        bad="$bad $name"
        printf '%s\n' "$out" | tail -n 40
        echo "FAIL $name (exit $rc)"
    else
        echo "ok   $name: $p passed"
    fi
done
[ -n "$bad" ] && echo "failing:$bad"
echo "${LABEL:+$LABEL: }$passed passed, $failed failed"
[ "$failed" -eq 0 ]
