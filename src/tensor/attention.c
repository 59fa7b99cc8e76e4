/*
 * attention.c: scaled dot-product attention over right-padded batches, and rotary embeddings.
 *
 * Per (batch, head) pair — the unit split across threads — scores are one GEMM (Q·Kᵀ), the masked
 * softmax runs on the rows, and the output is a second GEMM (P·V). Only the real extent of a
 * sequence is computed: keys and queries past len[b] are never touched (padded query rows are
 * written as zeros), so padding costs nothing. Scratch is one (L × L) score block per thread.
 */
#include "tensor/ops.h"

#include "core/core.h"
#include "tensor/internal.h"

#include <math.h>
#include <string.h>

/* One (batch b, head h) block. s: scratch of at least L·L floats. */
static void attend_one(const struct cge_attn *a, int64_t b, int h, const float *q, int64_t ldq,
                       const float *k, int64_t ldk, const float *v, int64_t ldv, float *out,
                       int64_t ldo, float *s) {
    const int64_t L = a->n_seq;
    const int dh = a->d_head;
    const int group = a->n_head / a->n_kv_head;
    const int kvh = h / group;
    int64_t n = a->len ? a->len[b] : L; /* real length: queries and keys both */
    if (n > L) n = L;
    if (n < 0) n = 0;
    const float *qb = q + b * L * ldq + (int64_t)h * dh;
    const float *kb = k + b * L * ldk + (int64_t)kvh * dh;
    const float *vb = v + b * L * ldv + (int64_t)kvh * dh;
    float *ob = out + b * L * ldo + (int64_t)h * dh;

    if (n > 0) {
        /* S (n × n) = scale · Q Kᵀ */
        cge_sgemm(0, 1, n, n, dh, a->scale, qb, ldq, kb, ldk, 0.0f, s, n);
        for (int64_t i = 0; i < n; i++) {
            float *row = s + i * n;
            if (a->bias) {
                const float *br = a->bias + ((int64_t)h * L + i) * L;
                for (int64_t j = 0; j < n; j++) row[j] += br[j];
            }
            int64_t lo = 0, hi = n; /* allowed keys: [lo, hi) */
            if (a->causal && i + 1 < hi) hi = i + 1;
            if (a->window > 0 && i - a->window + 1 > lo) lo = i - a->window + 1;
            if (lo > hi) lo = hi;
            float m = -INFINITY;
            for (int64_t j = lo; j < hi; j++) m = row[j] > m ? row[j] : m;
            if (m == -INFINITY) { /* nothing to attend to (or all -inf bias): zeros, not NaN */
                memset(row, 0, (size_t)n * sizeof(float));
                continue;
            }
            float sum = 0;
            for (int64_t j = lo; j < hi; j++) {
                float e = expf(row[j] - m);
                row[j] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
            for (int64_t j = 0; j < lo; j++) row[j] = 0.0f;
            for (int64_t j = lo; j < hi; j++) row[j] *= inv;
            for (int64_t j = hi; j < n; j++) row[j] = 0.0f;
        }
        /* O (n × dh) = P V */
        cge_sgemm(0, 0, n, dh, n, 1.0f, s, n, vb, ldv, 0.0f, ob, ldo);
    }
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
    float *scratch = cge__malloc_aligned((size_t)nt * (size_t)(L * L) * sizeof(float));
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
            float *s = scratch + (size_t)tid * (size_t)(L * L);
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
    const int half = d_head / 2;
    CGE_PARALLEL_FOR(n_tok * n_head * d_head * 8)
    for (int64_t t = 0; t < n_tok; t++) {
        float *row = x + t * ld;
        float p = (float)pos[t];
        for (int i = 0; i < half; i++) {
            /* As HF: inv_freq = 1 / theta^(2i/d) in float32, angle = pos · inv_freq in float32. */
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)d_head);
            float f = p * inv_freq;
            float c = cosf(f), sn = sinf(f);
            for (int hh = 0; hh < n_head; hh++) {
                float *xh = row + (int64_t)hh * d_head;
                float x0 = xh[i], x1 = xh[i + half];
                xh[i] = x0 * c - x1 * sn;
                xh[i + half] = x1 * c + x0 * sn;
            }
        }
    }
}
