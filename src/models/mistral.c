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
 */
#include "core/core.h"
#include "models/model.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
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
    const void *tok_embd;    /* (n_vocab, d_model) embed_tokens.weight, in the mapped file */
    enum cge_dtype tok_dtype;
    const struct cge_weights *w; /* kept open by model.c for tok_embd's lifetime */
    struct mistral_layer *layers;
    float *norm;             /* (d_model) norm.weight */
};

static int mistral_matches(const cJSON *config) {
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(config, "model_type");
    return cJSON_IsString(mt) && !strcmp(mt->valuestring, "mistral");
}

static enum cge_status get_int(const cJSON *c, const char *key, int64_t def, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return cge__err(CGE_ERR_MODEL_LOAD, "config.json: missing '%s'", key);
        *out = def;
        return CGE_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 1e12)
        return cge__err(CGE_ERR_MODEL_LOAD, "config.json: '%s' must be a non-negative integer",
                        key);
    *out = (int64_t)v->valuedouble;
    return CGE_OK;
}

static enum cge_status get_float(const cJSON *c, const char *key, double def, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (!v || cJSON_IsNull(v)) {
        *out = (float)def;
        return CGE_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return cge__err(CGE_ERR_MODEL_LOAD, "config.json: '%s' must be a positive number", key);
    *out = (float)v->valuedouble;
    return CGE_OK;
}

static enum cge_status read_hparams(const cJSON *c, struct mistral_hparams *hp) {
    int64_t v;
    enum cge_status st;
    if ((st = get_int(c, "vocab_size", -1, &hp->n_vocab))) return st;
    if ((st = get_int(c, "hidden_size", -1, &hp->d_model))) return st;
    if ((st = get_int(c, "intermediate_size", -1, &hp->d_ff))) return st;
    if ((st = get_int(c, "num_hidden_layers", -1, &v))) return st;
    hp->n_layer = (int)v;
    if ((st = get_int(c, "num_attention_heads", -1, &v))) return st;
    hp->n_head = (int)v;
    if ((st = get_int(c, "num_key_value_heads", v, &v))) return st;
    hp->n_kv_head = (int)v;
    if ((st = get_int(c, "max_position_embeddings", 32768, &hp->max_pos))) return st;
    if ((st = get_int(c, "sliding_window", 0, &hp->window))) return st;
    if ((st = get_float(c, "rms_norm_eps", 1e-5, &hp->eps))) return st;
    if ((st = get_float(c, "rope_theta", 10000.0, &hp->rope_theta))) return st;
    if (hp->n_layer < 1 || hp->n_layer > 1024 || hp->n_head < 1 || hp->n_kv_head < 1 ||
        hp->n_head % hp->n_kv_head || hp->d_model % hp->n_head || hp->d_model < 1 ||
        hp->d_ff < 1 || hp->n_vocab < 1)
        return cge__err(CGE_ERR_MODEL_LOAD,
                        "config.json: inconsistent sizes (layers %d, hidden %lld, heads %d, "
                        "kv heads %d)",
                        hp->n_layer, (long long)hp->d_model, hp->n_head, hp->n_kv_head);
    hp->d_head = (int)(hp->d_model / hp->n_head);
    /* config.json may carry head_dim (later transformers); it must agree with 4.40's rule. */
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(c, "head_dim");
    if (cJSON_IsNumber(hd) && (int)hd->valuedouble != hp->d_head)
        return cge__err(CGE_ERR_MODEL_LOAD, "config.json: head_dim %d, expected hidden/heads = %d",
                        (int)hd->valuedouble, hp->d_head);
    if (hp->d_head % 2)
        return cge__err(CGE_ERR_MODEL_LOAD, "config.json: head dimension %d is odd", hp->d_head);
    return CGE_OK;
}

/* Finds a tensor by name (trying the "model." prefix of MistralForCausalLM checkpoints) and
 * checks its shape. */
static enum cge_status find(const struct cge_weights *w, const char *prefix, const char *name,
                            int64_t d0, int64_t d1, const struct cge_tensor_info **out) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const struct cge_tensor_info *t = cge_weights_find(w, full);
    if (!t) return cge__err(CGE_ERR_MODEL_LOAD, "%s: missing tensor '%s'", cge_weights_path(w), full);
    int n_dim = d1 ? 2 : 1;
    if (t->n_dim != n_dim || t->shape[0] != d0 || (d1 && t->shape[1] != d1))
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: tensor '%s': shape [%lld%s%lld], expected [%lld, %lld]",
                        cge_weights_path(w), full, (long long)t->shape[0], t->n_dim > 1 ? ", " : "",
                        t->n_dim > 1 ? (long long)t->shape[1] : 0LL, (long long)d0, (long long)d1);
    if (t->dtype != CGE_DTYPE_F32 && t->dtype != CGE_DTYPE_BF16 && t->dtype != CGE_DTYPE_F16)
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: tensor '%s': dtype %s, expected a float type",
                        cge_weights_path(w), full, cge_dtype_str(t->dtype));
    *out = t;
    return CGE_OK;
}

static enum cge_status get_vec(const struct cge_weights *w, const char *prefix, const char *name,
                               int64_t d, float **out) {
    const struct cge_tensor_info *t;
    enum cge_status st = find(w, prefix, name, d, 0, &t);
    if (st) return st;
    *out = cge__malloc((size_t)d * sizeof(float));
    if (!*out) return cge__err(CGE_ERR_NOMEM, "tensor '%s'", name);
    return cge_convert_to_f32(t->data, t->dtype, d, *out);
}

