/*
 * test_fusion_cli.c: `cge fusion init | run | train` end to end, by compiling tools/cmd_fusion.c
 * into the test and calling cmd_fusion with argument vectors (stdout and stderr captured in
 * files): run reproduces expected.jsonl, bad lines give one clear error line and exit 1, train
 * writes a resumable checkpoint, init writes loadable weights.
 */
#include "../../tools/cmd_fusion.c"
/* This program links the fusion module only; `cge fusion train --ensemble --corpus` needs the
 * engine and is tested through the cge command in test_runtime_cli.c. */
int fusion_corpus_to_data(const char *ensemble, const char *corpus, char *data, size_t data_cap,
                          char *fusion_dir, size_t fusion_cap) {
    (void)ensemble, (void)corpus, (void)data, (void)data_cap, (void)fusion_dir, (void)fusion_cap;
    fprintf(stderr, "not linked in this test\n");
    return 1;
}

#include "testhelp.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[128];

/* Runs cmd_fusion with stdin from `in` (or /dev/null), stdout/stderr into files. */
static int run_cmd(const char *in, const char *out, const char *err, int argc, char **argv) {
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2), si = dup(0);
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fi = open(in ? in : "/dev/null", O_RDONLY);
    dup2(fo, 1);
    dup2(fe, 2);
    dup2(fi, 0);
    clearerr(stdin);
    int rc = cmd_fusion(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    dup2(si, 0);
    clearerr(stdin);
    close(so);
    close(se);
    close(si);
    close(fo);
    close(fe);
    close(fi);
    return rc;
}

static void path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void test_run(void) {
    char out[256], err[256];
    path_in(out, sizeof out, "out.jsonl");
    path_in(err, sizeof err, "err.txt");
    char *argv[] = {"fusion",  "run", "--weights", "tests/fixtures/fusion/laplace/weights",
                    "--batch", "3",   NULL};
    int rc = run_cmd("tests/fixtures/fusion/laplace/inputs.jsonl", out, err, 6, argv);
    CHECK(rc == 0);
    char *got = th_read_file(out, NULL),
         *exp = th_read_file("tests/fixtures/fusion/laplace/expected.jsonl", NULL);
    CHECK(got && exp);
    if (!got || !exp) return;
    char *g = got, *e = exp;
    int lines = 0;
    double worst = 0;
    int sel_ok = 1;
    while (g && *g && e && *e) {
        char *gn = strchr(g, '\n'), *en = strchr(e, '\n');
        cJSON *a = cJSON_ParseWithLength(g, gn ? (size_t)(gn - g) : strlen(g));
        cJSON *b = cJSON_ParseWithLength(e, en ? (size_t)(en - e) : strlen(e));
        CHECK(a && b);
        if (!a || !b) break;
        const char *keys[2] = {"embedding", "expert_weights"};
        for (int k = 0; k < 2; k++) {
            cJSON *x = cJSON_GetObjectItem(a, keys[k]), *y = cJSON_GetObjectItem(b, keys[k]);
            CHECK(cJSON_GetArraySize(x) == cJSON_GetArraySize(y));
            for (int i = 0; i < cJSON_GetArraySize(y); i++)
                worst = fmax(worst, fabs(cJSON_GetArrayItem(x, i)->valuedouble -
                                         cJSON_GetArrayItem(y, i)->valuedouble));
        }
        cJSON *sx = cJSON_GetObjectItem(a, "selected"), *sy = cJSON_GetObjectItem(b, "selected");
        for (int i = 0; i < 2; i++)
            sel_ok &= cJSON_GetArrayItem(sx, i)->valueint == cJSON_GetArrayItem(sy, i)->valueint;
        cJSON_Delete(a);
        cJSON_Delete(b);
        lines++;
        g = gn ? gn + 1 : NULL;
        e = en ? en + 1 : NULL;
    }
    CHECK(lines == 10);
    CHECK(sel_ok);
    CHECK_MSG(worst <= 1e-5, "cli output differs from expected by %g", worst);
    printf("  run: %d lines, max |diff| to expected.jsonl %.2g\n", lines, worst);
    free(got);
    free(exp);

    /* a bad third line: the two good lines are written, then one error line, exit 1 */
    char in[256];
    path_in(in, sizeof in, "bad.jsonl");
    char *argv_in[] = {"fusion",  "run", "--weights", "tests/fixtures/fusion/laplace/weights",
                       "--input", in,    NULL};
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"slots\": [null, [1,2,3,4,5,6,7,8,9,10], null, null]}\n\n"
               "{\"slots\": [null, null, [1,2,3,4,5,6,7,8], null]}\n"
               "{\"slots\": [null, [1,2,3], null, null]}\n"
               "{\"slots\": [null, [1,2,3,4,5,6,7,8,9,10], null, null]}\n");
    fclose(f);
    rc = run_cmd(NULL, out, err, 6, argv_in);
    CHECK(rc == 1);
    char *o = th_read_file(out, NULL), *m = th_read_file(err, NULL);
    int n_out = 0;
    for (char *p = o; p && *p; p++)
        n_out += *p == '\n';
    CHECK(n_out == 2);
    CHECK(m && strstr(m, "line 4") && strstr(m, "slot 1 has 3 values, expected 10"));
    printf("  bad line: %s", m ? m : "(none)\n");
    free(o);
    free(m);

    /* all slots missing, non-finite values, wrong slot count: errors, never a crash */
    const char *bad[] = {"{\"slots\": [null, null, null, null]}\n",
                         "{\"slots\": [null, [1,2,3,4,5,6,7,8,9,1e400], null, null]}\n",
                         "{\"slots\": [null, null]}\n", "not json\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(in, "w");
        fputs(bad[i], f);
        fclose(f);
        CHECK(run_cmd(NULL, out, err, 6, argv_in) == 1);
        m = th_read_file(err, NULL);
        CHECK_MSG(m && !strncmp(m, "cge fusion run: line 1: ", 24), "%s", m ? m : "");
        free(m);
    }
    /* missing weights */
    char *argv2[] = {"fusion", "run", "--weights", "/nonexistent", NULL};
    CHECK(run_cmd(NULL, out, err, 4, argv2) == 1);
    unlink(in);
    unlink(out);
    unlink(err);
}

