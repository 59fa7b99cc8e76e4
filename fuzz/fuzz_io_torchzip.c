/*
 * fuzz_io_torchzip.c: arbitrary bytes as a pytorch_model.bin: the zip directory parser (with
 * zip64), libzip for compressed entries, and the unpickler behind them. Accepted tensors are
 * read byte by byte so ASan sees any escape from the buffer.
 */
#include "io/io_internal.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_weights *w = cge__weights_new("fuzz.bin");
    if (!w) return 0;
    if (cge__torch_parse(w, data, size, "fuzz.bin") == CGE_OK &&
        cge__weights_finish(w, 1) == CGE_OK) {
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < cge_weights_count(w); i++) {
            const struct cge_tensor_info *t = cge_weights_at(w, i);
            for (size_t b = 0; b < t->n_bytes; b++)
                sink ^= ((const uint8_t *)t->data)[b];
        }
        (void)sink;
    }
    cge_weights_free(w);
    return 0;
}
