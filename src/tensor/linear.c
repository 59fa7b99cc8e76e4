/*
 * linear.c: linear layers (y = x·Wᵀ + b) on oneDNN's matmul primitive, and fp32 GEMM.
 *
 * Weights are converted and reordered ONCE, at init, into the blocked layout oneDNN's brgemm
 * kernels want (weights format "any", queried from a primitive built for a reference M; that
 * layout does not depend on M — checked for fp32, bf16 and int8 over M = 1..20000). A forward
 * then only needs a primitive for its M: each layer keeps a small LRU cache of primitives keyed
 * by M (runtime-M primitives would fall back to the plain-layout gemm:jit, which repacks the
 * weights on every call). The cache is guarded by a mutex and entries are reference-counted, so
 * concurrent forwards on one layer are safe; each call uses its own stream and a user-mode
 * scratchpad (oneDNN's library scratchpad is per primitive and not safe to share).
 *
 *   F32:  src f32 (the caller's x, no copy) × packed f32 weights + f32 bias → y.
 *   BF16: x rounded to bf16 (RNE) into a per-thread buffer × packed bf16 weights, f32
 *         accumulation, f32 bias → y. Falls back to fp32 math on bf16-rounded weights where the
 *         CPU has no bf16 matmul.
 *   I8:   x quantized per row to u8 with a zero point (x ≈ s_m·(q − z_m)), s8 weights with one
 *         scale per output channel (w ≈ s_n·q), u8×s8→s32 on VNNI with the weight scales applied
 *         by oneDNN (output scales), then y = s_m·(acc − z_m·Σ_k q_nk·s_n) + b.
 *   I8, weight-only (W8A16, cge_linear_init_q with CGE_I8_WEIGHTS; the decoder's int8): s8
 *         weights with one scale per 32 inputs of an output channel (per channel where K is not
 *         a multiple of 32 or the packed layout is not the 16a64b2a one the widen knows),
 *         activations in bf16 as BF16 storage does. oneDNN 2.6 has no weight
 *         decompression in matmul, so the weights are cut into panels of output channels, each
 *         stored as s8 in the ELEMENT ORDER of oneDNN's packed bf16 layout for that panel; a
 *         forward widens one panel at a time to bf16 (s·q rounded to bf16; per channel q alone,
 *         exact, and s_n applied to the output) into a per-thread buffer (about 4 MB, in cache),
 *         runs a brgemm bf16 GEMM on it into a per-thread output tile, and writes the tile
 *         (· s_n) (+ b) into y's columns. The threads split the panels (oneDNN
 *         runs single-threaded inside a parallel region). Numerics are BF16 storage's with the
 *         weights rounded to 8 bits instead of 8 bits of mantissa; activations keep their
 *         outlier channels, which is what per-row u8 loses with depth. Time ≈ BF16's (the widen
 *         costs about what reading half the weight bytes saves); memory ≈ I8's.
 *   I8, 16-bit activations (CGE_I8_A16, a measured candidate): x quantized per row to 16 bits,
 *         symmetric, offset to u16 = hi·256 + lo; the two u8 planes go through the same packed
 *         s8 weights (output scales 256·s_n for hi, s_n plus a sum post-op for lo), then I8's
 *         epilogue with z = 32768. Exact integer products; 16-bit activations keep the small
 *         channels next to outliers (more precisely than bf16 does); two VNNI passes cost about
 *         one bf16 GEMM, and less at batch 8 (bench_models_mistral); but its scales are per
 *         channel, which at width 1024 already falls below 0.999 over 32 layers. Needs VNNI:
 *         else W8A16.
 */
#include "tensor/ops.h"

#include "core/core.h"
#include "tensor/internal.h"

#ifdef __AVX512F__
#    include <immintrin.h>
#endif
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRIM_CACHE 8 /* distinct M per layer kept; a forward pass reuses one M for all layers */

/* ---- engine, per-thread stream and buffer ------------------------------------------------------ */
static dnnl_engine_t g_engine;
static dnnl_status_t g_engine_status = dnnl_runtime_error;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_tls_key;

struct tls {
    dnnl_stream_t stream;
    void *buf; /* activations converted for the primitive (bf16 or u8) and scratchpad */
    size_t cap;
    void *panel; /* W8A16: a weight panel widened to bf16 and the panel GEMM's scratchpad */
    size_t panel_cap;
};

static void tls_free(void *p) {
    struct tls *t = p;
    if (!t) return;
    if (t->stream) dnnl_stream_destroy(t->stream);
    cge__free_aligned(t->buf);
    cge__free_aligned(t->panel);
    cge__free(t);
}

static void engine_init(void) {
    g_engine_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
    pthread_key_create(&g_tls_key, tls_free);
}

static dnnl_engine_t engine(void) {
    pthread_once(&g_once, engine_init);
    return g_engine_status == dnnl_success ? g_engine : NULL;
}

/* The calling thread's stream and a buffer of at least n bytes; NULL on failure. */
static struct tls *tls_get(size_t n) {
    if (!engine()) return NULL;
    struct tls *t = pthread_getspecific(g_tls_key);
    if (!t) {
        t = cge__calloc(1, sizeof *t);
        if (!t) return NULL;
        if (dnnl_stream_create(&t->stream, g_engine, dnnl_stream_default_flags) != dnnl_success ||
            pthread_setspecific(g_tls_key, t) != 0) {
            tls_free(t);
            return NULL;
        }
    }
    if (n > t->cap) {
        size_t cap = n + n / 4 + 4096;
        void *b = cge__malloc_aligned(cap);
        if (!b) return NULL;
        cge__free_aligned(t->buf);
        t->buf = b;
        t->cap = cap;
    }
    return t;
}

/* The calling thread's stream and a panel buffer of at least n bytes; NULL on failure. */
static struct tls *tls_panel(size_t n) {
    struct tls *t = tls_get(0);
    if (!t) return NULL;
    if (n > t->panel_cap) {
        void *b = cge__malloc_aligned(n);
        if (!b) return NULL;
        cge__free_aligned(t->panel);
        t->panel = b;
        t->panel_cap = n;
    }
    return t;
}

/* ---- fp32 GEMM --------------------------------------------------------------------------------- */
void cge_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    cge__sync_threads();
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A,
                                  lda, B, ldb, beta, C, ldc);
    CGE_ASSERT(st != dnnl_invalid_arguments); /* a caller's shape bug */
    if (st == dnnl_success) return;
    /* oneDNN could not get its packing buffers: the same product in plain loops, slow but never
     * a wrong or missing result (the function has no status to report) */
    CGE_PARALLEL_FOR(M * N * K)
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            float acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (trans_a ? A[k * lda + i] : A[i * lda + k]) *
                       (trans_b ? B[j * ldb + k] : B[k * ldb + j]);
            C[i * ldc + j] = alpha * acc + (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]);
        }
    }
}

static void to_bf16(const float *x, uint16_t *y, int64_t n);

/* ---- the layer's engine state ------------------------------------------------------------------ */
struct prim {
    dnnl_primitive_t p;
    dnnl_primitive_t p_tail; /* W8A16: the same for the last, narrower panel (or NULL) */
    int64_t m;
    size_t scratch;  /* scratchpad bytes (the larger of p's and p_tail's) */
    int refs;        /* forwards running on it */
    int cached;      /* still in the cache (else freed by the last user) */
    uint64_t used;   /* LRU stamp */
};

struct linear_impl {
    dnnl_data_type_t src_t, wei_t, dst_t; /* what the primitive computes with */
    dnnl_memory_desc_t wmd;               /* packed weights layout */
    void *w;                              /* packed weights (wmd) */
    size_t w_bytes;
    float *wscale;  /* I8: (n_out) per-channel weight scales */
    float *wcomp;   /* I8: (n_out) s_n·Σ_k q_nk: what a zero point of 1 adds to a row */
    int8_t *wq;     /* I8, during init only: quantized weights in plain layout */
    int wo;         /* I8 weight-only (W8A16): w holds s8 panels in bf16 packed order */
    int a16;        /* I8 with 16-bit activations (CGE_I8_A16): two u8 planes per row */
    float *wscale_hi; /* A16: (n_out) 256·wscale, the high plane's output scales; owned */
    int64_t gsize;  /* W8A16 grouped: K inputs per scale (wscale is (n_in/gsize, np64) with
                     * np64 = n_out rounded up to 64, applied while widening); 0 = per channel */
    size_t n_scale; /* floats in wscale */
    int w_ext;      /* w (and wscale) point into a mapped converted-weights file: not owned */
    int64_t pn, n_panel;        /* W8A16: output channels per panel, panels */
    dnnl_memory_desc_t pmd[2];  /* W8A16: bf16 packed layouts of a full and of the last panel */
    size_t pel[2];              /* W8A16: elements (= s8 bytes) of each layout */
    pthread_mutex_t mu;
    struct prim *cache[PRIM_CACHE];
    uint64_t tick;
};

