/*
 * cmd_embed.c: `cge embed --model DIR`: JSON lines on stdin, one embedding (a JSON array) per
 * line on stdout.
 *
 * Input lines: a JSON string, {"text": ..., "instruction"?: ...}, {"input_ids": [...]},
 * {"image": path} or {"audio": path} (paths relative to the current directory). A line that
 * fails prints {"error": "..."} and the others still run. Blank lines are skipped.
 * Design: consecutive lines are embedded together (up to --batch) in one cge_model_embed call,
 * which pads and batches them; a batch also goes out as soon as stdin has nothing more ready,
 * so an interactive session answers each line at once while a pipe gets full batches.
 */
#include "cge.h"
#include "commands.h"
#include "net/hub.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge embed --model DIR [--pooling cls|mean|max|last] [--dtype f32|bf16|int8]\n"
            "                 [--no-truncate] [--batch N] [--max-len N] [--threads N]\n"
            "                 [--backend cpu|cuda|cuda:N|auto]\n"
            "\n"
            "Reads JSON lines on stdin and writes one JSON array (the embedding) per line:\n"
            "  \"some text\"                          a JSON string\n"
            "  {\"text\": \"...\", \"instruction\": \"...\"}  instruction optional (INSTRUCTOR, E5)\n"
            "  {\"input_ids\": [101, 7592, 102]}      pre-tokenized, used as is\n"
            "  {\"image\": \"cat.png\"}  {\"audio\": \"a.wav\"}  paths relative to the current directory\n"
            "A line that fails gives {\"error\": \"...\"}; the other lines still run.\n"
            "DIR is a Hugging Face model folder (config.json, weights, tokenizer, and the\n"
            "sentence-transformers files when the model has them), e.g. a snapshot folder of\n"
            "$HF_HOME/hub/models--org--name/snapshots/REV or models--org--name itself, or a\n"
            "repo id ORG/NAME fetched with `cge pull` (its main in the HF cache).\n"
            "--batch N       lines embedded together (default 32)\n"
            "--no-truncate   an input longer than the model's max length is an error\n"
            "--max-len N     override the max length (tokens)\n"
            "--backend NAME  where the layers run: cpu (default), cuda, cuda:N, auto; an unusable\n"
            "                device falls back to the cpu with a warning (see cge info)\n");
}

/* One parsed input line. */
struct line {
    cJSON *doc;          /* owns the strings the input points into */
    struct cge_input in;
    int32_t *ids;        /* for input_ids */
    char err[300];       /* parse error, "" if none */
};

static void line_free(struct line *l) {
    cJSON_Delete(l->doc);
    free(l->ids);
    memset(l, 0, sizeof *l);
}

static void parse_line(const char *s, size_t n, struct line *l) {
    memset(l, 0, sizeof *l);
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
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "text");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(d, "instruction");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(d, "input_ids");
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(d, "image");
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(d, "audio");
    int kinds = (t != NULL) + (ids != NULL) + (img != NULL) + (aud != NULL);
    if (kinds != 1) {
        snprintf(l->err, sizeof l->err, "expected exactly one of \"text\", \"input_ids\", \"image\", \"audio\"");
        return;
    }
    if (t) {
        if (!cJSON_IsString(t)) {
            snprintf(l->err, sizeof l->err, "\"text\" must be a string");
            return;
        }
        l->in.text = t->valuestring;
        l->in.text_len = strlen(t->valuestring);
        if (ins && !cJSON_IsNull(ins)) {
            if (!cJSON_IsString(ins)) {
                snprintf(l->err, sizeof l->err, "\"instruction\" must be a string");
                return;
            }
            l->in.instruction = ins->valuestring;
        }
    } else if (ids) {
        int cnt = cJSON_GetArraySize(ids);
        if (!cJSON_IsArray(ids) || cnt == 0) {
            snprintf(l->err, sizeof l->err, "\"input_ids\" must be a non-empty array of integers");
            return;
        }
        l->ids = malloc((size_t)cnt * sizeof *l->ids);
        if (!l->ids) {
            snprintf(l->err, sizeof l->err, "out of memory");
            return;
        }
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ids) {
            if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int32_t)e->valuedouble) {
                snprintf(l->err, sizeof l->err, "input_ids[%d] is not a 32-bit integer", i);
                return;
            }
            l->ids[i++] = (int32_t)e->valuedouble;
        }
        l->in.ids = l->ids;
        l->in.n_ids = cnt;
    } else {
        const cJSON *pth = img ? img : aud;
        if (!cJSON_IsString(pth)) {
            snprintf(l->err, sizeof l->err, "\"%s\" must be a file path", img ? "image" : "audio");
            return;
        }
        if (img) l->in.image_path = pth->valuestring;
        else l->in.audio_path = pth->valuestring;
    }
}

static void print_error(const char *msg) {
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (o && cJSON_AddStringToObject(o, "error", msg)) s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        cJSON_free(s);
    } else {
        fputs("{\"error\": \"out of memory\"}\n", stdout);
    }
    cJSON_Delete(o);
}

