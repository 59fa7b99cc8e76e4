/*
 * fuzz_models_config.c: arbitrary bytes as a model's config.json, loaded by every text-encoder
 * family (BERT, RoBERTa, MPNet, T5) against one tiny in-memory checkpoint that holds tensors of
 * all four layouts (hidden 8, 2 heads, 1 layer, vocab 16). Loading must never crash; it either
 * fails with a status or gives a model whose forward runs on a few ids.
 */
#include "core/core.h"
#include "io/weights.h"
#include "models/model.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct cge_family cge__family_bert;
extern const struct cge_family cge__family_roberta;
extern const struct cge_family cge__family_mpnet;
extern const struct cge_family cge__family_t5;

static uint8_t *image;
static struct cge_weights *weights;

struct spec {
    const char *name;
    int64_t a, b;
};

static void add(cJSON *h, const char *name, int64_t a, int64_t b, size_t *off) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON *sh = cJSON_CreateArray();
    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)a));
    if (b) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)b));
    cJSON_AddItemToObject(e, "shape", sh);
    size_t n = (size_t)(a * (b ? b : 1)) * 4;
    cJSON *o = cJSON_CreateArray();
    cJSON_AddItemToArray(o, cJSON_CreateNumber((double)*off));
    cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(*off + n)));
    cJSON_AddItemToObject(e, "data_offsets", o);
    cJSON_AddItemToObject(h, name, e);
    *off += n;
}

static void build(void) {
    const int64_t d = 8, f = 16, v = 16;
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    char n[128];
    add(h, "embeddings.word_embeddings.weight", v, d, &off);
    add(h, "embeddings.position_embeddings.weight", 16, d, &off);
    add(h, "embeddings.token_type_embeddings.weight", 2, d, &off);
    add(h, "embeddings.LayerNorm.weight", d, 0, &off);
    add(h, "embeddings.LayerNorm.bias", d, 0, &off);
    add(h, "encoder.relative_attention_bias.weight", 32, 2, &off);
    static const char *const lin[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                      "attention.output.dense", "attention.attn.q", "attention.attn.k",
                                      "attention.attn.v", "attention.attn.o"};
    for (int i = 0; i < 8; i++) {
        snprintf(n, sizeof n, "encoder.layer.0.%s.weight", lin[i]);
        add(h, n, d, d, &off);
        snprintf(n, sizeof n, "encoder.layer.0.%s.bias", lin[i]);
        add(h, n, d, 0, &off);
    }
    static const char *const lns[] = {"attention.output.LayerNorm", "attention.LayerNorm", "output.LayerNorm"};
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "encoder.layer.0.%s.weight", lns[i]);
        add(h, n, d, 0, &off);
        snprintf(n, sizeof n, "encoder.layer.0.%s.bias", lns[i]);
        add(h, n, d, 0, &off);
    }
    add(h, "encoder.layer.0.intermediate.dense.weight", f, d, &off);
    add(h, "encoder.layer.0.intermediate.dense.bias", f, 0, &off);
    add(h, "encoder.layer.0.output.dense.weight", d, f, &off);
    add(h, "encoder.layer.0.output.dense.bias", d, 0, &off);
    add(h, "pooler.dense.weight", d, d, &off);
    add(h, "pooler.dense.bias", d, 0, &off);
    /* T5: d_model 8, 2 heads of d_kv 4, d_ff 16 (relu: wi; gated: wi_0, wi_1) */
    add(h, "shared.weight", v, d, &off);
    add(h, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 32, 2, &off);
    static const char *const t5[] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "encoder.block.0.layer.0.SelfAttention.%s.weight", t5[i]);
        add(h, n, d, d, &off);
    }
    add(h, "encoder.block.0.layer.0.SelfAttention.o.weight", d, d, &off);
    add(h, "encoder.block.0.layer.0.layer_norm.weight", d, 0, &off);
    add(h, "encoder.block.0.layer.1.layer_norm.weight", d, 0, &off);
    add(h, "encoder.block.0.layer.1.DenseReluDense.wi.weight", f, d, &off);
    add(h, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", f, d, &off);
    add(h, "encoder.block.0.layer.1.DenseReluDense.wi_1.weight", f, d, &off);
    add(h, "encoder.block.0.layer.1.DenseReluDense.wo.weight", d, f, &off);
    add(h, "encoder.final_layer_norm.weight", d, 0, &off);
    char *hs = cJSON_PrintUnformatted(h);
    size_t hn = strlen(hs), pad = (8 - hn % 8) % 8, len = 8 + hn + pad + off;
    image = malloc(len);
    uint64_t hl = hn + pad;
    memcpy(image, &hl, 8);
    memcpy(image + 8, hs, hn);
    memset(image + 8 + hn, ' ', pad);
    float *data = (float *)(image + 8 + hn + pad);
    for (size_t i = 0; i < off / 4; i++) data[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    cJSON_free(hs);
    cJSON_Delete(h);
    if (cge_weights_from_safetensors_buffer(image, len, "fuzz", &weights) != CGE_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!weights) build();
    cJSON *cfg = cJSON_ParseWithLength((const char *)data, size);
    if (!cfg) return 0;
    const struct cge_family *fams[] = {&cge__family_bert, &cge__family_roberta, &cge__family_mpnet, &cge__family_t5};
    struct cge_model_params p = cge_model_default_params();
    for (int i = 0; i < 4; i++) {
        (void)fams[i]->matches(cfg);
        struct cge_family_load lc;
        memset(&lc, 0, sizeof lc);
        lc.dir = "fuzz";
        lc.config = cfg;
        lc.w = weights;
        lc.p = &p;
        void *impl = NULL;
        if (fams[i]->load(&lc, &impl) != CGE_OK) continue;
        if (lc.hidden <= 0 || lc.hidden > 64) abort();
        int32_t ids[3] = {0, 1, (int32_t)(lc.vocab_size - 1)};
        int64_t len = 3;
        float *h = malloc((size_t)(3 * lc.hidden) * sizeof *h);
        (void)fams[i]->forward_text(impl, ids, &len, 1, 3, h);
        free(h);
        fams[i]->free(impl);
    }
    cJSON_Delete(cfg);
    return 0;
}
