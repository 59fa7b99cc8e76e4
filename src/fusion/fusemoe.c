/*
 * fusemoe.c: the FuseMoE model: parameter layout, deterministic initialization, loading and
 * saving the weight folder, and the forward pass (single item and batch share one routine).
 *
 * Key decision: the forward pass groups the batch by expert. The input projection runs as one
 * GEMM over all n items; then the rows routed to each expert are gathered into a contiguous
 * block and fc1/fc2 run as two GEMMs over that block. Every item's numbers depend only on its
 * own row (no capacity at inference), so batch and single results agree.
 */
#include "fusion/internal.h"

#include "core/core.h"
#include "io/weights.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ==== random numbers ========================================================================= */
uint64_t cge__fz_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double cge__fz_uniform(uint64_t *s) {
    return (double)(cge__fz_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

double cge__fz_gauss(uint64_t *s) {
    double u1 = cge__fz_uniform(s), u2 = cge__fz_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ==== layout ================================================================================= */
static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const struct cge__fz_tensor *)a)->name,
                  ((const struct cge__fz_tensor *)b)->name);
}

static void add_t(struct cge__fz_tensor *t, int *n, const char *name, int n_dim, int64_t d0,
                  int64_t d1, int decay, int big) {
    struct cge__fz_tensor *x = &t[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->n_dim = n_dim;
    x->shape[0] = d0;
    x->shape[1] = n_dim > 1 ? d1 : 0;
    x->n = n_dim > 1 ? d0 * d1 : d0;
    x->decay = decay;
    x->big = big;
}

static int64_t *off_slot(struct cge__fz_off *o, const char *name) {
    int e;
    char part[16];
    if (!strcmp(name, "missing_embed")) return &o->missing;
    if (!strcmp(name, "gate.norm.weight")) return &o->gn_w;
    if (!strcmp(name, "gate.norm.bias")) return &o->gn_b;
    if (!strcmp(name, "gate.proj.weight")) return &o->gp_w;
    if (!strcmp(name, "gate.proj.bias")) return &o->gp_b;
    if (!strcmp(name, "gate.mask_proj.weight")) return &o->gm_w;
    if (!strcmp(name, "input_proj.weight")) return &o->ip_w;
    if (!strcmp(name, "input_proj.bias")) return &o->ip_b;
    if (!strcmp(name, "out_norm.weight")) return &o->on_w;
    if (!strcmp(name, "out_norm.bias")) return &o->on_b;
    if (sscanf(name, "experts.%d.%15s", &e, part) == 2 && e >= 0 && e < CGE_FUSION_MAX_EXPERTS) {
        if (!strcmp(part, "fc1.weight")) return &o->fc1_w[e];
        if (!strcmp(part, "fc1.bias")) return &o->fc1_b[e];
        if (!strcmp(part, "fc2.weight")) return &o->fc2_w[e];
        if (!strcmp(part, "fc2.bias")) return &o->fc2_b[e];
    }
    return NULL;
}

/* Builds the tensor table and offsets; allocates params (without the big matrices unless
 * with_master). */
static enum cge_status fz_alloc(const struct cge_fusemoe_config *c, int with_master,
                                struct cge_fusion **out) {
    *out = NULL;
    struct cge_fusion *f = cge__calloc(1, sizeof *f);
    if (!f) return cge__err(CGE_ERR_NOMEM, "fusion: model");
    f->c = *c;
    f->slot_off[0] = 0;
    for (int s = 0; s < c->n_slots; s++)
        f->slot_off[s + 1] = f->slot_off[s] + c->slot_dims[s];
    f->c.total_dim = f->slot_off[c->n_slots];
    int64_t D = f->c.total_dim, E = c->n_experts, S = c->n_slots, H = c->shared_dim,
            Hd = c->hidden_dim, O = c->out_dim;
    f->t = cge__calloc((size_t)(10 + 4 * E), sizeof *f->t);
    if (!f->t) {
        cge__free(f);
        return cge__err(CGE_ERR_NOMEM, "fusion: model");
    }
    int n = 0;
    add_t(f->t, &n, "missing_embed", 1, D, 0, 0, 0);
    add_t(f->t, &n, "gate.norm.weight", 1, D, 0, 0, 0);
    add_t(f->t, &n, "gate.norm.bias", 1, D, 0, 0, 0);
    add_t(f->t, &n, "gate.proj.weight", 2, E, D, c->gating == CGE_FUSION_GATE_SOFTMAX, 0);
    add_t(f->t, &n, "gate.proj.bias", 1, E, 0, 0, 0);
    add_t(f->t, &n, "gate.mask_proj.weight", 2, E, S, 1, 0);
    add_t(f->t, &n, "input_proj.weight", 2, H, D, 1, 1);
    add_t(f->t, &n, "input_proj.bias", 1, H, 0, 0, 0);
    add_t(f->t, &n, "out_norm.weight", 1, O, 0, 0, 0);
    add_t(f->t, &n, "out_norm.bias", 1, O, 0, 0, 0);
    for (int e = 0; e < E; e++) {
        char nm[48];
        snprintf(nm, sizeof nm, "experts.%d.fc1.weight", e);
        add_t(f->t, &n, nm, 2, Hd, H, 1, 1);
        snprintf(nm, sizeof nm, "experts.%d.fc1.bias", e);
        add_t(f->t, &n, nm, 1, Hd, 0, 0, 0);
        snprintf(nm, sizeof nm, "experts.%d.fc2.weight", e);
        add_t(f->t, &n, nm, 2, O, Hd, 1, 1);
        snprintf(nm, sizeof nm, "experts.%d.fc2.bias", e);
        add_t(f->t, &n, nm, 1, O, 0, 0, 0);
    }
    qsort(f->t, (size_t)n, sizeof *f->t, cmp_tensor);
    f->n_tensors = n;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        struct cge__fz_tensor *t = &f->t[i];
        if (t->big && !with_master) {
            t->off = -1;
        } else {
            t->off = off;
            off += (t->n + 15) & ~(int64_t)15; /* 64-byte aligned tensors */
        }
        int64_t *slot = off_slot(&f->o, t->name);
        CGE_ASSERT(slot != NULL);
        *slot = t->off;
    }
    f->n_params = off;
    f->has_master = with_master;
    f->params = cge__malloc_aligned((size_t)(off ? off : 1) * sizeof(float));
    if (!f->params) {
        cge__free(f->t);
        cge__free(f);
        return cge__err(CGE_ERR_NOMEM, "fusion: %lld parameters (%.1f MB)", (long long)off,
                        (double)off * 4 / 1e6);
    }
    memset(f->params, 0, (size_t)(off ? off : 1) * sizeof(float));
    *out = f;
    return CGE_OK;
}

