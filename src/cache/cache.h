/*
 * cache.h: the embedding cache. A request (modality, content, instruction, role, ensemble
 * version) maps to its fused embedding (and optionally the per-slot embeddings).
 *
 * Two tiers:
 *  - memory: sharded hash tables, one lock per shard, each shard running one eviction policy
 *    (LRU, LFU, TTL-LRU or ARC) under an entry-count and a byte limit. A hit is lock + copy into
 *    the caller's buffer; it never allocates.
 *  - disk (optional, params.path): one LMDB file (MDB_NOSUBDIR: PATH and PATH-lock). Puts are
 *    written behind by a background thread in batches (one transaction each); close flushes;
 *    open loads the newest entries into memory (warm start); a memory miss reads through to disk.
 *    Each record carries an xxhash checksum, its full key and its dimensions; a header record names
 *    the format version, ensemble version and dimensions. A file that is structurally corrupt or
 *    truncated is moved aside (PATH.corrupt-<unix time>) and the cache starts empty; a file made for
 *    another ensemble version or dimension is emptied (its entries could never match anyway).
 *
 * Keys: two independent 64-bit hashes (XXH3-64 and XXH64 with another seed) of one canonical,
 * length-prefixed encoding of the request, plus the content length. All three must match for a
 * hit, so a returned vector belongs to the request short of a 128-bit collision on equal lengths.
 *
 * Thread safety: every function taking a struct cge_cache is thread-safe, except cge_cache_close,
 * which must be the last call. The file functions (cge_cache_file_*) may run while another process
 * has the cache open.
 */
#ifndef CGE_CACHE_H
#define CGE_CACHE_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

/* ==== Keys ==================================================================================== */

/* Request roles (DRAGON+ picks its encoder by role). */
enum cge_cache_role { CGE_CACHE_ROLE_NONE = 0, CGE_CACHE_ROLE_QUERY = 1, CGE_CACHE_ROLE_DOC = 2 };

struct cge_cache_request {
    unsigned modality;            /* one enum cge_modality bit */
    int role;                     /* enum cge_cache_role */
    const void *content;          /* content bytes (text as UTF-8, or the raw image/audio file) */
    size_t content_len;           /* bytes in content */
    const char *instruction;      /* NULL is the same as "" */
    const char *ensemble_version; /* NULL is the same as "" */
};

struct cge_cache_key {
    uint64_t h1;          /* XXH3-64 (seed 0) of the canonical encoding */
    uint64_t h2;          /* XXH64 (another seed) of the same bytes: independent of h1 */
    uint64_t content_len; /* the request's content length */
};

/* Fills *out from a request. Never fails. */
void cge_cache_key_make(const struct cge_cache_request *req, struct cge_cache_key *out);

/* ==== Parameters ============================================================================== */

/* enum cge_cache_policy lives in cge.h (the configuration's cache.policy): LRU (default), LFU
 * (ties go to the least recently used), TTL-LRU (LRU, and an entry older than ttl_seconds is a
 * miss), ARC (Megiddo & Modha 2003, one per shard). */
const char *cge_cache_policy_str(enum cge_cache_policy p);
/* "lru", "lfu", "ttl_lru" (also "ttl-lru", "ttl"), "arc"; CGE_ERR_INVALID_VALUE otherwise. */
enum cge_status cge_cache_policy_parse(const char *s, enum cge_cache_policy *out);

/* A clock in microseconds of wall time (entries' created/last-access times are stored on disk,
 * so this is the Unix epoch, not a monotonic clock). Tests inject their own. */
typedef int64_t (*cge_cache_clock_fn)(void *user);

