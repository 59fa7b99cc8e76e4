/*
 * cuda_kernels.h: the CUDA kernels of the CUDA backend (cuda_kernels.cu), as plain C launchers.
 *
 * Each launcher queues its kernel on `stream` and returns cudaGetLastError() as an int (0 = ok);
 * the kernels' semantics are those of src/tensor/ops.h, argument for argument. Pointers are
 * device memory unless a comment says otherwise. The backend (cuda_backend.c) checks arguments
 * and maps errors; these only launch.
 */
#ifndef CGE_GPU_CUDA_KERNELS_H
#define CGE_GPU_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *cge__cuda_stream; /* = cudaStream_t, without the CUDA headers */

/* Activation codes: enum cge_be_act's values. */
int cge__k_act(cge__cuda_stream s, int act, float *x, int64_t n);
/* y (rows, d) = act(y + b) with b (d) or NULL: the epilogue of a GEMM cuBLASLt cannot fuse. */
int cge__k_bias_act(cge__cuda_stream s, float *y, int64_t rows, int64_t d, const float *b, int act);
/* y (rows, n) = act(x[:, :n]) · x[:, n:2n] (the gated feed-forward of T5 v1.1 and Mistral). */
int cge__k_glu(cge__cuda_stream s, int act, const float *x, int64_t rows, int64_t n, float *y);
int cge__k_add(cge__cuda_stream s, float *y, const float *x, int64_t n);
int cge__k_add_row(cge__cuda_stream s, float *y, int64_t rows, int64_t d, const float *b);
int cge__k_mul(cge__cuda_stream s, float *y, const float *x, int64_t n);
int cge__k_scale(cge__cuda_stream s, float *x, int64_t n, float f);
int cge__k_layernorm(cge__cuda_stream s, float *x, int64_t rows, int64_t d, const float *w,
                     const float *b, float eps);
int cge__k_rmsnorm(cge__cuda_stream s, float *x, int64_t rows, int64_t d, const float *w,
                   float eps);
int cge__k_softmax(cge__cuda_stream s, float *x, int64_t rows, int64_t n);
/* As cge_attention; len (n_batch) device int64 or NULL. Shared memory: (d_head + n_seq) floats
 * per block; returns cudaErrorInvalidValue when that exceeds the device's opt-in maximum. */
int cge__k_attention(cge__cuda_stream s, int64_t n_batch, int64_t n_seq, int n_head, int n_kv_head,
                     int d_head, float scale, const int64_t *len, const float *bias, int causal,
                     int64_t window, const float *q, int64_t ldq, const float *k, int64_t ldk,
                     const float *v, int64_t ldv, float *out, int64_t ldo);
/* pos (n_tok) device int32; inv_freq (d_head / 2) device, computed on the host with the CPU
 * kernel's formula so that the angles are bit-identical to it (CUDA's powf differs by an ulp,
 * which a position of thousands turns into 1e-4 of an angle). */
int cge__k_rope(cge__cuda_stream s, float *x, int64_t n_tok, int64_t ld, int n_head, int d_head,
                const int32_t *pos, const float *inv_freq);
/* ids (n) device int32, already checked to lie in [0, vocab); dtype 0 F32, 1 F16, 2 BF16. */
int cge__k_embed_gather(cge__cuda_stream s, const void *table, int dtype, int64_t d,
                        const int32_t *ids, int64_t n, float *out);

/* ---- conversions for the linear layers ---- */
/* dst (n) fp32 or bf16 (uint16 bits, round to nearest even) from src in dtype 0/1/2. */
int cge__k_to_f32(cge__cuda_stream s, const void *src, int dtype, int64_t n, float *dst);
int cge__k_to_bf16(cge__cuda_stream s, const void *src, int dtype, int64_t n, uint16_t *dst);
/* Per row of k: symmetric int8, q = clamp(rint(x / s), ±127), s = max|x| / 127 (1 for an
 * all-zero or non-finite row): the weights' scheme of src/tensor/linear.c, used for weights
 * (per output channel) and activations (per row). */
int cge__k_quant_rows(cge__cuda_stream s, const float *x, int64_t rows, int64_t k, int8_t *q,
                      float *scale);
/* y (rows, n) = act(acc · sx[row] · sw[col] + b[col]): the int8 GEMM's epilogue. */
int cge__k_dequant_bias_act(cge__cuda_stream s, const int32_t *acc, int64_t rows, int64_t n,
                            const float *sx, const float *sw, const float *b, int act, float *y);

#ifdef __cplusplus
}
#endif
#endif /* CGE_GPU_CUDA_KERNELS_H */
