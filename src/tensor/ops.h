/*
 * ops.h: the CPU tensor kernels every model family is written with (fp32 compute).
 *
 * Layout conventions: row-major; a "rows × d" activation matrix is contiguous unless an
 * explicit leading dimension (ld*, in floats) is given. Shapes are int64_t.
 * Weights of a linear layer are stored as in torch.nn.Linear: W is (n_out, n_in), y = x·Wᵀ + b.
 * A struct cge_linear is immutable after init and may be shared by threads; forward calls on
 * the same linear from several threads at once are safe.
 */
#ifndef CGE_TENSOR_OPS_H
#define CGE_TENSOR_OPS_H

#include "cge.h"

#include <stdint.h>

/* ---- linear layers (GEMM through oneDNN) ---------------------------------------------------- */
struct cge_linear {
    int64_t n_out, n_in;
    enum cge_dtype dtype; /* storage: CGE_DTYPE_F32, CGE_DTYPE_BF16 or CGE_DTYPE_I8 */
    float *bias;          /* (n_out) or NULL; owned */
    void *impl;           /* engine state: packed weights, scales, primitive cache; owned */
};

/* Builds a linear layer from a weight matrix w (n_out, n_in) given in src_dtype (F32, F16 or
 * BF16, e.g. straight from a memory-mapped checkpoint) and an optional fp32 bias. Weights are
 * converted and reordered once, here, into `dtype` storage (F32, BF16, or I8 with one scale per
 * output channel). Never keeps a pointer to w or b. */
enum cge_status cge_linear_init(struct cge_linear *l, const void *w, enum cge_dtype src_dtype,
                                const float *b, int64_t n_out, int64_t n_in, enum cge_dtype dtype);
/* How I8 storage computes (cge_linear_init gives CGE_I8_DYNAMIC). */
enum cge_i8_mode {
    CGE_I8_DYNAMIC = 0, /* W8A8: activations quantized per row to u8, u8×s8 on VNNI: fastest,
                         * but per-row scales lose the small channels next to outlier channels,
                         * and the error compounds with depth (decoders) */
    CGE_I8_WEIGHTS = 1, /* W8A16: s8 weights with a scale per 32 inputs (where n_in allows),
                         * widened to bf16 per panel inside the GEMM, bf16 activations, fp32
                         * accumulation: the most accurate int8 for deep decoders */
    CGE_I8_A16 = 2      /* W8A16 on VNNI: activations quantized per row to 16 bits (symmetric),
                         * as two u8 planes (high, low byte) run through the same s8 weights and
                         * summed in the GEMM: exact integer products, no weight widening; scales
                         * per channel */
};
/* cge_linear_init with the I8 mode chosen (ignored for F32 and BF16 storage). Where the CPU has
 * no VNNI, CGE_I8_A16 falls back to CGE_I8_WEIGHTS; where it has no bf16 matmul,
 * CGE_I8_WEIGHTS falls back to CGE_I8_DYNAMIC. */
enum cge_status cge_linear_init_q(struct cge_linear *l, const void *w, enum cge_dtype src_dtype,
                                  const float *b, int64_t n_out, int64_t n_in, enum cge_dtype dtype,
                                  enum cge_i8_mode mode);
void cge_linear_deinit(struct cge_linear *l);
/* y (m, n_out) = x (m, n_in) · Wᵀ + b. Activations are fp32; for BF16/I8 storage x is converted
 * (I8: dynamically quantized per row) inside. y must not alias x.
 * Each calling thread keeps one buffer for converted activations (bf16: 2·m·n_in bytes, I8:
 * m·n_in + 8·m), grown to the largest call it has made and freed when the thread exits. Each
 * layer caches oneDNN primitives for the last 8 distinct m; a new m costs one primitive build. */
enum cge_status cge_linear_forward(const struct cge_linear *l, const float *x, int64_t m, float *y);
/* Serialized layers, for the converted-weights file (models/wcache.c). blob_size is the bytes
 * blob_write emits through put (put returns nonzero on failure). from_blob builds a layer over
 * a blob that must stay mapped, 64-byte aligned, for the layer's lifetime (weights are not
 * copied), after checking it is a (n_out, n_in) layer in dtype/mode laid out as this build and
 * CPU would lay it out: CGE_ERR_SERIALIZATION otherwise. */
size_t cge__linear_blob_size(const struct cge_linear *l);
enum cge_status cge__linear_blob_write(const struct cge_linear *l,
                                       int (*put)(void *u, const void *p, size_t n), void *u);
enum cge_status cge__linear_from_blob(struct cge_linear *l, const void *blob, size_t len,
                                      int64_t n_out, int64_t n_in, enum cge_dtype dtype,
                                      enum cge_i8_mode mode);
/* What packed layouts depend on: the oneDNN version and the CPU ISA it dispatches to. */
const char *cge__linear_layout_id(void);
/* Bytes held by the layer's weights (for memory reports). */
size_t cge_linear_bytes(const struct cge_linear *l);

/* General fp32 GEMM, row-major (dnnl_sgemm semantics):
 * C (M,N) = alpha · op(A) · op(B) + beta · C, op(X) = X or Xᵀ when trans_x is nonzero. */
void cge_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc);

/* Threads used by the kernels and oneDNN (default: all cores; n <= 0 restores it). Applies to
 * calls made after it from any thread. */
void cge_set_threads(int n);
int cge_get_threads(void);
/* This thread's own compute budget (0: the process-wide count again). */
void cge__set_thread_budget(int n);

