/*
 * whisper.c: the Whisper encoder (openai/whisper-*, E5) as an audio embedder.
 *
 * audio file → decode, mono, 16 kHz (media/audio.c) → log-mel (media/audio_mel.c, the model's
 * preprocessor_config.json) → conv1 (k3, pad 1) + GELU → conv2 (k3, stride 2, pad 1) + GELU →
 * + encoder.embed_positions.weight → pre-LN layers → encoder.layer_norm → mean over the frames
 * that hold audio: the first min(1500, ceil(samples / 320)) (320 samples = 2 hops = 1 frame).
 *
 * Design: llama2.c order (hparams → weights → forward). The positions are the table stored in
 * the checkpoint, never recomputed (recomputing the sinusoids differs by ~1e-4). The layers are
 * the shared pre-norm encoder (encoder.c: fused Q/K/V, k_proj without bias, i.e. a zero third
 * of the fused bias); WhisperAttention's d_head^-0.5 on the q_proj output is the attention
 * scale there (the same numbers: d_head is 64 in every Whisper, a power of two). The decoder's
 * tensors, present in WhisperModel / WhisperForConditionalGeneration files, are ignored. The
 * FFT plan and mel filters are built once per model; every forward allocates its own scratch,
 * so a loaded model serves any number of threads.
 */
#include "models/whisper.h"

#include "core/core.h"
#include "models/encoder.h"
#include "media/audio.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ==== hyperparameters and weights ============================================================= */


struct whisper {
    int64_t d, n_layer, n_head, d_ff, n_mels;
    int64_t n_in;             /* mel frames per chunk (3000) */
    int64_t n_ctx;            /* encoder frames (1500) = max_source_positions */
    int sampling_rate, hop;   /* from preprocessor_config.json */
    enum cge__act act;        /* config.activation_function, for fc1 (the convs use exact GELU) */
    float *conv1_w, *conv1_b; /* (d, n_mels, 3), (d) encoder.conv1 */
    float *conv2_w, *conv2_b; /* (d, d, 3), (d) encoder.conv2 */
    float *pos;               /* (n_ctx, d) encoder.embed_positions.weight */
    struct cge_encoder enc;       /* layers.* */
    float *lnf_w, *lnf_b;         /* (d) encoder.layer_norm */
    struct cge_logmel *mel;       /* filters + FFT plan */
};

/* ==== matching ================================================================================ */

static int whisper_matches(const struct cJSON *config) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(config, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "whisper") == 0) return 1;
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(config, "architectures");
    const cJSON *a0 = cJSON_IsArray(ar) ? cJSON_GetArrayItem(ar, 0) : NULL;
    if (cJSON_IsString(a0) && strncmp(a0->valuestring, "Whisper", 7) == 0) return 1;
    return 0;
}

/* ==== load ==================================================================================== */

static void whisper_free(void *impl) {
    struct whisper *m = impl;
    if (!m) return;
    cge__encoder_free(&m->enc);
    cge__free(m->conv1_w);
    cge__free(m->conv1_b);
    cge__free(m->conv2_w);
    cge__free(m->conv2_b);
    cge__free(m->pos);
    cge__free(m->lnf_w);
    cge__free(m->lnf_b);
    cge_logmel_free(m->mel);
    cge__free(m);
}

/* A config integer; -1 (rejected by the range checks) when it is not a number that fits an int,
 * so that a value like 1e300 never reaches a float-to-int conversion. */
static int64_t json_int(const cJSON *o, const char *key, int64_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return dflt;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -2147483647.0 && v->valuedouble <= 2147483647.0))
        return -1;
    return (int64_t)v->valuedouble;
}

/* The weight-name prefix: WhisperForConditionalGeneration "model.encoder.", WhisperModel
 * "encoder.", a bare WhisperEncoder "". */
static const char *find_prefix(const struct cge_weights *w) {
    static const char *const prefixes[] = {"model.encoder.", "encoder.", ""};
    for (int i = 0; i < 3; i++) {
        char name[128];
        snprintf(name, sizeof name, "%sconv1.weight", prefixes[i]);
        if (cge_weights_find(w, name)) return prefixes[i];
    }
    return NULL;
}

struct loader {
    const struct cge_weights *w;
    const char *prefix;
    enum cge_dtype dtype;
};

static enum cge_status get_vec(const struct loader *L, const char *name, int64_t n, float **out) {
    char full[192];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    int64_t shape[1] = {n};
    return cge_weights_get_f32(L->w, full, 1, shape, out);
}

