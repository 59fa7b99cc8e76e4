/*
 * test_cache_disk.c: the disk tier: write-behind and warm start, read-through, a file from
 * another ensemble version or dimension, the size bound, corrupt and truncated files (random
 * damage included: every vector returned must still be exactly the stored one), verify, and the
 * crash test: a child process fills the cache and is killed with SIGKILL at random moments,
 * several rounds; after each the file must open without being moved aside and verify clean.
 */
#include "cache/cache.h"
#include "cache/cache_internal.h"
#include "core/core.h"
#include "testhelp.h"

#include <dirent.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static char path[512];

static struct cge_cache_key K(uint64_t i) {
    struct cge_cache_key k;
    cge_cache_synthetic_key(i, &k);
    return k;
}

static struct cge_cache_params params(void) {
    struct cge_cache_params p = cge_cache_default_params();
    p.path = path;
    p.ensemble_version = CGE_CACHE_SYNTHETIC_VERSION;
    p.disk_max_bytes = 64u << 20;
    p.flush_interval_ms = 5;
    p.flush_batch = 64;
    p.n_shards = 4;
    p.durable = 0; /* no fsync: a killed process still loses nothing committed (the crash
                      test's child uses the default, durable) */
    return p;
}

static struct cge_cache *open_p(const struct cge_cache_params *p) {
    struct cge_cache *c = NULL;
    enum cge_status st = cge_cache_open(p, &c);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    return c;
}

static void put(struct cge_cache *c, uint64_t i) {
    struct cge_cache_key k = K(i);
    struct cge_fused_embedding f;
    cge_cache_synthetic(&k, &f);
    CHECK(cge_cache_put(c, &k, &f, NULL, 0) == CGE_OK);
}

/* 1: hit with exactly item i's vector; 0: miss; -1: a WRONG vector (never allowed). */
static int get(struct cge_cache *c, uint64_t i) {
    struct cge_cache_key k = K(i);
    struct cge_fused_embedding f, want;
    if (!cge_cache_get(c, &k, &f, NULL, NULL)) return 0;
    cge_cache_synthetic(&k, &want);
    if (memcmp(f.vector, want.vector, sizeof f.vector) ||
        memcmp(f.expert_weights, want.expert_weights, sizeof f.expert_weights) ||
        f.selected[0] != want.selected[0] || f.selected[1] != want.selected[1])
        return -1;
    return 1;
}

static void rm_all(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

static int count_corrupt_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += strstr(e->d_name, ".corrupt-") != NULL;
    closedir(d);
    return n;
}

