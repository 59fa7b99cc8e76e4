/*
 * weights.c: the format-independent half of cge_weights: opening a path (file or model folder)
 * and picking the format, the name index, lookups, and fp32 conversion.
 *
 * Key decision: tensors are never converted at open. A cge_tensor_info points straight into the
 * memory map (zero-copy) and keeps the file's dtype; cge_weights_get_f32 converts one tensor on
 * request, so a model loader can keep bf16/int8 weights as they are and pay only for what it
 * wants in fp32. The format is chosen by content (zip magic, index JSON), not by file name.
 */
#include "io/io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__F16C__) && defined(__AVX__)
#    include <immintrin.h>
#endif

/* ==== building a weights object ============================================================== */

struct cge_weights *cge__weights_new(const char *path) {
    struct cge_weights *w = cge__calloc(1, sizeof *w);
    if (!w) return NULL;
    w->path = cge__strdup(path ? path : "(buffer)");
    if (!w->path) {
        cge__free(w);
        return NULL;
    }
    return w;
}

void cge__region_release(struct cge__region *r) {
    if (!r->base) return;
    if (r->kind == CGE__REGION_MMAP)
        munmap(r->base, r->len);
    else if (r->kind == CGE__REGION_HEAP)
        cge__free_aligned(r->base);
    r->base = NULL;
    r->len = 0;
}

enum cge_status cge__weights_add_region(struct cge_weights *w, struct cge__region r) {
    if (w->n_regions == w->cap_regions) {
        int cap = w->cap_regions ? 2 * w->cap_regions : 4;
        struct cge__region *p = cge__realloc(w->regions, (size_t)cap * sizeof *p);
        if (!p) {
            cge__region_release(&r);
            return cge__err(CGE_ERR_NOMEM, "%s: region table", w->path);
        }
        w->regions = p;
        w->cap_regions = cap;
    }
    w->regions[w->n_regions++] = r;
    return CGE_OK;
}

enum cge_status cge__weights_add_tensor(struct cge_weights *w, const struct cge_tensor_info *info) {
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 64;
        struct cge_tensor_info *p = cge__realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return cge__err(CGE_ERR_NOMEM, "%s: tensor table", w->path);
        w->t = p;
        w->cap = cap;
    }
    char *name = cge__strdup(info->name);
    if (!name) return cge__err(CGE_ERR_NOMEM, "%s: tensor name", w->path);
    w->t[w->n] = *info;
    w->t[w->n].name = name;
    w->n++;
    return CGE_OK;
}

static int cmp_info_name(const void *a, const void *b) {
    const struct cge_tensor_info *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* The name index is built by sorting (name, position) pairs: no global state, so two threads
 * may open weights at once. */
struct name_idx {
    const char *name;
    int64_t i;
};

static int cmp_name_idx(const void *a, const void *b) {
    const struct name_idx *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return (x->i > y->i) - (x->i < y->i);
}

enum cge_status cge__weights_finish(struct cge_weights *w, int sort_by_name) {
    if (sort_by_name && w->n > 1) qsort(w->t, (size_t)w->n, sizeof *w->t, cmp_info_name);
    cge__free(w->by_name);
    w->by_name = NULL;
    size_t n = w->n > 0 ? (size_t)w->n : 1;
    struct name_idx *tmp = cge__malloc(n * sizeof *tmp);
    w->by_name = cge__malloc(n * sizeof *w->by_name);
    if (!tmp || !w->by_name) {
        cge__free(tmp);
        return cge__err(CGE_ERR_NOMEM, "%s: name index", w->path);
    }
    for (int64_t i = 0; i < w->n; i++) {
        tmp[i].name = w->t[i].name;
        tmp[i].i = i;
    }
    if (w->n > 1) qsort(tmp, (size_t)w->n, sizeof *tmp, cmp_name_idx);
    for (int64_t i = 0; i < w->n; i++) {
        if (i > 0 && strcmp(tmp[i].name, tmp[i - 1].name) == 0) {
            enum cge_status st = cge__err(CGE_ERR_SERIALIZATION, "%s: tensor '%s' appears twice",
                                          w->path, tmp[i].name);
            cge__free(tmp);
            return st;
        }
        w->by_name[i] = tmp[i].i;
    }
    cge__free(tmp);
    return CGE_OK;
}

void cge_weights_free(struct cge_weights *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++)
        cge__free((void *)w->t[i].name);
    cge__free(w->t);
    cge__free(w->by_name);
    for (int i = 0; i < w->n_regions; i++)
        cge__region_release(&w->regions[i]);
    cge__free(w->regions);
    cge__free(w->path);
    cge__free(w);
}

