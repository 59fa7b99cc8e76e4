/*
 * cuda_backend.c: struct cge_backend on a CUDA device: memory through the GPU memory manager
 * (memmgr.c over cudaMalloc/cudaFree), GEMMs on cuBLASLt, everything else in cuda_kernels.cu,
 * all queued on one stream per backend instance.
 *
 * Key decisions:
 *  - cuBLASLt is loaded with dlopen when the first backend opens, not linked: the library is
 *    half a gigabyte and linking it cost every cge binary and test (GPU or not) seconds of
 *    start-up on this project's machines. The CUDA runtime is linked statically (it finds the
 *    driver at run time), so a binary starts on a machine without a GPU or driver and open
 *    reports why there is no device.
 *  - Linear layers keep their weights on the device in the storage dtype, converted there once
 *    at init: F32 (fp32 GEMM, CUBLAS_COMPUTE_32F: no TF32, so results match the CPU at 1e-4),
 *    BF16 (activations rounded to bf16 on the device, bf16 × bf16 with fp32 accumulation, as the
 *    CPU's BF16 path), I8 (weights quantized per output channel as the CPU does; activations
 *    quantized per row, symmetric; int8 × int8 → int32 on the tensor cores; a dequantizing
 *    epilogue kernel applies both scales, the bias and the activation).
 *  - Bias and ReLU are fused into the GEMM's cuBLASLt epilogue (exact); the other activations
 *    run as one element-wise pass after it, so every activation is computed with the same
 *    formula as the CPU kernel rather than cuBLASLt's own GELU approximation.
 *  - Host arguments (ids, lengths, positions) are copied into a small device buffer on the same
 *    stream: stream order makes reusing it safe, and an asynchronous copy from pageable memory
 *    copies the host data to a staging buffer before it returns (CUDA runtime API, "API
 *    synchronization behavior"), so callers may reuse or free their arrays at once; to_device
 *    relies on the same rule.
 *  - One mutex per instance guards its host-side state (the argument and scratch buffers, the
 *    cuBLASLt handle and workspace): an engine's workers share a model, hence its backend, and
 *    may call it from several threads at once; the work itself stays ordered on the one stream.
 */
#ifdef CGE_HAVE_CUDA

#    include "gpu/cuda_backend.h"
#    include "core/core.h"
#    include "gpu/cuda_kernels.h"
#    include "tensor/backend.h"

#    include <cublasLt.h>
#    include <cuda_runtime_api.h>
#    include <dlfcn.h>
#    include <math.h>
#    include <pthread.h>
#    include <stdlib.h>
#    include <string.h>

#    define WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLASLt's workspace: NVIDIA's Hopper advice */

/* ==== cuBLASLt, loaded at run time ========================================================== */
static struct {
    void *lib;
    __typeof__(cublasLtCreate) *create;
    __typeof__(cublasLtDestroy) *destroy;
    __typeof__(cublasLtMatmulDescCreate) *desc_create;
    __typeof__(cublasLtMatmulDescDestroy) *desc_destroy;
    __typeof__(cublasLtMatmulDescSetAttribute) *desc_set;
    __typeof__(cublasLtMatrixLayoutCreate) *layout_create;
    __typeof__(cublasLtMatrixLayoutDestroy) *layout_destroy;
    __typeof__(cublasLtMatmulPreferenceCreate) *pref_create;
    __typeof__(cublasLtMatmulPreferenceDestroy) *pref_destroy;
    __typeof__(cublasLtMatmulPreferenceSetAttribute) *pref_set;
    __typeof__(cublasLtMatmulAlgoGetHeuristic) *heuristic;
    __typeof__(cublasLtMatmul) *matmul;
    char err[256]; /* why loading failed, "" when it did not */
} lt;
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;

#    define STR_(x) #    x
#    define STR(x)  STR_(x)

static void lt_load(void) {
    static const char *const names[] = {"libcublasLt.so." STR(CUBLAS_VER_MAJOR), "libcublasLt.so"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !lt.lib; i++)
        lt.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lt.lib) {
        const char *e = dlerror();
        snprintf(lt.err, sizeof(lt.err), "cannot load cuBLASLt: %s", e ? e : "?");
        return;
    }
    struct {
        void *slot; /* points at a function pointer of lt */
        const char *name;
    } syms[] = {
        {&lt.create, "cublasLtCreate"},
        {&lt.destroy, "cublasLtDestroy"},
        {&lt.desc_create, "cublasLtMatmulDescCreate"},
        {&lt.desc_destroy, "cublasLtMatmulDescDestroy"},
        {&lt.desc_set, "cublasLtMatmulDescSetAttribute"},
        {&lt.layout_create, "cublasLtMatrixLayoutCreate"},
        {&lt.layout_destroy, "cublasLtMatrixLayoutDestroy"},
        {&lt.pref_create, "cublasLtMatmulPreferenceCreate"},
        {&lt.pref_destroy, "cublasLtMatmulPreferenceDestroy"},
        {&lt.pref_set, "cublasLtMatmulPreferenceSetAttribute"},
        {&lt.heuristic, "cublasLtMatmulAlgoGetHeuristic"},
        {&lt.matmul, "cublasLtMatmul"},
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        void *p = dlsym(lt.lib, syms[i].name);
        if (!p) {
            snprintf(lt.err, sizeof(lt.err), "cuBLASLt lacks %s", syms[i].name);
            return;
        }
        memcpy(syms[i].slot, &p, sizeof(p)); /* object to function pointer, the POSIX way */
    }
}

