/*
 * test_runtime_batch.c: the batcher (with an injected clock: a batch goes at size, at the token
 * budget, at the wait; queue-full; the drain at shutdown) and the engine's runtime under
 * concurrency: batched results equal the fixture, hot swaps under load from 4 threads lose no
 * request, failed validations keep the old model, the memory budget unloads idle models only,
 * deadlines and full queues give their statuses. Also built under ThreadSanitizer.
 */
#include "cge.h"
#include "ensemble_fixture.h"
#include "runtime/batcher.h"
#include "testhelp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* ==== the batcher alone ========================================================================= */

static atomic_llong fake_now; /* µs */
static int64_t fake_clock(void *u) {
    (void)u;
    return atomic_load(&fake_now);
}

struct rec {
    pthread_mutex_t mu;
    int n_batches;
    int64_t sizes[64];
    int queues[64];
};
static struct rec R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void rec_batch(void *user, int q, struct cge__bitem **items, int64_t n) {
    (void)user;
    (void)items;
    pthread_mutex_lock(&R.mu);
    if (R.n_batches < 64) {
        R.sizes[R.n_batches] = n;
        R.queues[R.n_batches] = q;
    }
    R.n_batches++;
    pthread_mutex_unlock(&R.mu);
}

static int batches(void) {
    pthread_mutex_lock(&R.mu);
    int n = R.n_batches;
    pthread_mutex_unlock(&R.mu);
    return n;
}

static void reset(void) {
    pthread_mutex_lock(&R.mu);
    R.n_batches = 0;
    pthread_mutex_unlock(&R.mu);
    atomic_store(&fake_now, 1000000);
}

static struct cge__batcher *new_batcher(int max_batch, int64_t max_tokens, int min_batch,
                                        int wait_ms, int64_t max_queue) {
    struct cge__batcher_params p = {.n_queues = 3, .max_batch_size = max_batch,
                                    .max_batch_tokens = max_tokens, .min_batch_size = min_batch,
                                    .max_wait_ms = wait_ms, .max_queue = max_queue, .n_workers = 1,
                                    .threads_per_worker = 1, .clock = fake_clock, .nowait_queue = -1};
    struct cge__batcher *b = NULL;
    CHECK(cge__batcher_new(&p, rec_batch, NULL, &b) == CGE_OK);
    return b;
}

static void submit(struct cge__batcher *b, int q, struct cge__bitem *it, struct cge__bitem **ptrs,
                   int n, int64_t tokens, struct cge__bcall *call, enum cge_status want) {
    for (int i = 0; i < n; i++) {
        memset(&it[i], 0, sizeof it[i]);
        it[i].n_tokens = tokens;
        it[i].call = call;
        ptrs[i] = &it[i];
    }
    CHECK(cge__batcher_submit(b, q, ptrs, n) == want);
}

/* Nothing runs for a while (real time): the batch must not have gone. */
static void expect_still(int n) {
    usleep(30000);
    CHECK_MSG(batches() == n, "%d batches, expected %d", batches(), n);
}

