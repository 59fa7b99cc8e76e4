/*
 * cache_record.c: cache keys, the byte layout of stored records and of the file header,
 * synthetic entries, and small helpers (clock, policy names, moving a corrupt file aside).
 *
 * Key decision: everything that reaches the disk is a fixed little-endian layout closed by an
 * XXH3-64 checksum of all the bytes before it, and decoding checks the size implied by the
 * layout before touching anything. A record that decodes is exactly what was encoded, or the
 * checksum (and the key, repeated inside the record) says otherwise.
 */
#include "cache/cache_internal.h"
#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: no allocation per key */
#include <xxhash.h>

/* The second hash's seed: any constant unrelated to the first (the golden ratio's bits). */
#define KEY_SEED2 0x9E3779B97F4A7C15ull

/* ==== Keys ==================================================================================== */

/* The canonical encoding is a tag, then each field as a little-endian u64 length (or value)
 * followed by its bytes. Length prefixes make the encoding injective: ("ab","c") and ("a","bc")
 * never produce the same bytes. */
static void feed_u64(XXH3_state_t *s3, XXH64_state_t *s64, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    XXH3_64bits_update(s3, b, 8);
    XXH64_update(s64, b, 8);
}

static void feed_bytes(XXH3_state_t *s3, XXH64_state_t *s64, const void *p, size_t n) {
    feed_u64(s3, s64, (uint64_t)n);
    if (n) {
        XXH3_64bits_update(s3, p, n);
        XXH64_update(s64, p, n);
    }
}

void cge_cache_key_make(const struct cge_cache_request *req, struct cge_cache_key *out) {
    /* The states live on the stack: no allocation on the lookup path. */
    XXH3_state_t s3;
    XXH64_state_t s64;
    XXH3_INITSTATE(&s3);
    XXH3_64bits_reset(&s3);
    XXH64_reset(&s64, KEY_SEED2);
    static const char tag[] = "cge-cache-key-v1";
    XXH3_64bits_update(&s3, tag, sizeof tag - 1);
    XXH64_update(&s64, tag, sizeof tag - 1);
    const char *ins = req->instruction ? req->instruction : "";
    const char *ver = req->ensemble_version ? req->ensemble_version : "";
    feed_bytes(&s3, &s64, ver, strlen(ver));
    feed_u64(&s3, &s64, (uint64_t)req->modality);
    feed_u64(&s3, &s64, (uint64_t)(int64_t)req->role);
    feed_bytes(&s3, &s64, ins, strlen(ins));
    feed_bytes(&s3, &s64, req->content_len ? req->content : "", req->content_len);
    out->h1 = XXH3_64bits_digest(&s3);
    out->h2 = XXH64_digest(&s64);
    out->content_len = (uint64_t)req->content_len;
}

/* ==== Little-endian helpers ==================================================================
 * The layout is little-endian; on a little-endian host (x86, ARM) the float arrays are copied
 * whole, elsewhere byte by byte. memcpy keeps both alignment-safe (LMDB values are unaligned). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#    define LITTLE_ENDIAN_HOST 1
#else
#    define LITTLE_ENDIAN_HOST 0
#endif

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
#if !LITTLE_ENDIAN_HOST
static void putf(unsigned char *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put32(p, u);
}
static float getf(const unsigned char *p) {
    uint32_t u = get32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#endif

/* ==== Records ================================================================================= */

size_t cge__rec_size(uint32_t n_slot_floats) {
    return CGE__REC_FIXED + 4u * CGE_FUSED_DIM + 4u * CGE_N_EXPERTS + 4u * CGE_TOP_K +
           4u * (size_t)n_slot_floats + 8u;
}

