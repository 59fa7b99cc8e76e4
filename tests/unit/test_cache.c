/*
 * test_cache.c: the memory tier: keys, the record codec, and each eviction policy against small
 * sequences worked out by hand (ARC's ghost lists and adaptive p included), TTL expiry on an
 * injected clock, byte limits, metadata and metrics.
 */
#include "cache/cache.h"
#include "cache/cache_internal.h"
#include "core/core.h"
#include "testhelp.h"

static int64_t fake_now;
static int64_t fake_clock(void *user) {
    (void)user;
    return fake_now;
}

static struct cge_cache_key K(uint64_t i) {
    struct cge_cache_key k;
    cge_cache_synthetic_key(i, &k);
    return k;
}

static struct cge_cache *open_mem(enum cge_cache_policy pol, uint64_t max_entries,
                                  uint64_t max_bytes) {
    struct cge_cache_params p = cge_cache_default_params();
    p.policy = pol;
    p.max_entries = max_entries;
    p.max_bytes = max_bytes;
    p.n_shards = 1; /* one global order: the hand-worked sequences assume it */
    p.clock = fake_clock;
    p.ttl_seconds = 10;
    struct cge_cache *c = NULL;
    enum cge_status st = cge_cache_open(&p, &c);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    return c;
}

static void put(struct cge_cache *c, uint64_t i) {
    struct cge_cache_key k = K(i);
    struct cge_fused_embedding f;
    cge_cache_synthetic(&k, &f);
    CHECK(cge_cache_put(c, &k, &f, NULL, 0) == CGE_OK);
}

/* A get that also checks the vector it returns is item i's. */
static int get(struct cge_cache *c, uint64_t i) {
    struct cge_cache_key k = K(i);
    struct cge_fused_embedding f, want;
    if (!cge_cache_get(c, &k, &f, NULL, NULL)) return 0;
    cge_cache_synthetic(&k, &want);
    CHECK_MSG(!memcmp(f.vector, want.vector, sizeof f.vector), "item %llu", (unsigned long long)i);
    return 1;
}

static int resident(struct cge_cache *c, uint64_t i) {
    struct cge_cache_key k = K(i);
    struct cge_cache_entry_meta m;
    return cge_cache_peek(c, &k, &m);
}

/* "1101": which of items 1..n are resident, without touching the order. */
static void resident_set(struct cge_cache *c, int n, char *buf) {
    for (int i = 1; i <= n; i++) buf[i - 1] = resident(c, (uint64_t)i) ? '1' : '0';
    buf[n] = '\0';
}

#define CHECK_SET(c, n, want)                                                         \
    do {                                                                              \
        char s_[64];                                                                  \
        resident_set(c, n, s_);                                                       \
        CHECK_MSG(!strcmp(s_, want), "resident %s, expected %s", s_, want);           \
    } while (0)

static struct cge_cache_stats stats(struct cge_cache *c) {
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    return s;
}

/* ==== Keys and records ========================================================================= */

static void test_keys(void) {
    const char *a = "hello world";
    struct cge_cache_request r = {.modality = CGE_MOD_TEXT, .content = a, .content_len = 11,
                                  .instruction = "Represent", .ensemble_version = "v1"};
    struct cge_cache_key k0, k1;
    cge_cache_key_make(&r, &k0);
    cge_cache_key_make(&r, &k1);
    CHECK(k0.h1 == k1.h1 && k0.h2 == k1.h2 && k0.content_len == 11);
    CHECK(k0.h1 != k0.h2);
    /* Each field changes both hashes. */
    struct cge_cache_request v[6];
    for (int i = 0; i < 6; i++) v[i] = r;
    v[0].modality = CGE_MOD_CODE;
    v[1].role = CGE_CACHE_ROLE_QUERY;
    v[2].instruction = "Represen";
    v[3].ensemble_version = "v2";
    v[4].content_len = 10;
    v[5].instruction = NULL;
    for (int i = 0; i < 6; i++) {
        cge_cache_key_make(&v[i], &k1);
        CHECK_MSG(k1.h1 != k0.h1 && k1.h2 != k0.h2, "field %d", i);
    }
    /* Length prefixes: moving a byte from the instruction to the content is another request. */
    struct cge_cache_request x = r, y = r;
    x.instruction = "ab";
    x.content = "c";
    x.content_len = 1;
    y.instruction = "a";
    y.content = "bc";
    y.content_len = 2;
    struct cge_cache_key kx, ky;
    cge_cache_key_make(&x, &kx);
    cge_cache_key_make(&y, &ky);
    CHECK(kx.h1 != ky.h1 && kx.h2 != ky.h2);
    /* NULL instruction == "" */
    struct cge_cache_request e1 = r, e2 = r;
    e1.instruction = NULL;
    e2.instruction = "";
    cge_cache_key_make(&e1, &kx);
    cge_cache_key_make(&e2, &ky);
    CHECK(kx.h1 == ky.h1 && kx.h2 == ky.h2);
}

