/*
 * util.c: bounded buffers, whole-file reads, paths, time, JSON files.
 *
 * Every growable buffer carries a hard maximum (curl's dynbuf): a request body, a token list or
 * a file can never grow without bound because of what an input says.
 */
#include "core/core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void cge__buf_init(struct cge_buf *b, size_t max) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

enum cge_status cge__buf_append(struct cge_buf *b, const void *p, size_t n) {
    if (n > b->max || b->len > b->max - n)
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "buffer limit of %zu bytes exceeded", b->max);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = cge__realloc(b->data, cap);
        if (!d) return cge__err(CGE_ERR_NOMEM, "buffer of %zu bytes", cap);
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return CGE_OK;
}

enum cge_status cge__buf_printf(struct cge_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return cge__err(CGE_ERR_INVALID_VALUE, "bad format");
    if ((size_t)n < sizeof small) return cge__buf_append(b, small, (size_t)n);
    char *big = cge__malloc((size_t)n + 1);
    if (!big) return cge__err(CGE_ERR_NOMEM, "format buffer");
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    enum cge_status st = cge__buf_append(b, big, (size_t)n);
    cge__free(big);
    return st;
}

void cge__buf_reset(struct cge_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void cge__buf_free(struct cge_buf *b) {
    cge__free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

enum cge_status cge__read_file(const char *path, size_t max_len, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return cge__err(CGE_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_len) {
        fclose(f);
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "%s: %lld bytes, limit %zu", path,
                        (long long)st.st_size, max_len);
    }
    size_t n = (size_t)st.st_size;
    char *buf = cge__malloc(n + 1);
    if (!buf) {
        fclose(f);
        return cge__err(CGE_ERR_NOMEM, "%s: %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        cge__free(buf);
        return cge__err(CGE_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    if (out_len) *out_len = n;
    return CGE_OK;
}

int cge__file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

enum cge_status cge__path_join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return cge__err(CGE_ERR_INVALID_VALUE, "path too long: %s/%s", dir, name);
    return CGE_OK;
}

int64_t cge__now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

enum cge_status cge__json_read_file(const char *path, struct cJSON **out) {
    char *text;
    size_t len;
    *out = NULL;
    enum cge_status st = cge__read_file(path, (size_t)64 << 20, &text, &len);
    if (st) return st;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        size_t off = end ? (size_t)(end - text) : 0;
        cge__free(text);
        return cge__err(CGE_ERR_SERIALIZATION, "%s: invalid JSON near byte %zu", path, off);
    }
    cge__free(text);
    *out = j;
    return CGE_OK;
}
