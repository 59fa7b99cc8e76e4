/*
 * train.c: FuseMoE training: the losses (similarity preservation, load balance, optional
 * InfoNCE), the backward pass through every layer, global gradient clipping, AdamW, and the
 * optimizer checkpoint (optimizer.safetensors + trainer_state.json) that makes training
 * resumable.
 *
 * Key decision: the backward pass mirrors the forward's expert grouping, so every weight
 * gradient is a GEMM (cge_sgemm with transposes) over the rows routed to that expert; the
 * gradient buffer has the model's parameter layout, so clipping and AdamW are flat loops.
 */
#include "fusion/internal.h"

#include "core/core.h"
#include "io/weights.h"

#include <cjson/cJSON.h>
#include <math.h>
#ifdef __AVX512F__
#    include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cge_fusion_train_default_params(struct cge_fusion_train_params *p) {
    memset(p, 0, sizeof *p);
    p->lr = 0.0f; /* auto: 0.01 / sqrt(D), set by the trainer */
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->adam_eps = 1e-8f;
    p->weight_decay = 0.01f;
    p->max_grad_norm = 1.0f;
    p->gate_noise = 0.1f;
    p->dropout = 0.0f;
    p->use_capacity = 1;
    p->info_nce_coef = 1.0f;
    p->info_nce_temp = 0.05f;
    p->seed = 42;
}

struct cge_fusion_trainer {
    struct cge_fusion *f;
    struct cge_fusion_train_params p;
    float *grad, *m, *v; /* model layout */
    int64_t step;
    uint64_t rng;
    struct cge__fz_work w;
    int64_t cap_n; /* scratch below sized for cap_n items */
    double *T;     /* (n, n) similarity targets */
    float *dF, *dOut, *dY, *dWt, *dP, *dB, *dA, *dHg, *dHb, *dX, *dZ;
};

static void free_scratch(struct cge_fusion_trainer *t) {
    cge__free(t->T);
    float **fl[] = {&t->dF, &t->dOut, &t->dY,  &t->dWt, &t->dP, &t->dB,
                    &t->dA, &t->dHg,  &t->dHb, &t->dX,  &t->dZ};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
        cge__free_aligned(*fl[i]);
        *fl[i] = NULL;
    }
    t->T = NULL;
    t->cap_n = 0;
}

static enum cge_status reserve_scratch(struct cge_fusion_trainer *t, int64_t n) {
    if (n <= t->cap_n) return CGE_OK;
    free_scratch(t);
    const struct cge_fusemoe_config *c = &t->f->c;
    int64_t D = c->total_dim, E = c->n_experts, k = c->top_k, H = c->shared_dim, Hd = c->hidden_dim,
            O = c->out_dim, nk = n * k;
    t->T = cge__malloc((size_t)(n * n) * sizeof(double));
    struct {
        float **p;
        int64_t n;
    } fl[] = {{&t->dF, n * O},  {&t->dOut, n * O}, {&t->dY, n * O},   {&t->dWt, n * k},
              {&t->dP, n * E},  {&t->dB, nk * O},  {&t->dA, nk * Hd}, {&t->dHg, nk * H},
              {&t->dHb, n * H}, {&t->dX, n * D},   {&t->dZ, n * D}};
    int bad = !t->T;
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
        *fl[i].p = cge__malloc_aligned((size_t)fl[i].n * sizeof(float));
        bad |= !*fl[i].p;
    }
    if (bad) {
        free_scratch(t);
        return cge__err(CGE_ERR_NOMEM, "fusion: training scratch for %lld items", (long long)n);
    }
    t->cap_n = n;
    return CGE_OK;
}

