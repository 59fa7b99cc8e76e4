/*
 * t5.c: the T5 encoder (Sentence-T5, INSTRUCTOR): token embeddings from `shared` (no scaling, no
 * absolute positions), pre-norm blocks with RMSNorm (no mean, no bias), attention without the
 * 1/sqrt(d_kv) scale plus a bucketed relative position bias computed from block 0's table and
 * reused by every block, a ReLU or gated-GELU (tanh) feed-forward, and a final RMSNorm.
 *
 * Design: the blocks are the shared pre-norm encoder (encoder.c) with RMSNorm, no biases,
 * scale 1 and, when gated, wi_0/wi_1 fused into one linear of width 2·d_ff; the inner width
 * n_heads·d_kv may differ from d_model. This file keeps the token table, the position bias and
 * the final norm. Each forward allocates its own scratch, so a loaded model serves any number
 * of threads.
 */
#include "core/core.h"
#include "models/encoder.h"
#include "models/model.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* ==== hyperparameters and weights =================================================================== */

struct t5 {
    int64_t d, d_kv, n_head, inner, d_ff, n_layer, vocab;
    int n_buckets, max_distance;
    float eps;
    int gated;                          /* 1: gelu_new(wi_0 x) * (wi_1 x) */
    int act_gelu;                       /* non-gated: 1 = gelu_new, 0 = relu */
    const struct cge_tensor_info *tok;  /* (vocab, d) shared.weight | encoder.embed_tokens.weight */
    float *rel;                         /* (n_buckets, n_head) block.0 relative_attention_bias */
    struct cge_encoder enc;             /* encoder.block.* */
    float *final_ln;                    /* (d) encoder.final_layer_norm */
};

/* ==== load ========================================================================================= */

static void t5_free(void *impl) {
    struct t5 *m = impl;
    if (!m) return;
    cge__encoder_free(&m->enc);
    cge__free(m->rel);
    cge__free(m->final_ln);
    cge__free(m);
}

static int match_t5(const cJSON *c) {
    const char *t = cge__cfg_str(c, "model_type");
    return t && (!strcmp(t, "t5") || !strcmp(t, "mt5"));
}

