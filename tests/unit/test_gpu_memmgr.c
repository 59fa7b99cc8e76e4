/*
 * test_gpu_memmgr.c: the GPU memory manager's policy on the simulated device (src/gpu/simdev.c),
 * so it is checked on every machine, GPU or not: size classes, the limit, pool reuse,
 * fragmentation and defragmentation (the pool released so a large request fits, live buffers
 * never moved), injected device and host failures, the figures, and concurrent use (this test
 * runs under ThreadSanitizer in scripts/test-tsan.sh).
 */
#include "testhelp.h"

#include "core/core.h"
#include "gpu/memmgr.h"

#include <pthread.h>

#define MiB ((size_t)1 << 20)

static struct cge_gpu_mm *new_mm(struct cge_gpu_sim *sim, size_t limit, double thr, size_t dmin) {
    struct cge_gpu_dev dev = cge__gpu_sim_dev(sim);
    struct cge_gpu_mm_params p = cge__gpu_mm_default_params();
    p.limit = limit;
    p.defrag_threshold = thr;
    p.defrag_min = dmin;
    struct cge_gpu_mm *mm = NULL;
    CHECK(cge__gpu_mm_new(&dev, &p, &mm) == CGE_OK && mm);
    return mm;
}

/* What the manager holds is exactly what the device has handed out. */
static void check_consistent(struct cge_gpu_mm *mm, struct cge_gpu_sim *sim) {
    struct cge_gpu_mm_stats st;
    struct cge_gpu_sim_stats ss;
    cge__gpu_mm_stats(mm, &st);
    cge__gpu_sim_stats(sim, &ss);
    CHECK_MSG(st.reserved == st.used + st.pooled, "%zu != %zu + %zu", st.reserved, st.used,
              st.pooled);
    CHECK_MSG(ss.used == st.reserved, "device %zu, manager %zu", ss.used, st.reserved);
    CHECK(st.available == (st.limit > st.used ? st.limit - st.used : 0));
    CHECK(st.used <= st.limit && st.reserved <= st.limit);
}

static void test_classes(void) {
    CHECK(cge__gpu_mm_class_size(1) == 256);
    CHECK(cge__gpu_mm_class_size(256) == 256);
    CHECK(cge__gpu_mm_class_size(257) == 512);
    CHECK(cge__gpu_mm_class_size(1000) == 1024);
    CHECK(cge__gpu_mm_class_size(600) == 768);
    CHECK(cge__gpu_mm_class_size(1025) == 1280);
    CHECK(cge__gpu_mm_class_size(MiB) == MiB);
    CHECK(cge__gpu_mm_class_size(MiB + 1) == MiB + MiB / 4);
    CHECK(cge__gpu_mm_class_size(64 * MiB) == 64 * MiB);
    CHECK(cge__gpu_mm_class_size(64 * MiB + 1) == 66 * MiB);
    CHECK(cge__gpu_mm_class_size(1000 * MiB - 5) == 1000 * MiB);
    size_t prev = 0;
    int ok = 1;
    for (size_t n = 1; n < 70000; n += 37) {
        size_t c = cge__gpu_mm_class_size(n);
        if (c < n || c < prev || c % 256 || ((double)c > 1.25 * (double)n + 1 && c > n + 255))
            ok = 0;
        prev = c;
    }
    for (size_t n = 64 * MiB + 1; n < 4096 * MiB; n += 7 * MiB + 12345) {
        size_t c = cge__gpu_mm_class_size(n);
        if (c < n || (double)c > 1.032 * (double)n) ok = 0;
    }
    CHECK_MSG(ok, "classes: 256-byte multiples that cover the request, grow with it and waste "
                  "at most 25%% or 255 bytes");
}