enum cge_status cge_fusion_trainer_new(struct cge_fusion *f,
                                       const struct cge_fusion_train_params *p,
                                       struct cge_fusion_trainer **out) {
    *out = NULL;
    if (!f->has_master)
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "fusion: cannot train a packed (bf16/i8) model; load it as f32");
    struct cge_fusion_trainer *t = cge__calloc(1, sizeof *t);
    if (!t) return cge__err(CGE_ERR_NOMEM, "fusion: trainer");
    t->f = f;
    if (p)
        t->p = *p;
    else
        cge_fusion_train_default_params(&t->p);
    t->rng = t->p.seed;
    if (!(t->p.lr > 0)) t->p.lr = (float)(0.01 / sqrt((double)f->c.total_dim));
    size_t bytes = (size_t)(f->n_params ? f->n_params : 1) * sizeof(float);
    t->grad = cge__malloc_aligned(bytes);
    t->m = cge__malloc_aligned(bytes);
    t->v = cge__malloc_aligned(bytes);
    if (!t->grad || !t->m || !t->v) {
        cge_fusion_trainer_free(t);
        return cge__err(CGE_ERR_NOMEM, "fusion: optimizer state (%.1f MB)",
                        3.0 * (double)bytes / 1e6);
    }
    memset(t->grad, 0, bytes);
    memset(t->m, 0, bytes);
    memset(t->v, 0, bytes);
    *out = t;
    return CGE_OK;
}

void cge_fusion_trainer_free(struct cge_fusion_trainer *t) {
    if (!t) return;
    cge__free_aligned(t->grad);
    cge__free_aligned(t->m);
    cge__free_aligned(t->v);
    cge__fz_work_free(&t->w);
    free_scratch(t);
    cge__free(t);
}

int64_t cge_fusion_trainer_steps(const struct cge_fusion_trainer *t) {
    return t->step;
}

const float *cge_fusion_trainer_grad_of(const struct cge_fusion_trainer *t, int i) {
    if (i < 0 || i >= t->f->n_tensors) return NULL;
    return t->grad + t->f->t[i].off;
}

/* Backward of a LayerNorm y = xhat·g + b over rows; adds parameter gradients and writes dx. */
static void layernorm_bwd(const float *dy, const float *xhat, const float *rstd, const float *g,
                          int64_t rows, int64_t d, float *dg, float *db, float *dx) {
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * d, *xh = xhat + r * d;
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < d; j++) {
            double dh = (double)dyr[j] * g[j];
            s1 += dh;
            s2 += dh * xh[j];
            dg[j] += dyr[j] * xh[j];
            db[j] += dyr[j];
        }
        s1 /= (double)d;
        s2 /= (double)d;
        for (int64_t j = 0; j < d; j++) {
            double dh = (double)dyr[j] * g[j];
            dx[r * d + j] = (float)(rstd[r] * (dh - s1 - xh[j] * s2));
        }
    }
}