/* ---- element-wise and row-wise --------------------------------------------------------------- */
/* In place, per row of d: (x - mean) / sqrt(var + eps) * w + b (biased variance). */
void cge_layernorm(float *x, int64_t rows, int64_t d, const float *w, const float *b, float eps);
/* In place, per row: x / sqrt(mean(x²) + eps) * w (T5 and Llama forms agree in fp32).
 * w may be NULL (no scale). */
void cge_rmsnorm(float *x, int64_t rows, int64_t d, const float *w, float eps);
/* In place, per row of n, numerically stable (max subtracted). A row with no entry above -inf
 * becomes all zeros (not NaN). */
void cge_softmax(float *x, int64_t rows, int64_t n);
void cge_gelu_erf(float *x, int64_t n);    /* 0.5·x·(1 + erf(x/√2)) */
void cge_gelu_tanh(float *x, int64_t n);   /* 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
void cge_quick_gelu(float *x, int64_t n);  /* x·σ(1.702·x) */
void cge_silu(float *x, int64_t n);        /* x·σ(x) */
void cge_relu(float *x, int64_t n);
void cge_tanh_inplace(float *x, int64_t n);
/* y += x */
void cge_add(float *y, const float *x, int64_t n);
/* y (rows, d) += b (d) broadcast per row */
void cge_add_row(float *y, int64_t rows, int64_t d, const float *b);
/* y *= x, element-wise */
void cge_mul(float *y, const float *x, int64_t n);
void cge_scale(float *x, int64_t n, float s);
/* L2-normalizes each row in place: x / max(‖x‖, eps) (torch.nn.functional.normalize). */
void cge_l2_normalize(float *x, int64_t rows, int64_t d, float eps);

/* out (n, d) = table[ids[i]] for a (vocab, d) table in dtype F32, F16 or BF16.
 * CGE_ERR_INVALID_VALUE if an id is outside [0, vocab). */
enum cge_status cge_embed_gather(const void *table, enum cge_dtype dtype, int64_t vocab, int64_t d,
                                 const int32_t *ids, int64_t n, float *out);

/* ---- attention --------------------------------------------------------------------------------
 * Scaled dot-product attention over a batch of right-padded sequences, queries and keys of the
 * same length L. q (B·L rows, ldq) holds n_head heads of d_head each, head h at columns
 * h·d_head; k and v hold n_kv_head heads (grouped-query: query head h reads kv head
 * h / (n_head / n_kv_head)). out (B·L rows, ldo) receives n_head·d_head columns.
 * scores = scale · q·kᵀ + bias[h] (if bias) ; masked keys get -inf before softmax:
 *   key j ≥ len[b] (padding), j > i when causal, i - j ≥ window when window > 0.
 * Rows of padding queries are written but meaningless (zeros); a query row with every key masked
 * gets zeros. */
struct cge_attn {
    int64_t n_batch, n_seq;
    int n_head, n_kv_head, d_head;
    float scale;
    const int64_t *len; /* (n_batch) real lengths, or NULL = all n_seq */
    const float *bias;  /* (n_head, n_seq, n_seq) additive, shared by the batch, or NULL */
    int causal;
    int64_t window;     /* sliding window (Mistral), 0 = none */
};
/* Needs O(n_seq²) floats of scratch per thread, allocated inside; CGE_ERR_NOMEM if it fails. */
enum cge_status cge_attention(const struct cge_attn *a, const float *q, int64_t ldq, const float *k,
                              int64_t ldk, const float *v, int64_t ldv, float *out, int64_t ldo);

/* ---- positions --------------------------------------------------------------------------------
 * Rotary embeddings, Hugging Face rotate-half layout, in place on n_tok rows (ld floats apart)
 * of n_head heads of d_head: for i < d_head/2 with f = pos·theta^(-2i/d_head) (float32 as HF),
 * (x_i, x_{i+d/2}) ← (x_i·cos f − x_{i+d/2}·sin f, x_{i+d/2}·cos f + x_i·sin f). */
void cge_rope(float *x, int64_t n_tok, int64_t ld, int n_head, int d_head, const int32_t *pos,
              float theta);

/* ---- convolutions -----------------------------------------------------------------------------
 * 1-d convolution (Whisper's stem): x (c_in, t_in) → y (c_out, t_out), kernel w (c_out, c_in, k),
 * bias b (c_out) or NULL, zero padding pad on both sides, stride s;
 * t_out = (t_in + 2·pad − k) / s + 1. */
enum cge_status cge_conv1d(const float *x, int64_t c_in, int64_t t_in, const float *w,
                           const float *b, int64_t c_out, int64_t k, int64_t stride, int64_t pad,
                           float *y);
/* Patch convolution (CLIP): image (c, h, w) with kernel = stride = p, weights (d, c, p, p), no
 * bias → out (n_patches, d), patches in row-major order (h/p rows of w/p). */
enum cge_status cge_patch_conv(const float *img, int64_t c, int64_t h, int64_t w, const float *wt,
                               int64_t d, int64_t p, float *out);

/* ---- dtype conversion ------------------------------------------------------------------------ */
float cge_bf16_to_f32(uint16_t h);
uint16_t cge_f32_to_bf16(float f); /* round to nearest even */
float cge_f16_to_f32(uint16_t h);
/* dst (n floats) from src in F32, F16 or BF16. */
enum cge_status cge_convert_to_f32(const void *src, enum cge_dtype dtype, int64_t n, float *dst);

#endif /* CGE_TENSOR_OPS_H */
