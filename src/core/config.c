/*
 * config.c: the engine's configuration (models, batch, fusion, cache, gpu) from a JSON file.
 *
 * Key decision: strict and total. Every field has a default, every key in the file must be
 * known, typed and in range, and an error names the key path ("cache.max_entries: expected
 * integer") so a typo never silently falls back to a default. The parse fills a copy and only
 * assigns it on success, so a failed load leaves the caller with the plain defaults. The struct
 * holds fixed-size strings: nothing to free, and it can be copied by assignment.
 */
#include "core/core.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* Fills c with the defaults (the public function returns them by value). */
static void config_default(struct cge_config *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < CGE_N_SLOTS; i++) {
        const struct cge_slot_info *s = cge_slot_get(i);
        c->models[i].enabled = 1;
        c->models[i].dtype = s ? s->dtype : CGE_DTYPE_F32;
    }
    c->batch.max_batch_size = 32;
    c->batch.min_batch_size = 1;
    c->batch.max_wait_ms = 50;
    c->fusion.temperature = 1.0;
    c->fusion.top_k = CGE_TOP_K;
    c->cache.enabled = 1;
    c->cache.policy = CGE_CACHE_LRU;
    c->cache.max_entries = 100000;
    c->cache.max_bytes = (int64_t)1 << 30;
    c->cache.ttl_seconds = 0;
    c->gpu.enabled = 0;
    c->gpu.device = 0;
    c->gpu.memory_limit_bytes = (int64_t)16 << 30;
    c->redis.timeout_ms = 200;
}

struct cge_config cge_config_default(void) {
    struct cge_config c;
    config_default(&c);
    return c;
}

/* ==== typed fields =========================================================================== */

enum ftype { F_BOOL, F_INT, F_I64, F_DOUBLE, F_PATH, F_DTYPE, F_POLICY };

struct field {
    const char *key;
    enum ftype type;
    void *dst;
};

static const char *const policy_names[] = {"lru", "lfu", "ttl_lru", "arc"};

static enum cge_status fail(const char *label, const char *section, const char *key,
                            const char *what) {
    return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s%s%s: %s", label, section, key[0] ? "." : "", key,
                    what);
}

static int json_int(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!isfinite(d) || floor(d) != d || fabs(d) > 9007199254740992.0) return 0;
    *out = (int64_t)d;
    return 1;
}

static int parse_dtype(const char *s, enum cge_dtype *d) {
    static const char *const upper[] = {"F32", "F16", "BF16", "I8", "U8", "I32", "I64", "F64"};
    for (int i = 0; i <= CGE_DTYPE_F64; i++) {
        if (strcmp(s, cge_dtype_str((enum cge_dtype)i)) == 0 || strcmp(s, upper[i]) == 0) {
            *d = (enum cge_dtype)i;
            return 1;
        }
    }
    return 0;
}

static enum cge_status set_field(const char *label, const char *section, const struct field *f,
                                 const cJSON *v) {
    int64_t i;
    switch (f->type) {
    case F_BOOL:
        if (!cJSON_IsBool(v)) return fail(label, section, f->key, "expected true or false");
        *(int *)f->dst = cJSON_IsTrue(v);
        return CGE_OK;
    case F_INT:
        if (!json_int(v, &i)) return fail(label, section, f->key, "expected integer");
        if (i < -2147483647 || i > 2147483647)
            return fail(label, section, f->key, "integer out of range");
        *(int *)f->dst = (int)i;
        return CGE_OK;
    case F_I64:
        if (!json_int(v, &i)) return fail(label, section, f->key, "expected integer");
        *(int64_t *)f->dst = i;
        return CGE_OK;
    case F_DOUBLE:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return fail(label, section, f->key, "expected number");
        *(double *)f->dst = v->valuedouble;
        return CGE_OK;
    case F_PATH:
        if (!cJSON_IsString(v)) return fail(label, section, f->key, "expected string");
        if (strlen(v->valuestring) >= CGE_CONFIG_PATH_MAX)
            return fail(label, section, f->key, "path longer than CGE_CONFIG_PATH_MAX - 1 bytes");
        strcpy((char *)f->dst, v->valuestring);
        return CGE_OK;
    case F_DTYPE:
        if (!cJSON_IsString(v)) return fail(label, section, f->key, "expected string");
        if (!parse_dtype(v->valuestring, (enum cge_dtype *)f->dst))
            return fail(label, section, f->key,
                        "expected one of f32, f16, bf16, i8, u8, i32, i64, f64");
        return CGE_OK;
    case F_POLICY:
        if (!cJSON_IsString(v)) return fail(label, section, f->key, "expected string");
        for (int k = 0; k < 4; k++) {
            if (strcmp(v->valuestring, policy_names[k]) == 0) {
                *(enum cge_cache_policy *)f->dst = (enum cge_cache_policy)k;
                return CGE_OK;
            }
        }
        return fail(label, section, f->key, "expected one of lru, lfu, ttl_lru, arc");
    }
    return fail(label, section, f->key, "internal: unknown field type");
}

