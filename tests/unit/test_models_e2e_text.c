/*
 * test_models_e2e_text.c: text in, embedding out, through the real tokenizer files of
 * tests/fixtures/e2e/<case>/model (folders as a user downloads them): the token ids must equal
 * case.json token_ids exactly, then every row of cge_model_embed (all inputs in one call, so in
 * padded batches, and one at a time) must match expected.f32 to rel err < 1e-5.
 */
#include "testhelp.h"

#include "core/core.h"
#include "models/heads.h"
#include "models/model.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static void run_case(const char *name, const char *family, int normalized) {
    char dir[256], p[512];
    snprintf(dir, sizeof dir, "tests/fixtures/e2e/%s", name);
    snprintf(p, sizeof p, "%s/case.json", dir);
    char *txt = th_read_file(p, NULL);
    cJSON *cj = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    CHECK(cj != NULL);
    if (!cj) return;
    int dim = cJSON_GetObjectItem(cj, "dim")->valueint;
    int n = cJSON_GetObjectItem(cj, "n_inputs")->valueint;
    const cJSON *tids = cJSON_GetObjectItem(cj, "token_ids");
    snprintf(p, sizeof p, "%s/expected.f32", dir);
    size_t n_exp = 0;
    float *exp = th_read_f32(p, &n_exp);
    CHECK(exp && n_exp == (size_t)(n * dim));

    /* inputs.jsonl */
    snprintf(p, sizeof p, "%s/inputs.jsonl", dir);
    char *lines = th_read_file(p, NULL);
    CHECK(lines != NULL);
    struct cge_input *in = calloc((size_t)n, sizeof *in);
    cJSON **docs = calloc((size_t)n, sizeof *docs);
    char *save = NULL;
    int k = 0;
    for (char *ln = strtok_r(lines, "\n", &save); ln && k < n; ln = strtok_r(NULL, "\n", &save)) {
        docs[k] = cJSON_Parse(ln);
        const cJSON *t = cJSON_GetObjectItem(docs[k], "text");
        in[k].text = t->valuestring;
        in[k].text_len = strlen(t->valuestring);
        k++;
    }
    CHECK(k == n);

    snprintf(p, sizeof p, "%s/model", dir);
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(p, NULL, &m);
    CHECK_MSG(st == CGE_OK, "%s: load: %s", name, cge_errmsg());
    if (st) goto out;
    CHECK_MSG(!strcmp(cge_model_family(m), family), "%s: family %s", name, cge_model_family(m));
    CHECK(cge_model_dim(m) == dim);
    const int64_t max_len = cge_model_max_seq_len(m);
    CHECK(max_len == cJSON_GetObjectItem(cJSON_GetObjectItem(cj, "tokenization"), "max_length")->valueint);

    /* Token ids. */
    int ids_ok = 1;
    for (int i = 0; i < n; i++) {
        int32_t *ids = NULL;
        int64_t ni = 0;
        int trunc = 0;
        st = cge_tokenizer_encode(cge__model_tokenizer(m), in[i].text, in[i].text_len, 1, max_len, &ids, &ni, &trunc);
        const cJSON *want = cJSON_GetArrayItem(tids, i);
        int same = st == CGE_OK && ni == cJSON_GetArraySize(want);
        for (int64_t t = 0; same && t < ni; t++) same = ids[t] == cJSON_GetArrayItem(want, (int)t)->valueint;
        CHECK_MSG(same, "%s input %d: token ids differ (%lld vs %d ids)", name, i, (long long)ni, cJSON_GetArraySize(want));
        ids_ok &= same;
        cge__free(ids);
    }

    /* All inputs in one call (padded batches) and one at a time. */
    float *out = calloc((size_t)(n * dim), sizeof *out);
    struct cge_embed_info *info = calloc((size_t)n, sizeof *info);
    st = cge_model_embed(m, in, n, out, info);
    CHECK(st == CGE_OK);
    double worst = 0, worst1 = 0;
    for (int i = 0; i < n; i++) {
        CHECK_MSG(info[i].status == CGE_OK, "%s input %d: %s", name, i, info[i].errmsg);
        CHECK(info[i].n_tokens == cJSON_GetArraySize(cJSON_GetArrayItem(tids, i)));
        double e = th_rel_err(out + i * dim, exp + i * dim, (size_t)dim);
        if (e > worst) worst = e;
        float one[64];
        CHECK(cge_model_embed(m, &in[i], 1, one, NULL) == CGE_OK);
        e = th_rel_err(one, exp + i * dim, (size_t)dim);
        if (e > worst1) worst1 = e;
        if (normalized) {
            double nn = 0;
            for (int j = 0; j < dim; j++) nn += (double)one[j] * one[j];
            CHECK_NEAR(sqrt(nn), 1.0, 1e-5);
        }
    }
    CHECK_MSG(worst < 1e-5, "%s: batched rel err %.3g", name, worst);
    CHECK_MSG(worst1 < 1e-5, "%s: one-at-a-time rel err %.3g", name, worst1);
    printf("  %s: token ids %s, max rel err batched %.3g, alone %.3g\n", name, ids_ok ? "equal" : "DIFFER", worst, worst1);
    /* Truncation is reported. */
    for (int i = 0; i < n; i++) {
        const cJSON *ji = cJSON_GetArrayItem(cJSON_GetObjectItem(cj, "inputs"), i);
        CHECK(info[i].truncated == cJSON_IsTrue(cJSON_GetObjectItem(ji, "truncated")));
    }
    free(out);
    free(info);
    cge_model_free(m);

    /* --no-truncate: the long inputs fail, the others still run. */
    struct cge_model_params prm = cge_model_default_params();
    prm.no_truncate = 1;
    st = cge_model_load(p, &prm, &m);
    CHECK(st == CGE_OK);
    if (!st) {
        out = calloc((size_t)(n * dim), sizeof *out);
        info = calloc((size_t)n, sizeof *info);
        CHECK(cge_model_embed(m, in, n, out, info) == CGE_OK);
        for (int i = 0; i < n; i++) {
            const cJSON *ji = cJSON_GetArrayItem(cJSON_GetObjectItem(cj, "inputs"), i);
            int tr = cJSON_IsTrue(cJSON_GetObjectItem(ji, "truncated"));
            CHECK(info[i].status == (tr ? CGE_ERR_INPUT_TOO_LONG : CGE_OK));
            if (!tr) CHECK(th_rel_err(out + i * dim, exp + i * dim, (size_t)dim) < 1e-5);
        }
        free(out);
        free(info);
        cge_model_free(m);
    }
