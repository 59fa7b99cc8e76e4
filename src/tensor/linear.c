/*
 * linear.c: fp32 GEMM and linear layers (y = x·Wᵀ + b) through oneDNN.
 *
 * Stage 1: fp32 through dnnl_sgemm; BF16 storage keeps bf16 weights and runs the product in fp32
 * on bf16-rounded activations; I8 storage keeps s8 weights with per-output-channel scales and
 * runs u8×s8→s32 (dnnl_gemm_u8s8s32) on activations quantized per row with a zero point.
 */
#include "tensor/ops.h"

#include "core/core.h"
#include "tensor/internal.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <string.h>

struct linear_impl {
    void *w;        /* (n_out, n_in) in the storage dtype */
    float *wscale;  /* I8: (n_out) per-channel scale */
    int32_t *wsum;  /* I8: (n_out) Σ_k w[n,k], for the activation zero point */
};

void cge_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    cge__sync_threads();
    dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A,
                                  lda, B, ldb, beta, C, ldc);
    CGE_ASSERT(st == dnnl_success);
}

static void impl_free(struct linear_impl *im) {
    if (!im) return;
    cge__free_aligned(im->w);
    cge__free(im->wscale);
    cge__free(im->wsum);
    cge__free(im);
}

void cge_linear_deinit(struct cge_linear *l) {
    if (!l) return;
    impl_free(l->impl);
    cge__free(l->bias);
    memset(l, 0, sizeof *l);
}

enum cge_status cge_linear_init(struct cge_linear *l, const void *w, enum cge_dtype src_dtype,
                                const float *b, int64_t n_out, int64_t n_in, enum cge_dtype dtype) {
    if (!l) return cge__err(CGE_ERR_INVALID_VALUE, "linear_init: NULL layer");
    memset(l, 0, sizeof *l);
    if (!w || n_out <= 0 || n_in <= 0 || n_out > ((int64_t)1 << 31) / 1 ||
        n_in > ((int64_t)1 << 31) || n_out * n_in > ((int64_t)1 << 40))
        return cge__err(CGE_ERR_INVALID_DIM, "linear_init: bad shape (%lld, %lld)",
                        (long long)n_out, (long long)n_in);
    if (src_dtype != CGE_DTYPE_F32 && src_dtype != CGE_DTYPE_F16 && src_dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED, "linear_init: source weights in %s",
                        cge_dtype_str(src_dtype));
    if (dtype != CGE_DTYPE_F32 && dtype != CGE_DTYPE_BF16 && dtype != CGE_DTYPE_I8)
        return cge__err(CGE_ERR_UNSUPPORTED, "linear_init: storage dtype %s",
                        cge_dtype_str(dtype));
    struct linear_impl *im = cge__calloc(1, sizeof *im);
    float *wf = cge__malloc_aligned((size_t)(n_out * n_in) * sizeof(float));
    if (!im || !wf) goto nomem;
    cge_convert_to_f32(w, src_dtype, n_out * n_in, wf);
    if (b) {
        l->bias = cge__malloc((size_t)n_out * sizeof(float));
        if (!l->bias) goto nomem;
        memcpy(l->bias, b, (size_t)n_out * sizeof(float));
    }
    if (dtype == CGE_DTYPE_F32) {
        im->w = wf;
        wf = NULL;
    } else if (dtype == CGE_DTYPE_BF16) {
        uint16_t *wb = cge__malloc_aligned((size_t)(n_out * n_in) * sizeof(uint16_t));
        if (!wb) goto nomem;
        for (int64_t i = 0; i < n_out * n_in; i++) wb[i] = cge_f32_to_bf16(wf[i]);
        im->w = wb;
    } else {
        int8_t *wq = cge__malloc_aligned((size_t)(n_out * n_in));
        im->wscale = cge__malloc((size_t)n_out * sizeof(float));
        im->wsum = cge__malloc((size_t)n_out * sizeof(int32_t));
        if (!wq || !im->wscale || !im->wsum) {
            cge__free_aligned(wq);
            goto nomem;
        }
        for (int64_t n = 0; n < n_out; n++) {
            const float *row = wf + n * n_in;
            float amax = 0;
            for (int64_t k = 0; k < n_in; k++) amax = fabsf(row[k]) > amax ? fabsf(row[k]) : amax;
            float sc = amax > 0 ? amax / 127.0f : 1.0f;
            int32_t s = 0;
            for (int64_t k = 0; k < n_in; k++) {
                float qv = nearbyintf(row[k] / sc);
                qv = qv > 127 ? 127 : (qv < -127 ? -127 : qv);
                wq[n * n_in + k] = (int8_t)qv;
                s += (int32_t)qv;
            }
            im->wscale[n] = sc;
            im->wsum[n] = s;
        }
        im->w = wq;
    }
    cge__free_aligned(wf);
    l->n_out = n_out;
    l->n_in = n_in;
    l->dtype = dtype;
    l->impl = im;
    return CGE_OK;
nomem:
    cge__free_aligned(wf);
    impl_free(im);
    cge__free(l->bias);
    l->bias = NULL;
    return cge__err(CGE_ERR_NOMEM, "linear_init: (%lld, %lld) weights", (long long)n_out,
                    (long long)n_in);
}

