#!/bin/sh
# Runs the suite on the plain build and on the ASan+UBSan build, then prints the sum of both
# as the last line: "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
out1=$(tests/run.sh build plain 2>&1); rc1=$?
printf '%s\n' "$out1"
out2=$(ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 tests/run.sh build-asan asan 2>&1); rc2=$?
printf '%s\n' "$out2"
s1=$(printf '%s
' "$out1" | tail -n 1 | grep -oE '[0-9]+ passed, [0-9]+ failed')
s2=$(printf '%s
' "$out2" | tail -n 1 | grep -oE '[0-9]+ passed, [0-9]+ failed')
p1=$(echo "$s1" | awk '{print $1}'); f1=$(echo "$s1" | awk '{print $3}')
p2=$(echo "$s2" | awk '{print $1}'); f2=$(echo "$s2" | awk '{print $3}')
echo "$(( ${p1:-0} + ${p2:-0} )) passed, $(( ${f1:-1} + ${f2:-1} )) failed"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ]
