/*
 * elementwise.c: row-wise norms, softmax, activations and small vector ops (fp32, in place).
 *
 * Hot loops have an AVX-512 body (exp/erf from vmath.h, 16 lanes, masked tails so a value's
 * result never depends on where it sits in the array) and a plain-C body for other CPUs.
 * Reductions (mean, variance, Σx²) run in 16 float lanes and are finished in double; the
 * plain-C path accumulates in double. Loops split across threads above a size where that pays
 * (CGE_PARALLEL_FOR over chunks or rows).
 */
#include "tensor/ops.h"

#include "tensor/internal.h"
#include "tensor/vmath.h"

#include <math.h>

#define CHUNK 4096 /* elements per parallel work item of the element-wise maps */

/* MAP(x, n, VBODY, SBODY): x[i] = f(x[i]) with the AVX-512 body VBODY on `__m512 v` or the
 * scalar body SBODY on `float s`. */
#ifdef __AVX512F__
#    define MAP(x, n, VBODY, SBODY)                                                            \
        do {                                                                                    \
            float *x_ = (x);                                                                    \
            const int64_t n_ = (n);                                                             \
            CGE_PARALLEL_FOR(n_ * 8)                                                            \
            for (int64_t c0 = 0; c0 < n_; c0 += CHUNK) {                                        \
                int64_t c1 = c0 + CHUNK < n_ ? c0 + CHUNK : n_, i = c0;                         \
                for (; i + 16 <= c1; i += 16) {                                                 \
                    __m512 v = _mm512_loadu_ps(x_ + i);                                         \
                    VBODY;                                                                      \
                    _mm512_storeu_ps(x_ + i, v);                                                \
                }                                                                               \
                if (i < c1) {                                                                   \
                    __mmask16 m_ = cge__tail_mask(c1 - i);                                      \
                    __m512 v = _mm512_maskz_loadu_ps(m_, x_ + i);                               \
                    VBODY;                                                                      \
                    _mm512_mask_storeu_ps(x_ + i, m_, v);                                       \
                }                                                                               \
            }                                                                                   \
        } while (0)
#else
#    define MAP(x, n, VBODY, SBODY)                                                            \
        do {                                                                                    \
            float *x_ = (x);                                                                    \
            const int64_t n_ = (n);                                                             \
            CGE_PARALLEL_FOR(n_ * 8)                                                            \
            for (int64_t i = 0; i < n_; i++) {                                                  \
                float s = x_[i];                                                                \
                SBODY;                                                                          \
                x_[i] = s;                                                                      \
            }                                                                                   \
        } while (0)
#endif

/* ---- reductions ------------------------------------------------------------------------------- */
static double row_sum(const float *x, int64_t d) {
#ifdef __AVX512F__
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(x + i));
    if (i < d) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(cge__tail_mask(d - i), x + i));
    return (double)_mm512_reduce_add_ps(acc);
#else
    double s = 0;
    for (int64_t i = 0; i < d; i++) s += x[i];
    return s;
#endif
}

/* Σ (x − c)² */
static double row_sq(const float *x, int64_t d, float c) {
#ifdef __AVX512F__
    __m512 acc = _mm512_setzero_ps(), vc = _mm512_set1_ps(c);
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) {
        __m512 t = _mm512_sub_ps(_mm512_loadu_ps(x + i), vc);
        acc = _mm512_fmadd_ps(t, t, acc);
    }
    if (i < d) {
        __mmask16 m = cge__tail_mask(d - i);
        __m512 t = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vc);
        acc = _mm512_fmadd_ps(t, t, acc);
    }
    return (double)_mm512_reduce_add_ps(acc);
#else
    double s = 0;
    for (int64_t i = 0; i < d; i++) s += ((double)x[i] - c) * ((double)x[i] - c);
    return s;
#endif
}

/* ---- norms ------------------------------------------------------------------------------------ */
void cge_layernorm(float *x, int64_t rows, int64_t d, const float *w, const float *b, float eps) {
    if (rows <= 0 || d <= 0) return;
    CGE_PARALLEL_FOR(rows * d * 2)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        float mean = (float)(row_sum(row, d) / (double)d);
        float inv = (float)(1.0 / sqrt(row_sq(row, d, mean) / (double)d + (double)eps));
        int64_t i = 0;
#ifdef __AVX512F__
        const __m512 vm = _mm512_set1_ps(mean), vi = _mm512_set1_ps(inv);
        for (; i + 16 <= d; i += 16) {
            __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(row + i), vm), vi);
            if (w) t = _mm512_mul_ps(t, _mm512_loadu_ps(w + i));
            if (b) t = _mm512_add_ps(t, _mm512_loadu_ps(b + i));
            _mm512_storeu_ps(row + i, t);
        }
#endif
        for (; i < d; i++) {
            float t = (row[i] - mean) * inv;
            if (w) t *= w[i];
            if (b) t += b[i];
            row[i] = t;
        }
    }
}

void cge_rmsnorm(float *x, int64_t rows, int64_t d, const float *w, float eps) {
    if (rows <= 0 || d <= 0) return;
    CGE_PARALLEL_FOR(rows * d * 2)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        float inv = (float)(1.0 / sqrt(row_sq(row, d, 0.0f) / (double)d + (double)eps));
        if (w) {
            for (int64_t i = 0; i < d; i++) row[i] = row[i] * inv * w[i];
        } else {
            for (int64_t i = 0; i < d; i++) row[i] = row[i] * inv;
        }
    }
}

