/*
 * test_models_whisper.c: the Whisper encoder family against transformers.
 *
 *  - tests/fixtures/models/whisper_encoder: WhisperModel's encoder on fixed input_features
 *    (last_hidden_state, per-layer hidden states, mean over the 1500 frames), rel err < 1e-5.
 *  - tests/fixtures/e2e/whisper_audio: a model folder + jfk_16k.{flac,wav}: decode → log-mel →
 *    encoder → mean over the first ceil(n/320) frames, against expected.f32; through the family
 *    vtable and through cge_model_load / cge_model_embed.
 *  - real recordings (48 kHz WAV, 44.1 kHz stereo FLAC): finite embeddings; bad inputs fail
 *    with the right status.
 */
#include "models/whisper.h"

#include "core/core.h"
#include "io/weights.h"
#include "media/audio.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <pthread.h>

struct loaded {
    struct cge_weights *w;
    cJSON *config;
    void *impl;
    struct cge_family_load lc;
    struct cge_model_params p;
};

static int load_dir(const char *dir, enum cge_dtype dtype, struct loaded *L) {
    memset(L, 0, sizeof *L);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (cge__json_read_file(path, &L->config) != CGE_OK) return 0;
    if (!cge__family_whisper.matches(L->config)) return 0;
    if (cge_weights_open(dir, &L->w) != CGE_OK) return 0;
    L->p = cge_model_default_params();
    L->p.dtype = dtype;
    L->lc.dir = dir;
    L->lc.config = L->config;
    L->lc.w = L->w;
    L->lc.p = &L->p;
    enum cge_status st = cge__family_whisper.load(&L->lc, &L->impl);
    if (st != CGE_OK) printf("  load %s: %s\n", dir, cge_errmsg());
    return st == CGE_OK;
}

static void unload(struct loaded *L) {
    if (L->impl) cge__family_whisper.free(L->impl);
    cge_weights_free(L->w);
    cJSON_Delete(L->config);
}

static void test_encoder_fixture(void) {
    const char *dir = "tests/fixtures/models/whisper_encoder";
    struct loaded L;
    CHECK(load_dir(dir, CGE_DTYPE_F32, &L));
    if (!L.impl) {
        unload(&L);
        return;
    }
    CHECK(L.lc.hidden == 64 && L.lc.modalities == CGE_MOD_AUDIO);
    CHECK(L.lc.default_pooling == CGE_POOL_AUDIO_MEAN && L.lc.default_normalize == 0);
    CHECK(cge__family_whisper.out_dim(L.impl) == 64);
    CHECK(cge__whisper_n_frames_in(L.impl) == 3000 && cge__whisper_n_frames_out(L.impl) == 1500);
    size_t nx, ny, nm;
    float *x = th_read_f32("tests/fixtures/models/whisper_encoder/input_features.bin", &nx);
    float *ref = th_read_f32("tests/fixtures/models/whisper_encoder/last_hidden_state.bin", &ny);
    float *mref = th_read_f32("tests/fixtures/models/whisper_encoder/mean_pooled.bin", &nm);
    CHECK(x && nx == 80 * 3000 && ref && ny == 1500 * 64 && mref && nm == 64);
    float *h = malloc(sizeof(float) * 1500 * 64);
    if (x && ref && mref && cge__whisper_encode(L.impl, x, h) == CGE_OK) {
        double e = th_rel_err(h, ref, ny);
        CHECK_MSG(e < 1e-5, "last_hidden_state rel err %.3g", e);
        printf("  whisper_encoder last_hidden_state: rel err %.3g\n", e);
        float mean[64];
        for (int j = 0; j < 64; j++) {
            double s = 0;
            for (int t = 0; t < 1500; t++)
                s += h[t * 64 + j];
            mean[j] = (float)(s / 1500);
        }
        e = th_rel_err(mean, mref, 64);
        CHECK_MSG(e < 1e-5, "mean_pooled rel err %.3g", e);
        printf("  whisper_encoder mean_pooled: rel err %.3g\n", e);
    } else {
        CHECK_MSG(0, "encode: %s", cge_errmsg());
    }
    /* the same features through bf16 weights: close, not exact */
    struct loaded B;
    CHECK(load_dir(dir, CGE_DTYPE_BF16, &B));
    if (B.impl && x && ref && cge__whisper_encode(B.impl, x, h) == CGE_OK) {
        double e = th_rel_err(h, ref, ny);
        CHECK_MSG(e < 3e-2, "bf16 last_hidden_state rel err %.3g", e);
        printf("  whisper_encoder bf16 weights: rel err %.3g\n", e);
    }
    unload(&B);
    free(h);
    free(x);
    free(ref);
    free(mref);
    unload(&L);
}

