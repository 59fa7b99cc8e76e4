/*
 * cuda_kernels.cu: the CUDA backend's kernels (everything but the GEMMs, which are cuBLASLt's),
 * each the device twin of a CPU kernel in src/tensor/ (ops.h semantics, fp32 math, no fast-math
 * intrinsics: results are compared with the CPU at rel 1e-4).
 *
 * Key decision: simple, one-pass-per-row kernels (a block per row for norms and softmax, a
 * block per query row for attention with the scores in shared memory), written for clarity
 * first; attention reads K and V rows straight from the fused QKV activations through L2 rather
 * than tiling them flash-style. That is the place to optimize once measured on a device.
 */
#include "gpu/cuda_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#define THREADS 256

static inline unsigned grid_for(int64_t n) {
    int64_t g = (n + THREADS - 1) / THREADS;
    return (unsigned)(g < 1 ? 1 : (g > 65535 * 8 ? 65535 * 8 : g));
}

static inline int launched(void) {
    return (int)cudaGetLastError();
}

/* ---- activations ------------------------------------------------------------------------------ */
enum { ACT_NONE, ACT_GELU_ERF, ACT_GELU_TANH, ACT_QUICK_GELU, ACT_SILU, ACT_RELU, ACT_TANH };

__device__ __forceinline__ float act_f(int a, float s) {
    switch (a) {
    case ACT_GELU_ERF:
        return 0.5f * s * (1.0f + erff(s * 0.70710678118654752f));
    case ACT_GELU_TANH:
        return 0.5f * s * (1.0f + tanhf(0.79788456080286536f * (s + 0.044715f * s * s * s)));
    case ACT_QUICK_GELU:
        return s / (1.0f + expf(-1.702f * s));
    case ACT_SILU:
        return s / (1.0f + expf(-s));
    case ACT_RELU:
        return s > 0.0f ? s : 0.0f;
    case ACT_TANH:
        return tanhf(s);
    default:
        return s;
    }
}

#define GRID_STRIDE(i, n)                                                     \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

__global__ void k_act(int a, float *x, int64_t n) {
    GRID_STRIDE(i, n) x[i] = act_f(a, x[i]);
}
__global__ void k_bias_act(float *y, int64_t rows, int64_t d, const float *b, int a) {
    GRID_STRIDE(i, rows * d) y[i] = act_f(a, b ? y[i] + b[i % d] : y[i]);
}
/* y (rows, n) = act(x[:, :n]) * x[:, n:2n], row by row (the CPU backend's glu, exactly). */
__global__ void k_glu(int a, const float *x, int64_t rows, int64_t n, float *y) {
    GRID_STRIDE(i, rows * n) {
        int64_t r = i / n, j = i % n;
        y[i] = act_f(a, x[r * 2 * n + j]) * x[r * 2 * n + n + j];
    }
}
__global__ void k_add(float *y, const float *x, int64_t n) {
    GRID_STRIDE(i, n) y[i] += x[i];
}
__global__ void k_add_row(float *y, int64_t rows, int64_t d, const float *b) {
    GRID_STRIDE(i, rows * d) y[i] += b[i % d];
}
__global__ void k_mul(float *y, const float *x, int64_t n) {
    GRID_STRIDE(i, n) y[i] *= x[i];
}
__global__ void k_scale(float *x, int64_t n, float f) {
    GRID_STRIDE(i, n) x[i] *= f;
}

extern "C" int cge__k_act(cge__cuda_stream s, int act, float *x, int64_t n) {
    if (n <= 0 || act == ACT_NONE) return 0;
    k_act<<<grid_for(n), THREADS, 0, s>>>(act, x, n);
    return launched();
}
extern "C" int cge__k_bias_act(cge__cuda_stream s, float *y, int64_t rows, int64_t d,
                               const float *b, int act) {
    if (rows * d <= 0 || (!b && act == ACT_NONE)) return 0;
    k_bias_act<<<grid_for(rows * d), THREADS, 0, s>>>(y, rows, d, b, act);
    return launched();
}
extern "C" int cge__k_glu(cge__cuda_stream s, int act, const float *x, int64_t rows, int64_t n,
                          float *y) {
    if (rows * n <= 0) return 0;
    k_glu<<<grid_for(rows * n), THREADS, 0, s>>>(act, x, rows, n, y);
    return launched();
}
extern "C" int cge__k_add(cge__cuda_stream s, float *y, const float *x, int64_t n) {
    if (n <= 0) return 0;
    k_add<<<grid_for(n), THREADS, 0, s>>>(y, x, n);
    return launched();
}
extern "C" int cge__k_add_row(cge__cuda_stream s, float *y, int64_t rows, int64_t d,
                              const float *b) {
    if (rows * d <= 0) return 0;
    k_add_row<<<grid_for(rows * d), THREADS, 0, s>>>(y, rows, d, b);
    return launched();
}
extern "C" int cge__k_mul(cge__cuda_stream s, float *y, const float *x, int64_t n) {
    if (n <= 0) return 0;
    k_mul<<<grid_for(n), THREADS, 0, s>>>(y, x, n);
    return launched();
}
extern "C" int cge__k_scale(cge__cuda_stream s, float *x, int64_t n, float f) {
    if (n <= 0) return 0;
    k_scale<<<grid_for(n), THREADS, 0, s>>>(x, n, f);
    return launched();
}

