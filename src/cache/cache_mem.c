/*
 * cache_mem.c: the memory tier: sharded hash tables with LRU, LFU, TTL-LRU and ARC eviction.
 *
 * Key decision: the key's first hash picks one of N shards and each shard is a complete,
 * independent cache (its own mutex, hash chains, policy lists and a 1/N share of the limits), so
 * threads contend only when they touch the same shard, and ARC runs per shard exactly as in the
 * paper. A hit takes the shard's lock, moves the entry in its policy order (list splice, or an
 * O(log n) sift for LFU's heap) and copies the value out: no allocation. With n_shards = 1 the
 * order is global, which is what the hand-worked tests check.
 *
 * Policies:
 *  - LRU and TTL-LRU: one doubly linked list, most recent at the head. TTL-LRU also treats an
 *    entry older than ttl (from its creation, by the injected clock) as absent and drops it.
 *  - LFU: a binary min-heap on (access count, last access tick): the victim is the least
 *    frequently used entry, the least recently used among equals.
 *  - ARC (Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003):
 *    resident lists T1 (seen once) and T2 (seen twice or more), ghost lists B1 and B2 that keep
 *    only keys, and the target size p of T1, adapted on ghost hits with the paper's deltas
 *    (integer division). The cache is look-aside, so the paper's "request" is split: a get hit
 *    is case I; a put is case I (resident), II (in B1), III (in B2) or IV (new). The byte limit
 *    evicts with REPLACE as well, so ghosts stay consistent with the lists.
 */
#include "cache/cache_internal.h"
#include "core/core.h"

#include <pthread.h>
#include <string.h>

enum { L_T1 = 0, L_T2 = 1, L_B1 = 2, L_B2 = 3, L_NONE = 255 };

struct ent {
    uint64_t h1, h2, clen;         /* the key */
    struct ent *hnext;             /* hash chain */
    struct ent *prev, *next;       /* policy list: prev is toward the head (MRU) */
    int64_t created_us;            /* first put */
    int64_t last_us;               /* last hit or put */
    uint64_t n_access;             /* puts + hits */
    uint64_t tick;                 /* LFU tie-break: shard-local time of the last access */
    size_t heap_idx;               /* LFU: position in the heap */
    size_t bytes;                  /* memory charged (0 for a ghost) */
    uint32_t present;              /* slot presence mask */
    uint32_t n_slot;               /* slot floats stored after the fused embedding */
    uint8_t list;                  /* L_T1.. (LRU/TTL use L_T1; LFU uses L_NONE) */
    struct cge_fused_embedding *val; /* value (+ n_slot floats after it); NULL for a ghost */
};

struct list {
    struct ent *head, *tail; /* head: most recent */
    size_t n;
};

struct shard {
    _Alignas(64) pthread_mutex_t mu;
    struct ent **tab;  /* hash buckets (by h2) */
    size_t n_buckets;  /* power of two */
    size_t n_tab;      /* entries in tab, ghosts included */
    struct list l[4];  /* LRU/TTL: l[L_T1]; ARC: T1, T2, B1, B2 */
    struct ent **heap; /* LFU */
    size_t heap_n, heap_cap;
    uint64_t tick;      /* LFU access clock */
    uint64_t load_tick; /* LFU: warm-start entries count down from here (older than any access) */
    uint64_t p;         /* ARC: target size of T1 */
    uint64_t cap_n, cap_bytes;
    uint64_t n_res, bytes;
    uint64_t hits, misses, evictions, expirations;
};

struct cge__mem {
    enum cge_cache_policy policy;
    int64_t ttl_us;
    unsigned n_shards; /* power of two */
    struct shard *sh;
};

/* ==== Lists, hash chains, heap ================================================================ */

static void list_unlink(struct list *l, struct ent *e) {
    if (e->prev) e->prev->next = e->next;
    else l->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else l->tail = e->prev;
    e->prev = e->next = NULL;
    l->n--;
}

static void list_push_front(struct list *l, struct ent *e) {
    e->prev = NULL;
    e->next = l->head;
    if (l->head) l->head->prev = e;
    else l->tail = e;
    l->head = e;
    l->n++;
}

static void list_push_back(struct list *l, struct ent *e) {
    e->next = NULL;
    e->prev = l->tail;
    if (l->tail) l->tail->next = e;
    else l->head = e;
    l->tail = e;
    l->n++;
}

/* The bucket: both hashes mixed, high bits of a multiplicative hash. The shard is picked by
 * h1's low bits, so those bits alone would leave most buckets of a shard unused. */