static enum cge_status dnnl_fail(dnnl_status_t s, const char *what, const struct cge_linear *l) {
    return cge__err(s == dnnl_out_of_memory ? CGE_ERR_NOMEM : CGE_ERR_UNSUPPORTED,
                    "linear (%lld → %lld, %s): oneDNN %s failed (status %d)", (long long)l->n_in,
                    (long long)l->n_out, cge_dtype_str(l->dtype), what, (int)s);
}

/* A matmul primitive desc for m rows; weights in `wmd` or, when NULL, format "any". */
/* variant (A16 only): 1 = the high plane (output scales 256·s_n), 2 = the low plane (output
 * scales s_n, added to dst by a sum post-op); 0 = the layer's one product. */
static dnnl_status_t make_pd_v(const struct cge_linear *l, const struct linear_impl *im,
                               int64_t m, const dnnl_memory_desc_t *wmd, int variant,
                               dnnl_primitive_desc_t *pd);
static dnnl_status_t make_pd(const struct cge_linear *l, const struct linear_impl *im, int64_t m,
                             const dnnl_memory_desc_t *wmd, dnnl_primitive_desc_t *pd) {
    return make_pd_v(l, im, m, wmd, 0, pd);
}

static dnnl_status_t make_pd_v(const struct cge_linear *l, const struct linear_impl *im,
                               int64_t m, const dnnl_memory_desc_t *wmd, int variant,
                               dnnl_primitive_desc_t *pd) {
    dnnl_memory_desc_t src, wei, dst, bias;
    dnnl_dims_t sd = {m, l->n_in}, wd = {l->n_in, l->n_out}, dd = {m, l->n_out},
                bd = {1, l->n_out};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&src, 2, sd, im->src_t, dnnl_ab);
    if (s == dnnl_success) {
        if (wmd) wei = *wmd;
        else s = dnnl_memory_desc_init_by_tag(&wei, 2, wd, im->wei_t, dnnl_format_tag_any);
    }
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&dst, 2, dd, im->dst_t, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab);
    int fused_bias = l->bias && im->src_t != dnnl_u8; /* int8 adds it in its own epilogue */
    dnnl_matmul_desc_t md;
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&md, &src, &wei, fused_bias ? &bias : NULL, &dst);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && im->src_t == dnnl_u8)
        s = dnnl_primitive_attr_set_output_scales(attr, l->n_out, 1 << 1,
                                                  variant == 1 ? im->wscale_hi : im->wscale);
    if (s == dnnl_success && variant == 2) {
        dnnl_post_ops_t po = NULL;
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, 1.0f);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
        if (po) dnnl_post_ops_destroy(po);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &md, attr, engine(), NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* W8A16: a bf16 matmul of m rows onto one panel of `width` output channels, into a dense
 * (m, width) tile (a strided dst, straight into y's columns, makes oneDNN 2.6 fall back from
 * brgemm to gemm:jit, which repacks the weights on every call); weights in `wmd` or, when
 * NULL, format "any". */
static dnnl_status_t make_pd_panel(const struct cge_linear *l, int64_t m, int64_t width,
                                   const dnnl_memory_desc_t *wmd, dnnl_primitive_desc_t *pd) {
    dnnl_memory_desc_t src, wei, dst;
    dnnl_dims_t sd = {m, l->n_in}, wd = {l->n_in, width}, dd = {m, width};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_bf16, dnnl_ab);
    if (s == dnnl_success) {
        if (wmd) wei = *wmd;
        else s = dnnl_memory_desc_init_by_tag(&wei, 2, wd, dnnl_bf16, dnnl_format_tag_any);
    }
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t md;
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&md, &src, &wei, NULL, &dst);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &md, attr, engine(), NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

static void prim_destroy(struct prim *p) {
    if (!p) return;
    if (p->p) dnnl_primitive_destroy(p->p);
    if (p->p_tail) dnnl_primitive_destroy(p->p_tail);
    cge__free(p);
}

/* A primitive for m rows, with a reference held (release with prim_release). */
static enum cge_status prim_acquire(const struct cge_linear *l, int64_t m, struct prim **out) {
    struct linear_impl *im = l->impl;
    pthread_mutex_lock(&im->mu);
    for (int i = 0; i < PRIM_CACHE; i++) {
        struct prim *p = im->cache[i];
        if (p && p->m == m) {
            p->refs++;
            p->used = ++im->tick;
            pthread_mutex_unlock(&im->mu);
            *out = p;
            return CGE_OK;
        }
    }
    pthread_mutex_unlock(&im->mu);

    /* Build outside the lock (JIT code generation takes a while). */
    struct prim *np = cge__calloc(1, sizeof *np);
    if (!np) return cge__err(CGE_ERR_NOMEM, "linear: primitive cache entry");
    dnnl_status_t s = dnnl_success;
    for (int k = 0; k < (im->wo || im->a16 ? 2 : 1) && s == dnnl_success; k++) {
        dnnl_primitive_desc_t pd = NULL;
        if (im->a16) {
            s = make_pd_v(l, im, m, &im->wmd, k + 1, &pd); /* p: high plane, p_tail: low */
        } else if (!im->wo) {
            s = make_pd(l, im, m, &im->wmd, &pd);
        } else {
            int64_t width = k == 0 ? im->pn : l->n_out - (im->n_panel - 1) * im->pn;
            if (k == 1 && (im->n_panel < 2 || width == im->pn)) break; /* no narrower panel */
            s = make_pd_panel(l, m, width, &im->pmd[k], &pd);
        }
        if (s == dnnl_success) {
            const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
            size_t sc = sp ? dnnl_memory_desc_get_size(sp) : 0;
            if (sc > np->scratch) np->scratch = sc;
            s = dnnl_primitive_create(k == 0 ? &np->p : &np->p_tail, pd);
        }
        if (pd) dnnl_primitive_desc_destroy(pd);
    }
    if (s != dnnl_success) {
        prim_destroy(np);
        return dnnl_fail(s, "matmul primitive", l);
    }
    np->m = m;
    np->refs = 1;

    struct prim *victim = NULL;
    pthread_mutex_lock(&im->mu);
    np->used = ++im->tick;
    int slot = -1;
    for (int i = 0; i < PRIM_CACHE && slot < 0; i++)
        if (!im->cache[i]) slot = i;
    if (slot < 0) { /* evict the least recently used entry that nobody is running */
        for (int i = 0; i < PRIM_CACHE; i++) {
            struct prim *p = im->cache[i];
            if (p->refs == 0 && (slot < 0 || p->used < im->cache[slot]->used)) slot = i;
        }
        if (slot >= 0) victim = im->cache[slot];
    }
    if (slot >= 0) {
        im->cache[slot] = np;
        np->cached = 1;
    }
    pthread_mutex_unlock(&im->mu);
    prim_destroy(victim);
    *out = np;
    return CGE_OK;
}

static void prim_release(const struct cge_linear *l, struct prim *p) {
    struct linear_impl *im = l->impl;
    pthread_mutex_lock(&im->mu);
    int dead = --p->refs == 0 && !p->cached;
    pthread_mutex_unlock(&im->mu);
    if (dead) prim_destroy(p);
}

static void impl_free(struct linear_impl *im) {
    if (!im) return;
    for (int i = 0; i < PRIM_CACHE; i++) prim_destroy(im->cache[i]);
    pthread_mutex_destroy(&im->mu);
    cge__free(im->wscale_hi);
    if (!im->w_ext) {
        cge__free_aligned(im->w);
        cge__free(im->wscale);
        cge__free(im->wcomp);
    }
    cge__free_aligned(im->wq);
    cge__free(im);
}

