/*
 * test_runtime_engine.c: the engine and the provider against the shared ensemble fixture
 * (tests/fixtures/ensemble, made by transformers): every input one at a time, as one batch, with
 * media as bytes, from the cache, from 8 threads; subset ensembles (their mask), hot swap,
 * deadlines, lazy loading, and bad ensembles and inputs.
 */
#include "cge.h"
#include "ensemble_fixture.h"
#include "testhelp.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static struct ef F;
static char tmpdir[256];

static struct cge_engine *open_engine(const char *path, int cache) {
    struct cge_engine_params p = cge_engine_default_params();
    p.cache = cache;
    struct cge_engine *e = NULL;
    enum cge_status st = cge_engine_open(path, &p, &e);
    CHECK_MSG(st == CGE_OK, "open %s: %s", path, cge_errmsg());
    return e;
}

static void all_inputs(struct cge_input *in, char paths[][512]) {
    for (int i = 0; i < F.n; i++) ef_input(&F, EF_DIR, i, &in[i], paths[i], 512);
}

static void test_one_at_a_time(void) {
    struct cge_engine *e = open_engine(EF_ENSEMBLE, 0);
    if (!e) return;
    CHECK(cge_engine_dim(e) == 1536);
    CHECK(!strcmp(cge_engine_name(e), "cge-ensemble-fixture-shared"));
    for (int i = 0; i < F.n; i++) {
        char path[512];
        struct cge_input in;
        ef_input(&F, EF_DIR, i, &in, path, sizeof path);
        struct cge_result r;
        CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK);
        ef_check_result(F.rows[i].expected, "engine", i, &r);
        CHECK(r.cached == 0);
        cge_result_deinit(&r);
    }
    cge_engine_close(e);
}

static void test_batch_bytes_cache(void) {
    struct cge_engine *e = open_engine(EF_ENSEMBLE, 1);
    if (!e) return;
    struct cge_input in[EF_MAX];
    static char paths[EF_MAX][512];
    all_inputs(in, paths);
    struct cge_result r[EF_MAX], r2[EF_MAX], r3[EF_MAX];
    CHECK(cge_engine_embed(e, in, (size_t)F.n, NULL, r) == CGE_OK);
    for (int i = 0; i < F.n; i++) ef_check_result(F.rows[i].expected, "engine batch", i, &r[i]);

    /* the same inputs again: all from the cache, the same numbers */
    CHECK(cge_engine_embed(e, in, (size_t)F.n, NULL, r2) == CGE_OK);
    for (int i = 0; i < F.n; i++) {
        CHECK_MSG(r2[i].cached == 1, "#%d not cached", i);
        ef_check_result(F.rows[i].expected, "engine cached", i, &r2[i]);
        CHECK(r2[i].dim == r[i].dim && !memcmp(r2[i].embedding, r[i].embedding, sizeof(float) * 1536));
    }
    struct cge_engine_stats st;
    CHECK(cge_engine_get_stats(e, &st) == CGE_OK);
    CHECK(st.cache_hits == (uint64_t)F.n && st.cache_misses == (uint64_t)F.n);
    CHECK(st.inputs == 2 * (uint64_t)F.n && st.requests == 2);
    CHECK(st.slots[0].state == CGE_LOAD_READY && st.slots[0].requests > 0 && st.slots[0].version == 1);

    /* media given as bytes, and the cache bypassed */
    char *bytes[EF_MAX] = {0};
    for (int i = 0; i < F.n; i++) {
        const char *p = in[i].image_path ? in[i].image_path : in[i].audio_path;
        if (!p) continue;
        size_t len = 0;
        bytes[i] = th_read_file(p, &len);
        CHECK(bytes[i] != NULL);
        if (in[i].image_path) {
            in[i].image_path = NULL;
            in[i].image_data = bytes[i];
            in[i].image_len = len;
        } else {
            in[i].audio_path = NULL;
            in[i].audio_data = bytes[i];
            in[i].audio_len = len;
        }
    }
    struct cge_embed_options o = {.no_cache = 1};
    CHECK(cge_engine_embed(e, in, (size_t)F.n, &o, r3) == CGE_OK);
    for (int i = 0; i < F.n; i++) {
        CHECK(r3[i].cached == 0);
        ef_check_result(F.rows[i].expected, "engine bytes", i, &r3[i]);
        cge_result_deinit(&r[i]);
        cge_result_deinit(&r2[i]);
        cge_result_deinit(&r3[i]);
        free(bytes[i]);
    }
    cge_engine_close(e);
}

