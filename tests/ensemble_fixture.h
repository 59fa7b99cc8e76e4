/*
 * ensemble_fixture.h: reads the shared ensemble fixture (tests/fixtures/ensemble: inputs.jsonl,
 * expected.jsonl; made by Hugging Face transformers, see its README) and compares a result with
 * an expected row at the fixture's tolerances: slot vectors relative error <= 1e-5 (null where the
 * reference is null), fused vector and gate max abs <= 1e-5, selected experts equal in order.
 * Header-only, for every test that checks the ensemble through some surface. The CHECK counters
 * are plain ints: threads that check results take ef_lock first.
 */
#ifndef CGE_TESTS_ENSEMBLE_FIXTURE_H
#define CGE_TESTS_ENSEMBLE_FIXTURE_H

#include "cge.h"
#include "testhelp.h"

#include <cjson/cJSON.h>

#define EF_DIR      "tests/fixtures/ensemble"
#define EF_ENSEMBLE EF_DIR "/ensemble"
#define EF_MAX      64

#include <pthread.h>
static pthread_mutex_t ef_lock __attribute__((unused)) = PTHREAD_MUTEX_INITIALIZER;

struct ef_row {
    cJSON *input;    /* the inputs.jsonl line */
    cJSON *expected; /* the expected.jsonl line */
};

struct ef {
    int n;
    struct ef_row rows[EF_MAX];
};

static inline void ef_free(struct ef *f) {
    for (int i = 0; i < f->n; i++) {
        cJSON_Delete(f->rows[i].input);
        cJSON_Delete(f->rows[i].expected);
    }
    f->n = 0;
}

/* Parses the JSON lines of a file into out[0..max); returns the count, -1 on error. */
static inline int ef_read_lines(const char *path, cJSON **out, int max) {
    size_t len = 0;
    char *text = th_read_file(path, &len);
    if (!text) return -1;
    int n = 0;
    char *p = text;
    while (*p && n < max) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (*p) {
            out[n] = cJSON_Parse(p);
            if (!out[n]) {
                free(text);
                return -1;
            }
            n++;
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(text);
    return n;
}

/* Loads the fixture at dir (inputs.jsonl + expected.jsonl). 0 on success. */
static inline int ef_load(const char *dir, struct ef *f) {
    memset(f, 0, sizeof *f);
    char p[512];
    cJSON *in[EF_MAX], *ex[EF_MAX];
    snprintf(p, sizeof p, "%s/inputs.jsonl", dir);
    int ni = ef_read_lines(p, in, EF_MAX);
    snprintf(p, sizeof p, "%s/expected.jsonl", dir);
    int ne = ef_read_lines(p, ex, EF_MAX);
    if (ni <= 0 || ni != ne) return -1;
    f->n = ni;
    for (int i = 0; i < ni; i++) {
        f->rows[i].input = in[i];
        f->rows[i].expected = ex[i];
    }
    return 0;
}

/* A cge_input for fixture row i; media paths are made relative to the repository root
 * (prefix dir). Strings point into the row and `pathbuf` (PATH_MAX bytes). */
static inline void ef_input(const struct ef *f, const char *dir, int i, struct cge_input *in,
                            char *pathbuf, size_t cap) {
    memset(in, 0, sizeof *in);
    const cJSON *o = f->rows[i].input;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "code");
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, "image");
    const cJSON *au = cJSON_GetObjectItemCaseSensitive(o, "audio");
    const cJSON *ro = cJSON_GetObjectItemCaseSensitive(o, "role");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(o, "instruction");
    if (cJSON_IsString(t) || cJSON_IsString(c)) {
        in->text = cJSON_IsString(t) ? t->valuestring : c->valuestring;
        in->text_len = strlen(in->text);
        in->is_code = cJSON_IsString(c);
    } else if (cJSON_IsString(im)) {
        snprintf(pathbuf, cap, "%s/%s", dir, im->valuestring);
        in->image_path = pathbuf;
    } else if (cJSON_IsString(au)) {
        snprintf(pathbuf, cap, "%s/%s", dir, au->valuestring);
        in->audio_path = pathbuf;
    }
    if (cJSON_IsString(ro) && !strcmp(ro->valuestring, "query")) in->role = CGE_ROLE_QUERY;
    if (cJSON_IsString(ins)) in->instruction = ins->valuestring;
}

