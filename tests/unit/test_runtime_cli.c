/*
 * test_runtime_cli.c: `cge embed --ensemble` (and the demo with no arguments) against the shared
 * ensemble fixture: --output both/slots/fused, --format npy, bad lines among good ones, bad
 * ensembles. Runs the built cge command as a user would, from the fixture's folder.
 */
#include "ensemble_fixture.h"
#include "testhelp.h"

#include <stdlib.h>
#include <unistd.h>

static char cge_bin[1024];
static struct ef F;

static int find_cge(void) {
    return th_find_cge(cge_bin, sizeof cge_bin);
}

/* Runs cmd, returns its stdout lines parsed as JSON (NULL for a line that is not JSON). */
static int run_lines(const char *cmd, cJSON **out, int max, int *rc) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    static char line[1 << 20];
    int n = 0;
    while (n < max && fgets(line, sizeof line, p)) out[n++] = cJSON_Parse(line);
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return n;
}

static void free_lines(cJSON **v, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(v[i]);
}

/* The pieces of one --output both line. */
static void check_both_line(const cJSON *o, int row, const char *what) {
    static float emb[4096], gate[64], slotv[CGE_N_SLOTS][1024];
    int sel[8];
    CHECK_MSG(o && cJSON_IsObject(o) && !cJSON_GetObjectItemCaseSensitive(o, "error"), "%s #%d: not a result", what, row);
    if (!o) return;
    int dim = ef_floats(cJSON_GetObjectItemCaseSensitive(o, "embedding"), emb, 4096);
    int ng = ef_floats(cJSON_GetObjectItemCaseSensitive(o, "expert_weights"), gate, 64);
    float self[8];
    int ns = ef_floats(cJSON_GetObjectItemCaseSensitive(o, "selected"), self, 8);
    for (int k = 0; k < ns; k++) sel[k] = (int)self[k];
    const float *slots[CGE_N_SLOTS];
    int dims[CGE_N_SLOTS];
    const cJSON *os = cJSON_GetObjectItemCaseSensitive(o, "slots");
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        char name[16];
        snprintf(name, sizeof name, "E%d", s + 1);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(os, name);
        CHECK_MSG(v != NULL, "%s #%d: slot %s not printed", what, row, name);
        dims[s] = v && !cJSON_IsNull(v) ? ef_floats(v, slotv[s], 1024) : 0;
        slots[s] = dims[s] > 0 ? slotv[s] : NULL;
    }
    ef_check(F.rows[row].expected, what, row, emb, dim, gate, ng, sel, ns, slots, dims);
}

static void test_both(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd " EF_DIR " && %s embed --ensemble ensemble --output both --batch 5 < inputs.jsonl",
             cge_bin);
    cJSON *out[EF_MAX];
    int rc = -1;
    int n = run_lines(cmd, out, EF_MAX, &rc);
    CHECK_MSG(n == F.n && rc == 0, "%d lines (want %d), exit %d", n, F.n, rc);
    for (int i = 0; i < n && i < F.n; i++) check_both_line(out[i], i, "cli both");
    free_lines(out, n);
}

static void test_slots_and_fused(void) {
    char cmd[2048];
    cJSON *out[EF_MAX];
    int rc = -1;
    snprintf(cmd, sizeof cmd, "cd " EF_DIR " && %s embed --ensemble ensemble --output slots < inputs.jsonl", cge_bin);
    int n = run_lines(cmd, out, EF_MAX, &rc);
    CHECK(n == F.n && rc == 0);
    for (int i = 0; i < n && i < F.n; i++) {
        const cJSON *os = cJSON_GetObjectItemCaseSensitive(out[i], "slots");
        CHECK(os && cJSON_GetArraySize(out[i]) == 1);
        static float v[CGE_N_SLOTS][1024];
        const float *slots[CGE_N_SLOTS];
        int dims[CGE_N_SLOTS];
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            char name[16];
            snprintf(name, sizeof name, "E%d", s + 1);
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(os, name);
            dims[s] = x && !cJSON_IsNull(x) ? ef_floats(x, v[s], 1024) : 0;
            slots[s] = dims[s] > 0 ? v[s] : NULL;
        }
        ef_check(F.rows[i].expected, "cli slots", i, NULL, 0, NULL, 0, NULL, 0, slots, dims);
    }
    free_lines(out, n);
    snprintf(cmd, sizeof cmd, "cd " EF_DIR " && %s embed --ensemble ensemble < inputs.jsonl", cge_bin);
    n = run_lines(cmd, out, EF_MAX, &rc);
    CHECK(n == F.n && rc == 0);
    for (int i = 0; i < n && i < F.n; i++) {
        static float emb[4096];
        int d = ef_floats(out[i], emb, 4096);
        ef_check(F.rows[i].expected, "cli fused", i, emb, d, NULL, 0, NULL, 0, NULL, NULL);
    }
    free_lines(out, n);
}