/* One slot only (E1 for texts), without fusion: the slot vector alone. */
static void test_options(void) {
    struct cge_engine *e = open_engine(EF_ENSEMBLE, 1);
    if (!e) return;
    char path[512];
    struct cge_input in;
    ef_input(&F, EF_DIR, 0, &in, path, sizeof path);
    struct cge_embed_options o = {.slots = 1u << 0, .no_fusion = 1};
    struct cge_result r;
    CHECK(cge_engine_embed(e, &in, 1, &o, &r) == CGE_OK);
    CHECK(r.status == CGE_OK && r.embedding == NULL && r.present == 1u);
    CHECK(r.slots[0].state == CGE_SLOT_OK && r.slots[1].state == CGE_SLOT_SKIPPED);
    const float *slots[CGE_N_SLOTS] = {r.slots[0].vector};
    int dims[CGE_N_SLOTS] = {r.slots[0].dim};
    /* only E1 is compared: the others are absent here and present in the reference */
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(F.rows[0].expected, "slots");
    float ref[64];
    int n = ef_floats(cJSON_GetObjectItemCaseSensitive(es, "E1"), ref, 64);
    CHECK(n == dims[0] && th_rel_err(slots[0], ref, (size_t)n) <= 1e-5);
    cge_result_deinit(&r);
    /* an image for a text-only slot: no slot takes it, an error */
    ef_input(&F, EF_DIR, 8, &in, path, sizeof path);
    CHECK(cge_engine_embed(e, &in, 1, &o, &r) == CGE_OK);
    CHECK(r.status != CGE_OK && r.embedding == NULL);
    cge_result_deinit(&r);
    cge_engine_close(e);
}

/* ---- provider ---------------------------------------------------------------------------------- */

/* Rows the provider reproduces: documents without instruction (code is embedded as text). */
static const int provider_rows[] = {0, 1, 4, 5, 6, 7};
#define N_PROV (int)(sizeof provider_rows / sizeof provider_rows[0])

struct prov_job {
    struct cge_provider *p;
    float out[N_PROV][1536];
    enum cge_status st;
};

static const char *row_text(int i) {
    const cJSON *o = F.rows[i].input;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(o, "code");
    return t->valuestring;
}

static void *prov_thread(void *arg) {
    struct prov_job *j = arg;
    j->st = CGE_OK;
    for (int rep = 0; rep < 2 && !j->st; rep++)
        for (int k = 0; k < N_PROV && !j->st; k++)
            j->st = cge_provider_embed(j->p, row_text(provider_rows[k]), j->out[k]);
    return NULL;
}

static void test_provider(void) {
    struct cge_provider *p = NULL;
    CHECK_MSG(cge_provider_open(EF_ENSEMBLE, &p) == CGE_OK, "%s", cge_errmsg());
    if (!p) return;
    CHECK(cge_provider_dimension(p) == 1536);
    CHECK(!strcmp(cge_provider_model_name(p), "cge:cge-ensemble-fixture-shared"));
    /* the smallest text max length of the fixture: E8's 48 (sentence_bert_config) */
    CHECK_MSG(cge_provider_max_tokens(p) == 48, "max_tokens %zu", cge_provider_max_tokens(p));
    const char *texts[N_PROV];
    for (int k = 0; k < N_PROV; k++) texts[k] = row_text(provider_rows[k]);
    static float batch[N_PROV * 1536];
    CHECK(cge_provider_embed_batch(p, texts, N_PROV, batch) == CGE_OK);
    for (int k = 0; k < N_PROV; k++)
        ef_check(F.rows[provider_rows[k]].expected, "provider", provider_rows[k], batch + k * 1536,
                 1536, NULL, 0, NULL, 0, NULL, NULL);
    /* 8 threads at once give the same vectors */
    static struct prov_job jobs[8];
    pthread_t th[8];
    for (int t = 0; t < 8; t++) {
        jobs[t].p = p;
        CHECK(pthread_create(&th[t], NULL, prov_thread, &jobs[t]) == 0);
    }
    for (int t = 0; t < 8; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 8; t++) {
        CHECK(jobs[t].st == CGE_OK);
        for (int k = 0; k < N_PROV; k++)
            CHECK(th_rel_err(jobs[t].out[k], batch + k * 1536, 1536) <= 1e-6);
    }
    CHECK(cge_provider_embed(p, NULL, batch) != CGE_OK);
    cge_provider_close(p);
    cge_provider_close(NULL);
}

