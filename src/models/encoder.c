/*
 * encoder.c: the shared transformer encoder layer stack (see encoder.h): weight loading through
 * a backend, the pre-/post-norm forward, the frees, and the relative position bias of T5/MPNet.
 *
 * Design: one layer struct and one forward with the family differences as parameters, written
 * against the backend table only, so the CPU and a device run the same code. The operations and
 * their order are exactly those the family files used before (fused Q/K/V GEMM, attention read
 * through leading dimensions, activation right after the GEMM, residual adds in place), which is
 * what keeps the CPU results bit-for-bit. One scratch block per forward call (sub-buffers
 * 64-byte aligned) keeps a loaded encoder shareable by threads.
 */
#include "models/encoder.h"

#include "core/core.h"
#include "tensor/ops.h"

#include <stdio.h>
#include <string.h>

/* ==== names ======================================================================================= */

/* prefix + pattern with "{}" → i + suffix */
static void tensor_name(char *buf, size_t cap, const char *prefix, const char *pat, int64_t i,
                        const char *suffix) {
    const char *at = strstr(pat, "{}");
    if (at)
        snprintf(buf, cap, "%s%.*s%lld%s%s", prefix ? prefix : "", (int)(at - pat), pat,
                 (long long)i, at + 2, suffix);
    else
        snprintf(buf, cap, "%s%s%s", prefix ? prefix : "", pat, suffix);
}

/* ==== load ======================================================================================== */

static struct cge_backend *enc_backend(const struct cge_family_load *lc) {
    return lc->be ? lc->be : cge_backend_cpu();
}

static int convertible(enum cge_dtype t) {
    return t == CGE_DTYPE_F32 || t == CGE_DTYPE_F16 || t == CGE_DTYPE_BF16;
}

static enum cge_status dtype_check(const struct cge_family_load *lc,
                                   const struct cge_tensor_info *t) {
    if (convertible(t->dtype)) return CGE_OK;
    return cge__err(CGE_ERR_UNSUPPORTED, "model %s: tensor '%s': dtype %s (expected F32, F16 or BF16)",
                    lc->dir, t->name, cge_dtype_str(t->dtype));
}

/* cge__tensor, with CGE_ERR_INVALID_DIM (not MODEL_LOAD) for a tensor of the wrong shape, as
 * the Whisper loader always said (cge_model_load reports both as MODEL_LOAD). */
static enum cge_status enc_tensor(const struct cge_family_load *lc, const char *name, int n_dim,
                                  const int64_t *shape, const struct cge_tensor_info **out) {
    enum cge_status st = cge__tensor(lc, name, n_dim, shape, out);
    if (st == CGE_ERR_MODEL_LOAD && cge_weights_find(lc->w, name)) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        st = cge__err(CGE_ERR_INVALID_DIM, "%s", msg);
    }
    if (!st) st = dtype_check(lc, *out);
    return st;
}

/* A linear layer on be stacking n_parts (part_out[i], n_in) checkpoint matrices along n_out.
 * b_names NULL: no bias; an entry NULL in b_names: that part's bias is zero. */
