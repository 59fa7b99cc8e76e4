/*
 * test_media_audio.c: audio decoding, mixdown, resampling and Whisper's log-mel.
 *
 * References: the WhisperFeatureExtractor fixtures (tests/fixtures/preprocess/whisper_fe80,
 * whisper_fe128: mel filters and input features from transformers' numpy path), a plain RIFF
 * reader written here for the WAV samples, analytic sines for resampling and OGG, and the
 * transformers.js log-mel of a LibriSpeech clip (a loose check: a different implementation).
 */
#include "media/audio.h"

#include "core/core.h"
#include "testhelp.h"

#include <pthread.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

static void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
}
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)((v >> (8 * i)) & 0xff);
}

/* A 16-bit PCM WAV image: header says `declared` data bytes, `actual` bytes of data follow. */
static unsigned char *make_wav(int channels, uint32_t rate, uint32_t declared, uint32_t actual,
                               size_t *len) {
    *len = 44 + actual;
    unsigned char *b = calloc(1, *len);
    memcpy(b, "RIFF", 4);
    put32(b + 4, 36 + declared);
    memcpy(b + 8, "WAVEfmt ", 8);
    put32(b + 16, 16);
    put16(b + 20, 1);
    put16(b + 22, (unsigned)channels);
    put32(b + 24, rate);
    put32(b + 28, rate * (uint32_t)channels * 2);
    put16(b + 32, (unsigned)channels * 2);
    put16(b + 34, 16);
    memcpy(b + 36, "data", 4);
    put32(b + 40, declared);
    uint64_t s = 42;
    for (uint32_t i = 0; i + 1 < actual; i += 2)
        put16(b + 44 + i, (unsigned)(th_randf(&s) * 8000) & 0xffff);
    return b;
}

/* Plain RIFF reader for 16-bit PCM mono files: the reference for libsndfile's decode. */
static float *riff_s16(const char *path, int64_t *n) {
    size_t len;
    unsigned char *b = (unsigned char *)th_read_file(path, &len);
    if (!b) return NULL;
    size_t p = 12;
    float *out = NULL;
    while (p + 8 <= len) {
        uint32_t sz = b[p + 4] | b[p + 5] << 8 | b[p + 6] << 16 | (uint32_t)b[p + 7] << 24;
        if (!memcmp(b + p, "data", 4)) {
            if (sz > len - p - 8) sz = (uint32_t)(len - p - 8);
            *n = sz / 2;
            out = malloc(sizeof(float) * (size_t)*n);
            for (int64_t i = 0; i < *n; i++) {
                int16_t v = (int16_t)(b[p + 8 + 2 * i] | b[p + 9 + 2 * i] << 8);
                out[i] = (float)v / 32768.0f;
            }
            break;
        }
        p += 8 + sz + (sz & 1);
    }
    free(b);
    return out;
}

/* ---- decoding --------------------------------------------------------------------------------- */

static void test_decode_wav_flac(void) {
    const char *wav = "tests/fixtures/e2e/whisper_audio/jfk_16k.wav";
    const char *flac = "tests/fixtures/e2e/whisper_audio/jfk_16k.flac";
    float *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0, nr = 0;
    struct cge_audio_info ia, ib;
    CHECK(cge_audio_decode_file(wav, 0, &a, &na, &ia) == CGE_OK);
    CHECK(cge_audio_decode_file(flac, 0, &b, &nb, &ib) == CGE_OK);
    CHECK(na == 176000 && nb == 176000);
    CHECK(ia.sample_rate == 16000 && ia.channels == 1 && ib.sample_rate == 16000);
    float *r = riff_s16(wav, &nr);
    CHECK(r && nr == 176000);
    int same = a && b && r && na == nb && nr == na;
    for (int64_t i = 0; same && i < na; i++)
        same = a[i] == r[i] && b[i] == r[i];
    CHECK_MSG(same, "WAV and FLAC samples equal s16/32768 from a plain RIFF reader");
    /* max_frames caps the decode */
    float *c = NULL;
    int64_t nc = 0;
    CHECK(cge_audio_decode_file(flac, 1000, &c, &nc, NULL) == CGE_OK && nc == 1000);
    CHECK(c && r && memcmp(c, r, 1000 * sizeof(float)) == 0);
    /* the same file from memory */
    size_t len;
    char *img = th_read_file(flac, &len);
    float *d = NULL;
    int64_t nd = 0;
    CHECK(cge_audio_decode_memory(img, len, "jfk.flac", 0, &d, &nd, NULL) == CGE_OK);
    CHECK(nd == 176000 && d && r && memcmp(d, r, sizeof(float) * 176000) == 0);
    free(img);
    cge__free(a);
    cge__free(b);
    cge__free(c);
    cge__free(d);
    free(r);
}

