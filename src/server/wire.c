/*
 * wire.c: JSON inputs to struct cge_input and struct cge_result to JSON, for the HTTP and MCP
 * servers (see wire.h), with the base64 and UTF-8 checks they need.
 *
 * Design: parsing is strict (an unknown field, a wrong type or a broken data: URL is an error
 * naming the field), because a field silently ignored is a request silently answered wrong.
 * Vectors are written as %.9g writes them (nine significant digits round-trip every float32),
 * by a formatter of their own five times faster than snprintf: the 1536 numbers of a fused
 * vector were a third of the server's own time per request.
 */
#include "server/wire.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum cge_status fail(char *err, size_t errlen, enum cge_status st, const char *fmt, ...)
    CGE_PRINTF(4, 5);
static enum cge_status fail(char *err, size_t errlen, enum cge_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return st;
}

/* ==== base64 ================================================================================= */
static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t cge__base64_encode(const void *src, size_t n, char *dst) {
    const unsigned char *s = src;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        dst[o++] = b64_chars[v >> 18];
        dst[o++] = b64_chars[(v >> 12) & 63];
        dst[o++] = b64_chars[(v >> 6) & 63];
        dst[o++] = b64_chars[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        dst[o++] = b64_chars[v >> 18];
        dst[o++] = b64_chars[(v >> 12) & 63];
        dst[o++] = i + 1 < n ? b64_chars[(v >> 6) & 63] : '=';
        dst[o++] = '=';
    }
    dst[o] = '\0';
    return o;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

enum cge_status cge__base64_decode(const char *src, size_t n, unsigned char **out,
                                   size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    while (n > 0 && src[n - 1] == '=') n--;
    if (n % 4 == 1) return cge__err(CGE_ERR_INVALID_VALUE, "base64: truncated (length %zu)", n);
    unsigned char *o = cge__malloc(n / 4 * 3 + 3);
    if (!o) return cge__err(CGE_ERR_NOMEM, "base64: %zu bytes", n);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)src[i]);
        if (v < 0) {
            cge__free(o);
            return cge__err(CGE_ERR_INVALID_VALUE, "base64: bad character at %zu", i);
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    *out = o;
    *out_len = k;
    return CGE_OK;
}

/* ==== UTF-8 ================================================================================== */
int cge__utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

/* ==== inputs ================================================================================= */
int cge__wire_slot_index(const char *name) {
    if (!name || name[0] != 'E') return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(name + 1, &end, 10);
    if (end == name + 1 || *end || v < 1 || v > CGE_N_SLOTS || name[1] == '0' || name[1] == '+')
        return -1;
    return (int)v - 1;
}

void cge__wire_input_deinit(struct cge__wire_input *w) {
    if (!w) return;
    cge__free(w->media);
    cge__free(w->path);
    memset(w, 0, sizeof *w);
}

/* A data: URL ("data:[type][;param]*;base64,DATA") decoded into w->media. */
static enum cge_status parse_data_url(const char *s, const char *field, const char *kind,
                                      const struct cge__wire_policy *pol,
                                      struct cge__wire_input *w, char *err, size_t errlen) {
    const char *comma = strchr(s, ',');
    if (!comma)
        return fail(err, errlen, CGE_ERR_INVALID_VALUE, "%s.%s: data: URL without a comma", field,
                    kind);
    size_t hlen = (size_t)(comma - s);
    if (hlen < 12 || memcmp(comma - 7, ";base64", 7) != 0)
        return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                    "%s.%s: only base64 data: URLs are accepted (data:TYPE;base64,...)", field,
                    kind);
    const char *data = comma + 1;
    size_t n = strlen(data);
    if (pol && pol->max_media_bytes && n / 4 * 3 > pol->max_media_bytes + 3)
        return fail(err, errlen, CGE_ERR_INPUT_TOO_LONG, "%s.%s: media larger than %zu bytes",
                    field, kind, pol->max_media_bytes);
    size_t len = 0;
    enum cge_status st = cge__base64_decode(data, n, &w->media, &len);
    if (st)
        return fail(err, errlen, st == CGE_ERR_NOMEM ? st : CGE_ERR_INVALID_VALUE, "%s.%s: %s",
                    field, kind, cge_errmsg());
    if (len == 0)
        return fail(err, errlen, CGE_ERR_INVALID_VALUE, "%s.%s: empty media", field, kind);
    if (!strcmp(kind, "image")) {
        w->in.image_data = w->media;
        w->in.image_len = len;
    } else {
        w->in.audio_data = w->media;
        w->in.audio_len = len;
    }
    return CGE_OK;
}

