/*
 * fuzz_fusion_config.c: arbitrary bytes as a FuseMoE config.json. Accepted configs small
 * enough to build (≤ 20000 parameters) get a deterministic initialization and one forward
 * pass, which must give a finite result.
 */
#include "fusion/fusemoe.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_fusemoe_config c;
    if (cge_fusemoe_config_parse((const char *)data, size, "fuzz", &c)) return 0;
    if (c.total_dim <= 0 || c.top_k < 1 || c.top_k > c.n_experts) abort();
    if (cge_fusemoe_config_n_params(&c) > 20000) return 0;
    struct cge_fusion *f = NULL;
    struct cge_fusion_ctx *ctx = NULL;
    if (cge_fusion_new(&c, 1, &f) || cge_fusion_ctx_new(&ctx)) abort();
    float *x = malloc((size_t)c.total_dim * sizeof(float));
    uint8_t present[CGE_FUSION_MAX_SLOTS];
    float *emb = malloc((size_t)c.out_dim * sizeof(float));
    float gate[CGE_FUSION_MAX_EXPERTS];
    int sel[CGE_FUSION_MAX_EXPERTS];
    for (int64_t i = 0; i < c.total_dim; i++)
        x[i] = (float)(i % 7) - 3.0f;
    for (int s = 0; s < c.n_slots; s++)
        present[s] = (uint8_t)(s % 3 != 1);
    if (cge_fusion_forward(f, ctx, 1, x, present, emb, gate, sel)) abort();
    for (int64_t i = 0; i < c.out_dim; i++)
        if (!isfinite(emb[i])) abort();
    free(x);
    free(emb);
    cge_fusion_ctx_free(ctx);
    cge_fusion_free(f);
    return 0;
}
