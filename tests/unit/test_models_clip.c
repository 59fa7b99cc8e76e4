/*
 * test_models_clip.c: the CLIP family against transformers 4.40 outputs.
 *
 *  - models/clip_vision: last_hidden_state, pooler_output, image_embeds from the fixture's
 *    pixel_values (relative error < 1e-5), batch of two = two singles, BF16 storage close.
 *  - e2e/clip_image: PNG file → cge_model_embed → expected rows (decode + Pillow-exact resize +
 *    vision tower + L2).
 *  - e2e/clip_text: token ids equal case.json's, then cge_model_embed (batched and padded) →
 *    expected rows.
 *  - The EOS rule: legacy eos_token_id 2 → argmax of the ids; otherwise the first eos id,
 *    checked against text_projection computed in double here.
 *  - Real files (PNG, JPEG, WebP): finite, unit length; a lossless WebP embeds exactly as its
 *    PNG; corrupt, oversized and wrong-modality inputs fail alone with clear statuses.
 */
#include "testhelp.h"

#include "core/core.h"
#include "io/weights.h"
#include "models/clip.h"
#include "models/model.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <unistd.h>

#define FIX     "tests/fixtures/models/clip_vision/"
#define E2E_IMG "tests/fixtures/e2e/clip_image/"
#define E2E_TXT "tests/fixtures/e2e/clip_text/"

static double max_rel_row(const float *a, const float *b, int64_t rows, int64_t d) {
    double m = 0;
    for (int64_t r = 0; r < rows; r++)
        m = fmax(m, th_rel_err(a + r * d, b + r * d, (size_t)d));
    return m;
}

/* ---- models/clip_vision ------------------------------------------------------------------------ */

static void check_vision_fixture(enum cge_dtype dtype, double tol) {
    struct cge_model_params p = cge_model_default_params();
    p.dtype = dtype;
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(FIX, &p, &m);
    CHECK_MSG(st == CGE_OK, "load: %s", cge_errmsg());
    if (st) return;
    CHECK(strcmp(cge_model_family(m), "clip") == 0);
    CHECK(cge_model_modalities(m) == CGE_MOD_IMAGE);
    CHECK(cge_model_dim(m) == 32);
    const void *impl = cge__model_impl(m);
    CHECK(cge__clip_image_size(impl) == 224 && cge__clip_vision_hidden(impl) == 64);
    size_t n_px = 0, n_lh = 0, n_po = 0, n_ie = 0;
    float *px = th_read_f32(FIX "pixel_values.bin", &n_px);
    float *lh = th_read_f32(FIX "last_hidden_state.bin", &n_lh);
    float *po = th_read_f32(FIX "pooler_output.bin", &n_po);
    float *ie = th_read_f32(FIX "image_embeds.bin", &n_ie);
    CHECK(px && n_px == 3 * 224 * 224 && n_lh == 257 * 64 && n_po == 64 && n_ie == 32);
    if (px && lh && po && ie && n_px == 3 * 224 * 224) {
        /* two copies in one batch: each row must match */
        float *px2 = malloc(2 * n_px * sizeof(float));
        memcpy(px2, px, n_px * sizeof(float));
        memcpy(px2 + n_px, px, n_px * sizeof(float));
        float *olh = malloc(2 * n_lh * sizeof(float)), *opo = malloc(2 * 64 * sizeof(float));
        float *oie = malloc(2 * 32 * sizeof(float));
        st = cge__clip_vision_forward(impl, px2, 2, olh, opo, oie);
        CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
        double e_lh = fmax(th_rel_err(olh, lh, n_lh), th_rel_err(olh + n_lh, lh, n_lh));
        double e_po = fmax(th_rel_err(opo, po, 64), th_rel_err(opo + 64, po, 64));
        double e_ie = fmax(th_rel_err(oie, ie, 32), th_rel_err(oie + 32, ie, 32));
        printf("  clip_vision %s: rel err last_hidden_state %.2e, pooler_output %.2e, "
               "image_embeds %.2e\n",
               cge_dtype_str(dtype), e_lh, e_po, e_ie);
        CHECK_MSG(e_lh < tol, "last_hidden_state %g", e_lh);
        CHECK_MSG(e_po < tol, "pooler_output %g", e_po);
        CHECK_MSG(e_ie < tol, "image_embeds %g", e_ie);
        /* the batch of two is two batches of one */
        float *one = malloc(32 * sizeof(float));
        CHECK(cge__clip_vision_forward(impl, px, 1, NULL, NULL, one) == CGE_OK);
        CHECK(th_rel_err(one, oie + 32, 32) < 1e-6);
        free(one);
        free(px2);
        free(olh);
        free(opo);
        free(oie);
    }
    free(px);
    free(lh);
    free(po);
    free(ie);
    /* A vision-only model takes no text. */
    struct cge_input in;
    memset(&in, 0, sizeof(in));
    in.text = "hello";
    in.text_len = 5;
    float out[32];
    struct cge_embed_info info;
    cge_model_embed(m, &in, 1, out, &info);
    CHECK(info.status != CGE_OK);
    cge_model_free(m);
}

