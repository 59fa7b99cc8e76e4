/*
 * ensemble.c: reads an ensemble specification: a folder holding ensemble.json, an ensemble.json
 * file, or a cge configuration file (cge_config_load) that points at an ensemble ("ensemble")
 * and overrides its slots and fusion, or defines them itself ("models", "fusion.weights").
 *
 * ensemble.json (tests/fixtures/ensemble/README.md):
 *   {"version": 1, "name": "...",
 *    "slots": [{"slot": "E1", "path": "E1", "dtype"?: "f32"|"bf16"|"int8", "enabled"?: true},
 *              {"slot": "E10", "path": {"query": "E10-query", "document": "E10-document"}}, ...],
 *    "fusion": "fusion"}
 * Paths are relative to the file's folder, or absolute. A slot not listed is absent. Unknown
 * keys are errors (a typo must not silently drop a slot).
 *
 * The configuration's per-slot dtype/enabled and its fusion temperature/top_k override the
 * ensemble only where the file writes them: the config struct cannot tell a default from a
 * written value, so the file's JSON is read again for the keys that are present.
 */
#include "runtime/runtime.h"

#include "core/core.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cge__slot_index(const char *name) {
    if (!name || name[0] != 'E') return -1;
    char *end = NULL;
    long k = strtol(name + 1, &end, 10);
    if (end == name + 1 || *end || k < 1 || k > CGE_N_SLOTS) return -1;
    if (name[1] == '0' || name[1] == '+' || name[1] == '-') return -1;
    return (int)k - 1;
}

static enum cge_status parse_dtype(const char *file, const char *key, const char *s,
                                   enum cge_dtype *out) {
    if (!strcmp(s, "f32") || !strcmp(s, "fp32") || !strcmp(s, "float32")) *out = CGE_DTYPE_F32;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *out = CGE_DTYPE_BF16;
    else if (!strcmp(s, "int8") || !strcmp(s, "i8")) *out = CGE_DTYPE_I8;
    else
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: dtype \"%.40s\", expected f32, bf16 or int8",
                        file, key, s);
    return CGE_OK;
}

/* dir + "/" + p unless p is absolute. */
static enum cge_status join_rel(const char *file, const char *key, const char *dir, const char *p,
                                char *out) {
    if (!p[0]) return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: empty path", file, key);
    int n = p[0] == '/' || !dir[0] ? snprintf(out, CGE_CONFIG_PATH_MAX, "%s", p)
                                   : snprintf(out, CGE_CONFIG_PATH_MAX, "%s/%s", dir, p);
    if (n < 0 || n >= CGE_CONFIG_PATH_MAX)
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: path too long", file, key);
    return CGE_OK;
}

static void dirname_of(const char *path, char *dir) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        dir[0] = '\0';
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1;
    if (n >= CGE_CONFIG_PATH_MAX) n = CGE_CONFIG_PATH_MAX - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
}

