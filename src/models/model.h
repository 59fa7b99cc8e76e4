/*
 * model.h: a loaded model folder (as downloaded from the Hugging Face Hub) and the interface
 * every model family implements.
 *
 * cge_model_load reads config.json, picks the family whose `matches` accepts it, opens the
 * weights (safetensors, sharded, or pytorch_model.bin), the tokenizer, and the
 * sentence-transformers modules (modules.json, 1_Pooling, 2_Dense, Normalize), and builds the
 * pipeline: tokenize → family forward → pooling → Dense → Normalize (src/models/model.c).
 * A family file (bert.c, t5.c, clip.c, whisper.c, mistral.c) only turns inputs into hidden
 * states (or, for media, into the model's own embedding).
 *
 * A cge_model is read-only after load and may be shared by threads; cge_model_embed may be
 * called from several threads at once (each call owns its scratch memory).
 */
#ifndef CGE_MODELS_MODEL_H
#define CGE_MODELS_MODEL_H

#include "cge.h"
#include "io/weights.h"
#include "tensor/ops.h"
#include "text/tokenizer.h"

#include <stdint.h>

struct cJSON;
struct cge_backend;

/* The public model API (cge_model_load, cge_model_embed, struct cge_input, ...) is in cge.h. */

/* A media input for a family: a file path or the encoded bytes in memory. */
struct cge__media {
    const char *path;  /* file, or NULL */
    const void *data;  /* bytes, when path is NULL */
    size_t len;
    int no_truncate;   /* audio: 1 = longer than the model's window is CGE_ERR_INPUT_TOO_LONG */
    int truncated;     /* OUT: audio was cut to the model's window */
    int64_t n_frames;  /* OUT: frames that hold audio (or 1 for an image) */
};
/* A short name of the media for messages ("camera.png" or "<1234 bytes>"). */
const char *cge__media_label(const struct cge__media *m, char *buf, size_t cap);

/* ---- the family interface (internal) --------------------------------------------------------- */

/* What a family's load gets, and what it reports back. */
struct cge_family_load {
    const char *dir;                 /* model folder */
    const struct cJSON *config;      /* config.json */
    const struct cge_weights *w;     /* the opened weights */
    const struct cge_model_params *p;
    /* filled by load: */
    int64_t hidden;                  /* width of the hidden states forward_text returns */
    int64_t max_positions;           /* max sequence length the model supports (0 = none) */
    int32_t pad_id;                  /* padding id for batches (-1 if none) */
    unsigned modalities;             /* what the family accepts */
    enum cge_pooling default_pooling;/* fallback when the folder has no sentence-transformers files */
    int default_normalize;
    int64_t vocab_size;              /* rows of the token embedding table (0 = takes no text) */
    const char *vocab_tensor;        /* its tensor name, for errors (may be NULL) */
    struct cge_backend *be;          /* where the encoder layers live (NULL: the CPU); not owned */
};

struct cge_family {
    const char *name; /* "bert", "roberta", "mpnet", "t5", "clip", "whisper", "mistral" */
    /* 1 if config.json (model_type / architectures[0]) belongs to this family. */
    int (*matches)(const struct cJSON *config);
    enum cge_status (*load)(struct cge_family_load *lc, void **impl);
    void (*free)(void *impl);
    /* Text: ids (B, L) right-padded, real lengths len (B) → hidden (B, L, hidden).
     * NULL when the family takes no text. */
    enum cge_status (*forward_text)(const void *impl, const int32_t *ids, const int64_t *len,
                                    int64_t B, int64_t L, float *hidden);
    /* Optional: the family's own text embedding from hidden states (CLIP: EOS token + text
     * projection) into out (B, dim); NULL = generic pooling over hidden. */
    enum cge_status (*pool_text)(const void *impl, const float *hidden, const int32_t *ids,
                                 const int64_t *len, int64_t B, int64_t L, float *out);
    /* Optional: image / audio file → embedding (before Normalize) into out (dim). */
    enum cge_status (*embed_image)(const void *impl, struct cge__media *src, float *out);
    enum cge_status (*embed_audio)(const void *impl, struct cge__media *src, float *out);
    /* Output dimension of pool_text / embed_image / embed_audio (0 = hidden). */
    int64_t (*out_dim)(const void *impl);
};

