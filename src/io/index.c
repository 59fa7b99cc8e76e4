/*
 * index.c: sharded checkpoints (model.safetensors.index.json). Work in progress.
 */
#include "io/io_internal.h"

enum cge_status cge__weights_open_index(const char *path, struct cge_weights **out) {
    *out = NULL;
    return cge__err(CGE_ERR_UNSUPPORTED, "%s: sharded checkpoints are not supported yet", path);
}
