/*
 * fuzz_media_image.c: the image decoder's entry point (PNG, JPEG, WebP from memory) under a
 * small pixel budget (256 K pixels), then, for what decodes, the CLIP preprocessing of a
 * small target (resize to shortest edge 32 + crop 32 × 32), so the resampler sees odd shapes.
 * Any status is fine; a crash, a sanitizer report or a leak is a bug.
 */
#include "core/core.h"
#include "media/image.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_image img;
    if (cge_image_decode(data, size, (int64_t)1 << 18, &img) != CGE_OK) return 0;
    if (img.w <= 0 || img.h <= 0 || !img.rgb) __builtin_trap();
    struct cge_clip_preproc p = cge_clip_preproc_default(32);
    /* a long thin image resizes to at most 32·2^18 pixels on its long side; keep it small */
    if (img.w <= 64 * img.h && img.h <= 64 * img.w) {
        float out[3 * 32 * 32];
        (void)cge_clip_preprocess(&img, &p, out);
    }
    cge_image_deinit(&img);
    return 0;
}
