/*
 * engine.c: the engine: one input, the ensemble's slots, one fused vector.
 *
 * cge_engine_embed takes a batch of inputs and, for each slot in turn, embeds every input that
 * slot takes in one cge_model_embed call (which batches texts by length), then fuses the slot
 * vectors of all inputs in one FuseMoE forward. A full result is cached (memory, optionally
 * LMDB) under a key of the request and the ensemble's identity, so a repeated input costs one
 * lookup.
 *
 * Key design decision: slot models live behind reference-counted handles (struct handle). A
 * call takes a reference for as long as it uses a slot; a hot swap publishes a new handle under
 * the slot's lock and drops the engine's reference to the old one, which is freed by its last
 * user. So calls never see a half-swapped slot, and a swap never waits for calls to finish.
 * The engine's identity (part of every cache key) includes each slot's version, so a swapped
 * slot never serves vectors of the old model from the cache. Beside the full entry, a per-slot
 * entry (keyed without the versions) keeps each slot's vector with the identity of the model
 * that made it: after one slot changes, a repeated input recomputes that slot only (a partial
 * hit) and fuses again.
 *
 * The ensemble's conventions (tests/fixtures/ensemble/README.md §2-3) are applied here, once:
 * routing by modality, E2's query prefix, E3 and E12 take the instruction (E3 always reads
 * stripped text), E10's encoder by role; every other slot ignores role and instruction.
 *
 * Thread safety: cge_engine_embed, _get_stats, _health, _swap, _unload and _tokenize may be
 * called from any number of threads at once; _close must be the last call.
 */
#include "runtime/runtime.h"

#include "cache/cache.h"
#include "runtime/batcher.h"
#include "core/core.h"
#include "fusion/fusemoe.h"
#include "io/weights.h"
#include "net/redis.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define LAT_RING 1024 /* per-slot latencies kept for the P95 */
/* The fusion's queue, after the slots' queues, so that the fusion batches across calls too (at
 * production size one fused input costs 8 ms alone and about 1 ms in a batch of 32). It never
 * waits for company: its inputs arrive in waves, as slot batches finish. */
#define FUSION_Q CGE_N_SLOTS

/* ==== slot handles ============================================================================== */

/* A loaded slot: immutable after publication; freed by its last user. */
struct handle {
    int refs;                  /* guarded by the slot's mu */
    struct cge_model *doc;     /* the model (E10: the document encoder) */
    struct cge_model *query;   /* E10: the query encoder; NULL elsewhere */
    uint64_t version;
    int64_t resident_bytes;
};

struct slot {
    int configured;
    struct cge__slot_spec spec;     /* folders and dtype (a swap replaces it) */
    int fusion_dim;                 /* the fusion's slot_dims[s] */
    unsigned routes;                /* modalities routed here (slot table) */
    char query_prefix[512];         /* E2 */
    pthread_mutex_t mu;             /* guards everything below */
    pthread_cond_t cv;              /* a load finished */
    pthread_mutex_t swap_mu;        /* swaps of this slot run one at a time */
    struct handle *cur;
    enum cge_slot_load_state state;
    uint64_t version;               /* of the last published handle */
    uint64_t ident;                 /* slot_identity() of the published model: per-slot cache */
    uint64_t last_used;             /* e->tick at its last use */
    int64_t load_ms;
    char err[200];
    /* stats */
    uint64_t requests, failures;
    double lat_sum_ms;
    float lat[LAT_RING];
    uint64_t n_lat;
};

struct cge_engine {
    struct cge__ensemble_spec spec;
    struct cge_engine_params p;
    char backend[32];               /* p.backend, copied ("" = the CPU) */
    struct slot slots[CGE_N_SLOTS];
    struct cge_fusion *fusion;
    const struct cge_fusemoe_config *fc;
    struct cge_cache *cache;        /* NULL: no cache */
    struct cge__batcher *batcher;   /* per-slot queues; NULL: calls run their own batches */
    /* Fusion scratch kept between calls (a new context costs its allocations and first-touch
     * page faults on every call); at most 8 idle ones, guarded by mu. */
    struct cge_fusion_ctx *ctx_pool[8];
    int n_ctx;
    pthread_mutex_t load_mu;        /* guards n_loading */
    pthread_cond_t load_cv;
    int n_loading;                  /* loads running (at most max_concurrent_loads) */
    int64_t reserved;               /* bytes of loads running (guarded by mu) */
    atomic_ullong tick;             /* use counter: each slot's last use, for LRU unloading */
    pthread_mutex_t mu;             /* guards identity, stats below */
    char identity[64];              /* hex hash of the ensemble's identity; cache key part */
    char slots_identity[300];       /* the key part of per-slot entries: the ensemble's name */
    uint64_t requests, inputs, failures, hits, misses;
    atomic_long in_flight;
    /* the shared tier (Redis), behind `cache`: see "the shared tier" below */
    struct cge__redis_cache *redis; /* NULL: none */
    atomic_ullong redis_hits, redis_misses, redis_bad;
};

static void handle_free(struct handle *h) {
    if (!h) return;
    cge_model_free(h->doc);
    cge_model_free(h->query);
    cge__free(h);
}

static void handle_release(struct slot *sl, struct handle *h) {
    if (!h) return;
    pthread_mutex_lock(&sl->mu);
    int last = --h->refs == 0;
    pthread_mutex_unlock(&sl->mu);
    if (last) handle_free(h);
}

/* Bytes of the weight files a folder holds (the resident size of an f32 model, near enough). */
static int64_t folder_bytes(const char *dir) {
    static const char *const names[] = {"model.safetensors", "pytorch_model.bin"};
    int64_t total = 0;
    for (int i = 0; i < 2; i++) {
        char p[CGE_CONFIG_PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        struct stat s;
        if (stat(p, &s) == 0) total += (int64_t)s.st_size;
    }
    return total;
}

/* A folder as its identity holds it: absolute, so processes started from other folders (and
 * sharing a cache through Redis) key alike. */
static const char *identity_path(const char *p, char *buf) {
    return p[0] && realpath(p, buf) ? buf : p;
}

/* A slot's identity: its folders' config and weight files (size and time), dtype, version. */
static uint64_t slot_identity(const struct slot *sl, uint64_t version) {
    XXH64_state_t *x = XXH64_createState();
    if (!x) return 0;
    XXH64_reset(x, 0);
    const char *dirs[2] = {sl->spec.path, sl->spec.path_query};
    for (int d = 0; d < 2; d++) {
        char abs[PATH_MAX];
        const char *id_path = identity_path(dirs[d], abs);
        XXH64_update(x, id_path, strlen(id_path) + 1);
        static const char *const names[] = {"config.json", "model.safetensors",
                                            "model.safetensors.index.json", "pytorch_model.bin"};
        for (int i = 0; i < 4 && dirs[d][0]; i++) {
            char p[CGE_CONFIG_PATH_MAX + 40];
            snprintf(p, sizeof p, "%s/%s", dirs[d], names[i]);
            struct stat s;
            int64_t v[2] = {0, 0};
            if (stat(p, &s) == 0) {
                v[0] = (int64_t)s.st_size;
                v[1] = (int64_t)s.st_mtime;
            }
            XXH64_update(x, v, sizeof v);
        }
    }
    XXH64_update(x, &sl->spec.dtype, sizeof sl->spec.dtype);
    XXH64_update(x, &version, sizeof version);
    uint64_t h = XXH64_digest(x);
    XXH64_freeState(x);
    return h;
}

/* Recomputes the engine identity (call with e->mu held, or before the engine is shared). */
static void update_identity(struct cge_engine *e) {
    XXH64_state_t *x = XXH64_createState();
    if (!x) return;
    XXH64_reset(x, 0x636765);
    char abs[PATH_MAX];
    const char *fusion = identity_path(e->spec.fusion, abs);
    XXH64_update(x, fusion, strlen(fusion) + 1);
    if (e->fc) {
        XXH64_update(x, &e->fc->temperature, sizeof e->fc->temperature);
        XXH64_update(x, &e->fc->top_k, sizeof e->fc->top_k);
    }
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        struct slot *sl = &e->slots[s];
        uint64_t h = 0;
        if (sl->configured) {
            pthread_mutex_lock(&sl->mu);
            h = slot_identity(sl, sl->version);
            sl->ident = h;
            pthread_mutex_unlock(&sl->mu);
        }
        XXH64_update(x, &h, sizeof h);
    }
    snprintf(e->identity, sizeof e->identity, "cge1-%016llx", (unsigned long long)XXH64_digest(x));
    snprintf(e->slots_identity, sizeof e->slots_identity, "cge1-slots-%.256s", e->spec.name);
    XXH64_freeState(x);
}

