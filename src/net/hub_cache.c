/*
 * hub_cache.c: the HF cache on disk (paths, symlinks, refs, offline lookup) and which files of a
 * repository cge takes by default.
 *
 * Key decision: every name that comes from the server (file paths, ETags, commits, revisions)
 * passes a whitelist check before it becomes part of a path, so a hostile answer cannot write
 * outside models--ORG--NAME/. Symlinks are relative (../../blobs/ETAG), as huggingface_hub
 * makes them, so a cache folder can be moved or mounted elsewhere.
 */
#include "net/net_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== names =================================================================================== */
static int name_char(int c) {
    return isalnum(c) || c == '.' || c == '_' || c == '-';
}

enum cge_status cge_hub_repo_folder(const char *repo_id, char *buf, size_t cap) {
    if (!repo_id || !*repo_id) return cge__err(CGE_ERR_INVALID_VALUE, "empty repo id");
    const char *slash = strchr(repo_id, '/');
    size_t n = strlen(repo_id);
    int ok = n <= 96 * 2 + 1 && (!slash || strchr(slash + 1, '/') == NULL);
    const char *part = repo_id;
    for (int k = 0; ok && k < (slash ? 2 : 1); k++) {
        size_t len = k == 0 && slash ? (size_t)(slash - repo_id) : strlen(part);
        ok = len >= 1 && len <= 96 && part[0] != '.' && part[0] != '-';
        for (size_t i = 0; ok && i < len; i++)
            ok = name_char((unsigned char)part[i]);
        ok = ok && !(len >= 2 && memmem(part, len, "..", 2));
        part = slash ? slash + 1 : part;
    }
    if (!ok)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "'%s' is not a repo id (ORG/NAME of letters, digits, '.', '_', '-')",
                        repo_id);
    int k;
    if (slash)
        k = snprintf(buf, cap, "models--%.*s--%s", (int)(slash - repo_id), repo_id, slash + 1);
    else
        k = snprintf(buf, cap, "models--%s", repo_id);
    if (k < 0 || (size_t)k >= cap) return cge__err(CGE_ERR_INVALID_VALUE, "repo id too long");
    return CGE_OK;
}

int cge__hub_safe_path(const char *p) {
    size_t n = p ? strlen(p) : 0;
    if (n == 0 || n > 1024 || p[0] == '/') return 0;
    const char *c = p;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)c[i] < 0x20 || c[i] == '\\' || c[i] == 0x7f) return 0;
        if (!e) break;
        c = e + 1;
        if (!*c) return 0; /* trailing slash */
    }
    return 1;
}

int cge__hub_is_commit(const char *s) {
    if (!s || strlen(s) != 40) return 0;
    for (int i = 0; i < 40; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) return 0;
    return 1;
}

int cge__hub_safe_revision(const char *s) {
    return cge__hub_safe_path(s) && strlen(s) <= 255;
}

int cge__hub_safe_etag(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return 0;
    return 1;
}

int cge__hub_env_true(const char *name) {
    const char *v = getenv(name);
    if (!v) return 0;
    return !strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
           !strcasecmp(v, "on");
}

int cge_hub_slot_repos(int i, char repos[2][128]) {
    const struct cge_slot_info *s = cge_slot_get(i);
    if (!s) return 0;
    const char *id = s->hf_id, *lb = strchr(id, '{'), *rb = lb ? strchr(lb, '}') : NULL;
    const char *comma = lb && rb ? memchr(lb, ',', (size_t)(rb - lb)) : NULL;
    if (!comma) {
        snprintf(repos[0], 128, "%s", id);
        return 1;
    }
    snprintf(repos[0], 128, "%.*s%.*s%s", (int)(lb - id), id, (int)(comma - lb - 1), lb + 1,
             rb + 1);
    snprintf(repos[1], 128, "%.*s%.*s%s", (int)(lb - id), id, (int)(rb - comma - 1), comma + 1,
             rb + 1);
    return 2;
}

/* ==== folders ================================================================================= */
enum cge_status cge_hub_cache_dir(char *buf, size_t cap) {
    const char *v = getenv("HF_HUB_CACHE");
    int k;
    if (v && *v) {
        k = snprintf(buf, cap, "%s", v);
    } else if ((v = getenv("HF_HOME")) && *v) {
        k = snprintf(buf, cap, "%s/hub", v);
    } else if ((v = getenv("XDG_CACHE_HOME")) && *v) {
        /* huggingface_hub: HF_HOME defaults to $XDG_CACHE_HOME/huggingface. */
        k = snprintf(buf, cap, "%s/huggingface/hub", v);
    } else if ((v = getenv("HOME")) && *v) {
        k = snprintf(buf, cap, "%s/.cache/huggingface/hub", v);
    } else {
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "no cache folder: set HF_HUB_CACHE, HF_HOME or HOME");
    }
    if (k < 0 || (size_t)k >= cap) return cge__err(CGE_ERR_INVALID_VALUE, "cache path too long");
    return CGE_OK;
}

