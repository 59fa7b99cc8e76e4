/*
 * image_resize.c: a byte-exact port of Pillow 9.4's uint8 resampling (libImaging/Resample.c,
 * ImagingResample with box = the whole image), and cropping.
 *
 * Key decision: reproduce Pillow's arithmetic, not just its filter. For each output pixel
 * Pillow computes a window [xmin, xmin + xmax) around center = (x + 0.5)·scale, filter weights
 * at (i − center + 0.5)/filterscale in double, normalizes them to sum 1, rounds them to 22-bit
 * fixed point (round half away from zero), accumulates sample·weight in int starting from
 * 1 << 21 and clips (sum >> 22) to [0, 255]. The horizontal pass runs first (into uint8), then
 * the vertical pass; a pass whose size does not change is skipped. Any deviation (a float
 * center, a different rounding of the weights, fused multiply-adds) changes some bytes, so
 * floating-point contraction is turned off in this file.
 */
#include "media/image.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

#if defined(__clang__)
#    pragma STDC FP_CONTRACT OFF
#endif

#define PRECISION_BITS (32 - 8 - 2)

#ifndef M_PI
#    define M_PI 3.14159265358979323846
#endif

/* ---- Pillow's filters ------------------------------------------------------------------------ */

static double box_filter(double x) {
    if (x > -0.5 && x <= 0.5) return 1.0;
    return 0.0;
}

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double hamming_filter(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) {
    if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
    return 0.0;
}

struct filter {
    double (*fn)(double);
    double support;
};

/* ---- coefficients ---------------------------------------------------------------------------- */

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for box [in0, in1) of an axis of in_size
 * samples resized to out_size. bounds (out_size·2) gets (xmin, count); kk (out_size·ksize) the
 * fixed-point weights. Returns ksize, or 0 when out of memory. */
static int precompute(int64_t in_size, float in0, float in1, int64_t out_size,
                      const struct filter *f, int **bounds_out, int32_t **kk_out) {
    double scale = (double)(in1 - in0) / (double)out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = cge__malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *kk = cge__malloc(sizeof(int32_t) * (size_t)ksize * (size_t)out_size);
    double *k = cge__malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !kk || !k) {
        cge__free(bounds);
        cge__free(kk);
        cge__free(k);
        return 0;
    }
    for (int64_t xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = (int)in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize; /* cannot happen; keeps the writes in bounds */
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) k[x] /= ww;
        }
        for (; x < ksize; x++)
            k[x] = 0;
        int32_t *kr = kk + xx * ksize;
        for (x = 0; x < ksize; x++) {
            if (k[x] < 0)
                kr[x] = (int32_t)(-0.5 + k[x] * (1 << PRECISION_BITS));
            else
                kr[x] = (int32_t)(0.5 + k[x] * (1 << PRECISION_BITS));
        }
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    cge__free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

/* Pillow accumulates in a 32-bit int; extreme filters (Lanczos on a window cut by the border)
 * can exceed it, where Pillow's compiled code wraps around. Accumulating in uint32_t (defined
 * wrap-around) and reading the result as int32_t reproduces that exactly, and lets the
 * compiler use 32-bit vector lanes. */