static void test_mixdown(void) {
    /* stereo WAV: mono = mean of the channels */
    size_t len;
    unsigned char *w = make_wav(2, 8000, 4000, 4000, &len);
    float *x = NULL;
    int64_t n = 0;
    struct cge_audio_info info;
    CHECK(cge_audio_decode_memory(w, len, "stereo", 0, &x, &n, &info) == CGE_OK);
    CHECK(n == 1000 && info.channels == 2);
    int ok = x != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        int16_t l = (int16_t)(w[44 + 4 * i] | w[45 + 4 * i] << 8);
        int16_t r = (int16_t)(w[46 + 4 * i] | w[47 + 4 * i] << 8);
        double want = ((double)l / 32768.0 + (double)r / 32768.0) / 2.0;
        ok = fabs(x[i] - want) < 1e-7;
    }
    CHECK_MSG(ok, "stereo mixdown is the channel mean");
    free(w);
    cge__free(x);
}

static void test_ogg(void) {
    /* tone_stereo_44k.ogg: 2 s stereo Vorbis, left 0.4·sin 440 Hz, right 0.4·sin 1000 Hz
     * (see tests/fixtures/media/README.md). Mono at 16 kHz ≈ 0.2·(sin 440 + sin 1000). */
    struct cge_audio_info info;
    float *x = NULL;
    int64_t n = 0;
    CHECK(cge_audio_decode_file("tests/fixtures/media/tone_stereo_44k.ogg", 0, &x, &n, &info) ==
          CGE_OK);
    CHECK(info.sample_rate == 44100 && info.channels == 2 && n == 88200);
    cge__free(x);
    CHECK(cge_audio_load("tests/fixtures/media/tone_stereo_44k.ogg", 16000, 30.0, &x, &n) ==
          CGE_OK);
    CHECK(llabs((long long)n - 32000) <= 2);
    double num = 0, den = 0;
    for (int64_t i = 1600; x && i < n - 1600; i++) {
        double t = (double)i / 16000.0;
        double ref = 0.2 * (sin(2 * M_PI * 440 * t) + sin(2 * M_PI * 1000 * t));
        num += (x[i] - ref) * (x[i] - ref);
        den += ref * ref;
    }
    double rel = sqrt(num / (den + 1e-30));
    CHECK_MSG(rel < 0.05, "OGG mono 16 kHz vs analytic tone: rel err %.4f", rel);
    cge__free(x);
}

static void test_resample(void) {
    /* 48 kHz → 16 kHz of a 1 kHz sine: compare with the analytic 16 kHz sine away from edges */
    int64_t n = 48000;
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(0.5 * sin(2 * M_PI * 1000.0 * i / 48000.0));
    float *y = NULL;
    int64_t m = 0;
    CHECK(cge_audio_resample(x, n, 48000, 16000, &y, &m) == CGE_OK);
    CHECK_MSG(m == 16000, "%lld samples", (long long)m);
    double e = 0;
    for (int64_t i = 1000; y && i < m - 1000; i++) {
        double ref = 0.5 * sin(2 * M_PI * 1000.0 * i / 16000.0);
        if (fabs(y[i] - ref) > e) e = fabs(y[i] - ref);
    }
    CHECK_MSG(e < 1e-4, "max abs err %.3g", e);
    cge__free(y);
    /* 22.05 kHz → 16 kHz (non-integer ratio) */
    for (int64_t i = 0; i < 22050; i++)
        x[i] = (float)(0.5 * sin(2 * M_PI * 500.0 * i / 22050.0));
    CHECK(cge_audio_resample(x, 22050, 22050, 16000, &y, &m) == CGE_OK);
    CHECK(llabs((long long)m - 16000) <= 1);
    e = 0;
    for (int64_t i = 1000; y && i < m - 1000; i++) {
        double ref = 0.5 * sin(2 * M_PI * 500.0 * i / 16000.0);
        if (fabs(y[i] - ref) > e) e = fabs(y[i] - ref);
    }
    CHECK_MSG(e < 1e-4, "22.05k max abs err %.3g", e);
    cge__free(y);
    /* equal rates copy */
    CHECK(cge_audio_resample(x, 100, 16000, 16000, &y, &m) == CGE_OK && m == 100);
    CHECK(y && memcmp(x, y, 400) == 0);
    cge__free(y);
    CHECK(cge_audio_resample(x, 0, 48000, 16000, &y, &m) == CGE_ERR_EMPTY_INPUT && !y);
    CHECK(cge_audio_resample(x, 10, 10, 16000, &y, &m) == CGE_ERR_INVALID_VALUE);
    free(x);
}

