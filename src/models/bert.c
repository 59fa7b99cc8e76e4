/*
 * bert.c: the BERT-style encoders: BERT (MiniLM, BGE, GTE, Contriever, DRAGON+), RoBERTa
 * (CodeBERT) and MPNet. One forward serves all three; they differ only in the embeddings
 * (absolute positions + token types / RoBERTa's padding-offset positions / MPNet without token
 * types) and in MPNet's relative position bias added to every layer's attention scores.
 *
 * Design: the layers are the shared post-norm encoder (encoder.c: fused Q/K/V, attention read
 * through leading dimensions, run through the model's backend); this file keeps what differs:
 * the three embedding schemes, MPNet's bucketed position bias and the pooler, on the host.
 * Every forward call allocates its own scratch, so one loaded model serves any number of
 * threads. Embedding tables stay in the memory-mapped checkpoint.
 */
#include "core/core.h"
#include "models/encoder.h"
#include "models/model.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ==== hyperparameters and weights =================================================================== */

enum bert_kind { KIND_BERT, KIND_ROBERTA, KIND_MPNET };

struct bert {
    enum bert_kind kind;
    int64_t d, n_layer, n_head, d_ff, vocab, n_pos, n_type;
    int32_t pad_id;  /* RoBERTa/MPNet: padding_idx of the position table */
    float eps;       /* layer_norm_eps */
    enum cge__act act;
    const struct cge_tensor_info *tok;  /* (vocab, d) embeddings.word_embeddings.weight, mmap'd */
    const struct cge_tensor_info *pos;  /* (n_pos, d) embeddings.position_embeddings.weight */
    float *type0;                       /* (n_type, d) embeddings.token_type_embeddings, or NULL */
    float *eln_w, *eln_b;               /* (d) embeddings.LayerNorm */
    float *rel;                         /* (n_buckets, n_head) encoder.relative_attention_bias (MPNet) */
    int n_buckets;
    struct cge_encoder enc;             /* encoder.layer.* (names below) */
    int has_pooler;
    struct cge_linear pooler;           /* (d, d) pooler.dense */
};

/* ==== load ========================================================================================= */

static void bert_free(void *impl) {
    struct bert *m = impl;
    if (!m) return;
    cge__encoder_free(&m->enc);
    cge__free(m->type0);
    cge__free(m->eln_w);
    cge__free(m->eln_b);
    cge__free(m->rel);
    if (m->has_pooler) cge_linear_deinit(&m->pooler);
    cge__free(m);
}

static const char *model_type(const cJSON *config) {
    return cge__cfg_str(config, "model_type");
}

static int match_bert(const cJSON *c) {
    const char *t = model_type(c);
    return t && !strcmp(t, "bert");
}
static int match_roberta(const cJSON *c) {
    const char *t = model_type(c);
    return t && (!strcmp(t, "roberta") || !strcmp(t, "xlm-roberta") || !strcmp(t, "camembert"));
}
static int match_mpnet(const cJSON *c) {
    const char *t = model_type(c);
    return t && !strcmp(t, "mpnet");
}

/* Real checkpoints sometimes carry the base-model prefix (BertForMaskedLM → "bert."). */
static const char *find_prefix(const struct cge_family_load *lc, enum bert_kind kind) {
    static const char *const pre[3][3] = {{"", "bert.", "model."},
                                          {"", "roberta.", "model."},
                                          {"", "mpnet.", "model."}};
    char name[256];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", pre[kind][i]);
        if (cge_weights_find(lc->w, name)) return pre[kind][i];
    }
    return "";
}

