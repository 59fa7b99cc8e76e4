/*
 * test_tensor_ops.c: every kernel of src/tensor/ops.h against a plain double-precision loop
 * written here, on random inputs (norms, softmax, activations, gather, attention with all its
 * masks, rope, convolutions, dtype conversions, linear layers in fp32/bf16/int8).
 */
#include "core/core.h"
#include "tensor/ops.h"
#include "testhelp.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_seed = 0x9e3779b97f4a7c15ull;

static float *rnd(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = th_randf(&g_seed) * scale;
    return p;
}

/* max |a−b| / max(|b|, floor) over n */
static double max_rel(const float *a, const double *b, int64_t n, double floor_) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double den = fabs(b[i]) > floor_ ? fabs(b[i]) : floor_;
        double e = fabs((double)a[i] - b[i]) / den;
        if (!(e <= m)) m = e; /* NaN propagates as failure */
    }
    return m;
}

/* ---- norms, softmax --------------------------------------------------------------------------- */
static void test_layernorm(void) {
    int64_t rows = 37, d = 384;
    float *x = rnd(rows * d, 3.0f), *w = rnd(d, 1.0f), *b = rnd(d, 1.0f);
    for (int64_t i = 0; i < rows * d; i++) x[i] += 0.5f; /* nonzero mean */
    double *ref = malloc((size_t)(rows * d) * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int64_t i = 0; i < d; i++) mu += x[r * d + i];
        mu /= d;
        for (int64_t i = 0; i < d; i++) var += (x[r * d + i] - mu) * (x[r * d + i] - mu);
        var /= d;
        for (int64_t i = 0; i < d; i++)
            ref[r * d + i] = (x[r * d + i] - mu) / sqrt(var + 1e-12) * w[i] + b[i];
    }
    cge_layernorm(x, rows, d, w, b, 1e-12f);
    double e = max_rel(x, ref, rows * d, 1e-1);
    CHECK_MSG(e < 1e-5, "layernorm max rel err %g", e);
    free(x), free(w), free(b), free(ref);
}

static void test_rmsnorm(void) {
    int64_t rows = 19, d = 512;
    float *x = rnd(rows * d, 2.0f), *w = rnd(d, 1.0f);
    float *x2 = malloc((size_t)(rows * d) * sizeof(float));
    memcpy(x2, x, (size_t)(rows * d) * sizeof(float));
    double *ref = malloc((size_t)(rows * d) * sizeof(double));
    double *ref2 = malloc((size_t)(rows * d) * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t i = 0; i < d; i++) s += (double)x[r * d + i] * x[r * d + i];
        double inv = 1.0 / sqrt(s / d + 1e-6);
        for (int64_t i = 0; i < d; i++) {
            ref[r * d + i] = x[r * d + i] * inv * w[i];
            ref2[r * d + i] = x[r * d + i] * inv;
        }
    }
    cge_rmsnorm(x, rows, d, w, 1e-6f);
    cge_rmsnorm(x2, rows, d, NULL, 1e-6f);
    double e = max_rel(x, ref, rows * d, 1e-1), e2 = max_rel(x2, ref2, rows * d, 1e-1);
    CHECK_MSG(e < 1e-5, "rmsnorm max rel err %g", e);
    CHECK_MSG(e2 < 1e-5, "rmsnorm (no weight) max rel err %g", e2);
    free(x), free(x2), free(w), free(ref), free(ref2);
}

static void test_softmax_l2(void) {
    int64_t rows = 13, n = 300;
    float *x = rnd(rows * n, 20.0f);
    x[5] = -INFINITY; /* a masked entry */
    double *ref = malloc((size_t)(rows * n) * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0;
        for (int64_t i = 0; i < n; i++) m = fmax(m, x[r * n + i]);
        for (int64_t i = 0; i < n; i++) s += exp(x[r * n + i] - m);
        for (int64_t i = 0; i < n; i++) ref[r * n + i] = exp(x[r * n + i] - m) / s;
    }
    cge_softmax(x, rows, n);
    double e = max_rel(x, ref, rows * n, 1e-6);
    CHECK_MSG(e < 1e-5, "softmax max rel err %g", e);
    CHECK(x[5] == 0.0f);
    /* all masked: zeros, never NaN */
    float allm[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    cge_softmax(allm, 1, 4);
    CHECK(allm[0] == 0.0f && allm[3] == 0.0f);

    float *y = rnd(rows * n, 1.0f);
    for (int64_t i = 0; i < n; i++) y[i] = 0.0f; /* a zero row stays zero (eps) */
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)y[r * n + i] * y[r * n + i];
        double nn = fmax(sqrt(s), 1e-12);
        for (int64_t i = 0; i < n; i++) ref[r * n + i] = y[r * n + i] / nn;
    }
    cge_l2_normalize(y, rows, n, 1e-12f);
    e = max_rel(y, ref, rows * n, 1e-3);
    CHECK_MSG(e < 1e-6, "l2_normalize max rel err %g", e);
    free(x), free(y), free(ref);
}

