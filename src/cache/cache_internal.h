/*
 * cache_internal.h: what the cache's files share: the record and header codecs (cache_record.c),
 * the memory tier (cache_mem.c), the disk tier (cache_disk.c) and the LMDB file checker
 * (cache_lmdbcheck.c). Not part of any interface outside src/cache/.
 */
#ifndef CGE_CACHE_INTERNAL_H
#define CGE_CACHE_INTERNAL_H

#include "cache/cache.h"

#include <stddef.h>
#include <stdint.h>

/* ==== Records ==================================================================================
 * A stored entry, little-endian, fixed layout:
 *   0 u32 magic "CGEr"      4 u32 fused_dim      8 u32 n_experts   12 u32 top_k
 *  16 u64 h1               24 u64 h2            32 u64 content_len
 *  40 u64 seq (age index)  48 i64 created_us    56 i64 last_us      64 u64 access_count
 *  72 u32 present          76 u32 n_slot_floats 80 i64 latency_us
 *  88 f32 vector[fused_dim], f32 expert_weights[n_experts], i32 selected[top_k],
 *     f32 slots[n_slot_floats], u64 XXH3-64 of every byte before it. */
#define CGE__REC_MAGIC      0x72454743u /* "CGEr" */
#define CGE__HDR_MAGIC      0x48454743u /* "CGEH" */
#define CGE__FORMAT_VERSION 1u
#define CGE__REC_FIXED      88u

struct cge__rec {
    struct cge_cache_key key;
    uint64_t seq;
    int64_t created_us;
    int64_t last_us;
    uint64_t access_count;
    uint32_t present;
    uint32_t n_slot_floats; /* 0 or cge_total_dim() */
    struct cge_fused_embedding fused;
    const unsigned char *slots_le; /* decode: n_slot_floats floats inside the buffer (unaligned) */
};

size_t cge__rec_size(uint32_t n_slot_floats);
/* Writes cge__rec_size(r->n_slot_floats) bytes; slots: n_slot_floats floats (or NULL if 0). */
void cge__rec_encode(unsigned char *buf, const struct cge__rec *r, const float *slots);
/* Checks size, magic, dimensions and checksum; fills *out (slots_le points into buf).
 * CGE_ERR_CACHE with a message on any mismatch. */
enum cge_status cge__rec_decode(const void *buf, size_t len, struct cge__rec *out);
/* Copies a decoded record's slots into dst (n_slot_floats floats). */
void cge__rec_copy_slots(const struct cge__rec *r, float *dst);

/* The header record: magic, format version, dimensions, creation time, ensemble version. */
struct cge__hdr {
    uint32_t format_version;
    uint32_t fused_dim;
    uint32_t total_dim;
    uint32_t n_experts;
    uint32_t top_k;
    int64_t created_us;
    char ensemble_version[257];
};
#define CGE__HDR_MAX 320
/* Returns the encoded length (<= CGE__HDR_MAX). */
size_t cge__hdr_encode(unsigned char *buf, const struct cge__hdr *h);
enum cge_status cge__hdr_decode(const void *buf, size_t len, struct cge__hdr *out);
/* This build's header for an ensemble version (format, dims); created_us left to the caller. */
void cge__hdr_current(struct cge__hdr *h, const char *ensemble_version);

/* ==== LMDB file check ===========================================================================
 * Reads PATH with pread (never mmap: a truncated file must not SIGBUS) and walks both meta pages
 * and every B-tree page reachable from the newest meta (free list, main DB, named DBs), checking
 * page numbers, flags, node bounds, overflow runs and that no page is used twice. LMDB itself
 * trusts its file; this is what makes opening arbitrary bytes safe.
 * CGE_OK: sound; CGE_ERR_CACHE: corrupt (why filled); CGE_ERR_IO: unreadable / missing. */