/* Applies an object's keys to the fields; unknown and repeated keys are errors. */
static enum cge_status apply(const char *label, const char *section, const cJSON *obj,
                             const struct field *fields, int n) {
    if (!cJSON_IsObject(obj)) return fail(label, section, "", "expected object");
    unsigned seen = 0;
    for (const cJSON *e = obj->child; e; e = e->next) {
        int k = 0;
        while (k < n && strcmp(e->string, fields[k].key) != 0)
            k++;
        if (k == n) {
            /* name the key itself in the path (bounded: keys come from the file) */
            char key[96];
            snprintf(key, sizeof key, "%.80s", e->string);
            return fail(label, section, key, "unknown key");
        }
        if (seen & (1u << k)) return fail(label, section, fields[k].key, "repeated key");
        seen |= 1u << k;
        enum cge_status st = set_field(label, section, &fields[k], e);
        if (st) return st;
    }
    return CGE_OK;
}

/* ==== validation ============================================================================= */

static enum cge_status range(const char *path, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: %lld is out of range [%lld, %lld]", path,
                        (long long)v, (long long)lo, (long long)hi);
    return CGE_OK;
}

enum cge_status cge_config_validate(const struct cge_config *c) {
    if (!c) return cge__err(CGE_ERR_INVALID_VALUE, "cge_config_validate: NULL config");
    enum cge_status st;
    for (int i = 0; i < CGE_N_SLOTS; i++) {
        if ((unsigned)c->models[i].dtype > CGE_DTYPE_F64)
            return cge__err(CGE_ERR_INVALID_VALUE, "models.E%d.dtype: unknown dtype", i + 1);
        if (!memchr(c->models[i].path, 0, CGE_CONFIG_PATH_MAX))
            return cge__err(CGE_ERR_INVALID_VALUE, "models.E%d.path: not terminated", i + 1);
    }
    if ((st = range("batch.max_batch_size", c->batch.max_batch_size, 1, 4096))) return st;
    if ((st = range("batch.min_batch_size", c->batch.min_batch_size, 1, 4096))) return st;
    if (c->batch.min_batch_size > c->batch.max_batch_size)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "batch.min_batch_size: %d is larger than batch.max_batch_size (%d)",
                        c->batch.min_batch_size, c->batch.max_batch_size);
    if ((st = range("batch.max_wait_ms", c->batch.max_wait_ms, 0, 3600000))) return st;
    if (!(c->fusion.temperature > 0) || !isfinite(c->fusion.temperature))
        return cge__err(CGE_ERR_INVALID_VALUE, "fusion.temperature: %g, expected a number > 0",
                        c->fusion.temperature);
    if ((st = range("fusion.top_k", c->fusion.top_k, 1, CGE_N_EXPERTS))) return st;
    if (!memchr(c->fusion.weights, 0, CGE_CONFIG_PATH_MAX) ||
        !memchr(c->cache.path, 0, CGE_CONFIG_PATH_MAX))
        return cge__err(CGE_ERR_INVALID_VALUE, "fusion.weights / cache.path: not terminated");
    if ((unsigned)c->cache.policy > CGE_CACHE_ARC)
        return cge__err(CGE_ERR_INVALID_VALUE, "cache.policy: unknown policy %d",
                        (int)c->cache.policy);
    const int64_t big = (int64_t)1 << 53;
    if ((st = range("cache.max_entries", c->cache.max_entries, 0, big))) return st;
    if ((st = range("cache.max_bytes", c->cache.max_bytes, 0, big))) return st;
    if ((st = range("cache.ttl_seconds", c->cache.ttl_seconds, 0, big))) return st;
    if (c->cache.policy == CGE_CACHE_TTL_LRU && c->cache.ttl_seconds == 0)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "cache.ttl_seconds: policy ttl_lru needs ttl_seconds > 0");
    if ((st = range("gpu.device", c->gpu.device, 0, 1023))) return st;
    if ((st = range("gpu.memory_limit_bytes", c->gpu.memory_limit_bytes, 0, big))) return st;
    if (!memchr(c->redis.url, 0, CGE_CONFIG_PATH_MAX))
        return cge__err(CGE_ERR_INVALID_VALUE, "redis.url: not terminated");
    if (c->redis.url[0] && strncmp(c->redis.url, "redis://", 8) && strncmp(c->redis.url, "rediss://", 9))
        return cge__err(CGE_ERR_INVALID_VALUE, "redis.url: expected redis://[user:pass@]host[:port][/db]");
    if ((st = range("redis.ttl_seconds", c->redis.ttl_seconds, 0, big))) return st;
    if ((st = range("redis.timeout_ms", c->redis.timeout_ms, 1, 3600000))) return st;
    return CGE_OK;
}