/* --format npy: an (n, 1536) float32 file with the fused vectors. */
static void test_npy(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd " EF_DIR " && %s embed --ensemble ensemble --format npy --out /tmp/cge-cli-test.npy < inputs.jsonl",
             cge_bin);
    CHECK(system(cmd) == 0);
    size_t len = 0;
    char *b = th_read_file("/tmp/cge-cli-test.npy", &len);
    CHECK(b && len == 128 + (size_t)F.n * 1536 * 4);
    if (b && len == 128 + (size_t)F.n * 1536 * 4) {
        CHECK(!memcmp(b, "\x93NUMPY\x01\x00", 8));
        char shape[64];
        snprintf(shape, sizeof shape, "'shape': (%d, 1536)", F.n);
        b[127] = '\0';
        CHECK(strstr(b + 10, shape) != NULL && strstr(b + 10, "'<f4'") != NULL);
        for (int i = 0; i < F.n; i++)
            ef_check(F.rows[i].expected, "cli npy", i, (const float *)(b + 128) + (size_t)i * 1536, 1536,
                     NULL, 0, NULL, 0, NULL, NULL);
    }
    free(b);
    unlink("/tmp/cge-cli-test.npy");
}

/* A failed line prints {"error": ...} in its place and the others go on. */
static void test_bad_lines(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd " EF_DIR " && printf '%%s\\n' '{\"text\": \"The quick brown fox jumps over the lazy dog.\"}' "
             "'not json' '{\"image\": \"missing.png\"}' '{\"text\": 3}' '{\"text\": \"a\", \"role\": \"boss\"}' "
             "'{\"text\": \"a\", \"image\": \"camera.png\"}' '{\"txt\": \"a\"}' '[1,2]' "
             "'{\"image\": \"camera.png\"}' | %s embed --ensemble ensemble --output both 2>/dev/null",
             cge_bin);
    cJSON *out[16];
    int rc = -1;
    int n = run_lines(cmd, out, 16, &rc);
    CHECK_MSG(n == 9 && rc == 0, "%d lines, exit %d", n, rc);
    if (n == 9) {
        check_both_line(out[0], 0, "cli bad-lines");
        for (int i = 1; i < 8; i++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(out[i], "error");
            CHECK_MSG(cJSON_IsString(e) && e->valuestring[0], "line %d: no error", i);
        }
        const cJSON *e2 = cJSON_GetObjectItemCaseSensitive(out[2], "error");
        CHECK(cJSON_IsString(e2) && strstr(e2->valuestring, "missing.png"));
        check_both_line(out[8], 8, "cli bad-lines");
    }
    free_lines(out, n);
}

/* No ensemble and no config: the demo, with its notice on stderr. */
static void test_demo(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd /tmp && echo '\"hello world\"' | env -u CGE_CONFIG HOME=/nonexistent %s embed 2>/tmp/cge-demo-err.txt",
             cge_bin);
    cJSON *out[2];
    int rc = -1;
    int n = run_lines(cmd, out, 2, &rc);
    CHECK(n == 1 && rc == 0);
    if (n == 1) {
        static float v[4096];
        int d = ef_floats(out[0], v, 4096);
        double norm = 0;
        for (int i = 0; i < d; i++) norm += (double)v[i] * v[i];
        CHECK_MSG(d == 1536 && fabs(norm - 1) < 1e-5, "dim %d norm %g", d, norm);
    }
    free_lines(out, n);
    char *err = th_read_file("/tmp/cge-demo-err.txt", NULL);
    CHECK(err && strstr(err, "demo ensemble") && strstr(err, "not semantic"));
    free(err);
    unlink("/tmp/cge-demo-err.txt");
}