/* Keys that share h1 (a forced collision) but differ in h2 or length are different entries. */
static void test_collision(void) {
    struct cge_cache *c = open_mem(CGE_CACHE_LRU, 10, 1u << 30);
    struct cge_cache_key a = {0x1234, 0x5678, 10}, b = {0x1234, 0x9999, 10}, d = {0x1234, 0x5678, 11};
    struct cge_fused_embedding fa, fb, out;
    struct cge_cache_key ka = K(1), kb = K(2);
    cge_cache_synthetic(&ka, &fa);
    cge_cache_synthetic(&kb, &fb);
    CHECK(cge_cache_put(c, &a, &fa, NULL, 0) == CGE_OK);
    CHECK(!cge_cache_get(c, &b, &out, NULL, NULL));
    CHECK(!cge_cache_get(c, &d, &out, NULL, NULL));
    CHECK(cge_cache_put(c, &b, &fb, NULL, 0) == CGE_OK);
    CHECK(cge_cache_get(c, &a, &out, NULL, NULL) && !memcmp(out.vector, fa.vector, sizeof out.vector));
    CHECK(cge_cache_get(c, &b, &out, NULL, NULL) && !memcmp(out.vector, fb.vector, sizeof out.vector));
    CHECK(!cge_cache_get(c, &d, &out, NULL, NULL));
    cge_cache_close(c);
}

static void test_record_codec(void) {
    struct cge__rec r;
    memset(&r, 0, sizeof r);
    r.key = K(7);
    r.seq = 42;
    r.created_us = 1000;
    r.last_us = 2000;
    r.access_count = 3;
    cge_cache_synthetic(&r.key, &r.fused);
    int nt = cge_total_dim();
    float *slots = malloc((size_t)nt * sizeof(float));
    uint64_t s = 1;
    for (int i = 0; i < nt; i++) slots[i] = th_randf(&s);
    r.n_slot_floats = (uint32_t)nt;
    r.present = 0x0fff;
    size_t len = cge__rec_size(r.n_slot_floats);
    unsigned char *buf = malloc(len);
    cge__rec_encode(buf, &r, slots);
    struct cge__rec d;
    CHECK(cge__rec_decode(buf, len, &d) == CGE_OK);
    CHECK(d.key.h1 == r.key.h1 && d.key.h2 == r.key.h2 && d.key.content_len == r.key.content_len);
    CHECK(d.seq == 42 && d.created_us == 1000 && d.last_us == 2000 && d.access_count == 3);
    CHECK(d.present == 0x0fff && d.n_slot_floats == (uint32_t)nt);
    CHECK(!memcmp(d.fused.vector, r.fused.vector, sizeof d.fused.vector));
    CHECK(!memcmp(d.fused.expert_weights, r.fused.expert_weights, sizeof d.fused.expert_weights));
    CHECK(d.fused.selected[0] == r.fused.selected[0] && d.fused.selected[1] == r.fused.selected[1]);
    float *back = malloc((size_t)nt * sizeof(float));
    cge__rec_copy_slots(&d, back);
    CHECK(!memcmp(back, slots, (size_t)nt * sizeof(float)));
    /* Any flipped byte, and any truncation, is caught. */
    int caught = 0, tried = 0;
    for (size_t off = 0; off < len; off += 97) {
        buf[off] ^= 0x10;
        caught += cge__rec_decode(buf, len, &d) != CGE_OK;
        tried++;
        buf[off] ^= 0x10;
    }
    CHECK_MSG(caught == tried, "%d of %d flips caught", caught, tried);
    CHECK(cge__rec_decode(buf, len - 1, &d) != CGE_OK);
    CHECK(cge__rec_decode(buf, 10, &d) != CGE_OK);
    CHECK(cge__rec_decode(buf, 0, &d) != CGE_OK);
    free(buf);
    free(back);
    free(slots);

    struct cge__hdr h, h2;
    cge__hdr_current(&h, "ensemble-7");
    h.created_us = 99;
    unsigned char hb[CGE__HDR_MAX];
    size_t hl = cge__hdr_encode(hb, &h);
    CHECK(cge__hdr_decode(hb, hl, &h2) == CGE_OK);
    CHECK(!strcmp(h2.ensemble_version, "ensemble-7") && h2.fused_dim == CGE_FUSED_DIM &&
          h2.total_dim == (uint32_t)cge_total_dim() && h2.created_us == 99);
    hb[5] ^= 1;
    CHECK(cge__hdr_decode(hb, hl, &h2) != CGE_OK);
}

