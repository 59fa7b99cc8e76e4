/*
 * test_io.c: safetensors loading. Every fixture model folder opens, lists exactly the tensors
 * and shapes its case.json names, and its bytes match what this test reads from the file by
 * itself; fp16/bf16 conversion against hand-computed values; malformed files (built here) are
 * refused with a message that names the file and the problem.
 */
#include "core/core.h"
#include "io/weights.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <unistd.h>

static const char *const fixtures[] = {"bert",    "clip_vision",   "mistral", "mpnet",
                                       "roberta", "t5_gated_gelu", "t5_relu", "whisper_encoder"};

/* Reads the safetensors header with cJSON here in the test and checks one tensor's bytes. */
static int bytes_match(const char *file, const struct cge_tensor_info *t) {
    size_t len;
    char *buf = th_read_file(file, &len);
    if (!buf) return 0;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | (uint8_t)buf[i];
    cJSON *h = cJSON_ParseWithLength(buf + 8, (size_t)hlen);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, t->name);
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int ok = 0;
    if (off) {
        size_t b = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        size_t en = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        ok = en - b == t->n_bytes && memcmp(buf + 8 + hlen + b, t->data, t->n_bytes) == 0;
    }
    cJSON_Delete(h);
    free(buf);
    return ok;
}

static void test_fixture_models(void) {
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char dir[128], casef[256], stf[256];
        snprintf(dir, sizeof dir, "tests/fixtures/models/%s", fixtures[f]);
        snprintf(casef, sizeof casef, "%s/case.json", dir);
        snprintf(stf, sizeof stf, "%s/model.safetensors", dir);
        struct cge_weights *w = NULL;
        enum cge_status st = cge_weights_open(dir, &w);
        CHECK_MSG(st == CGE_OK, "%s: %s", dir, cge_errmsg());
        if (st) continue;
        cJSON *c = NULL;
        CHECK(cge__json_read_file(casef, &c) == CGE_OK);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "safetensors");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(s, "tensors");
        int n = cJSON_GetArraySize(list);
        CHECK_MSG(cge_weights_count(w) == n, "%s: %lld tensors, case.json lists %d", dir,
                  (long long)cge_weights_count(w), n);
        int n_bad = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list) {
            const char *name = cJSON_GetArrayItem(item, 0)->valuestring;
            const cJSON *shape = cJSON_GetArrayItem(item, 1);
            const struct cge_tensor_info *t = cge_weights_find(w, name);
            if (!t) {
                n_bad++;
                printf("  missing %s in %s\n", name, dir);
                continue;
            }
            int nd = cJSON_GetArraySize(shape);
            int64_t want[CGE_MAX_DIMS];
            int64_t ne = 1;
            for (int i = 0; i < nd; i++) {
                want[i] = (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
                ne *= want[i];
            }
            if (t->dtype != CGE_DTYPE_F32 || t->n_dim != nd || t->n_elem != ne ||
                t->n_bytes != (size_t)ne * 4 || ((uintptr_t)t->data % 4) != 0)
                n_bad++;
            for (int i = 0; i < nd && i < t->n_dim; i++)
                if (t->shape[i] != want[i]) n_bad++;
            float *v = NULL;
            if (cge_weights_get_f32(w, name, nd, want, &v) != CGE_OK) {
                n_bad++;
            } else if (memcmp(v, t->data, t->n_bytes) != 0) {
                n_bad++;
            }
            cge__free(v);
            if (!bytes_match(stf, t)) n_bad++;
        }
        CHECK_MSG(n_bad == 0, "%s: %d mismatches", dir, n_bad);
        /* file order = offset order: data pointers increase */
        int ordered = 1;
        for (int64_t i = 1; i < cge_weights_count(w); i++)
            if ((const char *)cge_weights_at(w, i)->data <
                (const char *)cge_weights_at(w, i - 1)->data)
                ordered = 0;
        CHECK(ordered);
        CHECK(cge_weights_at(w, -1) == NULL);
        CHECK(cge_weights_at(w, cge_weights_count(w)) == NULL);
        CHECK(cge_weights_find(w, "no.such.tensor") == NULL);
        CHECK(strcmp(cge_weights_path(w), stf) == 0);
        cJSON_Delete(c);
        cge_weights_free(w);
    }
}

