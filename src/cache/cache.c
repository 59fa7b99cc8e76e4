/*
 * cache.c: the embedding cache's public functions: the memory tier in front, the disk tier
 * behind it (read-through on a miss, write-behind on a put, warm start on open).
 *
 * Key decision: the tiers are independent. A put goes to memory under the shard lock, and, as an
 * encoded and checksummed record, to the write-behind queue; memory eviction never touches the
 * disk, and the disk's size bound never touches memory. So a hit costs what the memory tier
 * costs, and the only cross-tier path is a memory miss that finds its record on disk, which is
 * verified and promoted into memory.
 */
#include "cache/cache_internal.h"
#include "core/core.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

struct cge_cache {
    struct cge_cache_params p; /* path/ensemble_version point at the copies below */
    char *path;
    char *ensemble_version;
    int64_t ttl_us;
    struct cge__mem *mem;
    struct cge__disk *disk; /* NULL: memory only */
    atomic_uint_fast64_t disk_hits, puts;
    uint64_t warm_loaded;
    int corrupt_moved;
};

struct cge_cache_params cge_cache_default_params(void) {
    struct cge_cache_params p;
    memset(&p, 0, sizeof p);
    p.policy = CGE_CACHE_LRU;
    p.max_entries = 100000;
    p.max_bytes = 1ull << 30;
    p.ttl_seconds = 3600;
    p.n_shards = 16;
    p.disk_max_bytes = 2ull << 30;
    p.flush_interval_ms = 50;
    p.flush_batch = 512;
    p.warm_start = 1;
    p.durable = 1;
    return p;
}

void cge_cache_params_from_config(const struct cge_cache_config *cfg,
                                  const char *ensemble_version, struct cge_cache_params *out) {
    *out = cge_cache_default_params();
    out->policy = cfg->policy;
    if (cfg->max_entries > 0) out->max_entries = (uint64_t)cfg->max_entries;
    if (cfg->max_bytes > 0) out->max_bytes = (uint64_t)cfg->max_bytes;
    out->ttl_seconds = cfg->ttl_seconds > 0 ? (double)cfg->ttl_seconds : 0;
    out->path = cfg->path[0] ? cfg->path : NULL;
    out->ensemble_version = ensemble_version;
}

static int64_t now_us(const struct cge_cache *c) {
    return c->p.clock(c->p.clock_user);
}

static int expired_at(const struct cge_cache *c, int64_t created_us, int64_t now) {
    return c->p.policy == CGE_CACHE_TTL_LRU && c->ttl_us > 0 && now - created_us >= c->ttl_us;
}

/* ==== Warm start ============================================================================== */

struct warm {
    struct cge_cache *c;
    int64_t now;
    uint64_t loaded, refused;
    float *slots; /* scratch for slot vectors */
    int nomem;
};

static int warm_one(void *user, const struct cge__rec *r) {
    struct warm *w = user;
    struct cge_cache *c = w->c;
    if (expired_at(c, r->created_us, w->now)) return 1;
    if (r->n_slot_floats) cge__rec_copy_slots(r, w->slots);
    int rc = cge__mem_put(c->mem, &r->key, w->now, &r->fused, w->slots, r->n_slot_floats,
                          r->present, r->created_us, r->access_count, 1);
    if (rc < 0) {
        w->nomem = 1;
        return 0;
    }
    if (rc) w->loaded++;
    else w->refused++;
    /* Stop when memory is full, or after as many refusals (full shards) as it holds. */
    return w->loaded < c->p.max_entries && w->refused < c->p.max_entries;
}