static size_t bucket_of(uint64_t h1, uint64_t h2, size_t n_buckets) {
    uint64_t x = (h2 ^ (h1 >> 23) ^ (h1 << 41)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & (n_buckets - 1);
}

static struct ent *tab_find(const struct shard *s, const struct cge_cache_key *k) {
    struct ent *e = s->tab[bucket_of(k->h1, k->h2, s->n_buckets)];
    while (e && !(e->h1 == k->h1 && e->h2 == k->h2 && e->clen == k->content_len)) e = e->hnext;
    return e;
}

static void tab_remove(struct shard *s, struct ent *e) {
    struct ent **pp = &s->tab[bucket_of(e->h1, e->h2, s->n_buckets)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    s->n_tab--;
}

/* Inserts e; grows the table (doubling) past half full, so that a lookup mostly reads one
 * entry (each probe is a likely cache miss: entries are separate allocations). */
static int tab_insert(struct shard *s, struct ent *e) {
    if (2 * (s->n_tab + 1) > s->n_buckets) {
        size_t nb = s->n_buckets * 2;
        struct ent **t = cge__calloc(nb, sizeof *t);
        if (t) {
            for (size_t i = 0; i < s->n_buckets; i++) {
                struct ent *x = s->tab[i];
                while (x) {
                    struct ent *nx = x->hnext;
                    size_t b = bucket_of(x->h1, x->h2, nb);
                    x->hnext = t[b];
                    t[b] = x;
                    x = nx;
                }
            }
            cge__free(s->tab);
            s->tab = t;
            s->n_buckets = nb;
        } /* else: keep the old table; chains just get longer */
    }
    size_t b = bucket_of(e->h1, e->h2, s->n_buckets);
    e->hnext = s->tab[b];
    s->tab[b] = e;
    s->n_tab++;
    return 0;
}

static int heap_less(const struct ent *a, const struct ent *b) {
    return a->n_access < b->n_access || (a->n_access == b->n_access && a->tick < b->tick);
}

static void heap_set(struct shard *s, size_t i, struct ent *e) {
    s->heap[i] = e;
    e->heap_idx = i;
}

static void heap_up(struct shard *s, size_t i) {
    struct ent *e = s->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(e, s->heap[p])) break;
        heap_set(s, i, s->heap[p]);
        i = p;
    }
    heap_set(s, i, e);
}

static void heap_down(struct shard *s, size_t i) {
    struct ent *e = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_n) break;
        if (c + 1 < s->heap_n && heap_less(s->heap[c + 1], s->heap[c])) c++;
        if (!heap_less(s->heap[c], e)) break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, e);
}

static int heap_push(struct shard *s, struct ent *e) {
    if (s->heap_n == s->heap_cap) {
        size_t nc = s->heap_cap ? s->heap_cap * 2 : 64;
        struct ent **h = cge__realloc(s->heap, nc * sizeof *h);
        if (!h) return -1;
        s->heap = h;
        s->heap_cap = nc;
    }
    heap_set(s, s->heap_n++, e);
    heap_up(s, s->heap_n - 1);
    return 0;
}

static void heap_remove(struct shard *s, struct ent *e) {
    size_t i = e->heap_idx;
    struct ent *last = s->heap[--s->heap_n];
    if (i == s->heap_n) return;
    heap_set(s, i, last);
    heap_up(s, i);
    heap_down(s, last->heap_idx);
}

/* ==== Entries ================================================================================= */

static size_t val_size(uint32_t n_slot) {
    return sizeof(struct cge_fused_embedding) + (size_t)n_slot * sizeof(float);
}

static size_t ent_bytes(uint32_t n_slot) {
    return sizeof(struct ent) + val_size(n_slot);
}

static void val_fill(struct ent *e, const struct cge_fused_embedding *f, const float *slots,
                     uint32_t n_slot, uint32_t present) {
    memcpy(e->val, f, sizeof *f);
    if (n_slot) memcpy((float *)(e->val + 1), slots, (size_t)n_slot * sizeof(float));
    e->n_slot = n_slot;
    e->present = n_slot ? present : 0;
}

/* Drops an entry's value (it becomes a ghost or is about to be freed). */
static void ent_drop_value(struct shard *s, struct ent *e) {
    if (!e->val) return;
    cge__free(e->val);
    e->val = NULL;
    s->bytes -= e->bytes;
    s->n_res--;
    e->bytes = 0;
}

