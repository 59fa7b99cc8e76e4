/* test_core.c: the model table, status codes and embedding records. */
#include "core/core.h"
#include "testhelp.h"

static void test_table(void) {
    /* The original specification says 12954; its own per-slot dimensions sum to 13184, the
     * literal below (not a value computed by the code under test). */
    CHECK(cge_total_dim() == 13184);
    static const int dims[CGE_N_SLOTS] = {384, 1024, 768, 768, 1280, 768, 768, 768, 768, 768, 1024, 4096};
    int sum = 0;
    for (int i = 0; i < CGE_N_SLOTS; i++) {
        const struct cge_slot_info *s = cge_slot_get(i);
        CHECK(s != NULL && s->slot == i + 1);
        CHECK(cge_slot_offset(i) == sum);
        CHECK_MSG(s && s->dim == dims[i], "E%d: dim %d", i + 1, s ? s->dim : -1);
        sum += dims[i];
    }
    CHECK(sum == 13184);
    CHECK(cge_slot_get(12) == NULL && cge_slot_get(-1) == NULL);
    CHECK(cge_slot_get(11)->dim == 4096 && cge_slot_get(4)->modalities == CGE_MOD_AUDIO);
    CHECK(cge_slot_get(3)->modalities & CGE_MOD_IMAGE);
}

static void test_status(void) {
    for (int s = 0; s <= CGE_ERR_UNSUPPORTED; s++) CHECK(strcmp(cge_status_str(s), "unknown status"));
    CHECK(!strcmp(cge_status_str(999), "unknown status"));
    CHECK(cge__err(CGE_ERR_IO, "file %s at byte %d", "x.bin", 42) == CGE_ERR_IO);
    CHECK(!strcmp(cge_errmsg(), "file x.bin at byte 42"));
}

static void test_concat(void) {
    struct cge_concat_embedding c;
    CHECK(cge_concat_init(&c) == CGE_OK);
    float v[1024];
    for (int i = 0; i < 1024; i++) v[i] = (float)i;
    CHECK(cge_concat_set(&c, 0, v, 383, 5) == CGE_ERR_INVALID_DIM);
    CHECK(strstr(cge_errmsg(), "384") != NULL);
    CHECK(cge_concat_set(&c, 0, v, 384, 5) == CGE_OK);
    CHECK(cge_concat_set(&c, 1, v, 1024, 7) == CGE_OK);
    CHECK(c.vector[384 + 3] == 3.0f && c.total_latency_us == 12);
    CHECK(!cge_concat_is_complete(&c));
    v[2] = NAN;
    CHECK(cge_concat_set(&c, 1, v, 1024, 7) == CGE_ERR_INVALID_VALUE);
    CHECK(cge_concat_set(&c, 12, v, 1024, 7) == CGE_ERR_MODEL_NOT_FOUND);
    v[2] = 2;
    for (int i = 0; i < CGE_N_SLOTS; i++) {
        float *w = calloc((size_t)cge_slot_get(i)->dim, sizeof(float));
        CHECK(cge_concat_set(&c, i, w, cge_slot_get(i)->dim, 1) == CGE_OK);
        free(w);
    }
    CHECK(cge_concat_is_complete(&c));
    cge_concat_deinit(&c);
    cge_concat_deinit(&c); /* twice is a no-op */
}

static void test_fused(void) {
    struct cge_fused_embedding f;
    memset(&f, 0, sizeof f);
    CHECK(cge_fused_normalize(&f) == CGE_ERR_INVALID_VALUE);
    for (int i = 0; i < CGE_FUSED_DIM; i++) f.vector[i] = 2.0f;
    CHECK(cge_fused_normalize(&f) == CGE_OK);
    double ss = 0;
    for (int i = 0; i < CGE_FUSED_DIM; i++) ss += f.vector[i] * f.vector[i];
    CHECK_NEAR(ss, 1.0, 1e-5);
    f.expert_weights[2] = 0.75f;
    f.expert_weights[5] = 0.25f;
    f.selected[0] = 2;
    f.selected[1] = 5;
    CHECK(cge_fused_validate(&f) == CGE_OK);
    f.selected[1] = 2;
    CHECK(cge_fused_validate(&f) == CGE_ERR_INVALID_VALUE);
    f.selected[1] = 5;
    f.vector[7] = INFINITY;
    CHECK(cge_fused_validate(&f) == CGE_ERR_INVALID_VALUE);
}

static void test_alloc_faults(void) {
    struct cge_buf b;
    cge__buf_init(&b, 16);
    CHECK(cge__buf_append(&b, "0123456789", 10) == CGE_OK);
    CHECK(cge__buf_append(&b, "0123456789", 10) == CGE_ERR_INPUT_TOO_LONG);
    CHECK(b.len == 10 && !strcmp(b.data, "0123456789"));
    cge__buf_free(&b);
    cge__fail_alloc_after(0);
    struct cge_concat_embedding c;
    CHECK(cge_concat_init(&c) == CGE_ERR_NOMEM);
    cge__fail_alloc_after(-1);
    cge_concat_deinit(&c);
}

int main(void) {
    RUN(test_table);
    RUN(test_status);
    RUN(test_concat);
    RUN(test_fused);
    RUN(test_alloc_faults);
    return test_report("core");
}
