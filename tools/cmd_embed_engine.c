/*
 * cmd_embed_engine.c: `cge embed --ensemble DIR | --config FILE` (or neither: the configured
 * ensemble, else the built-in demo): JSON lines in, one JSON line out per input, through the
 * engine (cge_engine_embed), so the command line gives exactly what the C API gives.
 *
 * Input lines: a JSON string, or {"text"|"code"|"image"|"audio": ..., "role"?: "query" |
 * "document", "instruction"?: ..., "language"?: ...}; media paths are relative to the current
 * directory. Output per --output: fused (a JSON array of floats), slots ({"slots": {"E1": [...] |
 * null, ...}}), both ({"embedding", "expert_weights", "selected", "slots"}, plus "slot_errors"
 * when a slot failed). A failed input prints {"error": "..."} and the others go on.
 * --format npy --out FILE writes the fused vectors as one (n, dim) float32 .npy file instead
 * (failed rows are NaN, and their errors go to stderr).
 *
 * Design: lines are embedded in batches (--batch, default 32); a batch also goes as soon as stdin
 * has nothing more ready, so an interactive session answers each line at once while a file gets
 * full batches. Only the public API (cge.h) is used.
 */
#include "cge.h"
#include "commands.h"
#include "redis_jobs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum output { OUT_FUSED, OUT_SLOTS, OUT_BOTH };


