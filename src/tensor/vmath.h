/*
 * vmath.h: AVX-512 exp and erf for the element-wise kernels (static inline; internal).
 *
 * exp: Cephes' range reduction (x = n·ln2 + r, ln2 split in two) and degree-6 polynomial,
 * scaled with vscalefps, which also produces the overflow (inf) and underflow (0) ends;
 * ≤ 1 ulp against the correctly rounded result, NaN propagated.
 * erf: odd; |x| < 1: x·P(x²) (degree 6, 1.2e-9 fit); 1 ≤ |x| < 4: 1 − e^(−x²)·Q(u) with Q a
 * degree-9 fit of erfcx on u = (1/|x| − 0.625)/0.375 ∈ [−1, 1] (4.7e-9 fit); 1 beyond. Measured in
 * float: ≤ 1.3e-7 absolute, ≤ 2 ulp. (PyTorch's own vectorized erf is the 1.5e-7
 * Abramowitz–Stegun form.) Coefficients were fitted with mpmath.chebyfit.
 */
#ifndef CGE_TENSOR_VMATH_H
#define CGE_TENSOR_VMATH_H

#ifdef __AVX512F__
#    include <immintrin.h>

static inline __m512 cge__v_exp(__m512 x) {
    /* the constant first so that a NaN x (second operand) passes through max/min */
    x = _mm512_min_ps(_mm512_set1_ps(88.7228394f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 cge__v_erf(__m512 x) {
    const __m512 signbit = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_andnot_ps(signbit, x);
    __m512 sign = _mm512_and_ps(signbit, x);
    /* |x| < 1 */
    __m512 z = _mm512_mul_ps(a, a);
    __m512 pa = _mm512_set1_ps(7.875874871e-05f);
    pa = _mm512_fmadd_ps(pa, z, _mm512_set1_ps(-8.016864303e-04f));
    pa = _mm512_fmadd_ps(pa, z, _mm512_set1_ps(5.189087242e-03f));
    pa = _mm512_fmadd_ps(pa, z, _mm512_set1_ps(-2.685421146e-02f));
    pa = _mm512_fmadd_ps(pa, z, _mm512_set1_ps(1.128359437e-01f));
    pa = _mm512_fmadd_ps(pa, z, _mm512_set1_ps(-3.761262596e-01f));
    pa = _mm512_fmadd_ps(pa, z, _mm512_set1_ps(1.128379107e+00f));
    __m512 ra = _mm512_mul_ps(a, pa);
    /* 1 ≤ |x| < 4 */
    /* t = 1/max(|x|, 1): 14-bit reciprocal and one Newton step (≈ 1 ulp; a division costs
     * more than the rest of the function) */
    __m512 am = _mm512_max_ps(a, _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(am);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(am, t, _mm512_set1_ps(2.0f)));
    __m512 u = _mm512_fmsub_ps(t, _mm512_set1_ps(2.666666746e+00f), _mm512_set1_ps(1.666666627e+00f));
    __m512 q = _mm512_set1_ps(3.671016884e-06f);
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-2.772810603e-06f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-2.775028224e-05f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(1.241966238e-04f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-3.483616165e-04f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(4.599445092e-04f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(2.308089752e-03f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-2.424283698e-02f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(1.433564126e-01f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(3.059529960e-01f));
    __m512 e = cge__v_exp(_mm512_xor_ps(z, signbit));
    __m512 rb = _mm512_fnmadd_ps(e, q, _mm512_set1_ps(1.0f));
    __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_LT_OQ);
    __mmask16 big = _mm512_cmp_ps_mask(a, _mm512_set1_ps(4.0f), _CMP_GE_OQ);
    __m512 r = _mm512_mask_blend_ps(small, rb, ra);
    r = _mm512_mask_blend_ps(big, r, _mm512_set1_ps(1.0f));
    return _mm512_or_ps(r, sign);
}

/* 1 / (1 + e^(−x)), exact at both ends (0 and 1) */
static inline __m512 cge__v_sigmoid(__m512 x) {
    __m512 e = cge__v_exp(_mm512_xor_ps(x, _mm512_set1_ps(-0.0f)));
    return _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* Mask of the first n (< 16) lanes. */
static inline __mmask16 cge__tail_mask(int64_t n) {
    return (__mmask16)((1u << n) - 1u);
}
#endif /* __AVX512F__ */

#endif /* CGE_TENSOR_VMATH_H */
