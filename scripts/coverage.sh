#!/bin/sh
# Line coverage of a build configured with -DCGE_COVERAGE=ON (gcov + lcov, Debian's lcov): prints
# one row per module (src/<module>, tools) and the totals, and fails when src/ is under
# $COV_MIN_SRC % (90) or tools/ under $COV_MIN_TOOLS % (80). The report (lcov's .info and the
# table) stays in the build folder, out of the repository.
# Usage: scripts/coverage.sh BUILD_DIR [--run]   (--run: zero the counters, run the suite first)
BUILD=${1:-build-asan}
MIN_SRC=${COV_MIN_SRC:-90}
MIN_TOOLS=${COV_MIN_TOOLS:-80}
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
if ! find "$BUILD" -name '*.gcno' 2>/dev/null | head -n 1 | grep -q .; then
    echo "coverage: $BUILD is not instrumented (configure it with -DCGE_COVERAGE=ON)"
    echo "coverage: 0 passed, 1 failed"
    exit 1
fi
if [ "${2:-}" = "--run" ]; then
    find "$BUILD" -name '*.gcda' -delete
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} tests/run.sh "$BUILD" coverage >/dev/null ||
        echo "coverage: the suite failed in $BUILD (see make test)"
fi
OUT="$BUILD/coverage"
mkdir -p "$OUT"
if ! lcov --quiet --capture --directory "$BUILD" --base-directory "$ROOT" \
        --output-file "$OUT/all.info" >"$OUT/lcov.log" 2>&1 ||
   ! lcov --quiet --extract "$OUT/all.info" "$ROOT/src/*" "$ROOT/tools/*" \
        --output-file "$OUT/cge.info" >>"$OUT/lcov.log" 2>&1; then
    tail -n 20 "$OUT/lcov.log"
    echo "coverage: lcov failed (is Debian's lcov installed? scripts/deps.sh)"
    echo "coverage: 0 passed, 1 failed"
    exit 1
fi
# Code that only a GPU runs (the CUDA backend's host side) is reported but kept out of the gate
# on a machine without one: there, all it can do is fail to open, which its test checks.
DEVICE_ONLY="$ROOT/src/gpu/cuda_backend.c"
if ! nvidia-smi >/dev/null 2>&1 && grep -q "^SF:$DEVICE_ONLY" "$OUT/cge.info"; then
    lcov --quiet --extract "$OUT/cge.info" "$DEVICE_ONLY" --output-file "$OUT/device.info" \
        >>"$OUT/lcov.log" 2>&1
    lcov --quiet --remove "$OUT/cge.info" "$DEVICE_ONLY" --output-file "$OUT/cge.info" \
        >>"$OUT/lcov.log" 2>&1
    awk -F: '/^LF:/ { lf += $2 } /^LH:/ { lh += $2 }
             END { printf "outside the gate (no GPU here): src/gpu/cuda_backend.c %d lines, %d hit\n", lf, lh }' \
        "$OUT/device.info"
fi
# One row per module from the SF:/LF:/LH: records (lines found / hit per source file).
awk -v root="$ROOT/" -v min_src="$MIN_SRC" -v min_tools="$MIN_TOOLS" '
    /^SF:/ { f = substr($0, 4); sub(root, "", f); n = split(f, p, "/");
             mod = (p[1] == "src" && n > 2) ? "src/" p[2] : p[1];
             top = p[1]; next }
    /^LF:/ { lf[mod] += substr($0, 4); tf[top] += substr($0, 4); next }
    /^LH:/ { lh[mod] += substr($0, 4); th[top] += substr($0, 4); next }
    END {
        printf "%-16s %8s %8s %7s\n", "module", "lines", "hit", "cover"
        k = 0
        for (m in lf) names[++k] = m
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
            if (names[j] < names[i]) { t = names[i]; names[i] = names[j]; names[j] = t }
        for (i = 1; i <= k; i++) { m = names[i]
            printf "%-16s %8d %8d %6.1f%%\n", m, lf[m], lh[m], lf[m] ? 100 * lh[m] / lf[m] : 0 }
        bad = 0
        split("src tools", tops, " ")
        for (i = 1; i <= 2; i++) { t = tops[i]; min = (t == "src") ? min_src : min_tools
            pct = tf[t] ? 100 * th[t] / tf[t] : 0
            ok = tf[t] > 0 && pct >= min
            printf "%-16s %8d %8d %6.1f%%  (gate %d %%: %s)\n", t "/ total", tf[t], th[t], pct,
                   min, ok ? "ok" : "FAIL"
            if (!ok) bad++ }
        printf "coverage: %d passed, %d failed\n", 2 - bad, bad
        exit bad ? 1 : 0
    }' "$OUT/cge.info" >"$OUT/table.txt"
rc=$?
cat "$OUT/table.txt"
exit $rc