void cge_fusion_free(struct cge_fusion *f) {
    if (!f) return;
    for (int i = 0; i < f->n_lin; i++)
        cge_linear_deinit(&f->lin[i]);
    cge__free(f->lin);
    cge__free_aligned(f->params);
    cge__free(f->t);
    cge__free(f);
}

const struct cge_fusemoe_config *cge_fusion_get_config(const struct cge_fusion *f) {
    return &f->c;
}

int cge_fusion_n_tensors(const struct cge_fusion *f) {
    return f->n_tensors;
}

enum cge_status cge_fusion_tensor(const struct cge_fusion *f, int i, struct cge_fusion_param *out) {
    if (i < 0 || i >= f->n_tensors)
        return cge__err(CGE_ERR_INVALID_VALUE, "fusion: tensor %d of %d", i, f->n_tensors);
    const struct cge__fz_tensor *t = &f->t[i];
    out->name = t->name;
    out->n_dim = t->n_dim;
    out->shape[0] = t->shape[0];
    out->shape[1] = t->shape[1];
    out->n = t->n;
    out->data = t->off >= 0 ? f->params + t->off : NULL;
    return CGE_OK;
}

/* ==== initialization ========================================================================= */
/* W (n_out, n_in) with norm-preserving random rows: orthonormal (Gram-Schmidt over the smaller
 * side) when small, else scaled Gaussian. Scaled so that E‖W·x‖² = ‖x‖². */
/* n values of zero mean and standard deviation sd: uniform on [-√3·sd, √3·sd] (a projection
 * only needs i.i.d. entries of the right variance, and this is ~20x faster than Box-Muller on
 * the 238 M production parameters). */
static void random_fill(float *w, int64_t n, double sd, uint64_t *rng) {
    double a = 2.0 * 1.7320508075688772 * sd;
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)((cge__fz_uniform(rng) - 0.5) * a);
}

static void random_orth(float *W, int64_t n_out, int64_t n_in, uint64_t *rng) {
    double sd = 1.0 / sqrt((double)n_out);
    int64_t small = n_out < n_in ? n_out : n_in, large = n_out < n_in ? n_in : n_out;
    if ((double)small * small * large > 2147483648.0) {
        random_fill(W, n_out * n_in, sd, rng);
        return;
    }
    for (int64_t i = 0; i < n_out * n_in; i++)
        W[i] = (float)(cge__fz_gauss(rng) * sd);
    /* Vectors to orthonormalize: rows when n_out <= n_in, else columns. */
    int rows = n_out <= n_in;
    int64_t nv = small, len = large;
    double *v = cge__malloc((size_t)(nv * len) * sizeof(double));
    if (!v) return; /* keep the Gaussian: still norm-preserving in expectation */
    for (int64_t a = 0; a < nv; a++)
        for (int64_t b = 0; b < len; b++)
            v[a * len + b] = rows ? W[a * n_in + b] : W[b * n_in + a];
    for (int64_t a = 0; a < nv; a++) {
        double *va = v + a * len;
        for (int pass = 0; pass < 2; pass++)
            for (int64_t b = 0; b < a; b++) {
                const double *vb = v + b * len;
                double d = 0;
                for (int64_t q = 0; q < len; q++)
                    d += va[q] * vb[q];
                for (int64_t q = 0; q < len; q++)
                    va[q] -= d * vb[q];
            }
        double nn = 0;
        for (int64_t q = 0; q < len; q++)
            nn += va[q] * va[q];
        nn = sqrt(nn);
        for (int64_t q = 0; q < len; q++)
            va[q] /= nn > 0 ? nn : 1;
    }
    /* Orthonormal rows (n_out < n_in) shrink norms by sqrt(n_out/n_in): scale back up. */
    double scale = rows ? sqrt((double)n_in / (double)n_out) : 1.0;
    for (int64_t a = 0; a < nv; a++)
        for (int64_t b = 0; b < len; b++) {
            float val = (float)(v[a * len + b] * scale);
            if (rows)
                W[a * n_in + b] = val;
            else
                W[b * n_in + a] = val;
        }
    cge__free(v);
}