void cge__rec_encode(unsigned char *buf, const struct cge__rec *r, const float *slots) {
    put32(buf + 0, CGE__REC_MAGIC);
    put32(buf + 4, CGE_FUSED_DIM);
    put32(buf + 8, CGE_N_EXPERTS);
    put32(buf + 12, CGE_TOP_K);
    put64(buf + 16, r->key.h1);
    put64(buf + 24, r->key.h2);
    put64(buf + 32, r->key.content_len);
    put64(buf + 40, r->seq);
    put64(buf + 48, (uint64_t)r->created_us);
    put64(buf + 56, (uint64_t)r->last_us);
    put64(buf + 64, r->access_count);
    put32(buf + 72, r->present);
    put32(buf + 76, r->n_slot_floats);
    put64(buf + 80, (uint64_t)r->fused.latency_us);
    unsigned char *p = buf + CGE__REC_FIXED;
#if LITTLE_ENDIAN_HOST
    memcpy(p, r->fused.vector, 4 * CGE_FUSED_DIM);
    memcpy(p + 4 * CGE_FUSED_DIM, r->fused.expert_weights, 4 * CGE_N_EXPERTS);
    p += 4 * (CGE_FUSED_DIM + CGE_N_EXPERTS);
#else
    for (int i = 0; i < CGE_FUSED_DIM; i++, p += 4) putf(p, r->fused.vector[i]);
    for (int i = 0; i < CGE_N_EXPERTS; i++, p += 4) putf(p, r->fused.expert_weights[i]);
#endif
    for (int i = 0; i < CGE_TOP_K; i++, p += 4) put32(p, (uint32_t)r->fused.selected[i]);
#if LITTLE_ENDIAN_HOST
    if (r->n_slot_floats) memcpy(p, slots, 4 * (size_t)r->n_slot_floats);
    p += 4 * (size_t)r->n_slot_floats;
#else
    for (uint32_t i = 0; i < r->n_slot_floats; i++, p += 4) putf(p, slots[i]);
#endif
    put64(p, XXH3_64bits(buf, (size_t)(p - buf)));
}

enum cge_status cge__rec_decode(const void *buf, size_t len, struct cge__rec *out) {
    const unsigned char *b = buf;
    if (len < cge__rec_size(0))
        return cge__err(CGE_ERR_CACHE, "cache record: %zu bytes, at least %zu expected", len,
                        cge__rec_size(0));
    if (get32(b) != CGE__REC_MAGIC)
        return cge__err(CGE_ERR_CACHE, "cache record: bad magic 0x%08x", get32(b));
    if (get32(b + 4) != CGE_FUSED_DIM || get32(b + 8) != CGE_N_EXPERTS ||
        get32(b + 12) != CGE_TOP_K)
        return cge__err(CGE_ERR_CACHE, "cache record: dimensions %u/%u/%u, expected %d/%d/%d",
                        get32(b + 4), get32(b + 8), get32(b + 12), CGE_FUSED_DIM, CGE_N_EXPERTS,
                        CGE_TOP_K);
    uint32_t ns = get32(b + 76);
    if (ns != 0 && ns != (uint32_t)cge_total_dim())
        return cge__err(CGE_ERR_CACHE, "cache record: %u slot floats, expected 0 or %d", ns,
                        cge_total_dim());
    if (len != cge__rec_size(ns))
        return cge__err(CGE_ERR_CACHE, "cache record: %zu bytes, expected %zu", len,
                        cge__rec_size(ns));
    uint64_t sum = XXH3_64bits(b, len - 8);
    if (sum != get64(b + len - 8))
        return cge__err(CGE_ERR_CACHE, "cache record: checksum mismatch");
    memset(out, 0, sizeof *out);
    out->key.h1 = get64(b + 16);
    out->key.h2 = get64(b + 24);
    out->key.content_len = get64(b + 32);
    out->seq = get64(b + 40);
    out->created_us = (int64_t)get64(b + 48);
    out->last_us = (int64_t)get64(b + 56);
    out->access_count = get64(b + 64);
    out->present = get32(b + 72);
    out->n_slot_floats = ns;
    out->fused.latency_us = (int64_t)get64(b + 80);
    out->fused.content_hash = out->key.h1;
    const unsigned char *p = b + CGE__REC_FIXED;
#if LITTLE_ENDIAN_HOST
    memcpy(out->fused.vector, p, 4 * CGE_FUSED_DIM);
    memcpy(out->fused.expert_weights, p + 4 * CGE_FUSED_DIM, 4 * CGE_N_EXPERTS);
    p += 4 * (CGE_FUSED_DIM + CGE_N_EXPERTS);
#else
    for (int i = 0; i < CGE_FUSED_DIM; i++, p += 4) out->fused.vector[i] = getf(p);
    for (int i = 0; i < CGE_N_EXPERTS; i++, p += 4) out->fused.expert_weights[i] = getf(p);
#endif
    for (int i = 0; i < CGE_TOP_K; i++, p += 4) out->fused.selected[i] = (int)get32(p);
    out->slots_le = p;
    return CGE_OK;
}