/* E2's query prefix: config_sentence_transformers.json prompts.query, else the slot table's. */
static void read_query_prefix(const char *dir, char *out, size_t cap) {
    snprintf(out, cap, "%s", CGE__BGE_QUERY_PREFIX);
    char p[CGE_CONFIG_PATH_MAX + 48];
    snprintf(p, sizeof p, "%s/config_sentence_transformers.json", dir);
    if (!cge__file_exists(p)) return;
    cJSON *root = NULL;
    if (cge__json_read_file(p, &root) != CGE_OK) {
        cge__err_clear();
        return;
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompts");
    const cJSON *q = pr ? cJSON_GetObjectItemCaseSensitive(pr, "query") : NULL;
    if (cJSON_IsString(q) && q->valuestring[0]) snprintf(out, cap, "%s", q->valuestring);
    cJSON_Delete(root);
}

/* Loads a slot's model(s) from spec into a new handle, checking the fusion's dimension. */
static enum cge_status load_handle(const struct cge_engine *e, int s,
                                   const struct cge__slot_spec *spec, int64_t resident,
                                   struct handle **out) {
    *out = NULL;
    struct handle *h = cge__calloc(1, sizeof *h);
    if (!h) return cge__err(CGE_ERR_NOMEM, "E%d: handle", s + 1);
    h->refs = 1;
    h->resident_bytes = resident;
    struct cge_model_params mp = cge_model_default_params();
    mp.dtype = spec->dtype;
    mp.no_truncate = e->p.no_truncate;
    mp.backend = e->p.backend;
    enum cge_status st = cge_model_load(spec->path, &mp, &h->doc);
    if (!st && spec->path_query[0]) st = cge_model_load(spec->path_query, &mp, &h->query);
    if (st) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        handle_free(h);
        return cge__err(st, "E%d: %s", s + 1, msg);
    }
    const int fd = e->fc->slot_dims[s];
    for (int k = 0; k < 2; k++) {
        const struct cge_model *m = k ? h->query : h->doc;
        if (m && cge_model_dim(m) != fd) {
            const char *dir = k ? spec->path_query : spec->path;
            int md = cge_model_dim(m);
            handle_free(h);
            return cge__err(CGE_ERR_INVALID_DIM,
                            "E%d: model %s gives %d-d vectors, but the fusion %s/config.json "
                            "has slot_dims[%d] = %d",
                            s + 1, dir, md, e->spec.fusion, s, fd);
        }
    }
    *out = h;
    return CGE_OK;
}

/* The resident size a slot's model will have, from its weight headers: every tensor's elements
 * in the storage dtype (embedding tables and norms stay fp32 in the families; close enough for a
 * budget). Falls back to the files' size when the weights cannot be opened. */
static int64_t estimate_one(const char *dir, enum cge_dtype dt) {
    static const char *const names[] = {"model.safetensors", "model.safetensors.index.json",
                                        "pytorch_model.bin"};
    for (int i = 0; i < 3; i++) {
        char p[CGE_CONFIG_PATH_MAX + 40];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (!cge__file_exists(p)) continue;
        struct cge_weights *w = NULL;
        if (cge_weights_open(p, &w) != CGE_OK) {
            cge__err_clear();
            break;
        }
        int64_t b = 0, el = dt == CGE_DTYPE_BF16 ? 2 : dt == CGE_DTYPE_I8 ? 1 : 4;
        for (int64_t t = 0; t < cge_weights_count(w); t++) b += cge_weights_at(w, t)->n_elem * el;
        cge_weights_free(w);
        return b;
    }
    return folder_bytes(dir);
}

static int64_t estimate_bytes(const struct cge__slot_spec *spec) {
    return estimate_one(spec->path, spec->dtype) +
           (spec->path_query[0] ? estimate_one(spec->path_query, spec->dtype) : 0);
}

/* Makes room for `need` bytes under the memory budget by unloading idle models (held by the
 * engine alone), least recently used first; models in use are never unloaded. On success the
 * bytes are reserved (release_room gives them back once the load is published or failed). */
static enum cge_status make_room(struct cge_engine *e, int s, int64_t need) {
    const int64_t budget = e->p.memory_budget_bytes;
    if (budget <= 0) return CGE_OK;
    if (need > budget)
        return cge__err(CGE_ERR_NOMEM, "E%d needs about %lld bytes, more than the memory budget of %lld bytes",
                        s + 1, (long long)need, (long long)budget);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        int64_t held = e->reserved, busy = 0;
        int victim = -1;
        uint64_t oldest = UINT64_MAX;
        for (int t = 0; t < CGE_N_SLOTS; t++) {
            struct slot *sl = &e->slots[t];
            pthread_mutex_lock(&sl->mu);
            if (sl->cur) {
                held += sl->cur->resident_bytes;
                if (sl->cur->refs > 1) busy += sl->cur->resident_bytes;
                else if (t != s && sl->last_used < oldest) {
                    oldest = sl->last_used;
                    victim = t;
                }
            }
            pthread_mutex_unlock(&sl->mu);
        }
        if (held + need <= budget) {
            e->reserved += need;
            pthread_mutex_unlock(&e->mu);
            return CGE_OK;
        }
        if (victim < 0) {
            pthread_mutex_unlock(&e->mu);
            return cge__err(CGE_ERR_NOMEM,
                            "E%d needs about %lld bytes; the memory budget is %lld bytes and %lld are "
                            "held by models in use or loading",
                            s + 1, (long long)need, (long long)budget, (long long)(busy + e->reserved));
        }
        struct slot *v = &e->slots[victim];
        pthread_mutex_lock(&v->mu);
        struct handle *h = v->cur && v->cur->refs == 1 ? v->cur : NULL;
        if (h) {
            v->cur = NULL;
            v->state = CGE_LOAD_UNLOADED;
            h->refs--;
        }
        pthread_mutex_unlock(&v->mu);
        if (h) {
            cge__log(CGE_LOG_INFO, "E%d unloaded (least recently used) to load E%d within the memory budget",
                     victim + 1, s + 1);
            handle_free(h);
        }
    }
}

static void release_room(struct cge_engine *e, int64_t need) {
    if (e->p.memory_budget_bytes <= 0) return;
    pthread_mutex_lock(&e->mu);
    e->reserved -= need;
    pthread_mutex_unlock(&e->mu);
}

/* Takes a reference to slot s's model, loading it on first use (one load at a time per slot;
 * others wait for it). */
static enum cge_status acquire(struct cge_engine *e, int s, struct handle **out) {
    struct slot *sl = &e->slots[s];
    *out = NULL;
    pthread_mutex_lock(&sl->mu);
    while (sl->state == CGE_LOAD_LOADING) pthread_cond_wait(&sl->cv, &sl->mu);
    sl->last_used = atomic_fetch_add(&e->tick, 1) + 1;
    if (sl->cur) {
        sl->cur->refs++;
        *out = sl->cur;
        pthread_mutex_unlock(&sl->mu);
        return CGE_OK;
    }
    sl->state = CGE_LOAD_LOADING;
    struct cge__slot_spec spec = sl->spec;
    pthread_mutex_unlock(&sl->mu);

    /* at most max_concurrent_loads at once (each load is memory- and disk-bound) */
    const int max_loads = e->p.max_concurrent_loads > 0 ? e->p.max_concurrent_loads : 2;
    pthread_mutex_lock(&e->load_mu);
    while (e->n_loading >= max_loads) pthread_cond_wait(&e->load_cv, &e->load_mu);
    e->n_loading++;
    pthread_mutex_unlock(&e->load_mu);
    int64_t t0 = cge__now_us();
    struct handle *h = NULL;
    /* one estimate serves the budget and the stats */
    const int64_t est = estimate_bytes(&spec);
    const int64_t need = e->p.memory_budget_bytes > 0 ? est : 0;
    enum cge_status st = make_room(e, s, need);
    if (!st) {
        st = load_handle(e, s, &spec, est, &h);
        release_room(e, st ? need : 0);
    }
    int64_t ms = (cge__now_us() - t0) / 1000;
    pthread_mutex_lock(&e->load_mu);
    e->n_loading--;
    pthread_cond_broadcast(&e->load_cv);
    pthread_mutex_unlock(&e->load_mu);

    pthread_mutex_lock(&sl->mu);
    sl->load_ms = ms;
    if (st) {
        sl->state = CGE_LOAD_FAILED;
        snprintf(sl->err, sizeof sl->err, "%s", cge_errmsg());
    } else {
        h->version = sl->version;
        sl->cur = h;
        sl->state = CGE_LOAD_READY;
        sl->err[0] = '\0';
        h->refs++; /* the caller's */
        *out = h;
    }
    pthread_cond_broadcast(&sl->cv);
    pthread_mutex_unlock(&sl->mu);
    if (!st) release_room(e, need); /* published: counted as held from now on */
    if (st) cge__err(st, "%s", sl->err);
    return st;
}

static void run_batch(void *user, int q, struct cge__bitem **items, int64_t n);

/* ==== open / close ============================================================================== */

struct cge_engine_params cge_engine_default_params(void) {
    struct cge_engine_params p;
    memset(&p, 0, sizeof p);
    p.cache = -1;
    p.preload = 1;
    p.batching = 1;
    p.max_wait_ms = -1;
    return p;
}

const char *cge_demo_ensemble_path(void) {
    static char buf[CGE_CONFIG_PATH_MAX];
    const char *env = getenv("CGE_DEMO");
    if (env && env[0]) return env;
    const char *candidates[3] = {NULL, NULL, NULL};
    char exe_rel[CGE_CONFIG_PATH_MAX] = "";
    char exe[CGE_CONFIG_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(exe_rel, sizeof exe_rel, "%.900s/../tests/fixtures/ensemble/ensemble", exe);
            candidates[0] = exe_rel;
        }
    }
#ifdef CGE_SOURCE_DIR
    candidates[1] = CGE_SOURCE_DIR "/tests/fixtures/ensemble/ensemble";
#endif
#ifdef CGE_DATA_DIR
    candidates[2] = CGE_DATA_DIR "/cge/demo-ensemble";
#endif
    for (int i = 0; i < 3; i++) {
        if (!candidates[i]) continue;
        char f[CGE_CONFIG_PATH_MAX + 16];
        snprintf(f, sizeof f, "%s/ensemble.json", candidates[i]);
        if (cge__file_exists(f)) {
            snprintf(buf, sizeof buf, "%s", candidates[i]);
            return buf;
        }
    }
    return NULL;
}