/* ==== Policies ================================================================================= */

static void test_lru(void) {
    struct cge_cache *c = open_mem(CGE_CACHE_LRU, 3, 1u << 30);
    put(c, 1);
    put(c, 2);
    put(c, 3);         /* order (MRU first): 3 2 1 */
    CHECK(get(c, 1));  /* 1 3 2 */
    put(c, 4);         /* evicts 2 -> 4 1 3 */
    CHECK_SET(c, 5, "10110");
    CHECK(get(c, 3));  /* 3 4 1 */
    put(c, 5);         /* evicts 1 -> 5 3 4 */
    CHECK_SET(c, 5, "00111");
    put(c, 4);         /* a put refreshes too: 4 5 3 */
    put(c, 6);         /* evicts 3 */
    CHECK_SET(c, 6, "000111");
    struct cge_cache_stats s = stats(c);
    CHECK(s.evictions == 3 && s.entries == 3 && s.hits == 2 && s.misses == 0);
    CHECK(!get(c, 1));
    s = stats(c);
    CHECK(s.misses == 1 && fabs(s.hit_rate - 2.0 / 3.0) < 1e-12);
    cge_cache_close(c);
}

static void test_lfu(void) {
    struct cge_cache *c = open_mem(CGE_CACHE_LFU, 3, 1u << 30);
    put(c, 1);
    put(c, 2);
    put(c, 3);        /* counts 1:1 2:1 3:1 */
    CHECK(get(c, 1));
    CHECK(get(c, 1)); /* 1:3 */
    CHECK(get(c, 2)); /* 2:2 */
    put(c, 4);        /* least frequent is 3 (count 1) */
    CHECK_SET(c, 4, "1101");
    CHECK(get(c, 4)); /* 4:2, accessed after 2 */
    put(c, 5);        /* 2 and 4 tie at 2: 2 is the least recently used */
    CHECK_SET(c, 5, "10011");
    put(c, 6);        /* 5 has count 1 */
    CHECK_SET(c, 6, "100101");
    struct cge_cache_entry_meta m;
    struct cge_cache_key k1 = K(1);
    CHECK(cge_cache_peek(c, &k1, &m) && m.access_count == 3);
    CHECK(stats(c).evictions == 3);
    cge_cache_close(c);
}

