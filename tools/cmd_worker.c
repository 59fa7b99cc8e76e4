/*
 * cmd_worker.c: `cge worker --ensemble DIR --redis URL`: embeds jobs from a Redis stream (see
 * redis_jobs.h for the protocol) with a consumer group, so any number of workers on any number of
 * machines share one queue, and the same Redis is the shared cache tier of their engines.
 *
 * Loop: XAUTOCLAIM entries other (dead or stuck) consumers left pending longer than
 * --claim-idle-ms; XREADGROUP a batch (--batch, blocking a short while); embed the batch in one
 * cge_engine_embed call; RPUSH each result to the job's reply list; only once those are stored,
 * XACK (and XDEL: an entry is done once acked). A worker that dies mid-batch leaves its entries
 * pending, and another takes them over; an entry delivered more than --max-retries + 1 times is
 * dead-lettered instead of run again (a job that kills every worker must not kill them all).
 *
 * Redis going away: every call has a deadline; the connection comes back by itself (backoff),
 * the group is created again when it is missing (a restarted Redis without persistence), and
 * results computed meanwhile are stored once Redis is back. SIGTERM/SIGINT end the worker after
 * its current batch; --stats prints the counters as one JSON line on stderr at exit.
 */
#include "cge.h"
#include "commands.h"
#include "net/redis.h"
#include "redis_jobs.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the result line, exactly as `cge embed` prints it (tools/cmd_embed_engine.c) -------------- */

enum output { OUT_FUSED, OUT_SLOTS, OUT_BOTH };

static void put_json_string(FILE *f, const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *p = j ? cJSON_PrintUnformatted(j) : NULL;
    fputs(p ? p : "\"out of memory\"", f);
    cJSON_free(p);
    cJSON_Delete(j);
}

static void put_error(FILE *f, const char *msg) {
    fputs("{\"error\": ", f);
    put_json_string(f, msg);
    fputs("}", f);
}

static void put_floats(FILE *f, const float *v, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ",%.9g" : "%.9g", (double)v[i]);
    fputc(']', f);
}

static void put_slots(FILE *f, const struct cge_result *r) {
    fputs("{", f);
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        fprintf(f, s ? ", \"E%d\": " : "\"E%d\": ", s + 1);
        const struct cge_slot_result *sr = &r->slots[s];
        if (sr->state == CGE_SLOT_OK) put_floats(f, sr->vector, sr->dim);
        else fputs("null", f);
    }
    fputs("}", f);
}

static void put_result(FILE *f, enum output o, const struct cge_result *r) {
    if (o == OUT_FUSED) {
        put_floats(f, r->embedding, r->dim);
        return;
    }
    if (o == OUT_SLOTS) {
        fputs("{\"slots\": ", f);
        put_slots(f, r);
        fputs("}", f);
        return;
    }
    fputs("{\"embedding\": ", f);
    put_floats(f, r->embedding, r->dim);
    fputs(", \"expert_weights\": ", f);
    put_floats(f, r->expert_weights, r->n_experts);
    fputs(", \"selected\": [", f);
    for (int k = 0; k < r->top_k; k++) fprintf(f, k ? ",%d" : "%d", r->selected[k]);
    fputs("], \"slots\": ", f);
    put_slots(f, r);
    int any = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (r->slots[s].state != CGE_SLOT_FAILED) continue;
        fputs(any ? ", " : ", \"slot_errors\": {", f);
        fprintf(f, "\"E%d\": ", s + 1);
        put_json_string(f, r->slots[s].errmsg);
        any = 1;
    }
    if (any) fputs("}", f);
    fputs("}", f);
}