static void test_shape_errors(void) {
    struct cge_weights *w = NULL;
    CHECK(cge_weights_open("tests/fixtures/models/bert/model.safetensors", &w) == CGE_OK);
    if (!w) return;
    const char *name = "encoder.layer.0.intermediate.dense.weight"; /* [256, 64] */
    float *v = NULL;
    int64_t bad[2] = {256, 65};
    CHECK(cge_weights_get_f32(w, name, 2, bad, &v) == CGE_ERR_INVALID_DIM);
    CHECK(v == NULL);
    CHECK_MSG(strstr(cge_errmsg(), "tests/fixtures/models/bert/model.safetensors") &&
                  strstr(cge_errmsg(), name) && strstr(cge_errmsg(), "[256, 64]") &&
                  strstr(cge_errmsg(), "[256, 65]"),
              "%s", cge_errmsg());
    int64_t any[2] = {-1, 64};
    CHECK(cge_weights_get_f32(w, name, 2, any, &v) == CGE_OK);
    cge__free(v);
    v = NULL;
    int64_t one[1] = {256 * 64};
    CHECK(cge_weights_get_f32(w, name, 1, one, &v) == CGE_ERR_INVALID_DIM);
    CHECK(cge_weights_get_f32(w, name, 0, NULL, &v) == CGE_OK);
    cge__free(v);
    v = NULL;
    CHECK(cge_weights_get_f32(w, "nope", 0, NULL, &v) != CGE_OK);
    CHECK(strstr(cge_errmsg(), "nope") != NULL);
    cge_weights_free(w);
    cge_weights_free(NULL);
}

/* ---- safetensors images built in the test ---------------------------------------------------- */

struct img {
    uint8_t buf[4096];
    size_t len;
};

/* 8-byte length + header + data */
static void build(struct img *m, const char *header, const void *data, size_t data_len) {
    size_t h = strlen(header);
    for (int i = 0; i < 8; i++)
        m->buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(m->buf + 8, header, h);
    if (data_len) memcpy(m->buf + 8 + h, data, data_len);
    m->len = 8 + h + data_len;
}

static void test_half_types(void) {
    /* f16: 1, -2, 65504, smallest subnormal 2^-24, largest subnormal, -0, +inf, 0.333251953125 */
    const uint16_t f16[8] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x8000, 0x7c00, 0x3555};
    const double f16_want[8] = {
        1.0,  -2.0,     65504.0,       5.9604644775390625e-08, 6.0975551605224609375e-05,
        -0.0, INFINITY, 0.333251953125};
    /* bf16: 1, 3.140625, -0.5, 1e-40-ish subnormal 0x0001 = 2^-133 */
    const uint16_t bf16[4] = {0x3f80, 0x4049, 0xbf00, 0x0001};
    const double bf16_want[4] = {1.0, 3.140625, -0.5, 9.183549615799121e-41};
    uint8_t data[64];
    memcpy(data, f16, 16);
    memcpy(data + 16, bf16, 8);
    int8_t i8[4] = {-1, 2, -3, 4};
    memcpy(data + 24, i8, 4);
    double f64[1] = {0.1};
    memcpy(data + 32, f64, 8);
    struct img m;
    build(&m,
          "{\"__metadata__\":{\"format\":\"pt\"},"
          "\"h\":{\"dtype\":\"F16\",\"shape\":[2,4],\"data_offsets\":[0,16]},"
          "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]},"
          "\"q\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[24,28]},"
          "\"u\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[28,32]},"
          "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[32,40]},"
          "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[40,40]}}",
          data, 40);
    struct cge_weights *w = NULL;
    enum cge_status st = cge_weights_from_safetensors_buffer(m.buf, m.len, "mem", &w);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    if (!w) return;
    CHECK(cge_weights_count(w) == 6);
    float *v = NULL;
    int64_t sh[2] = {2, 4};
    CHECK(cge_weights_get_f32(w, "h", 2, sh, &v) == CGE_OK);
    for (int i = 0; v && i < 8; i++) {
        CHECK_MSG(v[i] == (float)f16_want[i], "f16[%d] %g vs %g", i, v[i], f16_want[i]);
        CHECK(!signbit(v[i]) == !signbit(f16_want[i]));
    }
    cge__free(v);
    CHECK(cge_weights_get_f32(w, "b", 0, NULL, &v) == CGE_OK);
    for (int i = 0; v && i < 4; i++)
        CHECK_MSG(v[i] == (float)bf16_want[i], "bf16[%d] %g vs %g", i, v[i], bf16_want[i]);
    cge__free(v);
    CHECK(cge_weights_get_f32(w, "d", 0, NULL, &v) == CGE_OK);
    CHECK(v && v[0] == 0.1f);
    cge__free(v);
    v = NULL;
    const struct cge_tensor_info *q = cge_weights_find(w, "q");
    CHECK(q && q->dtype == CGE_DTYPE_I8 && q->n_elem == 4 && ((const int8_t *)q->data)[2] == -3);
    CHECK(cge_weights_get_f32(w, "q", 0, NULL, &v) == CGE_ERR_UNSUPPORTED);
    CHECK(strstr(cge_errmsg(), "'q'") != NULL);
    const struct cge_tensor_info *e = cge_weights_find(w, "e");
    CHECK(e && e->n_elem == 0 && e->n_bytes == 0 && e->n_dim == 2);
    CHECK(cge_weights_get_f32(w, "e", 0, NULL, &v) == CGE_OK);
    cge__free(v);
    /* file order follows the offsets */
    CHECK(strcmp(cge_weights_at(w, 0)->name, "h") == 0);
    CHECK(strcmp(cge_weights_at(w, 1)->name, "b") == 0);
    cge_weights_free(w);
}

