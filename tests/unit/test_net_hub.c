/*
 * test_net_hub.c: the offline parts of the Hub client: which files a pull takes by default
 * (real repositories' file lists, abridged from the Hub), huggingface_hub's pattern rules,
 * repo id and path checks (a hostile file list cannot leave the cache), URL resolution, ETag
 * normalization, the cache folder from the environment, and the slot table's repositories.
 */
#include "net/net_internal.h"

#include "testhelp.h"

#include <stdlib.h>

/* Selects from `paths` (NULL-terminated) and compares with `want` (NULL-terminated). */
static void check_select(const char *label, const char *const *paths, const char *const *want) {
    int n = 0, nw = 0;
    while (paths[n])
        n++;
    while (want[nw])
        nw++;
    unsigned char sel[64];
    int got = cge_hub_select_default(paths, n, sel);
    CHECK_MSG(got == nw, "%s: %d selected, expected %d", label, got, nw);
    for (int i = 0; i < n; i++) {
        int w = 0;
        for (int k = 0; k < nw; k++)
            w |= !strcmp(want[k], paths[i]);
        CHECK_MSG(sel[i] == w, "%s: %s %s", label, paths[i], w ? "not selected" : "selected");
    }
}

static void test_select(void) {
    /* sentence-transformers/all-MiniLM-L6-v2 (abridged): safetensors over the .bin, no ONNX,
     * OpenVINO, TF, Rust; module folders kept. */
    const char *minilm[] = {".gitattributes",
                            "1_Pooling/config.json",
                            "README.md",
                            "config.json",
                            "config_sentence_transformers.json",
                            "data_config.json",
                            "model.safetensors",
                            "modules.json",
                            "onnx/model.onnx",
                            "onnx/model_O4.onnx",
                            "openvino/openvino_model.bin",
                            "openvino/openvino_model.xml",
                            "pytorch_model.bin",
                            "rust_model.ot",
                            "sentence_bert_config.json",
                            "special_tokens_map.json",
                            "tf_model.h5",
                            "tokenizer.json",
                            "tokenizer_config.json",
                            "train_script.py",
                            "vocab.txt",
                            NULL};
    const char *minilm_want[] = {"1_Pooling/config.json",
                                 "config.json",
                                 "config_sentence_transformers.json",
                                 "data_config.json",
                                 "model.safetensors",
                                 "modules.json",
                                 "sentence_bert_config.json",
                                 "special_tokens_map.json",
                                 "tokenizer.json",
                                 "tokenizer_config.json",
                                 "vocab.txt",
                                 NULL};
    check_select("minilm", minilm, minilm_want);
    /* hkunlp/instructor-xl: only .bin weights, also in 2_Dense. */
    const char *instr[] = {"1_Pooling/config.json",
                           "2_Dense/config.json",
                           "2_Dense/pytorch_model.bin",
                           "config.json",
                           "modules.json",
                           "pytorch_model.bin",
                           "sentence_bert_config.json",
                           "spiece.model",
                           "tokenizer.json",
                           "tokenizer_config.json",
                           "README.md",
                           NULL};
    const char *instr_want[] = {"1_Pooling/config.json",
                                "2_Dense/config.json",
                                "2_Dense/pytorch_model.bin",
                                "config.json",
                                "modules.json",
                                "pytorch_model.bin",
                                "sentence_bert_config.json",
                                "spiece.model",
                                "tokenizer.json",
                                "tokenizer_config.json",
                                NULL};
    check_select("instructor", instr, instr_want);
    /* intfloat/e5-mistral-7b-instruct: sharded safetensors and sharded .bin; a LoRA folder. */
    const char *e5[] = {"config.json",
                        "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors",
                        "model.safetensors.index.json",
                        "pytorch_model-00001-of-00002.bin",
                        "pytorch_model-00002-of-00002.bin",
                        "pytorch_model.bin.index.json",
                        "lora/adapter_config.json",
                        "lora/adapter_model.bin",
                        "special_tokens_map.json",
                        "tokenizer.json",
                        "tokenizer.model",
                        "tokenizer_config.json",
                        "1_Pooling/config.json",
                        "modules.json",
                        NULL};
    const char *e5_want[] = {"config.json",
                             "model-00001-of-00002.safetensors",
                             "model-00002-of-00002.safetensors",
                             "model.safetensors.index.json",
                             "special_tokens_map.json",
                             "tokenizer.json",
                             "tokenizer.model",
                             "tokenizer_config.json",
                             "1_Pooling/config.json",
                             "modules.json",
                             NULL};
    check_select("e5-mistral", e5, e5_want);
    /* openai/whisper-large-v3: variants and Flax left out. */
    const char *wh[] = {"added_tokens.json",
                        "config.json",
                        "flax_model.msgpack",
                        "generation_config.json",
                        "merges.txt",
                        "model.fp32-00001-of-00002.safetensors",
                        "model.safetensors",
                        "normalizer.json",
                        "preprocessor_config.json",
                        "pytorch_model.bin",
                        "pytorch_model.fp32-00001-of-00002.bin",
                        "special_tokens_map.json",
                        "tokenizer.json",
                        "tokenizer_config.json",
                        "vocab.json",
                        "model.gguf",
                        "coreml/model.mlmodelc/metadata.json",
                        NULL};
    const char *wh_want[] = {"added_tokens.json",
                             "config.json",
                             "generation_config.json",
                             "merges.txt",
                             "model.safetensors",
                             "normalizer.json",
                             "preprocessor_config.json",
                             "special_tokens_map.json",
                             "tokenizer.json",
                             "tokenizer_config.json",
                             "vocab.json",
                             NULL};
    check_select("whisper", wh, wh_want);
}