/* ==== the backend's state =================================================================== */
struct cuda_be {
    struct cge_backend be; /* the table handed out; be.ctx points back here */
    int device;
    char name[16]; /* "cuda:N" */
    cudaStream_t stream;
    cublasLtHandle_t lt;
    struct cge_gpu_mm *mm;
    void *ws;      /* cuBLASLt workspace (WORKSPACE_BYTES) */
    void *scratch; /* converted activations and int32 accumulators of a linear */
    size_t scratch_cap;
    void *args; /* host arguments copied for a kernel (ids, lengths, positions) */
    size_t args_cap;
    pthread_mutex_t mu; /* the fields above, for callers on several threads */
};

struct cge_be_linear {
    int64_t n_out, n_in;
    enum cge_dtype storage; /* F32, BF16 or I8 */
    void *w;                /* (n_out, n_in) in storage dtype, device */
    float *wscale;          /* I8: (n_out) per-channel scales, device; else NULL */
    float *bias;            /* (n_out) fp32 device, or NULL */
    size_t bytes;
    struct cuda_be *owner; /* whose manager holds the memory */
};

static struct cuda_be *CB(struct cge_backend *be) {
    return (struct cuda_be *)be->ctx;
}

/* The instance's stream, with its device made current for this thread (kernels must be
 * launched from the stream's device; threads may serve backends on different devices). */
static cudaStream_t S(struct cge_backend *be) {
    struct cuda_be *c = CB(be);
    cudaSetDevice(c->device);
    return c->stream;
}

/* A CUDA error as a cge status: out of memory is CGE_ERR_NOMEM (the caller halves the batch),
 * anything else CGE_ERR_GPU with CUDA's words. */
static enum cge_status cu_status(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return CGE_OK;
    if (e == cudaErrorMemoryAllocation)
        return cge__err(CGE_ERR_NOMEM, "cuda: %s: %s", what, cudaGetErrorString(e));
    return cge__err(CGE_ERR_GPU, "cuda: %s: %s (%d)", what, cudaGetErrorString(e), (int)e);
}

/* Why there is no device, in words a user can act on. */
static const char *no_device_reason(cudaError_t e) {
    switch (e) {
    case cudaErrorInsufficientDriver:
        return "no NVIDIA driver (libcuda.so.1 not found), or one too old for this CUDA runtime";
    case cudaErrorNoDevice:
        return "no CUDA-capable device is detected";
    default:
        return cudaGetErrorString(e);
    }
}

static enum cge_status lt_status(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return CGE_OK;
    if (s == CUBLAS_STATUS_ALLOC_FAILED)
        return cge__err(CGE_ERR_NOMEM, "cuBLASLt: %s: allocation failed", what);
    return cge__err(CGE_ERR_GPU, "cuBLASLt: %s: status %d", what, (int)s);
}

#    define LAUNCH(call, what) cu_status((cudaError_t)(call), what)

/* ==== memory ================================================================================ */
static enum cge_status dev_alloc(void *ctx, size_t bytes, void **out) {
    struct cuda_be *c = ctx;
    cudaSetDevice(c->device);
    cudaError_t e = cudaMalloc(out, bytes);
    if (e == cudaSuccess) return CGE_OK;
    cudaGetLastError(); /* clear it: an out-of-memory is not sticky */
    *out = NULL;
    if (e == cudaErrorMemoryAllocation) return CGE_ERR_NOMEM;
    cge__log(CGE_LOG_ERROR, "%s: cudaMalloc(%zu): %s", c->name, bytes, cudaGetErrorString(e));
    return CGE_ERR_GPU;
}

static void dev_free(void *ctx, void *p, size_t bytes) {
    struct cuda_be *c = ctx;
    (void)bytes;
    cudaSetDevice(c->device);
    cudaFree(p); /* synchronizes the device: no queued kernel can still use p */
}

