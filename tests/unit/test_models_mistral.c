/*
 * test_models_mistral.c: the Mistral decoder against transformers' MistralModel outputs
 * (tests/fixtures/models/mistral), padded batches, quantized storage, malformed configs.
 */
#include "core/core.h"
#include "models/model.h"
#include "tensor/ops.h"
#include "testhelp.h"

#include <cjson/cJSON.h>

extern const struct cge_family cge__family_mistral;

#define DIR "tests/fixtures/models/mistral"

static const int32_t ids_ref[2][11] = {{1, 907, 403, 98, 307, 808, 677, 399, 160, 338, 2},
                                       {1, 793, 411, 96, 258, 369, 15, 66, 609, 964, 2}};

struct loaded {
    struct cge_weights *w;
    cJSON *config;
    void *impl;
    int64_t hidden;
};

static enum cge_status load(struct loaded *ld, enum cge_dtype dtype, cJSON *config) {
    memset(ld, 0, sizeof *ld);
    enum cge_status st = cge_weights_open(DIR "/model.safetensors", &ld->w);
    if (st) return st;
    if (config) {
        ld->config = config;
    } else if ((st = cge__json_read_file(DIR "/config.json", &ld->config))) {
        return st;
    }
    /* Only the dtype matters to a family (not cge_model_default_params: that is model.c's). */
    struct cge_model_params p = {.dtype = dtype};
    struct cge_family_load lc = {.dir = DIR, .config = ld->config, .w = ld->w, .p = &p};
    st = cge__family_mistral.load(&lc, &ld->impl);
    ld->hidden = lc.hidden;
    return st;
}

static void unload(struct loaded *ld) {
    cge__family_mistral.free(ld->impl);
    cge_weights_free(ld->w);
    cJSON_Delete(ld->config);
}

static void test_fixture(void) {
    struct loaded ld;
    enum cge_status st = load(&ld, CGE_DTYPE_F32, NULL);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    if (st) return;
    CHECK(ld.hidden == 64);
    CHECK(cge__family_mistral.matches(ld.config));
    size_t n_ref, n_last;
    float *ref = th_read_f32(DIR "/last_hidden_state.bin", &n_ref);
    float *last = th_read_f32(DIR "/last_token.bin", &n_last);
    float *mean = th_read_f32(DIR "/mean_pooled.bin", NULL);
    CHECK(ref && n_ref == 2 * 11 * 64 && last && n_last == 2 * 64 && mean);
    float out[2 * 11 * 64];
    int64_t len[2] = {11, 11};
    st = cge__family_mistral.forward_text(ld.impl, &ids_ref[0][0], len, 2, 11, out);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    double e = th_rel_err(out, ref, n_ref);
    printf("  mistral fp32: last_hidden_state rel err %.2e\n", e);
    CHECK_MSG(e < 1e-5, "last_hidden_state rel err %g", e);
    for (int b = 0; b < 2; b++) {
        e = th_rel_err(out + (b * 11 + 10) * 64, last + b * 64, 64);
        CHECK_MSG(e < 1e-5, "last_token[%d] rel err %g", b, e);
        float m[64] = {0};
        for (int t = 0; t < 11; t++)
            for (int d = 0; d < 64; d++) m[d] += out[(b * 11 + t) * 64 + d] / 11.0f;
        e = th_rel_err(m, mean + b * 64, 64);
        CHECK_MSG(e < 1e-5, "mean_pooled[%d] rel err %g", b, e);
    }

    /* Right padding: a shorter row in a padded batch equals that row alone. */
    int32_t ids2[2 * 11];
    memcpy(ids2, ids_ref, sizeof ids2);
    for (int t = 6; t < 11; t++) ids2[11 + t] = 2; /* row 1 = first 6 tokens + padding */
    int64_t len2[2] = {11, 6};
    float padded[2 * 11 * 64], alone[6 * 64];
    CHECK(cge__family_mistral.forward_text(ld.impl, ids2, len2, 2, 11, padded) == CGE_OK);
    int64_t len1 = 6;
    CHECK(cge__family_mistral.forward_text(ld.impl, ids2 + 11, &len1, 1, 6, alone) == CGE_OK);
    e = th_rel_err(padded + 11 * 64, alone, 6 * 64);
    CHECK_MSG(e < 1e-6, "padded row vs alone rel err %g", e);
    e = th_rel_err(padded, ref, 11 * 64);
    CHECK_MSG(e < 1e-5, "row 0 next to a padded row: rel err %g", e);
    /* Causality: the 6-token prefix equals the first 6 rows of the full sequence. */
    e = th_rel_err(alone, ref + 11 * 64, 6 * 64);
    CHECK_MSG(e < 1e-5, "prefix vs full sequence rel err %g", e);

    /* Out-of-range id: a clean error. */
    int32_t bad[3] = {1, 1000, 2};
    int64_t len3 = 3;
    CHECK(cge__family_mistral.forward_text(ld.impl, bad, &len3, 1, 3, out) == CGE_ERR_INVALID_VALUE);
    free(ref);
    free(last);
    free(mean);
    unload(&ld);
}

