/*
 * elementwise.c: row-wise norms, softmax, activations and small vector ops (fp32, in place).
 *
 * Plain loops that the compiler vectorizes; row-wise ops accumulate in double where the sum is
 * long (mean/variance), so results match PyTorch's fp32 kernels within 1e-6 relative. Loops are
 * split across threads only above a size where that pays (cge__threads_for).
 */
#include "tensor/ops.h"

#include "tensor/internal.h"

#include <math.h>

/* ---- norms ------------------------------------------------------------------------------------ */
void cge_layernorm(float *x, int64_t rows, int64_t d, const float *w, const float *b, float eps) {
    if (rows <= 0 || d <= 0) return;
    CGE_PARALLEL_FOR(rows * d)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        double s = 0;
        for (int64_t i = 0; i < d; i++) s += row[i];
        float mean = (float)(s / (double)d);
        double v = 0;
        for (int64_t i = 0; i < d; i++) {
            float t = row[i] - mean;
            v += (double)t * t;
        }
        float inv = (float)(1.0 / sqrt(v / (double)d + (double)eps));
        for (int64_t i = 0; i < d; i++) {
            float t = (row[i] - mean) * inv;
            if (w) t *= w[i];
            if (b) t += b[i];
            row[i] = t;
        }
    }
}

void cge_rmsnorm(float *x, int64_t rows, int64_t d, const float *w, float eps) {
    if (rows <= 0 || d <= 0) return;
    CGE_PARALLEL_FOR(rows * d)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        double s = 0;
        for (int64_t i = 0; i < d; i++) s += (double)row[i] * row[i];
        float inv = (float)(1.0 / sqrt(s / (double)d + (double)eps));
        if (w) {
            for (int64_t i = 0; i < d; i++) row[i] = row[i] * inv * w[i];
        } else {
            for (int64_t i = 0; i < d; i++) row[i] = row[i] * inv;
        }
    }
}

void cge_l2_normalize(float *x, int64_t rows, int64_t d, float eps) {
    if (rows <= 0 || d <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        double s = 0;
        for (int64_t i = 0; i < d; i++) s += (double)row[i] * row[i];
        double nrm = sqrt(s);
        float inv = (float)(1.0 / (nrm > (double)eps ? nrm : (double)eps));
        for (int64_t i = 0; i < d; i++) row[i] *= inv;
    }
}

/* ---- softmax ---------------------------------------------------------------------------------- */
void cge_softmax(float *x, int64_t rows, int64_t n) {
    if (rows <= 0 || n <= 0) return;
    CGE_PARALLEL_FOR(rows * n * 8)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * n;
        float m = row[0];
        for (int64_t i = 1; i < n; i++) m = row[i] > m ? row[i] : m;
        if (m == -INFINITY) { /* every entry masked: no distribution; zeros, not NaN */
            for (int64_t i = 0; i < n; i++) row[i] = 0.0f;
            continue;
        }
        float s = 0;
        for (int64_t i = 0; i < n; i++) {
            row[i] = expf(row[i] - m);
            s += row[i];
        }
        float inv = 1.0f / s;
        for (int64_t i = 0; i < n; i++) row[i] *= inv;
    }
}

/* ---- activations ------------------------------------------------------------------------------ */
void cge_gelu_erf(float *x, int64_t n) {
    CGE_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void cge_gelu_tanh(float *x, int64_t n) {
    CGE_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    }
}

void cge_quick_gelu(float *x, int64_t n) {
    CGE_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void cge_silu(float *x, int64_t n) {
    CGE_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void cge_relu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void cge_tanh_inplace(float *x, int64_t n) {
    CGE_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}

/* ---- vector arithmetic ------------------------------------------------------------------------ */
void cge_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void cge_add_row(float *y, int64_t rows, int64_t d, const float *b) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = y + r * d;
        for (int64_t i = 0; i < d; i++) row[i] += b[i];
    }
}

void cge_mul(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= x[i];
}

void cge_scale(float *x, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}
