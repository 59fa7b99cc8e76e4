/*
 * alloc.c: the one allocator of the library, with fault injection.
 *
 * Every allocation goes through cge__malloc & co. so that OOM tests can fail the k-th
 * allocation for every k (SQLite's faultsim) and check that each failure is a clean error.
 * The counters are atomics: cheap, and correct when tests run threads.
 */
#include "core/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long n_allocs;
static atomic_long fail_after = -1;

static int should_fail(void) {
    long k = atomic_fetch_add(&n_allocs, 1);
    long f = atomic_load(&fail_after);
    return f >= 0 && k >= f;
}

void cge__fail_alloc_after(long k) {
    atomic_store(&n_allocs, 0);
    atomic_store(&fail_after, k);
}

long cge__alloc_count(void) {
    return atomic_load(&n_allocs);
}

void *cge__malloc(size_t n) {
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *cge__calloc(size_t n, size_t size) {
    if (should_fail()) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *cge__realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void cge__free(void *p) {
    free(p);
}

char *cge__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = cge__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void *cge__malloc_aligned(size_t n) {
    if (should_fail()) return NULL;
    void *p = NULL;
    n = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
    return p;
}

void cge__free_aligned(void *p) {
    free(p);
}