/* Builds one cge_linear from n_parts row blocks (e.g. q, k, v) stacked in order. All parts
 * are copied into one temporary in their own dtype (or fp32 if they differ). */
static enum cge_status fused_linear(const struct cge_weights *w, const char *prefix, int layer,
                                    const char *const *names, const int64_t *rows, int n_parts,
                                    int64_t n_in, enum cge_dtype dtype, struct cge_linear *out) {
    const struct cge_tensor_info *t[4];
    int64_t n_out = 0;
    enum cge_status st;
    for (int i = 0; i < n_parts; i++) {
        char name[128];
        snprintf(name, sizeof name, "layers.%d.%s.weight", layer, names[i]);
        if ((st = find(w, prefix, name, rows[i], n_in, &t[i]))) return st;
        n_out += rows[i];
    }
    if (n_parts == 1) return cge_linear_init(out, t[0]->data, t[0]->dtype, NULL, n_out, n_in, dtype);
    enum cge_dtype src = t[0]->dtype;
    for (int i = 1; i < n_parts; i++)
        if (t[i]->dtype != src) src = CGE_DTYPE_F32;
    size_t esz = cge_dtype_size(src);
    char *tmp = cge__malloc((size_t)n_out * (size_t)n_in * esz);
    if (!tmp) return cge__err(CGE_ERR_NOMEM, "layer %d: %lld x %lld weights", layer,
                              (long long)n_out, (long long)n_in);
    size_t off = 0;
    for (int i = 0; i < n_parts; i++) {
        size_t n = (size_t)rows[i] * (size_t)n_in;
        if (t[i]->dtype == src)
            memcpy(tmp + off * esz, t[i]->data, n * esz);
        else
            cge_convert_to_f32(t[i]->data, t[i]->dtype, (int64_t)n, (float *)tmp + off);
        off += n;
    }
    st = cge_linear_init(out, tmp, src, NULL, n_out, n_in, dtype);
    cge__free(tmp);
    return st;
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
    cge__free(m->norm);
    cge__free(m);
}

static enum cge_status mistral_load(struct cge_family_load *lc, void **impl) {
    *impl = NULL;
    struct mistral *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "mistral model");
    enum cge_status st = read_hparams(lc->config, &m->hp);
    if (st) goto fail;
    const struct mistral_hparams *hp = &m->hp;
    const struct cge_weights *w = lc->w;
    const char *prefix = cge_weights_find(w, "model.embed_tokens.weight") ? "model." : "";
    enum cge_dtype dtype = lc->p ? lc->p->dtype : CGE_DTYPE_F32;
    const struct cge_tensor_info *te;
    if ((st = find(w, prefix, "embed_tokens.weight", hp->n_vocab, hp->d_model, &te))) goto fail;
    m->tok_embd = te->data;
    m->tok_dtype = te->dtype;
    m->w = w;
    m->layers = cge__calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = cge__err(CGE_ERR_NOMEM, "mistral layers");
        goto fail;
    }
    const int64_t d_q = (int64_t)hp->n_head * hp->d_head, d_kv = (int64_t)hp->n_kv_head * hp->d_head;
    for (int i = 0; i < hp->n_layer; i++) {
        struct mistral_layer *l = &m->layers[i];
        char name[128];
        snprintf(name, sizeof name, "layers.%d.input_layernorm.weight", i);
        if ((st = get_vec(w, prefix, name, hp->d_model, &l->attn_norm))) goto fail;
        snprintf(name, sizeof name, "layers.%d.post_attention_layernorm.weight", i);
        if ((st = get_vec(w, prefix, name, hp->d_model, &l->mlp_norm))) goto fail;
        static const char *const qkv[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"};
        const int64_t qkv_rows[] = {d_q, d_kv, d_kv};
        if ((st = fused_linear(w, prefix, i, qkv, qkv_rows, 3, hp->d_model, dtype, &l->qkv))) goto fail;
        static const char *const o[] = {"self_attn.o_proj"};
        const int64_t o_rows[] = {hp->d_model};
        if ((st = fused_linear(w, prefix, i, o, o_rows, 1, d_q, dtype, &l->o))) goto fail;
        static const char *const gu[] = {"mlp.gate_proj", "mlp.up_proj"};
        const int64_t gu_rows[] = {hp->d_ff, hp->d_ff};
        if ((st = fused_linear(w, prefix, i, gu, gu_rows, 2, hp->d_model, dtype, &l->gate_up)))
            goto fail;
        static const char *const dn[] = {"mlp.down_proj"};
        const int64_t dn_rows[] = {hp->d_model};
        if ((st = fused_linear(w, prefix, i, dn, dn_rows, 1, hp->d_ff, dtype, &l->down))) goto fail;
    }
    if ((st = get_vec(w, prefix, "norm.weight", hp->d_model, &m->norm))) goto fail;

    lc->hidden = hp->d_model;
    lc->max_positions = hp->max_pos;
    lc->modalities = CGE_MOD_TEXT | CGE_MOD_CODE;
    lc->default_pooling = CGE_POOL_LAST;
    lc->default_normalize = 1;
    lc->vocab_size = hp->n_vocab;
    lc->vocab_tensor = "embed_tokens.weight";
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(lc->config, "pad_token_id");
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(lc->config, "eos_token_id");
    lc->pad_id = cJSON_IsNumber(pad) ? (int32_t)pad->valuedouble
                 : cJSON_IsNumber(eos) ? (int32_t)eos->valuedouble
                                       : 0;
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
