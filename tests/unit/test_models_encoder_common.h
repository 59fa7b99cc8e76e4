/*
 * test_models_encoder_common.h: shared by the encoder fixture tests (test_models_bert.c,
 * test_models_roberta.c, test_models_mpnet.c, test_models_t5.c): loads a fixture model folder of
 * tests/fixtures/models/<arch>, runs the family forward on case.json's input ids and compares
 * every output (rows with attention_mask 1 only) with the files transformers wrote.
 */
#ifndef TEST_MODELS_ENCODER_COMMON_H
#define TEST_MODELS_ENCODER_COMMON_H

#include "testhelp.h"

#include "core/core.h"
#include "models/heads.h"
#include "models/model.h"

#include <cjson/cJSON.h>

struct enc_case {
    char dir[256];
    cJSON *json;
    int64_t B, L;
    int32_t *ids, *types; /* (B, L) */
    int64_t len[8];       /* real lengths (attention_mask is right-padded) */
    int has_types;
};

static inline int enc_case_load(struct enc_case *c, const char *arch) {
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "tests/fixtures/models/%s", arch);
    char p[512];
    snprintf(p, sizeof p, "%s/case.json", c->dir);
    char *txt = th_read_file(p, NULL);
    if (!txt) return 0;
    c->json = cJSON_Parse(txt);
    free(txt);
    if (!c->json) return 0;
    const cJSON *in = cJSON_GetObjectItem(c->json, "inputs");
    const cJSON *ids = cJSON_GetObjectItem(in, "input_ids");
    const cJSON *mask = cJSON_GetObjectItem(in, "attention_mask");
    const cJSON *tt = cJSON_GetObjectItem(in, "token_type_ids");
    c->B = cJSON_GetArraySize(ids);
    c->L = cJSON_GetArraySize(cJSON_GetArrayItem(ids, 0));
    c->ids = calloc((size_t)(c->B * c->L), sizeof *c->ids);
    c->types = calloc((size_t)(c->B * c->L), sizeof *c->types);
    c->has_types = tt != NULL;
    for (int64_t b = 0; b < c->B; b++) {
        c->len[b] = 0;
        for (int64_t t = 0; t < c->L; t++) {
            c->ids[b * c->L + t] = cJSON_GetArrayItem(cJSON_GetArrayItem(ids, (int)b), (int)t)->valueint;
            if (tt) c->types[b * c->L + t] = cJSON_GetArrayItem(cJSON_GetArrayItem(tt, (int)b), (int)t)->valueint;
            if (cJSON_GetArrayItem(cJSON_GetArrayItem(mask, (int)b), (int)t)->valueint) c->len[b] = t + 1;
        }
    }
    return 1;
}

static inline void enc_case_free(struct enc_case *c) {
    cJSON_Delete(c->json);
    free(c->ids);
    free(c->types);
}

static inline float *enc_expected(const struct enc_case *c, const char *name, size_t *n) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s.bin", c->dir, name);
    return th_read_f32(p, n);
}

/* Max over rows b of rel err of hidden rows t < len[b] (each sequence's valid block). */
static inline double enc_hidden_err(const struct enc_case *c, const float *got, const float *ref, int64_t d) {
    double worst = 0;
    for (int64_t b = 0; b < c->B; b++) {
        double e = th_rel_err(got + b * c->L * d, ref + b * c->L * d, (size_t)(c->len[b] * d));
        if (e > worst) worst = e;
    }
    return worst;
}

static inline double enc_rows_err(const float *got, const float *ref, int64_t B, int64_t d) {
    double worst = 0;
    for (int64_t b = 0; b < B; b++) {
        double e = th_rel_err(got + b * d, ref + b * d, (size_t)d);
        if (e > worst) worst = e;
    }
    return worst;
}

typedef enum cge_status (*enc_forward_fn)(const struct cge_model *m, const struct enc_case *c,
                                           const int32_t *ids, const int64_t *len, int64_t B,
                                           int64_t L, float *hidden);