static void write_file(const char *to, const char *b, size_t n) {
    FILE *f = fopen(to, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

/* Fills a fresh file with items [0, n) (item i % 5 == 0 also with slots) and closes it. */
static void fill(uint64_t n) {
    rm_all();
    struct cge_cache_params p = params();
    struct cge_cache *c = open_p(&p);
    float *slots = malloc((size_t)cge_total_dim() * sizeof(float));
    for (uint64_t i = 0; i < n; i++) {
        struct cge_cache_key k = K(i);
        struct cge_fused_embedding f;
        cge_cache_synthetic(&k, &f);
        for (int j = 0; j < cge_total_dim(); j++) slots[j] = (float)(i * 7 + (uint64_t)j);
        CHECK(cge_cache_put(c, &k, &f, i % 5 == 0 ? slots : NULL, 0x7) == CGE_OK);
    }
    free(slots);
    cge_cache_close(c);
}

/* ==== Round trip, warm start, read-through ==================================================== */

static void test_roundtrip(void) {
    fill(100);
    struct cge_cache_params p = params();
    struct cge_cache *c = open_p(&p);
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    CHECK_MSG(s.warm_loaded == 100 && s.entries == 100 && s.disk_entries == 100 &&
                  !s.corrupt_moved,
              "warm %llu entries %llu disk %llu", (unsigned long long)s.warm_loaded,
              (unsigned long long)s.entries, (unsigned long long)s.disk_entries);
    int ok = 0;
    for (uint64_t i = 0; i < 100; i++) ok += get(c, i) == 1;
    CHECK(ok == 100);
    float *slots = malloc((size_t)cge_total_dim() * sizeof(float));
    uint32_t present = 0;
    struct cge_fused_embedding f;
    struct cge_cache_key k = K(10);
    CHECK(cge_cache_get(c, &k, &f, slots, &present) && present == 0x7);
    CHECK(slots[0] == 70.0f && slots[cge_total_dim() - 1] == (float)(70 + cge_total_dim() - 1));
    k = K(11);
    CHECK(cge_cache_get(c, &k, &f, slots, &present) && present == 0);
    cge_cache_get_stats(c, &s);
    CHECK(s.disk_hits == 0);
    cge_cache_close(c);

    /* Memory for 10: warm start loads the 10 newest; the rest are read through from disk. */
    p.max_entries = 10;
    p.n_shards = 1;
    c = open_p(&p);
    cge_cache_get_stats(c, &s);
    CHECK(s.warm_loaded == 10);
    for (uint64_t i = 90; i < 100; i++) {
        struct cge_cache_entry_meta m;
        struct cge_cache_key kk = K(i);
        CHECK_MSG(cge_cache_peek(c, &kk, &m), "item %llu not warm", (unsigned long long)i);
    }
    ok = 0;
    for (uint64_t i = 100; i-- > 0;) ok += get(c, i) == 1; /* the warm ten first */
    CHECK(ok == 100);
    cge_cache_get_stats(c, &s);
    CHECK_MSG(s.disk_hits == 90 && s.hits == 100, "disk hits %llu",
              (unsigned long long)s.disk_hits);
    /* A removed key is gone from both tiers. */
    k = K(5);
    cge_cache_remove(c, &k);
    cge_cache_flush(c);
    CHECK(get(c, 5) == 0);
    cge_cache_close(c);
    c = open_p(&p);
    CHECK(get(c, 5) == 0 && get(c, 6) == 1);
    cge_cache_close(c);

    struct cge_cache_verify_report rep;
    CHECK_MSG(cge_cache_file_verify(path, &rep) == CGE_OK, "%s", rep.first_error);
    CHECK(rep.records == 99 && rep.recomputed == 99 && rep.bad == 0);
    struct cge_cache_file_info info;
    CHECK(cge_cache_file_info(path, &info) == CGE_OK);
    CHECK(info.entries == 99 && info.entries_with_slots == 19 && info.fused_dim == CGE_FUSED_DIM);
    CHECK(!strcmp(info.ensemble_version, CGE_CACHE_SYNTHETIC_VERSION));
    free(slots);
}

/* TTL-LRU: entries loaded from disk keep their creation time. */
static int64_t fake_now;
static int64_t fake_clock(void *u) {
    (void)u;
    return fake_now;
}

static void test_ttl_disk(void) {
    rm_all();
    struct cge_cache_params p = params();
    p.policy = CGE_CACHE_TTL_LRU;
    p.ttl_seconds = 10;
    p.clock = fake_clock;
    fake_now = 1000000000;
    struct cge_cache *c = open_p(&p);
    put(c, 1);
    fake_now += 6000000;
    put(c, 2);
    cge_cache_close(c);
    fake_now += 5000000; /* 1 is 11 s old, 2 is 5 s */
    c = open_p(&p);
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    CHECK(s.warm_loaded == 1);
    CHECK(get(c, 1) == 0 && get(c, 2) == 1);
    cge_cache_close(c);
}

/* ==== Another ensemble, another dimension ===================================================== */

static void test_foreign(void) {
    fill(20);
    struct cge_cache_params p = params();
    p.ensemble_version = "another ensemble";
    struct cge_cache *c = open_p(&p);
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    CHECK(s.warm_loaded == 0 && s.entries == 0 && !s.corrupt_moved && s.disk_entries == 0);
    CHECK(get(c, 3) == 0);
    cge_cache_close(c);
    CHECK(count_corrupt_files() == 0);

    /* Rewrite the header as if the file were made for 768-d fused vectors. */
    fill(20);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 4);
    CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0644) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
    struct cge__hdr h;
    cge__hdr_current(&h, CGE_CACHE_SYNTHETIC_VERSION);
    h.fused_dim = 768;
    unsigned char hb[CGE__HDR_MAX];
    MDB_val hk = {6, (void *)"header"}, hv = {cge__hdr_encode(hb, &h), hb};
    CHECK(mdb_put(txn, meta, &hk, &hv, 0) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    struct cge_cache_verify_report rep;
    CHECK(cge_cache_file_verify(path, &rep) == CGE_ERR_CACHE); /* verify says so */
    p = params();
    c = open_p(&p);
    cge_cache_get_stats(c, &s);
    CHECK(s.warm_loaded == 0 && s.entries == 0 && !s.corrupt_moved);
    CHECK(get(c, 3) == 0);
    put(c, 3);
    cge_cache_close(c);
    c = open_p(&p);
    CHECK(get(c, 3) == 1 && get(c, 4) == 0);
    cge_cache_close(c);
    CHECK(cge_cache_file_verify(path, &rep) == CGE_OK && rep.records == 1);
}

/* A record rewritten with a valid checksum but another vector: only recomputing finds it, and
 * verify does (synthetic files). A garbage lock file is rebuilt by LMDB (no data lives there). */
static void test_verify_recompute(void) {
    fill(10);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi ent;
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 4);
    CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0644) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "ent", 0, &ent) == 0);
    struct cge_cache_key k = K(3);
    unsigned char kb[24];
    memcpy(kb, &k.h1, 8);
    memcpy(kb + 8, &k.h2, 8);
    memcpy(kb + 16, &k.content_len, 8);
    MDB_val ek = {24, kb}, v;
    CHECK(mdb_get(txn, ent, &ek, &v) == 0);
    struct cge__rec r;
    CHECK(cge__rec_decode(v.mv_data, v.mv_size, &r) == CGE_OK);
    r.fused.vector[7] += 1e-3f;
    unsigned char *buf = malloc(v.mv_size);
    cge__rec_encode(buf, &r, NULL);
    MDB_val nv = {v.mv_size, buf};
    CHECK(mdb_put(txn, ent, &ek, &nv, 0) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    free(buf);
    struct cge_cache_verify_report rep;
    CHECK(cge_cache_file_verify(path, &rep) == CGE_ERR_CACHE);
    CHECK_MSG(rep.bad == 1 && rep.recomputed == 10 && strstr(rep.first_error, "recomputed"),
              "%s", rep.first_error);

    fill(10);
    char lock[600];
    snprintf(lock, sizeof lock, "%s-lock", path);
    FILE *f = fopen(lock, "wb");
    for (int i = 0; i < 9000; i++) fputc((i * 131) & 0xff, f);
    fclose(f);
    struct cge_cache_params p = params();
    struct cge_cache *c = open_p(&p);
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    CHECK(!s.corrupt_moved && s.warm_loaded == 10 && get(c, 4) == 1);
    cge_cache_close(c);
}

