/*
 * t5.c: the T5 encoder (Sentence-T5, INSTRUCTOR): token embeddings from `shared` (no scaling, no
 * absolute positions), pre-norm blocks with RMSNorm (no mean, no bias), attention without the
 * 1/sqrt(d_kv) scale plus a bucketed relative position bias computed from block 0's table and
 * reused by every block, a ReLU or gated-GELU (tanh) feed-forward, and a final RMSNorm.
 *
 * Design: as bert.c, Q/K/V are one fused cge_linear and the gated feed-forward's wi_0/wi_1 are
 * one fused cge_linear of width 2·d_ff; the inner width n_heads·d_kv may differ from d_model.
 * Each forward allocates its own scratch, so a loaded model serves any number of threads.
 */
#include "core/core.h"
#include "models/model.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* ==== hyperparameters and weights =================================================================== */

struct t5_layer {
    float *ln0;            /* (d) layer.0.layer_norm */
    struct cge_linear qkv; /* (3·inner, d) layer.0.SelfAttention.{q,k,v} */
    struct cge_linear o;   /* (d, inner) layer.0.SelfAttention.o */
    float *ln1;            /* (d) layer.1.layer_norm */
    struct cge_linear wi;  /* (d_ff, d) DenseReluDense.wi, or (2·d_ff, d) wi_0 ‖ wi_1 when gated */
    struct cge_linear wo;  /* (d, d_ff) DenseReluDense.wo */
};

struct t5 {
    int64_t d, d_kv, n_head, inner, d_ff, n_layer, vocab;
    int n_buckets, max_distance;
    float eps;
    int gated;                          /* 1: gelu_new(wi_0 x) * (wi_1 x) */
    int act_gelu;                       /* non-gated: 1 = gelu_new, 0 = relu */
    const struct cge_tensor_info *tok;  /* (vocab, d) shared.weight | encoder.embed_tokens.weight */
    float *rel;                         /* (n_buckets, n_head) block.0 relative_attention_bias */
    struct t5_layer *layers;            /* n_layer, encoder.block.* */
    float *final_ln;                    /* (d) encoder.final_layer_norm */
};

/* ==== load ========================================================================================= */

