/*
 * cmd_submit.c: `cge submit --redis URL < inputs.jsonl > results.jsonl`: puts each input line on
 * a Redis stream as a job for `cge worker` (protocol: redis_jobs.h), waits, and prints exactly one
 * result line per input line, in input order, whatever the number of workers, retries or
 * duplicate deliveries: the same lines `cge embed` would print.
 *
 * Design: results come back on a list of this submission's own (RPUSH by the workers); the
 * submitter keeps the first result per line and prints the finished prefix as it grows. Media
 * files the lines name are read here and sent as bytes, so workers need no shared filesystem.
 * Redis restarting (its run_id changes) may have lost the stream and the results not yet read:
 * the submitter then enqueues every line it has no result for again, so a submission completes
 * across a restart even without persistence. --timeout ends the wait: the missing lines are
 * named on stderr and answered with an error line, and the exit status is 1.
 */
#include "cge.h"
#include "commands.h"
#include "net/redis.h"
#include "redis_jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_MEDIA ((size_t)256 << 20)

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct sub {
    struct cge__redis *r;
    const char *stream, *group, *output;
    char reply[64];
    char **lines; /* the input lines (NUL-terminated, trimmed) */
    size_t *lens;
    int64_t n;
    char **results; /* results[i]: the line for input i until printed */
    unsigned char *have;
    int64_t got, printed, dups, resubmits, enqueued;
};

/* Reads a whole file (media), NULL when it cannot (the worker then reports the path). */
static char *read_media(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    char *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= MAX_MEDIA) {
        buf = malloc((size_t)st.st_size + 1);
        if (buf && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)st.st_size;
    }
    fclose(f);
    return buf;
}

static int ensure_group(struct sub *S) {
    redisReply *rep = cge__redis_cmdf(S->r, 0, "XGROUP CREATE %s %s 0 MKSTREAM", S->stream, S->group);
    if (!rep) return -1;
    int ok = rep->type != REDIS_REPLY_ERROR || !strncmp(rep->str, "BUSYGROUP", 9);
    if (!ok) fprintf(stderr, "cge submit: XGROUP CREATE: %s\n", rep->str);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* Enqueues the lines that have no result yet (all of them the first time), in pipelines of 128.
 * 0 on success; -1 when Redis failed (the caller retries). */
static int enqueue_missing(struct sub *S) {
    if (ensure_group(S)) return -1;
    enum { CHUNK = 128 };
    int argcs[CHUNK];
    const char *argv[CHUNK][15];
    size_t lens[CHUNK][15];
    char idx[CHUNK][24];
    char *media[CHUNK];
    const char *const *av[CHUNK];
    const size_t *lv[CHUNK];
    redisReply *reps[CHUNK];
    int64_t i = 0;
    while (i < S->n) {
        int k = 0;
        for (; i < S->n && k < CHUNK; i++) {
            if (S->have[i]) continue;
            struct tool_line l;
            tool_parse_input(S->lines[i], S->lens[i], &l, 0);
            const char *path = l.err[0] ? NULL : l.in.image_path ? l.in.image_path : l.in.audio_path;
            size_t mlen = 0;
            media[k] = path ? read_media(path, &mlen) : NULL;
            tool_line_free(&l);
            snprintf(idx[k], sizeof idx[k], "%lld", (long long)i);
            const char *a[15] = {"XADD", S->stream, "*", "v", "1", "reply", S->reply, "idx", idx[k],
                                 "output", S->output, "line", S->lines[i], "media", media[k]};
            memcpy(argv[k], a, sizeof a);
            for (int q = 0; q < 14; q++) lens[k][q] = strlen(a[q]);
            lens[k][12] = S->lens[i];
            lens[k][14] = mlen;
            argcs[k] = media[k] ? 15 : 13; /* no bytes: the worker reports the path as it finds it */
            av[k] = argv[k];
            lv[k] = lens[k];
            k++;
        }
        if (!k) break;
        enum cge_status st = cge__redis_pipeline(S->r, 10000, k, argcs, av, lv, reps);
        for (int q = 0; q < k; q++) free(media[q]);
        if (st) return -1;
        int bad = 0;
        for (int q = 0; q < k; q++) {
            if (reps[q]->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "cge submit: XADD: %s\n", reps[q]->str);
                bad = 1;
            }
            freeReplyObject(reps[q]);
        }
        if (bad) return -1;
        S->enqueued += k;
    }
    return 0;
}

