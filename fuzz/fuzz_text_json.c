/*
 * fuzz_text_json.c: the tokenizer.json loader on arbitrary bytes. A load must fail cleanly or
 * give a tokenizer that then encodes a few fixed strings without crashing.
 */
#include "core/core.h"
#include "text/text_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_tokenizer *t = NULL;
    enum cge_status st = cge__tokenizer_load_mem(data, size, 1, &t);
    if (st != CGE_OK) {
        if (t) abort();
        return 0;
    }
    static const char *const texts[] = {"", "Hello, World! naïve café 東京 🦙", "  a  b\t\nc  ",
                                        "[CLS] <s> </s> <|endoftext|> x", "aaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids = NULL;
        int64_t n = 0;
        st = cge_tokenizer_encode(t, texts[i], strlen(texts[i]), (int)(i & 1), 0, &ids, &n, NULL);
        if (st == CGE_OK) {
            char *s = NULL;
            for (int64_t j = 0; j < n; j++)
                if (ids[j] < 0 || ids[j] >= cge_tokenizer_vocab_size(t)) abort();
            if (cge_tokenizer_decode(t, ids, n, 0, &s) == CGE_OK) cge__free(s);
        }
        cge__free(ids);
    }
    cge_tokenizer_free(t);
    return 0;
}