static void *be_alloc(struct cge_backend *be, size_t bytes) {
    void *p = NULL;
    cge__gpu_mm_alloc(CB(be)->mm, bytes, &p);
    return p;
}

static void be_free(struct cge_backend *be, void *p) {
    cge__gpu_mm_release(CB(be)->mm, p);
}

/* Grows one of the instance's buffers to at least n bytes (contents not kept). */
static enum cge_status reserve(struct cuda_be *c, void **buf, size_t *cap, size_t n) {
    if (*cap >= n) return CGE_OK;
    cge__gpu_mm_release(c->mm, *buf); /* pooled: a later kernel on this stream may reuse it */
    *buf = NULL;
    *cap = 0;
    enum cge_status s = cge__gpu_mm_alloc(c->mm, n, buf);
    if (s == CGE_OK) *cap = n;
    return s;
}

/* Copies n bytes of host arguments to the instance's argument buffer. */
static enum cge_status put_args(struct cuda_be *c, const void *host, size_t n, void **dev) {
    enum cge_status s = reserve(c, &c->args, &c->args_cap, n);
    if (s != CGE_OK) return s;
    cudaSetDevice(c->device);
    *dev = c->args;
    return cu_status(cudaMemcpyAsync(c->args, host, n, cudaMemcpyHostToDevice, c->stream),
                     "copy arguments");
}

static enum cge_status be_to_device(struct cge_backend *be, void *dst, const void *host, size_t n) {
    struct cuda_be *c = CB(be);
    if (n == 0) return CGE_OK;
    cudaSetDevice(c->device);
    return cu_status(cudaMemcpyAsync(dst, host, n, cudaMemcpyHostToDevice, c->stream), "to_device");
}

static enum cge_status be_to_host(struct cge_backend *be, void *host, const void *src, size_t n) {
    struct cuda_be *c = CB(be);
    if (n == 0) return CGE_OK;
    cudaSetDevice(c->device);
    enum cge_status s =
        cu_status(cudaMemcpyAsync(host, src, n, cudaMemcpyDeviceToHost, c->stream), "to_host");
    if (s != CGE_OK) return s;
    return cu_status(cudaStreamSynchronize(c->stream), "to_host");
}

static enum cge_status be_copy(struct cge_backend *be, void *dst, const void *src, size_t n) {
    struct cuda_be *c = CB(be);
    if (n == 0) return CGE_OK;
    cudaSetDevice(c->device);
    return cu_status(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c->stream), "copy");
}

static enum cge_status be_sync(struct cge_backend *be) {
    struct cuda_be *c = CB(be);
    cudaSetDevice(c->device);
    return cu_status(cudaStreamSynchronize(c->stream), "sync");
}

/* ==== linear layers ========================================================================= */
static void be_linear_free(struct cge_backend *be, struct cge_be_linear *l) {
    (void)be;
    if (!l) return;
    struct cge_gpu_mm *mm = l->owner->mm;
    cge__gpu_mm_release(mm, l->w);
    cge__gpu_mm_release(mm, l->wscale);
    cge__gpu_mm_release(mm, l->bias);
    cge__free(l);
}

static size_t be_linear_bytes(const struct cge_be_linear *l) {
    return l ? l->bytes : 0;
}