/* A 35 s recording: cge_audio_load(…, 30 s) decodes only 31 s, and its first 30 s equal the
 * first 30 s of the whole file resampled (the extra second covers the filter's reach). */
static void test_load_trim(void) {
    char tmp[] = "/tmp/cge_test_audio_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd < 0) return;
    const uint32_t rate = 22050, n = 35 * 22050;
    size_t len;
    unsigned char *w = make_wav(1, rate, n * 2, n * 2, &len); /* random 16-bit samples */
    CHECK(write(fd, w, len) == (ssize_t)len);
    close(fd);
    free(w);
    float *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    CHECK(cge_audio_load(tmp, 16000, 30.0, &a, &na) == CGE_OK);
    CHECK(cge_audio_load(tmp, 16000, 0, &b, &nb) == CGE_OK);
    CHECK_MSG(llabs((long long)na - 31 * 16000) <= 2 && llabs((long long)nb - 35 * 16000) <= 2,
              "%lld %lld", (long long)na, (long long)nb);
    double e = 0;
    for (int64_t i = 0; a && b && i < 480000 && i < na; i++)
        if (fabs((double)a[i] - b[i]) > e) e = fabs((double)a[i] - b[i]);
    CHECK_MSG(e < 1e-6, "trimmed vs whole: max abs diff %.3g", e);
    cge__free(a);
    cge__free(b);
    unlink(tmp);
}

/* Pieces on threads vs one libsamplerate call: the same length, the same samples (to float
 * rounding), for downsampling by an integer and a fractional ratio, and for upsampling. */
static void test_resample_pieces(void) {
    const int rates[3] = {48000, 44100, 8000};
    for (int r = 0; r < 3; r++) {
        int64_t n = (int64_t)rates[r] * 8;
        float *x = malloc(sizeof(float) * (size_t)n);
        uint64_t s = 99 + (uint64_t)r;
        for (int64_t i = 0; i < n; i++)
            x[i] = 0.3f * (float)sin(0.01 * (double)i) + 0.2f * th_randf(&s);
        float *a = NULL;
        int64_t na = 0;
        CHECK(cge__audio_resample_pieces(x, n, rates[r], 16000, 1, &a, &na) == CGE_OK);
        for (int k = 2; a && k <= 4; k += 2) {
            float *b = NULL;
            int64_t nb = 0;
            CHECK(cge__audio_resample_pieces(x, n, rates[r], 16000, k, &b, &nb) == CGE_OK);
            double e = 0;
            for (int64_t i = 0; b && nb == na && i < na; i++)
                if (fabs((double)a[i] - b[i]) > e) e = fabs((double)a[i] - b[i]);
            CHECK_MSG(nb == na && e < 1e-6, "%d Hz, %d pieces: %lld vs %lld samples, max diff %.3g",
                      rates[r], k, (long long)nb, (long long)na, e);
            if (k == 4)
                printf("  resample %d -> 16000 Hz in 4 pieces vs 1: max abs diff %.3g\n", rates[r],
                       e);
            cge__free(b);
        }
        cge__free(a);
        free(x);
    }
}

