/*
 * bench_cache.c: the embedding cache's numbers: hit latency in memory, gets/s on 1 and 2 threads,
 * put throughput to disk (fsync per batch and not), warm start of 100,000 entries, and the hit
 * rates of LRU, LFU and ARC on a Zipf workload with periodic scans at several cache sizes.
 * Set CGE_BENCH_QUICK=1 for a short run (smaller sizes).
 */
#include "cache/cache.h"
#include "core/core.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* This thread's CPU time: on a busy machine the wall clock also counts other processes' turns. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Item i's key, without hashing content (the workloads only need distinct keys). */
static struct cge_cache_key item_key(uint64_t i) {
    struct cge_cache_key k = {mix(i), mix(i ^ 0xABCDEF1234567ull), 64};
    return k;
}

static struct cge_fused_embedding proto; /* one valid value for every put */

static struct cge_cache *open_mem(enum cge_cache_policy pol, uint64_t entries, int shards) {
    struct cge_cache_params p = cge_cache_default_params();
    p.policy = pol;
    p.max_entries = entries;
    p.n_shards = shards;
    struct cge_cache *c = NULL;
    if (cge_cache_open(&p, &c) != CGE_OK) {
        fprintf(stderr, "open: %s\n", cge_errmsg());
        exit(1);
    }
    return c;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ==== Hit latency and gets/s ================================================================== */

struct getter {
    struct cge_cache *c;
    uint64_t n_keys;
    long n;
    double secs, cpu;
};

static void *get_loop(void *arg) {
    struct getter *g = arg;
    struct cge_fused_embedding out;
    uint64_t s = (uint64_t)(uintptr_t)g + 1;
    double t0 = now_s(), c0 = cpu_s();
    for (long i = 0; i < g->n; i++) {
        s = mix(s);
        struct cge_cache_key k = item_key(s % g->n_keys);
        if (!cge_cache_get(g->c, &k, &out, NULL, NULL)) abort();
    }
    g->secs = now_s() - t0;
    g->cpu = cpu_s() - c0;
    return NULL;
}

static void bench_hits(int quick) {
    uint64_t n_keys = 10000;
    struct cge_cache *c = open_mem(CGE_CACHE_LRU, 2 * n_keys, 16); /* room in every shard */
    for (uint64_t i = 0; i < n_keys; i++) {
        struct cge_cache_key k = item_key(i);
        cge_cache_put(c, &k, &proto, NULL, 0);
    }
    /* Per-call latency of one hit (clock overhead included, ~20 ns). */
    int n = quick ? 20000 : 200000;
    double *lat = malloc((size_t)n * sizeof *lat);
    struct cge_fused_embedding out;
    for (int i = 0; i < n; i++) {
        struct cge_cache_key k = item_key(mix((uint64_t)i) % n_keys);
        double a = now_s();
        cge_cache_get(c, &k, &out, NULL, NULL);
        lat[i] = now_s() - a;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    double c0 = cpu_s();
    for (int i = 0; i < n; i++) {
        struct cge_cache_key k = item_key(mix((uint64_t)i) % n_keys);
        cge_cache_get(c, &k, &out, NULL, NULL);
    }
    double cpu_per = (cpu_s() - c0) / n;
    printf("%-44s %9.3f us CPU per hit\n", "hit cost, 10k entries (60 MB: from DRAM)",
           cpu_per * 1e6);
    c0 = cpu_s();
    for (int i = 0; i < n; i++) {
        struct cge_cache_key k = item_key(mix((uint64_t)i) % 64);
        cge_cache_get(c, &k, &out, NULL, NULL);
    }
    printf("%-44s %9.3f us CPU per hit\n", "hit cost, 64 hot entries (from CPU caches)",
           (cpu_s() - c0) / n * 1e6);
    printf("%-44s %9.3f us p50, %.3f us p99, %.3f us p99.9\n",
           "memory hit latency (6 KiB copy, 10k entries)", lat[n / 2] * 1e6,
           lat[(int)(n * 0.99)] * 1e6, lat[(int)(n * 0.999)] * 1e6);
    free(lat);
    /* Puts into a full cache: insert + evict (two allocations, two frees, a 6 KiB copy). */
    {
        struct cge_cache *f = open_mem(CGE_CACHE_LRU, 4096, 16);
        int np = quick ? 20000 : 200000;
        double p0 = cpu_s();
        for (int i = 0; i < np; i++) {
            struct cge_cache_key k = item_key(1000000 + (uint64_t)i);
            cge_cache_put(f, &k, &proto, NULL, 0);
        }
        printf("%-44s %9.3f us CPU per put\n", "memory put, full LRU (insert + evict)",
               (cpu_s() - p0) / np * 1e6);
        cge_cache_close(f);
    }
    long per = quick ? 200000 : 1000000;
    for (int threads = 1; threads <= 2; threads++) {
        struct getter g[2];
        pthread_t t[2];
        for (int i = 0; i < threads; i++) {
            g[i] = (struct getter){c, n_keys, per, 0, 0};
            pthread_create(&t[i], NULL, get_loop, &g[i]);
        }
        double total = 0, slow = 0, cpu = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            total += (double)per / g[i].secs;
            if (g[i].secs > slow) slow = g[i].secs;
            cpu += g[i].cpu;
        }
        printf("%-44s %9.2f M gets/s wall (%.0f ns CPU per get)\n",
               threads == 1 ? "gets/s, 1 thread, 16 shards" : "gets/s, 2 threads, 16 shards",
               total / 1e6, cpu / (double)(per * threads) * 1e9);
    }
    cge_cache_close(c);
}

/* ==== Disk ==================================================================================== */

static char dir[256];

static void rm_dir_files(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -f %s/*", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static double fill_disk(const char *path, uint64_t n, int durable, uint64_t mem_entries) {
    struct cge_cache_params p = cge_cache_default_params();
    p.path = path;
    p.durable = durable;
    p.max_entries = mem_entries;
    p.ensemble_version = "bench";
    struct cge_cache *c = NULL;
    if (cge_cache_open(&p, &c) != CGE_OK) {
        fprintf(stderr, "open %s: %s\n", path, cge_errmsg());
        exit(1);
    }
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        struct cge_cache_key k;
        cge_cache_synthetic_key(i, &k);
        proto.content_hash = k.h1;
        cge_cache_put(c, &k, &proto, NULL, 0);
    }
    cge_cache_flush(c);
    double dt = now_s() - t0;
    cge_cache_close(c);
    return dt;
}

static void bench_disk(int quick) {
    char path[300];
    snprintf(path, sizeof path, "%s/bench.mdb", dir);
    uint64_t n = quick ? 2000 : 20000;
    for (int durable = 1; durable >= 0; durable--) {
        rm_dir_files();
        double dt = fill_disk(path, n, durable, 100000);
        printf("%-44s %9.0f puts/s (%llu entries, %.1f MB/s)\n",
               durable ? "put to disk, fsync per batch of 512" : "put to disk, no fsync",
               (double)n / dt, (unsigned long long)n, (double)n * 6.3e-3 / dt);
    }
    /* Warm start: 100,000 entries written, then the time to reopen and load them. */
    uint64_t nw = quick ? 10000 : 100000;
    rm_dir_files();
    fill_disk(path, nw, 0, 2 * nw);
    struct cge_cache_params p = cge_cache_default_params();
    p.path = path;
    p.max_entries = 2 * nw; /* room in every shard: all of them load */
    p.ensemble_version = "bench";
    struct cge_cache *c = NULL;
    double t0 = now_s(), c0 = cpu_s();
    if (cge_cache_open(&p, &c) != CGE_OK) {
        fprintf(stderr, "reopen: %s\n", cge_errmsg());
        exit(1);
    }
    double dt = now_s() - t0, dc = cpu_s() - c0;
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    cge_cache_close(c);
    struct stat sb;
    stat(path, &sb);
    printf("%-44s %9.3f s for %llu entries (%.3f s CPU; %.0f MiB file)\n",
           "warm start (open, check, load)", dt, (unsigned long long)s.warm_loaded, dc,
           sb.st_size / 1048576.0);
    /* Read-through: memory for 1 %, every get from disk. */
    p.max_entries = nw / 100;
    p.warm_start = 0;
    if (cge_cache_open(&p, &c) == CGE_OK) {
        int m = quick ? 2000 : 20000;
        struct cge_fused_embedding out;
        int hits = 0;
        t0 = now_s();
        for (int i = 0; i < m; i++) {
            struct cge_cache_key k;
            cge_cache_synthetic_key(mix((uint64_t)i) % nw, &k);
            hits += cge_cache_get(c, &k, &out, NULL, NULL);
        }
        dt = now_s() - t0;
        printf("%-44s %9.1f us per get (%d of %d hits)\n", "disk read-through (verify + promote)",
               dt / m * 1e6, hits, m);
        cge_cache_close(c);
    }
    rm_dir_files();
}

/* ==== Hit rates: Zipf with periodic scans ===================================================== */

static double *zipf_cdf;
static uint64_t zipf_n;

static void zipf_init(uint64_t n, double s) {
    zipf_n = n;
    zipf_cdf = malloc(n * sizeof *zipf_cdf);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) zipf_cdf[i] = (sum += 1.0 / pow((double)(i + 1), s));
    for (uint64_t i = 0; i < n; i++) zipf_cdf[i] /= sum;
}