/* Losses and dF (gradient of the total loss with respect to the fused vectors). */
static enum cge_status losses(struct cge_fusion_trainer *t, int64_t n, const float *x,
                              const uint8_t *present, const int64_t *pair,
                              struct cge_fusion_stats *s) {
    const struct cge_fusemoe_config *c = &t->f->c;
    const int64_t O = c->out_dim, E = c->n_experts, k = c->top_k;
    struct cge__fz_work *w = &t->w;
    enum cge_status st = cge_fusion_similarity_targets(c, n, x, present, t->T);
    if (st) return st;
    memset(t->dF, 0, (size_t)(n * O) * sizeof(float));
    double sim = 0;
    if (n > 1) {
        double norm = 1.0 / ((double)n * (double)(n - 1));
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                if (i == j) continue;
                const float *fi = w->F + i * O, *fj = w->F + j * O;
                double d = 0;
                for (int64_t q = 0; q < O; q++)
                    d += (double)fi[q] * fj[q];
                double r = d - t->T[i * n + j];
                sim += r * r;
                /* (i,j) and (j,i) both hold this pair: each contributes 2·r·F_other. */
                float g = (float)(2.0 * r * norm);
                float *dfi = t->dF + i * O;
                for (int64_t q = 0; q < O; q++)
                    dfi[q] += g * fj[q];
                float *dfj = t->dF + j * O;
                for (int64_t q = 0; q < O; q++)
                    dfj[q] += g * fi[q];
            }
        sim *= norm;
    }
    /* Load balance: f_e from the selections (no gradient), P_e the mean probability. */
    double fe[CGE_FUSION_MAX_EXPERTS] = {0}, Pe[CGE_FUSION_MAX_EXPERTS] = {0};
    for (int64_t a = 0; a < n * k; a++)
        fe[w->sel[a]] += 1.0 / (double)(n * k);
    for (int64_t i = 0; i < n; i++)
        for (int64_t e = 0; e < E; e++)
            Pe[e] += w->P[i * E + e] / (double)n;
    double lb = 0;
    for (int64_t e = 0; e < E; e++)
        lb += fe[e] * Pe[e];
    lb *= (double)E;
    for (int64_t i = 0; i < n; i++)
        for (int64_t e = 0; e < E; e++)
            t->dP[i * E + e] = (float)(c->load_balance_coef * (double)E * fe[e] / (double)n);
    /* InfoNCE over labelled pairs present in the batch. */
    double nce = 0;
    int64_t n_pos = 0;
    if (pair && t->p.info_nce_coef > 0) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                if (i != j && pair[i] >= 0 && pair[i] == pair[j]) n_pos++;
        if (n_pos) {
            double tau = t->p.info_nce_temp, coef = t->p.info_nce_coef / (double)n_pos;
            double *sc = cge__malloc((size_t)n * sizeof(double));
            if (!sc) return cge__err(CGE_ERR_NOMEM, "fusion: InfoNCE");
            for (int64_t i = 0; i < n; i++) {
                int64_t pos = 0;
                for (int64_t j = 0; j < n; j++)
                    pos += j != i && pair[i] >= 0 && pair[j] == pair[i];
                if (!pos) continue;
                const float *fi = w->F + i * O;
                double mx = -INFINITY, z = 0;
                for (int64_t j = 0; j < n; j++) {
                    if (j == i) continue;
                    double d = 0;
                    for (int64_t q = 0; q < O; q++)
                        d += (double)fi[q] * w->F[j * O + q];
                    sc[j] = d / tau;
                    mx = fmax(mx, sc[j]);
                }
                for (int64_t j = 0; j < n; j++)
                    if (j != i) z += exp(sc[j] - mx);
                double lse = mx + log(z);
                for (int64_t j = 0; j < n; j++) {
                    if (j == i) continue;
                    int is_pos = pair[j] == pair[i];
                    if (is_pos) nce += lse - sc[j];
                    /* d/dS_ij of Σ_pos (lse − S_ip/τ): pos·softmax_j/τ − [j positive]/τ */
                    double g = coef * ((double)pos * exp(sc[j] - lse) - is_pos) / tau;
                    float *dfi = t->dF + i * O, *dfj = t->dF + j * O;
                    const float *fj = w->F + j * O;
                    for (int64_t q = 0; q < O; q++) {
                        dfi[q] += (float)(g * fj[q]);
                        dfj[q] += (float)(g * fi[q]);
                    }
                }
            }
            cge__free(sc);
            nce /= (double)n_pos;
        }
    }
    s->similarity_loss = sim;
    s->load_balance_loss = lb;
    s->info_nce_loss = nce;
    s->total_loss = sim + c->load_balance_coef * lb + (n_pos ? t->p.info_nce_coef * nce : 0);
    for (int64_t e = 0; e < E; e++)
        s->load[e] = fe[e];
    s->dropped = w->dropped;
    return CGE_OK;
}

