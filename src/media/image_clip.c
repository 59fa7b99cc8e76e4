/*
 * image_clip.c: Hugging Face CLIPImageProcessor (transformers 4.40) in C: read
 * preprocessor_config.json, then resize (shortest edge, Pillow's uint8 resampler) → center crop
 * (zero padding when the image is smaller) → rescale → normalize → CHW float32.
 *
 * Key decision: follow transformers' dtypes step by step rather than fold the arithmetic:
 * rescale is uint8 · rescale_factor in double then cast to float32, normalize is
 * (x − mean) / std in float32 with mean and std rounded to float32 first (numpy casts them to
 * the image's dtype). Folding into one multiply-add would be faster but would move values by an
 * ulp; preprocessing costs well under a millisecond per image here, so exactness wins.
 */
#include "media/image.h"

#include "core/core.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#if defined(__clang__)
#    pragma STDC FP_CONTRACT OFF
#endif

struct cge_clip_preproc cge_clip_preproc_default(int64_t image_size) {
    if (image_size <= 0) image_size = 224;
    struct cge_clip_preproc p;
    memset(&p, 0, sizeof(p));
    p.do_resize = 1;
    p.shortest_edge = image_size;
    p.resample = CGE_RESAMPLE_BICUBIC;
    p.do_center_crop = 1;
    p.crop_h = p.crop_w = image_size;
    p.do_rescale = 1;
    p.rescale_factor = 1.0 / 255.0;
    p.do_normalize = 1;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(p.mean, mean, sizeof(mean));
    memcpy(p.std, std, sizeof(std));
    return p;
}

/* ---- preprocessor_config.json ------------------------------------------------------------------ */

static enum cge_status get_bool(const cJSON *root, const char *key, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return CGE_OK;
    if (!cJSON_IsBool(v))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return CGE_OK;
}

static int is_pos_int(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 65536 &&
           v->valuedouble == floor(v->valuedouble);
}

/* size / crop_size: an int, or {"shortest_edge": n}, or {"height": h, "width": w}. */
static enum cge_status get_size(const cJSON *root, const char *key, int int_is_square,
                                int64_t *edge, int64_t *hh, int64_t *ww, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return CGE_OK;
    if (is_pos_int(v)) {
        int64_t n = (int64_t)v->valuedouble;
        if (int_is_square) {
            *edge = 0;
            *hh = *ww = n;
        } else {
            *edge = n;
            *hh = *ww = 0;
        }
        return CGE_OK;
    }
    if (cJSON_IsObject(v)) {
        const cJSON *se = cJSON_GetObjectItemCaseSensitive(v, "shortest_edge");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(v, "height");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(v, "width");
        if (se && is_pos_int(se) && !int_is_square) {
            *edge = (int64_t)se->valuedouble;
            *hh = *ww = 0;
            return CGE_OK;
        }
        if (h && w && is_pos_int(h) && is_pos_int(w)) {
            *edge = 0;
            *hh = (int64_t)h->valuedouble;
            *ww = (int64_t)w->valuedouble;
            return CGE_OK;
        }
    }
    return cge__err(CGE_ERR_SERIALIZATION,
                    "%s: '%s' must be a positive int, {\"shortest_edge\": n} or "
                    "{\"height\": h, \"width\": w}",
                    path, key);
}

static enum cge_status get_triple(const cJSON *root, const char *key, float out[3], int positive,
                                  const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return CGE_OK;
    float t[3];
    if (cJSON_IsNumber(v)) {
        t[0] = t[1] = t[2] = (float)v->valuedouble;
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3) {
        for (int i = 0; i < 3; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e)) goto bad;
            t[i] = (float)e->valuedouble;
        }
    } else {
        goto bad;
    }
    for (int i = 0; i < 3; i++) {
        if (!isfinite(t[i]) || (positive && !(t[i] > 0))) goto bad;
    }
    memcpy(out, t, sizeof(t));
    return CGE_OK;
