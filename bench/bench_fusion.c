/*
 * bench_fusion.c: FuseMoE at production sizes (12 slots = 13184 → 4096 shared → 8 experts of
 * 4096 → 1536, top-2; random deterministic init in memory, nothing written to disk):
 *  - the GEMM peak of this machine, measured here with one large cge_linear product per dtype;
 *  - latency per item (batch 1) and batch throughput (batch 32) for fp32, bf16 and int8
 *    storage, with the fraction of the GEMM peak that the whole forward reaches;
 *  - training steps/s (forward + backward + AdamW) at a reduced size (D = 3296, 1024 shared,
 *    1024 hidden, 384 out: production training needs ~4 GB of optimizer state), and at the
 *    production size too when CGE_BENCH_FULL=1.
 * Single-item latency is bound by memory bandwidth: one item reads the input projection and
 * two experts' weights (100 M parameters) and does only 2 FLOPs per weight.
 */
#include "core/core.h"
#include "fusion/fusemoe.h"
#include "tensor/ops.h"

#include "bench_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what) {
    fprintf(stderr, "bench_fusion: %s: %s\n", what, cge_errmsg());
    exit(1);
}

/* Random items: every slot present except ~20 %. */
static void make_items(const struct cge_fusemoe_config *c, int64_t n, float *x, uint8_t *pr,
                       uint64_t *s) {
    for (int64_t i = 0; i < n; i++) {
        for (int q = 0; q < c->n_slots; q++) {
            *s = *s * 6364136223846793005ull + 1442695040888963407ull;
            pr[i * c->n_slots + q] = (uint8_t)((*s >> 33) % 5 != 0 || q == 0);
        }
        for (int64_t j = 0; j < c->total_dim; j++) {
            *s = *s * 6364136223846793005ull + 1442695040888963407ull;
            x[i * c->total_dim + j] = (float)((double)(*s >> 11) / 9007199254740992.0 - 0.5);
        }
    }
}

/* FLOPs of one item's forward (the GEMM part: input projection, gate, two experts). */
static double item_flops(const struct cge_fusemoe_config *c) {
    return 2.0 * ((double)c->total_dim * c->shared_dim + (double)c->total_dim * c->n_experts +
                  c->top_k *
                      ((double)c->shared_dim * c->hidden_dim + (double)c->hidden_dim * c->out_dim));
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of forward over n items, `reps` runs after one warm-up. */
static double time_forward(const struct cge_fusion *f, struct cge_fusion_ctx *ctx, int64_t n,
                           const float *x, const uint8_t *pr, float *emb, int reps) {
    double t[64];
    if (cge_fusion_forward(f, ctx, n, x, pr, emb, NULL, NULL)) die("forward");
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now_s();
        cge_fusion_forward(f, ctx, n, x, pr, emb, NULL, NULL);
        t[r] = bench_now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp_d);
    return t[reps / 2];
}

static void train_bench(const char *label, const struct cge_fusemoe_config *c, int64_t batch,
                        int steps) {
    struct cge_fusion *f = NULL;
    if (cge_fusion_new(c, 3, &f)) die("new (train)");
    struct cge_fusion_trainer *t = NULL;
    if (cge_fusion_trainer_new(f, NULL, &t)) die("trainer");
    float *x = malloc((size_t)(batch * c->total_dim) * 4);
    uint8_t *pr = malloc((size_t)(batch * c->n_slots));
    uint64_t s = 99;
    make_items(c, batch, x, pr, &s);
    struct cge_fusion_stats st;
    if (cge_fusion_trainer_step(t, batch, x, pr, NULL, &st)) die("train step");
    double t0 = bench_now_s();
    for (int i = 0; i < steps; i++)
        if (cge_fusion_trainer_step(t, batch, x, pr, NULL, &st)) die("train step");
    double dt = (bench_now_s() - t0) / steps;
    /* forward + backward ≈ 3× the forward GEMM FLOPs */
    double fl = 3.0 * item_flops(c) * (double)batch;
    printf("%-34s %8.2f steps/s  %8.1f ms/step  %7.1f GFLOP/s  (%lld params, loss %.4f)\n", label,
           1.0 / dt, dt * 1e3, fl / dt / 1e9, (long long)cge_fusemoe_config_n_params(c),
           st.total_loss);
    cge_fusion_trainer_free(t);
    cge_fusion_free(f);
    free(x);
    free(pr);
}

