/*
 * mistral.c: the Mistral decoder (MistralModel) as an embedder: E12, e5-mistral-7b-instruct.
 *
 * The embedding is the hidden state of the last real token (EOS) after the final norm; the
 * generic pipeline (model.c) does tokenization (BOS + text + EOS), the E5 query format and the
 * last-token pooling. This file turns ids into hidden states.
 *
 * Key decision: every projection is one cge_linear, with Q/K/V fused into one matrix and
 * gate/up fused into another, so a layer is four GEMMs. Weights are converted one tensor at a
 * time from the memory-mapped checkpoint into the storage dtype (fp32, bf16 or int8 per output
 * channel), so loading a 14 GB bf16 checkpoint never holds more than one fused matrix of
 * temporary memory besides the converted weights.
 *
 * int8 here is W8A16 (ops.h: s8 weights with a scale per 32 inputs, widened to bf16 inside the
 * GEMM; bf16 activations): the encoders' per-row u8 activations lose the small channels next to
 * the residual stream's outlier channels, and per-channel weight scales lose accuracy as width
 * grows; over 32 layers both cost cosine (test_models_mistral_depth has the table the scheme
 * was chosen on, at width 256 and, by hand, 1024). Converting 14 GB takes tens of seconds, so large
 * loads go through the converted-weights file (wcache.h): the first writes it, later ones map
 * it and point the layers into the mapping.
 */
#include "core/core.h"
#include "models/model.h"
#include "models/wcache.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- hyper-parameters --------------------------------------------------------------------- */
struct mistral_hparams {
    int64_t n_vocab;    /* vocab_size */
    int64_t d_model;    /* hidden_size */
    int64_t d_ff;       /* intermediate_size */
    int n_layer;        /* num_hidden_layers */
    int n_head;         /* num_attention_heads */
    int n_kv_head;      /* num_key_value_heads */
    int d_head;         /* head_dim = hidden_size / num_attention_heads */
    float eps;          /* rms_norm_eps */
    float rope_theta;   /* rope_theta */
    int64_t window;     /* sliding_window (0 = none) */
    int64_t max_pos;    /* max_position_embeddings */
};

/* ---- weights ------------------------------------------------------------------------------ */
struct mistral_layer {
    float *attn_norm;        /* (d_model) layers.*.input_layernorm.weight */
    struct cge_linear qkv;   /* (n_head*d_head + 2*n_kv_head*d_head, d_model) q|k|v_proj */
    struct cge_linear o;     /* (d_model, n_head*d_head) layers.*.self_attn.o_proj */
    float *mlp_norm;         /* (d_model) layers.*.post_attention_layernorm.weight */
    struct cge_linear gate_up; /* (2*d_ff, d_model) layers.*.mlp.gate_proj | up_proj */
    struct cge_linear down;  /* (d_model, d_ff) layers.*.mlp.down_proj */
};

struct mistral {
    struct mistral_hparams hp;
    const void *tok_embd;    /* (n_vocab, d_model) embed_tokens.weight, in the mapped file
                              * (model.c keeps the weights open for the model's lifetime) */
    enum cge_dtype tok_dtype;
    struct mistral_layer *layers;
    float *norm;             /* (d_model) norm.weight */
    struct cge_wcache *wc;   /* the converted-weights file the layers point into, or NULL */
};

static int mistral_matches(const cJSON *config) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(config, "model_type");
    return cJSON_IsString(mt) && !strcmp(mt->valuestring, "mistral");
}