void cge_l2_normalize(float *x, int64_t rows, int64_t d, float eps) {
    if (rows <= 0 || d <= 0) return;
    CGE_PARALLEL_FOR(rows * d * 2)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * d;
        double nrm = sqrt(row_sq(row, d, 0.0f));
        float inv = (float)(1.0 / (nrm > (double)eps ? nrm : (double)eps));
        for (int64_t i = 0; i < d; i++) row[i] *= inv;
    }
}

/* ---- softmax ---------------------------------------------------------------------------------- */
/* In place on row[lo, hi) of a row of n: the softmax there, zeros elsewhere; all zeros when
 * nothing in [lo, hi) is above -inf (a fully masked row has no distribution; not NaN). */
void cge__softmax_range(float *row, int64_t lo, int64_t hi, int64_t n) {
    float m = -INFINITY;
    int64_t i = lo;
#ifdef __AVX512F__
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (; i + 16 <= hi; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(row + i));
    if (i < hi) {
        __mmask16 k = cge__tail_mask(hi - i);
        vm = _mm512_mask_max_ps(vm, k, vm, _mm512_maskz_loadu_ps(k, row + i));
    }
    m = _mm512_reduce_max_ps(vm);
    i = hi;
#endif
    for (; i < hi; i++) m = row[i] > m ? row[i] : m;
    for (i = 0; i < lo; i++) row[i] = 0.0f;
    for (i = hi; i < n; i++) row[i] = 0.0f;
    if (m == -INFINITY || lo >= hi) {
        for (i = lo; i < hi; i++) row[i] = 0.0f;
        return;
    }
    float sum = 0;
    i = lo;
#ifdef __AVX512F__
    const __m512 vmax = _mm512_set1_ps(m);
    __m512 vs = _mm512_setzero_ps();
    for (; i + 16 <= hi; i += 16) {
        __m512 e = cge__v_exp(_mm512_sub_ps(_mm512_loadu_ps(row + i), vmax));
        _mm512_storeu_ps(row + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    if (i < hi) {
        __mmask16 k = cge__tail_mask(hi - i);
        __m512 e = cge__v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + i), vmax));
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(row + i, k, e);
        vs = _mm512_add_ps(vs, e);
    }
    sum = _mm512_reduce_add_ps(vs);
    i = hi;
#endif
    for (; i < hi; i++) {
        row[i] = expf(row[i] - m);
        sum += row[i];
    }
    const float inv = 1.0f / sum;
    for (i = lo; i < hi; i++) row[i] *= inv;
}

void cge_softmax(float *x, int64_t rows, int64_t n) {
    if (rows <= 0 || n <= 0) return;
    CGE_PARALLEL_FOR(rows * n * 8)
    for (int64_t r = 0; r < rows; r++) cge__softmax_range(x + r * n, 0, n, n);
}

/* ---- activations ------------------------------------------------------------------------------ */
void cge_gelu_erf(float *x, int64_t n) {
    MAP(x, n,
        v = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                          _mm512_add_ps(_mm512_set1_ps(1.0f),
                                        cge__v_erf(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f))))),
        s = 0.5f * s * (1.0f + erff(s * 0.70710678118654752f)));
}

/* 0.5·x·(1 + tanh(u)) = x·σ(2u): the same function, without tanh's cancellation near −1 */
void cge_gelu_tanh(float *x, int64_t n) {
    MAP(x, n,
        {
            __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
            __m512 u2 = _mm512_mul_ps(_mm512_set1_ps(2.0f * 0.79788456080286536f),
                                      _mm512_fmadd_ps(x3, _mm512_set1_ps(0.044715f), v));
            v = _mm512_mul_ps(v, cge__v_sigmoid(u2));
        },
        s = 0.5f * s * (1.0f + tanhf(0.79788456080286536f * (s + 0.044715f * s * s * s))));
}

void cge_quick_gelu(float *x, int64_t n) {
    MAP(x, n, v = _mm512_mul_ps(v, cge__v_sigmoid(_mm512_mul_ps(v, _mm512_set1_ps(1.702f)))),
        s = s / (1.0f + expf(-1.702f * s)));
}

void cge_silu(float *x, int64_t n) {
    MAP(x, n, v = _mm512_mul_ps(v, cge__v_sigmoid(v)), s = s / (1.0f + expf(-s)));
}

void cge_relu(float *x, int64_t n) {
    MAP(x, n, v = _mm512_max_ps(_mm512_setzero_ps(), v), s = s > 0.0f ? s : 0.0f);
}

/* Scalar on purpose: used on pooled vectors only, and libm's tanhf is accurate near 0. */
void cge_tanh_inplace(float *x, int64_t n) {
    CGE_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}

/* ---- vector arithmetic (the compiler vectorizes these) ------------------------------------------ */
void cge_add(float *y, const float *x, int64_t n) {
    CGE_PARALLEL_FOR(n)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void cge_add_row(float *y, int64_t rows, int64_t d, const float *b) {
    CGE_PARALLEL_FOR(rows * d)
    for (int64_t r = 0; r < rows; r++) {
        float *row = y + r * d;
        for (int64_t i = 0; i < d; i++) row[i] += b[i];
    }
}

void cge_mul(float *y, const float *x, int64_t n) {
    CGE_PARALLEL_FOR(n)
    for (int64_t i = 0; i < n; i++) y[i] *= x[i];
}

void cge_scale(float *x, int64_t n, float s) {
    CGE_PARALLEL_FOR(n)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}
