/*
 * clip.c: the CLIP family (slot E4, openai/clip-vit-large-patch14): the vision tower (image →
 * image_embeds) and the text tower (ids → hidden states → EOS row → text_embeds), so an image
 * and a text land in the same space. Checkpoints: CLIPModel (both towers), and
 * CLIPVisionModel[WithProjection] / CLIPTextModel[WithProjection] (one tower each), with
 * transformers' tensor names ("vision_model.*", "visual_projection.weight", "text_model.*",
 * "text_projection.weight").
 *
 * Design: both towers are the shared pre-norm encoder (encoder.c, run through the model's
 * backend): LN1 → fused QKV GEMM → attention read through leading dimensions → out_proj →
 * residual; LN2 → fc1 → quick_gelu → fc2 → residual. The vision tower adds the patch convolution (one
 * im2col GEMM), the class token, pre_layrnorm and post_layernorm; the text tower adds the token
 * and position tables, the causal mask and final_layer_norm. Image decoding and
 * CLIPImageProcessor live in src/media (byte-exact Pillow resize); this file only reads
 * preprocessor_config.json at load. The impl is read-only after load; every call allocates
 * its own scratch, so one model serves any number of threads.
 */
#include "models/clip.h"

#include "core/core.h"
#include "media/image.h"
#include "models/encoder.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ==== hyperparameters and weights ================================================================ */


struct clip_vision {
    struct cge_encoder enc; /* vision_model.encoder.layers.* */
    int64_t image_size, patch, channels, n_tok; /* n_tok = (image_size / patch)² + 1 */
    float *patch_w; /* (d, channels, patch, patch) vision_model.embeddings.patch_embedding.weight */
    float *cls;     /* (d) vision_model.embeddings.class_embedding */
    float *pos;     /* (n_tok, d) vision_model.embeddings.position_embedding.weight */
    float *pre_w, *pre_b;   /* (d) vision_model.pre_layrnorm (sic) */
    float *post_w, *post_b; /* (d) vision_model.post_layernorm */
    int has_proj;
    struct cge_linear proj;      /* (proj_dim, d) visual_projection.weight, no bias */
    struct cge_clip_preproc pre; /* preprocessor_config.json */
};

struct clip_text {
    struct cge_encoder enc; /* text_model.encoder.layers.* (causal) */
    int64_t vocab, n_pos;
    int32_t eos_id; /* config eos_token_id (default 49407); 2 = legacy: argmax rule */
    const struct cge_tensor_info
        *tok;             /* (vocab, d) text_model.embeddings.token_embedding.weight, mmap'd */
    float *pos;           /* (n_pos, d) text_model.embeddings.position_embedding.weight */
    float *fln_w, *fln_b; /* (d) text_model.final_layer_norm */
    int has_proj;
    struct cge_linear proj; /* (proj_dim, d) text_projection.weight, no bias */
};

struct clip {
    int has_text, has_vision;
    struct clip_text t;
    struct clip_vision v;
    int64_t proj_dim; /* projection_dim */
    int64_t out_dim;  /* width of pool_text / embed_image */
    const char *dir;  /* for error messages (owned copy) */
};

/* ==== load ========================================================================================= */

static void clip_free(void *impl) {
    struct clip *m = impl;
    if (!m) return;
    cge__encoder_free(&m->v.enc);
    cge__free(m->v.patch_w);
    cge__free(m->v.cls);
    cge__free(m->v.pos);
    cge__free(m->v.pre_w);
    cge__free(m->v.pre_b);
    cge__free(m->v.post_w);
    cge__free(m->v.post_b);
    cge_linear_deinit(&m->v.proj);
    cge__encoder_free(&m->t.enc);
    cge__free(m->t.pos);
    cge__free(m->t.fln_w);
    cge__free(m->t.fln_b);
    cge_linear_deinit(&m->t.proj);
    cge__free((void *)m->dir);
    cge__free(m);
}

static int str_is(const cJSON *o, const char *key, const char *val) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring && !strcmp(v->valuestring, val);
}

static int clip_matches(const cJSON *config) {
    if (str_is(config, "model_type", "clip") || str_is(config, "model_type", "clip_vision_model") ||
        str_is(config, "model_type", "clip_text_model"))
        return 1;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(config, "architectures");
    const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    if (!cJSON_IsString(a0) || !a0->valuestring) return 0;
    static const char *const names[] = {"CLIPModel", "CLIPVisionModelWithProjection",
                                        "CLIPTextModelWithProjection", "CLIPVisionModel",
                                        "CLIPTextModel"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(a0->valuestring, names[i])) return 1;
    return 0;
}