/* A file path: allowed only when it resolves inside pol->allow_files. */
static enum cge_status parse_path(const char *s, const char *field, const char *kind,
                                  const struct cge__wire_policy *pol, struct cge__wire_input *w,
                                  char *err, size_t errlen) {
    if (!pol || !pol->allow_files)
        return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                    "%s.%s: file paths are not accepted by this server (send a data: URL, or "
                    "start it with --allow-files DIR)",
                    field, kind);
    char joined[PATH_MAX];
    int k = s[0] == '/' ? snprintf(joined, sizeof joined, "%s", s)
                        : snprintf(joined, sizeof joined, "%s/%s", pol->allow_files, s);
    if (k < 0 || (size_t)k >= sizeof joined)
        return fail(err, errlen, CGE_ERR_INVALID_VALUE, "%s.%s: path too long", field, kind);
    char *real = realpath(joined, NULL);
    size_t dl = strlen(pol->allow_files);
    if (!real || strncmp(real, pol->allow_files, dl) != 0 ||
        (real[dl] != '/' && !(dl == 1 && pol->allow_files[0] == '/'))) {
        free(real);
        /* One message for "missing" and "outside", so a request cannot probe the filesystem. */
        return fail(err, errlen, CGE_ERR_IO, "%s.%s: no such file inside the allowed folder",
                    field, kind);
    }
    w->path = cge__strdup(real);
    free(real);
    if (!w->path) return fail(err, errlen, CGE_ERR_NOMEM, "%s.%s: out of memory", field, kind);
    if (!strcmp(kind, "image")) w->in.image_path = w->path;
    else w->in.audio_path = w->path;
    return CGE_OK;
}

static enum cge_status input_parse(const cJSON *j, const char *field,
                                   const struct cge__wire_policy *pol, struct cge__wire_input *w,
                                   char *err, size_t errlen) {
    if (cJSON_IsString(j)) {
        w->in.text = j->valuestring;
        w->in.text_len = strlen(j->valuestring);
        return CGE_OK;
    }
    if (!cJSON_IsObject(j))
        return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                    "%s: expected a string or an object with \"text\", \"code\", \"image\" or "
                    "\"audio\"",
                    field);
    static const char *const kinds[] = {"text", "code", "image", "audio"};
    const cJSON *content = NULL;
    const char *kind = NULL;
    const cJSON *role = NULL, *instruction = NULL, *language = NULL;
    const cJSON *f;
    cJSON_ArrayForEach(f, j) {
        const char *k = f->string;
        int is_kind = 0;
        for (int i = 0; i < 4; i++)
            if (!strcmp(k, kinds[i])) is_kind = 1;
        if (is_kind) {
            if (content)
                return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                            "%s: both \"%s\" and \"%s\" given; an input holds exactly one", field,
                            kind, k);
            content = f;
            kind = k;
        } else if (!strcmp(k, "role")) {
            role = f;
        } else if (!strcmp(k, "instruction")) {
            instruction = f;
        } else if (!strcmp(k, "language")) {
            language = f;
        } else {
            return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                        "%s.%s: unknown field (expected text, code, image, audio, role, "
                        "instruction, language)",
                        field, k);
        }
    }
    if (!content)
        return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                    "%s: expected one of \"text\", \"code\", \"image\", \"audio\"", field);
    if (!cJSON_IsString(content))
        return fail(err, errlen, CGE_ERR_INVALID_VALUE, "%s.%s: expected a string", field, kind);
    const char *s = content->valuestring;
    int media = !strcmp(kind, "image") || !strcmp(kind, "audio");
    if ((role && !cJSON_IsNull(role)) || (instruction && !cJSON_IsNull(instruction))) {
        if (media)
            return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                        "%s: \"role\" and \"instruction\" apply to text and code only", field);
    }
    if (language && !cJSON_IsNull(language)) {
        if (strcmp(kind, "code") != 0)
            return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                        "%s.language: applies to code only", field);
        if (!cJSON_IsString(language))
            return fail(err, errlen, CGE_ERR_INVALID_VALUE, "%s.language: expected a string",
                        field);
        w->in.language = language->valuestring;
    }
    if (role && !cJSON_IsNull(role)) {
        if (!cJSON_IsString(role) ||
            (strcmp(role->valuestring, "query") && strcmp(role->valuestring, "document")))
            return fail(err, errlen, CGE_ERR_INVALID_VALUE,
                        "%s.role: expected \"query\" or \"document\"", field);
        w->in.role = !strcmp(role->valuestring, "query") ? CGE_ROLE_QUERY : CGE_ROLE_DOCUMENT;
    }
    if (instruction && !cJSON_IsNull(instruction)) {
        if (!cJSON_IsString(instruction))
            return fail(err, errlen, CGE_ERR_INVALID_VALUE, "%s.instruction: expected a string",
                        field);
        w->in.instruction = instruction->valuestring;
    }
    if (!media) {
        w->in.text = s;
        w->in.text_len = strlen(s);
        w->in.is_code = !strcmp(kind, "code");
        return CGE_OK;
    }
    if (!strncmp(s, "data:", 5)) return parse_data_url(s, field, kind, pol, w, err, errlen);
    if (!s[0])
        return fail(err, errlen, CGE_ERR_INVALID_VALUE, "%s.%s: empty (expected a data: URL)",
                    field, kind);
    return parse_path(s, field, kind, pol, w, err, errlen);
}

