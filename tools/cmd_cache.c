/*
 * cmd_cache.c: `cge cache stats|verify|bench`: inspect, check and exercise an embedding cache file.
 *
 * verify exits 1 on any inconsistency; bench writes synthetic entries whose vectors are a function
 * of their keys (cge_cache_synthetic), so a later `verify` recomputes every one of them.
 */
#include "cache/cache.h"
#include "cge.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge cache stats PATH\n"
            "       cge cache verify PATH\n"
            "       cge cache bench --path PATH --n N [--policy lru|lfu|ttl_lru|arc]\n"
            "                       [--max-entries M] [--disk-mb MB]\n"
            "stats   prints the file's header (format, ensemble version, dimensions) and counts\n"
            "verify  checks every record (structure, checksums, keys, dimensions, invariants;\n"
            "        recomputes synthetic ones) and exits 1 on any inconsistency\n"
            "bench   writes N synthetic entries to PATH, reads them back, reopens (warm start)\n"
            "        and prints put/get latency and throughput\n");
}

static void fmt_time(int64_t us, char *buf, size_t cap) {
    if (!us) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static int do_stats(const char *path) {
    struct cge_cache_file_info in;
    if (cge_cache_file_info(path, &in) != CGE_OK) {
        fprintf(stderr, "cge cache: %s\n", cge_errmsg());
        return 1;
    }
    char c0[64], c1[64], c2[64];
    fmt_time(in.created_us, c0, sizeof c0);
    fmt_time(in.oldest_us, c1, sizeof c1);
    fmt_time(in.newest_us, c2, sizeof c2);
    printf("file              %s\n", path);
    printf("format version    %u\n", in.format_version);
    printf("ensemble version  %s\n", in.ensemble_version);
    printf("dimensions        fused %u, per-slot total %u\n", in.fused_dim, in.total_dim);
    printf("created           %s\n", c0);
    printf("entries           %llu (%llu with per-slot vectors)\n",
           (unsigned long long)in.entries, (unsigned long long)in.entries_with_slots);
    printf("oldest / newest   %s / %s\n", c1, c2);
    printf("file size         %.1f MiB (live %.1f MiB, map limit %.1f MiB)\n",
           in.file_bytes / 1048576.0, in.live_bytes / 1048576.0, in.map_bytes / 1048576.0);
    return 0;
}

static int do_verify(const char *path) {
    struct cge_cache_verify_report r;
    double t0 = now_s();
    enum cge_status st = cge_cache_file_verify(path, &r);
    double dt = now_s() - t0;
    printf("%s: %llu records, %llu recomputed, %llu bad (%.2f s)\n", path,
           (unsigned long long)r.records, (unsigned long long)r.recomputed,
           (unsigned long long)r.bad, dt);
    if (st != CGE_OK) {
        fprintf(stderr, "cge cache verify: %s\n", r.first_error[0] ? r.first_error : cge_errmsg());
        return 1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_lat(const char *what, double *lat, size_t n, double total_s) {
    qsort(lat, n, sizeof *lat, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += lat[i];
    printf("%-28s %10.3f %10.3f %10.3f %12.0f\n", what, sum / (double)n * 1e6,
           lat[n / 2] * 1e6, lat[(size_t)((double)n * 0.99)] * 1e6, (double)n / total_s);
}

static int do_bench(int argc, char **argv) {
    const char *path = NULL;
    long long n = 0, max_entries = 100000, disk_mb = 2048;
    enum cge_cache_policy pol = CGE_CACHE_LRU;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--path") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--max-entries") && i + 1 < argc) max_entries = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--disk-mb") && i + 1 < argc) disk_mb = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--policy") && i + 1 < argc) {
            if (cge_cache_policy_parse(argv[++i], &pol) != CGE_OK) {
                fprintf(stderr, "cge cache bench: %s\n", cge_errmsg());
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!path || n <= 0 || max_entries <= 0 || disk_mb <= 0) {
        usage(stderr);
        return 2;
    }
    struct cge_cache_params p = cge_cache_default_params();
    p.path = path;
    p.policy = pol;
    p.max_entries = (uint64_t)max_entries;
    p.disk_max_bytes = (uint64_t)disk_mb << 20;
    p.ensemble_version = CGE_CACHE_SYNTHETIC_VERSION;
    struct cge_cache *c = NULL;
    double t0 = now_s();
    if (cge_cache_open(&p, &c) != CGE_OK) {
        fprintf(stderr, "cge cache bench: %s\n", cge_errmsg());
        return 1;
    }
    double t_open = now_s() - t0;
    size_t nn = (size_t)n;
    double *lat = malloc(nn * sizeof *lat);
    struct cge_fused_embedding *f = malloc(sizeof *f), *out = malloc(sizeof *out);
    if (!lat || !f || !out) {
        fprintf(stderr, "cge cache bench: out of memory\n");
        cge_cache_close(c);
        return 1;
    }
    printf("cge cache bench: %lld synthetic entries, policy %s, memory limit %lld entries, "
           "file %s (opened in %.3f s)\n",
           n, cge_cache_policy_str(pol), max_entries, path, t_open);
    printf("%-28s %10s %10s %10s %12s\n", "operation", "mean us", "p50 us", "p99 us", "ops/s");
    int rc = 0;
    /* Puts: the caller's latency (memory insert + queueing); then the flush to disk. */
    double t_put = now_s();
    for (size_t i = 0; i < nn; i++) {
        struct cge_cache_key k;
        cge_cache_synthetic_key(i, &k);
        cge_cache_synthetic(&k, f);
        double a = now_s();
        if (cge_cache_put(c, &k, f, NULL, 0) != CGE_OK) {
            fprintf(stderr, "cge cache bench: put %zu: %s\n", i, cge_errmsg());
            rc = 1;
            break;
        }
        lat[i] = now_s() - a;
    }
    double t_flush = now_s();
    cge_cache_flush(c);
    double now = now_s();
    print_lat("put (memory + queue)", lat, nn, now - t_put);
    printf("%-28s %43.0f  (%lld records, flush wait %.3f s)\n", "put to disk, end to end",
           (double)n / (now - t_put), n, now - t_flush);
    /* Gets: hits in memory (or read through from disk past the memory limit). */
    long long wrong = 0, miss = 0;
    double t_get = now_s();
    for (size_t i = 0; i < nn; i++) {
        struct cge_cache_key k;
        cge_cache_synthetic_key(i, &k);
        double a = now_s();
        int hit = cge_cache_get(c, &k, out, NULL, NULL);
        lat[i] = now_s() - a;
        if (!hit) {
            miss++;
            continue;
        }
        cge_cache_synthetic(&k, f);
        wrong += memcmp(out->vector, f->vector, sizeof f->vector) != 0;
    }
    print_lat("get (hit)", lat, nn, now_s() - t_get);
    struct cge_cache_stats s;
    cge_cache_get_stats(c, &s);
    cge_cache_close(c);
    /* Warm start. */
    t0 = now_s();
    if (cge_cache_open(&p, &c) != CGE_OK) {
        fprintf(stderr, "cge cache bench: reopen: %s\n", cge_errmsg());
        rc = 1;
    } else {
        double t_warm = now_s() - t0;
        struct cge_cache_stats s2;
        cge_cache_get_stats(c, &s2);
        printf("%-28s %10.3f s for %llu entries (%.0f entries/s)\n", "warm start (reopen)", t_warm,
               (unsigned long long)s2.warm_loaded, (double)s2.warm_loaded / t_warm);
        cge_cache_close(c);
    }
    printf("memory: %llu entries, %.1f MiB; disk: %llu records, %.1f MiB, %llu evicted, "
           "%llu disk hits\n",
           (unsigned long long)s.entries, s.bytes / 1048576.0, (unsigned long long)s.disk_entries,
           s.disk_bytes / 1048576.0, (unsigned long long)s.disk_evictions,
           (unsigned long long)s.disk_hits);
    if (wrong || (miss && s.disk_evictions == 0)) {
        fprintf(stderr, "cge cache bench: %lld wrong vectors, %lld misses\n", wrong, miss);
        rc = 1;
    }
    free(lat);
    free(f);
    free(out);
    return rc;
}

int cmd_cache(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "stats") && argc == 3) return do_stats(argv[2]);
    if (!strcmp(argv[1], "verify") && argc == 3) return do_verify(argv[2]);
    if (!strcmp(argv[1], "bench")) return do_bench(argc - 1, argv + 1);
    usage(stderr);
    return 2;
}
