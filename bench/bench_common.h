/*
 * bench_common.h: the helpers every benchmark program needs (header-only, static inline):
 * wall and CPU clocks, a deterministic uniform random generator, and the "GEMM peak" that the
 * model benchmarks use as the yardstick for their "fraction of peak" columns.
 *
 * Key decision: the peak is always measured the same way (one cge_linear product of fp32
 * weights stored in the requested dtype, one warm-up call that creates the oneDNN primitive and
 * faults the pages in, then the best of `reps` timed calls), so that "% of peak" means the same
 * thing in every table; each benchmark keeps its own shape and repetition count. The peak's
 * operands come from their own fixed seed and never draw from a benchmark's random stream.
 */
#ifndef CGE_BENCH_COMMON_H
#define CGE_BENCH_COMMON_H

#include "core/core.h"
#include "tensor/ops.h"

#include <stdint.h>
#include <time.h>

/* Wall-clock seconds (monotonic) from an arbitrary origin. */
static inline double bench_now_s(void) {
    return (double)cge__now_us() * 1e-6;
}

/* CPU seconds of the whole process (all threads): next to wall time, it shows how much a shared
 * machine slowed a measurement down. */
static inline double bench_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Next draw of the xorshift64 generator in *state (never 0): a uniform in [-1, 1). */
static inline float bench_randu(uint64_t *state) {
    uint64_t s = *state;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    *state = s;
    return (float)((s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Fills p[0..n) with scale × uniform[-1, 1) from *state (deterministic for a given seed). */
static inline void bench_fill_uniform(float *p, int64_t n, float scale, uint64_t *state) {
    for (int64_t i = 0; i < n; i++)
        p[i] = bench_randu(state) * scale;
}

/* GFLOP/s (GOP/s for int8) of one (M × K) · (K → N) cge_linear product with the weights stored
 * as `dt`: one warm-up call, then the best of `reps` timed calls. 0 if the layer cannot be built
 * or run. */
static inline double bench_gemm_peak(enum cge_dtype dt, int64_t M, int64_t N, int64_t K, int reps) {
    float *w = cge__malloc_aligned((size_t)(N * K) * sizeof(float));
    float *x = cge__malloc_aligned((size_t)(M * K) * sizeof(float));
    float *y = cge__malloc_aligned((size_t)(M * N) * sizeof(float));
    double best = 0;
    if (w && x && y) {
        uint64_t seed = 0x2545F4914F6CDD1Dull;
        bench_fill_uniform(w, N * K, 0.03f, &seed);
        bench_fill_uniform(x, M * K, 1.0f, &seed);
        struct cge_linear l;
        if (cge_linear_init(&l, w, CGE_DTYPE_F32, NULL, N, K, dt) == CGE_OK) {
            if (cge_linear_forward(&l, x, M, y) == CGE_OK) { /* warm-up: primitive, page faults */
                double t_best = 1e30;
                for (int r = 0; r < reps; r++) {
                    double t0 = bench_now_s();
                    cge_linear_forward(&l, x, M, y);
                    double t = bench_now_s() - t0;
                    if (t < t_best) t_best = t;
                }
                if (reps > 0 && t_best > 0) best = 2.0 * (double)M * (double)N * (double)K / t_best * 1e-9;
            }
            cge_linear_deinit(&l);
        }
    }
    cge__free_aligned(w);
    cge__free_aligned(x);
    cge__free_aligned(y);
    return best;
}

#endif