/* Reads a JSON array of numbers into v (cap floats); returns the count or -1. */
static inline int ef_floats(const cJSON *a, float *v, int cap) {
    if (!cJSON_IsArray(a)) return -1;
    int n = 0;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || n >= cap) return -1;
        v[n++] = (float)e->valuedouble;
    }
    return n;
}

/* Compares the parts of a result (as arrays) with expected row e; counts checks; `what` names
 * the surface in failures. slots[s] NULL = the result has no vector for slot s. */
static inline void ef_check(const cJSON *e, const char *what, int row, const float *emb, int dim,
                            const float *gate, int n_gate, const int *sel, int n_sel,
                            const float *const *slots, const int *slot_dims) {
    float *ref = malloc(sizeof(float) << 14); /* not static: tests call this from threads */
    if (!ref) {
        CHECK_MSG(0, "%s #%d: out of memory", what, row);
        return;
    }
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(e, "slots");
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        char name[8];
        snprintf(name, sizeof name, "E%d", s + 1);
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(es, name);
        if (!rv || cJSON_IsNull(rv)) {
            CHECK_MSG(slots == NULL || slots[s] == NULL, "%s #%d %s: expected null", what, row, name);
            continue;
        }
        if (!slots) continue;
        int n = ef_floats(rv, ref, 1 << 14);
        CHECK_MSG(slots[s] != NULL, "%s #%d %s: missing", what, row, name);
        if (!slots[s]) continue;
        CHECK_MSG(n == slot_dims[s], "%s #%d %s: dim %d vs %d", what, row, name, slot_dims[s], n);
        if (n != slot_dims[s]) continue;
        double r = th_rel_err(slots[s], ref, (size_t)n);
        CHECK_MSG(r <= 1e-5, "%s #%d %s: relative error %.3g", what, row, name, r);
    }
    if (emb) {
        int n = ef_floats(cJSON_GetObjectItemCaseSensitive(e, "embedding"), ref, 1 << 14);
        CHECK_MSG(n == dim, "%s #%d: fused dim %d vs %d", what, row, dim, n);
        double mx = 0;
        for (int i = 0; i < n && n == dim; i++) mx = fmax(mx, fabs((double)emb[i] - ref[i]));
        CHECK_MSG(n == dim && mx <= 1e-5, "%s #%d: fused max abs %.3g", what, row, mx);
    }
    if (gate) {
        int n = ef_floats(cJSON_GetObjectItemCaseSensitive(e, "expert_weights"), ref, 1 << 14);
        double mx = 0;
        for (int i = 0; i < n && n == n_gate; i++) mx = fmax(mx, fabs((double)gate[i] - ref[i]));
        CHECK_MSG(n == n_gate && mx <= 1e-5, "%s #%d: gate max abs %.3g (n %d vs %d)", what, row, mx, n_gate, n);
    }
    if (sel) {
        int n = ef_floats(cJSON_GetObjectItemCaseSensitive(e, "selected"), ref, 64);
        int same = n == n_sel;
        for (int i = 0; i < n && same; i++) same = (int)ref[i] == sel[i];
        CHECK_MSG(same, "%s #%d: selected experts differ", what, row);
    }
    free(ref);
}

/* ef_check for an engine result. */
static inline void ef_check_result(const cJSON *e, const char *what, int row,
                                   const struct cge_result *r) {
    CHECK_MSG(r->status == CGE_OK, "%s #%d: %s", what, row, r->errmsg);
    if (r->status) return;
    const float *slots[CGE_N_SLOTS];
    int dims[CGE_N_SLOTS];
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        slots[s] = r->slots[s].state == CGE_SLOT_OK ? r->slots[s].vector : NULL;
        dims[s] = r->slots[s].dim;
    }
    ef_check(e, what, row, r->embedding, r->dim, r->expert_weights, r->n_experts, r->selected,
             r->top_k, slots, dims);
}

#endif /* CGE_TESTS_ENSEMBLE_FIXTURE_H */
