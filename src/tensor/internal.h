/*
 * internal.h: helpers shared by the tensor kernels' files (not part of the ops.h contract).
 *
 * OpenMP is optional: the kernels are written with CGE_OMP(...) pragmas that vanish when the
 * module is built without -fopenmp (e.g. a clang fuzz build without libomp), so the same source
 * compiles warning-free either way and runs serially there.
 */
#ifndef CGE_TENSOR_INTERNAL_H
#define CGE_TENSOR_INTERNAL_H

#include <stdint.h>

#define CGE__STR(x) #x
#ifdef _OPENMP
#    include <omp.h>
#    define CGE_OMP(x) _Pragma(CGE__STR(omp x))
#else
#    define CGE_OMP(x)
#endif
/* A `for` over `work` cheap units, split across threads when that pays. */
#define CGE_PARALLEL_FOR(work) CGE_OMP(parallel for num_threads(cge__threads_for(work)) schedule(static))

/* Threads for a loop of `work` cheap units (elements): 1 below the size where forking a team
 * costs more than it saves, cge_get_threads() above it. */
int cge__threads_for(int64_t work);

/* Makes the calling thread's OpenMP team size (used by oneDNN's own parallel regions) follow
 * cge_set_threads; cheap, called before every oneDNN call. */
void cge__sync_threads(void);

/* Softmax in place on row[lo, hi) of a row of n floats, zeros outside [lo, hi); a row with
 * nothing above -inf becomes all zeros. (elementwise.c; attention uses it per masked row.) */
void cge__softmax_range(float *row, int64_t lo, int64_t hi, int64_t n);

#endif /* CGE_TENSOR_INTERNAL_H */
