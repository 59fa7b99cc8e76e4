/*
 * attention.c: scaled dot-product attention over right-padded batches, and rotary embeddings.
 *
 * The unit of work, split across threads, is one (batch, head) pair: scores S = scale·Q·Kᵀ, the
 * masked softmax on each row, then O = P·V. Only the real extent of a sequence is computed:
 * keys and queries past len[b] are never touched (padded query rows are written as zeros), so
 * padding costs nothing; with a causal mask the key blocks past the diagonal are skipped too.
 *
 * The products are small (n × d_head with d_head = 32..128) and many, so on AVX-512 they run in
 * register-blocked kernels written here (4 query rows × 64 key columns, or × 64 output
 * columns, per block): oneDNN's sgemm allocates and packs per call, which cost ten times the
 * arithmetic at these sizes. Elsewhere the same steps go through cge_sgemm. K of the head is
 * transposed once into scratch (d_head × n16, zero padded to 16 columns) so that score rows
 * load contiguously, and V is packed (n × d_head). Scratch per thread: n16·(n + 2·d_head) floats.
 */
#include "tensor/ops.h"

#include "core/core.h"
#include "tensor/internal.h"

#include <math.h>
#include <string.h>
#ifdef __AVX512F__
#    include <immintrin.h>
#endif

#define R_BLK 4 /* query rows per register block */

static int64_t round16(int64_t n) {
    return (n + 15) & ~(int64_t)15;
}

/* Masks applied to the score rows: bias, then softmax over the allowed keys [lo, hi). */
static void mask_softmax(const struct cge_attn *a, int h, int64_t n, float *s, int64_t lds) {
    const int64_t L = a->n_seq;
    for (int64_t i = 0; i < n; i++) {
        float *row = s + i * lds;
        if (a->bias) {
            const float *br = a->bias + ((int64_t)h * L + i) * L;
            for (int64_t j = 0; j < n; j++) row[j] += br[j];
        }
        int64_t lo = 0, hi = n; /* allowed keys: [lo, hi) */
        if (a->causal && i + 1 < hi) hi = i + 1;
        if (a->window > 0 && i - a->window + 1 > lo) lo = i - a->window + 1;
        if (lo > hi) lo = hi;
        cge__softmax_range(row, lo, hi, lds);
    }
}

#ifdef __AVX512F__
/* s[r][j..j+16·NV) = scale · Σ_c q[r][c] · kt[c][j..] for R rows (both compile-time after
 * inlining, so the accumulators live in registers). */
static inline __attribute__((always_inline)) void qk_tile(const float *q, int64_t ldq,
                                                          const float *kt, int64_t n16, int dh,
                                                          float scale, float *s, int64_t lds,
                                                          int R, int NV) {
    __m512 acc[R_BLK][4];
#    pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#    pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int c = 0; c < dh; c++) {
        __m512 kv[4];
#    pragma GCC unroll 4
        for (int v = 0; v < NV; v++) kv[v] = _mm512_loadu_ps(kt + c * n16 + 16 * v);
#    pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 qb = _mm512_set1_ps(q[r * ldq + c]);
#    pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(qb, kv[v], acc[r][v]);
        }
    }
    const __m512 vs = _mm512_set1_ps(scale);
#    pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#    pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(s + r * lds + 16 * v, _mm512_mul_ps(acc[r][v], vs));
}

/* o[r][0..16·NV) = Σ_{j in [j0, j1)} p[r][j] · v[j][0..] for R rows; the last vector masked. */
static inline __attribute__((always_inline)) void pv_tile(const float *p, int64_t ldp,
                                                          const float *v, int64_t ldv, int64_t j0,
                                                          int64_t j1, float *o, int64_t ldo,
                                                          int R, int NV, __mmask16 last) {
    __m512 acc[R_BLK][4];
#    pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#    pragma GCC unroll 4
        for (int u = 0; u < NV; u++) acc[r][u] = _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; j++) {
        __m512 vv[4];
#    pragma GCC unroll 4
        for (int u = 0; u < NV; u++)
            vv[u] = u == NV - 1 ? _mm512_maskz_loadu_ps(last, v + j * ldv + 16 * u)
                                : _mm512_loadu_ps(v + j * ldv + 16 * u);
#    pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 pb = _mm512_set1_ps(p[r * ldp + j]);
#    pragma GCC unroll 4
            for (int u = 0; u < NV; u++) acc[r][u] = _mm512_fmadd_ps(pb, vv[u], acc[r][u]);
        }
    }
