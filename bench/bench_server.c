/*
 * bench_server.c: `cge serve` throughput and latency: wrk (tests/http/load.lua, every request a
 * new single text, cache off) at 1, 16 and 64 connections: requests/s and P50/P95/P99; against
 * `cge embed --ensemble --no-cache` on the same number of texts in one batched process (items/s,
 * its start-up subtracted); and the server's own overhead at one connection: the HTTP P50 minus
 * the engine's median time for one such text through cge_engine_embed in this process.
 *
 * Ensemble: CGE_BENCH_ENSEMBLE=DIR, else the demo ensemble (the shared fixture: twelve tiny
 * models, so the engine's time is small and the HTTP overhead shows). Seconds per wrk run:
 * CGE_BENCH_SECONDS (default 5). Usage: bench_server (from the repository root, after
 * `make bench` built build/cge).
 */
#include "cge.h"
#include "core/core.h"

#include "../tests/server_proc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CGE_BIN
#    error "CGE_BIN must be defined by the build"
#endif

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double now_s(void) {
    return (double)cge__now_us() / 1e6;
}

/* Seconds `cge embed` takes on n generated texts (one process, its batching). */
static double cli_seconds(const char *ens, int n) {
    char path[] = "/tmp/cge_bench_server_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < n; i++) fprintf(f, "\"a short load test text number %d from thread 9\"\n", i);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s embed --ensemble %s --no-cache --batch 32 < %s > /dev/null 2>&1",
             CGE_BIN, ens, path);
    double t0 = now_s();
    int rc = system(cmd);
    double t = now_s() - t0;
    unlink(path);
    return rc == 0 ? t : -1;
}

int main(void) {
    const char *ens = getenv("CGE_BENCH_ENSEMBLE");
    if (!ens) ens = "tests/fixtures/ensemble/ensemble";
    const char *sec_env = getenv("CGE_BENCH_SECONDS");
    int secs = sec_env ? atoi(sec_env) : 5;
    if (secs < 1) secs = 1;
    if (system("wrk --version >/dev/null 2>&1") == 127 * 256) {
        printf("bench_server: wrk is not installed (scripts/deps.sh): skipped\n");
        return 0;
    }
    printf("bench_server: ensemble %s, %d s per run, cache off\n", ens, secs);

    /* The engine's own time for one new text (median of 200). */
    struct cge_engine_params ep = cge_engine_default_params();
    ep.cache = 0;
    struct cge_engine *e = NULL;
    if (cge_engine_open(ens, &ep, &e) != CGE_OK) {
        printf("bench_server: %s\n", cge_errmsg());
        return 1;
    }
    enum { N_WARM = 30, N_ENGINE = 200 };
    double t[N_WARM + N_ENGINE];
    for (int i = 0; i < N_WARM + N_ENGINE; i++) {
        char text[96];
        snprintf(text, sizeof text, "a short load test text number %d from thread 7", i);
        struct cge_input in = {.text = text, .text_len = strlen(text)};
        struct cge_result r;
        double t0 = now_s();
        cge_engine_embed(e, &in, 1, NULL, &r);
        t[i] = now_s() - t0;
        cge_result_deinit(&r);
    }
    cge_engine_close(e);
    qsort(t + N_WARM, N_ENGINE, sizeof t[0], cmp_d); /* the first N_WARM warm up */
    double engine_ms = t[N_WARM + N_ENGINE / 2] * 1e3;
    printf("engine alone, one text: median %.3f ms\n", engine_ms);

    struct srv s;
    const char *args[] = {"--ensemble", ens, "--no-cache", "--quiet", NULL};
    if (srv_start(&s, args) != 0) return 1;
    printf("%-12s %10s %10s %10s %10s %8s\n", "connections", "req/s", "P50 ms", "P95 ms", "P99 ms",
           "non-2xx");
    double p50_1 = 0, rps_64 = 0;
    const int conns[] = {1, 16, 64};
    for (int c = 0; c < 3; c++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "wrk -t%d -c%d -d%ds --timeout 30s -s tests/http/load.lua "
                 "http://127.0.0.1:%d/v1/embeddings -- '' 0 2>&1",
                 conns[c] < 2 ? 1 : 2, conns[c], secs, s.port);
        FILE *p = popen(cmd, "r");
        char line[1024];
        long long req = 0, ok = 0, r429 = 0, other = 0, sockerr = 0;
        double rps = 0, p50 = 0, p95 = 0, p99 = 0;
        while (p && fgets(line, sizeof line, p))
            sscanf(line,
                   "LOAD requests=%lld ok=%lld r429=%lld other=%lld sockerr=%lld rps=%lf "
                   "p50_ms=%lf p95_ms=%lf p99_ms=%lf",
                   &req, &ok, &r429, &other, &sockerr, &rps, &p50, &p95, &p99);
        if (p) pclose(p);
        printf("%-12d %10.1f %10.3f %10.3f %10.3f %8lld\n", conns[c], rps, p50, p95, p99,
               r429 + other + sockerr);
        if (c == 0) p50_1 = p50;
        if (c == 2) rps_64 = rps;
    }
    srv_stop(&s, SIGTERM);

    int n_cli = (int)(rps_64 * 2) > 256 ? (int)(rps_64 * 2) : 256;
    double t1 = cli_seconds(ens, 1), tn = cli_seconds(ens, n_cli);
    if (t1 > 0 && tn > t1) {
        double cli_rate = (n_cli - 1) / (tn - t1);
        printf("cge embed --ensemble, %d texts in one process: %.1f texts/s (start-up %.2f s "
               "subtracted)\n", n_cli, cli_rate, t1);
        printf("server at 64 connections / batched command line: %.0f %%\n",
               100.0 * rps_64 / cli_rate);
    }
    printf("server overhead at 1 connection: P50 %.3f ms - engine %.3f ms = %.3f ms\n", p50_1,
           engine_ms, p50_1 - engine_ms);
    return 0;
}
