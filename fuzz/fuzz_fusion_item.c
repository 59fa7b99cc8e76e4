/*
 * fuzz_fusion_item.c: arbitrary bytes as a `{"slots": [...], "pair": ...}` line for a small
 * FuseMoE (3 slots of 3, 5 and 2 dims); accepted items go through the forward pass, whose
 * output must be finite, unit length, with a gate distribution summing to 1.
 */
#include "fusion/fusemoe.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cge_fusion *model;
static struct cge_fusion_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char cfg[] = "{\"slot_dims\": [3, 5, 2], \"num_experts\": 3, \"top_k\": 2, "
                              "\"expert_hidden_dim\": 8, \"output_dim\": 4}";
    struct cge_fusemoe_config c;
    if (cge_fusemoe_config_parse(cfg, sizeof cfg - 1, "fuzz", &c)) abort();
    if (!model && (cge_fusion_new(&c, 5, &model) || cge_fusion_ctx_new(&ctx))) abort();
    float x[10];
    uint8_t present[3];
    int64_t pair;
    if (cge_fusion_parse_item(&c, (const char *)data, size, x, present, &pair)) return 0;
    float emb[4], gate[3];
    int sel[2];
    if (cge_fusion_forward(model, ctx, 1, x, present, emb, gate, sel)) abort();
    double nn = 0, gs = 0;
    for (int i = 0; i < 4; i++)
        nn += (double)emb[i] * emb[i];
    for (int i = 0; i < 3; i++)
        gs += gate[i];
    if (!(fabs(nn - 1) < 1e-4 || nn == 0) || !(fabs(gs - 1) < 1e-4)) abort();
    if (sel[0] == sel[1] || sel[0] < 0 || sel[0] > 2 || sel[1] < 0 || sel[1] > 2) abort();
    return 0;
}
