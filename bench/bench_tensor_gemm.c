/*
 * bench_tensor_gemm.c: GEMM throughput of cge_linear_forward over the shapes of a BERT-base
 * forward (batch 32 × 128 tokens, M = 4096; and batch 1 × 128, M = 128) in fp32, bf16 and int8.
 *
 * For each dtype the bench first measures its own peak with one large product (M=4096, N=3072,
 * K=768) and reports every shape as GFLOP/s (GOP/s for int8) and as a fraction of that peak.
 * Times are the best of several runs (the machine is shared); each call includes the activation
 * conversion (bf16) or quantization (int8) that a real forward pays. On a busy machine the
 * long (M = 4096) products cannot find a quiet stretch and read low; the short ones still do.
 * Optional argument: the number of threads (default: all cores).
 */
#include "core/core.h"
#include "tensor/ops.h"

#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(int64_t n, float scale, uint64_t seed) {
    float *p = cge__malloc_aligned((size_t)n * sizeof(float));
    bench_fill_uniform(p, n, scale, &seed);
    return p;
}

/* Best seconds per forward of an (n_out × n_in) layer on m rows; -1 if the layer fails. */
static double time_linear(enum cge_dtype dt, int64_t m, int64_t n, int64_t k, int reps) {
    float *w = rnd(n * k, 0.05f, 0x1234567ull + (uint64_t)n), *b = rnd(n, 0.1f, 99);
    float *x = rnd(m * k, 1.0f, 0xabcdefull), *y = cge__malloc_aligned((size_t)(m * n) * 4);
    struct cge_linear l;
    double best = 1e30;
    if (cge_linear_init(&l, w, CGE_DTYPE_F32, b, n, k, dt) != CGE_OK) {
        fprintf(stderr, "linear_init: %s\n", cge_errmsg());
        best = -1;
        goto out;
    }
    if (cge_linear_forward(&l, x, m, y) != CGE_OK) { /* warm-up: primitive, page faults */
        fprintf(stderr, "linear_forward: %s\n", cge_errmsg());
        best = -1;
        reps = 0;
    }
    for (int r = 0; r < reps; r++) {
        int64_t t0 = cge__now_us();
        cge_linear_forward(&l, x, m, y);
        double s = (double)(cge__now_us() - t0) * 1e-6;
        best = s < best ? s : best;
    }
    cge_linear_deinit(&l);
out:
    cge__free_aligned(w), cge__free_aligned(b), cge__free_aligned(x), cge__free_aligned(y);
    return best;
}

struct shape {
    const char *name;
    int64_t n, k;
    int per_layer; /* how many such products a BERT-base layer runs */
};

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (threads > 0) cge_set_threads(threads);
    const struct shape shapes[] = {
        {"QKV fused 768→2304", 2304, 768, 1},
        {"Q/K/V 768→768", 768, 768, 0}, /* the unfused alternative (3 of them) */
        {"attn out 768→768", 768, 768, 1},
        {"FFN up 768→3072", 3072, 768, 1},
        {"FFN down 3072→768", 768, 3072, 1},
    };
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    const enum cge_dtype dts[3] = {CGE_DTYPE_F32, CGE_DTYPE_BF16, CGE_DTYPE_I8};
    const char *unit[3] = {"GFLOP/s", "GFLOP/s", "GOP/s"};
    const int64_t ms[2] = {4096, 128};

    printf("cge_linear_forward on oneDNN, %d threads; best of several runs\n", cge_get_threads());
    printf("%-5s %-24s %5s %5s %5s %9s %9s %6s\n", "dtype", "shape", "M", "N", "K", "ms",
           "G(FL)OP/s", "%peak");
    for (int d = 0; d < 3; d++) {
        double pk = time_linear(dts[d], 4096, 3072, 768, 6);
        if (pk <= 0) return 1;
        double peak = 2.0 * 4096 * 3072 * 768 / pk * 1e-9;
        printf("%-5s %-24s %5d %5d %5d %9.2f %9.1f %6s  (%s)\n", cge_dtype_str(dts[d]),
               "peak: one large product", 4096, 3072, 768, pk * 1e3, peak, "100%", unit[d]);
        for (int mi = 0; mi < 2; mi++) {
            int64_t m = ms[mi];
            double layer = 0;
            for (int s = 0; s < n_shapes; s++) {
                int reps = m >= 1024 ? 4 : 40;
                double t = time_linear(dts[d], m, shapes[s].n, shapes[s].k, reps);
                if (t <= 0) return 1;
                double fl = 2.0 * (double)m * (double)shapes[s].n * (double)shapes[s].k;
                layer += t * shapes[s].per_layer;
                printf("%-5s %-24s %5lld %5lld %5lld %9.3f %9.1f %5.0f%%\n",
                       cge_dtype_str(dts[d]), shapes[s].name, (long long)m,
                       (long long)shapes[s].n, (long long)shapes[s].k, t * 1e3, fl / t * 1e-9,
                       100.0 * fl / t * 1e-9 / peak);
            }
            double flops = 2.0 * (double)m * 768 * (2304 + 768 + 3072 + 3072);
            printf("%-5s %-24s %5lld %5s %5s %9.3f %9.1f %5.0f%%  (×12 layers: %.1f ms)\n",
                   cge_dtype_str(dts[d]), "BERT-base layer GEMMs", (long long)m, "", "",
                   layer * 1e3, flops / layer * 1e-9, 100.0 * flops / layer * 1e-9 / peak,
                   layer * 12e3);
        }
    }
    return 0;
}