/* ---- activations and vector ops ------------------------------------------------------------------ */
static void test_activations(void) {
    int64_t n = 100003; /* large enough to take the threaded path */
    float *x = rnd(n, 8.0f);
    x[0] = 0.0f, x[1] = -30.0f, x[2] = 30.0f, x[3] = -100.0f;
    float *y = malloc((size_t)n * sizeof(float));
    double *ref = malloc((size_t)n * sizeof(double));
    const char *names[] = {"gelu_erf", "gelu_tanh", "quick_gelu", "silu", "relu", "tanh"};
    for (int op = 0; op < 6; op++) {
        memcpy(y, x, (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            double v = x[i];
            switch (op) {
            case 0: ref[i] = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
            case 1: ref[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); break;
            case 2: ref[i] = v / (1 + exp(-1.702 * v)); break;
            case 3: ref[i] = v / (1 + exp(-v)); break;
            case 4: ref[i] = v > 0 ? v : 0; break;
            default: ref[i] = tanh(v); break;
            }
        }
        switch (op) {
        case 0: cge_gelu_erf(y, n); break;
        case 1: cge_gelu_tanh(y, n); break;
        case 2: cge_quick_gelu(y, n); break;
        case 3: cge_silu(y, n); break;
        case 4: cge_relu(y, n); break;
        default: cge_tanh_inplace(y, n); break;
        }
        /* absolute floor 1e-6: tails near zero are compared absolutely */
        double e = max_rel(y, ref, n, 1e-1);
        CHECK_MSG(e < 2e-6, "%s max rel err %g", names[op], e);
    }
    /* add, add_row, mul, scale */
    float *a = rnd(64, 1.0f), *b = rnd(64, 1.0f), *c = malloc(64 * sizeof(float));
    memcpy(c, a, 64 * sizeof(float));
    cge_add(c, b, 64);
    int ok = 1;
    for (int i = 0; i < 64; i++) ok &= c[i] == a[i] + b[i];
    memcpy(c, a, 64 * sizeof(float));
    cge_mul(c, b, 64);
    for (int i = 0; i < 64; i++) ok &= c[i] == a[i] * b[i];
    memcpy(c, a, 64 * sizeof(float));
    cge_scale(c, 64, 3.0f);
    for (int i = 0; i < 64; i++) ok &= c[i] == a[i] * 3.0f;
    memcpy(c, a, 64 * sizeof(float));
    cge_add_row(c, 8, 8, b);
    for (int i = 0; i < 64; i++) ok &= c[i] == a[i] + b[i % 8];
    CHECK(ok);
    free(a), free(b), free(c), free(x), free(y), free(ref);
}

/* ---- dtype conversion ------------------------------------------------------------------------- */
static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_convert(void) {
    /* bf16: round to nearest, ties to even */
    CHECK(cge_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(cge_f32_to_bf16(bits_f(0x3f808000u)) == 0x3f80); /* tie, even stays */
    CHECK(cge_f32_to_bf16(bits_f(0x3f818000u)) == 0x3f82); /* tie, odd rounds up */
    CHECK(cge_f32_to_bf16(bits_f(0x3f808001u)) == 0x3f81); /* above half */
    CHECK(cge_f32_to_bf16(bits_f(0x3f807fffu)) == 0x3f80); /* below half */
    CHECK(cge_f32_to_bf16(-2.0f) == 0xc000);
    CHECK(cge_f32_to_bf16(INFINITY) == 0x7f80);
    CHECK(cge_f32_to_bf16(bits_f(0x7f7fffffu)) == 0x7f80); /* FLT_MAX rounds to inf */
    uint16_t nb = cge_f32_to_bf16(NAN);
    CHECK((nb & 0x7f80) == 0x7f80 && (nb & 0x7f) != 0);
    CHECK(isnan(cge_bf16_to_f32(cge_f32_to_bf16(bits_f(0x7f800001u))))); /* sNaN stays NaN */
    CHECK(cge_bf16_to_f32(0x4049) == bits_f(0x40490000u));
    /* exhaustive f16 against a double formula */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        double v;
        if (e == 0) v = ldexp(m, -24);
        else if (e == 31) v = m ? NAN : INFINITY;
        else v = ldexp(1024 + m, e - 25);
        if (s) v = -v;
        float f = cge_f16_to_f32((uint16_t)h);
        if (isnan(v) ? !isnan(f) : (double)f != v) bad++;
        if (e == 0 && m == 0 && !!signbit(f) != s) bad++;
    }
    CHECK_MSG(bad == 0, "%d f16 values wrong", bad);
    /* bf16 round trip: exhaustive over bf16 (excluding NaN) */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;
        if (cge_f32_to_bf16(cge_bf16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d bf16 round trips wrong", bad);
    /* the bulk (vectorized) conversions agree with the scalar ones on every 16-bit value */
    uint16_t *all = malloc(65536 * 2 + 6);
    float *conv = malloc((65536 + 3) * sizeof(float));
    for (uint32_t hb = 0; hb < 65536 + 3; hb++) all[hb] = (uint16_t)(hb * 40503u);
    for (int dt = 0; dt < 2; dt++) {
        enum cge_dtype t = dt ? CGE_DTYPE_F16 : CGE_DTYPE_BF16;
        CHECK(cge_convert_to_f32(all, t, 65536 + 3, conv) == CGE_OK);
        bad = 0;
        for (uint32_t hb = 0; hb < 65536 + 3; hb++) {
            float r = dt ? cge_f16_to_f32(all[hb]) : cge_bf16_to_f32(all[hb]);
            if (isnan(r) ? !isnan(conv[hb]) : memcmp(&r, &conv[hb], 4) != 0) bad++;
        }
        CHECK_MSG(bad == 0, "%d bulk %s conversions differ", bad, cge_dtype_str(t));
    }
    free(all), free(conv);
    /* convert_to_f32 */
    uint16_t src[5] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000};
    float dst[5];
    CHECK(cge_convert_to_f32(src, CGE_DTYPE_F16, 5, dst) == CGE_OK);
    CHECK(dst[0] == 1.0f && dst[1] == -2.0f && dst[2] == (float)ldexp(1, -24) &&
          dst[3] == 65504.0f && dst[4] == 0.0f);
    CHECK(cge_convert_to_f32(src, CGE_DTYPE_BF16, 2, dst) == CGE_OK);
    CHECK(dst[0] == cge_bf16_to_f32(0x3c00) && dst[1] == -2.0f);
    float fs[3] = {1.5f, -2.5f, 3.25f};
    CHECK(cge_convert_to_f32(fs, CGE_DTYPE_F32, 3, dst) == CGE_OK);
    CHECK(dst[0] == 1.5f && dst[2] == 3.25f);
    CHECK(cge_convert_to_f32(fs, CGE_DTYPE_I32, 3, dst) == CGE_ERR_UNSUPPORTED);
}

static void test_gather(void) {
    int64_t vocab = 50, d = 24;
    float *tab = rnd(vocab * d, 1.0f);
    uint16_t *tb = malloc((size_t)(vocab * d) * 2), *th = malloc((size_t)(vocab * d) * 2);
    for (int64_t i = 0; i < vocab * d; i++) {
        tb[i] = cge_f32_to_bf16(tab[i]);
        /* f16 of values of the form k/1024 in [-1, 1]: exact */
        float v = roundf(tab[i] * 1024.0f) / 1024.0f;
        tab[i] = v;
        uint16_t sgn = v < 0 ? 0x8000 : 0;
        float a = fabsf(v);
        uint16_t hbits = 0;
        if (a > 0) {
            int e;
            double fr = frexp(a, &e); /* a = fr·2^e, fr in [0.5,1) */
            int ef = e - 1 + 15;      /* biased exponent */
            if (ef <= 0) hbits = (uint16_t)lrint(ldexp(a, 24));
            else hbits = (uint16_t)((ef << 10) | ((int)lrint(ldexp(fr, 11)) & 1023));
        }
        th[i] = sgn | hbits;
    }
    int32_t ids[6] = {0, 49, 7, 7, 13, 1};
    float *out = malloc(6 * (size_t)d * sizeof(float));
    CHECK(cge_embed_gather(tab, CGE_DTYPE_F32, vocab, d, ids, 6, out) == CGE_OK);
    int ok = 1;
    for (int i = 0; i < 6; i++)
        for (int64_t j = 0; j < d; j++) ok &= out[i * d + j] == tab[ids[i] * d + j];
    CHECK(ok);
    CHECK(cge_embed_gather(th, CGE_DTYPE_F16, vocab, d, ids, 6, out) == CGE_OK);
    ok = 1;
    for (int i = 0; i < 6; i++)
        for (int64_t j = 0; j < d; j++) ok &= out[i * d + j] == tab[ids[i] * d + j];
    CHECK(ok);
    CHECK(cge_embed_gather(tb, CGE_DTYPE_BF16, vocab, d, ids, 6, out) == CGE_OK);
    ok = 1;
    for (int i = 0; i < 6; i++)
        for (int64_t j = 0; j < d; j++) ok &= out[i * d + j] == cge_bf16_to_f32(tb[ids[i] * d + j]);
    CHECK(ok);
    int32_t bad1[2] = {3, 50}, bad2[2] = {-1, 0};
    CHECK(cge_embed_gather(tab, CGE_DTYPE_F32, vocab, d, bad1, 2, out) == CGE_ERR_INVALID_VALUE);
    CHECK(strstr(cge_errmsg(), "50") != NULL);
    CHECK(cge_embed_gather(tab, CGE_DTYPE_F32, vocab, d, bad2, 2, out) == CGE_ERR_INVALID_VALUE);
    CHECK(cge_embed_gather(tab, CGE_DTYPE_I8, vocab, d, ids, 2, out) == CGE_ERR_UNSUPPORTED);
    free(tab), free(tb), free(th), free(out);
}

/* ---- attention -------------------------------------------------------------------------------- */
static void attn_ref(const struct cge_attn *a, const float *q, int64_t ldq, const float *k,
                     int64_t ldk, const float *v, int64_t ldv, double *out, int64_t ldo) {
    int64_t L = a->n_seq;
    double *s = malloc((size_t)L * sizeof(double));
    for (int64_t b = 0; b < a->n_batch; b++) {
        int64_t len = a->len ? a->len[b] : L;
        for (int h = 0; h < a->n_head; h++) {
            int kh = h / (a->n_head / a->n_kv_head);
            for (int64_t i = 0; i < len; i++) {
                double m = -INFINITY;
                for (int64_t j = 0; j < L; j++) {
                    int masked = j >= len || (a->causal && j > i) ||
                                 (a->window > 0 && i - j >= a->window);
                    if (masked) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    double dot = 0;
                    for (int c = 0; c < a->d_head; c++)
                        dot += (double)q[(b * L + i) * ldq + h * a->d_head + c] *
                               k[(b * L + j) * ldk + kh * a->d_head + c];
                    s[j] = a->scale * dot + (a->bias ? a->bias[(h * L + i) * L + j] : 0.0);
                    m = fmax(m, s[j]);
                }
                double sum = 0;
                for (int64_t j = 0; j < L; j++) {
                    s[j] = s[j] == -INFINITY ? 0 : exp(s[j] - m);
                    sum += s[j];
                }
                for (int c = 0; c < a->d_head; c++) {
                    double o = 0;
                    for (int64_t j = 0; j < L; j++)
                        o += s[j] * v[(b * L + j) * ldv + kh * a->d_head + c];
                    out[(b * L + i) * ldo + h * a->d_head + c] = o / sum;
                }
            }
        }
    }
    free(s);
}

static double g_attn_worst;

static void attn_case(const char *name, int64_t B, int64_t L, int H, int KVH, int dh,
                      const int64_t *len, int use_bias, int causal, int64_t window) {
    /* q, k, v interleaved in one (B·L, ld) buffer as a fused QKV projection would leave them */
    int64_t dq = (int64_t)H * dh, dkv = (int64_t)KVH * dh, ld = dq + 2 * dkv + 3;
    float *qkv = rnd(B * L * ld, 2.0f);
    float *bias = use_bias ? rnd((int64_t)H * L * L, 3.0f) : NULL;
    int64_t ldo = dq + 5;
    float *out = calloc((size_t)(B * L * ldo), sizeof(float));
    double *ref = calloc((size_t)(B * L * ldo), sizeof(double));
    struct cge_attn a = {.n_batch = B, .n_seq = L, .n_head = H, .n_kv_head = KVH, .d_head = dh,
                         .scale = 1.0f / sqrtf((float)dh), .len = len, .bias = bias,
                         .causal = causal, .window = window};
    CHECK(cge_attention(&a, qkv, ld, qkv + dq, ld, qkv + dq + dkv, ld, out, ldo) == CGE_OK);
    attn_ref(&a, qkv, ld, qkv + dq, ld, qkv + dq + dkv, ld, ref, ldo);
    double worst = 0, num = 0, den = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = len ? len[b] : L;
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < dq; c++) {
                double r = ref[(b * L + i) * ldo + c], o = out[(b * L + i) * ldo + c];
                worst = fmax(worst, fabs(o - r));
                num += (o - r) * (o - r);
                den += r * r;
            }
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    CHECK_MSG(rel < 1e-5 && worst < 1e-4, "attention %s: rel err %g, max abs %g", name, rel,
              worst);
    g_attn_worst = rel > g_attn_worst ? rel : g_attn_worst;
    free(qkv), free(bias), free(out), free(ref);
}

static void test_attention(void) {
    int64_t len3[3] = {17, 5, 1};
    attn_case("plain", 2, 16, 4, 4, 8, NULL, 0, 0, 0);
    attn_case("padding", 3, 17, 3, 3, 16, len3, 0, 0, 0);
    attn_case("bias+padding", 3, 17, 2, 2, 8, len3, 1, 0, 0);
    attn_case("causal", 2, 20, 2, 2, 8, NULL, 0, 1, 0);
    attn_case("causal+padding", 3, 17, 2, 2, 8, len3, 0, 1, 0);
    attn_case("sliding window", 2, 24, 4, 4, 8, NULL, 0, 1, 5);
    attn_case("gqa", 2, 12, 8, 2, 16, NULL, 0, 0, 0);
    attn_case("gqa+window+padding", 3, 17, 4, 1, 8, len3, 0, 1, 4);
    attn_case("bert-like", 4, 64, 12, 12, 64, NULL, 0, 0, 0);
    int64_t len2[2] = {150, 77};
    attn_case("d_head 72, long, padded", 2, 150, 2, 2, 72, len2, 1, 0, 0);
    attn_case("d_head 128 gqa causal window", 2, 150, 4, 2, 128, len2, 0, 1, 40);
    attn_case("d_head 32 causal, 16-multiple", 1, 64, 3, 3, 32, NULL, 0, 1, 0);
    attn_case("d_head 5, odd", 2, 9, 2, 1, 5, NULL, 1, 1, 0);
    printf("  attention: worst rel err to double over the cases %.3g\n", g_attn_worst);
    /* padded query rows are written (zeros here), padded keys cannot leak: poisoning them must
     * not change the real rows */
    int64_t B = 2, L = 8, dh = 4, len[2] = {3, 8};
    float *q = rnd(B * L * dh, 1.0f), *k = rnd(B * L * dh, 1.0f), *v = rnd(B * L * dh, 1.0f);
    float *o1 = malloc((size_t)(B * L * dh) * 4), *o2 = malloc((size_t)(B * L * dh) * 4);
    struct cge_attn a = {.n_batch = B, .n_seq = L, .n_head = 1, .n_kv_head = 1, .d_head = 4,
                         .scale = 0.5f, .len = len};
    CHECK(cge_attention(&a, q, dh, k, dh, v, dh, o1, dh) == CGE_OK);
    for (int64_t j = 3; j < L; j++)
        for (int c = 0; c < dh; c++) k[j * dh + c] = NAN, v[j * dh + c] = NAN;
    for (int i = 0; i < B * L * dh; i++) o2[i] = NAN;
    CHECK(cge_attention(&a, q, dh, k, dh, v, dh, o2, dh) == CGE_OK);
    int ok = 1;
    for (int i = 0; i < B * L * dh; i++) ok &= !isnan(o2[i]);
    for (int i = 0; i < 3 * dh; i++) ok &= o1[i] == o2[i];
    CHECK(ok);
    /* bad shapes */
    struct cge_attn bad = a;
    bad.n_head = 3, bad.n_kv_head = 2;
    CHECK(cge_attention(&bad, q, 12, k, 12, v, 12, o1, 12) == CGE_ERR_INVALID_DIM);
    free(q), free(k), free(v), free(o1), free(o2);
}

/* ---- rope ------------------------------------------------------------------------------------- */
static void test_rope(void) {
    int64_t n_tok = 9, H = 3, dh = 16, ld = H * dh + 7;
    float *x = rnd(n_tok * ld, 1.0f);
    int32_t pos[9] = {0, 1, 2, 3, 100, 511, 4095, 7, 20000};
    double *ref = malloc((size_t)(n_tok * ld) * sizeof(double));
    float theta = 10000.0f;
    for (int64_t t = 0; t < n_tok; t++) {
        for (int64_t c = 0; c < ld; c++) ref[t * ld + c] = x[t * ld + c];
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < dh / 2; i++) {
                /* the frequency as HF computes it, in float32; the rotation in double */
                float inv = 1.0f / powf(theta, (float)(2 * i) / (float)dh);
                double f = (double)(float)((float)pos[t] * inv);
                double x0 = x[t * ld + h * dh + i], x1 = x[t * ld + h * dh + i + dh / 2];
                ref[t * ld + h * dh + i] = x0 * cos(f) - x1 * sin(f);
                ref[t * ld + h * dh + i + dh / 2] = x1 * cos(f) + x0 * sin(f);
            }
        }
    }
    cge_rope(x, n_tok, ld, (int)H, (int)dh, pos, theta);
    double worst = 0;
    for (int64_t i = 0; i < n_tok * ld; i++) worst = fmax(worst, fabs(x[i] - ref[i]));
    CHECK_MSG(worst < 2e-6, "rope max abs err %g", worst);
    free(x), free(ref);
}

