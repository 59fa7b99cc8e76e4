#!/bin/sh
# Runs every benchmark program of a build folder, one after the other (never two at once: they
# would share the two cores), the GEMM peak first. Every "BENCH_JSON {...}" line they print is
# kept in bench/results/<UTC date-time>.json (one JSON object per line, with the git commit), the
# history that `make bench-compare` reads. Usage: bench/run.sh BUILD_DIR [name-filter]
# (bench_models_mistral_fulldepth, minutes long, runs only when the filter names "fulldepth")
BUILD=${1:-build}
FILTER=${2:-}
cd "$(dirname "$0")/.." || exit 1
mkdir -p bench/results
stamp=$(date -u +%Y%m%d-%H%M%S)
out="bench/results/$stamp.json"
log=$(mktemp)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
for b in "$BUILD"/bench/bench_tensor_peak "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    case "$name" in *"$FILTER"*) ;; *) [ "$name" = bench_tensor_peak ] || continue ;; esac
    # E12 at full depth takes ~7 minutes on 2 cores: only when the filter asks for it (e.g. "fulldepth").
    case "$name:$FILTER" in bench_models_mistral_fulldepth:*fulldepth*) ;; bench_models_mistral_fulldepth:*) continue ;; esac
    if [ "$name" = bench_tensor_peak ]; then
        [ -n "${peak_done:-}" ] && continue
        peak_done=1
    fi
    echo "== $name"
    "$b" 2>&1 | tee -a "$log" || echo "($name exited $?)"
done
grep -o 'BENCH_JSON {.*}' "$log" | sed "s/^BENCH_JSON {/{\"commit\": \"$commit\", /" > "$out"
rm -f "$log"
echo "bench: $(wc -l < "$out") figures saved in $out (compare: make bench-compare)"
