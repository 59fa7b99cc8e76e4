/*
 * image.c: PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp) decoding to 8-bit RGB, the way
 * Pillow 9.4's Image.open(...).convert("RGB") sees the file.
 *
 * Key decisions:
 *  - The pixel budget is checked from the header, before any pixel memory is allocated, so a
 *    50,000 × 50,000 image costs a few hundred bytes of parsing and returns
 *    CGE_ERR_INPUT_TOO_LONG.
 *  - libpng and libjpeg report errors by longjmp. Every object that must be freed after such a
 *    jump lives in a context struct reached through a pointer that is not modified between
 *    setjmp and the jump, so no local variable's value is indeterminate after it (C11 7.13.2.1).
 *  - PIL's conversions are mirrored sample for sample: alpha is dropped (no compositing),
 *    grayscale and palette are expanded, 16-bit RGB/RGBA/LA keep the high byte (PIL's ";16B"
 *    unpackers), 16-bit grayscale is clipped to 255 (PIL opens it as mode "I", and I→RGB
 *    clips), CMYK JPEGs are read as Adobe-inverted CMYK and converted with PIL's cmyk2rgb.
 *    Gamma, ICC profiles and EXIF orientation are not applied (PIL does not apply them).
 *  - A truncated JPEG is an error (PIL raises "image file is truncated"); other libjpeg warnings
 *    (extraneous bytes, ...) are ignored, as PIL ignores them. Progressive JPEGs with more than
 *    500 scans are refused (libjpeg-turbo's TurboJPEG limit against scan-count bombs).
 */
#include "media/image.h"

#include "core/core.h"

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <webp/decode.h>

/* ==== common =================================================================================== */