static enum cge_status be_linear_init(struct cge_backend *be, struct cge_be_linear **out,
                                      const void *w, enum cge_dtype src_dtype, const float *b,
                                      int64_t n_out, int64_t n_in, enum cge_dtype storage) {
    struct cuda_be *c = CB(be);
    *out = NULL;
    if (!w || n_out <= 0 || n_in <= 0)
        return cge__err(CGE_ERR_INVALID_VALUE, "cuda linear: bad shape (%lld, %lld)",
                        (long long)n_out, (long long)n_in);
    if (src_dtype != CGE_DTYPE_F32 && src_dtype != CGE_DTYPE_F16 && src_dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED, "cuda linear: source dtype %s",
                        cge_dtype_str(src_dtype));
    if (storage != CGE_DTYPE_F32 && storage != CGE_DTYPE_BF16 && storage != CGE_DTYPE_I8)
        return cge__err(CGE_ERR_UNSUPPORTED, "cuda linear: storage dtype %s",
                        cge_dtype_str(storage));
    if (storage == CGE_DTYPE_I8 && n_in % 4)
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "cuda linear: int8 needs n_in a multiple of 4 (cuBLASLt), got %lld",
                        (long long)n_in);
    struct cge_be_linear *l = cge__calloc(1, sizeof(*l));
    if (!l) return cge__err(CGE_ERR_NOMEM, "cuda linear: out of host memory");
    l->n_out = n_out;
    l->n_in = n_in;
    l->storage = storage;
    l->owner = c;
    const int64_t nw = n_out * n_in;
    const size_t src_bytes = (size_t)nw * cge_dtype_size(src_dtype);
    void *src = NULL, *f32 = NULL;
    enum cge_status s;
    cudaSetDevice(c->device);
    /* the checkpoint's bytes as they are, then converted on the device */
    s = cge__gpu_mm_alloc(c->mm, src_bytes, &src);
    if (s == CGE_OK)
        s = cu_status(cudaMemcpyAsync(src, w, src_bytes, cudaMemcpyHostToDevice, c->stream),
                      "upload weights");
    if (s != CGE_OK) goto fail;
    if (storage == CGE_DTYPE_F32 || storage == CGE_DTYPE_I8) {
        if (src_dtype == CGE_DTYPE_F32) {
            f32 = src;
            src = NULL;
        } else {
            s = cge__gpu_mm_alloc(c->mm, (size_t)nw * sizeof(float), &f32);
            if (s == CGE_OK)
                s = LAUNCH(cge__k_to_f32(c->stream, src, (int)src_dtype, nw, f32),
                           "weights to f32");
            if (s != CGE_OK) goto fail;
        }
        if (storage == CGE_DTYPE_F32) {
            l->w = f32;
            f32 = NULL;
            l->bytes = (size_t)nw * sizeof(float);
        } else {
            s = cge__gpu_mm_alloc(c->mm, (size_t)nw, &l->w);
            if (s == CGE_OK)
                s = cge__gpu_mm_alloc(c->mm, (size_t)n_out * sizeof(float), (void **)&l->wscale);
            if (s == CGE_OK)
                s = LAUNCH(cge__k_quant_rows(c->stream, f32, n_out, n_in, l->w, l->wscale),
                           "quantize weights");
            if (s != CGE_OK) goto fail;
            l->bytes = (size_t)nw + (size_t)n_out * sizeof(float);
        }
    } else { /* BF16 */
        if (src_dtype == CGE_DTYPE_BF16) {
            l->w = src;
            src = NULL;
        } else {
            s = cge__gpu_mm_alloc(c->mm, (size_t)nw * 2, &l->w);
            if (s == CGE_OK)
                s = LAUNCH(cge__k_to_bf16(c->stream, src, (int)src_dtype, nw, l->w),
                           "weights to bf16");
            if (s != CGE_OK) goto fail;
        }
        l->bytes = (size_t)nw * 2;
    }
    if (b) {
        s = cge__gpu_mm_alloc(c->mm, (size_t)n_out * sizeof(float), (void **)&l->bias);
        if (s == CGE_OK)
            s = cu_status(cudaMemcpyAsync(l->bias, b, (size_t)n_out * sizeof(float),
                                          cudaMemcpyHostToDevice, c->stream),
                          "upload bias");
        if (s != CGE_OK) goto fail;
        l->bytes += (size_t)n_out * sizeof(float);
    }
    /* done before the temporaries go back to the pool, so a fault is reported here */
    s = cu_status(cudaStreamSynchronize(c->stream), "linear init");
    if (s != CGE_OK) goto fail;
    cge__gpu_mm_release(c->mm, src);
    cge__gpu_mm_release(c->mm, f32);
    *out = l;
    return CGE_OK;
fail:
    cudaStreamSynchronize(c->stream);
    cge__gpu_mm_release(c->mm, src);
    cge__gpu_mm_release(c->mm, f32);
    be_linear_free(be, l);
    return s;
}

/* The largest power of two (up to 256) that divides p's address. */
static uint32_t alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a)
        a >>= 1;
    return a;
}

/* One cuBLASLt GEMM in the row-major ⇄ column-major reading: row-major y (m, n_out) = x Wᵀ is
 * column-major Y (n_out × m) = Wᵀ·X with W stored (n_in × n_out) and X (n_in × m). */
