/*
 * fuzz_common.h: checks shared by several fuzz targets (header-only, static inline), so that
 * each target's LLVMFuzzerTestOneInput only names the parser under test.
 *
 * Key decision: what a target does with an accepted input is the same across loaders of one
 * kind (every tensor byte read so ASan sees any escape from the buffers; every tokenizer run on
 * the same fixed strings with its ids range-checked), so it lives here once.
 */
#ifndef CGE_FUZZ_COMMON_H
#define CGE_FUZZ_COMMON_H

#include "core/core.h"
#include "io/io_internal.h"
#include "text/text_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Finishes a weights set that a parser accepted and reads every byte of every tensor. */
static inline void fuzz_weights_finish_and_read(struct cge_weights *w) {
    if (cge__weights_finish(w, 1) != CGE_OK) return;
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < cge_weights_count(w); i++) {
        const struct cge_tensor_info *t = cge_weights_at(w, i);
        for (size_t b = 0; b < t->n_bytes; b++)
            sink ^= ((const uint8_t *)t->data)[b];
    }
    (void)sink;
}

/* Loads a tokenizer from bytes (tokenizer.json when json != 0, else a SentencePiece .model): the
 * load must fail cleanly (no tokenizer left behind) or give a tokenizer that encodes a few fixed
 * strings to in-range ids and decodes them back without crashing. Aborts on a broken promise. */
static inline void fuzz_tokenizer_load_and_encode(const uint8_t *data, size_t size, int json) {
    struct cge_tokenizer *t = NULL;
    enum cge_status st = cge__tokenizer_load_mem(data, size, json, &t);
    if (st != CGE_OK) {
        if (t) abort();
        return;
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
}

#endif
