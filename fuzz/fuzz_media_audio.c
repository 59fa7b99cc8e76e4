/*
 * fuzz_media_audio.c: the audio decoder's entry point (libsndfile through sf_open_virtual on a
 * memory image, header limits, chunked mixdown), then resampling of a short decoded prefix.
 * Any status is fine; a crash, a sanitizer report or a leak is a bug.
 */
#include "core/core.h"
#include "media/audio.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float *x = NULL;
    int64_t n = 0;
    struct cge_audio_info info;
    /* cap the decode: a few bytes of FLAC can legitimately hold minutes of silence */
    if (cge_audio_decode_memory(data, size, "fuzz", 1 << 14, &x, &n, &info) == CGE_OK) {
        float *y = NULL;
        int64_t m = 0;
        int64_t k = n < 512 ? n : 512;
        if (cge_audio_resample(x, k, info.sample_rate, 16000, &y, &m) == CGE_OK) cge__free(y);
        cge__free(x);
    }
    return 0;
}