#    pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#    pragma GCC unroll 4
        for (int u = 0; u < NV; u++) {
            if (u == NV - 1) _mm512_mask_storeu_ps(o + r * ldo + 16 * u, last, acc[r][u]);
            else _mm512_storeu_ps(o + r * ldo + 16 * u, acc[r][u]);
        }
}

/* Dispatch on the runtime block shape to the compile-time kernels. */
static void qk_block(const float *q, int64_t ldq, const float *kt, int64_t n16, int dh, float sc,
                     float *s, int64_t lds, int R, int NV) {
#    define QK(RR, VV)                                                                              case (RR) * 8 + (VV):                                                                           qk_tile(q, ldq, kt, n16, dh, sc, s, lds, RR, VV);                                           break;
    switch (R * 8 + NV) {
        QK(4, 4) QK(4, 3) QK(4, 2) QK(4, 1)
        QK(3, 4) QK(3, 3) QK(3, 2) QK(3, 1)
        QK(2, 4) QK(2, 3) QK(2, 2) QK(2, 1)
        QK(1, 4) QK(1, 3) QK(1, 2) QK(1, 1)
    default: break;
    }
#    undef QK
}

static void pv_block(const float *p, int64_t ldp, const float *v, int64_t ldv, int64_t j0,
                     int64_t j1, float *o, int64_t ldo, int R, int NV, __mmask16 last) {
#    define PV(RR, VV)                                                                              case (RR) * 8 + (VV):                                                                           pv_tile(p, ldp, v, ldv, j0, j1, o, ldo, RR, VV, last);                                      break;
    switch (R * 8 + NV) {
        PV(4, 4) PV(4, 3) PV(4, 2) PV(4, 1)
        PV(3, 4) PV(3, 3) PV(3, 2) PV(3, 1)
        PV(2, 4) PV(2, 3) PV(2, 2) PV(2, 1)
        PV(1, 4) PV(1, 3) PV(1, 2) PV(1, 1)
    default: break;
    }
#    undef PV
}