static void test_match(void) {
    CHECK(cge_hub_match("*.json", "config.json"));
    CHECK(cge_hub_match("*.json", "1_Pooling/config.json")); /* '*' crosses '/' */
    CHECK(!cge_hub_match("*.json", "model.safetensors"));
    CHECK(cge_hub_match("onnx/", "onnx/model.onnx"));
    CHECK(!cge_hub_match("onnx/", "model.onnx"));
    CHECK(cge_hub_match("tokenizer*", "tokenizer_config.json"));
    CHECK(cge_hub_match("model-\?\?\?\?\?-of-\?\?\?\?\?.safetensors",
                        "model-00001-of-00002.safetensors"));
}

static void test_names(void) {
    char b[256];
    CHECK(cge_hub_repo_folder("sentence-transformers/all-MiniLM-L6-v2", b, sizeof b) == CGE_OK &&
          !strcmp(b, "models--sentence-transformers--all-MiniLM-L6-v2"));
    CHECK(cge_hub_repo_folder("gpt2", b, sizeof b) == CGE_OK && !strcmp(b, "models--gpt2"));
    const char *bad[] = {"",   "a/b/c", "../x",  "a/..", "a/.b",   "/abs",
                         "a/", "a b/c", "a/b\n", "-a/b", "a/b..c", NULL};
    for (int i = 0; bad[i]; i++)
        CHECK_MSG(cge_hub_repo_folder(bad[i], b, sizeof b) == CGE_ERR_INVALID_VALUE,
                  "repo id '%s' accepted", bad[i]);
    CHECK(cge__hub_safe_path("config.json"));
    CHECK(cge__hub_safe_path("1_Pooling/config.json"));
    const char *bad_paths[] = {"",      "/etc/passwd", "../x", "a/../../x", "a//b",
                               "a/./b", "a/",          "a\\b", "a\nb",      NULL};
    for (int i = 0; bad_paths[i]; i++)
        CHECK_MSG(!cge__hub_safe_path(bad_paths[i]), "path '%s' accepted", bad_paths[i]);
    CHECK(cge__hub_safe_etag("f7982da1b360d0ebaefe9c9cf230c2ac620e53e1acde32823a1989c0879a8b54"));
    CHECK(!cge__hub_safe_etag("../../x"));
    CHECK(!cge__hub_safe_etag(""));
    CHECK(cge__hub_is_commit("8cb5740dd96f866ccc07d61c4160a4f7a8e4dd63"));
    CHECK(!cge__hub_is_commit("main"));
    CHECK(!cge__hub_is_commit("8CB5740DD96F866CCC07D61C4160A4F7A8E4DD63"));
    CHECK(cge__hub_safe_revision("refs/pr/1"));
    CHECK(!cge__hub_safe_revision("../main"));
    char e[64];
    snprintf(e, sizeof e, "W/\"abc\"");
    cge__hub_etag_normalize(e);
    CHECK(!strcmp(e, "abc"));
    snprintf(e, sizeof e, "\"abc\"");
    cge__hub_etag_normalize(e);
    CHECK(!strcmp(e, "abc"));
    CHECK(cge__hub_parse_size("4049552") == 4049552);
    CHECK(cge__hub_parse_size("-1") == -1 && cge__hub_parse_size("12a") == -1 &&
          cge__hub_parse_size("") == -1 && cge__hub_parse_size("99999999999999999999") == -1);
}