void cge_linear_deinit(struct cge_linear *l) {
    if (!l) return;
    impl_free(l->impl);
    cge__free(l->bias);
    memset(l, 0, sizeof *l);
}

/* Reorders plain (n, k) row-major weights of type t (the (k, n) matrix in "ba" order) into dst,
 * laid out as `wmd`. */
static dnnl_status_t pack_to(const dnnl_memory_desc_t *wmd, int64_t n, int64_t k,
                             const void *plain, dnnl_data_type_t t, void *dst) {
    dnnl_memory_desc_t pmd;
    dnnl_dims_t wd = {k, n};
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    struct tls *t_ = tls_get(0);
    if (!t_) return dnnl_out_of_memory;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&pmd, 2, wd, t, dnnl_ba);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&rpd, &pmd, engine(), wmd, engine(), NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&r, rpd);
    if (s == dnnl_success) s = dnnl_memory_create(&from, &pmd, engine(), (void *)plain);
    if (s == dnnl_success) s = dnnl_memory_create(&to, wmd, engine(), dst);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        cge__sync_threads();
        s = dnnl_primitive_execute(r, t_->stream, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(t_->stream);
    }
    if (from) dnnl_memory_destroy(from);
    if (to) dnnl_memory_destroy(to);
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    return s;
}

static dnnl_status_t pack_weights(const struct cge_linear *l, struct linear_impl *im,
                                  const void *plain, dnnl_data_type_t t) {
    return pack_to(&im->wmd, l->n_out, l->n_in, plain, t, im->w);
}

/* max |x[i]| over n floats (NaN rows give a NaN or a finite value; callers check isfinite). */
static float absmax(const float *x, int64_t n) {
    float amax = 0;
    int64_t i = 0;
#ifdef __AVX512F__
    __m512 vmax = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    amax = _mm512_reduce_max_ps(vmax);
#endif
    for (; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    return amax;
}

/* I8: symmetric per-output-channel quantization, q = round(w / s), s = max|w| / 127, into
 * im->wq (plain layout), im->wscale, im->wcomp. Done before the primitive is described, since the
 * primitive bakes the weight scales in (output scales). */
static enum cge_status quantize_weights(const struct cge_linear *l, struct linear_impl *im,
                                        const float *wf) {
    const int64_t N = l->n_out, K = l->n_in, nw = N * K;
    int8_t *wq = cge__malloc_aligned((size_t)nw);
    im->wscale = cge__malloc((size_t)N * sizeof(float));
    im->n_scale = (size_t)N;
    im->wcomp = cge__malloc((size_t)N * sizeof(float));
    if (!wq || !im->wscale || !im->wcomp) {
        cge__free_aligned(wq);
        return cge__err(CGE_ERR_NOMEM, "linear: int8 weight buffers");
    }
    /* symmetric per output channel: q = round(w / s), s = max|w| / 127 */
    CGE_PARALLEL_FOR(nw * 4)
    for (int64_t n = 0; n < N; n++) {
        const float *row = wf + n * K;
        int8_t *qr = wq + n * K;
        float amax = absmax(row, K);
        float sc = amax > 0 && isfinite(amax) ? amax / 127.0f : 1.0f;
        float inv = 1.0f / sc;
        int64_t sum = 0;
        int64_t k = 0;
#ifdef __AVX512F__
        const __m512 vinv = _mm512_set1_ps(inv);
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
        __m512i vsum = _mm512_setzero_si512();
        for (; k + 16 <= K; k += 16) {
            __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row + k), vinv),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            vsum = _mm512_add_epi32(vsum, q);
            _mm_storeu_si128((__m128i *)(qr + k), _mm512_cvtepi32_epi8(q));
        }
        sum = _mm512_reduce_add_epi32(vsum); /* |sum| ≤ 127·K per 16 lanes: fits for K < 2^24 */
#endif
        for (; k < K; k++) {
            float q = nearbyintf(row[k] * inv);
            /* Written so that NaN lands on a bound: converting NaN to an integer is UB. */
            q = q >= -127.0f ? (q <= 127.0f ? q : 127.0f) : -127.0f;
            qr[k] = (int8_t)q;
            sum += (int64_t)q;
        }
        im->wscale[n] = sc;
        im->wcomp[n] = (float)((double)sc * (double)sum);
    }
    im->wq = wq;
    return CGE_OK;
}

/* ---- W8A16 panels ------------------------------------------------------------------------------ */
/* Output channels per panel: a K × pn bf16 panel of about 4 MB (fewer, larger GEMM calls paid
 * more than an L2-sized panel, measured on Zen 4 at K = 4096 and 14336); at least 64 (the
 * packed layouts' block), at most 512. */
static int64_t panel_width(int64_t K, int64_t N) {
    int64_t pn = ((int64_t)2 * 1024 * 1024 / K) / 64 * 64;
    const char *e = getenv("CGE_W8A16_PANEL"); /* tuning only */
    if (e && atoi(e) > 0) pn = atoi(e);
    if (pn < 64) pn = 64;
    if (pn > 512) pn = 512;
    return pn < N ? pn : N;
}

/* s8 → bf16 bit patterns, exact (|q| ≤ 127 needs 7 bits of mantissa). */
static void widen_s8(const int8_t *q, uint16_t *out, size_t n) {
    size_t i = 0;
#ifdef __AVX512F__
    for (; i + 32 <= n; i += 32) {
        __m512i a = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        __m512i b = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i + 16)));
        a = _mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(a)), 16);
        b = _mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(b)), 16);
        _mm512_storeu_si512((void *)(out + i),
                            _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7),
                                                     _mm512_packus_epi32(a, b)));
    }
#endif
    for (; i < n; i++) out[i] = cge_f32_to_bf16((float)q[i]);
}

#define WO_GROUP 32 /* W8A16: inputs per weight scale (per channel where the layout is unknown);
                     * 128 measured 0.99913 at width 1024 over 32 layers, 32 gives 0.99971 */

/* Whether a packed bf16 panel layout is the brgemm one the grouped widen knows: "16a64b2a",
 * i.e. blocks of 32 inputs × 64 outputs (16 rows of input pairs × 64 outputs × 2), the pair
 * innermost, blocks at the md's outer strides; K a multiple of 32. */
static int layout_16a64b2a(const dnnl_memory_desc_t *md) {
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    return md->format_kind == dnnl_blocked && md->ndims == 2 && b->inner_nblks == 3 &&
           b->inner_blks[0] == 16 && b->inner_idxs[0] == 0 && b->inner_blks[1] == 64 &&
           b->inner_idxs[1] == 1 && b->inner_blks[2] == 2 && b->inner_idxs[2] == 0 &&
           md->padded_dims[0] == md->dims[0] && md->dims[0] % 32 == 0 && md->offset0 == 0;
}

/* W8A16 grouped: q = round(w / s), s = max|w| / 127 over each run of WO_GROUP inputs of an
 * output channel, into im->wq (plain) and im->wscale ((K/G) rows of np64, zero padded). */
static enum cge_status quantize_groups(const struct cge_linear *l, struct linear_impl *im,
                                       const float *wf) {
    const int64_t N = l->n_out, K = l->n_in, G = WO_GROUP, np64 = (N + 63) / 64 * 64;
    im->gsize = G;
    im->n_scale = (size_t)(K / G * np64);
    im->wq = cge__malloc_aligned((size_t)(N * K));
    im->wscale = cge__calloc(im->n_scale, sizeof(float));
    if (!im->wq || !im->wscale) return cge__err(CGE_ERR_NOMEM, "linear: int8 weight buffers");
    CGE_PARALLEL_FOR(N * K * 4)
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K / G; g++) {
            const float *row = wf + n * K + g * G;
            int8_t *qr = im->wq + n * K + g * G;
            float amax = 0;
            for (int64_t k = 0; k < G; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
            float sc = amax > 0 && isfinite(amax) ? amax / 127.0f : 1.0f, inv = 1.0f / sc;
            for (int64_t k = 0; k < G; k++) {
                float q = nearbyintf(row[k] * inv);
                q = q >= -127.0f ? (q <= 127.0f ? q : 127.0f) : -127.0f; /* NaN → a bound */
                qr[k] = (int8_t)q;
            }
            im->wscale[g * np64 + n] = sc;
        }
    return CGE_OK;
}