void cge__rec_copy_slots(const struct cge__rec *r, float *dst) {
#if LITTLE_ENDIAN_HOST
    memcpy(dst, r->slots_le, 4 * (size_t)r->n_slot_floats);
#else
    for (uint32_t i = 0; i < r->n_slot_floats; i++) dst[i] = getf(r->slots_le + 4 * (size_t)i);
#endif
}

/* ==== Header ==================================================================================
 * 0 u32 magic "CGEH", 4 u32 format, 8 u32 fused_dim, 12 u32 total_dim, 16 u32 n_experts,
 * 20 u32 top_k, 24 i64 created_us, 32 u32 version length (<= 256), 36 version bytes, u64 XXH3. */

size_t cge__hdr_encode(unsigned char *buf, const struct cge__hdr *h) {
    size_t vl = strnlen(h->ensemble_version, 256);
    put32(buf + 0, CGE__HDR_MAGIC);
    put32(buf + 4, h->format_version);
    put32(buf + 8, h->fused_dim);
    put32(buf + 12, h->total_dim);
    put32(buf + 16, h->n_experts);
    put32(buf + 20, h->top_k);
    put64(buf + 24, (uint64_t)h->created_us);
    put32(buf + 32, (uint32_t)vl);
    memcpy(buf + 36, h->ensemble_version, vl);
    put64(buf + 36 + vl, XXH3_64bits(buf, 36 + vl));
    return 36 + vl + 8;
}

enum cge_status cge__hdr_decode(const void *buf, size_t len, struct cge__hdr *out) {
    const unsigned char *b = buf;
    if (len < 44) return cge__err(CGE_ERR_CACHE, "cache header: %zu bytes, too short", len);
    if (get32(b) != CGE__HDR_MAGIC)
        return cge__err(CGE_ERR_CACHE, "cache header: bad magic 0x%08x", get32(b));
    uint32_t vl = get32(b + 32);
    if (vl > 256 || len != 44 + (size_t)vl)
        return cge__err(CGE_ERR_CACHE, "cache header: version length %u in %zu bytes", vl, len);
    if (XXH3_64bits(b, 36 + vl) != get64(b + 36 + vl))
        return cge__err(CGE_ERR_CACHE, "cache header: checksum mismatch");
    memset(out, 0, sizeof *out);
    out->format_version = get32(b + 4);
    out->fused_dim = get32(b + 8);
    out->total_dim = get32(b + 12);
    out->n_experts = get32(b + 16);
    out->top_k = get32(b + 20);
    out->created_us = (int64_t)get64(b + 24);
    memcpy(out->ensemble_version, b + 36, vl);
    out->ensemble_version[vl] = '\0';
    return CGE_OK;
}

void cge__hdr_current(struct cge__hdr *h, const char *ensemble_version) {
    memset(h, 0, sizeof *h);
    h->format_version = CGE__FORMAT_VERSION;
    h->fused_dim = CGE_FUSED_DIM;
    h->total_dim = (uint32_t)cge_total_dim();
    h->n_experts = CGE_N_EXPERTS;
    h->top_k = CGE_TOP_K;
    snprintf(h->ensemble_version, sizeof h->ensemble_version, "%s",
             ensemble_version ? ensemble_version : "");
}