static void test_urls(void) {
    char o[512];
    const char *base = "https://huggingface.co/org/x/resolve/abc/model.safetensors";
    CHECK(cge__hub_url_resolve(base, "https://cdn-lfs.hf.co/repos/1/2?x=1", o, sizeof o) == 0 &&
          !strcmp(o, "https://cdn-lfs.hf.co/repos/1/2?x=1"));
    CHECK(cge__hub_url_resolve(base, "/api/resolve-cache/x", o, sizeof o) == 0 &&
          !strcmp(o, "https://huggingface.co/api/resolve-cache/x"));
    CHECK(cge__hub_url_resolve(base, "//cdn.example/a", o, sizeof o) == 0 &&
          !strcmp(o, "https://cdn.example/a"));
    CHECK(cge__hub_url_resolve(base, "other.bin", o, sizeof o) == 0 &&
          !strcmp(o, "https://huggingface.co/org/x/resolve/abc/other.bin"));
    CHECK(cge__hub_same_origin("http://127.0.0.1:5/a", "http://127.0.0.1:5"));
    CHECK(!cge__hub_same_origin("http://127.0.0.1:5/a", "http://localhost:5/a"));
    CHECK(!cge__hub_same_origin("http://127.0.0.1:5/a", "http://127.0.0.1:6/a"));
    CHECK(!cge__hub_same_origin("https://huggingface.co", "https://huggingface.co.evil.com/"));
    struct cge_buf b;
    cge__buf_init(&b, 1024);
    CHECK(cge__hub_quote("refs/pr/1", 0, &b) == CGE_OK && !strcmp(b.data, "refs%2Fpr%2F1"));
    cge__buf_reset(&b);
    CHECK(cge__hub_quote("2_Dense/a b.json", 1, &b) == CGE_OK &&
          !strcmp(b.data, "2_Dense/a%20b.json"));
    cge__buf_free(&b);
}

static void test_env(void) {
    char b[1024];
    setenv("HF_HUB_CACHE", "/x/hub", 1);
    setenv("HF_HOME", "/y", 1);
    CHECK(cge_hub_cache_dir(b, sizeof b) == CGE_OK && !strcmp(b, "/x/hub"));
    unsetenv("HF_HUB_CACHE");
    CHECK(cge_hub_cache_dir(b, sizeof b) == CGE_OK && !strcmp(b, "/y/hub"));
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    CHECK(cge_hub_cache_dir(b, sizeof b) == CGE_OK && !strcmp(b, "/home/u/.cache/huggingface/hub"));
    setenv("HF_HUB_OFFLINE", "1", 1);
    CHECK(cge__hub_env_true("HF_HUB_OFFLINE"));
    setenv("HF_HUB_OFFLINE", "0", 1);
    CHECK(!cge__hub_env_true("HF_HUB_OFFLINE"));
    unsetenv("HF_HUB_OFFLINE");
}

static void test_slots(void) {
    char r[2][128];
    CHECK(cge_hub_slot_repos(0, r) == 1 && !strcmp(r[0], "sentence-transformers/all-MiniLM-L6-v2"));
    CHECK(cge_hub_slot_repos(9, r) == 2 && !strcmp(r[0], "facebook/dragon-plus-query-encoder") &&
          !strcmp(r[1], "facebook/dragon-plus-context-encoder"));
    CHECK(cge_hub_slot_repos(12, r) == 0);
    int total = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        int n = cge_hub_slot_repos(s, r);
        for (int k = 0; k < n; k++) {
            char f[256];
            CHECK_MSG(cge_hub_repo_folder(r[k], f, sizeof f) == CGE_OK, "%s", r[k]);
        }
        total += n;
    }
    CHECK(total == 13);
}

int main(void) {
    RUN(test_select);
    RUN(test_match);
    RUN(test_names);
    RUN(test_urls);
    RUN(test_env);
    RUN(test_slots);
    return test_report("net_hub");
}