/* The configured ensemble: $CGE_CONFIG, else ~/.config/cge/config.json, else NULL. */
static const char *default_config(char *buf, size_t cap) {
    const char *env = getenv("CGE_CONFIG");
    if (env && env[0]) return env;
    const char *home = getenv("HOME");
    if (home && home[0]) {
        snprintf(buf, cap, "%s/.config/cge/config.json", home);
        if (cge__file_exists(buf)) return buf;
    }
    return NULL;
}

static enum cge_status open_cache(struct cge_engine *e) {
    int on = e->p.cache >= 0 ? e->p.cache : (e->spec.has_config ? e->spec.cfg.cache.enabled : 1);
    if (!on) return CGE_OK;
    /* The cache stores the production record (8 experts, top-2, 1536-d); slots at the table's
     * offsets, so each slot must fit its table dimension. */
    if (e->fc->n_experts != CGE_N_EXPERTS || e->fc->top_k != CGE_TOP_K ||
        e->fc->out_dim != CGE_FUSED_DIM) {
        cge__log(CGE_LOG_INFO, "cache off: the fusion is not 8 experts, top-2, 1536-d");
        return CGE_OK;
    }
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (e->slots[s].configured && e->fc->slot_dims[s] > cge_slot_get(s)->dim) {
            cge__log(CGE_LOG_INFO, "cache off: slot E%d is wider than the slot table's", s + 1);
            return CGE_OK;
        }
    }
    struct cge_cache_params cp;
    if (e->spec.has_config) cge_cache_params_from_config(&e->spec.cfg.cache, "cge-engine", &cp);
    else cp = cge_cache_default_params();
    cp.ensemble_version = "cge-engine";
    enum cge_status st = cge_cache_open(&cp, &e->cache);
    return st;
}

static enum cge_status open_redis(struct cge_engine *e); /* the shared tier (Redis): below */

enum cge_status cge_engine_open(const char *path, const struct cge_engine_params *p,
                                struct cge_engine **out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_engine_open: out is NULL");
    *out = NULL;
    char cfgbuf[CGE_CONFIG_PATH_MAX];
    int demo = 0;
    if (!path) path = default_config(cfgbuf, sizeof cfgbuf);
    if (!path) {
        path = cge_demo_ensemble_path();
        demo = 1;
        if (!path)
            return cge__err(CGE_ERR_MODEL_NOT_FOUND,
                            "no ensemble given, no configuration found, and the demo ensemble "
                            "is not where it should be (set CGE_DEMO)");
    }
    struct cge_engine *e = cge__calloc(1, sizeof *e);
    if (!e) return cge__err(CGE_ERR_NOMEM, "engine");
    e->p = p ? *p : cge_engine_default_params();
    snprintf(e->backend, sizeof e->backend, "%s", e->p.backend ? e->p.backend : "");
    e->p.backend = e->backend[0] ? e->backend : NULL;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->load_mu, NULL);
    pthread_cond_init(&e->load_cv, NULL);
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        pthread_mutex_init(&e->slots[s].mu, NULL);
        pthread_mutex_init(&e->slots[s].swap_mu, NULL);
        pthread_cond_init(&e->slots[s].cv, NULL);
    }
    enum cge_status st = cge__ensemble_spec_load(path, &e->spec);
    e->spec.is_demo = demo;
    if (st) goto fail;
    if (e->p.n_threads > 0) cge_set_threads(e->p.n_threads);
    if ((st = cge_fusion_load(e->spec.fusion, CGE_DTYPE_F32, &e->fusion))) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        st = cge__err(st, "%s: fusion: %s", e->spec.source, msg);
        goto fail;
    }
    if (e->spec.has_routing &&
        (st = cge_fusion_set_routing(e->fusion, e->spec.temperature, e->spec.top_k)))
        goto fail;
    e->fc = cge_fusion_get_config(e->fusion);
    if (e->fc->n_slots != CGE_N_SLOTS) {
        st = cge__err(CGE_ERR_INVALID_DIM, "%s/config.json: slot_dims has %d entries, the ensemble has %d slots",
                      e->spec.fusion, e->fc->n_slots, CGE_N_SLOTS);
        goto fail;
    }
    int any = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        struct slot *sl = &e->slots[s];
        sl->spec = e->spec.slots[s];
        sl->configured = sl->spec.configured;
        sl->fusion_dim = e->fc->slot_dims[s];
        unsigned m = cge_slot_get(s)->modalities;
        sl->routes = (m & (CGE_MOD_TEXT | CGE_MOD_CODE) ? CGE_MOD_TEXT | CGE_MOD_CODE : 0) |
                     (m & (CGE_MOD_IMAGE | CGE_MOD_AUDIO));
        sl->state = sl->configured ? CGE_LOAD_UNLOADED : CGE_LOAD_ABSENT;
        sl->version = sl->configured ? 1 : 0;
        if (sl->configured && s == CGE__SLOT_E2)
            read_query_prefix(sl->spec.path, sl->query_prefix, sizeof sl->query_prefix);
        any |= sl->configured;
    }
    if (!any) {
        st = cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s: no slot is configured", e->spec.source);
        goto fail;
    }
    if (e->p.preload) {
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            if (!e->slots[s].configured) continue;
            struct handle *h = NULL;
            if ((st = acquire(e, s, &h))) goto fail;
            handle_release(&e->slots[s], h);
        }
    }
    update_identity(e);
    if ((st = open_cache(e))) goto fail;
    if (e->p.batching) {
        const struct cge_batch_config *bc = &e->spec.cfg.batch;
        struct cge__batcher_params bp = {
            .n_queues = CGE_N_SLOTS + 1, /* the slots, and the fusion */
            .max_batch_size = e->p.max_batch_size > 0 ? e->p.max_batch_size : bc->max_batch_size,
            .max_batch_tokens = e->p.max_batch_tokens > 0 ? e->p.max_batch_tokens : 16384,
            .min_batch_size = bc->min_batch_size,
            .max_wait_ms = e->p.max_wait_ms >= 0 ? e->p.max_wait_ms : bc->max_wait_ms,
            .max_queue = e->p.max_queue > 0 ? e->p.max_queue : 4096,
            .n_workers = e->p.n_workers > 0 ? e->p.n_workers : 1,
            .nowait_queue = FUSION_Q,
        };
        if (bp.min_batch_size > bp.max_batch_size) bp.min_batch_size = bp.max_batch_size;
        int cores = e->p.n_threads > 0 ? e->p.n_threads : cge_get_threads();
        bp.threads_per_worker = cores / bp.n_workers > 0 ? cores / bp.n_workers : 1;
        if ((st = cge__batcher_new(&bp, run_batch, e, &e->batcher))) goto fail;
    }
    if ((st = open_redis(e))) goto fail;
    *out = e;
    return CGE_OK;
fail: {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cge_errmsg());
    cge_engine_close(e);
    return cge__err(st, "%s", msg);
}
}

void cge_engine_close(struct cge_engine *e) {
    if (!e) return;
    cge__batcher_free(e->batcher); /* runs what is queued (nothing: close is the last call) */
    cge__redis_cache_close(e->redis);
    cge_cache_close(e->cache);
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        struct slot *sl = &e->slots[s];
        handle_free(sl->cur); /* the last call has returned: the engine holds the only ref */
        pthread_mutex_destroy(&sl->mu);
        pthread_mutex_destroy(&sl->swap_mu);
        pthread_cond_destroy(&sl->cv);
    }
    for (int i = 0; i < e->n_ctx; i++) cge_fusion_ctx_free(e->ctx_pool[i]);
    cge_fusion_free(e->fusion);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->load_mu);
    pthread_cond_destroy(&e->load_cv);
    cge__free(e);
}

int cge_engine_is_demo(const struct cge_engine *e) {
    return e ? e->spec.is_demo : 0;
}

const char *cge_engine_name(const struct cge_engine *e) {
    return e ? e->spec.name : "";
}

int cge_engine_dim(const struct cge_engine *e) {
    return e && e->fc ? (int)e->fc->out_dim : 0;
}

int cge_engine_slot_dim(const struct cge_engine *e, int s) {
    if (!e || s < 0 || s >= CGE_N_SLOTS || !e->slots[s].configured) return 0;
    return e->slots[s].fusion_dim;
}

unsigned cge_engine_slot_modalities(const struct cge_engine *e, int s) {
    if (!e || s < 0 || s >= CGE_N_SLOTS || !e->slots[s].configured) return 0;
    return e->slots[s].routes;
}

int64_t cge_engine_slot_max_tokens(const struct cge_engine *e, int s) {
    if (!e || s < 0 || s >= CGE_N_SLOTS || !e->slots[s].configured) return 0;
    struct handle *h = NULL;
    if (acquire((struct cge_engine *)e, s, &h)) return 0;
    int64_t n = cge_model_max_seq_len(h->doc);
    if (h->query) {
        int64_t q = cge_model_max_seq_len(h->query);
        if (q > 0 && (n <= 0 || q < n)) n = q;
    }
    handle_release((struct slot *)&e->slots[s], h);
    return n;
}

/* ==== results ==================================================================================== */

void cge_result_deinit(struct cge_result *r) {
    if (!r) return;
    cge__free(r->embedding);
    cge__free(r->expert_weights);
    cge__free(r->selected);
    for (int s = 0; s < CGE_N_SLOTS; s++) cge__free(r->slots[s].vector);
    memset(r, 0, sizeof *r);
}

static void fail_input(struct cge_result *r, enum cge_status st, const char *msg) {
    r->status = st;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", msg);
}