static enum cge_status read_hparams(const struct cge_family_load *lc, struct mistral_hparams *hp) {
    int64_t v, n_head;
    double f;
    enum cge_status st;
    if ((st = cge__cfg_int(lc, "vocab_size", 1, 0, 1, 1 << 24, &hp->n_vocab))) return st;
    if ((st = cge__cfg_int(lc, "hidden_size", 1, 0, 2, 1 << 16, &hp->d_model))) return st;
    if ((st = cge__cfg_int(lc, "intermediate_size", 1, 0, 1, 1 << 20, &hp->d_ff))) return st;
    if ((st = cge__cfg_int(lc, "num_hidden_layers", 1, 0, 1, 1024, &v))) return st;
    hp->n_layer = (int)v;
    if ((st = cge__cfg_int(lc, "num_attention_heads", 1, 0, 1, 1024, &n_head))) return st;
    hp->n_head = (int)n_head;
    if ((st = cge__cfg_int(lc, "num_key_value_heads", 0, n_head, 1, 1024, &v))) return st;
    hp->n_kv_head = (int)v;
    if ((st = cge__cfg_int(lc, "max_position_embeddings", 0, 32768, 1, INT64_C(1) << 32, &hp->max_pos)))
        return st;
    if ((st = cge__cfg_int(lc, "sliding_window", 0, 0, 0, INT64_C(1) << 32, &hp->window))) return st;
    if ((st = cge__cfg_float(lc, "rms_norm_eps", 0, 1e-5, &f))) return st;
    hp->eps = (float)f;
    if ((st = cge__cfg_float(lc, "rope_theta", 0, 10000.0, &f))) return st;
    hp->rope_theta = (float)f;
    if (hp->n_head % hp->n_kv_head || hp->d_model % hp->n_head || !(hp->rope_theta > 0))
        return cge__err(CGE_ERR_MODEL_LOAD,
                        "model %s: config.json: inconsistent sizes (hidden %lld, heads %d, "
                        "kv heads %d, rope_theta %g)",
                        lc->dir, (long long)hp->d_model, hp->n_head, hp->n_kv_head,
                        (double)hp->rope_theta);
    hp->d_head = (int)(hp->d_model / hp->n_head);
    /* config.json may carry head_dim (later transformers); it must agree with 4.40's rule. */
    if ((st = cge__cfg_int(lc, "head_dim", 0, hp->d_head, 1, 1 << 16, &v))) return st;
    if (v != hp->d_head || hp->d_head % 2)
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: head_dim %lld, expected an "
                        "even hidden/heads = %d", lc->dir, (long long)v, hp->d_head);
    return CGE_OK;
}

/* Tensor names carry "model." in MistralForCausalLM checkpoints, none in MistralModel ones. */
static void tname(char *buf, size_t cap, const char *prefix, int layer, const char *name) {
    if (layer < 0)
        snprintf(buf, cap, "%s%s", prefix, name);
    else
        snprintf(buf, cap, "%slayers.%d.%s", prefix, layer, name);
}

/* A layer's vector (norm weight) as fp32. */
static enum cge_status load_vec(const struct cge_family_load *lc, const char *prefix, int layer,
                                const char *name, int64_t d, float **out) {
    char full[160];
    tname(full, sizeof full, prefix, layer, name);
    const int64_t shape[1] = {d};
    return cge__tensor_f32(lc, full, 1, shape, out);
}

/* How int8 storage computes, per projection (see the file comment). The default is what the
 * depth test and the benchmark's candidate table chose; the others stay for that table. */
enum mistral_i8 {
    MISTRAL_I8_W8A16 = 0,      /* every projection W8A16: s8 weights with a scale per 32 inputs,
                                * widened to bf16 inside the GEMM; bf16 activations (default) */
    MISTRAL_I8_W8A8,           /* every projection W8A8 (per-row u8 activations): the old mode */
    MISTRAL_I8_W8A8_DOWN_BF16, /* W8A8, down_proj in bf16 */
    MISTRAL_I8_A16,            /* every projection A16 (per-channel s8 × 16-bit activations) */
    MISTRAL_I8_W8A16_DOWN_BF16, /* W8A16, down_proj in bf16 */
    /* simulations for the candidate table (weights rounded to int8 with the scales below,
     * then computed in fp32: the weight error alone): */
    MISTRAL_I8_SIM_CHANNEL,    /* one scale per output channel */
    MISTRAL_I8_SIM_G128,       /* one scale per 128 inputs of an output channel */
    MISTRAL_I8_SIM_G32         /* one scale per 32 */
};
static enum mistral_i8 g_i8 = MISTRAL_I8_W8A16;

/* For the depth test and the benchmark only: the int8 scheme of models loaded after the call
 * (0 = W8A16, the default, 1 = W8A8, 2 = W8A8 with down_proj bf16, 3 = A16, 4 = W8A16 with
 * down_proj bf16, 5-7 = simulated int8 weights per channel / group of 128 / group of 32). */
void cge__mistral_set_i8(int mode) {
    g_i8 = mode >= 0 && mode <= 7 ? (enum mistral_i8)mode : MISTRAL_I8_W8A16;
}