/* Unlinks an entry from everything and frees it. */
static void ent_delete(struct cge__mem *m, struct shard *s, struct ent *e) {
    if (m->policy == CGE_CACHE_LFU) {
        if (e->val) heap_remove(s, e);
    } else {
        list_unlink(&s->l[e->list], e);
    }
    tab_remove(s, e);
    ent_drop_value(s, e);
    cge__free(e);
}

/* ==== ARC ===================================================================================== */

/* The paper's REPLACE(x, p): demote the LRU page of T1 or T2 to its ghost list. */
static void arc_replace(struct shard *s, int x_in_b2) {
    size_t t1 = s->l[L_T1].n;
    struct ent *v;
    int to;
    if (t1 >= 1 && ((x_in_b2 && t1 == s->p) || t1 > s->p)) {
        v = s->l[L_T1].tail;
        to = L_B1;
    } else if (s->l[L_T2].n) {
        v = s->l[L_T2].tail;
        to = L_B2;
    } else if (t1) {
        v = s->l[L_T1].tail; /* T2 empty and |T1| <= p: still must make room */
        to = L_B1;
    } else {
        return;
    }
    list_unlink(&s->l[v->list], v);
    ent_drop_value(s, v);
    v->list = (uint8_t)to;
    list_push_front(&s->l[to], v);
    s->evictions++;
}

static void arc_delete_lru(struct cge__mem *m, struct shard *s, int which) {
    struct ent *v = s->l[which].tail;
    if (!v) return;
    if (v->val) s->evictions++;
    ent_delete(m, s, v);
}

/* ==== Policy operations ======================================================================= */

/* A hit (or a put over a resident entry): case I for ARC. */
static void touch(struct cge__mem *m, struct shard *s, struct ent *e, int64_t now) {
    e->n_access++;
    e->last_us = now;
    switch (m->policy) {
    case CGE_CACHE_LRU:
    case CGE_CACHE_TTL_LRU:
        list_unlink(&s->l[L_T1], e);
        list_push_front(&s->l[L_T1], e);
        break;
    case CGE_CACHE_LFU:
        e->tick = ++s->tick;
        heap_down(s, e->heap_idx);
        break;
    case CGE_CACHE_ARC:
        list_unlink(&s->l[e->list], e);
        e->list = L_T2;
        list_push_front(&s->l[L_T2], e);
        break;
    }
}

/* Evicts one resident entry (LRU, TTL-LRU, LFU). */
static void evict_one(struct cge__mem *m, struct shard *s) {
    struct ent *v = m->policy == CGE_CACHE_LFU ? (s->heap_n ? s->heap[0] : NULL)
                                               : s->l[L_T1].tail;
    if (!v) return;
    s->evictions++;
    ent_delete(m, s, v);
}

static struct shard *shard_of(struct cge__mem *m, const struct cge_cache_key *k) {
    return &m->sh[k->h1 & (m->n_shards - 1)];
}

static int expired(const struct cge__mem *m, const struct ent *e, int64_t now) {
    return m->policy == CGE_CACHE_TTL_LRU && m->ttl_us > 0 && now - e->created_us >= m->ttl_us;
}

/* ==== Interface =============================================================================== */

enum cge_status cge__mem_new(const struct cge_cache_params *p, struct cge__mem **out) {
    *out = NULL;
    unsigned n = 1;
    unsigned want = p->n_shards > 0 ? (unsigned)p->n_shards : 16;
    if (want > 4096) want = 4096;
    while (n < want) n *= 2;
    struct cge__mem *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "cache: memory tier");
    m->policy = p->policy;
    m->ttl_us = (int64_t)(p->ttl_seconds * 1e6);
    m->n_shards = n;
    m->sh = cge__malloc_aligned(n * sizeof *m->sh);
    if (!m->sh) {
        cge__free(m);
        return cge__err(CGE_ERR_NOMEM, "cache: %u shards", n);
    }
    memset(m->sh, 0, n * sizeof *m->sh);
    for (unsigned i = 0; i < n; i++) {
        struct shard *s = &m->sh[i];
        /* Split the limits evenly, giving the remainder to the first shards. */
        s->cap_n = p->max_entries / n + (i < p->max_entries % n);
        s->cap_bytes = p->max_bytes / n + (i < p->max_bytes % n);
        s->n_buckets = 16;
        s->tick = 1ull << 40;
        s->load_tick = 1ull << 40;
        pthread_mutex_init(&s->mu, NULL);
        s->tab = cge__calloc(s->n_buckets, sizeof *s->tab);
        if (!s->tab) {
            m->n_shards = i + 1;
            cge__mem_free(m);
            return cge__err(CGE_ERR_NOMEM, "cache: shard tables");
        }
    }
    *out = m;
    return CGE_OK;
}

