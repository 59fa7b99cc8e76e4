/*
 * fuzz_fusion_weights.c: arbitrary bytes as the model.safetensors of the softmax fixture's
 * config (4 slots, 4 experts, hidden 16, output 12). Whatever the tensors' names, dtypes and
 * shapes, loading either fails with a message or gives a model whose forward pass runs.
 */
#include "fusion/internal.h"

#include "io/weights.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char cfg[] = "{\"slot_dims\": [6, 10, 8, 5], \"num_experts\": 4, \"top_k\": 2, "
                              "\"expert_hidden_dim\": 16, \"output_dim\": 12}";
    struct cge_fusemoe_config c;
    if (cge_fusemoe_config_parse(cfg, sizeof cfg - 1, "fuzz", &c)) abort();
    struct cge_weights *w = NULL;
    if (cge_weights_from_safetensors_buffer(data, size, "fuzz", &w)) return 0;
    enum cge_dtype dts[2] = {CGE_DTYPE_F32, CGE_DTYPE_I8};
    for (int d = 0; d < 2; d++) {
        struct cge_fusion *f = NULL;
        if (cge__fusion_from_weights(&c, w, "fuzz", dts[d], &f)) continue;
        struct cge_fusion_ctx *ctx = NULL;
        if (cge_fusion_ctx_new(&ctx)) abort();
        float x[29], emb[12];
        uint8_t present[4] = {1, 0, 1, 1};
        for (int i = 0; i < 29; i++)
            x[i] = (float)(i % 5) - 2.0f;
        /* non-finite weights are rejected at load; huge ones may overflow, which the forward
         * must report as CGE_ERR_FUSION (never NaN output, never undefined behaviour) */
        enum cge_status st = cge_fusion_forward(f, ctx, 1, x, present, emb, NULL, NULL);
        if (st != CGE_OK && st != CGE_ERR_FUSION) abort();
        for (int i = 0; i < 12 && st == CGE_OK; i++)
            if (!(emb[i] == emb[i])) abort();
        cge_fusion_ctx_free(ctx);
        cge_fusion_free(f);
    }
    cge_weights_free(w);
    return 0;
}