static enum cge_status enc_linear(const struct cge_family_load *lc, struct cge_backend *be,
                                  struct cge_be_linear **out, int n_parts,
                                  const char *const *w_names, const char *const *b_names,
                                  const int64_t *part_out, int64_t n_in) {
    enum cge_status st;
    const struct cge_tensor_info *wt[3] = {0}, *bt[3] = {0};
    int64_t n_out = 0;
    for (int i = 0; i < n_parts; i++) {
        int64_t sh[2] = {part_out[i], n_in};
        if ((st = enc_tensor(lc, w_names[i], 2, sh, &wt[i]))) return st;
        if (b_names && b_names[i]) {
            int64_t shb[1] = {part_out[i]};
            if ((st = enc_tensor(lc, b_names[i], 1, shb, &bt[i]))) return st;
        }
        n_out += part_out[i];
    }
    const enum cge_dtype storage = lc->p ? lc->p->dtype : CGE_DTYPE_F32;
    float *w = NULL, *b = NULL;
    if (b_names) {
        b = cge__calloc((size_t)n_out, sizeof *b);
        if (!b) return cge__err(CGE_ERR_NOMEM, "model %s: tensor '%s'", lc->dir, w_names[0]);
        int64_t row = 0;
        for (int i = 0; i < n_parts; i++) {
            if (bt[i] && (st = cge_convert_to_f32(bt[i]->data, bt[i]->dtype, part_out[i], b + row)))
                goto done;
            row += part_out[i];
        }
    }
    const void *src = wt[0]->data;
    enum cge_dtype src_dtype = wt[0]->dtype;
    if (n_parts > 1) {
        /* fused: the parts side by side as fp32 (exact from F16/BF16) */
        w = cge__malloc((size_t)(n_out * n_in) * sizeof *w);
        if (!w) {
            st = cge__err(CGE_ERR_NOMEM, "model %s: tensor '%s': %lld floats", lc->dir, w_names[0],
                          (long long)(n_out * n_in));
            goto done;
        }
        int64_t row = 0;
        for (int i = 0; i < n_parts; i++) {
            if ((st = cge_convert_to_f32(wt[i]->data, wt[i]->dtype, part_out[i] * n_in,
                                         w + row * n_in)))
                goto done;
            row += part_out[i];
        }
        src = w;
        src_dtype = CGE_DTYPE_F32;
    }
    st = be->linear_init(be, out, src, src_dtype, b, n_out, n_in, storage);
    if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        st = cge__err(st, "model %s: tensor '%s': %s", lc->dir, w_names[0], msg);
    }
done:
    cge__free(w);
    cge__free(b);
    return st;
}

/* A (d) vector as fp32 in backend memory. */
static enum cge_status enc_vec(const struct cge_family_load *lc, struct cge_backend *be,
                               const char *name, int64_t d, float **out) {
    const struct cge_tensor_info *t;
    int64_t sd[1] = {d};
    *out = NULL;
    enum cge_status st = enc_tensor(lc, name, 1, sd, &t);
    if (st) return st;
    const int host = be == cge_backend_cpu();
    float *h = host ? NULL : cge__malloc((size_t)d * sizeof *h);
    float *v = be->alloc(be, (size_t)d * sizeof *v);
    if (!v || (!host && !h)) {
        st = cge__err(CGE_ERR_NOMEM, "model %s: tensor '%s' on %s", lc->dir, name, be->name);
    } else if (!(st = cge_convert_to_f32(t->data, t->dtype, d, host ? v : h)) && !host) {
        st = be->to_device(be, v, h, (size_t)d * sizeof *v);
    }
    if (st && v) {
        be->free(be, v);
        v = NULL;
    }
    cge__free(h);
    *out = v;
    return st;
}