static void test_real_48k(void) {
    /* recorded speech at 48 kHz: decode, resample to 16 kHz, log-mel all finite */
    const char *names[] = {"Front_Center", "Front_Left", "Noise", "Side_Right"};
    struct cge_logmel *lm = NULL;
    CHECK(cge_logmel_new(128, 16000, 400, 160, 30, &lm) == CGE_OK);
    float *mel = malloc(sizeof(float) * 128 * 3000);
    for (size_t f = 0; lm && f < sizeof names / sizeof *names; f++) {
        char path[256];
        snprintf(path, sizeof path, "tests/assets/media/audio/%s.wav", names[f]);
        struct cge_audio_info info;
        float *x = NULL;
        int64_t n = 0;
        CHECK(cge_audio_decode_file(path, 0, &x, &n, &info) == CGE_OK);
        int64_t n48 = n;
        int rate = info.sample_rate;
        cge__free(x);
        CHECK_MSG(cge_audio_load(path, 16000, 30.0, &x, &n) == CGE_OK, "%s: %s", path,
                  cge_errmsg());
        CHECK_MSG(llabs((long long)(n - n48 * 16000 / rate)) <= 2, "%s: %lld from %lld at %d", path,
                  (long long)n, (long long)n48, rate);
        int finite = x != NULL;
        for (int64_t i = 0; finite && i < n; i++)
            finite = isfinite(x[i]) && fabsf(x[i]) < 4;
        CHECK(finite);
        CHECK(cge_logmel_compute(lm, x, n, mel) == CGE_OK);
        finite = 1;
        for (int i = 0; i < 128 * 3000; i++)
            finite &= isfinite(mel[i]) && fabsf(mel[i]) < 3;
        CHECK(finite);
        cge__free(x);
    }
    /* whisper's own test audio: FLAC 44.1 kHz stereo 24-bit and a 16 kHz WAV */
    const char *more[] = {"tests/assets/whisper/test-audio/jfk.flac",
                          "tests/assets/whisper/test-audio/1272-141231-0002.flac",
                          "tests/assets/whisper/test-audio/1272-141231-0002.wav"};
    for (int f = 0; f < 3; f++) {
        float *x = NULL;
        int64_t n = 0;
        CHECK_MSG(cge_audio_load(more[f], 16000, 30.0, &x, &n) == CGE_OK, "%s: %s", more[f],
                  cge_errmsg());
        int finite = x != NULL && n > 16000;
        for (int64_t i = 0; finite && i < n; i++)
            finite = isfinite(x[i]);
        CHECK(finite);
        cge__free(x);
    }
    free(mel);
    cge_logmel_free(lm);
}