enum cge_status cge__hub_mkdirs(const char *dir) {
    char p[CGE_HUB_PATH_MAX];
    int k = snprintf(p, sizeof p, "%s", dir);
    if (k < 0 || (size_t)k >= sizeof p) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    for (char *c = p + 1;; c++) {
        if (*c == '/' || *c == 0) {
            char save = *c;
            *c = 0;
            if (mkdir(p, 0755) && errno != EEXIST)
                return cge__err(CGE_ERR_IO, "cannot create %s: %s", p, strerror(errno));
            *c = save;
            if (!save) break;
        }
    }
    struct stat st;
    if (stat(p, &st) || !S_ISDIR(st.st_mode)) return cge__err(CGE_ERR_IO, "%s is not a folder", p);
    return CGE_OK;
}

enum cge_status cge__hub_link(const char *repo_dir, const char *commit, const char *path,
                              const char *etag) {
    char ptr[CGE_HUB_PATH_MAX], target[CGE_HUB_PATH_MAX];
    int k = snprintf(ptr, sizeof ptr, "%s/snapshots/%s/%s", repo_dir, commit, path);
    if (k < 0 || (size_t)k >= sizeof ptr) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    /* From snapshots/COMMIT/a/b/file: one ".." per folder of PATH, two for COMMIT and
     * snapshots. */
    size_t off = 0;
    int ups = 2;
    for (const char *c = path; *c; c++)
        ups += *c == '/';
    for (int i = 0; i < ups && off + 3 < sizeof target; i++) {
        memcpy(target + off, "../", 3);
        off += 3;
    }
    k = snprintf(target + off, sizeof target - off, "blobs/%s", etag);
    if (k < 0 || (size_t)k >= sizeof target - off)
        return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    char *slash = strrchr(ptr, '/');
    *slash = 0;
    enum cge_status st = cge__hub_mkdirs(ptr);
    *slash = '/';
    if (st) return st;
    char have[CGE_HUB_PATH_MAX];
    ssize_t n = readlink(ptr, have, sizeof have - 1);
    if (n >= 0) {
        have[n] = 0;
        if (!strcmp(have, target)) return CGE_OK;
    }
    /* Make the link under a temporary name and rename it over the old one: the pointer is
     * never missing, never half made. */
    char tmp[CGE_HUB_PATH_MAX];
    k = snprintf(tmp, sizeof tmp, "%s.cge-%ld.tmp", ptr, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof tmp) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    unlink(tmp);
    if (symlink(target, tmp))
        return cge__err(CGE_ERR_IO, "cannot link %s: %s", ptr, strerror(errno));
    if (rename(tmp, ptr)) {
        int e = errno;
        unlink(tmp);
        return cge__err(CGE_ERR_IO, "cannot place %s: %s", ptr, strerror(e));
    }
    return CGE_OK;
}

enum cge_status cge__hub_write_ref(const char *repo_dir, const char *revision, const char *commit) {
    char ref[CGE_HUB_PATH_MAX], tmp[CGE_HUB_PATH_MAX];
    int k = snprintf(ref, sizeof ref, "%s/refs/%s", repo_dir, revision);
    if (k < 0 || (size_t)k >= sizeof ref) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    /* Unchanged refs are left alone (no write on a read-only cache that is up to date). */
    char *have = NULL;
    size_t n = 0;
    if (cge__file_exists(ref) && cge__read_file(ref, 256, &have, &n) == CGE_OK) {
        int same = n == 40 && !memcmp(have, commit, 40);
        cge__free(have);
        if (same) return CGE_OK;
    }
    cge__err_clear();
    char *slash = strrchr(ref, '/');
    *slash = 0;
    enum cge_status st = cge__hub_mkdirs(ref);
    *slash = '/';
    if (st) return st;
    k = snprintf(tmp, sizeof tmp, "%s.cge-%ld.tmp", ref, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof tmp) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) return cge__err(CGE_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    /* huggingface_hub writes the bare commit, no newline. */
    int bad = fwrite(commit, 1, 40, f) != 40;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, ref)) {
        int e = errno;
        unlink(tmp);
        return cge__err(CGE_ERR_IO, "cannot write %s: %s", ref, strerror(e));
    }
    return CGE_OK;
}

