/*
 * fusemoe.h: FuseMoE, the mixture-of-experts layer that fuses the concatenated per-slot
 * embeddings (13184-d in production, some slots missing) into one unit-length vector, with the
 * routing exposed; plus its training (backward passes, AdamW, checkpoints).
 *
 * The math is tests/fixtures/fusion/README.md, exactly:
 *   x = concat_s( present ? v_s/max(‖v_s‖,1e-12) : missing_embed[slot s] ),  m_s = present
 *   z = LayerNorm(x; gate.norm)                         (eps = layer_norm_eps)
 *   logits = gate.proj.weight·z + gate.proj.bias        ("softmax" gating), or
 *   logits_e = −‖z − gate.proj.weight[e]‖ + bias[e]     ("laplace" gating)
 *   logits += gate.mask_proj.weight·m ; p = softmax(logits / temperature)
 *   top-k experts by p (ties: the lower expert index wins), w = p[top] / Σ p[top]
 *   h = GELU_erf(input_proj·x + b) (shared by all experts)
 *   y = Σ_top w_e·(fc2_e·GELU_erf(fc1_e·h + b1_e) + b2_e)
 *   fused = L2normalize(LayerNorm(y; out_norm))
 * At inference there is no capacity limit, no noise and no dropout: an item's result never
 * depends on the rest of its batch (the batch path gives the same numbers as the single path).
 *
 * Weight layout (a folder): config.json (struct cge_fusemoe_config, keys as in the fixtures) and
 * model.safetensors with the tensors missing_embed (D), gate.norm.{weight,bias} (D),
 * gate.proj.weight (E, D), gate.proj.bias (E), gate.mask_proj.weight (E, S),
 * input_proj.weight (H, D), input_proj.bias (H), experts.e.fc1.weight (Hd, H),
 * experts.e.fc1.bias (Hd), experts.e.fc2.weight (O, Hd), experts.e.fc2.bias (O),
 * out_norm.{weight,bias} (O). Training adds optimizer.safetensors (AdamW moments "m.<name>",
 * "v.<name>") and trainer_state.json ({"step": n}) so that training can resume.
 *
 * Deterministic initialization (cge_fusion_new; `cge fusion init`), usable before any training:
 * from a seed (splitmix64; Box-Muller or variance-matched uniform), a shared random projection
 * chain  input_proj = α·Q1 (H×D), fc1 = 2·Q2 (Hd×H), fc2 = 2·Q3 (O×Hd), zero biases,
 * where the Q have orthonormal rows (Gram-Schmidt of a Gaussian when the matrix is small; when
 * n_out²·n_in > 2^31, i.i.d. uniform entries of variance 1/n_out, which preserve inner products
 * in expectation). α keeps the pre-activations small (spread ≈ 0.1), where GELU(u) ≈ u/2 (the
 * factor 2 of the next layer undoes the 1/2), so y ≈ Q3·Q2·α·Q1·x for every expert: the fused
 * cosine of two items ≈ the cosine of their slot-normalized concatenations ≈ the ensemble's
 * mean per-slot cosine (Spearman 0.93 on the synthetic test data before any training).
 * Activations stay near zero-mean, which keeps Adam's first steps from shifting every
 * pre-activation at once (an offset-linearized variant, GELU(3 + u), lost its initialization in
 * one step at production size). Each expert is the shared chain plus its own 5 % uniform
 * perturbation, so experts can specialize; missing_embed = 0; gate LayerNorm = identity;
 * gate.proj.weight ~ N(0, 0.02²) (softmax weights or laplace centres); gate biases and
 * mask_proj = 0; out_norm identity.
 *
 * Thread safety: a struct cge_fusion is read-only after load/new and may be shared by threads
 * for inference; a struct cge_fusion_ctx must not be used by two threads at once (one per
 * worker). A trainer mutates its model: nothing else may use that model while it trains.
 */
#ifndef CGE_FUSION_FUSEMOE_H
#define CGE_FUSION_FUSEMOE_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