/* Pre-activations are β + u with u of spread INIT_SPREAD. GELU(β + u) ≈ c0 + c1·u, and the next
 * layer divides by c1 and subtracts c0 in its bias, so the chain stays ≈ linear. β = 0 with a
 * small spread keeps activations near zero-mean: a large offset (β = 3) linearizes GELU better
 * but makes Adam's sign-like first steps shift every pre-activation coherently (lr·Σ|h|), which
 * undid the initialization at production size in one step; near zero it trains smoothly. */
#define INIT_BIAS    0.0
#define INIT_SPREAD  0.1
#define INIT_PERTURB 0.05

enum cge_status cge_fusion_new(const struct cge_fusemoe_config *c, uint64_t seed,
                               struct cge_fusion **out) {
    struct cge_fusion *f;
    enum cge_status st = fz_alloc(c, 1, &f);
    *out = NULL;
    if (st) return st;
    const struct cge_fusemoe_config *k = &f->c;
    int64_t D = k->total_dim, E = k->n_experts, H = k->shared_dim, Hd = k->hidden_dim,
            O = k->out_dim;
    float *p = f->params;
    uint64_t rng = seed ^ 0x6a09e667f3bcc908ull;
    /* gate: LayerNorm identity, small projection / centres, zero biases and mask projection */
    for (int64_t i = 0; i < D; i++)
        p[f->o.gn_w + i] = 1.0f;
    for (int64_t i = 0; i < E * D; i++)
        p[f->o.gp_w + i] = (float)(0.02 * cge__fz_gauss(&rng));
    for (int64_t i = 0; i < O; i++)
        p[f->o.on_w + i] = 1.0f;
    /* input projection: α·Q1 with α making the pre-activation entries' spread ≈ INIT_SPREAD
     * (x holds about n_slots unit vectors) */
    float *ip = p + f->o.ip_w;
    random_orth(ip, H, D, &rng);
    float alpha = (float)(INIT_SPREAD * sqrt((double)H / (double)k->n_slots));
    for (int64_t i = 0; i < H * D; i++)
        ip[i] *= alpha;
    for (int64_t i = 0; i < H; i++)
        p[f->o.ip_b + i] = (float)INIT_BIAS;
    /* experts: shared Q2, Q3 plus a per-expert perturbation; biases cancel the GELU offsets */
    float *q2 = cge__malloc((size_t)(Hd * H) * sizeof(float));
    float *q3 = cge__malloc((size_t)(O * Hd) * sizeof(float));
    if (!q2 || !q3) {
        cge__free(q2);
        cge__free(q3);
        cge_fusion_free(f);
        return cge__err(CGE_ERR_NOMEM, "fusion: init");
    }
    random_orth(q2, Hd, H, &rng);
    random_orth(q3, O, Hd, &rng);
    double sd2 = INIT_PERTURB / sqrt((double)Hd), sd3 = INIT_PERTURB / sqrt((double)O);
    /* GELU(β + u) ≈ c0 + c1·u */
    double c0 = INIT_BIAS * 0.5 * (1.0 + erf(INIT_BIAS / sqrt(2.0)));
    double c1 = 0.5 * (1.0 + erf(INIT_BIAS / sqrt(2.0))) +
                INIT_BIAS * exp(-0.5 * INIT_BIAS * INIT_BIAS) / sqrt(2.0 * M_PI);
    float gain = (float)(1.0 / c1);
    for (int e = 0; e < E; e++) {
        float *w1 = p + f->o.fc1_w[e], *b1 = p + f->o.fc1_b[e];
        float *w2 = p + f->o.fc2_w[e], *b2 = p + f->o.fc2_b[e];
        random_fill(w1, Hd * H, sd2, &rng);
        random_fill(w2, O * Hd, sd3, &rng);
        for (int64_t i = 0; i < Hd * H; i++)
            w1[i] = (w1[i] + q2[i]) * gain;
        for (int64_t i = 0; i < O * Hd; i++)
            w2[i] = (w2[i] + q3[i]) * gain;
        for (int64_t r = 0; r < Hd; r++) {
            double s = 0;
            for (int64_t j = 0; j < H; j++)
                s += w1[r * H + j];
            b1[r] = (float)(INIT_BIAS - c0 * s);
        }
        for (int64_t r = 0; r < O; r++) {
            double s = 0;
            for (int64_t j = 0; j < Hd; j++)
                s += w2[r * Hd + j];
            b2[r] = (float)(-c0 * s);
        }
    }
    cge__free(q2);
    cge__free(q3);
    *out = f;
    return CGE_OK;
}