void tool_print_engine_stats(FILE *f, struct cge_engine *e, const char *extra) {
    struct cge_engine_stats st;
    if (!e || cge_engine_get_stats(e, &st) != CGE_OK) memset(&st, 0, sizeof st);
    uint64_t computed = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) computed += st.slots[s].requests;
    fprintf(f,
            "{%s%s\"inputs\": %llu, \"failures\": %llu, \"cache_hits\": %llu, \"cache_misses\": %llu, "
            "\"slot_runs\": %llu, \"redis_hits\": %llu, \"redis_misses\": %llu, \"redis_puts\": %llu, "
            "\"redis_errors\": %llu, \"redis_corrupt\": %llu}\n",
            extra ? extra : "", extra && extra[0] ? ", " : "", (unsigned long long)st.inputs,
            (unsigned long long)st.failures, (unsigned long long)st.cache_hits,
            (unsigned long long)st.cache_misses, (unsigned long long)computed,
            (unsigned long long)st.redis_hits, (unsigned long long)st.redis_misses,
            (unsigned long long)st.redis_puts, (unsigned long long)st.redis_errors,
            (unsigned long long)st.redis_corrupt);
    fflush(f);
}

/* ---- the worker ------------------------------------------------------------------------------ */

struct worker {
    struct cge_engine *e;
    struct cge__redis *r;
    const char *stream, *group;
    char dead[600];
    char consumer[200];
    int batch;
    int64_t claim_idle_ms, max_retries, delay_ms;
    int group_ok;
    /* counters */
    uint64_t jobs, batches, claims, retries, dead_n, stored;
};

/* One stream entry as read. */
struct job {
    const redisReply *id;   /* the entry id */
    const redisReply *f[6]; /* v, reply, idx, output, line, media (NULL when absent) */
    long long idx;
    enum output out;
    int64_t deliveries;     /* 1 for new entries; from XPENDING for claimed ones */
    char err[200];          /* why the job is malformed ("" if it is not) */
    struct tool_line line;
    char *result;           /* the result line (malloc) */
    size_t result_len;
};

static const char *const FIELDS[6] = {"v", "reply", "idx", "output", "line", "media"};

static void job_parse(struct job *j, const redisReply *entry) {
    memset(j, 0, sizeof *j);
    j->deliveries = 1;
    j->idx = -1;
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING) {
        snprintf(j->err, sizeof j->err, "not a stream entry");
        return;
    }
    j->id = entry->element[0];
    const redisReply *kv = entry->element[1];
    if (kv->type != REDIS_REPLY_ARRAY) {
        snprintf(j->err, sizeof j->err, "entry deleted");
        return;
    }
    if (kv->elements % 2) {
        snprintf(j->err, sizeof j->err, "odd field list");
        return;
    }
    for (size_t i = 0; i < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        int w = -1;
        for (int q = 0; q < 6 && k->type == REDIS_REPLY_STRING; q++)
            if (k->len == strlen(FIELDS[q]) && !memcmp(k->str, FIELDS[q], k->len)) w = q;
        if (w < 0) {
            snprintf(j->err, sizeof j->err, "unknown field \"%.40s\"", k->type == REDIS_REPLY_STRING ? k->str : "?");
            return;
        }
        if (j->f[w]) {
            snprintf(j->err, sizeof j->err, "repeated field \"%s\"", FIELDS[w]);
            return;
        }
        j->f[w] = v;
    }
    /* reply and idx first, so even a job malformed otherwise can be answered */
    const redisReply *rp = j->f[1], *ix = j->f[2];
    int reply_ok = rp && rp->len > strlen(JOBS_REPLY_PREFIX) && rp->len < 512 &&
                   !memcmp(rp->str, JOBS_REPLY_PREFIX, strlen(JOBS_REPLY_PREFIX)) &&
                   !memchr(rp->str, '\0', rp->len);
    if (ix && ix->len > 0 && ix->len < 16) {
        long long v = 0;
        size_t i = 0;
        for (; i < ix->len && ix->str[i] >= '0' && ix->str[i] <= '9'; i++) v = v * 10 + (ix->str[i] - '0');
        if (i == ix->len) j->idx = v;
    }
    if (!reply_ok) {
        j->idx = -1; /* unanswerable */
        snprintf(j->err, sizeof j->err, "\"reply\" must be a key starting with %s", JOBS_REPLY_PREFIX);
        return;
    }
    if (j->idx < 0) {
        snprintf(j->err, sizeof j->err, "\"idx\" must be a decimal integer >= 0");
        return;
    }
    if (!j->f[0] || j->f[0]->len != 1 || j->f[0]->str[0] != '1') {
        snprintf(j->err, sizeof j->err, "\"v\" must be \"1\"");
        return;
    }
    const redisReply *o = j->f[3];
    if (o && !strcmp(o->str, "fused") && o->len == 5) j->out = OUT_FUSED;
    else if (o && !strcmp(o->str, "slots") && o->len == 5) j->out = OUT_SLOTS;
    else if (o && !strcmp(o->str, "both") && o->len == 4) j->out = OUT_BOTH;
    else {
        snprintf(j->err, sizeof j->err, "\"output\" must be fused, slots or both");
        return;
    }
    if (!j->f[4]) {
        snprintf(j->err, sizeof j->err, "no \"line\"");
        return;
    }
    /* The input line itself: a bad line is an answer (as cge embed gives it), not a bad job. */
    tool_parse_input(j->f[4]->str, j->f[4]->len, &j->line, 0);
    const redisReply *m = j->f[5];
    if (m && !j->line.err[0]) {
        if (j->line.in.image_path) {
            j->line.in.image_path = NULL;
            j->line.in.image_data = m->str;
            j->line.in.image_len = m->len;
        } else if (j->line.in.audio_path) {
            j->line.in.audio_path = NULL;
            j->line.in.audio_data = m->str;
            j->line.in.audio_len = m->len;
        } else {
            snprintf(j->err, sizeof j->err, "\"media\" given for an input that names no image or audio");
        }
    }
}

