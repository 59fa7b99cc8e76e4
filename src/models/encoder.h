/*
 * encoder.h: the transformer encoder layer stack every encoder family shares (bert.c for
 * BERT/RoBERTa/MPNet, clip.c for both CLIP towers, t5.c, whisper.c), run through a backend.
 *
 * A family describes its layers with two small structs: the parameters (widths, pre- or
 * post-norm, LayerNorm or RMSNorm, biases, gated feed-forward, activation, attention scale,
 * causal mask) and the tensor names of layer i; cge__encoder_load builds the fused Q/K/V and the
 * other linear layers on the backend, cge__encoder_forward runs the stack. What truly differs
 * between families (embeddings, position tables, heads, pooling, the final norm) stays in the
 * family file, on the host.
 *
 * The two layer forms:
 *   post-norm (BERT):          x = norm1(x + o(attn(qkv(x))));   x = norm2(x + ff(x))
 *   pre-norm (CLIP, T5, Whisper): x += o(attn(qkv(norm1(x))));    x += ff(norm2(x))
 * with ff(h) = ff2(act(ff1(h))), or ff2(act(gate(h)) · up(h)) when gated (T5 v1.1).
 *
 * A loaded struct cge_encoder is read-only and may be shared by threads (each forward owns its
 * scratch).
 */
#ifndef CGE_MODELS_ENCODER_H
#define CGE_MODELS_ENCODER_H

#include "models/model.h"
#include "tensor/backend.h"

#include <stdint.h>

/* What differs between the families' layers. */
struct cge_enc_params {
    int64_t n_layer, d, n_head, d_head, d_ff; /* attention width n_head · d_head may differ from d (T5) */
    int pre_norm;         /* 1: pre-norm (CLIP, T5, Whisper); 0: post-norm (BERT) */
    int rms;              /* 1: RMSNorm, weight only (T5); 0: LayerNorm with weight and bias */
    float eps;
    int bias;             /* 1: every linear layer has a bias */
    int no_k_bias;        /* with bias: the key projection has none (Whisper; zeros in the fusion) */
    int gated;            /* 1: ff1 ‖ ff1_up fused (2·d_ff wide), act(ff1)·ff1_up (T5 v1.1) */
    enum cge_be_act act;  /* feed-forward activation */
    float scale;          /* attention score scale (1/sqrt(d_head); T5: 1) */
    int causal;           /* causal mask (CLIP text) */
};

/* Tensor names of layer i: "{}" stands for the index, ".weight" / ".bias" are appended, prefix
 * goes in front. ln1 is the norm before attention (pre-norm) or after it (post-norm). */
struct cge_enc_names {
    const char *prefix;
    const char *q, *k, *v, *o;
    const char *ff1, *ff1_up, *ff2; /* ff1_up: the gated form's second input projection */
    const char *ln1, *ln2;
};

struct cge_enc_layer {
    struct cge_be_linear *qkv, *o, *ff1, *ff2;
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* (d), backend memory; *_b NULL with RMSNorm */
};

struct cge_encoder {
    struct cge_backend *be; /* not owned */
    struct cge_enc_params p;
    struct cge_enc_layer *layers; /* p.n_layer */
};

/* Loads the layers through lc->be (the CPU when NULL), weights stored in lc->p->dtype. Errors
 * name the model folder and the tensor. On failure e holds what was loaded: free it. */
enum cge_status cge__encoder_load(const struct cge_family_load *lc, const struct cge_enc_params *p,
                                  const struct cge_enc_names *names, struct cge_encoder *e);
void cge__encoder_free(struct cge_encoder *e); /* e may be zeroed or partly loaded */

/* Runs the stack in place on x (B·L rows of d, host memory): right-padded sequences of real
 * lengths len (host, NULL = all L), bias (n_head, L, L) host or NULL added to every layer's
 * scores. On a device backend x and bias are copied over and back. */
enum cge_status cge__encoder_forward(const struct cge_encoder *e, float *x, int64_t B, int64_t L,
                                     const int64_t *len, const float *bias);

/* Bytes held by the layers' linear weights. */
size_t cge__encoder_bytes(const struct cge_encoder *e);

/* The (n_head, L, L) relative position bias of T5 and MPNet: out[h][i][j] =
 * rel[bucket(j − i)][h] for a (n_buckets, n_head) table. */
enum cge_status cge__rel_bias(const float *rel, int n_buckets, int max_distance, int64_t n_head,
                              int64_t L, float *out);

/* A config activation as a backend activation (SIGMOID has none: CGE_ERR_UNSUPPORTED). */
enum cge_status cge__act_to_be(enum cge__act a, enum cge_be_act *out);

#endif /* CGE_MODELS_ENCODER_H */