enum cge_image_format cge_image_sniff(const void *buf, size_t len) {
    const unsigned char *b = buf;
    if (!b) return CGE_IMAGE_UNKNOWN;
    if (len >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return CGE_IMAGE_PNG;
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return CGE_IMAGE_JPEG;
    if (len >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return CGE_IMAGE_WEBP;
    return CGE_IMAGE_UNKNOWN;
}

void cge_image_deinit(struct cge_image *img) {
    if (!img) return;
    cge__free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

static enum cge_status check_budget(const char *fmt, int64_t w, int64_t h, int64_t max_pixels) {
    if (w <= 0 || h <= 0)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: image of %lld x %lld pixels", fmt, (long long)w,
                        (long long)h);
    if (w > max_pixels || h > max_pixels || w * h > max_pixels)
        return cge__err(CGE_ERR_INPUT_TOO_LONG,
                        "%s: image of %lld x %lld = %.0f pixels exceeds the budget of %lld pixels",
                        fmt, (long long)w, (long long)h, (double)w * (double)h,
                        (long long)max_pixels);
    return CGE_OK;
}

/* ==== PNG ====================================================================================== */

struct png_ctx {
    const unsigned char *data;
    size_t len, pos;
    png_structp png;
    png_infop info;
    unsigned char *pix;   /* decoded samples (rowbytes · h) */
    unsigned char **rows; /* row pointers into pix */
    char msg[200];        /* libpng's error message */
};

static void png_read_cb(png_structp png, png_bytep out, size_t n) {
    struct png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "truncated file");
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

static void png_error_cb(png_structp png, png_const_charp msg) {
    struct png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static png_voidp png_malloc_cb(png_structp png, png_alloc_size_t n) {
    (void)png;
    return cge__malloc(n);
}

static void png_free_cb(png_structp png, png_voidp p) {
    (void)png;
    cge__free(p);
}

/* Runs the libpng part; every jump lands here and returns the status. The caller frees c. */
static enum cge_status png_decode_inner(struct png_ctx *c, int64_t max_pixels,
                                        struct cge_image *out) {
    if (setjmp(png_jmpbuf(c->png)))
        return cge__err(CGE_ERR_SERIALIZATION, "PNG: %s (at byte %zu of %zu)", c->msg, c->pos,
                        c->len);
    png_set_user_limits(c->png, 0x7fffffff, 0x7fffffff);
    png_set_read_fn(c->png, c, png_read_cb);
    png_read_info(c->png, c->info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    enum cge_status st = check_budget("PNG", (int64_t)w, (int64_t)h, max_pixels);
    if (st != CGE_OK) return st;

    /* 16-bit grayscale stays 16-bit (clipped below, as PIL's "I" → RGB); everything else is
     * reduced to 8-bit RGB by libpng itself. */
    const int gray16 = (ctype == PNG_COLOR_TYPE_GRAY && depth == 16);
    if (depth == 16 && !gray16) png_set_strip_16(c->png);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    if (!gray16 && (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA))
        png_set_gray_to_rgb(c->png);
    /* Drop alpha, whether from the color type or from a tRNS chunk expanded by palette_to_rgb. */
    png_set_strip_alpha(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);

    const size_t rowbytes = png_get_rowbytes(c->png, c->info);
    const int channels = png_get_channels(c->png, c->info);
    const int odepth = png_get_bit_depth(c->png, c->info);
    const size_t want = gray16 ? 2 * (size_t)w : 3 * (size_t)w;
    if (rowbytes != want ||
        (gray16 ? (channels != 1 || odepth != 16) : (channels != 3 || odepth != 8)))
        return cge__err(CGE_ERR_SERIALIZATION,
                        "PNG: unexpected layout after conversion (%d channels, %d bits, %zu bytes "
                        "per row; color type %d, depth %d)",
                        channels, odepth, rowbytes, ctype, depth);
    c->pix = cge__malloc(rowbytes * (size_t)h);
    c->rows = cge__malloc(sizeof(*c->rows) * (size_t)h);
    if (!c->pix || !c->rows)
        return cge__err(CGE_ERR_NOMEM, "PNG: %u x %u image (%zu bytes)", (unsigned)w, (unsigned)h,
                        rowbytes * (size_t)h);
    for (png_uint_32 y = 0; y < h; y++)
        c->rows[y] = c->pix + (size_t)y * rowbytes;
    png_read_image(c->png, c->rows);
    /* The chunks after the image data (and IEND) are not read: PIL does not need them either. */

    if (gray16) {
        unsigned char *rgb = cge__malloc(3 * (size_t)w * (size_t)h);
        if (!rgb)
            return cge__err(CGE_ERR_NOMEM, "PNG: %u x %u RGB image", (unsigned)w, (unsigned)h);
        const size_t n = (size_t)w * (size_t)h;
        for (size_t i = 0; i < n; i++) {
            unsigned v = ((unsigned)c->pix[2 * i] << 8) | c->pix[2 * i + 1];
            unsigned char g = (unsigned char)(v > 255 ? 255 : v);
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = g;
        }
        out->rgb = rgb;
    } else {
        out->rgb = c->pix;
        c->pix = NULL;
    }
    out->w = (int64_t)w;
    out->h = (int64_t)h;
    return CGE_OK;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static enum cge_status png_decode(const unsigned char *buf, size_t len, int64_t max_pixels,
                                  struct cge_image *out) {
    /* The size is in IHDR, the first chunk: refuse an oversized image before libpng reads any
     * further chunk (png_read_info stops only at the first IDAT). */
    if (len >= 24 && memcmp(buf + 12, "IHDR", 4) == 0) {
        enum cge_status st = check_budget("PNG", be32(buf + 16), be32(buf + 20), max_pixels);
        if (st != CGE_OK) return st;
    }
    struct png_ctx *c = cge__calloc(1, sizeof(*c));
    if (!c) return cge__err(CGE_ERR_NOMEM, "PNG: decoder context");
    c->data = buf;
    c->len = len;
    c->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, c, png_error_cb, png_warning_cb, NULL,
                                      png_malloc_cb, png_free_cb);
    if (c->png) c->info = png_create_info_struct(c->png);
    enum cge_status st;
    if (!c->png || !c->info)
        st = cge__err(CGE_ERR_NOMEM, "PNG: cannot create the libpng decoder");
    else
        st = png_decode_inner(c, max_pixels, out);
    if (c->png) png_destroy_read_struct(&c->png, c->info ? &c->info : NULL, NULL);
    cge__free(c->pix);
    cge__free(c->rows);
    cge__free(c);
    return st;
}

/* ==== JPEG ===================================================================================== */

struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    int created;        /* jpeg_create_decompress was called */
    unsigned char *row; /* one decoded scanline (w · components) */
    char msg[JMSG_LENGTH_MAX];
};

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->client_data;
    (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jmp, 1);
}

/* Warnings are ignored as PIL ignores them, except running out of data: PIL reports a truncated
 * file as an error, so do we (libjpeg would pad the image with gray). */
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->client_data;
        snprintf(c->msg, sizeof c->msg, "truncated file (premature end of data)");
        longjmp(c->jmp, 1);
    }
}