static enum cge_status bert_load_kind(struct cge_family_load *lc, void **impl, enum bert_kind kind) {
    enum cge_status st;
    struct bert *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "model %s: out of memory", lc->dir);
    m->kind = kind;
    int64_t v;
    double eps;
    const char *act;
    if ((st = cge__cfg_int(lc, "hidden_size", 1, 0, 1, 1 << 20, &m->d))) goto fail;
    if ((st = cge__cfg_int(lc, "num_hidden_layers", 1, 0, 1, 4096, &m->n_layer))) goto fail;
    if ((st = cge__cfg_int(lc, "num_attention_heads", 1, 0, 1, 4096, &m->n_head))) goto fail;
    if ((st = cge__cfg_int(lc, "intermediate_size", 1, 0, 1, 1 << 22, &m->d_ff))) goto fail;
    if ((st = cge__cfg_int(lc, "vocab_size", 1, 0, 1, 1 << 26, &m->vocab))) goto fail;
    if ((st = cge__cfg_int(lc, "max_position_embeddings", 0, 512, 1, 1 << 24, &m->n_pos))) goto fail;
    if ((st = cge__cfg_int(lc, "type_vocab_size", 0, kind == KIND_MPNET ? 0 : 2, 0, 1 << 16, &m->n_type)))
        goto fail;
    if ((st = cge__cfg_int(lc, "pad_token_id", 0, kind == KIND_BERT ? 0 : 1, 0, 1 << 26, &v))) goto fail;
    m->pad_id = (int32_t)v;
    if ((st = cge__cfg_float(lc, "layer_norm_eps", 0, 1e-12, &eps))) goto fail;
    m->eps = (float)eps;
    if (m->d % m->n_head) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: hidden_size %lld is not a multiple of num_attention_heads %lld", lc->dir, (long long)m->d, (long long)m->n_head);
        goto fail;
    }
    act = cge__cfg_str(lc->config, "hidden_act");
    m->act = CGE_ACT_GELU;
    if (act) {
        const unsigned ok = CGE__ACT_BIT(CGE_ACT_GELU) | CGE__ACT_BIT(CGE_ACT_GELU_TANH) |
                            CGE__ACT_BIT(CGE_ACT_RELU) | CGE__ACT_BIT(CGE_ACT_SILU);
        if (cge__act_parse(act, &m->act) || !(ok & CGE__ACT_BIT(m->act))) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: config.json: hidden_act '%s' is not supported", lc->dir, act);
            goto fail;
        }
    }
    if (kind == KIND_BERT) {
        const char *pet = cge__cfg_str(lc->config, "position_embedding_type");
        if (pet && strcmp(pet, "absolute")) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: position_embedding_type '%s' is not supported", lc->dir, pet);
            goto fail;
        }
    }
    if (kind != KIND_BERT && m->pad_id + 1 >= m->n_pos) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: pad_token_id %d leaves no positions in max_position_embeddings %lld", lc->dir, m->pad_id, (long long)m->n_pos);
        goto fail;
    }

    const char *pre = find_prefix(lc, kind);
    char name[256], n2[256];
    int64_t d = m->d;
    {
        int64_t sh[2] = {m->vocab, d};
        snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", pre);
        if ((st = cge__tensor(lc, name, 2, sh, &m->tok))) goto fail;
        int64_t shp[2] = {m->n_pos, d};
        snprintf(name, sizeof name, "%sembeddings.position_embeddings.weight", pre);
        if ((st = cge__tensor(lc, name, 2, shp, &m->pos))) goto fail;
        if (m->tok->dtype != CGE_DTYPE_F32 && m->tok->dtype != CGE_DTYPE_F16 && m->tok->dtype != CGE_DTYPE_BF16) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: tensor '%s': dtype %s (expected F32, F16 or BF16)", lc->dir, m->tok->name, cge_dtype_str(m->tok->dtype));
            goto fail;
        }
        if (m->pos->dtype != m->tok->dtype && m->pos->dtype != CGE_DTYPE_F32 && m->pos->dtype != CGE_DTYPE_F16 && m->pos->dtype != CGE_DTYPE_BF16) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: tensor '%s': dtype %s", lc->dir, m->pos->name, cge_dtype_str(m->pos->dtype));
            goto fail;
        }
        if (m->n_type > 0) {
            int64_t sht[2] = {m->n_type, d};
            snprintf(name, sizeof name, "%sembeddings.token_type_embeddings.weight", pre);
            if ((st = cge__tensor_f32(lc, name, 2, sht, &m->type0))) goto fail;
        }
        int64_t sd[1] = {d};
        snprintf(name, sizeof name, "%sembeddings.LayerNorm.weight", pre);
        if ((st = cge__tensor_f32(lc, name, 1, sd, &m->eln_w))) goto fail;
        snprintf(name, sizeof name, "%sembeddings.LayerNorm.bias", pre);
        if ((st = cge__tensor_f32(lc, name, 1, sd, &m->eln_b))) goto fail;
    }
    if (kind == KIND_MPNET) {
        int64_t nb;
        if ((st = cge__cfg_int(lc, "relative_attention_num_buckets", 0, 32, 2, 1 << 16, &nb))) goto fail;
        m->n_buckets = (int)nb;
        int64_t sh[2] = {nb, m->n_head};
        snprintf(name, sizeof name, "%sencoder.relative_attention_bias.weight", pre);
        if ((st = cge__tensor_f32(lc, name, 2, sh, &m->rel))) goto fail;
    }

    {
        /* BERT/RoBERTa and MPNet name the attention tensors differently. */
        static const struct cge_enc_names bert_names = {
            .q = "encoder.layer.{}.attention.self.query",
            .k = "encoder.layer.{}.attention.self.key",
            .v = "encoder.layer.{}.attention.self.value",
            .o = "encoder.layer.{}.attention.output.dense",
            .ff1 = "encoder.layer.{}.intermediate.dense",
            .ff2 = "encoder.layer.{}.output.dense",
            .ln1 = "encoder.layer.{}.attention.output.LayerNorm",
            .ln2 = "encoder.layer.{}.output.LayerNorm",
        };
        static const struct cge_enc_names mpnet_names = {
            .q = "encoder.layer.{}.attention.attn.q",
            .k = "encoder.layer.{}.attention.attn.k",
            .v = "encoder.layer.{}.attention.attn.v",
            .o = "encoder.layer.{}.attention.attn.o",
            .ff1 = "encoder.layer.{}.intermediate.dense",
            .ff2 = "encoder.layer.{}.output.dense",
            .ln1 = "encoder.layer.{}.attention.LayerNorm",
            .ln2 = "encoder.layer.{}.output.LayerNorm",
        };
        struct cge_enc_names nm = kind == KIND_MPNET ? mpnet_names : bert_names;
        nm.prefix = pre;
        struct cge_enc_params ep = {
            .n_layer = m->n_layer,
            .d = d,
            .n_head = m->n_head,
            .d_head = d / m->n_head,
            .d_ff = m->d_ff,
            .pre_norm = 0,
            .rms = 0,
            .eps = m->eps,
            .bias = 1,
            .scale = 1.0f / sqrtf((float)(d / m->n_head)),
        };
        if ((st = cge__act_to_be(m->act, &ep.act))) goto fail;
        if ((st = cge__encoder_load(lc, &ep, &nm, &m->enc))) goto fail;
    }
    snprintf(name, sizeof name, "%spooler.dense.weight", pre);
    if (cge_weights_find(lc->w, name)) {
        snprintf(n2, sizeof n2, "%spooler.dense.bias", pre);
        const char *pw[1] = {name}, *pb[1] = {n2};
        int64_t pd[1] = {d};
        if ((st = cge__linear_load(lc, &m->pooler, 1, pw, pb, pd, d))) goto fail;
        m->has_pooler = 1;
    }

    lc->hidden = d;
    /* RoBERTa/MPNet positions start at pad+1, so the table holds n_pos - pad - 1 tokens. */
    lc->max_positions = kind == KIND_BERT ? m->n_pos : m->n_pos - m->pad_id - 1;
    lc->pad_id = m->pad_id;
    lc->modalities = CGE_MOD_TEXT | CGE_MOD_CODE;
    lc->default_pooling = CGE_POOL_MEAN;
    lc->default_normalize = 0;
    lc->vocab_size = m->vocab;
    lc->vocab_tensor = m->tok->name;
    *impl = m;
    return CGE_OK;
