/*
 * wcache.c: the converted-weights file. Converting E12's 14 GB of F16 shards to packed int8 takes
 * tens of seconds on every start; this file holds the result (each linear layer serialized by
 * cge__linear_blob_write: packed weights, scales, bias) so that later loads map it instead.
 *
 *   [header, 4096 B: magic, file size, entry count, key, table checksum, header checksum]
 *   [table: per entry offset, length, XXH3-64 of its bytes; padded to 4096]
 *   [entries, each at a 4096-byte boundary]
 *
 * Key decision: a file is used only when everything about it checks out (its size, both header
 * checksums, the key naming the checkpoint's files by name, size and mtime, the dtype and scheme,
 * the CPU ISA and oneDNN version the packing was made for, and every entry's checksum); anything
 * else is a miss, and the caller converts and writes a new one. Writers go through a temporary
 * file, fsync and rename, so two processes starting at once each write a whole file and the
 * last rename wins, and a reader never sees half a file. Verifying reads the whole mapping once
 * (XXH3 runs at memory speed, entries in parallel), which also faults it in.
 */
#include "models/wcache.h"

#include "core/core.h"

#define XXH_STATIC_LINKING_ONLY
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#ifdef _OPENMP
#    include <omp.h>
#endif

#define MAGIC "CGEWCF01"
#define PAGE 4096
#define KEY_CAP (PAGE - 48)

struct hdr {
    char magic[8];
    uint64_t file_size;
    uint64_t n_entries;
    uint64_t key_len;
    uint64_t table_hash; /* XXH3-64 of the table (n_entries records) */
    uint64_t hdr_hash;   /* XXH3-64 of this page with hdr_hash zero */
    char key[KEY_CAP];
};
struct rec {
    uint64_t off, len, hash;
};

struct cge_wcache {
    void *map;
    size_t size;
    const struct rec *table;
    int64_t n;
};

static size_t round_page(size_t n) { return (n + PAGE - 1) & ~(size_t)(PAGE - 1); }

int cge__wcache_wanted(size_t bytes) {
    const char *e = getenv("CGE_CONVERTED");
    if (e && *e) return strcmp(e, "0") != 0;
    return bytes >= ((size_t)1 << 30);
}