/* ---- engine from several threads ---------------------------------------------------------------- */

struct eng_job {
    struct cge_engine *e;
    int row;
    int ok;
};

static void *eng_thread(void *arg) {
    struct eng_job *j = arg;
    char path[512];
    struct cge_input in;
    ef_input(&F, EF_DIR, j->row, &in, path, sizeof path);
    struct cge_result r;
    j->ok = cge_engine_embed(j->e, &in, 1, NULL, &r) == CGE_OK && r.status == CGE_OK;
    if (j->ok) {
        pthread_mutex_lock(&ef_lock);
        int before = th_failed;
        ef_check_result(F.rows[j->row].expected, "threads", j->row, &r);
        j->ok = th_failed == before;
        pthread_mutex_unlock(&ef_lock);
    }
    cge_result_deinit(&r);
    return NULL;
}

/* Lazy loading under 8 concurrent first requests, then each thread's result checked. */
static void test_threads_lazy(void) {
    struct cge_engine_params p = cge_engine_default_params();
    p.preload = 0;
    p.cache = 0;
    struct cge_engine *e = NULL;
    CHECK(cge_engine_open(EF_ENSEMBLE, &p, &e) == CGE_OK);
    if (!e) return;
    struct cge_engine_stats st;
    cge_engine_get_stats(e, &st);
    CHECK(st.slots[0].state == CGE_LOAD_UNLOADED && st.slots[4].state == CGE_LOAD_UNLOADED);
    struct eng_job jobs[8];
    pthread_t th[8];
    for (int t = 0; t < 8; t++) {
        jobs[t] = (struct eng_job){.e = e, .row = t % F.n};
        CHECK(pthread_create(&th[t], NULL, eng_thread, &jobs[t]) == 0);
    }
    for (int t = 0; t < 8; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 8; t++) CHECK_MSG(jobs[t].ok, "thread %d", t);
    cge_engine_get_stats(e, &st);
    CHECK(st.slots[0].state == CGE_LOAD_READY && st.slots[0].version == 1);
    CHECK(st.slots[4].state == CGE_LOAD_UNLOADED); /* no audio yet: E5 never loaded */
    cge_engine_close(e);
}

/* ---- ensembles written for the test -------------------------------------------------------------- */

static char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

/* An ensemble.json over the fixture's folders (absolute paths) with these slots. */
static const char *subset_json(const char *name, const char *slots_json) {
    char cwd[256];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    static char text[4096];
    snprintf(text, sizeof text, "{\"version\": 1, \"name\": \"%s\", \"slots\": [%s], \"fusion\": \"%s/" EF_ENSEMBLE "/fusion\"}",
             name, slots_json, cwd);
    /* "@" in slots_json stands for the fixture folder */
    static char out[8192];
    size_t o = 0;
    for (const char *p = text; *p && o + 300 < sizeof out; p++) {
        if (*p == '@') o += (size_t)snprintf(out + o, sizeof out - o, "%s/" EF_ENSEMBLE, cwd);
        else out[o++] = *p;
    }
    out[o] = '\0';
    char file[64];
    snprintf(file, sizeof file, "%s.json", name);
    return write_file(file, out);
}