fail:
    bert_free(m);
    return st;
}

static enum cge_status load_bert(struct cge_family_load *lc, void **impl) {
    return bert_load_kind(lc, impl, KIND_BERT);
}
static enum cge_status load_roberta(struct cge_family_load *lc, void **impl) {
    return bert_load_kind(lc, impl, KIND_ROBERTA);
}
static enum cge_status load_mpnet(struct cge_family_load *lc, void **impl) {
    return bert_load_kind(lc, impl, KIND_MPNET);
}

/* ==== forward ====================================================================================== */

enum cge_status cge__bert_forward(const void *impl, const int32_t *ids, const int32_t *types,
                                  const int64_t *len, int64_t B, int64_t L, float *x) {
    const struct bert *m = impl;
    const int64_t d = m->d, rows = B * L;
    if (B <= 0 || L <= 0) return cge__err(CGE_ERR_INVALID_VALUE, "bert forward: empty batch");
    int64_t max_pos = m->kind == KIND_BERT ? m->n_pos : m->n_pos - m->pad_id - 1;
    if (L > max_pos)
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "bert forward: %lld tokens, the model takes at most %lld", (long long)L, (long long)max_pos);
    if (types)
        for (int64_t i = 0; i < rows; i++)
            if (types[i] < 0 || types[i] >= (m->n_type > 0 ? m->n_type : 1))
                return cge__err(CGE_ERR_INVALID_VALUE, "bert forward: token type %d outside [0, %lld)", types[i], (long long)(m->n_type > 0 ? m->n_type : 1));

    /* Scratch: the position embeddings | MPNet's bias; the layers allocate their own. */
    const int64_t H = m->n_head;
    size_t n_ctx = (size_t)(rows * d);
    size_t n_bias = m->kind == KIND_MPNET ? (size_t)(H * L * L) : 0;
    size_t total = n_ctx + n_bias;
    float *scratch = cge__malloc_aligned(total * sizeof(float));
    int32_t *pos = cge__malloc((size_t)rows * sizeof *pos);
    if (!scratch || !pos) {
        cge__free_aligned(scratch);
        cge__free(pos);
        return cge__err(CGE_ERR_NOMEM, "bert forward: %zu floats of scratch", total);
    }
    float *ctx = scratch;
    float *bias = n_bias ? ctx + n_ctx : NULL;
    enum cge_status st;

    /* ---- embeddings ---- */
    if ((st = cge_embed_gather(m->tok->data, m->tok->dtype, m->vocab, d, ids, rows, x))) goto done;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = len ? len[b] : L;
        int32_t c = 0;
        for (int64_t t = 0; t < L; t++) {
            int32_t p;
            if (m->kind == KIND_BERT) {
                p = (int32_t)t;
            } else {
                /* HF create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + pad;
                 * padding beyond the real length gets the padding position. */
                int real = t < n && ids[b * L + t] != m->pad_id;
                c += real;
                p = real ? c + m->pad_id : m->pad_id;
            }
            pos[b * L + t] = p;
        }
    }
    if ((st = cge_embed_gather(m->pos->data, m->pos->dtype, m->n_pos, d, pos, rows, ctx))) goto done;
    cge_add(x, ctx, rows * d);
    if (m->type0) {
        if (types) {
            for (int64_t i = 0; i < rows; i++) cge_add(x + i * d, m->type0 + (int64_t)types[i] * d, d);
        } else {
            cge_add_row(x, rows, d, m->type0);
        }
    }
    cge_layernorm(x, rows, d, m->eln_w, m->eln_b, m->eps);

    /* MPNet: bucket of key − query (plain 0..L-1 positions), max_distance 128, one
     * (n_head, L, L) bias shared by the batch and by every layer. */
    if (bias && (st = cge__rel_bias(m->rel, m->n_buckets, 128, H, L, bias))) goto done;
    st = cge__encoder_forward(&m->enc, x, B, L, len, bias);
