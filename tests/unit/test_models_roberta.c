/*
 * test_models_roberta.c: the roberta fixture (tests/fixtures/models/roberta, written by transformers) through
 * cge's loader and forward: last_hidden_state, pooler_output and mean_pooled to rel err < 1e-5,
 * the embed pipeline on input ids, a padded mixed-length batch vs each row alone, and bf16/int8
 * weight storage (cosine >= 0.9999 / 0.999 to the fp32 reference).
 */
#include "test_models_encoder_common.h"

static void test_fixture(void) {
    enc_run_bertlike("roberta", 1);
}

int main(void) {
    RUN(test_fixture);
    return test_report("models_roberta");
}
