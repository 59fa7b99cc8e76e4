/* test_text_regress.c: regressions found by fuzzing the tokenizer. A TemplateProcessing special
 * token with an empty "ids" list (accepted by Hugging Face tokenizers, it adds nothing) made
 * encode pass a NULL source to memcpy (UBSan: nonnull argument); it must encode as if the special
 * token were absent. */
#include "core/core.h"
#include "testhelp.h"
#include "text/text_internal.h"

#include <string.h>

static const char json_empty_special[] =
    "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Whitespace\"},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\","
    "\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
    "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],"
    "\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":0}}],"
    "\"special_tokens\":{\"</s>\":{\"id\":\"</s>\",\"ids\":[],\"tokens\":[]},"
    "\"<s>\":{\"id\":\"<s>\",\"ids\":[0],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":null,"
    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":\"##\","
    "\"max_input_chars_per_word\":100,"
    "\"vocab\":{\"<s>\":0,\"</s>\":1,\"<unk>\":2,\"a\":3,\"b\":4}}}";

static void test_empty_special_ids(void) {
    struct cge_tokenizer *t = NULL;
    enum cge_status st = cge__tokenizer_load_mem(json_empty_special, strlen(json_empty_special), 1, &t);
    CHECK_MSG(st == CGE_OK, "load: %s", cge_errmsg());
    if (st != CGE_OK) return;
    int32_t *ids = NULL;
    int64_t n = 0;
    /* both with and without the template, and with a length limit that leaves room for <s> */
    CHECK(cge_tokenizer_encode(t, "a b", 3, 1, 0, &ids, &n, NULL) == CGE_OK);
    CHECK(n == 3 && ids && ids[0] == 0 && ids[1] == 3 && ids[2] == 4);
    cge__free(ids);
    ids = NULL;
    CHECK(cge_tokenizer_encode(t, "a b", 3, 0, 0, &ids, &n, NULL) == CGE_OK);
    CHECK(n == 2 && ids && ids[0] == 3 && ids[1] == 4);
    cge__free(ids);
    ids = NULL;
    int truncated = 0;
    CHECK(cge_tokenizer_encode(t, "a b", 3, 1, 2, &ids, &n, &truncated) == CGE_OK);
    CHECK(n == 2 && ids && ids[0] == 0 && ids[1] == 3 && truncated == 1);
    cge__free(ids);
    ids = NULL;
    CHECK(cge_tokenizer_encode(t, "", 0, 1, 0, &ids, &n, NULL) == CGE_OK);
    CHECK(n == 1 && ids && ids[0] == 0);
    cge__free(ids);
    cge_tokenizer_free(t);
}

int main(void) {
    test_empty_special_ids();
    return test_report("text_regress");
}
