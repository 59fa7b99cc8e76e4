/*
 * conv.c: 1-d convolution (Whisper's stem) and patch convolution (CLIP's patch embedding).
 *
 * Both lower to one GEMM through an explicit im2col buffer: the shapes involved (Whisper: 80 or
 * d_model channels × 3 taps × 3000 frames; CLIP: 3·p² × a few hundred patches) keep that buffer
 * at tens of MB at most, and the GEMM then runs at oneDNN speed.
 */
#include "tensor/ops.h"

#include "core/core.h"
#include "tensor/internal.h"

#include <string.h>

enum cge_status cge_conv1d(const float *x, int64_t c_in, int64_t t_in, const float *w,
                           const float *b, int64_t c_out, int64_t k, int64_t stride, int64_t pad,
                           float *y) {
    if (!x || !w || !y || c_in <= 0 || t_in <= 0 || c_out <= 0 || k <= 0 || stride <= 0 ||
        pad < 0)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "conv1d: bad arguments (c_in %lld, t_in %lld, c_out %lld, k %lld, "
                        "stride %lld, pad %lld)",
                        (long long)c_in, (long long)t_in, (long long)c_out, (long long)k,
                        (long long)stride, (long long)pad);
    if (t_in + 2 * pad < k)
        return cge__err(CGE_ERR_INVALID_DIM, "conv1d: input of %lld frames (+2·%lld pad) < kernel %lld",
                        (long long)t_in, (long long)pad, (long long)k);
    const int64_t t_out = (t_in + 2 * pad - k) / stride + 1;
    const int64_t kk = c_in * k;
    /* col (c_in·k, t_out): col[(ci·k + j), t] = x[ci, t·stride + j − pad] (0 outside) */
    float *col = cge__malloc_aligned((size_t)kk * (size_t)t_out * sizeof(float));
    if (!col)
        return cge__err(CGE_ERR_NOMEM, "conv1d: im2col of %lld × %lld floats", (long long)kk,
                        (long long)t_out);
    CGE_PARALLEL_FOR(kk * t_out)
    for (int64_t r = 0; r < kk; r++) {
        const int64_t ci = r / k, j = r % k;
        const int64_t base = ci * t_in + j - pad; /* x[base + t·stride] is tap j of output t */
        float *cr = col + r * t_out;
        /* outputs whose tap lands inside the input: t_lo ≤ t < t_hi; zeros elsewhere */
        int64_t t_lo = pad - j > 0 ? (pad - j + stride - 1) / stride : 0;
        int64_t t_hi = t_in - 1 + pad - j >= 0 ? (t_in - 1 + pad - j) / stride + 1 : 0;
        if (t_lo > t_out) t_lo = t_out;
        if (t_hi > t_out) t_hi = t_out;
        if (t_hi < t_lo) t_hi = t_lo;
        for (int64_t t = 0; t < t_lo; t++) cr[t] = 0.0f;
        if (stride == 1) {
            if (t_hi > t_lo) memcpy(cr + t_lo, x + base + t_lo, (size_t)(t_hi - t_lo) * sizeof(float));
        } else {
            for (int64_t t = t_lo; t < t_hi; t++) cr[t] = x[base + t * stride];
        }
        for (int64_t t = t_hi; t < t_out; t++) cr[t] = 0.0f;
    }
    /* y (c_out, t_out) = W (c_out, c_in·k) · col */
    cge_sgemm(0, 0, c_out, t_out, kk, 1.0f, w, kk, col, t_out, 0.0f, y, t_out);
    cge__free_aligned(col);
    if (b) {
        for (int64_t co = 0; co < c_out; co++) {
            float *yr = y + co * t_out;
            for (int64_t t = 0; t < t_out; t++) yr[t] += b[co];
        }
    }
    return CGE_OK;
}

enum cge_status cge_patch_conv(const float *img, int64_t c, int64_t h, int64_t w, const float *wt,
                               int64_t d, int64_t p, float *out) {
    if (!img || !wt || !out || c <= 0 || d <= 0 || p <= 0 || h < p || w < p)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "patch_conv: bad arguments (c %lld, h %lld, w %lld, d %lld, p %lld)",
                        (long long)c, (long long)h, (long long)w, (long long)d, (long long)p);
    const int64_t gh = h / p, gw = w / p, np = gh * gw, kk = c * p * p;
    /* col (np, c·p·p): one flattened patch per row, in the (c, ky, kx) order of the weights */
    float *col = cge__malloc_aligned((size_t)np * (size_t)kk * sizeof(float));
    if (!col)
        return cge__err(CGE_ERR_NOMEM, "patch_conv: im2col of %lld × %lld floats", (long long)np,
                        (long long)kk);
    for (int64_t py = 0; py < gh; py++) {
        for (int64_t px = 0; px < gw; px++) {
            float *cr = col + (py * gw + px) * kk;
            for (int64_t ci = 0; ci < c; ci++) {
                for (int64_t ky = 0; ky < p; ky++) {
                    const float *src = img + (ci * h + py * p + ky) * w + px * p;
                    memcpy(cr + (ci * p + ky) * p, src, (size_t)p * sizeof(float));
                }
            }
        }
    }
    /* out (np, d) = col · Wᵀ, W viewed as (d, c·p·p) */
    cge_sgemm(0, 1, np, d, kk, 1.0f, col, kk, wt, kk, 0.0f, out, d);
    cge__free_aligned(col);
    return CGE_OK;
}
