/*
 * fuzz_io_safetensors.c: arbitrary bytes as a safetensors file. Whatever is accepted must only
 * hand out tensors inside the buffer (or the loader's own aligned copy): every byte of every
 * tensor is read, and get_f32 is run on each, so ASan sees any escape.
 */
#include "core/core.h"
#include "io/weights.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_weights *w = NULL;
    if (cge_weights_from_safetensors_buffer(data, size, "fuzz", &w) != CGE_OK) return 0;
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < cge_weights_count(w); i++) {
        const struct cge_tensor_info *t = cge_weights_at(w, i);
        for (size_t b = 0; b < t->n_bytes; b++)
            sink ^= ((const uint8_t *)t->data)[b];
        if (cge_weights_find(w, t->name) == NULL) abort();
        float *f = NULL;
        if (t->n_bytes < (1u << 20) && cge_weights_get_f32(w, t->name, 0, NULL, &f) == CGE_OK)
            cge__free(f);
    }
    (void)sink;
    cge_weights_free(w);
    return 0;
}