/* ==== parsing ================================================================================ */

static enum cge_status parse_models(const char *label, const cJSON *obj, struct cge_config *c) {
    if (!cJSON_IsObject(obj)) return fail(label, "models", "", "expected object");
    unsigned seen = 0;
    for (const cJSON *e = obj->child; e; e = e->next) {
        int slot = -1;
        for (int i = 0; i < CGE_N_SLOTS; i++) {
            const struct cge_slot_info *s = cge_slot_get(i);
            if (s && strcmp(e->string, s->name) == 0) slot = i;
        }
        char key[96];
        snprintf(key, sizeof key, "%.80s", e->string);
        if (slot < 0) return fail(label, "models", key, "unknown key (expected E1..E12)");
        if (seen & (1u << slot)) return fail(label, "models", key, "repeated key");
        seen |= 1u << slot;
        struct cge_model_config *m = &c->models[slot];
        const struct field f[] = {
            {"enabled", F_BOOL, &m->enabled},
            {"path", F_PATH, m->path},
            {"dtype", F_DTYPE, &m->dtype},
        };
        char section[32];
        snprintf(section, sizeof section, "models.%s", cge_slot_get(slot)->name);
        enum cge_status st = apply(label, section, e, f, 3);
        if (st) return st;
    }
    return CGE_OK;
}

static enum cge_status parse_root(const char *label, const cJSON *root, struct cge_config *c) {
    if (!cJSON_IsObject(root))
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: the configuration is not a JSON object", label);
    const struct field batch[] = {
        {"max_batch_size", F_INT, &c->batch.max_batch_size},
        {"min_batch_size", F_INT, &c->batch.min_batch_size},
        {"max_wait_ms", F_INT, &c->batch.max_wait_ms},
    };
    const struct field fusion[] = {
        {"weights", F_PATH, c->fusion.weights},
        {"temperature", F_DOUBLE, &c->fusion.temperature},
        {"top_k", F_INT, &c->fusion.top_k},
    };
    const struct field cache[] = {
        {"enabled", F_BOOL, &c->cache.enabled},        {"policy", F_POLICY, &c->cache.policy},
        {"max_entries", F_I64, &c->cache.max_entries}, {"max_bytes", F_I64, &c->cache.max_bytes},
        {"ttl_seconds", F_I64, &c->cache.ttl_seconds}, {"path", F_PATH, c->cache.path},
    };
    const struct field gpu[] = {
        {"enabled", F_BOOL, &c->gpu.enabled},
        {"device", F_INT, &c->gpu.device},
        {"memory_limit_bytes", F_I64, &c->gpu.memory_limit_bytes},
    };
    const struct field redis[] = {
        {"url", F_PATH, c->redis.url},
        {"ttl_seconds", F_I64, &c->redis.ttl_seconds},
        {"timeout_ms", F_I64, &c->redis.timeout_ms},
    };
    static const char *const sections[] = {"models", "batch", "fusion", "cache", "gpu", "redis"};
    unsigned seen = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "ensemble")) {
            /* An ensemble folder or ensemble.json the models and fusion sections override. */
            if (!cJSON_IsString(e))
                return cge__err(CGE_ERR_INVALID_VALUE, "%s: ensemble: expected string", label);
            if (strlen(e->valuestring) >= CGE_CONFIG_PATH_MAX)
                return cge__err(CGE_ERR_INVALID_VALUE, "%s: ensemble: path too long", label);
            if (c->ensemble[0])
                return cge__err(CGE_ERR_INVALID_VALUE, "%s: ensemble: repeated key", label);
            strcpy(c->ensemble, e->valuestring);
            continue;
        }
        int k = 0;
        while (k < 6 && strcmp(e->string, sections[k]) != 0)
            k++;
        if (k == 6) {
            char key[96];
            snprintf(key, sizeof key, "%.80s", e->string);
            return cge__err(CGE_ERR_INVALID_VALUE,
                            "%s: %s: unknown key (expected ensemble, models, batch, fusion, cache, "
                            "gpu, redis)",
                            label, key);
        }
        if (seen & (1u << k))
            return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: repeated key", label, sections[k]);
        seen |= 1u << k;
        enum cge_status st;
        switch (k) {
        case 0:
            st = parse_models(label, e, c);
            break;
        case 1:
            st = apply(label, "batch", e, batch, 3);
            break;
        case 2:
            st = apply(label, "fusion", e, fusion, 3);
            break;
        case 3:
            st = apply(label, "cache", e, cache, 6);
            break;
        case 4:
            st = apply(label, "gpu", e, gpu, 3);
            break;
        default:
            st = apply(label, "redis", e, redis, 3);
            break;
        }
        if (st) return st;
    }
    enum cge_status st = cge_config_validate(c);
    if (st) {
        /* prefix the source */
        char msg[900];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        return cge__err(st, "%s: %s", label, msg);
    }
    return CGE_OK;
}