static inline enum cge_status enc_forward_generic(const struct cge_model *m, const struct enc_case *c,
                                           const int32_t *ids, const int64_t *len, int64_t B,
                                           int64_t L, float *hidden) {
    (void)c;
    return cge__model_family(m)->forward_text(cge__model_impl(m), ids, len, B, L, hidden);
}

/* A batch of mixed lengths: row 0 cut to a shorter length and padded; each row must equal that
 * row run alone (B = 1, no padding). */
static inline void enc_check_mixed_batch(const struct cge_model *m, const struct enc_case *c, int64_t d,
                                  int32_t pad, enc_forward_fn fwd, double *worst_out) {
    int64_t B = c->B, L = c->L;
    int32_t *ids = malloc((size_t)(B * L) * sizeof *ids);
    int64_t len[8];
    memcpy(ids, c->ids, (size_t)(B * L) * sizeof *ids);
    for (int64_t b = 0; b < B; b++) len[b] = c->len[b];
    len[0] = L / 2 + 1;
    for (int64_t t = len[0]; t < L; t++) ids[t] = pad;
    float *hb = malloc((size_t)(B * L * d) * sizeof *hb);
    float *h1 = malloc((size_t)(L * d) * sizeof *h1);
    CHECK(fwd(m, c, ids, len, B, L, hb) == CGE_OK);
    double worst = 0;
    for (int64_t b = 0; b < B; b++) {
        CHECK(fwd(m, c, ids + b * L, &len[b], 1, len[b], h1) == CGE_OK);
        double e = th_rel_err(hb + b * L * d, h1, (size_t)(len[b] * d));
        if (e > worst) worst = e;
    }
    CHECK_MSG(worst < 1e-5, "padded batch vs alone: rel err %.3g", worst);
    if (worst_out) *worst_out = worst;
    free(ids);
    free(hb);
    free(h1);
}

static inline enum cge_status enc_forward_bert(const struct cge_model *m, const struct enc_case *c,
                                        const int32_t *ids, const int64_t *len, int64_t B,
                                        int64_t L, float *hidden) {
    (void)c;
    return cge__bert_forward(cge__model_impl(m), ids, NULL, len, B, L, hidden);
}

/* Mean-pooled rows of the fixture through a model loaded with weight storage `dtype`. */
static inline float *enc_mean_pooled(const char *dir, enum cge_dtype dtype, const struct enc_case *c,
                              int64_t *d_out) {
    struct cge_model_params p = cge_model_default_params();
    p.dtype = dtype;
    struct cge_model *m = NULL;
    if (cge_model_load(dir, &p, &m) != CGE_OK) {
        printf("  load %s (%s): %s\n", dir, cge_dtype_str(dtype), cge_errmsg());
        return NULL;
    }
    int64_t d = cge_model_dim(m);
    float *h = malloc((size_t)(c->B * c->L * d) * sizeof *h);
    float *o = malloc((size_t)(c->B * d) * sizeof *o);
    enum cge_status st = c->has_types ? cge__bert_forward(cge__model_impl(m), c->ids, c->types, c->len, c->B, c->L, h)
                                      : cge__model_family(m)->forward_text(cge__model_impl(m), c->ids, c->len, c->B, c->L, h);
    if (!st) st = cge__pool(CGE_POOL_MEAN, h, c->B, c->L, d, c->len, NULL, o);
    free(h);
    cge_model_free(m);
    if (st) {
        free(o);
        return NULL;
    }
    *d_out = d;
    return o;
}

/* bf16 and int8 weight storage against the fp32 reference (cosine per row). */
static inline void enc_check_dtypes(const struct enc_case *c, const float *ref, int64_t d) {
    static const struct {
        enum cge_dtype dt;
        double min_cos;
    } cases[] = {{CGE_DTYPE_BF16, 0.9999}, {CGE_DTYPE_I8, 0.999}};
    for (size_t k = 0; k < 2; k++) {
        int64_t dd = 0;
        float *o = enc_mean_pooled(c->dir, cases[k].dt, c, &dd);
        CHECK(o != NULL && dd == d);
        if (!o) continue;
        double worst = 1;
        for (int64_t b = 0; b < c->B; b++) {
            double cs = th_cosine(o + b * d, ref + b * d, (size_t)d);
            if (cs < worst) worst = cs;
        }
        printf("  %s %s: min cosine to fp32 reference %.7f\n", c->dir, cge_dtype_str(cases[k].dt), worst);
        CHECK_MSG(worst >= cases[k].min_cos, "%s: cosine %.7f < %g", cge_dtype_str(cases[k].dt), worst, cases[k].min_cos);
        free(o);
    }
}