static void test_vision_fixture(void) {
    check_vision_fixture(CGE_DTYPE_F32, 1e-5);
    check_vision_fixture(CGE_DTYPE_BF16, 2e-2);
}

/* ---- e2e/clip_image ---------------------------------------------------------------------------------- */

static void test_e2e_image(void) {
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(E2E_IMG "model", NULL, &m);
    if (st) {
        struct cge_model_params p = cge_model_default_params();
        st = cge_model_load(E2E_IMG "model", &p, &m);
    }
    CHECK_MSG(st == CGE_OK, "load: %s", cge_errmsg());
    if (st) return;
    CHECK(cge_model_dim(m) == 32);
    size_t n = 0;
    float *ref = th_read_f32(E2E_IMG "expected.f32", &n);
    CHECK(ref && n == 2 * 32);
    struct cge_input in[2];
    memset(in, 0, sizeof(in));
    in[0].image_path = E2E_IMG "camera.png";
    in[1].image_path = E2E_IMG "chelsea.png";
    float out[64];
    struct cge_embed_info info[2];
    st = cge_model_embed(m, in, 2, out, info);
    CHECK_MSG(st == CGE_OK && info[0].status == CGE_OK && info[1].status == CGE_OK, "%s / %s",
              info[0].errmsg, info[1].errmsg);
    if (ref && n == 64) {
        double e = max_rel_row(out, ref, 2, 32);
        printf("  e2e clip_image: max row rel err %.2e\n", e);
        CHECK_MSG(e < 1e-5, "rel err %g", e);
    }
    free(ref);
    cge_model_free(m);
}

/* ---- e2e/clip_text ------------------------------------------------------------------------------------- */

