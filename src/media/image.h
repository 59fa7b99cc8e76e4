/*
 * image.h: image decoding (PNG, JPEG, WebP) to 8-bit RGB, Pillow-exact resampling, and the
 * CLIP preprocessing of Hugging Face's CLIPImageProcessor (resize, center crop, rescale,
 * normalize, CHW).
 *
 * The reference is what transformers 4.40 does with Pillow 9.4: decode with PIL, convert("RGB")
 * (grayscale and palette expanded, alpha dropped without compositing, 16-bit samples reduced as
 * PIL reduces them, no ICC or EXIF orientation applied), resize with PIL's uint8 resampler. The
 * uint8 resize is byte-exact against Pillow; see image_resize.c.
 *
 * Every function here is thread-safe (no global state). Images come from untrusted files: the
 * decoder checks the pixel budget from the header before it allocates, and a corrupt or truncated
 * file is CGE_ERR_SERIALIZATION, never a crash.
 */
#ifndef CGE_MEDIA_IMAGE_H
#define CGE_MEDIA_IMAGE_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

/* ---- decoded images ------------------------------------------------------------------------- */

/* An 8-bit RGB image, rows top to bottom, 3 bytes per pixel (R, G, B), no row padding. */
struct cge_image {
    int64_t w, h; /* width and height in pixels */
    uint8_t *rgb; /* (h, w, 3), owned (cge__malloc) */
};

/* Default pixel budget for decoding: 100 megapixels (300 MB of RGB). */
#define CGE_IMAGE_MAX_PIXELS_DEFAULT ((int64_t)100000000)
/* Size of the largest file cge_image_load reads (bytes). */
#define CGE_IMAGE_MAX_FILE_BYTES ((size_t)512 << 20)

enum cge_image_format {
    CGE_IMAGE_UNKNOWN = 0,
    CGE_IMAGE_PNG = 1,
    CGE_IMAGE_JPEG = 2,
    CGE_IMAGE_WEBP = 3,
};

/* The format from the first bytes (magic numbers), CGE_IMAGE_UNKNOWN when none matches. */
enum cge_image_format cge_image_sniff(const void *buf, size_t len);

/* Decodes a PNG, JPEG or WebP image held in memory into *out (RGB, see struct cge_image).
 * max_pixels > 0 bounds w·h: a larger image is CGE_ERR_INPUT_TOO_LONG, refused from the header
 * before any pixel memory is allocated (0 = CGE_IMAGE_MAX_PIXELS_DEFAULT).
 * Errors: CGE_ERR_EMPTY_INPUT (no bytes), CGE_ERR_UNSUPPORTED (not one of the three formats, or
 * an animated WebP), CGE_ERR_SERIALIZATION (corrupt or truncated), CGE_ERR_NOMEM.
 * On failure *out is zeroed. */
enum cge_status cge_image_decode(const void *buf, size_t len, int64_t max_pixels,
                                 struct cge_image *out);
/* Reads a file and decodes it (as cge_image_decode); CGE_ERR_IO when it cannot be read. */
enum cge_status cge_image_load(const char *path, int64_t max_pixels, struct cge_image *out);
/* Frees the pixels; a zeroed image is a no-op. */
void cge_image_deinit(struct cge_image *img);

/* ---- resampling (image_resize.c) -------------------------------------------------------------
 * Pillow's resampling filters, as PIL.Image.resample numbers them. */
enum cge_resample {
    CGE_RESAMPLE_NEAREST = 0, /* not supported by cge_image_resize */
    CGE_RESAMPLE_LANCZOS = 1,
    CGE_RESAMPLE_BILINEAR = 2,
    CGE_RESAMPLE_BICUBIC = 3,
    CGE_RESAMPLE_BOX = 4,
    CGE_RESAMPLE_HAMMING = 5,
};

/* Resizes src to w × h exactly as Pillow 9.4's Image.resize(size, filter) does on an 8-bit RGB
 * image (ImagingResample: support scaled by the downscale factor, 22-bit fixed-point
 * coefficients, horizontal pass then vertical pass, each rounded and clipped to uint8).
 * *out is allocated; on failure it is zeroed. */
enum cge_status cge_image_resize(const struct cge_image *src, int64_t w, int64_t h,
                                 enum cge_resample filter, struct cge_image *out);

/* The (ch, cw) window at (top, left) of src resized to w × h: byte for byte what
 * cge_image_resize followed by cge_image_crop gives (black outside the resized image), without
 * computing the pixels the crop drops. */
enum cge_status cge_image_resize_crop(const struct cge_image *src, int64_t w, int64_t h,
                                      enum cge_resample filter, int64_t top, int64_t left,
                                      int64_t ch, int64_t cw, struct cge_image *out);

/* Copies the (h, w) window at (top, left) of src into *out; parts outside src are black (0), as
 * transformers' center_crop pads. */
enum cge_status cge_image_crop(const struct cge_image *src, int64_t top, int64_t left, int64_t h,
                               int64_t w, struct cge_image *out);

/* ---- CLIP preprocessing (image_clip.c) -------------------------------------------------------- */

/* The fields of preprocessor_config.json that CLIPImageProcessor uses. */
struct cge_clip_preproc {
    int do_resize;
    int64_t shortest_edge;  /* size = {"shortest_edge": n} (or a legacy int); 0 if height/width */
    int64_t size_h, size_w; /* size = {"height", "width"}: resize to exactly this */
    enum cge_resample resample;
    int do_center_crop;
    int64_t crop_h, crop_w;
    int do_rescale;
    double rescale_factor; /* 1/255 */
    int do_normalize;
    float mean[3], std[3];
};

/* openai/clip-vit-* values: shortest edge `image_size`, crop image_size², bicubic, 1/255, the
 * OpenAI mean and std. */
struct cge_clip_preproc cge_clip_preproc_default(int64_t image_size);
/* Reads a preprocessor_config.json; keys it lacks keep the values of
 * cge_clip_preproc_default(image_size). CGE_ERR_SERIALIZATION for a malformed file or value. */
enum cge_status cge_clip_preproc_load(const char *path, int64_t image_size,
                                      struct cge_clip_preproc *out);

/* The resized size for an image of w × h (transformers' get_resize_output_image_size with
 * default_to_square=False: short side → shortest_edge, long side → int(edge·long/short)). */
void cge_clip_resize_dims(const struct cge_clip_preproc *p, int64_t w, int64_t h, int64_t *out_w,
                          int64_t *out_h);
/* Size of the pixel_values cge_clip_preprocess writes for a w × h image. */
void cge_clip_output_dims(const struct cge_clip_preproc *p, int64_t w, int64_t h, int64_t *out_w,
                          int64_t *out_h);
/* resize → center crop → rescale → normalize → CHW: out receives 3 · out_h · out_w floats
 * (sizes from cge_clip_output_dims; the caller checks them against the model). */
enum cge_status cge_clip_preprocess(const struct cge_image *img, const struct cge_clip_preproc *p,
                                    float *out);
/* The uint8 image after resize (*resized) and after the crop (*cropped), before rescale, for
 * tests and tools. Either may be NULL; with resized NULL only the crop window is resized. */
enum cge_status cge_clip_resize_crop(const struct cge_image *img, const struct cge_clip_preproc *p,
                                     struct cge_image *resized, struct cge_image *cropped);

#endif /* CGE_MEDIA_IMAGE_H */