enum cge_status cge_config_parse(const char *json, size_t len, const char *label,
                                 struct cge_config *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_config_parse: out is NULL");
    config_default(out);
    if (!label) label = "(config)";
    if (!json && len) return cge__err(CGE_ERR_INVALID_VALUE, "%s: NULL text", label);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json ? json : "", len, &end, 0);
    if (!root) {
        size_t off = end && json ? (size_t)(end - json) : 0;
        return cge__err(CGE_ERR_SERIALIZATION, "%s: invalid JSON near byte %zu", label, off);
    }
    for (const char *p = end; p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return cge__err(CGE_ERR_SERIALIZATION, "%s: trailing bytes after the JSON at byte %zu",
                            label, (size_t)(p - json));
        }
    }
    struct cge_config tmp;
    config_default(&tmp);
    enum cge_status st = parse_root(label, root, &tmp);
    cJSON_Delete(root);
    if (st) return st;
    *out = tmp;
    return CGE_OK;
}

/* Prefixes a relative path with the config file's folder. */
static enum cge_status resolve(const char *dir, char *p, const char *key, const char *label) {
    if (!p[0] || p[0] == '/' || !dir[0]) return CGE_OK;
    char buf[CGE_CONFIG_PATH_MAX];
    size_t dl = strlen(dir);
    int n = snprintf(buf, sizeof buf, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", p);
    if (n < 0 || (size_t)n >= sizeof buf)
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: path too long once made relative to %s",
                        label, key, dir);
    strcpy(p, buf);
    return CGE_OK;
}

enum cge_status cge_config_load(const char *path, struct cge_config *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_config_load: out is NULL");
    config_default(out);
    if (!path) return cge__err(CGE_ERR_INVALID_VALUE, "cge_config_load: path is NULL");
    char *text = NULL;
    size_t len = 0;
    enum cge_status st = cge__read_file(path, (size_t)16 << 20, &text, &len);
    if (st) return st;
    struct cge_config tmp;
    st = cge_config_parse(text, len, path, &tmp);
    cge__free(text);
    if (st) return st;
    char dir[CGE_CONFIG_PATH_MAX] = "";
    const char *slash = strrchr(path, '/');
    if (slash) {
        size_t dl = (size_t)(slash - path);
        if (dl == 0) dl = 1; /* "/cfg.json": the root folder */
        if (dl >= sizeof dir)
            return cge__err(CGE_ERR_INVALID_VALUE, "%s: folder name too long", path);
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    for (int i = 0; i < CGE_N_SLOTS && !st; i++) {
        char key[32];
        snprintf(key, sizeof key, "models.E%d.path", i + 1);
        st = resolve(dir, tmp.models[i].path, key, path);
    }
    if (!st) st = resolve(dir, tmp.fusion.weights, "fusion.weights", path);
    if (!st) st = resolve(dir, tmp.ensemble, "ensemble", path);
    if (!st) st = resolve(dir, tmp.cache.path, "cache.path", path);
    if (st) return st;
    *out = tmp;
    return CGE_OK;
}
