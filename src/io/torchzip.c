/*
 * torchzip.c: pytorch_model.bin (the zip that torch.save writes). Work in progress: refused with
 * a clear message until the restricted unpickler lands.
 */
#include "io/io_internal.h"

enum cge_status cge__torch_load_file(struct cge_weights *w, const char *path) {
    (void)w;
    return cge__err(CGE_ERR_UNSUPPORTED, "%s: PyTorch .bin checkpoints are not supported yet",
                    path);
}