enum cge_status cge__wire_input_parse(const cJSON *j, const char *field,
                                      const struct cge__wire_policy *pol,
                                      struct cge__wire_input *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    enum cge_status st = input_parse(j, field, pol, out, err, errlen);
    if (st) cge__wire_input_deinit(out);
    return st;
}

int cge__wire_output_parse(const char *s) {
    if (!s) return 0;
    if (!strcmp(s, "fused")) return CGE__OUT_FUSED;
    if (!strcmp(s, "slots")) return CGE__OUT_SLOTS;
    if (!strcmp(s, "both")) return CGE__OUT_BOTH;
    return 0;
}

/* ==== results ================================================================================ */
/* 10^k for k = -40..60, as the compiler reads the literals (correctly rounded). */
static const double pow10_tab[] = {
    1e-40, 1e-39, 1e-38, 1e-37, 1e-36, 1e-35, 1e-34, 1e-33, 1e-32, 1e-31,
    1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21,
    1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11,
    1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1,
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29,
    1e30, 1e31, 1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39,
    1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47, 1e48, 1e49,
    1e50, 1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59,
    1e60,
};
#define POW10(k) pow10_tab[(k) + 40]

size_t cge__wire_float9(char *out, float f) {
    if (!isfinite(f) || f == 0) return (size_t)snprintf(out, 32, "%.9g", (double)f);
    char *o = out;
    double d = f;
    if (d < 0) {
        *o++ = '-';
        d = -d;
    }
    /* The nine digits: d · 10^(8-e) rounded half to even, e the decimal exponent (log10 may be
     * one off at a power of ten: then the digits say so and e moves). The product is exact when
     * 10^(8-e) is and the digits fit a double, so exact ties round as %.9g rounds them; else its
     * error (1e-16 relative) is far below a float's half spacing (3e-8): the text round-trips. */
    int e = (int)floor(log10(d));
    uint64_t m = (uint64_t)llrint(d * POW10(8 - e));
    if (m >= 1000000000ull) m = (uint64_t)llrint(d * POW10(8 - ++e));
    else if (m < 100000000ull) m = (uint64_t)llrint(d * POW10(8 - --e));
    if (m >= 1000000000ull) { /* 9.999999995 rounded up to 10.0000000 */
        m /= 10;
        e++;
    }
    char dg[9];
    for (int i = 8; i >= 0; i--, m /= 10) dg[i] = (char)('0' + m % 10);
    int nd = 9; /* %g drops trailing zeros */
    while (nd > 1 && dg[nd - 1] == '0') nd--;
    if (e < -4 || e >= 9) { /* d.ddde±XX */
        *o++ = dg[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dg + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        *o++ = 'e';
        *o++ = e < 0 ? '-' : '+';
        int ae = e < 0 ? -e : e;
        if (ae >= 100) *o++ = (char)('0' + ae / 100);
        *o++ = (char)('0' + ae / 10 % 10);
        *o++ = (char)('0' + ae % 10);
    } else if (e >= 0) { /* ddd.ddd */
        for (int i = 0; i <= e; i++) *o++ = i < nd ? dg[i] : '0';
        if (nd > e + 1) {
            *o++ = '.';
            memcpy(o, dg + e + 1, (size_t)(nd - e - 1));
            o += nd - e - 1;
        }
    } else { /* 0.000ddd */
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -e - 1; i++) *o++ = '0';
        memcpy(o, dg, (size_t)nd);
        o += nd;
    }
    *o = '\0';
    return (size_t)(o - out);
}

enum cge_status cge__wire_floats(struct cge_buf *b, const float *v, int64_t n) {
    /* Into a stack chunk, one append per chunk: this loop is much of the server's own time on a
     * 1536-d answer. */
    char chunk[4096];
    size_t k = 0;
    chunk[k++] = '[';
    for (int64_t i = 0; i < n; i++) {
        if (k + 24 > sizeof chunk) {
            enum cge_status st = cge__buf_append(b, chunk, k);
            if (st) return st;
            k = 0;
        }
        if (i) chunk[k++] = ',';
        k += cge__wire_float9(chunk + k, v[i]);
    }
    chunk[k++] = ']';
    return cge__buf_append(b, chunk, k);
}

