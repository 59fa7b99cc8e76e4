#!/bin/sh
# `make test`: runs the suite on the plain build and on the ASan+UBSan build (which is also
# instrumented for coverage), then the ThreadSanitizer gate (scripts/test-tsan.sh: builds and runs
# the threaded tests) and the coverage gate (scripts/coverage.sh: line coverage of that ASan run
# per module, failing under its thresholds), then prints the sum of all four as the last line:
# "N passed, N failed, N skipped". Each part prints its slowest programs.
cd "$(dirname "$0")/.." || exit 1
now() { date +%s; }
summary() { printf '%s\n' "$1" | tail -n 1 | grep -oE '[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?'; }
t0=$(now)
out1=$(tests/run.sh build plain 2>&1); rc1=$?
printf '%s\n' "$out1"
t1=$(now)
# Coverage counts this run only.
find build-asan -name '*.gcda' -delete 2>/dev/null
out2=$(ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 tests/run.sh build-asan asan 2>&1); rc2=$?
printf '%s\n' "$out2"
t2=$(now)
out3=$(scripts/test-tsan.sh build-tsan 2>&1); rc3=$?
printf '%s\n' "$out3"
t3=$(now)
out4=$(scripts/coverage.sh build-asan 2>&1); rc4=$?
printf '%s\n' "$out4"
t4=$(now)
echo "wall time: plain $((t1 - t0)) s, asan $((t2 - t1)) s, tsan (build + run) $((t3 - t2)) s, coverage report $((t4 - t3)) s"
p=0; f=0; s=0
for o in "$out1" "$out2" "$out3" "$out4"; do
    line=$(summary "$o")
    if [ -z "$line" ]; then f=$((f + 1)); continue; fi
    p=$((p + $(echo "$line" | awk '{print $1}')))
    f=$((f + $(echo "$line" | awk '{print $3}')))
    s=$((s + $(echo "$line" | awk '{print ($5 == "" ? 0 : $5)}')))
done
echo "$p passed, $f failed, $s skipped"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && [ "$rc3" -eq 0 ] && [ "$rc4" -eq 0 ]
