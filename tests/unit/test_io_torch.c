/*
 * test_io_torch.c: pytorch_model.bin through the restricted unpickler.
 *
 * The files of tests/fixtures/io/ were written by torch.save (scripts/gen_pickle_fixtures.py);
 * manifest.json holds what torch.load returned for each (names, dtypes, shapes, values). Every
 * file must load to exactly that. Malicious pickles (os.system, eval, and opcodes built here by
 * hand) must be refused without running anything; truncated and corrupted pickles and zips
 * must fail cleanly.
 */
#include "io/io_internal.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <unistd.h>

static const char *dtype_name(enum cge_dtype d) {
    static const char *const n[] = {"F32", "F16", "BF16", "I8", "U8", "I32", "I64", "F64"};
    return (unsigned)d < 8 ? n[d] : "?";
}

static double element(const struct cge_tensor_info *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case CGE_DTYPE_I8:
        return ((const int8_t *)p)[i];
    case CGE_DTYPE_U8:
        return p[i];
    case CGE_DTYPE_I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case CGE_DTYPE_I64: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        return (double)v;
    }
    default:
        return NAN;
    }
}

static void check_file(const char *fname, const cJSON *expect) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/io/%s", fname);
    struct cge_weights *w = NULL;
    enum cge_status st = cge_weights_open(path, &w);
    CHECK_MSG(st == CGE_OK, "%s: %s", path, cge_errmsg());
    if (!w) return;
    CHECK_MSG(cge_weights_count(w) == cJSON_GetArraySize(expect), "%s: %lld tensors, want %d", path,
              (long long)cge_weights_count(w), cJSON_GetArraySize(expect));
    int bad = 0, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, expect) {
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        const char *dt = cJSON_GetObjectItem(e, "dtype")->valuestring;
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        const cJSON *values = cJSON_GetObjectItem(e, "values");
        const struct cge_tensor_info *t = cge_weights_find(w, name);
        /* pickles list tensors sorted by name; the manifest is sorted too */
        const struct cge_tensor_info *at = cge_weights_at(w, i++);
        if (!t || at != t) {
            printf("  %s: '%s' missing or out of order\n", path, name);
            bad++;
            continue;
        }
        if (strcmp(dtype_name(t->dtype), dt) != 0 || t->n_dim != cJSON_GetArraySize(shape)) {
            printf("  %s: '%s' dtype %s/%s dims %d\n", path, name, dtype_name(t->dtype), dt,
                   t->n_dim);
            bad++;
            continue;
        }
        int64_t want[CGE_MAX_DIMS];
        for (int d = 0; d < t->n_dim; d++) {
            want[d] = (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
            if (want[d] != t->shape[d]) bad++;
        }
        if (t->n_elem != cJSON_GetArraySize(values) ||
            t->n_bytes != (size_t)t->n_elem * cge_dtype_size(t->dtype) ||
            (t->n_elem && (uintptr_t)t->data % cge_dtype_size(t->dtype))) {
            bad++;
            continue;
        }
        int is_float = t->dtype == CGE_DTYPE_F32 || t->dtype == CGE_DTYPE_F16 ||
                       t->dtype == CGE_DTYPE_BF16 || t->dtype == CGE_DTYPE_F64;
        float *f = NULL;
        if (is_float && cge_weights_get_f32(w, name, t->n_dim, want, &f) != CGE_OK) {
            bad++;
            continue;
        }
        int64_t k = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, values) {
            double got = is_float ? (double)f[k] : element(t, k);
            if (got != v->valuedouble) {
                if (bad < 10)
                    printf("  %s: '%s'[%lld] = %g, torch says %g\n", path, name, (long long)k, got,
                           v->valuedouble);
                bad++;
            }
            k++;
        }
        cge__free(f);
    }
    CHECK_MSG(bad == 0, "%s: %d mismatches", path, bad);
    cge_weights_free(w);
}