static void test_errors(void) {
    float *x = NULL;
    int64_t n = 0;
    struct cge_audio_info info;
    CHECK(cge_audio_decode_file("tests/fixtures/media/no-such.wav", 0, &x, &n, NULL) == CGE_ERR_IO);
    CHECK(cge_audio_decode_file("tests/fixtures/media", 0, &x, &n, NULL) == CGE_ERR_IO);
    /* not audio */
    const char junk[] = "this is not an audio file, it is text; nothing to see here at all.";
    CHECK(cge_audio_decode_memory(junk, sizeof junk, "junk", 0, &x, &n, NULL) ==
          CGE_ERR_UNSUPPORTED);
    CHECK(cge_audio_decode_memory(junk, 0, "empty", 0, &x, &n, NULL) == CGE_ERR_EMPTY_INPUT);
    CHECK(cge_audio_decode_memory("RIFF", 4, "tiny", 0, &x, &n, NULL) == CGE_ERR_SERIALIZATION);
    /* MP3 (ID3 tag, or a bare MPEG frame sync) is not among the formats cge reads */
    const unsigned char mp3[32] = {'I', 'D', '3', 4, 0, 0, 0, 0, 0, 0, 0xff, 0xfb, 0x90, 0x64};
    CHECK(cge_audio_decode_memory(mp3, sizeof mp3, "a.mp3", 0, &x, &n, NULL) ==
          CGE_ERR_UNSUPPORTED);
    CHECK(cge_audio_decode_memory(mp3 + 10, 6, "b.mp3", 0, &x, &n, NULL) == CGE_ERR_SERIALIZATION);
    /* a FLAC behind an ID3v2 tag (some taggers write one): read as libsndfile does */
    {
        size_t fl;
        char *fb = th_read_file("tests/fixtures/e2e/whisper_audio/jfk_16k.flac", &fl);
        unsigned char *tagged = malloc(fl + 10 + 300);
        const unsigned char hdr[10] = {'I', 'D', '3', 3, 0, 0, 0, 0, 2, 44}; /* 2·128 + 44 */
        memcpy(tagged, hdr, 10);
        memset(tagged + 10, 0, 300);
        memcpy(tagged + 310, fb, fl);
        enum cge_status ist =
            cge_audio_decode_memory(tagged, fl + 310, "id3.flac", 0, &x, &n, NULL);
        CHECK_MSG(ist == CGE_OK && n == 176000, "%d %s", ist, cge_errmsg());
        cge__free(x);
        x = NULL;
        char tmp[] = "/tmp/cge_test_audio_XXXXXX";
        int fd = mkstemp(tmp);
        CHECK(fd >= 0);
        if (fd >= 0) {
            CHECK(write(fd, tagged, fl + 310) == (ssize_t)(fl + 310));
            close(fd);
            ist = cge_audio_decode_file(tmp, 0, &x, &n, NULL);
            CHECK_MSG(ist == CGE_OK && n == 176000, "file: %d %s", ist, cge_errmsg());
            cge__free(x);
            x = NULL;
            unlink(tmp);
        }
        free(tagged);
        free(fb);
    }
    /* a WAV with zero samples */
    size_t len;
    unsigned char *w = make_wav(1, 16000, 0, 0, &len);
    enum cge_status st = cge_audio_decode_memory(w, len, "zero.wav", 0, &x, &n, NULL);
    CHECK_MSG(st == CGE_ERR_EMPTY_INPUT, "%d %s", st, cge_errmsg());
    CHECK(x == NULL && n == 0);
    free(w);
    /* too many channels */
    w = make_wav(100, 16000, 2000, 2000, &len);
    st = cge_audio_decode_memory(w, len, "ch100.wav", 0, &x, &n, NULL);
    CHECK_MSG(st == CGE_ERR_UNSUPPORTED || st == CGE_ERR_SERIALIZATION, "%d %s", st, cge_errmsg());
    free(w);
    /* absurd sample rate */
    w = make_wav(1, 3000000, 2000, 2000, &len);
    st = cge_audio_decode_memory(w, len, "rate.wav", 0, &x, &n, &info);
    CHECK_MSG(st == CGE_ERR_UNSUPPORTED || st == CGE_ERR_SERIALIZATION, "%d %s", st, cge_errmsg());
    free(w);
    w = make_wav(1, 100, 2000, 2000, &len);
    st = cge_audio_decode_memory(w, len, "rate.wav", 0, &x, &n, &info);
    CHECK_MSG(st == CGE_ERR_UNSUPPORTED, "%d %s", st, cge_errmsg());
    free(w);
    /* a header whose data chunk claims far more than the file holds (lying or truncated):
     * refused before anything is sized from it */
    w = make_wav(1, 8000, 0x7ffffff0u, 2000, &len);
    st = cge_audio_decode_memory(w, len, "lying.wav", 0, &x, &n, &info);
    CHECK_MSG(st == CGE_ERR_SERIALIZATION, "%d %s n=%lld", st, cge_errmsg(), (long long)n);
    CHECK(x == NULL);
    free(w);
    /* a truncated WAV: the first 100000 bytes of an 11 s file */
    char *wv = th_read_file("tests/fixtures/e2e/whisper_audio/jfk_16k.wav", &len);
    st = cge_audio_decode_memory(wv, 100000, "cut.wav", 0, &x, &n, NULL);
    CHECK_MSG(st == CGE_ERR_SERIALIZATION, "%d %s", st, cge_errmsg());
    /* the streaming placeholder 0xFFFFFFFF (a recorder that never finalized the header) */
    put32((unsigned char *)wv + 40, 0xffffffffu);
    put32((unsigned char *)wv + 4, 0xffffffffu);
    st = cge_audio_decode_memory(wv, 100000, "stream.wav", 0, &x, &n, NULL);
    CHECK_MSG(st == CGE_OK && n == (100000 - 44) / 2, "%d %s n=%lld", st, cge_errmsg(),
              (long long)n);
    cge__free(x);
    x = NULL;
    free(wv);
    /* an honest header announcing two hours (a sparse 115 MB file): refused before decoding */
    uint32_t two_h = 8000u * 2 * 7200;
    w = make_wav(1, 8000, two_h, 0, &len);
    char tmp[] = "/tmp/cge_test_audio_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, w, 44) == 44 && ftruncate(fd, 44 + (off_t)two_h) == 0);
        close(fd);
        st = cge_audio_decode_file(tmp, 0, &x, &n, &info);
        CHECK_MSG(st == CGE_ERR_INPUT_TOO_LONG, "%d %s", st, cge_errmsg());
        CHECK(x == NULL && info.frames == two_h / 2);
        unlink(tmp);
    }
    free(w);
    /* truncated FLAC: the first 20000 bytes of an 11 s file */
    char *flac = th_read_file("tests/fixtures/e2e/whisper_audio/jfk_16k.flac", &len);
    st = cge_audio_decode_memory(flac, 20000, "cut.flac", 0, &x, &n, NULL);
    CHECK_MSG(st == CGE_ERR_SERIALIZATION, "%d %s", st, cge_errmsg());
    CHECK(x == NULL);
    /* header only */
    st = cge_audio_decode_memory(flac, 100, "hdr.flac", 0, &x, &n, NULL);
    CHECK_MSG(st == CGE_ERR_SERIALIZATION || st == CGE_ERR_UNSUPPORTED || st == CGE_ERR_EMPTY_INPUT,
              "%d %s", st, cge_errmsg());
    free(flac);
    /* a float WAV holding a NaN: refused, not propagated into the features */
    w = make_wav(1, 16000, 400, 400, &len);
    put16(w + 20, 3); /* WAVE_FORMAT_IEEE_FLOAT */
    put32(w + 28, 16000 * 4);
    put16(w + 32, 4);
    put16(w + 34, 32);
    for (int i = 0; i < 100; i++) {
        float v = i == 50 ? NAN : 0.25f;
        memcpy(w + 44 + 4 * i, &v, 4);
    }
    st = cge_audio_decode_memory(w, len, "nan.wav", 0, &x, &n, NULL);
    CHECK_MSG(st == CGE_ERR_INVALID_VALUE, "%d %s", st, cge_errmsg());
    CHECK(x == NULL);
    free(w);
}

