/*
 * test_media_image.c: image decoding and CLIP preprocessing.
 *
 *  - CLIPImageProcessor fixtures (transformers 4.40 + Pillow 9.4): resized and cropped uint8
 *    images byte-equal, pixel_values within 1e-5.
 *  - PNG color types and depths, written here with libpng, decoded as PIL's convert("RGB")
 *    (expected values computed in the test from PIL's rules, not by the decoder).
 *  - JPEG and WebP inputs of tests/fixtures/media: lossless WebP equals its PNG source; lossy
 *    files stay close to theirs.
 *  - Limits and corruption: a 50,000 × 50,000 header in each format is refused before
 *    allocation; truncated and bit-flipped files fail cleanly.
 *  - preprocessor_config.json variants.
 */
#include "testhelp.h"

#include "core/core.h"
#include "media/image.h"

#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>

#define PRE "tests/fixtures/preprocess/clip_image/"

/* ---- fixtures ------------------------------------------------------------------------------ */

static void test_clip_fixtures(void) {
    struct cge_clip_preproc p;
    CHECK(cge_clip_preproc_load(PRE "preprocessor_config.json", 224, &p) == CGE_OK);
    CHECK(p.shortest_edge == 224 && p.crop_h == 224 && p.crop_w == 224);
    CHECK(p.resample == CGE_RESAMPLE_BICUBIC && p.do_rescale && p.do_normalize);
    const int64_t src_hw[3][2] = {{200, 300}, {259, 173}, {384, 512}};
    const int64_t res_hw[3][2] = {{224, 336}, {335, 224}, {224, 298}};
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, PRE "image_%d.png", i);
        struct cge_image img;
        CHECK(cge_image_load(path, 0, &img) == CGE_OK);
        CHECK(img.h == src_hw[i][0] && img.w == src_hw[i][1]);
        struct cge_image r, c;
        CHECK(cge_clip_resize_crop(&img, &p, &r, &c) == CGE_OK);
        CHECK(r.h == res_hw[i][0] && r.w == res_hw[i][1]);
        size_t n = 0;
        snprintf(path, sizeof path, PRE "resized_%d.u8.bin", i);
        char *ref = th_read_file(path, &n);
        CHECK(ref && n == (size_t)(r.w * r.h * 3));
        if (ref && n == (size_t)(r.w * r.h * 3)) {
            size_t diff = 0;
            for (size_t k = 0; k < n; k++)
                diff += (uint8_t)ref[k] != r.rgb[k];
            CHECK_MSG(diff == 0, "image %d: %zu of %zu resized bytes differ", i, diff, n);
        }
        free(ref);
        snprintf(path, sizeof path, PRE "cropped_%d.u8.bin", i);
        ref = th_read_file(path, &n);
        CHECK(ref && n == 224 * 224 * 3 && c.w == 224 && c.h == 224);
        if (ref && n == 224 * 224 * 3) CHECK(memcmp(ref, c.rgb, n) == 0);
        /* the crop-only path (what cge_clip_preprocess uses) gives the same bytes */
        struct cge_image c2;
        CHECK(cge_clip_resize_crop(&img, &p, NULL, &c2) == CGE_OK);
        if (ref && n == 224 * 224 * 3) CHECK(c2.w == 224 && memcmp(ref, c2.rgb, n) == 0);
        cge_image_deinit(&c2);
        free(ref);
        float *pv = malloc(3 * 224 * 224 * sizeof(float));
        CHECK(cge_clip_preprocess(&img, &p, pv) == CGE_OK);
        snprintf(path, sizeof path, PRE "pixel_values_%d.bin", i);
        size_t nf = 0;
        float *refp = th_read_f32(path, &nf);
        CHECK(refp && nf == 3 * 224 * 224);
        if (refp && nf == 3 * 224 * 224) {
            double md = 0;
            for (size_t k = 0; k < nf; k++)
                md = fmax(md, fabs((double)pv[k] - refp[k]));
            CHECK_MSG(md <= 1e-5, "image %d: pixel_values max abs diff %g", i, md);
            printf("  clip_image %d: pixel_values max abs diff %.3g\n", i, md);
        }
        free(refp);
        free(pv);
        cge_image_deinit(&r);
        cge_image_deinit(&c);
        cge_image_deinit(&img);
    }
}

/* The e2e images: camera.png is grayscale (mode L → R=G=B), chelsea.png RGB with an ICC profile
 * (not applied). */