static void job_free(struct job *j) {
    tool_line_free(&j->line);
    free(j->result);
    j->result = NULL;
}

static void set_result_error(struct job *j, const char *msg) {
    FILE *f = open_memstream(&j->result, &j->result_len);
    if (!f) return;
    fprintf(f, "%lld ", j->idx);
    put_error(f, msg);
    fclose(f);
}

/* Creates the group (and the stream) when missing; from the stream's start, so jobs submitted
 * before any worker ran are read. */
static int ensure_group(struct cge__redis *r, const char *stream, const char *group) {
    redisReply *rep = cge__redis_cmdf(r, 0, "XGROUP CREATE %s %s 0 MKSTREAM", stream, group);
    if (!rep) return -1;
    int ok = rep->type != REDIS_REPLY_ERROR || !strncmp(rep->str, "BUSYGROUP", 9);
    if (!ok) fprintf(stderr, "cge: XGROUP CREATE %s %s: %s\n", stream, group, rep->str);
    freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* Sends a dead letter for j (with its original fields) and, when it can be answered, its
 * error result. 0 when stored. */
static int dead_letter(struct worker *W, struct job *j, const redisReply *entry) {
    const char *argv[40];
    size_t lens[40];
    int n = 0;
    char deliv[32];
    snprintf(deliv, sizeof deliv, "%lld", (long long)j->deliveries);
    argv[n] = "XADD", lens[n++] = 4;
    argv[n] = W->dead, lens[n++] = strlen(W->dead);
    argv[n] = "*", lens[n++] = 1;
    argv[n] = "id", lens[n++] = 2;
    argv[n] = j->id->str, lens[n++] = j->id->len;
    argv[n] = "reason", lens[n++] = 6;
    argv[n] = j->err, lens[n++] = strlen(j->err);
    argv[n] = "consumer", lens[n++] = 8;
    argv[n] = W->consumer, lens[n++] = strlen(W->consumer);
    argv[n] = "deliveries", lens[n++] = 10;
    argv[n] = deliv, lens[n++] = strlen(deliv);
    const redisReply *kv = entry->element[1];
    for (size_t i = 0; kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements && n + 2 <= 40; i += 2) {
        for (int q = 0; q < 2; q++) {
            const redisReply *x = kv->element[i + q];
            argv[n] = x->type == REDIS_REPLY_STRING ? x->str : "?";
            lens[n++] = x->type == REDIS_REPLY_STRING ? x->len : 1;
        }
    }
    redisReply *rep = cge__redis_cmd(W->r, 0, n, argv, lens);
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep) freeReplyObject(rep);
    if (!ok) return -1;
    W->dead_n++;
    fprintf(stderr, "cge worker: entry %s dead-lettered to %s: %s\n", j->id->str, W->dead, j->err);
    if (j->idx >= 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "job dead-lettered: %s", j->err);
        set_result_error(j, msg);
    }
    return 0;
}

