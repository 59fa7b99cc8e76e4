/*
 * safetensors.c: the safetensors format, validated completely before any tensor is handed out.
 *
 * Layout: 8 bytes little-endian header length N, N bytes of UTF-8 JSON (an object: tensor name
 * -> {"dtype", "shape", "data_offsets": [begin, end]} plus an optional "__metadata__" object of
 * strings), then the data region; offsets are relative to the data region.
 *
 * Key decision: a file is untrusted input. Every number is checked to be an exact non-negative
 * integer, shape products are computed with overflow checks, each tensor's byte span must equal
 * shape x dtype size, and spans (sorted) must lie inside the data region without overlapping.
 * Errors name the file and the byte offset or the tensor. Tensors keep pointing into the
 * caller's memory (the map) unless a span is not aligned to its element size; then the data
 * region is copied once into an aligned heap block so that model code may read the data as
 * float/uint16_t arrays directly.
 */
#include "io/io_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Returns the byte offset of the first invalid UTF-8 sequence, or len when all is valid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF (RFC 3629). */
static size_t utf8_invalid_at(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07u;
        } else {
            return i;
        }
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0u) != 0x80u) return i;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

/* A JSON number that must be an exact integer in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int parse_dtype(const char *s, enum cge_dtype *d, int *known_but_unsupported) {
    static const struct {
        const char *name;
        enum cge_dtype d;
    } table[] = {
        {"F32", CGE_DTYPE_F32}, {"F16", CGE_DTYPE_F16}, {"BF16", CGE_DTYPE_BF16},
        {"I8", CGE_DTYPE_I8},   {"U8", CGE_DTYPE_U8},   {"I32", CGE_DTYPE_I32},
        {"I64", CGE_DTYPE_I64}, {"F64", CGE_DTYPE_F64},
    };
    static const char *const other[] = {"BOOL", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"};
    *known_but_unsupported = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(s, table[i].name) == 0) {
            *d = table[i].d;
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (strcmp(s, other[i]) == 0) *known_but_unsupported = 1;
    return 0;
}

struct span {
    uint64_t begin, end;
    int64_t idx; /* index into the tensors parsed from this file */
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Validates one tensor entry; fills info (data relative to the data region start: NULL-based
 * offsets are stored in span) */
static enum cge_status parse_entry(const char *label, const cJSON *e, struct cge_tensor_info *info,
                                   struct span *sp, uint64_t data_len) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: tensor '%s': entry is not a JSON object", label,
                        name);
    const cJSON *jd = NULL, *js = NULL, *jo = NULL;
    for (const cJSON *f = e->child; f; f = f->next) {
        if (strcmp(f->string, "dtype") == 0 && !jd)
            jd = f;
        else if (strcmp(f->string, "shape") == 0 && !js)
            js = f;
        else if (strcmp(f->string, "data_offsets") == 0 && !jo)
            jo = f;
        else
            return cge__err(CGE_ERR_SERIALIZATION,
                            "%s: tensor '%s': unexpected or repeated key '%s'", label, name,
                            f->string);
    }
    if (!jd || !js || !jo)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: tensor '%s': missing %s", label, name,
                        !jd   ? "dtype"
                        : !js ? "shape"
                              : "data_offsets");
    if (!cJSON_IsString(jd))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: tensor '%s': dtype is not a string", label,
                        name);
    int unsup = 0;
    if (!parse_dtype(jd->valuestring, &info->dtype, &unsup))
        return cge__err(unsup ? CGE_ERR_UNSUPPORTED : CGE_ERR_SERIALIZATION,
                        "%s: tensor '%s': %s dtype '%.32s'", label, name,
                        unsup ? "unsupported" : "unknown", jd->valuestring);
    if (!cJSON_IsArray(js))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: tensor '%s': shape is not an array", label,
                        name);
    int n_dim = cJSON_GetArraySize(js);
    if (n_dim > CGE_MAX_DIMS)
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions, at most %d", label,
                        name, n_dim, CGE_MAX_DIMS);
    info->n_dim = n_dim;
    uint64_t n_elem = 1;
    int k = 0;
    int zero = 0;
    for (const cJSON *d = js->child; d; d = d->next, k++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return cge__err(CGE_ERR_SERIALIZATION,
                            "%s: tensor '%s': shape[%d] is not a non-negative integer", label, name,
                            k);
        info->shape[k] = (int64_t)v;
        if (v == 0) zero = 1;
        if (!zero && n_elem > ((uint64_t)1 << 53) / v)
            return cge__err(CGE_ERR_SERIALIZATION, "%s: tensor '%s': shape product overflows",
                            label, name);
        if (!zero) n_elem *= v;
    }
    for (; k < CGE_MAX_DIMS; k++)
        info->shape[k] = 0;
    if (zero) n_elem = 0;
    uint64_t esize = cge_dtype_size(info->dtype);
    uint64_t n_bytes = n_elem * esize; /* n_elem <= 2^53, esize <= 8: fits */
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: tensor '%s': data_offsets is not an array of two integers", label,
                        name);
    uint64_t b, en;
    if (!json_uint(jo->child, &b) || !json_uint(jo->child->next, &en))
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: tensor '%s': data_offsets are not non-negative integers", label, name);
    if (en < b)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", label,
                        name, (unsigned long long)b, (unsigned long long)en);
    if (en - b != n_bytes)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: tensor '%s': data_offsets span %llu bytes, but shape x %s needs %llu",
                        label, name, (unsigned long long)(en - b), cge_dtype_str(info->dtype),
                        (unsigned long long)n_bytes);
    if (en > data_len)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: tensor '%s': data_offsets [%llu, %llu] beyond the data region "
                        "(%llu bytes)",
                        label, name, (unsigned long long)b, (unsigned long long)en,
                        (unsigned long long)data_len);
    info->n_elem = (int64_t)n_elem;
    info->n_bytes = (size_t)n_bytes;
    info->name = name;
    sp->begin = b;
    sp->end = en;
    return CGE_OK;
}

