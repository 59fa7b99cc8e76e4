/*
 * fuzz_io_pickle.c: arbitrary bytes through the restricted unpickler (cge__unpickle_state_dict)
 * with a storage resolver that hands out a zeroed 64 KiB block for any key. The unpickler must
 * never crash, never read outside the input or the storages, and never leak.
 */
#include "fuzz_common.h"

#include <stdint.h>

static uint8_t storage[1 << 16] __attribute__((aligned(64)));

static enum cge_status resolve(void *user, const char *key, size_t n, const void **data) {
    (void)user;
    if (n > sizeof storage) return cge__err(CGE_ERR_SERIALIZATION, "storage '%s' too big", key);
    *data = storage;
    return CGE_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_weights *w = cge__weights_new("fuzz.pkl");
    if (!w) return 0;
    if (cge__unpickle_state_dict(data, size, "fuzz.pkl", resolve, NULL, w) == CGE_OK)
        fuzz_weights_finish_and_read(w);
    cge_weights_free(w);
    return 0;
}