static void t5_free(void *impl) {
    struct t5 *m = impl;
    if (!m) return;
    if (m->layers) {
        for (int64_t i = 0; i < m->n_layer; i++) {
            struct t5_layer *l = &m->layers[i];
            cge__free(l->ln0);
            cge__free(l->ln1);
            cge_linear_deinit(&l->qkv);
            cge_linear_deinit(&l->o);
            cge_linear_deinit(&l->wi);
            cge_linear_deinit(&l->wo);
        }
    }
    cge__free(m->layers);
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

    m->layers = cge__calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = cge__err(CGE_ERR_NOMEM, "model %s: out of memory", lc->dir);
        goto fail;
    }
    for (int64_t i = 0; i < m->n_layer; i++) {
        struct t5_layer *l = &m->layers[i];
        long long li = (long long)i;
        char a[256], b[256], c[256];
        int64_t sd[1] = {m->d};
        snprintf(a, sizeof a, "%sencoder.block.%lld.layer.0.layer_norm.weight", pre, li);
        if ((st = cge__tensor_f32(lc, a, 1, sd, &l->ln0))) goto fail;
        snprintf(a, sizeof a, "%sencoder.block.%lld.layer.1.layer_norm.weight", pre, li);
        if ((st = cge__tensor_f32(lc, a, 1, sd, &l->ln1))) goto fail;

        snprintf(a, sizeof a, "%sencoder.block.%lld.layer.0.SelfAttention.q.weight", pre, li);
        snprintf(b, sizeof b, "%sencoder.block.%lld.layer.0.SelfAttention.k.weight", pre, li);
        snprintf(c, sizeof c, "%sencoder.block.%lld.layer.0.SelfAttention.v.weight", pre, li);
        const char *qkv[3] = {a, b, c};
        int64_t po[3] = {m->inner, m->inner, m->inner};
        if ((st = cge__linear_load(lc, &l->qkv, 3, qkv, NULL, po, m->d))) goto fail;
        snprintf(a, sizeof a, "%sencoder.block.%lld.layer.0.SelfAttention.o.weight", pre, li);
        const char *on[1] = {a};
        int64_t od[1] = {m->d};
        if ((st = cge__linear_load(lc, &l->o, 1, on, NULL, od, m->inner))) goto fail;

        if (m->gated) {
            snprintf(a, sizeof a, "%sencoder.block.%lld.layer.1.DenseReluDense.wi_0.weight", pre, li);
            snprintf(b, sizeof b, "%sencoder.block.%lld.layer.1.DenseReluDense.wi_1.weight", pre, li);
            const char *wn[2] = {a, b};
            int64_t fo[2] = {m->d_ff, m->d_ff};
            if ((st = cge__linear_load(lc, &l->wi, 2, wn, NULL, fo, m->d))) goto fail;
        } else {
            snprintf(a, sizeof a, "%sencoder.block.%lld.layer.1.DenseReluDense.wi.weight", pre, li);
            const char *wn[1] = {a};
            int64_t fo[1] = {m->d_ff};
            if ((st = cge__linear_load(lc, &l->wi, 1, wn, NULL, fo, m->d))) goto fail;
        }
        snprintf(a, sizeof a, "%sencoder.block.%lld.layer.1.DenseReluDense.wo.weight", pre, li);
        const char *won[1] = {a};
        if ((st = cge__linear_load(lc, &l->wo, 1, won, NULL, od, m->d_ff))) goto fail;
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
    const int64_t d = m->d, rows = B * L, inner = m->inner, H = m->n_head;
    const int64_t ffw = m->gated ? 2 * m->d_ff : m->d_ff;
    size_t n_h = (size_t)(rows * d), n_qkv = (size_t)(rows * 3 * inner), n_ctx = (size_t)(rows * inner);
    size_t n_ff = (size_t)(rows * ffw), n_bias = (size_t)(H * L * L);
    size_t n_ffo = m->gated ? (size_t)(rows * m->d_ff) : 0;
    size_t total = n_h + n_qkv + n_ctx + n_ff + n_ffo + n_bias;
    float *scratch = cge__malloc_aligned(total * sizeof(float));
    if (!scratch) return cge__err(CGE_ERR_NOMEM, "t5 forward: %zu floats of scratch", total);
    float *h = scratch, *qkv = h + n_h, *ctx = qkv + n_qkv, *ff = ctx + n_ctx, *ffo = ff + n_ff;
    float *bias = ffo + n_ffo;
    enum cge_status st;

    if ((st = cge_embed_gather(m->tok->data, m->tok->dtype, m->vocab, d, ids, rows, x))) goto done;

    /* Position bias (n_head, L, L) from block 0's table: bucket of key − query. */
    {
        int *bk = cge__malloc((size_t)(2 * L - 1) * sizeof *bk);
        if (!bk) {
            st = cge__err(CGE_ERR_NOMEM, "t5 forward");
            goto done;
        }
        for (int64_t r = -(L - 1); r <= L - 1; r++) bk[r + L - 1] = cge__rel_bucket(r, m->n_buckets, m->max_distance);
        for (int64_t hh = 0; hh < H; hh++)
            for (int64_t i = 0; i < L; i++) {
                float *row = bias + (hh * L + i) * L;
                for (int64_t j = 0; j < L; j++) row[j] = m->rel[bk[j - i + L - 1] * H + hh];
            }
        cge__free(bk);
    }
    struct cge_attn a = {
        .n_batch = B,
        .n_seq = L,
        .n_head = (int)H,
        .n_kv_head = (int)H,
        .d_head = (int)m->d_kv,
        .scale = 1.0f,
        .len = len,
        .bias = bias,
    };
    for (int64_t li = 0; li < m->n_layer; li++) {
        const struct t5_layer *l = &m->layers[li];
        memcpy(h, x, n_h * sizeof *h);
        cge_rmsnorm(h, rows, d, l->ln0, m->eps);
        if ((st = cge_linear_forward(&l->qkv, h, rows, qkv))) goto done;
        if ((st = cge_attention(&a, qkv, 3 * inner, qkv + inner, 3 * inner, qkv + 2 * inner, 3 * inner, ctx, inner)))
            goto done;
        if ((st = cge_linear_forward(&l->o, ctx, rows, h))) goto done;
        cge_add(x, h, rows * d);

        memcpy(h, x, n_h * sizeof *h);
        cge_rmsnorm(h, rows, d, l->ln1, m->eps);
        if ((st = cge_linear_forward(&l->wi, h, rows, ff))) goto done;
        const float *ffin = ff;
        if (m->gated) {
            /* ff rows hold [wi_0 x | wi_1 x]: gelu_new(first) * second. */
            for (int64_t r = 0; r < rows; r++) {
                float *g = ff + r * ffw;
                cge_gelu_tanh(g, m->d_ff);
                cge_mul(g, g + m->d_ff, m->d_ff);
                memcpy(ffo + r * m->d_ff, g, (size_t)m->d_ff * sizeof *g);
            }
            ffin = ffo;
        } else if (m->act_gelu) {
            cge_gelu_tanh(ff, rows * m->d_ff);
        } else {
            cge_relu(ff, rows * m->d_ff);
        }
        if ((st = cge_linear_forward(&l->wo, ffin, rows, h))) goto done;
        cge_add(x, h, rows * d);
    }
    cge_rmsnorm(x, rows, d, m->final_ln, m->eps);
done:
    cge__free_aligned(scratch);
    return st;
}

const struct cge_family cge__family_t5 = {
    .name = "t5",
    .matches = match_t5,
    .load = t5_load,
    .free = t5_free,
    .forward_text = t5_forward,
};
