/*
 * fuzz_text_json.c: the tokenizer.json loader on arbitrary bytes. A load must fail cleanly or
 * give a tokenizer that then encodes a few fixed strings without crashing.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_tokenizer_load_and_encode(data, size, 1);
    return 0;
}
