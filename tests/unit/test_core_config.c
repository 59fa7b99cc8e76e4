/*
 * test_core_config.c: the configuration loader. Defaults are the specification's values; a file
 * overrides any subset; unknown keys, wrong types and out-of-range values are refused with the
 * key path in the message; relative paths are taken relative to the file's folder; a failed
 * load leaves the defaults.
 */
#include "core/core.h"
#include "testhelp.h"

#include <unistd.h>

static enum cge_status parse(const char *json, struct cge_config *c) {
    return cge_config_parse(json, strlen(json), "cfg.json", c);
}

static void test_defaults(void) {
    struct cge_config c;
    c = cge_config_default();
    CHECK(c.batch.max_batch_size == 32);
    CHECK(c.batch.min_batch_size == 1);
    CHECK(c.batch.max_wait_ms == 50);
    CHECK(c.fusion.temperature == 1.0);
    CHECK(c.fusion.top_k == 2);
    CHECK(c.fusion.weights[0] == '\0');
    CHECK(c.cache.enabled == 1);
    CHECK(c.cache.policy == CGE_CACHE_LRU);
    CHECK(c.cache.max_entries == 100000);
    CHECK(c.cache.max_bytes == 1073741824);
    CHECK(c.cache.ttl_seconds == 0);
    CHECK(c.gpu.enabled == 0);
    CHECK(c.gpu.device == 0);
    CHECK(c.gpu.memory_limit_bytes == 17179869184LL);
    for (int i = 0; i < CGE_N_SLOTS; i++) {
        CHECK(c.models[i].enabled == 1);
        CHECK(c.models[i].path[0] == '\0');
        CHECK(c.models[i].dtype == cge_slot_get(i)->dtype);
    }
    CHECK(cge_config_validate(&c) == CGE_OK);
    /* an empty object is all defaults */
    struct cge_config d;
    CHECK(parse("{}", &d) == CGE_OK);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
}

static void test_full_file(void) {
    const char *json =
        "{\n"
        " \"models\": {\"E1\": {\"enabled\": false}, \"E12\": {\"path\": \"/m/e5\", "
        "\"dtype\": \"i8\"},\n"
        "            \"E4\": {\"dtype\": \"BF16\", \"path\": \"clip\"}},\n"
        " \"batch\": {\"max_batch_size\": 64, \"min_batch_size\": 4, \"max_wait_ms\": 10},\n"
        " \"fusion\": {\"weights\": \"fusion\", \"temperature\": 0.5, \"top_k\": 3},\n"
        " \"cache\": {\"enabled\": false, \"policy\": \"ttl_lru\", \"max_entries\": 5,\n"
        "           \"max_bytes\": 123456789012, \"ttl_seconds\": 60, \"path\": \"/var/c\"},\n"
        " \"gpu\": {\"enabled\": true, \"device\": 1, \"memory_limit_bytes\": 0}\n"
        "}\n";
    struct cge_config c;
    enum cge_status st = parse(json, &c);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    CHECK(c.models[0].enabled == 0);
    CHECK(c.models[1].enabled == 1);
    CHECK(strcmp(c.models[11].path, "/m/e5") == 0 && c.models[11].dtype == CGE_DTYPE_I8);
    CHECK(strcmp(c.models[3].path, "clip") == 0 && c.models[3].dtype == CGE_DTYPE_BF16);
    CHECK(c.batch.max_batch_size == 64 && c.batch.min_batch_size == 4 && c.batch.max_wait_ms == 10);
    CHECK(strcmp(c.fusion.weights, "fusion") == 0 && c.fusion.temperature == 0.5 &&
          c.fusion.top_k == 3);
    CHECK(c.cache.enabled == 0 && c.cache.policy == CGE_CACHE_TTL_LRU && c.cache.max_entries == 5 &&
          c.cache.max_bytes == 123456789012LL && c.cache.ttl_seconds == 60 &&
          strcmp(c.cache.path, "/var/c") == 0);
    CHECK(c.gpu.enabled == 1 && c.gpu.device == 1 && c.gpu.memory_limit_bytes == 0);

    /* the same from a file: relative paths become relative to its folder */
    char dir[] = "/tmp/cge_test_config_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/cge.json", dir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    struct cge_config l;
    st = cge_config_load(path, &l);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    char want[256];
    snprintf(want, sizeof want, "%s/clip", dir);
    CHECK_MSG(strcmp(l.models[3].path, want) == 0, "%s", l.models[3].path);
    snprintf(want, sizeof want, "%s/fusion", dir);
    CHECK(strcmp(l.fusion.weights, want) == 0);
    CHECK(strcmp(l.models[11].path, "/m/e5") == 0);
    CHECK(strcmp(l.cache.path, "/var/c") == 0);
    /* a bad file: the message names the file, and the output is the defaults */
    f = fopen(path, "w");
    fputs("{\"cache\": {\"max_entries\": \"lots\"}}", f);
    fclose(f);
    st = cge_config_load(path, &l);
    CHECK(st == CGE_ERR_INVALID_VALUE);
    CHECK_MSG(strstr(cge_errmsg(), path) &&
                  strstr(cge_errmsg(), "cache.max_entries: expected integer"),
              "%s", cge_errmsg());
    struct cge_config d;
    d = cge_config_default();
    CHECK(memcmp(&l, &d, sizeof d) == 0);
    unlink(path);
    rmdir(dir);
    CHECK(cge_config_load("/tmp/no/such/cge.json", &l) == CGE_ERR_IO);
}