/* The folder through cge_model_load: with no sentence-transformers files it gives the last
 * token's hidden state as transformers does, not normalized. */
static void test_bare_folder(void) {
    struct cge_model *m = NULL;
    CHECK_MSG(cge_model_load(DIR, NULL, &m) == CGE_OK, "%s", cge_errmsg());
    if (!m) return;
    float *last = th_read_f32(DIR "/last_token.bin", NULL);
    struct cge_input in[2];
    memset(in, 0, sizeof in);
    for (int b = 0; b < 2; b++) {
        in[b].ids = ids_ref[b];
        in[b].n_ids = 11;
    }
    float out[2 * 64];
    CHECK(cge_model_dim(m) == 64 && cge_model_embed(m, in, 2, out, NULL) == CGE_OK);
    for (int b = 0; b < 2 && last; b++) {
        double e = th_rel_err(out + b * 64, last + b * 64, 64), norm = 0;
        for (int d = 0; d < 64; d++) norm += (double)out[b * 64 + d] * out[b * 64 + d];
        CHECK_MSG(e < 1e-5, "bare folder row %d: rel err %g", b, e);
        CHECK_MSG(fabs(sqrt(norm) - 1) > 0.1, "bare folder row %d was normalized", b);
    }
    free(last);
    cge_model_free(m);
}

/* bf16 and int8 storage against fp32, on the last-token embedding. */
static void test_quantized(void) {
    struct loaded f32, q;
    int64_t len[2] = {11, 11};
    float ref[2 * 11 * 64], out[2 * 11 * 64];
    if (load(&f32, CGE_DTYPE_F32, NULL)) {
        CHECK_MSG(0, "%s", cge_errmsg());
        return;
    }
    CHECK(cge__family_mistral.forward_text(f32.impl, &ids_ref[0][0], len, 2, 11, ref) == CGE_OK);
    unload(&f32);
    const enum cge_dtype dts[2] = {CGE_DTYPE_BF16, CGE_DTYPE_I8};
    const double bars[2] = {0.9999, 0.999};
    for (int k = 0; k < 2; k++) {
        enum cge_status st = load(&q, dts[k], NULL);
        CHECK_MSG(st == CGE_OK, "%s: %s", cge_dtype_str(dts[k]), cge_errmsg());
        if (st) continue;
        CHECK(cge__family_mistral.forward_text(q.impl, &ids_ref[0][0], len, 2, 11, out) == CGE_OK);
        for (int b = 0; b < 2; b++) {
            double c = th_cosine(out + (b * 11 + 10) * 64, ref + (b * 11 + 10) * 64, 64);
            printf("  mistral %s: last-token cosine to fp32 %.7f\n", cge_dtype_str(dts[k]), c);
            CHECK_MSG(c >= bars[k], "%s last-token cosine %.6f", cge_dtype_str(dts[k]), c);
        }
        unload(&q);
    }
}

static void test_bad_configs(void) {
    static const char *const bad[] = {
        "{\"model_type\":\"mistral\"}",
        "{\"model_type\":\"mistral\",\"vocab_size\":1000,\"hidden_size\":64,\"intermediate_size\":224,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":3,\"num_key_value_heads\":2}",
        "{\"model_type\":\"mistral\",\"vocab_size\":1000,\"hidden_size\":64,\"intermediate_size\":224,"
        "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2}",
        "{\"model_type\":\"mistral\",\"vocab_size\":1001,\"hidden_size\":64,\"intermediate_size\":224,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2}",
        "{\"model_type\":\"mistral\",\"vocab_size\":\"x\",\"hidden_size\":64}",
        "{\"model_type\":\"mistral\",\"vocab_size\":1000,\"hidden_size\":64,\"intermediate_size\":224,"
        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
        "\"rms_norm_eps\":-1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct loaded ld;
        enum cge_status st = load(&ld, CGE_DTYPE_F32, cJSON_Parse(bad[i]));
        CHECK_MSG(st == CGE_ERR_MODEL_LOAD, "config %zu: status %d", i, st);
        CHECK(strlen(cge_errmsg()) > 0);
        unload(&ld);
    }
}

int main(void) {
    RUN(test_fixture);
    RUN(test_bare_folder);
    RUN(test_quantized);
    RUN(test_bad_configs);
    return test_report("models_mistral");
}
