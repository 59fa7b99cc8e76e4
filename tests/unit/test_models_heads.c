/*
 * test_models_heads.c: pooling (CLS, masked mean, max, mean/sqrt(len), last, mean without the
 * instruction tokens) and the Dense/Normalize heads against plain double loops written here; the
 * relative-position buckets against values computed with torch (transformers'
 * _relative_position_bucket, 32 buckets, max_distance 128); the sentence-transformers folder
 * reader on the e2e folders.
 */
#include "testhelp.h"

#include "core/core.h"
#include "models/heads.h"
#include "models/model.h"

static void test_pooling(void) {
    enum { B = 3, L = 5, H = 4 };
    float h[B * L * H];
    uint64_t s = 7;
    for (int i = 0; i < B * L * H; i++) h[i] = th_randf(&s) * 3;
    int64_t len[B] = {5, 2, 1}, skip[B] = {2, 1, 0};
    float out[B * H];
    /* mean */
    CHECK(cge__pool(CGE_POOL_MEAN, h, B, L, H, len, NULL, out) == CGE_OK);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double acc = 0;
            for (int t = 0; t < len[b]; t++) acc += h[(b * L + t) * H + j];
            CHECK_NEAR(out[b * H + j], acc / len[b], 1e-6);
        }
    /* mean/sqrt(len) */
    CHECK(cge__pool(CGE_POOL_MEAN_SQRT_LEN, h, B, L, H, len, NULL, out) == CGE_OK);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double acc = 0;
            for (int t = 0; t < len[b]; t++) acc += h[(b * L + t) * H + j];
            CHECK_NEAR(out[b * H + j], acc / sqrt((double)len[b]), 1e-6);
        }
    /* mean without the instruction tokens */
    CHECK(cge__pool(CGE_POOL_MEAN_NO_INSTR, h, B, L, H, len, skip, out) == CGE_OK);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double acc = 0;
            int n = 0;
            for (int t = (int)skip[b]; t < len[b]; t++, n++) acc += h[(b * L + t) * H + j];
            CHECK_NEAR(out[b * H + j], n ? acc / n : 0.0, 1e-6);
        }
    /* max, cls, last */
    CHECK(cge__pool(CGE_POOL_MAX, h, B, L, H, len, NULL, out) == CGE_OK);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) {
            double mx = -1e30;
            for (int t = 0; t < len[b]; t++) mx = fmax(mx, h[(b * L + t) * H + j]);
            CHECK_NEAR(out[b * H + j], mx, 0);
        }
    CHECK(cge__pool(CGE_POOL_CLS, h, B, L, H, len, NULL, out) == CGE_OK);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) CHECK(out[b * H + j] == h[(b * L) * H + j]);
    CHECK(cge__pool(CGE_POOL_LAST, h, B, L, H, len, NULL, out) == CGE_OK);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < H; j++) CHECK(out[b * H + j] == h[(b * L + len[b] - 1) * H + j]);
    /* bad length, unsupported mode */
    int64_t bad[B] = {6, 1, 1};
    CHECK(cge__pool(CGE_POOL_MEAN, h, B, L, H, bad, NULL, out) == CGE_ERR_INVALID_VALUE);
    CHECK(cge__pool(CGE_POOL_PROJECTION, h, B, L, H, len, NULL, out) == CGE_ERR_UNSUPPORTED);
}

static void test_buckets(void) {
    /* From torch (transformers 4.40 T5Attention._relative_position_bucket, bidirectional, 32
     * buckets, max_distance 128): first distance of each bucket for key after query. */
    static const int first[][2] = {{1, 17}, {2, 18}, {7, 23}, {8, 24}, {12, 25}, {16, 26},
                                   {23, 27}, {32, 28}, {46, 29}, {64, 30}, {91, 31}};
    CHECK(cge__rel_bucket(0, 32, 128) == 0);
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++) {
        int d = first[i][0], b = first[i][1];
        CHECK_MSG(cge__rel_bucket(d, 32, 128) == b, "rel %d: %d vs %d", d, cge__rel_bucket(d, 32, 128), b);
        CHECK(cge__rel_bucket(-d, 32, 128) == b - 16);
        /* Each listed distance starts its bucket, so the one before it ends the previous one. */
        if (d > 1) CHECK_MSG(cge__rel_bucket(d - 1, 32, 128) == b - 1, "rel %d", d - 1);
    }
    CHECK(cge__rel_bucket(90, 32, 128) == 30);
    CHECK(cge__rel_bucket(100000, 32, 128) == 31);
    CHECK(cge__rel_bucket(-100000, 32, 128) == 15);
}

static void test_st_heads(void) {
    struct cge_st_head h;
    CHECK(cge__st_head_load("tests/fixtures/e2e/t5_mean_dense_l2/model", 32, CGE_DTYPE_F32, &h) == CGE_OK);
    CHECK(h.present && h.n_pool == 1 && h.pool[0] == CGE_POOL_MEAN && h.n_dense == 1 && h.normalize);
    CHECK(h.max_seq_len == 64);
    CHECK(cge__st_head_out_dim(&h, 32) == 24);
    CHECK(h.dense[0].act == CGE_ACT_IDENTITY);
    /* Dense = W x against a double loop over linear.weight as the file stores it. */
    struct cge_weights *w = NULL;
    CHECK(cge_weights_open("tests/fixtures/e2e/t5_mean_dense_l2/model/2_Dense/model.safetensors", &w) == CGE_OK);
    float *W = NULL;
    int64_t sh[2] = {24, 32};
    CHECK(w && cge_weights_get_f32(w, "linear.weight", 2, sh, &W) == CGE_OK);
    float x[2 * 32], y[2 * 24];
    uint64_t s = 3;
    for (int i = 0; i < 64; i++) x[i] = th_randf(&s);
    CHECK(cge__dense_apply(&h, x, 2, 32, y) == CGE_OK);
    for (int r = 0; r < 2 && W; r++)
        for (int o = 0; o < 24; o++) {
            double acc = 0;
            for (int i = 0; i < 32; i++) acc += (double)W[o * 32 + i] * x[r * 32 + i];
            CHECK_NEAR(y[r * 24 + o], acc, 1e-5);
        }
    cge__free(W);
    cge_weights_free(w);
    cge__st_head_deinit(&h);
    cge__st_head_deinit(&h); /* twice is fine */

    CHECK(cge__st_head_load("tests/fixtures/e2e/bert_cls/model", 32, CGE_DTYPE_F32, &h) == CGE_OK);
    CHECK(h.present && h.n_pool == 1 && h.pool[0] == CGE_POOL_CLS && h.n_dense == 0 && h.normalize);
    cge__st_head_deinit(&h);
    /* No sentence-transformers files. */
    CHECK(cge__st_head_load("tests/fixtures/e2e/roberta_mean/model", 32, CGE_DTYPE_F32, &h) == CGE_OK);
    CHECK(!h.present && h.max_seq_len == 0);
    cge__st_head_deinit(&h);
    /* Width mismatch with the Pooling config. */
    CHECK(cge__st_head_load("tests/fixtures/e2e/bert_cls/model", 48, CGE_DTYPE_F32, &h) == CGE_ERR_MODEL_LOAD);
    CHECK(strstr(cge_errmsg(), "word_embedding_dimension") != NULL);
}

int main(void) {
    RUN(test_pooling);
    RUN(test_buckets);
    RUN(test_st_heads);
    return test_report("models_heads");
}