/* ==== packing ================================================================================ */
enum cge_status cge_fusion_pack(struct cge_fusion *f, enum cge_dtype dtype) {
    if (!f->has_master) return cge__err(CGE_ERR_UNSUPPORTED, "fusion: model is already packed");
    int n = 1 + 2 * f->c.n_experts;
    struct cge_linear *lin = cge__calloc((size_t)n, sizeof *lin);
    if (!lin) return cge__err(CGE_ERR_NOMEM, "fusion: pack");
    const struct cge_fusemoe_config *c = &f->c;
    enum cge_status st = cge_linear_init(&lin[0], f->params + f->o.ip_w, CGE_DTYPE_F32,
                                         f->params + f->o.ip_b, c->shared_dim, c->total_dim, dtype);
    int done = st ? 0 : 1;
    for (int e = 0; e < c->n_experts && !st; e++) {
        st = cge_linear_init(&lin[1 + 2 * e], f->params + f->o.fc1_w[e], CGE_DTYPE_F32,
                             f->params + f->o.fc1_b[e], c->hidden_dim, c->shared_dim, dtype);
        if (st) break;
        done++;
        st = cge_linear_init(&lin[2 + 2 * e], f->params + f->o.fc2_w[e], CGE_DTYPE_F32,
                             f->params + f->o.fc2_b[e], c->out_dim, c->hidden_dim, dtype);
        if (!st) done++;
    }
    if (st) {
        for (int i = 0; i < done; i++)
            cge_linear_deinit(&lin[i]);
        cge__free(lin);
        return st;
    }
    for (int i = 0; i < f->n_lin; i++)
        cge_linear_deinit(&f->lin[i]);
    cge__free(f->lin);
    f->lin = lin;
    f->n_lin = n;
    return CGE_OK;
}

/* ==== load / save ============================================================================ */
/* 1 when every element of a F32/F16/BF16 tensor is finite (checked in chunks, no copy). */
static int all_finite(const void *data, enum cge_dtype dt, int64_t n) {
    float buf[1024];
    size_t es = cge_dtype_size(dt);
    for (int64_t i = 0; i < n; i += 1024) {
        int64_t len = n - i < 1024 ? n - i : 1024;
        if (cge_convert_to_f32((const uint8_t *)data + (size_t)i * es, dt, len, buf)) return 0;
        for (int64_t q = 0; q < len; q++)
            if (!isfinite(buf[q])) return 0;
    }
    return 1;
}

static int is_float_dtype(enum cge_dtype d) {
    return d == CGE_DTYPE_F32 || d == CGE_DTYPE_F16 || d == CGE_DTYPE_BF16;
}

enum cge_status cge_fusion_load(const char *dir, enum cge_dtype dtype, struct cge_fusion **out) {
    *out = NULL;
    if (dtype != CGE_DTYPE_F32 && dtype != CGE_DTYPE_BF16 && dtype != CGE_DTYPE_I8)
        return cge__err(CGE_ERR_UNSUPPORTED, "fusion: storage dtype %s (use f32, bf16 or i8)",
                        cge_dtype_str(dtype));
    char path[4096];
    enum cge_status st = cge__path_join(path, sizeof path, dir, "config.json");
    if (st) return st;
    if (!cge__file_exists(path))
        return cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s: no FuseMoE config.json", dir);
    struct cge_fusemoe_config c;
    if ((st = cge_fusemoe_config_load(path, &c))) return st;
    if ((st = cge__path_join(path, sizeof path, dir, "model.safetensors"))) return st;
    struct cge_weights *w = NULL;
    if ((st = cge_weights_open(path, &w))) return st;
    st = cge__fusion_from_weights(&c, w, path, dtype, out);
    cge_weights_free(w);
    return st;
}