enum cge_status cge__encoder_load(const struct cge_family_load *lc, const struct cge_enc_params *p,
                                  const struct cge_enc_names *nm, struct cge_encoder *e) {
    memset(e, 0, sizeof *e);
    e->be = enc_backend(lc);
    e->p = *p;
    if (p->n_layer <= 0 || p->d <= 0 || p->n_head <= 0 || p->d_head <= 0 || p->d_ff <= 0)
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: encoder of %lld layers, width %lld", lc->dir,
                        (long long)p->n_layer, (long long)p->d);
    e->layers = cge__calloc((size_t)p->n_layer, sizeof *e->layers);
    if (!e->layers) {
        e->p.n_layer = 0;
        return cge__err(CGE_ERR_NOMEM, "model %s: %lld layers", lc->dir, (long long)p->n_layer);
    }
    struct cge_backend *be = e->be;
    const char *pre = nm->prefix;
    const int64_t d = p->d, inner = p->n_head * p->d_head;
    for (int64_t i = 0; i < p->n_layer; i++) {
        struct cge_enc_layer *l = &e->layers[i];
        char wq[256], wk[256], wv[256], bq[256], bk[256], bv[256];
        enum cge_status st;
        tensor_name(wq, sizeof wq, pre, nm->q, i, ".weight");
        tensor_name(wk, sizeof wk, pre, nm->k, i, ".weight");
        tensor_name(wv, sizeof wv, pre, nm->v, i, ".weight");
        tensor_name(bq, sizeof bq, pre, nm->q, i, ".bias");
        tensor_name(bk, sizeof bk, pre, nm->k, i, ".bias");
        tensor_name(bv, sizeof bv, pre, nm->v, i, ".bias");
        const char *wn[3] = {wq, wk, wv}, *bn[3] = {bq, p->no_k_bias ? NULL : bk, bv};
        const int64_t po[3] = {inner, inner, inner};
        if ((st = enc_linear(lc, be, &l->qkv, 3, wn, p->bias ? bn : NULL, po, d))) return st;

        tensor_name(wq, sizeof wq, pre, nm->o, i, ".weight");
        tensor_name(bq, sizeof bq, pre, nm->o, i, ".bias");
        const int64_t od[1] = {d};
        if ((st = enc_linear(lc, be, &l->o, 1, wn, p->bias ? bn : NULL, od, inner))) return st;

        tensor_name(wq, sizeof wq, pre, nm->ff1, i, ".weight");
        tensor_name(bq, sizeof bq, pre, nm->ff1, i, ".bias");
        if (p->gated) {
            tensor_name(wk, sizeof wk, pre, nm->ff1_up, i, ".weight");
            tensor_name(bk, sizeof bk, pre, nm->ff1_up, i, ".bias");
            const char *bn2[2] = {bq, bk};
            const int64_t fo[2] = {p->d_ff, p->d_ff};
            if ((st = enc_linear(lc, be, &l->ff1, 2, wn, p->bias ? bn2 : NULL, fo, d))) return st;
        } else {
            const int64_t fo[1] = {p->d_ff};
            if ((st = enc_linear(lc, be, &l->ff1, 1, wn, p->bias ? bn : NULL, fo, d))) return st;
        }
        tensor_name(wq, sizeof wq, pre, nm->ff2, i, ".weight");
        tensor_name(bq, sizeof bq, pre, nm->ff2, i, ".bias");
        if ((st = enc_linear(lc, be, &l->ff2, 1, wn, p->bias ? bn : NULL, od, p->d_ff))) return st;

        tensor_name(wq, sizeof wq, pre, nm->ln1, i, ".weight");
        if ((st = enc_vec(lc, be, wq, d, &l->ln1_w))) return st;
        tensor_name(wq, sizeof wq, pre, nm->ln2, i, ".weight");
        if ((st = enc_vec(lc, be, wq, d, &l->ln2_w))) return st;
        if (!p->rms) {
            tensor_name(wq, sizeof wq, pre, nm->ln1, i, ".bias");
            if ((st = enc_vec(lc, be, wq, d, &l->ln1_b))) return st;
            tensor_name(wq, sizeof wq, pre, nm->ln2, i, ".bias");
            if ((st = enc_vec(lc, be, wq, d, &l->ln2_b))) return st;
        }
    }
    return CGE_OK;
}

void cge__encoder_free(struct cge_encoder *e) {
    if (!e || !e->layers) return;
    struct cge_backend *be = e->be;
    for (int64_t i = 0; i < e->p.n_layer; i++) {
        struct cge_enc_layer *l = &e->layers[i];
        be->linear_free(be, l->qkv);
        be->linear_free(be, l->o);
        be->linear_free(be, l->ff1);
        be->linear_free(be, l->ff2);
        be->free(be, l->ln1_w);
        be->free(be, l->ln1_b);
        be->free(be, l->ln2_w);
        be->free(be, l->ln2_b);
    }
    cge__free(e->layers);
    e->layers = NULL;
}

size_t cge__encoder_bytes(const struct cge_encoder *e) {
    size_t n = 0;
    if (!e || !e->layers) return 0;
    const struct cge_backend *be = e->be;
    for (int64_t i = 0; i < e->p.n_layer; i++) {
        const struct cge_enc_layer *l = &e->layers[i];
        n += be->linear_bytes(l->qkv) + be->linear_bytes(l->o) + be->linear_bytes(l->ff1) +
             be->linear_bytes(l->ff2);
    }
    return n;
}

