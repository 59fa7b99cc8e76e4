/*
 * test_models_bert_load.c: model folders that are not as save_pretrained writes them.
 * Name variants real checkpoints use (a `bert.` prefix with a stored `embeddings.position_ids`
 * buffer, T5 with only `encoder.embed_tokens.weight`, sharded safetensors) must give the
 * fixture's outputs, and so must pytorch_model.bin checkpoints (tests/data/models_bin, written by
 * its gen.py with python3-torch) for the model and for a sentence-transformers Dense layer; malformed configs, missing tensors, wrong shapes and a tokenizer larger
 * than the embedding table must fail with an error naming the model and the tensor.
 */
#include "testhelp.h"

#include "core/core.h"
#include "models/heads.h"
#include "models/model.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static void copy_file(const char *src, const char *dst) {
    size_t n = 0;
    char *b = th_read_file(src, &n);
    CHECK(b != NULL);
    if (b) write_file(dst, b, n);
    free(b);
}

/* Rewrites a safetensors file: every tensor renamed to prefix+name (skipping `drop`, renaming
 * `from` to `to`), plus an optional I64 [1, n_extra] tensor `extra` holding 0..n-1. */
static const char *shard_key; /* st_rewrite keeps names with (shard 2) or without (1) it */
static int shard_pick;

static void st_rewrite(const char *src, const char *dst, const char *prefix, const char *drop,
                       const char *from, const char *to, const char *extra, int n_extra) {
    size_t n = 0;
    unsigned char *b = (unsigned char *)th_read_file(src, &n);
    CHECK(b != NULL);
    if (!b) return;
    uint64_t hl = 0;
    memcpy(&hl, b, 8);
    cJSON *h = cJSON_ParseWithLength((const char *)b + 8, (size_t)hl);
    const unsigned char *data = b + 8 + hl;
    cJSON *nh = cJSON_CreateObject();
    unsigned char *nd = malloc(n + (size_t)n_extra * 8);
    size_t off = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__")) continue;
        if (drop && !strcmp(e->string, drop)) continue;
        if (shard_pick && (strstr(e->string, shard_key) != NULL) != (shard_pick == 2)) continue;
        const cJSON *offs = cJSON_GetObjectItem(e, "data_offsets");
        size_t a = (size_t)cJSON_GetArrayItem(offs, 0)->valuedouble, z = (size_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
        memcpy(nd + off, data + a, z - a);
        cJSON *t = cJSON_Duplicate(e, 1);
        cJSON *no = cJSON_CreateArray();
        cJSON_AddItemToArray(no, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(no, cJSON_CreateNumber((double)(off + z - a)));
        cJSON_ReplaceItemInObject(t, "data_offsets", no);
        char name[300];
        snprintf(name, sizeof name, "%s%s", prefix, from && !strcmp(e->string, from) ? to : e->string);
        cJSON_AddItemToObject(nh, name, t);
        off += z - a;
    }
    if (extra) {
        for (int i = 0; i < n_extra; i++) {
            int64_t v = i;
            memcpy(nd + off + (size_t)i * 8, &v, 8);
        }
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "dtype", "I64");
        cJSON *sh = cJSON_CreateArray();
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(1));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(n_extra));
        cJSON_AddItemToObject(t, "shape", sh);
        cJSON *no = cJSON_CreateArray();
        cJSON_AddItemToArray(no, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(no, cJSON_CreateNumber((double)(off + (size_t)n_extra * 8)));
        cJSON_AddItemToObject(t, "data_offsets", no);
        cJSON_AddItemToObject(nh, extra, t);
        off += (size_t)n_extra * 8;
    }
    char *hs = cJSON_PrintUnformatted(nh);
    size_t hn = strlen(hs);
    size_t pad = (8 - hn % 8) % 8;
    FILE *f = fopen(dst, "wb");
    uint64_t nhl = hn + pad;
    fwrite(&nhl, 8, 1, f);
    fwrite(hs, 1, hn, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fwrite(nd, 1, off, f);
    fclose(f);
    cJSON_free(hs);
    cJSON_Delete(nh);
    cJSON_Delete(h);
    free(nd);
    free(b);
}

/* A fresh model folder tmpdir/name with config.json from src_dir (edited by `edit`). */
static void make_folder(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
    mkdir(out, 0700);
}