/* Embeds the pending lines and prints one output line each, in order. */
static void flush(const struct cge_model *m, struct line *lines, int n, float *out,
                  struct cge_embed_info *info, struct cge_input *ins) {
    int dim = cge_model_dim(m);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!lines[i].err[0]) ins[k++] = lines[i].in;
    if (k > 0 && cge_model_embed(m, ins, k, out, info) != CGE_OK) {
        for (int j = 0; j < k; j++) {
            info[j].status = CGE_ERR_BATCH;
            snprintf(info[j].errmsg, sizeof info[j].errmsg, "%s", cge_errmsg());
        }
    }
    int j = 0;
    for (int i = 0; i < n; i++) {
        if (lines[i].err[0]) {
            print_error(lines[i].err);
        } else {
            if (info[j].status != CGE_OK) {
                print_error(info[j].errmsg[0] ? info[j].errmsg : cge_status_str(info[j].status));
            } else {
                const float *v = out + (size_t)j * (size_t)dim;
                fputc('[', stdout);
                for (int c = 0; c < dim; c++) printf(c ? ",%.9g" : "%.9g", (double)v[c]);
                fputs("]\n", stdout);
            }
            j++;
        }
        line_free(&lines[i]);
    }
    fflush(stdout);
}

/* The batch being read (tool_read_lines callbacks). */
struct batch {
    const struct cge_model *m;
    struct line *lines;
    struct cge_input *ins;
    struct cge_embed_info *info;
    float *out;
    int n;
};

static void on_line(void *u, const char *s, size_t n, size_t used) {
    struct batch *B = u;
    struct line *l = &B->lines[B->n++];
    (void)used;
    if (s) {
        parse_line(s, n, l);
    } else {
        memset(l, 0, sizeof *l);
        snprintf(l->err, sizeof l->err, "input line longer than 64 MiB");
    }
}

static void on_flush(void *u) {
    struct batch *B = u;
    flush(B->m, B->lines, B->n, B->out, B->info, B->ins);
    B->n = 0;
}

int cmd_embed(int argc, char **argv) {
    /* Without --model: the engine (an ensemble, a config, or the demo). */
    int has_model = 0;
    for (int i = 1; i < argc; i++) has_model |= !strcmp(argv[i], "--model");
    if (!has_model) return cmd_embed_engine(argc, argv);
    const char *dir = NULL;
    struct cge_model_params p = cge_model_default_params();
    int batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-truncate")) {
            p.no_truncate = 1;
        } else if (!v) {
            fprintf(stderr, "cge embed: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--model")) {
            dir = v;
            i++;
        } else if (!strcmp(a, "--backend")) {
            p.backend = v;
            tool_log_warnings("cge embed");
            i++;
        } else if (!strcmp(a, "--pooling")) {
            if (!strcmp(v, "cls")) p.pooling = CGE_POOL_CLS;
            else if (!strcmp(v, "mean")) p.pooling = CGE_POOL_MEAN;
            else if (!strcmp(v, "max")) p.pooling = CGE_POOL_MAX;
            else if (!strcmp(v, "last")) p.pooling = CGE_POOL_LAST;
            else {
                fprintf(stderr, "cge embed: --pooling %s: expected cls, mean, max or last\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32") || !strcmp(v, "fp32")) p.dtype = CGE_DTYPE_F32;
            else if (!strcmp(v, "bf16")) p.dtype = CGE_DTYPE_BF16;
            else if (!strcmp(v, "int8") || !strcmp(v, "i8")) p.dtype = CGE_DTYPE_I8;
            else {
                fprintf(stderr, "cge embed: --dtype %s: expected f32, bf16 or int8\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--max-len") || !strcmp(a, "--threads")) {
            char *end = NULL;
            long x = strtol(v, &end, 10);
            if (!*v || *end || x < 1 || x > (!strcmp(a, "--batch") ? 4096 : 1 << 24)) {
                fprintf(stderr, "cge embed: %s %s: expected a positive integer\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--batch")) batch = (int)x;
            else if (!strcmp(a, "--max-len")) p.max_seq_len = x;
            else cge_set_threads((int)x);
            i++;
        } else {
            fprintf(stderr, "cge embed: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "cge embed: --model DIR is required\n");
        usage(stderr);
        return 2;
    }
    /* ORG/NAME that is no path here: the snapshot of its main in the HF cache (cge pull). */
    char snap[CGE_HUB_PATH_MAX];
    struct stat sb;
    if (stat(dir, &sb) != 0 && cge_hub_repo_folder(dir, snap, sizeof snap) == CGE_OK) {
        if (cge_hub_cache_lookup(NULL, dir, NULL, snap, sizeof snap, NULL)) {
            fprintf(stderr, "cge embed: %s is no folder here, and %s (run `cge pull %s`)\n", dir,
                    cge_errmsg(), dir);
            return 1;
        }
        dir = snap;
    }
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(dir, &p, &m);
    if (st) {
        fprintf(stderr, "cge embed: %s: %s\n", cge_status_str(st), cge_errmsg());
        return 1;
    }
    int dim = cge_model_dim(m);
    struct line *lines = calloc((size_t)batch, sizeof *lines);
    struct cge_input *ins = calloc((size_t)batch, sizeof *ins);
    struct cge_embed_info *info = calloc((size_t)batch, sizeof *info);
    float *out = calloc((size_t)batch * (size_t)dim, sizeof *out);
    if (!lines || !ins || !info || !out) {
        fprintf(stderr, "cge embed: out of memory\n");
        cge_model_free(m);
        return 1;
    }
    struct batch B = {m, lines, ins, info, out, 0};
    static const struct tool_lines_ops ops = {on_line, on_flush, NULL};
    int rc = tool_read_lines("cge embed", batch, &ops, &B);
    free(lines);
    free(ins);
    free(info);
    free(out);
    cge_model_free(m);
    return rc;
}
