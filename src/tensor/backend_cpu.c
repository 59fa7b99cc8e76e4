/*
 * backend_cpu.c: the CPU backend: the backend.h table over today's kernels (ops.h, oneDNN).
 *
 * Design: a thin, stateless shim. Memory is host memory (alloc is cge__malloc_aligned, copies
 * are memcpy), a struct cge_be_linear is a struct cge_linear, and every operation calls the very
 * kernel the families called before the seam existed, in the same order, so results are
 * bit-for-bit those of the direct calls and the only cost is one indirect call per operation.
 * A fused activation is the separate in-place kernel run right after the GEMM (what the families
 * did by hand). The table is a static constant shared by every thread.
 */
#include "tensor/backend.h"

#include "core/core.h"
#include "tensor/ops.h"

#include <string.h>

struct cge_be_linear {
    struct cge_linear l;
};

static void *cpu_alloc(struct cge_backend *be, size_t bytes) {
    (void)be;
    return cge__malloc_aligned(bytes ? bytes : 1);
}

static void cpu_free(struct cge_backend *be, void *p) {
    (void)be;
    cge__free_aligned(p);
}

static enum cge_status cpu_copy(struct cge_backend *be, void *dst, const void *src, size_t n) {
    (void)be;
    if (n && dst != src) memmove(dst, src, n);
    return CGE_OK;
}

static enum cge_status cpu_sync(struct cge_backend *be) {
    (void)be;
    return CGE_OK;
}

static enum cge_status cpu_linear_init(struct cge_backend *be, struct cge_be_linear **out,
                                       const void *w, enum cge_dtype src_dtype, const float *b,
                                       int64_t n_out, int64_t n_in, enum cge_dtype storage) {
    (void)be;
    *out = NULL;
    struct cge_be_linear *l = cge__calloc(1, sizeof *l);
    if (!l) return cge__err(CGE_ERR_NOMEM, "linear (%lld x %lld)", (long long)n_out, (long long)n_in);
    enum cge_status st = cge_linear_init(&l->l, w, src_dtype, b, n_out, n_in, storage);
    if (st) {
        cge__free(l);
        return st;
    }
    *out = l;
    return CGE_OK;
}

static void cpu_linear_free(struct cge_backend *be, struct cge_be_linear *l) {
    (void)be;
    if (!l) return;
    cge_linear_deinit(&l->l);
    cge__free(l);
}

static enum cge_status cpu_act(struct cge_backend *be, enum cge_be_act a, float *x, int64_t n) {
    (void)be;
    switch (a) {
    case CGE_BE_ACT_NONE:
        return CGE_OK;
    case CGE_BE_ACT_GELU_ERF:
        cge_gelu_erf(x, n);
        return CGE_OK;
    case CGE_BE_ACT_GELU_TANH:
        cge_gelu_tanh(x, n);
        return CGE_OK;
    case CGE_BE_ACT_QUICK_GELU:
        cge_quick_gelu(x, n);
        return CGE_OK;
    case CGE_BE_ACT_SILU:
        cge_silu(x, n);
        return CGE_OK;
    case CGE_BE_ACT_RELU:
        cge_relu(x, n);
        return CGE_OK;
    case CGE_BE_ACT_TANH:
        cge_tanh_inplace(x, n);
        return CGE_OK;
    }
    return cge__err(CGE_ERR_INVALID_VALUE, "backend cpu: activation %d", (int)a);
}

static enum cge_status cpu_linear(struct cge_backend *be, const struct cge_be_linear *l,
                                  const float *x, int64_t m, float *y, enum cge_be_act act) {
    enum cge_status st = cge_linear_forward(&l->l, x, m, y);
    if (st || act == CGE_BE_ACT_NONE) return st;
    return cpu_act(be, act, y, m * l->l.n_out);
}

static size_t cpu_linear_bytes(const struct cge_be_linear *l) {
    return l ? cge_linear_bytes(&l->l) : 0;
}