static enum cge_status warm_start(struct cge_cache *c) {
    struct warm w = {.c = c, .now = now_us(c)};
    w.slots = cge__malloc((size_t)cge_total_dim() * sizeof(float));
    if (!w.slots) return cge__err(CGE_ERR_NOMEM, "cache warm start");
    enum cge_status st = cge__disk_scan(c->disk, warm_one, &w);
    cge__free(w.slots);
    if (w.nomem) return cge__err(CGE_ERR_NOMEM, "cache warm start");
    if (st == CGE_ERR_CACHE) {
        /* A bad record: the file is not what was written. Forget everything it gave us. */
        char why[512];
        snprintf(why, sizeof why, "%s", cge_errmsg());
        cge__mem_free(c->mem);
        c->mem = NULL;
        enum cge_status s2 = cge__mem_new(&c->p, &c->mem);
        if (s2 != CGE_OK) return s2;
        c->corrupt_moved = 1;
        c->warm_loaded = 0;
        return cge__disk_reset_corrupt(c->disk, why);
    }
    if (st != CGE_OK) return st;
    c->warm_loaded = w.loaded;
    return CGE_OK;
}

/* ==== Open / close ============================================================================ */

enum cge_status cge_cache_open(const struct cge_cache_params *p, struct cge_cache **out) {
    *out = NULL;
    if (!p) return cge__err(CGE_ERR_INVALID_VALUE, "cache: no params");
    if ((unsigned)p->policy > CGE_CACHE_ARC)
        return cge__err(CGE_ERR_INVALID_VALUE, "cache: policy %d", (int)p->policy);
    if (p->max_entries == 0 || p->max_bytes == 0)
        return cge__err(CGE_ERR_INVALID_VALUE, "cache: limits must be positive (%llu entries, "
                        "%llu bytes)", (unsigned long long)p->max_entries,
                        (unsigned long long)p->max_bytes);
    if (!(p->ttl_seconds >= 0 && p->ttl_seconds < 1e12))
        return cge__err(CGE_ERR_INVALID_VALUE, "cache: ttl_seconds %g", p->ttl_seconds);
    int disk = p->path && p->path[0];
    if (disk && p->disk_max_bytes < (1u << 20))
        return cge__err(CGE_ERR_INVALID_VALUE, "cache: disk_max_bytes %llu (at least 1 MiB)",
                        (unsigned long long)p->disk_max_bytes);
    struct cge_cache *c = cge__calloc(1, sizeof *c);
    if (!c) return cge__err(CGE_ERR_NOMEM, "cache");
    c->p = *p;
    if (!c->p.clock) c->p.clock = cge__cache_wall_us;
    c->ttl_us = (int64_t)(p->ttl_seconds * 1e6);
    c->ensemble_version = cge__strdup(p->ensemble_version ? p->ensemble_version : "");
    if (disk) {
        /* A folder (the configuration's cache.path) holds the file cache.mdb. */
        struct stat sb;
        char buf[4096];
        if (stat(p->path, &sb) == 0 && S_ISDIR(sb.st_mode) &&
            cge__path_join(buf, sizeof buf, p->path, "cache.mdb") == CGE_OK)
            c->path = cge__strdup(buf);
        else
            c->path = cge__strdup(p->path);
    }
    c->p.ensemble_version = c->ensemble_version;
    c->p.path = c->path;
    enum cge_status st = CGE_OK;
    if (!c->ensemble_version || (disk && !c->path)) st = cge__err(CGE_ERR_NOMEM, "cache");
    if (st == CGE_OK) st = cge__mem_new(&c->p, &c->mem);
    if (st == CGE_OK && disk) {
        st = cge__disk_open(&c->p, &c->disk, &c->corrupt_moved);
        if (st == CGE_OK && p->warm_start) st = warm_start(c);
        if (st == CGE_OK) st = cge__disk_start(c->disk);
    }
    if (st != CGE_OK) {
        cge_cache_close(c);
        return st;
    }
    *out = c;
    return CGE_OK;
}

void cge_cache_close(struct cge_cache *c) {
    if (!c) return;
    cge__disk_close(c->disk); /* drains the write-behind queue */
    cge__mem_free(c->mem);
    cge__free(c->path);
    cge__free(c->ensemble_version);
    cge__free(c);
}