struct run {
    struct cge_engine *e;
    enum output output;
    FILE *npy;            /* --format npy: the output file */
    int64_t rows;         /* rows written (npy) and lines answered */
    int64_t failed;
    /* progress (a terminal on stderr and a file on stdin) */
    int progress;
    off_t total_bytes;
    off_t done_bytes;
    double t0, last;
    /* the batch being read */
    struct tool_line *lines;
    struct cge_input *ins;
    struct cge_result *res;
    struct cge_embed_options opt;
    int n;
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge embed [--ensemble DIR | --config FILE] [--output fused|slots|both]\n"
            "                 [--format jsonl|npy --out FILE] [--batch N] [--threads N]\n"
            "                 [--no-cache] [--no-truncate] [--timeout-ms N]\n"
            "                 [--redis URL] [--stats] [--backend cpu|cuda|cuda:N|auto]\n"
            "       cge embed --model DIR ...   (one model folder; see cge embed --model --help)\n"
            "\n"
            "Reads JSON lines on stdin and writes one JSON line per input:\n"
            "  \"some text\"                                   a JSON string (a document)\n"
            "  {\"text\": \"...\", \"role\": \"query\", \"instruction\": \"...\"}\n"
            "  {\"code\": \"def f(): ...\", \"language\": \"python\"}\n"
            "  {\"image\": \"cat.png\"}   {\"audio\": \"talk.wav\"}    paths relative to the current directory\n"
            "--output fused   the fused vector, a JSON array (default)\n"
            "--output slots   {\"slots\": {\"E1\": [...] | null, ...}}: the per-slot vectors\n"
            "--output both    {\"embedding\", \"expert_weights\", \"selected\", \"slots\"}\n"
            "Without --ensemble or --config: $CGE_CONFIG or ~/.config/cge/config.json, else the\n"
            "built-in demo ensemble (tiny random weights: well-formed vectors that mean nothing).\n"
            "--redis URL      redis://[user:pass@]host[:port][/db]: a cache shared by processes\n"
            "--stats          the engine's counters as one JSON line on stderr at exit\n"
            "--backend NAME   where the models run: cpu (default), cuda, cuda:N, auto (an unusable\n"
            "                 device falls back to the cpu with a warning; Mistral stays on the cpu)\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- input ---------------------------------------------------------------------------------- */

void tool_parse_input(const char *s, size_t n, struct tool_line *l, int allow_pair) {
    memset(l, 0, sizeof *l);
    l->pair = -1;
    l->doc = cJSON_ParseWithLength(s, n);
    if (!l->doc) {
        snprintf(l->err, sizeof l->err, "invalid JSON");
        return;
    }
    const cJSON *d = l->doc;
    if (cJSON_IsString(d)) {
        l->in.text = d->valuestring;
        l->in.text_len = strlen(d->valuestring);
        return;
    }
    if (!cJSON_IsObject(d)) {
        snprintf(l->err, sizeof l->err, "expected a JSON string or object");
        return;
    }
    int kinds = 0;
    for (const cJSON *k = d->child; k; k = k->next) {
        const char *key = k->string;
        int content = !strcmp(key, "text") || !strcmp(key, "code") || !strcmp(key, "image") ||
                      !strcmp(key, "audio");
        if (allow_pair && !strcmp(key, "pair")) {
            if (cJSON_IsNumber(k) && k->valuedouble >= 0 && k->valuedouble < 9e15 &&
                k->valuedouble == (double)(int64_t)k->valuedouble) {
                l->pair = (int64_t)k->valuedouble;
            } else if (cJSON_IsString(k)) {
                uint64_t h = 1469598103934665603ull; /* FNV-1a: a string id names a pair */
                for (const char *c = k->valuestring; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
                l->pair = (int64_t)(h >> 1);
            } else {
                snprintf(l->err, sizeof l->err, "\"pair\" must be an integer >= 0 or a string");
                return;
            }
        } else if (content || !strcmp(key, "instruction") || !strcmp(key, "language") ||
            !strcmp(key, "role")) {
            if (!cJSON_IsString(k)) {
                snprintf(l->err, sizeof l->err, "\"%s\" must be a string", key);
                return;
            }
        } else {
            snprintf(l->err, sizeof l->err,
                     "unknown field \"%.60s\" (expected text, code, image, audio, role, "
                     "instruction, language)", key);
            return;
        }
        if (allow_pair && !strcmp(key, "pair")) continue;
        if (content) kinds++;
        if (!strcmp(key, "text") || !strcmp(key, "code")) {
            l->in.text = k->valuestring;
            l->in.text_len = strlen(k->valuestring);
            l->in.is_code = !strcmp(key, "code");
        } else if (!strcmp(key, "image")) {
            l->in.image_path = k->valuestring;
        } else if (!strcmp(key, "audio")) {
            l->in.audio_path = k->valuestring;
        } else if (!strcmp(key, "instruction")) {
            l->in.instruction = k->valuestring;
        } else if (!strcmp(key, "language")) {
            l->in.language = k->valuestring;
        } else if (!strcmp(k->valuestring, "query")) {
            l->in.role = CGE_ROLE_QUERY;
        } else if (!strcmp(k->valuestring, "document")) {
            l->in.role = CGE_ROLE_DOCUMENT;
        } else {
            snprintf(l->err, sizeof l->err, "\"role\" must be \"query\" or \"document\"");
            return;
        }
    }
    if (kinds != 1)
        snprintf(l->err, sizeof l->err, "give exactly one of \"text\", \"code\", \"image\", \"audio\"");
}

void tool_line_free(struct tool_line *l) {
    cJSON_Delete(l->doc);
    memset(l, 0, sizeof *l);
}

/* ---- output --------------------------------------------------------------------------------- */

static void print_json_string(const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *p = j ? cJSON_PrintUnformatted(j) : NULL;
    fputs(p ? p : "\"out of memory\"", stdout);
    cJSON_free(p);
    cJSON_Delete(j);
}

static void print_error(const char *msg) {
    fputs("{\"error\": ", stdout);
    print_json_string(msg);
    fputs("}\n", stdout);
}

static void print_floats(const float *v, int n) {
    fputc('[', stdout);
    for (int i = 0; i < n; i++) printf(i ? ",%.9g" : "%.9g", (double)v[i]);
    fputc(']', stdout);
}

static void print_slots(const struct cge_result *r) {
    fputs("{", stdout);
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        printf(s ? ", \"E%d\": " : "\"E%d\": ", s + 1);
        const struct cge_slot_result *sr = &r->slots[s];
        if (sr->state == CGE_SLOT_OK) print_floats(sr->vector, sr->dim);
        else fputs("null", stdout);
    }
    fputs("}", stdout);
}

static void print_result(const struct run *R, const struct cge_result *r) {
    if (R->output == OUT_FUSED) {
        print_floats(r->embedding, r->dim);
        fputc('\n', stdout);
        return;
    }
    if (R->output == OUT_SLOTS) {
        fputs("{\"slots\": ", stdout);
        print_slots(r);
        fputs("}\n", stdout);
        return;
    }
    fputs("{\"embedding\": ", stdout);
    print_floats(r->embedding, r->dim);
    fputs(", \"expert_weights\": ", stdout);
    print_floats(r->expert_weights, r->n_experts);
    fputs(", \"selected\": [", stdout);
    for (int k = 0; k < r->top_k; k++) printf(k ? ",%d" : "%d", r->selected[k]);
    fputs("], \"slots\": ", stdout);
    print_slots(r);
    int any = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (r->slots[s].state != CGE_SLOT_FAILED) continue;
        fputs(any ? ", " : ", \"slot_errors\": {", stdout);
        printf("\"E%d\": ", s + 1);
        print_json_string(r->slots[s].errmsg);
        any = 1;
    }
    if (any) fputs("}", stdout);
    fputs("}\n", stdout);
}

