/*
 * bench_models_clip.c: the CLIP ViT-L/14 vision tower (E4) at real shapes on random weights, and
 * the image front end.
 *
 * Shapes: 224 px, patch 14 (256 patches + class token = 257 tokens), hidden 1024, 16 heads,
 * MLP 4096, 24 layers, projection 768 (openai/clip-vit-large-patch14). The weights are an
 * in-memory bf16 safetensors image in the real checkpoint's layout, loaded by the family's own
 * load (fp32 or bf16 storage). Reports images/s at batch 1 and batch 4, the fraction of the GEMM
 * peak (model FLOPs / time, against one large cge_linear product at the fc1 shape measured in
 * the same run), and the preprocessing time per image: decode, then resize + center crop +
 * normalize, for the repository's PNG/JPEG/WebP inputs and a 12-megapixel JPEG made here.
 * CGE_BENCH_CLIP_LAYERS=n builds n layers instead of 24 (quick runs; the FLOPs follow).
 */
#include "core/core.h"
#include "io/weights.h"
#include "media/image.h"
#include "models/clip.h"
#include "tensor/ops.h"

#include "bench_common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#define D      1024
#define N_HEAD 16
#define D_FF   4096
#define PATCH  14
#define IMG    224
#define N_TOK  257
#define PROJ   768

static int n_layer = 24;

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float randu(void) {
    return bench_randu(&rng);
}

/* ---- an in-memory bf16 safetensors image of the vision tower ---- */
struct spec {
    char name[96];
    int n_dim;
    int64_t shape[4];
    float scale, offset;
};

static int n_specs;
static struct spec *specs;

static void add(const char *name, int n_dim, int64_t a, int64_t b, int64_t c, int64_t d,
                float scale, float offset) {
    struct spec *s = &specs[n_specs++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n_dim = n_dim;
    s->shape[0] = a;
    s->shape[1] = b;
    s->shape[2] = c;
    s->shape[3] = d;
    s->scale = scale;
    s->offset = offset;
}

static int64_t numel(const struct spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->n_dim; i++)
        n *= s->shape[i];
    return n;
}