/* ---- convolutions ----------------------------------------------------------------------------- */
static void conv1d_case(int64_t c_in, int64_t t_in, int64_t c_out, int64_t kk, int64_t s,
                        int64_t pad, int with_bias) {
    float *x = rnd(c_in * t_in, 1.0f), *w = rnd(c_out * c_in * kk, 0.5f);
    float *b = with_bias ? rnd(c_out, 1.0f) : NULL;
    int64_t t_out = (t_in + 2 * pad - kk) / s + 1;
    float *y = malloc((size_t)(c_out * t_out) * sizeof(float));
    double *ref = malloc((size_t)(c_out * t_out) * sizeof(double));
    for (int64_t co = 0; co < c_out; co++)
        for (int64_t t = 0; t < t_out; t++) {
            double acc = b ? b[co] : 0;
            for (int64_t ci = 0; ci < c_in; ci++)
                for (int64_t j = 0; j < kk; j++) {
                    int64_t src = t * s + j - pad;
                    if (src >= 0 && src < t_in)
                        acc += (double)w[(co * c_in + ci) * kk + j] * x[ci * t_in + src];
                }
            ref[co * t_out + t] = acc;
        }
    CHECK(cge_conv1d(x, c_in, t_in, w, b, c_out, kk, s, pad, y) == CGE_OK);
    double num = 0, den = 0;
    for (int64_t i = 0; i < c_out * t_out; i++) {
        num += (y[i] - ref[i]) * (y[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    CHECK_MSG(sqrt(num / den) < 1e-5, "conv1d (%lld,%lld,k%lld,s%lld,p%lld) rel err %g",
              (long long)c_in, (long long)t_in, (long long)kk, (long long)s, (long long)pad,
              sqrt(num / den));
    free(x), free(w), free(b), free(y), free(ref);
}

static void test_conv(void) {
    conv1d_case(8, 50, 12, 3, 1, 1, 1);  /* Whisper conv1 */
    conv1d_case(12, 50, 12, 3, 2, 1, 1); /* Whisper conv2 */
    conv1d_case(5, 33, 7, 4, 3, 0, 0);
    conv1d_case(3, 7, 2, 5, 1, 2, 1);
    conv1d_case(2, 5, 3, 7, 2, 3, 1);  /* padding wider than the stride */
    conv1d_case(2, 4, 2, 2, 1, 3, 0);  /* outputs whose taps are all padding */
    conv1d_case(3, 9, 2, 3, 4, 2, 1);  /* stride larger than the kernel */
    float one = 1;
    CHECK(cge_conv1d(&one, 1, 2, &one, NULL, 1, 5, 1, 0, &one) == CGE_ERR_INVALID_DIM);
    CHECK(cge_conv1d(&one, 1, 2, &one, NULL, 1, 1, 0, 0, &one) == CGE_ERR_INVALID_VALUE);

    int64_t c = 3, h = 34, w = 30, p = 8, d = 10; /* remainders dropped, as torch does */
    int64_t gh = h / p, gw = w / p;
    float *img = rnd(c * h * w, 1.0f), *wt = rnd(d * c * p * p, 0.2f);
    float *out = malloc((size_t)(gh * gw * d) * sizeof(float));
    double *ref = malloc((size_t)(gh * gw * d) * sizeof(double));
    for (int64_t py = 0; py < gh; py++)
        for (int64_t px = 0; px < gw; px++)
            for (int64_t o = 0; o < d; o++) {
                double acc = 0;
                for (int64_t ci = 0; ci < c; ci++)
                    for (int64_t ky = 0; ky < p; ky++)
                        for (int64_t kx = 0; kx < p; kx++)
                            acc += (double)wt[((o * c + ci) * p + ky) * p + kx] *
                                   img[(ci * h + py * p + ky) * w + px * p + kx];
                ref[(py * gw + px) * d + o] = acc;
            }
    CHECK(cge_patch_conv(img, c, h, w, wt, d, p, out) == CGE_OK);
    double num = 0, den = 0;
    for (int64_t i = 0; i < gh * gw * d; i++) {
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    CHECK_MSG(sqrt(num / den) < 1e-5, "patch_conv rel err %g", sqrt(num / den));
    CHECK(cge_patch_conv(img, c, 4, 4, wt, d, p, out) == CGE_ERR_INVALID_VALUE);
    free(img), free(wt), free(out), free(ref);
}

/* ---- GEMM and linear layers ------------------------------------------------------------------- */
static void test_sgemm(void) {
    int64_t M = 7, N = 9, K = 11;
    float *A = rnd(M * K, 1.0f), *B = rnd(K * N, 1.0f), *C = rnd(M * N, 1.0f);
    double *ref = malloc((size_t)(M * N) * sizeof(double));
    /* C = 0.5·Aᵀᵀ·Bᵀᵀ with A stored transposed (K,M) and B stored transposed (N,K), + 2·C */
    float *At = malloc((size_t)(M * K) * 4), *Bt = malloc((size_t)(K * N) * 4);
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) Bt[j * K + k] = B[k * N + j];
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) acc += (double)A[i * K + k] * B[k * N + j];
            ref[i * N + j] = 0.5 * acc + 2.0 * C[i * N + j];
        }
    float *C2 = malloc((size_t)(M * N) * 4);
    memcpy(C2, C, (size_t)(M * N) * 4);
    cge_sgemm(0, 0, M, N, K, 0.5f, A, K, B, N, 2.0f, C, N);
    cge_sgemm(1, 1, M, N, K, 0.5f, At, M, Bt, K, 2.0f, C2, N);
    CHECK(max_rel(C, ref, M * N, 1e-2) < 1e-5);
    CHECK(max_rel(C2, ref, M * N, 1e-2) < 1e-5);
    free(A), free(B), free(C), free(C2), free(At), free(Bt), free(ref);
}

static void linear_ref(const float *w, const float *b, const float *x, int64_t m, int64_t n_out,
                       int64_t n_in, double *ref) {
    for (int64_t r = 0; r < m; r++)
        for (int64_t o = 0; o < n_out; o++) {
            double acc = b ? b[o] : 0;
            for (int64_t i = 0; i < n_in; i++) acc += (double)x[r * n_in + i] * w[o * n_in + i];
            ref[r * n_out + o] = acc;
        }
}

static void test_linear(void) {
    const int64_t shapes[][3] = {{1, 5, 3}, {37, 64, 48}, {128, 96, 200}, {5, 1, 1}, {300, 130, 70}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t m = shapes[si][0], n_out = shapes[si][1], n_in = shapes[si][2];
        float *w = rnd(n_out * n_in, 0.1f), *b = rnd(n_out, 1.0f), *x = rnd(m * n_in, 1.0f);
        double *ref = malloc((size_t)(m * n_out) * sizeof(double));
        float *yref = malloc((size_t)(m * n_out) * sizeof(float));
        float *y = malloc((size_t)(m * n_out) * sizeof(float));
        linear_ref(w, b, x, m, n_out, n_in, ref);
        for (int64_t i = 0; i < m * n_out; i++) yref[i] = (float)ref[i];

        struct cge_linear l;
        CHECK(cge_linear_init(&l, w, CGE_DTYPE_F32, b, n_out, n_in, CGE_DTYPE_F32) == CGE_OK);
        CHECK(cge_linear_forward(&l, x, m, y) == CGE_OK);
        double e = th_rel_err(y, yref, (size_t)(m * n_out));
        CHECK_MSG(e < 1e-5, "linear fp32 (%lld,%lld,%lld) rel err %g", (long long)m,
                  (long long)n_out, (long long)n_in, e);
        CHECK(cge_linear_bytes(&l) >= (size_t)(n_out * n_in * 4));
        cge_linear_deinit(&l);

        /* fp32 storage from bf16 and f16 sources equals the converted weights exactly-ish */
        uint16_t *wb = malloc((size_t)(n_out * n_in) * 2);
        float *wbf = malloc((size_t)(n_out * n_in) * 4);
        for (int64_t i = 0; i < n_out * n_in; i++) {
            wb[i] = cge_f32_to_bf16(w[i]);
            wbf[i] = cge_bf16_to_f32(wb[i]);
        }
        double *ref2 = malloc((size_t)(m * n_out) * sizeof(double));
        float *yref2 = malloc((size_t)(m * n_out) * sizeof(float));
        linear_ref(wbf, NULL, x, m, n_out, n_in, ref2);
        for (int64_t i = 0; i < m * n_out; i++) yref2[i] = (float)ref2[i];
        CHECK(cge_linear_init(&l, wb, CGE_DTYPE_BF16, NULL, n_out, n_in, CGE_DTYPE_F32) == CGE_OK);
        CHECK(cge_linear_forward(&l, x, m, y) == CGE_OK);
        e = th_rel_err(y, yref2, (size_t)(m * n_out));
        CHECK_MSG(e < 1e-5, "linear fp32 from bf16 source rel err %g", e);
        cge_linear_deinit(&l);

        if (n_in >= 16) { /* quantized paths on shapes with enough terms to average */
            CHECK(cge_linear_init(&l, w, CGE_DTYPE_F32, b, n_out, n_in, CGE_DTYPE_BF16) == CGE_OK);
            CHECK(cge_linear_forward(&l, x, m, y) == CGE_OK);
            double c = th_cosine(y, yref, (size_t)(m * n_out));
            CHECK_MSG(c >= 0.9999, "linear bf16 cosine %.7f", c);
            cge_linear_deinit(&l);
            CHECK(cge_linear_init(&l, w, CGE_DTYPE_F32, b, n_out, n_in, CGE_DTYPE_I8) == CGE_OK);
            CHECK(cge_linear_forward(&l, x, m, y) == CGE_OK);
            c = th_cosine(y, yref, (size_t)(m * n_out));
            CHECK_MSG(c >= 0.999, "linear int8 cosine %.7f", c);
            cge_linear_deinit(&l);
        }
        free(w), free(b), free(x), free(ref), free(yref), free(y), free(wb), free(wbf), free(ref2),
            free(yref2);
    }
    /* errors, and deinit of a zeroed struct */
    struct cge_linear z;
    memset(&z, 0, sizeof z);
    cge_linear_deinit(&z);
    cge_linear_deinit(NULL);
    float w1 = 1;
    CHECK(cge_linear_init(&z, &w1, CGE_DTYPE_I8, NULL, 1, 1, CGE_DTYPE_F32) == CGE_ERR_UNSUPPORTED);
    CHECK(cge_linear_init(&z, &w1, CGE_DTYPE_F32, NULL, 0, 1, CGE_DTYPE_F32) == CGE_ERR_INVALID_DIM);
    CHECK(cge_linear_init(&z, &w1, CGE_DTYPE_F32, NULL, 1, 1, CGE_DTYPE_F16) == CGE_ERR_UNSUPPORTED);
    CHECK(cge_linear_forward(&z, &w1, 1, &w1) == CGE_ERR_NOT_INITIALIZED);
}

/* A BERT-sized layer: storage sizes, accuracy of the quantized paths, and the primitive cache
 * under many distinct M (more than it holds) and under concurrent forwards from several threads. */
#define N_FWD_M 5
static const int64_t fwd_ms[N_FWD_M] = {1, 7, 23, 40, 16};

struct fwd_job {
    const struct cge_linear *l;
    const float *x;
    float *const *yref; /* (N_FWD_M) single-threaded outputs for fwd_ms */
    int64_t n_out;
    int bad;
};

static void *fwd_thread(void *arg) {
    struct fwd_job *j = arg;
    float *y = malloc((size_t)(40 * j->n_out) * sizeof(float));
    for (int it = 0; it < 20; it++) {
        int k = it % N_FWD_M;
        int64_t m = fwd_ms[k];
        if (cge_linear_forward(j->l, j->x, m, y) != CGE_OK) j->bad++;
        if (memcmp(y, j->yref[k], (size_t)(m * j->n_out) * sizeof(float)) != 0) j->bad++;
    }
    free(y);
    return NULL;
}

static void test_linear_big(void) {
    int64_t m = 40, n_out = 1024, n_in = 768;
    float *w = rnd(n_out * n_in, 0.05f), *b = rnd(n_out, 0.5f), *x = rnd(m * n_in, 1.0f);
    /* give activations an outlier channel and a shifted mean, as real hidden states have */
    for (int64_t r = 0; r < m; r++) x[r * n_in + 5] *= 8.0f, x[r * n_in + 9] += 0.7f;
    uint16_t *wh = malloc((size_t)(n_out * n_in) * 2);
    for (int64_t i = 0; i < n_out * n_in; i++) wh[i] = cge_f32_to_bf16(w[i]);
    double *ref = malloc((size_t)(m * n_out) * sizeof(double));
    float *yref = malloc((size_t)(m * n_out) * sizeof(float));
    float *y = malloc((size_t)(m * n_out) * sizeof(float));
    linear_ref(w, b, x, m, n_out, n_in, ref);
    for (int64_t i = 0; i < m * n_out; i++) yref[i] = (float)ref[i];
    const enum cge_dtype dts[3] = {CGE_DTYPE_F32, CGE_DTYPE_BF16, CGE_DTYPE_I8};
    const double min_cos[3] = {0.9999999, 0.9999, 0.999};
    for (int d = 0; d < 3; d++) {
        struct cge_linear l;
        CHECK(cge_linear_init(&l, w, CGE_DTYPE_F32, b, n_out, n_in, dts[d]) == CGE_OK);
        size_t per = d == 0 ? 4 : d == 1 ? 2 : 1;
        size_t bytes = cge_linear_bytes(&l);
        CHECK_MSG(bytes >= (size_t)(n_out * n_in) * per &&
                      bytes < (size_t)(n_out * n_in) * per * 9 / 8 + 65536,
                  "%s layer holds %zu bytes", cge_dtype_str(dts[d]), bytes);
        CHECK(cge_linear_forward(&l, x, m, y) == CGE_OK);
        double c = th_cosine(y, yref, (size_t)(m * n_out));
        double e = th_rel_err(y, yref, (size_t)(m * n_out));
        CHECK_MSG(c >= min_cos[d], "%s cosine %.8f", cge_dtype_str(dts[d]), c);
        if (d == 0) CHECK_MSG(e < 1e-5, "fp32 rel err %g", e);
        printf("  linear 40×768→1024 %s: cosine to double %.8f, rel err %.3g\n",
               cge_dtype_str(dts[d]), c, e);
        /* each m alone, then many distinct m (cache eviction), then again: same results */
        float *ym = malloc((size_t)(m * n_out) * sizeof(float));
        int same = 1;
        for (int64_t mm = 1; mm <= m; mm++) {
            CHECK(cge_linear_forward(&l, x, mm, ym) == CGE_OK);
            /* rows do not depend on the batch they are in (per-row quantization) */
            double er = th_rel_err(ym, y, (size_t)(mm * n_out));
            same &= er < 1e-6;
        }
        CHECK_MSG(same, "%s: rows depend on m", cge_dtype_str(dts[d]));
        /* concurrent forwards on one layer (cache misses and evictions among them): each
         * equals the single-threaded run for its m */
        float *refs[N_FWD_M];
        for (int k = 0; k < N_FWD_M; k++) {
            refs[k] = malloc((size_t)(fwd_ms[k] * n_out) * sizeof(float));
            CHECK(cge_linear_forward(&l, x, fwd_ms[k], refs[k]) == CGE_OK);
        }
        for (int64_t mm = 41; mm < 50; mm++) /* push fwd_ms out of the cache */
            CHECK(cge_linear_forward(&l, x, mm - 40, ym) == CGE_OK);
        struct fwd_job jobs[3];
        pthread_t th[3];
        int bad = 0;
        for (int t = 0; t < 3; t++) jobs[t] = (struct fwd_job){&l, x, refs, n_out, 0};
        for (int t = 0; t < 3; t++) pthread_create(&th[t], NULL, fwd_thread, &jobs[t]);
        for (int t = 0; t < 3; t++) {
            pthread_join(th[t], NULL);
            bad += jobs[t].bad;
        }
        for (int k = 0; k < N_FWD_M; k++) free(refs[k]);
        CHECK_MSG(bad == 0, "%s: %d concurrent forwards wrong", cge_dtype_str(dts[d]), bad);
        free(ym);
        cge_linear_deinit(&l);
        /* the same layer from a bf16 checkpoint */
        CHECK(cge_linear_init(&l, wh, CGE_DTYPE_BF16, b, n_out, n_in, dts[d]) == CGE_OK);
        CHECK(cge_linear_forward(&l, x, m, y) == CGE_OK);
        c = th_cosine(y, yref, (size_t)(m * n_out));
        CHECK_MSG(c >= (d == 0 ? 0.9999 : min_cos[d]), "%s from bf16 cosine %.8f",
                  cge_dtype_str(dts[d]), c);
        cge_linear_deinit(&l);
    }
    free(w), free(b), free(x), free(wh), free(ref), free(yref), free(y);
}

/* Every allocation of the ops, failed in turn: a clean CGE_ERR_NOMEM, no leak (ASan checks). */
static void test_oom(void) {
    int64_t n_out = 48, n_in = 40, m = 300;
    float *w = rnd(n_out * n_in, 0.1f), *b = rnd(n_out, 0.1f), *x = rnd(m * n_in * 40, 1.0f);
    float *y = malloc((size_t)(m * n_out * 40) * sizeof(float));
    uint16_t *wh = malloc((size_t)(n_out * n_in) * 2);
    for (int64_t i = 0; i < n_out * n_in; i++) wh[i] = cge_f32_to_bf16(w[i]);
    const enum cge_dtype dts[3] = {CGE_DTYPE_F32, CGE_DTYPE_BF16, CGE_DTYPE_I8};
    int bad = 0, ok = 0;
    for (int d = 0; d < 3; d++) {
        for (long k = 0; k < 64; k++) {
            struct cge_linear l;
            cge__fail_alloc_after(k);
            enum cge_status st = cge_linear_init(&l, wh, CGE_DTYPE_BF16, b, n_out, n_in, dts[d]);
            if (st == CGE_OK) st = cge_linear_forward(&l, x, m + 1 + k * 37, y); /* new M, buffers */
            cge__fail_alloc_after(-1);
            cge_linear_deinit(&l);
            if (st == CGE_OK) {
                ok++;
                break;
            }
            if (st != CGE_ERR_NOMEM) bad++;
        }
    }
    struct cge_attn a = {.n_batch = 2, .n_seq = 30, .n_head = 2, .n_kv_head = 2, .d_head = 20,
                         .scale = 0.2f};
    for (long k = 0; k < 8; k++) {
        cge__fail_alloc_after(k);
        enum cge_status st = cge_attention(&a, x, 40, x, 40, x, 40, y, 40);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) {
            ok++;
            break;
        }
        if (st != CGE_ERR_NOMEM) bad++;
    }
    for (long k = 0; k < 8; k++) {
        cge__fail_alloc_after(k);
        enum cge_status st = cge_conv1d(x, 4, 100, w, b, 6, 3, 2, 1, y);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) {
            ok++;
            break;
        }
        if (st != CGE_ERR_NOMEM) bad++;
    }
    for (long k = 0; k < 8; k++) {
        cge__fail_alloc_after(k);
        enum cge_status st = cge_patch_conv(x, 3, 16, 16, w, 2, 4, y);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) {
            ok++;
            break;
        }
        if (st != CGE_ERR_NOMEM) bad++;
    }
    CHECK_MSG(bad == 0 && ok == 6, "%d wrong statuses, %d of 6 recovered", bad, ok);
    free(w), free(b), free(x), free(y), free(wh);
}

