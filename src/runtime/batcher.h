/*
 * batcher.h: dynamic batching: bounded per-queue FIFOs (one per slot) drained by a fixed team of
 * worker threads that run whole batches through a callback.
 *
 * A queue's batch goes when it holds max_batch_size items, or when its items would pass
 * max_batch_tokens (padded: items × the longest), or when its oldest item has waited
 * max_wait_ms with at least min_batch_size waiting. Callers wait on a struct cge__bcall that
 * counts their outstanding items. The clock can be injected (tests): then workers re-check only
 * when cge__batcher_kick is called, so a test decides exactly when time has passed.
 *
 * Thread safety: every function may be called from any thread, except _free (the last call).
 */
#ifndef CGE_RUNTIME_BATCHER_H
#define CGE_RUNTIME_BATCHER_H

#include "cge.h"

#include <pthread.h>
#include <stdint.h>

struct cge__bcall {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t pending; /* items not yet run */
};
void cge__bcall_init(struct cge__bcall *c);
void cge__bcall_deinit(struct cge__bcall *c);
/* Waits until every item of the call has run. */
void cge__bcall_wait(struct cge__bcall *c);

/* One input for one queue. The batcher links items through `next`; the callback fills the
 * caller's result; then the item's call is told. */
struct cge__bitem {
    const struct cge_input *in;
    struct cge_result *res;
    int64_t n_tokens;          /* its length for the token budget */
    int64_t deadline_us;       /* 0: none */
    int64_t enq_us;            /* set by submit */
    struct cge__bcall *call;
    struct cge__bitem *next;
};

/* Runs one batch of queue q (items in queue order). */
typedef void (*cge__batch_fn)(void *user, int q, struct cge__bitem **items, int64_t n);
typedef int64_t (*cge__clock_fn)(void *user);

struct cge__batcher_params {
    int n_queues;
    int max_batch_size;        /* >= 1 */
    int64_t max_batch_tokens;  /* >= 1 */
    int min_batch_size;        /* >= 1 */
    int max_wait_ms;           /* >= 0 */
    int nowait_queue;          /* a queue whose batches never wait (its items come in waves from
                                  earlier queues, the fusion's); -1: none */
    int64_t max_queue;         /* items per queue */
    int n_workers;             /* >= 1 */
    int threads_per_worker;    /* each worker's compute budget (cge__set_thread_budget) */
    cge__clock_fn clock;       /* NULL: the monotonic clock */
    void *clock_user;
};

struct cge__batcher;
enum cge_status cge__batcher_new(const struct cge__batcher_params *p, cge__batch_fn fn, void *user,
                                 struct cge__batcher **out);
/* Runs what is queued, stops the workers, frees. NULL is a no-op. */
void cge__batcher_free(struct cge__batcher *b);
/* Queues items[0..n) on queue q, all or none: CGE_ERR_QUEUE_FULL (nothing queued) when fewer
 * than n places remain. Adds n to each item's call's pending count first. */
enum cge_status cge__batcher_submit(struct cge__batcher *b, int q, struct cge__bitem **items,
                                    int64_t n);
/* Makes the workers look at the queues again (after an injected clock moved). */
void cge__batcher_kick(struct cge__batcher *b);

struct cge__batcher_qstats {
    int64_t depth;             /* items waiting now */
    uint64_t batches;          /* batches run */
    uint64_t items;            /* items run */
    uint64_t tokens;           /* their tokens */
    uint64_t padded_tokens;    /* batch size × longest, summed: padding = 1 - tokens/padded */
    int64_t max_batch;         /* largest batch run */
    uint64_t by_size, by_tokens, by_wait; /* why batches went */
};
void cge__batcher_stats(struct cge__batcher *b, int q, struct cge__batcher_qstats *out);

#endif /* CGE_RUNTIME_BATCHER_H */
