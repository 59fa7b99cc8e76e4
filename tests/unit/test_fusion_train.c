/*
 * test_fusion_train.c: FuseMoE training.
 *  - train_step.json (fixtures): similarity, load-balance and total losses and the L2 norm of
 *    every weight's gradient, to 1e-4 relative.
 *  - finite differences (double-precision central differences of the loss recomputed by the
 *    forward pass) against the analytic gradient, for every tensor, both gatings, with the
 *    InfoNCE term on.
 *  - the training bars on synthetic clustered data with 20 % of slots missing: the similarity
 *    loss falls by at least half from the initialization, Spearman(fused cosine, ensemble
 *    similarity) ≥ 0.9 on held-out pairs, and no expert takes over twice its fair share.
 *  - checkpoint + resume: a resumed trainer continues exactly like an uninterrupted one.
 */
#include "fusion/fusemoe.h"

#include "testhelp.h"

#include <cjson/cJSON.h>
#include <unistd.h>

#define MAXN 64

static int64_t read_items(const struct cge_fusemoe_config *c, const char *path, float *x,
                          uint8_t *present) {
    size_t len;
    char *text = th_read_file(path, &len);
    if (!text) return -1;
    int64_t n = 0;
    char *line = text;
    while (line && *line && n < MAXN) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line) : strlen(line);
        if (l > 1) {
            if (cge_fusion_parse_item(c, line, l, x + n * c->total_dim, present + n * c->n_slots,
                                      NULL)) {
                free(text);
                return -1;
            }
            n++;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return n;
}

static double norm_of(const float *g, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return sqrt(s);
}

static void test_train_step(const char *name) {
    char dir[256], path[256];
    snprintf(dir, sizeof dir, "tests/fixtures/fusion/%s/weights", name);
    struct cge_fusion *f = NULL;
    CHECK(cge_fusion_load(dir, CGE_DTYPE_F32, &f) == CGE_OK);
    if (!f) return;
    const struct cge_fusemoe_config *c = cge_fusion_get_config(f);
    float *x = calloc((size_t)(MAXN * c->total_dim), 4);
    uint8_t *pr = calloc((size_t)(MAXN * c->n_slots), 1);
    snprintf(path, sizeof path, "tests/fixtures/fusion/%s/inputs.jsonl", name);
    int64_t n = read_items(c, path, x, pr);
    CHECK(n == 10);
    snprintf(path, sizeof path, "tests/fixtures/fusion/%s/train_step.json", name);
    char *js_text = th_read_file(path, NULL);
    cJSON *js = cJSON_Parse(js_text);
    CHECK(js != NULL);
    struct cge_fusion_trainer *t = NULL;
    CHECK(cge_fusion_trainer_new(f, NULL, &t) == CGE_OK);
    struct cge_fusion_stats s;
    enum cge_status st = cge_fusion_trainer_grad(t, n, x, pr, NULL, 0, &s);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    double worst = 0;
    const char *keys[3] = {"similarity_loss", "load_balance_loss", "total_loss"};
    double got[3] = {s.similarity_loss, s.load_balance_loss, s.total_loss};
    for (int i = 0; i < 3; i++) {
        double ref = cJSON_GetObjectItem(js, keys[i])->valuedouble;
        double rel = fabs(got[i] - ref) / fabs(ref);
        worst = fmax(worst, rel);
        CHECK_MSG(rel <= 1e-4, "%s %s: %.9g vs %.9g", name, keys[i], got[i], ref);
    }
    const cJSON *gn = cJSON_GetObjectItem(js, "grad_norms");
    int n_t = cge_fusion_n_tensors(f), matched = 0;
    double worst_g = 0;
    for (int i = 0; i < n_t; i++) {
        struct cge_fusion_param prm;
        cge_fusion_tensor(f, i, &prm);
        const cJSON *r = cJSON_GetObjectItem(gn, prm.name);
        CHECK_MSG(r != NULL, "no reference for %s", prm.name);
        if (!r) continue;
        double g = norm_of(cge_fusion_trainer_grad_of(t, i), prm.n);
        double rel = fabs(g - r->valuedouble) / fabs(r->valuedouble);
        worst_g = fmax(worst_g, rel);
        CHECK_MSG(rel <= 1e-4, "%s %s: grad norm %.9g vs %.9g", name, prm.name, g, r->valuedouble);
        matched++;
    }
    CHECK(matched == cJSON_GetArraySize(gn));
    printf("  %s train_step: losses max rel err %.2g, %d gradient norms max rel err %.2g\n", name,
           worst, matched, worst_g);
    cJSON_Delete(js);
    free(js_text);
    cge_fusion_trainer_free(t);
    cge_fusion_free(f);
    free(x);
    free(pr);
}