static inline uint8_t clip8(uint32_t acc) {
    int32_t v = (int32_t)acc >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

/* ---- the two passes -------------------------------------------------------------------------- */

/* Output columns [x0, x1) of n_rows rows, from source rows [row0, row0 + n_rows) of in (in_w
 * wide); out is (x1 − x0) wide. */
static void pass_horizontal(const uint8_t *in, int64_t in_w, int64_t row0, int64_t n_rows,
                            int64_t x0, int64_t x1, uint8_t *out, int ksize, const int *bounds,
                            const int32_t *kk) {
    const int64_t ow = x1 - x0;
    for (int64_t yy = 0; yy < n_rows; yy++) {
        const uint8_t *row = in + (yy + row0) * in_w * 3;
        uint8_t *o = out + yy * ow * 3;
        for (int64_t xx = x0; xx < x1; xx++) {
            const int xmin = bounds[xx * 2 + 0], xmax = bounds[xx * 2 + 1];
            const int32_t *k = kk + xx * ksize;
            uint32_t s0 = 1u << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            const uint8_t *p = row + (int64_t)xmin * 3;
            for (int x = 0; x < xmax; x++) {
                const uint32_t kx = (uint32_t)k[x];
                s0 += p[3 * x + 0] * kx;
                s1 += p[3 * x + 1] * kx;
                s2 += p[3 * x + 2] * kx;
            }
            o[3 * (xx - x0) + 0] = clip8(s0);
            o[3 * (xx - x0) + 1] = clip8(s1);
            o[3 * (xx - x0) + 2] = clip8(s2);
        }
    }
}

/* Output rows [y0, y1) from in (w pixels wide) whose row 0 is source row in_row0; output row yy
 * goes to out + (yy − y0)·out_stride bytes. */
static void pass_vertical(const uint8_t *in, int64_t w, int64_t in_row0, int64_t y0, int64_t y1,
                          uint8_t *out, int64_t out_stride, int ksize, const int *bounds,
                          const int32_t *kk, uint32_t *acc) {
    for (int64_t yy = y0; yy < y1; yy++) {
        const int64_t ymin = bounds[yy * 2 + 0] - in_row0;
        const int ymax = bounds[yy * 2 + 1];
        const int32_t *k = kk + yy * ksize;
        uint8_t *o = out + (yy - y0) * out_stride;
        /* Row by row over the window: the inner loop runs along a contiguous row of
         * accumulators, which vectorizes. */
        for (int64_t xx = 0; xx < w * 3; xx++)
            acc[xx] = 1u << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++) {
            const uint8_t *p = in + (ymin + y) * w * 3;
            const uint32_t ky = (uint32_t)k[y];
            for (int64_t xx = 0; xx < w * 3; xx++)
                acc[xx] += p[xx] * ky;
        }
        for (int64_t xx = 0; xx < w * 3; xx++)
            o[xx] = clip8(acc[xx]);
    }
}

/* The window (top, left, ch, cw) of src resized to w × h, black outside the resized image.
 * Every output pixel depends only on its own coefficients, so computing the window alone gives
 * exactly the bytes of Pillow's full resize followed by a crop, for less work (a 4:3 photo
 * cropped square skips a quarter of the horizontal pass). */
static enum cge_status resize_region(const struct cge_image *src, int64_t w, int64_t h,
                                     enum cge_resample filter, int64_t top, int64_t left,
                                     int64_t ch, int64_t cw, struct cge_image *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "resize: no output");
    memset(out, 0, sizeof(*out));
    if (!src || !src->rgb || src->w <= 0 || src->h <= 0)
        return cge__err(CGE_ERR_INVALID_VALUE, "resize: empty source image");
    /* Pillow keeps sizes in int; so do the index computations here. */
    const int64_t lim = (int64_t)1 << 28;
    if (w <= 0 || h <= 0 || w > lim || h > lim || src->w > lim || src->h > lim || ch <= 0 ||
        cw <= 0 || ch > lim || cw > lim || top < -lim || top > lim || left < -lim || left > lim)
        return cge__err(CGE_ERR_INVALID_VALUE, "resize: %lld x %lld → %lld x %lld",
                        (long long)src->w, (long long)src->h, (long long)w, (long long)h);
    struct filter f;
    switch (filter) {
    case CGE_RESAMPLE_LANCZOS:
        f = (struct filter){lanczos_filter, 3.0};
        break;
    case CGE_RESAMPLE_BILINEAR:
        f = (struct filter){bilinear_filter, 1.0};
        break;
    case CGE_RESAMPLE_BICUBIC:
        f = (struct filter){bicubic_filter, 2.0};
        break;
    case CGE_RESAMPLE_BOX:
        f = (struct filter){box_filter, 0.5};
        break;
    case CGE_RESAMPLE_HAMMING:
        f = (struct filter){hamming_filter, 1.0};
        break;
    default:
        return cge__err(CGE_ERR_UNSUPPORTED, "resize: resample filter %d is not supported",
                        (int)filter);
    }
    const int need_h = w != src->w, need_v = h != src->h;
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    uint8_t *tmp = NULL;
    uint32_t *acc = NULL;
    enum cge_status st = CGE_OK;
    out->rgb = cge__calloc((size_t)(ch * cw), 3);
    if (!out->rgb) {
        st = cge__err(CGE_ERR_NOMEM, "resize: %lld x %lld image", (long long)cw, (long long)ch);
        goto done;
    }
    out->w = cw;
    out->h = ch;
    /* The part of the window inside the resized image. */
    const int64_t x0 = left > 0 ? left : 0, x1 = left + cw < w ? left + cw : w;
    const int64_t y0 = top > 0 ? top : 0, y1 = top + ch < h ? top + ch : h;
    if (x1 <= x0 || y1 <= y0) goto done; /* all padding */
    int ksh = precompute(src->w, 0.0f, (float)src->w, w, &f, &bh, &kh);
    int ksv = precompute(src->h, 0.0f, (float)src->h, h, &f, &bv, &kv);
    if (!ksh || !ksv) {
        st = cge__err(CGE_ERR_NOMEM, "resize: coefficient tables");
        goto done;
    }
    /* The source rows the vertical pass reads (all of [y0, y1) when it is skipped). */
    const int64_t r0 = need_v ? bv[y0 * 2] : y0;
    const int64_t r1 = need_v ? (int64_t)bv[(y1 - 1) * 2] + bv[(y1 - 1) * 2 + 1] : y1;
    const int64_t cx = x1 - x0;
    /* Horizontal pass into tmp (cx wide, rows r0..r1), or the source columns as they are. */
    tmp = cge__malloc((size_t)(cx * (r1 - r0) * 3));
    if (!tmp) {
        st = cge__err(CGE_ERR_NOMEM, "resize: %lld x %lld intermediate", (long long)cx,
                      (long long)(r1 - r0));
        goto done;
    }
    if (need_h) {
        pass_horizontal(src->rgb, src->w, r0, r1 - r0, x0, x1, tmp, ksh, bh, kh);
    } else {
        for (int64_t r = r0; r < r1; r++)
            memcpy(tmp + (r - r0) * cx * 3, src->rgb + (r * src->w + x0) * 3, (size_t)cx * 3);
    }
    uint8_t *dst = out->rgb + ((y0 - top) * cw + (x0 - left)) * 3;
    if (need_v) {
        acc = cge__malloc((size_t)(cx * 3) * sizeof(uint32_t));
        if (!acc) {
            st = cge__err(CGE_ERR_NOMEM, "resize: row accumulators");
            goto done;
        }
        pass_vertical(tmp, cx, r0, y0, y1, dst, cw * 3, ksv, bv, kv, acc);
    } else {
        for (int64_t yy = y0; yy < y1; yy++)
            memcpy(dst + (yy - y0) * cw * 3, tmp + (yy - r0) * cx * 3, (size_t)cx * 3);
    }
