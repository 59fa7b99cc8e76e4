/*
 * whisper.c: the Whisper encoder (openai/whisper-*, E5) as an audio embedder.
 *
 * audio file → decode, mono, 16 kHz (media/audio.c) → log-mel (media/audio_mel.c, the model's
 * preprocessor_config.json) → conv1 (k3, pad 1) + GELU → conv2 (k3, stride 2, pad 1) + GELU →
 * + encoder.embed_positions.weight → pre-LN layers → encoder.layer_norm → mean over the frames
 * that hold audio: the first min(1500, ceil(samples / 320)) (320 samples = 2 hops = 1 frame).
 *
 * Design: llama2.c order (hparams → weights → forward). The positions are the table stored in
 * the checkpoint, never recomputed (recomputing the sinusoids differs by ~1e-4). Q, K and V are
 * one fused cge_linear (k_proj has no bias: its third of the fused bias is zero). The decoder's
 * tensors, present in WhisperModel / WhisperForConditionalGeneration files, are ignored. The
 * FFT plan and mel filters are built once per model; every forward allocates its own scratch,
 * so a loaded model serves any number of threads.
 */
#include "models/whisper.h"

#include "core/core.h"
#include "media/audio.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ==== hyperparameters and weights ============================================================= */


struct whisper_layer {
    float *ln1_w, *ln1_b;  /* (d) self_attn_layer_norm */
    struct cge_linear qkv; /* (3d, d) self_attn.{q,k,v}_proj (k without bias) */
    struct cge_linear o;   /* (d, d) self_attn.out_proj */
    float *ln2_w, *ln2_b;  /* (d) final_layer_norm */
    struct cge_linear fc1; /* (d_ff, d) fc1 */
    struct cge_linear fc2; /* (d, d_ff) fc2 */
};

struct whisper {
    int64_t d, n_layer, n_head, d_ff, n_mels;
    int64_t n_in;             /* mel frames per chunk (3000) */
    int64_t n_ctx;            /* encoder frames (1500) = max_source_positions */
    int sampling_rate, hop;   /* from preprocessor_config.json */
    enum cge__act act;        /* config.activation_function, for fc1 (the convs use exact GELU) */
    float *conv1_w, *conv1_b; /* (d, n_mels, 3), (d) encoder.conv1 */
    float *conv2_w, *conv2_b; /* (d, d, 3), (d) encoder.conv2 */
    float *pos;               /* (n_ctx, d) encoder.embed_positions.weight */
    struct whisper_layer *layers; /* n_layer */
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
    if (m->layers) {
        for (int64_t i = 0; i < m->n_layer; i++) {
            struct whisper_layer *l = &m->layers[i];
            cge__free(l->ln1_w);
            cge__free(l->ln1_b);
            cge__free(l->ln2_w);
            cge__free(l->ln2_b);
            cge_linear_deinit(&l->qkv);
            cge_linear_deinit(&l->o);
            cge_linear_deinit(&l->fc1);
            cge_linear_deinit(&l->fc2);
        }
        cge__free(m->layers);
    }
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

/* A (n_out, n_in) weight in the checkpoint's dtype, checked. */
static enum cge_status find_matrix(const struct loader *L, const char *name, int64_t n_out,
                                   int64_t n_in, const struct cge_tensor_info **out) {
    char full[192];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    const struct cge_tensor_info *t = cge_weights_find(L->w, full);
    if (!t)
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: tensor '%s' missing", cge_weights_path(L->w),
                        full);
    if (t->n_dim != 2 || t->shape[0] != n_out || t->shape[1] != n_in)
        return cge__err(
            CGE_ERR_INVALID_DIM, "%s: tensor '%s': %d dims [%lld, %lld], expected [%lld, %lld]",
            cge_weights_path(L->w), full, t->n_dim, (long long)t->shape[0],
            (long long)(t->n_dim > 1 ? t->shape[1] : 0), (long long)n_out, (long long)n_in);
    if (t->dtype != CGE_DTYPE_F32 && t->dtype != CGE_DTYPE_F16 && t->dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s", cge_weights_path(L->w),
                        full, cge_dtype_str(t->dtype));
    *out = t;
    return CGE_OK;
}