static void test_e2e_family(void) {
    const char *dir = "tests/fixtures/e2e/whisper_audio/model";
    struct loaded L;
    CHECK(load_dir(dir, CGE_DTYPE_F32, &L));
    size_t ne;
    float *ref = th_read_f32("tests/fixtures/e2e/whisper_audio/expected.f32", &ne);
    CHECK(ref && ne == 2 * 32);
    const char *files[2] = {"tests/fixtures/e2e/whisper_audio/jfk_16k.flac",
                            "tests/fixtures/e2e/whisper_audio/jfk_16k.wav"};
    for (int i = 0; L.impl && ref && i < 2; i++) {
        float out[32];
        enum cge_status st = cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = files[i]}, out);
        CHECK_MSG(st == CGE_OK, "%s: %s", files[i], cge_errmsg());
        if (st != CGE_OK) continue;
        double e = th_rel_err(out, ref + 32 * i, 32);
        CHECK_MSG(e < 1e-5, "%s: rel err %.3g", files[i], e);
        printf("  e2e whisper_audio %s: rel err %.3g\n", strrchr(files[i], '/') + 1, e);
    }
    /* real recordings: 48 kHz speech (resampled), 44.1 kHz stereo 24-bit FLAC, 16 kHz WAV */
    const char *real[] = {"tests/assets/media/audio/Front_Center.wav",
                          "tests/assets/whisper/test-audio/jfk.flac",
                          "tests/fixtures/media/tone_stereo_44k.ogg"};
    for (size_t i = 0; L.impl && i < sizeof real / sizeof *real; i++) {
        float out[32];
        enum cge_status st = cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = real[i]}, out);
        CHECK_MSG(st == CGE_OK, "%s: %s", real[i], cge_errmsg());
        int finite = st == CGE_OK;
        double nn = 0;
        for (int j = 0; finite && j < 32; j++) {
            finite = isfinite(out[j]);
            nn += (double)out[j] * out[j];
        }
        CHECK_MSG(finite && nn > 0, "%s: finite, nonzero", real[i]);
    }
    /* failures are per input and typed */
    float out[32];
    if (L.impl) {
        CHECK(cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = "tests/fixtures/media/none.wav"}, out) ==
              CGE_ERR_IO);
        CHECK(cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = "tests/fixtures/e2e/whisper_audio/case.json"}, out) == CGE_ERR_UNSUPPORTED);
        CHECK(cge__whisper_embed_samples(L.impl, out, 0, out) == CGE_ERR_EMPTY_INPUT);
    }
    free(ref);
    unload(&L);
}

static void test_model_api(void) {
    /* through the generic pipeline (models/model.c) */
    struct cge_model *m = NULL;
    struct cge_model_params p = cge_model_default_params();
    enum cge_status st = cge_model_load("tests/fixtures/e2e/whisper_audio/model", &p, &m);
    CHECK_MSG(st == CGE_OK, "cge_model_load: %s", cge_errmsg());
    if (!m) return;
    CHECK(cge_model_dim(m) == 32);
    CHECK(cge_model_modalities(m) & CGE_MOD_AUDIO);
    size_t ne;
    float *ref = th_read_f32("tests/fixtures/e2e/whisper_audio/expected.f32", &ne);
    CHECK(ref != NULL && ne == 2 * 32);
    struct cge_input in[3];
    memset(in, 0, sizeof in);
    in[0].audio_path = "tests/fixtures/e2e/whisper_audio/jfk_16k.flac";
    in[1].audio_path = "tests/fixtures/media/does-not-exist.ogg";
    in[2].audio_path = "tests/fixtures/e2e/whisper_audio/jfk_16k.wav";
    float out[3 * 32];
    struct cge_embed_info info[3];
    st = cge_model_embed(m, in, 3, out, info);
    CHECK_MSG(st == CGE_OK, "cge_model_embed: %s", cge_errmsg());
    if (st == CGE_OK && ref) {
        CHECK(info[0].status == CGE_OK && info[2].status == CGE_OK);
        CHECK(info[1].status == CGE_ERR_IO);
        double e0 = th_rel_err(out, ref, 32), e2 = th_rel_err(out + 64, ref + 32, 32);
        CHECK_MSG(e0 < 1e-5 && e2 < 1e-5, "rel err %.3g %.3g", e0, e2);
        printf("  e2e through cge_model_embed: rel err %.3g, %.3g\n", e0, e2);
    }
    free(ref);
    cge_model_free(m);
}

/* Every allocation of load and of an embedding fails in turn: a clean CGE_ERR_NOMEM each time
 * (ASan checks that nothing leaks), then success. */
static void test_oom(void) {
    const char *dir = "tests/fixtures/e2e/whisper_audio/model";
    struct loaded L;
    CHECK(load_dir(dir, CGE_DTYPE_F32, &L));
    if (!L.impl) {
        unload(&L);
        return;
    }
    void *impl = NULL;
    enum cge_status st = CGE_ERR_NOMEM;
    long k, bad = 0;
    for (k = 0; k < 5000; k++) {
        cge__fail_alloc_after(k);
        st = cge__family_whisper.load(&L.lc, &impl);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) break;
        if (st != CGE_ERR_NOMEM || impl) bad++;
    }
    CHECK_MSG(st == CGE_OK && bad == 0, "load: %ld failures gave a wrong status", bad);
    printf("  OOM: load survived %ld injected allocation failures\n", k);
    if (impl) cge__family_whisper.free(impl);
    float out[32], ref[32];
    const char *f = "tests/fixtures/e2e/whisper_audio/jfk_16k.wav";
    CHECK(cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = f}, ref) == CGE_OK);
    bad = 0;
    for (k = 0; k < 1000; k++) {
        cge__fail_alloc_after(k);
        st = cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = f}, out);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) break;
        if (st != CGE_ERR_NOMEM) bad++;
    }
    CHECK_MSG(st == CGE_OK && bad == 0 && memcmp(out, ref, sizeof out) == 0,
              "embed: %ld failures gave a wrong status", bad);
    printf("  OOM: embed survived %ld injected allocation failures\n", k);
    unload(&L);
}