/* Takes one "idx line" element. */
static void take(struct sub *S, const redisReply *x) {
    if (x->type != REDIS_REPLY_STRING) return;
    char *sp = memchr(x->str, ' ', x->len);
    if (!sp) return;
    long long idx = 0;
    for (const char *c = x->str; c < sp; c++) {
        if (*c < '0' || *c > '9' || idx > (1LL << 50)) return;
        idx = idx * 10 + (*c - '0');
    }
    if (idx >= S->n) return;
    if (S->have[idx]) {
        S->dups++;
        return;
    }
    size_t len = x->len - (size_t)(sp + 1 - x->str);
    char *line = malloc(len + 1);
    if (!line) return;
    memcpy(line, sp + 1, len);
    line[len] = '\0';
    S->results[idx] = line;
    S->have[idx] = 1;
    S->got++;
}

static void print_ready(struct sub *S) {
    while (S->printed < S->n && S->have[S->printed]) {
        char *l = S->results[S->printed];
        fputs(l, stdout);
        fputc('\n', stdout);
        free(l);
        S->results[S->printed] = NULL;
        S->printed++;
    }
    fflush(stdout);
}

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge submit --redis URL [--stream NAME] [--group NAME] [--output fused|slots|both]\n"
            "                  [--timeout SECONDS] [--stats] < inputs.jsonl > results.jsonl\n"
            "\n"
            "Puts each input line (as `cge embed` reads them; media files are sent as bytes) on a\n"
            "Redis stream (default " JOBS_STREAM ") for `cge worker`, waits, and prints one result\n"
            "line per input line in input order. --timeout: stop waiting, name the missing lines on\n"
            "stderr, answer them with {\"error\": ...} and exit 1. --stats: counters on stderr.\n");
}