/* Stores the results of jobs[0..n) (those that have one), retrying while Redis is away. */
static int store_results(struct worker *W, struct job *jobs, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) m += jobs[i].result != NULL;
    if (!m) return 0;
    int *argcs = calloc((size_t)m * 2, sizeof *argcs);
    const char *(*argvs)[4] = calloc((size_t)m * 2, sizeof *argvs);
    size_t(*lensv)[4] = calloc((size_t)m * 2, sizeof *lensv);
    const char **av[2 * 4096];
    const size_t *lv[2 * 4096];
    redisReply **reps = calloc((size_t)m * 2, sizeof *reps);
    if (!argcs || !argvs || !lensv || !reps || m > 4096) {
        free(argcs), free(argvs), free(lensv), free(reps);
        return -1;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!jobs[i].result) continue;
        const redisReply *rp = jobs[i].f[1];
        argcs[k] = 3;
        argvs[k][0] = "RPUSH", lensv[k][0] = 5;
        argvs[k][1] = rp->str, lensv[k][1] = rp->len;
        argvs[k][2] = jobs[i].result, lensv[k][2] = jobs[i].result_len;
        k++;
        argcs[k] = 3;
        argvs[k][0] = "EXPIRE", lensv[k][0] = 6;
        argvs[k][1] = rp->str, lensv[k][1] = rp->len;
        argvs[k][2] = JOBS_REPLY_TTL_S, lensv[k][2] = strlen(JOBS_REPLY_TTL_S);
        k++;
    }
    for (int i = 0; i < k; i++) {
        av[i] = argvs[i];
        lv[i] = lensv[i];
    }
    int rc = -1;
    int64_t give_up = now_ms() + 60000;
    while (now_ms() < give_up) {
        if (cge__redis_pipeline(W->r, 0, k, argcs, (const char *const *const *)av, lv, reps) == CGE_OK) {
            rc = 0;
            for (int i = 0; i < k; i++) {
                if (reps[i]->type == REDIS_REPLY_ERROR) {
                    fprintf(stderr, "cge worker: storing a result: %s\n", reps[i]->str);
                    rc = -1;
                }
                freeReplyObject(reps[i]);
            }
            if (!rc) W->stored += (uint64_t)m;
            break;
        }
        if (g_stop && now_ms() + 55000 > give_up) break; /* stopping: a few tries only */
        sleep_ms(100);
    }
    free(argcs), free(argvs), free(lensv), free(reps);
    return rc;
}

/* XACK + XDEL of the entries whose result (or dead letter) is stored. */
static void ack(struct worker *W, struct job *jobs, int n, const int *done) {
    const char *argv[3 + 4096];
    size_t lens[3 + 4096];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (done[i] && jobs[i].id) {
            argv[3 + k] = jobs[i].id->str;
            lens[3 + k] = jobs[i].id->len;
            k++;
        }
    if (!k) return;
    argv[0] = "XACK", lens[0] = 4;
    argv[1] = W->stream, lens[1] = strlen(W->stream);
    argv[2] = W->group, lens[2] = strlen(W->group);
    const char *xdel[2 + 4096];
    size_t xdl[2 + 4096];
    xdel[0] = "XDEL", xdl[0] = 4;
    xdel[1] = W->stream, xdl[1] = strlen(W->stream);
    memcpy(xdel + 2, argv + 3, sizeof(char *) * (size_t)k);
    memcpy(xdl + 2, lens + 3, sizeof(size_t) * (size_t)k);
    int argcs[2] = {3 + k, 2 + k};
    const char *const *avs[2] = {argv, xdel};
    const size_t *lvs[2] = {lens, xdl};
    redisReply *reps[2];
    if (cge__redis_pipeline(W->r, 0, 2, argcs, avs, lvs, reps) == CGE_OK) {
        freeReplyObject(reps[0]);
        freeReplyObject(reps[1]);
    }
    /* An ack lost here only means the entry is delivered again: its result is stored already,
     * and the submitter drops the duplicate. */
}