/* Config/weights disagreements are load errors that name the problem, never a crash. */
static void test_bad_configs(void) {
    cJSON *c = cJSON_Parse("{\"model_type\": \"bert\"}");
    CHECK(!cge__family_whisper.matches(c));
    cJSON_Delete(c);
    c = cJSON_Parse("{\"architectures\": [\"WhisperForConditionalGeneration\"]}");
    CHECK(cge__family_whisper.matches(c));
    cJSON_Delete(c);
    struct loaded L;
    CHECK(load_dir("tests/fixtures/models/whisper_encoder", CGE_DTYPE_F32, &L));
    struct {
        const char *key;
        double num;
        const char *str;
        enum cge_status want;
    } cases[] = {
        {"num_mel_bins", 128, NULL, CGE_ERR_INVALID_DIM},         /* conv1 is [64, 80, 3] */
        {"max_source_positions", 1000, NULL, CGE_ERR_MODEL_LOAD}, /* 3000 frames → 1500 */
        {"encoder_attention_heads", 5, NULL, CGE_ERR_MODEL_LOAD}, /* 64 % 5 */
        {"encoder_ffn_dim", 128, NULL, CGE_ERR_INVALID_DIM},      /* fc1 is [256, 64] */
        {"activation_function", 0, "swish", CGE_ERR_UNSUPPORTED},
        {"d_model", 1e300, NULL, CGE_ERR_MODEL_LOAD},
        {"encoder_layers", -2, NULL, CGE_ERR_MODEL_LOAD},
        {"num_mel_bins", 0, "eighty", CGE_ERR_MODEL_LOAD},
    };
    for (size_t i = 0; L.impl && i < sizeof cases / sizeof *cases; i++) {
        cJSON *cfg = cJSON_Duplicate(L.config, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, cases[i].key);
        if (cases[i].str)
            cJSON_AddStringToObject(cfg, cases[i].key, cases[i].str);
        else
            cJSON_AddNumberToObject(cfg, cases[i].key, cases[i].num);
        struct cge_family_load lc = L.lc;
        lc.config = cfg;
        lc.dir = NULL; /* no preprocessor_config.json: features follow num_mel_bins */
        void *impl = NULL;
        enum cge_status st = cge__family_whisper.load(&lc, &impl);
        CHECK_MSG(st == cases[i].want && impl == NULL, "%s: status %d (%s)", cases[i].key, st,
                  cge_errmsg());
        cJSON_Delete(cfg);
    }
    unload(&L);
}

struct thr {
    const void *impl;
    const char *path;
    float out[32];
    enum cge_status st;
};
static void *thr_embed(void *p) {
    struct thr *t = p;
    t->st = cge__family_whisper.embed_audio(t->impl, &(struct cge__media){.path = t->path}, t->out);
    return NULL;
}

/* One loaded model shared by two threads: each result equals the single-threaded one. */
static void test_threads(void) {
    struct loaded L;
    CHECK(load_dir("tests/fixtures/e2e/whisper_audio/model", CGE_DTYPE_F32, &L));
    if (!L.impl) {
        unload(&L);
        return;
    }
    struct thr a = {L.impl, "tests/fixtures/e2e/whisper_audio/jfk_16k.flac", {0}, 0};
    struct thr b = {L.impl, "tests/fixtures/media/tone_stereo_44k.ogg", {0}, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, thr_embed, &a);
    pthread_create(&tb, NULL, thr_embed, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    float ra[32], rb[32];
    CHECK(a.st == CGE_OK && b.st == CGE_OK);
    CHECK(cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = a.path}, ra) == CGE_OK);
    CHECK(cge__family_whisper.embed_audio(L.impl, &(struct cge__media){.path = b.path}, rb) == CGE_OK);
    CHECK(memcmp(ra, a.out, sizeof ra) == 0 && memcmp(rb, b.out, sizeof rb) == 0);
    unload(&L);
}

#define TRUN(fn)                                                                   \
    do {                                                                           \
        int64_t t0_ = cge__now_us();                                               \
        RUN(fn);                                                                   \
        if (getenv("CGE_TEST_TIMES"))                                              \
            printf("  [%s: %.2f s]\n", #fn, (double)(cge__now_us() - t0_) * 1e-6); \
    } while (0)

int main(void) {
    TRUN(test_encoder_fixture);
    TRUN(test_e2e_family);
    TRUN(test_model_api);
    TRUN(test_bad_configs);
    TRUN(test_threads);
    TRUN(test_oom);
    return test_report("models_whisper");
}