/* The .npy header for (rows, dim) float32, padded to a fixed 128 bytes so the row count can be
 * rewritten in place at the end. */
static int npy_header(FILE *f, int64_t rows, int dim) {
    char h[128];
    memset(h, ' ', sizeof h);
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    uint16_t hl = 128 - 10;
    h[8] = (char)(hl & 0xff);
    h[9] = (char)(hl >> 8);
    char d[118];
    int n = snprintf(d, sizeof d, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %d), }",
                     (long long)rows, dim);
    if (n < 0 || n >= (int)sizeof d - 1) return -1;
    memcpy(h + 10, d, (size_t)n);
    h[127] = '\n';
    return fseek(f, 0, SEEK_SET) == 0 && fwrite(h, 1, sizeof h, f) == sizeof h ? 0 : -1;
}

static void progress(struct run *R, int final) {
    if (!R->progress) return;
    double t = now_s();
    if (!final && t - R->last < 0.1) return;
    R->last = t;
    double frac = R->total_bytes > 0 ? (double)R->done_bytes / (double)R->total_bytes : 0;
    if (frac > 1) frac = 1;
    int w = 30, fill = (int)(frac * w);
    char bar[32];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : ' ';
    bar[w] = '\0';
    double rate = t > R->t0 ? (double)R->rows / (t - R->t0) : 0;
    fprintf(stderr, "\r[%s] %3.0f%%  %lld inputs  %.1f/s%s", bar, 100 * frac, (long long)R->rows,
            rate, final ? "\n" : "");
}

/* Embeds the pending lines and answers each, in order. */
static void flush(struct run *R, struct tool_line *lines, int n, struct cge_input *ins,
                  struct cge_result *res, const struct cge_embed_options *opt) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!lines[i].err[0]) ins[k++] = lines[i].in;
    enum cge_status st = k ? cge_engine_embed(R->e, ins, (size_t)k, opt, res) : CGE_OK;
    char callerr[512] = "";
    if (st) snprintf(callerr, sizeof callerr, "%s: %s", cge_status_str(st), cge_errmsg());
    int j = 0;
    for (int i = 0; i < n; i++) {
        const char *err = lines[i].err[0] ? lines[i].err : NULL;
        const struct cge_result *r = NULL;
        if (!err) {
            r = &res[j++];
            if (st) err = callerr;
            else if (r->status) err = r->errmsg[0] ? r->errmsg : cge_status_str(r->status);
        }
        if (R->npy) {
            int dim = cge_engine_dim(R->e);
            float nanv = NAN;
            for (int c = 0; c < dim; c++)
                fwrite(err ? &nanv : &r->embedding[c], sizeof(float), 1, R->npy);
            if (err) fprintf(stderr, "cge embed: input %lld: %s\n", (long long)R->rows + 1, err);
        } else if (err) {
            print_error(err);
        } else {
            print_result(R, r);
        }
        R->failed += err != NULL;
        R->rows++;
        tool_line_free(&lines[i]);
    }
    for (int i = 0; i < k && !st; i++) cge_result_deinit(&res[i]);
    fflush(stdout);
    progress(R, 0);
}

static void on_line(void *u, const char *s, size_t n, size_t used) {
    struct run *R = u;
    struct tool_line *l = &R->lines[R->n++];
    if (s) {
        tool_parse_input(s, n, l, 0);
    } else {
        memset(l, 0, sizeof *l);
        snprintf(l->err, sizeof l->err, "input line longer than 64 MiB");
    }
    R->done_bytes += (off_t)used;
}

static void on_flush(void *u) {
    struct run *R = u;
    flush(R, R->lines, R->n, R->ins, R->res, &R->opt);
    R->n = 0;
}

static void on_consumed(void *u, size_t used) {
    ((struct run *)u)->done_bytes += (off_t)used;
}

