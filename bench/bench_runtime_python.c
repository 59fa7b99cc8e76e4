/*
 * bench_runtime_python.c: what the Python binding (python/cge) costs on top of the C API.
 *
 * 1. Batch-of-one call overhead: the same calls (a short text, one thread, cache off) timed in
 *    C here and through the binding by bench/bench_python.py in a python3 process on this
 *    build's libcge.so; the difference per call is the binding's overhead in microseconds.
 * 2. Against the command line: the same inputs (the e2e bert_mean_l2 texts, repeated) embedded
 *    by `cge embed --model` and by a python3 process that imports cge, loads the same folder and
 *    embeds them in batches of the same size, both as whole processes (start, load, embed,
 *    write), median of 5 wall times.
 *
 * Key design decision: both sides run the same library code on the same inputs, so the figures
 * isolate the binding (ctypes marshalling, numpy allocation, the GIL release) from the model.
 * The interpreter is $CGE_PYTHON or Debian's /usr/bin/python3; without it (or numpy) the Python
 * half is reported as not run.
 */
#include "bench_common.h"
#include "cge.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MODEL_DIR "tests/fixtures/e2e/bert_mean_l2/model"
#define ENS_DIR   "tests/fixtures/ensemble/ensemble"
#define INPUTS    "tests/fixtures/e2e/bert_mean_l2/inputs.jsonl"
#define N_MANY    512 /* the e2e texts x 64 */

static char build_dir[1024];

static int find_build_dir(void) {
    char self[900];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 0;
    self[n] = 0;
    for (int k = 0; k < 2; k++) { /* <build>/bench/bench_x */
        char *s = strrchr(self, '/');
        if (!s) return 0;
        *s = 0;
    }
    snprintf(build_dir, sizeof build_dir, "%s", self);
    return 1;
}

/* Microseconds per call of fn(ctx): the best of many short runs (n calls in all, in runs of up to
 * 20 calls), after a warm-up. The minimum over short runs keeps a busy machine's interruptions
 * out; bench/bench_python.py measures the same way. */
static double best_us(int n, void (*fn)(void *), void *ctx) {
    int per = n / 20 < 1 ? 1 : n / 20 > 20 ? 20 : n / 20;
    int runs = n / per < 5 ? 5 : n / per;
    for (int w = 0; w < per; w++)
        fn(ctx);
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now_s();
        for (int i = 0; i < per; i++)
            fn(ctx);
        double dt = (bench_now_s() - t0) / per;
        if (dt < best) best = dt;
    }
    return best * 1e6;
}

struct call {
    struct cge_model *m;
    struct cge_engine *e;
    struct cge_provider *p;
    const struct cge_input *in;
    float out[CGE_FUSED_DIM];
    struct cge_input many[N_MANY]; /* texts for the batch rows */
    float many_out[N_MANY * 64];
    struct cge_result res[32];
};

static void call_engine_cached(void *ctx) {
    struct call *c = ctx;
    struct cge_result r;
    cge_engine_embed(c->e, c->in, 1, NULL, &r);
    cge_result_deinit(&r);
}

static void call_model_batches(void *ctx) {
    struct call *c = ctx;
    for (int b = 0; b < N_MANY; b += 32)
        cge_model_embed(c->m, c->many + b, 32, c->many_out, NULL);
}

static void call_engine_batch(void *ctx) {
    struct call *c = ctx;
    struct cge_embed_options opt = {.no_cache = 1};
    cge_engine_embed(c->e, c->many, 32, &opt, c->res);
    for (int i = 0; i < 32; i++)
        cge_result_deinit(&c->res[i]);
}

static void call_model(void *ctx) {
    struct call *c = ctx;
    cge_model_embed(c->m, c->in, 1, c->out, NULL);
}

static void call_engine(void *ctx) {
    struct call *c = ctx;
    struct cge_embed_options opt = {.no_cache = 1};
    struct cge_result r;
    cge_engine_embed(c->e, c->in, 1, &opt, &r);
    cge_result_deinit(&r);
}

static void call_provider(void *ctx) {
    struct call *c = ctx;
    cge_provider_embed(c->p, c->in->text, c->out);
}

static double children_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

