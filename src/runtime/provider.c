/*
 * provider.c: the EmbeddingProvider of the context-graph core, over the engine: a text in, the
 * fused vector out. Texts are documents (role document, no instruction).
 *
 * Design: a thin adapter, so that a limit, a default or an error is written once, in the engine.
 * The provider is as thread-safe as the engine it wraps.
 */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

struct cge_provider {
    struct cge_engine *e;
    char name[300];   /* "cge:<ensemble name>" */
    size_t max_tokens;
};

enum cge_status cge_provider_open(const char *ensemble_or_config, struct cge_provider **out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_provider_open: out is NULL");
    *out = NULL;
    struct cge_provider *p = cge__calloc(1, sizeof *p);
    if (!p) return cge__err(CGE_ERR_NOMEM, "provider");
    /* Continuous batching: a lone caller's text runs at once, and texts of concurrent callers
     * that arrive while a batch runs go together in the next one. */
    struct cge_engine_params ep = cge_engine_default_params();
    ep.max_wait_ms = 0;
    enum cge_status st = cge_engine_open(ensemble_or_config, &ep, &p->e);
    if (st) {
        cge__free(p);
        return st;
    }
    snprintf(p->name, sizeof p->name, "cge:%s", cge_engine_name(p->e));
    /* The longest text every text slot reads whole: the smallest max length among them. */
    int64_t mt = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (!(cge_engine_slot_modalities(p->e, s) & CGE_MOD_TEXT)) continue;
        int64_t m = cge_engine_slot_max_tokens(p->e, s);
        if (m > 0 && (mt == 0 || m < mt)) mt = m;
    }
    p->max_tokens = (size_t)mt;
    *out = p;
    return CGE_OK;
}

enum cge_status cge_provider_embed_batch(struct cge_provider *p, const char *const *texts, size_t n,
                                         float *out) {
    if (!p || (n && (!texts || !out)))
        return cge__err(CGE_ERR_INVALID_VALUE, "cge_provider_embed_batch: bad arguments");
    if (n == 0) return CGE_OK;
    struct cge_input *in = cge__calloc(n, sizeof *in);
    struct cge_result *r = cge__calloc(n, sizeof *r);
    enum cge_status st = in && r ? CGE_OK : cge__err(CGE_ERR_NOMEM, "provider: %zu texts", n);
    for (size_t i = 0; i < n && !st; i++) {
        if (!texts[i]) st = cge__err(CGE_ERR_INVALID_VALUE, "provider: text %zu is NULL", i);
        else {
            in[i].text = texts[i];
            in[i].text_len = strlen(texts[i]);
        }
    }
    if (!st) st = cge_engine_embed(p->e, in, n, NULL, r);
    const size_t dim = cge_provider_dimension(p);
    for (size_t i = 0; i < n && !st; i++) {
        if (r[i].status) st = cge__err(r[i].status, "text %zu: %s", i, r[i].errmsg);
        else if ((size_t)r[i].dim != dim) st = cge__err(CGE_ERR_INVALID_DIM, "text %zu: fused dimension %d", i, r[i].dim);
        else memcpy(out + i * dim, r[i].embedding, dim * sizeof(float));
    }
    for (size_t i = 0; r && i < n; i++) cge_result_deinit(&r[i]);
    cge__free(in);
    cge__free(r);
    return st;
}

enum cge_status cge_provider_embed(struct cge_provider *p, const char *text, float *out) {
    return cge_provider_embed_batch(p, &text, 1, out);
}

size_t cge_provider_dimension(const struct cge_provider *p) {
    return p ? (size_t)cge_engine_dim(p->e) : 0;
}

const char *cge_provider_model_name(const struct cge_provider *p) {
    return p ? p->name : "";
}

size_t cge_provider_max_tokens(const struct cge_provider *p) {
    return p ? p->max_tokens : 0;
}

void cge_provider_close(struct cge_provider *p) {
    if (!p) return;
    cge_engine_close(p->e);
    cge__free(p);
}