out:
    for (int i = 0; i < n; i++) cJSON_Delete(docs[i]);
    free(docs);
    free(in);
    free(lines);
    free(exp);
    cJSON_Delete(cj);
}

static void test_bert_mean_l2(void) {
    run_case("bert_mean_l2", "bert", 1);
}
static void test_bert_cls(void) {
    run_case("bert_cls", "bert", 1);
}
static void test_roberta_mean(void) {
    run_case("roberta_mean", "roberta", 0);
}
static void test_mpnet_mean_l2(void) {
    run_case("mpnet_mean_l2", "mpnet", 1);
}
static void test_t5_mean_dense_l2(void) {
    run_case("t5_mean_dense_l2", "t5", 1);
}

/* One loaded model shared by four threads, each embedding every input: rows equal expected. */
struct thread_job {
    const struct cge_model *m;
    const struct cge_input *in;
    int n, dim;
    const float *exp;
    double worst;
    int failed;
};

static void *thread_main(void *arg) {
    struct thread_job *j = arg;
    float *out = malloc((size_t)(j->n * j->dim) * sizeof *out);
    for (int rep = 0; rep < 3; rep++) {
        if (cge_model_embed(j->m, j->in, j->n, out, NULL) != CGE_OK) j->failed = 1;
        for (int i = 0; i < j->n; i++) {
            double e = th_rel_err(out + i * j->dim, j->exp + i * j->dim, (size_t)j->dim);
            if (e > j->worst) j->worst = e;
        }
    }
    free(out);
    return NULL;
}

static void test_threads(void) {
    const char *dir = "tests/fixtures/e2e/mpnet_mean_l2";
    char p[300];
    snprintf(p, sizeof p, "%s/expected.f32", dir);
    size_t n_exp = 0;
    float *exp = th_read_f32(p, &n_exp);
    snprintf(p, sizeof p, "%s/inputs.jsonl", dir);
    char *lines = th_read_file(p, NULL);
    CHECK(exp && lines);
    if (!exp || !lines) return;
    struct cge_input in[8];
    cJSON *docs[8];
    int n = 0;
    char *save = NULL;
    for (char *ln = strtok_r(lines, "\n", &save); ln && n < 8; ln = strtok_r(NULL, "\n", &save)) {
        docs[n] = cJSON_Parse(ln);
        memset(&in[n], 0, sizeof in[n]);
        in[n].text = cJSON_GetObjectItem(docs[n], "text")->valuestring;
        in[n].text_len = strlen(in[n].text);
        n++;
    }
    snprintf(p, sizeof p, "%s/model", dir);
    struct cge_model *m = NULL;
    CHECK(cge_model_load(p, NULL, &m) == CGE_OK);
    if (m) {
        pthread_t th[4];
        struct thread_job jobs[4];
        for (int t = 0; t < 4; t++) {
            jobs[t] = (struct thread_job){m, in, n, cge_model_dim(m), exp, 0, 0};
            CHECK(pthread_create(&th[t], NULL, thread_main, &jobs[t]) == 0);
        }
        for (int t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            CHECK(!jobs[t].failed);
            CHECK_MSG(jobs[t].worst < 1e-5, "thread %d: rel err %.3g", t, jobs[t].worst);
        }
        cge_model_free(m);
    }
    for (int i = 0; i < n; i++) cJSON_Delete(docs[i]);
    free(lines);
    free(exp);
}