/* ---- finite differences ------------------------------------------------------------------ */
static int fd_training; /* 1: capacity limit on (noise and dropout off, so still deterministic) */

static double loss_at(struct cge_fusion_trainer *t, int64_t n, const float *x, const uint8_t *pr,
                      const int64_t *pair) {
    struct cge_fusion_stats s;
    if (cge_fusion_trainer_grad(t, n, x, pr, pair, fd_training, &s)) return NAN;
    return s.total_loss;
}

static void test_finite_differences(const char *name) {
    char dir[256], path[256];
    snprintf(dir, sizeof dir, "tests/fixtures/fusion/%s/weights", name);
    struct cge_fusion *f = NULL;
    CHECK(cge_fusion_load(dir, CGE_DTYPE_F32, &f) == CGE_OK);
    if (!f) return;
    const struct cge_fusemoe_config *c = cge_fusion_get_config(f);
    float *x = calloc((size_t)(MAXN * c->total_dim), 4);
    uint8_t *pr = calloc((size_t)(MAXN * c->n_slots), 1);
    snprintf(path, sizeof path, "tests/fixtures/fusion/%s/inputs.jsonl", name);
    int64_t n = read_items(c, path, x, pr);
    int64_t pair[MAXN];
    for (int64_t i = 0; i < n; i++)
        pair[i] = i < 6 ? i / 2 : -1; /* InfoNCE on 3 pairs */
    struct cge_fusion_train_params tp;
    cge_fusion_train_default_params(&tp);
    tp.info_nce_temp = 0.5f;
    tp.gate_noise = 0;
    tp.dropout = 0;
    struct cge_fusemoe_config cc = *c;
    if (fd_training) cc.capacity_factor = 0.5f; /* tight: some assignments must drop */
    struct cge_fusion *fc = NULL;
    if (fd_training) { /* same weights, tighter capacity */
        char tmp[128];
        snprintf(tmp, sizeof tmp, "/tmp/cge_test_fusion_fd_%d", (int)getpid());
        CHECK(cge_fusion_save(f, tmp) == CGE_OK);
        snprintf(path, sizeof path, "%s/config.json", tmp);
        CHECK(cge_fusemoe_config_save(&cc, path) == CGE_OK);
        cge_fusion_free(f);
        f = NULL;
        CHECK(cge_fusion_load(tmp, CGE_DTYPE_F32, &fc) == CGE_OK);
        unlink(path);
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        unlink(path);
        rmdir(tmp);
        f = fc;
        if (!f) return;
    }
    struct cge_fusion_trainer *t = NULL;
    CHECK(cge_fusion_trainer_new(f, &tp, &t) == CGE_OK);
    struct cge_fusion_stats s;
    CHECK(cge_fusion_trainer_grad(t, n, x, pr, pair, fd_training, &s) == CGE_OK);
    CHECK(s.info_nce_loss > 0);
    if (fd_training) CHECK(s.dropped > 0);
    int n_t = cge_fusion_n_tensors(f);
    double worst = 0;
    uint64_t rng = 12345;
    for (int i = 0; i < n_t; i++) {
        struct cge_fusion_param prm;
        cge_fusion_tensor(f, i, &prm);
        /* copy the analytic gradient: the buffer is overwritten by each loss evaluation */
        float *an = malloc((size_t)prm.n * 4);
        memcpy(an, cge_fusion_trainer_grad_of(t, i), (size_t)prm.n * 4);
        double num = 0, den = 0;
        int64_t n_probe = prm.n < 12 ? prm.n : 12;
        for (int64_t q = 0; q < n_probe; q++) {
            int64_t j =
                prm.n <= 12 ? q : (int64_t)((th_randf(&rng) * 0.5f + 0.5f) * (float)prm.n) % prm.n;
            float old = prm.data[j];
            const float h = 2e-3f;
            prm.data[j] = old + h;
            double lp = loss_at(t, n, x, pr, pair);
            prm.data[j] = old - h;
            double lm = loss_at(t, n, x, pr, pair);
            prm.data[j] = old;
            double fd = (lp - lm) / (2.0 * (double)h);
            num += (fd - an[j]) * (fd - an[j]);
            den += (double)an[j] * an[j];
        }
        double rel = sqrt(num) / fmax(sqrt(den), 1e-4);
        worst = fmax(worst, rel);
        CHECK_MSG(rel < 2e-2, "%s %s: finite-difference rel err %g", name, prm.name, rel);
        free(an);
    }
    printf("  %s finite differences (with InfoNCE%s): worst tensor rel err %.2g\n", name,
           fd_training ? ", capacity limit dropping assignments" : "", worst);
    cge_fusion_trainer_free(t);
    cge_fusion_free(f);
    free(x);
    free(pr);
}