static void test_limit(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(64 * MiB);
    struct cge_gpu_mm *mm = new_mm(sim, 2 * MiB, 1.0, 0);
    void *a = NULL, *b = NULL, *c = NULL;
    CHECK(cge__gpu_mm_alloc(mm, MiB, &a) == CGE_OK && a);
    CHECK(cge__gpu_mm_alloc(mm, MiB, &b) == CGE_OK && b && b != a);
    CHECK(cge__gpu_mm_alloc(mm, 1, &c) == CGE_ERR_NOMEM && c == NULL);
    const char *msg = cge_errmsg();
    CHECK_MSG(strstr(msg, "limit 2097152") && strstr(msg, "2097152 bytes in use") &&
                  strstr(msg, "cannot allocate 1 bytes"),
              "message: %s", msg);
    CHECK(cge__gpu_mm_alloc(mm, 3 * MiB, &c) == CGE_ERR_NOMEM);  /* larger than the limit */
    CHECK(cge__gpu_mm_alloc(mm, SIZE_MAX, &c) == CGE_ERR_NOMEM); /* no class at all */
    cge__gpu_mm_release(mm, b);
    CHECK(cge__gpu_mm_alloc(mm, MiB, &c) == CGE_OK && c == b); /* the pooled one, reused */
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.n_failed == 3 && st.n_alloc == 3 && st.n_reused == 1 && st.n_live == 2);
    CHECK(st.used == 2 * MiB && st.available == 0 && st.peak_used == 2 * MiB);
    check_consistent(mm, sim);
    cge__gpu_mm_release(mm, a);
    cge__gpu_mm_release(mm, c);
    check_consistent(mm, sim);
    cge__gpu_mm_free(mm);
    struct cge_gpu_sim_stats ss;
    cge__gpu_sim_stats(sim, &ss);
    CHECK(ss.used == 0 && ss.n_alloc == ss.n_free);
    cge__gpu_sim_free(sim);
}

static void test_pool_reuse(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(64 * MiB);
    struct cge_gpu_mm *mm = new_mm(sim, 64 * MiB, 1.0, 0);
    void *p[8];
    for (int i = 0; i < 8; i++)
        CHECK(cge__gpu_mm_alloc(mm, 1000 + (size_t)i, &p[i]) == CGE_OK);
    for (int i = 0; i < 8; i++)
        cge__gpu_mm_release(mm, p[i]);
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.used == 0 && st.pooled == 8 * 1024 && st.n_dev_alloc == 8);
    /* a steady state: the same shapes again come from the pool, newest first */
    for (int round = 0; round < 3; round++) {
        void *q[8];
        for (int i = 0; i < 8; i++)
            CHECK(cge__gpu_mm_alloc(mm, 900 + (size_t)i, &q[i]) == CGE_OK);
        if (round == 0) CHECK(q[0] == p[7]); /* LIFO: the last freed first */
        for (int i = 0; i < 8; i++)
            cge__gpu_mm_release(mm, q[i]);
    }
    /* another class is not served from this one */
    void *big = NULL;
    CHECK(cge__gpu_mm_alloc(mm, 4096, &big) == CGE_OK);
    cge__gpu_mm_stats(mm, &st);
    CHECK_MSG(st.n_dev_alloc == 9 && st.n_reused == 24, "%ld device allocations, %ld reused",
              st.n_dev_alloc, st.n_reused);
    cge__gpu_mm_release(mm, big);
    cge__gpu_mm_release(mm, NULL);        /* no-op */
    cge__gpu_mm_release(mm, (void *)&st); /* not ours: ignored with a warning */
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.n_live == 0 && st.pooled == 8 * 1024 + 4096);
    CHECK(cge__gpu_mm_defrag(mm) == 8 * 1024 + 4096);
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.pooled == 0 && st.reserved == 0 && st.n_defrag == 1);
    check_consistent(mm, sim);
    cge__gpu_mm_free(mm);
    cge__gpu_mm_free(NULL);
    cge__gpu_sim_free(sim);
}