/* Every one of the 65536 half-precision values (and every bf16 pattern) converts exactly to
 * what ldexp gives in double precision here; 65536 + 7 elements exercise the vector loop and
 * its scalar tail. */
static double f16_ref(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return sign ? -v : v;
}

static void test_all_halves(void) {
    const size_t n = 65536 + 7;
    char header[256];
    snprintf(header, sizeof header,
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}}",
             n, 2 * n, n, 2 * n, 4 * n);
    size_t hl = strlen(header);
    size_t len = 8 + hl + 4 * n;
    uint8_t *buf = malloc(len);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    uint8_t *d = buf + 8 + hl;
    for (size_t i = 0; i < n; i++) {
        uint16_t v = (uint16_t)(i * 40503u); /* a permutation of 0..65535, then 7 more */
        memcpy(d + 2 * i, &v, 2);
        memcpy(d + 2 * n + 2 * i, &v, 2);
    }
    struct cge_weights *w = NULL;
    CHECK(cge_weights_from_safetensors_buffer(buf, len, "halves", &w) == CGE_OK);
    float *h = NULL, *b = NULL;
    CHECK(cge_weights_get_f32(w, "h", 0, NULL, &h) == CGE_OK);
    CHECK(cge_weights_get_f32(w, "b", 0, NULL, &b) == CGE_OK);
    int bad_h = 0, bad_b = 0;
    for (size_t i = 0; h && b && i < n; i++) {
        uint16_t v = (uint16_t)(i * 40503u);
        double r = f16_ref(v);
        if (isnan(r) ? !isnan(h[i]) : (h[i] != (float)r || !signbit(h[i]) != !signbit(r))) bad_h++;
        /* bf16 = the top half of a float32 */
        int sign = v >> 15, e = (v >> 7) & 255, m = v & 127;
        double rb = e == 0     ? ldexp(m, -133)
                    : e == 255 ? (m ? NAN : INFINITY)
                               : ldexp(128 + m, e - 134);
        if (sign) rb = -rb;
        if (isnan(rb) ? !isnan(b[i]) : (b[i] != (float)rb || !signbit(b[i]) != !signbit(rb)))
            bad_b++;
    }
    CHECK_MSG(bad_h == 0, "%d f16 values differ", bad_h);
    CHECK_MSG(bad_b == 0, "%d bf16 values differ", bad_b);
    cge__free(h);
    cge__free(b);
    cge_weights_free(w);
    free(buf);
}

/* A header of odd length puts the data at an odd address: the loader must copy it aligned. */
static void test_misaligned(void) {
    float vals[3] = {1.5f, -2.25f, 3.0f};
    struct img m;
    build(&m, "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}  ", vals, 12);
    CHECK((m.len - 12) % 4 != 0);
    struct cge_weights *w = NULL;
    CHECK(cge_weights_from_safetensors_buffer(m.buf, m.len, "odd", &w) == CGE_OK);
    const struct cge_tensor_info *t = cge_weights_find(w, "x");
    CHECK(t && ((uintptr_t)t->data % 4) == 0 && memcmp(t->data, vals, 12) == 0);
    cge_weights_free(w);
}