/* ==== forward ===================================================================================== */

static enum cge_status norm(const struct cge_encoder *e, float *x, int64_t rows, const float *w,
                            const float *b) {
    struct cge_backend *be = e->be;
    if (e->p.rms) return be->rmsnorm(be, x, rows, e->p.d, w, e->p.eps);
    return be->layernorm(be, x, rows, e->p.d, w, b, e->p.eps);
}

/* out (rows, d) = ff2(act(ff1(h))) or ff2(act(gate(h)) · up(h)) */
static enum cge_status ffn(const struct cge_encoder *e, const struct cge_enc_layer *l,
                           const float *h, int64_t rows, float *ff, float *ffo, float *out) {
    struct cge_backend *be = e->be;
    enum cge_status st;
    if (e->p.gated) {
        if ((st = be->linear(be, l->ff1, h, rows, ff, CGE_BE_ACT_NONE))) return st;
        if ((st = be->glu(be, e->p.act, ff, rows, e->p.d_ff, ffo))) return st;
        return be->linear(be, l->ff2, ffo, rows, out, CGE_BE_ACT_NONE);
    }
    if ((st = be->linear(be, l->ff1, h, rows, ff, e->p.act))) return st;
    return be->linear(be, l->ff2, ff, rows, out, CGE_BE_ACT_NONE);
}

static size_t round16(size_t n) {
    return (n + 15) & ~(size_t)15;
}

enum cge_status cge__encoder_forward(const struct cge_encoder *e, float *x_host, int64_t B,
                                     int64_t L, const int64_t *len, const float *bias_host) {
    struct cge_backend *be = e->be;
    const struct cge_enc_params *p = &e->p;
    if (B <= 0 || L <= 0) return cge__err(CGE_ERR_INVALID_VALUE, "encoder: empty batch");
    const int64_t d = p->d, rows = B * L, H = p->n_head, inner = H * p->d_head;
    const int64_t ffw = p->gated ? 2 * p->d_ff : p->d_ff;
    const int on_host = be == cge_backend_cpu();
    /* scratch: h | qkv | ctx | ff | ffo (gated) | x, bias (device copies) */
    const size_t n_h = round16((size_t)(rows * d)), n_qkv = round16((size_t)(rows * 3 * inner));
    const size_t n_ctx = round16((size_t)(rows * inner)), n_ff = round16((size_t)(rows * ffw));
    const size_t n_ffo = p->gated ? round16((size_t)(rows * p->d_ff)) : 0;
    const size_t n_x = on_host ? 0 : n_h;
    const size_t n_bias = on_host || !bias_host ? 0 : round16((size_t)(H * L * L));
    const size_t total = n_h + n_qkv + n_ctx + n_ff + n_ffo + n_x + n_bias;
    float *scratch = be->alloc(be, total * sizeof(float));
    if (!scratch)
        return cge__err(CGE_ERR_NOMEM, "encoder: %zu floats of scratch on %s", total, be->name);
    float *h = scratch, *qkv = h + n_h, *ctx = qkv + n_qkv, *ff = ctx + n_ctx, *ffo = ff + n_ff;
    float *x = on_host ? x_host : ffo + n_ffo;
    const float *bias = on_host ? bias_host : (bias_host ? x + n_x : NULL);
    enum cge_status st = CGE_OK;
    if (!on_host) {
        st = be->to_device(be, x, x_host, (size_t)(rows * d) * sizeof(float));
        if (!st && bias_host)
            st = be->to_device(be, (float *)bias, bias_host, (size_t)(H * L * L) * sizeof(float));
        if (st) goto done;
    }
    struct cge_attn a = {
        .n_batch = B,
        .n_seq = L,
        .n_head = (int)H,
        .n_kv_head = (int)H,
        .d_head = (int)p->d_head,
        .scale = p->scale,
        .len = len,
        .bias = bias,
        .causal = p->causal,
        .window = 0,
    };
    const size_t bytes = (size_t)(rows * d) * sizeof(float);
    for (int64_t li = 0; li < p->n_layer; li++) {
        const struct cge_enc_layer *l = &e->layers[li];
        if (p->pre_norm) {
            if ((st = be->copy(be, h, x, bytes))) goto done;
            if ((st = norm(e, h, rows, l->ln1_w, l->ln1_b))) goto done;
            if ((st = be->linear(be, l->qkv, h, rows, qkv, CGE_BE_ACT_NONE))) goto done;
        } else {
            if ((st = be->linear(be, l->qkv, x, rows, qkv, CGE_BE_ACT_NONE))) goto done;
        }
        if ((st = be->attention(be, &a, qkv, 3 * inner, qkv + inner, 3 * inner, qkv + 2 * inner,
                                3 * inner, ctx, inner)))
            goto done;
        if ((st = be->linear(be, l->o, ctx, rows, h, CGE_BE_ACT_NONE))) goto done;
        if (p->pre_norm) {
            if ((st = be->add(be, x, h, rows * d))) goto done;
            if ((st = be->copy(be, h, x, bytes))) goto done;
            if ((st = norm(e, h, rows, l->ln2_w, l->ln2_b))) goto done;
            if ((st = ffn(e, l, h, rows, ff, ffo, h))) goto done;
            if ((st = be->add(be, x, h, rows * d))) goto done;
        } else {
            if ((st = be->add(be, h, x, rows * d))) goto done;
            if ((st = norm(e, h, rows, l->ln1_w, l->ln1_b))) goto done;
            if ((st = ffn(e, l, h, rows, ff, ffo, x))) goto done;
            if ((st = be->add(be, x, h, rows * d))) goto done;
            if ((st = norm(e, x, rows, l->ln2_w, l->ln2_b))) goto done;
        }
    }
    if (!on_host) {
        st = be->to_host(be, x_host, x, bytes);
        if (!st) st = be->sync(be);
    }
done:
    if (!on_host && st) be->sync(be); /* nothing queued may outlive the scratch */
    be->free(be, scratch);
    return st;
}