/* ==== the input as one slot reads it ============================================================ */

/* Slot s's view of input `in` (role and instruction per the ensemble's conventions); `buf`
 * holds E2's prefixed text. Returns the model to use. */
static const struct cge_model *slot_input(const struct slot *sl, int s, const struct handle *h,
                                          const struct cge_input *in, struct cge_input *out) {
    *out = *in;
    out->instruction = NULL;
    out->role = CGE_ROLE_DOCUMENT;
    int text = in->text != NULL;
    if (text && s == CGE__SLOT_E3) out->instruction = in->instruction ? in->instruction : "";
    if (text && s == CGE__SLOT_E12) out->instruction = in->instruction;
    if (text && s == CGE__SLOT_E2 && in->role == CGE_ROLE_QUERY) out->instruction = sl->query_prefix;
    if (h->query && in->role == CGE_ROLE_QUERY) return h->query;
    return h->doc;
}

/* ==== cache ====================================================================================== */

struct req_key {
    int cacheable;
    struct cge_cache_key key;
};

/* The shared tier (Redis) behind the in-process cache; defined below the in-process functions. */
static int redis_get(struct cge_engine *e, char kind, const struct req_key *k,
                     struct cge_fused_embedding *f, float *slots, uint32_t *present);
static void redis_put(struct cge_engine *e, char kind, const struct req_key *k,
                      const struct cge_fused_embedding *f, const float *slots, uint32_t present);

static void make_key(const char *identity, const struct cge_input *in, const void *content,
                     size_t len, struct req_key *k) {
    unsigned mod = cge_input_modality(in);
    /* The instruction and role are keyed as the slots read them: a role that picks nothing
     * (images) still keys apart, which costs at most a duplicate entry. */
    struct cge_cache_request rq = {
        .modality = mod,
        .role = in->role == CGE_ROLE_QUERY ? CGE_CACHE_ROLE_QUERY : CGE_CACHE_ROLE_DOC,
        .content = content,
        .content_len = len,
        .instruction = in->instruction,
        .ensemble_version = identity,
    };
    cge_cache_key_make(&rq, &k->key);
    k->cacheable = 1;
}

/* The bytes the key covers: text, or the media bytes (a file is read). */
static enum cge_status key_content(const struct cge_input *in, const void **p, size_t *n,
                                   char **owned) {
    *owned = NULL;
    if (in->text) {
        *p = in->text;
        *n = in->text_len;
        return CGE_OK;
    }
    if (in->image_data || in->audio_data) {
        *p = in->image_data ? in->image_data : in->audio_data;
        *n = in->image_data ? in->image_len : in->audio_len;
        return CGE_OK;
    }
    const char *path = in->image_path ? in->image_path : in->audio_path;
    if (!path) return CGE_ERR_INVALID_VALUE;
    enum cge_status st = cge__read_file(path, (size_t)1 << 30, owned, n);
    *p = *owned;
    return st;
}

/* Fills r from a cache entry. */
static enum cge_status from_cache(const struct cge_engine *e, const struct cge_fused_embedding *f,
                                  const float *slots, uint32_t present, struct cge_result *r) {
    r->dim = CGE_FUSED_DIM;
    r->n_experts = CGE_N_EXPERTS;
    r->top_k = CGE_TOP_K;
    r->embedding = cge__malloc(sizeof(float) * CGE_FUSED_DIM);
    r->expert_weights = cge__malloc(sizeof(float) * CGE_N_EXPERTS);
    r->selected = cge__malloc(sizeof(int) * CGE_TOP_K);
    if (!r->embedding || !r->expert_weights || !r->selected) return CGE_ERR_NOMEM;
    memcpy(r->embedding, f->vector, sizeof f->vector);
    memcpy(r->expert_weights, f->expert_weights, sizeof f->expert_weights);
    memcpy(r->selected, f->selected, sizeof f->selected);
    r->present = present;
    r->cached = 1;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        struct cge_slot_result *sr = &r->slots[s];
        const struct slot *sl = &e->slots[s];
        if (!sl->configured) continue;
        sr->dim = sl->fusion_dim;
        if (!(present & (1u << s))) {
            sr->state = CGE_SLOT_SKIPPED; /* results with a failed slot are never cached */
            continue;
        }
        sr->state = CGE_SLOT_OK;
        sr->cached = 1;
        sr->vector = cge__malloc(sizeof(float) * (size_t)sr->dim);
        if (!sr->vector) return CGE_ERR_NOMEM;
        memcpy(sr->vector, slots + cge_slot_offset(s), sizeof(float) * (size_t)sr->dim);
    }
    return CGE_OK;
}

static void to_cache(struct cge_engine *e, const struct req_key *k, const struct cge_result *r,
                     float *slots) {
    struct cge_fused_embedding f;
    memset(&f, 0, sizeof f);
    memcpy(f.vector, r->embedding, sizeof f.vector);
    memcpy(f.expert_weights, r->expert_weights, sizeof f.expert_weights);
    memcpy(f.selected, r->selected, sizeof f.selected);
    f.content_hash = k->key.h1;
    memset(slots, 0, sizeof(float) * (size_t)cge_total_dim());
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        const struct cge_slot_result *sr = &r->slots[s];
        if (sr->state == CGE_SLOT_FAILED) return; /* a transient failure is never cached */
        if (sr->state == CGE_SLOT_OK)
            memcpy(slots + cge_slot_offset(s), sr->vector, sizeof(float) * (size_t)sr->dim);
    }
    if (cge_cache_put(e->cache, &k->key, &f, slots, r->present) != CGE_OK) cge__err_clear();
    redis_put(e, 'f', k, &f, slots, r->present);
}

/* Per-slot entries. The cache holds fused records; a per-slot entry keeps the slot vectors in the
 * record's slots array and, in its (otherwise unused) fused vector, the identity of the model
 * that made each one: four 16-bit pieces per slot, exact as floats. The gate fields hold a valid
 * placeholder (the cache refuses an invalid record). */
#define IDENT_PIECES 4

static void slots_key(const struct cge_engine *e, const struct cge_input *in, const void *content,
                      size_t len, struct req_key *k) {
    make_key(e->slots_identity, in, content, len, k);
}

/* Looks up in's per-slot entry; returns 1 with slots/present/idents filled on a hit. */
static int slots_get(struct cge_engine *e, const struct req_key *k, float *slots, uint32_t *present,
                     uint64_t *idents) {
    struct cge_fused_embedding f;
    *present = 0;
    if ((!cge_cache_get(e->cache, &k->key, &f, slots, present) || !*present) &&
        !redis_get(e, 's', k, &f, slots, present))
        return 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        uint64_t id = 0;
        for (int q = 0; q < IDENT_PIECES; q++)
            id |= (uint64_t)(uint16_t)f.vector[s * IDENT_PIECES + q] << (16 * q);
        idents[s] = id;
    }
    return 1;
}

static void slots_put(struct cge_engine *e, const struct req_key *k, const float *slots,
                      uint32_t present, const uint64_t *idents) {
    struct cge_fused_embedding f;
    memset(&f, 0, sizeof f);
    for (int s = 0; s < CGE_N_SLOTS; s++)
        for (int q = 0; q < IDENT_PIECES; q++)
            f.vector[s * IDENT_PIECES + q] = (float)((idents[s] >> (16 * q)) & 0xffff);
    f.expert_weights[0] = 1;
    f.selected[0] = 0;
    f.selected[1] = 1;
    if (cge_cache_put(e->cache, &k->key, &f, slots, present) != CGE_OK) cge__err_clear();
    redis_put(e, 's', k, &f, slots, present);
}

/* ==== the shared tier (Redis) ======================================================================
 * A second cache level behind the in-process one, shared by every process that names the same
 * Redis: on an in-process miss the entry is asked of Redis (and kept in-process when found); what
 * is stored in-process is stored in Redis too. Both kinds of entry go there: full results ('f',
 * keyed by the ensemble's identity, which holds every slot's version) and per-slot entries ('s',
 * keyed by the ensemble's name, each slot's vector with the identity of the model that made it),
 * so a process that swapped a slot recomputes only that slot from another process's entries.
 *
 * The value (inside net/redis.c's checksummed frame) is compact: a format tag, the present mask,
 * the record's content hash, selected experts, gate weights and fused vector, then only the
 * present slots' vectors at the fusion's dimensions (float32, host order: little-endian hosts).
 * A value of the wrong size or an invalid record is a miss, and the next store overwrites it.
 * Redis being slow or gone is a miss too (net/redis.c bounds each call by its timeout). */

#define REDIS_FMT 0x31454743u /* "CGE1" */

static void redis_key(char kind, const struct req_key *k, char *buf, size_t cap) {
    snprintf(buf, cap, "cge:%c:%016llx%016llx:%llu", kind, (unsigned long long)k->key.h1,
             (unsigned long long)k->key.h2, (unsigned long long)k->key.content_len);
}

static size_t redis_value_len(const struct cge_engine *e, uint32_t present) {
    size_t n = 4 + 4 + 8 + 4 * CGE_TOP_K + 4 * CGE_N_EXPERTS + 4 * CGE_FUSED_DIM;
    for (int s = 0; s < CGE_N_SLOTS; s++)
        if (present & (1u << s)) n += sizeof(float) * (size_t)e->slots[s].fusion_dim;
    return n;
}