struct cge_cache_params {
    enum cge_cache_policy policy; /* default CGE_CACHE_LRU */
    uint64_t max_entries;         /* memory tier, entries (default 100,000) */
    uint64_t max_bytes;           /* memory tier, bytes incl. per-entry overhead (default 1 GiB) */
    double ttl_seconds;           /* TTL-LRU: lifetime from creation; 0 = never expires
                                     (default 3600) */
    int n_shards;                 /* lock shards, rounded up to a power of 2 (0: 16). Limits are
                                     split evenly; use 1 for an exact global order (tests). */
    const char *path;             /* disk tier file (an existing folder: FOLDER/cache.mdb);
                                     NULL or "" for memory only */
    const char *ensemble_version; /* written in the file's header; NULL is "" */
    uint64_t disk_max_bytes;      /* LMDB map size: the file never grows past it (default 2 GiB);
                                     the oldest entries are evicted at 80 % live pages */
    int flush_interval_ms;        /* write-behind: longest wait before a batch goes (default 50) */
    int flush_batch;              /* write-behind: entries per transaction (default 512) */
    int warm_start;               /* load the newest disk entries into memory on open (default 1) */
    int durable;                  /* fsync each batch (default 1); 0 still survives a killed
                                     process, not a power loss */
    cge_cache_clock_fn clock;     /* NULL: the system's real-time clock */
    void *clock_user;             /* passed to clock */
};
struct cge_cache_params cge_cache_default_params(void);
/* Defaults, then the configuration's cache section (policy, max_entries, max_bytes, ttl_seconds,
 * path; "enabled" is the caller's to check). out->path points into cfg: keep cfg alive until
 * cge_cache_open has returned (open copies what it keeps). */
void cge_cache_params_from_config(const struct cge_cache_config *cfg,
                                  const char *ensemble_version, struct cge_cache_params *out);

/* ==== The cache =============================================================================== */

struct cge_cache;

/* Opens a cache. On a corrupt file the file is moved aside, a warning is logged, and the cache
 * opens empty with CGE_OK (see stats.corrupt_moved). Errors: CGE_ERR_INVALID_VALUE (params),
 * CGE_ERR_IO / CGE_ERR_CACHE (the file cannot be created or locked), CGE_ERR_NOMEM. */
enum cge_status cge_cache_open(const struct cge_cache_params *p, struct cge_cache **out);

/* Flushes the write-behind queue to disk and frees everything. NULL is a no-op. */
void cge_cache_close(struct cge_cache *c);

/* Looks a key up. Returns 1 on a hit: *out gets the fused embedding; when slots is not NULL it
 * gets the per-slot concatenation (cge_total_dim() floats) if the entry holds one, and *present
 * (when not NULL) its presence mask (0 when the entry holds no slots; slots is then untouched).
 * Returns 0 on a miss (out untouched). A memory hit takes one shard lock and copies; no
 * allocation. A memory miss reads through to the disk tier when there is one. */
int cge_cache_get(struct cge_cache *c, const struct cge_cache_key *key,
                  struct cge_fused_embedding *out, float *slots, uint32_t *present);

/* Stores an entry (replacing one with the same key). slots may be NULL (no per-slot vectors);
 * otherwise it holds cge_total_dim() floats and present says which slots are real. The fused
 * embedding must pass cge_fused_validate (CGE_ERR_INVALID_VALUE otherwise: a NaN is never cached).
 * An entry larger than the byte limit is not kept in memory (still written to disk). With a disk
 * tier the write is queued (a put waits while 8 batches are queued: backpressure on a slow disk);
 * cge_cache_flush waits for it. */
enum cge_status cge_cache_put(struct cge_cache *c, const struct cge_cache_key *key,
                              const struct cge_fused_embedding *f, const float *slots,
                              uint32_t present);

/* Removes a key from memory and (with a disk tier) queues its removal from disk; until that is
 * flushed, a concurrent get may still read the old record through from disk. Returns 1 if it was
 * in memory. */
int cge_cache_remove(struct cge_cache *c, const struct cge_cache_key *key);

/* Waits until every put made before the call is committed to disk. No-op without disk.
 * CGE_ERR_CACHE when a batch failed meanwhile (e.g. the disk is full): those entries are lost
 * from disk, not from memory. */
enum cge_status cge_cache_flush(struct cge_cache *c);