static void test_manifest(void) {
    cJSON *m = NULL;
    CHECK(cge__json_read_file("tests/fixtures/io/manifest.json", &m) == CGE_OK);
    const cJSON *files = cJSON_GetObjectItem(m, "files");
    CHECK(cJSON_GetArraySize(files) >= 6);
    const cJSON *f;
    cJSON_ArrayForEach(f, files) check_file(f->string, f);
    cJSON_Delete(m);
}

static void test_views_share_memory(void) {
    struct cge_weights *w = NULL;
    CHECK(cge_weights_open("tests/fixtures/io/views.bin", &w) == CGE_OK);
    if (!w) return;
    const struct cge_tensor_info *emb = cge_weights_find(w, "emb");
    const struct cge_tensor_info *lm = cge_weights_find(w, "lm_head.weight");
    const struct cge_tensor_info *base = cge_weights_find(w, "base");
    const struct cge_tensor_info *rows = cge_weights_find(w, "rows");
    /* tied: one storage, zero-copy, same bytes */
    CHECK(emb && lm && emb->data == lm->data);
    /* slice at storage offset 6 points into the base storage */
    CHECK(base && rows && (const float *)rows->data == (const float *)base->data + 6);
    cge_weights_free(w);
}

static void test_folder(void) {
    struct cge_weights *w = NULL;
    CHECK(cge_weights_open("tests/fixtures/io/bert_like", &w) == CGE_OK);
    CHECK(w && cge_weights_find(w, "bert.embeddings.word_embeddings.weight") != NULL);
    CHECK(w && strstr(cge_weights_path(w), "bert_like/pytorch_model.bin") != NULL);
    const struct cge_tensor_info *pos =
        w ? cge_weights_find(w, "bert.embeddings.position_ids") : NULL;
    CHECK(pos && pos->dtype == CGE_DTYPE_I64 && pos->n_dim == 2 && pos->shape[1] == 16);
    float *v = NULL;
    int64_t shape[2] = {20, 9};
    CHECK(cge_weights_get_f32(w, "bert.embeddings.word_embeddings.weight", 2, shape, &v) ==
          CGE_ERR_INVALID_DIM);
    CHECK(strstr(cge_errmsg(), "pytorch_model.bin") && strstr(cge_errmsg(), "[20, 8]"));
    cge_weights_free(w);
}

/* pytorch_model.bin.index.json with two .bin shards holds exactly the single file's tensors. */
static void test_sharded_bin(void) {
    struct cge_weights *one = NULL, *two = NULL;
    CHECK(cge_weights_open("tests/fixtures/io/bert_like", &one) == CGE_OK);
    enum cge_status st = cge_weights_open("tests/fixtures/io/bert_like_sharded", &two);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    if (one && two) {
        CHECK(strstr(cge_weights_path(two), "pytorch_model.bin.index.json") != NULL);
        CHECK(cge_weights_count(one) == cge_weights_count(two));
        int bad = 0;
        for (int64_t i = 0; i < cge_weights_count(one); i++) {
            const struct cge_tensor_info *a = cge_weights_at(one, i);
            const struct cge_tensor_info *b = cge_weights_find(two, a->name);
            if (!b || b != cge_weights_at(two, i) ||
                /* both sorted by name */ a->dtype != b->dtype || a->n_bytes != b->n_bytes ||
                memcmp(a->shape, b->shape, sizeof a->shape) != 0 ||
                memcmp(a->data, b->data, a->n_bytes) != 0)
                bad++;
        }
        CHECK_MSG(bad == 0, "%d tensors differ", bad);
    }
    cge_weights_free(one);
    cge_weights_free(two);
}

