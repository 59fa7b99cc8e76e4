/*
 * test_cache_keys.c: golden values of the cache-key hash. Keys are persisted in LMDB, so a
 * silent change of the key derivation orphans every stored entry: these literals must only
 * change with a new tag ("cge-cache-key-v2") and a migration. The references were computed
 * outside cge: the canonical bytes (tag, then each field as a little-endian u64 length or value
 * and its bytes) built in Python, h1 = XXH3-64 by Debian's `xxhsum -H3`, h2 = XXH64 with seed
 * 0x9E3779B97F4A7C15 by a Python XXH64 that reproduces `xxhsum -H1` at seed 0. The test also
 * rebuilds the bytes here and hashes them with libxxhash one-shot, so a failure says whether the
 * encoding or the hashing moved. Then cge_log_set: a corrupt cache file is reported through the
 * log callback (level WARN, the file named) and opened empty.
 */
#include "cache/cache.h"
#include "core/core.h"
#include "testhelp.h"

#include <unistd.h>
#include <xxhash.h>

struct golden {
    const char *ver;
    unsigned modality;
    int role;
    const char *ins;
    const char *content;
    size_t content_len;
    uint64_t h1, h2;
};

static const struct golden cases[] = {
    {"", CGE_MOD_TEXT, CGE_CACHE_ROLE_NONE, NULL, "Hello world", 11, 0x2ed30aa06d3cd129ull, 0xd6af562fb8491ca2ull},
    {"cge-ensemble-1", CGE_MOD_TEXT, CGE_CACHE_ROLE_QUERY,
     "Represent the Wikipedia question for retrieving supporting documents: ",
     "where is the food stored in a yam plant", 39, 0x80594aaae4a61729ull, 0xc1653e8fbc20eb80ull},
    {"v2", CGE_MOD_IMAGE, CGE_CACHE_ROLE_DOC, "", "\x89PNG\r\n\x1a\n\x00\x01", 10, 0xb2deb53a97eb69a5ull,
     0xee04715c47fc95d3ull},
    {NULL, CGE_MOD_AUDIO, CGE_CACHE_ROLE_NONE, NULL, "", 0, 0x13bee0212c633a12ull, 0x5a37501db8320fd4ull},
};

static size_t put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
    return 8;
}

static size_t put_bytes(unsigned char *p, const void *s, size_t n) {
    size_t k = put_u64(p, n);
    memcpy(p + k, s, n);
    return k + n;
}

static void test_golden(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct golden *g = &cases[i];
        struct cge_cache_request r = {g->modality, g->role, g->content, g->content_len, g->ins, g->ver};
        struct cge_cache_key k;
        cge_cache_key_make(&r, &k);
        CHECK_MSG(k.h1 == g->h1 && k.h2 == g->h2 && k.content_len == g->content_len,
                  "case %zu: %016llx %016llx vs golden %016llx %016llx", i, (unsigned long long)k.h1,
                  (unsigned long long)k.h2, (unsigned long long)g->h1, (unsigned long long)g->h2);
        /* The canonical encoding, rebuilt here, hashed one-shot by libxxhash. */
        unsigned char buf[512];
        size_t n = 0;
        const char *ver = g->ver ? g->ver : "", *ins = g->ins ? g->ins : "";
        memcpy(buf, "cge-cache-key-v1", 16);
        n = 16;
        n += put_bytes(buf + n, ver, strlen(ver));
        n += put_u64(buf + n, g->modality);
        n += put_u64(buf + n, (uint64_t)(int64_t)g->role);
        n += put_bytes(buf + n, ins, strlen(ins));
        n += put_bytes(buf + n, g->content, g->content_len);
        CHECK_MSG(XXH3_64bits(buf, n) == g->h1, "case %zu: encoding or XXH3 differs from the golden h1", i);
        CHECK_MSG(XXH64(buf, n, 0x9E3779B97F4A7C15ull) == g->h2, "case %zu: XXH64 differs from the golden h2", i);
    }
    /* NULL and "" are the same instruction and version; a different role is a different key. */
    struct cge_cache_request a = {CGE_MOD_TEXT, CGE_CACHE_ROLE_NONE, "Hello world", 11, "", ""}, b = a;
    struct cge_cache_key ka, kb;
    cge_cache_key_make(&a, &ka);
    CHECK(ka.h1 == cases[0].h1 && ka.h2 == cases[0].h2);
    b.role = CGE_CACHE_ROLE_DOC;
    cge_cache_key_make(&b, &kb);
    CHECK(kb.h1 != ka.h1 && kb.h2 != ka.h2);
}

/* ---- cge_log_set ------------------------------------------------------------------------------ */

struct log_seen {
    int n, n_warn;
    char last[1100];
};

static void on_log(enum cge_log_level level, const char *msg, void *user) {
    struct log_seen *s = user;
    s->n++;
    s->n_warn += level == CGE_LOG_WARN;
    snprintf(s->last, sizeof s->last, "%s", msg);
}

static void test_log(void) {
    char dir[] = "/tmp/cge_test_keys_XXXXXX", path[300], cmd[400];
    int have_dir = mkdtemp(dir) != NULL;
    CHECK_MSG(have_dir, "mkdtemp failed");
    if (!have_dir) return;
    snprintf(path, sizeof path, "%s/cache.mdb", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        for (int i = 0; i < 8192; i++) fputc((i * 7 + 3) & 0xff, f);
        fclose(f);
    }
    struct log_seen seen = {0, 0, ""};
    cge_log_set(on_log, &seen);
    struct cge_cache_params p = cge_cache_default_params();
    p.path = path;
    struct cge_cache *c = NULL;
    enum cge_status st = cge_cache_open(&p, &c);
    CHECK_MSG(st == CGE_OK, "open: %s", cge_errmsg());
    CHECK_MSG(seen.n_warn >= 1 && strstr(seen.last, path) && strstr(seen.last, "corrupt"), "%d warnings, last '%s'",
              seen.n_warn, seen.last);
    cge_cache_close(c);
    /* Messages are formatted and cut at 1023 bytes; without a callback nothing is called. */
    seen.n = 0;
    char long_text[2000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = 0;
    cge__log(CGE_LOG_ERROR, "n=%d %s", 42, long_text);
    CHECK(seen.n == 1 && !strncmp(seen.last, "n=42 xxx", 8) && strlen(seen.last) == 1023);
    cge_log_set(NULL, NULL);
    cge__log(CGE_LOG_ERROR, "not seen");
    CHECK(seen.n == 1);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    RUN(test_golden);
    RUN(test_log);
    return test_report("cache_keys");
}