/* W8A16 grouped: one packed panel (16a64b2a: 32 × 64 blocks) widened to bf16 of s·q. sc points
 * at the panel's first column in scale row 0 (row stride np64). */
static void widen_scaled(const int8_t *q, uint16_t *out, const dnnl_memory_desc_t *md,
                         const float *sc, int64_t np64) {
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    const int64_t K = md->dims[0], nb_n = md->padded_dims[1] / 64;
    for (int64_t nb = 0; nb < nb_n; nb++)
        for (int64_t kb = 0; kb < K / 32; kb++) {
            const int64_t base = kb * b->strides[0] + nb * b->strides[1];
            const float *s = sc + (kb * 32 / WO_GROUP) * np64 + nb * 64;
            const int8_t *qb = q + base;
            uint16_t *ob = out + base;
            /* 16 rows of input pairs × 64 outputs × 2: element j of a row has output j / 2 */
            for (int64_t pr = 0; pr < 16; pr++) {
                int64_t j = 0;
#if defined(__AVX512F__) && defined(__AVX512BF16__)
                const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
                for (; j < 128; j += 32) {
                    __m512 s0 = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(s + j / 2)));
                    __m512 s1 = _mm512_permutexvar_ps(dup, _mm512_castps256_ps512(_mm256_loadu_ps(s + j / 2 + 8)));
                    __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qb + pr * 128 + j))));
                    __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qb + pr * 128 + j + 16))));
                    __m512bh r = _mm512_cvtne2ps_pbh(_mm512_mul_ps(c, s1), _mm512_mul_ps(a, s0));
                    _mm512_storeu_si512((void *)(ob + pr * 128 + j), (__m512i)r);
                }
#endif
                for (; j < 128; j++)
                    ob[pr * 128 + j] = cge_f32_to_bf16((float)qb[pr * 128 + j] * s[j / 2]);
            }
        }
}

/* bf16 bit patterns of integers in [-127, 127] → s8 (exact). */
static void narrow_s8(const uint16_t *in, int8_t *out, size_t n) {
    size_t i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(in + i))), 16);
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(_mm512_castsi512_ps(v))));
    }
#endif
    for (; i < n; i++) out[i] = (int8_t)cge_bf16_to_f32(in[i]);
}

/* Quantizes the weights (per output channel, as I8) and lays them out as s8 panels in the
 * element order of each panel's packed bf16 layout: plain s8 → bf16 (exact) → oneDNN reorder →
 * back to s8 (exact). Fails with CGE_ERR_UNSUPPORTED where the CPU has no bf16 matmul. */
static enum cge_status build_wo(struct cge_linear *l, struct linear_impl *im, const float *wf) {
    const int64_t N = l->n_out, K = l->n_in;
    im->pn = panel_width(K, N);
    im->n_panel = (N + im->pn - 1) / im->pn;
    for (int k = 0; k < 2; k++) {
        int64_t width = k == 0 ? im->pn : N - (im->n_panel - 1) * im->pn;
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t s = make_pd_panel(l, 128, width, NULL, &pd);
        if (s != dnnl_success) return dnnl_fail(s, "bf16 panel matmul descriptor", l);
        im->pmd[k] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_primitive_desc_destroy(pd);
        im->pel[k] = dnnl_memory_desc_get_size(&im->pmd[k]) / 2;
    }
    enum cge_status st = CGE_OK;
    if (K % WO_GROUP == 0 && layout_16a64b2a(&im->pmd[0]) && layout_16a64b2a(&im->pmd[1])) {
        st = quantize_groups(l, im, wf);
    } else {
        st = quantize_weights(l, im, wf);
        im->n_scale = (size_t)N;
    }
    if (st != CGE_OK) return st;
    cge__free(im->wcomp);
    im->wcomp = NULL;
    im->w_bytes = (size_t)(im->n_panel - 1) * im->pel[0] + im->pel[1];
    im->w = cge__malloc_aligned(im->w_bytes);
    size_t pmax = im->pel[0] > im->pel[1] ? im->pel[0] : im->pel[1];
    uint16_t *plain = cge__malloc_aligned((size_t)(im->pn * K) * 2);
    uint16_t *packed = cge__malloc_aligned(pmax * 2);
    /* one reorder primitive per panel width, run on every panel (creating one per panel costs
     * more than the reorder itself) */
    dnnl_primitive_t r[2] = {NULL, NULL};
    dnnl_memory_t from[2] = {NULL, NULL}, to[2] = {NULL, NULL};
    struct tls *t = tls_get(0);
    st = CGE_OK;
    if (!im->w || !plain || !packed || !t) st = cge__err(CGE_ERR_NOMEM, "linear: int8 weight panels");
    for (int k = 0; k < 2 && st == CGE_OK; k++) {
        int64_t width = k == 0 ? im->pn : N - (im->n_panel - 1) * im->pn;
        dnnl_memory_desc_t pmd;
        dnnl_dims_t wd = {K, width};
        dnnl_primitive_desc_t rpd = NULL;
        dnnl_status_t s = dnnl_memory_desc_init_by_tag(&pmd, 2, wd, dnnl_bf16, dnnl_ba);
        if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&rpd, &pmd, engine(), &im->pmd[k], engine(), NULL);
        if (s == dnnl_success) s = dnnl_primitive_create(&r[k], rpd);
        if (s == dnnl_success) s = dnnl_memory_create(&from[k], &pmd, engine(), plain);
        if (s == dnnl_success) s = dnnl_memory_create(&to[k], &im->pmd[k], engine(), packed);
        if (rpd) dnnl_primitive_desc_destroy(rpd);
        if (s != dnnl_success) st = dnnl_fail(s, "weight panel reorder", l);
    }
    for (int64_t p = 0; p < im->n_panel && st == CGE_OK; p++) {
        int last = p == im->n_panel - 1;
        int64_t n0 = p * im->pn, width = last ? N - n0 : im->pn;
        widen_s8(im->wq + n0 * K, plain, (size_t)(width * K));
        memset(packed, 0, im->pel[last] * 2);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from[last]}, {DNNL_ARG_TO, to[last]}};
        cge__sync_threads();
        dnnl_status_t s = dnnl_primitive_execute(r[last], t->stream, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(t->stream);
        if (s != dnnl_success) {
            st = dnnl_fail(s, "weight panel reorder", l);
            break;
        }
        narrow_s8(packed, (int8_t *)im->w + (size_t)p * im->pel[0], im->pel[last]);
    }
    for (int k = 0; k < 2; k++) {
        if (r[k]) dnnl_primitive_destroy(r[k]);
        if (from[k]) dnnl_memory_destroy(from[k]);
        if (to[k]) dnnl_memory_destroy(to[k]);
    }
    cge__free_aligned(plain);
    cge__free_aligned(packed);
    cge__free_aligned(im->wq);
    im->wq = NULL;
    return st;
}

/* A16: the high plane's output scales, 256·s_n (exact). */
static enum cge_status a16_scales(const struct cge_linear *l, struct linear_impl *im) {
    im->wscale_hi = cge__malloc((size_t)l->n_out * sizeof(float));
    if (!im->wscale_hi) return cge__err(CGE_ERR_NOMEM, "linear: int8 scales");
    for (int64_t n = 0; n < l->n_out; n++) im->wscale_hi[n] = 256.0f * im->wscale[n];
    return CGE_OK;
}