bad:
    return cge__err(CGE_ERR_SERIALIZATION, "%s: '%s' must be 3 finite numbers%s", path, key,
                    positive ? " > 0" : "");
}

enum cge_status cge_clip_preproc_load(const char *path, int64_t image_size,
                                      struct cge_clip_preproc *out) {
    if (!path || !out) return cge__err(CGE_ERR_INVALID_VALUE, "clip preprocessor: no path");
    *out = cge_clip_preproc_default(image_size);
    cJSON *root = NULL;
    enum cge_status st = cge__json_read_file(path, &root);
    if (st != CGE_OK) return st;
    struct cge_clip_preproc p = *out;
    if (!cJSON_IsObject(root)) {
        st = cge__err(CGE_ERR_SERIALIZATION, "%s: not a JSON object", path);
        goto done;
    }
    if ((st = get_bool(root, "do_resize", &p.do_resize, path)) != CGE_OK) goto done;
    if ((st = get_bool(root, "do_center_crop", &p.do_center_crop, path)) != CGE_OK) goto done;
    if ((st = get_bool(root, "do_rescale", &p.do_rescale, path)) != CGE_OK) goto done;
    if ((st = get_bool(root, "do_normalize", &p.do_normalize, path)) != CGE_OK) goto done;
    if ((st = get_size(root, "size", 0, &p.shortest_edge, &p.size_h, &p.size_w, path)) != CGE_OK)
        goto done;
    int64_t unused = 0;
    if ((st = get_size(root, "crop_size", 1, &unused, &p.crop_h, &p.crop_w, path)) != CGE_OK)
        goto done;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "resample");
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsNumber(rs) || rs->valuedouble < 1 || rs->valuedouble > 5 ||
            rs->valuedouble != floor(rs->valuedouble)) {
            st = cge__err(CGE_ERR_UNSUPPORTED,
                          "%s: 'resample' must be a Pillow filter 1..5 (0, nearest, is not "
                          "supported)",
                          path);
            goto done;
        }
        p.resample = (enum cge_resample)(int)rs->valuedouble;
    }
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "rescale_factor");
    if (rf && !cJSON_IsNull(rf)) {
        if (!cJSON_IsNumber(rf) || !isfinite(rf->valuedouble)) {
            st = cge__err(CGE_ERR_SERIALIZATION, "%s: 'rescale_factor' must be a number", path);
            goto done;
        }
        p.rescale_factor = rf->valuedouble;
    }
    if ((st = get_triple(root, "image_mean", p.mean, 0, path)) != CGE_OK) goto done;
    if ((st = get_triple(root, "image_std", p.std, 1, path)) != CGE_OK) goto done;
    *out = p;
done:
    cJSON_Delete(root);
    return st;
}

/* ---- the pipeline -------------------------------------------------------------------------------- */

void cge_clip_resize_dims(const struct cge_clip_preproc *p, int64_t w, int64_t h, int64_t *out_w,
                          int64_t *out_h) {
    int64_t rw = w, rh = h;
    if (p->do_resize && w > 0 && h > 0) {
        if (p->shortest_edge > 0) {
            const int64_t s = p->shortest_edge;
            const int64_t sh = w <= h ? w : h, lg = w <= h ? h : w;
            const int64_t nl = (int64_t)((double)(s * lg) / (double)sh);
            if (w <= h) {
                rw = s;
                rh = nl;
            } else {
                rw = nl;
                rh = s;
            }
        } else if (p->size_h > 0 && p->size_w > 0) {
            rw = p->size_w;
            rh = p->size_h;
        }
    }
    *out_w = rw;
    *out_h = rh;
}

void cge_clip_output_dims(const struct cge_clip_preproc *p, int64_t w, int64_t h, int64_t *out_w,
                          int64_t *out_h) {
    if (p->do_center_crop && p->crop_h > 0 && p->crop_w > 0) {
        *out_w = p->crop_w;
        *out_h = p->crop_h;
        return;
    }
    cge_clip_resize_dims(p, w, h, out_w, out_h);
}

