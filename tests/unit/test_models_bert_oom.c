/*
 * test_models_bert_oom.c: allocation failure at every point of loading a model folder (the BERT
 * and T5 e2e folders: config, weights, tokenizer, sentence-transformers heads, Dense) and of an
 * embed call: each must end in a clean status (never a crash; ASan checks for leaks), and with
 * allocation working again the same calls must succeed.
 */
#include "testhelp.h"

#include "core/core.h"
#include "models/model.h"

static void oom_case(const char *dir, long max_points, int with_text) {
    /* Count the allocations of one successful load + embed. */
    const char *text = "The quick brown fox";
    struct cge_input in[2] = {{0}, {0}};
    in[0].text = text;
    in[0].text_len = strlen(text);
    in[1].text = "hi";
    in[1].text_len = 2;
    if (!with_text) {
        static const int32_t ids[2][4] = {{101, 5, 7, 102}, {101, 102, 0, 0}};
        memset(in, 0, sizeof in);
        in[0].ids = ids[0];
        in[0].n_ids = 4;
        in[1].ids = ids[1];
        in[1].n_ids = 2;
    }
    long a0 = cge__alloc_count();
    struct cge_model *m = NULL;
    CHECK(cge_model_load(dir, NULL, &m) == CGE_OK);
    long n_load = cge__alloc_count() - a0;
    if (!m) return;
    float out[2 * 64];
    long b0 = cge__alloc_count();
    CHECK(cge_model_embed(m, in, 2, out, NULL) == CGE_OK);
    long n_embed = cge__alloc_count() - b0;
    int clean = 1;
    for (long k = 0; k < n_embed; k++) {
        cge__fail_alloc_after(k);
        enum cge_status st = cge_model_embed(m, in, 2, out, NULL);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) continue; /* that allocation was optional */
        clean &= st == CGE_ERR_NOMEM || st == CGE_ERR_TOKENIZE || st == CGE_ERR_BATCH;
    }
    CHECK_MSG(clean, "%s: embed under OOM gave an unexpected status", dir);
    cge_model_free(m);

    /* Every allocation of the load, or max_points of them spread evenly (loading a real
     * tokenizer.json takes a while). */
    long step = n_load > max_points ? n_load / max_points : 1;
    int bad = 0;
    for (long k = 0; k < n_load; k += step) {
        struct cge_model *mm = NULL;
        cge__fail_alloc_after(k);
        enum cge_status st = cge_model_load(dir, NULL, &mm);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) {
            cge_model_free(mm);
            continue;
        }
        if (mm != NULL) bad++;
    }
    CHECK(bad == 0);
    printf("  %s: %ld load and %ld embed allocations failed one at a time\n", dir, n_load, n_embed);
    CHECK(cge_model_load(dir, NULL, &m) == CGE_OK);
    cge_model_free(m);
}

static void test_oom(void) {
    oom_case("tests/fixtures/models/bert", 100000, 0);
    oom_case("tests/fixtures/models/t5_gated_gelu", 100000, 0);
    oom_case("tests/fixtures/e2e/bert_mean_l2/model", 12, 1);
    oom_case("tests/fixtures/e2e/t5_mean_dense_l2/model", 12, 1);
}

int main(void) {
    RUN(test_oom);
    return test_report("models_bert_oom");
}