static enum cge_status gemm(struct cuda_be *c, const struct cge_be_linear *l, const void *x,
                            int64_t m, void *y, int fuse_relu, int fuse_bias) {
    const int i8 = l->storage == CGE_DTYPE_I8;
    const cudaDataType_t ab = l->storage == CGE_DTYPE_F32 ? CUDA_R_32F
                              : i8                        ? CUDA_R_8I
                                                          : CUDA_R_16BF;
    const cudaDataType_t cd = i8 ? CUDA_R_32I : CUDA_R_32F;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasStatus_t st = lt.desc_create(&op, i8 ? CUBLAS_COMPUTE_32I : CUBLAS_COMPUTE_32F,
                                       i8 ? CUDA_R_32I : CUDA_R_32F);
    const cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.desc_set(op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof(tr));
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.desc_set(op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof(nt));
    if (st == CUBLAS_STATUS_SUCCESS && (fuse_relu || fuse_bias)) {
        cublasLtEpilogue_t ep =
            fuse_bias ? (fuse_relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                      : CUBLASLT_EPILOGUE_RELU;
        st = lt.desc_set(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep));
        if (st == CUBLAS_STATUS_SUCCESS && fuse_bias) {
            const float *bp = l->bias;
            const cudaDataType_t bt = CUDA_R_32F;
            st = lt.desc_set(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof(bp));
            if (st == CUBLAS_STATUS_SUCCESS)
                st = lt.desc_set(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt));
        }
    }
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.layout_create(&la, ab, (uint64_t)l->n_in, (uint64_t)l->n_out, l->n_in);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.layout_create(&lb, ab, (uint64_t)l->n_in, (uint64_t)m, l->n_in);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.layout_create(&lc, cd, (uint64_t)l->n_out, (uint64_t)m, l->n_out);
    if (st == CUBLAS_STATUS_SUCCESS) st = lt.pref_create(&pref);
    size_t ws = WORKSPACE_BYTES;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    /* the heuristic assumes 256-byte aligned operands unless told: model code passes views
     * into larger buffers (a fused QKV, a row offset), so state the real alignment */
    const struct {
        cublasLtMatmulPreferenceAttributes_t attr;
        const void *p;
    } al[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, l->w},
              {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, x},
              {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, y},
              {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, y}};
    for (size_t i = 0; i < sizeof(al) / sizeof(al[0]) && st == CUBLAS_STATUS_SUCCESS; i++) {
        uint32_t a = alignment(al[i].p);
        st = lt.pref_set(pref, al[i].attr, &a, sizeof(a));
    }
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.heuristic(c->lt, op, la, lb, lc, lc, pref, 1, &heur, &found);
    enum cge_status s = lt_status(st, "describe GEMM");
    if (s == CGE_OK && found == 0)
        s = cge__err(
            CGE_ERR_UNSUPPORTED, "cuBLASLt: no %s GEMM algorithm for (%lld × %lld) · (%lld)",
            cge_dtype_str(l->storage), (long long)m, (long long)l->n_in, (long long)l->n_out);
    if (s == CGE_OK) {
        const float f1 = 1.0f, f0 = 0.0f;
        const int32_t i1 = 1, i0 = 0;
        const void *alpha = i8 ? (const void *)&i1 : (const void *)&f1;
        const void *beta = i8 ? (const void *)&i0 : (const void *)&f0;
        s = lt_status(lt.matmul(c->lt, op, alpha, l->w, la, x, lb, beta, y, lc, y, lc, &heur.algo,
                                c->ws, WORKSPACE_BYTES, c->stream),
                      "matmul");
    }
    if (pref) lt.pref_destroy(pref);
    if (lc) lt.layout_destroy(lc);
    if (lb) lt.layout_destroy(lb);
    if (la) lt.layout_destroy(la);
    if (op) lt.desc_destroy(op);
    return s;
}

static size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

static enum cge_status be_linear_unlocked(struct cge_backend *be, const struct cge_be_linear *l,
                                          const float *x, int64_t m, float *y,
                                          enum cge_be_act act) {
    struct cuda_be *c = CB(be);
    if (m <= 0) return CGE_OK;
    cudaSetDevice(c->device);
    const int64_t nx = m * l->n_in;
    enum cge_status s;
    if (l->storage == CGE_DTYPE_I8) {
        /* [x as int8 (m·n_in) | row scales (m) | int32 products (m·n_out)] */
        const size_t o_sx = align256((size_t)nx), o_acc = o_sx + align256((size_t)m * 4);
        s = reserve(c, &c->scratch, &c->scratch_cap, o_acc + (size_t)(m * l->n_out) * 4);
        if (s != CGE_OK) return s;
        int8_t *xq = c->scratch;
        float *sx = (float *)((char *)c->scratch + o_sx);
        int32_t *acc = (int32_t *)((char *)c->scratch + o_acc);
        s = LAUNCH(cge__k_quant_rows(c->stream, x, m, l->n_in, xq, sx), "quantize activations");
        if (s == CGE_OK) s = gemm(c, l, xq, m, acc, 0, 0);
        if (s == CGE_OK)
            s = LAUNCH(cge__k_dequant_bias_act(c->stream, acc, m, l->n_out, sx, l->wscale, l->bias,
                                               (int)act, y),
                       "dequantize");
        return s;
    }
    const void *xin = x;
    if (l->storage == CGE_DTYPE_BF16) {
        s = reserve(c, &c->scratch, &c->scratch_cap, (size_t)nx * 2);
        if (s != CGE_OK) return s;
        s = LAUNCH(cge__k_to_bf16(c->stream, x, CGE_DTYPE_F32, nx, c->scratch),
                   "activations to bf16");
        if (s != CGE_OK) return s;
        xin = c->scratch;
    }
    const int relu = act == CGE_BE_ACT_RELU;
    s = gemm(c, l, xin, m, y, relu, l->bias != NULL);
    if (s == CGE_ERR_UNSUPPORTED && (relu || l->bias)) {
        /* no algorithm with this epilogue for these shapes: the plain GEMM, then one pass */
        s = gemm(c, l, xin, m, y, 0, 0);
        if (s == CGE_OK)
            s = LAUNCH(cge__k_bias_act(c->stream, y, m, l->n_out, l->bias, (int)act), "bias");
        return s;
    }
    if (s == CGE_OK && act != CGE_BE_ACT_NONE && !relu)
        s = LAUNCH(cge__k_act(c->stream, (int)act, y, m * l->n_out), "activation");
    return s;
}