static void jpeg_progress_cb(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > 500) {
        struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->client_data;
        snprintf(c->msg, sizeof c->msg, "progressive JPEG with more than 500 scans");
        longjmp(c->jmp, 1);
    }
}

/* PIL's MULDIV255 and cmyk2rgb (Convert.c). */
static unsigned char muldiv255(unsigned a, unsigned b) {
    unsigned t = a * b + 128;
    return (unsigned char)(((t >> 8) + t) >> 8);
}

static unsigned char clip8i(int v) {
    return (unsigned char)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

static enum cge_status jpeg_decode_inner(struct jpeg_ctx *c, const unsigned char *buf, size_t len,
                                         int64_t max_pixels, struct cge_image *out) {
    struct jpeg_decompress_struct *ci = &c->cinfo;
    if (setjmp(c->jmp))
        return cge__err(CGE_ERR_SERIALIZATION, "JPEG: %s", c->msg[0] ? c->msg : "corrupt data");
    jpeg_create_decompress(ci);
    c->created = 1;
    ci->client_data = c;
    ci->progress = &c->progress;
    jpeg_mem_src(ci, buf, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    enum cge_status st =
        check_budget("JPEG", (int64_t)ci->image_width, (int64_t)ci->image_height, max_pixels);
    if (st != CGE_OK) return st;
    /* PIL: 1 component → "L", 3 → "RGB" (libjpeg converts), 4 → "CMYK;I". Defaults otherwise:
     * ISLOW DCT and fancy upsampling, as PIL leaves them outside draft mode. */
    int comps;
    switch (ci->num_components) {
    case 1:
        ci->out_color_space = JCS_GRAYSCALE;
        comps = 1;
        break;
    case 3:
        ci->out_color_space = JCS_RGB;
        comps = 3;
        break;
    case 4:
        ci->out_color_space = JCS_CMYK;
        comps = 4;
        break;
    default:
        return cge__err(CGE_ERR_UNSUPPORTED, "JPEG: %d color components (PIL reads 1, 3 or 4)",
                        ci->num_components);
    }
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    if (ci->output_components != comps || (int64_t)ci->output_width != (int64_t)ci->image_width ||
        (int64_t)ci->output_height != (int64_t)ci->image_height)
        return cge__err(CGE_ERR_SERIALIZATION, "JPEG: unexpected output layout (%d components)",
                        ci->output_components);
    const size_t w = ci->output_width, h = ci->output_height;
    c->row = cge__malloc(w * (size_t)comps);
    out->rgb = cge__malloc(3 * w * h);
    if (!c->row || !out->rgb) return cge__err(CGE_ERR_NOMEM, "JPEG: %zu x %zu image", w, h);
    while (ci->output_scanline < ci->output_height) {
        size_t y = ci->output_scanline;
        JSAMPROW rp = c->row;
        if (jpeg_read_scanlines(ci, &rp, 1) != 1)
            return cge__err(CGE_ERR_SERIALIZATION, "JPEG: no data for row %zu", y);
        unsigned char *o = out->rgb + 3 * w * y;
        const unsigned char *r = c->row;
        if (comps == 3) {
            memcpy(o, r, 3 * w);
        } else if (comps == 1) {
            for (size_t x = 0; x < w; x++)
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = r[x];
        } else {
            for (size_t x = 0; x < w; x++) {
                /* "CMYK;I": Adobe CMYK is stored inverted. */
                unsigned cc = 255u - r[4 * x], m = 255u - r[4 * x + 1], yy = 255u - r[4 * x + 2];
                unsigned nk = r[4 * x + 3]; /* 255 - k, with k = 255 - raw */
                o[3 * x] = clip8i((int)nk - muldiv255(cc, nk));
                o[3 * x + 1] = clip8i((int)nk - muldiv255(m, nk));
                o[3 * x + 2] = clip8i((int)nk - muldiv255(yy, nk));
            }
        }
    }
    /* Not jpeg_finish_decompress: whatever follows the last scanline (EOI, trailing bytes) does
     * not change the pixels, and PIL does not require it either. */
    out->w = (int64_t)w;
    out->h = (int64_t)h;
    return CGE_OK;
}

static enum cge_status jpeg_decode(const unsigned char *buf, size_t len, int64_t max_pixels,
                                   struct cge_image *out) {
    struct jpeg_ctx *c = cge__calloc(1, sizeof(*c));
    if (!c) return cge__err(CGE_ERR_NOMEM, "JPEG: decoder context");
    c->cinfo.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = jpeg_error_exit_cb;
    c->jerr.emit_message = jpeg_emit_message_cb;
    c->progress.progress_monitor = jpeg_progress_cb;
    /* client_data is read by the error handler; set it before jpeg_create_decompress can fail.
     * (jpeg_create_decompress keeps err and client_data.) */
    c->cinfo.client_data = c;
    enum cge_status st = jpeg_decode_inner(c, buf, len, max_pixels, out);
    if (c->created) jpeg_destroy_decompress(&c->cinfo);
    cge__free(c->row);
    cge__free(c);
    return st;
}

/* ==== WebP ===================================================================================== */

static enum cge_status webp_decode(const unsigned char *buf, size_t len, int64_t max_pixels,
                                   struct cge_image *out) {
    WebPBitstreamFeatures f;
    VP8StatusCode vs = WebPGetFeatures(buf, len, &f);
    if (vs != VP8_STATUS_OK)
        return cge__err(CGE_ERR_SERIALIZATION, "WebP: cannot read the header (libwebp status %d)",
                        (int)vs);
    if (f.has_animation)
        return cge__err(CGE_ERR_UNSUPPORTED, "WebP: animated images are not supported");
    enum cge_status st = check_budget("WebP", f.width, f.height, max_pixels);
    if (st != CGE_OK) return st;
    const size_t w = (size_t)f.width, h = (size_t)f.height;
    out->rgb = cge__malloc(3 * w * h);
    if (!out->rgb) return cge__err(CGE_ERR_NOMEM, "WebP: %zu x %zu image", w, h);
    /* RGB output: the color values are the same as in the RGBA decode PIL uses; the alpha PIL's
     * convert("RGB") would drop is simply not produced. */
    if (!WebPDecodeRGBInto(buf, len, out->rgb, 3 * w * h, (int)(3 * w)))
        return cge__err(CGE_ERR_SERIALIZATION,
                        "WebP: corrupt or truncated data (%zu x %zu, %zu "
                        "bytes)",
                        w, h, len);
    out->w = (int64_t)w;
    out->h = (int64_t)h;
    return CGE_OK;
}

/* ==== entry points ============================================================================= */

enum cge_status cge_image_decode(const void *buf, size_t len, int64_t max_pixels,
                                 struct cge_image *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "image decode: no output");
    memset(out, 0, sizeof(*out));
    if (!buf || len == 0) return cge__err(CGE_ERR_EMPTY_INPUT, "image decode: no bytes");
    if (max_pixels <= 0) max_pixels = CGE_IMAGE_MAX_PIXELS_DEFAULT;
    enum cge_status st;
    switch (cge_image_sniff(buf, len)) {
    case CGE_IMAGE_PNG:
        st = png_decode(buf, len, max_pixels, out);
        break;
    case CGE_IMAGE_JPEG:
        st = jpeg_decode(buf, len, max_pixels, out);
        break;
    case CGE_IMAGE_WEBP:
        st = webp_decode(buf, len, max_pixels, out);
        break;
    default:
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "image decode: not a PNG, JPEG or WebP file (%zu bytes)", len);
    }
    if (st != CGE_OK) cge_image_deinit(out);
    return st;
}

enum cge_status cge_image_load(const char *path, int64_t max_pixels, struct cge_image *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "image load: no output");
    memset(out, 0, sizeof(*out));
    if (!path) return cge__err(CGE_ERR_INVALID_VALUE, "image load: no path");
    char *data = NULL;
    size_t len = 0;
    enum cge_status st = cge__read_file(path, CGE_IMAGE_MAX_FILE_BYTES, &data, &len);
    if (st != CGE_OK) return st;
    st = cge_image_decode(data, len, max_pixels, out);
    cge__free(data);
    if (st != CGE_OK) {
        /* Prefix the file name, keeping the decoder's detail. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        return cge__err(st, "%s: %s", path, msg);
    }
    return CGE_OK;
}
