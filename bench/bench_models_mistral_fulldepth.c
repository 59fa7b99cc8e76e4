/*
 * bench_models_mistral_fulldepth.c: int8 accuracy of E12 (E5-Mistral-7B) at its real width AND
 * full depth, on random weights: d_model 4096, d_ff 14336, 32 heads of 128, 8 kv heads, 32
 * layers, RMSNorm eps 1e-5, rope_theta 10000, SiLU-gated MLP. For each storage scheme (fp32,
 * bf16, int8 W8A16 — the default: s8 weights with a scale per 32 inputs, bf16 activations —
 * and int8 W8A8 — the old per-row u8 activations) it runs one 128-token input (B = 1) through
 * the decoder and prints, after 2, 8, 16 and 32 layers, the cosine to fp32 of the last token's
 * hidden state after the final RMSNorm (and the worst cosine over all 128 tokens).
 *
 * Key decision: layer streaming. 32 fp32 layers are ~29 GB, so the model is never held: one
 * layer's weights are generated (seeded, in checkpoint order), built once per scheme with
 * cge_linear_init_q, each scheme's own hidden state is run through it, and the layer is freed
 * before the next one is generated. Peak memory is one layer in bf16 (0.44 GB) plus one scheme's
 * converted layer (fp32: 0.87 GB). The layer forward mirrors mistral_forward (src/models/
 * mistral.c) call for call: fused Q|K|V and gate|up matrices, cge_rope on q and k, causal
 * cge_attention, SiLU·up, residual adds.
 *
 * The generator is test_models_mistral_depth.c's, at full width: bf16 weights N(0, 1/fan_in)
 * (a sum of 4 uniforms), norm weights 1 + 0.2·N(0, 1), and four residual "outlier" channels
 * whose token-embedding entries and o_proj/down_proj output rows are ×20, as the massive
 * activations of trained LLMs. It takes about 7 minutes on 2 cores (1.7 GB resident), mostly
 * weight generation and conversion (the forwards are ~15 s): run it by itself, not in the default
 * bench/run.sh set (run.sh skips it unless its name filter names it: bench/run.sh build
 * fulldepth).
 * Usage: bench_models_mistral_fulldepth [n_layer (default 32)]
 */
#include "core/core.h"
#include "tensor/ops.h"

#include "bench_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D 4096
#define FF 14336
#define N_HEAD 32
#define N_KV 8
#define D_HEAD (D / N_HEAD)
#define D_Q (N_HEAD * D_HEAD)
#define D_KV (N_KV * D_HEAD)
#define D_QKV (D_Q + 2 * D_KV)
#define VOCAB 256
#define L 128
#define EPS 1e-5f
#define THETA 10000.0f
#define MAX_LAYER 32
#define N_SCHEME 4

/* The depth test's generator: one xorshift64 stream, weights drawn in checkpoint order. */
static uint64_t rng = 0x243F6A8885A308D3ull;
static float randn(void) {
    float s = 0; /* a sum of 4 uniforms on [-1, 1), rescaled: close enough to normal */
    for (int i = 0; i < 4; i++) s += bench_randu(&rng);
    return s * 0.8660254f;
}

static int outlier(int64_t c) { return c == 5 || c == 77 || c == 150 || c == 201; }

/* rows × cols bf16 values sd·N(0, 1) into w; outlier_rows: the outlier rows get 20·sd. */
static void gen_matrix(uint16_t *w, int64_t rows, int64_t cols, float sd, int outlier_rows) {
    for (int64_t r = 0; r < rows; r++) {
        const float s = outlier_rows && outlier(r) ? 20.0f * sd : sd;
        for (int64_t c = 0; c < cols; c++) w[r * cols + c] = cge_f32_to_bf16(s * randn());
    }
}

/* A norm weight vector 1 + 0.2·N(0, 1), rounded through bf16 as the checkpoint stores it. */
static void gen_norm(float *w) {
    for (int64_t i = 0; i < D; i++) w[i] = cge_bf16_to_f32(cge_f32_to_bf16(1.0f + 0.2f * randn()));
}