static void test_e2e_text(void) {
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(E2E_TXT "model", NULL, &m);
    CHECK_MSG(st == CGE_OK, "load: %s", cge_errmsg());
    if (st) return;
    CHECK(cge_model_dim(m) == 24);
    CHECK((cge_model_modalities(m) & CGE_MOD_TEXT) != 0);
    size_t clen = 0, ilen = 0, n = 0;
    char *cj = th_read_file(E2E_TXT "case.json", &clen);
    char *inputs = th_read_file(E2E_TXT "inputs.jsonl", &ilen);
    float *ref = th_read_f32(E2E_TXT "expected.f32", &n);
    cJSON *c = cj ? cJSON_Parse(cj) : NULL;
    const cJSON *tids = cJSON_GetObjectItem(c, "token_ids");
    const int n_in = cJSON_GetArraySize(tids);
    CHECK(n_in == 8 && n == (size_t)n_in * 24);
    struct cge_input *in = calloc((size_t)n_in, sizeof(*in));
    cJSON **lines = calloc((size_t)n_in, sizeof(*lines));
    char *save = NULL, *line = inputs ? strtok_r(inputs, "\n", &save) : NULL;
    for (int i = 0; i < n_in && line; i++, line = strtok_r(NULL, "\n", &save)) {
        lines[i] = cJSON_Parse(line);
        const cJSON *t = cJSON_GetObjectItem(lines[i], "text");
        in[i].text = cJSON_IsString(t) ? t->valuestring : "";
        in[i].text_len = strlen(in[i].text);
    }
    /* token ids first: an embedding comparison means nothing without them */
    const struct cge_tokenizer *tok = cge__model_tokenizer(m);
    CHECK(tok != NULL);
    int ids_ok = 1;
    for (int i = 0; tok && i < n_in; i++) {
        int32_t *ids = NULL;
        int64_t k = 0;
        int trunc = 0;
        st = cge_tokenizer_encode(tok, in[i].text, in[i].text_len, 1, 77, &ids, &k, &trunc);
        const cJSON *want = cJSON_GetArrayItem(tids, i);
        int same = st == CGE_OK && k == cJSON_GetArraySize(want);
        for (int64_t j = 0; same && j < k; j++)
            same = ids[j] == cJSON_GetArrayItem(want, (int)j)->valueint;
        CHECK_MSG(same, "input %d: token ids differ from case.json", i);
        ids_ok &= same;
        cge__free(ids);
    }
    float *out = calloc((size_t)n_in * 24, sizeof(float));
    struct cge_embed_info *info = calloc((size_t)n_in, sizeof(*info));
    st = cge_model_embed(m, in, n_in, out, info);
    CHECK_MSG(st == CGE_OK, "embed: %s", cge_errmsg());
    if (ref && n == (size_t)n_in * 24 && st == CGE_OK) {
        double e = max_rel_row(out, ref, n_in, 24);
        printf("  e2e clip_text (%d inputs, one padded batch): max row rel err %.2e%s\n", n_in, e,
               ids_ok ? "" : " (token ids differ)");
        CHECK_MSG(e < 1e-5, "rel err %g", e);
        /* one at a time gives the same rows */
        double e1 = 0;
        for (int i = 0; i < n_in; i++) {
            float row[24];
            CHECK(cge_model_embed(m, &in[i], 1, row, NULL) == CGE_OK);
            e1 = fmax(e1, th_rel_err(row, ref + i * 24, 24));
        }
        CHECK_MSG(e1 < 1e-5, "batch of 1: rel err %g", e1);
    }
    /* A text-only model takes no image. */
    struct cge_input im;
    memset(&im, 0, sizeof(im));
    im.image_path = E2E_IMG "camera.png";
    float o[24];
    struct cge_embed_info ii;
    cge_model_embed(m, &im, 1, o, &ii);
    CHECK(ii.status == CGE_ERR_UNSUPPORTED_MODALITY);
    for (int i = 0; i < n_in; i++)
        cJSON_Delete(lines[i]);
    free(lines);
    free(in);
    free(out);
    free(info);
    free(ref);
    free(inputs);
    free(cj);
    cJSON_Delete(c);
    cge_model_free(m);
}

/* ---- the EOS rule -------------------------------------------------------------------------------------- */

/* Loads the clip_text weights with config.json's eos_token_id replaced by `eos`; runs pool_text
 * on synthetic hidden states and checks the chosen row against W·h[p] computed here. */