static enum cge_status get_tensor(const struct loader *L, const char *name, int n_dim,
                                  const int64_t *shape, float **out) {
    char full[192];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    return cge_weights_get_f32(L->w, full, n_dim, shape, out);
}

/* preprocessor_config.json (optional: defaults are Whisper's) */
static enum cge_status read_preprocessor(const char *dir, int64_t n_mels, int *n_fe, int *sr,
                                         int *n_fft, int *hop, int *chunk) {
    *n_fe = (int)n_mels;
    *sr = 16000;
    *n_fft = 400;
    *hop = 160;
    *chunk = 30;
    if (!dir) return CGE_OK;
    char path[4096];
    if (cge__path_join(path, sizeof path, dir, "preprocessor_config.json") != CGE_OK ||
        !cge__file_exists(path))
        return CGE_OK;
    cJSON *pc = NULL;
    enum cge_status st = cge__json_read_file(path, &pc);
    if (st != CGE_OK) return st;
    *n_fe = (int)json_int(pc, "feature_size", *n_fe);
    *sr = (int)json_int(pc, "sampling_rate", *sr);
    *n_fft = (int)json_int(pc, "n_fft", *n_fft);
    *hop = (int)json_int(pc, "hop_length", *hop);
    *chunk = (int)json_int(pc, "chunk_length", *chunk);
    cJSON_Delete(pc);
    return CGE_OK;
}