static enum cge_status t5_load(struct cge_family_load *lc, void **impl) {
    enum cge_status st;
    struct t5 *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "model %s: out of memory", lc->dir);
    int64_t v;
    double eps;
    const char *ffp, *act, *pre = "";
    char name[256];
    if ((st = cge__cfg_int(lc, "d_model", 1, 0, 1, 1 << 20, &m->d))) goto fail;
    if ((st = cge__cfg_int(lc, "d_kv", 1, 0, 1, 1 << 16, &m->d_kv))) goto fail;
    if ((st = cge__cfg_int(lc, "num_heads", 1, 0, 1, 4096, &m->n_head))) goto fail;
    if ((st = cge__cfg_int(lc, "d_ff", 1, 0, 1, 1 << 22, &m->d_ff))) goto fail;
    if ((st = cge__cfg_int(lc, "num_layers", 1, 0, 1, 4096, &m->n_layer))) goto fail;
    if ((st = cge__cfg_int(lc, "vocab_size", 1, 0, 1, 1 << 26, &m->vocab))) goto fail;
    if ((st = cge__cfg_int(lc, "relative_attention_num_buckets", 0, 32, 2, 1 << 16, &v))) goto fail;
    m->n_buckets = (int)v;
    if ((st = cge__cfg_int(lc, "relative_attention_max_distance", 0, 128, 1, 1 << 24, &v))) goto fail;
    m->max_distance = (int)v;
    if ((st = cge__cfg_float(lc, "layer_norm_epsilon", 0, 1e-6, &eps))) goto fail;
    m->eps = (float)eps;
    m->inner = m->n_head * m->d_kv;

    /* feed_forward_proj: "relu", "gated-gelu" (T5 v1.1 → gelu_new), or "{gated-}ACT". */
    ffp = cge__cfg_str(lc->config, "feed_forward_proj");
    act = ffp ? ffp : "relu";
    if (!strncmp(act, "gated-", 6)) {
        m->gated = 1;
        act += 6;
    }
    if (!strcmp(act, "relu")) {
        m->act_gelu = 0;
    } else if (!strcmp(act, "gelu") || !strcmp(act, "gelu_new")) {
        /* T5Config maps gated-gelu to gelu_new; plain "gelu" is erf GELU in HF, which no
         * encoder we serve uses, so only the gated form is accepted with it. */
        if (!m->gated && !strcmp(act, "gelu")) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: feed_forward_proj '%s' is not supported", lc->dir, ffp);
            goto fail;
        }
        m->act_gelu = 1;
    } else {
        st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: feed_forward_proj '%s' is not supported", lc->dir, ffp);
        goto fail;
    }

    {
        int64_t sh[2] = {m->vocab, m->d};
        /* save_pretrained keeps only the tied `shared.weight`; some exports keep the other. */
        const char *cand[] = {"shared.weight", "encoder.embed_tokens.weight"};
        for (int i = 0; i < 2 && !m->tok; i++)
            if (cge_weights_find(lc->w, cand[i])) {
                if ((st = cge__tensor(lc, cand[i], 2, sh, &m->tok))) goto fail;
            }
        if (!m->tok) {
            st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: tensor 'shared.weight' (or 'encoder.embed_tokens.weight') [%lld, %lld] missing from %s", lc->dir, (long long)m->vocab, (long long)m->d, cge_weights_path(lc->w));
            goto fail;
        }
        if (m->tok->dtype != CGE_DTYPE_F32 && m->tok->dtype != CGE_DTYPE_F16 && m->tok->dtype != CGE_DTYPE_BF16) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: tensor '%s': dtype %s (expected F32, F16 or BF16)", lc->dir, m->tok->name, cge_dtype_str(m->tok->dtype));
            goto fail;
        }
        int64_t shr[2] = {m->n_buckets, m->n_head};
        snprintf(name, sizeof name, "%sencoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", pre);
        if ((st = cge__tensor_f32(lc, name, 2, shr, &m->rel))) goto fail;
        int64_t sd[1] = {m->d};
        snprintf(name, sizeof name, "%sencoder.final_layer_norm.weight", pre);
        if ((st = cge__tensor_f32(lc, name, 1, sd, &m->final_ln))) goto fail;
    }

    {
        const struct cge_enc_names nm = {
            .prefix = pre,
            .q = "encoder.block.{}.layer.0.SelfAttention.q",
            .k = "encoder.block.{}.layer.0.SelfAttention.k",
            .v = "encoder.block.{}.layer.0.SelfAttention.v",
            .o = "encoder.block.{}.layer.0.SelfAttention.o",
            .ff1 = m->gated ? "encoder.block.{}.layer.1.DenseReluDense.wi_0"
                            : "encoder.block.{}.layer.1.DenseReluDense.wi",
            .ff1_up = "encoder.block.{}.layer.1.DenseReluDense.wi_1",
            .ff2 = "encoder.block.{}.layer.1.DenseReluDense.wo",
            .ln1 = "encoder.block.{}.layer.0.layer_norm",
            .ln2 = "encoder.block.{}.layer.1.layer_norm",
        };
        const struct cge_enc_params ep = {
            .n_layer = m->n_layer,
            .d = m->d,
            .n_head = m->n_head,
            .d_head = m->d_kv,
            .d_ff = m->d_ff,
            .pre_norm = 1,
            .rms = 1,
            .eps = m->eps,
            .bias = 0,
            .gated = m->gated,
            .act = m->gated || m->act_gelu ? CGE_BE_ACT_GELU_TANH : CGE_BE_ACT_RELU,
            .scale = 1.0f, /* T5 folds the 1/sqrt(d_kv) into its weights */
        };
        if ((st = cge__encoder_load(lc, &ep, &nm, &m->enc))) goto fail;
    }

    lc->hidden = m->d;
    lc->max_positions = 0; /* relative positions: no table limit */
    if ((st = cge__cfg_int(lc, "pad_token_id", 0, 0, 0, 1 << 26, &v))) goto fail;
    lc->pad_id = (int32_t)v;
    lc->modalities = CGE_MOD_TEXT | CGE_MOD_CODE;
    lc->default_pooling = CGE_POOL_MEAN;
    lc->default_normalize = 0;
    lc->vocab_size = m->vocab;
    lc->vocab_tensor = m->tok->name;
    *impl = m;
    return CGE_OK;
fail:
    t5_free(m);
    return st;
}

/* ==== forward ====================================================================================== */

static enum cge_status t5_forward(const void *impl, const int32_t *ids, const int64_t *len, int64_t B,
                                  int64_t L, float *x) {
    const struct t5 *m = impl;
    if (B <= 0 || L <= 0) return cge__err(CGE_ERR_INVALID_VALUE, "t5 forward: empty batch");
    const int64_t d = m->d, rows = B * L, H = m->n_head;
    size_t n_bias = (size_t)(H * L * L);
    float *bias = cge__malloc_aligned(n_bias * sizeof(float));
    if (!bias) return cge__err(CGE_ERR_NOMEM, "t5 forward: %zu floats of scratch", n_bias);
    enum cge_status st;

    if ((st = cge_embed_gather(m->tok->data, m->tok->dtype, m->vocab, d, ids, rows, x))) goto done;
    /* Position bias (n_head, L, L) from block 0's table: bucket of key − query. */
    if ((st = cge__rel_bias(m->rel, m->n_buckets, m->max_distance, H, L, bias))) goto done;
    if ((st = cge__encoder_forward(&m->enc, x, B, L, len, bias))) goto done;
    cge_rmsnorm(x, rows, d, m->final_ln, m->eps);
done:
    cge__free_aligned(bias);
    return st;
}

const struct cge_family cge__family_t5 = {
    .name = "t5",
    .matches = match_t5,
    .load = t5_load,
    .free = t5_free,
    .forward_text = t5_forward,
};