static void test_threads(void) {
    int n0 = cge_get_threads();
    CHECK(n0 >= 1);
    cge_set_threads(1);
    CHECK(cge_get_threads() == 1);
    test_layernorm();
    test_attention();
    cge_set_threads(0); /* back to the default */
    CHECK(cge_get_threads() == n0);
}

/* Non-finite values in int8 weights or activations: defined results, no crash, no UB (the
 * quantizers convert floats to integers, where NaN would be undefined). K = 21 exercises both
 * the vector body and the scalar tail. */
static void test_linear_int8_nonfinite(void) {
    enum { N = 5, K = 21, M = 3 };
    float w[N * K], x[M * K], y[M * N];
    uint64_t s = 77;
    for (int i = 0; i < N * K; i++) w[i] = th_randf(&s);
    for (int i = 0; i < M * K; i++) x[i] = th_randf(&s);
    w[3] = NAN;
    w[K + 20] = INFINITY;
    x[1] = NAN;
    x[K + 20] = -INFINITY;
    x[2 * K] = NAN;
    x[2 * K + 17] = NAN;
    struct cge_linear l;
    enum cge_status st = cge_linear_init(&l, w, CGE_DTYPE_F32, NULL, N, K, CGE_DTYPE_I8);
    CHECK(st == CGE_OK || st == CGE_ERR_INVALID_VALUE);
    if (st == CGE_OK) {
        CHECK(cge_linear_forward(&l, x, M, y) == CGE_OK);
        cge_linear_deinit(&l);
    }
}

int main(void) {
    RUN(test_layernorm);
    RUN(test_rmsnorm);
    RUN(test_softmax_l2);
    RUN(test_activations);
    RUN(test_convert);
    RUN(test_gather);
    RUN(test_attention);
    RUN(test_rope);
    RUN(test_conv);
    RUN(test_sgemm);
    RUN(test_linear);
    RUN(test_linear_big);
    RUN(test_linear_int8_nonfinite);
    RUN(test_oom);
    RUN(test_threads);
    return test_report("tensor_ops");
}