/* INSTRUCTOR (slot E3 of the shared ensemble fixture, tests/fixtures/ensemble): the model reads
 * instruction.strip() + text.strip(), and the mean leaves out the instruction's tokens (its token
 * count with </s>, minus one). Every text and code input against expected.jsonl's E3 row, which
 * transformers 4.40.2 computed (README there, §3.2 E3); input #3 carries the instruction. */
static void test_instruction_t5(void) {
    const char *fx = "tests/fixtures/ensemble";
    char p[300];
    snprintf(p, sizeof p, "%s/inputs.jsonl", fx);
    char *inputs = th_read_file(p, NULL);
    snprintf(p, sizeof p, "%s/expected.jsonl", fx);
    char *expected = th_read_file(p, NULL);
    snprintf(p, sizeof p, "%s/case.json", fx);
    char *case_txt = th_read_file(p, NULL);
    cJSON *cj = case_txt ? cJSON_Parse(case_txt) : NULL;
    free(case_txt);
    struct cge_model *m = NULL;
    snprintf(p, sizeof p, "%s/ensemble/E3", fx);
    enum cge_status st = cge_model_load(p, NULL, &m);
    CHECK_MSG(st == CGE_OK, "E3: load: %s", cge_errmsg());
    CHECK(inputs && expected && cj);
    if (!m || !inputs || !expected || !cj) goto out;
    const cJSON *tids = cJSON_GetObjectItem(cJSON_GetObjectItem(cj, "token_ids"), "E3");
    const int dim = cge_model_dim(m);
    CHECK(dim == 40);
    char *save_i = NULL, *save_e = NULL;
    char *li = strtok_r(inputs, "\n", &save_i), *le = strtok_r(expected, "\n", &save_e);
    int n_text = 0, n_instr = 0;
    for (int i = 0; li && le; i++, li = strtok_r(NULL, "\n", &save_i), le = strtok_r(NULL, "\n", &save_e)) {
        cJSON *ji = cJSON_Parse(li), *je = cJSON_Parse(le);
        const cJSON *t = cJSON_GetObjectItem(ji, "text");
        if (!t) t = cJSON_GetObjectItem(ji, "code");
        const cJSON *ins = cJSON_GetObjectItem(ji, "instruction");
        const cJSON *ref = cJSON_GetObjectItem(cJSON_GetObjectItem(je, "slots"), "E3");
        CHECK_MSG(cJSON_IsString(t) == cJSON_IsArray(ref), "input %d: E3 row %s", i, cJSON_IsArray(ref) ? "present" : "null");
        if (cJSON_IsString(t) && cJSON_GetArraySize(ref) == dim) {
            struct cge_input in = {0};
            in.text = t->valuestring;
            in.text_len = strlen(t->valuestring);
            in.instruction = cJSON_IsString(ins) ? ins->valuestring : NULL;
            float got[40], want[40];
            struct cge_embed_info info;
            CHECK(cge_model_embed(m, &in, 1, got, &info) == CGE_OK && info.status == CGE_OK);
            CHECK_MSG(info.n_tokens == cJSON_GetArraySize(cJSON_GetArrayItem(tids, i)), "input %d: %lld tokens",
                      i, (long long)info.n_tokens);
            for (int j = 0; j < dim; j++) want[j] = (float)cJSON_GetArrayItem(ref, j)->valuedouble;
            double e = th_rel_err(got, want, (size_t)dim);
            CHECK_MSG(e <= 1e-5, "E3 input %d%s: rel err %.3g", i, in.instruction ? " (instruction)" : "", e);
            n_text++;
            if (in.instruction) {
                n_instr++;
                /* Without the instruction the vector is another one (the reference depends on it). */
                in.instruction = NULL;
                CHECK(cge_model_embed(m, &in, 1, got, NULL) == CGE_OK);
                CHECK(th_rel_err(got, want, (size_t)dim) > 1e-3);
            }
        }
        cJSON_Delete(ji);
        cJSON_Delete(je);
    }
    CHECK_MSG(n_text == 8 && n_instr == 1, "%d text inputs, %d with an instruction", n_text, n_instr);
out:
    cge_model_free(m);
    cJSON_Delete(cj);
    free(inputs);
    free(expected);
}