static void test_errors(void) {
    static const struct {
        const char *json;
        enum cge_status st;
        const char *expect;
    } cases[] = {
        {"{\"cache\": {\"max_entries\": \"10\"}}", CGE_ERR_INVALID_VALUE,
         "cache.max_entries: expected integer"},
        {"{\"cache\": {\"max_entries\": 1.5}}", CGE_ERR_INVALID_VALUE,
         "cache.max_entries: expected integer"},
        {"{\"cache\": {\"max_entrys\": 10}}", CGE_ERR_INVALID_VALUE,
         "cache.max_entrys: unknown key"},
        {"{\"cache\": {\"policy\": \"fifo\"}}", CGE_ERR_INVALID_VALUE,
         "cache.policy: expected one of"},
        {"{\"cache\": {\"enabled\": 1}}", CGE_ERR_INVALID_VALUE,
         "cache.enabled: expected true or false"},
        {"{\"cache\": {\"max_bytes\": -1}}", CGE_ERR_INVALID_VALUE,
         "cache.max_bytes: -1 is out of range"},
        {"{\"cache\": {\"policy\": \"ttl_lru\"}}", CGE_ERR_INVALID_VALUE, "cache.ttl_seconds"},
        {"{\"cache\": []}", CGE_ERR_INVALID_VALUE, "cache: expected object"},
        {"{\"batch\": {\"max_batch_size\": 0}}", CGE_ERR_INVALID_VALUE, "batch.max_batch_size: 0"},
        {"{\"batch\": {\"max_batch_size\": 8, \"min_batch_size\": 9}}", CGE_ERR_INVALID_VALUE,
         "batch.min_batch_size: 9 is larger than batch.max_batch_size (8)"},
        {"{\"batch\": {\"max_wait_ms\": 1e20}}", CGE_ERR_INVALID_VALUE,
         "batch.max_wait_ms: expected integer"},
        {"{\"batch\": {\"max_wait_ms\": 3000000000}}", CGE_ERR_INVALID_VALUE,
         "batch.max_wait_ms: integer out of range"},
        {"{\"batch\": {\"max_wait_ms\": 5, \"max_wait_ms\": 6}}", CGE_ERR_INVALID_VALUE,
         "batch.max_wait_ms: repeated key"},
        {"{\"fusion\": {\"temperature\": 0}}", CGE_ERR_INVALID_VALUE, "fusion.temperature"},
        {"{\"fusion\": {\"temperature\": \"hot\"}}", CGE_ERR_INVALID_VALUE,
         "fusion.temperature: expected number"},
        {"{\"fusion\": {\"top_k\": 9}}", CGE_ERR_INVALID_VALUE, "fusion.top_k: 9 is out of range"},
        {"{\"fusion\": {\"weights\": 3}}", CGE_ERR_INVALID_VALUE,
         "fusion.weights: expected string"},
        {"{\"gpu\": {\"device\": -1}}", CGE_ERR_INVALID_VALUE, "gpu.device"},
        {"{\"gpu\": {\"memory_limit\": 5}}", CGE_ERR_INVALID_VALUE,
         "gpu.memory_limit: unknown key"},
        {"{\"models\": {\"E13\": {}}}", CGE_ERR_INVALID_VALUE, "models.E13: unknown key"},
        {"{\"models\": {\"E2\": {\"dtype\": \"fp8\"}}}", CGE_ERR_INVALID_VALUE,
         "models.E2.dtype: expected one of"},
        {"{\"models\": {\"E2\": {\"enabled\": \"yes\"}}}", CGE_ERR_INVALID_VALUE,
         "models.E2.enabled: expected true or false"},
        {"{\"models\": {\"E2\": {\"colour\": 1}}}", CGE_ERR_INVALID_VALUE,
         "models.E2.colour: unknown key"},
        {"{\"models\": {\"E2\": {}, \"E2\": {}}}", CGE_ERR_INVALID_VALUE,
         "models.E2: repeated key"},
        {"{\"models\": [1]}", CGE_ERR_INVALID_VALUE, "models: expected object"},
        {"{\"server\": {}}", CGE_ERR_INVALID_VALUE, "server: unknown key"},
        {"[]", CGE_ERR_INVALID_VALUE, "not a JSON object"},
        {"{\"batch\": ", CGE_ERR_SERIALIZATION, "invalid JSON"},
        {"{} {}", CGE_ERR_SERIALIZATION, "trailing bytes"},
        {"", CGE_ERR_SERIALIZATION, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cge_config c;
        enum cge_status st = parse(cases[i].json, &c);
        CHECK_MSG(st == cases[i].st && strstr(cge_errmsg(), cases[i].expect) &&
                      strstr(cge_errmsg(), "cfg.json"),
                  "case %zu: %d '%s' (want '%s')", i, st, cge_errmsg(), cases[i].expect);
        struct cge_config d;
        d = cge_config_default();
        CHECK(memcmp(&c, &d, sizeof d) == 0);
    }
    /* a path that does not fit */
    char *big = malloc(3000);
    strcpy(big, "{\"cache\": {\"path\": \"");
    size_t n = strlen(big);
    memset(big + n, 'a', 1500);
    strcpy(big + n + 1500, "\"}}");
    struct cge_config c;
    CHECK(parse(big, &c) == CGE_ERR_INVALID_VALUE);
    CHECK(strstr(cge_errmsg(), "cache.path") != NULL);
    free(big);
    /* validate catches programmatic mistakes */
    c = cge_config_default();
    c.fusion.top_k = 0;
    CHECK(cge_config_validate(&c) == CGE_ERR_INVALID_VALUE);
    CHECK(strstr(cge_errmsg(), "fusion.top_k") != NULL);
    CHECK(cge_config_validate(NULL) == CGE_ERR_INVALID_VALUE);
}

int main(void) {
    RUN(test_defaults);
    RUN(test_full_file);
    RUN(test_errors);
    return test_report("core_config");
}
