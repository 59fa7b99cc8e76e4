/*
 * cmd_convert.c: `cge convert DIR [--dtype f32|bf16|int8] [--out FILE]` writes a model's
 * converted-weights file ahead of time (models/wcache.h): the linear layers in their storage
 * dtype, packed for this CPU, so that the first real load maps them instead of converting.
 *
 * It is a model load with the file forced on (CGE_CONVERTED=1, and CGE_CONVERTED_FILE when
 * --out is given): a missing, stale or damaged file is (re)written, a valid one is left as it
 * is. What happened is read from the library's log lines about the file, printed on stdout.
 */
#include "cge.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seen {
    int saved, mapped;
    char line[1024];
};

static void on_log(enum cge_log_level level, const char *msg, void *user) {
    struct seen *s = user;
    if (!strstr(msg, "converted weights")) return;
    if (strstr(msg, "saved to")) s->saved = 1;
    if (strstr(msg, "mapped from")) s->mapped = 1;
    if (level >= CGE_LOG_INFO) fprintf(level >= CGE_LOG_WARN ? stderr : stdout, "%s\n", msg);
    snprintf(s->line, sizeof s->line, "%s", msg);
}

static void usage(FILE *f) {
    fprintf(f, "usage: cge convert DIR [--dtype f32|bf16|int8] [--out FILE]\n"
               "Converts the model folder's weights to the storage dtype (default int8), packed\n"
               "for this CPU, into its converted-weights file, which later loads map instead\n"
               "of converting. Default file: beside the model (DIR/cge-<family>-<dtype>.cgew)\n"
               "where DIR is writable, else $CGE_CONVERTED_DIR or ~/.cache/cge/converted.\n"
               "A load finds a file written with --out only when CGE_CONVERTED_FILE names it.\n");
}

int cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    struct cge_model_params p = cge_model_default_params();
    p.dtype = CGE_DTYPE_I8;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if ((!strcmp(a, "--dtype") || !strcmp(a, "--out")) && i + 1 >= argc) {
            fprintf(stderr, "cge convert: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--dtype")) {
            const char *v = argv[++i];
            if (!strcmp(v, "f32") || !strcmp(v, "fp32")) p.dtype = CGE_DTYPE_F32;
            else if (!strcmp(v, "bf16")) p.dtype = CGE_DTYPE_BF16;
            else if (!strcmp(v, "int8") || !strcmp(v, "i8")) p.dtype = CGE_DTYPE_I8;
            else {
                fprintf(stderr, "cge convert: --dtype %s: expected f32, bf16 or int8\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--out")) {
            out = argv[++i];
        } else if (a[0] == '-' || dir) {
            usage(stderr);
            return 2;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    setenv("CGE_CONVERTED", "1", 1);
    if (out) setenv("CGE_CONVERTED_FILE", out, 1);
    struct seen s = {0};
    cge_log_set(on_log, &s);
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(dir, &p, &m);
    cge_log_set(NULL, NULL);
    if (st) {
        fprintf(stderr, "cge convert: %s (%s)\n", cge_errmsg(), cge_status_str(st));
        return 1;
    }
    const char *family = cge_model_family(m);
    cge_model_free(m);
    if (!s.saved && !s.mapped) {
        fprintf(stderr, "cge convert: %s: %s models do not use a converted-weights file%s\n", dir,
                family, s.line[0] ? "" : " (or it could not be written)");
        return 1;
    }
    return 0;
}