done:
    cge__free_aligned(scratch);
    cge__free(pos);
    return st;
}

static enum cge_status bert_forward_text(const void *impl, const int32_t *ids, const int64_t *len,
                                         int64_t B, int64_t L, float *hidden) {
    return cge__bert_forward(impl, ids, NULL, len, B, L, hidden);
}

enum cge_status cge__bert_pooler(const void *impl, const float *hidden, int64_t B, int64_t L,
                                 float *out) {
    const struct bert *m = impl;
    if (!m->has_pooler) return cge__err(CGE_ERR_UNSUPPORTED, "bert pooler: the checkpoint has no pooler.dense");
    float *cls = cge__malloc((size_t)(B * m->d) * sizeof *cls);
    if (!cls) return cge__err(CGE_ERR_NOMEM, "bert pooler");
    for (int64_t b = 0; b < B; b++) memcpy(cls + b * m->d, hidden + b * L * m->d, (size_t)m->d * sizeof *cls);
    enum cge_status st = cge_linear_forward(&m->pooler, cls, B, out);
    if (!st) cge_tanh_inplace(out, B * m->d);
    cge__free(cls);
    return st;
}

const struct cge_family cge__family_bert = {
    .name = "bert",
    .matches = match_bert,
    .load = load_bert,
    .free = bert_free,
    .forward_text = bert_forward_text,
};
const struct cge_family cge__family_roberta = {
    .name = "roberta",
    .matches = match_roberta,
    .load = load_roberta,
    .free = bert_free,
    .forward_text = bert_forward_text,
};
const struct cge_family cge__family_mpnet = {
    .name = "mpnet",
    .matches = match_mpnet,
    .load = load_mpnet,
    .free = bert_free,
    .forward_text = bert_forward_text,
};