static int redis_get(struct cge_engine *e, char kind, const struct req_key *k,
                     struct cge_fused_embedding *f, float *slots, uint32_t *present) {
    if (!e->redis) return 0;
    char key[80];
    redis_key(kind, k, key, sizeof key);
    unsigned char *v = NULL;
    size_t len = 0;
    if (!cge__redis_cache_get(e->redis, key, strlen(key), (void **)&v, &len)) {
        atomic_fetch_add(&e->redis_misses, 1);
        return 0;
    }
    uint32_t fmt = 0, pr = 0;
    int ok = len >= 16;
    if (ok) {
        memcpy(&fmt, v, 4);
        memcpy(&pr, v + 4, 4);
        ok = fmt == REDIS_FMT && !(pr & ~((1u << CGE_N_SLOTS) - 1)) && len == redis_value_len(e, pr);
    }
    for (int s = 0; ok && s < CGE_N_SLOTS; s++)
        ok = !(pr & (1u << s)) || e->slots[s].configured;
    if (ok) {
        memset(f, 0, sizeof *f);
        const unsigned char *p = v + 8;
        memcpy(&f->content_hash, p, 8);
        p += 8;
        memcpy(f->selected, p, 4 * CGE_TOP_K);
        p += 4 * CGE_TOP_K;
        memcpy(f->expert_weights, p, 4 * CGE_N_EXPERTS);
        p += 4 * CGE_N_EXPERTS;
        memcpy(f->vector, p, 4 * CGE_FUSED_DIM);
        p += 4 * CGE_FUSED_DIM;
        memset(slots, 0, sizeof(float) * (size_t)cge_total_dim());
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            if (!(pr & (1u << s))) continue;
            size_t n = sizeof(float) * (size_t)e->slots[s].fusion_dim;
            memcpy(slots + cge_slot_offset(s), p, n);
            p += n;
        }
        /* a full record must be one the in-process cache takes (finite, unit length, valid gate) */
        ok = pr && (kind != 'f' || cge_fused_validate(f) == CGE_OK);
    }
    cge__free(v);
    if (!ok) {
        cge__err_clear();
        atomic_fetch_add(&e->redis_bad, 1);
        atomic_fetch_add(&e->redis_misses, 1);
        return 0;
    }
    *present = pr;
    atomic_fetch_add(&e->redis_hits, 1);
    if (cge_cache_put(e->cache, &k->key, f, slots, pr) != CGE_OK) cge__err_clear();
    return 1;
}

static void redis_put(struct cge_engine *e, char kind, const struct req_key *k,
                      const struct cge_fused_embedding *f, const float *slots, uint32_t present) {
    if (!e->redis) return;
    size_t len = redis_value_len(e, present);
    unsigned char *v = cge__malloc(len);
    if (!v) return;
    uint32_t fmt = REDIS_FMT;
    unsigned char *p = v;
    memcpy(p, &fmt, 4);
    memcpy(p + 4, &present, 4);
    memcpy(p + 8, &f->content_hash, 8);
    p += 16;
    memcpy(p, f->selected, 4 * CGE_TOP_K);
    p += 4 * CGE_TOP_K;
    memcpy(p, f->expert_weights, 4 * CGE_N_EXPERTS);
    p += 4 * CGE_N_EXPERTS;
    memcpy(p, f->vector, 4 * CGE_FUSED_DIM);
    p += 4 * CGE_FUSED_DIM;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (!(present & (1u << s))) continue;
        size_t n = sizeof(float) * (size_t)e->slots[s].fusion_dim;
        memcpy(p, slots + cge_slot_offset(s), n);
        p += n;
    }
    char key[80];
    redis_key(kind, k, key, sizeof key);
    if (cge__redis_cache_put(e->redis, key, strlen(key), v, len) != CGE_OK) cge__err_clear();
    cge__free(v);
}

/* Opens the shared tier named by the params or the config's "redis" section. It sits behind the
 * in-process cache, so without that (cache off, or a fusion the cache cannot hold) it is off too.
 * A bad URL fails the open; an unreachable server does not (the tier retries by itself). */
static enum cge_status open_redis(struct cge_engine *e) {
    const char *url = e->p.redis_url;
    if (!url && e->spec.has_config) url = e->spec.cfg.redis.url;
    if (!url || !url[0]) return CGE_OK;
    if (!e->cache) {
        cge__log(CGE_LOG_WARN, "redis %s: not used: the in-process cache is off", url);
        return CGE_OK;
    }
    struct cge__redis_cache_params rp = cge__redis_cache_default_params();
    if (e->spec.has_config) {
        rp.timeout_ms = e->spec.cfg.redis.timeout_ms;
        rp.ttl_seconds = e->spec.cfg.redis.ttl_seconds;
    }
    return cge__redis_cache_open(url, &rp, &e->redis);
}

/* ==== embed ====================================================================================== */

static void record_latency(struct slot *sl, int64_t n, int64_t n_failed, double ms_per_item) {
    pthread_mutex_lock(&sl->mu);
    sl->requests += (uint64_t)n;
    sl->failures += (uint64_t)n_failed;
    sl->lat_sum_ms += ms_per_item * (double)n;
    sl->lat[sl->n_lat % LAT_RING] = (float)ms_per_item;
    sl->n_lat++;
    pthread_mutex_unlock(&sl->mu);
}

static void fail_item(struct cge__bitem *it, int s, enum cge_status st, const char *msg) {
    struct cge_slot_result *sr = &it->res->slots[s];
    sr->state = CGE_SLOT_FAILED;
    sr->status = st;
    snprintf(sr->errmsg, sizeof sr->errmsg, "%s", msg);
}

/* Runs slot s on a batch of items (inputs routed to it, from one call or from many) and fills
 * their slot results. Items whose deadline has passed are dropped before the run; items that
 * finish after it are missing as if they had not run. */
static void run_items(struct cge_engine *e, int s, struct cge__bitem **all, int64_t n_all) {
    struct slot *sl = &e->slots[s];
    struct cge__bitem **items = cge__malloc(sizeof *items * (size_t)n_all);
    int64_t k = 0, n_failed = 0;
    if (!items) {
        for (int64_t j = 0; j < n_all; j++) fail_item(all[j], s, CGE_ERR_NOMEM, "out of memory");
        record_latency(sl, n_all, n_all, 0);
        return;
    }
    int64_t t_start = cge__now_us();
    for (int64_t j = 0; j < n_all; j++) {
        if (all[j]->deadline_us && t_start > all[j]->deadline_us) {
            char msg[64];
            snprintf(msg, sizeof msg, "E%d: deadline passed before it ran", s + 1);
            fail_item(all[j], s, CGE_ERR_TIMEOUT, msg);
            n_failed++;
        } else {
            items[k++] = all[j];
        }
    }
    if (!k) {
        record_latency(sl, n_all, n_failed, 0);
        cge__free(items);
        return;
    }
    struct handle *h = NULL;
    enum cge_status st = acquire(e, s, &h);
    if (st) {
        for (int64_t j = 0; j < k; j++) fail_item(items[j], s, st, cge_errmsg());
        record_latency(sl, n_all, n_all, 0);
        cge__free(items);
        return;
    }
    const int dim = sl->fusion_dim;
    struct cge_input *ins = cge__calloc((size_t)k, sizeof *ins);
    struct cge_embed_info *info = cge__calloc((size_t)k, sizeof *info);
    float *vec = cge__malloc(sizeof(float) * (size_t)(k * dim));
    int64_t *order = cge__malloc(sizeof(int64_t) * (size_t)k);
    int64_t t0 = cge__now_us();
    if (!ins || !info || !vec || !order) {
        st = cge__err(CGE_ERR_NOMEM, "E%d: batch of %lld", s + 1, (long long)k);
    } else {
        /* Two passes for E10 (query, then document encoder); one elsewhere. */
        for (int pass = 0; pass < 2 && !st; pass++) {
            int64_t m = 0;
            const struct cge_model *model = NULL;
            for (int64_t j = 0; j < k; j++) {
                struct cge_input tmp;
                const struct cge_model *mm = slot_input(sl, s, h, items[j]->in, &tmp);
                int is_query_model = h->query && mm == h->query;
                if (is_query_model != (pass == 0)) continue;
                model = mm;
                ins[m] = tmp;
                order[m++] = j;
            }
            if (!m) continue;
            st = cge_model_embed(model, ins, m, vec, info);
            for (int64_t q = 0; q < m && !st; q++) {
                struct cge_slot_result *sr = &items[order[q]]->res->slots[s];
                sr->n_tokens = info[q].n_tokens;
                sr->truncated = info[q].truncated;
                if (info[q].status) {
                    sr->state = info[q].status == CGE_ERR_UNSUPPORTED_MODALITY ? CGE_SLOT_SKIPPED
                                                                               : CGE_SLOT_FAILED;
                    sr->status = sr->state == CGE_SLOT_FAILED ? info[q].status : CGE_OK;
                    snprintf(sr->errmsg, sizeof sr->errmsg, "E%d: %.180s", s + 1, info[q].errmsg);
                    n_failed += sr->state == CGE_SLOT_FAILED;
                    continue;
                }
                sr->vector = cge__malloc(sizeof(float) * (size_t)dim);
                if (!sr->vector) {
                    fail_item(items[order[q]], s, CGE_ERR_NOMEM, "out of memory");
                    n_failed++;
                    continue;
                }
                memcpy(sr->vector, vec + q * dim, sizeof(float) * (size_t)dim);
                sr->state = CGE_SLOT_OK;
            }
        }
    }
    int64_t t1 = cge__now_us();
    for (int64_t j = 0; j < k; j++) {
        struct cge_slot_result *sr = &items[j]->res->slots[s];
        sr->latency_us = (t1 - t0) / k;
        sr->version = h->version;
        if (st && sr->state != CGE_SLOT_OK) {
            fail_item(items[j], s, st, cge_errmsg());
            n_failed++;
        } else if (items[j]->deadline_us && t1 > items[j]->deadline_us && sr->state == CGE_SLOT_OK) {
            /* It finished after the deadline: missing, as if it had not. */
            cge__free(sr->vector);
            sr->vector = NULL;
            char msg[64];
            snprintf(msg, sizeof msg, "E%d: passed its deadline", s + 1);
            fail_item(items[j], s, CGE_ERR_TIMEOUT, msg);
            n_failed++;
        }
    }
    record_latency(sl, n_all, n_failed, (double)(t1 - t0) / 1000.0 / (double)k);
    cge__free(ins);
    cge__free(info);
    cge__free(vec);
    cge__free(order);
    cge__free(items);
    handle_release(sl, h);
}