/* ==== files ================================================================================== */

enum cge_status cge__map_file(const char *path, struct cge__region *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cge__err(CGE_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return cge__err(CGE_ERR_SERIALIZATION, "%s: empty file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return cge__err(CGE_ERR_IO, "%s: too large to map", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return cge__err(CGE_ERR_IO, "%s: mmap: %s", path, strerror(e));
    out->base = p;
    out->len = (size_t)st.st_size;
    out->kind = CGE__REGION_MMAP;
    return CGE_OK;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

enum cge_status cge__safetensors_load_file(struct cge_weights *w, const char *path) {
    struct cge__region r;
    enum cge_status st = cge__map_file(path, &r);
    if (st) return st;
    const uint8_t *base = r.base;
    size_t len = r.len;
    st = cge__weights_add_region(w, r);
    if (st) return st;
    return cge__safetensors_parse(w, base, len, path);
}

static enum cge_status open_single(const char *path, int is_torch, struct cge_weights **out) {
    struct cge_weights *w = cge__weights_new(path);
    if (!w) return cge__err(CGE_ERR_NOMEM, "%s: weights", path);
    enum cge_status st =
        is_torch ? cge__torch_load_file(w, path) : cge__safetensors_load_file(w, path);
    if (!st) st = cge__weights_finish(w, is_torch);
    if (st) {
        cge_weights_free(w);
        return st;
    }
    *out = w;
    return CGE_OK;
}

/* Reads the first bytes of a file to tell the formats apart. */
static enum cge_status sniff(const char *path, uint8_t head[16], size_t *n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(errno));
    ssize_t got = read(fd, head, 16);
    int e = errno;
    close(fd);
    if (got < 0) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(e));
    *n = (size_t)got;
    return CGE_OK;
}

static enum cge_status open_file(const char *path, struct cge_weights **out) {
    uint8_t head[16];
    size_t n = 0;
    enum cge_status st = sniff(path, head, &n);
    if (st) return st;
    if (n >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
        return open_single(path, 1, out);
    /* The legacy format starts with its pickled magic number 0x1950a86a20f9469cfc6c (PROTO 2,
     * LONG1 of 10 bytes). Checking all of it matters: a safetensors header of 640 bytes also
     * starts with 0x80 0x02. */
    static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20};
    if (n >= sizeof legacy && memcmp(head, legacy, sizeof legacy) == 0)
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "%s: legacy (pre-1.6, non-zip) torch.save format is not supported; "
                        "re-save it with torch.save or convert it to safetensors",
                        path);
    if (ends_with(path, ".json")) return cge__weights_open_index(path, out);
    return open_single(path, 0, out);
}

enum cge_status cge_weights_open(const char *path, struct cge_weights **out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_weights_open: out is NULL");
    *out = NULL;
    if (!path) return cge__err(CGE_ERR_INVALID_VALUE, "cge_weights_open: path is NULL");
    if (!is_dir(path)) {
        if (!cge__file_exists(path))
            return cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s: no such file or folder", path);
        return open_file(path, out);
    }
    static const char *const names[] = {"model.safetensors", "model.safetensors.index.json",
                                        "pytorch_model.bin", "pytorch_model.bin.index.json"};
    char dir[4096], buf[4096];
    size_t dl = strlen(path);
    while (dl > 1 && path[dl - 1] == '/')
        dl--; /* "model/" -> "model" */
    if (dl >= sizeof dir) return cge__err(CGE_ERR_INVALID_VALUE, "path too long: %s", path);
    memcpy(dir, path, dl);
    dir[dl] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum cge_status st = cge__path_join(buf, sizeof buf, dir, names[i]);
        if (st) return st;
        if (cge__file_exists(buf)) return open_file(buf, out);
    }
    return cge__err(CGE_ERR_MODEL_NOT_FOUND,
                    "%s: no model.safetensors, model.safetensors.index.json or pytorch_model.bin "
                    "in this folder",
                    path);
}