/* ---- block reductions (blockDim.x a multiple of 32, at most 1024) ---------------------------- */
__device__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* red may still be read from the previous reduction */
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ float block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- norms and softmax: one block per row -------------------------------------------------- */
__global__ void k_layernorm(float *x, int64_t d, const float *w, const float *b, float eps) {
    __shared__ float red[32];
    float *r = x + (int64_t)blockIdx.x * d;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += r[i];
    const float mean = block_sum(s, red) / (float)d;
    float v = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float t = r[i] - mean;
        v += t * t;
    }
    const float inv = 1.0f / sqrtf(block_sum(v, red) / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float t = (r[i] - mean) * inv;
        r[i] = t * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
    }
}
__global__ void k_rmsnorm(float *x, int64_t d, const float *w, float eps) {
    __shared__ float red[32];
    float *r = x + (int64_t)blockIdx.x * d;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += r[i] * r[i];
    const float inv = 1.0f / sqrtf(block_sum(s, red) / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        r[i] = r[i] * inv * (w ? w[i] : 1.0f);
}
/* In place over [0, n) of a row; a row with nothing above -inf becomes zeros. */
__device__ void row_softmax(float *r, int64_t n, float *red) {
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        m = fmaxf(m, r[i]);
    m = block_max(m, red);
    if (m == -INFINITY) {
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
            r[i] = 0.0f;
        return;
    }
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float e = expf(r[i] - m);
        r[i] = e;
        s += e;
    }
    const float inv = 1.0f / block_sum(s, red);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        r[i] *= inv;
}
__global__ void k_softmax(float *x, int64_t n) {
    __shared__ float red[32];
    row_softmax(x + (int64_t)blockIdx.x * n, n, red);
}

/* Rows go in grid.x (up to 2^31 - 1) and grid.y chunks beyond that never occur at our sizes. */
extern "C" int cge__k_layernorm(cge__cuda_stream s, float *x, int64_t rows, int64_t d,
                                const float *w, const float *b, float eps) {
    if (rows <= 0 || d <= 0) return 0;
    k_layernorm<<<(unsigned)rows, THREADS, 0, s>>>(x, d, w, b, eps);
    return launched();
}
extern "C" int cge__k_rmsnorm(cge__cuda_stream s, float *x, int64_t rows, int64_t d, const float *w,
                              float eps) {
    if (rows <= 0 || d <= 0) return 0;
    k_rmsnorm<<<(unsigned)rows, THREADS, 0, s>>>(x, d, w, eps);
    return launched();
}
extern "C" int cge__k_softmax(cge__cuda_stream s, float *x, int64_t rows, int64_t n) {
    if (rows <= 0 || n <= 0) return 0;
    k_softmax<<<(unsigned)rows, THREADS, 0, s>>>(x, n);
    return launched();
}

