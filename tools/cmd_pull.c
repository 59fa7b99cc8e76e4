/*
 * cmd_pull.c: `cge pull REPO_ID | --ensemble`: models from the Hugging Face Hub into the shared
 * HF cache (src/net/hub.h), with progress on stderr and the snapshot folder on stdout.
 *
 * Key decision: stdout carries only the result (one snapshot path per repository, so
 * `cge embed --model "$(cge pull org/name)"` works); on a terminal stderr shows one bar per
 * active file and a total line, redrawn in place; otherwise stderr gets one quiet line per file.
 */
#include "cge.h"
#include "commands.h"
#include "net/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PATTERNS 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge pull REPO_ID [--revision REV] [--include GLOB]... [--exclude GLOB]...\n"
            "       cge pull --ensemble [--include GLOB]... [--exclude GLOB]...\n"
            "options: [--jobs N] [--retries N] [--quiet]\n"
            "\n"
            "Downloads a model repository from the Hugging Face Hub into the HF cache, laid out\n"
            "as huggingface_hub lays it out (models--ORG--NAME/{blobs,snapshots,refs}), so cge,\n"
            "transformers and huggingface-cli share it. Prints the snapshot folder on stdout.\n"
            "By default only what cge needs: configs, tokenizer files, sentence-transformers\n"
            "modules and one weight format (safetensors over pytorch_model.bin; no ONNX, TF,\n"
            "Flax or GGUF files). --include replaces that selection by the files matching a\n"
            "pattern; --exclude removes files (fnmatch patterns, '*' crosses '/').\n"
            "--ensemble pulls the repositories of the twelve slots (`cge models`; E10 both\n"
            "encoders); then `cge ensemble init --out DIR` writes an ensemble over them.\n"
            "Downloads resume (blobs/ETAG.incomplete); LFS files are checked against their\n"
            "SHA-256, small files against their size and git blob id.\n"
            "--revision REV  branch, tag or commit (default main)\n"
            "--jobs N        files at once (default 8)\n"
            "--retries N     retries per request on network errors (default 5)\n"
            "--quiet         no progress output\n"
            "environment: HF_ENDPOINT (https://huggingface.co), HF_TOKEN (for gated or private\n"
            "repositories; never printed), HF_HUB_OFFLINE=1 (resolve from the cache only),\n"
            "HF_HUB_CACHE, HF_HOME (cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else\n"
            "~/.cache/huggingface/hub).\n");
}

/* ==== progress ================================================================================ */
struct view {
    int tty;
    int quiet;
    int lines; /* lines of the last bar block, to redraw over */
};

