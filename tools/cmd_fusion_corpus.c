/*
 * cmd_fusion_corpus.c: `cge fusion train --ensemble DIR --corpus FILE`: embeds a corpus through
 * the ensemble's slots (no fusion; the engine's per-slot cache answers what it already holds)
 * and writes the slot vectors as the {"slots": [...], "pair": id} lines that
 * `cge fusion train --data` reads, so training itself stays one code path.
 *
 * Corpus lines are `cge embed` inputs, plus an optional "pair" (an integer or a string: items
 * with the same pair are positives for the InfoNCE term). An input that fails is reported and
 * left out; only when none succeeds is it an error.
 */
#include "cge.h"
#include "commands.h"
#include "runtime/runtime.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 32

static void write_item(FILE *f, const struct cge_result *r, int64_t pair) {
    fputs("{\"slots\": [", f);
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        const struct cge_slot_result *sr = &r->slots[s];
        if (s) fputs(", ", f);
        if (sr->state != CGE_SLOT_OK) {
            fputs("null", f);
            continue;
        }
        fputc('[', f);
        for (int i = 0; i < sr->dim; i++) fprintf(f, i ? ",%.9g" : "%.9g", (double)sr->vector[i]);
        fputc(']', f);
    }
    fputs("]", f);
    if (pair >= 0) fprintf(f, ", \"pair\": %lld", (long long)pair);
    fputs("}\n", f);
}

static int64_t flush(struct cge_engine *e, struct tool_line *lines, int n, FILE *out,
                     int64_t lineno0, const char *corpus) {
    struct cge_input in[BATCH];
    struct cge_result res[BATCH];
    int map[BATCH], k = 0;
    for (int i = 0; i < n; i++) {
        if (lines[i].err[0]) {
            fprintf(stderr, "cge fusion train: %s: line %lld: %s\n", corpus,
                    (long long)(lineno0 + i), lines[i].err);
            continue;
        }
        map[k] = i;
        in[k++] = lines[i].in;
    }
    struct cge_embed_options o = {.no_fusion = 1};
    int64_t ok = 0;
    if (k && cge_engine_embed(e, in, (size_t)k, &o, res) != CGE_OK) {
        fprintf(stderr, "cge fusion train: %s\n", cge_errmsg());
        return -1;
    }
    for (int j = 0; j < k; j++) {
        if (res[j].status) {
            fprintf(stderr, "cge fusion train: %s: line %lld: %s\n", corpus,
                    (long long)(lineno0 + map[j]), res[j].errmsg);
        } else {
            write_item(out, &res[j], lines[map[j]].pair);
            ok++;
        }
        cge_result_deinit(&res[j]);
    }
    return ok;
}

int fusion_corpus_to_data(const char *ensemble, const char *corpus, char *data, size_t data_cap,
                          char *fusion_dir, size_t fusion_cap) {
    struct cge__ensemble_spec *spec = calloc(1, sizeof *spec);
    if (!spec || cge__ensemble_spec_load(ensemble, spec) != CGE_OK) {
        fprintf(stderr, "cge fusion train: %s\n", spec ? cge_errmsg() : "out of memory");
        free(spec);
        return 1;
    }
    snprintf(fusion_dir, fusion_cap, "%s", spec->fusion);
    free(spec);
    struct cge_engine *e = NULL;
    if (cge_engine_open(ensemble, NULL, &e) != CGE_OK) {
        fprintf(stderr, "cge fusion train: %s\n", cge_errmsg());
        return 1;
    }
    FILE *in = fopen(corpus, "rb");
    snprintf(data, data_cap, "/tmp/cge-fusion-corpus-XXXXXX");
    int fd = mkstemp(data);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!in || !out) {
        fprintf(stderr, "cge fusion train: %s: cannot %s\n", !in ? corpus : data, !in ? "open" : "create");
        if (in) fclose(in);
        if (out) fclose(out);
        else if (fd >= 0) close(fd);
        if (fd >= 0) unlink(data);
        cge_engine_close(e);
        return 1;
    }
    struct tool_line lines[BATCH];
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0, rc = 0;
    int64_t lineno = 0, first = 1, total = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) len--;
        if (len == 0) continue;
        if (n == 0) first = lineno;
        tool_parse_input(line, (size_t)len, &lines[n++], 1);
        if (n == BATCH) {
            int64_t k = flush(e, lines, n, out, first, corpus);
            for (int i = 0; i < n; i++) tool_line_free(&lines[i]);
            n = 0;
            if (k < 0) {
                rc = 1;
                break;
            }
            total += k;
            fprintf(stderr, "\rcge fusion train: embedded %lld inputs", (long long)total);
        }
    }
    if (n && !rc) {
        int64_t k = flush(e, lines, n, out, first, corpus);
        rc = k < 0;
        total += k > 0 ? k : 0;
    }
    for (int i = 0; i < n; i++) tool_line_free(&lines[i]);
    free(line);
    fclose(in);
    if (fclose(out) != 0) rc = 1;
    cge_engine_close(e);
    fprintf(stderr, "\rcge fusion train: embedded %lld inputs through the slots of %s\n",
            (long long)total, ensemble);
    if (!rc && total < 2) {
        fprintf(stderr, "cge fusion train: %s: need at least 2 inputs that embed\n", corpus);
        rc = 1;
    }
    if (rc) unlink(data);
    return rc;
}
