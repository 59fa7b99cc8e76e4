/*
 * io_internal.h: what the files of src/io/ share: the layout of struct cge_weights, memory
 * regions (maps and heap copies) that a weights object owns, and the entry points of the
 * individual formats (safetensors, the sharded index, the PyTorch zip and its unpickler).
 *
 * A weights object is built by appending regions and tensors, then "finished": tensors are
 * indexed by name (duplicates are an error). Format parsers validate everything before they
 * append, so a finished object only holds tensors that lie inside memory it owns (or, for
 * cge_weights_from_safetensors_buffer, inside the caller's buffer).
 */
#ifndef CGE_IO_INTERNAL_H
#define CGE_IO_INTERNAL_H

#include "core/core.h"
#include "io/weights.h"

#include <stddef.h>
#include <stdint.h>

/* Safetensors headers larger than this are refused (the format's reference reader uses 100 MB). */
#define CGE_ST_MAX_HEADER ((size_t)100 << 20)

enum cge__region_kind {
    CGE__REGION_MMAP = 1, /* munmap(base, len) */
    CGE__REGION_HEAP = 2, /* cge__free_aligned(base) */
};

struct cge__region {
    void *base;
    size_t len;
    enum cge__region_kind kind;
};

struct cge_weights {
    char *path;                /* the path opened (or the label of a buffer), owned */
    struct cge_tensor_info *t; /* [n] tensors in file order; names owned */
    int64_t n, cap;
    int64_t *by_name;            /* [n] indices into t sorted by name (after finish) */
    struct cge__region *regions; /* [n_regions] memory this object owns */
    int n_regions, cap_regions;
};

struct cge_weights *cge__weights_new(const char *path);
/* Takes ownership of the region (also on failure, where it is released). */
enum cge_status cge__weights_add_region(struct cge_weights *w, struct cge__region r);
/* Copies info (the name is duplicated). */
enum cge_status cge__weights_add_tensor(struct cge_weights *w, const struct cge_tensor_info *info);
/* Sorts the name index; CGE_ERR_SERIALIZATION naming the first duplicated tensor. If
 * sort_by_name, the file order itself becomes name order (pickles). */
enum cge_status cge__weights_finish(struct cge_weights *w, int sort_by_name);
void cge__region_release(struct cge__region *r);

/* Maps a whole file read-only. Empty files are an error. */
enum cge_status cge__map_file(const char *path, struct cge__region *out);

/* Parses a safetensors image in memory and appends its tensors to w. `label` names the file in
 * messages. If the data of some tensor is not aligned to its element size, the data region is
 * copied into an aligned heap region owned by w. */
enum cge_status cge__safetensors_parse(struct cge_weights *w, const uint8_t *buf, size_t len,
                                       const char *label);

/* Maps a safetensors file and appends its tensors (and the map) to w. */
enum cge_status cge__safetensors_load_file(struct cge_weights *w, const char *path);
/* Reads a torch.save zip (pytorch_model.bin) and appends its tensors (and memory) to w. */
enum cge_status cge__torch_load_file(struct cge_weights *w, const char *path);
/* The same from a zip image in memory (which must outlive w); used by the fuzzer. */
enum cge_status cge__torch_parse(struct cge_weights *w, const uint8_t *buf, size_t len,
                                 const char *label);
/* Opens model.safetensors.index.json / pytorch_model.bin.index.json. */
enum cge_status cge__weights_open_index(const char *path, struct cge_weights **out);

/* ---- the restricted unpickler (pickle.c) ------------------------------------------------------
 * Runs a pickle that must evaluate to a state dict (a dict of tensors, possibly nested under
 * "state_dict"), appending one tensor per entry to w. Storage references are resolved through
 * `storage`: given the storage key (the file name under data/), the number of bytes the pickle
 * says the storage holds, it returns a pointer to that many bytes (aligned to 8) or an error.
 * Non-contiguous tensors are copied into a heap region of w. Never executes code: any opcode or
 * global outside the list a state dict needs is CGE_ERR_SERIALIZATION. */
typedef enum cge_status (*cge__storage_fn)(void *user, const char *key, size_t n_bytes,
                                           const void **data);
enum cge_status cge__unpickle_state_dict(const uint8_t *buf, size_t len, const char *label,
                                         cge__storage_fn storage, void *user,
                                         struct cge_weights *w);

/* fp16 / bf16 to fp32 (bit-exact: subnormals, infinities and NaNs preserved). */
float cge__f16_to_f32(uint16_t h);
float cge__bf16_to_f32(uint16_t h);

#endif /* CGE_IO_INTERNAL_H */