/* ==== row-wise, element-wise ================================================================ */
static enum cge_status be_layernorm(struct cge_backend *be, float *x, int64_t rows, int64_t d,
                                    const float *w, const float *b, float eps) {
    return LAUNCH(cge__k_layernorm(S(be), x, rows, d, w, b, eps), "layernorm");
}
static enum cge_status be_rmsnorm(struct cge_backend *be, float *x, int64_t rows, int64_t d,
                                  const float *w, float eps) {
    return LAUNCH(cge__k_rmsnorm(S(be), x, rows, d, w, eps), "rmsnorm");
}
static enum cge_status be_softmax(struct cge_backend *be, float *x, int64_t rows, int64_t n) {
    return LAUNCH(cge__k_softmax(S(be), x, rows, n), "softmax");
}
static enum cge_status be_act(struct cge_backend *be, enum cge_be_act a, float *x, int64_t n) {
    return LAUNCH(cge__k_act(S(be), (int)a, x, n), "activation");
}
static enum cge_status be_glu(struct cge_backend *be, enum cge_be_act a, float *x, int64_t rows,
                             int64_t n, float *y) {
    return LAUNCH(cge__k_glu(S(be), (int)a, x, rows, n, y), "glu");
}
static enum cge_status be_add(struct cge_backend *be, float *y, const float *x, int64_t n) {
    return LAUNCH(cge__k_add(S(be), y, x, n), "add");
}
static enum cge_status be_add_row(struct cge_backend *be, float *y, int64_t rows, int64_t d,
                                  const float *b) {
    return LAUNCH(cge__k_add_row(S(be), y, rows, d, b), "add_row");
}
static enum cge_status be_mul(struct cge_backend *be, float *y, const float *x, int64_t n) {
    return LAUNCH(cge__k_mul(S(be), y, x, n), "mul");
}
static enum cge_status be_scale(struct cge_backend *be, float *x, int64_t n, float f) {
    return LAUNCH(cge__k_scale(S(be), x, n, f), "scale");
}

/* ==== attention, positions, embeddings ====================================================== */
static enum cge_status be_attention_unlocked(struct cge_backend *be, const struct cge_attn *a,
                                             const float *q, int64_t ldq, const float *k,
                                             int64_t ldk, const float *v, int64_t ldv, float *out,
                                             int64_t ldo) {
    struct cuda_be *c = CB(be);
    if (a->n_head <= 0 || a->n_kv_head <= 0 || a->n_head % a->n_kv_head || a->d_head <= 0 ||
        a->n_batch < 0 || a->n_seq < 0)
        return cge__err(CGE_ERR_INVALID_VALUE, "cuda attention: bad shape (%d heads, %d kv heads)",
                        a->n_head, a->n_kv_head);
    if (a->n_batch == 0 || a->n_seq == 0) return CGE_OK;
    void *len = NULL;
    if (a->len) {
        for (int64_t b = 0; b < a->n_batch; b++)
            if (a->len[b] < 0 || a->len[b] > a->n_seq)
                return cge__err(CGE_ERR_INVALID_VALUE,
                                "cuda attention: length %lld of sequence %lld outside [0, %lld]",
                                (long long)a->len[b], (long long)b, (long long)a->n_seq);
        enum cge_status s = put_args(c, a->len, (size_t)a->n_batch * sizeof(int64_t), &len);
        if (s != CGE_OK) return s;
    }
    cudaSetDevice(c->device);
    int e = cge__k_attention(c->stream, a->n_batch, a->n_seq, a->n_head, a->n_kv_head, a->d_head,
                             a->scale, len, a->bias, a->causal, a->window, q, ldq, k, ldk, v, ldv,
                             out, ldo);
    if (e == (int)cudaErrorInvalidValue)
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "cuda attention: %lld keys do not fit in a block's shared memory",
                        (long long)a->n_seq);
    return LAUNCH(e, "attention");
}