/* Large buffers: reused by best fit with at most 1/8 to spare, within the limit. */
static void test_large(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(1024 * MiB);
    struct cge_gpu_mm *mm = new_mm(sim, 600 * MiB, 1.0, 0);
    void *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL;
    CHECK(cge__gpu_mm_alloc(mm, 100 * MiB, &a) == CGE_OK);
    CHECK(cge__gpu_mm_alloc(mm, 104 * MiB, &e) == CGE_OK);
    CHECK(cge__gpu_mm_alloc(mm, 120 * MiB, &b) == CGE_OK);
    cge__gpu_mm_release(mm, a);
    cge__gpu_mm_release(mm, e);
    cge__gpu_mm_release(mm, b);
    CHECK(cge__gpu_mm_alloc(mm, 95 * MiB, &c) == CGE_OK && c == a); /* 100 for 96: best fit */
    CHECK(cge__gpu_mm_alloc(mm, 95 * MiB, &f) == CGE_OK && f == e); /* then 104 */
    CHECK(cge__gpu_mm_alloc(mm, 80 * MiB, &d) == CGE_OK && d != b); /* 120 for 80: too loose */
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK_MSG(st.used == 284 * MiB && st.pooled == 120 * MiB && st.n_reused == 2,
              "used %zu pooled %zu", st.used, st.pooled);
    check_consistent(mm, sim);
    cge__gpu_mm_release(mm, c);
    cge__gpu_mm_release(mm, d);
    cge__gpu_mm_release(mm, f);
    cge__gpu_mm_free(mm);
    cge__gpu_sim_free(sim);
}

/* Many live buffers (the live table grows), a manager freed with buffers still live (they go
 * back to the device), and a manager without a device. */
static void test_many_and_teardown(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(64 * MiB);
    struct cge_gpu_mm *mm = new_mm(sim, 64 * MiB, 1.0, 0);
    void *p[500];
    int ok = 1;
    for (int i = 0; i < 500; i++)
        ok &= cge__gpu_mm_alloc(mm, 512 + (size_t)i * 64, &p[i]) == CGE_OK;
    CHECK(ok);
    for (int i = 0; i < 500; i += 2)
        cge__gpu_mm_release(mm, p[i]);
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.n_live == 250);
    check_consistent(mm, sim);
    cge__gpu_mm_free(mm); /* 250 still live: a warning, and all of it back to the device */
    struct cge_gpu_sim_stats ss;
    cge__gpu_sim_stats(sim, &ss);
    CHECK(ss.used == 0 && ss.n_alloc == ss.n_free && ss.n_free_extents == 1);
    struct cge_gpu_mm *none = NULL;
    CHECK(cge__gpu_mm_new(NULL, NULL, &none) == CGE_ERR_INVALID_VALUE && !none);
    cge__gpu_sim_free(sim);
}

/* A full, fragmented device: defragmentation releases the pool (never a live buffer) so that
 * a large request fits; when live buffers themselves fragment the device, a clear error. */
static void test_fragmentation(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(16 * MiB);
    struct cge_gpu_mm *mm = new_mm(sim, 1024 * MiB, 1.0, 0); /* no threshold releases */
    void *p[16];
    for (int i = 0; i < 16; i++)
        CHECK(cge__gpu_mm_alloc(mm, MiB, &p[i]) == CGE_OK);
    struct cge_gpu_sim_stats ss;
    cge__gpu_sim_stats(sim, &ss);
    CHECK(ss.used == 16 * MiB && ss.largest_free == 0);
    for (int i = 4; i < 8; i++)
        cge__gpu_mm_release(mm, p[i]); /* 4 adjacent MiB pooled */
    void *big = NULL;
    CHECK(cge__gpu_mm_alloc(mm, 4 * MiB, &big) == CGE_OK && big == p[4]);
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.n_defrag == 1 && st.pooled == 0 && st.used == 16 * MiB);
    check_consistent(mm, sim);
    /* live buffers fragment it now: every other MiB free, none two wide */
    cge__gpu_mm_release(mm, big);
    cge__gpu_mm_defrag(mm);
    for (int i = 4; i < 8; i++)
        CHECK(cge__gpu_mm_alloc(mm, MiB, &p[i]) == CGE_OK);
    for (int i = 1; i < 16; i += 2)
        cge__gpu_mm_release(mm, p[i]);
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.fragmentation == 0.5);
    void *two = NULL;
    CHECK(cge__gpu_mm_alloc(mm, 2 * MiB, &two) == CGE_ERR_NOMEM && !two);
    CHECK_MSG(strstr(cge_errmsg(), "device is out of memory") &&
                  strstr(cge_errmsg(), "cannot allocate 2097152 bytes"),
              "message: %s", cge_errmsg());
    cge__gpu_sim_stats(sim, &ss);
    CHECK(ss.used == 8 * MiB && ss.largest_free == MiB && ss.n_free_extents == 8);
    /* the live ones were not touched: all still releasable, and then the device is whole */
    for (int i = 0; i < 16; i += 2)
        cge__gpu_mm_release(mm, p[i]);
    cge__gpu_mm_defrag(mm);
    cge__gpu_sim_stats(sim, &ss);
    CHECK(ss.used == 0 && ss.largest_free == 16 * MiB && ss.n_free_extents == 1);
    check_consistent(mm, sim);
    cge__gpu_mm_free(mm);
    cge__gpu_sim_free(sim);
}