static void test_real_pngs(void) {
    struct cge_image a, b;
    CHECK(cge_image_load("tests/assets/media/images/camera.png", 0, &a) == CGE_OK);
    CHECK(a.w == 512 && a.h == 512);
    int gray = 1;
    for (int64_t i = 0; i < a.w * a.h; i++)
        gray &= a.rgb[3 * i] == a.rgb[3 * i + 1] && a.rgb[3 * i] == a.rgb[3 * i + 2];
    CHECK(gray);
    CHECK(cge_image_load("tests/assets/media/images/chelsea.png", 0, &b) == CGE_OK);
    CHECK(b.w == 451 && b.h == 300);
    cge_image_deinit(&a);
    cge_image_deinit(&b);
    const char *names[] = {"astronaut.png", "coffee.png"};
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/assets/media/images/%s", names[i]);
        CHECK(cge_image_load(path, 0, &a) == CGE_OK && a.w > 0 && a.h > 0);
        cge_image_deinit(&a);
    }
}

/* ---- PNG variants written with libpng --------------------------------------------------------- */

struct membuf {
    unsigned char *p;
    size_t n, cap;
};

static void mem_write(png_structp png, png_bytep data, size_t n) {
    struct membuf *m = png_get_io_ptr(png);
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, data, n);
    m->n += n;
}

static void mem_flush(png_structp png) {
    (void)png;
}

/* Writes a w × h PNG of the given type; sample(x, y, c) gives each raw sample (palette index,
 * gray, ...). Returns the encoded file (free m.p). */
static struct membuf write_png(int w, int h, int ctype, int depth, int interlace,
                               unsigned (*sample)(int, int, int), int with_trns) {
    struct membuf m = {NULL, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.p);
        m.p = NULL;
        m.n = 0;
        return m;
    }
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[16];
        for (int i = 0; i < 16; i++) {
            pal[i].red = (png_byte)(i * 16);
            pal[i].green = (png_byte)(255 - i * 10);
            pal[i].blue = (png_byte)(i * 7 + 3);
        }
        png_set_PLTE(png, info, pal, 16);
        if (with_trns) {
            png_byte tr[4] = {0, 100, 200, 255};
            png_set_tRNS(png, info, tr, 4, NULL);
        }
    } else if (with_trns && ctype == PNG_COLOR_TYPE_RGB) {
        png_color_16 tc = {0, 10, 20, 30, 0};
        png_set_tRNS(png, info, NULL, 0, &tc);
    }
    png_write_info(png, info);
    int ch = ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_PALETTE ? 1
             : ctype == PNG_COLOR_TYPE_GRAY_ALPHA                            ? 2
             : ctype == PNG_COLOR_TYPE_RGB                                   ? 3
                                                                             : 4;
    size_t rowbytes = ((size_t)w * (size_t)ch * (size_t)depth + 7) / 8;
    unsigned char *rows = calloc((size_t)h, rowbytes);
    png_bytep *rp = malloc(sizeof(png_bytep) * (size_t)h);
    for (int y = 0; y < h; y++) {
        rp[y] = rows + (size_t)y * rowbytes;
        for (int x = 0; x < w; x++) {
            for (int c = 0; c < ch; c++) {
                unsigned v = sample(x, y, c);
                size_t bit = ((size_t)x * (size_t)ch + (size_t)c) * (size_t)depth;
                if (depth == 16) {
                    rp[y][bit / 8] = (png_byte)(v >> 8);
                    rp[y][bit / 8 + 1] = (png_byte)(v & 255);
                } else if (depth == 8) {
                    rp[y][bit / 8] = (png_byte)v;
                } else {
                    int shift = 8 - depth - (int)(bit % 8);
                    rp[y][bit / 8] |= (png_byte)(v << shift);
                }
            }
        }
    }
    png_write_image(png, rp);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(rp);
    return m;
}

static unsigned s_gray1(int x, int y, int c) {
    (void)c;
    return (unsigned)((x * 3 + y) & 1);
}
static unsigned s_gray2(int x, int y, int c) {
    (void)c;
    return (unsigned)((x + 2 * y) & 3);
}
static unsigned s_gray4(int x, int y, int c) {
    (void)c;
    return (unsigned)((x * 5 + y) & 15);
}
static unsigned s_byte(int x, int y, int c) {
    return (unsigned)((x * 37 + y * 11 + c * 71) & 255);
}
static unsigned s_word(int x, int y, int c) {
    return (unsigned)((x * 4099 + y * 257 + c * 7919) & 65535);
}
static unsigned s_gray16(int x, int y, int c) {
    (void)c;
    /* spans values below and above 255: PIL clips these to 255 */
    return (unsigned)((x * 13 + y * 29) % 600);
}
static unsigned s_pal(int x, int y, int c) {
    (void)c;
    return (unsigned)((x + y * 3) & 15);
}