/* ---- attention: one block per (query row, head, sequence) ----------------------------------- */
#define ATT_THREADS 128
__global__ void k_attention(int64_t L, int n_head, int group, int dh, float scale,
                            const int64_t *len, const float *bias, int causal, int64_t window,
                            const float *q, int64_t ldq, const float *k, int64_t ldk,
                            const float *v, int64_t ldv, float *out, int64_t ldo) {
    extern __shared__ float sm[]; /* q row (dh) | scores (L) */
    __shared__ float red[32];
    const int64_t i = blockIdx.x, b = blockIdx.z;
    const int h = blockIdx.y, kvh = h / group;
    const int64_t n = len ? len[b] : L;
    float *o = out + (b * L + i) * ldo + (int64_t)h * dh;
    int64_t lo = 0, hi = n; /* allowed keys [lo, hi), as mask_softmax in attention.c */
    if (causal && i + 1 < hi) hi = i + 1;
    if (window > 0 && i - window + 1 > lo) lo = i - window + 1;
    if (i >= n || lo >= hi) { /* padding query, or every key masked: zeros */
        for (int c = threadIdx.x; c < dh; c += blockDim.x)
            o[c] = 0.0f;
        return;
    }
    float *qs = sm, *sc = sm + dh;
    const float *qr = q + (b * L + i) * ldq + (int64_t)h * dh;
    for (int c = threadIdx.x; c < dh; c += blockDim.x)
        qs[c] = qr[c];
    __syncthreads();
    /* scores: a warp per key, lanes across d_head */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float *bi = bias ? bias + ((int64_t)h * L + i) * L : NULL;
    for (int64_t j = lo + warp; j < hi; j += nw) {
        const float *kr = k + (b * L + j) * ldk + (int64_t)kvh * dh;
        float acc = 0.0f;
        for (int c = lane; c < dh; c += 32)
            acc += qs[c] * kr[c];
        for (int off = 16; off > 0; off >>= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == 0) sc[j - lo] = acc * scale + (bi ? bi[j] : 0.0f);
    }
    __syncthreads();
    row_softmax(sc, hi - lo, red);
    __syncthreads();
    /* out = P·V: a thread per output column, keys in order */
    for (int c = threadIdx.x; c < dh; c += blockDim.x) {
        float acc = 0.0f;
        const float *vc = v + (b * L + lo) * ldv + (int64_t)kvh * dh + c;
        for (int64_t j = 0; j < hi - lo; j++)
            acc += sc[j] * vc[j * ldv];
        o[c] = acc;
    }
}