enum cge_status cge_fusion_trainer_grad(struct cge_fusion_trainer *t, int64_t n, const float *x,
                                        const uint8_t *present, const int64_t *pair, int training,
                                        struct cge_fusion_stats *stats) {
    struct cge_fusion *f = t->f;
    const struct cge_fusemoe_config *c = &f->c;
    const int64_t D = c->total_dim, S = c->n_slots, E = c->n_experts, k = c->top_k,
                  H = c->shared_dim, Hd = c->hidden_dim, O = c->out_dim;
    struct cge_fusion_stats s_local;
    struct cge_fusion_stats *s = stats ? stats : &s_local;
    memset(s, 0, sizeof *s);
    struct cge__fz_train tr = {t->p.gate_noise, t->p.dropout, t->p.use_capacity, &t->rng};
    if (t->p.dropout < 0 || t->p.dropout >= 1)
        return cge__err(CGE_ERR_INVALID_VALUE, "fusion: dropout %g outside [0, 1)",
                        (double)t->p.dropout);
    enum cge_status st = cge__fz_forward(f, &t->w, n, x, present, training ? &tr : NULL);
    if (st) return st;
    if ((st = reserve_scratch(t, n))) return st;
    if ((st = losses(t, n, x, present, pair, s))) return st;
    struct cge__fz_work *w = &t->w;
    const float *p = f->params;
    float *G = t->grad;
    /* Zero the small tensors; each large matrix's gradient is written by exactly one GEMM with
     * beta = 0 (or zeroed below when its expert received no rows). */
    for (int i = 0; i < f->n_tensors; i++)
        if (!f->t[i].big) memset(G + f->t[i].off, 0, (size_t)f->t[i].n * sizeof(float));

    /* L2 normalization: fused = Out / ‖Out‖. */
    for (int64_t i = 0; i < n; i++) {
        const float *fi = w->F + i * O, *dfi = t->dF + i * O;
        double dot = 0;
        for (int64_t q = 0; q < O; q++)
            dot += (double)fi[q] * dfi[q];
        for (int64_t q = 0; q < O; q++)
            t->dOut[i * O + q] = (float)((dfi[q] - fi[q] * dot) / w->onorm[i]);
    }
    layernorm_bwd(t->dOut, w->yhat, w->ornd, p + f->o.on_w, n, O, G + f->o.on_w, G + f->o.on_b,
                  t->dY);
    /* Experts. */
    int64_t rows = w->e_off[E];
    memset(t->dWt, 0, (size_t)(n * k) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = w->item_of[r], j = w->choice_of[r];
        float wt = w->Wt[i * k + j];
        const float *dy = t->dY + i * O, *b = w->B + r * O;
        float *db = t->dB + r * O;
        double dw = 0;
        for (int64_t q = 0; q < O; q++) {
            db[q] = wt * dy[q];
            dw += (double)b[q] * dy[q];
        }
        t->dWt[i * k + j] = (float)dw;
    }
    memset(t->dHb, 0, (size_t)(n * H) * sizeof(float));
    for (int64_t e = 0; e < E; e++) {
        int64_t r0 = w->e_off[e], m = w->e_off[e + 1] - r0;
        if (!m) {
            memset(G + f->o.fc1_w[e], 0, (size_t)(Hd * H) * sizeof(float));
            memset(G + f->o.fc2_w[e], 0, (size_t)(O * Hd) * sizeof(float));
            continue;
        }
        const float *dB = t->dB + r0 * O, *A = w->A + r0 * Hd, *Hg = w->Hg + r0 * H;
        float *dA = t->dA + r0 * Hd, *dHg = t->dHg + r0 * H;
        cge_sgemm(1, 0, O, Hd, m, 1.0f, dB, O, A, Hd, 0.0f, G + f->o.fc2_w[e], Hd);
        for (int64_t r = 0; r < m; r++)
            for (int64_t q = 0; q < O; q++)
                G[f->o.fc2_b[e] + q] += dB[r * O + q];
        cge_sgemm(0, 0, m, Hd, O, 1.0f, dB, O, p + f->o.fc2_w[e], Hd, 0.0f, dA, Hd);
        const float *Ap = w->Apre + r0 * Hd;
        for (int64_t q = 0; q < m * Hd; q++) {
            float g = dA[q] * cge__fz_gelu_grad(Ap[q]);
            if (tr.dropout > 0 && training) g *= w->amask[r0 * Hd + q];
            dA[q] = g;
        }
        cge_sgemm(1, 0, Hd, H, m, 1.0f, dA, Hd, Hg, H, 0.0f, G + f->o.fc1_w[e], H);
        for (int64_t r = 0; r < m; r++)
            for (int64_t q = 0; q < Hd; q++)
                G[f->o.fc1_b[e] + q] += dA[r * Hd + q];
        cge_sgemm(0, 0, m, H, Hd, 1.0f, dA, Hd, p + f->o.fc1_w[e], H, 0.0f, dHg, H);
        for (int64_t r = 0; r < m; r++) {
            float *dh = t->dHb + (int64_t)w->item_of[r0 + r] * H;
            for (int64_t q = 0; q < H; q++)
                dh[q] += dHg[r * H + q];
        }
    }
    /* Shared input projection. */
    for (int64_t q = 0; q < n * H; q++) {
        float g = t->dHb[q] * cge__fz_gelu_grad(w->Hpre[q]);
        if (tr.dropout > 0 && training) g *= w->hmask[q];
        t->dHb[q] = g;
    }
    cge_sgemm(1, 0, H, D, n, 1.0f, t->dHb, H, w->X, D, 0.0f, G + f->o.ip_w, D);
    for (int64_t i = 0; i < n; i++)
        for (int64_t q = 0; q < H; q++)
            G[f->o.ip_b + q] += t->dHb[i * H + q];
    cge_sgemm(0, 0, n, D, H, 1.0f, t->dHb, H, p + f->o.ip_w, D, 0.0f, t->dX, D);
    /* Gate: renormalized top-k weights and the load-balance term → p → logits. */
    for (int64_t i = 0; i < n; i++) {
        const float *P = w->P + i * E;
        float *dP = t->dP + i * E;
        double tot = 0, sw = 0;
        for (int64_t j = 0; j < k; j++)
            tot += P[w->sel[i * k + j]];
        for (int64_t j = 0; j < k; j++)
            sw += (double)t->dWt[i * k + j] * w->Wt[i * k + j];
        for (int64_t j = 0; j < k; j++)
            dP[w->sel[i * k + j]] += (float)((t->dWt[i * k + j] - sw) / tot);
        double pd = 0;
        for (int64_t e = 0; e < E; e++)
            pd += (double)P[e] * dP[e];
        for (int64_t e = 0; e < E; e++)
            dP[e] = (float)(P[e] * (dP[e] - pd) / c->temperature);
    }
    float *dlog = t->dP;
    for (int64_t i = 0; i < n; i++)
        for (int64_t e = 0; e < E; e++) {
            G[f->o.gp_b + e] += dlog[i * E + e];
            for (int64_t q = 0; q < S; q++)
                G[f->o.gm_w + e * S + q] += dlog[i * E + e] * w->M[i * S + q];
        }
    if (c->gating == CGE_FUSION_GATE_SOFTMAX) {
        cge_sgemm(1, 0, E, D, n, 1.0f, dlog, E, w->Z, D, 1.0f, G + f->o.gp_w, D);
        cge_sgemm(0, 0, n, D, E, 1.0f, dlog, E, p + f->o.gp_w, D, 0.0f, t->dZ, D);
    } else {
        memset(t->dZ, 0, (size_t)(n * D) * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            for (int64_t e = 0; e < E; e++) {
                float dd = w->dist[i * E + e];
                if (!(dd > 0)) continue; /* the distance has no gradient at 0 */
                float g = dlog[i * E + e] / dd;
                const float *z = w->Z + i * D, *ce = p + f->o.gp_w + e * D;
                float *dz = t->dZ + i * D, *dc = G + f->o.gp_w + e * D;
                for (int64_t q = 0; q < D; q++) {
                    float diff = z[q] - ce[q];
                    dz[q] -= g * diff;
                    dc[q] += g * diff;
                }
            }
    }
    /* Gate LayerNorm backward into a second dX, summed with the projection's. */
    float *dX2 = t->dZ; /* reuse after computing: layernorm_bwd reads dZ row by row */
    for (int64_t i = 0; i < n; i++) {
        layernorm_bwd(t->dZ + i * D, w->xhat + i * D, w->grstd + i, p + f->o.gn_w, 1, D,
                      G + f->o.gn_w, G + f->o.gn_b, dX2 + i * D);
    }
    for (int64_t q = 0; q < n * D; q++)
        t->dX[q] += dX2[q];
    /* missing_embed receives the gradient of the slots it stood in for. */
    for (int64_t i = 0; i < n; i++)
        for (int64_t sl = 0; sl < S; sl++) {
            if (present[i * S + sl]) continue;
            for (int64_t q = f->slot_off[sl]; q < f->slot_off[sl + 1]; q++)
                G[f->o.missing + q] += t->dX[i * D + q];
        }
    double gn = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const float *g = G + f->t[i].off;
        for (int64_t q = 0; q < f->t[i].n; q++)
            gn += (double)g[q] * g[q];
    }
    s->grad_norm = sqrt(gn);
    return CGE_OK;
}