enum cge_status cge__fusion_from_weights(const struct cge_fusemoe_config *c,
                                         const struct cge_weights *w, const char *path,
                                         enum cge_dtype dtype, struct cge_fusion **out) {
    *out = NULL;
    if (dtype != CGE_DTYPE_F32 && dtype != CGE_DTYPE_BF16 && dtype != CGE_DTYPE_I8)
        return cge__err(CGE_ERR_UNSUPPORTED, "fusion: storage dtype %s (use f32, bf16 or i8)",
                        cge_dtype_str(dtype));
    enum cge_status st;
    struct cge_fusion *f = NULL;
    int packed = dtype != CGE_DTYPE_F32;
    if ((st = fz_alloc(c, !packed, &f))) return st;
    if (packed) {
        f->lin = cge__calloc((size_t)(1 + 2 * c->n_experts), sizeof *f->lin);
        if (!f->lin) {
            st = cge__err(CGE_ERR_NOMEM, "fusion: load");
            goto fail;
        }
    }
    /* Biases are needed by the packed layers: load small tensors first. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < f->n_tensors; i++) {
            const struct cge__fz_tensor *t = &f->t[i];
            if ((pass == 0) == (t->big != 0)) continue;
            const struct cge_tensor_info *ti = cge_weights_find(w, t->name);
            if (!ti) {
                st = cge__err(CGE_ERR_MODEL_LOAD, "%s: tensor '%s' is missing", path, t->name);
                goto fail;
            }
            int ok = ti->n_dim == t->n_dim && is_float_dtype(ti->dtype);
            for (int d = 0; ok && d < t->n_dim; d++)
                ok = ti->shape[d] == t->shape[d];
            if (!ok) {
                char got[128] = "", exp[64];
                size_t gl = 0;
                for (int d = 0; d < ti->n_dim && d < CGE_MAX_DIMS && gl < sizeof got - 24; d++)
                    gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", d ? ", " : "",
                                           (long long)ti->shape[d]);
                if (t->n_dim == 2)
                    snprintf(exp, sizeof exp, "%lld, %lld", (long long)t->shape[0],
                             (long long)t->shape[1]);
                else
                    snprintf(exp, sizeof exp, "%lld", (long long)t->shape[0]);
                st = cge__err(
                    CGE_ERR_INVALID_DIM,
                    "%s: tensor '%s': %s [%s], expected F32/F16/BF16 [%s] from config.json", path,
                    t->name, cge_dtype_str(ti->dtype), got, exp);
                goto fail;
            }
            if (!all_finite(ti->data, ti->dtype, t->n)) {
                st = cge__err(CGE_ERR_MODEL_LOAD, "%s: tensor '%s' holds a non-finite value", path,
                              t->name);
                goto fail;
            }
            if (t->off >= 0) {
                if ((st = cge_convert_to_f32(ti->data, ti->dtype, t->n, f->params + t->off)))
                    goto fail;
            } else {
                int li, e = -1;
                const float *bias;
                if (!strcmp(t->name, "input_proj.weight")) {
                    li = 0;
                    bias = f->params + f->o.ip_b;
                } else {
                    char part[16];
                    if (sscanf(t->name, "experts.%d.%15s", &e, part) != 2) CGE_ASSERT(0);
                    int fc2 = !strcmp(part, "fc2.weight");
                    li = 1 + 2 * e + fc2;
                    bias = f->params + (fc2 ? f->o.fc2_b[e] : f->o.fc1_b[e]);
                }
                if ((st = cge_linear_init(&f->lin[li], ti->data, ti->dtype, bias, t->shape[0],
                                          t->shape[1], dtype)))
                    goto fail;
                f->n_lin = li + 1 > f->n_lin ? li + 1 : f->n_lin;
            }
        }
    }
    *out = f;
    return CGE_OK;
fail:
    cge_fusion_free(f);
    return st;
}

static enum cge_status make_dir(const char *dir) {
    if (mkdir(dir, 0755) && errno != EEXIST)
        return cge__err(CGE_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    return CGE_OK;
}

enum cge_status cge__fz_save_params(const struct cge_fusion *f, const float *base, const char *path,
                                    const char *prefix, const char *format);
enum cge_status cge__fz_save_params(const struct cge_fusion *f, const float *base, const char *path,
                                    const char *prefix, const char *format) {
    struct cge__st_entry *e = cge__calloc((size_t)f->n_tensors, sizeof *e);
    char(*names)[64] = cge__calloc((size_t)f->n_tensors, sizeof *names);
    if (!e || !names) {
        cge__free(e);
        cge__free(names);
        return cge__err(CGE_ERR_NOMEM, "fusion: save");
    }
    for (int i = 0; i < f->n_tensors; i++) {
        const struct cge__fz_tensor *t = &f->t[i];
        snprintf(names[i], sizeof names[i], "%s%s", prefix, t->name);
        e[i].name = names[i];
        e[i].n_dim = t->n_dim;
        e[i].shape[0] = t->shape[0];
        e[i].shape[1] = t->shape[1];
        e[i].data = base + t->off;
    }
    enum cge_status st = cge__st_write_f32(path, e, f->n_tensors, format);
    cge__free(e);
    cge__free(names);
    return st;
}

enum cge_status cge_fusion_save(const struct cge_fusion *f, const char *dir) {
    if (!f->has_master)
        return cge__err(CGE_ERR_UNSUPPORTED, "fusion: a packed (bf16/i8) model cannot be saved");
    enum cge_status st = make_dir(dir);
    if (st) return st;
    char path[4096];
    if ((st = cge__path_join(path, sizeof path, dir, "model.safetensors"))) return st;
    if ((st = cge__fz_save_params(f, f->params, path, "", "cge-fusion"))) return st;
    if ((st = cge__path_join(path, sizeof path, dir, "config.json"))) return st;
    return cge_fusemoe_config_save(&f->c, path);
}

/* ==== workspace ============================================================================== */
void cge__fz_work_free(struct cge__fz_work *w) {
    float **fl[] = {&w->X,    &w->M,   &w->xhat,  &w->grstd, &w->Z,     &w->dist,
                    &w->P,    &w->Wt,  &w->Hpre,  &w->Hb,    &w->hmask, &w->Hg,
                    &w->Apre, &w->A,   &w->amask, &w->B,     &w->Y,     &w->yhat,
                    &w->ornd, &w->Out, &w->onorm, &w->F};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
        cge__free_aligned(*fl[i]);
        *fl[i] = NULL;
    }
    cge__free(w->sel);
    cge__free(w->row_of);
    cge__free(w->item_of);
    cge__free(w->choice_of);
    w->sel = w->row_of = w->item_of = w->choice_of = NULL;
    w->cap_n = 0;
}