/* The whole BERT-like check: hidden states, pooler, mean, the embed pipeline on input_ids,
 * a mixed-length batch, bf16 and int8 storage. */
static inline void enc_run_bertlike(const char *arch, int32_t pad) {
    struct enc_case c;
    CHECK(enc_case_load(&c, arch));
    if (!c.json) return;
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(c.dir, NULL, &m);
    CHECK_MSG(st == CGE_OK, "load %s: %s", c.dir, cge_errmsg());
    if (st) {
        enc_case_free(&c);
        return;
    }
    int64_t d = cge_model_dim(m);
    size_t n_ref = 0;
    float *ref_h = enc_expected(&c, "last_hidden_state", &n_ref);
    float *ref_p = enc_expected(&c, "pooler_output", NULL);
    float *ref_m = enc_expected(&c, "mean_pooled", NULL);
    CHECK(ref_h && ref_p && ref_m && n_ref == (size_t)(c.B * c.L * d));
    float *h = malloc((size_t)(c.B * c.L * d) * sizeof *h);
    float *o = malloc((size_t)(c.B * d) * sizeof *o);
    st = cge__bert_forward(cge__model_impl(m), c.ids, c.has_types ? c.types : NULL, c.len, c.B, c.L, h);
    CHECK_MSG(st == CGE_OK, "forward: %s", cge_errmsg());
    double e_h = enc_hidden_err(&c, h, ref_h, d);
    CHECK_MSG(e_h < 1e-5, "%s last_hidden_state rel err %.3g", arch, e_h);
    CHECK(cge__bert_pooler(cge__model_impl(m), h, c.B, c.L, o) == CGE_OK);
    double e_p = enc_rows_err(o, ref_p, c.B, d);
    CHECK_MSG(e_p < 1e-5, "%s pooler_output rel err %.3g", arch, e_p);
    CHECK(cge__pool(CGE_POOL_MEAN, h, c.B, c.L, d, c.len, NULL, o) == CGE_OK);
    double e_m = enc_rows_err(o, ref_m, c.B, d);
    CHECK_MSG(e_m < 1e-5, "%s mean_pooled rel err %.3g", arch, e_m);
    printf("  %s: max rel err last_hidden_state %.3g, pooler_output %.3g, mean_pooled %.3g\n", arch, e_h, e_p, e_m);

    /* The pipeline on pre-tokenized rows whose token types are all 0: no sentence-transformers
     * files here, so masked mean, not normalized. */
    for (int64_t b = 0; b < c.B; b++) {
        int zero = 1;
        for (int64_t t = 0; t < c.L; t++) zero &= c.types[b * c.L + t] == 0;
        if (!zero) continue;
        struct cge_input in = {0};
        in.ids = c.ids + b * c.L;
        in.n_ids = c.len[b];
        struct cge_embed_info info;
        CHECK(cge_model_embed(m, &in, 1, o, &info) == CGE_OK && info.status == CGE_OK);
        double e = th_rel_err(o, ref_m + b * d, (size_t)d);
        CHECK_MSG(e < 1e-5, "%s cge_model_embed row %lld rel err %.3g", arch, (long long)b, e);
    }
    enc_check_mixed_batch(m, &c, d, pad, enc_forward_bert, NULL);
    enc_check_dtypes(&c, ref_m, d);
    free(h);
    free(o);
    free(ref_h);
    free(ref_p);
    free(ref_m);
    cge_model_free(m);
    enc_case_free(&c);
}

#endif