static void check_eos_rule(int eos, const int32_t *ids, int64_t n, int64_t want_p) {
    const char *dir = "/tmp/cge_test_clip_eos";
    char path[512], cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    CHECK(system(cmd) == 0);
    size_t len = 0;
    char *cfg = th_read_file(E2E_TXT "model/config.json", &len);
    cJSON *c = cJSON_Parse(cfg);
    if (eos >= 0) /* eos < 0: no eos_token_id at all (CLIPTextConfig's default, 49407) */
        cJSON_ReplaceItemInObject(c, "eos_token_id", cJSON_CreateNumber(eos));
    else
        cJSON_DeleteItemFromObject(c, "eos_token_id");
    char *txt = cJSON_Print(c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    fputs(txt, f);
    fclose(f);
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cmd, sizeof cmd, "%s/" E2E_TXT "model/model.safetensors", cwd);
    CHECK(symlink(cmd, path) == 0);
    free(cfg);
    free(txt);
    cJSON_Delete(c);

    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(dir, NULL, &m);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    if (st) return;
    const struct cge_family *fam = cge__model_family(m);
    const int64_t d = 32, L = n + 3; /* padded: the padding must not be searched */
    float *hidden = calloc((size_t)(L * d), sizeof(float));
    for (int64_t t = 0; t < L; t++)
        for (int64_t j = 0; j < d; j++)
            hidden[t * d + j] = (float)sin(0.37 * (double)(t * d + j));
    int32_t *pids = calloc((size_t)L, sizeof(int32_t));
    memcpy(pids, ids, (size_t)n * sizeof(int32_t));
    for (int64_t t = n; t < L; t++)
        pids[t] = 49407;
    int64_t lens[1] = {n};
    float out[24];
    CHECK(fam->pool_text(cge__model_impl(m), hidden, pids, lens, 1, L, out) == CGE_OK);
    struct cge_weights *w = NULL;
    CHECK(cge_weights_open(dir, &w) == CGE_OK);
    float *W = NULL;
    int64_t sh[2] = {24, 32};
    CHECK(cge_weights_get_f32(w, "text_projection.weight", 2, sh, &W) == CGE_OK);
    double err = 0;
    for (int i = 0; W && i < 24; i++) {
        double s = 0;
        for (int j = 0; j < 32; j++)
            s += (double)W[i * 32 + j] * hidden[want_p * d + j];
        err = fmax(err, fabs(s - out[i]));
    }
    CHECK_MSG(err < 1e-5, "eos %d: pooled row is not position %lld (max diff %g)", eos,
              (long long)want_p, err);
    cge__free(W);
    cge_weights_free(w);
    free(hidden);
    free(pids);
    cge_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_eos_rule(void) {
    /* legacy eos 2: argmax of the ids, first occurrence (49407 at 3, again at 5) */
    const int32_t a[] = {49406, 320, 1125, 49407, 900, 49407};
    check_eos_rule(2, a, 6, 3);
    /* argmax where the largest id is not the EOS token */
    const int32_t b[] = {320, 49405, 1125, 49400, 49405};
    check_eos_rule(2, b, 5, 1);
    /* eos 49407: the first 49407, even when a larger id comes before it */
    check_eos_rule(49407, a, 6, 3);
    const int32_t c[] = {49406, 320, 900, 1125, 49407, 7};
    check_eos_rule(49407, c, 6, 4);
    /* eos 320: the first 320 */
    check_eos_rule(320, a, 6, 1);
    /* no eos_token_id: transformers' default 49407 and the first-occurrence rule, which
     * gives position 0 when the id is absent (argmax would give 1 here) */
    const int32_t d[] = {320, 49406, 5};
    check_eos_rule(-1, d, 3, 0);
    check_eos_rule(2, d, 3, 1);
}

/* ---- real files ------------------------------------------------------------------------------------------ */

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static void test_real_files(void) {
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(E2E_IMG "model", NULL, &m);
    CHECK_MSG(st == CGE_OK, "%s", cge_errmsg());
    if (st) return;
    /* A corrupt PNG (truncated) and a 50,000 × 50,000 header, among good files. */
    size_t n = 0;
    char *png = th_read_file("tests/fixtures/preprocess/clip_image/image_1.png", &n);
    write_bytes("/tmp/cge_test_clip_trunc.png", png, n / 2);
    unsigned char big[45] = {0x89, 'P', 'N',  'G',  '\r', '\n', 0x1a, '\n', 0,    0,
                             0,    13,  'I',  'H',  'D',  'R',  0,    0,    0xC3, 0x50,
                             0,    0,   0xC3, 0x50, 8,    2,    0,    0,    0};
    write_bytes("/tmp/cge_test_clip_big.png", big, sizeof(big));
    write_bytes("/tmp/cge_test_clip_text.png", "not an image at all", 19);
    free(png);
    const char *files[] = {
        "tests/assets/media/images/astronaut.png",
        "tests/assets/media/images/camera.png",
        "tests/assets/media/images/chelsea.png",
        "tests/assets/media/images/coffee.png",
        "tests/fixtures/media/chelsea_q90.jpg",
        "tests/fixtures/media/chelsea_progressive_q80.jpg",
        "tests/fixtures/media/camera_gray_q85.jpg",
        "tests/fixtures/media/chelsea_q80.webp",
        "tests/fixtures/media/image_1_lossless.webp",
        "tests/fixtures/preprocess/clip_image/image_1.png",
        "/tmp/cge_test_clip_trunc.png",
        "/tmp/cge_test_clip_big.png",
        "/tmp/cge_test_clip_text.png",
        "/tmp/cge_test_clip_missing.png",
    };
    const int nf = (int)(sizeof(files) / sizeof(files[0]));
    struct cge_input in[14];
    struct cge_embed_info info[14];
    float out[14 * 32];
    memset(in, 0, sizeof(in));
    for (int i = 0; i < nf; i++)
        in[i].image_path = files[i];
    st = cge_model_embed(m, in, nf, out, info);
    CHECK(st == CGE_OK);
    for (int i = 0; i < 10; i++) {
        CHECK_MSG(info[i].status == CGE_OK, "%s: %s", files[i], info[i].errmsg);
        double s = 0;
        int finite = 1;
        for (int j = 0; j < 32; j++) {
            finite &= isfinite(out[i * 32 + j]);
            s += (double)out[i * 32 + j] * out[i * 32 + j];
        }
        CHECK_MSG(finite && fabs(sqrt(s) - 1.0) < 1e-5, "%s: norm %g", files[i], sqrt(s));
    }
    /* lossless WebP of image_1.png: the same pixels, the same embedding */
    CHECK(memcmp(out + 8 * 32, out + 9 * 32, 32 * sizeof(float)) == 0);
    /* JPEG q90 of chelsea stays close to the PNG's embedding */
    CHECK(th_cosine(out + 2 * 32, out + 4 * 32, 32) > 0.99);
    CHECK_MSG(info[10].status == CGE_ERR_SERIALIZATION, "truncated: %d %s", info[10].status,
              info[10].errmsg);
    CHECK_MSG(info[11].status == CGE_ERR_INPUT_TOO_LONG, "50000²: %d %s", info[11].status,
              info[11].errmsg);
    CHECK(strstr(info[11].errmsg, "50000") != NULL);
    CHECK(info[12].status == CGE_ERR_UNSUPPORTED);
    CHECK(info[13].status == CGE_ERR_IO || info[13].status == CGE_ERR_MODEL_NOT_FOUND);
    for (int i = 10; i < nf; i++) {
        int zero = 1;
        for (int j = 0; j < 32; j++)
            zero &= out[i * 32 + j] == 0.0f;
        CHECK(zero);
    }
    remove("/tmp/cge_test_clip_trunc.png");
    remove("/tmp/cge_test_clip_big.png");
    remove("/tmp/cge_test_clip_text.png");
    cge_model_free(m);
}

/* ---- CLIPModel layout (nested text_config / vision_config) ----------------------------------------- */

/* A CLIPModel folder holding one tower's weights (the e2e checkpoints) with the tower's config
 * nested as transformers writes CLIPConfig: the embedding must equal the one-tower class's. */
static void check_nested(const char *case_dir, const char *sub, int64_t dim, int image) {
    const char *dir = "/tmp/cge_test_clip_nested";
    char cmd[1400], cwd[512], path[600];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s && for f in %s/%smodel/*; do ln -s \"$f\" %s/; done && rm "
             "%s/config.json",
             dir, dir, cwd, case_dir, dir, dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/%smodel/config.json", cwd, case_dir);
    size_t len = 0;
    char *txt = th_read_file(path, &len);
    cJSON *tower = cJSON_Parse(txt);
    free(txt);
    cJSON *top = cJSON_CreateObject();
    cJSON_AddStringToObject(top, "model_type", "clip");
    cJSON *arch = cJSON_AddArrayToObject(top, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("CLIPModel"));
    cJSON_AddNumberToObject(top, "projection_dim", (double)dim);
    cJSON_DeleteItemFromObject(tower, "projection_dim");
    cJSON_AddItemToObject(top, sub, tower);
    char *out = cJSON_Print(top);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_bytes(path, out, strlen(out));
    free(out);
    cJSON_Delete(top);
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(dir, NULL, &m);
    CHECK_MSG(st == CGE_OK, "%s: %s", sub, cge_errmsg());
    if (st == CGE_OK) {
        CHECK(cge_model_dim(m) == dim);
        size_t n = 0;
        snprintf(path, sizeof path, "%sexpected.f32", case_dir);
        float *ref = th_read_f32(path, &n);
        struct cge_input in;
        memset(&in, 0, sizeof(in));
        char img[600];
        if (image) {
            snprintf(img, sizeof img, "%scamera.png", case_dir);
            in.image_path = img;
        } else {
            in.text = "Hello world";
            in.text_len = 11;
        }
        float *o = calloc((size_t)dim, sizeof(float));
        CHECK(cge_model_embed(m, &in, 1, o, NULL) == CGE_OK);
        CHECK_MSG(ref && th_rel_err(o, ref, (size_t)dim) < 1e-5, "%s: rel err %g", sub,
                  ref ? th_rel_err(o, ref, (size_t)dim) : -1.0);
        free(o);
        free(ref);
    }
    cge_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_nested_config(void) {
    check_nested(E2E_IMG, "vision_config", 32, 1);
    check_nested(E2E_TXT, "text_config", 24, 0);
}

/* ---- allocation failures ------------------------------------------------------------------------- */

/* The family's load, image embedding and text forward + pooling with the k-th allocation failing,
 * for every k: an error each time (until k passes the last allocation), no leak (ASan). */
static void oom_case(const char *dir, int image) {
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t len = 0;
    char *txt = th_read_file(path, &len);
    cJSON *cfg = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    struct cge_weights *w = NULL;
    CHECK(cfg && cge_weights_open(dir, &w) == CGE_OK);
    if (!cfg || !w) {
        cJSON_Delete(cfg);
        cge_weights_free(w);
        return;
    }
    struct cge_model_params p = cge_model_default_params();
    const int32_t ids[4] = {49406, 3306, 1002, 49407};
    const int64_t lens[1] = {4};
    float hidden[4 * 32], out[32];
    long total = -1;
    int bad = 0;
    for (long k = -1; total < 0 || k <= total; k++) {
        struct cge_family_load lc;
        memset(&lc, 0, sizeof lc);
        lc.dir = dir;
        lc.config = cfg;
        lc.w = w;
        lc.p = &p;
        void *impl = NULL;
        cge__fail_alloc_after(k < 0 ? 1L << 40 : k); /* k = -1: count */
        enum cge_status st = cge__family_clip.load(&lc, &impl);
        if (st == CGE_OK) {
            if (image)
                st = cge__family_clip.embed_image(impl, &(struct cge__media){.path = E2E_IMG "chelsea.png"}, out);
            else {
                st = cge__family_clip.forward_text(impl, ids, lens, 1, 4, hidden);
                if (st == CGE_OK)
                    st = cge__family_clip.pool_text(impl, hidden, ids, lens, 1, 4, out);
            }
        }
        long used = cge__alloc_count();
        cge__fail_alloc_after(-1);
        cge__family_clip.free(impl); /* NULL after a failed load: a no-op */
        if (k < 0) {
            CHECK(st == CGE_OK);
            total = used;
            continue;
        }
        if ((k < total && st == CGE_OK) || (k == total && st != CGE_OK)) bad++;
    }
    CHECK_MSG(bad == 0, "%s: %d of %ld allocation failures not reported", dir, bad, total);
    printf("  allocation failures: %s: %ld allocations, each failed in turn\n", dir, total);
    cge_weights_free(w);
    cJSON_Delete(cfg);
}

static void test_oom(void) {
    oom_case(E2E_IMG "model", 1);
    oom_case(E2E_TXT "model", 0);
}

/* ---- threads ------------------------------------------------------------------------------------------- */

struct thr_arg {
    const struct cge_model *m;
    const char *path;
    float out[32];
    enum cge_status st;
};

static void *thr_embed(void *p) {
    struct thr_arg *a = p;
    struct cge_input in;
    memset(&in, 0, sizeof(in));
    in.image_path = a->path;
    for (int r = 0; r < 3 && a->st == CGE_OK; r++)
        a->st = cge_model_embed(a->m, &in, 1, a->out, NULL);
    return NULL;
}

/* One loaded model, four threads embedding at once: each result equals the serial one. */
static void test_threads(void) {
    struct cge_model *m = NULL;
    CHECK(cge_model_load(E2E_IMG "model", NULL, &m) == CGE_OK);
    if (!m) return;
    const char *paths[2] = {E2E_IMG "camera.png", E2E_IMG "chelsea.png"};
    float ref[2][32];
    for (int i = 0; i < 2; i++) {
        struct cge_input in;
        memset(&in, 0, sizeof(in));
        in.image_path = paths[i];
        CHECK(cge_model_embed(m, &in, 1, ref[i], NULL) == CGE_OK);
    }
    pthread_t t[4];
    struct thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        a[i].m = m;
        a[i].path = paths[i % 2];
        CHECK(pthread_create(&t[i], NULL, thr_embed, &a[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(a[i].st == CGE_OK);
        CHECK(th_rel_err(a[i].out, ref[i % 2], 32) < 1e-6);
    }
    cge_model_free(m);
}

/* ---- broken folders -------------------------------------------------------------------------------------- */

static void test_bad_config(void) {
    const char *dir = "/tmp/cge_test_clip_bad";
    char cmd[1024], cwd[512], path[600];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    const char *cfgs[] = {
        /* wrong sizes: the tensors do not match */
        "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 40, \"num_attention_heads\": 4, "
        "\"intermediate_size\": 96, \"num_hidden_layers\": 2, \"patch_size\": 14, "
        "\"projection_dim\": 32}",
        "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 48, \"num_attention_heads\": 5, "
        "\"intermediate_size\": 96, \"num_hidden_layers\": 2, \"patch_size\": 14, "
        "\"projection_dim\": 32}",
        "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 48, \"num_attention_heads\": 4, "
        "\"intermediate_size\": 96, \"num_hidden_layers\": 3, \"patch_size\": 14, "
        "\"projection_dim\": 32}",
        "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 48, \"num_attention_heads\": 4, "
        "\"intermediate_size\": 96, \"num_hidden_layers\": 2, \"patch_size\": 14, "
        "\"projection_dim\": 32, \"hidden_act\": \"mish\"}",
    };
    for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
        snprintf(cmd, sizeof cmd,
                 "rm -rf %s && mkdir -p %s && ln -s %s/" E2E_IMG
                 "model/model.safetensors %s/model.safetensors",
                 dir, dir, cwd, dir);
        CHECK(system(cmd) == 0);
        snprintf(path, sizeof path, "%s/config.json", dir);
        write_bytes(path, cfgs[i], strlen(cfgs[i]));
        struct cge_model *m = NULL;
        enum cge_status st = cge_model_load(dir, NULL, &m);
        CHECK_MSG(st == CGE_ERR_MODEL_LOAD || st == CGE_ERR_UNSUPPORTED, "config %zu: %d %s", i, st,
                  cge_errmsg());
        CHECK(m == NULL);
        cge_model_free(m);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    RUN(test_vision_fixture);
    RUN(test_e2e_image);
    RUN(test_e2e_text);
    RUN(test_eos_rule);
    RUN(test_real_files);
    RUN(test_nested_config);
    RUN(test_threads);
    RUN(test_bad_config);
    RUN(test_oom);
    return test_report("models_clip");
}