static enum cge_status cpu_layernorm(struct cge_backend *be, float *x, int64_t rows, int64_t d,
                                     const float *w, const float *b, float eps) {
    (void)be;
    cge_layernorm(x, rows, d, w, b, eps);
    return CGE_OK;
}

static enum cge_status cpu_rmsnorm(struct cge_backend *be, float *x, int64_t rows, int64_t d,
                                   const float *w, float eps) {
    (void)be;
    cge_rmsnorm(x, rows, d, w, eps);
    return CGE_OK;
}

static enum cge_status cpu_softmax(struct cge_backend *be, float *x, int64_t rows, int64_t n) {
    (void)be;
    cge_softmax(x, rows, n);
    return CGE_OK;
}

static enum cge_status cpu_add(struct cge_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    cge_add(y, x, n);
    return CGE_OK;
}

static enum cge_status cpu_add_row(struct cge_backend *be, float *y, int64_t rows, int64_t d,
                                   const float *b) {
    (void)be;
    cge_add_row(y, rows, d, b);
    return CGE_OK;
}

static enum cge_status cpu_mul(struct cge_backend *be, float *y, const float *x, int64_t n) {
    (void)be;
    cge_mul(y, x, n);
    return CGE_OK;
}

static enum cge_status cpu_scale(struct cge_backend *be, float *x, int64_t n, float s) {
    (void)be;
    cge_scale(x, n, s);
    return CGE_OK;
}

static enum cge_status cpu_attention(struct cge_backend *be, const struct cge_attn *a,
                                     const float *q, int64_t ldq, const float *k, int64_t ldk,
                                     const float *v, int64_t ldv, float *out, int64_t ldo) {
    (void)be;
    return cge_attention(a, q, ldq, k, ldk, v, ldv, out, ldo);
}

static enum cge_status cpu_rope(struct cge_backend *be, float *x, int64_t n_tok, int64_t ld,
                                int n_head, int d_head, const int32_t *pos, float theta) {
    (void)be;
    cge_rope(x, n_tok, ld, n_head, d_head, pos, theta);
    return CGE_OK;
}

static enum cge_status cpu_embed_gather(struct cge_backend *be, const void *table,
                                        enum cge_dtype dtype, int64_t vocab, int64_t d,
                                        const int32_t *ids, int64_t n, float *out) {
    (void)be;
    return cge_embed_gather(table, dtype, vocab, d, ids, n, out);
}

/* The gated feed-forward of T5 v1.1 (and Llama/Mistral with SiLU), row by row as t5.c did it:
 * the activation in place on the first half, times the second half, copied out. */
static enum cge_status cpu_glu(struct cge_backend *be, enum cge_be_act a, float *x, int64_t rows,
                               int64_t n, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        float *g = x + r * 2 * n;
        enum cge_status st = cpu_act(be, a, g, n);
        if (st) return st;
        cge_mul(g, g + n, n);
        memcpy(y + r * n, g, (size_t)n * sizeof *g);
    }
    return CGE_OK;
}

static struct cge_backend cpu_backend = {
    .name = "cpu",
    .ctx = NULL,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .sync = cpu_sync,
    .linear_init = cpu_linear_init,
    .linear_free = cpu_linear_free,
    .linear = cpu_linear,
    .linear_bytes = cpu_linear_bytes,
    .layernorm = cpu_layernorm,
    .rmsnorm = cpu_rmsnorm,
    .softmax = cpu_softmax,
    .act = cpu_act,
    .add = cpu_add,
    .add_row = cpu_add_row,
    .mul = cpu_mul,
    .scale = cpu_scale,
    .attention = cpu_attention,
    .rope = cpu_rope,
    .embed_gather = cpu_embed_gather,
    .destroy = NULL,
    .copy = cpu_copy,
    .glu = cpu_glu,
};

struct cge_backend *cge_backend_cpu(void) {
    return &cpu_backend;
}
