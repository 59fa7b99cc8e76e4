/*
 * bench_runtime_batching.c: dynamic batching under an open-loop load, and a hot swap under load,
 * on a real-size one-slot ensemble (a random all-MiniLM-L6-v2-shaped E1 and the production
 * FuseMoE layout; bench/make_real_ensemble.py makes it; CGE_BENCH_ENSEMBLE=DIR overrides).
 *
 * Load: 16 submitter threads, each a Poisson process of rate/16, single-input calls; a call's
 * latency runs from its scheduled arrival (so queueing counts), 3 s per point. Short texts
 * (about 12 tokens) and long ones (about 200). Batching on (continuous: max_wait 0), on with
 * max_wait 5 ms, and off (each call runs its own batch of one) at the same rates, side by side.
 * Reports throughput, P50/P95/P99, the batches formed, and the fraction of the fp32 GEMM peak.
 * Then: a swap of E1 in the middle of a steady load (failed requests, P99 before/during, the
 * swap's duration). Prints BENCH_JSON lines for the history.
 */
#include "bench_common.h"
#include "cge.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_SUB 16
#define MAX_REQ 20000

static const char *SHORT = "a short sentence about embeddings in a graph";
static char LONG[2048];

struct load {
    struct cge_engine *e;
    double rate;      /* items/s over all threads */
    double seconds;
    const char *text;
    /* results */
    pthread_mutex_t mu;
    double lat[MAX_REQ];
    int n, failed;
    double t_start;
};

struct sub {
    struct load *L;
    uint64_t seed;
};

static void *submitter(void *arg) {
    struct sub *s = arg;
    struct load *L = s->L;
    double t = L->t_start;
    struct cge_input in;
    memset(&in, 0, sizeof in);
    in.text = L->text;
    in.text_len = strlen(L->text);
    for (;;) {
        /* exponential inter-arrival of rate/N_SUB */
        double u = (bench_randu(&s->seed) + 1.0) / 2.0;
        t += -log(u > 1e-12 ? u : 1e-12) / (L->rate / N_SUB);
        if (t - L->t_start > L->seconds) break;
        double now = bench_now_s();
        if (t > now) usleep((useconds_t)((t - now) * 1e6));
        struct cge_result r;
        enum cge_status st = cge_engine_embed(L->e, &in, 1, NULL, &r);
        double done = bench_now_s();
        pthread_mutex_lock(&L->mu);
        if (st || r.status) L->failed++;
        else if (L->n < MAX_REQ) L->lat[L->n++] = (done - t) * 1e3;
        pthread_mutex_unlock(&L->mu);
        cge_result_deinit(&r);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pctl(double *v, int n, double p) {
    if (!n) return 0;
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

/* Runs one load point; fills *L; returns wall seconds. */
static double run_load(struct load *L) {
    pthread_t th[N_SUB];
    struct sub subs[N_SUB];
    L->n = L->failed = 0;
    pthread_mutex_init(&L->mu, NULL);
    L->t_start = bench_now_s() + 0.05;
    for (int i = 0; i < N_SUB; i++) {
        subs[i] = (struct sub){.L = L, .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)};
        pthread_create(&th[i], NULL, submitter, &subs[i]);
    }
    for (int i = 0; i < N_SUB; i++) pthread_join(th[i], NULL);
    double wall = bench_now_s() - L->t_start;
    qsort(L->lat, (size_t)L->n, sizeof *L->lat, cmp_d);
    pthread_mutex_destroy(&L->mu);
    return wall;
}

static void *load_thread(void *arg) {
    run_load(arg);
    return NULL;
}

static struct cge_engine *open_engine(const char *ens, int batching, int wait_ms, int workers) {
    struct cge_engine_params p = cge_engine_default_params();
    p.n_workers = workers;
    p.cache = 0;
    p.batching = batching;
    p.max_wait_ms = wait_ms;
    struct cge_engine *e = NULL;
    if (cge_engine_open(ens, &p, &e)) {
        fprintf(stderr, "bench_runtime_batching: %s\n", cge_errmsg());
        return NULL;
    }
    /* warm: the first calls fault the weights in and build the oneDNN primitives */
    struct cge_input in;
    memset(&in, 0, sizeof in);
    in.text = SHORT;
    in.text_len = strlen(SHORT);
    for (int i = 0; i < 3; i++) {
        struct cge_result r;
        cge_engine_embed(e, &in, 1, NULL, &r);
        cge_result_deinit(&r);
    }
    return e;
}

int main(void) {
    const char *ens = getenv("CGE_BENCH_ENSEMBLE");
    static char dir[256] = "/tmp/cge-bench-minilm";
    if (!ens) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/make_real_ensemble.py %s >/dev/null", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_runtime_batching: could not make the real-size ensemble (python3-numpy?)\n");
            return 1;
        }
        ens = dir;
    }
    size_t o = 0;
    while (o + 64 < sizeof LONG && o < 900) o += (size_t)snprintf(LONG + o, sizeof LONG - o, "the context graph links facts %zu. ", o);
    double peak = bench_gemm_peak(CGE_DTYPE_F32, 128, 4096, 4096, 5);
    printf("ensemble %s, %d threads, fp32 GEMM peak %.0f GFLOP/s\n", ens, cge_get_threads(), peak);
    /* work per item: the fusion (input_proj 13184x4096 + 2 experts of 4096x4096 + 4096x1536)
     * plus E1 (6 layers of 4·384² + 2·384·1536 MACs per token) */
    const double fusion_flop = 2.0 * (13184.0 * 4096 + 2 * (4096.0 * 4096 + 4096.0 * 1536));
    const double e1_flop_per_tok = 2.0 * 6 * (4 * 384.0 * 384 + 2 * 384.0 * 1536);

    struct { const char *name; const char *text; double tokens; double rates[4]; } kinds[2] = {
        {"short", SHORT, 12, {20, 60, 120, 240}},
        {"long", LONG, 200, {10, 30, 60, 120}},
    };
