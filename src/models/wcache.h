/*
 * wcache.h: the converted-weights file: a model's linear layers, converted to their storage dtype
 * and packed for this CPU's GEMM, written once and memory-mapped by later loads (wcache.c).
 *
 * The file is read-only after it is opened and may be shared by threads; the layers built over
 * it point into the mapping, which must outlive them.
 */
#ifndef CGE_MODELS_WCACHE_H
#define CGE_MODELS_WCACHE_H

#include "cge.h"
#include "tensor/ops.h"

#include <stddef.h>
#include <stdint.h>

struct cge_wcache;

/* Whether a load of `bytes` of converted layers goes through the file: $CGE_CONVERTED "0"
 * never, "1" always, unset: from 1 GiB of converted layers (large decoders, not the small
 * encoders and fixtures). */
int cge__wcache_wanted(size_t bytes);

/* The checkpoint's identity as a key (family, dtype, scheme, CPU ISA, oneDNN version, and the
 * name, size and mtime of config.json and every weight file in dir), and the file that holds
 * its converted layers: $CGE_CONVERTED_FILE if set, else $CGE_CONVERTED_DIR/<name>, else
 * beside the model (dir/cge-<family>-<dtype>.cgew) where dir is writable, else
 * $XDG_CACHE_HOME/cge/converted (or ~/.cache/cge/converted)/<hash of dir and key>.cgew. */
enum cge_status cge__wcache_locate(const char *dir, const char *family, enum cge_dtype dtype,
                                   const char *scheme, char *key, size_t key_cap, char *path,
                                   size_t path_cap);

/* Maps and verifies path: its size, its header, its key (equal to `key`: else it is stale),
 * its entry count (n) and every entry's checksum. Any mismatch is an error (the message says
 * which) and nothing is returned: a damaged or stale file is never used. */
enum cge_status cge__wcache_open(const char *path, const char *key, int64_t n,
                                 struct cge_wcache **out);
/* Entry i (64-byte aligned) and its length. */
const void *cge__wcache_entry(const struct cge_wcache *c, int64_t i, size_t *len);
void cge__wcache_close(struct cge_wcache *c); /* NULL is a no-op */

/* Writes the n layers to path: into a temporary file beside it, fsync'd, then renamed over
 * path, so that a reader (or a second writer at the same time) sees the old file or the new
 * one, whole. */
enum cge_status cge__wcache_write(const char *path, const char *key,
                                  const struct cge_linear *const *layers, int64_t n);

#endif /* CGE_MODELS_WCACHE_H */