/* ==== helpers ===================================================================================== */

enum cge_status cge__rel_bias(const float *rel, int n_buckets, int max_distance, int64_t H,
                              int64_t L, float *out) {
    int *bk = cge__malloc((size_t)(2 * L - 1) * sizeof *bk);
    if (!bk) return cge__err(CGE_ERR_NOMEM, "relative position bias for %lld tokens", (long long)L);
    for (int64_t r = -(L - 1); r <= L - 1; r++)
        bk[r + L - 1] = cge__rel_bucket(r, n_buckets, max_distance);
    for (int64_t hh = 0; hh < H; hh++)
        for (int64_t i = 0; i < L; i++) {
            float *row = out + (hh * L + i) * L;
            for (int64_t j = 0; j < L; j++) row[j] = rel[bk[j - i + L - 1] * H + hh];
        }
    cge__free(bk);
    return CGE_OK;
}

enum cge_status cge__act_to_be(enum cge__act a, enum cge_be_act *out) {
    switch (a) {
    case CGE_ACT_IDENTITY:
        *out = CGE_BE_ACT_NONE;
        return CGE_OK;
    case CGE_ACT_TANH:
        *out = CGE_BE_ACT_TANH;
        return CGE_OK;
    case CGE_ACT_RELU:
        *out = CGE_BE_ACT_RELU;
        return CGE_OK;
    case CGE_ACT_GELU:
        *out = CGE_BE_ACT_GELU_ERF;
        return CGE_OK;
    case CGE_ACT_GELU_TANH:
        *out = CGE_BE_ACT_GELU_TANH;
        return CGE_OK;
    case CGE_ACT_QUICK_GELU:
        *out = CGE_BE_ACT_QUICK_GELU;
        return CGE_OK;
    case CGE_ACT_SILU:
        *out = CGE_BE_ACT_SILU;
        return CGE_OK;
    case CGE_ACT_SIGMOID:
        break;
    }
    return cge__err(CGE_ERR_UNSUPPORTED, "activation %d has no backend form", (int)a);
}