/* ---- training bars on synthetic data -------------------------------------------------------- */
/* Items from latent clusters: latent u = centre_k + 0.5·noise (8-d); slot s holds A_s·u plus a
 * little slot noise; each slot is missing with probability 0.2 (at least one kept). */
static void synth(const struct cge_fusemoe_config *c, int64_t n, uint64_t *rng, const float *A,
                  const float *centres, int n_clusters, float *x, uint8_t *pr) {
    const int r = 8;
    for (int64_t i = 0; i < n; i++) {
        int k = (int)((th_randf(rng) * 0.5f + 0.5f) * (float)n_clusters) % n_clusters;
        float u[8];
        for (int q = 0; q < r; q++)
            u[q] = centres[k * r + q] + 0.5f * th_randf(rng);
        int64_t off = 0, a_off = 0, n_present = 0;
        for (int s = 0; s < c->n_slots; s++) {
            int d = c->slot_dims[s];
            int miss = th_randf(rng) * 0.5f + 0.5f < 0.2f;
            if (s == c->n_slots - 1 && n_present == 0) miss = 0;
            pr[i * c->n_slots + s] = (uint8_t)!miss;
            n_present += !miss;
            for (int j = 0; j < d; j++) {
                double v = 0.1 * th_randf(rng);
                for (int q = 0; q < r; q++)
                    v += A[a_off + j * r + q] * u[q];
                x[i * c->total_dim + off + j] = miss ? 0.0f : (float)v;
            }
            off += d;
            a_off += (int64_t)d * r;
        }
    }
}

/* Spearman correlation (average ranks for ties) between two arrays. */
static int cmp_idx_val;
static const double *cmp_vals;
static int cmp_idx(const void *a, const void *b) {
    double x = cmp_vals[*(const int *)a], y = cmp_vals[*(const int *)b];
    (void)cmp_idx_val;
    return x < y ? -1 : x > y;
}
static void ranks(const double *v, int n, double *rk) {
    int *idx = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++)
        idx[i] = i;
    cmp_vals = v;
    qsort(idx, (size_t)n, sizeof(int), cmp_idx);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && v[idx[j + 1]] == v[idx[i]])
            j++;
        for (int q = i; q <= j; q++)
            rk[idx[q]] = 0.5 * (i + j);
        i = j + 1;
    }
    free(idx);
}
static double spearman(const double *a, const double *b, int n) {
    double *ra = malloc((size_t)n * 8), *rb = malloc((size_t)n * 8);
    ranks(a, n, ra);
    ranks(b, n, rb);
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) {
        ma += ra[i];
        mb += rb[i];
    }
    ma /= n;
    mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    free(ra);
    free(rb);
    return sab / sqrt(saa * sbb);
}

/* Ensemble similarity written independently of the library: mean per-slot cosine over the
 * slots both items hold. */
static double ensemble_sim(const struct cge_fusemoe_config *c, const float *xi, const uint8_t *pi,
                           const float *xj, const uint8_t *pj) {
    double sum = 0;
    int cnt = 0;
    int64_t off = 0;
    for (int s = 0; s < c->n_slots; s++) {
        int d = c->slot_dims[s];
        if (pi[s] && pj[s]) {
            sum += th_cosine(xi + off, xj + off, (size_t)d);
            cnt++;
        }
        off += d;
    }
    return cnt ? sum / cnt : 0;
}

struct eval {
    double sim_loss, spearman, max_share;
};