/* Expected RGB under PIL's rules for each case. */
enum kind {
    K_GRAY_LOW,
    K_GRAY8,
    K_GRAY16,
    K_GA8,
    K_GA16,
    K_RGB8,
    K_RGB16,
    K_RGBA8,
    K_RGBA16,
    K_PAL
};

static void expect_px(enum kind k, int depth, int x, int y, unsigned char rgb[3]) {
    unsigned v;
    switch (k) {
    case K_GRAY_LOW: {
        unsigned (*f)(int, int, int) = depth == 1 ? s_gray1 : depth == 2 ? s_gray2 : s_gray4;
        v = f(x, y, 0) * (255u / ((1u << depth) - 1u));
        rgb[0] = rgb[1] = rgb[2] = (unsigned char)v;
        return;
    }
    case K_GRAY8:
    case K_GA8:
        rgb[0] = rgb[1] = rgb[2] = (unsigned char)s_byte(x, y, 0);
        return;
    case K_GRAY16:
        v = s_gray16(x, y, 0);
        rgb[0] = rgb[1] = rgb[2] = (unsigned char)(v > 255 ? 255 : v);
        return;
    case K_GA16:
        rgb[0] = rgb[1] = rgb[2] = (unsigned char)(s_word(x, y, 0) >> 8);
        return;
    case K_RGB8:
    case K_RGBA8:
        for (int c = 0; c < 3; c++)
            rgb[c] = (unsigned char)s_byte(x, y, c);
        return;
    case K_RGB16:
    case K_RGBA16:
        for (int c = 0; c < 3; c++)
            rgb[c] = (unsigned char)(s_word(x, y, c) >> 8);
        return;
    case K_PAL:
        v = s_pal(x, y, 0);
        rgb[0] = (unsigned char)(v * 16);
        rgb[1] = (unsigned char)(255 - v * 10);
        rgb[2] = (unsigned char)(v * 7 + 3);
        return;
    }
}

static void test_png_variants(void) {
    struct {
        enum kind k;
        int ctype, depth;
        unsigned (*f)(int, int, int);
        int trns;
        const char *name;
    } cases[] = {
        {K_GRAY_LOW, PNG_COLOR_TYPE_GRAY, 1, s_gray1, 0, "gray1"},
        {K_GRAY_LOW, PNG_COLOR_TYPE_GRAY, 2, s_gray2, 0, "gray2"},
        {K_GRAY_LOW, PNG_COLOR_TYPE_GRAY, 4, s_gray4, 0, "gray4"},
        {K_GRAY8, PNG_COLOR_TYPE_GRAY, 8, s_byte, 0, "gray8"},
        {K_GRAY16, PNG_COLOR_TYPE_GRAY, 16, s_gray16, 0, "gray16"},
        {K_GA8, PNG_COLOR_TYPE_GRAY_ALPHA, 8, s_byte, 0, "gray+alpha8"},
        {K_GA16, PNG_COLOR_TYPE_GRAY_ALPHA, 16, s_word, 0, "gray+alpha16"},
        {K_RGB8, PNG_COLOR_TYPE_RGB, 8, s_byte, 0, "rgb8"},
        {K_RGB8, PNG_COLOR_TYPE_RGB, 8, s_byte, 1, "rgb8+tRNS"},
        {K_RGB16, PNG_COLOR_TYPE_RGB, 16, s_word, 0, "rgb16"},
        {K_RGBA8, PNG_COLOR_TYPE_RGB_ALPHA, 8, s_byte, 0, "rgba8"},
        {K_RGBA16, PNG_COLOR_TYPE_RGB_ALPHA, 16, s_word, 0, "rgba16"},
        {K_PAL, PNG_COLOR_TYPE_PALETTE, 4, s_pal, 0, "palette4"},
        {K_PAL, PNG_COLOR_TYPE_PALETTE, 8, s_pal, 1, "palette8+tRNS"},
    };
    const int w = 37, h = 23;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int il = 0; il < 2; il++) {
            struct membuf m =
                write_png(w, h, cases[i].ctype, cases[i].depth, il, cases[i].f, cases[i].trns);
            CHECK(m.p != NULL);
            struct cge_image img;
            enum cge_status st = cge_image_decode(m.p, m.n, 0, &img);
            CHECK_MSG(st == CGE_OK, "%s%s: %s", cases[i].name, il ? " interlaced" : "",
                      cge_errmsg());
            if (st == CGE_OK) {
                CHECK(img.w == w && img.h == h);
                int bad = 0;
                for (int y = 0; y < h; y++) {
                    for (int x = 0; x < w; x++) {
                        unsigned char e[3];
                        expect_px(cases[i].k, cases[i].depth, x, y, e);
                        bad += memcmp(e, img.rgb + ((size_t)y * w + x) * 3, 3) != 0;
                    }
                }
                CHECK_MSG(bad == 0, "%s%s: %d pixels differ", cases[i].name,
                          il ? " interlaced" : "", bad);
            }
            cge_image_deinit(&img);
            free(m.p);
        }
    }
}