/* A sentence-transformers Pooling config with include_prompt false: an instruction is a prefix
 * whose tokens ([CLS] + prompt pieces, as sentence-transformers counts them: the prompt's length
 * without its final [SEP]) leave the mean. No transformers reference exists for this case, so
 * this checks an invariant, not a value: the embedding equals the normalized mean of the hidden
 * states over the window sentence-transformers keeps. The ids are written out from vocab.txt
 * (not made by cge's tokenizer), the window (3 tokens out) is the one sentence-transformers
 * computes, and the hidden states come from the BERT forward that the bert_mean_l2 case of this
 * program checks against transformers. */
static void test_include_prompt_false(void) {
    char dir[] = "/tmp/cge_test_prompt_XXXXXX", p[600], src[900], cwd[512];
    int have_dir = mkdtemp(dir) != NULL, have_cwd = getcwd(cwd, sizeof cwd) != NULL;
    CHECK_MSG(have_dir && have_cwd, "mkdtemp/getcwd: cannot build the model folder");
    if (!have_dir || !have_cwd) return;
    static const char *const files[] = {"config.json", "model.safetensors", "modules.json", "tokenizer.json",
                                        "tokenizer_config.json", "sentence_bert_config.json", "vocab.txt",
                                        "special_tokens_map.json"};
    for (int i = 0; i < 8; i++) {
        snprintf(src, sizeof src, "%s/tests/fixtures/e2e/bert_mean_l2/model/%s", cwd, files[i]);
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        CHECK(symlink(src, p) == 0);
    }
    snprintf(p, sizeof p, "%s/1_Pooling", dir);
    CHECK(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/1_Pooling/config.json", dir);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"word_embedding_dimension\": 32, \"pooling_mode_mean_tokens\": true, \"include_prompt\": false}", f);
        fclose(f);
    }
    struct cge_model *m = NULL;
    CHECK(cge_model_load(dir, NULL, &m) == CGE_OK);
    if (m) {
        const char *prompt = "query: ", *text = "Hello world";
        struct cge_input in = {0};
        in.text = text;
        in.text_len = strlen(text);
        in.instruction = prompt;
        float got[32];
        struct cge_embed_info info;
        CHECK(cge_model_embed(m, &in, 1, got, &info) == CGE_OK && info.status == CGE_OK);
        /* vocab.txt (line - 1): [CLS] query : hello world [SEP]; "query: " alone is 4 ids with
         * its [SEP], so sentence-transformers leaves out the first 3 positions. */
        int32_t ids[6] = {101, 23032, 1024, 7592, 2088, 102};
        int64_t n = 6;
        const int64_t excluded = 3;
        int32_t *tids = NULL;
        int64_t nt = 0;
        CHECK(cge_tokenizer_encode(cge__model_tokenizer(m), "query: Hello world", 18, 1, 64, &tids, &nt, NULL) == CGE_OK);
        CHECK(nt == n && tids && !memcmp(tids, ids, sizeof ids));
        CHECK(info.n_tokens == n);
        float h[6 * 32];
        CHECK(cge__model_family(m)->forward_text(cge__model_impl(m), ids, &n, 1, n, h) == CGE_OK);
        double want[32] = {0}, nn = 0;
        for (int64_t t = excluded; t < n; t++)
            for (int j = 0; j < 32; j++) want[j] += h[t * 32 + j] / (double)(n - excluded);
        for (int j = 0; j < 32; j++) nn += want[j] * want[j];
        float wf[32];
        for (int j = 0; j < 32; j++) wf[j] = (float)(want[j] / sqrt(nn));
        double e = th_rel_err(got, wf, 32);
        CHECK_MSG(e < 1e-5, "include_prompt false: rel err %.3g", e);
        /* The window matters: the mean over every token is another vector. */
        in.instruction = NULL;
        float plain[32];
        CHECK(cge_model_embed(m, &in, 1, plain, NULL) == CGE_OK);
        CHECK(th_rel_err(plain, wf, 32) > 1e-3);
        cge__free(tids);
        cge_model_free(m);
    }
    snprintf(p, sizeof p, "rm -rf %s", dir);
    CHECK(system(p) == 0);
}

int main(void) {
    RUN(test_include_prompt_false);
    RUN(test_instruction_t5);
    RUN(test_threads);
    RUN(test_bert_mean_l2);
    RUN(test_bert_cls);
    RUN(test_roberta_mean);
    RUN(test_mpnet_mean_l2);
    RUN(test_t5_mean_dense_l2);
    return test_report("models_e2e_text");
}