enum cge_status cge__fz_work_reserve(struct cge__fz_work *w, const struct cge_fusemoe_config *c,
                                     int64_t n, int training) {
    if (n <= w->cap_n && (!training || w->hmask)) return CGE_OK;
    if (n < w->cap_n) n = w->cap_n;
    cge__fz_work_free(w);
    int64_t D = c->total_dim, S = c->n_slots, E = c->n_experts, k = c->top_k, H = c->shared_dim,
            Hd = c->hidden_dim, O = c->out_dim, nk = n * k;
    struct {
        float **p;
        int64_t n;
    } fl[] = {{&w->X, n * D},
              {&w->M, n * S},
              {&w->xhat, n * D},
              {&w->grstd, n},
              {&w->Z, n * D},
              {&w->dist, n * E},
              {&w->P, n * E},
              {&w->Wt, n * k},
              {&w->Hpre, n * H},
              {&w->Hb, n * H},
              {&w->hmask, training ? n * H : 1},
              {&w->Hg, nk * H},
              {&w->Apre, nk * Hd},
              {&w->A, nk * Hd},
              {&w->amask, training ? nk * Hd : 1},
              {&w->B, nk * O},
              {&w->Y, n * O},
              {&w->yhat, n * O},
              {&w->ornd, n},
              {&w->Out, n * O},
              {&w->onorm, n},
              {&w->F, n * O}};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
        *fl[i].p = cge__malloc_aligned((size_t)fl[i].n * sizeof(float));
        if (!*fl[i].p) {
            cge__fz_work_free(w);
            return cge__err(CGE_ERR_NOMEM, "fusion: workspace for %lld items", (long long)n);
        }
    }
    w->sel = cge__malloc((size_t)nk * sizeof(int));
    w->row_of = cge__malloc((size_t)nk * sizeof(int));
    w->item_of = cge__malloc((size_t)nk * sizeof(int));
    w->choice_of = cge__malloc((size_t)nk * sizeof(int));
    if (!w->sel || !w->row_of || !w->item_of || !w->choice_of) {
        cge__fz_work_free(w);
        return cge__err(CGE_ERR_NOMEM, "fusion: workspace for %lld items", (long long)n);
    }
    if (!training) {
        cge__free_aligned(w->hmask);
        cge__free_aligned(w->amask);
        w->hmask = w->amask = NULL;
    }
    w->cap_n = n;
    return CGE_OK;
}

struct cge_fusion_ctx {
    struct cge__fz_work w;
};

enum cge_status cge_fusion_ctx_new(struct cge_fusion_ctx **out) {
    *out = cge__calloc(1, sizeof **out);
    return *out ? CGE_OK : cge__err(CGE_ERR_NOMEM, "fusion: context");
}

void cge_fusion_ctx_free(struct cge_fusion_ctx *ctx) {
    if (!ctx) return;
    cge__fz_work_free(&ctx->w);
    cge__free(ctx);
}

/* ==== forward ================================================================================ */
/* LayerNorm of rows (double accumulation), keeping the normalized input and 1/std. */
static void layernorm_fwd(const float *x, int64_t rows, int64_t d, const float *g, const float *b,
                          float eps, float *xhat, float *rstd, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        double m = 0, v = 0;
        for (int64_t j = 0; j < d; j++)
            m += xr[j];
        m /= (double)d;
        for (int64_t j = 0; j < d; j++)
            v += ((double)xr[j] - m) * ((double)xr[j] - m);
        v /= (double)d;
        double rs = 1.0 / sqrt(v + (double)eps);
        rstd[r] = (float)rs;
        for (int64_t j = 0; j < d; j++) {
            float h = (float)(((double)xr[j] - m) * rs);
            xhat[r * d + j] = h;
            y[r * d + j] = h * g[j] + b[j];
        }
    }
}

/* Finite weights can still overflow (a checkpoint with 1e30 entries): activations are checked
 * before they reach the next layer, since quantizing a non-finite row is undefined. */
static enum cge_status check_finite(const float *v, int64_t n, const char *where) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return cge__err(CGE_ERR_FUSION, "fusion: non-finite %s (the weights overflow fp32)",
                            where);
    return CGE_OK;
}

/* out (m, n_out) = in (m, n_in) · Wᵀ + b through the packed layer li or the fp32 master. */
static enum cge_status linear(const struct cge_fusion *f, int li, int64_t w_off, int64_t b_off,
                              const float *in, int64_t m, int64_t n_in, int64_t n_out, float *out) {
    if (m == 0) return CGE_OK;
    if (f->lin) return cge_linear_forward(&f->lin[li], in, m, out);
    cge_sgemm(0, 1, m, n_out, n_in, 1.0f, in, n_in, f->params + w_off, n_in, 0.0f, out, n_out);
    cge_add_row(out, m, n_out, f->params + b_off);
    return CGE_OK;
}

