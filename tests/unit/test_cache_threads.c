/*
 * test_cache_threads.c: concurrent readers and writers (run it under ThreadSanitizer:
 * -DCGE_SANITIZE_THREAD=ON). Every policy, shared keys with eviction going on, every hit checked
 * bit for bit against the vector its key must have; then the same with the disk tier, its
 * write-behind thread and read-through, and a reopen that must find the same vectors.
 */
#include "cache/cache.h"
#include "core/core.h"
#include "testhelp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define N_KEYS    3000
#define N_THREADS 4

static struct cge_cache_key keys[N_KEYS];
static struct cge_fused_embedding *vals; /* [N_KEYS], read-only once filled */
static struct cge_cache *cache;
static atomic_int wrong, ops_done;
static atomic_long gets, hits_seen;
static int n_ops = 8000;

static void *worker(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    struct cge_fused_embedding out;
    for (int n = 0; n < n_ops; n++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* Skewed: half the traffic on 10 % of the keys. */
        int i = (int)(s >> 33) % (s & 1 ? N_KEYS / 10 : N_KEYS);
        atomic_fetch_add(&gets, 1);
        if (cge_cache_get(cache, &keys[i], &out, NULL, NULL)) {
            atomic_fetch_add(&hits_seen, 1);
            if (memcmp(out.vector, vals[i].vector, sizeof out.vector) ||
                out.selected[0] != vals[i].selected[0])
                atomic_fetch_add(&wrong, 1);
        } else {
            if (cge_cache_put(cache, &keys[i], &vals[i], NULL, 0) != CGE_OK)
                atomic_fetch_add(&wrong, 1);
        }
        if (n % 4096 == 0) {
            struct cge_cache_stats st;
            cge_cache_get_stats(cache, &st); /* stats while others work */
        }
        if ((s >> 20) % 997 == 0) cge_cache_remove(cache, &keys[i]);
    }
    atomic_fetch_add(&ops_done, n_ops);
    return NULL;
}

static void run_threads(void) {
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
}

static void test_memory(void) {
    enum cge_cache_policy pols[] = {CGE_CACHE_LRU, CGE_CACHE_LFU, CGE_CACHE_TTL_LRU, CGE_CACHE_ARC};
    for (int pi = 0; pi < 4; pi++) {
        struct cge_cache_params p = cge_cache_default_params();
        p.policy = pols[pi];
        p.max_entries = 1000;
        p.n_shards = 8;
        p.ttl_seconds = 3600;
        CHECK(cge_cache_open(&p, &cache) == CGE_OK);
        atomic_store(&wrong, 0);
        atomic_store(&gets, 0);
        atomic_store(&hits_seen, 0);
        run_threads();
        struct cge_cache_stats st;
        cge_cache_get_stats(cache, &st);
        CHECK_MSG(atomic_load(&wrong) == 0, "%s: %d wrong", cge_cache_policy_str(pols[pi]),
                  atomic_load(&wrong));
        CHECK(st.hits + st.misses == (uint64_t)atomic_load(&gets));
        CHECK(st.hits == (uint64_t)atomic_load(&hits_seen));
        CHECK(st.entries <= 1000 && st.entries > 500);
        printf("  %-8s %d threads: hit rate %.3f, %llu evictions\n", cge_cache_policy_str(pols[pi]),
               N_THREADS, st.hit_rate, (unsigned long long)st.evictions);
        cge_cache_close(cache);
    }
}

static void test_disk(void) {
    char dir[] = "/tmp/cge-cache-threads-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[256], lock[300];
    snprintf(path, sizeof path, "%s/c.mdb", dir);
    snprintf(lock, sizeof lock, "%s-lock", path);
    struct cge_cache_params p = cge_cache_default_params();
    p.path = path;
    p.max_entries = 300; /* small memory: many reads go through to disk */
    p.n_shards = 4;
    p.durable = 0;
    p.flush_interval_ms = 2;
    p.flush_batch = 64;
    p.ensemble_version = "threads";
    n_ops = 3000;
    CHECK(cge_cache_open(&p, &cache) == CGE_OK);
    atomic_store(&wrong, 0);
    run_threads();
    CHECK(cge_cache_flush(cache) == CGE_OK);
    struct cge_cache_stats st;
    cge_cache_get_stats(cache, &st);
    CHECK(atomic_load(&wrong) == 0);
    CHECK(st.disk_hits > 0 && st.disk_writes > 0 && st.disk_errors == 0);
    printf("  disk     %d threads: hit rate %.3f, %llu disk hits, %llu records written\n",
           N_THREADS, st.hit_rate, (unsigned long long)st.disk_hits,
           (unsigned long long)st.disk_writes);
    cge_cache_close(cache);
    CHECK(cge_cache_open(&p, &cache) == CGE_OK);
    int found = 0, bad = 0;
    for (int i = 0; i < N_KEYS; i++) {
        struct cge_fused_embedding out;
        if (cge_cache_get(cache, &keys[i], &out, NULL, NULL)) {
            found++;
            bad += memcmp(out.vector, vals[i].vector, sizeof out.vector) != 0;
        }
    }
    CHECK(found > 1000 && bad == 0);
    cge_cache_close(cache);
    unlink(path);
    unlink(lock);
    rmdir(dir);
}

int main(void) {
    vals = malloc(N_KEYS * sizeof *vals);
    for (int i = 0; i < N_KEYS; i++) {
        struct cge_cache_request r = {.modality = CGE_MOD_TEXT, .content = &i, .content_len = sizeof i};
        cge_cache_key_make(&r, &keys[i]);
        cge_cache_synthetic(&keys[i], &vals[i]);
    }
    RUN(test_memory);
    RUN(test_disk);
    free(vals);
    return test_report("cache_threads");
}