static enum cge_status whisper_load(struct cge_family_load *lc, void **impl) {
    *impl = NULL;
    const cJSON *c = lc->config;
    struct whisper *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "whisper");
    m->d = json_int(c, "d_model", 0);
    m->n_layer = json_int(c, "encoder_layers", json_int(c, "num_hidden_layers", 0));
    m->n_head = json_int(c, "encoder_attention_heads", 0);
    m->d_ff = json_int(c, "encoder_ffn_dim", 0);
    m->n_mels = json_int(c, "num_mel_bins", 80);
    m->n_ctx = json_int(c, "max_source_positions", 1500);
    enum cge_status st = CGE_OK;
    if (m->d <= 0 || m->d > 65536 || m->n_layer <= 0 || m->n_layer > 256 || m->n_head <= 0 ||
        m->d % m->n_head != 0 || m->d_ff <= 0 || m->d_ff > 1 << 20 || m->n_mels <= 0 ||
        m->n_mels > 512 || m->n_ctx <= 0 || m->n_ctx > 1 << 16) {
        st = cge__err(CGE_ERR_MODEL_LOAD,
                      "%s: config.json: d_model %lld, encoder_layers %lld, heads %lld, ffn %lld, "
                      "num_mel_bins %lld, max_source_positions %lld not usable",
                      lc->dir ? lc->dir : "whisper", (long long)m->d, (long long)m->n_layer,
                      (long long)m->n_head, (long long)m->d_ff, (long long)m->n_mels,
                      (long long)m->n_ctx);
        goto fail;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(c, "activation_function");
    m->act = CGE_ACT_GELU;
    if (cJSON_IsString(act)) {
        const char *a = act->valuestring;
        const unsigned ok = CGE__ACT_BIT(CGE_ACT_GELU) | CGE__ACT_BIT(CGE_ACT_GELU_TANH) |
                            CGE__ACT_BIT(CGE_ACT_RELU);
        if (cge__act_parse(a, &m->act) || !(ok & CGE__ACT_BIT(m->act))) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "whisper: activation_function '%s'", a);
            goto fail;
        }
    }

    /* the feature extractor */
    int n_fe, sr, n_fft, hop, chunk;
    st = read_preprocessor(lc->dir, m->n_mels, &n_fe, &sr, &n_fft, &hop, &chunk);
    if (st != CGE_OK) goto fail;
    if (n_fe != m->n_mels) {
        st = cge__err(CGE_ERR_MODEL_LOAD,
                      "%s: preprocessor_config.json feature_size %d != config num_mel_bins %lld",
                      lc->dir ? lc->dir : "whisper", n_fe, (long long)m->n_mels);
        goto fail;
    }
    st = cge_logmel_new(n_fe, sr, n_fft, hop, chunk, &m->mel);
    if (st != CGE_OK) goto fail;
    m->sampling_rate = sr;
    m->hop = hop;
    m->n_in = cge_logmel_n_frames(m->mel);
    /* WhisperEncoder insists on n_in == 2 · max_source_positions */
    if ((m->n_in + 2 - 3) / 2 + 1 != m->n_ctx) {
        st = cge__err(CGE_ERR_MODEL_LOAD,
                      "whisper: %lld mel frames give %lld encoder frames, max_source_positions is "
                      "%lld",
                      (long long)m->n_in, (long long)((m->n_in + 2 - 3) / 2 + 1),
                      (long long)m->n_ctx);
        goto fail;
    }

    /* weights */
    struct loader L = {lc->w, find_prefix(lc->w), lc->p ? lc->p->dtype : CGE_DTYPE_F32};
    if (!L.prefix) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "%s: no Whisper encoder tensors (conv1.weight)",
                      cge_weights_path(lc->w));
        goto fail;
    }
    const int64_t d = m->d;
    int64_t s1[3] = {d, m->n_mels, 3}, s2[3] = {d, d, 3}, sp[2] = {m->n_ctx, d};
    st = get_tensor(&L, "conv1.weight", 3, s1, &m->conv1_w);
    if (st == CGE_OK) st = get_vec(&L, "conv1.bias", d, &m->conv1_b);
    if (st == CGE_OK) st = get_tensor(&L, "conv2.weight", 3, s2, &m->conv2_w);
    if (st == CGE_OK) st = get_vec(&L, "conv2.bias", d, &m->conv2_b);
    if (st == CGE_OK) st = get_tensor(&L, "embed_positions.weight", 2, sp, &m->pos);
    if (st == CGE_OK) st = get_vec(&L, "layer_norm.weight", d, &m->lnf_w);
    if (st == CGE_OK) st = get_vec(&L, "layer_norm.bias", d, &m->lnf_b);
    if (st != CGE_OK) goto fail;
    {
        const struct cge_enc_names nm = {
            .prefix = L.prefix,
            .q = "layers.{}.self_attn.q_proj",
            .k = "layers.{}.self_attn.k_proj",
            .v = "layers.{}.self_attn.v_proj",
            .o = "layers.{}.self_attn.out_proj",
            .ff1 = "layers.{}.fc1",
            .ff2 = "layers.{}.fc2",
            .ln1 = "layers.{}.self_attn_layer_norm",
            .ln2 = "layers.{}.final_layer_norm",
        };
        struct cge_enc_params ep = {
            .n_layer = m->n_layer,
            .d = d,
            .n_head = m->n_head,
            .d_head = d / m->n_head,
            .d_ff = m->d_ff,
            .pre_norm = 1,
            .rms = 0,
            .eps = 1e-5f,
            .bias = 1,
            .no_k_bias = 1, /* k_proj: bias=False in WhisperAttention */
            .scale = (float)pow((double)(d / m->n_head), -0.5),
        };
        if ((st = cge__act_to_be(m->act, &ep.act))) goto fail;
        if ((st = cge__encoder_load(lc, &ep, &nm, &m->enc))) goto fail;
    }

    lc->hidden = d;
    lc->max_positions = m->n_in;
    lc->pad_id = -1;
    lc->modalities = CGE_MOD_AUDIO;
    lc->default_pooling = CGE_POOL_AUDIO_MEAN;
    lc->default_normalize = 0;
    *impl = m;
    return CGE_OK;
fail:
    whisper_free(m);
    return st;
}

/* ==== forward ================================================================================= */

int64_t cge__whisper_n_frames_in(const void *impl) {
    return ((const struct whisper *)impl)->n_in;
}
int64_t cge__whisper_n_frames_out(const void *impl) {
    return ((const struct whisper *)impl)->n_ctx;
}
int64_t cge__whisper_d_model(const void *impl) {
    return ((const struct whisper *)impl)->d;
}
int64_t cge__whisper_samples_per_frame(const void *impl) {
    return 2 * (int64_t)((const struct whisper *)impl)->hop;
}
int cge__whisper_sampling_rate(const void *impl) {
    return ((const struct whisper *)impl)->sampling_rate;
}

enum cge_status cge__whisper_encode(const void *impl, const float *mel, float *hidden) {
    const struct whisper *m = impl;
    const int64_t d = m->d, T = m->n_ctx, F = m->n_in;
    /* scratch: conv1 out (d, F), conv2 out (d, T); the layers allocate their own */
    float *c1 = cge__malloc_aligned(sizeof(float) * (size_t)(d * F));
    float *c2 = cge__malloc_aligned(sizeof(float) * (size_t)(d * T));
    if (!c1 || !c2) {
        cge__free_aligned(c1);
        cge__free_aligned(c2);
        return cge__err(CGE_ERR_NOMEM, "whisper: forward scratch of %lld floats",
                        (long long)(d * F + d * T));
    }
    float *x = hidden; /* (T, d): the residual stream */