/* ---- JPEG and WebP ---------------------------------------------------------------------------- */

static double mean_abs_diff(const struct cge_image *a, const struct cge_image *b) {
    if (a->w != b->w || a->h != b->h) return 1e9;
    double s = 0;
    for (int64_t i = 0; i < a->w * a->h * 3; i++)
        s += fabs((double)a->rgb[i] - b->rgb[i]);
    return s / (double)(a->w * a->h * 3);
}

static void test_jpeg_webp(void) {
    struct cge_image chelsea, camera, small, x;
    CHECK(cge_image_load("tests/assets/media/images/chelsea.png", 0, &chelsea) == CGE_OK);
    CHECK(cge_image_load("tests/assets/media/images/camera.png", 0, &camera) == CGE_OK);
    CHECK(cge_image_load(PRE "image_1.png", 0, &small) == CGE_OK);
    struct {
        const char *file;
        const struct cge_image *src;
        double tol; /* mean |difference| to the PNG the file was made from */
    } cases[] = {
        {"tests/fixtures/media/chelsea_q90.jpg", &chelsea, 3.0},
        {"tests/fixtures/media/chelsea_progressive_q80.jpg", &chelsea, 4.0},
        {"tests/fixtures/media/camera_gray_q85.jpg", &camera, 4.0},
        {"tests/fixtures/media/chelsea_q80.webp", &chelsea, 5.0},
        {"tests/fixtures/media/image_1_lossless.webp", &small, 0.0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum cge_status st = cge_image_load(cases[i].file, 0, &x);
        CHECK_MSG(st == CGE_OK, "%s: %s", cases[i].file, cge_errmsg());
        if (st != CGE_OK) continue;
        double d = mean_abs_diff(&x, cases[i].src);
        CHECK_MSG(d <= cases[i].tol, "%s: mean |diff| %g", cases[i].file, d);
        if (strstr(cases[i].file, "gray")) {
            int gray = 1;
            for (int64_t k = 0; k < x.w * x.h; k++)
                gray &= x.rgb[3 * k] == x.rgb[3 * k + 1] && x.rgb[3 * k] == x.rgb[3 * k + 2];
            CHECK(gray);
        }
        cge_image_deinit(&x);
    }
    /* Every truncation of a JPEG fails cleanly (PIL: "image file is truncated"), and so does
     * every truncation of a PNG and a WebP. */
    const char *trunc_files[] = {"tests/fixtures/media/chelsea_q90.jpg",
                                 "tests/fixtures/media/chelsea_progressive_q80.jpg",
                                 "tests/fixtures/media/chelsea_q80.webp",
                                 "tests/fixtures/media/image_1_lossless.webp", PRE "image_1.png"};
    for (size_t f = 0; f < sizeof(trunc_files) / sizeof(trunc_files[0]); f++) {
        size_t n = 0;
        char *data = th_read_file(trunc_files[f], &n);
        CHECK(data != NULL);
        if (!data) continue;
        int bad = 0;
        /* Cut inside the image data; a PNG may lose its IEND (not needed) but no IDAT. */
        size_t lim = strstr(trunc_files[f], ".png") ? n - 12 - 1 : n - 2;
        for (size_t cut = 0; cut < lim; cut += 1 + cut / 8) {
            enum cge_status st = cge_image_decode(data, cut, 0, &x);
            if (st != CGE_ERR_SERIALIZATION && !(cut == 0 && st == CGE_ERR_EMPTY_INPUT) &&
                !(cut < 12 && st == CGE_ERR_UNSUPPORTED))
                bad++;
            cge_image_deinit(&x);
        }
        CHECK_MSG(bad == 0, "%s: %d truncations did not fail with a serialization error",
                  trunc_files[f], bad);
        /* Bit flips: any status, no crash (the sanitizers watch). */
        uint64_t seed = 42 + f;
        for (int k = 0; k < 60; k++) {
            char *copy = malloc(n);
            memcpy(copy, data, n);
            for (int j = 0; j < 4; j++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                size_t pos = (size_t)(seed >> 33) % n;
                copy[pos] ^= (char)(1u << ((seed >> 20) & 7));
            }
            if (cge_image_decode(copy, n, 0, &x) == CGE_OK) CHECK(x.w > 0 && x.h > 0 && x.rgb);
            cge_image_deinit(&x);
            free(copy);
        }
        free(data);
    }
    cge_image_deinit(&chelsea);
    cge_image_deinit(&camera);
    cge_image_deinit(&small);
}

/* A 4-component JPEG: PIL reads it as Adobe-inverted CMYK ("CMYK;I") and converts with
 * cmyk2rgb: with C = 255 − raw_c (and likewise M, Y) and 255 − K = raw_k,
 * R = raw_k − C·raw_k/255 (rounded as PIL's MULDIV255). Constant blocks, quality 100. */
static void test_jpeg_cmyk(void) {
    const int w = 32, h = 16;
    const unsigned char raw[2][4] = {{200, 100, 50, 220}, {10, 250, 128, 90}};
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *buf = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char row[32 * 4];
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w; x++)
            memcpy(row + 4 * x, raw[x < 16 ? 0 : 1], 4);
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    struct cge_image img;
    enum cge_status st = cge_image_decode(buf, len, 0, &img);
    CHECK_MSG(st == CGE_OK, "cmyk: %s", cge_errmsg());
    if (st == CGE_OK) {
        int worst = 0;
        for (int b = 0; b < 2; b++) {
            const unsigned char *px = img.rgb + ((size_t)8 * w + (b ? 24 : 4)) * 3;
            for (int ch = 0; ch < 3; ch++) {
                double cc = 255.0 - raw[b][ch], nk = raw[b][3];
                int want = (int)floor(nk - cc * nk / 255.0 + 0.5);
                int d = abs((int)px[ch] - want);
                if (d > worst) worst = d;
            }
        }
        CHECK_MSG(worst <= 2, "cmyk: off by %d", worst);
    }
    cge_image_deinit(&img);
    free(buf);
}