enum cge_status cge_weights_from_safetensors_buffer(const uint8_t *buf, size_t len,
                                                    const char *label, struct cge_weights **out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_weights_from_safetensors_buffer: out");
    *out = NULL;
    if (!label) label = "(buffer)";
    if (!buf && len) return cge__err(CGE_ERR_INVALID_VALUE, "%s: NULL buffer", label);
    struct cge_weights *w = cge__weights_new(label);
    if (!w) return cge__err(CGE_ERR_NOMEM, "%s: weights", label);
    enum cge_status st = cge__safetensors_parse(w, buf, len, label);
    if (!st) st = cge__weights_finish(w, 0);
    if (st) {
        cge_weights_free(w);
        return st;
    }
    *out = w;
    return CGE_OK;
}

/* ==== lookups ================================================================================ */

const char *cge_weights_path(const struct cge_weights *w) {
    return w ? w->path : "";
}

int64_t cge_weights_count(const struct cge_weights *w) {
    return w ? w->n : 0;
}

const struct cge_tensor_info *cge_weights_at(const struct cge_weights *w, int64_t i) {
    if (!w || i < 0 || i >= w->n) return NULL;
    return &w->t[i];
}

const struct cge_tensor_info *cge_weights_find(const struct cge_weights *w, const char *name) {
    if (!w || !name || !w->by_name) return NULL;
    int64_t lo = 0, hi = w->n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const struct cge_tensor_info *t = &w->t[w->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ==== conversion ============================================================================= */

float cge__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal: normalize the mantissa */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float cge__bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void format_shape(char *buf, size_t cap, int n_dim, const int64_t *shape) {
    size_t off = 0;
    int k = snprintf(buf, cap, "[");
    if (k > 0) off = (size_t)k;
    for (int i = 0; i < n_dim && off < cap; i++) {
        k = snprintf(buf + off, cap - off, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (k < 0) break;
        off += (size_t)k;
    }
    if (off < cap) snprintf(buf + off, cap - off, "]");
}

enum cge_status cge_weights_get_f32(const struct cge_weights *w, const char *name, int n_dim,
                                    const int64_t *shape, float **out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_weights_get_f32: out is NULL");
    *out = NULL;
    if (!w || !name) return cge__err(CGE_ERR_INVALID_VALUE, "cge_weights_get_f32: NULL argument");
    const struct cge_tensor_info *t = cge_weights_find(w, name);
    if (!t) return cge__err(CGE_ERR_MODEL_LOAD, "%s: no tensor '%s'", w->path, name);
    if (shape) {
        int ok = n_dim == t->n_dim;
        for (int i = 0; ok && i < n_dim; i++)
            if (shape[i] != -1 && shape[i] != t->shape[i]) ok = 0;
        if (!ok) {
            char have[256], want[256];
            format_shape(have, sizeof have, t->n_dim, t->shape);
            format_shape(want, sizeof want,
                         n_dim < 0              ? 0
                         : n_dim > CGE_MAX_DIMS ? CGE_MAX_DIMS
                                                : n_dim,
                         shape);
            return cge__err(CGE_ERR_INVALID_DIM, "%s: tensor '%s': shape %s, expected %s", w->path,
                            name, have, want);
        }
    }
    if (t->dtype != CGE_DTYPE_F32 && t->dtype != CGE_DTYPE_F16 && t->dtype != CGE_DTYPE_BF16 &&
        t->dtype != CGE_DTYPE_F64)
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "%s: tensor '%s': dtype %s cannot be read as float32 (quantized or "
                        "integer tensors need their own reader)",
                        w->path, name, cge_dtype_str(t->dtype));
    size_t n = (size_t)t->n_elem;
    float *f = cge__malloc((n ? n : 1) * sizeof(float));
    if (!f) return cge__err(CGE_ERR_NOMEM, "%s: tensor '%s': %zu floats", w->path, name, n);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case CGE_DTYPE_F32:
        if (n) memcpy(f, p, n * sizeof(float));
        break;
    case CGE_DTYPE_F16: {
        size_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
        /* the hardware conversion is exact, like the scalar one (it only quiets signaling NaNs) */
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
#endif
        for (; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            f[i] = cge__f16_to_f32(h);
        }
        break;
    }
    case CGE_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            f[i] = cge__bf16_to_f32(h);
        }
        break;
    default: /* F64 */
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            f[i] = (float)d;
        }
        break;
    }
    *out = f;
    return CGE_OK;
}