enum cge_status cge__wire_string(struct cge_buf *b, const char *s) {
    enum cge_status st = cge__buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; !st && *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            st = cge__buf_append(b, e, 2);
        } else if (*p < 0x20) {
            st = cge__buf_printf(b, "\\u%04x", *p);
        } else {
            st = cge__buf_append(b, p, 1);
        }
    }
    if (!st) st = cge__buf_append(b, "\"", 1);
    return st;
}

enum cge_status cge__wire_result_json(struct cge_buf *b, const struct cge_result *r,
                                      unsigned output) {
    enum cge_status st = cge__buf_append(b, "{", 1);
    const char *sep = "";
    if (!st && (output & CGE__OUT_FUSED)) {
        st = cge__buf_printf(b, "\"embedding\":");
        if (!st) st = r->embedding ? cge__wire_floats(b, r->embedding, r->dim)
                                   : cge__buf_printf(b, "null");
        if (!st) st = cge__buf_printf(b, ",\"expert_weights\":");
        if (!st) st = r->expert_weights ? cge__wire_floats(b, r->expert_weights, r->n_experts)
                                        : cge__buf_printf(b, "null");
        if (!st) st = cge__buf_printf(b, ",\"selected\":[");
        for (int k = 0; !st && r->selected && k < r->top_k; k++)
            st = cge__buf_printf(b, k ? ",%d" : "%d", r->selected[k]);
        if (!st) st = cge__buf_append(b, "]", 1);
        sep = ",";
    }
    if (!st && (output & CGE__OUT_SLOTS)) {
        st = cge__buf_printf(b, "%s\"slots\":{", sep);
        int n_failed = 0;
        for (int s = 0; !st && s < CGE_N_SLOTS; s++) {
            const struct cge_slot_result *sr = &r->slots[s];
            st = cge__buf_printf(b, "%s\"E%d\":", s ? "," : "", s + 1);
            if (st) break;
            if (sr->state == CGE_SLOT_OK && sr->vector) st = cge__wire_floats(b, sr->vector, sr->dim);
            else st = cge__buf_append(b, "null", 4);
            n_failed += sr->state == CGE_SLOT_FAILED;
        }
        if (!st) st = cge__buf_append(b, "}", 1);
        if (!st && n_failed && output == CGE__OUT_BOTH) {
            /* Why a slot is missing, only where one failed (the fusion ran without it), as
             * `cge embed --output both` prints it. */
            st = cge__buf_printf(b, ",\"slot_errors\":{");
            int first = 1;
            for (int s = 0; !st && s < CGE_N_SLOTS; s++) {
                const struct cge_slot_result *sr = &r->slots[s];
                if (sr->state != CGE_SLOT_FAILED) continue;
                st = cge__buf_printf(b, "%s\"E%d\":", first ? "" : ",", s + 1);
                if (!st) st = cge__wire_string(b, sr->errmsg[0] ? sr->errmsg
                                                                : cge_status_str(sr->status));
                first = 0;
            }
            if (!st) st = cge__buf_append(b, "}", 1);
        }
    }
    if (!st) st = cge__buf_append(b, "}", 1);
    return st;
}

/* ==== statuses =============================================================================== */
int cge__wire_http_status(enum cge_status st) {
    switch (st) {
    case CGE_OK: return 200;
    case CGE_ERR_INVALID_VALUE:
    case CGE_ERR_INVALID_DIM:
    case CGE_ERR_EMPTY_INPUT:
    case CGE_ERR_SERIALIZATION:
    case CGE_ERR_UNSUPPORTED_MODALITY:
    case CGE_ERR_TOKENIZE:
    case CGE_ERR_UNSUPPORTED: /* an input in a format cge does not read */
    case CGE_ERR_IO: return 400;
    case CGE_ERR_MODEL_NOT_FOUND: return 404;
    case CGE_ERR_INPUT_TOO_LONG: return 422;
    case CGE_ERR_BATCH: return 429;
    case CGE_ERR_NOT_INITIALIZED: return 503;
    case CGE_ERR_TIMEOUT: return 504;
    default: return 500;
    }
}

int cge__wire_result_http_status(const struct cge_result *r) {
    if (r->status == CGE_OK) return 200;
    int failed = 0, ran = 0, agree = 1;
    enum cge_status first = CGE_OK;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (r->slots[s].state == CGE_SLOT_OK) ran++;
        if (r->slots[s].state != CGE_SLOT_FAILED) continue;
        if (!failed) first = r->slots[s].status;
        else if (r->slots[s].status != first) agree = 0;
        failed++;
    }
    /* The input failed because its slots did: say why they did, when they agree (all timed
     * out: 504; all too long: 422; all could not decode it: 400). */
    if (failed && agree) return cge__wire_http_status(first);
    /* No slot failed and none ran: no slot of the ensemble takes this kind of input. */
    if (!failed && !ran && r->status == CGE_ERR_FUSION) return 400;
    return cge__wire_http_status(r->status);
}