/* ==== Size bound ============================================================================== */

static void test_size_bound(void) {
    rm_all();
    struct cge_cache_params p = params();
    p.disk_max_bytes = 2u << 20;
    p.max_entries = 50;
    p.flush_batch = 16;
    struct cge_cache *c = open_p(&p);
    for (uint64_t i = 0; i < 1500; i++) put(c, i);
    cge_cache_flush(c);
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    CHECK_MSG(s.disk_evictions > 0 && s.disk_bytes <= p.disk_max_bytes && s.disk_errors == 0,
              "evictions %llu bytes %llu errors %llu", (unsigned long long)s.disk_evictions,
              (unsigned long long)s.disk_bytes, (unsigned long long)s.disk_errors);
    CHECK(s.disk_entries > 50 && s.disk_entries < 1500);
    cge_cache_close(c);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (uint64_t)sb.st_size <= p.disk_max_bytes);
    c = open_p(&p);
    int newest = 0, wrong = 0;
    for (uint64_t i = 1450; i < 1500; i++) {
        int r = get(c, i);
        newest += r == 1;
        wrong += r < 0;
    }
    CHECK_MSG(newest == 50 && wrong == 0, "newest %d", newest);
    CHECK(get(c, 0) == 0); /* the oldest went first */
    cge_cache_close(c);
    struct cge_cache_verify_report rep;
    CHECK_MSG(cge_cache_file_verify(path, &rep) == CGE_OK, "%s", rep.first_error);

    /* The smallest map (1 MiB) with the default batch size: batches shrink to fit, the file
     * stays bounded, nothing fails. */
    rm_all();
    p = params();
    p.disk_max_bytes = 1u << 20;
    p.flush_batch = 512;
    c = open_p(&p);
    for (uint64_t i = 0; i < 600; i++) put(c, i);
    CHECK(cge_cache_flush(c) == CGE_OK);
    cge_cache_get_stats(c, &s);
    CHECK_MSG(s.disk_errors == 0 && s.disk_evictions > 0 && s.disk_entries > 10,
              "errors %llu evictions %llu entries %llu", (unsigned long long)s.disk_errors,
              (unsigned long long)s.disk_evictions, (unsigned long long)s.disk_entries);
    cge_cache_close(c);
    CHECK(stat(path, &sb) == 0 && (uint64_t)sb.st_size <= p.disk_max_bytes);
    CHECK_MSG(cge_cache_file_verify(path, &rep) == CGE_OK, "%s", rep.first_error);
}