enum cge_status cge__safetensors_parse(struct cge_weights *w, const uint8_t *buf, size_t len,
                                       const char *label) {
    if (len < 8)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: %zu bytes, too short for a safetensors header (8 bytes of length)",
                        label, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > CGE_ST_MAX_HEADER)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: byte 0: header length %llu exceeds the limit of %zu bytes", label,
                        (unsigned long long)hlen, CGE_ST_MAX_HEADER);
    if (hlen > len - 8)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: byte 0: header length %llu runs past the end of the file "
                        "(%zu bytes)",
                        label, (unsigned long long)hlen, len);
    if (hlen < 2 || buf[8] != '{')
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: byte 8: header is not a JSON object (not a safetensors file?)", label);
    const uint8_t *h = buf + 8;
    size_t bad = utf8_invalid_at(h, (size_t)hlen);
    if (bad != hlen)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: byte %zu: header is not valid UTF-8", label,
                        8 + bad);
    if (memchr(h, 0, (size_t)hlen))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: byte %zu: NUL byte in the header", label,
                        8 + (size_t)((const uint8_t *)memchr(h, 0, (size_t)hlen) - h));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)h, (size_t)hlen, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)((const uint8_t *)end - h) : 0;
        return cge__err(CGE_ERR_SERIALIZATION, "%s: byte %zu: header is not valid JSON", label,
                        8 + off);
    }
    /* The writer may pad the header with spaces up to an 8-byte boundary. */
    for (const uint8_t *p = (const uint8_t *)end; p < h + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return cge__err(CGE_ERR_SERIALIZATION,
                            "%s: byte %zu: trailing bytes after the header's JSON object", label,
                            8 + (size_t)(p - h));
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return cge__err(CGE_ERR_SERIALIZATION, "%s: byte 8: header is not a JSON object", label);
    }
    const uint8_t *data = h + hlen;
    uint64_t data_len = (uint64_t)(len - 8 - hlen);

    int n_entries = cJSON_GetArraySize(root);
    size_t cap = n_entries > 0 ? (size_t)n_entries : 1;
    struct cge_tensor_info *infos = cge__calloc(cap, sizeof *infos);
    struct span *spans = cge__calloc(cap, sizeof *spans);
    enum cge_status st = CGE_OK;
    int64_t n = 0;
    int seen_meta = 0;
    if (!infos || !spans) {
        st = cge__err(CGE_ERR_NOMEM, "%s: %d header entries", label, n_entries);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta || !cJSON_IsObject(e)) {
                st = cge__err(CGE_ERR_SERIALIZATION, "%s: __metadata__ is %s", label,
                              seen_meta ? "repeated" : "not a JSON object");
                goto done;
            }
            seen_meta = 1;
            for (const cJSON *m = e->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    st = cge__err(CGE_ERR_SERIALIZATION, "%s: __metadata__ '%s' is not a string",
                                  label, m->string);
                    goto done;
                }
            }
            continue;
        }
        st = parse_entry(label, e, &infos[n], &spans[n], data_len);
        if (st) goto done;
        spans[n].idx = n;
        n++;
    }
    /* Spans sorted by offset must not overlap. Zero-sized tensors overlap nothing. */
    if (n > 1) qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    uint64_t prev_end = 0;
    int64_t prev = -1;
    for (int64_t i = 0; i < n; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (prev >= 0 && spans[i].begin < prev_end) {
            st = cge__err(CGE_ERR_SERIALIZATION,
                          "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                          "(ends at %llu)",
                          label, infos[spans[i].idx].name, (unsigned long long)spans[i].begin,
                          (unsigned long long)spans[i].end, infos[prev].name,
                          (unsigned long long)prev_end);
            goto done;
        }
        prev_end = spans[i].end;
        prev = spans[i].idx;
    }
    /* Alignment: copy the data region once if any tensor's data is misaligned. */
    int misaligned = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t es = cge_dtype_size(infos[spans[i].idx].dtype);
        if (((uintptr_t)(data + spans[i].begin)) % es) misaligned = 1;
    }
    if (misaligned && data_len > 0) {
        void *copy = cge__malloc_aligned((size_t)data_len);
        if (!copy) {
            st = cge__err(CGE_ERR_NOMEM, "%s: aligned copy of %llu bytes", label,
                          (unsigned long long)data_len);
            goto done;
        }
        memcpy(copy, data, (size_t)data_len);
        struct cge__region r = {copy, (size_t)data_len, CGE__REGION_HEAP};
        st = cge__weights_add_region(w, r);
        if (st) goto done;
        data = copy;
    }
    /* Tensors in file (offset) order. */
    for (int64_t i = 0; i < n; i++) {
        struct cge_tensor_info *t = &infos[spans[i].idx];
        t->data = data + spans[i].begin;
        st = cge__weights_add_tensor(w, t);
        if (st) goto done;
    }
done:
    cge__free(infos);
    cge__free(spans);
    cJSON_Delete(root);
    return st;
}