static uint64_t zipf_draw(uint64_t *st) {
    *st = mix(*st);
    double u = (double)(*st >> 11) * (1.0 / 9007199254740992.0);
    uint64_t lo = 0, hi = zipf_n - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    /* Scatter ranks over ids so popular items do not share shards by accident. */
    return mix(lo * 0x9E37u + 17);
}

/* Returns the hit rate over all requests; *steady gets it over the requests after the first
 * fifth (the cache warmed up: first-time misses no longer dominate). */
static double hit_rate(enum cge_cache_policy pol, uint64_t size, long n_req, long scan_every,
                       long scan_len, double *steady) {
    struct cge_cache *c = open_mem(pol, size, 16);
    struct cge_fused_embedding out;
    uint64_t st = 42, scan_id = 1ull << 62;
    long hits = 0, total = 0, hits0 = 0, total0 = 0;
    for (long r = 0; r < n_req; r++) {
        if (r == n_req / 5) {
            hits0 = hits;
            total0 = total;
        }
        if (r % scan_every == scan_every - 1) /* a scan: scan_len items seen once */
            for (long j = 0; j < scan_len; j++, total++) {
                struct cge_cache_key k = item_key(scan_id++);
                if (cge_cache_get(c, &k, &out, NULL, NULL)) hits++;
                else cge_cache_put(c, &k, &proto, NULL, 0);
            }
        struct cge_cache_key k = item_key(zipf_draw(&st));
        total++;
        if (cge_cache_get(c, &k, &out, NULL, NULL)) hits++;
        else cge_cache_put(c, &k, &proto, NULL, 0);
    }
    cge_cache_close(c);
    *steady = (double)(hits - hits0) / (double)(total - total0);
    return (double)hits / (double)total;
}