/* (FUSION_Q, the fusion's queue, is defined at the top.) */

static enum cge_status fuse(struct cge_engine *e, struct cge_result *const *rs, int64_t k);

static void fuse_items(struct cge_engine *e, struct cge__bitem **items, int64_t n) {
    struct cge_result **rs = cge__malloc(sizeof *rs * (size_t)n);
    enum cge_status st = rs ? CGE_OK : cge__err(CGE_ERR_NOMEM, "fusion of %lld inputs", (long long)n);
    for (int64_t j = 0; j < n && rs; j++) rs[j] = items[j]->res;
    if (!st) st = fuse(e, rs, n);
    if (st) {
        char msg[256];
        snprintf(msg, sizeof msg, "fusion: %.240s", cge_errmsg());
        for (int64_t j = 0; j < n; j++) fail_input(items[j]->res, st, msg);
    }
    cge__free(rs);
}

/* The batcher's callback: queue q < 12 is slot q; FUSION_Q is the fusion. */
static void run_batch(void *user, int q, struct cge__bitem **items, int64_t n) {
    if (q == FUSION_Q) fuse_items(user, items, n);
    else run_items(user, q, items, n);
}

/* A cheap length estimate for the token budget (the tokenizer runs in the worker): about four
 * bytes of text per token, plus the special tokens; media count one. */
static int64_t est_tokens(const struct cge_input *in) {
    return in->text ? (int64_t)(in->text_len / 4) + 2 : 1;
}

/* Fuses the inputs idx[0..k) whose slots are filled. */
static enum cge_status fuse(struct cge_engine *e, struct cge_result *const *rs, int64_t k) {
    const struct cge_fusemoe_config *c = e->fc;
    const int64_t D = c->total_dim, S = c->n_slots, O = c->out_dim, E = c->n_experts;
    const int K = c->top_k;
    float *x = cge__calloc((size_t)(k * D), sizeof(float));
    uint8_t *present = cge__calloc((size_t)(k * S), 1);
    float *emb = cge__malloc(sizeof(float) * (size_t)(k * O));
    float *gate = cge__malloc(sizeof(float) * (size_t)(k * E));
    int *sel = cge__malloc(sizeof(int) * (size_t)(k * K));
    struct cge_fusion_ctx *ctx = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->n_ctx) ctx = e->ctx_pool[--e->n_ctx];
    pthread_mutex_unlock(&e->mu);
    enum cge_status st = !(x && present && emb && gate && sel) ? cge__err(CGE_ERR_NOMEM, "fusion of %lld inputs", (long long)k)
                         : ctx                                ? CGE_OK
                                                              : cge_fusion_ctx_new(&ctx);
    if (!st) {
        for (int64_t j = 0; j < k; j++) {
            const struct cge_result *r = rs[j];
            int64_t off = 0;
            for (int s = 0; s < S; s++) {
                if (r->slots[s].state == CGE_SLOT_OK) {
                    memcpy(x + j * D + off, r->slots[s].vector, sizeof(float) * (size_t)c->slot_dims[s]);
                    present[j * S + s] = 1;
                }
                off += c->slot_dims[s];
            }
        }
        st = cge_fusion_forward(e->fusion, ctx, k, x, present, emb, gate, sel);
    }
    for (int64_t j = 0; j < k && !st; j++) {
        struct cge_result *r = rs[j];
        r->dim = (int)O;
        r->n_experts = (int)E;
        r->top_k = K;
        r->embedding = cge__malloc(sizeof(float) * (size_t)O);
        r->expert_weights = cge__malloc(sizeof(float) * (size_t)E);
        r->selected = cge__malloc(sizeof(int) * (size_t)K);
        if (!r->embedding || !r->expert_weights || !r->selected) {
            st = cge__err(CGE_ERR_NOMEM, "fusion results");
            break;
        }
        memcpy(r->embedding, emb + j * O, sizeof(float) * (size_t)O);
        memcpy(r->expert_weights, gate + j * E, sizeof(float) * (size_t)E);
        memcpy(r->selected, sel + j * K, sizeof(int) * (size_t)K);
    }
    pthread_mutex_lock(&e->mu);
    if (ctx && e->n_ctx < (int)(sizeof e->ctx_pool / sizeof *e->ctx_pool)) {
        e->ctx_pool[e->n_ctx++] = ctx;
        ctx = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    cge_fusion_ctx_free(ctx);
    cge__free(x);
    cge__free(present);
    cge__free(emb);
    cge__free(gate);
    cge__free(sel);
    return st;
}