/* Runs the entries of one XREADGROUP/XAUTOCLAIM reply (an array of entries). */
static void run_entries(struct worker *W, const redisReply *entries, int claimed) {
    int n = (int)entries->elements;
    if (n <= 0) return;
    if (n > 4096) n = 4096;
    struct job *jobs = calloc((size_t)n, sizeof *jobs);
    int *done = calloc((size_t)n, sizeof *done);
    struct cge_input *ins = calloc((size_t)n, sizeof *ins);
    struct cge_result *res = calloc((size_t)n, sizeof *res);
    int *which = calloc((size_t)n, sizeof *which);
    if (!jobs || !done || !ins || !res || !which) {
        fprintf(stderr, "cge worker: out of memory\n");
        g_stop = 1;
        goto out;
    }
    for (int i = 0; i < n; i++) job_parse(&jobs[i], entries->element[i]);
    if (claimed) {
        /* how often each was delivered: a job that outlived max_retries deliveries is dead */
        const char *argv[6];
        for (int i = 0; i < n; i++) {
            if (!jobs[i].id) continue;
            argv[0] = "XPENDING", argv[1] = W->stream, argv[2] = W->group;
            argv[3] = jobs[i].id->str, argv[4] = jobs[i].id->str, argv[5] = "1";
            redisReply *rep = cge__redis_cmd(W->r, 0, 6, argv, NULL);
            if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
                rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 4)
                jobs[i].deliveries = rep->element[0]->element[3]->integer;
            if (rep) freeReplyObject(rep);
            if (jobs[i].deliveries > 1) W->retries++;
            if (!jobs[i].err[0] && jobs[i].deliveries > W->max_retries + 1)
                snprintf(jobs[i].err, sizeof jobs[i].err,
                         "delivered %lld times without a stored result (more than --max-retries %lld)",
                         (long long)jobs[i].deliveries, (long long)W->max_retries);
        }
    }
    if (W->delay_ms > 0) {
        for (int64_t t = 0; t < W->delay_ms && !g_stop; t += 20) sleep_ms(20);
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        struct job *j = &jobs[i];
        if (!j->id) continue;
        if (!strcmp(j->err, "entry deleted")) { /* claimed after its XDEL: nothing to do */
            done[i] = 1;
            continue;
        }
        if (j->err[0]) {
            done[i] = dead_letter(W, j, entries->element[i]) == 0;
            continue;
        }
        W->jobs++;
        if (j->line.err[0]) {
            set_result_error(j, j->line.err);
            continue;
        }
        which[k] = i;
        ins[k++] = j->line.in;
    }
    enum cge_status st = k ? cge_engine_embed(W->e, ins, (size_t)k, NULL, res) : CGE_OK;
    char callerr[512] = "";
    if (st) snprintf(callerr, sizeof callerr, "%s: %s", cge_status_str(st), cge_errmsg());
    for (int q = 0; q < k; q++) {
        struct job *j = &jobs[which[q]];
        const struct cge_result *r = &res[q];
        const char *err = st ? callerr : r->status ? (r->errmsg[0] ? r->errmsg : cge_status_str(r->status)) : NULL;
        FILE *f = open_memstream(&j->result, &j->result_len);
        if (!f) continue;
        fprintf(f, "%lld ", j->idx);
        if (err) put_error(f, err);
        else put_result(f, j->out, r);
        fclose(f);
    }
    for (int q = 0; q < k && !st; q++) cge_result_deinit(&res[q]);
    if (store_results(W, jobs, n) == 0) {
        for (int i = 0; i < n; i++)
            if (jobs[i].result) done[i] = 1;
        ack(W, jobs, n, done);
    } else {
        /* not stored: left pending, so that this or another worker runs them again */
        fprintf(stderr, "cge worker: %s; %d results not stored (left pending)\n", cge_errmsg(), n);
    }
    W->batches++;
out:
    for (int i = 0; jobs && i < n; i++) job_free(&jobs[i]);
    free(jobs);
    free(done);
    free(ins);
    free(res);
    free(which);
}

static int is_error(const redisReply *rep, const char *prefix) {
    return rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, prefix, strlen(prefix));
}