struct cge__lmdb_info {
    uint64_t psize;
    uint64_t last_pg;
    uint64_t mapsize;
    uint64_t txnid;
    uint64_t file_bytes;
    uint64_t live_pages; /* pages of the main DB and named DBs (not the free list) */
};
enum cge_status cge__lmdb_check(const char *path, struct cge__lmdb_info *info, char *why,
                                size_t why_len);

/* ==== Memory tier ============================================================================== */
struct cge__mem;
enum cge_status cge__mem_new(const struct cge_cache_params *p, struct cge__mem **out);
void cge__mem_free(struct cge__mem *m);
int cge__mem_get(struct cge__mem *m, const struct cge_cache_key *k, int64_t now,
                 struct cge_fused_embedding *out, float *slots, uint32_t *present);
/* Inserts or replaces. load=1 (warm start): the entry goes to the cold end of the policy's order
 * and nothing resident is evicted for it (returns 0 when it did not fit). Returns 1 when the
 * entry is resident afterwards, 0 when it was not kept, -1 on allocation failure. */
int cge__mem_put(struct cge__mem *m, const struct cge_cache_key *k, int64_t now,
                 const struct cge_fused_embedding *f, const float *slots, uint32_t n_slot_floats,
                 uint32_t present, int64_t created_us, uint64_t access_count, int load);
int cge__mem_remove(struct cge__mem *m, const struct cge_cache_key *k);
int cge__mem_peek(struct cge__mem *m, const struct cge_cache_key *k,
                  struct cge_cache_entry_meta *out);
/* Adds the memory tier's counters into *out (hits, misses, evictions, expirations, entries,
 * bytes, ghosts). */
void cge__mem_stats(struct cge__mem *m, struct cge_cache_stats *out);
/* Counts a miss that the caller resolved elsewhere (a disk hit is counted by the caller). */
void cge__mem_count(struct cge__mem *m, const struct cge_cache_key *k, int hit);

/* ==== Disk tier ================================================================================ */
struct cge__disk;
/* Opens (creating) the file; checks it; moves it aside when corrupt (*moved = 1). */
enum cge_status cge__disk_open(const struct cge_cache_params *p, struct cge__disk **out,
                               int *moved);
/* Starts the write-behind thread (after the warm-start scan). */
enum cge_status cge__disk_start(struct cge__disk *d);
/* Drains the queue and closes. NULL is a no-op. */
void cge__disk_close(struct cge__disk *d);
/* Queues a record for writing (takes ownership of rec, a cge__malloc'd buffer of len bytes);
 * rec == NULL queues a delete of key. May wait while the queue is full. */
void cge__disk_enqueue(struct cge__disk *d, const struct cge_cache_key *k, unsigned char *rec,
                       size_t len);
/* Reads a key's record, verified, into *r (r->slots_le is NULL) and, when it holds slot vectors,
 * a cge__malloc'd copy of them in *slots. Returns 0 when absent or bad (a bad record is counted
 * in disk_errors and logged). */
int cge__disk_get(struct cge__disk *d, const struct cge_cache_key *k, struct cge__rec *r,
                  float **slots);
/* Calls fn for records newest first until it returns 0. A bad record makes it return
 * CGE_ERR_CACHE (the caller treats the file as corrupt). */
enum cge_status cge__disk_scan(struct cge__disk *d,
                               int (*fn)(void *user, const struct cge__rec *r), void *user);
enum cge_status cge__disk_flush(struct cge__disk *d);
/* Moves the file aside and reopens empty (after a bad record during warm start). */
enum cge_status cge__disk_reset_corrupt(struct cge__disk *d, const char *why);
void cge__disk_stats(struct cge__disk *d, struct cge_cache_stats *out);
uint64_t cge__disk_next_seq(struct cge__disk *d);

/* The default clock: CLOCK_REALTIME in microseconds. */
int64_t cge__cache_wall_us(void *user);
/* Renames path to path.corrupt-<unix seconds> (and a counter when taken) and removes path-lock.
 * Writes the new name into moved_to. */
enum cge_status cge__cache_move_aside(const char *path, char *moved_to, size_t cap);

#endif /* CGE_CACHE_INTERNAL_H */
