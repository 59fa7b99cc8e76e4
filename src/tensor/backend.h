/*
 * backend.h: the seam between the model code and the hardware that carries it out.
 *
 * A backend owns memory and runs the tensor operations on it. Model code (src/models/,
 * src/fusion/) holds its weights and activations as backend memory and calls the operations
 * through this table, so one family file runs on the CPU or on a CUDA device unchanged.
 *
 *   cpu:  memory is host memory (pointers are plain host pointers, alloc is cge__malloc_aligned),
 *         the operations are today's kernels (ops.h, oneDNN): results and speed as before.
 *   cuda: memory is device memory from the GPU memory manager (src/gpu/), GEMMs on cuBLASLt,
 *         the rest as CUDA kernels; one stream per backend instance (one per engine worker).
 *
 * Key decision: activations cross the seam as fp32 (what every family computes in today), and
 * weights as opaque linear layers stored in the dtype the user asked for (F32, BF16, I8); a
 * backend may compute in a narrower type inside an operation (bf16 GEMM with fp32 accumulation)
 * but every operation's inputs and outputs are fp32 arrays in backend memory. Arguments named
 * "host" are host memory on every backend (ids, lengths, positions: small and read by the
 * driver side); everything else is backend memory.
 *
 * Every operation returns a status: the CPU backend cannot fail past allocation, a device can
 * (out of memory, a lost device), and callers turn that into a fallback (see the GPU issue:
 * halve the batch, then the CPU) rather than a wrong result.
 */
#ifndef CGE_TENSOR_BACKEND_H
#define CGE_TENSOR_BACKEND_H

#include "cge.h"
#include "tensor/ops.h"

#include <stddef.h>
#include <stdint.h>

/* Activations a backend fuses into a linear layer or applies alone. */
enum cge_be_act {
    CGE_BE_ACT_NONE = 0,
    CGE_BE_ACT_GELU_ERF,
    CGE_BE_ACT_GELU_TANH,
    CGE_BE_ACT_QUICK_GELU,
    CGE_BE_ACT_SILU,
    CGE_BE_ACT_RELU,
    CGE_BE_ACT_TANH
};

/* A linear layer resident on a backend (weights in storage dtype, bias fp32); opaque. */
struct cge_be_linear;

struct cge_backend {
    const char *name; /* "cpu", "cuda" */
    void *ctx;        /* the backend's own state (device, stream, memory manager) */

    /* ---- memory ---- */
    void *(*alloc)(struct cge_backend *be, size_t bytes); /* NULL when out of memory */
    void (*free)(struct cge_backend *be, void *p);        /* p may be NULL */
    enum cge_status (*to_device)(struct cge_backend *be, void *dst, const void *host, size_t n);
    enum cge_status (*to_host)(struct cge_backend *be, void *host, const void *src, size_t n);
    enum cge_status (*sync)(struct cge_backend *be); /* waits for queued work; reports its errors */

    /* ---- linear layers: y (m, n_out) = act(x (m, n_in) · Wᵀ + b) ---- */
    /* w (n_out, n_in) host memory in src_dtype (F32, F16, BF16: straight from a mapped
     * checkpoint), b (n_out) host fp32 or NULL; stored in `storage` (F32, BF16 or I8). */
    enum cge_status (*linear_init)(struct cge_backend *be, struct cge_be_linear **out,
                                   const void *w, enum cge_dtype src_dtype, const float *b,
                                   int64_t n_out, int64_t n_in, enum cge_dtype storage);
    void (*linear_free)(struct cge_backend *be, struct cge_be_linear *l);
    enum cge_status (*linear)(struct cge_backend *be, const struct cge_be_linear *l,
                              const float *x, int64_t m, float *y, enum cge_be_act act);
    size_t (*linear_bytes)(const struct cge_be_linear *l);