static void test_bad_ensemble(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s embed --ensemble tests/fixtures/no-such </dev/null >/dev/null 2>/tmp/cge-cli-err.txt",
             cge_bin);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char *err = th_read_file("/tmp/cge-cli-err.txt", NULL);
    CHECK(err && strstr(err, "no-such"));
    free(err);
    snprintf(cmd, sizeof cmd, "%s embed --ensemble " EF_ENSEMBLE " --output everything </dev/null >/dev/null 2>&1",
             cge_bin);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd, "%s embed --ensemble " EF_ENSEMBLE " --format npy </dev/null >/dev/null 2>&1", cge_bin);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    unlink("/tmp/cge-cli-err.txt");
}

/* cge fusion train --ensemble --corpus: embeds the corpus through the slots, trains the fusion
 * folder the ensemble names; the trained ensemble still embeds, its slots unchanged. */
static void test_fusion_train(void) {
    char cmd[4096];
    const char *dir = "/tmp/cge-cli-train";
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp -r " EF_ENSEMBLE " %s/ens && "
             "cd " EF_DIR " && python3 -c \"import json,sys\n"
             "for i,l in enumerate(open('inputs.jsonl')):\n d=json.loads(l); d['pair']=i//2; print(json.dumps(d))\n"
             "print('not json')\" > %s/corpus.jsonl", dir, dir, dir, dir);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "cd " EF_DIR " && %s fusion train --ensemble %s/ens --corpus %s/corpus.jsonl "
             "--epochs 2 --batch 4 2>%s/err.txt", cge_bin, dir, dir, dir);
    int st = system(cmd);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fusion train exit %d", st);
    char p[512];
    snprintf(p, sizeof p, "%s/ens/fusion/trainer_state.json", dir);
    char *ts = th_read_file(p, NULL);
    CHECK_MSG(ts && strstr(ts, "\"step\": 6"), "trainer_state: %s", ts ? ts : "(none)");
    free(ts);
    snprintf(p, sizeof p, "%s/err.txt", dir);
    char *err = th_read_file(p, NULL);
    CHECK(err && strstr(err, "line 13") && strstr(err, "embedded 12 inputs"));
    free(err);
    /* the trained fusion: other fused vectors, the same slots */
    snprintf(cmd, sizeof cmd, "cd " EF_DIR " && head -1 inputs.jsonl | %s embed --ensemble %s/ens --output both", cge_bin, dir);
    cJSON *out[2];
    int rc = -1;
    int n = run_lines(cmd, out, 2, &rc);
    CHECK(n == 1 && rc == 0);
    if (n == 1) {
        static float emb[1536], ref[1536];
        CHECK(ef_floats(cJSON_GetObjectItemCaseSensitive(out[0], "embedding"), emb, 1536) == 1536);
        CHECK(ef_floats(cJSON_GetObjectItemCaseSensitive(F.rows[0].expected, "embedding"), ref, 1536) == 1536);
        CHECK(th_rel_err(emb, ref, 1536) > 1e-4);
        static float v[64];
        const cJSON *os = cJSON_GetObjectItemCaseSensitive(out[0], "slots");
        const cJSON *es = cJSON_GetObjectItemCaseSensitive(F.rows[0].expected, "slots");
        static float r1[64];
        int d = ef_floats(cJSON_GetObjectItemCaseSensitive(os, "E3"), v, 64);
        CHECK(d == 40 && ef_floats(cJSON_GetObjectItemCaseSensitive(es, "E3"), r1, 64) == 40 &&
              th_rel_err(v, r1, 40) <= 1e-5);
    }
    free_lines(out, n);
    snprintf(cmd, sizeof cmd, "%s fusion train --ensemble %s/ens 2>/dev/null", cge_bin, dir);
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    CHECK_MSG(find_cge(), "no cge binary at %s", cge_bin);
    CHECK_MSG(ef_load(EF_DIR, &F) == 0, "cannot read the ensemble fixture");
    if (th_failed) return test_report("test_runtime_cli");
    RUN(test_both);
    RUN(test_slots_and_fused);
    RUN(test_npy);
    RUN(test_bad_lines);
    RUN(test_demo);
    RUN(test_bad_ensemble);
    RUN(test_fusion_train);
    ef_free(&F);
    return test_report("test_runtime_cli");
}