static void test_init_train(void) {
    char cfg[256], w[256], w2[256], out[256], err[256], data[256], p[512];
    path_in(cfg, sizeof cfg, "cfg.json");
    path_in(w, sizeof w, "w");
    path_in(w2, sizeof w2, "w2");
    path_in(out, sizeof out, "out.txt");
    path_in(err, sizeof err, "err.txt");
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"slot_dims\": [6, 10, 8, 5], \"num_experts\": 4, \"expert_hidden_dim\": 16, "
               "\"output_dim\": 12, \"gating\": \"laplace\"}\n");
    fclose(f);
    char *a1[] = {"fusion", "init", "--config", cfg, "--out", w, "--seed", "3", NULL};
    CHECK(run_cmd(NULL, out, err, 8, a1) == 0);
    struct cge_fusion *m = NULL;
    CHECK(cge_fusion_load(w, CGE_DTYPE_F32, &m) == CGE_OK);
    if (m) CHECK(cge_fusion_get_config(m)->gating == CGE_FUSION_GATE_LAPLACE);
    cge_fusion_free(m);
    /* training data: the fixture inputs, two of them labelled as a pair */
    path_in(data, sizeof data, "data.jsonl");
    char *src = th_read_file("tests/fixtures/fusion/laplace/inputs.jsonl", NULL);
    f = fopen(data, "w");
    int line = 0;
    for (char *s = src; s && *s;) {
        char *nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) : strlen(s);
        if (line < 2 && l > 2 && s[l - 1] == '}')
            fprintf(f, "%.*s, \"pair\": \"a\"}\n", (int)(l - 1), s);
        else
            fprintf(f, "%.*s\n", (int)l, s);
        line++;
        s = nl ? nl + 1 : NULL;
    }
    fclose(f);
    free(src);
    char *a2[] = {"fusion", "train",   "--weights", w,       "--data", data, "--epochs",
                  "2",      "--batch", "5",         "--out", w2,       NULL};
    int rc = run_cmd(NULL, out, err, 12, a2);
    CHECK(rc == 0);
    char *msg = th_read_file(err, NULL);
    CHECK(msg && strstr(msg, "epoch 2/2") && strstr(msg, "load") && strstr(msg, "step 4"));
    free(msg);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", w2);
    CHECK(access(p, R_OK) == 0);
    /* resume from w2 */
    char *a3[] = {"fusion", "train", "--weights", w2, "--data", data, "--batch", "5", NULL};
    CHECK(run_cmd(NULL, out, err, 8, a3) == 0);
    msg = th_read_file(err, NULL);
    CHECK(msg && strstr(msg, "resuming") && strstr(msg, "step 6"));
    free(msg);
    /* bad data */
    f = fopen(data, "w");
    fprintf(f, "{\"slots\": [null, null, null, [1, 2]]}\n");
    fclose(f);
    CHECK(run_cmd(NULL, out, err, 8, a3) == 1);
    msg = th_read_file(err, NULL);
    CHECK(msg && strstr(msg, "line 1") && strstr(msg, "slot 3"));
    free(msg);
    char *a4[] = {"fusion", "init", "--help", NULL};
    CHECK(run_cmd(NULL, out, err, 3, a4) == 0);
    msg = th_read_file(out, NULL);
    CHECK(msg && strstr(msg, "orthonormal"));
    free(msg);
    const char *names[] = {"config.json", "model.safetensors", "optimizer.safetensors",
                           "trainer_state.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", w, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", w2, names[i]);
        unlink(p);
    }
    rmdir(w);
    rmdir(w2);
    unlink(cfg);
    unlink(data);
    unlink(out);
    unlink(err);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cge_test_fusion_cli_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    RUN(test_run);
    RUN(test_init_train);
    rmdir(tmpdir);
    return test_report("fusion_cli");
}
