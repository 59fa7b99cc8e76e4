/*
 * test_tensor_backend.c: the backend seam (src/tensor/backend.h).
 *
 * 1. Every entry of the CPU backend against the direct ops.h call on the same random inputs:
 *    exact equality (the CPU backend is a shim; any difference is a bug, not rounding).
 * 2. Opening by name: cpu, cuda / cuda:N (without CUDA compiled in: CGE_ERR_UNSUPPORTED with the
 *    reason), malformed names, the CPU fallback of cge_backend_open_or_cpu, the description.
 * 3. The ported families (shared encoder layer, src/models/encoder.c) through the model API with
 *    each backend name: "cpu", "auto" and an unavailable "cuda" give exactly the default's
 *    vectors; on a CUDA build with a device, "cuda" is compared with the CPU (fp32: rel ≤ 1e-4).
 *    The fixtures' HF references themselves are checked by test_models_*.
 */
#include "core/core.h"
#include "models/model.h"
#include "tensor/backend.h"
#include "tensor/ops.h"
#include "testhelp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_seed = 0x2545f4914f6cdd1dull;

static float *rnd(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = th_randf(&g_seed) * scale;
    return p;
}

static float *fdup(const float *x, int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}

static int same(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* ---- 1. the CPU backend's entries ----------------------------------------------------------- */

static void test_cpu_memory(void) {
    struct cge_backend *be = cge_backend_cpu();
    CHECK(be && !strcmp(be->name, "cpu"));
    CHECK(be == cge_backend_cpu()); /* one static table */
    float *d = be->alloc(be, 1000 * sizeof(float));
    CHECK(d != NULL && ((uintptr_t)d & 63) == 0);
    float *h = rnd(1000, 1), *back = calloc(1000, sizeof(float));
    CHECK(be->to_device(be, d, h, 1000 * sizeof(float)) == CGE_OK);
    float *d2 = be->alloc(be, 1000 * sizeof(float));
    CHECK(be->copy(be, d2, d, 1000 * sizeof(float)) == CGE_OK);
    CHECK(be->to_host(be, back, d2, 1000 * sizeof(float)) == CGE_OK);
    CHECK(same(back, h, 1000));
    CHECK(be->sync(be) == CGE_OK);
    be->free(be, d);
    be->free(be, d2);
    be->free(be, NULL);
    CHECK(be->destroy == NULL);
    cge_backend_release(be); /* a no-op on the static CPU backend */
    CHECK(cge_backend_cpu()->alloc != NULL);
    free(h);
    free(back);
}

static void test_cpu_linear(void) {
    struct cge_backend *be = cge_backend_cpu();
    const int64_t m = 7, n_in = 48, n_out = 40;
    static const enum cge_dtype st[3] = {CGE_DTYPE_F32, CGE_DTYPE_BF16, CGE_DTYPE_I8};
    static const enum cge_be_act acts[7] = {CGE_BE_ACT_NONE,       CGE_BE_ACT_GELU_ERF,
                                            CGE_BE_ACT_GELU_TANH,  CGE_BE_ACT_QUICK_GELU,
                                            CGE_BE_ACT_SILU,       CGE_BE_ACT_RELU,
                                            CGE_BE_ACT_TANH};
    static void (*const ref_act[7])(float *, int64_t) = {NULL,           cge_gelu_erf,
                                                          cge_gelu_tanh,  cge_quick_gelu,
                                                          cge_silu,       cge_relu,
                                                          cge_tanh_inplace};
    float *w = rnd(n_out * n_in, 0.2f), *b = rnd(n_out, 0.5f), *x = rnd(m * n_in, 1.0f);
    float *y1 = malloc((size_t)(m * n_out) * sizeof(float)), *y2 = malloc((size_t)(m * n_out) * sizeof(float));
    for (int s = 0; s < 3; s++) {
        struct cge_linear ref;
        struct cge_be_linear *l = NULL;
        CHECK(cge_linear_init(&ref, w, CGE_DTYPE_F32, b, n_out, n_in, st[s]) == CGE_OK);
        CHECK(be->linear_init(be, &l, w, CGE_DTYPE_F32, b, n_out, n_in, st[s]) == CGE_OK);
        if (!l) continue;
        CHECK(be->linear_bytes(l) == cge_linear_bytes(&ref));
        for (int a = 0; a < 7; a++) {
            CHECK(cge_linear_forward(&ref, x, m, y1) == CGE_OK);
            if (ref_act[a]) ref_act[a](y1, m * n_out);
            CHECK(be->linear(be, l, x, m, y2, acts[a]) == CGE_OK);
            CHECK_MSG(same(y1, y2, m * n_out), "linear %s act %d differs", cge_dtype_str(st[s]), a);
        }
        be->linear_free(be, l);
        cge_linear_deinit(&ref);
    }
    be->linear_free(be, NULL);
    /* a bad storage dtype fails as cge_linear_init does, and leaves nothing behind */
    static int sentinel;
    struct cge_be_linear *l = (struct cge_be_linear *)&sentinel;
    CHECK(be->linear_init(be, &l, w, CGE_DTYPE_F32, b, n_out, n_in, CGE_DTYPE_I32) != CGE_OK);
    CHECK(l == NULL);
    free(w);
    free(b);
    free(x);
    free(y1);
    free(y2);
}

static void test_cpu_elementwise(void) {
    struct cge_backend *be = cge_backend_cpu();
    const int64_t rows = 5, d = 67, n = rows * d;
    float *x = rnd(n, 3), *w = rnd(d, 1), *bb = rnd(d, 1), *y = rnd(n, 2);
    float *a = fdup(x, n), *b = fdup(x, n);
    cge_layernorm(a, rows, d, w, bb, 1e-5f);
    CHECK(be->layernorm(be, b, rows, d, w, bb, 1e-5f) == CGE_OK && same(a, b, n));
    memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
    cge_rmsnorm(a, rows, d, w, 1e-6f);
    CHECK(be->rmsnorm(be, b, rows, d, w, 1e-6f) == CGE_OK && same(a, b, n));
    memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
    cge_rmsnorm(a, rows, d, NULL, 1e-6f);
    CHECK(be->rmsnorm(be, b, rows, d, NULL, 1e-6f) == CGE_OK && same(a, b, n));
    memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
    cge_softmax(a, rows, d);
    CHECK(be->softmax(be, b, rows, d) == CGE_OK && same(a, b, n));
    static const enum cge_be_act acts[6] = {CGE_BE_ACT_GELU_ERF, CGE_BE_ACT_GELU_TANH,
                                            CGE_BE_ACT_QUICK_GELU, CGE_BE_ACT_SILU,
                                            CGE_BE_ACT_RELU, CGE_BE_ACT_TANH};
    static void (*const ref_act[6])(float *, int64_t) = {cge_gelu_erf, cge_gelu_tanh,
                                                          cge_quick_gelu, cge_silu, cge_relu,
                                                          cge_tanh_inplace};
    for (int k = 0; k < 6; k++) {
        memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
        ref_act[k](a, n);
        CHECK_MSG(be->act(be, acts[k], b, n) == CGE_OK && same(a, b, n), "act %d", k);
    }
    memcpy(b, x, (size_t)n * 4);
    CHECK(be->act(be, CGE_BE_ACT_NONE, b, n) == CGE_OK && same(x, b, n));
    CHECK(be->act(be, (enum cge_be_act)99, b, n) == CGE_ERR_INVALID_VALUE);
    memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
    cge_add(a, y, n);
    CHECK(be->add(be, b, y, n) == CGE_OK && same(a, b, n));
    memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
    cge_add_row(a, rows, d, bb);
    CHECK(be->add_row(be, b, rows, d, bb) == CGE_OK && same(a, b, n));
    memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
    cge_mul(a, y, n);
    CHECK(be->mul(be, b, y, n) == CGE_OK && same(a, b, n));
    memcpy(a, x, (size_t)n * 4), memcpy(b, x, (size_t)n * 4);
    cge_scale(a, n, 0.37f);
    CHECK(be->scale(be, b, n, 0.37f) == CGE_OK && same(a, b, n));
    /* glu: x (rows, 2h) = [gate | up] → act(gate) · up, as T5 v1.1 computed it by hand */
    const int64_t h = 33;
    float *g = rnd(rows * 2 * h, 2), *g2 = fdup(g, rows * 2 * h);
    float *ya = malloc((size_t)(rows * h) * 4), *yb = malloc((size_t)(rows * h) * 4);
    for (int64_t r = 0; r < rows; r++) {
        float *gr = g + r * 2 * h;
        cge_gelu_tanh(gr, h);
        cge_mul(gr, gr + h, h);
        memcpy(ya + r * h, gr, (size_t)h * 4);
    }
    CHECK(be->glu(be, CGE_BE_ACT_GELU_TANH, g2, rows, h, yb) == CGE_OK && same(ya, yb, rows * h));
    free(g);
    free(g2);
    free(ya);
    free(yb);
    free(x);
    free(w);
    free(bb);
    free(y);
    free(a);
    free(b);
}

static void test_cpu_attention_rope_gather(void) {
    struct cge_backend *be = cge_backend_cpu();
    const int64_t B = 2, L = 9;
    const int H = 4, Hkv = 2, dh = 8;
    const int64_t ldq = H * dh + 5, ldk = Hkv * dh + 3, ldo = H * dh;
    float *q = rnd(B * L * ldq, 1), *k = rnd(B * L * ldk, 1), *v = rnd(B * L * ldk, 1);
    float *bias = rnd(H * L * L, 0.5f);
    float *o1 = calloc((size_t)(B * L * ldo), 4), *o2 = calloc((size_t)(B * L * ldo), 4);
    int64_t len[2] = {9, 6};
    for (int variant = 0; variant < 3; variant++) {
        struct cge_attn a = {.n_batch = B, .n_seq = L, .n_head = H, .n_kv_head = Hkv, .d_head = dh,
                             .scale = 0.35f, .len = len, .bias = variant == 1 ? bias : NULL,
                             .causal = variant == 2, .window = variant == 2 ? 3 : 0};
        CHECK(cge_attention(&a, q, ldq, k, ldk, v, ldk, o1, ldo) == CGE_OK);
        CHECK(be->attention(be, &a, q, ldq, k, ldk, v, ldk, o2, ldo) == CGE_OK);
        CHECK_MSG(same(o1, o2, B * L * ldo), "attention variant %d", variant);
    }
    int32_t pos[18];
    for (int i = 0; i < 18; i++) pos[i] = i % 9 + 3;
    float *r1 = fdup(q, B * L * ldq), *r2 = fdup(q, B * L * ldq);
    cge_rope(r1, B * L, ldq, H, dh, pos, 10000.0f);
    CHECK(be->rope(be, r2, B * L, ldq, H, dh, pos, 10000.0f) == CGE_OK);
    CHECK(same(r1, r2, B * L * ldq));
    /* gather from F32 and BF16 tables; an id out of range fails alike */
    const int64_t vocab = 50, d = 24;
    float *tab = rnd(vocab * d, 1);
    uint16_t *tab16 = malloc((size_t)(vocab * d) * 2);
    for (int64_t i = 0; i < vocab * d; i++) tab16[i] = cge_f32_to_bf16(tab[i]);
    int32_t ids[6] = {0, 49, 7, 7, 23, 1};
    float *e1 = malloc(6 * (size_t)d * 4), *e2 = malloc(6 * (size_t)d * 4);
    CHECK(cge_embed_gather(tab, CGE_DTYPE_F32, vocab, d, ids, 6, e1) == CGE_OK);
    CHECK(be->embed_gather(be, tab, CGE_DTYPE_F32, vocab, d, ids, 6, e2) == CGE_OK);
    CHECK(same(e1, e2, 6 * d));
    CHECK(cge_embed_gather(tab16, CGE_DTYPE_BF16, vocab, d, ids, 6, e1) == CGE_OK);
    CHECK(be->embed_gather(be, tab16, CGE_DTYPE_BF16, vocab, d, ids, 6, e2) == CGE_OK);
    CHECK(same(e1, e2, 6 * d));
    ids[2] = 50;
    CHECK(be->embed_gather(be, tab, CGE_DTYPE_F32, vocab, d, ids, 6, e2) == CGE_ERR_INVALID_VALUE);
    free(q);
    free(k);
    free(v);
    free(bias);
    free(o1);
    free(o2);
    free(r1);
    free(r2);
    free(tab);
    free(tab16);
    free(e1);
    free(e2);
}

/* ---- 2. names, errors, description ---------------------------------------------------------- */

#ifdef CGE_HAVE_CUDA
static const int have_cuda = 1;
#else
static const int have_cuda = 0;
#endif

static void test_open(void) {
    struct cge_backend *be = NULL;
    CHECK(cge_backend_open("cpu", &be) == CGE_OK && be == cge_backend_cpu());
    CHECK(cge_backend_open(NULL, &be) == CGE_OK && be == cge_backend_cpu());
    static const char *const bad[] = {"gpu", "", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda0",
                                      "cuda:1x", "auto"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        be = (struct cge_backend *)&be;
        enum cge_status st = cge_backend_open(bad[i], &be);
        CHECK_MSG(st == CGE_ERR_INVALID_VALUE && be == NULL, "'%s': %d", bad[i], st);
        CHECK(strstr(cge_errmsg(), bad[i]) != NULL);
    }
    static const char *const cuda[] = {"cuda", "cuda:0", "cuda:3"};
    for (size_t i = 0; i < sizeof cuda / sizeof *cuda; i++) {
        be = NULL;
        enum cge_status st = cge_backend_open(cuda[i], &be);
        if (!have_cuda) {
            CHECK_MSG(st == CGE_ERR_UNSUPPORTED && be == NULL, "%s: %d", cuda[i], st);
            CHECK_MSG(strstr(cge_errmsg(), "built without CUDA") != NULL, "%s", cge_errmsg());
        } else {
            /* a device, or a reason why not */
            CHECK_MSG(st == CGE_OK ? be != NULL && strcmp(be->name, "cpu") != 0
                                   : st == CGE_ERR_UNSUPPORTED && be == NULL && cge_errmsg()[0],
                      "%s: %d %s", cuda[i], st, cge_errmsg());
            cge_backend_release(be);
        }
    }
    /* the fallback: a device name that cannot be had → the CPU, a typo → an error */
    CHECK(cge_backend_open_or_cpu(NULL, &be) == CGE_OK && be == cge_backend_cpu());
    CHECK(cge_backend_open_or_cpu("auto", &be) == CGE_OK && be != NULL);
    if (!have_cuda) CHECK(be == cge_backend_cpu());
    cge_backend_release(be);
    CHECK(cge_backend_open_or_cpu("cuda:7", &be) == CGE_OK && be != NULL);
    if (!have_cuda) CHECK(be == cge_backend_cpu());
    cge_backend_release(be);
    CHECK(cge_backend_open_or_cpu("tpu", &be) == CGE_ERR_INVALID_VALUE);
    CHECK(strstr(cge_errmsg(), "tpu") != NULL);

    /* a device table must be complete: the CPU's with a destroy is; without glu and copy not */
    struct cge_backend t = *cge_backend_cpu();
    char miss[256];
    CHECK(cge__backend_missing(&t, miss, sizeof miss) == 1 && !strcmp(miss, "destroy"));
    t.destroy = (void (*)(struct cge_backend *))free;
    CHECK(cge__backend_missing(&t, miss, sizeof miss) == 0 && !miss[0]);
    t.copy = NULL;
    t.glu = NULL;
    CHECK(cge__backend_missing(&t, miss, sizeof miss) == 2 && !strcmp(miss, "copy glu"));

    char buf[2048];
    int n = cge_backend_describe(buf, sizeof buf);
    CHECK(n > 0 && (size_t)n == strlen(buf));
    CHECK(!strncmp(buf, "cpu: ", 5) && strstr(buf, " threads") && strstr(buf, "\ncuda: "));
    if (!have_cuda) CHECK(strstr(buf, "not compiled in") != NULL);
    char small[8];
    CHECK(cge_backend_describe(small, sizeof small) == n && strlen(small) == 7);
    CHECK(!strcmp(cge_backend_compiled(), have_cuda ? "cpu cuda" : "cpu"));
}

/* ---- 3. the families through each backend name ------------------------------------------------ */

struct logged {
    int warn, reason; /* WARN lines; lines that give the fallback's reason */
};
static void on_log(enum cge_log_level level, const char *msg, void *user) {
    struct logged *lg = user;
    if (level >= CGE_LOG_WARN) lg->warn++;
    if (strstr(msg, "using the cpu") && strstr(msg, "built without CUDA")) lg->reason++;
}

/* Embeds the fixture's inputs with params backend = name into out (n × dim). */
static int embed_with(const char *dir, const char *name, const struct cge_input *in, int n,
                      float **out, int *dim, const char **used) {
    struct cge_model_params p = cge_model_default_params();
    p.backend = name;
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(dir, &p, &m);
    CHECK_MSG(st == CGE_OK, "%s backend %s: %s", dir, name ? name : "NULL", cge_errmsg());
    if (st) return 0;
    *dim = cge_model_dim(m);
    *out = calloc((size_t)(n * *dim), sizeof(float));
    st = cge_model_embed(m, in, n, *out, NULL);
    CHECK_MSG(st == CGE_OK, "%s backend %s: embed: %s", dir, name ? name : "NULL", cge_errmsg());
    static char used_buf[32];
    snprintf(used_buf, sizeof used_buf, "%s", cge__model_backend(m));
    *used = used_buf;
    cge_model_free(m);
    return st == CGE_OK;
}

static void test_families(void) {
    static const int32_t ids_a[] = {1, 5, 9, 33, 7, 2}, ids_b[] = {1, 4, 2},
                         ids_c[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 2};
    struct cge_input text[3];
    memset(text, 0, sizeof text);
    text[0].ids = ids_a, text[0].n_ids = 6;
    text[1].ids = ids_b, text[1].n_ids = 3;
    text[2].ids = ids_c, text[2].n_ids = 12;
    struct cge_input img[1], aud[1];
    memset(img, 0, sizeof img);
    memset(aud, 0, sizeof aud);
    img[0].image_path = "tests/fixtures/ensemble/camera.png";
    aud[0].audio_path = "tests/fixtures/ensemble/jfk_16k.wav";
    static const struct {
        const char *dir;
        int kind; /* 0 text ids, 1 image, 2 audio */
    } cases[] = {
        {"tests/fixtures/models/bert", 0},          {"tests/fixtures/models/roberta", 0},
        {"tests/fixtures/models/mpnet", 0},         {"tests/fixtures/models/t5_gated_gelu", 0},
        {"tests/fixtures/models/t5_relu", 0},       {"tests/fixtures/e2e/clip_text/model", 0},
        {"tests/fixtures/e2e/clip_image/model", 1}, {"tests/fixtures/e2e/whisper_audio/model", 2},
    };
    struct logged lg = {0, 0};
    cge_log_set(on_log, &lg);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const struct cge_input *in = cases[c].kind == 0 ? text : cases[c].kind == 1 ? img : aud;
        const int n = cases[c].kind == 0 ? 3 : 1;
        float *ref = NULL, *got = NULL;
        int dim = 0, dim2 = 0;
        const char *used = NULL;
        if (!embed_with(cases[c].dir, NULL, in, n, &ref, &dim, &used)) continue;
        CHECK(!strcmp(used, "cpu"));
        static const char *const names[] = {"cpu", "auto", "cuda"};
        for (int k = 0; k < 3; k++) {
            if (!embed_with(cases[c].dir, names[k], in, n, &got, &dim2, &used)) continue;
            CHECK(dim2 == dim);
            if (!strcmp(used, "cpu")) {
                CHECK_MSG(same(ref, got, (int64_t)n * dim), "%s: backend %s (cpu) differs",
                          cases[c].dir, names[k]);
            } else {
                double e = th_rel_err(got, ref, (size_t)(n * dim));
                CHECK_MSG(e <= 1e-4, "%s: backend %s: rel err %.3g to the cpu", cases[c].dir, used, e);
                printf("  %s on %s: rel err %.3g to the cpu\n", cases[c].dir, used, e);
            }
            free(got);
        }
        free(ref);
    }
    cge_log_set(NULL, NULL);
    /* each fallback is logged with its reason, at WARN once per process (test_open's
     * fallbacks ran without a log function: this one may already be the quiet kind) */
    if (!have_cuda) {
        CHECK_MSG(lg.warn <= 1, "%d warnings", lg.warn);
        CHECK_MSG(lg.reason == 8, "%d fallback lines", lg.reason);
    }
    /* a misspelled backend fails the load */
    struct cge_model_params p = cge_model_default_params();
    p.backend = "cuda:zero";
    struct cge_model *m = NULL;
    CHECK(cge_model_load("tests/fixtures/models/bert", &p, &m) == CGE_ERR_INVALID_VALUE);
    CHECK(m == NULL && strstr(cge_errmsg(), "cuda:zero") != NULL);
}

int main(void) {
    test_cpu_memory();
    test_cpu_linear();
    test_cpu_elementwise();
    test_cpu_attention_rope_gather();
    test_open();
    test_families();
    return test_report("tensor_backend");
}