static void human(double b, char *out, size_t cap) {
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) {
        b /= 1000;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void clear_block(struct view *v) {
    if (!v->tty || !v->lines) return;
    fprintf(stderr, "\033[%dA", v->lines);
    for (int i = 0; i < v->lines; i++)
        fprintf(stderr, "\r\033[K\n");
    fprintf(stderr, "\033[%dA", v->lines);
    v->lines = 0;
}

static void bar(char *out, int width, double frac) {
    int fill = (int)(frac * width);
    if (fill > width) fill = width;
    for (int i = 0; i < width; i++)
        out[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    out[width] = 0;
}

static void draw(struct view *v, const struct cge_hub_progress *p) {
    clear_block(v);
    char a[32], b[32], r[32], line[400], bb[32];
    for (int i = 0; i < p->n_active && i < 8; i++) {
        const struct cge_hub_file_progress *f = &p->active[i];
        human((double)f->done, a, sizeof a);
        human((double)f->total, b, sizeof b);
        bar(bb, 20, f->total ? (double)f->done / (double)f->total : 0);
        const char *name = f->path;
        size_t n = strlen(name);
        if (n > 40) name += n - 40;
        snprintf(line, sizeof line, "  %-40s [%s] %9s / %s", name, bb, a, b);
        fprintf(stderr, "\r\033[K%s\n", line);
        v->lines++;
    }
    double rate = p->elapsed_s > 0 ? (double)p->bytes_fetched / p->elapsed_s : 0;
    human((double)p->bytes_finished, a, sizeof a);
    human((double)p->bytes_total, b, sizeof b);
    human(rate, r, sizeof r);
    double left = (double)(p->bytes_total - p->bytes_finished);
    char eta[32] = "--";
    if (rate > 0 && left >= 0) snprintf(eta, sizeof eta, "%.0f s", left / rate);
    bar(bb, 20, p->bytes_total ? (double)p->bytes_finished / (double)p->bytes_total : 0);
    fprintf(stderr, "\r\033[K%s: %d/%d files [%s] %s / %s  %s/s  ETA %s\n", p->repo_id,
            p->n_finished, p->n_files, bb, a, b, r, eta);
    v->lines++;
    fflush(stderr);
}

static void on_progress(const struct cge_hub_progress *p, void *user) {
    struct view *v = user;
    if (v->quiet) return;
    char a[32];
    switch (p->event) {
    case CGE_HUB_EV_TICK:
        if (v->tty) draw(v, p);
        break;
    case CGE_HUB_EV_LISTED:
        if (!v->tty) {
            human((double)p->bytes_total, a, sizeof a);
            fprintf(stderr, "cge pull: %s: %d files, %s\n", p->repo_id, p->n_files, a);
        }
        break;
    case CGE_HUB_EV_FILE_DONE:
    case CGE_HUB_EV_FILE_CACHED:
        if (!v->tty) {
            fprintf(stderr, "cge pull: %s: %s %s\n", p->repo_id, p->path,
                    p->event == CGE_HUB_EV_FILE_DONE ? "downloaded" : "cached");
        }
        break;
    case CGE_HUB_EV_RETRY:
        clear_block(v);
        fprintf(stderr, "cge pull: %s: %s: retrying after: %s\n", p->repo_id,
                p->path ? p->path : "file list", p->detail ? p->detail : "?");
        break;
    }
}

/* ==== the command ============================================================================= */
static int pull_one(const char *repo, const char *rev, struct cge_hub_params *hp, struct view *v) {
    struct cge_hub_result res;
    enum cge_status st = cge_hub_pull(repo, rev, hp, &res);
    clear_block(v);
    if (st) {
        const char *m = cge_errmsg();
        fprintf(stderr, "cge pull: %s\n", m && m[0] ? m : cge_status_str(st));
        return 1;
    }
    if (!v->quiet) {
        if (res.offline) {
            fprintf(stderr, "cge pull: %s: offline, cached commit %s\n", repo, res.commit);
        } else {
            char a[32], b[32], r[32];
            human((double)res.bytes_total, a, sizeof a);
            human((double)res.bytes_fetched, b, sizeof b);
            human(res.seconds > 0 ? (double)res.bytes_fetched / res.seconds : 0, r, sizeof r);
            fprintf(stderr,
                    "cge pull: %s: %d files (%s), %d fetched (%s in %.1f s, %s/s), commit %s\n",
                    repo, res.n_files, a, res.n_fetched, b, res.seconds, r, res.commit);
        }
    }
    printf("%s\n", res.snapshot);
    fflush(stdout);
    return 0;
}

static int bad(const char *what) {
    fprintf(stderr, "cge pull: %s\n", what);
    return 2;
}

static int int_arg(const char *s, int lo, int hi, int *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!end || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cmd_pull(int argc, char **argv) {
    const char *repo = NULL, *rev = NULL;
    const char *inc[MAX_PATTERNS], *exc[MAX_PATTERNS];
    int n_inc = 0, n_exc = 0, ensemble = 0;
    struct cge_hub_params hp;
    cge_hub_default_params(&hp);
    struct view v = {isatty(2), 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--revision") && has) {
            rev = argv[++i];
        } else if (!strcmp(a, "--include") && has) {
            if (n_inc == MAX_PATTERNS) return bad("too many --include");
            inc[n_inc++] = argv[++i];
        } else if (!strcmp(a, "--exclude") && has) {
            if (n_exc == MAX_PATTERNS) return bad("too many --exclude");
            exc[n_exc++] = argv[++i];
        } else if (!strcmp(a, "--jobs") && has) {
            if (int_arg(argv[++i], 1, 32, &hp.max_parallel)) return bad("--jobs must be 1..32");
        } else if (!strcmp(a, "--retries") && has) {
            if (int_arg(argv[++i], 0, 100, &hp.max_retries)) return bad("--retries must be 0..100");
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            v.quiet = 1;
        } else if (!strcmp(a, "--ensemble")) {
            ensemble = 1;
        } else if (a[0] != '-' && !repo) {
            repo = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!!repo == !!ensemble || (ensemble && rev)) {
        usage(stderr);
        return 2;
    }
    hp.include = inc;
    hp.n_include = n_inc;
    hp.exclude = exc;
    hp.n_exclude = n_exc;
    hp.progress = on_progress;
    hp.progress_user = &v;
    if (!ensemble) return pull_one(repo, rev, &hp, &v);
    /* Every repository of the table; one failure does not stop the others. */
    int failed = 0, total = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        char repos[2][128];
        int n = cge_hub_slot_repos(s, repos);
        for (int k = 0; k < n; k++) {
            total++;
            if (!v.quiet) fprintf(stderr, "cge pull: %s: %s\n", cge_slot_get(s)->name, repos[k]);
            failed += pull_one(repos[k], NULL, &hp, &v);
        }
    }
    if (failed) fprintf(stderr, "cge pull: %d of %d repositories failed\n", failed, total);
    return failed ? 1 : 0;
}
