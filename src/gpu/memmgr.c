/*
 * memmgr.c: the GPU memory manager (see memmgr.h): limit, size-class pool, figures,
 * defragmentation by releasing the pool. Plain C: the device is reached only through the
 * struct cge_gpu_dev table, so the policy is tested on the simulated device of simdev.c.
 *
 * Bookkeeping: one block record per buffer held from the device, either in the live table (a
 * chained hash on the pointer, so release is O(1)) or on its class's pool list (LIFO: the
 * buffer freed last is the one most likely still in cache and the same shape as the next
 * request of a steady-state forward).
 */
#include "gpu/memmgr.h"
#include "core/core.h"

#include <pthread.h>
#include <string.h>

#define MM_MIN_CLASS  256
#define MM_LARGE      ((size_t)64 << 20) /* above: 2 MiB steps, one best-fit list */
#define MM_LARGE_STEP ((size_t)2 << 20)
#define MM_N_CLASSES  73 /* index 0: 256 B; then 4 per power of two up to 64 MiB */

struct mm_block {
    void *p;
    size_t size; /* class size, as allocated from the device */
    struct mm_block *next;
};

struct cge_gpu_mm {
    struct cge_gpu_dev dev;
    struct cge_gpu_mm_params par;
    pthread_mutex_t mu;
    struct mm_block **live;              /* hash buckets on the pointer */
    size_t n_buckets;                    /* a power of two */
    struct mm_block *pool[MM_N_CLASSES]; /* LIFO lists of the small classes */
    struct mm_block *large;              /* pooled buffers over MM_LARGE, any size */
    struct cge_gpu_mm_stats st;          /* figures, kept current under mu */
};

/* ---- size classes ------------------------------------------------------------------------------ */
static int floor_log2(size_t n) {
    int k = 0;
    while (n >>= 1)
        k++;
    return k;
}

/* Multiples of 256 bytes (what cudaMalloc aligns to); up to 64 MiB, four classes per power of
 * two (at most 25% waste past 1 KiB: transient activations of every shape share few classes); above, 2 MiB steps (at most 3%: these are mostly weights,
 * held for the model's life, where a quarter lost would be gigabytes). */
size_t cge__gpu_mm_class_size(size_t bytes) {
    if (bytes <= MM_MIN_CLASS) return MM_MIN_CLASS;
    if (bytes > ((size_t)1 << 62)) return 0; /* no class: refused by the limit */
    if (bytes > MM_LARGE) return (bytes + MM_LARGE_STEP - 1) / MM_LARGE_STEP * MM_LARGE_STEP;
    int k = floor_log2(bytes - 1); /* 2^k < bytes <= 2^(k+1) */
    size_t step = (size_t)1 << (k - 2);
    if (step < MM_MIN_CLASS) step = MM_MIN_CLASS; /* cudaMalloc's granularity: no finer */
    return (bytes + step - 1) / step * step;
}

static int class_index(size_t c) {
    if (c <= MM_MIN_CLASS) return 0;
    int k = floor_log2(c - 1);
    return 4 * (k - 8) + (int)(c >> (k - 2)) - 4;
}

/* ---- the live table ------------------------------------------------------------------------------ */
static size_t hash_ptr(const struct cge_gpu_mm *mm, const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (mm->n_buckets - 1);
}

static int live_grow(struct cge_gpu_mm *mm) {
    size_t nb = mm->n_buckets * 2;
    struct mm_block **b = cge__calloc(nb, sizeof(*b));
    if (!b) return -1; /* keep the old table: only slower */
    struct mm_block **old = mm->live;
    size_t n_old = mm->n_buckets;
    mm->live = b;
    mm->n_buckets = nb;
    for (size_t i = 0; i < n_old; i++) {
        struct mm_block *e = old[i];
        while (e) {
            struct mm_block *next = e->next;
            size_t h = hash_ptr(mm, e->p);
            e->next = b[h];
            b[h] = e;
            e = next;
        }
    }
    cge__free(old);
    return 0;
}

static void live_insert(struct cge_gpu_mm *mm, struct mm_block *e) {
    if ((size_t)mm->st.n_live >= mm->n_buckets) live_grow(mm);
    size_t h = hash_ptr(mm, e->p);
    e->next = mm->live[h];
    mm->live[h] = e;
    mm->st.n_live++;
}

static struct mm_block *live_remove(struct cge_gpu_mm *mm, const void *p) {
    struct mm_block **pp = &mm->live[hash_ptr(mm, p)];
    while (*pp) {
        struct mm_block *e = *pp;
        if (e->p == p) {
            *pp = e->next;
            mm->st.n_live--;
            return e;
        }
        pp = &e->next;
    }
    return NULL;
}