/* ==== Synthetic entries ======================================================================= */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void cge_cache_synthetic_key(uint64_t i, struct cge_cache_key *out) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "synthetic item %llu", (unsigned long long)i);
    struct cge_cache_request r = {.modality = CGE_MOD_TEXT,
                                  .content = buf,
                                  .content_len = (size_t)n,
                                  .ensemble_version = CGE_CACHE_SYNTHETIC_VERSION};
    cge_cache_key_make(&r, out);
}

void cge_cache_synthetic(const struct cge_cache_key *key, struct cge_fused_embedding *out) {
    uint64_t s = key->h1 ^ (key->h2 * 31) ^ key->content_len;
    double ss = 0;
    for (int i = 0; i < CGE_FUSED_DIM; i++) {
        float v = (float)((double)(splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0) * 2 - 1);
        out->vector[i] = v;
        ss += (double)v * v;
    }
    float inv = (float)(1.0 / sqrt(ss));
    for (int i = 0; i < CGE_FUSED_DIM; i++) out->vector[i] *= inv;
    double sum = 0;
    for (int e = 0; e < CGE_N_EXPERTS; e++) {
        out->expert_weights[e] = (float)(0.05 + (double)(splitmix64(&s) >> 40) / 16777216.0);
        sum += out->expert_weights[e];
    }
    int best = 0, second = -1;
    for (int e = 0; e < CGE_N_EXPERTS; e++) {
        out->expert_weights[e] = (float)(out->expert_weights[e] / sum);
        if (out->expert_weights[e] > out->expert_weights[best]) best = e;
    }
    for (int e = 0; e < CGE_N_EXPERTS; e++)
        if (e != best && (second < 0 || out->expert_weights[e] > out->expert_weights[second]))
            second = e;
    out->selected[0] = best;
    out->selected[1] = second;
    out->latency_us = (int64_t)(key->h2 & 0xffff);
    out->content_hash = key->h1;
}

/* ==== Small helpers =========================================================================== */

const char *cge_cache_policy_str(enum cge_cache_policy p) {
    switch (p) {
    case CGE_CACHE_LRU: return "lru";
    case CGE_CACHE_LFU: return "lfu";
    case CGE_CACHE_TTL_LRU: return "ttl_lru";
    case CGE_CACHE_ARC: return "arc";
    }
    return "?";
}

enum cge_status cge_cache_policy_parse(const char *s, enum cge_cache_policy *out) {
    if (!s) return cge__err(CGE_ERR_INVALID_VALUE, "cache policy: none given");
    if (!strcmp(s, "lru")) *out = CGE_CACHE_LRU;
    else if (!strcmp(s, "lfu")) *out = CGE_CACHE_LFU;
    else if (!strcmp(s, "ttl_lru") || !strcmp(s, "ttl-lru") || !strcmp(s, "ttl"))
        *out = CGE_CACHE_TTL_LRU;
    else if (!strcmp(s, "arc")) *out = CGE_CACHE_ARC;
    else
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "cache policy '%s': expected lru, lfu, ttl_lru or arc", s);
    return CGE_OK;
}

int64_t cge__cache_wall_us(void *user) {
    (void)user;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

enum cge_status cge__cache_move_aside(const char *path, char *moved_to, size_t cap) {
    long t = (long)time(NULL);
    for (int k = 0; k < 100; k++) {
        int n = k ? snprintf(moved_to, cap, "%s.corrupt-%ld-%d", path, t, k)
                  : snprintf(moved_to, cap, "%s.corrupt-%ld", path, t);
        if (n < 0 || (size_t)n >= cap)
            return cge__err(CGE_ERR_IO, "%s: path too long to move aside", path);
        struct stat st;
        if (stat(moved_to, &st) == 0) continue;
        if (rename(path, moved_to) != 0)
            return cge__err(CGE_ERR_IO, "%s: cannot move aside to %s: %s", path, moved_to,
                            strerror(errno));
        char lock[4096];
        if (snprintf(lock, sizeof lock, "%s-lock", path) < (int)sizeof lock) unlink(lock);
        return CGE_OK;
    }
    return cge__err(CGE_ERR_IO, "%s: no free name to move it aside", path);
}