/* Settles the primitive's types and packed layout (reference M = 128) and packs the weights. */
static enum cge_status build(struct cge_linear *l, struct linear_impl *im, const float *wf) {
    const int64_t N = l->n_out, K = l->n_in;
    void *plain = NULL;
    dnnl_data_type_t pt;
    if (l->dtype == CGE_DTYPE_F32) {
        im->src_t = im->wei_t = im->dst_t = dnnl_f32;
    } else if (l->dtype == CGE_DTYPE_BF16) {
        im->src_t = im->wei_t = dnnl_bf16;
        im->dst_t = dnnl_f32;
    } else if (im->wo) {
        im->src_t = im->wei_t = dnnl_bf16;
        im->dst_t = dnnl_f32;
        enum cge_status st = build_wo(l, im, wf);
        if (st != CGE_ERR_UNSUPPORTED) return st;
        /* no bf16 matmul on this CPU: the dynamic int8 path instead */
        cge__free_aligned(im->w);
        im->w = NULL;
        im->wo = 0;
        im->src_t = dnnl_u8;
        im->wei_t = dnnl_s8;
        im->dst_t = dnnl_f32;
        if ((st = quantize_weights(l, im, wf)) != CGE_OK) return st;
    } else {
        im->src_t = dnnl_u8;
        im->wei_t = dnnl_s8;
        im->dst_t = dnnl_f32;
        enum cge_status st = quantize_weights(l, im, wf);
        if (st != CGE_OK) return st;
        if (im->a16 && (st = a16_scales(l, im)) != CGE_OK) return st;
    }
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = make_pd(l, im, 128, NULL, &pd);
    if (s != dnnl_success && l->dtype == CGE_DTYPE_BF16) {
        /* no bf16 matmul on this CPU: fp32 math on bf16-rounded weights (same numerics) */
        im->src_t = im->wei_t = im->dst_t = dnnl_f32;
        s = make_pd(l, im, 128, NULL, &pd);
    }
    if (s != dnnl_success) return dnnl_fail(s, "matmul descriptor", l);
    im->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    im->w_bytes = dnnl_memory_desc_get_size(&im->wmd);
    im->w = cge__malloc_aligned(im->w_bytes ? im->w_bytes : 1);
    if (!im->w) return cge__err(CGE_ERR_NOMEM, "linear: %zu bytes of packed weights", im->w_bytes);

    const int64_t nw = N * K;
    if (im->wei_t == dnnl_f32) {
        plain = (void *)wf;
        if (l->dtype == CGE_DTYPE_BF16) { /* the fallback: weights rounded as bf16 storage would */
            float *r = cge__malloc_aligned((size_t)nw * sizeof(float));
            if (!r) return cge__err(CGE_ERR_NOMEM, "linear: weight conversion buffer");
            for (int64_t i = 0; i < nw; i++) r[i] = cge_bf16_to_f32(cge_f32_to_bf16(wf[i]));
            plain = r;
        }
        pt = dnnl_f32;
    } else if (im->wei_t == dnnl_bf16) {
        uint16_t *wb = cge__malloc_aligned((size_t)nw * sizeof(uint16_t));
        if (!wb) return cge__err(CGE_ERR_NOMEM, "linear: weight conversion buffer");
        to_bf16(wf, wb, nw);
        plain = wb;
        pt = dnnl_bf16;
    } else {
        plain = im->wq;
        im->wq = NULL;
        pt = dnnl_s8;
    }
    s = pack_weights(l, im, plain, pt);
    if (plain != (const void *)wf) cge__free_aligned(plain);
    if (s != dnnl_success) return dnnl_fail(s, "weight reorder", l);
    return CGE_OK;
}

/* The I8 scheme a layer gets: 0 dynamic, 1 W8A16 panels, 2 A16. A16 needs VNNI (vpdpbusd
 * accumulates u8·s8 pairs without the 16-bit saturation of the pre-VNNI vpmaddubsw, which a
 * full-range low-byte plane would hit); without it, W8A16 (itself dynamic without bf16). */
static int i8_scheme(enum cge_dtype dtype, enum cge_i8_mode mode) {
    if (dtype != CGE_DTYPE_I8 || mode == CGE_I8_DYNAMIC) return 0;
    if (mode == CGE_I8_A16 && (dnnl_get_effective_cpu_isa() & (0x40 | 0x400))) return 2;
    return 1;
}

enum cge_status cge_linear_init(struct cge_linear *l, const void *w, enum cge_dtype src_dtype,
                                const float *b, int64_t n_out, int64_t n_in, enum cge_dtype dtype) {
    return cge_linear_init_q(l, w, src_dtype, b, n_out, n_in, dtype, CGE_I8_DYNAMIC);
}

enum cge_status cge_linear_init_q(struct cge_linear *l, const void *w, enum cge_dtype src_dtype,
                                  const float *b, int64_t n_out, int64_t n_in, enum cge_dtype dtype,
                                  enum cge_i8_mode mode) {
    if (!l) return cge__err(CGE_ERR_INVALID_VALUE, "linear_init: NULL layer");
    memset(l, 0, sizeof *l);
    if (!w || n_out <= 0 || n_in <= 0 || n_out > ((int64_t)1 << 31) ||
        n_in > ((int64_t)1 << 31) || n_out * n_in > ((int64_t)1 << 36))
        return cge__err(CGE_ERR_INVALID_DIM, "linear_init: bad weight shape (%lld, %lld)",
                        (long long)n_out, (long long)n_in);
    if (src_dtype != CGE_DTYPE_F32 && src_dtype != CGE_DTYPE_F16 && src_dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED, "linear_init: source weights in %s",
                        cge_dtype_str(src_dtype));
    if (dtype != CGE_DTYPE_F32 && dtype != CGE_DTYPE_BF16 && dtype != CGE_DTYPE_I8)
        return cge__err(CGE_ERR_UNSUPPORTED, "linear_init: storage dtype %s",
                        cge_dtype_str(dtype));
    if (!engine()) return cge__err(CGE_ERR_UNSUPPORTED, "linear_init: no oneDNN CPU engine");
    l->n_out = n_out;
    l->n_in = n_in;
    l->dtype = dtype;

    enum cge_status st = CGE_OK;
    struct linear_impl *im = cge__calloc(1, sizeof *im);
    float *wf = NULL;
    if (!im) return cge__err(CGE_ERR_NOMEM, "linear_init: state");
    pthread_mutex_init(&im->mu, NULL);
    const int scheme = i8_scheme(dtype, mode);
    im->wo = scheme == 1;
    im->a16 = scheme == 2;
    if (src_dtype == CGE_DTYPE_F32) {
        wf = (float *)w; /* read only */
    } else {
        wf = cge__malloc_aligned((size_t)(n_out * n_in) * sizeof(float));
        if (!wf) {
            st = cge__err(CGE_ERR_NOMEM, "linear_init: (%lld, %lld) weights", (long long)n_out,
                          (long long)n_in);
            goto fail;
        }
        cge_convert_to_f32(w, src_dtype, n_out * n_in, wf);
    }
    if (b) {
        l->bias = cge__malloc((size_t)n_out * sizeof(float));
        if (!l->bias) {
            st = cge__err(CGE_ERR_NOMEM, "linear_init: bias");
            goto fail;
        }
        memcpy(l->bias, b, (size_t)n_out * sizeof(float));
    }
    st = build(l, im, wf);
    if (st != CGE_OK) goto fail;
    if (wf != w) cge__free_aligned(wf);
    l->impl = im;
    return CGE_OK;
fail:
    if (wf != w) cge__free_aligned(wf);
    impl_free(im);
    cge__free(l->bias);
    memset(l, 0, sizeof *l);
    return st;
}

/* ---- forward ----------------------------------------------------------------------------------- */
/* Activations → bf16, round to nearest even (bit-identical to cge_f32_to_bf16). */
static void to_bf16(const float *x, uint16_t *y, int64_t n) {
    const int64_t chunk = 1 << 14;
    CGE_PARALLEL_FOR(n)
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
        int64_t c1 = c0 + chunk < n ? c0 + chunk : n, i = c0;
#ifdef __AVX512F__
        const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
                      quiet = _mm512_set1_epi32(0x40);
        for (; i + 16 <= c1; i += 16) {
            __m512 v = _mm512_loadu_ps(x + i);
            __m512i u = _mm512_castps_si512(v);
            __m512i hi = _mm512_srli_epi32(u, 16);
            __m512i r = _mm512_srli_epi32(
                _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(hi, one)), 16);
            __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
            _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtepi32_epi16(r));
        }
#endif
        for (; i < c1; i++) y[i] = cge_f32_to_bf16(x[i]);
    }
}

