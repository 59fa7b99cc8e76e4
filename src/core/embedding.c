/*
 * embedding.c: the embedding records (per model, concatenated, fused) and their checks.
 *
 * The concatenated vector keeps zeros where a slot is missing; the presence bits, not the
 * zeros, say what is missing (a real embedding may contain zeros).
 */
#include "core/core.h"

#include <math.h>
#include <string.h>

void cge_model_embedding_deinit(struct cge_model_embedding *e) {
    if (!e) return;
    cge__free(e->vector);
    cge__free(e->attention);
    memset(e, 0, sizeof *e);
}

enum cge_status cge_concat_init(struct cge_concat_embedding *c) {
    memset(c, 0, sizeof *c);
    c->vector = cge__calloc((size_t)cge_total_dim(), sizeof(float));
    if (!c->vector) return cge__err(CGE_ERR_NOMEM, "concatenated embedding");
    for (int i = 0; i < CGE_N_SLOTS; i++) c->slots[i].slot = i;
    return CGE_OK;
}

enum cge_status cge_concat_set(struct cge_concat_embedding *c, int slot, const float *vec,
                               int dim, int64_t latency_us) {
    const struct cge_slot_info *info = cge_slot_get(slot);
    if (!c->vector) return cge__err(CGE_ERR_NOT_INITIALIZED, "concatenated embedding not set up");
    if (!info) return cge__err(CGE_ERR_MODEL_NOT_FOUND, "slot index %d (expected 0..%d)", slot,
                               CGE_N_SLOTS - 1);
    if (dim != info->dim)
        return cge__err(CGE_ERR_INVALID_DIM, "%s (%s): dimension %d, expected %d", info->name,
                        info->hf_id, dim, info->dim);
    for (int i = 0; i < dim; i++)
        if (!isfinite(vec[i]))
            return cge__err(CGE_ERR_INVALID_VALUE, "%s: value %d is not finite", info->name, i);
    struct cge_model_embedding *e = &c->slots[slot];
    if (!e->vector) {
        e->vector = cge__malloc((size_t)dim * sizeof(float));
        if (!e->vector) return cge__err(CGE_ERR_NOMEM, "%s embedding", info->name);
    }
    memcpy(e->vector, vec, (size_t)dim * sizeof(float));
    memcpy(c->vector + cge_slot_offset(slot), vec, (size_t)dim * sizeof(float));
    if (c->present & (1u << slot)) c->total_latency_us -= e->latency_us;
    e->dim = dim;
    e->latency_us = latency_us;
    c->present |= 1u << slot;
    c->total_latency_us += latency_us;
    return CGE_OK;
}

int cge_concat_is_complete(const struct cge_concat_embedding *c) {
    return c->present == (1u << CGE_N_SLOTS) - 1;
}

void cge_concat_deinit(struct cge_concat_embedding *c) {
    if (!c) return;
    for (int i = 0; i < CGE_N_SLOTS; i++) cge_model_embedding_deinit(&c->slots[i]);
    cge__free(c->vector);
    memset(c, 0, sizeof *c);
}

enum cge_status cge_fused_validate(const struct cge_fused_embedding *f) {
    for (int i = 0; i < CGE_FUSED_DIM; i++)
        if (!isfinite(f->vector[i]))
            return cge__err(CGE_ERR_INVALID_VALUE, "fused embedding: value %d is %s", i,
                            isnan(f->vector[i]) ? "NaN" : "infinite");
    double sum = 0;
    for (int e = 0; e < CGE_N_EXPERTS; e++) {
        float w = f->expert_weights[e];
        if (!isfinite(w) || w < 0 || w > 1)
            return cge__err(CGE_ERR_INVALID_VALUE, "fused embedding: expert weight %d = %g", e,
                            (double)w);
        sum += w;
    }
    if (fabs(sum - 1.0) > 1e-3)
        return cge__err(CGE_ERR_INVALID_VALUE, "fused embedding: expert weights sum to %g, not 1",
                        sum);
    for (int k = 0; k < CGE_TOP_K; k++)
        if (f->selected[k] < 0 || f->selected[k] >= CGE_N_EXPERTS)
            return cge__err(CGE_ERR_INVALID_VALUE, "fused embedding: selected expert %d",
                            f->selected[k]);
    if (f->selected[0] == f->selected[1])
        return cge__err(CGE_ERR_INVALID_VALUE, "fused embedding: expert %d selected twice",
                        f->selected[0]);
    return CGE_OK;
}

enum cge_status cge_fused_normalize(struct cge_fused_embedding *f) {
    double ss = 0;
    for (int i = 0; i < CGE_FUSED_DIM; i++) ss += (double)f->vector[i] * f->vector[i];
    if (!(ss > 0) || !isfinite(ss))
        return cge__err(CGE_ERR_INVALID_VALUE, "fused embedding: cannot normalize (norm² = %g)",
                        ss);
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < CGE_FUSED_DIM; i++) f->vector[i] = (float)(f->vector[i] * inv);
    return CGE_OK;
}
