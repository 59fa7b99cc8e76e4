/*
 * fuzz_io_torchzip.c: arbitrary bytes as a pytorch_model.bin: the zip directory parser (with
 * zip64), libzip for compressed entries, and the unpickler behind them. Accepted tensors are
 * read byte by byte so ASan sees any escape from the buffer.
 */
#include "fuzz_common.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_weights *w = cge__weights_new("fuzz.bin");
    if (!w) return 0;
    if (cge__torch_parse(w, data, size, "fuzz.bin") == CGE_OK) fuzz_weights_finish_and_read(w);
    cge_weights_free(w);
    return 0;
}