/* An integer field of a (sub)config; missing or null → def. */
static enum cge_status cfg_int(const char *dir, const char *where, const cJSON *o, const char *key,
                               int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return CGE_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return cge__err(CGE_ERR_MODEL_LOAD,
                        "model %s: config.json: %s'%s' must be an integer in [%lld, %lld]", dir,
                        where, key, (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return CGE_OK;
}

static enum cge_status cfg_float(const char *dir, const char *where, const cJSON *o,
                                 const char *key, double def, double *out) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return CGE_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: %s'%s' must be a number >= 0",
                        dir, where, key);
    *out = v->valuedouble;
    return CGE_OK;
}

/* A tensor as a fresh fp32 copy, with an error that names the model folder. */
static enum cge_status get_f32(const struct cge_family_load *lc, const char *name, int n_dim,
                               const int64_t *shape, float **out) {
    enum cge_status st = cge_weights_get_f32(lc->w, name, n_dim, shape, out);
    if (st != CGE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        return cge__err(st == CGE_ERR_NOMEM ? st : CGE_ERR_MODEL_LOAD, "model %s: %s", lc->dir,
                        msg);
    }
    return CGE_OK;
}

static enum cge_dtype store_dtype(const struct cge_family_load *lc) {
    return lc->p ? lc->p->dtype : CGE_DTYPE_F32;
}

/* A linear layer from n_parts stacked (part_out, n_in) matrices "<pre><w[i]>.weight" with biases
 * "<pre><w[i]>.bias" (when with_bias). */
static enum cge_status load_linear(const struct cge_family_load *lc, struct cge_linear *l,
                                   const char *pre, int n_parts, const char *const *parts,
                                   int64_t part_out, int64_t n_in, int with_bias) {
    enum cge_status st = CGE_OK;
    const int64_t n_out = part_out * n_parts;
    float *w = cge__malloc_aligned((size_t)(n_out * n_in) * sizeof(float));
    float *b = with_bias ? cge__malloc((size_t)n_out * sizeof(float)) : NULL;
    if (!w || (with_bias && !b)) {
        st = cge__err(CGE_ERR_NOMEM, "model %s: linear %s (%lld x %lld)", lc->dir, pre,
                      (long long)n_out, (long long)n_in);
        goto done;
    }
    for (int i = 0; i < n_parts; i++) {
        char name[256];
        float *t = NULL;
        int64_t sw[2] = {part_out, n_in};
        snprintf(name, sizeof name, "%s%s.weight", pre, parts[i]);
        if ((st = get_f32(lc, name, 2, sw, &t)) != CGE_OK) goto done;
        memcpy(w + (int64_t)i * part_out * n_in, t, (size_t)(part_out * n_in) * sizeof(float));
        cge__free(t);
        if (with_bias) {
            int64_t sb[1] = {part_out};
            snprintf(name, sizeof name, "%s%s.bias", pre, parts[i]);
            if ((st = get_f32(lc, name, 1, sb, &t)) != CGE_OK) goto done;
            memcpy(b + (int64_t)i * part_out, t, (size_t)part_out * sizeof(float));
            cge__free(t);
        }
    }
    st = cge_linear_init(l, w, CGE_DTYPE_F32, b, n_out, n_in, store_dtype(lc));
    if (st != CGE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        st = cge__err(st, "model %s: linear %s: %s", lc->dir, pre, msg);
    }
done:
    cge__free_aligned(w);
    cge__free(b);
    return st;
}

