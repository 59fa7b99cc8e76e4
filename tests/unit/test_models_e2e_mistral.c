/*
 * test_models_e2e_mistral.c: E5-Mistral end to end (tests/fixtures/e2e/mistral_last_token): a
 * model folder with only tokenizer.model (SentencePiece BPE, byte fallback), BOS + text + EOS
 * truncated to max_seq_length, the "Instruct: …\nQuery: …" format for an input with an
 * instruction, last-token pooling and L2, against transformers' expected.f32 — in one padded
 * batch and one input at a time, in fp32, and bf16 / int8 storage against fp32 by cosine.
 */
#include "testhelp.h"

#include "core/core.h"
#include "models/model.h"

#include <cjson/cJSON.h>

#define CASE "tests/fixtures/e2e/mistral_last_token"
#define MAXN 16

static void test_e2e(void) {
    char *txt = th_read_file(CASE "/case.json", NULL);
    cJSON *cj = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    CHECK(cj != NULL);
    if (!cj) return;
    const int dim = cJSON_GetObjectItem(cj, "dim")->valueint;
    const int n = cJSON_GetObjectItem(cj, "n_inputs")->valueint;
    const cJSON *tids = cJSON_GetObjectItem(cj, "token_ids");
    size_t n_exp = 0;
    float *exp = th_read_f32(CASE "/expected.f32", &n_exp);
    CHECK(exp && n_exp == (size_t)(n * dim) && n <= MAXN);

    char *lines = th_read_file(CASE "/inputs.jsonl", NULL);
    struct cge_input in[MAXN];
    cJSON *docs[MAXN] = {0};
    memset(in, 0, sizeof in);
    char *save = NULL;
    int k = 0, n_instr = 0;
    for (char *ln = strtok_r(lines, "\n", &save); ln && k < n; ln = strtok_r(NULL, "\n", &save)) {
        docs[k] = cJSON_Parse(ln);
        in[k].text = cJSON_GetObjectItem(docs[k], "text")->valuestring;
        in[k].text_len = strlen(in[k].text);
        const cJSON *ins = cJSON_GetObjectItem(docs[k], "instruction");
        if (cJSON_IsString(ins)) {
            in[k].instruction = ins->valuestring;
            n_instr++;
        }
        k++;
    }
    CHECK(k == n && n_instr == 1);

    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(CASE "/model", NULL, &m);
    CHECK_MSG(st == CGE_OK, "load: %s", cge_errmsg());
    float out[MAXN * 64], one[64], ref[MAXN * 64];
    struct cge_embed_info info[MAXN];
    if (st == CGE_OK) {
        CHECK(!strcmp(cge_model_family(m), "mistral") && cge_model_dim(m) == dim && dim <= 64);
        CHECK(cge_model_max_seq_len(m) == 64);
        CHECK(cge_model_embed(m, in, n, out, info) == CGE_OK);
        double worst = 0, worst1 = 0;
        for (int i = 0; i < n; i++) {
            CHECK_MSG(info[i].status == CGE_OK, "input %d: %s", i, info[i].errmsg);
            CHECK(info[i].n_tokens == cJSON_GetArraySize(cJSON_GetArrayItem(tids, i)));
            double e = th_rel_err(out + i * dim, exp + i * dim, (size_t)dim);
            if (e > worst) worst = e;
            CHECK(cge_model_embed(m, &in[i], 1, one, NULL) == CGE_OK);
            e = th_rel_err(one, exp + i * dim, (size_t)dim);
            if (e > worst1) worst1 = e;
        }
        printf("  mistral_last_token: max rel err batched %.3g, alone %.3g\n", worst, worst1);
        CHECK_MSG(worst < 1e-5, "batched rel err %.3g", worst);
        CHECK_MSG(worst1 < 1e-5, "one-at-a-time rel err %.3g", worst1);
        memcpy(ref, out, sizeof(float) * (size_t)(n * dim));
        cge_model_free(m);
    }

    /* Quantized storage: same pipeline, cosine to the fp32 result. */
    const enum cge_dtype dts[2] = {CGE_DTYPE_BF16, CGE_DTYPE_I8};
    const double bars[2] = {0.9999, 0.999};
    for (int d = 0; d < 2 && st == CGE_OK; d++) {
        struct cge_model_params p = cge_model_default_params();
        p.dtype = dts[d];
        CHECK(cge_model_load(CASE "/model", &p, &m) == CGE_OK);
        if (!m) continue;
        CHECK(cge_model_embed(m, in, n, out, NULL) == CGE_OK);
        double worst = 1;
        for (int i = 0; i < n; i++) {
            double c = th_cosine(out + i * dim, ref + i * dim, (size_t)dim);
            if (c < worst) worst = c;
        }
        printf("  mistral_last_token %s: min cosine to fp32 %.6f\n", cge_dtype_str(dts[d]), worst);
        CHECK_MSG(worst >= bars[d], "%s cosine %.6f", cge_dtype_str(dts[d]), worst);
        cge_model_free(m);
        m = NULL;
    }
    for (int i = 0; i < n; i++) cJSON_Delete(docs[i]);
    free(lines);
    free(exp);
    cJSON_Delete(cj);
}

int main(void) {
    RUN(test_e2e);
    return test_report("models_e2e_mistral");
}