/* ---- key and path --------------------------------------------------------------------------- */
static int weight_file(const char *name) {
    size_t n = strlen(name);
#define ENDS(s) (n >= sizeof(s) - 1 && !strcmp(name + n - (sizeof(s) - 1), s))
    return !strcmp(name, "config.json") || ENDS(".safetensors") ||
           ENDS(".safetensors.index.json") || (ENDS(".bin") && !strncmp(name, "pytorch_model", 13));
#undef ENDS
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum cge_status cge__wcache_locate(const char *dir, const char *family, enum cge_dtype dtype,
                                   const char *scheme, char *key, size_t key_cap, char *path,
                                   size_t path_cap) {
    struct cge_buf k;
    cge__buf_init(&k, KEY_CAP - 1);
    int over = cge__buf_printf(&k, "cge converted weights v1; family %s; dtype %s; scheme %s; "
                               "%s; files", family, cge_dtype_str(dtype), scheme,
                               cge__linear_layout_id()) != CGE_OK;
    DIR *d = opendir(dir);
    if (!d) {
        cge__buf_free(&k);
        return cge__err(CGE_ERR_IO, "converted weights: cannot list %s: %s", dir, strerror(errno));
    }
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512)
        if (weight_file(e->d_name)) names[n++] = cge__strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    enum cge_status st = CGE_OK;
    for (int i = 0; i < n; i++) {
        char p[PATH_MAX];
        struct stat sb;
        if (!names[i]) {
            st = cge__err(CGE_ERR_NOMEM, "converted weights: file names");
            continue;
        }
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (st == CGE_OK && stat(p, &sb) != 0)
            st = cge__err(CGE_ERR_IO, "converted weights: stat %s: %s", p, strerror(errno));
        if (st == CGE_OK &&
            cge__buf_printf(&k, " %s:%lld:%lld.%09ld", names[i], (long long)sb.st_size,
                            (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec) != CGE_OK)
            over = 1;
        cge__free(names[i]);
    }
    if (st == CGE_OK && (over || !k.data || k.len + 1 > key_cap || k.len + 1 > KEY_CAP))
        st = cge__err(CGE_ERR_INVALID_VALUE, "converted weights: key too long");
    if (st != CGE_OK) {
        cge__buf_free(&k);
        return st;
    }
    memcpy(key, k.data, k.len);
    key[k.len] = 0;
    cge__buf_free(&k);

    const char *e_file = getenv("CGE_CONVERTED_FILE"), *e_dir = getenv("CGE_CONVERTED_DIR");
    char rp[PATH_MAX];
    if (!realpath(dir, rp)) snprintf(rp, sizeof rp, "%s", dir);
    XXH64_hash_t h = XXH3_64bits_withSeed(key, strlen(key), XXH3_64bits(rp, strlen(rp)));
    int w;
    if (e_file && *e_file)
        w = snprintf(path, path_cap, "%s", e_file);
    else if (e_dir && *e_dir)
        w = snprintf(path, path_cap, "%s/%s-%s-%016llx.cgew", e_dir, family, cge_dtype_str(dtype),
                     (unsigned long long)h);
    else if (access(dir, W_OK) == 0)
        w = snprintf(path, path_cap, "%s/cge-%s-%s.cgew", dir, family, cge_dtype_str(dtype));
    else {
        const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (x && *x)
            w = snprintf(path, path_cap, "%s/cge/converted/%s-%s-%016llx.cgew", x, family,
                         cge_dtype_str(dtype), (unsigned long long)h);
        else if (home && *home)
            w = snprintf(path, path_cap, "%s/.cache/cge/converted/%s-%s-%016llx.cgew", home,
                         family, cge_dtype_str(dtype), (unsigned long long)h);
        else
            return cge__err(CGE_ERR_IO, "converted weights: %s is read-only and there is no "
                            "cache folder (set CGE_CONVERTED_DIR, XDG_CACHE_HOME or HOME)", dir);
    }
    if (w < 0 || (size_t)w >= path_cap)
        return cge__err(CGE_ERR_IO, "converted weights: path too long");
    return CGE_OK;
}

/* ---- reading -------------------------------------------------------------------------------- */
void cge__wcache_close(struct cge_wcache *c) {
    if (!c) return;
    if (c->map) munmap(c->map, c->size);
    cge__free(c);
}

const void *cge__wcache_entry(const struct cge_wcache *c, int64_t i, size_t *len) {
    if (!c || i < 0 || i >= c->n) return NULL;
    *len = (size_t)c->table[i].len;
    return (const char *)c->map + c->table[i].off;
}

static uint64_t hdr_checksum(const struct hdr *h) {
    struct hdr t;
    memcpy(&t, h, sizeof t);
    t.hdr_hash = 0;
    return XXH3_64bits(&t, sizeof t);
}

enum cge_status cge__wcache_open(const char *path, const char *key, int64_t n,
                                 struct cge_wcache **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cge__err(CGE_ERR_IO, "converted weights %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < PAGE) {
        close(fd);
        return cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: truncated (%lld bytes)",
                        path, (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return cge__err(CGE_ERR_IO, "converted weights %s: mmap: %s", path, strerror(errno));
    struct cge_wcache *c = cge__calloc(1, sizeof *c);
    if (!c) {
        munmap(map, size);
        return cge__err(CGE_ERR_NOMEM, "converted weights");
    }
    c->map = map;
    c->size = size;
    const struct hdr *h = map;
    enum cge_status st = CGE_OK;
    size_t klen = strlen(key);
    if (memcmp(h->magic, MAGIC, 8))
        st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: not a converted-weights file", path);
    else if (hdr_checksum(h) != h->hdr_hash)
        st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: header checksum mismatch", path);
    else if (h->file_size != size)
        st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: %zu bytes, the header says "
                      "%llu (truncated or grown)", path, size, (unsigned long long)h->file_size);
    else if (h->key_len != klen || memcmp(h->key, key, klen))
        st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: stale (made for another "
                      "checkpoint, dtype, CPU or oneDNN)", path);
    else if (h->n_entries != (uint64_t)n || PAGE + round_page((size_t)n * sizeof(struct rec)) > size)
        st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: %llu layers, expected %lld",
                      path, (unsigned long long)h->n_entries, (long long)n);
    else if (XXH3_64bits((const char *)map + PAGE, (size_t)n * sizeof(struct rec)) != h->table_hash)
        st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: table checksum mismatch", path);
    if (st == CGE_OK) {
        c->table = (const struct rec *)((const char *)map + PAGE);
        c->n = n;
        for (int64_t i = 0; i < n && st == CGE_OK; i++) {
            const struct rec *r = &c->table[i];
            if (r->off % PAGE || r->off > size || r->len > size - r->off)
                st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: entry %lld out of "
                              "bounds", path, (long long)i);
        }
    }
    if (st == CGE_OK) {
        int64_t bad = -1;
#ifdef _OPENMP
#    pragma omp parallel for schedule(dynamic, 1)
#endif
        for (int64_t i = 0; i < n; i++) {
            const struct rec *r = &c->table[i];
            if (XXH3_64bits((const char *)map + r->off, (size_t)r->len) != r->hash) {
#ifdef _OPENMP
#    pragma omp atomic write /* not a named critical: its lock would be exported */
#endif
                bad = i;
            }
        }
        if (bad >= 0)
            st = cge__err(CGE_ERR_SERIALIZATION, "converted weights %s: entry %lld checksum "
                          "mismatch (corrupted)", path, (long long)bad);
    }
    if (st != CGE_OK) {
        cge__wcache_close(c);
        return st;
    }
    *out = c;
    return CGE_OK;
}