int cmd_embed_engine(int argc, char **argv) {
    const char *path = NULL, *out_path = NULL;
    struct cge_engine_params p = cge_engine_default_params();
    p.max_wait_ms = 0; /* one caller: a batch never waits for another's inputs */
    struct cge_embed_options opt;
    memset(&opt, 0, sizeof opt);
    struct run R;
    memset(&R, 0, sizeof R);
    int batch = 32, npy = 0, stats = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-truncate")) {
            p.no_truncate = 1;
        } else if (!strcmp(a, "--no-cache")) {
            p.cache = 0;
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (!v) {
            fprintf(stderr, "cge embed: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--ensemble") || !strcmp(a, "--config")) {
            path = v;
            i++;
        } else if (!strcmp(a, "--redis")) {
            p.redis_url = v;
            i++;
        } else if (!strcmp(a, "--backend")) {
            p.backend = v;
            tool_log_warnings("cge embed");
            i++;
        } else if (!strcmp(a, "--out")) {
            out_path = v;
            i++;
        } else if (!strcmp(a, "--output")) {
            if (!strcmp(v, "fused")) R.output = OUT_FUSED;
            else if (!strcmp(v, "slots")) R.output = OUT_SLOTS;
            else if (!strcmp(v, "both")) R.output = OUT_BOTH;
            else {
                fprintf(stderr, "cge embed: --output %s: expected fused, slots or both\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--format")) {
            if (!strcmp(v, "npy")) npy = 1;
            else if (strcmp(v, "jsonl") != 0) {
                fprintf(stderr, "cge embed: --format %s: expected jsonl or npy\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--threads") || !strcmp(a, "--timeout-ms")) {
            char *end = NULL;
            long x = strtol(v, &end, 10);
            if (!*v || *end || x < 1 || x > (!strcmp(a, "--batch") ? 4096 : 1L << 30)) {
                fprintf(stderr, "cge embed: %s %s: expected a positive integer\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--batch")) batch = (int)x;
            else if (!strcmp(a, "--threads")) p.n_threads = (int)x;
            else p.slot_timeout_ms = x;
            i++;
        } else {
            fprintf(stderr, "cge embed: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (npy && !out_path) {
        fprintf(stderr, "cge embed: --format npy needs --out FILE\n");
        return 2;
    }
    if (npy && R.output != OUT_FUSED) {
        fprintf(stderr, "cge embed: --format npy writes fused vectors only\n");
        return 2;
    }
    enum cge_status st = cge_engine_open(path, &p, &R.e);
    if (st) {
        fprintf(stderr, "cge embed: %s: %s\n", cge_status_str(st), cge_errmsg());
        return 1;
    }
    if (cge_engine_is_demo(R.e))
        fprintf(stderr, "cge embed: no ensemble given: using the demo ensemble (tiny random "
                        "weights; its vectors are well-formed but not semantic)\n");
    if (npy) {
        R.npy = fopen(out_path, "wb");
        if (!R.npy || npy_header(R.npy, 0, cge_engine_dim(R.e))) {
            fprintf(stderr, "cge embed: %s: %s\n", out_path, strerror(errno));
            if (R.npy) fclose(R.npy);
            cge_engine_close(R.e);
            return 1;
        }
    }
    struct stat sst;
    if (isatty(2) && fstat(0, &sst) == 0 && S_ISREG(sst.st_mode) && sst.st_size > 0) {
        R.progress = 1;
        R.total_bytes = sst.st_size;
        R.t0 = R.last = now_s();
    }
    struct tool_line *lines = calloc((size_t)batch, sizeof *lines);
    struct cge_input *ins = calloc((size_t)batch, sizeof *ins);
    struct cge_result *res = calloc((size_t)batch, sizeof *res);
    int rc = 0;
    R.lines = lines;
    R.ins = ins;
    R.res = res;
    R.opt = opt;
    if (!lines || !ins || !res) {
        fprintf(stderr, "cge embed: out of memory\n");
        rc = 1;
        goto done;
    }
    static const struct tool_lines_ops ops = {on_line, on_flush, on_consumed};
    rc = tool_read_lines("cge embed", batch, &ops, &R);
    progress(&R, 1);
    if (R.npy && (npy_header(R.npy, R.rows, cge_engine_dim(R.e)) || fclose(R.npy))) {
        fprintf(stderr, "cge embed: %s: %s\n", out_path, strerror(errno));
        rc = 1;
    } else if (R.npy && R.failed) {
        rc = 1;
    }
    R.npy = NULL;
done:
    if (stats) tool_print_engine_stats(stderr, R.e, NULL);
    if (R.npy) fclose(R.npy);
    free(lines);
    free(ins);
    free(res);
    cge_engine_close(R.e);
    return rc;
}