static void test_threshold_and_limit_pool(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(64 * MiB);
    /* threshold: the pool is released once it is over half of what is held */
    struct cge_gpu_mm *mm = new_mm(sim, 64 * MiB, 0.5, MiB);
    void *p[4];
    for (int i = 0; i < 4; i++)
        CHECK(cge__gpu_mm_alloc(mm, MiB, &p[i]) == CGE_OK);
    cge__gpu_mm_release(mm, p[0]);
    cge__gpu_mm_release(mm, p[1]); /* 2/4 pooled: not over */
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.pooled == 2 * MiB && st.n_defrag == 0);
    cge__gpu_mm_release(mm, p[2]); /* 3/4: released */
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.pooled == 0 && st.n_defrag == 1 && st.used == MiB);
    check_consistent(mm, sim);
    cge__gpu_mm_release(mm, p[3]);
    cge__gpu_mm_free(mm);

    /* the limit counts pooled memory: a new class makes room by releasing other classes */
    mm = new_mm(sim, 4 * MiB, 1.0, 0);
    for (int i = 0; i < 4; i++)
        CHECK(cge__gpu_mm_alloc(mm, MiB, &p[i]) == CGE_OK);
    for (int i = 0; i < 4; i++)
        cge__gpu_mm_release(mm, p[i]);
    void *two = NULL;
    CHECK(cge__gpu_mm_alloc(mm, 2 * MiB, &two) == CGE_OK);
    cge__gpu_mm_stats(mm, &st);
    CHECK_MSG(st.reserved <= 4 * MiB && st.pooled == 2 * MiB && st.n_defrag == 1,
              "reserved %zu pooled %zu", st.reserved, st.pooled);
    check_consistent(mm, sim);
    cge__gpu_mm_release(mm, two);
    cge__gpu_mm_free(mm);
    struct cge_gpu_sim_stats ss;
    cge__gpu_sim_stats(sim, &ss);
    CHECK(ss.used == 0);
    cge__gpu_sim_free(sim);
}