/* Per-row asymmetric u8 quantization, the range always holding 0: x ≈ scale·(q − zp). */
static void quantize_row(const float *row, int64_t k, uint8_t *qr, float *scale, float *zp) {
    float lo = 0, hi = 0;
    int64_t i = 0;
#ifdef __AVX512F__
    __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
    for (; i + 16 <= k; i += 16) {
        __m512 v = _mm512_loadu_ps(row + i);
        vlo = _mm512_min_ps(vlo, v);
        vhi = _mm512_max_ps(vhi, v);
    }
    lo = _mm512_reduce_min_ps(vlo);
    hi = _mm512_reduce_max_ps(vhi);
#endif
    for (; i < k; i++) {
        lo = row[i] < lo ? row[i] : lo;
        hi = row[i] > hi ? row[i] : hi;
    }
    float sc = (hi - lo) / 255.0f;
    if (!(sc > 0) || !isfinite(sc)) sc = 1.0f;
    float z = nearbyintf(-lo / sc);
    z = z >= 0 ? (z <= 255 ? z : 255) : 0; /* NaN (a NaN in the row) → 0, never UB below */
    float inv = 1.0f / sc;
    i = 0;
#ifdef __AVX512F__
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i vz = _mm512_set1_epi32((int)z), zero = _mm512_setzero_si512();
    for (; i + 16 <= k; i += 16) {
        __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row + i), vinv),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_max_epi32(_mm512_add_epi32(q, vz), zero);
        _mm_storeu_si128((__m128i *)(qr + i), _mm512_cvtusepi32_epi8(q));
    }
#endif
    for (; i < k; i++) {
        float v = nearbyintf(row[i] * inv) + z;
        v = v >= 0.0f ? (v <= 255.0f ? v : 255.0f) : 0.0f;
        qr[i] = (uint8_t)v;
    }
    *scale = sc;
    *zp = z;
}

/* A16: per-row symmetric 16-bit quantization, x ≈ s·(q − 32768) with q = hi·256 + lo in
 * [1, 65535], written as two u8 planes (hi, lo), each m × k. */
static void quantize_row16(const float *row, int64_t k, uint8_t *hi, uint8_t *lo, float *scale) {
    float amax = absmax(row, k);
    float sc = amax / 32767.0f;
    if (!(sc > 0) || !isfinite(sc)) sc = 1.0f;
    const float inv = 1.0f / sc;
    int64_t i = 0;
#ifdef __AVX512F__
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i off = _mm512_set1_epi32(32768), one = _mm512_set1_epi32(1),
                  top = _mm512_set1_epi32(65535), m8 = _mm512_set1_epi32(255);
    for (; i + 16 <= k; i += 16) {
        __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row + i), vinv),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(q, off), one), top);
        _mm_storeu_si128((__m128i *)(hi + i), _mm512_cvtepi32_epi8(_mm512_srli_epi32(q, 8)));
        _mm_storeu_si128((__m128i *)(lo + i), _mm512_cvtepi32_epi8(_mm512_and_si512(q, m8)));
    }
#endif
    for (; i < k; i++) {
        float v = nearbyintf(row[i] * inv) + 32768.0f;
        v = v >= 1.0f ? (v <= 65535.0f ? v : 65535.0f) : 1.0f; /* NaN → 1, never UB */
        unsigned q = (unsigned)v;
        hi[i] = (uint8_t)(q >> 8);
        lo[i] = (uint8_t)(q & 255);
    }
    *scale = sc;
}

static void quantize_rows(const float *x, int64_t m, int64_t k, uint8_t *q, float *scale,
                          float *zp) {
    CGE_PARALLEL_FOR(m * k * 2)
    for (int64_t r = 0; r < m; r++) quantize_row(x + r * k, k, q + r * k, scale + r, zp + r);
}

/* One panel GEMM: tile (m, width) = xb (m, K) bf16 · panel. */
static dnnl_status_t run_panel(const struct cge_linear *l, dnnl_primitive_t prim,
                               const dnnl_memory_desc_t *wmd, int64_t m, int64_t width,
                               const uint16_t *xb, void *panel, float *y, void *scratch,
                               size_t scratch_bytes, dnnl_stream_t stream) {
    dnnl_memory_desc_t smd, dmd;
    dnnl_dims_t sd = {m, l->n_in}, dd = {m, width};
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL, msp = NULL;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&smd, 2, sd, dnnl_bf16, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_create(&ms, &smd, engine(), (void *)xb);
    if (s == dnnl_success) s = dnnl_memory_create(&mw, wmd, engine(), panel);
    if (s == dnnl_success) s = dnnl_memory_create(&md, &dmd, engine(), y);
    if (s == dnnl_success && scratch_bytes) {
        dnnl_memory_desc_t spd;
        dnnl_dims_t spdim = {(dnnl_dim_t)scratch_bytes};
        s = dnnl_memory_desc_init_by_tag(&spd, 1, spdim, dnnl_u8, dnnl_a);
        if (s == dnnl_success) s = dnnl_memory_create(&msp, &spd, engine(), scratch);
    }
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
        int na = 3;
        if (msp) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, msp};
        s = dnnl_primitive_execute(prim, stream, na, args);
        if (s == dnnl_success) s = dnnl_stream_wait(stream);
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(mw);
    dnnl_memory_destroy(md);
    dnnl_memory_destroy(msp);
    return s;
}

#define WO_ROWS 512 /* rows per panel GEMM: a widened panel serves all rows before the next */

/* W8A16 forward: activations to bf16 once, then the threads take panels in turn. */
static enum cge_status forward_wo(const struct cge_linear *l, const float *x, int64_t m, float *y) {
    const struct linear_impl *im = l->impl;
    const int64_t N = l->n_out, K = l->n_in;
    const int64_t m1 = m < WO_ROWS ? m : WO_ROWS, m2 = m > WO_ROWS ? m % WO_ROWS : 0;
    struct prim *p1 = NULL, *p2 = NULL;
    enum cge_status st = prim_acquire(l, m1, &p1);
    if (st == CGE_OK && m2) st = prim_acquire(l, m2, &p2);
    if (st != CGE_OK) {
        if (p1) prim_release(l, p1);
        return st;
    }
    struct tls *t = tls_get((size_t)(m * K) * 2);
    if (!t) {
        prim_release(l, p1);
        if (p2) prim_release(l, p2);
        return cge__err(CGE_ERR_NOMEM, "linear_forward: %lld bf16 activations", (long long)(m * K));
    }
    const uint16_t *xb = t->buf;
    to_bf16(x, t->buf, m * K);
    const size_t scratch = p2 && p2->scratch > p1->scratch ? p2->scratch : p1->scratch;
    const size_t pmax = im->pel[0] > im->pel[1] ? im->pel[0] : im->pel[1];
    const size_t pbytes = (pmax * 2 + 63) & ~(size_t)63;
    const size_t tbytes = (size_t)(m1 * im->pn) * sizeof(float); /* the GEMM's output tile */
    int nt = cge_get_threads();
    if (nt > im->n_panel) nt = (int)im->n_panel;
    (void)nt;
    int err = (int)dnnl_success;
    int nomem = 0;
    CGE_OMP(parallel num_threads(nt))
    {
        struct tls *tt = tls_panel(pbytes + tbytes + scratch);
        if (!tt) {
            CGE_OMP(atomic write)
            nomem = 1;
        }
        CGE_OMP(for schedule(dynamic, 1))
        for (int64_t pi = 0; pi < im->n_panel; pi++) {
            int bad;
            CGE_OMP(atomic read)
            bad = nomem;
            if (bad || !tt) continue;
            const int last = pi == im->n_panel - 1;
            const int64_t n0 = pi * im->pn, width = last ? N - n0 : im->pn;
            if (im->gsize)
                widen_scaled((const int8_t *)im->w + (size_t)pi * im->pel[0], tt->panel,
                             &im->pmd[last], im->wscale + n0, (N + 63) / 64 * 64);
            else
                widen_s8((const int8_t *)im->w + (size_t)pi * im->pel[0], tt->panel, im->pel[last]);
            float *tile = (float *)((char *)tt->panel + pbytes);
            /* grouped: the panel is already scaled (the GEMM's tile is y's) */
            const float *sc = im->gsize ? NULL : im->wscale + n0, *b = l->bias ? l->bias + n0 : NULL;
            for (int64_t r0 = 0; r0 < m; r0 += WO_ROWS) {
                const int64_t mr = m - r0 < WO_ROWS ? m - r0 : WO_ROWS;
                const struct prim *pp = mr == m1 ? p1 : p2;
                dnnl_primitive_t prim = last && pp->p_tail ? pp->p_tail : pp->p;
                dnnl_status_t s = run_panel(l, prim, &im->pmd[last], mr, width, xb + r0 * K,
                                            tt->panel, tile, (char *)tile + tbytes, scratch,
                                            tt->stream);
                if (s != dnnl_success) {
                    /* an atomic, not a named critical: its lock would be an exported symbol */
                    CGE_OMP(atomic write)
                    err = (int)s;
                    continue;
                }
                /* y's columns of the panel: tile · s_n (+ b) */
                for (int64_t r = 0; r < mr; r++) {
                    float *yr = y + (r0 + r) * N + n0;
                    const float *tr = tile + r * width;
                    if (!sc) {
                        for (int64_t j = 0; j < width; j++) yr[j] = tr[j] + (b ? b[j] : 0.0f);
                    } else if (b) {
                        for (int64_t j = 0; j < width; j++) yr[j] = tr[j] * sc[j] + b[j];
                    } else {
                        for (int64_t j = 0; j < width; j++) yr[j] = tr[j] * sc[j];
                    }
                }
            }
        }
    }
    prim_release(l, p1);
    if (p2) prim_release(l, p2);
    if (nomem) return cge__err(CGE_ERR_NOMEM, "linear_forward: per-thread weight panel");
    if (err != (int)dnnl_success) return dnnl_fail((dnnl_status_t)err, "panel matmul execution", l);
    return CGE_OK;
}