/* ---- log-mel ---------------------------------------------------------------------------------- */

static void test_filters(int n_mels) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/preprocess/whisper_fe%d/mel_filters.f64.bin",
             n_mels);
    size_t len;
    double *ref = (double *)th_read_file(path, &len);
    CHECK(ref && len == sizeof(double) * 201 * (size_t)n_mels);
    struct cge_logmel *lm = NULL;
    CHECK(cge_logmel_new(n_mels, 16000, 400, 160, 30, &lm) == CGE_OK);
    if (!ref || !lm) return;
    CHECK(cge_logmel_n_frames(lm) == 3000 && cge_logmel_n_samples(lm) == 480000);
    const double *f = cge_logmel_filters(lm);
    double e = 0;
    for (size_t i = 0; i < 201 * (size_t)n_mels; i++)
        if (fabs(f[i] - ref[i]) > e) e = fabs(f[i] - ref[i]);
    CHECK_MSG(e < 1e-14, "mel filters (%d): max abs diff %.3g", n_mels, e);
    printf("  mel filters %d: max abs diff %.3g\n", n_mels, e);
    free(ref);
    cge_logmel_free(lm);
}

static void test_features(int n_mels) {
    struct cge_logmel *lm = NULL;
    CHECK(cge_logmel_new(n_mels, 16000, 400, 160, 30, &lm) == CGE_OK);
    float *out = malloc(sizeof(float) * (size_t)n_mels * 3000);
    for (int c = 0; lm && c < 2; c++) {
        char path[256];
        size_t nw, nf;
        snprintf(path, sizeof path, "tests/fixtures/preprocess/whisper_fe%d/waveform_%d.bin",
                 n_mels, c);
        float *w = th_read_f32(path, &nw);
        snprintf(path, sizeof path, "tests/fixtures/preprocess/whisper_fe%d/input_features_%d.bin",
                 n_mels, c);
        float *ref = th_read_f32(path, &nf);
        CHECK(w && ref && nf == (size_t)n_mels * 3000);
        if (!w || !ref) continue;
        CHECK(cge_logmel_compute(lm, w, (int64_t)nw, out) == CGE_OK);
        double e = 0;
        for (size_t i = 0; i < nf; i++)
            if (fabs((double)out[i] - ref[i]) > e) e = fabs((double)out[i] - ref[i]);
        CHECK_MSG(e <= 1e-5, "fe%d case %d: max abs diff %.3g", n_mels, c, e);
        printf("  log-mel fe%d case %d: max abs diff %.3g\n", n_mels, c, e);
        free(w);
        free(ref);
    }
    free(out);
    cge_logmel_free(lm);
}

/* transformers.js reference for whisper-large-v3 (128 mels): a different implementation (float32
 * FFT), so only a loose agreement is expected. */