/* ==== optimizer ============================================================================== */
/* AdamW on n elements (decoupled decay, bias-corrected moments):
 * w -= decay·w; w -= step_size·m / (sqrt(v)·inv_sbc2 + eps). AVX-512 when the build has it. */
static void adamw(float *w, const float *g, float *m, float *v, int64_t n, float clip, float b1,
                  float b2, float step_size, float inv_sbc2, float eps, float decay) {
    int64_t q = 0;
#ifdef __AVX512F__
    const __m512 vclip = _mm512_set1_ps(clip), vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2),
                 v1b1 = _mm512_set1_ps(1.0f - b1), v1b2 = _mm512_set1_ps(1.0f - b2),
                 vstep = _mm512_set1_ps(step_size), vinv = _mm512_set1_ps(inv_sbc2),
                 veps = _mm512_set1_ps(eps), vdec = _mm512_set1_ps(decay);
    for (; q + 16 <= n; q += 16) {
        __m512 gq = _mm512_mul_ps(_mm512_loadu_ps(g + q), vclip);
        __m512 mq = _mm512_fmadd_ps(vb1, _mm512_loadu_ps(m + q), _mm512_mul_ps(v1b1, gq));
        __m512 vq = _mm512_fmadd_ps(vb2, _mm512_loadu_ps(v + q),
                                    _mm512_mul_ps(v1b2, _mm512_mul_ps(gq, gq)));
        _mm512_storeu_ps(m + q, mq);
        _mm512_storeu_ps(v + q, vq);
        __m512 wq = _mm512_loadu_ps(w + q);
        wq = _mm512_fnmadd_ps(vdec, wq, wq);
        __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vq), vinv, veps);
        wq = _mm512_fnmadd_ps(vstep, _mm512_div_ps(mq, den), wq);
        _mm512_storeu_ps(w + q, wq);
    }