/* The hyperparameters of one tower from its (sub)config, with transformers' defaults. */
static enum cge_status encoder_hparams(const struct cge_family_load *lc, const cJSON *cfg,
                                       const char *where, int vision, struct cge_enc_params *e) {
    enum cge_status st;
    double eps = 1e-5;
    if ((st = cfg_int(lc->dir, where, cfg, "hidden_size", vision ? 768 : 512, 1, 1 << 16, &e->d)) ||
        (st = cfg_int(lc->dir, where, cfg, "num_hidden_layers", 12, 1, 1024, &e->n_layer)) ||
        (st = cfg_int(lc->dir, where, cfg, "num_attention_heads", vision ? 12 : 8, 1, 1024,
                      &e->n_head)) ||
        (st = cfg_int(lc->dir, where, cfg, "intermediate_size", vision ? 3072 : 2048, 1, 1 << 20,
                      &e->d_ff)) ||
        (st = cfg_float(lc->dir, where, cfg, "layer_norm_eps", 1e-5, &eps)))
        return st;
    e->eps = (float)eps;
    if (e->d % e->n_head)
        return cge__err(CGE_ERR_MODEL_LOAD,
                        "model %s: config.json: %shidden_size %lld is not a multiple of "
                        "num_attention_heads %lld",
                        lc->dir, where, (long long)e->d, (long long)e->n_head);
    e->d_head = e->d / e->n_head;
    e->scale = 1.0f / sqrtf((float)e->d_head);
    e->pre_norm = 1;
    e->bias = 1;
    e->causal = !vision; /* the text tower */
    const cJSON *act = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "hidden_act") : NULL;
    enum cge__act a = CGE_ACT_QUICK_GELU;
    if (act && !cJSON_IsNull(act)) {
        const char *an = cJSON_IsString(act) ? act->valuestring : "";
        const unsigned ok = CGE__ACT_BIT(CGE_ACT_QUICK_GELU) | CGE__ACT_BIT(CGE_ACT_GELU) |
                            CGE__ACT_BIT(CGE_ACT_GELU_TANH);
        if (cge__act_parse(an, &a) || !(ok & CGE__ACT_BIT(a)))
            return cge__err(CGE_ERR_UNSUPPORTED,
                            "model %s: config.json: %shidden_act '%s' is not supported", lc->dir,
                            where, an);
    }
    return cge__act_to_be(a, &e->act);
}

/* The tower's layers, with the hyperparameters already in e->p. */
static enum cge_status encoder_load(const struct cge_family_load *lc, const char *tower,
                                    struct cge_encoder *e) {
    const struct cge_enc_params p = e->p;
    const struct cge_enc_names nm = {
        .prefix = tower,
        .q = "encoder.layers.{}.self_attn.q_proj",
        .k = "encoder.layers.{}.self_attn.k_proj",
        .v = "encoder.layers.{}.self_attn.v_proj",
        .o = "encoder.layers.{}.self_attn.out_proj",
        .ff1 = "encoder.layers.{}.mlp.fc1",
        .ff2 = "encoder.layers.{}.mlp.fc2",
        .ln1 = "encoder.layers.{}.layer_norm1",
        .ln2 = "encoder.layers.{}.layer_norm2",
    };
    return cge__encoder_load(lc, &p, &nm, e);
}