static void test_js_reference(void) {
    size_t nr;
    float *ref = th_read_f32(
        "tests/assets/js-reference/whisper-large-v3_logmel_1272-141231-0002.f32le", &nr);
    CHECK(ref && nr == 128 * 3000);
    float *x = NULL;
    int64_t n = 0;
    CHECK(cge_audio_decode_file("tests/assets/whisper/test-audio/1272-141231-0002.wav", 0, &x, &n,
                                NULL) == CGE_OK);
    struct cge_logmel *lm = NULL;
    CHECK(cge_logmel_new(128, 16000, 400, 160, 30, &lm) == CGE_OK);
    float *out = malloc(sizeof(float) * 128 * 3000);
    if (ref && x && lm && cge_logmel_compute(lm, x, n, out) == CGE_OK) {
        double e = 0;
        for (size_t i = 0; i < nr; i++)
            if (fabs((double)out[i] - ref[i]) > e) e = fabs((double)out[i] - ref[i]);
        CHECK_MSG(e < 1e-3, "js reference: max abs diff %.3g", e);
        printf("  log-mel vs transformers.js (1272-141231-0002, 128 mels): max abs diff %.3g\n", e);
    }
    free(out);
    free(ref);
    cge__free(x);
    cge_logmel_free(lm);
}

struct thr_arg {
    const struct cge_logmel *lm;
    const float *w;
    int64_t n;
    float *out;
};
static void *thr_run(void *p) {
    struct thr_arg *a = p;
    cge_logmel_compute(a->lm, a->w, a->n, a->out);
    return NULL;
}

static void test_threads_and_edges(void) {
    struct cge_logmel *lm = NULL;
    CHECK(cge_logmel_new(80, 16000, 400, 160, 30, &lm) == CGE_OK);
    if (!lm) return;
    size_t nw;
    float *w = th_read_f32("tests/fixtures/preprocess/whisper_fe80/waveform_0.bin", &nw);
    float *o1 = malloc(sizeof(float) * 80 * 3000), *o2 = malloc(sizeof(float) * 80 * 3000);
    float *o3 = malloc(sizeof(float) * 80 * 3000);
    pthread_t t1, t2;
    struct thr_arg a1 = {lm, w, (int64_t)nw, o1}, a2 = {lm, w, (int64_t)nw, o2};
    pthread_create(&t1, NULL, thr_run, &a1);
    pthread_create(&t2, NULL, thr_run, &a2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(cge_logmel_compute(lm, w, (int64_t)nw, o3) == CGE_OK);
    CHECK(memcmp(o1, o3, sizeof(float) * 80 * 3000) == 0);
    CHECK(memcmp(o2, o3, sizeof(float) * 80 * 3000) == 0);
    /* silence: every value is (−10 + 4) / 4 after the clamp */
    CHECK(cge_logmel_compute(lm, w, 0, o1) == CGE_OK);
    int ok = 1;
    for (int i = 0; i < 80 * 3000; i++)
        ok &= o1[i] == -1.5f;
    CHECK(ok);
    /* longer than 30 s: trimmed (same as the first 480000 samples) */
    float *longw = calloc(600000, sizeof(float));
    uint64_t s = 7;
    for (int i = 0; i < 600000; i++)
        longw[i] = 0.1f * th_randf(&s);
    CHECK(cge_logmel_compute(lm, longw, 600000, o1) == CGE_OK);
    CHECK(cge_logmel_compute(lm, longw, 480000, o2) == CGE_OK);
    CHECK(memcmp(o1, o2, sizeof(float) * 80 * 3000) == 0);
    struct cge_logmel *bad = NULL;
    CHECK(cge_logmel_new(0, 16000, 400, 160, 30, &bad) == CGE_ERR_INVALID_VALUE && !bad);
    CHECK(cge_logmel_new(80, 16000, 400, 0, 30, &bad) == CGE_ERR_INVALID_VALUE);
    cge_logmel_free(NULL);
    free(longw);
    free(w);
    free(o1);
    free(o2);
    free(o3);
    cge_logmel_free(lm);
}

int main(void) {
    RUN(test_decode_wav_flac);
    RUN(test_mixdown);
    RUN(test_ogg);
    RUN(test_resample);
    RUN(test_errors);
    RUN(test_resample_pieces);
    RUN(test_load_trim);
    RUN(test_real_48k);
    test_filters(80);
    test_filters(128);
    test_features(80);
    test_features(128);
    RUN(test_js_reference);
    RUN(test_threads_and_edges);
    return test_report("media_audio");
}
