/*
 * fuzz_cache_record.c: arbitrary bytes decoded as a stored cache record and as a file header.
 * A decode must never read out of bounds; whatever decodes must re-encode to the same bytes
 * (the layout is fixed and checksummed, so "decoded" means "exactly what was written").
 */
#include "cache/cache_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    struct cge__rec *r = malloc(sizeof *r);
    if (r && cge__rec_decode(buf, size, r) == CGE_OK) {
        float *slots = NULL;
        if (r->n_slot_floats) {
            slots = malloc((size_t)r->n_slot_floats * sizeof(float));
            if (slots) cge__rec_copy_slots(r, slots);
        }
        unsigned char *again = malloc(size);
        if (again && (slots || !r->n_slot_floats)) {
            cge__rec_encode(again, r, slots);
            if (memcmp(again, buf, size) != 0) abort(); /* decode/encode must round-trip */
        }
        free(again);
        free(slots);
    }
    free(r);
    struct cge__hdr h;
    if (cge__hdr_decode(buf, size, &h) == CGE_OK) {
        unsigned char hb[CGE__HDR_MAX];
        size_t n = cge__hdr_encode(hb, &h);
        if (n != size || memcmp(hb, buf, size) != 0) abort();
    }
    free(buf);
    return 0;
}