/* Takes over entries pending longer than claim_idle_ms (from dead or stuck consumers). */
static void claim(struct worker *W) {
    char idle[32], count[32];
    snprintf(idle, sizeof idle, "%lld", (long long)W->claim_idle_ms);
    snprintf(count, sizeof count, "%d", W->batch);
    char cursor[64] = "0-0";
    for (int round = 0; round < 100 && !g_stop; round++) {
        const char *argv[8] = {"XAUTOCLAIM", W->stream, W->group, W->consumer, idle, cursor, "COUNT", count};
        redisReply *rep = cge__redis_cmd(W->r, 0, 8, argv, NULL);
        if (!rep) return;
        if (is_error(rep, "NOGROUP")) W->group_ok = 0;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 || rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            return;
        }
        if (rep->element[0]->type == REDIS_REPLY_STRING)
            snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        if (rep->element[1]->elements) {
            W->claims += rep->element[1]->elements;
            fprintf(stderr, "cge worker %s: took over %zu pending job(s)\n", W->consumer,
                    rep->element[1]->elements);
            run_entries(W, rep->element[1], 1);
        }
        freeReplyObject(rep);
        if (!strcmp(cursor, "0-0")) return;
    }
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge worker --ensemble DIR | --config FILE --redis URL [--stream NAME]\n"
            "                  [--group NAME] [--consumer NAME] [--batch N] [--claim-idle-ms N]\n"
            "                  [--max-retries N] [--threads N] [--no-cache] [--stats]\n"
            "\n"
            "Embeds jobs that `cge submit` puts on a Redis stream (default " JOBS_STREAM ", group\n"
            JOBS_GROUP "), until SIGTERM or SIGINT. URL: redis://[user:pass@]host[:port][/db].\n"
            "The same Redis is the engine's shared cache (--no-cache: no caching at all).\n"
            "--claim-idle-ms N  take over jobs another worker left pending for N ms (30000)\n"
            "--max-retries N    dead-letter a job to <stream>:dead after N retries (3)\n"
            "--delay-ms N       (testing) wait N ms after reading each batch\n"
            "--stats            print the counters as one JSON line on stderr at exit\n");
}

