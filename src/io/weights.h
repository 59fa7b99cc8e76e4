/*
 * weights.h: named tensors from checkpoint files, zero-copy where the format allows.
 *
 * A struct cge_weights is one of: a safetensors file (memory-mapped, tensors point into the
 * map), a sharded safetensors checkpoint (model.safetensors.index.json: one map per shard), or
 * a PyTorch pytorch_model.bin (zip + pickle, read by a restricted unpickler that never runs
 * code; tensor data points into the mapped zip when stored uncompressed).
 * Everything in a file is validated before any tensor is handed out.
 * A cge_weights is read-only after open and may be shared by threads.
 */
#ifndef CGE_IO_WEIGHTS_H
#define CGE_IO_WEIGHTS_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

#define CGE_MAX_DIMS 8

struct cge_tensor_info {
    const char *name;
    enum cge_dtype dtype;
    int n_dim;
    int64_t shape[CGE_MAX_DIMS];
    int64_t n_elem;
    const void *data; /* n_elem elements of dtype, little-endian, row-major (contiguous), aligned
                         to the element size; valid while the weights live */
    size_t n_bytes;
};

struct cge_weights;

/* Opens `path`: a .safetensors file, a model.safetensors.index.json, a pytorch_model.bin, or a
 * folder holding one of them (looked up in that order). On failure *out is NULL and
 * cge_errmsg() names the file and the problem (with the byte offset where there is one). */
enum cge_status cge_weights_open(const char *path, struct cge_weights **out);
void cge_weights_free(struct cge_weights *w);

/* Where the tensors came from (the path opened), for error messages. */
const char *cge_weights_path(const struct cge_weights *w);
int64_t cge_weights_count(const struct cge_weights *w);
/* i-th tensor in file order (sorted by name for pickles); NULL outside [0, count). */
const struct cge_tensor_info *cge_weights_at(const struct cge_weights *w, int64_t i);
/* NULL when there is no tensor of that name. */
const struct cge_tensor_info *cge_weights_find(const struct cge_weights *w, const char *name);

/* Finds `name`, checks its shape (n_dim dims; a -1 in shape matches any size; shape may be
 * NULL to skip the check) and returns a fresh fp32 copy (cge__free it). Errors name the
 * weights' path and the tensor: "<path>: tensor 'x': shape [3, 4], expected [3, 5]".
 * Statuses: CGE_ERR_MODEL_LOAD (no such tensor), CGE_ERR_INVALID_DIM (shape), CGE_ERR_UNSUPPORTED
 * (an integer dtype: only F32, F16, BF16 and F64 convert), CGE_ERR_NOMEM. */
enum cge_status cge_weights_get_f32(const struct cge_weights *w, const char *name, int n_dim,
                                    const int64_t *shape, float **out);

/* Hint: the caller has converted tensor t into its own storage and will not read t->data again
 * soon. Pages of a memory-mapped file are dropped from the resident set (a later read re-faults
 * them from the file, so this is always safe); tensors held in heap memory are left alone. */
void cge_weights_release(const struct cge_weights *w, const struct cge_tensor_info *t);

/* Parses a safetensors image held in memory (used by the fuzzer and by cge_weights_open).
 * The buffer must outlive *out. */
enum cge_status cge_weights_from_safetensors_buffer(const uint8_t *buf, size_t len,
                                                    const char *label, struct cge_weights **out);

#endif /* CGE_IO_WEIGHTS_H */