/* One layer's weights, as the loader holds them: the fused Q|K|V and gate|up matrices. */
struct layer_w {
    float attn_norm[D], mlp_norm[D];
    uint16_t *qkv, *o, *gate_up, *down; /* bf16: (D_QKV, D), (D, D_Q), (2·FF, D), (D, FF) */
};

static void gen_layer(struct layer_w *lw) {
    const float s_d = 1.0f / sqrtf((float)D), s_ff = 1.0f / sqrtf((float)FF);
    gen_norm(lw->attn_norm);
    gen_norm(lw->mlp_norm);
    gen_matrix(lw->qkv, D_Q, D, s_d, 0);                          /* q_proj */
    gen_matrix(lw->qkv + (int64_t)D_Q * D, D_KV, D, s_d, 0);      /* k_proj */
    gen_matrix(lw->qkv + (int64_t)(D_Q + D_KV) * D, D_KV, D, s_d, 0); /* v_proj */
    gen_matrix(lw->o, D, D_Q, s_d, 1);                            /* o_proj: outlier rows */
    gen_matrix(lw->gate_up, FF, D, s_d, 0);                       /* gate_proj */
    gen_matrix(lw->gate_up + (int64_t)FF * D, FF, D, s_d, 0);     /* up_proj */
    gen_matrix(lw->down, D, FF, s_ff, 1);                         /* down_proj: outlier rows */
}

struct scheme {
    const char *name, *key;
    enum cge_dtype dt;
    enum cge_i8_mode mode;
};
static const struct scheme schemes[N_SCHEME] = {
    {"fp32", "fp32", CGE_DTYPE_F32, CGE_I8_DYNAMIC},
    {"bf16", "bf16", CGE_DTYPE_BF16, CGE_I8_DYNAMIC},
    {"int8 W8A16 (s8/32 inputs, bf16 act.; default)", "int8_w8a16", CGE_DTYPE_I8, CGE_I8_WEIGHTS},
    {"int8 W8A8 (per-row u8 act.; the old int8)", "int8_w8a8", CGE_DTYPE_I8, CGE_I8_DYNAMIC},
};

/* Scratch of one layer forward, as mistral_forward's: normed input, qkv, attention, gate|up. */
struct scratch {
    float *h, *qkv, *att, *gu;
    int32_t pos[L];
};

/* One decoder layer on x (L, D) in place: mistral_forward's loop body, call for call. */
static enum cge_status layer_forward(const struct layer_w *lw, const struct cge_linear lin[4],
                                     float *x, struct scratch *s) {
    const int64_t n = L;
    const int64_t len[1] = {L};
    /* E12's sliding window (4096) masks nothing at 128 tokens. */
    struct cge_attn a = {
        .n_batch = 1, .n_seq = L, .n_head = N_HEAD, .n_kv_head = N_KV, .d_head = D_HEAD,
        .scale = 1.0f / sqrtf((float)D_HEAD), .len = len, .bias = NULL, .causal = 1, .window = 0,
    };
    enum cge_status st;
    memcpy(s->h, x, (size_t)n * D * sizeof(float));
    cge_rmsnorm(s->h, n, D, lw->attn_norm, EPS);
    if ((st = cge_linear_forward(&lin[0], s->h, n, s->qkv))) return st;
    cge_rope(s->qkv, n, D_QKV, N_HEAD, D_HEAD, s->pos, THETA);
    cge_rope(s->qkv + D_Q, n, D_QKV, N_KV, D_HEAD, s->pos, THETA);
    if ((st = cge_attention(&a, s->qkv, D_QKV, s->qkv + D_Q, D_QKV, s->qkv + D_Q + D_KV, D_QKV,
                            s->att, D_Q)))
        return st;
    if ((st = cge_linear_forward(&lin[1], s->att, n, s->h))) return st;
    cge_add(x, s->h, n * D);

    memcpy(s->h, x, (size_t)n * D * sizeof(float));
    cge_rmsnorm(s->h, n, D, lw->mlp_norm, EPS);
    if ((st = cge_linear_forward(&lin[2], s->h, n, s->gu))) return st;
    for (int64_t r = 0; r < n; r++) {
        float *g = s->gu + r * 2 * FF;
        cge_silu(g, FF);
        cge_mul(g, g + FF, FF);
    }
    for (int64_t r = 1; r < n; r++)
        memmove(s->gu + r * FF, s->gu + r * 2 * FF, (size_t)FF * sizeof(float));
    if ((st = cge_linear_forward(&lin[3], s->gu, n, s->h))) return st;
    cge_add(x, s->h, n * D);
    return CGE_OK;
}