enum cge_status cge_engine_embed(struct cge_engine *e, const struct cge_input *in, size_t n,
                                 const struct cge_embed_options *opt, struct cge_result *out) {
    if (!e || (n && (!in || !out)))
        return cge__err(CGE_ERR_INVALID_VALUE, "cge_engine_embed: bad arguments");
    if (n == 0) return CGE_OK;
    struct cge_embed_options o;
    memset(&o, 0, sizeof o);
    if (opt) o = *opt;
    const uint32_t all = (1u << CGE_N_SLOTS) - 1;
    const uint32_t want = o.slots ? (o.slots & all) : all;
    int64_t t_start = cge__now_us();
    int64_t timeout = o.timeout_ms > 0 ? o.timeout_ms : e->p.slot_timeout_ms;
    int64_t deadline = timeout > 0 ? t_start + timeout * 1000 : 0;
    atomic_fetch_add(&e->in_flight, 1);
    memset(out, 0, n * sizeof *out);

    int64_t *idx = cge__malloc(sizeof(int64_t) * n);
    struct req_key *keys = cge__calloc(n, sizeof *keys);
    struct req_key *skeys = cge__calloc(n, sizeof *skeys);
    const int use_slot_cache = e->cache && !o.no_cache;
    const int use_cache = use_slot_cache && !o.no_fusion && want == all;
    /* a cache record's slot vectors (13184 floats): only when a cache is used */
    float *slots_buf = use_slot_cache ? cge__malloc(sizeof(float) * (size_t)cge_total_dim()) : NULL;
    if (!idx || !keys || !skeys || (use_slot_cache && !slots_buf)) {
        cge__free(idx);
        cge__free(keys);
        cge__free(skeys);
        cge__free(slots_buf);
        atomic_fetch_sub(&e->in_flight, 1);
        return cge__err(CGE_ERR_NOMEM, "cge_engine_embed: %zu inputs", n);
    }
    char identity[64];
    pthread_mutex_lock(&e->mu);
    memcpy(identity, e->identity, sizeof identity);
    pthread_mutex_unlock(&e->mu);
    uint64_t cur_ident[CGE_N_SLOTS], cur_ver[CGE_N_SLOTS], got_ident[CGE_N_SLOTS];
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        pthread_mutex_lock(&e->slots[s].mu);
        cur_ident[s] = e->slots[s].ident;
        cur_ver[s] = e->slots[s].version;
        pthread_mutex_unlock(&e->slots[s].mu);
    }

    /* 1. validate, and answer from the cache what it holds */
    uint64_t hits = 0, misses = 0;
    for (size_t i = 0; i < n; i++) {
        struct cge_result *r = &out[i];
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            r->slots[s].state = e->slots[s].configured ? CGE_SLOT_SKIPPED : CGE_SLOT_ABSENT;
            r->slots[s].dim = e->slots[s].configured ? e->slots[s].fusion_dim : 0;
        }
        unsigned mod = cge_input_modality(&in[i]);
        if (!mod || in[i].ids) {
            fail_input(r, CGE_ERR_INVALID_VALUE,
                       "an input needs exactly one of text, code, image or audio (a path or bytes)");
            continue;
        }
        if (in[i].role != CGE_ROLE_DOCUMENT && in[i].role != CGE_ROLE_QUERY) {
            fail_input(r, CGE_ERR_INVALID_VALUE, "role must be query or document");
            continue;
        }
        if (!use_slot_cache) continue;
        const void *content = NULL;
        size_t len = 0;
        char *owned = NULL;
        if (key_content(&in[i], &content, &len, &owned) != CGE_OK) {
            cge__err_clear();
            cge__free(owned);
            continue; /* unreadable file: the slot reports it */
        }
        make_key(identity, &in[i], content, len, &keys[i]);
        slots_key(e, &in[i], content, len, &skeys[i]);
        cge__free(owned);
        struct cge_fused_embedding f;
        uint32_t present = 0;
        if (use_cache &&
            (cge_cache_get(e->cache, &keys[i].key, &f, slots_buf, &present) ||
             redis_get(e, 'f', &keys[i], &f, slots_buf, &present)) &&
            present) {
            if (from_cache(e, &f, slots_buf, present, r) != CGE_OK) {
                cge_result_deinit(r);
                fail_input(r, CGE_ERR_NOMEM, "out of memory");
            }
            for (int s = 0; s < CGE_N_SLOTS; s++) r->slots[s].version = e->slots[s].configured ? cur_ver[s] : 0;
            hits++;
            continue;
        }
        misses++;
        /* a partial hit: the slots whose model has not changed since */
        if (!slots_get(e, &skeys[i], slots_buf, &present, got_ident)) continue;
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            struct cge_slot_result *sr = &r->slots[s];
            if (!(present & (1u << s)) || got_ident[s] != cur_ident[s] || !(want & (1u << s)) ||
                !e->slots[s].configured || !(e->slots[s].routes & mod))
                continue;
            sr->vector = cge__malloc(sizeof(float) * (size_t)sr->dim);
            if (!sr->vector) continue;
            memcpy(sr->vector, slots_buf + cge_slot_offset(s), sizeof(float) * (size_t)sr->dim);
            sr->state = CGE_SLOT_OK;
            sr->cached = 1;
            sr->version = cur_ver[s];
        }
    }

    /* 2. each slot on the inputs it takes: through the slot queues (batched with other calls'
     * inputs) or, without batching, right here */
    struct cge__bitem *bi = NULL, **bp = NULL;
    struct cge__bcall call;
    cge__bcall_init(&call);
    int64_t n_items = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        struct slot *sl = &e->slots[s];
        if (!sl->configured || !(want & (1u << s))) continue;
        for (size_t i = 0; i < n; i++)
            if (!out[i].status && !out[i].cached && out[i].slots[s].state != CGE_SLOT_OK &&
                (sl->routes & cge_input_modality(&in[i])))
                n_items++;
    }
    if (n_items) {
        bi = cge__calloc((size_t)n_items, sizeof *bi);
        bp = cge__calloc((size_t)n_items, sizeof *bp);
    }
    int64_t used = 0;
    for (int s = 0; s < CGE_N_SLOTS && n_items; s++) {
        struct slot *sl = &e->slots[s];
        if (!sl->configured || !(want & (1u << s))) continue;
        int64_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (out[i].status || out[i].cached || out[i].slots[s].state == CGE_SLOT_OK) continue;
            if (!(sl->routes & cge_input_modality(&in[i]))) continue;
            if (!bi || !bp) {
                fail_input(&out[i], CGE_ERR_NOMEM, "out of memory");
                continue;
            }
            struct cge__bitem *it = &bi[used++];
            it->in = &in[i];
            it->res = &out[i];
            it->n_tokens = est_tokens(&in[i]);
            it->deadline_us = deadline;
            it->call = &call;
            bp[k++] = it;
        }
        if (!k) continue;
        if (!e->batcher) {
            run_items(e, s, bp, k);
        } else if (cge__batcher_submit(e->batcher, s, bp, k) != CGE_OK) {
            char msg[200];
            snprintf(msg, sizeof msg, "E%d: %.180s", s + 1, cge_errmsg());
            for (int64_t j = 0; j < k; j++) fail_item(bp[j], s, CGE_ERR_QUEUE_FULL, msg);
        }
    }
    cge__bcall_wait(&call);
    cge__bcall_deinit(&call);
    cge__free(bi);
    cge__free(bp);

    /* 3. fuse what has at least one slot */
    int64_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct cge_result *r = &out[i];
        if (r->status || r->cached) continue;
        const char *why = NULL;
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            if (r->slots[s].state == CGE_SLOT_OK) r->present |= 1u << s;
            else if (r->slots[s].state == CGE_SLOT_FAILED && !why) why = r->slots[s].errmsg;
            if (r->slots[s].n_tokens > r->n_tokens) r->n_tokens = r->slots[s].n_tokens;
        }
        if (!r->present) {
            fail_input(r, CGE_ERR_FUSION, why ? why : "no slot of the ensemble takes this input");
            if (why) {
                for (int s = 0; s < CGE_N_SLOTS; s++)
                    if (r->slots[s].state == CGE_SLOT_FAILED) {
                        r->status = r->slots[s].status;
                        break;
                    }
            }
            continue;
        }
        idx[k++] = (int64_t)i;
    }
    enum cge_status st = CGE_OK;
    if (k && !o.no_fusion) {
        struct cge__bitem *fi = cge__calloc((size_t)k, sizeof *fi);
        struct cge__bitem **fp = cge__calloc((size_t)k, sizeof *fp);
        cge__bcall_init(&call);
        if (!fi || !fp) {
            for (int64_t j = 0; j < k; j++) fail_input(&out[idx[j]], CGE_ERR_NOMEM, "out of memory");
        } else {
            for (int64_t j = 0; j < k; j++) {
                fi[j].in = &in[idx[j]];
                fi[j].res = &out[idx[j]];
                fi[j].n_tokens = 1;
                fi[j].call = &call;
                fp[j] = &fi[j];
            }
            if (!e->batcher) {
                fuse_items(e, fp, k);
            } else if (cge__batcher_submit(e->batcher, FUSION_Q, fp, k) != CGE_OK) {
                char msg[256];
                snprintf(msg, sizeof msg, "fusion: %.240s", cge_errmsg());
                for (int64_t j = 0; j < k; j++) fail_input(&out[idx[j]], CGE_ERR_QUEUE_FULL, msg);
            }
            cge__bcall_wait(&call);
        }
        cge__bcall_deinit(&call);
        cge__free(fi);
        cge__free(fp);
        for (int64_t j = 0; use_cache && j < k; j++)
            if (keys[idx[j]].cacheable && out[idx[j]].status == CGE_OK && out[idx[j]].embedding)
                to_cache(e, &keys[idx[j]], &out[idx[j]], slots_buf);
    }

    /* per-slot entries for what was computed now (a slot swapped meanwhile is left out) */
    for (size_t i = 0; use_slot_cache && i < n; i++) {
        const struct cge_result *r = &out[i];
        if (r->cached || !skeys[i].cacheable) continue;
        uint32_t present = 0, fresh = 0;
        memset(slots_buf, 0, sizeof(float) * (size_t)cge_total_dim());
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            const struct cge_slot_result *sr = &r->slots[s];
            if (sr->state != CGE_SLOT_OK || sr->version != cur_ver[s]) continue;
            memcpy(slots_buf + cge_slot_offset(s), sr->vector, sizeof(float) * (size_t)sr->dim);
            present |= 1u << s;
            fresh |= sr->cached ? 0 : 1u << s;
        }
        if (fresh) slots_put(e, &skeys[i], slots_buf, present, cur_ident);
    }

    int64_t per = (cge__now_us() - t_start) / (int64_t)n;
    uint64_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        out[i].latency_us = per;
        failed += out[i].status != CGE_OK;
    }
    pthread_mutex_lock(&e->mu);
    e->requests++;
    e->inputs += n;
    e->failures += failed;
    e->hits += hits;
    e->misses += misses;
    pthread_mutex_unlock(&e->mu);
    cge__free(idx);
    cge__free(keys);
    cge__free(skeys);
    cge__free(slots_buf);
    atomic_fetch_sub(&e->in_flight, 1);
    return st;
}

/* ==== tokenize, health, stats ==================================================================== */

int64_t cge_engine_tokenize(struct cge_engine *e, int s, const char *text, size_t len,
                            enum cge_role role, int32_t *ids, int64_t cap) {
    if (!e || s < 0 || s >= CGE_N_SLOTS || !e->slots[s].configured) {
        cge__err(CGE_ERR_MODEL_NOT_FOUND, "slot E%d is not in the ensemble", s + 1);
        return -1;
    }
    struct handle *h = NULL;
    if (acquire(e, s, &h)) return -1;
    struct slot *sl = &e->slots[s];
    const struct cge_model *m = role == CGE_ROLE_QUERY && h->query ? h->query : h->doc;
    int64_t r;
    if (s == CGE__SLOT_E2 && role == CGE_ROLE_QUERY) {
        struct cge_buf b;
        cge__buf_init(&b, (size_t)1 << 30);
        enum cge_status st = cge__buf_append(&b, sl->query_prefix, strlen(sl->query_prefix));
        if (!st) st = cge__buf_append(&b, text, len);
        r = st ? -1 : cge_model_tokenize(m, b.data, b.len, ids, cap);
        cge__buf_free(&b);
    } else {
        r = cge_model_tokenize(m, text, len, ids, cap);
    }
    handle_release(sl, h);
    return r;
}

enum cge_status cge_engine_health(struct cge_engine *e) {
    if (!e || !e->fusion) return cge__err(CGE_ERR_NOT_INITIALIZED, "no engine");
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        struct slot *sl = &e->slots[s];
        pthread_mutex_lock(&sl->mu);
        int ok = sl->configured && sl->state != CGE_LOAD_FAILED;
        pthread_mutex_unlock(&sl->mu);
        if (ok) return CGE_OK;
    }
    return cge__err(CGE_ERR_MODEL_LOAD, "no slot of the ensemble can serve");
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

