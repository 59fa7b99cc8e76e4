/*
 * text_llama_json.h: the Mistral tokenizer.json that transformers' LlamaTokenizerFast would
 * build from a SentencePiece BPE .model, derived here from cge's load of the .model (shared by
 * test_text and test_text_rust; the Rust tokenizers library loads it as the .model's equivalent).
 */
#ifndef CGE_TEXT_LLAMA_JSON_H
#define CGE_TEXT_LLAMA_JSON_H

#include "text/text_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* The Mistral tokenizer as Hugging Face ships it in tokenizer.json (LlamaTokenizerFast): a BPE
 * with byte fallback whose merges transformers derives from the .model (SentencePieceExtractor:
 * every split of every piece into two pieces, ordered by the merged piece's score). The json is
 * built here from the .model, in the legacy form (Prepend + Replace normalizer) and the newer one
 * (Metaspace pre-tokenizer, prepend_scheme "first"), and must give SentencePiece's ids. */
struct merge_cand {
    float score;
    int32_t seq, left, right;
};

static int cmp_merge(const void *a, const void *b) {
    const struct merge_cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static char *llama_json(const struct cge_tokenizer *spm, int legacy) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddBoolToObject(model, "fuse_unk", 1);
    cJSON_AddBoolToObject(model, "byte_fallback", 1);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int64_t i = 0; i < spm->n_vocab; i++) cJSON_AddNumberToObject(vocab, spm->tok[i], (double)i);
    struct merge_cand *m = NULL;
    size_t n = 0, cap = 0;
    for (int64_t i = 0; i < spm->n_vocab; i++) {
        const char *p = spm->tok[i];
        size_t len = spm->tok_len[i], first = n;
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)p[k] & 0xC0) == 0x80) continue;
            int32_t l = smap_get(&spm->vocab, p, k), r = smap_get(&spm->vocab, p + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) m = realloc(m, (cap = cap ? 2 * cap : 4096) * sizeof *m);
            m[n++] = (struct merge_cand){(float)spm->score[i], 0, l, r};
        }
        /* Within one piece: by (id of left, id of right). */
        for (size_t a = first; a < n; a++)
            for (size_t b = a + 1; b < n; b++)
                if (m[b].left < m[a].left || (m[b].left == m[a].left && m[b].right < m[a].right)) {
                    struct merge_cand t = m[a];
                    m[a] = m[b];
                    m[b] = t;
                }
    }
    for (size_t i = 0; i < n; i++) m[i].seq = (int32_t)i;
    qsort(m, n, sizeof *m, cmp_merge);
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    char buf[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(buf, sizeof buf, "%s %s", spm->tok[m[i].left], spm->tok[m[i].right]);
        cJSON_AddItemToArray(merges, cJSON_CreateString(buf));
    }
    free(m);
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < 3; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", i);
        cJSON_AddStringToObject(a, "content", spm->tok[i]);
        cJSON_AddBoolToObject(a, "special", 1);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "single_word", 0); /* the Rust library requires all five */
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddItemToArray(added, a);
    }
    if (legacy) {
        cJSON *nm = cJSON_Parse("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
                                "\"\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\u2581\"}]}");
        cJSON_AddItemToObject(root, "normalizer", nm);
    } else {
        cJSON *pt = cJSON_Parse("{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": "
                                "\"first\", \"split\": false}");
        cJSON_AddItemToObject(root, "pre_tokenizer", pt);
    }
    cJSON_AddItemToObject(root, "post_processor",
                          cJSON_Parse("{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", "
                                      "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": "
                                      "[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": "
                                      "\"A\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
                                      "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}}"));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

#endif /* CGE_TEXT_LLAMA_JSON_H */