/* An entry's metadata, without counting an access. */
struct cge_cache_entry_meta {
    int64_t created_us;     /* when it was first put (clock) */
    int64_t last_access_us; /* last get hit or put */
    uint64_t access_count;  /* puts + hits */
    size_t bytes;           /* memory it takes, overhead included */
};
/* 1 and *out filled when the key is resident in memory; 0 otherwise (ARC ghosts are not). */
int cge_cache_peek(struct cge_cache *c, const struct cge_cache_key *key,
                   struct cge_cache_entry_meta *out);

struct cge_cache_stats {
    uint64_t hits;           /* gets that returned an entry (memory or disk) */
    uint64_t misses;         /* gets that did not */
    uint64_t disk_hits;      /* of hits, those read through from disk */
    uint64_t puts;           /* successful puts */
    uint64_t evictions;      /* entries dropped from memory by the policy or the limits */
    uint64_t expirations;    /* TTL-LRU entries found expired */
    uint64_t entries;        /* resident in memory now */
    uint64_t bytes;          /* memory bytes now */
    uint64_t ghosts;         /* ARC ghost entries (keys only) */
    double hit_rate;         /* hits / (hits + misses); 0 before any get */
    uint64_t disk_entries;   /* records on disk (at the last batch) */
    uint64_t disk_bytes;     /* live bytes in the LMDB file (at the last batch) */
    uint64_t disk_writes;    /* records committed */
    uint64_t disk_evictions; /* records evicted from disk for the size bound */
    uint64_t disk_errors;    /* failed batches, bad records found at read */
    uint64_t warm_loaded;    /* entries loaded on open */
    int corrupt_moved;       /* 1 when open found the file corrupt and moved it aside */
};
void cge_cache_get_stats(struct cge_cache *c, struct cge_cache_stats *out);

/* ==== Files (tools: cge cache stats / verify) ================================================= */

struct cge_cache_file_info {
    uint32_t format_version;
    uint32_t fused_dim;
    uint32_t total_dim;
    char ensemble_version[257];
    int64_t created_us;        /* when the file's header was written */
    uint64_t entries;          /* records */
    uint64_t entries_with_slots;
    uint64_t file_bytes;       /* size of PATH */
    uint64_t live_bytes;       /* pages in use by the B-trees */
    uint64_t map_bytes;        /* LMDB map size recorded in the file */
    int64_t oldest_us, newest_us; /* record creation times (0 when empty) */
};
/* Reads a file's header and counts, read-only (checks the structure first; never moves the
 * file). CGE_ERR_CACHE with a message when the file is corrupt or not a cache. */
enum cge_status cge_cache_file_info(const char *path, struct cge_cache_file_info *out);

struct cge_cache_verify_report {
    uint64_t records;      /* records read */
    uint64_t bad;          /* records with any inconsistency */
    uint64_t recomputed;   /* records compared against cge_cache_synthetic (synthetic files) */
    char first_error[256]; /* the first problem found ("" when none) */
};
/* Checks every record of a file, read-only: the LMDB structure, the header, each record's
 * checksum, key, dimensions and invariants (cge_fused_validate), the age index; and for files
 * made by `cge cache bench` (ensemble version CGE_CACHE_SYNTHETIC_VERSION) recomputes each vector
 * from its key and compares bit for bit. CGE_OK when clean, CGE_ERR_CACHE otherwise. */
enum cge_status cge_cache_file_verify(const char *path, struct cge_cache_verify_report *out);

/* ==== Synthetic entries (bench, crash test, verify) ============================================ */

#define CGE_CACHE_SYNTHETIC_VERSION "cge-cache-synthetic-1"
/* The key of synthetic item i. */
void cge_cache_synthetic_key(uint64_t i, struct cge_cache_key *out);
/* A valid fused embedding that is a deterministic function of the key (unit vector, gate weights
 * summing to 1, two distinct experts). */
void cge_cache_synthetic(const struct cge_cache_key *key, struct cge_fused_embedding *out);

#endif /* CGE_CACHE_H */