extern "C" int cge__k_attention(cge__cuda_stream s, int64_t n_batch, int64_t n_seq, int n_head,
                                int n_kv_head, int d_head, float scale, const int64_t *len,
                                const float *bias, int causal, int64_t window, const float *q,
                                int64_t ldq, const float *k, int64_t ldk, const float *v,
                                int64_t ldv, float *out, int64_t ldo) {
    if (n_batch <= 0 || n_seq <= 0 || n_head <= 0) return 0;
    size_t smem = (size_t)(d_head + n_seq) * sizeof(float);
    if (smem > 48 * 1024) { /* opt in to the device's larger shared memory */
        int dev = 0, max_optin = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        if (smem + 32 * sizeof(float) > (size_t)max_optin) return (int)cudaErrorInvalidValue;
        cudaError_t e = cudaFuncSetAttribute(
            k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return (int)e;
    }
    dim3 grid((unsigned)n_seq, (unsigned)n_head, (unsigned)n_batch);
    k_attention<<<grid, ATT_THREADS, smem, s>>>(n_seq, n_head, n_head / n_kv_head, d_head, scale,
                                                len, bias, causal, window, q, ldq, k, ldk, v, ldv,
                                                out, ldo);
    return launched();
}

/* ---- RoPE: a thread per (token, head, i < d_head/2) ------------------------------------------ */
__global__ void k_rope(float *x, int64_t n_tok, int64_t ld, int n_head, int d_head,
                       const int32_t *pos, const float *inv_freq) {
    const int half = d_head / 2;
    GRID_STRIDE(idx, n_tok * n_head * half) {
        const int i = (int)(idx % half);
        const int hh = (int)(idx / half % n_head);
        const int64_t t = idx / half / n_head;
        const float f = (float)pos[t] * inv_freq[i]; /* the angle in float32, as HF */
        const float c = cosf(f), sn = sinf(f);
        float *xh = x + t * ld + (int64_t)hh * d_head;
        const float x0 = xh[i], x1 = xh[i + half];
        xh[i] = x0 * c - x1 * sn;
        xh[i + half] = x1 * c + x0 * sn;
    }
}
extern "C" int cge__k_rope(cge__cuda_stream s, float *x, int64_t n_tok, int64_t ld, int n_head,
                           int d_head, const int32_t *pos, const float *inv_freq) {
    if (n_tok <= 0 || n_head <= 0 || d_head < 2) return 0;
    k_rope<<<grid_for(n_tok * n_head * (d_head / 2)), THREADS, 0, s>>>(x, n_tok, ld, n_head, d_head,
                                                                       pos, inv_freq);
    return launched();
}

/* ---- conversions and the embedding gather ---------------------------------------------------- */
__device__ __forceinline__ float load_as_f32(const void *src, int dtype, int64_t i) {
    switch (dtype) {
    case 1:
        return __half2float(((const __half *)src)[i]);
    case 2:
        return __uint_as_float((unsigned)((const uint16_t *)src)[i] << 16);
    default:
        return ((const float *)src)[i];
    }
}
__global__ void k_embed_gather(const void *table, int dtype, int64_t d, const int32_t *ids,
                               int64_t n, float *out) {
    GRID_STRIDE(idx, n * d) {
        const int64_t r = idx / d, c = idx % d;
        out[idx] = load_as_f32(table, dtype, (int64_t)ids[r] * d + c);
    }
}
__global__ void k_to_f32(const void *src, int dtype, int64_t n, float *dst) {
    GRID_STRIDE(i, n) dst[i] = load_as_f32(src, dtype, i);
}
__global__ void k_to_bf16(const void *src, int dtype, int64_t n, uint16_t *dst) {
    GRID_STRIDE(i, n) {
        if (dtype == 2) {
            dst[i] = ((const uint16_t *)src)[i];
        } else {
            __nv_bfloat16 h = __float2bfloat16_rn(load_as_f32(src, dtype, i)); /* RNE */
            dst[i] = *(const uint16_t *)&h;
        }
    }
}
extern "C" int cge__k_embed_gather(cge__cuda_stream s, const void *table, int dtype, int64_t d,
                                   const int32_t *ids, int64_t n, float *out) {
    if (n <= 0 || d <= 0) return 0;
    k_embed_gather<<<grid_for(n * d), THREADS, 0, s>>>(table, dtype, d, ids, n, out);
    return launched();
}
extern "C" int cge__k_to_f32(cge__cuda_stream s, const void *src, int dtype, int64_t n,
                             float *dst) {
    if (n <= 0) return 0;
    k_to_f32<<<grid_for(n), THREADS, 0, s>>>(src, dtype, n, dst);
    return launched();
}
extern "C" int cge__k_to_bf16(cge__cuda_stream s, const void *src, int dtype, int64_t n,
                              uint16_t *dst) {
    if (n <= 0) return 0;
    k_to_bf16<<<grid_for(n), THREADS, 0, s>>>(src, dtype, n, dst);
    return launched();
}

/* ---- int8 ------------------------------------------------------------------------------------ */
__global__ void k_quant_rows(const float *x, int64_t k, int8_t *q, float *scale) {
    __shared__ float red[32];
    const float *r = x + (int64_t)blockIdx.x * k;
    int8_t *qr = q + (int64_t)blockIdx.x * k;
    float m = 0.0f;
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x)
        m = fmaxf(m, fabsf(r[i]));
    m = block_max(m, red);
    const float sc = m > 0.0f && isfinite(m) ? m / 127.0f : 1.0f;
    const float inv = 1.0f / sc;
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
        float t = rintf(r[i] * inv);
        t = t >= -127.0f ? (t <= 127.0f ? t : 127.0f) : -127.0f; /* NaN lands on a bound */
        qr[i] = (int8_t)t;
    }
    if (threadIdx.x == 0) scale[blockIdx.x] = sc;
}
__global__ void k_dequant_bias_act(const int32_t *acc, int64_t rows, int64_t n, const float *sx,
                                   const float *sw, const float *b, int a, float *y) {
    GRID_STRIDE(idx, rows * n) {
        const int64_t r = idx / n, c = idx % n;
        float t = (float)acc[idx] * sx[r] * sw[c];
        y[idx] = act_f(a, b ? t + b[c] : t);
    }
}
extern "C" int cge__k_quant_rows(cge__cuda_stream s, const float *x, int64_t rows, int64_t k,
                                 int8_t *q, float *scale) {
    if (rows <= 0 || k <= 0) return 0;
    k_quant_rows<<<(unsigned)rows, THREADS, 0, s>>>(x, k, q, scale);
    return launched();
}
extern "C" int cge__k_dequant_bias_act(cge__cuda_stream s, const int32_t *acc, int64_t rows,
                                       int64_t n, const float *sx, const float *sw, const float *b,
                                       int act, float *y) {
    if (rows * n <= 0) return 0;
    k_dequant_bias_act<<<grid_for(rows * n), THREADS, 0, s>>>(acc, rows, n, sx, sw, b, act, y);
    return launched();
}
