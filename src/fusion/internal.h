/*
 * internal.h: FuseMoE internals shared by fusemoe.c (model, forward) and train.c (backward,
 * optimizer): the model struct, the parameter layout and the forward workspace.
 *
 * Key decision: all fp32 parameters live in one contiguous buffer (params) addressed by
 * offsets, so that gradients, AdamW moments, clipping and checkpoints are flat loops over a
 * second buffer with the same offsets. One forward routine serves inference and training: the
 * workspace keeps every intermediate the backward pass needs.
 */
#ifndef CGE_FUSION_INTERNAL_H
#define CGE_FUSION_INTERNAL_H

#include "fusion/fusemoe.h"
#include "tensor/ops.h"

#include <math.h>
#include <stdint.h>

/* One named tensor of the layout. off = -1 when the fp32 copy is not kept (packed models). */
struct cge__fz_tensor {
    char name[48];
    int n_dim;
    int64_t shape[2];
    int64_t n;
    int64_t off;
    int decay; /* AdamW weight decay applies (matrices of linear layers) */
    int big;   /* input_proj / expert matrix: may be packed into a cge_linear */
};

/* Offsets (in floats) into params of each tensor (-1: not held in fp32). */
struct cge__fz_off {
    int64_t missing, gn_w, gn_b, gp_w, gp_b, gm_w, ip_w, ip_b, on_w, on_b;
    int64_t fc1_w[CGE_FUSION_MAX_EXPERTS], fc1_b[CGE_FUSION_MAX_EXPERTS];
    int64_t fc2_w[CGE_FUSION_MAX_EXPERTS], fc2_b[CGE_FUSION_MAX_EXPERTS];
};

struct cge_fusion {
    struct cge_fusemoe_config c;
    int64_t slot_off[CGE_FUSION_MAX_SLOTS + 1]; /* slot s spans [slot_off[s], slot_off[s+1]) */
    int n_tensors;
    struct cge__fz_tensor *t; /* (n_tensors) sorted by name */
    struct cge__fz_off o;
    float *params; /* all fp32 parameters (the big matrices only when has_master) */
    int64_t n_params;
    int has_master; /* fp32 input_proj/expert matrices present: trainable, savable */
    /* Packed layers for inference (NULL: use cge_sgemm on the fp32 master):
     * lin[0] input_proj, lin[1 + 2e] experts.e.fc1, lin[2 + 2e] experts.e.fc2. */
    struct cge_linear *lin;
    int n_lin;
};

/* Builds a model from opened weights (path: for messages) checked against config c. */
struct cge_weights;
enum cge_status cge__fusion_from_weights(const struct cge_fusemoe_config *c,
                                         const struct cge_weights *w, const char *path,
                                         enum cge_dtype dtype, struct cge_fusion **out);

/* Training-time options of one forward pass (NULL = inference). */
struct cge__fz_train {
    float gate_noise;
    float dropout;
    int use_capacity;
    uint64_t *rng;
};

/* The forward workspace: every intermediate, sized for cap_n items. */
struct cge__fz_work {
    int64_t cap_n;
    float *X;       /* (n, D) slot-normalized input with missing_embed */
    float *M;       /* (n, S) presence mask */
    float *xhat;    /* (n, D) gate LayerNorm normalized input */
    float *grstd;   /* (n) gate LayerNorm 1/sqrt(var+eps) */
    float *Z;       /* (n, D) gate LayerNorm output */
    float *dist;    /* (n, E) laplace distances ‖z − c_e‖ */
    float *P;       /* (n, E) gate distribution */
    float *Wt;      /* (n, k) renormalized top-k weights */
    int *sel;       /* (n, k) selected experts, larger weight first */
    int *row_of;    /* (n, k) row of the assignment in the expert-grouped buffers, -1 dropped */
    int *item_of;   /* (n·k) item of each row */
    int *choice_of; /* (n·k) top-k position of each row */
    int64_t e_off[CGE_FUSION_MAX_EXPERTS + 1]; /* expert e's rows: [e_off[e], e_off[e+1]) */
    float *Hpre;                               /* (n, H) input projection before GELU */
    float *Hb;                                 /* (n, H) after GELU (and dropout) */
    float *hmask; /* (n, H) dropout scale (training with dropout), else unused */
    float *Hg;    /* (n·k, H) gathered rows of Hb per expert */
    float *Apre;  /* (n·k, Hd) fc1 output before GELU */
    float *A;     /* (n·k, Hd) after GELU (and dropout) */
    float *amask; /* (n·k, Hd) dropout scale */
    float *B;     /* (n·k, O) expert outputs */
    float *Y;     /* (n, O) weighted sum */
    float *yhat;  /* (n, O) out LayerNorm normalized */
    float *ornd;  /* (n) out LayerNorm 1/sqrt(var+eps) */
    float *Out;   /* (n, O) out LayerNorm output */
    float *onorm; /* (n) ‖Out‖ clamped at 1e-12 */
    float *F;     /* (n, O) fused, unit length */
    int64_t dropped;
};

enum cge_status cge__fz_work_reserve(struct cge__fz_work *w, const struct cge_fusemoe_config *c,
                                     int64_t n, int training);
void cge__fz_work_free(struct cge__fz_work *w);
/* Validates the inputs and runs the forward pass into w (tr = NULL: inference). */
enum cge_status cge__fz_forward(const struct cge_fusion *f, struct cge__fz_work *w, int64_t n,
                                const float *x, const uint8_t *present,
                                const struct cge__fz_train *tr);

/* Deterministic random numbers (splitmix64) and Gaussians (Box-Muller). */
uint64_t cge__fz_rand(uint64_t *s);
double cge__fz_uniform(uint64_t *s); /* [0, 1) */
double cge__fz_gauss(uint64_t *s);

static inline float cge__fz_gelu(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
static inline float cge__fz_gelu_grad(float x) {
    return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
           x * 0.39894228040143268f * expf(-0.5f * x * x);
}

#endif /* CGE_FUSION_INTERNAL_H */
