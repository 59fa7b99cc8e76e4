/*
 * threads.c: one thread count for the kernels' OpenMP loops and for oneDNN.
 *
 * Debian's oneDNN is built on the GNU OpenMP runtime (libgomp), the same one gcc's -fopenmp
 * uses, so both draw from one pool. omp_set_num_threads only changes the calling thread's
 * setting, so the count lives in a global and every entry point re-applies it
 * (cge__sync_threads) on whichever thread calls in.
 */
#include "tensor/ops.h"

#include "tensor/internal.h"

#include <stdatomic.h>
#include <unistd.h>

static atomic_int g_threads; /* 0 = not set: all cores */
/* A worker's own budget (the engine's batcher gives each worker cores / workers), which wins
 * over the process-wide count on that thread; 0 = none. */
static _Thread_local int tl_threads;

void cge__set_thread_budget(int n) {
    tl_threads = n > 0 ? n : 0;
    cge__sync_threads();
}

static int default_threads(void) {
#ifdef _OPENMP
    int n = omp_get_num_procs();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? (int)n : 1;
}

void cge_set_threads(int n) {
    atomic_store(&g_threads, n > 0 ? n : 0);
    cge__sync_threads();
}

int cge_get_threads(void) {
    if (tl_threads > 0) return tl_threads;
    int n = atomic_load(&g_threads);
    return n > 0 ? n : default_threads();
}

void cge__sync_threads(void) {
#ifdef _OPENMP
    int n = cge_get_threads();
    if (omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

int cge__threads_for(int64_t work) {
#ifdef _OPENMP
    if (work < ((int64_t)1 << 16) || omp_in_parallel()) return 1;
    return cge_get_threads();
#else
    (void)work;
    return 1;
#endif
}