enum cge_status cge_linear_forward(const struct cge_linear *l, const float *x, int64_t m, float *y) {
    if (!l || !l->impl) return cge__err(CGE_ERR_NOT_INITIALIZED, "linear_forward: no layer");
    if (m < 0 || (m > 0 && (!x || !y)))
        return cge__err(CGE_ERR_INVALID_VALUE, "linear_forward: bad arguments (m %lld)",
                        (long long)m);
    if (m == 0) return CGE_OK;
    const struct linear_impl *im = l->impl;
    if (im->wo) return forward_wo(l, x, m, y);
    const int64_t N = l->n_out, K = l->n_in;

    struct prim *p = NULL;
    enum cge_status st = prim_acquire(l, m, &p);
    if (st != CGE_OK) return st;

    /* one per-thread buffer: [converted activations | row scales, zero points | scratchpad] */
    size_t act = 0, rowq = 0;
    if (im->src_t == dnnl_bf16) act = (size_t)(m * K) * 2;
    if (im->src_t == dnnl_u8) {
        act = (size_t)(m * K) * (im->a16 ? 2 : 1);
        rowq = (size_t)m * 2 * sizeof(float);
    }
    act = (act + 63) & ~(size_t)63;
    rowq = (rowq + 63) & ~(size_t)63;
    struct tls *t = tls_get(act + rowq + p->scratch);
    if (!t) {
        prim_release(l, p);
        return cge__err(CGE_ERR_NOMEM, "linear_forward: %zu bytes of per-thread buffer",
                        act + rowq + p->scratch);
    }
    char *buf = t->buf;
    const void *src = x;
    float *xs = (float *)(buf + act), *xz = xs + m;
    if (im->src_t == dnnl_bf16) {
        to_bf16(x, (uint16_t *)buf, m * K);
        src = buf;
    } else if (im->a16) {
        uint8_t *hi = (uint8_t *)buf, *lo = hi + m * K;
        CGE_PARALLEL_FOR(m * K * 2)
        for (int64_t r = 0; r < m; r++) {
            quantize_row16(x + r * K, K, hi + r * K, lo + r * K, xs + r);
            xz[r] = 32768.0f;
        }
        src = buf;
    } else if (im->src_t == dnnl_u8) {
        quantize_rows(x, m, K, (uint8_t *)buf, xs, xz);
        src = buf;
    }

    dnnl_memory_desc_t smd, dmd, bmd;
    dnnl_dims_t sd = {m, K}, dd = {m, N}, bd = {1, N};
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL, mb = NULL, msp = NULL;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&smd, 2, sd, im->src_t, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_create(&ms, &smd, engine(), (void *)src);
    if (s == dnnl_success) s = dnnl_memory_create(&mw, &im->wmd, engine(), im->w);
    if (s == dnnl_success) s = dnnl_memory_create(&md, &dmd, engine(), y);
    int fused_bias = l->bias && im->src_t != dnnl_u8;
    if (s == dnnl_success && fused_bias) s = dnnl_memory_create(&mb, &bmd, engine(), l->bias);
    if (s == dnnl_success && p->scratch) {
        dnnl_memory_desc_t spd;
        dnnl_dims_t spdim = {(dnnl_dim_t)p->scratch};
        s = dnnl_memory_desc_init_by_tag(&spd, 1, spdim, dnnl_u8, dnnl_a);
        if (s == dnnl_success) s = dnnl_memory_create(&msp, &spd, engine(), buf + act + rowq);
    }
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
        int na = 3;
        if (mb) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mb};
        if (msp) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, msp};
        cge__sync_threads();
        s = dnnl_primitive_execute(p->p, t->stream, na, args);
        if (s == dnnl_success) s = dnnl_stream_wait(t->stream);
        if (s == dnnl_success && im->a16) { /* the low plane, summed into dst */
            s = dnnl_memory_set_data_handle(ms, (char *)buf + m * K);
            if (s == dnnl_success) s = dnnl_primitive_execute(p->p_tail, t->stream, na, args);
            if (s == dnnl_success) s = dnnl_stream_wait(t->stream);
        }
    }
    dnnl_memory_destroy(ms);
    dnnl_memory_destroy(mw);
    dnnl_memory_destroy(md);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(msp);
    prim_release(l, p);
    if (s != dnnl_success) return dnnl_fail(s, "matmul execution", l);

    if (im->src_t == dnnl_u8) { /* y = s_m·(acc·s_n − z_m·comp_n) + b */
        const float *bias = l->bias, *comp = im->wcomp;
        CGE_PARALLEL_FOR(m * N)
        for (int64_t r = 0; r < m; r++) {
            float *yr = y + r * N;
            const float sr = xs[r], zr = xz[r];
            if (bias) {
                for (int64_t n = 0; n < N; n++) yr[n] = sr * (yr[n] - zr * comp[n]) + bias[n];
            } else {
                for (int64_t n = 0; n < N; n++) yr[n] = sr * (yr[n] - zr * comp[n]);
            }
        }
    }
    return CGE_OK;
}

size_t cge_linear_bytes(const struct cge_linear *l) {
    if (!l || !l->impl) return 0;
    const struct linear_impl *im = l->impl;
    size_t bytes = im->w_bytes;
    if (im->wscale) bytes += im->n_scale * sizeof(float);
    if (im->wcomp) bytes += (size_t)l->n_out * sizeof(float);
    if (l->bias) bytes += (size_t)l->n_out * sizeof(float);
    return bytes;
}

/* ---- serialized layers (the converted-weights file) --------------------------------------------
 * A built layer is a header, then its packed weights, weight scales, int8 compensation and bias,
 * each starting on a 64-byte boundary. The packed layouts are oneDNN's for this CPU and oneDNN
 * version (the file's key names both); loading re-derives them and refuses a blob whose sizes
 * differ, so a layout change is a miss, never a wrong product. */
#define BLOB_MAGIC "CGELIN01"
struct blob_hdr {
    char magic[8];
    int64_t n_out, n_in;
    int32_t dtype, wo;     /* storage; W8A16 */
    int32_t src_t, wei_t;  /* what the layer computes with (after any fallback) */
    int64_t pn, n_panel;   /* W8A16 panels */
    uint64_t pel[2];
    uint64_t w_bytes;
    uint32_t has_scale, has_comp, has_bias, gsize; /* gsize: W8A16 inputs per scale, 0 = per channel */
    char reserved[32];
};

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

size_t cge__linear_blob_size(const struct cge_linear *l) {
    if (!l || !l->impl) return 0;
    const struct linear_impl *im = l->impl;
    size_t vec = align64((size_t)l->n_out * sizeof(float));
    return align64(sizeof(struct blob_hdr)) + align64(im->w_bytes) +
           (im->wscale ? align64(im->n_scale * sizeof(float)) : 0) +
           (im->wcomp ? vec : 0) + (l->bias ? vec : 0);
}

