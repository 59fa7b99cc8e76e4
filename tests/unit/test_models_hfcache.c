/*
 * test_models_hfcache.c: a model given as a folder of the Hugging Face cache
 * (models--org--name/{refs/main, snapshots/<commit>/...}) loads the snapshot refs/main names, as
 * huggingface_hub resolves it: the ref's trailing newline is ignored, a decoy snapshot is not
 * used, and the loaded model embeds "Hello world" as transformers did (bert_mean_l2's
 * expected.f32, row 0). A ref that is empty or not a plain name, or that names a missing
 * snapshot, fails to load with a message instead of reading another folder.
 */
#include "testhelp.h"

#include "core/core.h"
#include "models/model.h"

#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/cge_test_hfcache_XXXXXX", cwd[512];

/* snapshots/<name> holding symlinks to the files of tests/fixtures/e2e/<fixture>/model. */
static void make_snapshot(const char *repo, const char *name, const char *fixture) {
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                        "vocab.txt", "special_tokens_map.json", "modules.json",
                                        "sentence_bert_config.json", "1_Pooling", "vocab.json", "merges.txt"};
    char p[900], src[900];
    snprintf(p, sizeof p, "%s/%s/snapshots", root, repo);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/%s/snapshots/%s", root, repo, name);
    CHECK(mkdir(p, 0700) == 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(src, sizeof src, "%s/tests/fixtures/e2e/%s/model/%s", cwd, fixture, files[i]);
        if (access(src, F_OK) != 0) continue;
        snprintf(p, sizeof p, "%s/%s/snapshots/%s/%s", root, repo, name, files[i]);
        CHECK(symlink(src, p) == 0);
    }
}

static void write_ref(const char *repo, const char *text) {
    char p[900];
    snprintf(p, sizeof p, "%s/%s/refs", root, repo);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/%s/refs/main", root, repo);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_refs_main(void) {
    const char *repo = "models--sentence-transformers--tiny-bert";
    char p[900];
    snprintf(p, sizeof p, "%s/%s", root, repo);
    CHECK(mkdir(p, 0700) == 0);
    make_snapshot(repo, "0000000000000000000000000000000000000000", "roberta_mean"); /* a decoy */
    make_snapshot(repo, "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e", "bert_mean_l2");
    write_ref(repo, "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e\n");
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(p, NULL, &m);
    CHECK_MSG(st == CGE_OK, "load %s: %s", p, cge_errmsg());
    if (m) {
        CHECK(!strcmp(cge_model_family(m), "bert") && cge_model_dim(m) == 32);
        size_t n = 0;
        float *exp = th_read_f32("tests/fixtures/e2e/bert_mean_l2/expected.f32", &n);
        CHECK(exp && n >= 32);
        struct cge_input in = {0};
        in.text = "Hello world";
        in.text_len = 11;
        float got[32];
        CHECK(cge_model_embed(m, &in, 1, got, NULL) == CGE_OK);
        if (exp) CHECK_MSG(th_rel_err(got, exp, 32) < 1e-5, "rel err %.3g", th_rel_err(got, exp, 32));
        free(exp);
        cge_model_free(m);
    }
    /* refs/main naming the decoy loads the decoy (the ref decides, not the newest folder). */
    write_ref(repo, "0000000000000000000000000000000000000000");
    m = NULL;
    CHECK(cge_model_load(p, NULL, &m) == CGE_OK && m && !strcmp(cge_model_family(m), "roberta"));
    cge_model_free(m);
    /* Refs that must not resolve: a missing snapshot, a path, an empty file. */
    static const char *const bad[] = {"ffffffffffffffffffffffffffffffffffffffff\n", "../../etc\n", "\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_ref(repo, bad[i]);
        m = NULL;
        st = cge_model_load(p, NULL, &m);
        CHECK_MSG(st != CGE_OK && m == NULL, "ref %zu: loaded", i);
        CHECK_MSG(cge_errmsg()[0] != 0, "ref %zu: no message", i);
        cge_model_free(m);
    }
}

int main(void) {
    int ok = mkdtemp(root) != NULL && getcwd(cwd, sizeof cwd) != NULL;
    CHECK_MSG(ok, "mkdtemp/getcwd failed");
    if (ok) {
        RUN(test_refs_main);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", root);
        CHECK(system(cmd) == 0);
    }
    return test_report("models_hfcache");
}