static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static int is_report_depth(int l, int n_layer) { return l == 2 || l == 8 || l == 16 || l == n_layer; }

int main(int argc, char **argv) {
    int n_layer = argc > 1 ? atoi(argv[1]) : MAX_LAYER;
    if (n_layer < 1 || n_layer > MAX_LAYER) {
        fprintf(stderr, "usage: %s [n_layer 1..%d]\n", argv[0], MAX_LAYER);
        return 2;
    }
    const double t0 = bench_now_s(), c0 = bench_cpu_s();
    struct layer_w *lw = cge__malloc(sizeof *lw);
    float *final_norm = cge__malloc(D * sizeof(float));
    uint16_t *embd = cge__malloc((size_t)VOCAB * D * sizeof(uint16_t));
    struct scratch s;
    s.h = cge__malloc_aligned((size_t)L * (D + D_QKV + D_Q + 2 * FF) * sizeof(float));
    float *x[N_SCHEME], *y = cge__malloc_aligned((size_t)L * D * sizeof(float));
    for (int k = 0; k < N_SCHEME; k++)
        if (!(x[k] = cge__malloc_aligned((size_t)L * D * sizeof(float))))
            return fprintf(stderr, "out of memory\n"), 1;
    if (!lw || !final_norm || !embd || !s.h || !y) return fprintf(stderr, "out of memory\n"), 1;
    s.qkv = s.h + L * D;
    s.att = s.qkv + L * D_QKV;
    s.gu = s.att + L * D_Q;
    for (int t = 0; t < L; t++) s.pos[t] = t;
    lw->qkv = cge__malloc((size_t)D_QKV * D * sizeof(uint16_t));
    lw->o = cge__malloc((size_t)D * D_Q * sizeof(uint16_t));
    lw->gate_up = cge__malloc((size_t)2 * FF * D * sizeof(uint16_t));
    lw->down = cge__malloc((size_t)D * FF * sizeof(uint16_t));
    if (!lw->qkv || !lw->o || !lw->gate_up || !lw->down) return fprintf(stderr, "out of memory\n"), 1;

    /* Checkpoint order, as the depth test writes it: embeddings, final norm, then the layers. */
    for (int64_t r = 0; r < VOCAB; r++)
        for (int64_t c = 0; c < D; c++)
            embd[r * D + c] = cge_f32_to_bf16((outlier(c) ? 20.0f : 1.0f) * randn());
    gen_norm(final_norm);
    int32_t ids[L];
    uint64_t seed = 7;
    for (int i = 0; i < L; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 3 + (int32_t)((seed >> 33) % (VOCAB - 3));
    }
    for (int k = 0; k < N_SCHEME; k++)
        if (cge_embed_gather(embd, CGE_DTYPE_BF16, VOCAB, D, ids, L, x[k]))
            return fprintf(stderr, "embed: %s\n", cge_errmsg()), 1;

    printf("E12 at full width and depth: %d layers of d_model %d, d_ff %d, %d heads of %d, %d kv "
           "heads; B=1, L=%d; 4 outlier channels x20; %d threads\n",
           n_layer, D, FF, N_HEAD, D_HEAD, N_KV, L, cge_get_threads());
    printf("cosine to fp32 of the last token after the final RMSNorm (worst token in brackets)\n");
    printf("%6s", "layers");
    for (int k = 1; k < N_SCHEME; k++) printf("  %-28s", schemes[k].key);
    printf("  %8s\n", "elapsed");

    double t_gen = 0, t_init[N_SCHEME] = {0}, t_fwd[N_SCHEME] = {0};
    size_t bytes[N_SCHEME] = {0};
    double last_cos[N_SCHEME] = {0}, last_min[N_SCHEME] = {0};
    int64_t worst[N_SCHEME] = {0};
    const int64_t rows[4] = {D_QKV, D, 2 * FF, D}, cols[4] = {D, D_Q, D, FF};
    for (int il = 1; il <= n_layer; il++) {
        double tg = bench_now_s();
        gen_layer(lw);
        t_gen += bench_now_s() - tg;
        const uint16_t *wm[4] = {lw->qkv, lw->o, lw->gate_up, lw->down};
        for (int k = 0; k < N_SCHEME; k++) {
            struct cge_linear lin[4];
            double ti = bench_now_s();
            size_t b = 0;
            for (int j = 0; j < 4; j++) {
                if (cge_linear_init_q(&lin[j], wm[j], CGE_DTYPE_BF16, NULL, rows[j], cols[j],
                                      schemes[k].dt, schemes[k].mode)) {
                    fprintf(stderr, "layer %d %s: %s\n", il, schemes[k].key, cge_errmsg());
                    return 1;
                }
                b += cge_linear_bytes(&lin[j]);
            }
            bytes[k] = b;
            double tf = bench_now_s();
            t_init[k] += tf - ti;
            enum cge_status st = layer_forward(lw, lin, x[k], &s);
            t_fwd[k] += bench_now_s() - tf;
            for (int j = 0; j < 4; j++) cge_linear_deinit(&lin[j]);
            if (st) return fprintf(stderr, "layer %d %s: %s\n", il, schemes[k].key, cge_errmsg()), 1;
        }
        if (!is_report_depth(il, n_layer)) continue;
        /* What a model cut at this depth would embed: the final norm on a copy. */
        float *ref = cge__malloc_aligned((size_t)L * D * sizeof(float));
        if (!ref) return fprintf(stderr, "out of memory\n"), 1;
        memcpy(ref, x[0], (size_t)L * D * sizeof(float));
        cge_rmsnorm(ref, L, D, final_norm, EPS);
        printf("%6d", il);
        for (int k = 1; k < N_SCHEME; k++) {
            memcpy(y, x[k], (size_t)L * D * sizeof(float));
            cge_rmsnorm(y, L, D, final_norm, EPS);
            double c_last = cosine(ref + (int64_t)(L - 1) * D, y + (int64_t)(L - 1) * D, D), c_min = 1;
            for (int64_t t = 0; t < L; t++) {
                double c = cosine(ref + t * D, y + t * D, D);
                if (c < c_min) {
                    c_min = c;
                    worst[k] = t;
                }
            }
            last_cos[k] = c_last;
            last_min[k] = c_min;
            char cell[64];
            snprintf(cell, sizeof cell, "%.6f (%.6f)", c_last, c_min);
            printf("  %-28s", cell);
        }
        printf("  %7.0f s\n", bench_now_s() - t0);
        for (int k = 1; k < N_SCHEME; k++)
            printf("BENCH_JSON {\"bench\": \"models_mistral_fulldepth\", \"mode\": \"%s\", "
                   "\"layers\": %d, \"cos_fp32_last\": %.6f, \"cos_fp32_min_token\": %.6f, "
                   "\"worst_token\": %lld}\n",
                   schemes[k].key, il, last_cos[k], last_min[k], (long long)worst[k]);
        fflush(stdout);
        cge__free_aligned(ref);
    }
    printf("per scheme: layer bytes, seconds converting, seconds in forward (all %d layers); "
           "weight generation %.0f s\n", n_layer, t_gen);
    for (int k = 0; k < N_SCHEME; k++)
        printf("  %-48s %7.1f MB/layer  %6.1f s init  %6.1f s forward\n", schemes[k].name,
               (double)bytes[k] / 1048576.0, t_init[k], t_fwd[k]);
    const double wall = bench_now_s() - t0, cpu = bench_cpu_s() - c0;
    printf("total %.0f s wall, %.0f s CPU\n", wall, cpu);
    if (last_cos[2] < 0.999)
        printf("NOTE: int8 W8A16 is below 0.999 at %d layers (%.6f, %.6f short)\n", n_layer,
               last_cos[2], 0.999 - last_cos[2]);
    for (int k = 0; k < N_SCHEME; k++) cge__free_aligned(x[k]);
    cge__free_aligned(y);
    cge__free_aligned(s.h);
    cge__free(lw->qkv);
    cge__free(lw->o);
    cge__free(lw->gate_up);
    cge__free(lw->down);
    cge__free(lw);
    cge__free(final_norm);
    cge__free(embd);
    return 0;
}