/* Wall seconds of a shell command; *cpu gets the CPU seconds it used (all its processes). */
static double wall_of(const char *cmd, double *cpu) {
    double c0 = children_cpu_s(), t0 = bench_now_s();
    int rc = system(cmd);
    double dt = bench_now_s() - t0;
    *cpu = children_cpu_s() - c0;
    return rc == 0 ? dt : -1;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of 5 wall times; *cpu: the median of the CPU times. */
static double median5(const char *cmd, double *cpu) {
    double t[5], c[5];
    for (int i = 0; i < 5; i++) {
        t[i] = wall_of(cmd, &c[i]);
        if (t[i] < 0) return -1;
    }
    qsort(t, 5, sizeof t[0], cmp_d);
    qsort(c, 5, sizeof c[0], cmp_d);
    *cpu = c[2];
    return t[2];
}

/* The texts of INPUTS, repeated to fill c->many; returns the texts' storage (to free). */
static cJSON *load_many(struct call *c) {
    char *lines = read_text(INPUTS);
    cJSON *all = cJSON_CreateArray();
    int n = 0;
    char *save = NULL;
    for (char *ln = lines ? strtok_r(lines, "\n", &save) : NULL; ln;
         ln = strtok_r(NULL, "\n", &save)) {
        cJSON *d = cJSON_Parse(ln);
        if (d) cJSON_AddItemToArray(all, d);
        n += d != NULL;
    }
    free(lines);
    for (int i = 0; n && i < N_MANY; i++) {
        const char *t = cJSON_GetObjectItem(cJSON_GetArrayItem(all, i % n), "text")->valuestring;
        c->many[i].text = t;
        c->many[i].text_len = strlen(t);
    }
    return all;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    if (n < 10) n = 10;
    int ne = n / 10;
    if (!find_build_dir()) return 1;
    cge_set_threads(1);
    const char *text = "Hello world";
    struct cge_input in = {.text = text, .text_len = strlen(text)};

    /* ---- C side ------------------------------------------------------------------------- */
    static struct call c;
    c.in = &in;
    cJSON *texts = load_many(&c);
    if (cge_model_load(MODEL_DIR, NULL, &c.m) != CGE_OK) {
        fprintf(stderr, "bench_runtime_python: %s\n", cge_errmsg());
        return 1;
    }
    double c_model = best_us(n, call_model, &c);
    double c_model_batch = best_us(5, call_model_batches, &c) / (N_MANY / 32);
    int dim = cge_model_dim(c.m);
    cge_model_free(c.m);

    struct cge_engine_params ep = cge_engine_default_params();
    ep.cache = 0;
    double c_engine = -1, c_provider = -1, c_engine_batch = -1;
    if (cge_engine_open(ENS_DIR, &ep, &c.e) == CGE_OK) {
        c_engine = best_us(ne, call_engine, &c);
        c_engine_batch = best_us(5, call_engine_batch, &c);
        cge_engine_close(c.e);
        c.e = NULL;
    } else {
        fprintf(stderr, "bench_runtime_python: engine: %s\n", cge_errmsg());
    }
    double c_engine_hit = -1;
    if (cge_engine_open(ENS_DIR, NULL, &c.e) == CGE_OK) { /* cache on: every call but one hits */
        c_engine_hit = best_us(n, call_engine_cached, &c);
        cge_engine_close(c.e);
    }
    if (cge_provider_open(ENS_DIR, &c.p) == CGE_OK) {
        c_provider = best_us(ne, call_provider, &c);
        cge_provider_close(c.p);
    }

    /* ---- Python side -------------------------------------------------------------------- */
    const char *py = getenv("CGE_PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    char cmd[4096], env[1400];
    snprintf(env, sizeof env,
             "CGE_LIBRARY=%s/libcge.so PYTHONPATH=python PYTHONDONTWRITEBYTECODE=1", build_dir);
    snprintf(cmd, sizeof cmd, "%s %s bench/bench_python.py %d %s %s %s", env, py, n, MODEL_DIR,
             ENS_DIR, INPUTS);
    enum { N_PY = 12 };
    double py_v[N_PY];
    for (int k = 0; k < N_PY; k++)
        py_v[k] = -1;
    const char *names[N_PY] = {"model_embed",     "model_raw",       "engine_embed",
                               "engine_raw",      "provider_embed",  "model_batch",
                               "engine_batch",    "engine_hit",      "engine_hit_raw",
                               "engine_hit_both", "model_batch_raw", "engine_batch_raw"};
    FILE *f = popen(cmd, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char name[64];
        double v;
        if (sscanf(line, "py %63s %lf", name, &v) != 2) continue;
        for (int k = 0; k < N_PY; k++)
            if (!strcmp(name, names[k])) py_v[k] = v;
    }
    if (f) pclose(f);

    printf("python binding: batch-of-one call cost, one thread, cache off (\"Hello world\"); "
           "microseconds per call, best of short runs over %d calls (engine %d)\n",
           n, ne);
    printf("(\"bare ctypes call\": the same C call from Python on prepared inputs, its runs "
           "interleaved with the row above it: their difference is the binding's own cost; "
           "C vs Python columns come from two processes, so on a busy machine they differ "
           "by noise)\n");
    printf("%-36s %10s %10s %10s\n", "call", "C us", "Python us", "vs C");
    struct {
        const char *what;
        double c, py;
    } rows[] = {
        {"Model.embed (cge_model_embed)", c_model, py_v[0]},
        {"  bare ctypes call", c_model, py_v[1]},
        {"Engine.embed (cge_engine_embed)", c_engine, py_v[2]},
        {"  bare ctypes call", c_engine, py_v[3]},
        {"Engine.embed, cache hit", c_engine_hit, py_v[7]},
        {"  bare ctypes call", c_engine_hit, py_v[8]},
        {"  output='both' (12 slot arrays)", c_engine_hit, py_v[9]},
        {"Provider.embed, cache hit", c_provider, py_v[4]},
        {"Model.embed, batch of 32 texts", c_model_batch, py_v[5]},
        {"  bare ctypes call", c_model_batch, py_v[10]},
        {"Engine.embed, batch of 32 texts", c_engine_batch, py_v[6]},
        {"  bare ctypes call", c_engine_batch, py_v[11]},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        if (rows[k].c < 0 || rows[k].py < 0) {
            printf("%-36s %10.2f %10s %10s\n", rows[k].what, rows[k].c, "(not run)", "");
            continue;
        }
        printf("%-36s %10.2f %10.2f %+9.2f\n", rows[k].what, rows[k].c, rows[k].py,
               rows[k].py - rows[k].c);
    }

    /* ---- whole processes: cge embed vs python3 -------------------------------------------- */
    char in_path[] = "/tmp/cge_bench_py_XXXXXX";
    int fd = mkstemp(in_path);
    FILE *fi = fd >= 0 ? fdopen(fd, "w") : NULL;
    char *lines = fi ? read_text(INPUTS) : NULL;
    int n_lines = 0;
    for (int rep = 0; lines && rep < N_MANY / 8; rep++) {
        fputs(lines, fi);
        for (const char *q = lines; *q; q++)
            n_lines += *q == '\n';
    }
    if (fi) fclose(fi);
    free(lines);
    char cli[2048], pyp[4096];
    snprintf(cli, sizeof cli, "%s/cge embed --model %s --batch 32 --threads 1 < %s > /dev/null",
             build_dir, MODEL_DIR, in_path);
    snprintf(pyp, sizeof pyp,
             "%s %s -c 'import sys, json, cge; cge.set_threads(1); m = cge.Model(\"%s\"); "
             "xs = [json.loads(l) for l in open(\"%s\")]; o = sys.stdout; "
             "[o.write(json.dumps(r.tolist()) + \"\\n\") for b in range(0, len(xs), 32) "
             "for r in m.embed(xs[b:b + 32])]' > /dev/null",
             env, py, MODEL_DIR, in_path);
    char imp[2048];
    snprintf(imp, sizeof imp, "%s %s -c 'import cge; cge.set_threads(1)'", env, py);
    double cpu_cli, cpu_py, cpu_imp;
    double t_cli = median5(cli, &cpu_cli), t_py = median5(pyp, &cpu_py);
    double t_imp = median5(imp, &cpu_imp);
    printf("whole process, %d inputs (e2e bert_mean_l2 texts x %d), batch 32, one thread, dim %d, "
           "median of 5 (wall, CPU):\n",
           n_lines, N_MANY / 8, dim);
    printf("  cge embed --model                  %7.3f s %7.3f s\n", t_cli, cpu_cli);
    printf("  python3 + cge.Model.embed + json   %7.3f s %7.3f s  (%+.3f s, %+.3f s CPU)\n", t_py,
           cpu_py, t_py - t_cli, cpu_py - cpu_cli);
    printf("  of which python3 + import cge      %7.3f s %7.3f s\n", t_imp, cpu_imp);
    unlink(in_path);
    cJSON_Delete(texts);
    return 0;
}