static struct eval evaluate(struct cge_fusion *f, int64_t n, const float *x, const uint8_t *pr) {
    const struct cge_fusemoe_config *c = cge_fusion_get_config(f);
    struct eval ev = {0, 0, 0};
    struct cge_fusion_ctx *ctx = NULL;
    cge_fusion_ctx_new(&ctx);
    float *emb = malloc((size_t)(n * c->out_dim) * 4);
    int *sel = malloc((size_t)(n * c->top_k) * sizeof(int));
    if (cge_fusion_forward(f, ctx, n, x, pr, emb, NULL, sel)) {
        printf("  forward: %s\n", cge_errmsg());
        ev.sim_loss = 1e9;
        goto done;
    }
    int n_pairs = (int)(n * (n - 1) / 2), q = 0;
    double *a = malloc((size_t)n_pairs * 8), *b = malloc((size_t)n_pairs * 8);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            a[q] = th_cosine(emb + i * c->out_dim, emb + j * c->out_dim, (size_t)c->out_dim);
            b[q] = ensemble_sim(c, x + i * c->total_dim, pr + i * c->n_slots, x + j * c->total_dim,
                                pr + j * c->n_slots);
            ev.sim_loss += (a[q] - b[q]) * (a[q] - b[q]);
            q++;
        }
    ev.sim_loss /= n_pairs;
    ev.spearman = spearman(a, b, n_pairs);
    double cnt[64] = {0};
    for (int64_t i = 0; i < n * c->top_k; i++)
        cnt[sel[i]] += 1.0 / (double)(n * c->top_k);
    for (int e = 0; e < c->n_experts; e++)
        ev.max_share = fmax(ev.max_share, cnt[e] * c->n_experts);
    free(a);
    free(b);
done:
    free(emb);
    free(sel);
    cge_fusion_ctx_free(ctx);
    return ev;
}

static void test_training_bars(enum cge_fusion_gating gating) {
    struct cge_fusemoe_config c;
    const char *cfg =
        gating == CGE_FUSION_GATE_LAPLACE
            ? "{\"slot_dims\": [16, 24, 32, 16, 24], \"num_experts\": 4, "
              "\"expert_hidden_dim\": 32, \"output_dim\": 24, \"gating\": \"laplace\"}"
            : "{\"slot_dims\": [16, 24, 32, 16, 24], \"num_experts\": 4, "
              "\"expert_hidden_dim\": 32, \"output_dim\": 24}";
    CHECK(cge_fusemoe_config_parse(cfg, strlen(cfg), "t", &c) == CGE_OK);
    uint64_t rng = 777;
    const int r = 8, n_clusters = 6;
    float *A = malloc((size_t)(c.total_dim * r) * 4), centres[6 * 8];
    for (int64_t i = 0; i < c.total_dim * r; i++)
        A[i] = th_randf(&rng);
    for (int i = 0; i < n_clusters * r; i++)
        centres[i] = 1.5f * th_randf(&rng);
    const int64_t n_train = 512, n_test = 128;
    float *xtr = malloc((size_t)(n_train * c.total_dim) * 4),
          *xte = malloc((size_t)(n_test * c.total_dim) * 4);
    uint8_t *ptr = malloc((size_t)(n_train * c.n_slots)),
            *pte = malloc((size_t)(n_test * c.n_slots));
    synth(&c, n_train, &rng, A, centres, n_clusters, xtr, ptr);
    synth(&c, n_test, &rng, A, centres, n_clusters, xte, pte);
    struct cge_fusion *f = NULL;
    CHECK(cge_fusion_new(&c, 1, &f) == CGE_OK);
    if (!f) return;
    struct eval e0 = evaluate(f, n_test, xte, pte);
    struct cge_fusion_train_params tp;
    cge_fusion_train_default_params(&tp);
    struct cge_fusion_trainer *t = NULL; /* default parameters: auto learning rate */
    CHECK(cge_fusion_trainer_new(f, &tp, &t) == CGE_OK);
    const int64_t batch = 32;
    struct cge_fusion_stats s;
    for (int epoch = 0; epoch < 25; epoch++)
        for (int64_t b = 0; b + batch <= n_train; b += batch) {
            enum cge_status st = cge_fusion_trainer_step(t, batch, xtr + b * c.total_dim,
                                                         ptr + b * c.n_slots, NULL, &s);
            if (st) {
                CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
                epoch = 1000;
                break;
            }
        }
    struct eval e1 = evaluate(f, n_test, xte, pte);
    printf("  %s training: held-out similarity loss %.4f -> %.4f, Spearman %.3f -> %.3f, "
           "max expert share %.2f -> %.2f of fair, %lld steps\n",
           gating == CGE_FUSION_GATE_LAPLACE ? "laplace" : "softmax", e0.sim_loss, e1.sim_loss,
           e0.spearman, e1.spearman, e0.max_share, e1.max_share,
           (long long)cge_fusion_trainer_steps(t));
    CHECK(e0.spearman >= 0.85); /* the initialization already tracks the ensemble */
    CHECK(e1.sim_loss <= 0.5 * e0.sim_loss);
    CHECK(e1.spearman >= 0.9);
    CHECK(e1.max_share <= 2.0);
    cge_fusion_trainer_free(t);
    cge_fusion_free(f);
    free(A);
    free(xtr);
    free(xte);
    free(ptr);
    free(pte);
}