static enum cge_status vision_load(const struct cge_family_load *lc, const cJSON *cfg,
                                   const char *where, struct clip *m) {
    struct clip_vision *v = &m->v;
    enum cge_status st;
    if ((st = encoder_hparams(lc, cfg, where, 1, &v->enc.p))) return st;
    if ((st = cfg_int(lc->dir, where, cfg, "image_size", 224, 1, 1 << 14, &v->image_size)) ||
        (st = cfg_int(lc->dir, where, cfg, "patch_size", 32, 1, 1 << 14, &v->patch)) ||
        (st = cfg_int(lc->dir, where, cfg, "num_channels", 3, 3, 3, &v->channels)))
        return st;
    if (v->image_size < v->patch)
        return cge__err(CGE_ERR_MODEL_LOAD,
                        "model %s: config.json: image_size %lld < patch_size %lld", lc->dir,
                        (long long)v->image_size, (long long)v->patch);
    const int64_t g = v->image_size / v->patch, d = v->enc.p.d;
    v->n_tok = g * g + 1;
    int64_t sp[4] = {d, v->channels, v->patch, v->patch}, sd[1] = {d}, spos[2] = {v->n_tok, d};
    if ((st = get_f32(lc, "vision_model.embeddings.patch_embedding.weight", 4, sp, &v->patch_w)) ||
        (st = get_f32(lc, "vision_model.embeddings.class_embedding", 1, sd, &v->cls)) ||
        (st = get_f32(lc, "vision_model.embeddings.position_embedding.weight", 2, spos, &v->pos)) ||
        (st = get_f32(lc, "vision_model.pre_layrnorm.weight", 1, sd, &v->pre_w)) ||
        (st = get_f32(lc, "vision_model.pre_layrnorm.bias", 1, sd, &v->pre_b)) ||
        (st = get_f32(lc, "vision_model.post_layernorm.weight", 1, sd, &v->post_w)) ||
        (st = get_f32(lc, "vision_model.post_layernorm.bias", 1, sd, &v->post_b)))
        return st;
    if ((st = encoder_load(lc, "vision_model.", &v->enc))) return st;
    if (cge_weights_find(lc->w, "visual_projection.weight")) {
        static const char *const vp[1] = {"visual_projection"};
        if ((st = load_linear(lc, &v->proj, "", 1, vp, m->proj_dim, d, 0))) return st;
        v->has_proj = 1;
    }
    /* CLIPImageProcessor settings: preprocessor_config.json, else the openai defaults. */
    char path[4096];
    if ((st = cge__path_join(path, sizeof path, lc->dir ? lc->dir : ".",
                             "preprocessor_config.json")))
        return st;
    if (lc->dir && cge__file_exists(path)) {
        if ((st = cge_clip_preproc_load(path, v->image_size, &v->pre))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", cge_errmsg());
            return cge__err(st == CGE_ERR_UNSUPPORTED ? st : CGE_ERR_MODEL_LOAD, "model %s: %s",
                            lc->dir, msg);
        }
    } else {
        v->pre = cge_clip_preproc_default(v->image_size);
    }
    /* The position table fixes the input size: pixel_values must be image_size². */
    int64_t ow, oh;
    cge_clip_output_dims(&v->pre, 1000, 1000, &ow, &oh);
    if (!v->pre.do_center_crop && v->pre.shortest_edge > 0)
        ow = oh = v->image_size; /* checked per image: only square inputs would fit */
    if (ow != v->image_size || oh != v->image_size)
        return cge__err(CGE_ERR_MODEL_LOAD,
                        "model %s: preprocessor_config.json gives %lld x %lld pixel values, the "
                        "vision tower takes %lld x %lld",
                        lc->dir, (long long)ow, (long long)oh, (long long)v->image_size,
                        (long long)v->image_size);
    return CGE_OK;
}

static enum cge_status text_load(const struct cge_family_load *lc, const cJSON *cfg,
                                 const char *where, struct clip *m) {
    struct clip_text *t = &m->t;
    enum cge_status st;
    int64_t eos = 49407; /* CLIPTextConfig's default; saved legacy configs say 2 */
    if ((st = encoder_hparams(lc, cfg, where, 0, &t->enc.p))) return st;
    if ((st = cfg_int(lc->dir, where, cfg, "vocab_size", 49408, 1, 1 << 26, &t->vocab)) ||
        (st = cfg_int(lc->dir, where, cfg, "max_position_embeddings", 77, 1, 1 << 20, &t->n_pos)) ||
        (st = cfg_int(lc->dir, where, cfg, "eos_token_id", 49407, 0, (int64_t)1 << 30, &eos)))
        return st;
    t->eos_id = (int32_t)eos;
    const int64_t d = t->enc.p.d, sd[1] = {d}, spos[2] = {t->n_pos, d};
    const char *tok = "text_model.embeddings.token_embedding.weight";
    t->tok = cge_weights_find(lc->w, tok);
    if (!t->tok || t->tok->n_dim != 2 || t->tok->shape[0] != t->vocab || t->tok->shape[1] != d)
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: tensor '%s': %s, expected [%lld, %lld]",
                        lc->dir, tok, t->tok ? "wrong shape" : "missing", (long long)t->vocab,
                        (long long)d);
    if (t->tok->dtype != CGE_DTYPE_F32 && t->tok->dtype != CGE_DTYPE_F16 &&
        t->tok->dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "model %s: tensor '%s': dtype %s (expected F32, F16 or BF16)", lc->dir, tok,
                        cge_dtype_str(t->tok->dtype));
    if ((st = get_f32(lc, "text_model.embeddings.position_embedding.weight", 2, spos, &t->pos)) ||
        (st = get_f32(lc, "text_model.final_layer_norm.weight", 1, sd, &t->fln_w)) ||
        (st = get_f32(lc, "text_model.final_layer_norm.bias", 1, sd, &t->fln_b)))
        return st;
    if ((st = encoder_load(lc, "text_model.", &t->enc))) return st;
    if (cge_weights_find(lc->w, "text_projection.weight")) {
        static const char *const tp[1] = {"text_projection"};
        if ((st = load_linear(lc, &t->proj, "", 1, tp, m->proj_dim, d, 0))) return st;
        t->has_proj = 1;
    }
    return CGE_OK;
}