static uint8_t *build_image(size_t *len) {
    specs = calloc((size_t)(16 + 16 * n_layer), sizeof(*specs));
    add("vision_model.embeddings.class_embedding", 1, D, 0, 0, 0, 1.0f, 0);
    add("vision_model.embeddings.patch_embedding.weight", 4, D, 3, PATCH, PATCH,
        1.0f / sqrtf(3 * PATCH * PATCH), 0);
    add("vision_model.embeddings.position_embedding.weight", 2, N_TOK, D, 0, 0, 1.0f, 0);
    add("vision_model.pre_layrnorm.weight", 1, D, 0, 0, 0, 0.2f, 1.0f);
    add("vision_model.pre_layrnorm.bias", 1, D, 0, 0, 0, 0.1f, 0);
    for (int l = 0; l < n_layer; l++) {
        char n[96];
        const char *mats[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.out_proj"};
        for (int i = 0; i < 4; i++) {
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.%s.weight", l, mats[i]);
            add(n, 2, D, D, 0, 0, 1.0f / sqrtf(D), 0);
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.%s.bias", l, mats[i]);
            add(n, 1, D, 0, 0, 0, 0.1f, 0);
        }
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc1.weight", l);
        add(n, 2, D_FF, D, 0, 0, 1.0f / sqrtf(D), 0);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc1.bias", l);
        add(n, 1, D_FF, 0, 0, 0, 0.1f, 0);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc2.weight", l);
        add(n, 2, D, D_FF, 0, 0, 1.0f / sqrtf(D_FF), 0);
        snprintf(n, sizeof n, "vision_model.encoder.layers.%d.mlp.fc2.bias", l);
        add(n, 1, D, 0, 0, 0, 0.1f, 0);
        const char *lns[] = {"layer_norm1", "layer_norm2"};
        for (int i = 0; i < 2; i++) {
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.%s.weight", l, lns[i]);
            add(n, 1, D, 0, 0, 0, 0.2f, 1.0f);
            snprintf(n, sizeof n, "vision_model.encoder.layers.%d.%s.bias", l, lns[i]);
            add(n, 1, D, 0, 0, 0, 0.1f, 0);
        }
    }
    add("vision_model.post_layernorm.weight", 1, D, 0, 0, 0, 0.2f, 1.0f);
    add("vision_model.post_layernorm.bias", 1, D, 0, 0, 0, 0.1f, 0);
    add("visual_projection.weight", 2, PROJ, D, 0, 0, 1.0f / sqrtf(D), 0);

    struct cge_buf h;
    cge__buf_init(&h, 1 << 22);
    cge__buf_printf(&h, "{");
    size_t off = 0;
    for (int i = 0; i < n_specs; i++) {
        size_t nb = (size_t)numel(&specs[i]) * 2;
        cge__buf_printf(&h, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[", i ? "," : "",
                        specs[i].name);
        for (int k = 0; k < specs[i].n_dim; k++)
            cge__buf_printf(&h, "%s%lld", k ? "," : "", (long long)specs[i].shape[k]);
        cge__buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    cge__buf_printf(&h, "}");
    while (h.len % 8)
        cge__buf_append(&h, " ", 1);
    *len = 8 + h.len + off;
    uint8_t *img = malloc(*len);
    if (!img) return NULL;
    uint64_t hl = h.len;
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)(hl >> (8 * i));
    memcpy(img + 8, h.data, h.len);
    /* 300 M values: draw 64 K per tensor and spread them with a multiplicative hash of the
     * index (a random-looking, non-repeating-by-row pattern, at memory speed). */
    uint16_t *p = (uint16_t *)(img + 8 + h.len);
    uint16_t *tab = malloc(sizeof(uint16_t) << 16);
    for (int i = 0; i < n_specs; i++) {
        int64_t n = numel(&specs[i]);
        for (int j = 0; j < (1 << 16); j++)
            tab[j] = cge_f32_to_bf16(specs[i].offset + specs[i].scale * randu() * 1.7320508f);
        for (int64_t j = 0; j < n; j++)
            *p++ = tab[((uint64_t)j * 0x9E3779B97F4A7C15ull) >> 48];
    }
    free(tab);
    cge__buf_free(&h);
    return img;
}

static double flops_per_image(void) {
    const double patches = 2.0 * (N_TOK - 1) * D * 3 * PATCH * PATCH;
    const double layer = 2.0 * N_TOK * (4.0 * D * D + 2.0 * D * D_FF) + 4.0 * N_TOK * N_TOK * D;
    return patches + n_layer * layer + 2.0 * D * PROJ;
}

static void bench_tower(const struct cge_weights *w, enum cge_dtype dt, double peak,
                        double *t1_out) {
    char cfgtxt[512];
    snprintf(cfgtxt, sizeof cfgtxt,
             "{\"model_type\":\"clip_vision_model\",\"hidden_size\":%d,\"num_hidden_layers\":%d,"
             "\"num_attention_heads\":%d,\"intermediate_size\":%d,\"patch_size\":%d,"
             "\"image_size\":%d,\"projection_dim\":%d,\"hidden_act\":\"quick_gelu\"}",
             D, n_layer, N_HEAD, D_FF, PATCH, IMG, PROJ);
    cJSON *cfg = cJSON_Parse(cfgtxt);
    struct cge_model_params p = cge_model_default_params();
    p.dtype = dt;
    struct cge_family_load lc;
    memset(&lc, 0, sizeof lc);
    lc.config = cfg;
    lc.w = w;
    lc.p = &p;
    void *impl = NULL;
    double t0 = bench_now_s();
    if (cge__family_clip.load(&lc, &impl) != CGE_OK) {
        printf("load failed: %s\n", cge_errmsg());
        cJSON_Delete(cfg);
        return;
    }
    double t_load = bench_now_s() - t0;
    const int64_t px_n = 3 * IMG * IMG;
    float *px = malloc(sizeof(float) * 4 * (size_t)px_n), *out = malloc(sizeof(float) * 4 * PROJ);
    for (int64_t i = 0; i < 4 * px_n; i++)
        px[i] = 1.8f * randu();
    cge__clip_vision_forward(impl, px, 1, NULL, NULL, out); /* warm-up */
    double b1 = 1e30;
    for (int r = 0; r < 2; r++) {
        t0 = bench_now_s();
        cge__clip_vision_forward(impl, px, 1, NULL, NULL, out);
        double t = bench_now_s() - t0;
        if (t < b1) b1 = t;
    }
    t0 = bench_now_s();
    cge__clip_vision_forward(impl, px, 4, NULL, NULL, out);
    double b4 = (bench_now_s() - t0) / 4;
    const double f = flops_per_image();
    double g1 = f / b1 * 1e-9, g4 = f / b4 * 1e-9;
    printf("%-6s %7.2f %10.3f %9.2f %9.2f %9.2f %7.0f%% %7.0f%%\n", cge_dtype_str(dt), t_load, b1,
           1.0 / b1, 1.0 / b4, peak, 100.0 * g1 / peak, 100.0 * g4 / peak);
    if (t1_out) *t1_out = b1;
    free(px);
    free(out);
    cge__family_clip.free(impl);
    cJSON_Delete(cfg);
}

/* Where one layer's time goes at batch 1: each op at the layer's shapes, timed alone (best of
 * 3), next to the GEMM-only share of the layer's FLOPs. */
static void bench_breakdown(enum cge_dtype dt) {
    const int64_t T = N_TOK;
    float *x = malloc(sizeof(float) * T * D_FF), *y = malloc(sizeof(float) * T * D_FF);
    float *qkv = malloc(sizeof(float) * T * 3 * D), *w = malloc(sizeof(float) * D_FF * D);
    float *g = malloc(sizeof(float) * D), *b = malloc(sizeof(float) * D);
    for (int64_t i = 0; i < T * D_FF; i++)
        x[i] = randu();
    for (int64_t i = 0; i < T * 3 * D; i++)
        qkv[i] = randu();
    for (int64_t i = 0; i < (int64_t)D_FF * D; i++)
        w[i] = randu() * 0.03f;
    for (int i = 0; i < D; i++)
        g[i] = 1.0f, b[i] = 0.0f;
    const char *names[] = {"qkv",       "out",          "fc1",        "fc2",
                           "attention", "layernorm x2", "quick_gelu", "residual adds"};
    const int64_t shp[4][2] = {{3 * D, D}, {D, D}, {D_FF, D}, {D, D_FF}};
    double t[8], total = 0;
    for (int op = 0; op < 8; op++) {
        double best = 1e30;
        struct cge_linear l;
        if (op < 4) cge_linear_init(&l, w, CGE_DTYPE_F32, g, shp[op][0], shp[op][1], dt);
        for (int r = 0; r < 4; r++) {
            double t0 = bench_now_s();
            if (op < 4) {
                cge_linear_forward(&l, x, T, y);
            } else if (op == 4) {
                struct cge_attn a;
                memset(&a, 0, sizeof a);
                a.n_batch = 1;
                a.n_seq = T;
                a.n_head = a.n_kv_head = N_HEAD;
                a.d_head = D / N_HEAD;
                a.scale = 0.125f;
                cge_attention(&a, qkv, 3 * D, qkv + D, 3 * D, qkv + 2 * D, 3 * D, y, D);
            } else if (op == 5) {
                cge_layernorm(x, T, D, g, b, 1e-5f);
                cge_layernorm(x, T, D, g, b, 1e-5f);
            } else if (op == 6) {
                cge_quick_gelu(y, T * D_FF);
            } else {
                cge_add(x, y, T * D);
                cge_add(x, y, T * D);
            }
            double e = bench_now_s() - t0;
            if (r > 0 && e < best) best = e; /* r = 0 warms up */
        }
        if (op < 4) cge_linear_deinit(&l);
        t[op] = best;
        total += best;
    }
    printf("one layer at batch 1, op by op (%s weights), ms:", cge_dtype_str(dt));
    for (int op = 0; op < 8; op++)
        printf("%s %s %.1f", op ? "," : "", names[op], t[op] * 1e3);
    printf("; sum %.1f (GEMMs %.0f%%)\n", total * 1e3, 100.0 * (t[0] + t[1] + t[2] + t[3]) / total);
    free(x);
    free(y);
    free(qkv);
    free(w);
    free(g);
    free(b);
}

/* ---- preprocessing ---- */

/* A smooth 4032 x 3024 test card (gradients + rings), JPEG q90 in memory: a phone photo's size. */
static unsigned char *make_big_jpeg(unsigned long *len) {
    const int W = 4032, H = 3024;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *buf = NULL;
    *len = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, len);
    c.image_width = W;
    c.image_height = H;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc((size_t)W * 3);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < W; x++) {
            double r = sqrt((double)(x - W / 2) * (x - W / 2) + (double)(y - H / 2) * (y - H / 2));
            row[3 * x] = (unsigned char)(x * 255 / W);
            row[3 * x + 1] = (unsigned char)(y * 255 / H);
            row[3 * x + 2] = (unsigned char)(127.5 + 127.5 * sin(r / 40.0));
        }
        JSAMPROW rp = row;
        jpeg_write_scanlines(&c, &rp, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    return buf;
}

static void bench_preprocess(double t_forward) {
    const char *files[] = {
        "tests/assets/media/images/chelsea.png", "tests/assets/media/images/astronaut.png",
        "tests/fixtures/media/chelsea_q90.jpg", "tests/fixtures/media/chelsea_q80.webp", NULL};
    unsigned long big_len = 0;
    unsigned char *big = make_big_jpeg(&big_len);
    struct cge_clip_preproc p = cge_clip_preproc_default(IMG);
    float *px = malloc(sizeof(float) * 3 * IMG * IMG);
    printf("\npreprocessing per image (best of 3): decode, then resize (Pillow bicubic) + crop + "
           "normalize\n");
    printf("%-34s %11s %9s %11s %9s %10s\n", "input", "size", "decode ms", "resize ms", "total ms",
           "of fwd");
    for (int f = 0; f < 5; f++) {
        char *data = NULL;
        size_t n = 0;
        const char *label = files[f] ? strrchr(files[f], '/') + 1 : "12 MP JPEG q90 (synthetic)";
        if (files[f]) {
            if (cge__read_file(files[f], CGE_IMAGE_MAX_FILE_BYTES, &data, &n) != CGE_OK) {
                printf("%-34s %s\n", label, cge_errmsg());
                continue;
            }
        } else {
            data = (char *)big;
            n = big_len;
        }
        double bd = 1e30, br = 1e30;
        struct cge_image img = {0, 0, NULL};
        for (int r = 0; r < 3; r++) {
            double t0 = bench_now_s();
            if (cge_image_decode(data, n, 0, &img) != CGE_OK) {
                printf("%-34s %s\n", label, cge_errmsg());
                break;
            }
            double t1 = bench_now_s();
            cge_clip_preprocess(&img, &p, px);
            double t2 = bench_now_s();
            if (t1 - t0 < bd) bd = t1 - t0;
            if (t2 - t1 < br) br = t2 - t1;
            if (r < 2) cge_image_deinit(&img);
        }
        char size[32];
        snprintf(size, sizeof size, "%lldx%lld", (long long)img.w, (long long)img.h);
        printf("%-34s %11s %9.2f %11.2f %9.2f %9.1f%%\n", label, size, bd * 1e3, br * 1e3,
               (bd + br) * 1e3, 100.0 * (bd + br) / t_forward);
        cge_image_deinit(&img);
        if (files[f]) cge__free(data);
    }
    free(big);
    free(px);
}

int main(void) {
    const char *env = getenv("CGE_BENCH_CLIP_LAYERS");
    if (env && atoi(env) > 0 && atoi(env) <= 24) n_layer = atoi(env);
    printf("CLIP ViT-L/14 vision tower, random weights: %d px, patch %d (%d tokens), hidden %d, "
           "%d heads, MLP %d, %d layers, projection %d; %d threads\n",
           IMG, PATCH, N_TOK, D, N_HEAD, D_FF, n_layer, PROJ, cge_get_threads());
    double t_build = bench_now_s();
    size_t len = 0;
    uint8_t *img = build_image(&len);
    struct cge_weights *w = NULL;
    if (!img || cge_weights_from_safetensors_buffer(img, len, "clip-bench", &w) != CGE_OK) {
        printf("weights: %s\n", cge_errmsg());
        return 1;
    }
    printf("random bf16 checkpoint: %.0f MB, built in %.1f s; %.1f GFLOP per image\n", len / 1e6,
           bench_now_s() - t_build, flops_per_image() * 1e-9);
    double p32 = bench_gemm_peak(CGE_DTYPE_F32, 4 * N_TOK, D_FF, D, 3);
    double p16 = bench_gemm_peak(CGE_DTYPE_BF16, 4 * N_TOK, D_FF, D, 3);
    printf("GEMM peak (cge_linear %dx%d -> %d): fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s\n\n",
           4 * N_TOK, D, D_FF, p32, p16);
    printf("%-6s %7s %10s %9s %9s %9s %8s %8s\n", "dtype", "load s", "s/img (1)", "img/s (1)",
           "img/s (4)", "peak", "peak (1)", "peak (4)");
    double t1 = 1.0;
    bench_tower(w, CGE_DTYPE_F32, p32, &t1);
    bench_tower(w, CGE_DTYPE_BF16, p16, NULL);
    printf("\n");
    bench_breakdown(CGE_DTYPE_F32);
    bench_breakdown(CGE_DTYPE_BF16);
    bench_preprocess(t1);
    cge_weights_free(w);
    free(img);
    free(specs);
    return 0;
}
