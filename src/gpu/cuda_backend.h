/*
 * cuda_backend.h: the CUDA implementation of struct cge_backend (src/tensor/backend.h).
 *
 * Compiled only when the build finds nvcc and cuBLAS (CMake option CGE_CUDA; the build then
 * defines CGE_HAVE_CUDA). cge_backend_open("cuda[:N]") in src/tensor/backend.c reaches it.
 *
 * Thread safety: a backend instance (its stream, scratch and memory manager) must not be used
 * by two threads at once: give each worker its own. A linear layer is immutable after init and
 * may be used through any instance on the same device. cge__cuda_describe is thread-safe.
 */
#ifndef CGE_GPU_CUDA_BACKEND_H
#define CGE_GPU_CUDA_BACKEND_H

#include "cge.h"
#include "gpu/memmgr.h"

#include <stddef.h>

struct cge_backend;

/* A backend on CUDA device `device` (0-based), its memory from a manager with the default
 * limit (16 GiB, or CGE_GPU_MEMORY_LIMIT_MB from the environment). CGE_ERR_UNSUPPORTED with the
 * reason (no driver, no such device, cuBLASLt not loadable) in cge_errmsg when none can be had.
 * Free with its destroy entry (cge_backend_release), after every buffer and linear layer made
 * through it: destroy gives all of its device memory back. */
enum cge_status cge__cuda_backend_open(int device, struct cge_backend **out);
/* "cuda: N devices: NAME (X GiB), ..." or "cuda: unavailable: <reason>"; snprintf rules. */
int cge__cuda_describe(char *buf, size_t cap);
/* The memory manager's figures for a backend from cge__cuda_backend_open (peak device memory
 * for reports). */
void cge__cuda_backend_mem(struct cge_backend *be, struct cge_gpu_mm_stats *st);

#endif /* CGE_GPU_CUDA_BACKEND_H */