/* ---- limits ---------------------------------------------------------------------------------- */

static uint32_t crc32_bytes(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put32be(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void test_limits(void) {
    struct cge_image x;
    long before = cge__alloc_count();
    /* PNG: signature + IHDR of 50,000 × 50,000 RGB (+ a tiny IDAT that is never reached). */
    unsigned char png[64];
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    put32be(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put32be(png + 16, 50000);
    put32be(png + 20, 50000);
    png[24] = 8;
    png[25] = 2;
    png[26] = png[27] = png[28] = 0;
    put32be(png + 29, crc32_bytes(png + 12, 17));
    memset(png + 33, 0, sizeof(png) - 33);
    CHECK(cge_image_decode(png, sizeof(png), 0, &x) == CGE_ERR_INPUT_TOO_LONG);
    CHECK(x.rgb == NULL);
    CHECK(strstr(cge_errmsg(), "50000") != NULL);
    /* The same file under a budget that admits it fails on the (missing) image data instead. */
    CHECK(cge_image_decode(png, sizeof(png), (int64_t)50000 * 50000, &x) != CGE_OK);

    /* JPEG: SOI + SOF0 of 50,000 × 50,000 (3 components). */
    const unsigned char jpg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xC3, 0x50, 0xC3,
                                 0x50, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
                                 0x01, 0xFF, 0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x11,
                                 0x03, 0x11, 0x00, 0x3F, 0x00, 0x00, 0xFF, 0xD9};
    enum cge_status st = cge_image_decode(jpg, sizeof(jpg), 0, &x);
    /* libjpeg reads the header up to SOS; the quantization tables are missing, but the size
     * check comes first... unless libjpeg already rejects the header. Either is clean. */
    CHECK_MSG(st == CGE_ERR_INPUT_TOO_LONG || st == CGE_ERR_SERIALIZATION, "jpeg: %d %s", st,
              cge_errmsg());
    /* A complete, valid JPEG header: take a real file and patch its SOF dimensions. */
    size_t n = 0;
    char *real = th_read_file("tests/fixtures/media/chelsea_q90.jpg", &n);
    CHECK(real != NULL);
    int patched = 0;
    for (size_t i = 2; real && i + 9 < n; i++) {
        if ((unsigned char)real[i] == 0xFF && (unsigned char)real[i + 1] == 0xC0) {
            real[i + 5] = (char)0xC3, real[i + 6] = 0x50; /* height 50000 */
            real[i + 7] = (char)0xC3, real[i + 8] = 0x50; /* width 50000 */
            patched = 1;
            break;
        }
    }
    CHECK(patched);
    if (real) {
        st = cge_image_decode(real, n, 0, &x);
        CHECK_MSG(st == CGE_ERR_INPUT_TOO_LONG, "jpeg 50000²: %d %s", st, cge_errmsg());
        CHECK(x.rgb == NULL);
    }
    free(real);

    /* WebP: a 16383 × 16383 lossless (VP8L) header is 268 megapixels: over the default budget.
     * Encode a real small image, then patch the VP8L size fields. */
    uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t *webp = NULL;
    size_t wn = WebPEncodeLosslessRGB(px, 2, 2, 6, &webp);
    CHECK(wn > 25);
    if (wn > 25 && memcmp(webp + 12, "VP8L", 4) == 0) {
        /* bytes 21..24: 14 bits width-1, 14 bits height-1, 1 bit alpha, 3 bits version */
        uint32_t bits = (uint32_t)webp[21] | (uint32_t)webp[22] << 8 | (uint32_t)webp[23] << 16 |
                        (uint32_t)webp[24] << 24;
        bits = (bits & ~0x0FFFFFFFu) | 16382u | (16382u << 14);
        webp[21] = (uint8_t)bits, webp[22] = (uint8_t)(bits >> 8);
        webp[23] = (uint8_t)(bits >> 16), webp[24] = (uint8_t)(bits >> 24);
        st = cge_image_decode(webp, wn, 0, &x);
        CHECK_MSG(st == CGE_ERR_INPUT_TOO_LONG, "webp 16383²: %d %s", st, cge_errmsg());
        CHECK(cge_image_decode(webp, wn, 1000, &x) == CGE_ERR_INPUT_TOO_LONG);
    }
    WebPFree(webp);
    /* None of the refusals allocated pixel memory (a few small allocations for the decoders'
     * contexts are expected; 50,000² RGB would be 7.5 GB). */
    CHECK(cge__alloc_count() - before < 100);

    /* Other formats and empty input. */
    CHECK(cge_image_decode("GIF89a....", 10, 0, &x) == CGE_ERR_UNSUPPORTED);
    CHECK(cge_image_decode("", 0, 0, &x) == CGE_ERR_EMPTY_INPUT);
    CHECK(cge_image_load("tests/fixtures/media/no_such_file.png", 0, &x) != CGE_OK);
    /* A small budget refuses a real image. */
    CHECK(cge_image_load("tests/assets/media/images/camera.png", 512 * 511, &x) ==
          CGE_ERR_INPUT_TOO_LONG);
    CHECK(cge_image_load("tests/assets/media/images/camera.png", 512 * 512, &x) == CGE_OK);
    cge_image_deinit(&x);
    cge_image_deinit(&x); /* twice: a no-op */
    cge_image_deinit(NULL);
}

/* ---- allocation failures ------------------------------------------------------------------------ */

/* Fails the k-th allocation for every k of a decode + preprocess: each run must end with an
 * error status (or succeed once k is past the last allocation) and leak nothing (ASan). */
static void test_oom(void) {
    const char *files[] = {PRE "image_1.png", "tests/fixtures/media/chelsea_q90.jpg",
                           "tests/fixtures/media/image_1_lossless.webp"};
    struct cge_clip_preproc p = cge_clip_preproc_default(224);
    float *px = malloc(3 * 224 * 224 * sizeof(float));
    for (int f = 0; f < 3; f++) {
        size_t n = 0;
        char *data = th_read_file(files[f], &n);
        CHECK(data != NULL);
        if (!data) continue;
        long a0 = cge__alloc_count();
        struct cge_image img;
        CHECK(cge_image_decode(data, n, 0, &img) == CGE_OK);
        CHECK(cge_clip_preprocess(&img, &p, px) == CGE_OK);
        cge_image_deinit(&img);
        long total = cge__alloc_count() - a0;
        CHECK(total > 0);
        int bad = 0;
        for (long k = 0; k <= total; k++) {
            cge__fail_alloc_after(k);
            enum cge_status st = cge_image_decode(data, n, 0, &img);
            if (st == CGE_OK) st = cge_clip_preprocess(&img, &p, px);
            cge__fail_alloc_after(-1);
            cge_image_deinit(&img);
            if (k < total && st == CGE_OK) bad++;
            if (k == total && st != CGE_OK) bad++;
        }
        CHECK_MSG(bad == 0, "%s: %d of %ld allocation failures not reported", files[f], bad, total);
        free(data);
    }
    free(px);
}

/* ---- resize corner cases ------------------------------------------------------------------------ */

static void test_resize(void) {
    /* A constant image stays constant under every filter, up or down (the weights sum to one in
     * fixed point up to rounding, which cannot move a constant by a full level). */
    struct cge_image c = {40, 30, malloc(40 * 30 * 3)}, o;
    memset(c.rgb, 173, 40 * 30 * 3);
    const int filters[] = {1, 2, 3, 4, 5};
    const int64_t sizes[][2] = {{20, 15}, {7, 3}, {80, 61}, {40, 31}, {1, 1}, {333, 2}};
    for (int f = 0; f < 5; f++) {
        for (int s = 0; s < 6; s++) {
            CHECK(cge_image_resize(&c, sizes[s][0], sizes[s][1], (enum cge_resample)filters[f],
                                   &o) == CGE_OK);
            int bad = 0;
            for (int64_t i = 0; i < o.w * o.h * 3; i++)
                bad += o.rgb[i] != 173;
            CHECK_MSG(bad == 0, "filter %d size %lld x %lld", filters[f], (long long)sizes[s][0],
                      (long long)sizes[s][1]);
            cge_image_deinit(&o);
        }
    }
    /* Same size: a copy. */
    for (int i = 0; i < 40 * 30 * 3; i++)
        c.rgb[i] = (uint8_t)(i * 7);
    CHECK(cge_image_resize(&c, 40, 30, CGE_RESAMPLE_BICUBIC, &o) == CGE_OK);
    CHECK(memcmp(o.rgb, c.rgb, 40 * 30 * 3) == 0);
    cge_image_deinit(&o);
    /* Box filter, exact halving: the mean of each 2×2 block, rounded half up (PIL's 22-bit
     * weights are exactly 1/2 here). Computed per pass: horizontal pairs, then vertical. */
    CHECK(cge_image_resize(&c, 20, 15, CGE_RESAMPLE_BOX, &o) == CGE_OK);
    int bad = 0;
    for (int y = 0; y < 15; y++) {
        for (int x = 0; x < 20; x++) {
            for (int ch = 0; ch < 3; ch++) {
                int r0 = (c.rgb[((2 * y) * 40 + 2 * x) * 3 + ch] +
                          c.rgb[((2 * y) * 40 + 2 * x + 1) * 3 + ch] + 1) /
                         2;
                int r1 = (c.rgb[((2 * y + 1) * 40 + 2 * x) * 3 + ch] +
                          c.rgb[((2 * y + 1) * 40 + 2 * x + 1) * 3 + ch] + 1) /
                         2;
                bad += o.rgb[(y * 20 + x) * 3 + ch] != (r0 + r1 + 1) / 2;
            }
        }
    }
    CHECK_MSG(bad == 0, "box halving: %d values differ", bad);
    cge_image_deinit(&o);
    /* A window of the resize equals the same window cut from the full resize, for every
     * filter, up and down, windows partly or wholly outside (black there). */
    uint64_t seed = 7;
    int mismatch = 0;
    for (int t = 0; t < 60; t++) {
        int64_t rw = 1 + (int64_t)((th_randf(&seed) + 1.0f) * 45),
                rh = 1 + (int64_t)((th_randf(&seed) + 1.0f) * 35);
        int64_t top = (int64_t)(th_randf(&seed) * 20), left = (int64_t)(th_randf(&seed) * 20);
        int64_t ch = 1 + (int64_t)((th_randf(&seed) + 1.0f) * 20),
                cw = 1 + (int64_t)((th_randf(&seed) + 1.0f) * 20);
        enum cge_resample f = (enum cge_resample)(1 + t % 5);
        struct cge_image full, win, cut;
        CHECK(cge_image_resize(&c, rw, rh, f, &full) == CGE_OK);
        CHECK(cge_image_resize_crop(&c, rw, rh, f, top, left, ch, cw, &win) == CGE_OK);
        CHECK(cge_image_crop(&full, top, left, ch, cw, &cut) == CGE_OK);
        if (win.rgb && cut.rgb && memcmp(win.rgb, cut.rgb, (size_t)(ch * cw * 3)) != 0) mismatch++;
        cge_image_deinit(&full);
        cge_image_deinit(&win);
        cge_image_deinit(&cut);
    }
    CHECK_MSG(mismatch == 0, "%d resize windows differ from crops of the full resize", mismatch);
    CHECK(cge_image_resize(&c, 0, 5, CGE_RESAMPLE_BICUBIC, &o) == CGE_ERR_INVALID_VALUE);
    CHECK(cge_image_resize(&c, 5, 5, CGE_RESAMPLE_NEAREST, &o) == CGE_ERR_UNSUPPORTED);
    /* Crop with padding (image smaller than the window): zeros outside. */
    CHECK(cge_image_crop(&c, -2, -3, 34, 46, &o) == CGE_OK);
    CHECK(o.rgb[0] == 0 && o.rgb[(2 * 46 + 3) * 3] == c.rgb[0]);
    CHECK(o.rgb[(33 * 46 + 45) * 3 + 2] == 0);
    cge_image_deinit(&o);
    cge_image_deinit(&c);
}

/* ---- preprocessor configs --------------------------------------------------------------------------- */

static int write_tmp(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fputs(text, f);
    fclose(f);
    return 1;
}

static void test_preproc_config(void) {
    struct cge_clip_preproc p;
    const char *path = "/tmp/cge_test_clip_preproc.json";
    CHECK(write_tmp(path, "{\"size\": {\"shortest_edge\": 336}, \"crop_size\": {\"height\": 336, "
                          "\"width\": 336}, \"resample\": 2, \"do_rescale\": false}"));
    CHECK(cge_clip_preproc_load(path, 224, &p) == CGE_OK);
    CHECK(p.shortest_edge == 336 && p.crop_h == 336 && p.resample == CGE_RESAMPLE_BILINEAR);
    CHECK(p.do_rescale == 0 && p.do_normalize == 1);
    CHECK(fabsf(p.mean[0] - 0.48145466f) < 1e-9f);
    int64_t w, h;
    cge_clip_resize_dims(&p, 1000, 500, &w, &h);
    CHECK(w == 672 && h == 336);
    cge_clip_resize_dims(&p, 333, 1000, &w, &h);
    CHECK(w == 336 && h == 1009); /* int(336·1000/333) = int(1009.009) */
    CHECK(
        write_tmp(path, "{\"size\": {\"height\": 64, \"width\": 32}, \"do_center_crop\": false}"));
    CHECK(cge_clip_preproc_load(path, 224, &p) == CGE_OK);
    cge_clip_output_dims(&p, 1000, 500, &w, &h);
    CHECK(w == 32 && h == 64);
    CHECK(write_tmp(path, "{\"image_std\": [0.5, 0, 0.5]}"));
    CHECK(cge_clip_preproc_load(path, 224, &p) == CGE_ERR_SERIALIZATION);
    CHECK(write_tmp(path, "{\"size\": -3}"));
    CHECK(cge_clip_preproc_load(path, 224, &p) == CGE_ERR_SERIALIZATION);
    CHECK(write_tmp(path, "{\"resample\": 0}"));
    CHECK(cge_clip_preproc_load(path, 224, &p) == CGE_ERR_UNSUPPORTED);
    CHECK(write_tmp(path, "[1, 2"));
    CHECK(cge_clip_preproc_load(path, 224, &p) != CGE_OK);
    CHECK(cge_clip_preproc_load("/tmp/cge_no_such_preproc.json", 224, &p) != CGE_OK);
    remove(path);
    /* The SD-1.5 copy of the ViT-L/14 config in the assets. */
    CHECK(cge_clip_preproc_load("tests/assets/clip-vit-large-patch14/"
                                "preprocessor_config.sd-v1-5-feature_extractor.json",
                                224, &p) == CGE_OK);
    CHECK(p.shortest_edge == 224 && p.crop_w == 224 && p.resample == CGE_RESAMPLE_BICUBIC);

    /* No rescale, no normalize: the raw bytes as floats, CHW. */
    struct cge_image img = {4, 2, malloc(4 * 2 * 3)};
    for (int i = 0; i < 24; i++)
        img.rgb[i] = (uint8_t)(i * 10);
    struct cge_clip_preproc q = cge_clip_preproc_default(224);
    q.do_resize = q.do_center_crop = q.do_rescale = q.do_normalize = 0;
    float out[24];
    CHECK(cge_clip_preprocess(&img, &q, out) == CGE_OK);
    CHECK(out[0] == 0.0f && out[1] == 30.0f && out[8] == 10.0f && out[16] == 20.0f);
    cge_image_deinit(&img);
}

int main(void) {
    RUN(test_clip_fixtures);
    RUN(test_real_pngs);
    RUN(test_png_variants);
    RUN(test_jpeg_webp);
    RUN(test_jpeg_cmyk);
    RUN(test_limits);
    RUN(test_resize);
    RUN(test_oom);
    RUN(test_preproc_config);
    return test_report("media_image");
}
