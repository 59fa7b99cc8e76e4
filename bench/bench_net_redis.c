/*
 * bench_net_redis.c: what Redis costs and gives, on this machine, against a redis-server started
 * here (127.0.0.1, a free port, no persistence):
 *  1. cache-hit latency over loopback: a raw tier GET of a production-size value (fused vector
 *     and all twelve slots: 59 KB) and of a demo-size one, and a whole cge_engine_embed answered
 *     from Redis (a fresh engine: in-process miss, Redis hit) against one answered in-process;
 *  2. in-process embedding of N distinct texts (batches of 16, cache off): items/s;
 *  3. the same N texts as jobs through `cge submit` to 1 and then 2 `cge worker` processes
 *     (cache off, so every job is computed): jobs/s, and the Redis overhead per item against (2).
 * Ensemble: the demo (the shared fixture's twelve tiny slots) unless argv[1] names one; with tiny
 * models the per-item overhead weighs most. On 2 cores, 2 workers can gain little. CPU time per
 * item is reported beside jobs/s: on a shared machine wall time measures the neighbours too.
 * Runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets a policy. Prints a table and one
 * "BENCH_JSON {...}" line.
 */
#include "bench_common.h"
#include "cge.h"
#include "net/redis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_JOBS 384

static char cge_bin[1024], tmpdir[128], url[64];
static pid_t redis_pid;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[(int)(p * (n - 1) + 0.5)];
}

static pid_t spawn(const char *cmd, const char *in, const char *out, const char *err) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(in ? in : "/dev/null", O_RDONLY);
        if (fd >= 0) dup2(fd, 0);
        fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1);
        fd = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        char full[4096];
        snprintf(full, sizeof full, "exec %s", cmd);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int start_redis(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &l)) return -1;
    int port = ntohs(a.sin_port);
    close(s);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s", port, tmpdir);
    redis_pid = spawn(cmd, NULL, NULL, NULL);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    struct cge__redis *r = NULL;
    if (cge__redis_open(url, NULL, &r)) return -1;
    for (int i = 0; i < 250; i++) {
        const char *argv[1] = {"PING"};
        redisReply *rep = cge__redis_cmd(r, 200, 1, argv, NULL);
        if (rep) {
            freeReplyObject(rep);
            cge__redis_close(r);
            return 0;
        }
        sleep_ms(20);
    }
    cge__redis_close(r);
    return -1;
}

/* Waits until the worker's stderr shows it is serving (its engine is open). */
static int wait_ready(const char *errfile) {
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(errfile, "r");
        char line[512];
        int ok = 0;
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, ", stream ")) ok = 1;
        if (f) fclose(f);
        if (ok) return 0;
        sleep_ms(20);
    }
    return -1;
}