static int64_t floor_div2(int64_t a) {
    return a >= 0 ? a / 2 : -((-a + 1) / 2);
}

enum cge_status cge_clip_resize_crop(const struct cge_image *img, const struct cge_clip_preproc *p,
                                     struct cge_image *resized, struct cge_image *cropped) {
    if (resized) memset(resized, 0, sizeof(*resized));
    if (cropped) memset(cropped, 0, sizeof(*cropped));
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0 || !p)
        return cge__err(CGE_ERR_INVALID_VALUE, "clip preprocess: empty image");
    int64_t rw, rh;
    cge_clip_resize_dims(p, img->w, img->h, &rw, &rh);
    if (rw <= 0 || rh <= 0 || rw > (1 << 20) || rh > (1 << 20))
        return cge__err(CGE_ERR_INPUT_TOO_LONG,
                        "clip preprocess: a %lld x %lld image resizes to %lld x %lld",
                        (long long)img->w, (long long)img->h, (long long)rw, (long long)rh);
    struct cge_image r = {0, 0, NULL}, c = {0, 0, NULL};
    enum cge_status st;
    if (!resized) {
        /* Only the crop is wanted: resize just the window (same bytes, less work). */
        int64_t top = 0, left = 0, ch = rh, cw = rw;
        if (p->do_center_crop && p->crop_h > 0 && p->crop_w > 0) {
            top = floor_div2(rh - p->crop_h);
            left = floor_div2(rw - p->crop_w);
            ch = p->crop_h;
            cw = p->crop_w;
        }
        st = cge_image_resize_crop(img, rw, rh, p->resample, top, left, ch, cw, &c);
        if (st == CGE_OK && cropped)
            *cropped = c;
        else
            cge_image_deinit(&c);
        return st;
    }
    if (rw != img->w || rh != img->h) {
        st = cge_image_resize(img, rw, rh, p->resample, &r);
    } else {
        st = cge_image_crop(img, 0, 0, img->h, img->w, &r); /* a copy */
    }
    if (st != CGE_OK) return st;
    if (p->do_center_crop && p->crop_h > 0 && p->crop_w > 0) {
        st = cge_image_crop(&r, floor_div2(r.h - p->crop_h), floor_div2(r.w - p->crop_w), p->crop_h,
                            p->crop_w, &c);
    } else {
        st = cge_image_crop(&r, 0, 0, r.h, r.w, &c);
    }
    if (st != CGE_OK) {
        cge_image_deinit(&r);
        return st;
    }
    if (resized)
        *resized = r;
    else
        cge_image_deinit(&r);
    if (cropped)
        *cropped = c;
    else
        cge_image_deinit(&c);
    return CGE_OK;
}

enum cge_status cge_clip_preprocess(const struct cge_image *img, const struct cge_clip_preproc *p,
                                    float *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "clip preprocess: no output");
    struct cge_image c;
    enum cge_status st = cge_clip_resize_crop(img, p, NULL, &c);
    if (st != CGE_OK) return st;
    const int64_t n = c.w * c.h;
    float mean[3], std[3];
    for (int ch = 0; ch < 3; ch++) {
        mean[ch] = p->do_normalize ? p->mean[ch] : 0.0f;
        std[ch] = p->do_normalize ? p->std[ch] : 1.0f;
    }
    for (int ch = 0; ch < 3; ch++) {
        float *o = out + ch * n;
        /* A 256-entry table per channel: the same float32 operations, once per value. */
        float lut[256];
        for (int v = 0; v < 256; v++) {
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            lut[v] = p->do_normalize ? (x - mean[ch]) / std[ch] : x;
        }
        for (int64_t i = 0; i < n; i++)
            o[i] = lut[c.rgb[i * 3 + ch]];
    }
    cge_image_deinit(&c);
    return CGE_OK;
}