static void bench_hit_rates(int quick) {
    uint64_t universe = 20000;
    double zs[2] = {1.0, 1.2};
    long n_req = quick ? 100000 : 400000, scan_every = 50000, scan_len = 2000;
    uint64_t sizes[] = {200, 1000, 2000, 4000, 6000, 8000};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    enum cge_cache_policy pols[] = {CGE_CACHE_LRU, CGE_CACHE_LFU, CGE_CACHE_ARC};
    printf("\nhit rate: Zipf over %llu items, %ld requests, and every %ld requests a scan of %ld "
           "items seen once (16 shards)\n",
           (unsigned long long)universe, n_req, scan_every, scan_len);
    double hr[2][NS][3], steady;
    for (int z = 0; z < 2; z++) {
        zipf_init(universe, zs[z]);
        for (int si = 0; si < NS; si++)
            for (int p = 0; p < 3; p++)
                hr[z][si][p] = hit_rate(pols[p], sizes[si], n_req, scan_every, scan_len, &steady);
        free(zipf_cdf);
    }
    printf("%-16s", "");
    for (int z = 0; z < 2; z++) printf("   Zipf s = %.1f                 ", zs[z]);
    printf("\n%-16s", "entries");
    for (int z = 0; z < 2; z++) {
        for (int p = 0; p < 3; p++) printf(" %9s", cge_cache_policy_str(pols[p]));
        printf("  ");
    }
    printf("\n");
    for (int si = 0; si < NS; si++) {
        char lab[32];
        snprintf(lab, sizeof lab, "%llu (%.0f%%)", (unsigned long long)sizes[si],
                 100.0 * (double)sizes[si] / (double)universe);
        printf("%-16s", lab);
        for (int z = 0; z < 2; z++) {
            for (int p = 0; p < 3; p++) printf(" %8.1f%%", hr[z][si][p] * 100);
            printf("  ");
        }
        printf("\n");
    }
    printf("%-16s", "> 80 % from");
    for (int z = 0; z < 2; z++) {
        for (int p = 0; p < 3; p++) {
            int at = -1;
            for (int si = NS - 1; si >= 0 && hr[z][si][p] > 0.8; si--) at = si;
            if (at >= 0) printf(" %9llu", (unsigned long long)sizes[at]);
            else printf(" %9s", "-");
        }
        printf("  ");
    }
    printf("  entries\n");
}

int main(void) {
    int quick = getenv("CGE_BENCH_QUICK") != NULL;
    struct cge_cache_key k;
    cge_cache_synthetic_key(0, &k);
    cge_cache_synthetic(&k, &proto);
    snprintf(dir, sizeof dir, "/tmp/cge-bench-cache-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    double t0 = now_s();
    printf("cge cache benchmark (entries: 1536-d fused vector, 6.3 KB on disk)\n");
    const char *part = getenv("CGE_BENCH_PART"); /* hits | disk | rates: one part only */
    if (!part || !strcmp(part, "hits")) bench_hits(quick);
    if (!part || !strcmp(part, "disk")) bench_disk(quick);
    if (!part || !strcmp(part, "rates")) bench_hit_rates(quick);
    rm_dir_files();
    rmdir(dir);
    printf("(%.1f s)\n", now_s() - t0);
    return 0;
}
