/*
 * index.c: sharded checkpoints: model.safetensors.index.json (and pytorch_model.bin.index.json).
 *
 * The index is {"metadata": {...}, "weight_map": {tensor name: shard file name}}. Every shard
 * named is opened (each one mapped, validated as a file of its own) and its tensors are appended
 * to one weights object, shard after shard in name order. Then the index is checked against
 * what the shards hold: every tensor of weight_map must be found in the shard it names, and a
 * name may appear in only one shard.
 *
 * Key decision: shard names are plain file names in the index's folder. A name with a '/' or a
 * "..", or an absolute path, is refused: an index file must not make cge open files elsewhere.
 */
#include "io/io_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int safe_shard_name(const char *s) {
    return s[0] != '\0' && strchr(s, '/') == NULL && strchr(s, '\\') == NULL &&
           strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

enum cge_status cge__weights_open_index(const char *path, struct cge_weights **out) {
    *out = NULL;
    cJSON *root = NULL;
    enum cge_status st = cge__json_read_file(path, &root);
    if (st) return st;
    const char **shards = NULL;
    int64_t *shard_end = NULL; /* tensors [shard_end[i-1], shard_end[i]) came from shard i */
    struct cge_weights *w = NULL;
    char *dir = NULL;
    int n_shards = 0;

    const cJSON *map =
        cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        st = cge__err(CGE_ERR_SERIALIZATION,
                      "%s: no \"weight_map\" object (not a checkpoint index)", path);
        goto done;
    }
    int n_map = cJSON_GetArraySize(map);
    shards = cge__calloc(n_map > 0 ? (size_t)n_map : 1, sizeof *shards);
    if (!shards) {
        st = cge__err(CGE_ERR_NOMEM, "%s: shard list", path);
        goto done;
    }
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            st = cge__err(CGE_ERR_SERIALIZATION, "%s: weight_map['%s'] is not a string", path,
                          e->string);
            goto done;
        }
        if (!safe_shard_name(e->valuestring)) {
            st = cge__err(CGE_ERR_SERIALIZATION,
                          "%s: weight_map['%s'] = '%s' is not a file name in the index's folder",
                          path, e->string, e->valuestring);
            goto done;
        }
        shards[n_shards++] = e->valuestring;
    }
    if (n_shards == 0) {
        st = cge__err(CGE_ERR_SERIALIZATION, "%s: weight_map is empty", path);
        goto done;
    }
    qsort(shards, (size_t)n_shards, sizeof *shards, cmp_str);
    int u = 0;
    for (int i = 0; i < n_shards; i++)
        if (u == 0 || strcmp(shards[i], shards[u - 1]) != 0) shards[u++] = shards[i];
    n_shards = u;

    /* the folder of the index */
    dir = cge__strdup(path);
    if (!dir) {
        st = cge__err(CGE_ERR_NOMEM, "%s", path);
        goto done;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");

    w = cge__weights_new(path);
    shard_end = cge__calloc((size_t)n_shards, sizeof *shard_end);
    if (!w || !shard_end) {
        st = cge__err(CGE_ERR_NOMEM, "%s: weights", path);
        goto done;
    }
    int any_bin = 0;
    for (int i = 0; i < n_shards; i++) {
        char file[4096];
        st = cge__path_join(file, sizeof file, dir, shards[i]);
        if (st) goto done;
        if (!cge__file_exists(file)) {
            st = cge__err(CGE_ERR_MODEL_LOAD, "%s: shard '%s' named in the index is missing", path,
                          file);
            goto done;
        }
        int is_bin = ends_with(shards[i], ".bin");
        any_bin |= is_bin;
        st = is_bin ? cge__torch_load_file(w, file) : cge__safetensors_load_file(w, file);
        if (st) goto done;
        shard_end[i] = w->n;
    }
    st = cge__weights_finish(w, 0);
    if (st) goto done;
    for (const cJSON *e = map->child; e; e = e->next) {
        const struct cge_tensor_info *t = cge_weights_find(w, e->string);
        const char **sh =
            bsearch(&e->valuestring, shards, (size_t)n_shards, sizeof *shards, cmp_str);
        int s = sh ? (int)(sh - shards) : -1;
        int64_t idx = t ? (int64_t)(t - w->t) : -1;
        if (!t || s < 0 || idx < (s ? shard_end[s - 1] : 0) || idx >= shard_end[s]) {
            st = cge__err(CGE_ERR_SERIALIZATION, "%s: tensor '%s' is not in shard '%s'%s", path,
                          e->string, e->valuestring, t ? " (found in another shard)" : "");
            goto done;
        }
    }
    /* pickled shards list their tensors by name, as a single pytorch_model.bin does */
    if (any_bin) st = cge__weights_finish(w, 1);
done:
    cge__free(shards);
    cge__free(shard_end);
    cge__free(dir);
    cJSON_Delete(root);
    if (st) {
        cge_weights_free(w);
        return st;
    }
    *out = w;
    return CGE_OK;
}
