/*
 * heads.h: what turns a model's hidden states into a sentence embedding: pooling (CLS, masked
 * mean, max, mean/sqrt(len), last token, INSTRUCTOR's mean without the instruction tokens),
 * sentence-transformers Dense layers and Normalize, and the reader of a folder's
 * sentence-transformers files (modules.json, sentence_bert_config.json, 1_Pooling, 2_Dense).
 *
 * All functions are thread-safe; a loaded head is read-only.
 */
#ifndef CGE_MODELS_HEADS_H
#define CGE_MODELS_HEADS_H

#include "cge.h"
#include "models/model.h"
#include "tensor/ops.h"

#include <stdint.h>

/* Pools hidden (B, L, H), rows right-padded to real lengths len (B), into out (B, H).
 * skip (B) or NULL: leading tokens left out (CGE_POOL_MEAN_NO_INSTR; others ignore it).
 * Mean over zero tokens gives zeros (sentence-transformers' max(count, 1e-9)). */
enum cge_status cge__pool(enum cge_pooling p, const float *hidden, int64_t B, int64_t L, int64_t H,
                          const int64_t *len, const int64_t *skip, float *out);

/* A sentence-transformers Dense module: y = act(W x + b). */
struct cge_dense {
    struct cge_linear lin; /* (out_features, in_features) <dir>/linear.weight, linear.bias */
    enum cge__act act; /* Identity, Tanh, ReLU, GELU or Sigmoid */
};

#define CGE_MAX_POOL_MODES 6
#define CGE_MAX_DENSE      4

/* The sentence-transformers modules of a folder, in the order they apply. */
struct cge_st_head {
    int present;                                /* 1 if modules.json was found */
    int n_pool;                                 /* pooling modes, concatenated in ST order */
    enum cge_pooling pool[CGE_MAX_POOL_MODES];
    int include_prompt;                         /* Pooling include_prompt (default 1) */
    int n_dense;
    struct cge_dense dense[CGE_MAX_DENSE];
    int normalize;                              /* a Normalize module follows */
    int64_t max_seq_len;                        /* sentence_bert_config.json max_seq_length, 0 = none */
    int do_lower_case;                          /* sentence_bert_config.json do_lower_case */
};

/* Reads dir's sentence-transformers files. No modules.json: head->present = 0 and CGE_OK
 * (sentence_bert_config.json is still read). `hidden` is the transformer width (checked against
 * the Pooling and Dense configs); Dense weights are stored in `dtype`. Errors name the file. */
enum cge_status cge__st_head_load(const char *dir, int64_t hidden, enum cge_dtype dtype,
                                  struct cge_st_head *head);
void cge__st_head_deinit(struct cge_st_head *head);

/* Dense modules' output width given the pooled width. */
int64_t cge__st_head_out_dim(const struct cge_st_head *head, int64_t pooled);

/* Applies the Dense modules to x (n, in) → out (n, out dim). x is not modified. */
enum cge_status cge__dense_apply(const struct cge_st_head *head, const float *x, int64_t n,
                                 int64_t in, float *out);

#endif /* CGE_MODELS_HEADS_H */