static void test_subset(void) {
    const char *path = subset_json("subset", "{\"slot\": \"E1\", \"path\": \"@/E1\"},"
                                             "{\"slot\": \"E4\", \"path\": \"@/E4\"},"
                                             "{\"slot\": \"E5\", \"path\": \"@/E5\", \"dtype\": \"f32\"},"
                                             "{\"slot\": \"E8\", \"path\": \"@/E8\"},"
                                             "{\"slot\": \"E11\", \"path\": \"@/E11\"},"
                                             "{\"slot\": \"E12\", \"path\": \"@/E12\", \"enabled\": false}");
    CHECK(path != NULL);
    struct cge_engine *e = open_engine(path, 0);
    if (!e) return;
    CHECK(cge_engine_slot_dim(e, 0) == 22 && cge_engine_slot_dim(e, 1) == 0 &&
          cge_engine_slot_dim(e, 11) == 0);
    struct cge_input in[EF_MAX];
    static char paths[EF_MAX][512];
    all_inputs(in, paths);
    struct cge_result r[EF_MAX];
    CHECK(cge_engine_embed(e, in, (size_t)F.n, NULL, r) == CGE_OK);
    const uint32_t text_mask = 1u << 0 | 1u << 3 | 1u << 7 | 1u << 10;
    for (int i = 0; i < F.n; i++) {
        CHECK_MSG(r[i].status == CGE_OK, "#%d: %s", i, r[i].errmsg);
        if (in[i].text) {
            CHECK_MSG(r[i].present == text_mask, "#%d present %x", i, r[i].present);
            CHECK(r[i].slots[1].state == CGE_SLOT_ABSENT && r[i].slots[4].state == CGE_SLOT_SKIPPED);
            CHECK(r[i].slots[11].state == CGE_SLOT_ABSENT); /* enabled: false */
            /* the slots it has match the full fixture's */
            const float *slots[CGE_N_SLOTS] = {0};
            int dims[CGE_N_SLOTS] = {0};
            const cJSON *es = cJSON_GetObjectItemCaseSensitive(F.rows[i].expected, "slots");
            for (int s = 0; s < CGE_N_SLOTS; s++) {
                if (!(text_mask & (1u << s))) continue;
                char name[8];
                float ref[64];
                snprintf(name, sizeof name, "E%d", s + 1);
                int n = ef_floats(cJSON_GetObjectItemCaseSensitive(es, name), ref, 64);
                CHECK(n == r[i].slots[s].dim && th_rel_err(r[i].slots[s].vector, ref, (size_t)n) <= 1e-5);
            }
            (void)slots;
            (void)dims;
            /* a different mask than the full ensemble: a different fused vector */
            float full[1536];
            CHECK(ef_floats(cJSON_GetObjectItemCaseSensitive(F.rows[i].expected, "embedding"), full, 1536) == 1536);
            CHECK(th_rel_err(r[i].embedding, full, 1536) > 1e-3);
        } else {
            /* images and audio have the same single slot as in the full ensemble: the same
             * result, fusion included */
            ef_check_result(F.rows[i].expected, "subset media", i, &r[i]);
        }
        cge_result_deinit(&r[i]);
    }
    cge_engine_close(e);
}