done:
    cge__free(bh);
    cge__free(bv);
    cge__free(kh);
    cge__free(kv);
    cge__free(tmp);
    cge__free(acc);
    if (st != CGE_OK) cge_image_deinit(out);
    return st;
}

enum cge_status cge_image_resize(const struct cge_image *src, int64_t w, int64_t h,
                                 enum cge_resample filter, struct cge_image *out) {
    return resize_region(src, w, h, filter, 0, 0, h, w, out);
}

enum cge_status cge_image_resize_crop(const struct cge_image *src, int64_t w, int64_t h,
                                      enum cge_resample filter, int64_t top, int64_t left,
                                      int64_t ch, int64_t cw, struct cge_image *out) {
    return resize_region(src, w, h, filter, top, left, ch, cw, out);
}

enum cge_status cge_image_crop(const struct cge_image *src, int64_t top, int64_t left, int64_t h,
                               int64_t w, struct cge_image *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "crop: no output");
    memset(out, 0, sizeof(*out));
    if (!src || !src->rgb || w <= 0 || h <= 0 || w > (1 << 28) || h > (1 << 28))
        return cge__err(CGE_ERR_INVALID_VALUE, "crop: %lld x %lld window", (long long)w,
                        (long long)h);
    out->rgb = cge__calloc((size_t)(w * h), 3);
    if (!out->rgb)
        return cge__err(CGE_ERR_NOMEM, "crop: %lld x %lld image", (long long)w, (long long)h);
    for (int64_t y = 0; y < h; y++) {
        int64_t sy = top + y;
        if (sy < 0 || sy >= src->h) continue;
        int64_t x0 = left < 0 ? -left : 0;
        int64_t x1 = left + w > src->w ? src->w - left : w;
        if (x1 <= x0) continue;
        memcpy(out->rgb + (y * w + x0) * 3, src->rgb + (sy * src->w + left + x0) * 3,
               (size_t)(x1 - x0) * 3);
    }
    out->w = w;
    out->h = h;
    return CGE_OK;
}