/* ==== Corruption ============================================================================== */

/* Opens the damaged file: it must not crash; every hit must be the stored vector. Returns the
 * number of hits among items [0, n). */
static int open_and_check(uint64_t n, int warm, int *wrong, int *moved) {
    struct cge_cache_params p = params();
    p.warm_start = warm;
    struct cge_cache *c = NULL;
    enum cge_status st = cge_cache_open(&p, &c);
    if (st != CGE_OK) {
        printf("  open failed: %s\n", cge_errmsg());
        *wrong += 1000;
        return 0;
    }
    int hits = 0;
    for (uint64_t i = 0; i < n; i++) {
        int r = get(c, i);
        hits += r == 1;
        *wrong += r < 0;
    }
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    *moved = s.corrupt_moved;
    /* Still usable. */
    put(c, n + 1);
    *wrong += get(c, n + 1) != 1;
    cge_cache_close(c);
    return hits;
}

/* Offset of item i's record in the file (its key bytes follow the magic at +16). */
static long find_record(const char *file, uint64_t i) {
    size_t n;
    unsigned char *b = (unsigned char *)th_read_file(file, &n);
    struct cge_cache_key k = K(i);
    long at = -1;
    for (size_t o = 0; o + 24 <= n; o++) {
        uint64_t h1;
        memcpy(&h1, b + o + 16, 8);
        if (b[o] == 'C' && b[o + 1] == 'G' && b[o + 2] == 'E' && b[o + 3] == 'r' && h1 == k.h1) {
            at = (long)o;
            break;
        }
    }
    free(b);
    return at;
}

static void poke(const char *file, long off, unsigned char x) {
    int fd = open(file, O_RDWR);
    unsigned char b;
    CHECK(pread(fd, &b, 1, off) == 1);
    b ^= x;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static void test_corrupt(void) {
    fill(40);
    size_t plen;
    char *pb = th_read_file(path, &plen); /* the pristine file */
    struct stat sb;
    stat(path, &sb);

    /* Truncated to half: detected, moved aside, empty, usable. */
    CHECK(truncate(path, sb.st_size / 2) == 0);
    struct cge_cache_verify_report rep;
    CHECK(cge_cache_file_verify(path, &rep) == CGE_ERR_CACHE && rep.bad);
    int wrong = 0, moved = 0;
    int hits = open_and_check(40, 1, &wrong, &moved);
    CHECK(hits == 0 && wrong == 0 && moved == 1);
    CHECK(count_corrupt_files() == 1);

    /* Truncated to 100 bytes, to 0 bytes, and garbage. */
    rm_all();
    write_file(path, pb, plen);
    CHECK(truncate(path, 100) == 0);
    hits = open_and_check(40, 1, &wrong, &moved);
    CHECK(hits == 0 && wrong == 0 && moved == 1);
    rm_all();
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 20000; i++) fputc((i * 7919) & 0xff, f);
    fclose(f);
    hits = open_and_check(40, 1, &wrong, &moved);
    CHECK(hits == 0 && wrong == 0 && moved == 1);

    /* A flipped byte inside one record's vector: warm start finds it, moves the file aside. */
    rm_all();
    write_file(path, pb, plen);
    long off = find_record(path, 17);
    CHECK(off > 0);
    poke(path, off + 200, 0x40);
    CHECK(cge_cache_file_verify(path, &rep) == CGE_ERR_CACHE && rep.bad == 1 && rep.records == 40);
    hits = open_and_check(40, 1, &wrong, &moved);
    CHECK(hits == 0 && wrong == 0 && moved == 1);
    /* Without warm start the bad record is a miss, the rest still hit. */
    rm_all();
    write_file(path, pb, plen);
    poke(path, off + 200, 0x40);
    hits = open_and_check(40, 0, &wrong, &moved);
    CHECK_MSG(hits == 39 && wrong == 0 && moved == 0, "hits %d", hits);

    /* Random damage: 300 copies, each with a few random bytes changed anywhere. Whatever LMDB
     * and the checks make of it: no crash, no wrong vector. */
    uint64_t s = getenv("CGE_CACHE_DAMAGE_SEED") ? strtoull(getenv("CGE_CACHE_DAMAGE_SEED"), 0, 10)
                                                   : 12345;
    int rounds = getenv("CGE_CACHE_DAMAGE_ROUNDS") ? atoi(getenv("CGE_CACHE_DAMAGE_ROUNDS")) : 300;
    int n_moved = 0, total_wrong = 0;
    for (int round = 0; round < rounds; round++) {
        rm_all();
        FILE *o = fopen(path, "wb");
        fwrite(pb, 1, plen, o);
        fclose(o);
        int n = 1 + (int)(th_randf(&s) * 2 + 2);
        for (int j = 0; j < n; j++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            /* Half the hits in the first pages (meta, B-tree), half anywhere. */
            long at = (long)(j % 2 ? s % plen : s % 16384);
            poke(path, at, (unsigned char)(1u << (s >> 60 & 7)));
        }
        int w = 0, mv = 0;
        open_and_check(40, round % 2, &w, &mv);
        total_wrong += w;
        n_moved += mv;
    }
    free(pb);
    CHECK_MSG(total_wrong == 0, "%d wrong vectors", total_wrong);
    printf("  random damage: %d of %d files moved aside, no wrong vector\n", n_moved, rounds);
}