/* ==== Get / put =============================================================================== */

int cge_cache_get(struct cge_cache *c, const struct cge_cache_key *key,
                  struct cge_fused_embedding *out, float *slots, uint32_t *present) {
    int64_t now = now_us(c);
    if (cge__mem_get(c->mem, key, now, out, slots, present)) return 1;
    if (c->disk) {
        struct cge__rec rec; /* 6 KB on the stack: the miss path allocates only for slots */
        struct cge__rec *r = &rec;
        float *tmp = NULL;
        if (cge__disk_get(c->disk, key, r, &tmp) && !expired_at(c, r->created_us, now)) {
            /* Promote into memory, then answer from the record itself (the promotion may not
             * keep it, e.g. when the entry is larger than the byte limit). */
            cge__mem_put(c->mem, key, now, &r->fused, tmp, r->n_slot_floats, r->present,
                         r->created_us, r->access_count + 1, 0);
            *out = r->fused;
            if (present) *present = r->n_slot_floats ? r->present : 0;
            if (slots && tmp) memcpy(slots, tmp, (size_t)r->n_slot_floats * sizeof(float));
            cge__free(tmp);
            atomic_fetch_add(&c->disk_hits, 1);
            cge__mem_count(c->mem, key, 1);
            return 1;
        }
        cge__free(tmp);
    }
    cge__mem_count(c->mem, key, 0);
    return 0;
}

enum cge_status cge_cache_put(struct cge_cache *c, const struct cge_cache_key *key,
                              const struct cge_fused_embedding *f, const float *slots,
                              uint32_t present) {
    enum cge_status st = cge_fused_validate(f);
    if (st != CGE_OK) return st;
    uint32_t ns = slots ? (uint32_t)cge_total_dim() : 0;
    int64_t now = now_us(c);
    if (cge__mem_put(c->mem, key, now, f, slots, ns, present, now, 1, 0) < 0)
        return cge__err(CGE_ERR_NOMEM, "cache put");
    if (c->disk) {
        struct cge__rec r;
        memset(&r, 0, sizeof r);
        r.key = *key;
        r.seq = cge__disk_next_seq(c->disk);
        r.created_us = now;
        r.last_us = now;
        r.access_count = 1;
        r.present = ns ? present : 0;
        r.n_slot_floats = ns;
        r.fused = *f;
        size_t len = cge__rec_size(ns);
        unsigned char *buf = cge__malloc(len);
        if (!buf) return cge__err(CGE_ERR_NOMEM, "cache put: record of %zu bytes", len);
        cge__rec_encode(buf, &r, slots);
        cge__disk_enqueue(c->disk, key, buf, len);
    }
    atomic_fetch_add(&c->puts, 1);
    return CGE_OK;
}

int cge_cache_remove(struct cge_cache *c, const struct cge_cache_key *key) {
    int was = cge__mem_remove(c->mem, key);
    if (c->disk) cge__disk_enqueue(c->disk, key, NULL, 0);
    return was;
}

enum cge_status cge_cache_flush(struct cge_cache *c) {
    return c->disk ? cge__disk_flush(c->disk) : CGE_OK;
}

int cge_cache_peek(struct cge_cache *c, const struct cge_cache_key *key,
                   struct cge_cache_entry_meta *out) {
    return cge__mem_peek(c->mem, key, out);
}

void cge_cache_get_stats(struct cge_cache *c, struct cge_cache_stats *out) {
    memset(out, 0, sizeof *out);
    cge__mem_stats(c->mem, out);
    if (c->disk) cge__disk_stats(c->disk, out);
    out->disk_hits = atomic_load(&c->disk_hits);
    out->puts = atomic_load(&c->puts);
    out->warm_loaded = c->warm_loaded;
    out->corrupt_moved = c->corrupt_moved;
    uint64_t n = out->hits + out->misses;
    out->hit_rate = n ? (double)out->hits / (double)n : 0.0;
}