/* CPU seconds a process has used so far (/proc/PID/stat utime + stime). */
static double proc_cpu_s(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* redis-server's own CPU seconds (INFO cpu). */
static double redis_cpu_s(void) {
    struct cge__redis *r = NULL;
    if (cge__redis_open(url, NULL, &r)) return 0;
    const char *argv[2] = {"INFO", "cpu"};
    redisReply *rep = cge__redis_cmd(r, 0, 2, argv, NULL);
    double v = 0;
    if (rep && rep->type == REDIS_REPLY_STRING) {
        const char *a = strstr(rep->str, "used_cpu_sys:"), *b = strstr(rep->str, "used_cpu_user:");
        if (a && b) v = atof(a + 13) + atof(b + 14);
    }
    if (rep) freeReplyObject(rep);
    cge__redis_close(r);
    return v;
}

/* N_JOBS submitted to n workers (already up and warm): wall seconds of the submission, and in
 * *cpu the CPU seconds the workers, the submitter and redis-server used meanwhile. */
static double run_workers(int n, const char *ens, const char *inputs, double *cpu) {
    pid_t w[2];
    char err[2][256];
    for (int i = 0; i < n; i++) {
        char cmd[2048];
        snprintf(err[i], sizeof err[i], "%s/worker%d.err", tmpdir, i);
        snprintf(cmd, sizeof cmd, "%s worker --ensemble %s --redis %s --no-cache --batch 16 --consumer b%d",
                 cge_bin, ens, url, i);
        w[i] = spawn(cmd, NULL, NULL, err[i]);
    }
    for (int i = 0; i < n; i++)
        if (wait_ready(err[i])) fprintf(stderr, "worker %d did not start\n", i);
    char cmd[2048], out[256];
    snprintf(cmd, sizeof cmd, "%s submit --redis %s --timeout 600", cge_bin, url);
    snprintf(out, sizeof out, "%s/submit.out", tmpdir);
    double c0 = redis_cpu_s();
    for (int i = 0; i < n; i++) c0 += proc_cpu_s(w[i]);
    double t0 = bench_now_s();
    pid_t s = spawn(cmd, inputs, out, NULL);
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    wait4(s, &st, 0, &ru);
    double t = bench_now_s() - t0;
    double c1 = redis_cpu_s() + (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    for (int i = 0; i < n; i++) c1 += proc_cpu_s(w[i]);
    *cpu = c1 - c0;
    for (int i = 0; i < n; i++) {
        kill(w[i], SIGTERM);
        waitpid(w[i], NULL, 0);
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? t : -1;
}

int main(int argc, char **argv) {
    /* Idle OpenMP threads spin by default; a worker idles between batches (waiting on Redis) and
     * on a shared 2-core machine the spinning costs more CPU than the embedding (measured: 6x
     * the CPU per job). libgomp reads the policy when it loads, so set it and start again; the
     * in-process figures then run under the same policy as the workers. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        execv("/proc/self/exe", argv);
    }
    signal(SIGPIPE, SIG_IGN);
    const char *ens = argc > 1 ? argv[1] : cge_demo_ensemble_path();
    char self[900];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || !ens) return 1;
    self[n] = 0;
    for (int k = 0; k < 2; k++) *strrchr(self, '/') = 0;
    snprintf(cge_bin, sizeof cge_bin, "%s/cge", self);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cge-bench-redis-XXXXXX");
    if (!mkdtemp(tmpdir) || start_redis()) {
        fprintf(stderr, "bench_net_redis: cannot start redis-server\n");
        return 1;
    }
    /* the texts */
    static char texts[N_JOBS][160];
    struct cge_input in[N_JOBS];
    char inputs[256];
    snprintf(inputs, sizeof inputs, "%s/inputs.jsonl", tmpdir);
    FILE *f = fopen(inputs, "w");
    for (int i = 0; i < N_JOBS; i++) {
        snprintf(texts[i], sizeof texts[i],
                 "Document %d of the benchmark: a context graph links code, prose and media; item %d.", i, i * 7);
        memset(&in[i], 0, sizeof in[i]);
        in[i].text = texts[i];
        in[i].text_len = strlen(texts[i]);
        fprintf(f, "\"%s\"\n", texts[i]);
    }
    fclose(f);

    /* 1a. raw tier GETs */
    struct cge__redis_cache *c = NULL;
    cge__redis_cache_open(url, NULL, &c);
    size_t big = 4 * (16 + CGE_FUSED_DIM + CGE_N_EXPERTS + 13184), small = 4 * (16 + CGE_FUSED_DIM + 332);
    char *val = calloc(1, big);
    double get_big[500], get_small[500];
    cge__redis_cache_put(c, "bench:big", 9, val, big);
    cge__redis_cache_put(c, "bench:small", 11, val, small);
    for (int i = 0; i < 500; i++) {
        void *p = NULL;
        size_t l = 0;
        double t0 = bench_now_s();
        cge__redis_cache_get(c, "bench:big", 9, &p, &l);
        double t1 = bench_now_s();
        free(p);
        cge__redis_cache_get(c, "bench:small", 11, &p, &l);
        double t2 = bench_now_s();
        free(p);
        get_big[i] = (t1 - t0) * 1e6;
        get_small[i] = (t2 - t1) * 1e6;
    }
    cge__redis_cache_close(c);
    free(val);

    /* 1b. engine hits: Redis (fresh engine) vs in-process */
    struct cge_engine_params p = cge_engine_default_params();
    p.redis_url = url;
    struct cge_engine *e = NULL;
    if (cge_engine_open(ens, &p, &e)) {
        fprintf(stderr, "bench_net_redis: %s\n", cge_errmsg());
        return 1;
    }
    struct cge_result res[N_JOBS];
    cge_engine_embed(e, in, N_JOBS, NULL, res); /* fills Redis */
    for (int i = 0; i < N_JOBS; i++) cge_result_deinit(&res[i]);
    cge_engine_close(e);
    cge_engine_open(ens, &p, &e);
    double hit_redis[N_JOBS], hit_mem[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        double t0 = bench_now_s();
        cge_engine_embed(e, &in[i], 1, NULL, &res[i]);
        double t1 = bench_now_s();
        hit_redis[i] = (t1 - t0) * 1e6;
        cge_result_deinit(&res[i]);
        t0 = bench_now_s();
        cge_engine_embed(e, &in[i], 1, NULL, &res[i]);
        t1 = bench_now_s();
        hit_mem[i] = (t1 - t0) * 1e6;
        cge_result_deinit(&res[i]);
    }
    struct cge_engine_stats es;
    cge_engine_get_stats(e, &es);
    uint64_t runs = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) runs += es.slots[s].requests;
    printf("fresh engine: %llu inputs, %llu cache hits, %llu from Redis, %llu slot runs\n",
           (unsigned long long)es.inputs, (unsigned long long)es.cache_hits,
           (unsigned long long)es.redis_hits, (unsigned long long)runs);
    cge_engine_close(e);

    /* 2. in-process, cache off */
    p = cge_engine_default_params();
    p.cache = 0;
    cge_engine_open(ens, &p, &e);
    cge_engine_embed(e, in, 1, NULL, res); /* warm-up (the workers warm up at start too) */
    cge_result_deinit(&res[0]);
    double t0 = bench_now_s(), cpu0 = bench_cpu_s();
    for (int i = 0; i < N_JOBS; i += 16) cge_engine_embed(e, in + i, 16, NULL, res + i);
    double inproc = N_JOBS / (bench_now_s() - t0);
    double inproc_cpu_ms = (bench_cpu_s() - cpu0) * 1000 / N_JOBS;
    /* the result lines as cge embed and the workers print them (%.9g per float) */
    cpu0 = bench_cpu_s();
    size_t bytes = 0;
    for (int i = 0; i < N_JOBS; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        for (int k = 0; k < res[i].dim; k++) fprintf(m, k ? ",%.9g" : "[%.9g", (double)res[i].embedding[k]);
        fputs("]", m);
        fclose(m);
        bytes += len;
        free(buf);
        cge_result_deinit(&res[i]);
    }
    double format_cpu_ms = (bench_cpu_s() - cpu0) * 1000 / N_JOBS;
    cge_engine_close(e);

    /* 3. workers */
    double cpu1 = 0, cpu2 = 0;
    double t1w = run_workers(1, ens, inputs, &cpu1);
    double t2w = run_workers(2, ens, inputs, &cpu2);
    double j1 = t1w > 0 ? N_JOBS / t1w : 0, j2 = t2w > 0 ? N_JOBS / t2w : 0;
    double w1_cpu_ms = cpu1 * 1000 / N_JOBS, w2_cpu_ms = cpu2 * 1000 / N_JOBS;
    /* CPU, not wall time: on a shared machine wall time measures the neighbours too */
    double overhead_ms = w1_cpu_ms - inproc_cpu_ms - format_cpu_ms;

    double gb50 = pct(get_big, 500, 0.5), gb99 = pct(get_big, 500, 0.99);
    double gs50 = pct(get_small, 500, 0.5);
    double hr50 = pct(hit_redis, N_JOBS, 0.5), hr99 = pct(hit_redis, N_JOBS, 0.99);
    double hm50 = pct(hit_mem, N_JOBS, 0.5);
    printf("ensemble %s, %d distinct texts, Redis at %s, OMP_WAIT_POLICY=%s\n", ens, N_JOBS, url,
           getenv("OMP_WAIT_POLICY"));
    printf("tier GET, 59 KB value (production record)   p50 %8.1f us   p99 %8.1f us\n", gb50, gb99);
    printf("tier GET, %zu B value (demo record)          p50 %8.1f us\n", small, gs50);
    printf("engine hit from Redis (fresh engine)        p50 %8.1f us   p99 %8.1f us\n", hr50, hr99);
    printf("engine hit in-process                       p50 %8.1f us\n", hm50);
    printf("in-process embedding (batches of 16)        %8.2f items/s   %7.2f CPU ms/item\n", inproc, inproc_cpu_ms);
    printf("JSON result lines (%zu B each)              %7.2f CPU ms/item\n", bytes / N_JOBS, format_cpu_ms);
    printf("1 worker via Redis Streams                  %8.2f jobs/s    %7.2f CPU ms/item (all processes)\n", j1, w1_cpu_ms);
    printf("2 workers via Redis Streams                 %8.2f jobs/s    %7.2f CPU ms/item  (x%.2f jobs/s)\n", j2,
           w2_cpu_ms, j1 > 0 ? j2 / j1 : 0);
    printf("Redis queue overhead per item (1 worker)    %8.3f CPU ms (beyond embedding and JSON lines)\n", overhead_ms);
    printf("\nBENCH_JSON {\"bench\": \"net_redis\", \"get_59kb_p50_us\": %.1f, \"get_59kb_p99_us\": %.1f, "
           "\"get_demo_p50_us\": %.1f, \"engine_redis_hit_p50_us\": %.1f, \"engine_redis_hit_p99_us\": %.1f, "
           "\"engine_mem_hit_p50_us\": %.1f, \"inproc_items_per_s\": %.2f, \"jobs_per_s_1\": %.2f, "
           "\"jobs_per_s_2\": %.2f, \"inproc_cpu_ms_per_item\": %.3f, \"worker1_cpu_ms_per_item\": %.3f, "
           "\"worker2_cpu_ms_per_item\": %.3f, \"format_cpu_ms_per_item\": %.3f, \"overhead_cpu_ms_per_item\": %.3f}\n",
           gb50, gb99, gs50, hr50, hr99, hm50, inproc, j1, j2, inproc_cpu_ms, w1_cpu_ms, w2_cpu_ms, format_cpu_ms, overhead_ms);
    kill(redis_pid, SIGTERM);
    waitpid(redis_pid, NULL, 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    return 0;
}
