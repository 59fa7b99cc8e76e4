#!/bin/sh
# The ThreadSanitizer gate: builds the threaded tests in BUILD_DIR (Release, -DCGE_SANITIZE_THREAD,
# without OpenMP: libgomp is not instrumented, so its barriers read as races; the kernels run
# serial and the library's own threads are what is checked) and runs them with
# CGE_TEST_TSAN=1, which a test may read to skip its long single-threaded parts, and
# OMP_NUM_THREADS=1: oneDNN runs its GEMMs on libgomp threads, whose synchronization TSan cannot
# see (their memsets would read as races with the caller). The tests are the
# list below plus every tests/unit/test_*.c whose text names ThreadSanitizer (opt in by saying
# so in its header comment). Prints "tsan: N passed, N failed, N skipped" last.
# Usage: scripts/test-tsan.sh [BUILD_DIR] [--no-build]
BUILD=${1:-build-tsan}
cd "$(dirname "$0")/.." || exit 1
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
list="test_cache_threads test_cache_disk test_models_e2e_text test_tensor_ops test_text_robust
      test_media_audio test_models_clip test_models_whisper test_runtime_engine test_runtime_batch"
for f in $(grep -l ThreadSanitizer tests/unit/test_*.c 2>/dev/null); do
    list="$list $(basename "$f" .c)"
done
tests=""
for t in $list; do
    [ -f "tests/unit/$t.c" ] || continue
    case " $tests " in *" $t "*) ;; *) tests="$tests $t" ;; esac
done
if [ "${2:-}" != "--no-build" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCGE_SANITIZE_THREAD=ON -DCGE_BUILD_BENCH=OFF \
        -DCMAKE_DISABLE_FIND_PACKAGE_OpenMP=ON >/dev/null || exit 1
    # shellcheck disable=SC2086
    cmake --build "$BUILD" -j "$JOBS" --target $tests || exit 1
fi
# shellcheck disable=SC2086
CGE_TEST_TSAN=1 OMP_NUM_THREADS=1 \
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp} \
    tests/run.sh "$BUILD" tsan $tests