/* A configuration pointing at the ensemble and overriding: E12 disabled, temperature. */
static void test_config(void) {
    char cwd[256];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"ensemble\": \"%s/" EF_ENSEMBLE "\", \"models\": {\"E12\": {\"enabled\": false}},"
             " \"fusion\": {\"temperature\": 2.0}, \"cache\": {\"enabled\": false}}", cwd);
    const char *path = write_file("config.json", text);
    struct cge_engine *e = open_engine(path, -1);
    if (!e) return;
    char p2[512];
    struct cge_input in;
    ef_input(&F, EF_DIR, 8, &in, p2, sizeof p2); /* camera.png: E4 only, as in the fixture */
    struct cge_result r;
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK && r.status == CGE_OK);
    /* the same slot vector and fused vector (the gate does not change the experts' output
     * mixture order here? it does: weights change); the gate is flatter at temperature 2 */
    float ref[8];
    CHECK(ef_floats(cJSON_GetObjectItemCaseSensitive(F.rows[8].expected, "expert_weights"), ref, 8) == 8);
    double max_ref = 0, max_out = 0;
    for (int k = 0; k < 8; k++) {
        max_ref = fmax(max_ref, ref[k]);
        max_out = fmax(max_out, r.expert_weights[k]);
    }
    CHECK_MSG(max_out < max_ref - 0.05, "temperature 2 should flatten the gate: %g vs %g", max_out, max_ref);
    CHECK(r.slots[11].state == CGE_SLOT_ABSENT);
    cge_result_deinit(&r);
    ef_input(&F, EF_DIR, 0, &in, p2, sizeof p2);
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK && r.status == CGE_OK);
    CHECK(r.cached == 0 && r.slots[11].state == CGE_SLOT_ABSENT && r.slots[0].state == CGE_SLOT_OK);
    cge_result_deinit(&r);
    cge_engine_close(e);
}

static void test_swap(void) {
    struct cge_engine *e = open_engine(EF_ENSEMBLE, 1);
    if (!e) return;
    char path[512];
    struct cge_input in;
    ef_input(&F, EF_DIR, 2, &in, path, sizeof path); /* a query: E10's query encoder */
    struct cge_result r;
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK);
    ef_check_result(F.rows[2].expected, "before swap", 2, &r);
    cge_result_deinit(&r);
    /* wrong dimension: refused, the old model keeps serving */
    uint64_t v = 0;
    CHECK(cge_engine_swap(e, 0, EF_ENSEMBLE "/E11", &v) == CGE_ERR_INVALID_DIM);
    CHECK(strstr(cge_errmsg(), "slot_dims") != NULL && strstr(cge_errmsg(), "old model keeps serving"));
    CHECK(cge_engine_swap(e, 0, "tests/fixtures/no/such/folder", &v) != CGE_OK);
    /* a good swap: the same folders again, as a new version; the cache does not answer for it */
    CHECK(cge_engine_swap(e, 9, "query=" EF_ENSEMBLE "/E10-query,document=" EF_ENSEMBLE "/E10-document", &v) == CGE_OK);
    CHECK(v == 2);
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK);
    CHECK(r.cached == 0 && r.slots[9].version == 2 && r.slots[0].version == 1);
    /* a partial hit: only the swapped slot ran again */
    CHECK(r.slots[9].cached == 0 && r.slots[0].cached == 1 && r.slots[11].cached == 1);
    ef_check_result(F.rows[2].expected, "after swap", 2, &r);
    cge_result_deinit(&r);
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK);
    CHECK(r.cached == 1 && r.slots[9].version == 2);
    ef_check_result(F.rows[2].expected, "after swap, cached", 2, &r);
    cge_result_deinit(&r);
    /* a swap that exchanges the encoders changes E10's vector for this query */
    CHECK(cge_engine_swap(e, 9, "query=" EF_ENSEMBLE "/E10-document,document=" EF_ENSEMBLE "/E10-query", &v) == CGE_OK);
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK && r.status == CGE_OK);
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(F.rows[2].expected, "slots");
    float ref[64];
    int n = ef_floats(cJSON_GetObjectItemCaseSensitive(es, "E10"), ref, 64);
    CHECK(n == 16 && th_rel_err(r.slots[9].vector, ref, 16) > 1e-2);
    cge_result_deinit(&r);
    CHECK(cge_engine_swap(e, 9, "query=" EF_ENSEMBLE "/E10-query,document=" EF_ENSEMBLE "/E10-document", &v) == CGE_OK);
    /* unload: it reloads on next use */
    CHECK(cge_engine_unload(e, 0) == CGE_OK);
    struct cge_engine_stats st;
    cge_engine_get_stats(e, &st);
    CHECK(st.slots[0].state == CGE_LOAD_UNLOADED && st.slots[9].version == 4);
    ef_input(&F, EF_DIR, 0, &in, path, sizeof path);
    CHECK(cge_engine_embed(e, &in, 1, NULL, &r) == CGE_OK);
    ef_check_result(F.rows[0].expected, "after unload", 0, &r);
    cge_result_deinit(&r);
    CHECK(cge_engine_swap(e, 1 + 1, NULL, &v) == CGE_ERR_INVALID_VALUE);
    cge_engine_close(e);
}