/* The simulated schemes: w rounded in place to s·round(w/s), s = max|w|/127 per group. */
static void fake_quant(float *w, int64_t n_out, int64_t n_in, int64_t group) {
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t g0 = 0; g0 < n_in; g0 += group) {
            float *p = w + r * n_in + g0, amax = 0;
            int64_t n = n_in - g0 < group ? n_in - g0 : group;
            for (int64_t i = 0; i < n; i++) amax = fabsf(p[i]) > amax ? fabsf(p[i]) : amax;
            float s = amax > 0 ? amax / 127.0f : 1.0f;
            for (int64_t i = 0; i < n; i++) p[i] = s * nearbyintf(p[i] / s);
        }
}

/* The storage of a projection (down_proj: some schemes keep it in bf16) and the int8 mode. */
static enum cge_dtype proj_dtype(const struct cge_family_load *lc, int down) {
    enum cge_dtype dt = lc->p ? lc->p->dtype : CGE_DTYPE_F32;
    if (dt == CGE_DTYPE_I8 && down &&
        (g_i8 == MISTRAL_I8_W8A8_DOWN_BF16 || g_i8 == MISTRAL_I8_W8A16_DOWN_BF16))
        dt = CGE_DTYPE_BF16;
    return dt;
}

static enum cge_i8_mode proj_mode(void) {
    if (g_i8 == MISTRAL_I8_A16) return CGE_I8_A16;
    return g_i8 == MISTRAL_I8_W8A8 || g_i8 == MISTRAL_I8_W8A8_DOWN_BF16 ? CGE_I8_DYNAMIC
                                                                        : CGE_I8_WEIGHTS;
}

static const char *scheme_name(enum cge_dtype dt) {
    static const char *const names[] = {"w8a16 g32", "w8a8", "w8a8 down_proj bf16", "a16",
                                        "w8a16 g32 down_proj bf16", "", "", ""};
    return dt == CGE_DTYPE_I8 ? names[g_i8] : "plain";
}

/* A linear layer stacking n_parts bias-free matrices of the layer (fused Q/K/V, gate/up), then
 * the checkpoint pages they came from are released: they are converted now. One part in a
 * float dtype goes straight from the map; several are stacked as fp32 first (one fused
 * matrix of temporary memory). `down` marks down_proj, which some int8 schemes keep in bf16. */
static enum cge_status load_linear(const struct cge_family_load *lc, const char *prefix,
                                   int layer, const char *const *names, const int64_t *rows,
                                   int n_parts, int64_t n_in, int down, struct cge_linear *out) {
    char full[4][160];
    const struct cge_tensor_info *t[4];
    int64_t n_out = 0;
    enum cge_status st = CGE_OK;
    for (int i = 0; i < n_parts; i++) {
        tname(full[i], sizeof full[i], prefix, layer, names[i]);
        const int64_t shape[2] = {rows[i], n_in};
        if ((st = cge__tensor(lc, full[i], 2, shape, &t[i]))) return st;
        if (t[i]->dtype != CGE_DTYPE_F32 && t[i]->dtype != CGE_DTYPE_F16 &&
            t[i]->dtype != CGE_DTYPE_BF16)
            return cge__err(CGE_ERR_MODEL_LOAD, "model %s: tensor '%s': dtype %s, expected a "
                            "float type", lc->dir, full[i], cge_dtype_str(t[i]->dtype));
        n_out += rows[i];
    }
    enum cge_dtype dt = proj_dtype(lc, down);
    enum cge_i8_mode mode = proj_mode();
    int64_t sim = 0;
    if (dt == CGE_DTYPE_I8 && g_i8 >= MISTRAL_I8_SIM_CHANNEL) {
        sim = g_i8 == MISTRAL_I8_SIM_CHANNEL ? n_in : g_i8 == MISTRAL_I8_SIM_G128 ? 128 : 32;
        dt = CGE_DTYPE_F32;
    }
    if (n_parts == 1 && !sim) {
        st = cge_linear_init_q(out, t[0]->data, t[0]->dtype, NULL, n_out, n_in, dt, mode);
    } else {
        float *w = cge__malloc((size_t)(n_out * n_in) * sizeof *w);
        if (!w)
            return cge__err(CGE_ERR_NOMEM, "model %s: tensor '%s': %lld floats", lc->dir,
                            full[0], (long long)(n_out * n_in));
        int64_t row = 0;
        for (int i = 0; i < n_parts; i++) {
            cge_convert_to_f32(t[i]->data, t[i]->dtype, t[i]->n_elem, w + row * n_in);
            row += rows[i];
        }
        if (sim) fake_quant(w, n_out, n_in, sim);
        st = cge_linear_init_q(out, w, CGE_DTYPE_F32, NULL, n_out, n_in, dt, mode);
        cge__free(w);
    }
    if (st) return cge__err(st, "model %s: tensor '%s': %s", lc->dir, full[0], cge_errmsg());
    for (int i = 0; i < n_parts; i++) cge_weights_release(lc->w, t[i]);
    return CGE_OK;
}

