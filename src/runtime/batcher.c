/*
 * batcher.c: per-slot queues and the worker team that drains them (see batcher.h).
 *
 * Key design decision: one lock for all queues. Queues are touched only to link and unlink a
 * few pointers, so the lock is held for microseconds while a batch runs for milliseconds; one
 * lock keeps "which queue's batch goes next" (the ready queue whose head waited longest) a
 * simple scan and makes the shutdown drain easy to get right.
 */
#include "runtime/batcher.h"

#include "core/core.h"
#include "tensor/ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct queue {
    struct cge__bitem *head, *tail;
    int64_t n;
    int64_t max_tokens;            /* longest item waiting (recomputed on take) */
    struct cge__batcher_qstats st;
};

struct cge__batcher {
    struct cge__batcher_params p;
    cge__batch_fn fn;
    void *user;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* items arrived, a kick, or stop */
    int stop;
    struct queue *q;
    pthread_t *workers;
    int n_started;
    struct cge__bitem **items;     /* (n_workers, max_batch_size): each worker's batch */
    int next_worker;               /* which slice the next started worker takes */
};

void cge__bcall_init(struct cge__bcall *c) {
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->pending = 0;
}

void cge__bcall_deinit(struct cge__bcall *c) {
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

void cge__bcall_wait(struct cge__bcall *c) {
    pthread_mutex_lock(&c->mu);
    while (c->pending > 0) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void bcall_done(struct cge__bcall *c, int64_t n) {
    pthread_mutex_lock(&c->mu);
    c->pending -= n;
    if (c->pending <= 0) pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int64_t now_us(const struct cge__batcher *b) {
    if (b->p.clock) return b->p.clock(b->p.clock_user);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wait_us(const struct cge__batcher *b, const struct queue *q) {
    return q - b->q == b->p.nowait_queue ? 0 : (int64_t)b->p.max_wait_ms * 1000;
}

/* Why queue q's batch may go now (0: not yet). 1 size, 2 tokens, 3 wait, 4 draining. */
static int ready(const struct cge__batcher *b, const struct queue *q, int64_t now) {
    if (!q->n) return 0;
    if (q->n >= b->p.max_batch_size) return 1;
    if (q->n * q->max_tokens >= b->p.max_batch_tokens) return 2;
    if ((q->n >= b->p.min_batch_size || q - b->q == b->p.nowait_queue) &&
        now - q->head->enq_us >= wait_us(b, q))
        return 3;
    if (b->stop) return 4;
    return 0;
}

/* Unlinks the batch of queue q into items (at most max_batch_size, within the token budget). */
static int64_t take(struct cge__batcher *b, struct queue *q, struct cge__bitem **items) {
    int64_t n = 0, longest = 0;
    while (q->head && n < b->p.max_batch_size) {
        int64_t l = q->head->n_tokens > longest ? q->head->n_tokens : longest;
        if (n > 0 && (n + 1) * l > b->p.max_batch_tokens) break;
        longest = l;
        items[n++] = q->head;
        q->head = q->head->next;
    }
    if (!q->head) q->tail = NULL;
    q->n -= n;
    q->max_tokens = 0;
    for (struct cge__bitem *it = q->head; it; it = it->next)
        if (it->n_tokens > q->max_tokens) q->max_tokens = it->n_tokens;
    uint64_t tok = 0;
    for (int64_t i = 0; i < n; i++) tok += (uint64_t)items[i]->n_tokens;
    q->st.batches++;
    q->st.items += (uint64_t)n;
    q->st.tokens += tok;
    q->st.padded_tokens += (uint64_t)(n * longest);
    if (n > q->st.max_batch) q->st.max_batch = n;
    return n;
}

static void *worker(void *arg) {
    struct cge__batcher *b = arg;
    cge__set_thread_budget(b->p.threads_per_worker);
    pthread_mutex_lock(&b->mu);
    struct cge__bitem **items = b->items + (size_t)b->next_worker++ * (size_t)b->p.max_batch_size;
    for (;;) {
        int64_t now = now_us(b);
        int best = -1, why = 0;
        int64_t oldest = INT64_MAX, wake = INT64_MAX, waiting = 0;
        for (int i = 0; i < b->p.n_queues; i++) {
            struct queue *q = &b->q[i];
            waiting += q->n;
            int r = ready(b, q, now);
            if (r && q->head->enq_us < oldest) {
                oldest = q->head->enq_us;
                best = i;
                why = r;
            } else if (!r && q->n >= b->p.min_batch_size) {
                int64_t t = q->head->enq_us + wait_us(b, q);
                if (t < wake) wake = t;
            }
        }
        if (best >= 0) {
            struct queue *q = &b->q[best];
            int64_t n = take(b, q, items);
            if (why == 1) q->st.by_size++;
            else if (why == 2) q->st.by_tokens++;
            else q->st.by_wait++;
            pthread_mutex_unlock(&b->mu);
            b->fn(b->user, best, items, n);
            for (int64_t i = 0; i < n; i++) bcall_done(items[i]->call, 1);
            pthread_mutex_lock(&b->mu);
            continue;
        }
        if (b->stop && !waiting) break;
        if (wake == INT64_MAX || b->p.clock) {
            pthread_cond_wait(&b->cv, &b->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t t = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + (wake - now);
            ts.tv_sec = t / 1000000;
            ts.tv_nsec = (t % 1000000) * 1000;
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
    }
    pthread_mutex_unlock(&b->mu);
    cge__set_thread_budget(0);
    return NULL;
}

enum cge_status cge__batcher_new(const struct cge__batcher_params *p, cge__batch_fn fn, void *user,
                                 struct cge__batcher **out) {
    *out = NULL;
    if (!p || !fn || p->n_queues < 1 || p->max_batch_size < 1 || p->max_batch_tokens < 1 ||
        p->min_batch_size < 1 || p->max_wait_ms < 0 || p->max_queue < 1 || p->n_workers < 1)
        return cge__err(CGE_ERR_INVALID_VALUE, "batcher: bad parameters");
    struct cge__batcher *b = cge__calloc(1, sizeof *b);
    if (!b) return cge__err(CGE_ERR_NOMEM, "batcher");
    b->p = *p;
    b->fn = fn;
    b->user = user;
    b->q = cge__calloc((size_t)p->n_queues, sizeof *b->q);
    b->workers = cge__calloc((size_t)p->n_workers, sizeof *b->workers);
    b->items = cge__calloc((size_t)p->n_workers * (size_t)p->max_batch_size, sizeof *b->items);
    if (!b->q || !b->workers || !b->items) {
        cge__free(b->q);
        cge__free(b->workers);
        cge__free(b->items);
        cge__free(b);
        return cge__err(CGE_ERR_NOMEM, "batcher");
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < p->n_workers; i++) {
        if (pthread_create(&b->workers[i], NULL, worker, b) != 0) break;
        b->n_started++;
    }
    if (b->n_started == 0) {
        cge__batcher_free(b);
        return cge__err(CGE_ERR_BATCH, "batcher: cannot start a worker thread");
    }
    *out = b;
    return CGE_OK;
}

void cge__batcher_free(struct cge__batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->n_started; i++) pthread_join(b->workers[i], NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    cge__free(b->q);
    cge__free(b->workers);
    cge__free(b->items);
    cge__free(b);
}

enum cge_status cge__batcher_submit(struct cge__batcher *b, int qi, struct cge__bitem **items,
                                    int64_t n) {
    if (!b || qi < 0 || qi >= b->p.n_queues || n < 0)
        return cge__err(CGE_ERR_INVALID_VALUE, "batcher: bad submit");
    if (n == 0) return CGE_OK;
    pthread_mutex_lock(&b->mu);
    struct queue *q = &b->q[qi];
    if (q->n + n > b->p.max_queue || b->stop) {
        int64_t depth = q->n;
        pthread_mutex_unlock(&b->mu);
        return cge__err(CGE_ERR_QUEUE_FULL, "queue %d holds %lld of %lld inputs: %lld more do not fit",
                        qi, (long long)depth, (long long)b->p.max_queue, (long long)n);
    }
    int64_t t = now_us(b);
    for (int64_t i = 0; i < n; i++) {
        struct cge__bitem *it = items[i];
        pthread_mutex_lock(&it->call->mu);
        it->call->pending++;
        pthread_mutex_unlock(&it->call->mu);
        it->enq_us = t;
        it->next = NULL;
        if (q->tail) q->tail->next = it;
        else q->head = it;
        q->tail = it;
        if (it->n_tokens > q->max_tokens) q->max_tokens = it->n_tokens;
    }
    q->n += n;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return CGE_OK;
}

void cge__batcher_kick(struct cge__batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void cge__batcher_stats(struct cge__batcher *b, int qi, struct cge__batcher_qstats *out) {
    memset(out, 0, sizeof *out);
    if (!b || qi < 0 || qi >= b->p.n_queues) return;
    pthread_mutex_lock(&b->mu);
    *out = b->q[qi].st;
    out->depth = b->q[qi].n;
    pthread_mutex_unlock(&b->mu);
}