static enum cge_status parse_slot(const char *file, const char *dir, const cJSON *e,
                                  struct cge__ensemble_spec *out, uint32_t *seen) {
    if (!cJSON_IsObject(e))
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: slots: each entry must be an object", file);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "slot");
    int s = cJSON_IsString(name) ? cge__slot_index(name->valuestring) : -1;
    if (s < 0)
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: slots: \"slot\" must be one of E1..E12", file);
    char key[64];
    snprintf(key, sizeof key, "slots.%s", name->valuestring);
    if (*seen & (1u << s)) return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: listed twice", file, key);
    *seen |= 1u << s;
    struct cge__slot_spec *sp = &out->slots[s];
    sp->dtype = CGE_DTYPE_F32;
    int enabled = 1;
    enum cge_status st;
    const cJSON *path = NULL;
    for (const cJSON *k = e->child; k; k = k->next) {
        if (!strcmp(k->string, "slot")) continue;
        if (!strcmp(k->string, "path")) {
            path = k;
        } else if (!strcmp(k->string, "dtype")) {
            if (!cJSON_IsString(k))
                return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s.dtype: expected a string", file, key);
            if ((st = parse_dtype(file, key, k->valuestring, &sp->dtype))) return st;
        } else if (!strcmp(k->string, "enabled")) {
            if (!cJSON_IsBool(k))
                return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s.enabled: expected true or false", file, key);
            enabled = cJSON_IsTrue(k);
        } else {
            return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: unknown key \"%.40s\" (expected slot, path, dtype, enabled)",
                            file, key, k->string);
        }
    }
    if (!path) return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s: \"path\" is missing", file, key);
    if (cJSON_IsString(path)) {
        if ((st = join_rel(file, key, dir, path->valuestring, sp->path))) return st;
    } else if (cJSON_IsObject(path)) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(path, "query");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(path, "document");
        if (!cJSON_IsString(q) || !cJSON_IsString(d) || cJSON_GetArraySize(path) != 2)
            return cge__err(CGE_ERR_INVALID_VALUE,
                            "%s: %s.path: expected a string or {\"query\": DIR, \"document\": DIR}", file, key);
        if ((st = join_rel(file, key, dir, d->valuestring, sp->path))) return st;
        if ((st = join_rel(file, key, dir, q->valuestring, sp->path_query))) return st;
    } else {
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s.path: expected a string or an object", file, key);
    }
    sp->configured = enabled;
    return CGE_OK;
}

/* Parses ensemble.json at `file` into out (slots, fusion, name). */
static enum cge_status load_ensemble_json(const char *file, const cJSON *root,
                                          struct cge__ensemble_spec *out) {
    char dir[CGE_CONFIG_PATH_MAX];
    dirname_of(file, dir);
    if (!cJSON_IsObject(root))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: expected a JSON object", file);
    const cJSON *slots = NULL, *fusion = NULL;
    for (const cJSON *k = root->child; k; k = k->next) {
        if (!strcmp(k->string, "version")) {
            if (!cJSON_IsNumber(k) || k->valuedouble != 1)
                return cge__err(CGE_ERR_UNSUPPORTED, "%s: version: expected 1", file);
        } else if (!strcmp(k->string, "name")) {
            if (!cJSON_IsString(k)) return cge__err(CGE_ERR_INVALID_VALUE, "%s: name: expected a string", file);
            snprintf(out->name, sizeof out->name, "%.200s", k->valuestring);
        } else if (!strcmp(k->string, "slots")) {
            slots = k;
        } else if (!strcmp(k->string, "fusion")) {
            fusion = k;
        } else if (strcmp(k->string, "description") != 0) {
            return cge__err(CGE_ERR_INVALID_VALUE,
                            "%s: unknown key \"%.40s\" (expected version, name, slots, fusion)", file, k->string);
        }
    }
    if (!cJSON_IsArray(slots))
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: \"slots\" is missing or not an array", file);
    if (!cJSON_IsString(fusion))
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: \"fusion\" (the fusion folder) is missing or not a string", file);
    enum cge_status st;
    uint32_t seen = 0;
    for (const cJSON *e = slots->child; e; e = e->next)
        if ((st = parse_slot(file, dir, e, out, &seen))) return st;
    if ((st = join_rel(file, "fusion", dir, fusion->valuestring, out->fusion))) return st;
    if (!out->name[0]) {
        /* the folder's name */
        const char *b = strrchr(dir, '/');
        snprintf(out->name, sizeof out->name, "%.200s", b ? b + 1 : dir[0] ? dir : "ensemble");
    }
    return CGE_OK;
}

static enum cge_status load_json_file(const char *file, cJSON **root) {
    return cge__json_read_file(file, root);
}

static enum cge_status load_ensemble_file(const char *file, struct cge__ensemble_spec *out) {
    cJSON *root = NULL;
    enum cge_status st = load_json_file(file, &root);
    if (st) return st;
    st = load_ensemble_json(file, root, out);
    cJSON_Delete(root);
    return st;
}

static int is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