static enum cge_status be_rope_unlocked(struct cge_backend *be, float *x, int64_t n_tok, int64_t ld,
                                        int n_head, int d_head, const int32_t *pos, float theta) {
    struct cuda_be *c = CB(be);
    if (n_tok <= 0 || n_head <= 0 || d_head < 2) return CGE_OK;
    /* [inv_freq (d_head/2) | pos (n_tok)], inv_freq as HF and attention.c compute it */
    const int half = d_head / 2;
    const size_t nb = (size_t)half * sizeof(float) + (size_t)n_tok * sizeof(int32_t);
    char *host = cge__malloc(nb);
    if (!host) return cge__err(CGE_ERR_NOMEM, "cuda rope: out of host memory");
    float *inv = (float *)host;
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)d_head);
    memcpy(host + (size_t)half * sizeof(float), pos, (size_t)n_tok * sizeof(int32_t));
    void *dev = NULL;
    enum cge_status s = put_args(c, host, nb, &dev);
    cge__free(host); /* staged by the copy already (pageable memory) */
    if (s != CGE_OK) return s;
    const float *dinv = dev;
    const int32_t *dpos = (const int32_t *)((char *)dev + (size_t)half * sizeof(float));
    return LAUNCH(cge__k_rope(c->stream, x, n_tok, ld, n_head, d_head, dpos, dinv), "rope");
}

static enum cge_status be_embed_gather_unlocked(struct cge_backend *be, const void *table,
                                                enum cge_dtype dtype, int64_t vocab, int64_t d,
                                                const int32_t *ids, int64_t n, float *out) {
    struct cuda_be *c = CB(be);
    if (vocab <= 0 || d <= 0 || n < 0 || !table || (n > 0 && (!ids || !out)))
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "embed_gather: bad arguments (vocab %lld, d %lld, n %lld)",
                        (long long)vocab, (long long)d, (long long)n);
    if (dtype != CGE_DTYPE_F32 && dtype != CGE_DTYPE_F16 && dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED, "embed_gather: table dtype %s not supported",
                        cge_dtype_str(dtype));
    for (int64_t i = 0; i < n; i++) /* checked here: a kernel cannot report a bad id */
        if (ids[i] < 0 || ids[i] >= vocab)
            return cge__err(CGE_ERR_INVALID_VALUE,
                            "embed_gather: token id %d at position %lld outside [0, %lld)",
                            (int)ids[i], (long long)i, (long long)vocab);
    if (n == 0) return CGE_OK;
    void *dids = NULL;
    enum cge_status s = put_args(c, ids, (size_t)n * sizeof(int32_t), &dids);
    if (s != CGE_OK) return s;
    return LAUNCH(cge__k_embed_gather(c->stream, table, (int)dtype, d, dids, n, out),
                  "embed_gather");
}

/* The entries that touch the instance's buffers, each under its mutex. */
static enum cge_status be_linear(struct cge_backend *be, const struct cge_be_linear *l,
                                 const float *x, int64_t m, float *y, enum cge_be_act act) {
    struct cuda_be *c = CB(be);
    pthread_mutex_lock(&c->mu);
    enum cge_status s = be_linear_unlocked(be, l, x, m, y, act);
    pthread_mutex_unlock(&c->mu);
    return s;
}
static enum cge_status be_attention(struct cge_backend *be, const struct cge_attn *a,
                                    const float *q, int64_t ldq, const float *k, int64_t ldk,
                                    const float *v, int64_t ldv, float *out, int64_t ldo) {
    struct cuda_be *c = CB(be);
    pthread_mutex_lock(&c->mu);
    enum cge_status s = be_attention_unlocked(be, a, q, ldq, k, ldk, v, ldv, out, ldo);
    pthread_mutex_unlock(&c->mu);
    return s;
}
static enum cge_status be_rope(struct cge_backend *be, float *x, int64_t n_tok, int64_t ld,
                               int n_head, int d_head, const int32_t *pos, float theta) {
    struct cuda_be *c = CB(be);
    pthread_mutex_lock(&c->mu);
    enum cge_status s = be_rope_unlocked(be, x, n_tok, ld, n_head, d_head, pos, theta);
    pthread_mutex_unlock(&c->mu);
    return s;
}
static enum cge_status be_embed_gather(struct cge_backend *be, const void *table,
                                       enum cge_dtype dtype, int64_t vocab, int64_t d,
                                       const int32_t *ids, int64_t n, float *out) {
    struct cuda_be *c = CB(be);
    pthread_mutex_lock(&c->mu);
    enum cge_status s = be_embed_gather_unlocked(be, table, dtype, vocab, d, ids, n, out);
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* ==== open, describe, destroy =============================================================== */
static void be_destroy(struct cge_backend *be) {
    if (!be) return;
    struct cuda_be *c = CB(be);
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->mm) {
        cge__gpu_mm_release(c->mm, c->ws);
        cge__gpu_mm_release(c->mm, c->scratch);
        cge__gpu_mm_release(c->mm, c->args);
        cge__gpu_mm_free(c->mm);
    }
    if (c->lt) lt.destroy(c->lt);
    if (c->stream) cudaStreamDestroy(c->stream);
    pthread_mutex_destroy(&c->mu);
    cge__free(c);
}