#define CGE_FUSION_MAX_SLOTS   64
#define CGE_FUSION_MAX_EXPERTS 64

/* ==== configuration ========================================================================== */
enum cge_fusion_gating { CGE_FUSION_GATE_SOFTMAX = 0, CGE_FUSION_GATE_LAPLACE = 1 };

struct cge_fusemoe_config {
    int n_slots;                         /* S: "slot_dims" length */
    int slot_dims[CGE_FUSION_MAX_SLOTS]; /* "slot_dims": d_s */
    int64_t total_dim;                   /* D = Σ d_s (derived) */
    int n_experts;                       /* E: "num_experts" */
    int top_k;                           /* k: "top_k" (1..E) */
    int64_t shared_dim;                  /* H: "shared_dim", input_proj output (default Hd) */
    int64_t hidden_dim;                  /* Hd: "expert_hidden_dim" */
    int64_t out_dim;                     /* O: "output_dim" */
    enum cge_fusion_gating gating;       /* "gating": "softmax" | "laplace" */
    float temperature;                   /* "temperature" */
    float eps;                           /* "layer_norm_eps" */
    float load_balance_coef;             /* "load_balance_coef" */
    float capacity_factor;               /* "capacity_factor" (training only) */
};

/* Production defaults: the twelve slots of cge's table (dims from cge_slot_get), 8 experts,
 * top-2, 4096 shared, 4096 hidden, 1536 out, softmax gating, temperature 1, eps 1e-5,
 * load-balance 0.01, capacity 1.25. */
void cge_fusemoe_config_default(struct cge_fusemoe_config *c);
/* Parses config JSON over the defaults (every key optional) and validates it. Errors name the
 * key and the value ("<label>: num_experts = 0, expected 1..64"). */
enum cge_status cge_fusemoe_config_parse(const char *json, size_t len, const char *label,
                                         struct cge_fusemoe_config *out);
enum cge_status cge_fusemoe_config_load(const char *path, struct cge_fusemoe_config *out);
/* Writes config.json (the fixture keys). */
enum cge_status cge_fusemoe_config_save(const struct cge_fusemoe_config *c, const char *path);
/* Number of parameters of a model with this config. */
int64_t cge_fusemoe_config_n_params(const struct cge_fusemoe_config *c);

/* ==== model ================================================================================== */
struct cge_fusion;

/* A model with the deterministic initialization described above (seed 0 is a valid seed). */
enum cge_status cge_fusion_new(const struct cge_fusemoe_config *c, uint64_t seed,
                               struct cge_fusion **out);
/* Loads a weight folder (config.json + model.safetensors). `dtype` is the storage of the large
 * matrices for inference: CGE_DTYPE_F32 keeps fp32 master weights (trainable); CGE_DTYPE_BF16
 * or CGE_DTYPE_I8 packs input_proj and the experts into cge_linear layers and drops the fp32
 * copies (inference only; a trainer refuses such a model). Every tensor's shape is checked
 * against the config. On failure *out is NULL and cge_errmsg() says what disagreed. */
enum cge_status cge_fusion_load(const char *dir, enum cge_dtype dtype, struct cge_fusion **out);
/* Writes config.json + model.safetensors into dir (created if needed); fp32 models only. */
enum cge_status cge_fusion_save(const struct cge_fusion *f, const char *dir);
void cge_fusion_free(struct cge_fusion *f);
const struct cge_fusemoe_config *cge_fusion_get_config(const struct cge_fusion *f);
/* Sets the gate's temperature and top_k (the configuration's fusion section overrides the
 * folder's values). Call before the model is shared. */
enum cge_status cge_fusion_set_routing(struct cge_fusion *f, double temperature, int top_k);
/* Re-packs a fp32 model's large matrices into `dtype` cge_linear storage (F32/BF16/I8) for
 * faster inference, keeping the fp32 master (so memory grows). Used by the benchmark. */
enum cge_status cge_fusion_pack(struct cge_fusion *f, enum cge_dtype dtype);

/* Named parameter tensors (fp32 master weights), in file order (sorted by name).
 * n_tensors is the count; NULL outside range or for a non-fp32 (packed-only) model. */