/* ---- writing -------------------------------------------------------------------------------- */
struct writer {
    FILE *f;
    XXH3_state_t hs;
    uint64_t pos;
};

static int put(void *u, const void *p, size_t n) {
    struct writer *w = u;
    if (!n) return 0;
    if (fwrite(p, 1, n, w->f) != n) return -1;
    XXH3_64bits_update(&w->hs, p, n);
    w->pos += n;
    return 0;
}

static int pad_to_page(struct writer *w) {
    static const char zero[PAGE];
    size_t pad = round_page((size_t)w->pos) - (size_t)w->pos;
    if (pad && fwrite(zero, 1, pad, w->f) != pad) return -1;
    w->pos += pad;
    return 0;
}

/* mkdir -p of path's folder */
static void make_parent(const char *path) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) return;
    *slash = 0;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

enum cge_status cge__wcache_write(const char *path, const char *key,
                                  const struct cge_linear *const *layers, int64_t n) {
    size_t klen = strlen(key);
    if (klen >= KEY_CAP) return cge__err(CGE_ERR_INVALID_VALUE, "converted weights: key too long");
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%lld", path, (long)getpid(),
                 (long long)cge__now_us()) >= (int)sizeof tmp)
        return cge__err(CGE_ERR_IO, "converted weights: path too long");
    make_parent(path);
    struct rec *table = cge__calloc((size_t)n ? (size_t)n : 1, sizeof *table);
    struct hdr *h = cge__calloc(1, sizeof *h);
    struct writer w = {.f = fopen(tmp, "wb")};
    enum cge_status st = CGE_OK;
    if (!table || !h) st = cge__err(CGE_ERR_NOMEM, "converted weights: table");
    else if (!w.f) st = cge__err(CGE_ERR_IO, "converted weights %s: %s", tmp, strerror(errno));
    size_t table_bytes = round_page((size_t)n * sizeof *table);
    if (st == CGE_OK && fseek(w.f, (long)(PAGE + table_bytes), SEEK_SET) != 0)
        st = cge__err(CGE_ERR_IO, "converted weights %s: seek", tmp);
    w.pos = PAGE + table_bytes;
    for (int64_t i = 0; i < n && st == CGE_OK; i++) {
        table[i].off = w.pos;
        XXH3_64bits_reset(&w.hs);
        st = cge__linear_blob_write(layers[i], put, &w);
        table[i].len = w.pos - table[i].off;
        table[i].hash = XXH3_64bits_digest(&w.hs);
        if (st == CGE_OK && pad_to_page(&w)) st = cge__err(CGE_ERR_IO, "converted weights: write");
    }
    if (st == CGE_OK) {
        memcpy(h->magic, MAGIC, 8);
        h->file_size = w.pos;
        h->n_entries = (uint64_t)n;
        h->key_len = klen;
        memcpy(h->key, key, klen);
        h->table_hash = XXH3_64bits(table, (size_t)n * sizeof *table);
        h->hdr_hash = hdr_checksum(h);
        if (fseek(w.f, 0, SEEK_SET) != 0 || fwrite(h, sizeof *h, 1, w.f) != 1 ||
            fwrite(table, sizeof *table, (size_t)n, w.f) != (size_t)n || fflush(w.f) != 0 ||
            fsync(fileno(w.f)) != 0)
            st = cge__err(CGE_ERR_IO, "converted weights %s: write: %s", tmp, strerror(errno));
    }
    if (w.f && fclose(w.f) != 0 && st == CGE_OK)
        st = cge__err(CGE_ERR_IO, "converted weights %s: close: %s", tmp, strerror(errno));
    if (st == CGE_OK && rename(tmp, path) != 0)
        st = cge__err(CGE_ERR_IO, "converted weights %s: rename: %s", path, strerror(errno));
    if (st == CGE_OK) { /* the rename itself durable */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    if (st != CGE_OK) unlink(tmp);
    cge__free(table);
    cge__free(h);
    return st;
}
