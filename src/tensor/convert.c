/*
 * convert.c: dtype conversions (bf16, f16 → f32 and f32 → bf16) and the embedding gather.
 *
 * Conversions are bit-exact and branch-light: bf16 is the top half of an f32 (rounding to
 * nearest even on the way down, NaN kept quiet); f16 is decoded including subnormals, inf, NaN.
 */
#include "tensor/ops.h"

#include "core/core.h"
#include "tensor/internal.h"

#include <string.h>
#ifdef __AVX512F__
#    include <immintrin.h>
#endif

float cge_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t cge_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float cge_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* One stretch of a conversion, no threading (callers split the work). */
static void convert_run(const uint16_t *h, enum cge_dtype dtype, int64_t n, float *dst) {
    int64_t i = 0;
#ifdef __AVX512F__
    if (dtype == CGE_DTYPE_BF16) {
        for (; i + 16 <= n; i += 16) {
            __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + i)));
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(u, 16)));
        }
    } else {
        /* vcvtph2ps: exact, subnormals, inf and NaN included */
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    }
#endif
    if (dtype == CGE_DTYPE_BF16) {
        for (; i < n; i++) dst[i] = cge_bf16_to_f32(h[i]);
    } else {
        for (; i < n; i++) dst[i] = cge_f16_to_f32(h[i]);
    }
}

enum cge_status cge_convert_to_f32(const void *src, enum cge_dtype dtype, int64_t n, float *dst) {
    if (n < 0) return cge__err(CGE_ERR_INVALID_VALUE, "convert_to_f32: negative count %lld",
                               (long long)n);
    if (n > 0 && (!src || !dst)) return cge__err(CGE_ERR_INVALID_VALUE, "convert_to_f32: NULL");
    switch (dtype) {
    case CGE_DTYPE_F32:
        if (n > 0 && dst != src) memmove(dst, src, (size_t)n * sizeof(float));
        return CGE_OK;
    case CGE_DTYPE_BF16:
    case CGE_DTYPE_F16: {
        const uint16_t *h = src;
        const int64_t chunk = 1 << 15;
        CGE_PARALLEL_FOR(n)
        for (int64_t c0 = 0; c0 < n; c0 += chunk)
            convert_run(h + c0, dtype, n - c0 < chunk ? n - c0 : chunk, dst + c0);
        return CGE_OK;
    }
    default:
        return cge__err(CGE_ERR_UNSUPPORTED, "convert_to_f32: dtype %s not supported",
                        cge_dtype_str(dtype));
    }
}

enum cge_status cge_embed_gather(const void *table, enum cge_dtype dtype, int64_t vocab, int64_t d,
                                 const int32_t *ids, int64_t n, float *out) {
    if (vocab <= 0 || d <= 0 || n < 0 || !table || (n > 0 && (!ids || !out)))
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "embed_gather: bad arguments (vocab %lld, d %lld, n %lld)",
                        (long long)vocab, (long long)d, (long long)n);
    if (dtype != CGE_DTYPE_F32 && dtype != CGE_DTYPE_F16 && dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED, "embed_gather: table dtype %s not supported",
                        cge_dtype_str(dtype));
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab)
            return cge__err(CGE_ERR_INVALID_VALUE,
                            "embed_gather: token id %d at position %lld outside [0, %lld)",
                            (int)ids[i], (long long)i, (long long)vocab);
    }
    const size_t esz = cge_dtype_size(dtype);
    CGE_PARALLEL_FOR(n * d)
    for (int64_t i = 0; i < n; i++) {
        const char *row = (const char *)table + (size_t)ids[i] * (size_t)d * esz;
        if (dtype == CGE_DTYPE_F32) memcpy(out + i * d, row, (size_t)d * sizeof(float));
        else convert_run((const uint16_t *)row, dtype, d, out + i * d);
    }
    return CGE_OK;
}