struct cge_fusion_param {
    const char *name;
    int n_dim;
    int64_t shape[2];
    int64_t n;   /* elements */
    float *data; /* into the model's parameter buffer */
};
int cge_fusion_n_tensors(const struct cge_fusion *f);
enum cge_status cge_fusion_tensor(const struct cge_fusion *f, int i, struct cge_fusion_param *out);

/* ==== inference ==============================================================================
 * An item is the concatenation x (D floats, slot s at offset Σ_{t<s} d_t; values of missing
 * slots are ignored) and its presence mask (S bytes, nonzero = present). Present slots must be
 * finite (CGE_ERR_INVALID_VALUE otherwise) and at least one slot must be present
 * (CGE_ERR_FUSION "no slot present"). */
struct cge_fusion_ctx; /* scratch memory for forward passes; grows to the largest batch seen */
enum cge_status cge_fusion_ctx_new(struct cge_fusion_ctx **out);
void cge_fusion_ctx_free(struct cge_fusion_ctx *ctx);

/* Forward for n items: x (n, D), present (n, S). Results go to caller buffers:
 * emb (n, O) unit length, gate (n, E) the full distribution p (may be NULL),
 * selected (n, k) expert indices, larger weight first (may be NULL).
 * The batch path runs the input projection as one GEMM over all items, then each expert's
 * fc1/fc2 as GEMMs over the items routed to it. */
enum cge_status cge_fusion_forward(const struct cge_fusion *f, struct cge_fusion_ctx *ctx,
                                   int64_t n, const float *x, const uint8_t *present, float *emb,
                                   float *gate, int *selected);

/* Fuses one concatenation of the pipeline (cge.h records) with a model of the production
 * layout: its slots must be the model table's (same count and dims), out_dim CGE_FUSED_DIM,
 * n_experts CGE_N_EXPERTS and top_k CGE_TOP_K, else CGE_ERR_INVALID_DIM. Fills out->vector,
 * expert_weights and selected; leaves latency_us and content_hash alone. Missing slots are the
 * clear bits of in->present; no bit set is CGE_ERR_FUSION. */
enum cge_status cge_fusion_fuse(const struct cge_fusion *f, struct cge_fusion_ctx *ctx,
                                const struct cge_concat_embedding *in,
                                struct cge_fused_embedding *out);

/* Parses one `{"slots": [vector or null, ...], "pair": id}` line against a config into x (D)
 * and present (S). "pair" (optional; an integer ≥ 0 or a string, hashed) goes to *pair, else
 * -1 (pair may be NULL). Errors: wrong slot count or dimension, a non-number, a non-finite
 * value, all slots missing — each with a one-line message naming the slot. */
enum cge_status cge_fusion_parse_item(const struct cge_fusemoe_config *c, const char *line,
                                      size_t len, float *x, uint8_t *present, int64_t *pair);

/* ==== training ===============================================================================
 * Losses (README): similarity = mean over ordered pairs i≠j of (fused_i·fused_j − T_ij)², with
 * T_ij the mean over slots present in both of cos(v_i,s, v_j,s) (0 if none shared);
 * load_balance = E·Σ_e f_e·P_e (f: fraction of the N·k selections, no gradient; P: mean p);
 * total = similarity + load_balance_coef·load_balance + info_nce_coef·info_nce, where the
 * InfoNCE term (only when some items carry the same "pair" id) is the mean over anchors with a
 * positive of −log softmax_j≠i(fused_i·fused_j / info_nce_temp)[positive].
 * Training-only mechanisms: Gaussian noise of std gate_noise on the gate logits (before the
 * temperature), inverted dropout on h and on each expert's hidden activation, and a capacity
 * of ceil(capacity_factor·N·k/E) assignments per expert (first choices are placed before second
 * choices, items in batch order; an assignment over capacity is dropped from y). */