static void test_ttl(void) {
    struct cge_cache *c = open_mem(CGE_CACHE_TTL_LRU, 10, 1u << 30);
    fake_now = 1000000000;
    put(c, 1);
    fake_now += 5000000;
    put(c, 2);
    fake_now += 4999999; /* 1 is 9.999999 s old */
    CHECK(get(c, 1));
    fake_now += 1; /* exactly 10 s: expired (a hit does not extend a TTL) */
    CHECK(!get(c, 1));
    CHECK(get(c, 2));
    struct cge_cache_stats s = stats(c);
    CHECK(s.expirations == 1 && s.entries == 1 && s.misses == 1 && s.hits == 2);
    fake_now += 5000000; /* 2 is 10 s old */
    CHECK(!get(c, 2));
    put(c, 1); /* a new put starts a new lifetime */
    struct cge_cache_entry_meta m;
    struct cge_cache_key k1 = K(1);
    CHECK(cge_cache_peek(c, &k1, &m) && m.created_us == fake_now && m.access_count == 1);
    fake_now += 9000000;
    CHECK(get(c, 1));
    CHECK(cge_cache_peek(c, &k1, &m) && m.last_access_us == fake_now && m.access_count == 2);
    fake_now += 1000000;
    CHECK(!get(c, 1));
    CHECK(stats(c).expirations == 3 && stats(c).entries == 0);
    /* TTL-LRU still evicts by recency when full. */
    cge_cache_close(c);
    c = open_mem(CGE_CACHE_TTL_LRU, 2, 1u << 30);
    put(c, 1);
    put(c, 2);
    CHECK(get(c, 1));
    put(c, 3);
    CHECK_SET(c, 3, "101");
    cge_cache_close(c);
}

/*
 * ARC, c = 4, one shard. Lists are written MRU first; p starts at 0.
 *  put 1 2 3 4     T1 [4 3 2 1]                                  (case IV, room)
 *  get 1, get 2    T1 [4 3]  T2 [2 1]                            (case I)
 *  put 5           |L1|=2<4, total 4>=c: REPLACE: |T1|=2>p=0 -> 3 to B1
 *                  T1 [5 4]  T2 [2 1]  B1 [3]
 *  put 6           |L1|=3, total 5: REPLACE -> 4 to B1
 *                  T1 [6 5]  T2 [2 1]  B1 [4 3]
 *  put 3 (in B1)   case II: p = min(4, 0 + max(|B2|/|B1|, 1)) = 1; REPLACE: |T1|=2>1 -> 5 to B1;
 *                  3 to T2:  T1 [6]  T2 [3 2 1]  B1 [5 4]
 *  put 7           |L1|=3, total 6: REPLACE: |T1|=1 > p=1? no -> T2's LRU 1 to B2
 *                  T1 [7 6]  T2 [3 2]  B1 [5 4]  B2 [1]
 *  put 1 (in B2)   case III: |B2|=1 < |B1|=2, delta = 2: p = max(0, 1 - 2) = 0;
 *                  REPLACE: |T1|=2 > 0 -> 6 to B1;  T1 [7]  T2 [1 3 2]  B1 [6 5 4]  B2 []
 *  put 8           |L1| = 1+3 = 4 = c and |T1| < c: drop B1's LRU (4); REPLACE: |T1|=1 > p=0
 *                  -> 7 to B1 (with p = 1 it would have been T2's 2):
 *                  T1 [8]  T2 [1 3 2]  B1 [7 6 5]
 * Six values evicted, three ghosts left.
 */
static void test_arc(void) {
    struct cge_cache *c = open_mem(CGE_CACHE_ARC, 4, 1u << 30);
    put(c, 1);
    put(c, 2);
    put(c, 3);
    put(c, 4);
    CHECK_SET(c, 8, "11110000");
    CHECK(get(c, 1));
    CHECK(get(c, 2));
    put(c, 5);
    CHECK_SET(c, 8, "11011000");
    CHECK(stats(c).ghosts == 1);
    put(c, 6);
    CHECK_SET(c, 8, "11001100");
    CHECK(stats(c).ghosts == 2);
    put(c, 3);
    CHECK_SET(c, 8, "11100100");
    CHECK(stats(c).ghosts == 2);
    put(c, 7);
    CHECK_SET(c, 8, "01100110");
    CHECK(stats(c).ghosts == 3);
    put(c, 1);
    CHECK_SET(c, 8, "11100010");
    CHECK(stats(c).ghosts == 3);
    put(c, 8);
    CHECK_SET(c, 8, "11100001");
    struct cge_cache_stats s = stats(c);
    CHECK_MSG(s.evictions == 6 && s.ghosts == 3 && s.entries == 4, "evictions %llu ghosts %llu",
              (unsigned long long)s.evictions, (unsigned long long)s.ghosts);
    /* Ghosts are keys only: a get of one is a miss. */
    CHECK(!get(c, 7) && !get(c, 4));
    cge_cache_close(c);
}

