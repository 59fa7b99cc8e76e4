#!/bin/sh
# Runs each libFuzzer target of a CGE_FUZZ build for N seconds, growing its corpus in
# fuzz/corpus/<target>/. Usage: scripts/fuzz-all.sh BUILD_DIR SECONDS
BUILD=${1:-build-fuzz}
SECS=${2:-60}
cd "$(dirname "$0")/.." || exit 1
rc=0
for f in "$BUILD"/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f" | sed 's/^fuzz_//')
    mkdir -p "fuzz/corpus/$name"
    echo "== $name ($SECS s)"
    "$f" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=4096 "fuzz/corpus/$name" \
        2>&1 | tail -n 3 || rc=1
done
exit $rc