static void test_batcher(void) {
    struct cge__bitem it[16], *ptrs[16];
    struct cge__bcall call;
    cge__bcall_init(&call);

    /* at size: 4 items with a wait that never passes */
    reset();
    struct cge__batcher *b = new_batcher(4, 1 << 20, 1, 1000, 100);
    submit(b, 1, it, ptrs, 3, 5, &call, CGE_OK);
    expect_still(0);
    submit(b, 1, it + 3, ptrs + 3, 1, 5, &call, CGE_OK);
    cge__bcall_wait(&call);
    CHECK(batches() == 1 && R.sizes[0] == 4 && R.queues[0] == 1);
    struct cge__batcher_qstats qs;
    cge__batcher_stats(b, 1, &qs);
    CHECK(qs.batches == 1 && qs.items == 4 && qs.by_size == 1 && qs.depth == 0);
    cge__batcher_free(b);

    /* at the token budget (padded): 30-token items, budget 100: 4 would be 120 */
    reset();
    b = new_batcher(32, 100, 1, 1000, 100);
    submit(b, 0, it, ptrs, 2, 30, &call, CGE_OK);
    expect_still(0);
    submit(b, 0, it + 2, ptrs + 2, 2, 30, &call, CGE_OK);
    usleep(30000);
    CHECK_MSG(batches() == 1 && R.sizes[0] == 3, "%d batches, first %lld", batches(), (long long)R.sizes[0]);
    /* the fourth waits for its time */
    atomic_store(&fake_now, 1000000 + 1000 * 1000);
    cge__batcher_kick(b);
    cge__bcall_wait(&call);
    CHECK(batches() == 2 && R.sizes[1] == 1);
    cge__batcher_stats(b, 0, &qs);
    CHECK(qs.by_tokens == 1 && qs.by_wait == 1 && qs.padded_tokens == 120 && qs.tokens == 120);
    cge__batcher_free(b);

    /* at the wait, with min_batch_size 2 */
    reset();
    b = new_batcher(32, 1 << 20, 2, 50, 100);
    submit(b, 2, it, ptrs, 1, 5, &call, CGE_OK);
    atomic_store(&fake_now, 1000000 + 60 * 1000); /* waited long enough, but alone */
    cge__batcher_kick(b);
    expect_still(0);
    submit(b, 2, it + 1, ptrs + 1, 1, 5, &call, CGE_OK);
    atomic_store(&fake_now, 1000000 + 60 * 1000 + 49 * 1000);
    cge__batcher_kick(b);
    /* the oldest has waited 109 ms with 2 waiting: goes */
    cge__bcall_wait(&call);
    CHECK(batches() == 1 && R.sizes[0] == 2);
    /* a lone item with min 2 never goes by time... until shutdown, which drains it */
    submit(b, 2, it + 2, ptrs + 2, 1, 5, &call, CGE_OK);
    atomic_store(&fake_now, 1000000 + 10 * 1000 * 1000);
    cge__batcher_kick(b);
    expect_still(1);
    cge__batcher_free(b);
    CHECK(batches() == 2);
    cge__bcall_wait(&call);

    /* a queue that never waits: a lone item goes at once despite min 2 and a long wait */
    reset();
    {
        struct cge__batcher_params p = {.n_queues = 3, .max_batch_size = 32, .max_batch_tokens = 1 << 20,
                                        .min_batch_size = 2, .max_wait_ms = 100000, .max_queue = 100,
                                        .n_workers = 1, .threads_per_worker = 1, .clock = fake_clock,
                                        .nowait_queue = 2};
        CHECK(cge__batcher_new(&p, rec_batch, NULL, &b) == CGE_OK);
        submit(b, 2, it, ptrs, 1, 5, &call, CGE_OK);
        cge__bcall_wait(&call);
        CHECK(batches() == 1 && R.queues[0] == 2);
        submit(b, 1, it + 1, ptrs + 1, 1, 5, &call, CGE_OK); /* another queue still waits */
        expect_still(1);
        cge__batcher_free(b);
        cge__bcall_wait(&call);
    }

    /* queue full: all or nothing */
    reset();
    b = new_batcher(32, 1 << 20, 1, 1000, 3);
    submit(b, 0, it, ptrs, 4, 5, &call, CGE_ERR_QUEUE_FULL);
    CHECK(strstr(cge_errmsg(), "do not fit") != NULL);
    submit(b, 0, it, ptrs, 3, 5, &call, CGE_OK);
    submit(b, 0, it + 3, ptrs + 3, 1, 5, &call, CGE_ERR_QUEUE_FULL);
    cge__batcher_stats(b, 0, &qs);
    CHECK(qs.depth == 3);
    cge__batcher_free(b); /* drains the 3 */
    cge__bcall_wait(&call);
    CHECK(batches() == 1 && R.sizes[0] == 3);
    cge__bcall_deinit(&call);
}

/* ==== the engine under concurrency ============================================================== */

static struct ef F;

static struct cge_engine *open_with(struct cge_engine_params p) {
    struct cge_engine *e = NULL;
    CHECK_MSG(cge_engine_open(EF_ENSEMBLE, &p, &e) == CGE_OK, "%s", cge_errmsg());
    return e;
}

struct job {
    struct cge_engine *e;
    int first_row, reps;
    atomic_int *stop;
    int failed, checked;
};