enum cge_status cge__linear_blob_write(const struct cge_linear *l,
                                       int (*put)(void *u, const void *p, size_t n), void *u) {
    if (!l || !l->impl) return cge__err(CGE_ERR_NOT_INITIALIZED, "linear_blob_write: no layer");
    const struct linear_impl *im = l->impl;
    struct blob_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, BLOB_MAGIC, 8);
    h.n_out = l->n_out;
    h.n_in = l->n_in;
    h.dtype = (int32_t)l->dtype;
    h.wo = im->a16 ? 2 : im->wo;
    h.src_t = (int32_t)im->src_t;
    h.wei_t = (int32_t)im->wei_t;
    h.pn = im->pn;
    h.n_panel = im->n_panel;
    h.pel[0] = im->pel[0];
    h.pel[1] = im->pel[1];
    h.w_bytes = im->w_bytes;
    h.has_scale = im->wscale != NULL;
    h.has_comp = im->wcomp != NULL;
    h.has_bias = l->bias != NULL;
    h.gsize = (uint32_t)im->gsize;
    static const char zero[64];
    const void *part[5] = {&h, im->w, im->wscale, im->wcomp, l->bias};
    size_t len[5] = {sizeof h, im->w_bytes, h.has_scale ? im->n_scale * 4 : 0,
                     h.has_comp ? (size_t)l->n_out * 4 : 0, h.has_bias ? (size_t)l->n_out * 4 : 0};
    for (int i = 0; i < 5; i++) {
        if (i > 0 && !part[i]) continue;
        if (put(u, part[i], len[i]) || put(u, zero, align64(len[i]) - len[i]))
            return cge__err(CGE_ERR_IO, "linear_blob_write: write failed");
    }
    return CGE_OK;
}

enum cge_status cge__linear_from_blob(struct cge_linear *l, const void *blob, size_t len,
                                      int64_t n_out, int64_t n_in, enum cge_dtype dtype,
                                      enum cge_i8_mode mode) {
    if (!l) return cge__err(CGE_ERR_INVALID_VALUE, "linear_from_blob: NULL layer");
    memset(l, 0, sizeof *l);
    struct blob_hdr h;
    if (!blob || len < sizeof h || ((uintptr_t)blob & 63))
        return cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: short or misaligned blob");
    memcpy(&h, blob, sizeof h);
    int want = i8_scheme(dtype, mode);
    if (want == 1 && engine()) { /* W8A16 falls back to the dynamic scheme without bf16 matmul */
        struct cge_linear probe = {.n_out = n_out, .n_in = n_in};
        dnnl_primitive_desc_t pd = NULL;
        if (make_pd_panel(&probe, 128, n_out < 64 ? n_out : 64, NULL, &pd) != dnnl_success) want = 0;
        if (pd) dnnl_primitive_desc_destroy(pd);
    }
    if (memcmp(h.magic, BLOB_MAGIC, 8) || h.n_out != n_out || h.n_in != n_in ||
        h.dtype != (int32_t)dtype || h.wo != want || (size_t)h.w_bytes > len)
        return cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: not a (%lld, %lld) %s layer",
                        (long long)n_out, (long long)n_in, cge_dtype_str(dtype));
    if (!engine()) return cge__err(CGE_ERR_UNSUPPORTED, "linear_from_blob: no oneDNN CPU engine");
    struct linear_impl *im = cge__calloc(1, sizeof *im);
    if (!im) return cge__err(CGE_ERR_NOMEM, "linear_from_blob: state");
    pthread_mutex_init(&im->mu, NULL);
    l->n_out = n_out;
    l->n_in = n_in;
    l->dtype = dtype;
    l->impl = im;
    im->w_ext = 1;
    im->wo = h.wo == 1;
    im->a16 = h.wo == 2;
    im->src_t = (dnnl_data_type_t)h.src_t;
    im->wei_t = (dnnl_data_type_t)h.wei_t;
    im->dst_t = dnnl_f32;
    enum cge_status st = CGE_OK;
    size_t vec = align64((size_t)n_out * 4), off = align64(sizeof h) + align64(h.w_bytes);
    const char *b = blob;
    if (h.gsize && (h.gsize != WO_GROUP || !im->wo || n_in % WO_GROUP))
        st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: other weight groups");
    im->gsize = h.gsize;
    im->n_scale = h.gsize ? (size_t)(n_in / WO_GROUP * ((n_out + 63) / 64 * 64)) : (size_t)n_out;
    const size_t svec = align64(im->n_scale * 4);
    if (st == CGE_OK && h.has_scale && off + svec <= len) /* before make_pd: int8 bakes them in */
        im->wscale = (float *)(b + off);
    if (im->a16 && im->wscale) st = a16_scales(l, im);
    /* the layouts this build would pack into, compared by size with the blob's */
    if (im->wo) {
        im->pn = h.pn;
        im->n_panel = h.n_panel;
        if (h.pn != panel_width(n_in, n_out) || h.n_panel != (n_out + h.pn - 1) / h.pn)
            st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: other panels");
        for (int k = 0; k < 2 && st == CGE_OK; k++) {
            int64_t width = k == 0 ? im->pn : n_out - (im->n_panel - 1) * im->pn;
            dnnl_primitive_desc_t pd = NULL;
            if (make_pd_panel(l, 128, width, NULL, &pd) != dnnl_success) {
                st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: no bf16 matmul here");
                break;
            }
            im->pmd[k] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            dnnl_primitive_desc_destroy(pd);
            im->pel[k] = dnnl_memory_desc_get_size(&im->pmd[k]) / 2;
            if (im->pel[k] != h.pel[k]) st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: other layout");
        }
        if (st == CGE_OK && im->gsize &&
            !(layout_16a64b2a(&im->pmd[0]) && layout_16a64b2a(&im->pmd[1])))
            st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: other layout");
        if (st == CGE_OK && (size_t)h.w_bytes != (size_t)(im->n_panel - 1) * im->pel[0] + im->pel[1])
            st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: other layout");
    } else {
        dnnl_primitive_desc_t pd = NULL;
        if (make_pd(l, im, 128, NULL, &pd) != dnnl_success) {
            st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: types not available here");
        } else {
            im->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            dnnl_primitive_desc_destroy(pd);
            if (dnnl_memory_desc_get_size(&im->wmd) != (size_t)h.w_bytes)
                st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: other layout");
        }
    }
    const int need_scale = im->wei_t == dnnl_s8 || im->wo, need_comp = im->src_t == dnnl_u8;
    if (st == CGE_OK && (!im->wscale) != !need_scale)
        st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: scales do not match the types");
    if (st == CGE_OK && ((int)h.has_scale != need_scale || (int)h.has_comp != need_comp))
        st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: scales do not match the types");
    size_t need = off + (h.has_scale ? svec : 0) + (h.has_comp ? vec : 0) + (h.has_bias ? vec : 0);
    if (st == CGE_OK && need != len) st = cge__err(CGE_ERR_SERIALIZATION, "linear_from_blob: %zu bytes, expected %zu", len, need);
    if (st == CGE_OK) {
        im->w = (void *)(b + align64(sizeof h));
        im->w_bytes = h.w_bytes;
        if (h.has_scale) {
            im->wscale = (float *)(b + off);
            off += svec;
        }
        if (h.has_comp) {
            im->wcomp = (float *)(b + off); /* w_ext: not freed */
            off += vec;
        }
        if (h.has_bias) {
            l->bias = cge__malloc((size_t)n_out * 4);
            if (!l->bias) st = cge__err(CGE_ERR_NOMEM, "linear_from_blob: bias");
            else memcpy(l->bias, b + off, (size_t)n_out * 4);
        }
    }
    if (st != CGE_OK) cge_linear_deinit(l);
    return st;
}

static char g_layout_id[96];
static void fill_layout_id(void) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(g_layout_id, sizeof g_layout_id, "oneDNN %d.%d.%d %s, isa %d", v->major, v->minor,
             v->patch, v->hash ? v->hash : "", (int)dnnl_get_effective_cpu_isa());
}

const char *cge__linear_layout_id(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_layout_id);
    return g_layout_id;
}