static enum cge_status clip_load(struct cge_family_load *lc, void **impl) {
    *impl = NULL;
    struct clip *m = cge__calloc(1, sizeof(*m));
    if (!m) return cge__err(CGE_ERR_NOMEM, "model %s: out of memory", lc->dir);
    enum cge_status st;
    m->dir = cge__strdup(lc->dir ? lc->dir : "(memory)");
    if (!m->dir) {
        st = cge__err(CGE_ERR_NOMEM, "model %s: out of memory", lc->dir);
        goto fail;
    }
    const cJSON *cfg = lc->config;
    /* CLIPModel nests the towers' configs; the one-tower classes are flat. */
    const cJSON *vcfg = cfg, *tcfg = cfg;
    const char *vwhere = "", *twhere = "";
    if (str_is(cfg, "model_type", "clip")) {
        vcfg = cJSON_GetObjectItemCaseSensitive(cfg, "vision_config");
        tcfg = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
        if (!cJSON_IsObject(vcfg)) vcfg = NULL; /* transformers' defaults */
        if (!cJSON_IsObject(tcfg)) tcfg = NULL;
        vwhere = "vision_config.";
        twhere = "text_config.";
    }
    if ((st = cfg_int(lc->dir, "", cfg, "projection_dim", 512, 1, 1 << 16, &m->proj_dim)))
        goto fail;
    m->has_vision = cge_weights_find(lc->w, "vision_model.embeddings.class_embedding") != NULL;
    m->has_text = cge_weights_find(lc->w, "text_model.embeddings.token_embedding.weight") != NULL;
    if (!m->has_vision && !m->has_text) {
        st = cge__err(CGE_ERR_MODEL_LOAD,
                      "model %s: no CLIP tower in the weights (neither "
                      "'vision_model.embeddings.class_embedding' nor "
                      "'text_model.embeddings.token_embedding.weight')",
                      lc->dir);
        goto fail;
    }
    if (m->has_vision && (st = vision_load(lc, vcfg, vwhere, m))) goto fail;
    if (m->has_text && (st = text_load(lc, tcfg, twhere, m))) goto fail;
    /* The two towers' embeddings share one width: projection_dim when projected. */
    if (m->has_vision && m->has_text && m->v.has_proj != m->t.has_proj) {
        st = cge__err(CGE_ERR_MODEL_LOAD,
                      "model %s: only one of visual_projection and text_projection is present",
                      lc->dir);
        goto fail;
    }
    if (m->has_vision && m->has_text && !m->v.has_proj && m->v.enc.p.d != m->t.enc.p.d) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: unprojected towers of widths %lld and %lld",
                      lc->dir, (long long)m->v.enc.p.d, (long long)m->t.enc.p.d);
        goto fail;
    }
    if ((m->has_vision && m->v.has_proj) || (m->has_text && m->t.has_proj))
        m->out_dim = m->proj_dim;
    else
        m->out_dim = m->has_vision ? m->v.enc.p.d : m->t.enc.p.d;

    lc->hidden = m->has_text ? m->t.enc.p.d : m->v.enc.p.d;
    lc->max_positions = m->has_text ? m->t.n_pos : 0;
    lc->pad_id = -1;
    if (m->has_text) {
        int64_t pad;
        if ((st = cfg_int(lc->dir, twhere, tcfg, "pad_token_id", 1, 0, (int64_t)1 << 30, &pad)))
            goto fail;
        /* Padding sits behind the causal mask and after the EOS row: any valid id will do. */
        lc->pad_id = pad < m->t.vocab ? (int32_t)pad : 0;
        lc->vocab_size = m->t.vocab;
        lc->vocab_tensor = m->t.tok->name;
    }
    lc->modalities = (m->has_text ? (unsigned)(CGE_MOD_TEXT | CGE_MOD_CODE) : 0u) |
                     (m->has_vision ? (unsigned)CGE_MOD_IMAGE : 0u);
    lc->default_pooling = CGE_POOL_PROJECTION;
    lc->default_normalize = 1;
    *impl = m;
    return CGE_OK;