/* Text rows only (0..7); each result checked against the fixture. */
static void *job_thread(void *arg) {
    struct job *j = arg;
    for (int r = 0; r < j->reps; r++) {
        if (j->stop && atomic_load(j->stop)) break;
        int row = (j->first_row + r) % 8;
        char path[512];
        struct cge_input in;
        ef_input(&F, EF_DIR, row, &in, path, sizeof path);
        struct cge_result res;
        if (cge_engine_embed(j->e, &in, 1, NULL, &res) != CGE_OK || res.status != CGE_OK) {
            j->failed++;
        } else {
            pthread_mutex_lock(&ef_lock);
            int before = th_failed;
            ef_check_result(F.rows[row].expected, "under load", row, &res);
            j->failed += th_failed != before;
            pthread_mutex_unlock(&ef_lock);
            j->checked++;
        }
        cge_result_deinit(&res);
    }
    return NULL;
}

static void test_concurrent_batches(void) {
    struct cge_engine_params p = cge_engine_default_params();
    p.cache = 0;
    p.max_wait_ms = 20;
    struct cge_engine *e = open_with(p);
    if (!e) return;
    struct job jobs[8];
    pthread_t th[8];
    for (int t = 0; t < 8; t++) {
        jobs[t] = (struct job){.e = e, .first_row = t, .reps = 3};
        CHECK(pthread_create(&th[t], NULL, job_thread, &jobs[t]) == 0);
    }
    for (int t = 0; t < 8; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 8; t++) CHECK_MSG(jobs[t].failed == 0 && jobs[t].checked == 3, "thread %d", t);
    struct cge_engine_stats st;
    cge_engine_get_stats(e, &st);
    CHECK(st.slots[0].requests == 24 && st.slots[0].queue_depth == 0);
    CHECK_MSG(st.slots[0].mean_batch > 1.0 && st.slots[0].max_batch > 1,
              "8 concurrent callers never shared a batch (mean %.2f)", st.slots[0].mean_batch);
    CHECK(st.slots[0].padding >= 0 && st.slots[0].padding < 1);
    printf("  8 threads x 3 texts: E1 ran %llu batches, mean %.2f inputs, padding %.2f\n",
           (unsigned long long)st.slots[0].batches, st.slots[0].mean_batch, st.slots[0].padding);
    cge_engine_close(e);
}

static void test_swap_under_load(void) {
    struct cge_engine_params p = cge_engine_default_params();
    p.cache = 0;
    p.max_wait_ms = 2;
    struct cge_engine *e = open_with(p);
    if (!e) return;
    atomic_int stop = 0;
    struct job jobs[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (struct job){.e = e, .first_row = 2 * t, .reps = 1000, .stop = &stop};
        CHECK(pthread_create(&th[t], NULL, job_thread, &jobs[t]) == 0);
    }
    int good = 0;
    for (int k = 0; k < 3; k++) {
        uint64_t v = 0;
        good += cge_engine_swap(e, 0, EF_ENSEMBLE "/E1", &v) == CGE_OK;
        /* a wrong dimension and broken weights are refused; the old model keeps serving */
        CHECK(cge_engine_swap(e, 0, EF_ENSEMBLE "/E11", &v) == CGE_ERR_INVALID_DIM);
        CHECK(cge_engine_swap(e, 0, EF_DIR, &v) != CGE_OK);
    }
    CHECK(cge_engine_unload(e, 8) == CGE_OK); /* E9 reloads on next use, under load */
    atomic_store(&stop, 1);
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    int checked = 0;
    for (int t = 0; t < 4; t++) {
        CHECK_MSG(jobs[t].failed == 0, "thread %d: %d failed requests", t, jobs[t].failed);
        checked += jobs[t].checked;
    }
    CHECK(good == 3 && checked > 0);
    struct cge_engine_stats st;
    cge_engine_get_stats(e, &st);
    CHECK_MSG(st.slots[0].version == 4, "version %llu", (unsigned long long)st.slots[0].version);
    printf("  hot swap under load: %d requests checked, 0 failed, 3 swaps + 6 refused\n", checked);
    cge_engine_close(e);
}