#define N_MODES 4
    struct { const char *name; int batching, wait, workers; } modes[N_MODES] = {
        {"batching, 1 worker x2", 1, 0, 1}, {"batching, 2 workers x1", 1, 0, 2},
        {"batching, wait 5 ms", 1, 5, 1}, {"batch of one", 0, 0, 1}};
    static struct load L;
    /* one engine per mode (loading the fusion takes seconds), every point on it */
    static char lines[2][4][N_MODES][200];
    static double jn[2][4][N_MODES][7];
    for (int m = 0; m < N_MODES; m++) {
        struct cge_engine *e = open_engine(ens, modes[m].batching, modes[m].wait, modes[m].workers);
        if (!e) return 1;
        for (int k = 0; k < 2; k++) {
            for (int r = 0; r < 4; r++) {
                struct cge_engine_stats s0, s1;
                cge_engine_get_stats(e, &s0);
                L = (struct load){.e = e, .rate = kinds[k].rates[r], .seconds = 3, .text = kinds[k].text};
                double wall = run_load(&L);
                cge_engine_get_stats(e, &s1);
                double ips = L.n / wall;
                double gflops = ips * (fusion_flop + e1_flop_per_tok * kinds[k].tokens) * 1e-9;
                uint64_t db = s1.slots[0].batches - s0.slots[0].batches;
                double items = s1.slots[0].mean_batch * (double)s1.slots[0].batches -
                               s0.slots[0].mean_batch * (double)s0.slots[0].batches;
                double mb = modes[m].batching && db ? items / (double)db : 1.0;
                double v[7] = {ips, pctl(L.lat, L.n, 0.5), pctl(L.lat, L.n, 0.95),
                               pctl(L.lat, L.n, 0.99), L.failed, mb, gflops / peak};
                memcpy(jn[k][r][m], v, sizeof v);
                snprintf(lines[k][r][m], sizeof lines[k][r][m],
                         "%-22s %8.0f %9.1f %8.1f %8.1f %8.1f %7d %9.2f %6.1f%%", modes[m].name,
                         kinds[k].rates[r], ips, v[1], v[2], v[3], L.failed, mb, 100 * v[6]);
            }
        }
        cge_engine_close(e);
    }
    for (int k = 0; k < 2; k++) {
        printf("\n%s texts (~%.0f tokens), open loop, %d submitters, 3 s per point\n", kinds[k].name,
               kinds[k].tokens, N_SUB);
        printf("%-22s %8s %9s %8s %8s %8s %7s %9s %7s\n", "mode", "offered", "items/s", "P50 ms",
               "P95 ms", "P99 ms", "failed", "batch E1", "% peak");
        for (int r = 0; r < 4; r++)
            for (int m = 0; m < N_MODES; m++) printf("%s\n", lines[k][r][m]);
        for (int r = 0; r < 4; r++)
            for (int m = 0; m < N_MODES; m++)
                printf("BENCH_JSON {\"bench\": \"runtime_batching\", \"texts\": \"%s\", \"mode\": \"%s\", "
                       "\"offered\": \"%.0f\", \"items_per_s\": %.2f, \"p50_ms\": %.2f, \"p95_ms\": %.2f, "
                       "\"p99_ms\": %.2f, \"failed\": %.0f, \"mean_batch\": %.2f, \"peak_fraction\": %.4f}\n",
                       kinds[k].name, modes[m].name, kinds[k].rates[r], jn[k][r][m][0], jn[k][r][m][1],
                       jn[k][r][m][2], jn[k][r][m][3], jn[k][r][m][4], jn[k][r][m][5], jn[k][r][m][6]);
    }

    /* hot swap under a steady load: E1 swapped for the same folder in the middle */
    struct cge_engine *e = open_engine(ens, 1, 0, 1);
    if (!e) return 1;
    L = (struct load){.e = e, .rate = 40, .seconds = 1.5, .text = SHORT};
    run_load(&L);
    double p99_before = pctl(L.lat, L.n, 0.99);
    int failed_before = L.failed;
    L = (struct load){.e = e, .rate = 40, .seconds = 3, .text = SHORT};
    pthread_t th;
    /* the load runs on its own thread while this one swaps */
    pthread_create(&th, NULL, load_thread, &L);
    usleep(1000000);
    char e1[600];
    snprintf(e1, sizeof e1, "%s/E1", ens);
    double t0 = bench_now_s();
    uint64_t v = 0;
    enum cge_status sst = cge_engine_swap(e, 0, e1, &v);
    double swap_s = bench_now_s() - t0;
    pthread_join(th, NULL);
    printf("\nhot swap of E1 under 40 items/s: %s (version %llu) in %.2f s; failed requests %d; "
           "P99 %.1f ms before, %.1f ms during\n", sst ? cge_errmsg() : "ok", (unsigned long long)v,
           swap_s, failed_before + L.failed, p99_before, pctl(L.lat, L.n, 0.99));
    printf("BENCH_JSON {\"bench\": \"runtime_hot_swap\", \"swap_s\": %.3f, \"failed\": %d, "
           "\"p99_before_ms\": %.2f, \"p99_during_ms\": %.2f}\n", swap_s, failed_before + L.failed,
           p99_before, pctl(L.lat, L.n, 0.99));
    cge_engine_close(e);
    return 0;
}
