/*
 * memmgr.h: the GPU memory manager: a device memory limit, a pool of freed buffers by size
 * class, figures, and defragmentation, over any device allocator (CUDA, or a simulated device in
 * the tests).
 *
 * Key decision: the manager never moves a live buffer. Device pointers are held by model code
 * and by kernels queued on a stream, so "compacting" can only mean giving idle pooled buffers
 * back to the device allocator (which coalesces its free space), never relocating data. It does
 * so when the pool's share of reserved memory passes a threshold, before an allocation would
 * break the limit, and once more when the device itself refuses an allocation.
 *
 * Every request is rounded up to a size class (multiples of 256 B, four classes per power of two
 * up to 64 MiB: at most 25% waste past 1 KiB; above, 2 MiB steps: at most 3%, since those are mostly weights held
 * for a model's life), and the limit is enforced on the class sizes actually held from the
 * device (live plus pooled), so the figures match what the device sees. A small class is reused
 * exactly; a large request takes the smallest pooled large buffer with at most 1/8 to spare.
 *
 * Thread safety: all manager functions are thread-safe (one mutex per manager). The device
 * allocator is only ever called with that mutex held.
 */
#ifndef CGE_GPU_MEMMGR_H
#define CGE_GPU_MEMMGR_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

/* ---- device allocators ------------------------------------------------------------------------
 * Raw device memory: alloc returns CGE_OK with *out set, CGE_ERR_NOMEM when the device is out of
 * memory (the manager then defragments and retries once), or CGE_ERR_GPU for any other device
 * failure (reported as is). free takes the size that was allocated. */
struct cge_gpu_dev {
    const char *name; /* "cuda:0", "sim" */
    void *ctx;        /* the allocator's own state */
    enum cge_status (*alloc)(void *ctx, size_t bytes, void **out);
    void (*free)(void *ctx, void *p, size_t bytes);
};

/* The simulated device of the tests: a fixed-capacity address space handed out first-fit in
 * 256-byte units, so it fragments as a real one does (a large request fails when no single
 * free extent holds it, whatever the total free). Its pointers are fake addresses: never
 * dereference them. Thread-safe. */
struct cge_gpu_sim;
struct cge_gpu_sim *cge__gpu_sim_new(size_t capacity);
void cge__gpu_sim_free(struct cge_gpu_sim *s); /* NULL is a no-op */
/* A device allocator table over s (valid while s lives). */
struct cge_gpu_dev cge__gpu_sim_dev(struct cge_gpu_sim *s);
/* Failure injection: the k-th following allocation (0-based) and every later one fail with
 * `status` (CGE_ERR_NOMEM or CGE_ERR_GPU) until called with k < 0. */
void cge__gpu_sim_fail_after(struct cge_gpu_sim *s, long k, enum cge_status status);
struct cge_gpu_sim_stats {
    size_t capacity, used;
    size_t largest_free; /* the largest single free extent */
    int n_free_extents;
    long n_alloc, n_free, n_failed;
};
void cge__gpu_sim_stats(struct cge_gpu_sim *s, struct cge_gpu_sim_stats *st);

/* ---- the manager ------------------------------------------------------------------------------ */
struct cge_gpu_mm_params {
    size_t limit;            /* bytes held from the device at most (default 16 GiB) */
    double defrag_threshold; /* release the pool when pooled / reserved exceeds it (0.5) */
    size_t defrag_min;       /* ... and the pool holds at least this much (4 GiB: a forward's
                              * activations are pooled between calls; releasing them every
                              * call would turn the pool into cudaMalloc/cudaFree churn) */
};
struct cge_gpu_mm_params cge__gpu_mm_default_params(void);

struct cge_gpu_mm_stats {
    size_t limit;
    size_t used;      /* live buffers (class sizes) */
    size_t pooled;    /* freed buffers kept for reuse */
    size_t reserved;  /* used + pooled: what is held from the device */
    size_t available; /* limit - used: what a request may still take (pooled memory counts) */
    size_t peak_used, peak_reserved;
    long n_alloc;                 /* successful allocations */
    long n_reused;                /* ... of which served from the pool */
    long n_dev_alloc, n_dev_free; /* calls into the device allocator */
    long n_failed;                /* refused allocations */
    long n_defrag;                /* pool releases (threshold, limit or device refusal) */
    int n_live;
    double fragmentation; /* pooled / reserved (0 when nothing is reserved) */
};

struct cge_gpu_mm;
/* A manager over dev (copied; dev's ctx must outlive the manager). p may be NULL (defaults).
 * CGE_ERR_NOMEM when host memory runs out. */
enum cge_status cge__gpu_mm_new(const struct cge_gpu_dev *dev, const struct cge_gpu_mm_params *p,
                                struct cge_gpu_mm **out);
/* Frees every pooled buffer to the device; live buffers are leaked to the device allocator
 * (reported as a warning: the owner should have freed them). NULL is a no-op. */
void cge__gpu_mm_free(struct cge_gpu_mm *mm);

/* A buffer of at least `bytes` (0 counts as 1). CGE_ERR_NOMEM with the sizes in cge_errmsg when
 * the limit or the device refuses it; CGE_ERR_GPU for other device errors. */
enum cge_status cge__gpu_mm_alloc(struct cge_gpu_mm *mm, size_t bytes, void **out);
/* Returns p to the pool (p may be NULL). A pointer the manager did not hand out is ignored with
 * a logged warning. */
void cge__gpu_mm_release(struct cge_gpu_mm *mm, void *p);
/* Gives every pooled buffer back to the device; returns the bytes released. Live buffers stay. */
size_t cge__gpu_mm_defrag(struct cge_gpu_mm *mm);
void cge__gpu_mm_stats(struct cge_gpu_mm *mm, struct cge_gpu_mm_stats *st);
/* The class size a request of `bytes` is rounded up to. */
size_t cge__gpu_mm_class_size(size_t bytes);

#endif /* CGE_GPU_MEMMGR_H */