enum cge_status cge_engine_get_stats(struct cge_engine *e, struct cge_engine_stats *out) {
    if (!e || !out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_engine_get_stats: bad arguments");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&e->mu);
    out->requests = e->requests;
    out->inputs = e->inputs;
    out->failures = e->failures;
    out->cache_hits = e->hits;
    out->cache_misses = e->misses;
    pthread_mutex_unlock(&e->mu);
    out->cache_hit_rate = out->cache_hits + out->cache_misses
                              ? (double)out->cache_hits / (double)(out->cache_hits + out->cache_misses)
                              : 0;
    if (e->cache) {
        struct cge_cache_stats cs;
        cge_cache_get_stats(e->cache, &cs);
        out->cache_entries = cs.entries;
    }
    out->in_flight = atomic_load(&e->in_flight);
    if (e->redis) {
        struct cge__redis_cache_stats rs;
        cge__redis_cache_get_stats(e->redis, &rs);
        out->redis_hits = atomic_load(&e->redis_hits);
        out->redis_misses = atomic_load(&e->redis_misses);
        out->redis_corrupt = rs.corrupt + atomic_load(&e->redis_bad);
        out->redis_errors = rs.errors;
        out->redis_puts = rs.puts;
    }
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        struct slot *sl = &e->slots[s];
        struct cge_slot_stats *ss = &out->slots[s];
        float lat[LAT_RING];
        pthread_mutex_lock(&sl->mu);
        ss->state = sl->state;
        snprintf(ss->path, sizeof ss->path, "%s", sl->spec.path);
        snprintf(ss->path2, sizeof ss->path2, "%s", sl->spec.path_query);
        ss->dtype = sl->spec.dtype;
        ss->dim = sl->configured ? sl->fusion_dim : 0;
        ss->version = sl->version;
        ss->resident_bytes = sl->cur ? sl->cur->resident_bytes : 0;
        ss->load_ms = sl->load_ms;
        ss->requests = sl->requests;
        ss->failures = sl->failures;
        ss->mean_latency_ms = sl->requests ? sl->lat_sum_ms / (double)sl->requests : 0;
        if (e->batcher) {
            struct cge__batcher_qstats q;
            cge__batcher_stats(e->batcher, s, &q);
            ss->queue_depth = q.depth;
            ss->batches = q.batches;
            ss->mean_batch = q.batches ? (double)q.items / (double)q.batches : 0;
            ss->padding = q.padded_tokens ? 1.0 - (double)q.tokens / (double)q.padded_tokens : 0;
            ss->max_batch = q.max_batch;
        }
        int m = sl->n_lat < LAT_RING ? (int)sl->n_lat : LAT_RING;
        memcpy(lat, sl->lat, sizeof(float) * (size_t)m);
        snprintf(ss->errmsg, sizeof ss->errmsg, "%s", sl->err);
        pthread_mutex_unlock(&sl->mu);
        if (m) {
            qsort(lat, (size_t)m, sizeof *lat, cmp_float);
            int q = (int)ceil(0.95 * m) - 1;
            ss->p95_latency_ms = lat[q < 0 ? 0 : q];
        }
    }
    return CGE_OK;
}

/* ==== hot swap =================================================================================== */

/* A probe the new model must embed into a finite vector of the right size. */
static enum cge_status probe(const struct cge_model *m, int dim, int s) {
    static const char text[] = "cge probe: the quick brown fox";
    /* A 0.1 s 16 kHz silent WAV for audio-only models. */
    unsigned char wav[44 + 3200];
    memset(wav, 0, sizeof wav);
    memcpy(wav, "RIFF", 4);
    uint32_t v = 36 + 3200;
    memcpy(wav + 4, &v, 4);
    memcpy(wav + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(wav + 16, &v, 4);
    uint16_t w = 1;
    memcpy(wav + 20, &w, 2); /* PCM */
    memcpy(wav + 22, &w, 2); /* mono */
    v = 16000;
    memcpy(wav + 24, &v, 4);
    v = 32000;
    memcpy(wav + 28, &v, 4);
    w = 2;
    memcpy(wav + 32, &w, 2);
    w = 16;
    memcpy(wav + 34, &w, 2);
    memcpy(wav + 36, "data", 4);
    v = 3200;
    memcpy(wav + 40, &v, 4);
    for (int i = 0; i < 1600; i++) { /* a quiet tone, so nothing degenerates to log(0) */
        int16_t x = (int16_t)(1000 * sin(2 * M_PI * 440 * i / 16000.0));
        memcpy(wav + 44 + 2 * i, &x, 2);
    }
    struct cge_input in;
    memset(&in, 0, sizeof in);
    unsigned mods = cge_model_modalities(m);
    if (mods & (CGE_MOD_TEXT | CGE_MOD_CODE)) {
        in.text = text;
        in.text_len = sizeof text - 1;
    } else if (mods & CGE_MOD_AUDIO) {
        in.audio_data = wav;
        in.audio_len = sizeof wav;
    } else {
        return CGE_OK; /* image-only: the dimension check stands */
    }
    float *out = cge__malloc(sizeof(float) * (size_t)dim);
    if (!out) return cge__err(CGE_ERR_NOMEM, "probe");
    struct cge_embed_info info;
    enum cge_status st = cge_model_embed(m, &in, 1, out, &info);
    if (!st && info.status) st = cge__err(info.status, "E%d: the probe input failed: %s", s + 1, info.errmsg);
    for (int i = 0; i < dim && !st; i++)
        if (!isfinite(out[i])) st = cge__err(CGE_ERR_INVALID_VALUE, "E%d: the probe input gives a non-finite vector", s + 1);
    cge__free(out);
    return st;
}

/* "query=DIR,document=DIR" for E10, else one folder. */
static enum cge_status parse_swap_path(int s, const char *path, struct cge__slot_spec *sp) {
    const char *q = strstr(path, "query=");
    const char *d = strstr(path, "document=");
    if (s == CGE__SLOT_E10 && q && d) {
        const char *qe = strchr(q, ',');
        const char *de = strchr(d, ',');
        size_t ql = qe && qe > q ? (size_t)(qe - q - 6) : strlen(q + 6);
        size_t dl = de && de > d ? (size_t)(de - d - 9) : strlen(d + 9);
        if (ql >= CGE_CONFIG_PATH_MAX || dl >= CGE_CONFIG_PATH_MAX || !ql || !dl)
            return cge__err(CGE_ERR_INVALID_VALUE, "E10: bad \"query=DIR,document=DIR\"");
        memcpy(sp->path_query, q + 6, ql);
        sp->path_query[ql] = '\0';
        memcpy(sp->path, d + 9, dl);
        sp->path[dl] = '\0';
        return CGE_OK;
    }
    if (strlen(path) >= CGE_CONFIG_PATH_MAX) return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    snprintf(sp->path, sizeof sp->path, "%s", path);
    sp->path_query[0] = '\0';
    return CGE_OK;
}

enum cge_status cge_engine_swap(struct cge_engine *e, int s, const char *path, uint64_t *version) {
    if (!e || s < 0 || s >= CGE_N_SLOTS || !path)
        return cge__err(CGE_ERR_INVALID_VALUE, "cge_engine_swap: bad arguments");
    struct slot *sl = &e->slots[s];
    if (!sl->configured)
        return cge__err(CGE_ERR_MODEL_NOT_FOUND, "E%d is not in the ensemble (nothing to swap)", s + 1);
    pthread_mutex_lock(&sl->swap_mu);
    struct cge__slot_spec spec = sl->spec;
    enum cge_status st = parse_swap_path(s, path, &spec);
    struct handle *h = NULL;
    int64_t t0 = cge__now_us();
    if (!st) st = load_handle(e, s, &spec, estimate_bytes(&spec), &h);
    if (!st) st = probe(h->doc, sl->fusion_dim, s);
    if (!st && h->query) st = probe(h->query, sl->fusion_dim, s);
    const int64_t limit_ms = e->p.swap_timeout_ms > 0 ? e->p.swap_timeout_ms : 60000;
    if (!st && (cge__now_us() - t0) / 1000 > limit_ms)
        st = cge__err(CGE_ERR_TIMEOUT, "E%d: loading and validating took %lld ms, over the swap limit of %lld ms",
                      s + 1, (long long)((cge__now_us() - t0) / 1000), (long long)limit_ms);
    if (st) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        handle_free(h);
        pthread_mutex_unlock(&sl->swap_mu);
        return cge__err(st, "swap of E%d refused, the old model keeps serving: %s", s + 1, msg);
    }
    pthread_mutex_lock(&sl->mu);
    while (sl->state == CGE_LOAD_LOADING) pthread_cond_wait(&sl->cv, &sl->mu);
    struct handle *old = sl->cur;
    h->version = sl->version + 1;
    sl->version = h->version;
    sl->cur = h;
    sl->spec = spec;
    sl->state = CGE_LOAD_READY;
    sl->load_ms = (cge__now_us() - t0) / 1000;
    sl->err[0] = '\0';
    pthread_mutex_unlock(&sl->mu);
    if (version) *version = h->version;
    pthread_mutex_lock(&e->mu);
    update_identity(e);
    pthread_mutex_unlock(&e->mu);
    handle_release(sl, old);
    pthread_mutex_unlock(&sl->swap_mu);
    return CGE_OK;
}

enum cge_status cge_engine_unload(struct cge_engine *e, int s) {
    if (!e || s < 0 || s >= CGE_N_SLOTS) return cge__err(CGE_ERR_INVALID_VALUE, "cge_engine_unload: bad slot");
    struct slot *sl = &e->slots[s];
    if (!sl->configured) return cge__err(CGE_ERR_MODEL_NOT_FOUND, "E%d is not in the ensemble", s + 1);
    pthread_mutex_lock(&sl->swap_mu);
    pthread_mutex_lock(&sl->mu);
    while (sl->state == CGE_LOAD_LOADING) pthread_cond_wait(&sl->cv, &sl->mu);
    struct handle *old = sl->cur;
    sl->cur = NULL;
    sl->state = CGE_LOAD_UNLOADED;
    pthread_mutex_unlock(&sl->mu);
    handle_release(sl, old);
    pthread_mutex_unlock(&sl->swap_mu);
    return CGE_OK;
}