fail:
    clip_free(m);
    return st;
}

/* ==== forward ====================================================================================== */

/* ---- vision -------------------------------------------------------------------------------------- */

enum cge_status cge__clip_vision_forward(const void *impl, const float *pixels, int64_t n,
                                         float *last_hidden, float *pooled, float *embeds) {
    const struct clip *m = impl;
    if (!m || !pixels || n <= 0)
        return cge__err(CGE_ERR_INVALID_VALUE, "clip vision: bad arguments");
    if (!m->has_vision)
        return cge__err(CGE_ERR_UNSUPPORTED_MODALITY, "model %s: no vision tower", m->dir);
    const struct clip_vision *v = &m->v;
    const int64_t d = v->enc.p.d, T = v->n_tok, S = v->image_size;
    float *x = cge__malloc_aligned((size_t)(n * T * d) * sizeof(float));
    float *cls = cge__malloc((size_t)(n * d) * sizeof(float));
    enum cge_status st = CGE_OK;
    if (!x || !cls) {
        st = cge__err(CGE_ERR_NOMEM, "model %s: vision activations for %lld images", m->dir,
                      (long long)n);
        goto done;
    }
    for (int64_t b = 0; b < n; b++) {
        float *xb = x + b * T * d;
        /* rows 1..T-1: the patches; row 0: the class token */
        st = cge_patch_conv(pixels + b * v->channels * S * S, v->channels, S, S, v->patch_w, d,
                            v->patch, xb + d);
        if (st) goto done;
        memcpy(xb, v->cls, (size_t)d * sizeof(float));
        cge_add(xb, v->pos, T * d);
    }
    cge_layernorm(x, n * T, d, v->pre_w, v->pre_b, v->enc.p.eps);
    if ((st = cge__encoder_forward(&v->enc, x, n, T, NULL, NULL))) goto done;
    if (last_hidden) memcpy(last_hidden, x, (size_t)(n * T * d) * sizeof(float));
    for (int64_t b = 0; b < n; b++)
        memcpy(cls + b * d, x + b * T * d, (size_t)d * sizeof(float));
    cge_layernorm(cls, n, d, v->post_w, v->post_b, v->enc.p.eps);
    if (pooled) memcpy(pooled, cls, (size_t)(n * d) * sizeof(float));
    if (embeds) {
        if (v->has_proj)
            st = cge_linear_forward(&v->proj, cls, n, embeds);
        else
            memcpy(embeds, cls, (size_t)(n * d) * sizeof(float));
    }
done:
    cge__free_aligned(x);
    cge__free(cls);
    return st;
}

int64_t cge__clip_image_size(const void *impl) {
    const struct clip *m = impl;
    return m && m->has_vision ? m->v.image_size : 0;
}

int64_t cge__clip_vision_hidden(const void *impl) {
    const struct clip *m = impl;
    return m && m->has_vision ? m->v.enc.p.d : 0;
}

static enum cge_status clip_embed_image(const void *impl, struct cge__media *src, float *out) {
    const struct clip *m = impl;
    if (!m->has_vision)
        return cge__err(CGE_ERR_UNSUPPORTED_MODALITY, "model %s: no vision tower", m->dir);
    struct cge_image img;
    char label[64];
    const char *path = cge__media_label(src, label, sizeof label);
    enum cge_status st =
        src->path ? cge_image_load(src->path, CGE_IMAGE_MAX_PIXELS_DEFAULT, &img)
                  : cge_image_decode(src->data, src->len, CGE_IMAGE_MAX_PIXELS_DEFAULT, &img);
    if (st) {
        if (!src->path) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", cge_errmsg());
            cge__err(st, "%s: %s", path, msg);
        }
        return st;
    }
    src->n_frames = 1;
    const int64_t S = m->v.image_size;
    int64_t ow, oh;
    cge_clip_output_dims(&m->v.pre, img.w, img.h, &ow, &oh);
    float *px = NULL;
    if (ow != S || oh != S) {
        st = cge__err(CGE_ERR_INVALID_DIM,
                      "%s: preprocessing gives %lld x %lld pixel values, the "
                      "vision tower of %s takes %lld x %lld",
                      path, (long long)ow, (long long)oh, m->dir, (long long)S, (long long)S);
        goto done;
    }
    px = cge__malloc((size_t)(3 * S * S) * sizeof(float));
    if (!px) {
        st = cge__err(CGE_ERR_NOMEM, "%s: pixel values", path);
        goto done;
    }
    if ((st = cge_clip_preprocess(&img, &m->v.pre, px))) goto done;
    st = cge__clip_vision_forward(m, px, 1, NULL, NULL, out);
