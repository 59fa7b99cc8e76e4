/*
 * test_models_t5.c: the T5 encoder fixtures (tests/fixtures/models/t5_relu, t5_gated_gelu,
 * written by transformers' T5EncoderModel): last_hidden_state and mean_pooled to rel err < 1e-5,
 * the embed pipeline on input ids, a padded mixed-length batch vs each row alone, a sequence
 * longer than max_distance, and bf16/int8 weight storage against the fp32 reference.
 */
#include "test_models_encoder_common.h"

static void run_t5(const char *arch) {
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
    CHECK(!strcmp(cge_model_family(m), "t5"));
    int64_t d = cge_model_dim(m);
    size_t n_ref = 0;
    float *ref_h = enc_expected(&c, "last_hidden_state", &n_ref);
    float *ref_m = enc_expected(&c, "mean_pooled", NULL);
    CHECK(ref_h && ref_m && n_ref == (size_t)(c.B * c.L * d));
    float *h = malloc((size_t)(c.B * c.L * d) * sizeof *h);
    float *o = malloc((size_t)(c.B * d) * sizeof *o);
    st = cge__model_family(m)->forward_text(cge__model_impl(m), c.ids, c.len, c.B, c.L, h);
    CHECK_MSG(st == CGE_OK, "forward: %s", cge_errmsg());
    double e_h = enc_hidden_err(&c, h, ref_h, d);
    CHECK_MSG(e_h < 1e-5, "%s last_hidden_state rel err %.3g", arch, e_h);
    CHECK(cge__pool(CGE_POOL_MEAN, h, c.B, c.L, d, c.len, NULL, o) == CGE_OK);
    double e_m = enc_rows_err(o, ref_m, c.B, d);
    CHECK_MSG(e_m < 1e-5, "%s mean_pooled rel err %.3g", arch, e_m);
    printf("  %s: max rel err last_hidden_state %.3g, mean_pooled %.3g\n", arch, e_h, e_m);

    for (int64_t b = 0; b < c.B; b++) {
        struct cge_input in = {0};
        in.ids = c.ids + b * c.L;
        in.n_ids = c.len[b];
        struct cge_embed_info info;
        CHECK(cge_model_embed(m, &in, 1, o, &info) == CGE_OK && info.status == CGE_OK);
        double e = th_rel_err(o, ref_m + b * d, (size_t)d);
        CHECK_MSG(e < 1e-5, "%s cge_model_embed row %lld rel err %.3g", arch, (long long)b, e);
    }
    enc_check_mixed_batch(m, &c, d, 0, enc_forward_generic, NULL);
    enc_check_dtypes(&c, ref_m, d);

    /* 300 tokens (beyond max_distance 128): a batch row padded to 300 equals the row alone. */
    {
        int64_t L = 300, B = 2, len[2] = {300, 170};
        int32_t *ids = malloc((size_t)(B * L) * sizeof *ids);
        for (int64_t i = 0; i < B * L; i++) ids[i] = (int32_t)((i * 7919) % 999 + 1);
        for (int64_t t = len[1]; t < L; t++) ids[L + t] = 0;
        float *hb = malloc((size_t)(B * L * d) * sizeof *hb);
        float *h1 = malloc((size_t)(L * d) * sizeof *h1);
        CHECK(cge__model_family(m)->forward_text(cge__model_impl(m), ids, len, B, L, hb) == CGE_OK);
        CHECK(cge__model_family(m)->forward_text(cge__model_impl(m), ids + L, &len[1], 1, len[1], h1) == CGE_OK);
        double e = th_rel_err(hb + L * d, h1, (size_t)(len[1] * d));
        CHECK_MSG(e < 1e-5, "long padded row vs alone: %.3g", e);
        free(ids);
        free(hb);
        free(h1);
    }
    free(h);
    free(o);
    free(ref_h);
    free(ref_m);
    cge_model_free(m);
    enc_case_free(&c);
}

static void test_t5_relu(void) {
    run_t5("t5_relu");
}

static void test_t5_gated_gelu(void) {
    run_t5("t5_gated_gelu");
}

int main(void) {
    RUN(test_t5_relu);
    RUN(test_t5_gated_gelu);
    return test_report("models_t5");
}