static void test_refused_files(void) {
    unlink("/tmp/cge_pwned");
    struct cge_weights *w = NULL;
    enum cge_status st = cge_weights_open("tests/fixtures/io/malicious.bin", &w);
    CHECK(st == CGE_ERR_SERIALIZATION && w == NULL);
    CHECK_MSG(strstr(cge_errmsg(), "refusing global 'posix.system'") &&
                  strstr(cge_errmsg(), "malicious.bin"),
              "%s", cge_errmsg());
    CHECK(access("/tmp/cge_pwned", F_OK) != 0);
    st = cge_weights_open("tests/fixtures/io/malicious_eval.bin", &w);
    CHECK(st == CGE_ERR_SERIALIZATION);
    CHECK_MSG(strstr(cge_errmsg(), "refusing global '__builtin__.eval'"), "%s", cge_errmsg());
    st = cge_weights_open("tests/fixtures/io/byteorder_big.bin", &w);
    CHECK_MSG(st == CGE_ERR_UNSUPPORTED && strstr(cge_errmsg(), "big-endian"), "%s", cge_errmsg());
    st = cge_weights_open("tests/fixtures/io/legacy.bin", &w);
    CHECK_MSG(st == CGE_ERR_UNSUPPORTED && strstr(cge_errmsg(), "legacy"), "%s", cge_errmsg());
}

/* ---- hand-made pickles through the internal entry -------------------------------------------- */

static uint8_t fake_storage[4096] __attribute__((aligned(64)));

static enum cge_status fake_resolver(void *user, const char *key, size_t n, const void **data) {
    (void)user;
    if (n > sizeof fake_storage)
        return cge__err(CGE_ERR_SERIALIZATION, "fake storage '%s' too big", key);
    *data = fake_storage;
    return CGE_OK;
}

static enum cge_status unpickle(const void *p, size_t n, struct cge_weights **out) {
    struct cge_weights *w = cge__weights_new("hand.pkl");
    enum cge_status st = cge__unpickle_state_dict(p, n, "hand.pkl", fake_resolver, NULL, w);
    if (!st) st = cge__weights_finish(w, 1);
    if (st || !out) {
        cge_weights_free(w);
        w = NULL;
    }
    if (out) *out = w;
    return st;
}

#define PK(s) (const uint8_t *)(s), sizeof(s) - 1

