/*
 * torchzip.c: pytorch_model.bin, the zip archive that torch.save writes (PyTorch >= 1.6):
 * <prefix>/data.pkl (the pickled state dict), <prefix>/data/<key> (one entry per storage, raw
 * little-endian elements), <prefix>/version, and in newer versions <prefix>/byteorder.
 *
 * Key decision: zero-copy. torch.save stores entries uncompressed and pads each to a 64-byte
 * boundary, so a storage is a span of the memory-mapped file. The zip's central directory is
 * parsed here (with zip64) because libzip has no way to say where an entry's bytes start; an
 * entry that is compressed (a re-zipped checkpoint) is read through libzip into an aligned heap
 * block instead, and so is a stored entry that happens to be misaligned. Every offset and size
 * from the archive is checked against the file size before use.
 */
#include "io/io_internal.h"

#include <stdlib.h>
#include <string.h>
#include <zip.h>

struct entry {
    char *name;      /* NUL-terminated copy */
    uint16_t method; /* 0 stored, 8 deflate, ... */
    uint16_t flags;  /* general purpose bit flags */
    uint64_t csize, usize;
    uint64_t local_off; /* offset of the local header */
    const void *data;   /* resolved bytes (usize), once loaded */
};

struct archive {
    const char *path;
    const uint8_t *map;
    size_t len;
    struct entry *e;
    size_t n;
    char prefix[256]; /* "archive/" */
    struct cge_weights *w;
    zip_t *zip; /* opened on demand for compressed entries */
};

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static enum cge_status zerr(const struct archive *a, const char *what, uint64_t off) {
    return cge__err(CGE_ERR_SERIALIZATION, "%s: byte %llu: %s", a->path, (unsigned long long)off,
                    what);
}

/* Reads the central directory into a->e (sorted by name). */
static enum cge_status read_directory(struct archive *a) {
    const uint8_t *p = a->map;
    size_t len = a->len;
    if (len < 22) return zerr(a, "too short for a zip archive", 0);
    /* End of central directory: the last "PK\5\6" within 64 KiB + 22 bytes of the end. */
    size_t eocd = (size_t)-1;
    size_t lo = len > 22 + 65535 ? len - 22 - 65535 : 0;
    for (size_t i = len - 22 + 1; i-- > lo;) {
        if (p[i] == 'P' && p[i + 1] == 'K' && p[i + 2] == 5 && p[i + 3] == 6) {
            eocd = i;
            break;
        }
    }
    if (eocd == (size_t)-1) return zerr(a, "no end of central directory (truncated zip?)", len);
    uint64_t n = le(p + eocd + 10, 2), cd_size = le(p + eocd + 12, 4),
             cd_off = le(p + eocd + 16, 4);
    if (n == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        /* zip64: locator 20 bytes before the EOCD points at the zip64 EOCD record */
        if (eocd < 20 || le(p + eocd - 20, 4) != 0x07064b50u)
            return zerr(a, "zip64 locator missing", eocd);
        uint64_t z = le(p + eocd - 20 + 8, 8);
        if (z > len || len - z < 56 || le(p + z, 4) != 0x06064b50u)
            return zerr(a, "bad zip64 end of central directory", z);
        n = le(p + z + 32, 8);
        cd_size = le(p + z + 40, 8);
        cd_off = le(p + z + 48, 8);
    }
    if (cd_off > len || cd_size > len - cd_off)
        return zerr(a, "central directory lies outside the file", eocd);
    if (n > cd_size / 46) return zerr(a, "central directory entry count is too large", eocd);
    a->e = cge__calloc(n ? (size_t)n : 1, sizeof *a->e);
    if (!a->e) return cge__err(CGE_ERR_NOMEM, "%s: zip directory", a->path);
    uint64_t q = cd_off, end = cd_off + cd_size;
    for (uint64_t k = 0; k < n; k++) {
        if (end - q < 46 || le(p + q, 4) != 0x02014b50u)
            return zerr(a, "bad central directory entry", q);
        struct entry *e = &a->e[a->n];
        e->flags = (uint16_t)le(p + q + 8, 2);
        e->method = (uint16_t)le(p + q + 10, 2);
        e->csize = le(p + q + 20, 4);
        e->usize = le(p + q + 24, 4);
        uint64_t nl = le(p + q + 28, 2), xl = le(p + q + 30, 2), cl = le(p + q + 32, 2);
        e->local_off = le(p + q + 42, 4);
        if (end - q - 46 < nl + xl + cl) return zerr(a, "central directory entry overflows", q);
        const uint8_t *name = p + q + 46;
        if (memchr(name, 0, nl)) return zerr(a, "NUL in an entry name", q);
        e->name = cge__malloc(nl + 1);
        if (!e->name) return cge__err(CGE_ERR_NOMEM, "%s: zip entry name", a->path);
        memcpy(e->name, name, nl);
        e->name[nl] = '\0';
        a->n++;
        /* zip64 extended information: the fields that are 0xffffffff, in this order */
        const uint8_t *x = name + nl, *xe = x + xl;
        while (xe - x >= 4) {
            uint64_t id = le(x, 2), sz = le(x + 2, 2);
            if ((uint64_t)(xe - x - 4) < sz) break;
            if (id == 1) {
                const uint8_t *f = x + 4, *fe = x + 4 + sz;
                if (e->usize == 0xffffffffu) {
                    if (fe - f < 8) return zerr(a, "short zip64 field", q);
                    e->usize = le(f, 8);
                    f += 8;
                }
                if (e->csize == 0xffffffffu) {
                    if (fe - f < 8) return zerr(a, "short zip64 field", q);
                    e->csize = le(f, 8);
                    f += 8;
                }
                if (e->local_off == 0xffffffffu) {
                    if (fe - f < 8) return zerr(a, "short zip64 field", q);
                    e->local_off = le(f, 8);
                }
            }
            x += 4 + sz;
        }
        q += 46 + nl + xl + cl;
    }
    qsort(a->e, a->n, sizeof *a->e, cmp_entry);
    for (size_t i = 1; i < a->n; i++)
        if (strcmp(a->e[i].name, a->e[i - 1].name) == 0)
            return cge__err(CGE_ERR_SERIALIZATION, "%s: zip entry '%s' appears twice", a->path,
                            a->e[i].name);
    return CGE_OK;
}