/* ---- checkpoint + resume --------------------------------------------------------------------- */
static void rm_dir(const char *dir) {
    const char *names[] = {"config.json", "model.safetensors", "optimizer.safetensors",
                           "trainer_state.json"};
    char p[512];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void test_resume(void) {
    struct cge_fusion *f = NULL;
    CHECK(cge_fusion_load("tests/fixtures/fusion/laplace/weights", CGE_DTYPE_F32, &f) == CGE_OK);
    if (!f) return;
    const struct cge_fusemoe_config *c = cge_fusion_get_config(f);
    float *x = calloc((size_t)(MAXN * c->total_dim), 4);
    uint8_t *pr = calloc((size_t)(MAXN * c->n_slots), 1);
    int64_t n = read_items(c, "tests/fixtures/fusion/laplace/inputs.jsonl", x, pr);
    struct cge_fusion_train_params tp;
    cge_fusion_train_default_params(&tp);
    tp.dropout = 0.1f; /* exercise the random streams too */
    struct cge_fusion_trainer *t = NULL;
    CHECK(cge_fusion_trainer_new(f, &tp, &t) == CGE_OK);
    for (int i = 0; i < 3; i++)
        CHECK(cge_fusion_trainer_step(t, n, x, pr, NULL, NULL) == CGE_OK);
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/cge_test_fusion_resume_%d", (int)getpid());
    CHECK(cge_fusion_trainer_save(t, dir) == CGE_OK);
    for (int i = 0; i < 3; i++)
        CHECK(cge_fusion_trainer_step(t, n, x, pr, NULL, NULL) == CGE_OK);
    struct cge_fusion *g = NULL;
    CHECK(cge_fusion_load(dir, CGE_DTYPE_F32, &g) == CGE_OK);
    struct cge_fusion_trainer *u = NULL;
    int resumed = 0;
    if (g) {
        CHECK(cge_fusion_trainer_new(g, &tp, &u) == CGE_OK);
        CHECK(cge_fusion_trainer_resume(u, dir, &resumed) == CGE_OK && resumed);
        CHECK(cge_fusion_trainer_steps(u) == 3);
        for (int i = 0; i < 3; i++)
            CHECK(cge_fusion_trainer_step(u, n, x, pr, NULL, NULL) == CGE_OK);
        double md = 0;
        for (int i = 0; i < cge_fusion_n_tensors(f); i++) {
            struct cge_fusion_param a, b;
            cge_fusion_tensor(f, i, &a);
            cge_fusion_tensor(g, i, &b);
            for (int64_t q = 0; q < a.n; q++)
                md = fmax(md, fabs(a.data[q] - b.data[q]));
        }
        printf("  resume: max |uninterrupted - resumed| after 3+3 steps = %.3g\n", md);
        CHECK(md <= 1e-6);
    }
    /* a folder without optimizer state resumes nothing */
    struct cge_fusion_trainer *v = NULL;
    CHECK(cge_fusion_trainer_new(f, &tp, &v) == CGE_OK);
    CHECK(cge_fusion_trainer_resume(v, "tests/fixtures/fusion/laplace/weights", &resumed) ==
          CGE_OK);
    CHECK(!resumed && cge_fusion_trainer_steps(v) == 0);
    cge_fusion_trainer_free(v);
    cge_fusion_trainer_free(u);
    cge_fusion_trainer_free(t);
    cge_fusion_free(g);
    cge_fusion_free(f);
    rm_dir(dir);
    free(x);
    free(pr);
}

int main(void) {
    RUN(test_resume);
    test_train_step("softmax");
    test_train_step("laplace");
    test_finite_differences("softmax");
    test_finite_differences("laplace");
    fd_training = 1;
    test_finite_differences("softmax");
    test_finite_differences("laplace");
    fd_training = 0;
    test_training_bars(CGE_FUSION_GATE_SOFTMAX);
    test_training_bars(CGE_FUSION_GATE_LAPLACE);
    return test_report("fusion_train");
}