static void mistral_free(void *impl) {
    struct mistral *m = impl;
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->hp.n_layer; i++) {
            struct mistral_layer *l = &m->layers[i];
            cge__free(l->attn_norm);
            cge__free(l->mlp_norm);
            cge_linear_deinit(&l->qkv);
            cge_linear_deinit(&l->o);
            cge_linear_deinit(&l->gate_up);
            cge_linear_deinit(&l->down);
        }
        cge__free(m->layers);
    }
    cge__wcache_close(m->wc); /* after the layers that point into it */
    cge__free(m->norm);
    cge__free(m);
}

static enum cge_status mistral_load(struct cge_family_load *lc, void **impl) {
    *impl = NULL;
    struct mistral *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "mistral model");
    enum cge_status st = read_hparams(lc, &m->hp);
    if (st) goto fail;
    const struct mistral_hparams *hp = &m->hp;
    const char *prefix = cge_weights_find(lc->w, "model.embed_tokens.weight") ? "model." : "";
    char name[160];
    tname(name, sizeof name, prefix, -1, "embed_tokens.weight");
    const int64_t emb_shape[2] = {hp->n_vocab, hp->d_model};
    const struct cge_tensor_info *te;
    if ((st = cge__tensor(lc, name, 2, emb_shape, &te))) goto fail;
    if (te->dtype != CGE_DTYPE_F32 && te->dtype != CGE_DTYPE_BF16 && te->dtype != CGE_DTYPE_F16) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: tensor '%s': dtype %s, expected a float type",
                      lc->dir, name, cge_dtype_str(te->dtype));
        goto fail;
    }
    m->tok_embd = te->data; /* gathered from the map: only the rows of the ids are touched */
    m->tok_dtype = te->dtype;
    m->layers = cge__calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = cge__err(CGE_ERR_NOMEM, "mistral layers");
        goto fail;
    }
    const int64_t d_q = (int64_t)hp->n_head * hp->d_head, d_kv = (int64_t)hp->n_kv_head * hp->d_head;
    static const char *const qkv[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                      "self_attn.v_proj.weight"};
    static const char *const o[] = {"self_attn.o_proj.weight"};
    static const char *const gu[] = {"mlp.gate_proj.weight", "mlp.up_proj.weight"};
    static const char *const dn[] = {"mlp.down_proj.weight"};
    const int64_t qkv_rows[] = {d_q, d_kv, d_kv}, o_rows[] = {hp->d_model},
                  gu_rows[] = {hp->d_ff, hp->d_ff}, dn_rows[] = {hp->d_model};
    const int64_t n_in[4] = {hp->d_model, d_q, hp->d_model, hp->d_ff},
                  n_out[4] = {d_q + 2 * d_kv, hp->d_model, 2 * hp->d_ff, hp->d_model};
    /* The converted-weights file (wcache.h): map it when it checks out, else convert and
     * write it. Its failures only cost time: they are logged, never returned. */
    size_t conv_bytes = 0;
    for (int j = 0; j < 4; j++)
        conv_bytes += (size_t)(n_in[j] * n_out[j]) * cge_dtype_size(proj_dtype(lc, j == 3));
    conv_bytes *= (size_t)hp->n_layer;
    char key[4096], wpath[PATH_MAX];
    int use_wc = g_i8 <= MISTRAL_I8_W8A16_DOWN_BF16 && cge__wcache_wanted(conv_bytes);
    if (use_wc && cge__wcache_locate(lc->dir, "mistral", lc->p ? lc->p->dtype : CGE_DTYPE_F32,
                                     scheme_name(lc->p ? lc->p->dtype : CGE_DTYPE_F32), key,
                                     sizeof key, wpath, sizeof wpath) != CGE_OK) {
        cge__log(CGE_LOG_WARN, "model %s: no converted-weights file: %s", lc->dir, cge_errmsg());
        use_wc = 0;
    }
    int from_wc = 0;
    if (use_wc && cge__file_exists(wpath)) {
        if (cge__wcache_open(wpath, key, 4 * (int64_t)hp->n_layer, &m->wc) == CGE_OK) {
            from_wc = 1;
            for (int i = 0; i < hp->n_layer && from_wc; i++) {
                struct mistral_layer *l = &m->layers[i];
                struct cge_linear *lin[4] = {&l->qkv, &l->o, &l->gate_up, &l->down};
                for (int j = 0; j < 4 && from_wc; j++) {
                    size_t len = 0;
                    const void *blob = cge__wcache_entry(m->wc, 4 * i + j, &len);
                    if (cge__linear_from_blob(lin[j], blob, len, n_out[j], n_in[j],
                                              proj_dtype(lc, j == 3), proj_mode()) != CGE_OK)
                        from_wc = 0;
                }
            }
        }
        if (from_wc)
            cge__log(CGE_LOG_INFO, "model %s: converted weights mapped from %s", lc->dir, wpath);
        if (!from_wc) {
            cge__log(CGE_LOG_WARN, "model %s: converted weights %s refused, converting again: %s",
                     lc->dir, wpath, cge_errmsg());
            for (int i = 0; i < hp->n_layer; i++) {
                cge_linear_deinit(&m->layers[i].qkv);
                cge_linear_deinit(&m->layers[i].o);
                cge_linear_deinit(&m->layers[i].gate_up);
                cge_linear_deinit(&m->layers[i].down);
            }
            cge__wcache_close(m->wc);
            m->wc = NULL;
        }
    }
    for (int i = 0; i < hp->n_layer; i++) {
        struct mistral_layer *l = &m->layers[i];
        if ((st = load_vec(lc, prefix, i, "input_layernorm.weight", hp->d_model, &l->attn_norm)) ||
            (st = load_vec(lc, prefix, i, "post_attention_layernorm.weight", hp->d_model,
                           &l->mlp_norm)))
            goto fail;
        if (from_wc) continue;
        if ((st = load_linear(lc, prefix, i, qkv, qkv_rows, 3, hp->d_model, 0, &l->qkv)) ||
            (st = load_linear(lc, prefix, i, o, o_rows, 1, d_q, 0, &l->o)) ||
            (st = load_linear(lc, prefix, i, gu, gu_rows, 2, hp->d_model, 0, &l->gate_up)) ||
            (st = load_linear(lc, prefix, i, dn, dn_rows, 1, hp->d_ff, 1, &l->down)))
            goto fail;
    }
    if (use_wc && !from_wc) {
        const struct cge_linear **ls = cge__malloc(sizeof *ls * 4 * (size_t)hp->n_layer);
        enum cge_status ws = ls ? CGE_OK : CGE_ERR_NOMEM;
        if (ls) {
            for (int i = 0; i < hp->n_layer; i++) {
                ls[4 * i] = &m->layers[i].qkv;
                ls[4 * i + 1] = &m->layers[i].o;
                ls[4 * i + 2] = &m->layers[i].gate_up;
                ls[4 * i + 3] = &m->layers[i].down;
            }
            ws = cge__wcache_write(wpath, key, ls, 4 * (int64_t)hp->n_layer);
            cge__free(ls);
        }
        if (ws != CGE_OK)
            cge__log(CGE_LOG_WARN, "model %s: converted weights not saved: %s", lc->dir, cge_errmsg());
        else
            cge__log(CGE_LOG_INFO, "model %s: converted weights saved to %s", lc->dir, wpath);
    }
    if ((st = load_vec(lc, prefix, -1, "norm.weight", hp->d_model, &m->norm))) goto fail;

    lc->hidden = hp->d_model;
    lc->max_positions = hp->max_pos;
    lc->modalities = CGE_MOD_TEXT | CGE_MOD_CODE;
    lc->default_pooling = CGE_POOL_LAST;
    /* A bare folder (no sentence-transformers modules) gives the last token's hidden state as
     * transformers does; e5-mistral-7b-instruct's own modules.json asks for Normalize. */
    lc->default_normalize = 0;
    lc->vocab_size = hp->n_vocab;
    lc->vocab_tensor = "embed_tokens.weight";
    int64_t pad, eos;
    if ((st = cge__cfg_int(lc, "eos_token_id", 0, 2, 0, hp->n_vocab - 1, &eos)) ||
        (st = cge__cfg_int(lc, "pad_token_id", 0, eos, 0, hp->n_vocab - 1, &pad)))
        goto fail;
    lc->pad_id = (int32_t)pad;
    *impl = m;
    return CGE_OK;