static struct entry *find_entry(struct archive *a, const char *name) {
    struct entry key;
    key.name = (char *)name;
    return bsearch(&key, a->e, a->n, sizeof *a->e, cmp_entry);
}

/* Makes e->data point at the entry's usize bytes: into the map (stored, aligned) or a copy. */
static enum cge_status load_entry(struct archive *a, struct entry *e) {
    if (e->data) return CGE_OK;
    if (e->flags & 1)
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: entry '%s' is encrypted", a->path, e->name);
    const uint8_t *p = a->map;
    uint64_t lo = e->local_off;
    if (lo > a->len || a->len - lo < 30 || le(p + lo, 4) != 0x04034b50u)
        return zerr(a, "bad local header", lo);
    uint64_t start = lo + 30 + le(p + lo + 26, 2) + le(p + lo + 28, 2);
    if (start > a->len || e->csize > a->len - start)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: entry '%s': %llu bytes at byte %llu run past the end of the file",
                        a->path, e->name, (unsigned long long)e->csize, (unsigned long long)start);
    if (e->method == 0) {
        if (e->csize != e->usize)
            return cge__err(CGE_ERR_SERIALIZATION, "%s: stored entry '%s' has two sizes", a->path,
                            e->name);
        if ((uintptr_t)(p + start) % 8 == 0) {
            e->data = p + start;
            return CGE_OK;
        }
        void *copy = cge__malloc_aligned(e->usize ? (size_t)e->usize : 1);
        if (!copy) return cge__err(CGE_ERR_NOMEM, "%s: entry '%s'", a->path, e->name);
        memcpy(copy, p + start, (size_t)e->usize);
        struct cge__region r = {copy, (size_t)e->usize, CGE__REGION_HEAP};
        enum cge_status st = cge__weights_add_region(a->w, r);
        if (st) return st;
        e->data = copy;
        return CGE_OK;
    }
    /* Compressed: libzip inflates it (and checks the CRC). Deflate expands at most ~1032:1, so a
     * larger claimed size is a lie that must not turn into a huge allocation. */
    if (e->usize > e->csize * 1032 + 1024 || e->usize > ((uint64_t)1 << 40))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: entry '%s' claims %llu bytes", a->path, e->name,
                        (unsigned long long)e->usize);
    if (!a->zip) {
        zip_error_t zerr_;
        zip_error_init(&zerr_);
        zip_source_t *src = zip_source_buffer_create(a->map, a->len, 0, &zerr_);
        if (src) {
            a->zip = zip_open_from_source(src, ZIP_RDONLY, &zerr_);
            if (!a->zip) zip_source_free(src);
        }
        if (!a->zip) {
            char why[128];
            snprintf(why, sizeof why, "%s", zip_error_strerror(&zerr_));
            zip_error_fini(&zerr_);
            return cge__err(CGE_ERR_SERIALIZATION, "%s: libzip cannot open it: %s", a->path, why);
        }
        zip_error_fini(&zerr_);
    }
    zip_file_t *f = zip_fopen(a->zip, e->name, 0);
    if (!f)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: entry '%s': %s", a->path, e->name,
                        zip_strerror(a->zip));
    void *buf = cge__malloc_aligned(e->usize ? (size_t)e->usize : 1);
    if (!buf) {
        zip_fclose(f);
        return cge__err(CGE_ERR_NOMEM, "%s: entry '%s'", a->path, e->name);
    }
    zip_int64_t got = zip_fread(f, buf, e->usize);
    int bad_read = got < 0 || (uint64_t)got != e->usize;
    char why[128];
    snprintf(why, sizeof why, "%s", bad_read ? zip_file_strerror(f) : "");
    zip_fclose(f);
    if (bad_read) {
        cge__free_aligned(buf);
        return cge__err(CGE_ERR_SERIALIZATION, "%s: entry '%s': %s", a->path, e->name, why);
    }
    struct cge__region r = {buf, (size_t)e->usize, CGE__REGION_HEAP};
    enum cge_status st = cge__weights_add_region(a->w, r);
    if (st) return st;
    e->data = buf;
    return CGE_OK;
}