/* ---- figures --------------------------------------------------------------------------------- */
static void note_sizes(struct cge_gpu_mm *mm) {
    struct cge_gpu_mm_stats *st = &mm->st;
    st->reserved = st->used + st->pooled;
    st->available = st->limit > st->used ? st->limit - st->used : 0;
    if (st->used > st->peak_used) st->peak_used = st->used;
    if (st->reserved > st->peak_reserved) st->peak_reserved = st->reserved;
    st->fragmentation = st->reserved ? (double)st->pooled / (double)st->reserved : 0.0;
}

/* ---- pool release (the defragmentation) ----------------------------------------------------- */
static size_t release_list(struct cge_gpu_mm *mm, struct mm_block **list, size_t want) {
    size_t got = 0;
    while (*list && got < want) {
        struct mm_block *e = *list;
        *list = e->next;
        mm->dev.free(mm->dev.ctx, e->p, e->size);
        mm->st.n_dev_free++;
        mm->st.pooled -= e->size;
        got += e->size;
        cge__free(e);
    }
    return got;
}

/* Gives pooled buffers back to the device, largest classes first, until `want` bytes are
 * released (SIZE_MAX: all). Returns the bytes released. */
static size_t pool_release(struct cge_gpu_mm *mm, size_t want) {
    size_t got = release_list(mm, &mm->large, want);
    for (int c = MM_N_CLASSES - 1; c >= 0 && got < want; c--)
        got += release_list(mm, &mm->pool[c], want - got);
    if (got) {
        mm->st.n_defrag++;
        note_sizes(mm);
    }
    return got;
}

/* After a release: defragment when idle pooled memory dominates what is held. */
static void maybe_defrag(struct cge_gpu_mm *mm) {
    const struct cge_gpu_mm_stats *st = &mm->st;
    if (st->pooled >= mm->par.defrag_min && st->fragmentation > mm->par.defrag_threshold)
        pool_release(mm, SIZE_MAX);
}

/* ---- the API ----------------------------------------------------------------------------------- */
struct cge_gpu_mm_params cge__gpu_mm_default_params(void) {
    struct cge_gpu_mm_params p = {
        .limit = (size_t)16 << 30, .defrag_threshold = 0.5, .defrag_min = (size_t)4 << 30};
    return p;
}

enum cge_status cge__gpu_mm_new(const struct cge_gpu_dev *dev, const struct cge_gpu_mm_params *p,
                                struct cge_gpu_mm **out) {
    *out = NULL;
    if (!dev || !dev->alloc || !dev->free)
        return cge__err(CGE_ERR_INVALID_VALUE, "gpu memory manager: no device allocator");
    struct cge_gpu_mm *mm = cge__calloc(1, sizeof(*mm));
    if (!mm) return cge__err(CGE_ERR_NOMEM, "gpu memory manager: out of host memory");
    mm->dev = *dev;
    mm->par = p ? *p : cge__gpu_mm_default_params();
    if (mm->par.limit == 0) mm->par.limit = cge__gpu_mm_default_params().limit;
    mm->n_buckets = 64;
    mm->live = cge__calloc(mm->n_buckets, sizeof(*mm->live));
    if (!mm->live) {
        cge__free(mm);
        return cge__err(CGE_ERR_NOMEM, "gpu memory manager: out of host memory");
    }
    pthread_mutex_init(&mm->mu, NULL);
    mm->st.limit = mm->par.limit;
    note_sizes(mm);
    *out = mm;
    return CGE_OK;
}

void cge__gpu_mm_free(struct cge_gpu_mm *mm) {
    if (!mm) return;
    pool_release(mm, SIZE_MAX);
    if (mm->st.n_live)
        cge__log(CGE_LOG_WARN, "gpu memory manager (%s): %d buffers (%zu bytes) still live at exit",
                 mm->dev.name ? mm->dev.name : "?", mm->st.n_live, mm->st.used);
    for (size_t i = 0; i < mm->n_buckets; i++) {
        struct mm_block *e = mm->live[i];
        while (e) {
            struct mm_block *next = e->next;
            mm->dev.free(mm->dev.ctx, e->p, e->size);
            cge__free(e);
            e = next;
        }
    }
    cge__free(mm->live);
    pthread_mutex_destroy(&mm->mu);
    cge__free(mm);
}

/* A pooled buffer for class c: the newest of its class, or for a large class the smallest
 * pooled one that holds it with at most 1/8 to spare and fits in `room`. NULL when none. */