int cmd_submit(int argc, char **argv) {
    const char *url = NULL;
    struct sub S;
    memset(&S, 0, sizeof S);
    S.stream = JOBS_STREAM;
    S.group = JOBS_GROUP;
    S.output = "fused";
    double timeout_s = 0;
    int stats = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (!v) {
            fprintf(stderr, "cge submit: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--redis")) {
            url = v, i++;
        } else if (!strcmp(a, "--stream")) {
            S.stream = v, i++;
        } else if (!strcmp(a, "--group")) {
            S.group = v, i++;
        } else if (!strcmp(a, "--output")) {
            if (strcmp(v, "fused") && strcmp(v, "slots") && strcmp(v, "both")) {
                fprintf(stderr, "cge submit: --output %s: expected fused, slots or both\n", v);
                return 2;
            }
            S.output = v, i++;
        } else if (!strcmp(a, "--timeout")) {
            char *end = NULL;
            timeout_s = strtod(v, &end);
            if (!*v || *end || !(timeout_s > 0) || timeout_s > 1e7) {
                fprintf(stderr, "cge submit: --timeout %s: expected seconds > 0\n", v);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "cge submit: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!url) {
        fprintf(stderr, "cge submit: --redis URL is required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct cge__redis_params rp = cge__redis_default_params();
    rp.timeout_ms = 3000;
    if (cge__redis_open(url, &rp, &S.r)) {
        fprintf(stderr, "cge submit: %s\n", cge_errmsg());
        return 2;
    }
    int64_t t0 = now_ms();
    size_t total = 0;
    char *in = read_all(stdin, &total);
    int rc = 0;
    if (!in) {
        fprintf(stderr, "cge submit: out of memory reading stdin\n");
        cge__redis_close(S.r);
        return 1;
    }
    /* the lines, trimmed as cge embed trims them; blank lines are not inputs */
    int64_t cap = 1024;
    S.lines = malloc(sizeof *S.lines * (size_t)cap);
    S.lens = malloc(sizeof *S.lens * (size_t)cap);
    for (char *p = in; S.lines && S.lens && p < in + total;) {
        char *nl = memchr(p, '\n', (size_t)(in + total - p));
        char *e = nl ? nl : in + total;
        char *s = p;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
        char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r')) t--;
        if (t > s) {
            if (S.n == cap) {
                cap *= 2;
                char **nl2 = realloc(S.lines, sizeof *S.lines * (size_t)cap);
                size_t *ll = realloc(S.lens, sizeof *S.lens * (size_t)cap);
                if (nl2) S.lines = nl2;
                if (ll) S.lens = ll;
                if (!nl2 || !ll) break;
            }
            *t = '\0';
            S.lines[S.n] = s;
            S.lens[S.n++] = (size_t)(t - s);
        }
        p = nl ? nl + 1 : in + total;
    }
    S.results = calloc((size_t)S.n + 1, sizeof *S.results);
    S.have = calloc((size_t)S.n + 1, 1);
    if (!S.lines || !S.lens || !S.results || !S.have) {
        fprintf(stderr, "cge submit: out of memory\n");
        rc = 1;
        goto done;
    }
    unsigned char rnd[8] = {0};
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) memset(rnd, 0, sizeof rnd);
        close(fd);
    }
    unsigned long long id = 0;
    for (int i = 0; i < 8; i++) id = id << 8 | rnd[i];
    id ^= (unsigned long long)getpid() << 32 ^ (unsigned long long)t0;
    snprintf(S.reply, sizeof S.reply, "%s%016llx", JOBS_REPLY_PREFIX, id);

    int64_t deadline = timeout_s > 0 ? t0 + (int64_t)(timeout_s * 1000) : 0;
    char run_id[48] = "";
    int queued = S.n == 0;
    while (S.got < S.n && !(deadline && now_ms() > deadline)) {
        if (!queued) {
            if (enqueue_missing(&S)) {
                sleep_ms(100);
                continue;
            }
            queued = 1;
            snprintf(run_id, sizeof run_id, "%s", cge__redis_run_id(S.r));
        }
        const char *bl[3] = {"BLPOP", S.reply, "1"};
        redisReply *rep = cge__redis_cmd(S.r, 4000, 3, bl, NULL);
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) take(&S, rep->element[1]);
        if (rep) freeReplyObject(rep);
        else sleep_ms(100);
        for (int round = 0; rep && round < 1000; round++) { /* drain what is there */
            const char *lp[3] = {"LPOP", S.reply, "512"};
            redisReply *x = cge__redis_cmd(S.r, 4000, 3, lp, NULL);
            int more = x && x->type == REDIS_REPLY_ARRAY && x->elements > 0;
            for (size_t q = 0; more && q < x->elements; q++) take(&S, x->element[q]);
            if (x) freeReplyObject(x);
            if (!more) break;
        }
        print_ready(&S);
        /* a restarted Redis may have lost the queue and unread results: enqueue what is missing */
        const char *now_id = cge__redis_run_id(S.r);
        if (cge__redis_connected(S.r) && now_id[0] && run_id[0] && strcmp(now_id, run_id) != 0) {
            fprintf(stderr, "cge submit: Redis restarted (run_id changed): enqueueing the %lld "
                            "lines without a result again\n", (long long)(S.n - S.got));
            S.resubmits++;
            queued = 0;
        }
    }
    if (S.got < S.n) {
        fprintf(stderr, "cge submit: timed out after %.1f s: %lld of %lld lines have no result:",
                timeout_s, (long long)(S.n - S.got), (long long)S.n);
        int shown = 0;
        for (int64_t i = 0; i < S.n; i++) {
            if (S.have[i]) continue;
            if (shown++ < 50) fprintf(stderr, " %lld", (long long)i + 1);
            S.results[i] = strdup("{\"error\": \"no result before --timeout\"}");
            S.have[i] = S.results[i] != NULL;
        }
        fprintf(stderr, "%s (input lines, 1-based)\n", shown > 50 ? " ..." : "");
        rc = 1;
    }
    print_ready(&S);
    {
        const char *del[2] = {"DEL", S.reply};
        redisReply *rep = S.n ? cge__redis_cmd(S.r, 0, 2, del, NULL) : NULL;
        if (rep) freeReplyObject(rep);
    }
    if (stats)
        fprintf(stderr,
                "{\"jobs\": %lld, \"enqueued\": %lld, \"results\": %lld, \"duplicates\": %lld, "
                "\"resubmits\": %lld, \"reconnects\": %llu, \"seconds\": %.3f}\n",
                (long long)S.n, (long long)S.enqueued, (long long)S.got, (long long)S.dups,
                (long long)S.resubmits, (unsigned long long)cge__redis_reconnects(S.r),
                (double)(now_ms() - t0) / 1000.0);
done:
    for (int64_t i = 0; S.results && i < S.n; i++) free(S.results[i]);
    free(S.results);
    free(S.have);
    free(S.lines);
    free(S.lens);
    free(in);
    cge__redis_close(S.r);
    return rc;
}