#endif
    for (; q < n; q++) {
        float gq = g[q] * clip;
        m[q] = b1 * m[q] + (1.0f - b1) * gq;
        v[q] = b2 * v[q] + (1.0f - b2) * gq * gq;
        w[q] -= decay * w[q];
        w[q] -= step_size * m[q] / (sqrtf(v[q]) * inv_sbc2 + eps);
    }
}

enum cge_status cge_fusion_trainer_step(struct cge_fusion_trainer *t, int64_t n, const float *x,
                                        const uint8_t *present, const int64_t *pair,
                                        struct cge_fusion_stats *stats) {
    struct cge_fusion_stats s_local;
    struct cge_fusion_stats *s = stats ? stats : &s_local;
    enum cge_status st = cge_fusion_trainer_grad(t, n, x, present, pair, 1, s);
    if (st) return st;
    if (!isfinite(s->grad_norm) || !isfinite(s->total_loss))
        return cge__err(CGE_ERR_FUSION, "fusion: non-finite loss or gradient at step %lld",
                        (long long)t->step);
    struct cge_fusion *f = t->f;
    const struct cge_fusion_train_params *p = &t->p;
    float clip = 1.0f;
    if (p->max_grad_norm > 0 && s->grad_norm > p->max_grad_norm)
        clip = (float)(p->max_grad_norm / s->grad_norm);
    t->step++;
    double bc1 = 1.0 - pow(p->beta1, (double)t->step), bc2 = 1.0 - pow(p->beta2, (double)t->step);
    float lr = p->lr, b1 = p->beta1, b2 = p->beta2;
    float step_size = (float)(lr / bc1), inv_sbc2 = (float)(1.0 / sqrt(bc2));
    const int64_t chunk = (int64_t)1 << 16;
    for (int i = 0; i < f->n_tensors; i++) {
        const struct cge__fz_tensor *tt = &f->t[i];
        float *w = f->params + tt->off, *g = t->grad + tt->off, *m = t->m + tt->off,
              *v = t->v + tt->off;
        float decay = tt->decay ? lr * p->weight_decay : 0.0f;
        int64_t n_chunks = (tt->n + chunk - 1) / chunk;
#ifdef _OPENMP
#    pragma omp parallel for schedule(static) num_threads(cge_get_threads()) if (n_chunks > 1)
#endif
        for (int64_t ch = 0; ch < n_chunks; ch++) {
            int64_t q0 = ch * chunk, len = tt->n - q0 < chunk ? tt->n - q0 : chunk;
            adamw(w + q0, g + q0, m + q0, v + q0, len, clip, b1, b2, step_size, inv_sbc2,
                  p->adam_eps, decay);
        }
    }
    return CGE_OK;
}

/* ==== checkpoints ============================================================================ */
enum cge_status cge__fz_save_params(const struct cge_fusion *f, const float *base, const char *path,
                                    const char *prefix, const char *format);