static struct mm_block *pool_take(struct cge_gpu_mm *mm, size_t c, size_t room) {
    struct mm_block **pp;
    if (c <= MM_LARGE) {
        pp = &mm->pool[class_index(c)];
    } else {
        pp = NULL;
        for (struct mm_block **q = &mm->large; *q; q = &(*q)->next)
            if ((*q)->size >= c && (*q)->size - c <= c / 8 && (*q)->size <= room &&
                (!pp || (*q)->size < (*pp)->size))
                pp = q;
        if (!pp) return NULL;
    }
    struct mm_block *e = *pp;
    if (e) *pp = e->next;
    return e;
}

static enum cge_status refuse(struct cge_gpu_mm *mm, enum cge_status s, size_t bytes, size_t c,
                              const char *why) {
    mm->st.n_failed++;
    return cge__err(s,
                    "gpu memory (%s): cannot allocate %zu bytes (class %zu): %s; %zu bytes in "
                    "use, %zu pooled, limit %zu",
                    mm->dev.name ? mm->dev.name : "?", bytes, c, why, mm->st.used, mm->st.pooled,
                    mm->st.limit);
}

enum cge_status cge__gpu_mm_alloc(struct cge_gpu_mm *mm, size_t bytes, void **out) {
    *out = NULL;
    size_t c = cge__gpu_mm_class_size(bytes ? bytes : 1);
    pthread_mutex_lock(&mm->mu);
    enum cge_status s = CGE_OK;
    struct mm_block *e = NULL;
    if (c == 0 || c > mm->st.limit || mm->st.used > mm->st.limit - c) {
        s = refuse(mm, CGE_ERR_NOMEM, bytes, c, "over the device memory limit");
        goto done;
    }
    e = pool_take(mm, c, mm->st.limit - mm->st.used);
    if (e) { /* reuse */
        mm->st.pooled -= e->size;
        mm->st.n_reused++;
    } else {
        e = cge__malloc(sizeof(*e));
        if (!e) {
            s = refuse(mm, CGE_ERR_NOMEM, bytes, c, "out of host memory");
            goto done;
        }
        /* within the limit counting the pool too: release other classes to make room */
        if (mm->st.reserved > mm->st.limit - c)
            pool_release(mm, mm->st.reserved - (mm->st.limit - c));
        s = mm->dev.alloc(mm->dev.ctx, c, &e->p);
        mm->st.n_dev_alloc++;
        if (s == CGE_ERR_NOMEM && mm->st.pooled) { /* the device is full or fragmented */
            pool_release(mm, SIZE_MAX);
            s = mm->dev.alloc(mm->dev.ctx, c, &e->p);
            mm->st.n_dev_alloc++;
        }
        if (s != CGE_OK) {
            cge__free(e);
            e = NULL;
            s = refuse(mm, s, bytes, c,
                       s == CGE_ERR_NOMEM ? "the device is out of memory" : "device error");
            goto done;
        }
        e->size = c;
    }
    mm->st.used += e->size;
    mm->st.n_alloc++;
    live_insert(mm, e);
    note_sizes(mm);
    *out = e->p;
done:
    pthread_mutex_unlock(&mm->mu);
    return s;
}

void cge__gpu_mm_release(struct cge_gpu_mm *mm, void *p) {
    if (!p) return;
    pthread_mutex_lock(&mm->mu);
    struct mm_block *e = live_remove(mm, p);
    if (!e) {
        pthread_mutex_unlock(&mm->mu);
        cge__log(CGE_LOG_WARN, "gpu memory manager: release of unknown pointer %p ignored", p);
        return;
    }
    struct mm_block **list = e->size > MM_LARGE ? &mm->large : &mm->pool[class_index(e->size)];
    e->next = *list;
    *list = e;
    mm->st.used -= e->size;
    mm->st.pooled += e->size;
    note_sizes(mm);
    maybe_defrag(mm);
    pthread_mutex_unlock(&mm->mu);
}

size_t cge__gpu_mm_defrag(struct cge_gpu_mm *mm) {
    pthread_mutex_lock(&mm->mu);
    size_t n = pool_release(mm, SIZE_MAX);
    pthread_mutex_unlock(&mm->mu);
    return n;
}

void cge__gpu_mm_stats(struct cge_gpu_mm *mm, struct cge_gpu_mm_stats *st) {
    pthread_mutex_lock(&mm->mu);
    *st = mm->st;
    pthread_mutex_unlock(&mm->mu);
}
