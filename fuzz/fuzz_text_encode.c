/*
 * fuzz_text_encode.c: the eight real tokenizers of tests/assets/ (loaded once) on arbitrary
 * bytes. Byte 0 picks the tokenizer, add_special and a max_len; the rest is the text (invalid
 * UTF-8 must be a clean CGE_ERR_TOKENIZE). Every id returned must lie inside the vocabulary,
 * and decoding them must succeed.
 */
#include "core/core.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const files[] = {
    "all-MiniLM-L6-v2/tokenizer.json",    "all-mpnet-base-v2/tokenizer.DERIVED.json",
    "codebert-base/tokenizer.json",       "clip-vit-large-patch14/tokenizer.json",
    "instructor-xl/tokenizer.json",       "whisper-large-v3/tokenizer.json",
    "e5-mistral-7b-instruct/tokenizer.model", "instructor-xl/spiece.model",
};
#define N_FILES 8
static struct cge_tokenizer *toks[N_FILES];

static void load_all(void) {
    /* The repository root, from this file's absolute path (CMake compiles with full paths). */
    char root[4096];
    snprintf(root, sizeof root, "%s", __FILE__);
    char *cut = strstr(root, "fuzz/fuzz_text_encode.c");
    if (cut) *cut = '\0';
    else snprintf(root, sizeof root, "./");
    for (int i = 0; i < N_FILES; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%stests/assets/%s", root, files[i]);
        if (cge_tokenizer_load(path, &toks[i]) != CGE_OK) {
            fprintf(stderr, "fuzz_text_encode: %s: %s\n", path, cge_errmsg());
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!toks[0]) load_all();
    if (size < 1) return 0;
    int k = data[0] % N_FILES;
    int add_special = (data[0] >> 3) & 1;
    int64_t max_len = (data[0] >> 4) & 1 ? (int64_t)(data[0] >> 5) : 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    int truncated = 0;
    enum cge_status st = cge_tokenizer_encode(toks[k], (const char *)data + 1, size - 1, add_special,
                                              max_len, &ids, &n, &truncated);
    if (st != CGE_OK) {
        if (st != CGE_ERR_TOKENIZE || ids || n) abort();
        return 0;
    }
    int64_t vocab = cge_tokenizer_vocab_size(toks[k]);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) abort();
    if (max_len > 0 && n > max_len && n > 3) abort();
    char *text = NULL;
    if (cge_tokenizer_decode(toks[k], ids, n, data[0] & 0x40, &text) != CGE_OK) abort();
    cge__free(text);
    cge__free(ids);
    return 0;
}