static void test_deadline(void) {
    struct cge_engine *e = open_engine(EF_ENSEMBLE, 0);
    if (!e) return;
    char path[512];
    struct cge_input in;
    ef_input(&F, EF_DIR, 5, &in, path, sizeof path); /* the long text */
    struct cge_embed_options o = {.timeout_ms = 1};
    struct cge_result r;
    CHECK(cge_engine_embed(e, &in, 1, &o, &r) == CGE_OK);
    int timed_out = 0, ok = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        timed_out += r.slots[s].state == CGE_SLOT_FAILED && r.slots[s].status == CGE_ERR_TIMEOUT;
        ok += r.slots[s].state == CGE_SLOT_OK;
    }
    CHECK_MSG(timed_out > 0, "no slot passed a 1 ms deadline");
    /* what finished in time is fused; with nothing, the input fails with the timeout */
    CHECK(ok ? r.status == CGE_OK && r.embedding != NULL : r.status == CGE_ERR_TIMEOUT);
    cge_result_deinit(&r);
    cge_engine_close(e);
}

static void expect_open_error(const char *path, enum cge_status want, const char *needle) {
    struct cge_engine *e = NULL;
    enum cge_status st = cge_engine_open(path, NULL, &e);
    CHECK_MSG(st == want && e == NULL, "%s: status %d (%s)", path ? path : "(null)", st, cge_errmsg());
    CHECK_MSG(strstr(cge_errmsg(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", path, cge_errmsg(), needle);
}

static void test_bad_ensembles(void) {
    expect_open_error("tests/fixtures/no_such_ensemble", CGE_ERR_IO, "no_such_ensemble");
    expect_open_error("tests/fixtures/ensemble", CGE_ERR_MODEL_NOT_FOUND, "no ensemble.json");
    expect_open_error(write_file("bad1.json", "{\"slots\": [ "), CGE_ERR_SERIALIZATION, "bad1.json");
    expect_open_error(subset_json("bad2", "{\"slot\": \"E13\", \"path\": \"@/E1\"}"),
                      CGE_ERR_INVALID_VALUE, "E1..E12");
    expect_open_error(subset_json("bad3", "{\"slot\": \"E1\", \"path\": \"@/E1\"}, {\"slot\": \"E1\", \"path\": \"@/E1\"}"),
                      CGE_ERR_INVALID_VALUE, "listed twice");
    expect_open_error(subset_json("bad4", "{\"slot\": \"E1\", \"path\": \"@/nothing-here\"}"),
                      CGE_ERR_MODEL_NOT_FOUND, "nothing-here");
    /* a fusion whose slot_dims disagree with the model: E2's folder in slot E1 */
    expect_open_error(subset_json("bad5", "{\"slot\": \"E1\", \"path\": \"@/E2\"}"), CGE_ERR_INVALID_DIM,
                      "slot_dims[0] = 22");
    expect_open_error(subset_json("bad6", "{\"slot\": \"E1\", \"path\": \"@/E1\", \"dtype\": \"f8\"}"),
                      CGE_ERR_INVALID_VALUE, "dtype");
    expect_open_error(subset_json("bad7", "{\"slot\": \"E1\", \"paht\": \"@/E1\"}"), CGE_ERR_INVALID_VALUE,
                      "unknown key");
    expect_open_error(write_file("bad8.json", "{\"version\": 1, \"slots\": [], \"fusion\": \"nowhere\"}"),
                      CGE_ERR_MODEL_NOT_FOUND, "nowhere");
    expect_open_error(write_file("bad9.json", "{\"models\": {}}"), CGE_ERR_INVALID_VALUE, "no fusion");
    struct cge_engine *e = NULL;
    CHECK(cge_engine_open(EF_ENSEMBLE, NULL, NULL) == CGE_ERR_INVALID_VALUE);
    (void)e;
}

static void test_bad_inputs(void) {
    struct cge_engine *e = open_engine(EF_ENSEMBLE, 1);
    if (!e) return;
    char bad_png[512];
    snprintf(bad_png, sizeof bad_png, "%s/not-an-image.png", tmpdir);
    FILE *f = fopen(bad_png, "w");
    if (f) {
        fputs("this is not a PNG", f);
        fclose(f);
    }
    struct cge_input in[6];
    memset(in, 0, sizeof in);
    in[0].image_path = bad_png;
    in[1].image_path = "tests/fixtures/ensemble/no-such.png";
    in[2].text = "two contents";
    in[2].text_len = 12;
    in[2].audio_path = "x.wav";
    /* in[3]: nothing at all */
    in[4].text = "fine";
    in[4].text_len = 4;
    in[5].image_data = "\x89PNG\r\n\x1a\n garbage";
    in[5].image_len = 17;
    struct cge_result r[6];
    CHECK(cge_engine_embed(e, in, 6, NULL, r) == CGE_OK);
    CHECK(r[0].status != CGE_OK && strstr(r[0].errmsg, "not-an-image.png"));
    CHECK(r[0].slots[3].state == CGE_SLOT_FAILED);
    CHECK(r[1].status == CGE_ERR_IO && strstr(r[1].errmsg, "no-such.png"));
    CHECK(r[2].status == CGE_ERR_INVALID_VALUE && r[3].status == CGE_ERR_INVALID_VALUE);
    CHECK_MSG(r[4].status == CGE_OK && r[4].embedding != NULL, "%s", r[4].errmsg);
    CHECK(r[5].status == CGE_ERR_SERIALIZATION);
    for (int i = 0; i < 6; i++) cge_result_deinit(&r[i]);
    CHECK(cge_engine_embed(e, NULL, 1, NULL, r) == CGE_ERR_INVALID_VALUE);
    CHECK(cge_engine_embed(e, in, 0, NULL, r) == CGE_OK);
    CHECK(cge_engine_health(e) == CGE_OK);
    CHECK(cge_engine_tokenize(e, 12, "x", 1, CGE_ROLE_DOCUMENT, NULL, 0) == -1);
    cge_engine_close(e);
    cge_engine_close(NULL);
    struct cge_result z;
    memset(&z, 0, sizeof z);
    cge_result_deinit(&z);
}

/* Token ids as each slot reads the text (role picks E2's prefix): case.json's reference ids. */
static void test_tokenize(void) {
    struct cge_engine *e = open_engine(EF_ENSEMBLE, 0);
    size_t len = 0;
    char *text = th_read_file(EF_DIR "/case.json", &len);
    cJSON *c = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(e && c);
    if (!e || !c) {
        cge_engine_close(e);
        cJSON_Delete(c);
        return;
    }
    const cJSON *tids = cJSON_GetObjectItemCaseSensitive(c, "token_ids");
    int compared = 0;
    static const int slots[] = {0, 1, 5, 7, 8, 9, 10}; /* no instruction involved */
    for (int i = 0; i < F.n; i++) {
        char path[512];
        struct cge_input in;
        ef_input(&F, EF_DIR, i, &in, path, sizeof path);
        if (!in.text || in.instruction) continue;
        for (size_t k = 0; k < sizeof slots / sizeof *slots; k++) {
            char name[16];
            snprintf(name, sizeof name, "E%d", slots[k] + 1);
            const cJSON *ref = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(tids, name), i);
            int32_t ids[1024];
            int64_t n = cge_engine_tokenize(e, slots[k], in.text, in.text_len, in.role, ids, 1024);
            int same = cJSON_IsArray(ref) && n == cJSON_GetArraySize(ref);
            for (int64_t t = 0; same && t < n; t++)
                same = ids[t] == (int32_t)cJSON_GetArrayItem(ref, (int)t)->valuedouble;
            CHECK_MSG(same, "tokenize %s #%d", name, i);
            compared++;
        }
    }
    CHECK(compared >= 40);
    cJSON_Delete(c);
    cge_engine_close(e);
}

/* A 16 kHz mono WAV of `secs` seconds (a quiet tone) in memory. */
static unsigned char *make_wav(double secs, size_t *len) {
    uint32_t n = (uint32_t)(secs * 16000), bytes = 2 * n;
    unsigned char *w = calloc(1, 44 + (size_t)bytes);
    if (!w) return NULL;
    uint32_t v;
    uint16_t h;
    memcpy(w, "RIFF", 4);
    v = 36 + bytes;
    memcpy(w + 4, &v, 4);
    memcpy(w + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(w + 16, &v, 4);
    h = 1;
    memcpy(w + 20, &h, 2);
    memcpy(w + 22, &h, 2);
    v = 16000;
    memcpy(w + 24, &v, 4);
    v = 32000;
    memcpy(w + 28, &v, 4);
    h = 2;
    memcpy(w + 32, &h, 2);
    h = 16;
    memcpy(w + 34, &h, 2);
    memcpy(w + 36, "data", 4);
    memcpy(w + 40, &bytes, 4);
    for (uint32_t i = 0; i < n; i++) {
        int16_t x = (int16_t)(800 * sin(2 * M_PI * 300 * i / 16000.0));
        memcpy(w + 44 + 2 * i, &x, 2);
    }
    *len = 44 + (size_t)bytes;
    return w;
}

/* Audio past Whisper's 30 s window is cut and reported like text, or refused with no_truncate. */
static void test_audio_truncation(void) {
    size_t n_long = 0, n_short = 0;
    unsigned char *lw = make_wav(31.0, &n_long), *sw = make_wav(2.0, &n_short);
    CHECK(lw && sw);
    struct cge_model_params mp = cge_model_default_params();
    for (int strict = 0; strict < 2 && lw && sw; strict++) {
        mp.no_truncate = strict;
        struct cge_model *m = NULL;
        CHECK_MSG(cge_model_load(EF_ENSEMBLE "/E5", &mp, &m) == CGE_OK, "%s", cge_errmsg());
        if (!m) break;
        struct cge_input in[2];
        memset(in, 0, sizeof in);
        in[0].audio_data = lw;
        in[0].audio_len = n_long;
        in[1].audio_data = sw;
        in[1].audio_len = n_short;
        float out[2 * 64];
        struct cge_embed_info info[2];
        CHECK(cge_model_dim(m) <= 64 && cge_model_embed(m, in, 2, out, info) == CGE_OK);
        if (strict) {
            CHECK(info[0].status == CGE_ERR_INPUT_TOO_LONG && strstr(info[0].errmsg, "30 s"));
        } else {
            CHECK_MSG(info[0].status == CGE_OK && info[0].truncated == 1 && info[0].n_tokens == 1500,
                      "long clip: status %d truncated %d frames %lld", info[0].status,
                      info[0].truncated, (long long)info[0].n_tokens);
        }
        CHECK(info[1].status == CGE_OK && info[1].truncated == 0 && info[1].n_tokens == 100);
        cge_model_free(m);
    }
    free(lw);
    free(sw);
}

int main(void) {
    if (ef_load(EF_DIR, &F) != 0) {
        CHECK_MSG(0, "cannot read the ensemble fixture in %s", EF_DIR);
        return test_report("test_runtime_engine");
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cge-engine-XXXXXX");
    CHECK_MSG(mkdtemp(tmpdir) != NULL, "mkdtemp");
    RUN(test_one_at_a_time);
    RUN(test_batch_bytes_cache);
    RUN(test_options);
    RUN(test_provider);
    RUN(test_threads_lazy);
    RUN(test_subset);
    RUN(test_config);
    RUN(test_swap);
    RUN(test_deadline);
    RUN(test_bad_ensembles);
    RUN(test_bad_inputs);
    RUN(test_tokenize);
    RUN(test_audio_truncation);
    ef_free(&F);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", tmpdir);
    return test_report("test_runtime_engine");
}
