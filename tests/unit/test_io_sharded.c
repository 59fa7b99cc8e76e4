/*
 * test_io_sharded.c: sharded checkpoints (model.safetensors.index.json). The test splits the
 * BERT fixture into three shards in a temporary folder (writing the safetensors files itself),
 * opens the index and checks that every tensor is there with the bytes of the single-file
 * original; then breaks the index in the ways that must be refused.
 */
#include "core/core.h"
#include "io/weights.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[256];

static void write_file(const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static void write_text(const char *name, const char *text) {
    write_file(name, text, strlen(text));
}

/* Writes tensors [from, to) of w (file order) as one safetensors shard. */
static void write_shard(const struct cge_weights *w, int64_t from, int64_t to, const char *name) {
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    for (int64_t i = from; i < to; i++) {
        const struct cge_tensor_info *t = cge_weights_at(w, i);
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *s = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->n_dim; d++)
            cJSON_AddItemToArray(s, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + t->n_bytes)));
        off += t->n_bytes;
    }
    char *js = cJSON_PrintUnformatted(h);
    size_t hl = strlen(js);
    size_t padded = (hl + 7) / 8 * 8;
    size_t total = 8 + padded + off;
    uint8_t *buf = calloc(1, total);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, js, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    size_t p = 8 + padded;
    for (int64_t i = from; i < to; i++) {
        const struct cge_tensor_info *t = cge_weights_at(w, i);
        memcpy(buf + p, t->data, t->n_bytes);
        p += t->n_bytes;
    }
    write_file(name, buf, total);
    free(buf);
    free(js);
    cJSON_Delete(h);
}

/* weight_map: tensors [0,a) -> s1, [a,b) -> s2, [b,n) -> s3; `tweak` edits it before writing. */
static void write_index(const struct cge_weights *w, int64_t a, int64_t b,
                        void (*tweak)(cJSON *map)) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", 1234);
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    for (int64_t i = 0; i < cge_weights_count(w); i++)
        cJSON_AddStringToObject(map, cge_weights_at(w, i)->name,
                                i < a   ? "model-00001-of-00003.safetensors"
                                : i < b ? "model-00002-of-00003.safetensors"
                                        : "model-00003-of-00003.safetensors");
    if (tweak) tweak(map);
    char *js = cJSON_Print(root);
    write_text("model.safetensors.index.json", js);
    free(js);
    cJSON_Delete(root);
}

static void tweak_wrong_shard(cJSON *map) {
    cJSON_ReplaceItemInObject(map, "embeddings.word_embeddings.weight",
                              cJSON_CreateString("model-00003-of-00003.safetensors"));
}
static void tweak_missing_shard(cJSON *map) {
    cJSON_AddStringToObject(map, "extra.weight", "model-00009-of-00009.safetensors");
}
static void tweak_escape(cJSON *map) {
    cJSON_AddStringToObject(map, "extra.weight", "../../etc/passwd");
}
static void tweak_missing_tensor(cJSON *map) {
    cJSON_AddStringToObject(map, "not.there", "model-00001-of-00003.safetensors");
}
static void tweak_not_string(cJSON *map) {
    cJSON_AddNumberToObject(map, "x", 3);
}

static void test_sharded(void) {
    struct cge_weights *ref = NULL;
    CHECK(cge_weights_open("tests/fixtures/models/bert/model.safetensors", &ref) == CGE_OK);
    if (!ref) return;
    int64_t n = cge_weights_count(ref);
    int64_t a = n / 3, b = 2 * n / 3;
    write_shard(ref, 0, a, "model-00001-of-00003.safetensors");
    write_shard(ref, a, b, "model-00002-of-00003.safetensors");
    write_shard(ref, b, n, "model-00003-of-00003.safetensors");
    write_index(ref, a, b, NULL);

    char idx[512];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", tmpdir);
    struct cge_weights *w = NULL;
    /* the folder: no model.safetensors, so the index is found */
    enum cge_status st = cge_weights_open(tmpdir, &w);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    if (w) {
        CHECK(strcmp(cge_weights_path(w), idx) == 0);
        CHECK(cge_weights_count(w) == n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            const struct cge_tensor_info *r = cge_weights_at(ref, i);
            const struct cge_tensor_info *t = cge_weights_find(w, r->name);
            if (!t || t->n_bytes != r->n_bytes || t->n_dim != r->n_dim ||
                memcmp(t->data, r->data, r->n_bytes) != 0 ||
                memcmp(t->shape, r->shape, sizeof t->shape) != 0)
                bad++;
        }
        CHECK_MSG(bad == 0, "%d tensors differ from the single-file original", bad);
        float *v = NULL;
        int64_t shape[2] = {1000, 64};
        CHECK(cge_weights_get_f32(w, "embeddings.word_embeddings.weight", 2, shape, &v) == 0);
        cge__free(v);
        cge_weights_free(w);
        w = NULL;
    }
    /* the index path itself */
    CHECK(cge_weights_open(idx, &w) == CGE_OK);
    cge_weights_free(w);
    w = NULL;

    struct {
        void (*tweak)(cJSON *);
        const char *expect;
    } bad[] = {
        {tweak_wrong_shard, "not in shard"}, {tweak_missing_shard, "missing"},
        {tweak_escape, "not a file name"},   {tweak_missing_tensor, "not.there"},
        {tweak_not_string, "not a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_index(ref, a, b, bad[i].tweak);
        st = cge_weights_open(idx, &w);
        CHECK_MSG(st != CGE_OK && w == NULL && strstr(cge_errmsg(), bad[i].expect) &&
                      strstr(cge_errmsg(), "index.json"),
                  "case %zu: %d '%s'", i, st, cge_errmsg());
    }
    /* the same tensor in two shards */
    write_index(ref, a, b, NULL);
    write_shard(ref, a - 1, b, "model-00002-of-00003.safetensors");
    st = cge_weights_open(idx, &w);
    CHECK_MSG(st == CGE_ERR_SERIALIZATION && strstr(cge_errmsg(), "twice"), "%s", cge_errmsg());
    /* a corrupt shard: the message names the shard */
    write_text("model-00002-of-00003.safetensors", "garbage!garbage");
    st = cge_weights_open(idx, &w);
    CHECK_MSG(st == CGE_ERR_SERIALIZATION && strstr(cge_errmsg(), "model-00002-of-00003"), "%s",
              cge_errmsg());
    /* not an index */
    write_text("model.safetensors.index.json", "{\"metadata\": {}}");
    CHECK(cge_weights_open(idx, &w) == CGE_ERR_SERIALIZATION);
    write_text("model.safetensors.index.json", "{\"weight_map\": ");
    CHECK(cge_weights_open(idx, &w) == CGE_ERR_SERIALIZATION);
    cge_weights_free(ref);
}

static void cleanup(void) {
    const char *names[] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < 4; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cge_test_io_sharded_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("mkdtemp failed\n");
        return 1;
    }
    RUN(test_sharded);
    cleanup();
    return test_report("io_sharded");
}