static void write_config(const char *dir, const char *src_cfg, const char *key, cJSON *val) {
    size_t n = 0;
    char *t = th_read_file(src_cfg, &n);
    cJSON *c = cJSON_Parse(t);
    free(t);
    if (key) {
        if (val) {
            if (cJSON_GetObjectItem(c, key)) cJSON_ReplaceItemInObject(c, key, val);
            else cJSON_AddItemToObject(c, key, val);
        } else {
            cJSON_DeleteItemFromObject(c, key);
        }
    }
    char *s = cJSON_Print(c);
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(c);
}

/* mean_pooled of the fixture rows with all token types 0 (row 1 of bert) through dir. */
static double mean_err(const char *dir, const char *fixture, int row) {
    struct cge_model *m = NULL;
    if (cge_model_load(dir, NULL, &m) != CGE_OK) {
        printf("  load %s: %s\n", dir, cge_errmsg());
        return 1;
    }
    char p[512];
    snprintf(p, sizeof p, "tests/fixtures/models/%s/case.json", fixture);
    char *t = th_read_file(p, NULL);
    cJSON *c = cJSON_Parse(t);
    free(t);
    const cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "inputs"), "input_ids"), row);
    int n = cJSON_GetArraySize(ids);
    int32_t v[64];
    for (int i = 0; i < n; i++) v[i] = cJSON_GetArrayItem(ids, i)->valueint;
    struct cge_input in = {0};
    in.ids = v;
    in.n_ids = n;
    int d = cge_model_dim(m);
    float *o = malloc((size_t)d * sizeof *o);
    double e = 1;
    if (cge_model_embed(m, &in, 1, o, NULL) == CGE_OK) {
        snprintf(p, sizeof p, "tests/fixtures/models/%s/mean_pooled.bin", fixture);
        float *ref = th_read_f32(p, NULL);
        e = th_rel_err(o, ref + row * d, (size_t)d);
        free(ref);
    }
    free(o);
    cJSON_Delete(c);
    cge_model_free(m);
    return e;
}