    /* ---- row-wise and element-wise, in place (semantics exactly as in ops.h) ---- */
    enum cge_status (*layernorm)(struct cge_backend *be, float *x, int64_t rows, int64_t d,
                                 const float *w, const float *b, float eps);
    enum cge_status (*rmsnorm)(struct cge_backend *be, float *x, int64_t rows, int64_t d,
                               const float *w, float eps);
    enum cge_status (*softmax)(struct cge_backend *be, float *x, int64_t rows, int64_t n);
    enum cge_status (*act)(struct cge_backend *be, enum cge_be_act a, float *x, int64_t n);
    enum cge_status (*add)(struct cge_backend *be, float *y, const float *x, int64_t n);
    enum cge_status (*add_row)(struct cge_backend *be, float *y, int64_t rows, int64_t d,
                               const float *b);
    enum cge_status (*mul)(struct cge_backend *be, float *y, const float *x, int64_t n);
    enum cge_status (*scale)(struct cge_backend *be, float *x, int64_t n, float s);

    /* ---- attention, positions, embeddings ---- */
    /* As cge_attention (ops.h); a->len is host memory, a->bias backend memory. */
    enum cge_status (*attention)(struct cge_backend *be, const struct cge_attn *a,
                                 const float *q, int64_t ldq, const float *k, int64_t ldk,
                                 const float *v, int64_t ldv, float *out, int64_t ldo);
    /* As cge_rope; pos is host memory. */
    enum cge_status (*rope)(struct cge_backend *be, float *x, int64_t n_tok, int64_t ld,
                            int n_head, int d_head, const int32_t *pos, float theta);
    /* As cge_embed_gather; table is backend memory (F32, F16 or BF16), ids host memory. */
    enum cge_status (*embed_gather)(struct cge_backend *be, const void *table,
                                    enum cge_dtype dtype, int64_t vocab, int64_t d,
                                    const int32_t *ids, int64_t n, float *out);

    void (*destroy)(struct cge_backend *be); /* NULL for the static CPU backend */

    /* ---- added for the shared encoder layer (src/models/encoder.c) ---- */
    /* dst = src, n bytes, both backend memory (may overlap). The pre-norm layers keep the
     * residual stream and normalize a copy of it. */
    enum cge_status (*copy)(struct cge_backend *be, void *dst, const void *src, size_t n);
    /* Gated linear unit: x (rows, 2n) holds [gate | up] per row (one fused GEMM);
     * y (rows, n) = act(gate) * up. x is scratch (may be overwritten); y must not alias x.
     * T5 v1.1 (gelu_tanh), Llama/Mistral (silu). */
    enum cge_status (*glu)(struct cge_backend *be, enum cge_be_act a, float *x, int64_t rows,
                           int64_t n, float *y);
};

/* The CPU backend (static, shared by all threads; never destroy it). */
struct cge_backend *cge_backend_cpu(void);

/* A backend by name: "cpu", "cuda" (device 0) or "cuda:N". CGE_ERR_UNSUPPORTED with the reason
 * (not compiled in, no device, driver error) when it cannot be had; the caller falls back to
 * the CPU and logs that reason. Free with cge_backend_release. */
enum cge_status cge_backend_open(const char *name, struct cge_backend **out);
void cge_backend_release(struct cge_backend *be);

/* What is compiled in and what devices were found, one line each ("cpu: ...", "cuda: ..."),
 * into buf; returns the length written (snprintf rules). */
int cge_backend_describe(char *buf, size_t cap);

/* The backend a model asks for (cge_model_params.backend): NULL or "cpu" → the CPU; "cuda",
 * "cuda:N" → that device, or the CPU when it cannot be had (the reason logged once per process
 * at WARN, later ones at DEBUG); "auto" → CUDA device 0 when there is one, else the CPU (DEBUG).
 * CGE_ERR_INVALID_VALUE only for a name that is none of these (a typo is not a fallback).
 * Release with cge_backend_release. */
enum cge_status cge_backend_open_or_cpu(const char *name, struct cge_backend **out);

/* The entries a device backend's table lacks, space-separated, into buf ("" when complete;
 * destroy counts: only the static CPU backend may lack it). Returns how many. cge_backend_open
 * refuses an incomplete table with this list (and the caller falls back to the CPU). */
int cge__backend_missing(const struct cge_backend *be, char *buf, size_t cap);

/* The backends this build has, space-separated: "cpu" or "cpu cuda". */
const char *cge_backend_compiled(void);

#endif /* CGE_TENSOR_BACKEND_H */