/* ==== Crash test ============================================================================== */

static void child_fill(uint64_t start) {
    struct cge_cache_params p = params();
    p.flush_batch = 32;
    p.flush_interval_ms = 2;
    p.max_entries = 1000;
    p.durable = 1;
    struct cge_cache *c = NULL;
    if (cge_cache_open(&p, &c) != CGE_OK) _exit(3);
    for (uint64_t i = start;; i++) {
        struct cge_cache_key k = K(i % 4000); /* overwrites too, after a while */
        struct cge_fused_embedding f;
        cge_cache_synthetic(&k, &f);
        if (cge_cache_put(c, &k, &f, NULL, 0) != CGE_OK) _exit(4);
    }
}

static void test_crash(void) {
    rm_all();
    uint64_t s = (uint64_t)time(NULL) | 1;
    int rounds = 8, clean = 0;
    uint64_t max_seen = 0;
    for (int r = 0; r < rounds; r++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) child_fill((uint64_t)r * 500);
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        usleep((useconds_t)(30000 + s % 300000)); /* 30..330 ms: before, during, between batches */
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        struct cge_cache_verify_report rep;
        struct stat sb;
        enum cge_status vs = CGE_OK; /* killed before it made the file: nothing to verify */
        if (stat(path, &sb) == 0) vs = cge_cache_file_verify(path, &rep);
        CHECK_MSG(vs == CGE_OK, "round %d: %s", r, rep.first_error);
        struct cge_cache_params p = params();
        struct cge_cache *c = open_p(&p);
        struct cge_cache_stats st;
        cge_cache_get_stats(c, &st);
        CHECK_MSG(!st.corrupt_moved, "round %d: file moved aside", r);
        int wrong = 0, hits = 0;
        for (uint64_t i = 0; i < 4000; i++) {
            int g = get(c, i);
            wrong += g < 0;
            hits += g == 1;
        }
        CHECK(wrong == 0);
        CHECK((uint64_t)hits == st.disk_entries);
        if (vs == CGE_OK && !st.corrupt_moved && !wrong) clean++;
        if (st.disk_entries > max_seen) max_seen = st.disk_entries;
        cge_cache_close(c);
    }
    CHECK(count_corrupt_files() == 0);
    CHECK(max_seen > 0);
    printf("  crash test: %d of %d rounds clean, up to %llu records survived\n", clean, rounds,
           (unsigned long long)max_seen);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/cge-cache-test-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/cache.mdb", dir);
    RUN(test_roundtrip);
    RUN(test_ttl_disk);
    RUN(test_foreign);
    RUN(test_verify_recompute);
    RUN(test_size_bound);
    RUN(test_corrupt);
    RUN(test_crash);
    rm_all();
    rmdir(dir);
    return test_report("cache_disk");
}