void cge__mem_free(struct cge__mem *m) {
    if (!m) return;
    for (unsigned i = 0; i < m->n_shards; i++) {
        struct shard *s = &m->sh[i];
        for (size_t b = 0; s->tab && b < s->n_buckets; b++) {
            struct ent *e = s->tab[b];
            while (e) {
                struct ent *nx = e->hnext;
                cge__free(e->val);
                cge__free(e);
                e = nx;
            }
        }
        cge__free(s->tab);
        cge__free(s->heap);
        pthread_mutex_destroy(&s->mu);
    }
    cge__free_aligned(m->sh);
    cge__free(m);
}

int cge__mem_get(struct cge__mem *m, const struct cge_cache_key *k, int64_t now,
                 struct cge_fused_embedding *out, float *slots, uint32_t *present) {
    struct shard *s = shard_of(m, k);
    pthread_mutex_lock(&s->mu);
    struct ent *e = tab_find(s, k);
    if (!e || !e->val) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    if (expired(m, e, now)) {
        s->expirations++;
        ent_delete(m, s, e);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    touch(m, s, e, now);
    s->hits++;
    memcpy(out, e->val, sizeof *out);
    if (slots && e->n_slot) memcpy(slots, e->val + 1, (size_t)e->n_slot * sizeof(float));
    if (present) *present = e->present;
    pthread_mutex_unlock(&s->mu);
    return 1;
}

void cge__mem_count(struct cge__mem *m, const struct cge_cache_key *k, int hit) {
    struct shard *s = shard_of(m, k);
    pthread_mutex_lock(&s->mu);
    if (hit) s->hits++;
    else s->misses++;
    pthread_mutex_unlock(&s->mu);
}

/* Replaces a resident entry's value; returns -1 on allocation failure. */
static int replace_value(struct shard *s, struct ent *e, const struct cge_fused_embedding *f,
                         const float *slots, uint32_t n_slot, uint32_t present) {
    if (n_slot != e->n_slot) {
        struct cge_fused_embedding *v = cge__realloc(e->val, val_size(n_slot));
        if (!v) return -1;
        e->val = v;
        s->bytes = s->bytes - e->bytes + ent_bytes(n_slot);
        e->bytes = ent_bytes(n_slot);
    }
    val_fill(e, f, slots, n_slot, present);
    return 0;
}

int cge__mem_put(struct cge__mem *m, const struct cge_cache_key *k, int64_t now,
                 const struct cge_fused_embedding *f, const float *slots, uint32_t n_slot,
                 uint32_t present, int64_t created_us, uint64_t access_count, int load) {
    struct shard *s = shard_of(m, k);
    size_t nb = ent_bytes(n_slot);
    int rc = 1;
    pthread_mutex_lock(&s->mu);
    struct ent *e = tab_find(s, k);
    if (e && e->val) {
        if (load) goto out; /* a newer copy is already here */
        if (nb > s->cap_bytes) { /* can never fit: drop the stale copy too */
            ent_delete(m, s, e);
            rc = 0;
            goto out;
        }
        if (replace_value(s, e, f, slots, n_slot, present) != 0) {
            rc = -1;
            goto out;
        }
        e->created_us = created_us; /* a new value: TTL counts from now on */
        touch(m, s, e, now);
        goto enforce_bytes;
    }
    if (nb > s->cap_bytes || s->cap_n == 0) {
        rc = 0;
        goto out;
    }
    if (load && (s->n_res >= s->cap_n || s->bytes + nb > s->cap_bytes ||
                 (m->policy == CGE_CACHE_ARC && e))) {
        rc = 0;
        goto out;
    }

    /* Make room (ARC: cases II-IV decide; the others evict until the new entry fits). With only
     * the entry limit, ghosts exist only once the cache is full, so the n_res >= c guards are
     * the paper's algorithm; they matter after the byte limit or a remove left room. */
    int ghost_list = e ? e->list : -1;
    if (m->policy == CGE_CACHE_ARC && !load) {
        uint64_t c = s->cap_n;
        if (ghost_list == L_B1) {
            uint64_t d = s->l[L_B1].n >= s->l[L_B2].n ? 1 : s->l[L_B2].n / s->l[L_B1].n;
            s->p = s->p + d < c ? s->p + d : c;
            if (s->n_res >= c) arc_replace(s, 0);
        } else if (ghost_list == L_B2) {
            uint64_t d = s->l[L_B2].n >= s->l[L_B1].n ? 1 : s->l[L_B1].n / s->l[L_B2].n;
            s->p = s->p > d ? s->p - d : 0;
            if (s->n_res >= c) arc_replace(s, 1);
        } else {
            uint64_t l1 = s->l[L_T1].n + s->l[L_B1].n;
            uint64_t total = l1 + s->l[L_T2].n + s->l[L_B2].n;
            if (l1 >= c) {
                if (s->l[L_T1].n < c) {
                    arc_delete_lru(m, s, L_B1);
                    if (s->n_res >= c) arc_replace(s, 0);
                } else {
                    arc_delete_lru(m, s, L_T1);
                }
            } else if (total >= c) {
                if (total >= 2 * c) arc_delete_lru(m, s, L_B2);
                if (s->n_res >= c) arc_replace(s, 0);
            }
        }
    } else if (!load) {
        while (s->n_res && (s->n_res >= s->cap_n || s->bytes + nb > s->cap_bytes))
            evict_one(m, s);
    }

    struct cge_fused_embedding *v = cge__malloc(val_size(n_slot));
    if (!v) {
        rc = -1;
        goto out;
    }
    if (!e) {
        e = cge__calloc(1, sizeof *e);
        if (!e) {
            cge__free(v);
            rc = -1;
            goto out;
        }
        e->h1 = k->h1;
        e->h2 = k->h2;
        e->clen = k->content_len;
        e->created_us = created_us;
        e->n_access = access_count;
        tab_insert(s, e);
    } else { /* an ARC ghost coming back */
        list_unlink(&s->l[e->list], e);
        e->created_us = created_us;
        e->n_access += access_count;
    }
    e->val = v;
    e->bytes = nb;
    e->last_us = load ? created_us : now;
    val_fill(e, f, slots, n_slot, present);
    s->n_res++;
    s->bytes += nb;
    switch (m->policy) {
    case CGE_CACHE_LRU:
    case CGE_CACHE_TTL_LRU:
        e->list = L_T1;
        if (load) list_push_back(&s->l[L_T1], e);
        else list_push_front(&s->l[L_T1], e);
        break;
    case CGE_CACHE_LFU:
        e->list = L_NONE;
        e->tick = load ? --s->load_tick : ++s->tick;
        if (heap_push(s, e) != 0) {
            tab_remove(s, e);
            ent_drop_value(s, e);
            cge__free(e);
            rc = -1;
            goto out;
        }
        break;
    case CGE_CACHE_ARC:
        if (load) {
            e->list = L_T1;
            list_push_back(&s->l[L_T1], e);
        } else {
            e->list = ghost_list == L_B1 || ghost_list == L_B2 ? L_T2 : L_T1;
            list_push_front(&s->l[e->list], e);
        }
        break;
    }

enforce_bytes:
    while (s->bytes > s->cap_bytes && s->n_res > 0) {
        if (m->policy == CGE_CACHE_ARC) arc_replace(s, 0);
        else evict_one(m, s);
    }
    {
        /* e itself may have been evicted (and freed) by the loop above: look it up again. */
        const struct ent *x = tab_find(s, k);
        if (!x || !x->val) rc = 0;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int cge__mem_remove(struct cge__mem *m, const struct cge_cache_key *k) {
    struct shard *s = shard_of(m, k);
    pthread_mutex_lock(&s->mu);
    struct ent *e = tab_find(s, k);
    int was = e && e->val;
    if (e) ent_delete(m, s, e);
    pthread_mutex_unlock(&s->mu);
    return was;
}

int cge__mem_peek(struct cge__mem *m, const struct cge_cache_key *k,
                  struct cge_cache_entry_meta *out) {
    struct shard *s = shard_of(m, k);
    pthread_mutex_lock(&s->mu);
    struct ent *e = tab_find(s, k);
    int found = e && e->val;
    if (found) {
        out->created_us = e->created_us;
        out->last_access_us = e->last_us;
        out->access_count = e->n_access;
        out->bytes = e->bytes;
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

void cge__mem_stats(struct cge__mem *m, struct cge_cache_stats *out) {
    for (unsigned i = 0; i < m->n_shards; i++) {
        struct shard *s = &m->sh[i];
        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->entries += s->n_res;
        out->bytes += s->bytes;
        out->ghosts += s->n_tab - s->n_res;
        pthread_mutex_unlock(&s->mu);
    }
}