static void test_queue_full_and_deadline(void) {
    struct cge_engine_params p = cge_engine_default_params();
    p.cache = 0;
    p.max_queue = 2;
    struct cge_engine *e = open_with(p);
    if (!e) return;
    struct cge_input in[3];
    memset(in, 0, sizeof in);
    for (int i = 0; i < 3; i++) {
        in[i].text = "a queue of two";
        in[i].text_len = 14;
    }
    struct cge_result r[3];
    CHECK(cge_engine_embed(e, in, 3, NULL, r) == CGE_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_MSG(r[i].status == CGE_ERR_QUEUE_FULL, "input %d: %d %s", i, r[i].status, r[i].errmsg);
        cge_result_deinit(&r[i]);
    }
    CHECK(cge_engine_embed(e, in, 2, NULL, r) == CGE_OK && r[0].status == CGE_OK && r[1].status == CGE_OK);
    cge_result_deinit(&r[0]);
    cge_result_deinit(&r[1]);
    cge_engine_close(e);

    /* a deadline that passes while the batch waits: dropped before it runs */
    p = cge_engine_default_params();
    p.cache = 0;
    p.max_wait_ms = 300;
    p.max_batch_size = 64;
    e = open_with(p);
    if (!e) return;
    struct cge_embed_options o = {.timeout_ms = 50};
    CHECK(cge_engine_embed(e, in, 1, &o, r) == CGE_OK);
    CHECK_MSG(r[0].status == CGE_ERR_TIMEOUT && r[0].slots[0].status == CGE_ERR_TIMEOUT &&
              strstr(r[0].slots[0].errmsg, "before it ran"),
              "status %d: %s", r[0].status, r[0].errmsg);
    cge_result_deinit(&r[0]);
    cge_engine_close(e);
}

static void test_memory_budget(void) {
    /* the largest text slot's estimate, from a first engine's stats */
    struct cge_engine_params p = cge_engine_default_params();
    p.cache = 0;
    p.max_wait_ms = 0;
    p.preload = 0;
    p.memory_budget_bytes = 1; /* below any model: every load refused, naming both figures */
    struct cge_engine *e = open_with(p);
    if (!e) return;
    struct cge_input in;
    memset(&in, 0, sizeof in);
    in.text = "within a budget";
    in.text_len = 15;
    struct cge_result r;
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK);
    CHECK(r.status == CGE_ERR_NOMEM && strstr(r.errmsg, "memory budget of 1 bytes"));
    cge_result_deinit(&r);
    cge_engine_close(e);

    p.memory_budget_bytes = 0;
    p.preload = 1;
    e = open_with(p);
    if (!e) return;
    struct cge_engine_stats st;
    cge_engine_get_stats(e, &st);
    int64_t largest = 0, total = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        total += st.slots[s].resident_bytes;
        if (st.slots[s].resident_bytes > largest) largest = st.slots[s].resident_bytes;
    }
    cge_engine_close(e);
    CHECK(largest > 0 && total > 3 * largest);

    /* room for the two largest at most: each slot loads in turn, idle ones are unloaded */
    p.preload = 0;
    p.memory_budget_bytes = 2 * largest;
    e = open_with(p);
    if (!e) return;
    char path[512];
    for (int row = 0; row < 3; row++) {
        ef_input(&F, EF_DIR, row, &in, path, sizeof path);
        CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK);
        ef_check_result(F.rows[row].expected, "budget", row, &r);
        cge_result_deinit(&r);
    }
    cge_engine_get_stats(e, &st);
    int64_t held = 0;
    int loaded = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        held += st.slots[s].resident_bytes;
        loaded += st.slots[s].state == CGE_LOAD_READY;
    }
    CHECK_MSG(held <= 2 * largest && loaded >= 1 && loaded < 11, "held %lld of %lld, %d loaded",
              (long long)held, (long long)(2 * largest), loaded);
    cge_engine_close(e);
}

int main(void) {
    RUN(test_batcher);
    if (ef_load(EF_DIR, &F) != 0) {
        CHECK_MSG(0, "cannot read the ensemble fixture");
        return test_report("test_runtime_batch");
    }
    RUN(test_concurrent_batches);
    RUN(test_swap_under_load);
    RUN(test_queue_full_and_deadline);
    RUN(test_memory_budget);
    ef_free(&F);
    return test_report("test_runtime_batch");
}