enum cge_status cge__fz_forward(const struct cge_fusion *f, struct cge__fz_work *w, int64_t n,
                                const float *x, const uint8_t *present,
                                const struct cge__fz_train *tr) {
    const struct cge_fusemoe_config *c = &f->c;
    const int64_t D = c->total_dim, S = c->n_slots, E = c->n_experts, k = c->top_k,
                  H = c->shared_dim, Hd = c->hidden_dim, O = c->out_dim;
    const float *p = f->params;
    enum cge_status st;
    if (n <= 0) return cge__err(CGE_ERR_EMPTY_INPUT, "fusion: empty batch");
    /* Inputs: validate, normalize per slot, fill missing slots. */
    for (int64_t i = 0; i < n; i++) {
        int any = 0;
        for (int64_t s = 0; s < S; s++) {
            if (!present[i * S + s]) continue;
            any = 1;
            const float *v = x + i * D + f->slot_off[s];
            for (int64_t j = 0; j < c->slot_dims[s]; j++)
                if (!isfinite(v[j]))
                    return cge__err(CGE_ERR_INVALID_VALUE,
                                    "fusion: item %lld slot %lld value %lld is not finite",
                                    (long long)i, (long long)s, (long long)j);
        }
        if (!any)
            return cge__err(CGE_ERR_FUSION, "fusion: item %lld has no slot present", (long long)i);
    }
    if ((st = cge__fz_work_reserve(w, c, n, tr != NULL))) return st;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t s = 0; s < S; s++) {
            int64_t o = f->slot_off[s], d = c->slot_dims[s];
            float *dst = w->X + i * D + o;
            w->M[i * S + s] = present[i * S + s] ? 1.0f : 0.0f;
            if (present[i * S + s]) {
                const float *v = x + i * D + o;
                double nn = 0;
                for (int64_t j = 0; j < d; j++)
                    nn += (double)v[j] * v[j];
                double inv = 1.0 / fmax(sqrt(nn), 1e-12);
                for (int64_t j = 0; j < d; j++)
                    dst[j] = (float)(v[j] * inv);
            } else {
                memcpy(dst, p + f->o.missing + o, (size_t)d * sizeof(float));
            }
        }
    }
    /* Gate. */
    layernorm_fwd(w->X, n, D, p + f->o.gn_w, p + f->o.gn_b, c->eps, w->xhat, w->grstd, w->Z);
    float *logits = w->P; /* computed in place */
    if (c->gating == CGE_FUSION_GATE_SOFTMAX) {
        cge_sgemm(0, 1, n, E, D, 1.0f, w->Z, D, p + f->o.gp_w, D, 0.0f, logits, E);
        for (int64_t i = 0; i < n; i++)
            for (int64_t e = 0; e < E; e++)
                logits[i * E + e] += p[f->o.gp_b + e];
    } else {
        for (int64_t i = 0; i < n; i++)
            for (int64_t e = 0; e < E; e++) {
                const float *z = w->Z + i * D, *ce = p + f->o.gp_w + e * D;
                double s2 = 0;
                for (int64_t j = 0; j < D; j++)
                    s2 += ((double)z[j] - ce[j]) * ((double)z[j] - ce[j]);
                float dd = (float)sqrt(s2);
                w->dist[i * E + e] = dd;
                logits[i * E + e] = -dd + p[f->o.gp_b + e];
            }
    }
    for (int64_t i = 0; i < n; i++) {
        float *l = logits + i * E;
        for (int64_t e = 0; e < E; e++) {
            double s = 0;
            for (int64_t q = 0; q < S; q++)
                s += (double)p[f->o.gm_w + e * S + q] * w->M[i * S + q];
            l[e] += (float)s;
            if (tr && tr->gate_noise > 0) l[e] += (float)(tr->gate_noise * cge__fz_gauss(tr->rng));
        }
        double mx = -INFINITY, sum = 0;
        for (int64_t e = 0; e < E; e++)
            mx = fmax(mx, (double)l[e] / c->temperature);
        for (int64_t e = 0; e < E; e++) {
            double v = exp((double)l[e] / c->temperature - mx);
            l[e] = (float)v;
            sum += v;
        }
        for (int64_t e = 0; e < E; e++)
            l[e] = (float)(l[e] / sum);
        /* top-k: larger p first; on equal p the lower expert index wins */
        double tot = 0;
        for (int64_t j = 0; j < k; j++) {
            int best = -1;
            for (int64_t e = 0; e < E; e++) {
                int taken = 0;
                for (int64_t q = 0; q < j; q++)
                    taken |= w->sel[i * k + q] == e;
                if (!taken && (best < 0 || l[e] > l[best])) best = (int)e;
            }
            w->sel[i * k + j] = best;
            tot += l[best];
        }
        for (int64_t j = 0; j < k; j++)
            w->Wt[i * k + j] = (float)(l[w->sel[i * k + j]] / tot);
    }
    /* Assignments grouped by expert (capacity only when training asks for it). */
    int64_t cnt[CGE_FUSION_MAX_EXPERTS] = {0};
    int64_t cap = n * k;
    if (tr && tr->use_capacity)
        cap = (int64_t)ceil((double)c->capacity_factor * (double)(n * k) / (double)E);
    w->dropped = 0;
    for (int64_t j = 0; j < k; j++)
        for (int64_t i = 0; i < n; i++) {
            int e = w->sel[i * k + j];
            if (cnt[e] < cap) {
                w->row_of[i * k + j] = (int)cnt[e]; /* position within expert, fixed below */
                cnt[e]++;
            } else {
                w->row_of[i * k + j] = -1;
                w->dropped++;
            }
        }
    w->e_off[0] = 0;
    for (int64_t e = 0; e < E; e++)
        w->e_off[e + 1] = w->e_off[e] + cnt[e];
    for (int64_t a = 0; a < n * k; a++) {
        if (w->row_of[a] < 0) continue;
        int e = w->sel[a];
        int r = (int)(w->e_off[e] + w->row_of[a]);
        w->row_of[a] = r;
        w->item_of[r] = (int)(a / k);
        w->choice_of[r] = (int)(a % k);
    }
    /* Shared input projection over all items. */
    if ((st = linear(f, 0, f->o.ip_w, f->o.ip_b, w->X, n, D, H, w->Hpre))) return st;
    float drop = tr ? tr->dropout : 0.0f;
    for (int64_t i = 0; i < n * H; i++)
        w->Hb[i] = cge__fz_gelu(w->Hpre[i]);
    if (drop > 0) {
        float keep = 1.0f / (1.0f - drop);
        for (int64_t i = 0; i < n * H; i++) {
            w->hmask[i] = cge__fz_uniform(tr->rng) < drop ? 0.0f : keep;
            w->Hb[i] *= w->hmask[i];
        }
    }
    if ((st = check_finite(w->Hb, n * H, "input projection"))) return st;
    /* Experts over their rows. */
    int64_t rows = w->e_off[E];
    for (int64_t r = 0; r < rows; r++)
        memcpy(w->Hg + r * H, w->Hb + (int64_t)w->item_of[r] * H, (size_t)H * sizeof(float));
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = w->e_off[e], m = w->e_off[e + 1] - r0;
        if (!m) continue;
        if ((st = linear(f, (int)(1 + 2 * e), f->o.fc1_w[e], f->o.fc1_b[e], w->Hg + r0 * H, m, H,
                         Hd, w->Apre + r0 * Hd)))
            return st;
        float *a = w->A + r0 * Hd;
        const float *ap = w->Apre + r0 * Hd;
        for (int64_t i = 0; i < m * Hd; i++)
            a[i] = cge__fz_gelu(ap[i]);
        if (drop > 0) {
            float keep = 1.0f / (1.0f - drop);
            float *am = w->amask + r0 * Hd;
            for (int64_t i = 0; i < m * Hd; i++) {
                am[i] = cge__fz_uniform(tr->rng) < drop ? 0.0f : keep;
                a[i] *= am[i];
            }
        }
        if ((st = check_finite(a, m * Hd, "expert hidden layer"))) return st;
        if ((st = linear(f, (int)(2 + 2 * e), f->o.fc2_w[e], f->o.fc2_b[e], a, m, Hd, O,
                         w->B + r0 * O)))
            return st;
    }
    memset(w->Y, 0, (size_t)(n * O) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = w->item_of[r];
        float wt = w->Wt[i * k + w->choice_of[r]];
        float *y = w->Y + i * O;
        const float *b = w->B + r * O;
        for (int64_t j = 0; j < O; j++)
            y[j] += wt * b[j];
    }
    /* Output LayerNorm, then L2. */
    layernorm_fwd(w->Y, n, O, p + f->o.on_w, p + f->o.on_b, c->eps, w->yhat, w->ornd, w->Out);
    for (int64_t i = 0; i < n; i++) {
        const float *o = w->Out + i * O;
        double nn = 0;
        for (int64_t j = 0; j < O; j++)
            nn += (double)o[j] * o[j];
        double nr = fmax(sqrt(nn), 1e-12);
        w->onorm[i] = (float)nr;
        for (int64_t j = 0; j < O; j++)
            w->F[i * O + j] = (float)(o[j] / nr);
    }
    if ((st = check_finite(w->P, n * E, "gate distribution"))) return st;
    return check_finite(w->F, n * O, "fused output");
}