/* Per-row asymmetric u8 quantization: x ≈ scale · (q − zp). */
static void quantize_rows(const float *x, int64_t m, int64_t k, uint8_t *q, float *scale,
                          int32_t *zp) {
    for (int64_t r = 0; r < m; r++) {
        const float *row = x + r * k;
        float lo = 0, hi = 0; /* range always includes 0 so that 0 is exact */
        for (int64_t i = 0; i < k; i++) {
            lo = row[i] < lo ? row[i] : lo;
            hi = row[i] > hi ? row[i] : hi;
        }
        float sc = (hi - lo) / 255.0f;
        if (!(sc > 0)) sc = 1.0f;
        int32_t z = (int32_t)nearbyintf(-lo / sc);
        z = z < 0 ? 0 : (z > 255 ? 255 : z);
        float inv = 1.0f / sc;
        for (int64_t i = 0; i < k; i++) {
            float v = nearbyintf(row[i] * inv) + (float)z;
            v = v < 0 ? 0 : (v > 255 ? 255 : v);
            q[r * k + i] = (uint8_t)v;
        }
        scale[r] = sc;
        zp[r] = z;
    }
}

enum cge_status cge_linear_forward(const struct cge_linear *l, const float *x, int64_t m, float *y) {
    if (!l || !l->impl) return cge__err(CGE_ERR_NOT_INITIALIZED, "linear_forward: no layer");
    if (m < 0 || (m > 0 && (!x || !y)))
        return cge__err(CGE_ERR_INVALID_VALUE, "linear_forward: bad arguments (m %lld)",
                        (long long)m);
    if (m == 0) return CGE_OK;
    const struct linear_impl *im = l->impl;
    const int64_t N = l->n_out, K = l->n_in;
    if (l->dtype == CGE_DTYPE_F32) {
        cge_sgemm(0, 1, m, N, K, 1.0f, x, K, im->w, K, 0.0f, y, N);
    } else if (l->dtype == CGE_DTYPE_BF16) {
        float *xb = cge__malloc_aligned((size_t)(m * K) * sizeof(float));
        float *wf = cge__malloc_aligned((size_t)(N * K) * sizeof(float));
        if (!xb || !wf) {
            cge__free_aligned(xb);
            cge__free_aligned(wf);
            return cge__err(CGE_ERR_NOMEM, "linear_forward: bf16 scratch");
        }
        for (int64_t i = 0; i < m * K; i++) xb[i] = cge_bf16_to_f32(cge_f32_to_bf16(x[i]));
        cge_convert_to_f32(im->w, CGE_DTYPE_BF16, N * K, wf);
        cge_sgemm(0, 1, m, N, K, 1.0f, xb, K, wf, K, 0.0f, y, N);
        cge__free_aligned(xb);
        cge__free_aligned(wf);
    } else {
        uint8_t *xq = cge__malloc_aligned((size_t)(m * K));
        float *xs = cge__malloc((size_t)m * sizeof(float));
        int32_t *xz = cge__malloc((size_t)m * sizeof(int32_t));
        int32_t *acc = cge__malloc_aligned((size_t)(m * N) * sizeof(int32_t));
        enum cge_status st = CGE_OK;
        if (!xq || !xs || !xz || !acc) {
            st = cge__err(CGE_ERR_NOMEM, "linear_forward: int8 scratch");
            goto done;
        }
        quantize_rows(x, m, K, xq, xs, xz);
        int32_t co = 0;
        cge__sync_threads();
        dnnl_status_t ds = dnnl_gemm_u8s8s32('N', 'T', 'F', m, N, K, 1.0f, xq, K, 0, im->w, K, 0,
                                             0.0f, acc, N, &co);
        if (ds != dnnl_success) {
            st = cge__err(CGE_ERR_INVALID_VALUE, "linear_forward: oneDNN gemm failed (%d)",
                          (int)ds);
            goto done;
        }
        for (int64_t r = 0; r < m; r++) {
            for (int64_t n = 0; n < N; n++) {
                int32_t a = acc[r * N + n] - xz[r] * im->wsum[n];
                y[r * N + n] = xs[r] * im->wscale[n] * (float)a;
            }
        }
    done:
        cge__free_aligned(xq);
        cge__free(xs);
        cge__free(xz);
        cge__free_aligned(acc);
        if (st != CGE_OK) return st;
    }
    if (l->bias) cge_add_row(y, m, N, l->bias);
    return CGE_OK;
}

size_t cge_linear_bytes(const struct cge_linear *l) {
    if (!l || !l->impl) return 0;
    size_t n = (size_t)(l->n_out * l->n_in);
    size_t bytes = n * (l->dtype == CGE_DTYPE_F32 ? 4 : l->dtype == CGE_DTYPE_BF16 ? 2 : 1);
    if (l->dtype == CGE_DTYPE_I8) bytes += (size_t)l->n_out * (sizeof(float) + sizeof(int32_t));
    if (l->bias) bytes += (size_t)l->n_out * sizeof(float);
    return bytes;
}