/* One head of one sequence of n real tokens. scratch: n16·(n + 2·dh) floats. */
static void attend_head(const struct cge_attn *a, int h, int64_t n, const float *qb, int64_t ldq,
                        const float *kb, int64_t ldk, const float *vb, int64_t ldv, float *ob,
                        int64_t ldo, float *scratch) {
    const int dh = a->d_head;
    const int64_t n16 = round16(n);
    float *kt = scratch, *vp = kt + (int64_t)dh * n16, *s = vp + (int64_t)dh * n16;
    /* Kᵀ (dh × n16), zero padded; V packed (n × dh): rows of K and V are a page apart in a
     * fused QKV buffer, so the kernels read these compact copies instead */
    for (int64_t j = 0; j < n; j++) {
        const float *kr = kb + j * ldk;
        for (int c = 0; c < dh; c++) kt[(int64_t)c * n16 + j] = kr[c];
        memcpy(vp + j * dh, vb + j * ldv, (size_t)dh * sizeof(float));
    }
    for (int c = 0; c < dh; c++)
        for (int64_t j = n; j < n16; j++) kt[(int64_t)c * n16 + j] = 0.0f;
    /* S = scale·Q·Kᵀ over 4-row blocks; causal rows need keys up to their own index only */
    for (int64_t i = 0; i < n; i += R_BLK) {
        int R = n - i < R_BLK ? (int)(n - i) : R_BLK;
        int64_t jend = a->causal ? round16(i + R) : n16;
        for (int64_t j = 0; j < jend; j += 64) {
            int NV = (int)((jend - j) / 16 < 4 ? (jend - j) / 16 : 4);
            qk_block(qb + i * ldq, ldq, kt + j, n16, dh, a->scale, s + i * n16 + j, n16, R, NV);
        }
    }
    mask_softmax(a, h, n, s, n16);
    /* O = P·V: rows in 4-blocks, d_head in 64-column chunks; only keys of the rows' window */
    for (int64_t i = 0; i < n; i += R_BLK) {
        int R = n - i < R_BLK ? (int)(n - i) : R_BLK;
        int64_t j1 = a->causal ? i + R : n;
        int64_t j0 = a->window > 0 && i - a->window + 1 > 0 ? i - a->window + 1 : 0;
        if (j1 > n) j1 = n;
        for (int c = 0; c < dh; c += 64) {
            int cols = dh - c < 64 ? dh - c : 64;
            int NV = (cols + 15) / 16;
            __mmask16 last = (__mmask16)(cols % 16 ? (1u << (cols % 16)) - 1u : 0xffffu);
            pv_block(s + i * n16, n16, vp + c, dh, j0, j1, ob + i * ldo + c, ldo, R, NV, last);
        }
    }
}
#else
/* Portable path: the two products through cge_sgemm. scratch: n·n floats (and more). */
static void attend_head(const struct cge_attn *a, int h, int64_t n, const float *qb, int64_t ldq,
                        const float *kb, int64_t ldk, const float *vb, int64_t ldv, float *ob,
                        int64_t ldo, float *s) {
    cge_sgemm(0, 1, n, n, a->d_head, a->scale, qb, ldq, kb, ldk, 0.0f, s, n);
    mask_softmax(a, h, n, s, n);
    cge_sgemm(0, 0, n, a->d_head, n, 1.0f, s, n, vb, ldv, 0.0f, ob, ldo);
}
#endif

/* One (batch b, head h) pair. */
static void attend_one(const struct cge_attn *a, int64_t b, int h, const float *q, int64_t ldq,
                       const float *k, int64_t ldk, const float *v, int64_t ldv, float *out,
                       int64_t ldo, float *s) {
    const int64_t L = a->n_seq;
    const int dh = a->d_head;
    const int kvh = h / (a->n_head / a->n_kv_head);
    int64_t n = a->len ? a->len[b] : L; /* real length: queries and keys both */
    if (n > L) n = L;
    if (n < 0) n = 0;
    const float *qb = q + b * L * ldq + (int64_t)h * dh;
    const float *kb = k + b * L * ldk + (int64_t)kvh * dh;
    const float *vb = v + b * L * ldv + (int64_t)kvh * dh;
    float *ob = out + b * L * ldo + (int64_t)h * dh;
    if (n > 0) attend_head(a, h, n, qb, ldq, kb, ldk, vb, ldv, ob, ldo, s);
    for (int64_t i = n; i < L; i++) memset(ob + i * ldo, 0, (size_t)dh * sizeof(float));
}
enum cge_status cge_attention(const struct cge_attn *a, const float *q, int64_t ldq, const float *k,
                              int64_t ldk, const float *v, int64_t ldv, float *out, int64_t ldo) {
    if (!a || !q || !k || !v || !out)
        return cge__err(CGE_ERR_INVALID_VALUE, "attention: NULL argument");
    if (a->n_batch < 0 || a->n_seq < 0 || a->n_head <= 0 || a->n_kv_head <= 0 || a->d_head <= 0 ||
        a->n_head % a->n_kv_head != 0 || a->window < 0)
        return cge__err(CGE_ERR_INVALID_DIM,
                        "attention: bad shape (batch %lld, seq %lld, heads %d, kv heads %d, "
                        "d_head %d, window %lld)",
                        (long long)a->n_batch, (long long)a->n_seq, a->n_head, a->n_kv_head,
                        a->d_head, (long long)a->window);
    if (ldq < (int64_t)a->n_head * a->d_head || ldo < (int64_t)a->n_head * a->d_head ||
        ldk < (int64_t)a->n_kv_head * a->d_head || ldv < (int64_t)a->n_kv_head * a->d_head)
        return cge__err(CGE_ERR_INVALID_DIM, "attention: leading dimension smaller than a row");
    if (a->n_batch == 0 || a->n_seq == 0) return CGE_OK;
    const int64_t L = a->n_seq;
    if (L > ((int64_t)1 << 15))
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "attention: sequence of %lld > 32768",
                        (long long)L);

    const int64_t n_pairs = a->n_batch * a->n_head;
    int nt = cge_get_threads();
    if (nt > n_pairs) nt = (int)n_pairs;
    if (nt < 1) nt = 1;
    const size_t per_thread = (size_t)(round16(L) * (L + 2 * (int64_t)a->d_head));
    float *scratch = cge__malloc_aligned((size_t)nt * per_thread * sizeof(float));
    if (!scratch)
        return cge__err(CGE_ERR_NOMEM, "attention: %d × %lld² floats of scratch", nt,
                        (long long)L);

    if (nt == 1) {
        for (int64_t p = 0; p < n_pairs; p++)
            attend_one(a, p / a->n_head, (int)(p % a->n_head), q, ldq, k, ldk, v, ldv, out, ldo,
                       scratch);
    } else {
        CGE_OMP(parallel num_threads(nt))
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *s = scratch + (size_t)tid * per_thread;
            CGE_OMP(for schedule(dynamic, 1))
            for (int64_t p = 0; p < n_pairs; p++)
                attend_one(a, p / a->n_head, (int)(p % a->n_head), q, ldq, k, ldk, v, ldv, out,
                           ldo, s);
        }
    }
    cge__free_aligned(scratch);
    return CGE_OK;
}