static enum cge_status load_linear(const struct loader *L, const char *name, int64_t n_out,
                                   int64_t n_in, struct cge_linear *lin) {
    char wn[160], bn[160];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    const struct cge_tensor_info *t;
    enum cge_status st = find_matrix(L, wn, n_out, n_in, &t);
    if (st != CGE_OK) return st;
    float *b = NULL;
    st = get_vec(L, bn, n_out, &b);
    if (st != CGE_OK) return st;
    st = cge_linear_init(lin, t->data, t->dtype, b, n_out, n_in, L->dtype);
    cge__free(b);
    return st;
}

/* q, k, v stacked into one (3d, d) layer; k_proj has no bias (zeros in the fused bias). */
static enum cge_status load_qkv(const struct loader *L, int64_t li, int64_t d,
                                struct cge_linear *lin) {
    static const char *const names[3] = {"q_proj", "k_proj", "v_proj"};
    float *w = cge__malloc(sizeof(float) * (size_t)(3 * d * d));
    float *b = cge__calloc((size_t)(3 * d), sizeof(float));
    enum cge_status st =
        (w && b) ? CGE_OK : cge__err(CGE_ERR_NOMEM, "whisper: qkv of %lld", (long long)d);
    for (int i = 0; st == CGE_OK && i < 3; i++) {
        char name[160];
        snprintf(name, sizeof name, "layers.%lld.self_attn.%s.weight", (long long)li, names[i]);
        const struct cge_tensor_info *t;
        st = find_matrix(L, name, d, d, &t);
        if (st == CGE_OK) st = cge_convert_to_f32(t->data, t->dtype, d * d, w + (size_t)i * d * d);
        if (st != CGE_OK || i == 1) continue; /* k_proj: bias=False in WhisperAttention */
        float *bi = NULL;
        snprintf(name, sizeof name, "layers.%lld.self_attn.%s.bias", (long long)li, names[i]);
        st = get_vec(L, name, d, &bi);
        if (st == CGE_OK) memcpy(b + (size_t)i * d, bi, sizeof(float) * (size_t)d);
        cge__free(bi);
    }
    if (st == CGE_OK) st = cge_linear_init(lin, w, CGE_DTYPE_F32, b, 3 * d, d, L->dtype);
    cge__free(w);
    cge__free(b);
    return st;
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
    m->layers = cge__calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = cge__err(CGE_ERR_NOMEM, "whisper: %lld layers", (long long)m->n_layer);
        goto fail;
    }
    for (int64_t i = 0; i < m->n_layer && st == CGE_OK; i++) {
        struct whisper_layer *l = &m->layers[i];
        char n[160];
#define LNAME(s) (snprintf(n, sizeof n, "layers.%lld." s, (long long)i), n)
        st = get_vec(&L, LNAME("self_attn_layer_norm.weight"), d, &l->ln1_w);
        if (st == CGE_OK) st = get_vec(&L, LNAME("self_attn_layer_norm.bias"), d, &l->ln1_b);
        if (st == CGE_OK) st = get_vec(&L, LNAME("final_layer_norm.weight"), d, &l->ln2_w);
        if (st == CGE_OK) st = get_vec(&L, LNAME("final_layer_norm.bias"), d, &l->ln2_b);
        if (st == CGE_OK) st = load_qkv(&L, i, d, &l->qkv);
        if (st == CGE_OK) st = load_linear(&L, LNAME("self_attn.out_proj"), d, d, &l->o);
        if (st == CGE_OK) st = load_linear(&L, LNAME("fc1"), m->d_ff, d, &l->fc1);
        if (st == CGE_OK) st = load_linear(&L, LNAME("fc2"), d, m->d_ff, &l->fc2);
#undef LNAME
    }
    if (st != CGE_OK) goto fail;

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
    const int64_t d = m->d, T = m->n_ctx, F = m->n_in, dff = m->d_ff;
    const int64_t dh = d / m->n_head;
    /* scratch: conv1 out (d, F); then x (T, d), xn (T, d), qkv (T, 3d), att (T, d), ff (T, dff) */
    size_t n1 = (size_t)(d * F);
    size_t n2 = (size_t)(T * d) * 3 + (size_t)(T * 3 * d) + (size_t)(T * dff);
    float *c1 = cge__malloc_aligned(sizeof(float) * n1);
    float *buf = cge__malloc_aligned(sizeof(float) * n2);
    if (!c1 || !buf) {
        cge__free_aligned(c1);
        cge__free_aligned(buf);
        return cge__err(CGE_ERR_NOMEM, "whisper: forward scratch of %zu floats", n1 + n2);
    }
    float *x = hidden;                     /* (T, d): the residual stream */
    float *xn = buf;                       /* (T, d) */
    float *att = xn + (size_t)(T * d);     /* (T, d) */
    float *c2 = att + (size_t)(T * d);     /* (d, T) conv2 out */
    float *qkv = c2 + (size_t)(T * d);     /* (T, 3d) */
    float *ff = qkv + (size_t)(T * 3 * d); /* (T, dff) */

    enum cge_status st = cge_conv1d(mel, m->n_mels, F, m->conv1_w, m->conv1_b, d, 3, 1, 1, c1);
    if (st == CGE_OK) {
        cge_gelu_erf(c1, d * F);
        st = cge_conv1d(c1, d, F, m->conv2_w, m->conv2_b, d, 3, 2, 1, c2);
    }
    cge__free_aligned(c1); /* the widest buffer (d × 3000): gone before the layers run */
    c1 = NULL;
    if (st == CGE_OK) {
        cge_gelu_erf(c2, d * T);
        /* (d, T) → (T, d) + positions: HF adds embed_positions.weight after the permute */
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < d; j++)
                x[t * d + j] = c2[j * T + t] + m->pos[t * d + j];
    }
    struct cge_attn ap;
    memset(&ap, 0, sizeof ap);
    ap.n_batch = 1;
    ap.n_seq = T;
    ap.n_head = (int)m->n_head;
    ap.n_kv_head = (int)m->n_head;
    ap.d_head = (int)dh;
    ap.scale = 1.0f; /* q is scaled below, as WhisperAttention scales the q_proj output */
    const float scaling = (float)pow((double)dh, -0.5);
    for (int64_t li = 0; li < m->n_layer && st == CGE_OK; li++) {
        const struct whisper_layer *l = &m->layers[li];
        memcpy(xn, x, sizeof(float) * (size_t)(T * d));
        cge_layernorm(xn, T, d, l->ln1_w, l->ln1_b, 1e-5f);
        st = cge_linear_forward(&l->qkv, xn, T, qkv);
        if (st != CGE_OK) break;
        for (int64_t t = 0; t < T; t++)
            cge_scale(qkv + t * 3 * d, d, scaling);
        st = cge_attention(&ap, qkv, 3 * d, qkv + d, 3 * d, qkv + 2 * d, 3 * d, att, d);
        if (st == CGE_OK) st = cge_linear_forward(&l->o, att, T, xn);
        if (st != CGE_OK) break;
        cge_add(x, xn, T * d);
        memcpy(xn, x, sizeof(float) * (size_t)(T * d));
        cge_layernorm(xn, T, d, l->ln2_w, l->ln2_b, 1e-5f);
        st = cge_linear_forward(&l->fc1, xn, T, ff);
        if (st != CGE_OK) break;
        cge__act_apply(m->act, ff, T * dff);
        st = cge_linear_forward(&l->fc2, ff, T, xn);
        if (st != CGE_OK) break;
        cge_add(x, xn, T * d);
    }
    if (st == CGE_OK) cge_layernorm(x, T, d, m->lnf_w, m->lnf_b, 1e-5f);
    cge__free_aligned(c1);
    cge__free_aligned(buf);
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