int cmd_worker(int argc, char **argv) {
    const char *path = NULL, *url = NULL, *stream = JOBS_STREAM, *group = JOBS_GROUP, *consumer = NULL;
    struct cge_engine_params p = cge_engine_default_params();
    struct worker W;
    memset(&W, 0, sizeof W);
    W.batch = 16;
    W.claim_idle_ms = 30000;
    W.max_retries = 3;
    int stats = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--stats")) {
            stats = 1;
        } else if (!strcmp(a, "--no-cache")) {
            p.cache = 0;
        } else if (!v) {
            fprintf(stderr, "cge worker: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--ensemble") || !strcmp(a, "--config")) {
            path = v, i++;
        } else if (!strcmp(a, "--redis")) {
            url = v, i++;
        } else if (!strcmp(a, "--stream")) {
            stream = v, i++;
        } else if (!strcmp(a, "--group")) {
            group = v, i++;
        } else if (!strcmp(a, "--consumer")) {
            consumer = v, i++;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "--claim-idle-ms") || !strcmp(a, "--max-retries") ||
                   !strcmp(a, "--threads") || !strcmp(a, "--delay-ms")) {
            char *end = NULL;
            long long x = strtoll(v, &end, 10);
            if (!*v || *end || x < 0 || x > (1LL << 40) || (!strcmp(a, "--batch") && (x < 1 || x > 4096))) {
                fprintf(stderr, "cge worker: %s %s: out of range\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--batch")) W.batch = (int)x;
            else if (!strcmp(a, "--claim-idle-ms")) W.claim_idle_ms = x;
            else if (!strcmp(a, "--max-retries")) W.max_retries = x;
            else if (!strcmp(a, "--delay-ms")) W.delay_ms = x;
            else p.n_threads = (int)x;
            i++;
        } else {
            fprintf(stderr, "cge worker: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!url) {
        fprintf(stderr, "cge worker: --redis URL is required\n");
        return 2;
    }
    if (strlen(stream) > 256 || strlen(group) > 256 || (consumer && strlen(consumer) > 190)) {
        fprintf(stderr, "cge worker: stream, group or consumer name too long\n");
        return 2;
    }
    W.stream = stream;
    W.group = group;
    snprintf(W.dead, sizeof W.dead, "%s%s", stream, JOBS_DEAD_SUFFIX);
    if (consumer) {
        snprintf(W.consumer, sizeof W.consumer, "%s", consumer);
        for (char *c = W.consumer; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '_'; /* JSON-safe stats */
    } else {
        char host[128] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(W.consumer, sizeof W.consumer, "%.120s-%ld", host, (long)getpid());
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct cge__redis_params rp = cge__redis_default_params();
    rp.timeout_ms = 2000;
    enum cge_status st = cge__redis_open(url, &rp, &W.r);
    if (st) {
        fprintf(stderr, "cge worker: %s\n", cge_errmsg());
        return 2;
    }
    p.redis_url = p.cache == 0 ? NULL : url;
    st = cge_engine_open(path, &p, &W.e);
    if (st) {
        fprintf(stderr, "cge worker: %s: %s\n", cge_status_str(st), cge_errmsg());
        cge__redis_close(W.r);
        return 1;
    }
    /* One throwaway input first: the first call pays one-time costs (kernels' first touch, the
     * fusion's scratch), which the first job should not. Not cached, not counted by --stats'
     * jobs (the engine's counters do include it). */
    {
        struct cge_input warm;
        memset(&warm, 0, sizeof warm);
        warm.text = "cge worker warm-up";
        warm.text_len = strlen(warm.text);
        struct cge_embed_options wo;
        memset(&wo, 0, sizeof wo);
        wo.no_cache = 1;
        struct cge_result wr;
        if (cge_engine_embed(W.e, &warm, 1, &wo, &wr) == CGE_OK) cge_result_deinit(&wr);
    }
    fprintf(stderr, "cge worker %s: %s, stream %s, group %s\n", W.consumer, cge_engine_name(W.e), stream, group);
    char count[32], block[32];
    snprintf(count, sizeof count, "%d", W.batch);
    int64_t block_ms = W.claim_idle_ms / 2;
    if (block_ms > 1000) block_ms = 1000;
    if (block_ms < 50) block_ms = 50;
    snprintf(block, sizeof block, "%lld", (long long)block_ms);
    int64_t next_claim = 0;
    int64_t claim_every = W.claim_idle_ms / 2 < 50 ? 50 : W.claim_idle_ms / 2;
    while (!g_stop) {
        if (!W.group_ok) {
            if (ensure_group(W.r, stream, group)) {
                sleep_ms(100); /* unreachable: the connection's backoff paces the retries */
                continue;
            }
            W.group_ok = 1;
        }
        if (now_ms() >= next_claim) {
            claim(&W);
            next_claim = now_ms() + claim_every;
        }
        const char *av[10] = {"XREADGROUP", "GROUP", group, W.consumer, "COUNT", count, "BLOCK", block, "STREAMS", stream};
        const char *av2[11];
        memcpy(av2, av, sizeof av);
        av2[10] = ">";
        redisReply *rep = cge__redis_cmd(W.r, block_ms + 2000, 11, av2, NULL);
        if (!rep) {
            sleep_ms(50);
            continue;
        }
        if (is_error(rep, "NOGROUP")) {
            W.group_ok = 0; /* Redis lost the group (restarted without persistence) */
        } else if (rep->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "cge worker: XREADGROUP: %s\n", rep->str);
            sleep_ms(200);
        } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
                   rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2) {
            run_entries(&W, rep->element[0]->element[1], 0);
        }
        freeReplyObject(rep);
    }
    if (stats) {
        char extra[600];
        snprintf(extra, sizeof extra,
                 "\"consumer\": \"%.150s\", \"jobs\": %llu, \"batches\": %llu, \"stored\": %llu, "
                 "\"claims\": %llu, \"retries\": %llu, \"dead_lettered\": %llu, \"reconnects\": %llu",
                 W.consumer, (unsigned long long)W.jobs, (unsigned long long)W.batches,
                 (unsigned long long)W.stored, (unsigned long long)W.claims,
                 (unsigned long long)W.retries, (unsigned long long)W.dead_n,
                 (unsigned long long)cge__redis_reconnects(W.r));
        tool_print_engine_stats(stderr, W.e, extra);
    }
    cge_engine_close(W.e);
    cge__redis_close(W.r);
    return 0;
}