struct bad_case {
    const char *header;
    size_t data_len;
    const char *expect; /* substring of the message */
    enum cge_status status;
};

static void test_malformed(void) {
    static const struct bad_case cases[] = {
        {"[1,2]", 0, "not a JSON object", CGE_ERR_SERIALIZATION},
        {"{\"a\":", 0, "not valid JSON", CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "trailing",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
         "unsupported dtype", CGE_ERR_UNSUPPORTED},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape[0]",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
         "overflow", CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8,
         "beyond the data region", CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         16, "overlap", CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, "appears twice", CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing data_offsets",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
         "unexpected", CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "two integers",
         CGE_ERR_SERIALIZATION},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "dimensions", CGE_ERR_UNSUPPORTED},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", CGE_ERR_SERIALIZATION},
        {"{\"a\":7}", 0, "not a JSON object", CGE_ERR_SERIALIZATION},
        {"{\"a\xff\":{}}", 0, "UTF-8", CGE_ERR_SERIALIZATION},
        {"{\"\xed\xa0\x80\":{}}", 0, "UTF-8", CGE_ERR_SERIALIZATION}, /* a surrogate */
        {"{\"\xc0\xaf\":{}}", 0, "UTF-8", CGE_ERR_SERIALIZATION},     /* overlong '/' */
    };
    uint8_t zeros[64] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct img m;
        build(&m, cases[i].header, zeros, cases[i].data_len);
        struct cge_weights *w = (struct cge_weights *)1;
        enum cge_status st = cge_weights_from_safetensors_buffer(m.buf, m.len, "bad.st", &w);
        CHECK_MSG(st == cases[i].status && w == NULL, "case %zu: status %d (%s)", i, st,
                  cge_errmsg());
        CHECK_MSG(strstr(cge_errmsg(), cases[i].expect) && strstr(cge_errmsg(), "bad.st"),
                  "case %zu: message '%s' lacks '%s'", i, cge_errmsg(), cases[i].expect);
    }
    /* length prefix problems */
    struct img m;
    build(&m, "{}", NULL, 0);
    struct cge_weights *w = NULL;
    CHECK(cge_weights_from_safetensors_buffer(m.buf, m.len, "empty", &w) == CGE_OK);
    CHECK(w && cge_weights_count(w) == 0);
    cge_weights_free(w);
    CHECK(cge_weights_from_safetensors_buffer(m.buf, 5, "short", &w) == CGE_ERR_SERIALIZATION);
    CHECK(strstr(cge_errmsg(), "too short") != NULL);
    m.buf[0] = 200; /* header length past the end */
    CHECK(cge_weights_from_safetensors_buffer(m.buf, m.len, "long", &w) == CGE_ERR_SERIALIZATION);
    CHECK(strstr(cge_errmsg(), "byte 0") != NULL);
    m.buf[0] = 0;
    m.buf[4] = 1; /* 4 GiB header: over the limit */
    CHECK(cge_weights_from_safetensors_buffer(m.buf, m.len, "huge", &w) == CGE_ERR_SERIALIZATION);
    CHECK(strstr(cge_errmsg(), "limit") != NULL);
}

/* Every truncation of a real file is refused cleanly (or, when only trailing data is cut, still
 * validated); corrupting any single header byte never crashes. */
static void test_truncate_and_corrupt(void) {
    size_t len;
    uint8_t *buf = (uint8_t *)th_read_file("tests/fixtures/models/t5_relu/model.safetensors", &len);
    CHECK(buf != NULL);
    if (!buf) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    int refused = 0, n = 0;
    for (size_t cut = 0; cut < len; cut += (cut < 8 + hlen + 16 ? 1 : 997)) {
        struct cge_weights *w = NULL;
        enum cge_status st = cge_weights_from_safetensors_buffer(buf, cut, "trunc", &w);
        n++;
        if (st != CGE_OK) refused++;
        cge_weights_free(w);
    }
    CHECK_MSG(refused == n, "%d of %d truncations accepted", n - refused, n);
    uint64_t s = 12345;
    for (int k = 0; k < 3000; k++) {
        uint8_t *copy = buf; /* corrupted in place, restored below */
        size_t pos = 8 + (size_t)((th_randf(&s) * 0.5f + 0.5f) * (float)(hlen - 1));
        uint8_t saved = copy[pos];
        copy[pos] = (uint8_t)(th_randf(&s) * 128 + 128);
        struct cge_weights *w = NULL;
        enum cge_status st = cge_weights_from_safetensors_buffer(copy, len, "corrupt", &w);
        if (st == CGE_OK) {
            /* accepted: every tensor must lie inside the buffer */
            for (int64_t i = 0; i < cge_weights_count(w); i++) {
                const struct cge_tensor_info *t = cge_weights_at(w, i);
                CHECK((const uint8_t *)t->data >= copy + 8 + hlen &&
                      (const uint8_t *)t->data + t->n_bytes <= copy + len);
            }
        } else {
            CHECK(strstr(cge_errmsg(), "corrupt") != NULL);
        }
        cge_weights_free(w);
        copy[pos] = saved;
    }
    free(buf);
}