enum cge_status cge_fusion_forward(const struct cge_fusion *f, struct cge_fusion_ctx *ctx,
                                   int64_t n, const float *x, const uint8_t *present, float *emb,
                                   float *gate, int *selected) {
    enum cge_status st = cge__fz_forward(f, &ctx->w, n, x, present, NULL);
    if (st) return st;
    const struct cge_fusemoe_config *c = &f->c;
    memcpy(emb, ctx->w.F, (size_t)(n * c->out_dim) * sizeof(float));
    if (gate) memcpy(gate, ctx->w.P, (size_t)(n * c->n_experts) * sizeof(float));
    if (selected) memcpy(selected, ctx->w.sel, (size_t)(n * c->top_k) * sizeof(int));
    return CGE_OK;
}

enum cge_status cge_fusion_fuse(const struct cge_fusion *f, struct cge_fusion_ctx *ctx,
                                const struct cge_concat_embedding *in,
                                struct cge_fused_embedding *out) {
    const struct cge_fusemoe_config *c = &f->c;
    int ok = c->n_slots == CGE_N_SLOTS && c->out_dim == CGE_FUSED_DIM &&
             c->n_experts == CGE_N_EXPERTS && c->top_k == CGE_TOP_K;
    for (int s = 0; ok && s < CGE_N_SLOTS; s++) {
        const struct cge_slot_info *si = cge_slot_get(s);
        ok = si && si->dim == c->slot_dims[s];
    }
    if (!ok)
        return cge__err(CGE_ERR_INVALID_DIM,
                        "fusion: weights for %d slots (D=%lld) -> %d experts, top-%d -> %lld; the "
                        "pipeline needs the %d table slots (D=%d) -> %d, top-%d -> %d",
                        c->n_slots, (long long)c->total_dim, c->n_experts, c->top_k,
                        (long long)c->out_dim, CGE_N_SLOTS, cge_total_dim(), CGE_N_EXPERTS,
                        CGE_TOP_K, CGE_FUSED_DIM);
    if (!in->vector) return cge__err(CGE_ERR_NOT_INITIALIZED, "fusion: empty concatenation");
    uint8_t present[CGE_N_SLOTS];
    for (int s = 0; s < CGE_N_SLOTS; s++)
        present[s] = (uint8_t)((in->present >> s) & 1u);
    return cge_fusion_forward(f, ctx, 1, in->vector, present, out->vector, out->expert_weights,
                              out->selected);
}

enum cge_status cge_fusion_set_routing(struct cge_fusion *f, double temperature, int top_k) {
    if (!f) return cge__err(CGE_ERR_INVALID_VALUE, "cge_fusion_set_routing: no model");
    if (!(temperature > 0) || !isfinite(temperature))
        return cge__err(CGE_ERR_INVALID_VALUE, "fusion temperature %g, expected a number > 0",
                        temperature);
    if (top_k < 1 || top_k > f->c.n_experts)
        return cge__err(CGE_ERR_INVALID_VALUE, "fusion top_k %d, expected 1..%d (num_experts)",
                        top_k, f->c.n_experts);
    f->c.temperature = (float)temperature;
    f->c.top_k = top_k;
    return CGE_OK;
}
