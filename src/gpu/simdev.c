/*
 * simdev.c: a simulated device allocator for the memory manager's tests (see memmgr.h).
 *
 * Key decision: model the one property of device memory the manager's policy is about, that
 * a fixed address space fragments: a first-fit allocator over [0, capacity) in 256-byte units
 * with a sorted list of free extents, coalesced on free. A large request fails when no single
 * extent holds it even if the total free would. Pointers are fake (base + offset) and are never
 * dereferenced; failures can be injected after k allocations.
 */
#include "core/core.h"
#include "gpu/memmgr.h"

#include <pthread.h>

#define SIM_UNIT 256
#define SIM_BASE ((uintptr_t)1 << 40) /* fake device addresses start here */

struct sim_extent { /* a free range [off, off + len) */
    size_t off, len;
    struct sim_extent *next; /* sorted by off */
};

struct cge_gpu_sim {
    pthread_mutex_t mu;
    size_t capacity, used;
    struct sim_extent *free_list;
    long fail_after; /* < 0: off */
    enum cge_status fail_status;
    long n_alloc, n_free, n_failed;
};

struct cge_gpu_sim *cge__gpu_sim_new(size_t capacity) {
    struct cge_gpu_sim *s = cge__calloc(1, sizeof(*s));
    struct sim_extent *e = cge__malloc(sizeof(*e));
    if (!s || !e) {
        cge__free(s);
        cge__free(e);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->capacity = capacity / SIM_UNIT * SIM_UNIT;
    e->off = 0;
    e->len = s->capacity;
    e->next = NULL;
    s->free_list = e;
    s->fail_after = -1;
    return s;
}

void cge__gpu_sim_free(struct cge_gpu_sim *s) {
    if (!s) return;
    struct sim_extent *e = s->free_list;
    while (e) {
        struct sim_extent *next = e->next;
        cge__free(e);
        e = next;
    }
    pthread_mutex_destroy(&s->mu);
    cge__free(s);
}

static enum cge_status sim_alloc(void *ctx, size_t bytes, void **out) {
    struct cge_gpu_sim *s = ctx;
    size_t len = (bytes + SIM_UNIT - 1) / SIM_UNIT * SIM_UNIT;
    enum cge_status st = CGE_ERR_NOMEM;
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->fail_after == 0) {
        st = s->fail_status;
        goto done;
    }
    if (s->fail_after > 0) s->fail_after--;
    for (struct sim_extent **pp = &s->free_list; *pp; pp = &(*pp)->next) {
        struct sim_extent *e = *pp;
        if (e->len < len) continue;
        *out = (void *)(SIM_BASE + e->off);
        e->off += len;
        e->len -= len;
        if (e->len == 0) {
            *pp = e->next;
            cge__free(e);
        }
        s->used += len;
        st = CGE_OK;
        break;
    }
done:
    if (st == CGE_OK)
        s->n_alloc++;
    else
        s->n_failed++;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static void sim_free(void *ctx, void *p, size_t bytes) {
    struct cge_gpu_sim *s = ctx;
    size_t off = (size_t)((uintptr_t)p - SIM_BASE);
    size_t len = (bytes + SIM_UNIT - 1) / SIM_UNIT * SIM_UNIT;
    pthread_mutex_lock(&s->mu);
    struct sim_extent *prev = NULL, *next = s->free_list;
    while (next && next->off < off) {
        prev = next;
        next = next->next;
    }
    if (prev && prev->off + prev->len == off) { /* coalesce with the extent below */
        prev->len += len;
        if (next && prev->off + prev->len == next->off) {
            prev->len += next->len;
            prev->next = next->next;
            cge__free(next);
        }
    } else if (next && off + len == next->off) { /* ... or above */
        next->off = off;
        next->len += len;
    } else {
        struct sim_extent *e = cge__malloc(sizeof(*e));
        if (e) { /* on host OOM the range is lost to the simulation: harmless in a test */
            e->off = off;
            e->len = len;
            e->next = next;
            if (prev)
                prev->next = e;
            else
                s->free_list = e;
        }
    }
    s->used -= len;
    s->n_free++;
    pthread_mutex_unlock(&s->mu);
}

struct cge_gpu_dev cge__gpu_sim_dev(struct cge_gpu_sim *s) {
    struct cge_gpu_dev d = {.name = "sim", .ctx = s, .alloc = sim_alloc, .free = sim_free};
    return d;
}

void cge__gpu_sim_fail_after(struct cge_gpu_sim *s, long k, enum cge_status status) {
    pthread_mutex_lock(&s->mu);
    s->fail_after = k < 0 ? -1 : k;
    s->fail_status = status;
    pthread_mutex_unlock(&s->mu);
}

void cge__gpu_sim_stats(struct cge_gpu_sim *s, struct cge_gpu_sim_stats *st) {
    pthread_mutex_lock(&s->mu);
    st->capacity = s->capacity;
    st->used = s->used;
    st->largest_free = 0;
    st->n_free_extents = 0;
    for (struct sim_extent *e = s->free_list; e; e = e->next) {
        if (e->len > st->largest_free) st->largest_free = e->len;
        st->n_free_extents++;
    }
    st->n_alloc = s->n_alloc;
    st->n_free = s->n_free;
    st->n_failed = s->n_failed;
    pthread_mutex_unlock(&s->mu);
}