/* ensemble folder or file → its ensemble.json path */
static enum cge_status ensemble_file_of(const char *path, char *file) {
    if (is_dir(path)) {
        enum cge_status st = cge__path_join(file, CGE_CONFIG_PATH_MAX, path, "ensemble.json");
        if (st) return st;
        if (!cge__file_exists(file))
            return cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s: no ensemble.json in this folder", path);
        return CGE_OK;
    }
    if (snprintf(file, CGE_CONFIG_PATH_MAX, "%s", path) >= CGE_CONFIG_PATH_MAX)
        return cge__err(CGE_ERR_INVALID_VALUE, "%.100s...: path too long", path);
    return CGE_OK;
}

/* Applies the configuration's models and fusion sections (only keys the file writes). */
static enum cge_status apply_config(const char *file, const cJSON *root, struct cge__ensemble_spec *out) {
    const struct cge_config *c = &out->cfg;
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        char name[8];
        snprintf(name, sizeof name, "E%d", s + 1);
        const cJSON *m = models ? cJSON_GetObjectItemCaseSensitive(models, name) : NULL;
        if (!m) continue;
        struct cge__slot_spec *sp = &out->slots[s];
        if (c->models[s].path[0]) {
            snprintf(sp->path, sizeof sp->path, "%s", c->models[s].path);
            sp->path_query[0] = '\0';
            sp->configured = 1;
            if (!cJSON_GetObjectItemCaseSensitive(m, "dtype")) sp->dtype = CGE_DTYPE_F32;
        }
        if (cJSON_GetObjectItemCaseSensitive(m, "dtype")) sp->dtype = c->models[s].dtype;
        if (cJSON_GetObjectItemCaseSensitive(m, "enabled") && !c->models[s].enabled) sp->configured = 0;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "enabled")) && sp->path[0]) sp->configured = 1;
    }
    const cJSON *fusion = cJSON_GetObjectItemCaseSensitive(root, "fusion");
    if (fusion) {
        if (c->fusion.weights[0]) snprintf(out->fusion, sizeof out->fusion, "%s", c->fusion.weights);
        if (cJSON_GetObjectItemCaseSensitive(fusion, "temperature") ||
            cJSON_GetObjectItemCaseSensitive(fusion, "top_k")) {
            out->has_routing = 1;
            out->temperature = c->fusion.temperature;
            out->top_k = c->fusion.top_k;
        }
    }
    if (!out->fusion[0])
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "%s: no fusion: give \"ensemble\" or \"fusion\": {\"weights\": DIR}", file);
    return CGE_OK;
}

enum cge_status cge__ensemble_spec_load(const char *path, struct cge__ensemble_spec *out) {
    memset(out, 0, sizeof *out);
    out->cfg = cge_config_default();
    if (!path || !path[0]) return cge__err(CGE_ERR_INVALID_VALUE, "no ensemble or configuration given");
    char file[CGE_CONFIG_PATH_MAX];
    enum cge_status st = ensemble_file_of(path, file);
    if (st) return st;
    snprintf(out->source, sizeof out->source, "%s", file);
    cJSON *root = NULL;
    if ((st = load_json_file(file, &root))) return st;
    if (cJSON_GetObjectItemCaseSensitive(root, "slots")) {
        st = load_ensemble_json(file, root, out);
        cJSON_Delete(root);
        return st;
    }
    /* A configuration file. */
    st = cge_config_load(file, &out->cfg);
    if (!st) {
        out->has_config = 1;
        if (out->cfg.ensemble[0]) {
            char ef[CGE_CONFIG_PATH_MAX];
            struct cge_config keep = out->cfg;
            st = ensemble_file_of(out->cfg.ensemble, ef);
            if (!st) st = load_ensemble_file(ef, out);
            out->cfg = keep;
        } else {
            const char *b = strrchr(file, '/');
            snprintf(out->name, sizeof out->name, "%.200s", b ? b + 1 : file);
        }
    }
    if (!st) st = apply_config(file, root, out);
    cJSON_Delete(root);
    return st;
}
