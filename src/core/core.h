/*
 * core.h: internal helpers every module uses: errors with context, the allocator (overridable,
 * with fault injection for OOM tests), logging, bounded growable buffers, files, time.
 *
 * Internal symbols shared across files are prefixed cge__ (two underscores).
 */
#ifndef CGE_CORE_H
#define CGE_CORE_H

#include "cge.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors ---------------------------------------------------------------------------------
 * cge__err records a formatted detail message in the thread-local error slot and returns
 * `status`, so failure paths read:  return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(e)); */
#if defined(__GNUC__)
#    define CGE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#    define CGE_PRINTF(a, b)
#endif
enum cge_status cge__err(enum cge_status status, const char *fmt, ...) CGE_PRINTF(2, 3);
void cge__err_clear(void);

/* Programmer errors only (never input-derived conditions): print and abort. */
#define CGE_ASSERT(x)                                                                 \
    do {                                                                              \
        if (!(x)) cge__assert_fail(__FILE__, __LINE__, #x);                           \
    } while (0)
void cge__assert_fail(const char *file, int line, const char *expr);

/* ---- allocation ------------------------------------------------------------------------------
 * All library allocation goes through these. cge__fail_alloc_after(k) makes the k-th following
 * allocation (0-based) and every later one fail until cge__fail_alloc_after(-1): OOM tests count
 * allocations, then fail each in turn. cge__alloc_count() is the number of allocations so far. */
void *cge__malloc(size_t n);
void *cge__calloc(size_t n, size_t size);
void *cge__realloc(void *p, size_t n);
void cge__free(void *p);
char *cge__strdup(const char *s);
/* 64-byte aligned (for SIMD and oneDNN); free with cge__free_aligned. */
void *cge__malloc_aligned(size_t n);
void cge__free_aligned(void *p);
void cge__fail_alloc_after(long k);
long cge__alloc_count(void);

/* ---- logging --------------------------------------------------------------------------------- */
void cge__log(enum cge_log_level level, const char *fmt, ...) CGE_PRINTF(2, 3);

/* ---- bounded growable buffer (curl dynbuf) --------------------------------------------------
 * Appends fail with CGE_ERR_INPUT_TOO_LONG once len would exceed max. data is NUL-terminated. */
struct cge_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};
void cge__buf_init(struct cge_buf *b, size_t max);
enum cge_status cge__buf_append(struct cge_buf *b, const void *p, size_t n);
enum cge_status cge__buf_printf(struct cge_buf *b, const char *fmt, ...) CGE_PRINTF(2, 3);
void cge__buf_reset(struct cge_buf *b);
void cge__buf_free(struct cge_buf *b);

/* ---- files and time ---------------------------------------------------------------------------
 * cge__read_file reads a whole file (at most max_len bytes, else CGE_ERR_INPUT_TOO_LONG) into a
 * NUL-terminated buffer owned by the caller (cge__free). */
enum cge_status cge__read_file(const char *path, size_t max_len, char **out, size_t *out_len);
int cge__file_exists(const char *path);
/* Joins a directory and a name into buf; CGE_ERR_INVALID_VALUE if it does not fit. */
enum cge_status cge__path_join(char *buf, size_t cap, const char *dir, const char *name);
int64_t cge__now_us(void);

/* ---- JSON (cJSON) helpers ---------------------------------------------------------------------
 * Parses a JSON file (max 64 MiB) into *out (free with cJSON_Delete). */
struct cJSON;
enum cge_status cge__json_read_file(const char *path, struct cJSON **out);

#endif /* CGE_CORE_H */