    enum cge_status st = cge_conv1d(mel, m->n_mels, F, m->conv1_w, m->conv1_b, d, 3, 1, 1, c1);
    if (st == CGE_OK) {
        cge_gelu_erf(c1, d * F);
        st = cge_conv1d(c1, d, F, m->conv2_w, m->conv2_b, d, 3, 2, 1, c2);
    }
    cge__free_aligned(c1); /* the widest buffer (d × 3000): gone before the layers run */
    if (st == CGE_OK) {
        cge_gelu_erf(c2, d * T);
        /* (d, T) → (T, d) + positions: HF adds embed_positions.weight after the permute */
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < d; j++)
                x[t * d + j] = c2[j * T + t] + m->pos[t * d + j];
    }
    cge__free_aligned(c2);
    if (st == CGE_OK) st = cge__encoder_forward(&m->enc, x, 1, T, NULL, NULL);
    if (st == CGE_OK) cge_layernorm(x, T, d, m->lnf_w, m->lnf_b, 1e-5f);
    return st;
}

enum cge_status cge__whisper_embed_samples(const void *impl, const float *samples, int64_t n,
                                           float *out) {
    const struct whisper *m = impl;
    if (n <= 0) return cge__err(CGE_ERR_EMPTY_INPUT, "whisper: no audio samples");
    const int64_t d = m->d, T = m->n_ctx, spf = 2 * (int64_t)m->hop;
    float *mel = cge__malloc(sizeof(float) * (size_t)(m->n_mels * m->n_in));
    float *h = cge__malloc_aligned(sizeof(float) * (size_t)(T * d));
    enum cge_status st = (mel && h) ? CGE_OK : cge__err(CGE_ERR_NOMEM, "whisper: features");
    if (st == CGE_OK) st = cge_logmel_compute(m->mel, samples, n, mel);
    if (st == CGE_OK) st = cge__whisper_encode(m, mel, h);
    if (st == CGE_OK) {
        /* the frames that hold audio: ceil(n / 320), at most T */
        int64_t nf = (n + spf - 1) / spf;
        if (nf > T) nf = T;
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t t = 0; t < nf; t++)
                s += h[t * d + j];
            out[j] = (float)(s / (double)nf);
        }
    }
    cge__free(mel);
    cge__free_aligned(h);
    return st;
}

static enum cge_status whisper_embed_audio(const void *impl, struct cge__media *src, float *out) {
    const struct whisper *m = impl;
    float *x = NULL;
    int64_t n = 0;
    const int64_t window = cge_logmel_n_samples(m->mel);
    /* Decode a second past the window, so a longer clip is seen (and reported) as cut. */
    double secs = (double)window / m->sampling_rate + 1.0;
    char label[64];
    enum cge_status st =
        src->path ? cge_audio_load(src->path, m->sampling_rate, secs, &x, &n)
                  : cge_audio_load_memory(src->data, src->len,
                                          cge__media_label(src, label, sizeof label),
                                          m->sampling_rate, secs, &x, &n);
    if (st != CGE_OK) return st;
    if (n > window) {
        if (src->no_truncate) {
            cge__free(x);
            return cge__err(CGE_ERR_INPUT_TOO_LONG,
                            "%s: audio longer than the model's %.0f s window (no truncation)",
                            cge__media_label(src, label, sizeof label),
                            (double)window / m->sampling_rate);
        }
        src->truncated = 1;
        n = window;
    }
    const int64_t spf = 2 * (int64_t)m->hop;
    int64_t nf = (n + spf - 1) / spf;
    src->n_frames = nf < m->n_ctx ? nf : m->n_ctx;
    st = cge__whisper_embed_samples(m, x, n, out);
    cge__free(x);
    return st;
}

static int64_t whisper_out_dim(const void *impl) {
    return ((const struct whisper *)impl)->d;
}

const struct cge_family cge__family_whisper = {
    .name = "whisper",
    .matches = whisper_matches,
    .load = whisper_load,
    .free = whisper_free,
    .forward_text = NULL,
    .embed_audio = whisper_embed_audio,
    .out_dim = whisper_out_dim,
};