/* ARC after a remove left room: a returning ghost takes the free place instead of pushing a
 * resident out (REPLACE only runs when the cache is full). */
static void test_arc_room(void) {
    struct cge_cache *c = open_mem(CGE_CACHE_ARC, 4, 1u << 30);
    for (uint64_t i = 1; i <= 4; i++) put(c, i);
    CHECK(get(c, 1) && get(c, 2));
    put(c, 5);
    put(c, 6); /* T1 [6 5]  T2 [2 1]  B1 [4 3] */
    CHECK_SET(c, 6, "110011");
    struct cge_cache_key k5 = K(5);
    CHECK(cge_cache_remove(c, &k5) == 1);
    put(c, 3); /* from B1 into the free place: nothing evicted */
    CHECK_SET(c, 6, "111001");
    CHECK(stats(c).entries == 4 && stats(c).evictions == 2);
    cge_cache_close(c);
}

/* ARC resists a scan: items used twice survive a long run of one-time items. */
static void test_arc_scan(void) {
    struct cge_cache *arc = open_mem(CGE_CACHE_ARC, 8, 1u << 30);
    struct cge_cache *lru = open_mem(CGE_CACHE_LRU, 8, 1u << 30);
    for (int round = 0; round < 2; round++)
        for (uint64_t i = 1; i <= 4; i++) {
            if (!get(arc, i)) put(arc, i);
            if (!get(lru, i)) put(lru, i);
        }
    for (uint64_t i = 100; i < 140; i++) {
        put(arc, i);
        put(lru, i);
    }
    int arc_kept = 0, lru_kept = 0;
    for (uint64_t i = 1; i <= 4; i++) {
        arc_kept += resident(arc, i);
        lru_kept += resident(lru, i);
    }
    CHECK_MSG(arc_kept == 4 && lru_kept == 0, "arc kept %d, lru kept %d", arc_kept, lru_kept);
    cge_cache_close(arc);
    cge_cache_close(lru);
}

/* ==== Limits, slots, metadata ================================================================== */

static void test_bytes(void) {
    enum cge_cache_policy pols[] = {CGE_CACHE_LRU, CGE_CACHE_LFU, CGE_CACHE_TTL_LRU, CGE_CACHE_ARC};
    /* The size of one entry without slots, as the cache charges it. */
    struct cge_cache *c = open_mem(CGE_CACHE_LRU, 10, 1u << 30);
    put(c, 1);
    struct cge_cache_entry_meta m;
    struct cge_cache_key k1 = K(1);
    CHECK(cge_cache_peek(c, &k1, &m));
    size_t b = m.bytes;
    CHECK(b > sizeof(struct cge_fused_embedding) && b < sizeof(struct cge_fused_embedding) + 512);
    cge_cache_close(c);

    size_t slot_bytes = (size_t)cge_total_dim() * sizeof(float);
    for (int pi = 0; pi < 4; pi++) {
        fake_now = 0;
        c = open_mem(pols[pi], 1000, 3 * b + b / 2); /* room for three */
        for (uint64_t i = 1; i <= 5; i++) put(c, i);
        struct cge_cache_stats s = stats(c);
        CHECK_MSG(s.entries == 3 && s.bytes == 3 * b && s.evictions == 2, "%s: %llu entries",
                  cge_cache_policy_str(pols[pi]), (unsigned long long)s.entries);
        CHECK(resident(c, 5));
        /* An entry with slots is larger than the whole limit: not kept, nothing else lost. */
        struct cge_cache_key k = K(9);
        struct cge_fused_embedding f;
        cge_cache_synthetic(&k, &f);
        float *slots = calloc((size_t)cge_total_dim(), sizeof(float));
        CHECK(cge_cache_put(c, &k, &f, slots, 0xfff) == CGE_OK);
        CHECK(!resident(c, 9));
        CHECK(stats(c).entries == 3);
        cge_cache_close(c);

        /* Room for one slot entry and one plain one: the slot entry pushes out two. */
        c = open_mem(pols[pi], 1000, 2 * b + slot_bytes + 16);
        for (uint64_t i = 1; i <= 3; i++) put(c, i);
        CHECK(stats(c).entries == 3);
        uint64_t s_ = 7;
        for (int i = 0; i < cge_total_dim(); i++) slots[i] = th_randf(&s_);
        CHECK(cge_cache_put(c, &k, &f, slots, 0x0ff) == CGE_OK);
        s = stats(c);
        CHECK_MSG(s.entries == 2 && s.bytes <= 2 * b + slot_bytes + 16, "%s: %llu entries",
                  cge_cache_policy_str(pols[pi]), (unsigned long long)s.entries);
        float *back = calloc((size_t)cge_total_dim(), sizeof(float));
        uint32_t present = 0;
        struct cge_fused_embedding out;
        CHECK(cge_cache_get(c, &k, &out, back, &present));
        CHECK(present == 0x0ff && !memcmp(back, slots, slot_bytes));
        CHECK(!memcmp(out.vector, f.vector, sizeof f.vector));
        /* Replacing it with a slot-less value shrinks it. */
        CHECK(cge_cache_put(c, &k, &f, NULL, 0) == CGE_OK);
        CHECK(cge_cache_get(c, &k, &out, back, &present) && present == 0);
        free(back);
        free(slots);
        cge_cache_close(c);
    }
}