static enum cge_status resolve_storage(void *user, const char *key, size_t n_bytes,
                                       const void **data) {
    struct archive *a = user;
    char name[512];
    int k = snprintf(name, sizeof name, "%sdata/%s", a->prefix, key);
    if (k < 0 || (size_t)k >= sizeof name)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: storage key too long", a->path);
    struct entry *e = find_entry(a, name);
    if (!e)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: storage '%s' is not in the archive", a->path,
                        name);
    if (e->usize < n_bytes)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: storage '%s' holds %llu bytes, the pickle needs %zu", a->path, name,
                        (unsigned long long)e->usize, n_bytes);
    enum cge_status st = load_entry(a, e);
    if (st) return st;
    *data = e->data;
    return CGE_OK;
}

enum cge_status cge__torch_load_file(struct cge_weights *w, const char *path) {
    struct cge__region r;
    enum cge_status st = cge__map_file(path, &r);
    if (st) return st;
    const uint8_t *base = r.base;
    size_t len = r.len;
    st = cge__weights_add_region(w, r);
    if (st) return st;
    return cge__torch_parse(w, base, len, path);
}

enum cge_status cge__torch_parse(struct cge_weights *w, const uint8_t *buf, size_t len,
                                 const char *path) {
    struct archive a;
    memset(&a, 0, sizeof a);
    a.path = path;
    a.map = buf;
    a.len = buf ? len : 0;
    a.w = w;
    enum cge_status st = read_directory(&a);
    /* the pickle: exactly one "<prefix>/data.pkl" at the top level */
    struct entry *pkl = NULL;
    for (size_t i = 0; !st && i < a.n; i++) {
        const char *nm = a.e[i].name, *slash = strchr(nm, '/');
        if (slash && strcmp(slash, "/data.pkl") == 0) {
            if (pkl) {
                st = cge__err(CGE_ERR_SERIALIZATION, "%s: two data.pkl entries ('%s', '%s')", path,
                              pkl->name, nm);
                break;
            }
            pkl = &a.e[i];
        }
    }
    if (!st && !pkl)
        st =
            cge__err(CGE_ERR_SERIALIZATION,
                     "%s: a zip archive without <name>/data.pkl (not written by torch.save)", path);
    if (!st) {
        size_t plen = (size_t)(strchr(pkl->name, '/') - pkl->name) + 1;
        if (plen >= sizeof a.prefix) {
            st = cge__err(CGE_ERR_SERIALIZATION, "%s: archive prefix too long", path);
        } else {
            memcpy(a.prefix, pkl->name, plen);
            a.prefix[plen] = '\0';
        }
    }
    if (!st) {
        /* torch >= 2.1 records the byte order; older files are little-endian */
        char bo[300];
        snprintf(bo, sizeof bo, "%sbyteorder", a.prefix);
        struct entry *e = find_entry(&a, bo);
        if (e) {
            st = load_entry(&a, e);
            if (!st && !(e->usize == 6 && memcmp(e->data, "little", 6) == 0))
                st = cge__err(CGE_ERR_UNSUPPORTED, "%s: big-endian checkpoint", path);
        }
    }
    if (!st) st = load_entry(&a, pkl);
    if (!st)
        st = cge__unpickle_state_dict(pkl->data, (size_t)pkl->usize, path, resolve_storage, &a, w);
    for (size_t i = 0; i < a.n; i++)
        cge__free(a.e[i].name);
    cge__free(a.e);
    if (a.zip) zip_discard(a.zip);
    return st;
}