static void test_hand_pickles(void) {
    struct {
        const uint8_t *p;
        size_t n;
        const char *expect;
    } refused[] = {
        /* cos.system / (S'ls' / tR. : protocol 0 INST/STRING */
        {PK("\x80\x02"
            "cos\nsystem\n(S'ls'\ntR."),
         "refusing global 'os.system'"},
        {PK("\x80\x02(i__builtin__\nlist\n."), "refusing opcode 0x69 ('i')"},
        {PK("\x80\x02"
            "cbuiltins\ngetattr\n."),
         "refusing global 'builtins.getattr'"},
        {PK("\x80\x04\x8c\x08"
            "builtins\x8c\x04"
            "exec\x93."),
         "refusing global 'builtins.exec'"},
        {PK("\x80\x02"
            "ccollections\nOrderedDict\n)\x81."),
         "refusing opcode 0x81"},
        {PK("\x80\x02(o."), "refusing opcode 0x6f ('o')"},
        {PK("\x80\x02\x82\x01."), "refusing opcode 0x82"},
        {PK("\x80\x02P0\n."), "refusing opcode 0x50 ('P')"},
        {PK("\x80\x02I1\n."), "refusing opcode 0x49 ('I')"},
        /* calling a storage class */
        {PK("\x80\x02"
            "ctorch\nFloatStorage\n)R."),
         "refusing to call torch.FloatStorage"},
        /* OrderedDict with arguments, BUILD on a list, a top-level list */
        {PK("\x80\x02"
            "ccollections\nOrderedDict\n]\x85R."),
         "OrderedDict() with arguments"},
        {PK("\x80\x02]}b."), "BUILD"},
        {PK("\x80\x02]."), "not a state dict"},
        {PK("\x80\x02}"), "no STOP"},
        {PK("\x80\x02."), "STOP on an empty stack"},
        {PK("\x80\x02h\x05."), "memo get"},
        {PK("\x80\x02}r\xff\xff\xff\x7f."), "memo index"},
        {PK("\x80\x02}X\xff\xff\xff\xff"), "past the end"},
        {PK("\x80\x02}(K\x01u."), "odd length"},
        {PK("\x80\x02"
            "0."),
         "POP on an empty stack"},
        {PK("\x80\x02}(0."), "POP on an empty stack"}, /* cannot pop below a MARK */
        {PK("\x80\x02\x8a\x09"), "wider than 64 bits"},
        {PK("\x80\x09}."), "unknown pickle protocol"},
        /* persistent id with a bad shape, an unknown storage type, a bad key */
        {PK("\x80\x02(X\x07\x00\x00\x00storageK\x01tQ."), "persistent id"},
        {PK("\x80\x02(X\x07\x00\x00\x00storagectorch\nBoolStorage\nX\x01\x00\x00\x00"
            "0X\x03\x00"
            "\x00\x00"
            "cpuK\x04tQ."),
         "torch.BoolStorage"},
        {PK("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x03\x00\x00\x00../X\x03"
            "\x00\x00\x00"
            "cpuK\x04tQ."),
         "storage key"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        enum cge_status st = unpickle(refused[i].p, refused[i].n, NULL);
        CHECK_MSG(st != CGE_OK && strstr(cge_errmsg(), refused[i].expect) &&
                      strstr(cge_errmsg(), "hand.pkl"),
                  "case %zu: %d '%s' (want '%s')", i, st, cge_errmsg(), refused[i].expect);
    }

    /* A valid hand-made state dict: {'w': tensor(storage '0' F32 of 6, offset 1, [2,2],
     * stride [2,1])} -> contiguous view at element 1. Storage holds 0..5. */
    for (int i = 0; i < 6; i++) {
        float f = (float)i;
        memcpy(fake_storage + 4 * i, &f, 4);
    }
    static const char ok[] = "\x80\x02}(X\x01\x00\x00\x00w"
                             "ctorch._utils\n_rebuild_tensor_v2\n"
                             "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
                             "0X\x03\x00\x00\x00"
                             "cpuK\x06tQ" /* storage */
                             "K\x01"
                             "K\x02K\x02\x86"
                             "K\x02K\x01\x86"
                             "\x89"
                             "ccollections\nOrderedDict\n)R"
                             "tR"
                             "u.";
    struct cge_weights *w = NULL;
    enum cge_status st = unpickle(PK(ok), &w);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    const struct cge_tensor_info *t = w ? cge_weights_find(w, "w") : NULL;
    CHECK(t && t->n_dim == 2 && t->shape[0] == 2 && t->shape[1] == 2 &&
          (const float *)t->data == (const float *)fake_storage + 1);
    cge_weights_free(w);

    /* torch 2.x: a Parameter with state, and a transposed view (copied, contiguous) */
    static const char param[] = "\x80\x02}(X\x01\x00\x00\x00p"
                                "ctorch._utils\n_rebuild_parameter_with_state\n("
                                "ctorch._utils\n_rebuild_tensor_v2\n"
                                "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00"
                                "0X\x03\x00\x00\x00"
                                "cpuK\x06tQ"
                                "K\x00"
                                "K\x03K\x02\x86"
                                "K\x01K\x03\x86"
                                "\x89"
                                "}"
                                "tR" /* [3,2] stride [1,3] */
                                "\x88}NtR"
                                "u.";
    st = unpickle(PK(param), &w);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    t = w ? cge_weights_find(w, "p") : NULL;
    CHECK(t && t->n_dim == 2 && t->shape[0] == 3 && t->shape[1] == 2);
    if (t) {
        /* storage 0..5 viewed as [2,3] transposed: [[0,3],[1,4],[2,5]] */
        const float want[6] = {0, 3, 1, 4, 2, 5};
        CHECK(memcmp(t->data, want, sizeof want) == 0);
    }
    cge_weights_free(w);

    /* Same with offset 3: elements 3..6, one past the storage of 6 -> refused */
    char off3[sizeof ok];
    memcpy(off3, ok, sizeof ok);
    char *k = memmem(off3, sizeof ok - 1, "K\x01K\x02K\x02", 6);
    CHECK(k != NULL);
    if (k) k[1] = 3;
    st = unpickle(off3, sizeof ok - 1, NULL);
    CHECK_MSG(st == CGE_ERR_SERIALIZATION && strstr(cge_errmsg(), "outside its storage"), "%s",
              cge_errmsg());

    /* every truncation of the valid pickle fails cleanly */
    int accepted = 0;
    for (size_t n = 0; n + 1 < sizeof ok - 1; n++)
        if (unpickle(ok, n, NULL) == CGE_OK) accepted++;
    CHECK_MSG(accepted == 0, "%d truncations accepted", accepted);
}

/* Corrupting bytes of a real .bin never crashes, and a success only hands out tensors inside
 * memory the weights own (checked by ASan). Truncations must all fail. */
static void test_corrupt_zip(void) {
    size_t len;
    uint8_t *buf = (uint8_t *)th_read_file("tests/fixtures/io/views.bin", &len);
    CHECK(buf != NULL);
    if (!buf) return;
    char path[64];
    snprintf(path, sizeof path, "/tmp/cge_test_io_torch_%d.bin", (int)getpid());
    int n_trunc_ok = 0;
    for (size_t cut = 0; cut < len; cut += 7) {
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, cut, f);
        fclose(f);
        struct cge_weights *w = NULL;
        if (cge_weights_open(path, &w) == CGE_OK) n_trunc_ok++;
        cge_weights_free(w);
    }
    CHECK_MSG(n_trunc_ok == 0, "%d truncations accepted", n_trunc_ok);
    uint64_t s = 99;
    for (int k = 0; k < 400; k++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, buf, len);
        for (int j = 0; j < 3; j++) {
            size_t pos = (size_t)((th_randf(&s) * 0.5f + 0.5f) * (float)(len - 1));
            copy[pos] = (uint8_t)(th_randf(&s) * 128 + 128);
        }
        FILE *f = fopen(path, "wb");
        fwrite(copy, 1, len, f);
        fclose(f);
        struct cge_weights *w = NULL;
        if (cge_weights_open(path, &w) == CGE_OK) {
            for (int64_t i = 0; i < cge_weights_count(w); i++) {
                const struct cge_tensor_info *t = cge_weights_at(w, i);
                volatile uint8_t sum = 0;
                for (size_t b = 0; b < t->n_bytes; b++)
                    sum ^= ((const uint8_t *)t->data)[b];
                (void)sum;
            }
        } else {
            CHECK(strstr(cge_errmsg(), path) != NULL);
        }
        cge_weights_free(w);
        free(copy);
    }
    unlink(path);
    free(buf);
}

static void test_oom(void) {
    static const char *const paths[] = {"tests/fixtures/io/views.bin",
                                        "tests/fixtures/io/deflated.bin",
                                        "tests/fixtures/io/bert_like_sharded"};
    for (size_t p = 0; p < 3; p++) {
        int clean = 1, reached = 0;
        for (long k = 0; k < 2000; k++) {
            struct cge_weights *w = NULL;
            cge__fail_alloc_after(k);
            enum cge_status st = cge_weights_open(paths[p], &w);
            cge__fail_alloc_after(-1);
            if (st == CGE_OK) {
                cge_weights_free(w);
                reached = 1;
                break;
            }
            if (w) clean = 0;
        }
        CHECK_MSG(clean && reached, "%s", paths[p]);
    }
}

int main(void) {
    RUN(test_manifest);
    RUN(test_views_share_memory);
    RUN(test_folder);
    RUN(test_sharded_bin);
    RUN(test_refused_files);
    RUN(test_hand_pickles);
    RUN(test_corrupt_zip);
    RUN(test_oom);
    return test_report("io_torch");
}