/* The registered families (families.c); NULL-terminated. */
extern const struct cge_family *const cge__families[];

/* ---- internals shared by model.c, the family files and tests ----------------------------------- */

/* The family and its impl behind a loaded model (tests call family forwards directly). */
const struct cge_family *cge__model_family(const struct cge_model *m);
const void *cge__model_impl(const struct cge_model *m);
const struct cge_tokenizer *cge__model_tokenizer(const struct cge_model *m);
/* The backend the model's layers run on ("cpu" after a fallback; Mistral: always "cpu"). */
const char *cge__model_backend(const struct cge_model *m);

/* Activations named by Hugging Face configs (hidden_act, activation_function) and by
 * sentence-transformers Dense configs (torch class names such as torch.nn.modules.activation.Tanh).
 * CGE_ACT_GELU is the exact (erf) GELU. CGE__ACT_BIT lets a family list what it accepts. */
enum cge__act {
    CGE_ACT_IDENTITY = 0,
    CGE_ACT_TANH,
    CGE_ACT_RELU,
    CGE_ACT_GELU,
    CGE_ACT_GELU_TANH,
    CGE_ACT_QUICK_GELU,
    CGE_ACT_SILU,
    CGE_ACT_SIGMOID
};
#define CGE__ACT_BIT(a) (1u << (unsigned)(a))

/* Maps name to *out: "gelu" → GELU (erf); "gelu_new", "gelu_pytorch_tanh", "gelu_fast" →
 * GELU_TANH; "quick_gelu"; "relu"; "silu", "swish" → SILU; a torch class name whose last
 * dotted component is Identity, Tanh, ReLU, GELU or Sigmoid. Anything else (or NULL) →
 * CGE_ERR_UNSUPPORTED; the caller reports it with its own context. */
enum cge_status cge__act_parse(const char *name, enum cge__act *out);

/* Applies a in place to x[0..n). */
void cge__act_apply(enum cge__act a, float *x, int64_t n);

/* config.json fields. Missing → def (when !required) or an error naming the model folder and
 * the key; present with the wrong type or out of [lo, hi] → error. */
enum cge_status cge__cfg_int(const struct cge_family_load *lc, const char *key, int required,
                             int64_t def, int64_t lo, int64_t hi, int64_t *out);
enum cge_status cge__cfg_float(const struct cge_family_load *lc, const char *key, int required,
                               double def, double *out);
/* A string field, or NULL. */
const char *cge__cfg_str(const struct cJSON *config, const char *key);

/* The tensor `name` with exactly this shape (shape NULL: any). Missing tensors and wrong shapes
 * are CGE_ERR_MODEL_LOAD errors naming the model folder, the tensor and the shapes. */
enum cge_status cge__tensor(const struct cge_family_load *lc, const char *name, int n_dim,
                            const int64_t *shape, const struct cge_tensor_info **out);
/* Same, as a fresh fp32 copy (cge__free it). */
enum cge_status cge__tensor_f32(const struct cge_family_load *lc, const char *name, int n_dim,
                                const int64_t *shape, float **out);
/* A linear layer whose weight stacks n_parts checkpoint matrices along n_out (fused Q/K/V):
 * part i is w_names[i], shape (part_out[i], n_in), with bias b_names[i] (b_names NULL or entry
 * NULL: no bias; all parts must agree). Stored in lc->p->dtype. */
enum cge_status cge__linear_load(const struct cge_family_load *lc, struct cge_linear *l,
                                 int n_parts, const char *const *w_names,
                                 const char *const *b_names, const int64_t *part_out, int64_t n_in);

/* Bucketed relative positions of T5 and MPNet (bidirectional): bucket of key − query. */
int cge__rel_bucket(int64_t rel, int n_buckets, int max_distance);

/* BERT/RoBERTa/MPNet with explicit token types (NULL = all zero) and the pooler
 * (tanh(dense(h[:, 0])), CGE_ERR_UNSUPPORTED when the checkpoint has none): bert.c. */
enum cge_status cge__bert_forward(const void *impl, const int32_t *ids, const int32_t *types,
                                  const int64_t *len, int64_t B, int64_t L, float *hidden);
enum cge_status cge__bert_pooler(const void *impl, const float *hidden, int64_t B, int64_t L,
                                 float *out);

#endif /* CGE_MODELS_MODEL_H */