static void test_failures(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(64 * MiB);
    struct cge_gpu_mm *mm = new_mm(sim, 64 * MiB, 1.0, 0);
    void *p = NULL, *q = NULL;
    /* a device error is reported as such, not as out of memory */
    cge__gpu_sim_fail_after(sim, 0, CGE_ERR_GPU);
    CHECK(cge__gpu_mm_alloc(mm, 4096, &p) == CGE_ERR_GPU && !p);
    CHECK(strstr(cge_errmsg(), "device error") != NULL);
    /* out of memory with a pool: released and retried once, then a clear error */
    cge__gpu_sim_fail_after(sim, -1, CGE_OK);
    CHECK(cge__gpu_mm_alloc(mm, 8192, &q) == CGE_OK);
    cge__gpu_mm_release(mm, q);
    cge__gpu_sim_fail_after(sim, 0, CGE_ERR_NOMEM);
    CHECK(cge__gpu_mm_alloc(mm, 4096, &p) == CGE_ERR_NOMEM && !p);
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.pooled == 0 && st.n_defrag == 1 && st.n_failed == 2 && st.n_dev_alloc == 4);
    check_consistent(mm, sim);
    /* a failure after k good ones */
    cge__gpu_sim_fail_after(sim, 2, CGE_ERR_NOMEM);
    void *r[3] = {0};
    CHECK(cge__gpu_mm_alloc(mm, 4096, &r[0]) == CGE_OK);
    CHECK(cge__gpu_mm_alloc(mm, 4096, &r[1]) == CGE_OK);
    CHECK(cge__gpu_mm_alloc(mm, 4096, &r[2]) == CGE_ERR_NOMEM && !r[2]);
    cge__gpu_sim_fail_after(sim, -1, CGE_OK);
    /* host allocation failures: every one a clean error, no leak (ASan) */
    for (long k = 0; k < 4; k++) {
        void *h = NULL;
        cge__fail_alloc_after(k);
        enum cge_status s = cge__gpu_mm_alloc(mm, 3 * MiB, &h);
        cge__fail_alloc_after(-1);
        CHECK(s == CGE_OK || (s == CGE_ERR_NOMEM && !h));
        cge__gpu_mm_release(mm, h);
        struct cge_gpu_mm *m2 = NULL;
        struct cge_gpu_dev dev = cge__gpu_sim_dev(sim);
        cge__fail_alloc_after(k);
        s = cge__gpu_mm_new(&dev, NULL, &m2);
        cge__fail_alloc_after(-1);
        CHECK(s == CGE_OK ? m2 != NULL : (s == CGE_ERR_NOMEM && !m2));
        cge__gpu_mm_free(m2);
    }
    cge__gpu_mm_release(mm, r[0]);
    cge__gpu_mm_release(mm, r[1]);
    check_consistent(mm, sim);
    cge__gpu_mm_free(mm);
    struct cge_gpu_sim_stats ss;
    cge__gpu_sim_stats(sim, &ss);
    CHECK(ss.used == 0);
    cge__gpu_sim_free(sim);
}

/* ---- concurrency ----------------------------------------------------------------------------- */
struct worker {
    struct cge_gpu_mm *mm;
    unsigned seed;
    int errors;
};

static void *work(void *arg) {
    struct worker *w = arg;
    void *held[16] = {0};
    for (int i = 0; i < 3000; i++) {
        w->seed = w->seed * 1103515245u + 12345u;
        int slot = (int)((w->seed >> 16) % 16);
        if (held[slot]) {
            cge__gpu_mm_release(w->mm, held[slot]);
            held[slot] = NULL;
        } else {
            size_t n = 256 + (size_t)((w->seed >> 8) % (256 * 1024));
            enum cge_status s = cge__gpu_mm_alloc(w->mm, n, &held[slot]);
            if (s != CGE_OK && s != CGE_ERR_NOMEM) w->errors++;
        }
        if (i % 1000 == 999) cge__gpu_mm_defrag(w->mm);
    }
    for (int i = 0; i < 16; i++)
        cge__gpu_mm_release(w->mm, held[i]);
    return NULL;
}

static void test_threads(void) {
    struct cge_gpu_sim *sim = cge__gpu_sim_new(32 * MiB);
    struct cge_gpu_mm *mm = new_mm(sim, 24 * MiB, 0.5, 4 * MiB);
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.mm = mm, .seed = 17u + (unsigned)i};
        pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        CHECK(w[i].errors == 0);
    struct cge_gpu_mm_stats st;
    cge__gpu_mm_stats(mm, &st);
    CHECK(st.used == 0 && st.n_live == 0 && st.n_alloc > 1000 && st.n_reused > 0);
    CHECK(st.peak_reserved <= 24 * MiB);
    check_consistent(mm, sim);
    cge__gpu_mm_free(mm);
    cge__gpu_sim_free(sim);
}

int main(void) {
    RUN(test_classes);
    RUN(test_limit);
    RUN(test_pool_reuse);
    RUN(test_large);
    RUN(test_many_and_teardown);
    RUN(test_fragmentation);
    RUN(test_threshold_and_limit_pool);
    RUN(test_failures);
    RUN(test_threads);
    return test_report("gpu_memmgr");
}