/* A hit allocates nothing (counted by the library's allocator). */
static void test_hit_no_alloc(void) {
    struct cge_cache *c = open_mem(CGE_CACHE_LFU, 100, 1u << 30);
    for (uint64_t i = 0; i < 50; i++) put(c, i);
    float *slots = calloc((size_t)cge_total_dim(), sizeof(float));
    struct cge_cache_key k = K(60);
    struct cge_fused_embedding f;
    cge_cache_synthetic(&k, &f);
    CHECK(cge_cache_put(c, &k, &f, slots, 3) == CGE_OK);
    long n0 = cge__alloc_count();
    int hits = 0;
    uint32_t present = 0;
    for (uint64_t i = 0; i < 50; i++) hits += get(c, i);
    hits += cge_cache_get(c, &k, &f, slots, &present);
    CHECK(hits == 51 && present == 3);
    CHECK_MSG(cge__alloc_count() == n0, "%ld allocations in 51 hits", cge__alloc_count() - n0);
    free(slots);
    cge_cache_close(c);
}

static void test_metadata_and_args(void) {
    fake_now = 5000;
    struct cge_cache *c = open_mem(CGE_CACHE_LRU, 10, 1u << 30);
    put(c, 1);
    fake_now = 7000;
    CHECK(get(c, 1));
    CHECK(get(c, 1));
    struct cge_cache_entry_meta m;
    struct cge_cache_key k1 = K(1);
    CHECK(cge_cache_peek(c, &k1, &m));
    CHECK(m.created_us == 5000 && m.last_access_us == 7000 && m.access_count == 3);
    /* A NaN is never cached. */
    struct cge_fused_embedding f;
    cge_cache_synthetic(&k1, &f);
    f.vector[3] = NAN;
    struct cge_cache_key k2 = K(2);
    CHECK(cge_cache_put(c, &k2, &f, NULL, 0) == CGE_ERR_INVALID_VALUE);
    CHECK(!resident(c, 2));
    CHECK(cge_cache_remove(c, &k1) == 1);
    CHECK(cge_cache_remove(c, &k1) == 0);
    CHECK(!get(c, 1));
    cge_cache_close(c);
    cge_cache_close(NULL);

    struct cge_cache_params p = cge_cache_default_params();
    CHECK(p.max_entries == 100000 && p.max_bytes == (1ull << 30) && p.policy == CGE_CACHE_LRU);
    p.max_entries = 0;
    CHECK(cge_cache_open(&p, &c) == CGE_ERR_INVALID_VALUE && c == NULL);
    p = cge_cache_default_params();
    p.policy = CGE_CACHE_TTL_LRU;
    p.ttl_seconds = -1;
    CHECK(cge_cache_open(&p, &c) == CGE_ERR_INVALID_VALUE);
    p.ttl_seconds = NAN;
    CHECK(cge_cache_open(&p, &c) == CGE_ERR_INVALID_VALUE);
    /* From the configuration's cache section. */
    struct cge_config cfg;
    cfg = cge_config_default();
    cfg.cache.policy = CGE_CACHE_ARC;
    cfg.cache.max_entries = 123;
    cfg.cache.ttl_seconds = 0;
    cge_cache_params_from_config(&cfg.cache, "v9", &p);
    CHECK(p.policy == CGE_CACHE_ARC && p.max_entries == 123 && p.max_bytes == (1ull << 30));
    CHECK(p.ttl_seconds == 0 && p.path == NULL && !strcmp(p.ensemble_version, "v9"));
    CHECK(cge_cache_open(&p, &c) == CGE_OK);
    cge_cache_close(c);
    enum cge_cache_policy pol;
    CHECK(cge_cache_policy_parse("arc", &pol) == CGE_OK && pol == CGE_CACHE_ARC);
    CHECK(cge_cache_policy_parse("ttl_lru", &pol) == CGE_OK && pol == CGE_CACHE_TTL_LRU);
    CHECK(!strcmp(cge_cache_policy_str(CGE_CACHE_TTL_LRU), "ttl_lru"));
    CHECK(cge_cache_policy_parse("mru", &pol) == CGE_ERR_INVALID_VALUE);
}

