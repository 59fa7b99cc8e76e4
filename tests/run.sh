#!/bin/sh
# Runs every test program of a build folder (and the fuzz corpus replays) from the repository
# root and sums their "N passed, N failed[, N skipped]" lines. A program that crashes or prints
# no summary counts as one failure. The last line is "N passed, N failed, N skipped"; before it,
# the slowest programs, so the suite stays fast as it grows.
# Usage: tests/run.sh BUILD_DIR [LABEL [PROGRAM...]]  (PROGRAM: test names to run instead of all)
BUILD=${1:-build}
LABEL=${2:-}
[ $# -gt 2 ] && shift 2 || set --
cd "$(dirname "$0")/.." || exit 1
# Tests time nothing: let idle OpenMP threads sleep instead of spinning, so a loaded machine
# (or a sanitizer build) is not slowed down further by busy-waiting.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
now_ms() { date +%s%3N; }
passed=0
failed=0
skipped=0
bad=""
times=""
if [ $# -gt 0 ]; then
    progs=""
    for n in "$@"; do progs="$progs $BUILD/tests/$n"; done
else
    progs=$(ls -d "$BUILD"/tests/test_* "$BUILD"/fuzz/replay_* 2>/dev/null)
fi
for t in $progs; do
    name=$(basename "$t")
    if [ ! -x "$t" ] || [ -d "$t" ]; then
        # A program named on the command line must exist; the glob only lists what is there.
        [ $# -gt 0 ] || continue
        echo "FAIL $name (not built)"
        failed=$((failed + 1))
        bad="$bad $name"
        continue
    fi
    t0=$(now_ms)
    out=$("$t" 2>&1)
    rc=$?
    ms=$(( $(now_ms) - t0 ))
    times="$times$ms $name
"
    line=$(printf '%s\n' "$out" | grep -oE '[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?' | tail -n 1)
    p=$(printf '%s' "$line" | awk '{print $1}')
    f=$(printf '%s' "$line" | awk '{print $3}')
    s=$(printf '%s' "$line" | awk '{print $5}')
    if [ -z "$p" ]; then p=0; f=1; fi
    [ -n "$s" ] || s=0
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if [ "$f" -ne 0 ]; then
        bad="$bad $name"
        printf '%s\n' "$out" | tail -n 40
        echo "FAIL $name (exit $rc)"
    else
        if [ "$s" -ne 0 ]; then
            printf '%s\n' "$out" | grep -E '^ *SKIP'
            echo "ok   $name: $p passed, $s skipped"
        else
            echo "ok   $name: $p passed"
        fi
    fi
done
echo "slowest${LABEL:+ ($LABEL)}:"
printf '%s' "$times" | sort -rn | head -n "${SLOWEST:-8}" |
    awk '{printf "  %7.2f s  %s\n", $1 / 1000, $2}'
[ -n "$bad" ] && echo "failing:$bad"
echo "${LABEL:+$LABEL: }$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