static void test_name_variants(void) {
    char dir[512], p[600];
    /* bert. prefix + a persistent position_ids buffer (BertForMaskedLM-style checkpoint). */
    make_folder(dir, sizeof dir, "bert_prefixed");
    write_config(dir, "tests/fixtures/models/bert/config.json", NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_rewrite("tests/fixtures/models/bert/model.safetensors", p, "bert.", NULL, NULL, NULL,
               "bert.embeddings.position_ids", 512);
    double e = mean_err(dir, "bert", 1);
    CHECK_MSG(e < 1e-5, "bert. prefix: rel err %.3g", e);
    /* roberta. prefix */
    make_folder(dir, sizeof dir, "roberta_prefixed");
    write_config(dir, "tests/fixtures/models/roberta/config.json", NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_rewrite("tests/fixtures/models/roberta/model.safetensors", p, "roberta.", NULL, NULL, NULL, NULL, 0);
    e = mean_err(dir, "roberta", 0);
    CHECK_MSG(e < 1e-5, "roberta. prefix: rel err %.3g", e);
    /* T5 with encoder.embed_tokens.weight only. */
    make_folder(dir, sizeof dir, "t5_embed_tokens");
    write_config(dir, "tests/fixtures/models/t5_relu/config.json", NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_rewrite("tests/fixtures/models/t5_relu/model.safetensors", p, "", "shared.weight", NULL, NULL, NULL, 0);
    e = mean_err(dir, "t5_relu", 0);
    CHECK_MSG(e < 1e-5, "T5 embed_tokens only: rel err %.3g", e);
    /* T5 with shared.weight only (as save_pretrained writes it). */
    make_folder(dir, sizeof dir, "t5_shared");
    write_config(dir, "tests/fixtures/models/t5_relu/config.json", NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_rewrite("tests/fixtures/models/t5_relu/model.safetensors", p, "", "encoder.embed_tokens.weight", NULL, NULL, NULL, 0);
    e = mean_err(dir, "t5_relu", 1);
    CHECK_MSG(e < 1e-5, "T5 shared only: rel err %.3g", e);
}

/* Loads dir and expects status `want` with every string of `needles` in the message. */
static void expect_fail(const char *dir, enum cge_status want, const char *n1, const char *n2) {
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(dir, NULL, &m);
    CHECK_MSG(st == want, "%s: status %d (%s), expected %d: %s", dir, st, cge_status_str(st), want, cge_errmsg());
    CHECK(m == NULL);
    if (n1) CHECK_MSG(strstr(cge_errmsg(), n1) != NULL, "message '%s' lacks '%s'", cge_errmsg(), n1);
    if (n2) CHECK_MSG(strstr(cge_errmsg(), n2) != NULL, "message '%s' lacks '%s'", cge_errmsg(), n2);
    cge_model_free(m);
}

static void test_other_formats(void) {
    char dir[512], p[600], cwd[400];
    int have_cwd = getcwd(cwd, sizeof cwd) != NULL;
    CHECK_MSG(have_cwd, "getcwd failed: the other formats are not checked");
    if (!have_cwd) return;
    /* pytorch_model.bin with a `bert.` prefix and a position_ids buffer (tests/data/models_bin). */
    double e = mean_err("tests/data/models_bin/bert_bin", "bert", 1);
    CHECK_MSG(e < 1e-5, "pytorch_model.bin: rel err %.3g", e);
    /* Sharded safetensors: two shards and model.safetensors.index.json. */
    make_folder(dir, sizeof dir, "sharded");
    write_config(dir, "tests/fixtures/models/bert/config.json", NULL, NULL);
    shard_key = "encoder.layer.1.";
    shard_pick = 1;
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    st_rewrite("tests/fixtures/models/bert/model.safetensors", p, "", NULL, NULL, NULL, NULL, 0);
    shard_pick = 2;
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    st_rewrite("tests/fixtures/models/bert/model.safetensors", p, "", NULL, NULL, NULL, NULL, 0);
    shard_pick = 0;
    struct cge_weights *w = NULL;
    CHECK(cge_weights_open("tests/fixtures/models/bert/model.safetensors", &w) == CGE_OK);
    cJSON *idx = cJSON_CreateObject(), *map = cJSON_CreateObject();
    cJSON_AddItemToObject(idx, "metadata", cJSON_CreateObject());
    for (int64_t i = 0; w && i < cge_weights_count(w); i++) {
        const char *nm = cge_weights_at(w, i)->name;
        cJSON_AddStringToObject(map, nm, strstr(nm, shard_key) ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors");
    }
    cJSON_AddItemToObject(idx, "weight_map", map);
    char *is = cJSON_Print(idx);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_file(p, is, strlen(is));
    cJSON_free(is);
    cJSON_Delete(idx);
    cge_weights_free(w);
    e = mean_err(dir, "bert", 1);
    CHECK_MSG(e < 1e-5, "sharded: rel err %.3g", e);
    /* The T5 e2e folder with its Dense layer as 2_Dense/pytorch_model.bin. */
    make_folder(dir, sizeof dir, "densebin");
    static const char *const files[] = {"config.json", "model.safetensors", "modules.json", "1_Pooling",
                                        "sentence_bert_config.json"};
    for (int i = 0; i < 5; i++) {
        char src[800];
        snprintf(src, sizeof src, "%s/tests/fixtures/e2e/t5_mean_dense_l2/model/%s", cwd, files[i]);
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        CHECK(symlink(src, p) == 0);
    }
    {
        char src[800];
        snprintf(src, sizeof src, "%s/tests/data/models_bin/dense_bin/2_Dense", cwd);
        snprintf(p, sizeof p, "%s/2_Dense", dir);
        CHECK(symlink(src, p) == 0);
    }
    struct cge_model *m = NULL;
    CHECK_MSG(cge_model_load(dir, NULL, &m) == CGE_OK, "%s", cge_errmsg());
    if (m) {
        char *t = th_read_file("tests/fixtures/e2e/t5_mean_dense_l2/case.json", NULL);
        cJSON *c = cJSON_Parse(t);
        free(t);
        float *exp = th_read_f32("tests/fixtures/e2e/t5_mean_dense_l2/expected.f32", NULL);
        const cJSON *tids = cJSON_GetObjectItem(c, "token_ids");
        double worst = 0;
        for (int i = 0; i < cJSON_GetArraySize(tids); i++) {
            const cJSON *row = cJSON_GetArrayItem(tids, i);
            int32_t ids[64];
            int n = cJSON_GetArraySize(row);
            for (int k = 0; k < n; k++) ids[k] = cJSON_GetArrayItem(row, k)->valueint;
            struct cge_input in = {0};
            in.ids = ids;
            in.n_ids = n;
            float o[24];
            CHECK(cge_model_embed(m, &in, 1, o, NULL) == CGE_OK);
            double er = th_rel_err(o, exp + i * 24, 24);
            if (er > worst) worst = er;
        }
        CHECK_MSG(worst < 1e-5, "Dense from pytorch_model.bin: rel err %.3g", worst);
        free(exp);
        cJSON_Delete(c);
        cge_model_free(m);
    }
}

static void test_errors(void) {
    char dir[512], p[600], src[600];
    snprintf(src, sizeof src, "%s/tests/fixtures/models/bert/model.safetensors", getcwd(p, sizeof p));
    /* Missing tensors: a config with one layer more than the checkpoint. */
    make_folder(dir, sizeof dir, "missing");
    write_config(dir, "tests/fixtures/models/bert/config.json", "num_hidden_layers", cJSON_CreateNumber(3));
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(symlink(src, p) == 0);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "encoder.layer.2.attention.self.query.weight", "missing");
    /* Wrong shape. */
    make_folder(dir, sizeof dir, "shape");
    write_config(dir, "tests/fixtures/models/bert/config.json", "intermediate_size", cJSON_CreateNumber(128));
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(symlink(src, p) == 0);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "encoder.layer.0.intermediate.dense.weight", "[256, 64]");
    /* Malformed configs. */
    make_folder(dir, sizeof dir, "nohidden");
    write_config(dir, "tests/fixtures/models/bert/config.json", "hidden_size", NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(symlink(src, p) == 0);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "hidden_size", dir);
    make_folder(dir, sizeof dir, "strhidden");
    write_config(dir, "tests/fixtures/models/bert/config.json", "hidden_size", cJSON_CreateString("64"));
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(symlink(src, p) == 0);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "hidden_size", NULL);
    make_folder(dir, sizeof dir, "heads");
    write_config(dir, "tests/fixtures/models/bert/config.json", "num_attention_heads", cJSON_CreateNumber(5));
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(symlink(src, p) == 0);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "num_attention_heads", NULL);
    make_folder(dir, sizeof dir, "family");
    write_config(dir, "tests/fixtures/models/bert/config.json", "model_type", cJSON_CreateString("gpt_neox"));
    expect_fail(dir, CGE_ERR_UNSUPPORTED, "gpt_neox", NULL);
    make_folder(dir, sizeof dir, "badjson");
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, "{\"model_type\": \"bert\", ", 23);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "config.json", NULL);
    make_folder(dir, sizeof dir, "noweights");
    write_config(dir, "tests/fixtures/models/bert/config.json", NULL, NULL);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "weights", NULL);
    expect_fail("tests/fixtures/no_such_model", CGE_ERR_MODEL_NOT_FOUND, "config.json", NULL);
    /* A tokenizer with more ids than the embedding table (30522 > 1000). */
    make_folder(dir, sizeof dir, "bigtok");
    write_config(dir, "tests/fixtures/models/bert/config.json", NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(symlink(src, p) == 0);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    copy_file("tests/fixtures/e2e/bert_mean_l2/model/tokenizer.json", p);
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "embeddings.word_embeddings.weight", "30522");
    /* A Dense config that does not fit the pooled width. */
    make_folder(dir, sizeof dir, "densebad");
    write_config(dir, "tests/fixtures/models/bert/config.json", NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(symlink(src, p) == 0);
    snprintf(p, sizeof p, "%s/modules.json", dir);
    const char *mods = "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
                       "{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"},"
                       "{\"idx\":2,\"name\":\"2\",\"path\":\"2_Dense\",\"type\":\"sentence_transformers.models.Dense\"}]";
    write_file(p, mods, strlen(mods));
    snprintf(p, sizeof p, "%s/1_Pooling", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/1_Pooling/config.json", dir);
    const char *pool = "{\"word_embedding_dimension\": 64, \"pooling_mode_max_tokens\": true}";
    write_file(p, pool, strlen(pool));
    snprintf(p, sizeof p, "%s/2_Dense", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/2_Dense/config.json", dir);
    const char *dense = "{\"in_features\": 32, \"out_features\": 24, \"bias\": false}";
    write_file(p, dense, strlen(dense));
    expect_fail(dir, CGE_ERR_MODEL_LOAD, "in_features 32", NULL);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cge_test_models_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_name_variants);
    RUN(test_other_formats);
    RUN(test_errors);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", tmpdir);
    return test_report("models_bert_load");
}