/* Many shards: the limits hold globally (split per shard) and every hit is the right vector. */
static void test_sharded(void) {
    struct cge_cache_params p = cge_cache_default_params();
    p.max_entries = 256;
    p.n_shards = 16;
    enum cge_cache_policy pols[] = {CGE_CACHE_LRU, CGE_CACHE_LFU, CGE_CACHE_TTL_LRU, CGE_CACHE_ARC};
    for (int pi = 0; pi < 4; pi++) {
        p.policy = pols[pi];
        struct cge_cache *c = NULL;
        CHECK(cge_cache_open(&p, &c) == CGE_OK);
        uint64_t s = 99;
        int hits = 0;
        for (int n = 0; n < 8000; n++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            uint64_t i = s % 600;
            if (get(c, i)) hits++;
            else put(c, i);
        }
        struct cge_cache_stats st = stats(c);
        CHECK(st.entries <= 256 && st.entries > 200);
        CHECK(st.hits == (uint64_t)hits && st.hits + st.misses == 8000);
        CHECK(hits > 8000 * 256 / 600 / 2);
        cge_cache_close(c);
    }
}

/* OOM: every allocation in open and put can fail cleanly. */
static void test_oom(void) {
    for (long k = 0; k < 200; k++) {
        struct cge_cache_params p = cge_cache_default_params();
        p.policy = (enum cge_cache_policy)(k % 4);
        p.max_entries = 4;
        p.n_shards = 2;
        struct cge_cache *c = NULL;
        cge__fail_alloc_after(k);
        enum cge_status st = cge_cache_open(&p, &c);
        if (st == CGE_OK) {
            for (uint64_t i = 0; i < 12; i++) {
                struct cge_cache_key key = K(i % 7);
                struct cge_fused_embedding f;
                cge_cache_synthetic(&key, &f);
                enum cge_status ps = cge_cache_put(c, &key, &f, NULL, 0);
                CHECK(ps == CGE_OK || ps == CGE_ERR_NOMEM);
                struct cge_fused_embedding out;
                if (cge_cache_get(c, &key, &out, NULL, NULL))
                    CHECK(!memcmp(out.vector, f.vector, sizeof f.vector));
            }
        } else {
            CHECK(st == CGE_ERR_NOMEM && c == NULL);
        }
        cge__fail_alloc_after(-1);
        cge_cache_close(c);
    }
}

int main(void) {
    RUN(test_keys);
    RUN(test_collision);
    RUN(test_record_codec);
    RUN(test_lru);
    RUN(test_lfu);
    RUN(test_ttl);
    RUN(test_arc);
    RUN(test_arc_room);
    RUN(test_arc_scan);
    RUN(test_bytes);
    RUN(test_hit_no_alloc);
    RUN(test_metadata_and_args);
    RUN(test_sharded);
    RUN(test_oom);
    return test_report("cache");
}
