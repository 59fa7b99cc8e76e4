/*
 * test_models_e2e_text_cli.c: the `cge embed` command end to end: the e2e inputs of
 * bert_mean_l2 and t5_mean_dense_l2 (as {"text": ...} lines, as bare JSON strings and as
 * input_ids), mixed with lines that must fail, through <build>/cge with a small --batch: every
 * good line gives the expected embedding (rel err < 1e-5), every bad one an {"error": ...} line,
 * in input order. The cge binary is found next to this test's build folder.
 */
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <unistd.h>

static char cge_bin[1024];

static int find_cge(void) {
    return th_find_cge(cge_bin, sizeof cge_bin);
}

static void run_case(const char *name, int dim) {
    char p[512], in_path[] = "/tmp/cge_cli_in_XXXXXX", out_path[] = "/tmp/cge_cli_out_XXXXXX";
    snprintf(p, sizeof p, "tests/fixtures/e2e/%s/inputs.jsonl", name);
    char *lines = th_read_file(p, NULL);
    snprintf(p, sizeof p, "tests/fixtures/e2e/%s/expected.f32", name);
    float *exp = th_read_f32(p, NULL);
    snprintf(p, sizeof p, "tests/fixtures/e2e/%s/case.json", name);
    char *cj = th_read_file(p, NULL);
    cJSON *c = cJSON_Parse(cj);
    free(cj);
    CHECK(lines && exp && c);
    int fd = mkstemp(in_path), fo = mkstemp(out_path);
    FILE *f = fdopen(fd, "w");
    close(fo);
    /* Expected output per input line: row index into expected.f32, or -1 for an error. */
    int want[64], n = 0;
    char *save = NULL;
    int row = 0;
    for (char *ln = strtok_r(lines, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save), row++) {
        cJSON *d = cJSON_Parse(ln);
        const char *text = cJSON_GetObjectItem(d, "text")->valuestring;
        fprintf(f, "%s\n", ln); /* {"text": ...} */
        want[n++] = row;
        char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(d, "text"));
        fprintf(f, "  %s  \n", s); /* a bare JSON string, with blanks around */
        want[n++] = row;
        cJSON_free(s);
        if (row % 3 == 0) {
            fprintf(f, "{\"text\": 5}\n");
            want[n++] = -1;
            fprintf(f, "\n"); /* blank lines are skipped */
        }
        if (row == 1) {
            const cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "token_ids"), row);
            char *is = cJSON_PrintUnformatted(ids);
            fprintf(f, "{\"input_ids\": %s}\n", is);
            want[n++] = row;
            cJSON_free(is);
            fprintf(f, "{\"input_ids\": [1, -4]}\nnot json\n{\"image\": \"x.png\"}\n");
            want[n++] = -1;
            want[n++] = -1;
            want[n++] = -1;
        }
        (void)text;
        cJSON_Delete(d);
    }
    fclose(f);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s embed --model tests/fixtures/e2e/%s/model --batch 3 < %s > %s", cge_bin, name,
             in_path, out_path);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s exited %d", cmd, rc);
    char *out = th_read_file(out_path, NULL);
    CHECK(out != NULL);
    int k = 0;
    double worst = 0;
    save = NULL;
    for (char *ln = out ? strtok_r(out, "\n", &save) : NULL; ln; ln = strtok_r(NULL, "\n", &save), k++) {
        if (k >= n) break;
        cJSON *d = cJSON_Parse(ln);
        CHECK(d != NULL);
        if (want[k] < 0) {
            CHECK_MSG(cJSON_IsString(cJSON_GetObjectItem(d, "error")), "line %d: expected an error, got %.60s", k, ln);
        } else {
            CHECK_MSG(cJSON_IsArray(d) && cJSON_GetArraySize(d) == dim, "line %d: %.80s", k, ln);
            float v[64] = {0};
            for (int j = 0; j < dim && j < 64; j++) v[j] = (float)cJSON_GetArrayItem(d, j)->valuedouble;
            double e = th_rel_err(v, exp + want[k] * dim, (size_t)dim);
            if (e > worst) worst = e;
        }
        cJSON_Delete(d);
    }
    CHECK_MSG(k == n, "%s: %d output lines for %d inputs", name, k, n);
    CHECK_MSG(worst < 1e-5, "%s: rel err %.3g", name, worst);
    printf("  %s: %d lines, max rel err %.3g\n", name, n, worst);
    free(out);
    free(lines);
    free(exp);
    cJSON_Delete(c);
    unlink(in_path);
    unlink(out_path);
}

int main(void) {
    /* The build makes cge before this test (tests/CMakeLists.txt): a missing binary is a failure,
     * not a skip, so this test cannot pass without running. */
    CHECK_MSG(find_cge(), "no cge binary at %s", cge_bin);
    if (!cge_bin[0] || access(cge_bin, X_OK) != 0) return test_report("models_e2e_text_cli");
    run_case("bert_mean_l2", 32);
    run_case("t5_mean_dense_l2", 24);
    /* Usage errors. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s embed --model </dev/null >/dev/null 2>&1", cge_bin);
    CHECK(system(cmd) != 0); /* (without --model, cge embed runs the demo ensemble) */
    snprintf(cmd, sizeof cmd, "%s embed --model tests/fixtures/e2e/bert_mean_l2/model --pooling sum </dev/null >/dev/null 2>&1", cge_bin);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s embed --model tests/fixtures/no_such </dev/null >/dev/null 2>&1", cge_bin);
    CHECK(system(cmd) != 0);
    return test_report("models_e2e_text_cli");
}