void cge__cuda_backend_mem(struct cge_backend *be, struct cge_gpu_mm_stats *st) {
    cge__gpu_mm_stats(CB(be)->mm, st);
}

enum cge_status cge__cuda_backend_open(int device, struct cge_backend **out) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return cge__err(CGE_ERR_UNSUPPORTED, "cuda: no device: %s", no_device_reason(e));
    }
    if (device < 0 || device >= n)
        return cge__err(CGE_ERR_UNSUPPORTED, "cuda:%d: no such device (%d found)", device, n);
    pthread_once(&lt_once, lt_load);
    if (lt.err[0]) return cge__err(CGE_ERR_UNSUPPORTED, "cuda: %s", lt.err);
    struct cuda_be *c = cge__calloc(1, sizeof(*c));
    if (!c) return cge__err(CGE_ERR_NOMEM, "cuda: out of host memory");
    pthread_mutex_init(&c->mu, NULL);
    c->device = device;
    snprintf(c->name, sizeof(c->name), "cuda:%d", device);
    enum cge_status s = cu_status(cudaSetDevice(device), "set device");
    if (s == CGE_OK)
        s = cu_status(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream");
    if (s == CGE_OK) s = lt_status(lt.create(&c->lt), "create handle");
    if (s == CGE_OK) {
        struct cge_gpu_dev dev = {.name = c->name, .ctx = c, .alloc = dev_alloc, .free = dev_free};
        struct cge_gpu_mm_params p = cge__gpu_mm_default_params();
        const char *lim = getenv("CGE_GPU_MEMORY_LIMIT_MB");
        if (lim && atol(lim) > 0) p.limit = (size_t)atol(lim) << 20;
        s = cge__gpu_mm_new(&dev, &p, &c->mm);
    }
    if (s == CGE_OK) s = cge__gpu_mm_alloc(c->mm, WORKSPACE_BYTES, &c->ws);
    if (s != CGE_OK) {
        char why[512];
        snprintf(why, sizeof(why), "%s", cge_errmsg());
        c->be.ctx = c;
        be_destroy(&c->be);
        return cge__err(s == CGE_ERR_NOMEM ? CGE_ERR_NOMEM : CGE_ERR_UNSUPPORTED, "%s", why);
    }
    struct cge_backend *be = &c->be;
    be->name = "cuda";
    be->ctx = c;
    be->alloc = be_alloc;
    be->free = be_free;
    be->to_device = be_to_device;
    be->to_host = be_to_host;
    be->sync = be_sync;
    be->linear_init = be_linear_init;
    be->linear_free = be_linear_free;
    be->linear = be_linear;
    be->linear_bytes = be_linear_bytes;
    be->layernorm = be_layernorm;
    be->rmsnorm = be_rmsnorm;
    be->softmax = be_softmax;
    be->act = be_act;
    be->add = be_add;
    be->add_row = be_add_row;
    be->mul = be_mul;
    be->scale = be_scale;
    be->attention = be_attention;
    be->rope = be_rope;
    be->embed_gather = be_embed_gather;
    be->copy = be_copy;
    be->glu = be_glu;
    be->destroy = be_destroy;
    *out = be;
    return CGE_OK;
}

int cge__cuda_describe(char *buf, size_t cap) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return snprintf(buf, cap, "cuda: unavailable: %s", no_device_reason(e));
    }
    int len = snprintf(buf, cap, "cuda: %d device%s", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        struct cudaDeviceProp p;
        char one[320];
        if (cudaGetDeviceProperties(&p, i) == cudaSuccess)
            snprintf(one, sizeof(one), "%s%s (%.0f GiB, sm_%d%d)", i ? ", " : ": ", p.name,
                     (double)p.totalGlobalMem / (double)(1 << 30), p.major, p.minor);
        else
            snprintf(one, sizeof(one), "%s? (no properties)", i ? ", " : ": ");
        len += snprintf((size_t)len < cap ? buf + len : NULL,
                        (size_t)len < cap ? cap - (size_t)len : 0, "%s", one);
    }
    return len;
}

#else
typedef int cge__cuda_backend_not_built; /* CUDA off: an empty translation unit is not C */
#endif /* CGE_HAVE_CUDA */