fail:
    mistral_free(m);
    return st;
}

/* ---- forward ------------------------------------------------------------------------------ */

static enum cge_status mistral_forward(const void *impl, const int32_t *ids, const int64_t *len,
                                       int64_t B, int64_t L, float *x) {
    const struct mistral *m = impl;
    const struct mistral_hparams *hp = &m->hp;
    const int64_t n = B * L, D = hp->d_model;
    const int64_t d_q = (int64_t)hp->n_head * hp->d_head, d_kv = (int64_t)hp->n_kv_head * hp->d_head;
    const int64_t d_qkv = d_q + 2 * d_kv;
    enum cge_status st = cge_embed_gather(m->tok_embd, m->tok_dtype, hp->n_vocab, D, ids, n, x);
    if (st) return st;

    /* Scratch: normed input, qkv, attention output, gate|up. */
    size_t n_scratch = (size_t)n * (size_t)(D + d_qkv + d_q + 2 * hp->d_ff);
    float *h = cge__malloc_aligned(n_scratch * sizeof(float));
    int32_t *pos = cge__malloc((size_t)n * sizeof(int32_t));
    if (!h || !pos) {
        cge__free_aligned(h);
        cge__free(pos);
        return cge__err(CGE_ERR_NOMEM, "mistral forward: %lld tokens", (long long)n);
    }
    float *qkv = h + n * D, *att = qkv + n * d_qkv, *gu = att + n * d_q;
    /* Positions 0..L-1 per row: with right padding the real tokens are unaffected. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < L; t++) pos[b * L + t] = (int32_t)t;

    /* transformers 4.40 masks key j for query i when i - j > sliding_window (window + 1
     * positions visible, the query included); cge_attention masks i - j >= window. */
    struct cge_attn a = {
        .n_batch = B, .n_seq = L, .n_head = hp->n_head, .n_kv_head = hp->n_kv_head,
        .d_head = hp->d_head, .scale = 1.0f / sqrtf((float)hp->d_head), .len = len,
        .bias = NULL, .causal = 1, .window = hp->window ? hp->window + 1 : 0,
    };
    for (int il = 0; il < hp->n_layer && !st; il++) {
        const struct mistral_layer *l = &m->layers[il];
        memcpy(h, x, (size_t)n * D * sizeof(float));
        cge_rmsnorm(h, n, D, l->attn_norm, hp->eps);
        if ((st = cge_linear_forward(&l->qkv, h, n, qkv))) break;
        cge_rope(qkv, n, d_qkv, hp->n_head, hp->d_head, pos, hp->rope_theta);
        cge_rope(qkv + d_q, n, d_qkv, hp->n_kv_head, hp->d_head, pos, hp->rope_theta);
        if ((st = cge_attention(&a, qkv, d_qkv, qkv + d_q, d_qkv, qkv + d_q + d_kv, d_qkv, att, d_q)))
            break;
        if ((st = cge_linear_forward(&l->o, att, n, h))) break;
        cge_add(x, h, n * D);

        memcpy(h, x, (size_t)n * D * sizeof(float));
        cge_rmsnorm(h, n, D, l->mlp_norm, hp->eps);
        if ((st = cge_linear_forward(&l->gate_up, h, n, gu))) break;
        /* gu rows are [gate (d_ff) | up (d_ff)]: act = silu(gate) * up, written over gate. */
        for (int64_t r = 0; r < n; r++) {
            float *g = gu + r * 2 * hp->d_ff;
            cge_silu(g, hp->d_ff);
            cge_mul(g, g + hp->d_ff, hp->d_ff);
        }
        /* down_proj reads rows with stride 2*d_ff: compact them first. */
        for (int64_t r = 1; r < n; r++)
            memmove(gu + r * hp->d_ff, gu + r * 2 * hp->d_ff, (size_t)hp->d_ff * sizeof(float));
        if ((st = cge_linear_forward(&l->down, gu, n, h))) break;
        cge_add(x, h, n * D);
    }
    if (!st) cge_rmsnorm(x, n, D, m->norm, hp->eps);
    cge__free_aligned(h);
    cge__free(pos);
    return st;
}

const struct cge_family cge__family_mistral = {
    .name = "mistral",
    .matches = mistral_matches,
    .load = mistral_load,
    .free = mistral_free,
    .forward_text = mistral_forward,
};