int main(void) {
    struct cge_fusemoe_config c;
    cge_fusemoe_config_default(&c);
    double t0 = bench_now_s();
    struct cge_fusion *f = NULL;
    if (cge_fusion_new(&c, 1, &f)) die("new");
    printf("FuseMoE production: %d slots, D=%lld -> %lld shared -> %d experts (%lld -> %lld), "
           "top-%d, %lld params (%.0f MB fp32); init %.1f s; %d threads\n",
           c.n_slots, (long long)c.total_dim, (long long)c.shared_dim, c.n_experts,
           (long long)c.hidden_dim, (long long)c.out_dim, c.top_k,
           (long long)cge_fusemoe_config_n_params(&c), cge_fusemoe_config_n_params(&c) * 4 / 1e6,
           bench_now_s() - t0, cge_get_threads());
    double flops = item_flops(&c);
    printf("forward: %.0f MFLOP per item\n\n", flops / 1e6);

    const int64_t NB = 32;
    float *x = malloc((size_t)(NB * c.total_dim) * 4), *emb = malloc((size_t)(NB * c.out_dim) * 4);
    uint8_t *pr = malloc((size_t)(NB * c.n_slots));
    uint64_t s = 7;
    make_items(&c, NB, x, pr, &s);
    struct cge_fusion_ctx *ctx = NULL;
    cge_fusion_ctx_new(&ctx);

    printf("%-22s %10s %12s %12s %12s %10s %10s\n", "storage", "peak GF/s", "b1 ms/item",
           "b32 ms/item", "b32 items/s", "b1 %peak", "b32 %peak");
    struct {
        const char *name;
        enum cge_dtype dt;
        int pack;
    } modes[] = {{"fp32 (sgemm, master)", CGE_DTYPE_F32, 0},
                 {"fp32 (cge_linear)", CGE_DTYPE_F32, 1},
                 {"bf16 (cge_linear)", CGE_DTYPE_BF16, 1},
                 {"int8 (cge_linear)", CGE_DTYPE_I8, 1}};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        if (modes[m].pack && cge_fusion_pack(f, modes[m].dt)) die("pack");
        double peak = bench_gemm_peak(modes[m].dt, 256, 4096, 4096, 5);
        if (peak <= 0) die("gemm peak");
        double t1 = time_forward(f, ctx, 1, x, pr, emb, 15);
        double t32 = time_forward(f, ctx, NB, x, pr, emb, 5);
        printf("%-22s %10.1f %12.2f %12.2f %12.1f %9.1f%% %9.1f%%\n", modes[m].name, peak, t1 * 1e3,
               t32 * 1e3 / NB, NB / t32, 100.0 * flops / t1 / 1e9 / peak,
               100.0 * flops * NB / t32 / 1e9 / peak);
    }
    printf("(peak: one cge_linear product 256x4096x4096 in the same storage; b1 = batch of 1)\n\n");
    cge_fusion_ctx_free(ctx);
    cge_fusion_free(f);
    free(x);
    free(emb);
    free(pr);

    struct cge_fusemoe_config r = c;
    r.total_dim = 0;
    for (int i = 0; i < r.n_slots; i++) {
        r.slot_dims[i] = c.slot_dims[i] / 4;
        r.total_dim += r.slot_dims[i];
    }
    r.shared_dim = r.hidden_dim = 1024;
    r.out_dim = 384;
    train_bench("train, reduced (D/4, 1024, 384) b32", &r, 32, 5);
    const char *full = getenv("CGE_BENCH_FULL");
    if (full && full[0] == '1')
        train_bench("train, production b32", &c, 32, 2);
    else
        printf("(production-size training: set CGE_BENCH_FULL=1; needs ~4.5 GB)\n");
    return 0;
}