struct cge_fusion_train_params {
    float lr;            /* AdamW learning rate; 0 (default) = 0.01/sqrt(D): Adam moves every
                            weight by about lr per step, so a row of input_proj changes by about
                            lr·sqrt(D) relative to its size; this keeps that near 1 %. */
    float beta1, beta2;  /* 0.9, 0.999 */
    float adam_eps;      /* 1e-8 */
    float weight_decay;  /* 0.01, on matrices only (not biases, norms, missing_embed) */
    float max_grad_norm; /* global L2 clipping (1.0); <= 0 disables */
    float gate_noise;    /* std of the logit noise while training (0.1); 0 disables */
    float dropout;       /* dropout rate while training (0.0) */
    int use_capacity;    /* 1: apply the capacity limit while training (1) */
    float info_nce_coef; /* weight of the InfoNCE term when pairs are present (1.0) */
    float info_nce_temp; /* 0.05 */
    uint64_t seed;       /* noise and dropout stream (42) */
};
void cge_fusion_train_default_params(struct cge_fusion_train_params *p);

struct cge_fusion_stats {
    double similarity_loss, load_balance_loss, info_nce_loss, total_loss;
    double grad_norm;                    /* global gradient norm before clipping */
    double load[CGE_FUSION_MAX_EXPERTS]; /* f_e: fraction of selections per expert */
    int64_t dropped;                     /* assignments dropped by the capacity limit */
};

struct cge_fusion_trainer;
/* The trainer keeps a pointer to f (fp32 model) and updates it in place. */
enum cge_status cge_fusion_trainer_new(struct cge_fusion *f,
                                       const struct cge_fusion_train_params *p,
                                       struct cge_fusion_trainer **out);
void cge_fusion_trainer_free(struct cge_fusion_trainer *t);
/* Forward + backward on a batch (pair: (n) ids or NULL; -1 = unlabelled) without updating:
 * fills the gradient buffer. `training` = 0 turns off noise, dropout and capacity (the
 * fixture's train_step.json is computed that way). */
enum cge_status cge_fusion_trainer_grad(struct cge_fusion_trainer *t, int64_t n, const float *x,
                                        const uint8_t *present, const int64_t *pair, int training,
                                        struct cge_fusion_stats *stats);
/* Gradient of tensor i (same order as cge_fusion_tensor), valid after trainer_grad. */
const float *cge_fusion_trainer_grad_of(const struct cge_fusion_trainer *t, int i);
/* One optimization step: grad (training = 1), clip, AdamW update. */
enum cge_status cge_fusion_trainer_step(struct cge_fusion_trainer *t, int64_t n, const float *x,
                                        const uint8_t *present, const int64_t *pair,
                                        struct cge_fusion_stats *stats);
int64_t cge_fusion_trainer_steps(const struct cge_fusion_trainer *t);
/* Saves the model (config.json, model.safetensors) and the optimizer state
 * (optimizer.safetensors, trainer_state.json) into dir. */
enum cge_status cge_fusion_trainer_save(const struct cge_fusion_trainer *t, const char *dir);
/* Restores optimizer state from dir if it holds one (else leaves a fresh optimizer; *resumed
 * says which; may be NULL). */
enum cge_status cge_fusion_trainer_resume(struct cge_fusion_trainer *t, const char *dir,
                                          int *resumed);

/* Losses only (no gradient), for evaluation: the similarity loss of a batch at inference. */
enum cge_status cge_fusion_similarity_targets(const struct cge_fusemoe_config *c, int64_t n,
                                              const float *x, const uint8_t *present,
                                              double *T /* OUT: (n, n) */);

/* ==== safetensors writer (st_write.c) ======================================================== */
struct cge__st_entry {
    const char *name;
    int n_dim;
    int64_t shape[2];
    const float *data; /* F32 */
};
/* Writes a safetensors file of F32 tensors (sorted by name, 8-byte aligned header, optional
 * __metadata__ format string) atomically: path.tmp then rename. */
enum cge_status cge__st_write_f32(const char *path, const struct cge__st_entry *e, int n,
                                  const char *format);

#endif /* CGE_FUSION_FUSEMOE_H */
