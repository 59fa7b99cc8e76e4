#!/bin/sh
# Runs every benchmark program of a build folder, one after the other (never two at once: they
# would share the two cores). Usage: bench/run.sh BUILD_DIR [name-filter]
BUILD=${1:-build}
FILTER=${2:-}
cd "$(dirname "$0")/.." || exit 1
for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    case "$(basename "$b")" in *"$FILTER"*) ;; *) continue ;; esac
    echo "== $(basename "$b")"
    "$b" || echo "($(basename "$b") exited $?)"
done