enum cge_status cge_fusion_trainer_save(const struct cge_fusion_trainer *t, const char *dir) {
    enum cge_status st = cge_fusion_save(t->f, dir);
    if (st) return st;
    char path[4096];
    if ((st = cge__path_join(path, sizeof path, dir, "optimizer.safetensors"))) return st;
    /* Both AdamW moments in one file, named "m.<name>" and "v.<name>". */
    struct cge_fusion *f = t->f;
    int n = f->n_tensors;
    struct cge__st_entry *e = cge__calloc((size_t)(2 * n), sizeof *e);
    char(*names)[64] = cge__calloc((size_t)(2 * n), sizeof *names);
    if (!e || !names) {
        cge__free(e);
        cge__free(names);
        return cge__err(CGE_ERR_NOMEM, "fusion: save optimizer");
    }
    for (int i = 0; i < 2 * n; i++) {
        const struct cge__fz_tensor *tt = &f->t[i % n];
        snprintf(names[i], sizeof names[i], "%s.%s", i < n ? "m" : "v", tt->name);
        e[i].name = names[i];
        e[i].n_dim = tt->n_dim;
        e[i].shape[0] = tt->shape[0];
        e[i].shape[1] = tt->shape[1];
        e[i].data = (i < n ? t->m : t->v) + tt->off;
    }
    st = cge__st_write_f32(path, e, 2 * n, "cge-fusion-adamw");
    cge__free(e);
    cge__free(names);
    if (st) return st;
    if ((st = cge__path_join(path, sizeof path, dir, "trainer_state.json"))) return st;
    FILE *fp = fopen(path, "wb");
    if (!fp) return cge__err(CGE_ERR_IO, "%s: cannot open for writing", path);
    int bad = fprintf(fp, "{\"step\": %lld, \"rng\": \"%016llx\"}\n", (long long)t->step,
                      (unsigned long long)t->rng) < 0;
    if (fclose(fp)) bad = 1;
    return bad ? cge__err(CGE_ERR_IO, "%s: write failed", path) : CGE_OK;
}

enum cge_status cge_fusion_trainer_resume(struct cge_fusion_trainer *t, const char *dir,
                                          int *resumed) {
    if (resumed) *resumed = 0;
    char path[4096];
    enum cge_status st = cge__path_join(path, sizeof path, dir, "trainer_state.json");
    if (st) return st;
    if (!cge__file_exists(path)) return CGE_OK;
    cJSON *js = NULL;
    if ((st = cge__json_read_file(path, &js))) return st;
    const cJSON *stp = cJSON_GetObjectItemCaseSensitive(js, "step");
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(js, "rng");
    if (!cJSON_IsNumber(stp) || stp->valuedouble < 0 || stp->valuedouble > 1e15) {
        cJSON_Delete(js);
        return cge__err(CGE_ERR_SERIALIZATION, "%s: \"step\" must be a non-negative integer", path);
    }
    int64_t step = (int64_t)stp->valuedouble;
    uint64_t r = t->rng;
    if (cJSON_IsString(rng)) r = strtoull(rng->valuestring, NULL, 16);
    cJSON_Delete(js);
    if ((st = cge__path_join(path, sizeof path, dir, "optimizer.safetensors"))) return st;
    struct cge_weights *w = NULL;
    if ((st = cge_weights_open(path, &w))) return st;
    struct cge_fusion *f = t->f;
    for (int i = 0; i < 2 * f->n_tensors && !st; i++) {
        const struct cge__fz_tensor *tt = &f->t[i % f->n_tensors];
        char name[64];
        snprintf(name, sizeof name, "%s.%s", i < f->n_tensors ? "m" : "v", tt->name);
        const struct cge_tensor_info *ti = cge_weights_find(w, name);
        if (!ti || ti->dtype != CGE_DTYPE_F32 || ti->n_elem != tt->n) {
            st = cge__err(CGE_ERR_MODEL_LOAD, "%s: tensor '%s' missing or of the wrong shape", path,
                          name);
            break;
        }
        st = cge_convert_to_f32(ti->data, ti->dtype, tt->n,
                                (i < f->n_tensors ? t->m : t->v) + tt->off);
    }
    cge_weights_free(w);
    if (st) return st;
    t->step = step;
    t->rng = r;
    if (resumed) *resumed = 1;
    return CGE_OK;
}