/* cge_weights_release drops mapped pages; reading the tensor again gives the same bytes. */
static void test_release(void) {
    struct cge_weights *w = NULL;
    CHECK(cge_weights_open("tests/fixtures/models/bert", &w) == CGE_OK);
    if (!w) return;
    const struct cge_tensor_info *t = cge_weights_find(w, "embeddings.word_embeddings.weight");
    CHECK(t != NULL);
    if (t) {
        void *copy = malloc(t->n_bytes);
        memcpy(copy, t->data, t->n_bytes);
        cge_weights_release(w, t);
        CHECK(memcmp(copy, t->data, t->n_bytes) == 0);
        free(copy);
    }
    cge_weights_release(w, NULL);
    cge_weights_release(NULL, t);
    cge_weights_free(w);
}

/* A header of 640 bytes makes the file start with 0x80 0x02, like a pickle: still safetensors. */
static void test_pickle_like_length(void) {
    char header[641];
    const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    memset(header, ' ', 640);
    memcpy(header, h, strlen(h));
    header[640] = '\0';
    struct img m;
    float v[2] = {1.0f, 2.0f};
    build(&m, header, v, 8);
    CHECK(m.buf[0] == 0x80 && m.buf[1] == 0x02);
    char path[64];
    snprintf(path, sizeof path, "/tmp/cge_test_io_%d.safetensors", (int)getpid());
    FILE *f = fopen(path, "wb");
    fwrite(m.buf, 1, m.len, f);
    fclose(f);
    struct cge_weights *w = NULL;
    CHECK_MSG(cge_weights_open(path, &w) == CGE_OK, "%s", cge_errmsg());
    const struct cge_tensor_info *t = w ? cge_weights_find(w, "x") : NULL;
    CHECK(t && memcmp(t->data, v, 8) == 0);
    cge_weights_free(w);
    unlink(path);
}

static void test_open_errors(void) {
    struct cge_weights *w = (struct cge_weights *)1;
    CHECK(cge_weights_open("tests/fixtures/no/such/thing", &w) == CGE_ERR_MODEL_NOT_FOUND);
    CHECK(w == NULL);
    CHECK(cge_weights_open("tests/fixtures", &w) == CGE_ERR_MODEL_NOT_FOUND);
    CHECK(strstr(cge_errmsg(), "tests/fixtures") != NULL);
    /* a non-safetensors file */
    CHECK(cge_weights_open("tests/fixtures/models/bert/config.json", &w) != CGE_OK);
    CHECK(strstr(cge_errmsg(), "config.json") != NULL);
    CHECK(cge_weights_open("tests/fixtures/models/bert/case.json", &w) != CGE_OK);
}

/* OOM: fail every allocation in turn while opening a fixture; each must fail cleanly. */
static void test_oom(void) {
    int clean = 1, reached = 0;
    for (long k = 0; k < 2000; k++) {
        struct cge_weights *w = NULL;
        cge__fail_alloc_after(k);
        enum cge_status st = cge_weights_open("tests/fixtures/models/mistral", &w);
        cge__fail_alloc_after(-1);
        if (st == CGE_OK) {
            cge_weights_free(w);
            reached = 1;
            break;
        }
        if (w != NULL) clean = 0;
        cge_weights_free(w);
    }
    CHECK(clean && reached);
}

int main(void) {
    RUN(test_fixture_models);
    RUN(test_shape_errors);
    RUN(test_half_types);
    RUN(test_all_halves);
    RUN(test_misaligned);
    RUN(test_malformed);
    RUN(test_truncate_and_corrupt);
    RUN(test_release);
    RUN(test_pickle_like_length);
    RUN(test_open_errors);
    RUN(test_oom);
    return test_report("io");
}