/* ---- rotary embeddings ------------------------------------------------------------------------ */
void cge_rope(float *x, int64_t n_tok, int64_t ld, int n_head, int d_head, const int32_t *pos,
              float theta) {
    if (n_tok <= 0 || n_head <= 0 || d_head < 2) return;
    enum { MAX_HALF = 512 };
    const int half = d_head / 2;
    if (half > MAX_HALF) { /* beyond any model here: the same math, without the tables */
        for (int64_t t = 0; t < n_tok; t++)
            for (int i = 0; i < half; i++) {
                float f = (float)pos[t] * (1.0f / powf(theta, (float)(2 * i) / (float)d_head));
                float c = cosf(f), sn = sinf(f);
                for (int hh = 0; hh < n_head; hh++) {
                    float *xh = x + t * ld + (int64_t)hh * d_head;
                    float x0 = xh[i], x1 = xh[i + half];
                    xh[i] = x0 * c - x1 * sn;
                    xh[i + half] = x1 * c + x0 * sn;
                }
            }
        return;
    }
    /* As HF: inv_freq = 1 / theta^(2i/d) in float32, angle = pos · inv_freq in float32. */
    float inv_freq[MAX_HALF];
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)d_head);
    CGE_PARALLEL_FOR(n_tok * n_head * d_head * 2)
    for (int64_t t = 0; t < n_tok; t++) {
        float cs[MAX_HALF], sn[MAX_HALF];
        const float p = (float)pos[t];
        for (int i = 0; i < half; i++) {
            float f = p * inv_freq[i];
            cs[i] = cosf(f);
            sn[i] = sinf(f);
        }
        for (int hh = 0; hh < n_head; hh++) {
            float *x0 = x + t * ld + (int64_t)hh * d_head, *x1 = x0 + half;
            for (int i = 0; i < half; i++) { /* vectorized by the compiler */
                float a0 = x0[i], a1 = x1[i];
                x0[i] = a0 * cs[i] - a1 * sn[i];
                x1[i] = a1 * cs[i] + a0 * sn[i];
            }
        }
    }
}