int cge__hub_pointer_ok(const char *repo_dir, const char *commit, const char *path) {
    char p[CGE_HUB_PATH_MAX];
    int k = snprintf(p, sizeof p, "%s/snapshots/%s/%s", repo_dir, commit, path);
    if (k < 0 || (size_t)k >= sizeof p) return 0;
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ==== offline lookup ========================================================================== */
enum cge_status cge_hub_cache_lookup(const char *cache_dir, const char *repo_id,
                                     const char *revision, char *snapshot, size_t cap,
                                     char commit[41]) {
    char cache[CGE_HUB_PATH_MAX], folder[256], p[CGE_HUB_PATH_MAX];
    enum cge_status st;
    if (!revision) revision = "main";
    if (!cache_dir) {
        if ((st = cge_hub_cache_dir(cache, sizeof cache))) return st;
        cache_dir = cache;
    }
    if ((st = cge_hub_repo_folder(repo_id, folder, sizeof folder))) return st;
    if (!cge__hub_safe_revision(revision))
        return cge__err(CGE_ERR_INVALID_VALUE, "'%s' is not a revision name", revision);
    char c[41];
    if (cge__hub_is_commit(revision)) {
        memcpy(c, revision, 41);
    } else {
        int k = snprintf(p, sizeof p, "%s/%s/refs/%s", cache_dir, folder, revision);
        if (k < 0 || (size_t)k >= sizeof p) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
        char *ref = NULL;
        size_t n = 0;
        if (!cge__file_exists(p) || cge__read_file(p, 256, &ref, &n) != CGE_OK)
            return cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s@%s is not in the cache %s", repo_id,
                            revision, cache_dir);
        while (n > 0 && isspace((unsigned char)ref[n - 1]))
            ref[--n] = 0;
        int ok = cge__hub_is_commit(ref);
        if (ok) memcpy(c, ref, 41);
        cge__free(ref);
        if (!ok) return cge__err(CGE_ERR_SERIALIZATION, "%s does not hold a commit", p);
    }
    int k = snprintf(p, sizeof p, "%s/%s/snapshots/%s", cache_dir, folder, c);
    if (k < 0 || (size_t)k >= sizeof p) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    struct stat sb;
    if (stat(p, &sb) || !S_ISDIR(sb.st_mode))
        return cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s@%s is not in the cache %s (no snapshot %s)",
                        repo_id, revision, cache_dir, c);
    if ((size_t)k >= cap) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    memcpy(snapshot, p, (size_t)k + 1);
    if (commit) memcpy(commit, c, 41);
    return CGE_OK;
}

/* ==== file selection ========================================================================== */
int cge_hub_match(const char *pattern, const char *path) {
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '/') {
        char buf[1100];
        if (n + 2 > sizeof buf) return 0;
        memcpy(buf, pattern, n);
        buf[n] = '*';
        buf[n + 1] = 0;
        return fnmatch(buf, path, 0) == 0;
    }
    return fnmatch(pattern, path, 0) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* A sentence-transformers module folder: "1_Pooling", "2_Dense", "3_Normalize". */
static int module_folder(const char *dir, size_t len) {
    size_t i = 0;
    while (i < len && isdigit((unsigned char)dir[i]))
        i++;
    return i > 0 && i + 1 < len && dir[i] == '_';
}

/* The folder of a path ("" for the root), as pointer + length. */
static size_t folder_len(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? (size_t)(s - p) : 0;
}

static int in_scope(const char *p) {
    size_t d = folder_len(p);
    if (d == 0) return 1;
    /* one level of module folder only */
    if (memchr(p, '/', d)) return 0;
    return module_folder(p, d);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

enum wkind { W_NONE = 0, W_ST, W_ST_INDEX, W_BIN, W_BIN_INDEX };

/* model.safetensors, model-00001-of-00002.safetensors, their index; pytorch_model.bin, shards,
 * index. In module folders any *.safetensors / pytorch_model*.bin counts. */
static enum wkind weight_kind(const char *p) {
    const char *b = base_name(p);
    int root = folder_len(p) == 0;
    if (!strcmp(b, "model.safetensors.index.json")) return W_ST_INDEX;
    if (!strcmp(b, "pytorch_model.bin.index.json")) return W_BIN_INDEX;
    if (ends_with(b, ".safetensors")) {
        if (!root) return W_ST;
        if (!strcmp(b, "model.safetensors") ||
            fnmatch("model-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].safetensors", b,
                    0) == 0)
            return W_ST;
        return W_NONE; /* variants (model.fp16.safetensors, adapters): not the default */
    }
    if (ends_with(b, ".bin") && !strncmp(b, "pytorch_model", 13)) {
        if (!strcmp(b, "pytorch_model.bin") ||
            fnmatch("pytorch_model-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].bin", b,
                    0) == 0)
            return W_BIN;
    }
    return W_NONE;
}

static int config_like(const char *p) {
    const char *b = base_name(p);
    if (b[0] == '.') return 0;
    return ends_with(b, ".json") || ends_with(b, ".txt") || ends_with(b, ".model") ||
           ends_with(b, ".tiktoken");
}

int cge_hub_select_default(const char *const *paths, int n, unsigned char *sel) {
    /* Per folder (root or module), does it have safetensors weights? */
    int count = 0;
    for (int i = 0; i < n; i++) {
        sel[i] = 0;
        const char *p = paths[i];
        if (!in_scope(p)) continue;
        enum wkind w = weight_kind(p);
        if (w == W_NONE) {
            sel[i] = (unsigned char)config_like(p);
        } else {
            /* safetensors present in the same folder? */
            size_t d = folder_len(p);
            int has_st = 0;
            for (int j = 0; j < n && !has_st; j++)
                has_st = folder_len(paths[j]) == d && !strncmp(paths[j], p, d) &&
                         weight_kind(paths[j]) == W_ST;
            sel[i] = (unsigned char)(has_st ? (w == W_ST || w == W_ST_INDEX)
                                            : (w == W_BIN || w == W_BIN_INDEX));
        }
        count += sel[i];
    }
    return count;
}