done:
    cge__free(px);
    cge_image_deinit(&img);
    return st;
}

/* ---- text ----------------------------------------------------------------------------------------- */

static enum cge_status clip_forward_text(const void *impl, const int32_t *ids, const int64_t *len,
                                         int64_t B, int64_t L, float *hidden) {
    const struct clip *m = impl;
    if (!m->has_text)
        return cge__err(CGE_ERR_UNSUPPORTED_MODALITY, "model %s: no text tower", m->dir);
    const struct clip_text *t = &m->t;
    if (B <= 0 || L <= 0 || !ids || !hidden)
        return cge__err(CGE_ERR_INVALID_VALUE, "model %s: text batch of %lld x %lld", m->dir,
                        (long long)B, (long long)L);
    if (L > t->n_pos)
        return cge__err(CGE_ERR_INPUT_TOO_LONG,
                        "model %s: %lld tokens, the text tower takes at most %lld", m->dir,
                        (long long)L, (long long)t->n_pos);
    const int64_t d = t->enc.p.d;
    enum cge_status st =
        cge_embed_gather(t->tok->data, t->tok->dtype, t->vocab, d, ids, B * L, hidden);
    if (st) return st;
    for (int64_t b = 0; b < B; b++)
        cge_add(hidden + b * L * d, t->pos, L * d);
    if ((st = cge__encoder_forward(&t->enc, hidden, B, L, len, NULL))) return st;
    cge_layernorm(hidden, B * L, d, t->fln_w, t->fln_b, t->enc.p.eps);
    return CGE_OK;
}

/* transformers 4.40 CLIPTextTransformer: with the legacy eos_token_id 2 the EOS row is
 * argmax(input_ids) (first occurrence of the largest id); otherwise the first position holding
 * eos_token_id (0 when there is none, as argmax of an all-zero mask gives). Only the real
 * tokens [0, len) are searched: the padding added for batching is not part of the input. */
static int64_t eos_position(const struct clip_text *t, const int32_t *ids, int64_t n) {
    int64_t p = 0;
    if (t->eos_id == 2) {
        for (int64_t i = 1; i < n; i++)
            if (ids[i] > ids[p]) p = i;
        return p;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] == t->eos_id) return i;
    return 0;
}

static enum cge_status clip_pool_text(const void *impl, const float *hidden, const int32_t *ids,
                                      const int64_t *len, int64_t B, int64_t L, float *out) {
    const struct clip *m = impl;
    if (!m->has_text)
        return cge__err(CGE_ERR_UNSUPPORTED_MODALITY, "model %s: no text tower", m->dir);
    const struct clip_text *t = &m->t;
    const int64_t d = t->enc.p.d;
    float *rows = cge__malloc((size_t)(B * d) * sizeof(float));
    if (!rows) return cge__err(CGE_ERR_NOMEM, "model %s: pooled rows", m->dir);
    for (int64_t b = 0; b < B; b++) {
        int64_t n = len ? len[b] : L;
        if (n > L) n = L;
        int64_t p = n > 0 ? eos_position(t, ids + b * L, n) : 0;
        memcpy(rows + b * d, hidden + (b * L + p) * d, (size_t)d * sizeof(float));
    }
    enum cge_status st = CGE_OK;
    if (t->has_proj)
        st = cge_linear_forward(&t->proj, rows, B, out);
    else
        memcpy(out, rows, (size_t)(B * d) * sizeof(float));
    cge__free(rows);
    return st;
}

static int64_t clip_out_dim(const void *impl) {
    const struct clip *m = impl;
    return m->out_dim;
}

const struct cge_family cge__family_clip = {
    .name = "clip",
    .matches = clip_matches,
    .load = clip_load,
    .free = clip_free,
    .forward_text = clip_forward_text,
    .pool_text = clip_pool_text,
    .embed_image = clip_embed_image,
    .embed_audio = NULL,
    .out_dim = clip_out_dim,
};
