/*
 * bench_models_whisper.c: the Whisper-large-v3 encoder (E5) at real shapes on random weights,
 * and the audio front end.
 *
 * Shapes: d_model 1280, 20 heads, MLP 5120, 128 mels, 3000 mel frames → 1500 positions. The
 * full model has 32 layers (2.5 GB in fp32); to stay well under a minute and a few hundred MB
 * this builds N_LAYER = 2 layers (an in-memory bf16 safetensors image, the real checkpoint's
 * layout), times the stem (conv1 + conv2) and the 2-layer forward, and EXTRAPOLATES to 32
 * layers: t32 = t_stem + 32 · (t_2 − t_stem) / 2. Reports seconds per 30-s clip in fp32 and
 * bf16 weights, the fraction of the GEMM peak (model FLOPs / time, against one large cge_linear
 * product measured in the same run), and the preprocessing time per clip (decode + resample
 * 48 kHz → 16 kHz + log-mel, and decode + log-mel of a 16 kHz FLAC).
 */
#include "core/core.h"
#include "io/weights.h"
#include "media/audio.h"
#include "models/whisper.h"
#include "tensor/ops.h"

#include "bench_common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_LAYER     2
#define FULL_LAYERS 32
#define D           1280
#define N_HEAD      20
#define D_FF        5120
#define N_MELS      128
#define N_CTX       1500
#define N_IN        3000

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float randu(void) {
    return bench_randu(&rng);
}

/* ---- an in-memory bf16 safetensors image of the encoder ---- */
struct spec {
    char name[96];
    int n_dim;
    int64_t shape[3];
    float scale, offset;
};

static int n_specs;
static struct spec specs[32 + 16 * N_LAYER];

static void add(const char *name, int n_dim, int64_t a, int64_t b, int64_t c, float scale,
                float offset) {
    struct spec *s = &specs[n_specs++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->n_dim = n_dim;
    s->shape[0] = a;
    s->shape[1] = b;
    s->shape[2] = c;
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
    add("encoder.conv1.weight", 3, D, N_MELS, 3, 1.0f / sqrtf(N_MELS * 3), 0);
    add("encoder.conv1.bias", 1, D, 0, 0, 0.1f, 0);
    add("encoder.conv2.weight", 3, D, D, 3, 1.0f / sqrtf(D * 3), 0);
    add("encoder.conv2.bias", 1, D, 0, 0, 0.1f, 0);
    add("encoder.embed_positions.weight", 2, N_CTX, D, 0, 1.0f, 0);
    for (int l = 0; l < N_LAYER; l++) {
        char n[96];
        const char *mats[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.out_proj"};
        for (int i = 0; i < 4; i++) {
            snprintf(n, sizeof n, "encoder.layers.%d.%s.weight", l, mats[i]);
            add(n, 2, D, D, 0, 1.0f / sqrtf(D), 0);
            if (i == 1) continue;
            snprintf(n, sizeof n, "encoder.layers.%d.%s.bias", l, mats[i]);
            add(n, 1, D, 0, 0, 0.1f, 0);
        }
        snprintf(n, sizeof n, "encoder.layers.%d.fc1.weight", l);
        add(n, 2, D_FF, D, 0, 1.0f / sqrtf(D), 0);
        snprintf(n, sizeof n, "encoder.layers.%d.fc1.bias", l);
        add(n, 1, D_FF, 0, 0, 0.1f, 0);
        snprintf(n, sizeof n, "encoder.layers.%d.fc2.weight", l);
        add(n, 2, D, D_FF, 0, 1.0f / sqrtf(D_FF), 0);
        snprintf(n, sizeof n, "encoder.layers.%d.fc2.bias", l);
        add(n, 1, D, 0, 0, 0.1f, 0);
        const char *lns[] = {"self_attn_layer_norm", "final_layer_norm"};
        for (int i = 0; i < 2; i++) {
            snprintf(n, sizeof n, "encoder.layers.%d.%s.weight", l, lns[i]);
            add(n, 1, D, 0, 0, 0.2f, 1.0f);
            snprintf(n, sizeof n, "encoder.layers.%d.%s.bias", l, lns[i]);
            add(n, 1, D, 0, 0, 0.1f, 0);
        }
    }
    add("encoder.layer_norm.weight", 1, D, 0, 0, 0.2f, 1.0f);
    add("encoder.layer_norm.bias", 1, D, 0, 0, 0.1f, 0);

    struct cge_buf h;
    cge__buf_init(&h, 1 << 20);
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
    uint64_t hl = h.len;
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)(hl >> (8 * i));
    memcpy(img + 8, h.data, h.len);
    uint16_t *p = (uint16_t *)(img + 8 + h.len);
    for (int i = 0; i < n_specs; i++) {
        int64_t n = numel(&specs[i]);
        int is_pos = strstr(specs[i].name, "embed_positions") != NULL;
        for (int64_t j = 0; j < n; j++) {
            float v;
            if (is_pos) { /* whisper's sinusoids, so positions look like the real table */
                int64_t t = j / D, c = j % D, half = D / 2;
                double inv = exp(-log(10000.0) / (half - 1) * (double)(c % half));
                v = (float)(c < half ? sin((double)t * inv) : cos((double)t * inv));
            } else {
                v = specs[i].offset + specs[i].scale * randu() * 1.7320508f;
            }
            *p++ = cge_f32_to_bf16(v);
        }
    }
    cge__buf_free(&h);
    return img;
}

static double stem_time(const float *mel) {
    /* the same ops the encoder runs before its layers (conv weights are fp32 in every mode) */
    float *w1 = malloc(sizeof(float) * D * N_MELS * 3), *w2 = malloc(sizeof(float) * D * D * 3);
    float *c1 = malloc(sizeof(float) * D * N_IN), *c2 = malloc(sizeof(float) * D * N_CTX);
    for (int64_t i = 0; i < (int64_t)D * N_MELS * 3; i++)
        w1[i] = randu() * 0.05f;
    for (int64_t i = 0; i < (int64_t)D * D * 3; i++)
        w2[i] = randu() * 0.02f;
    double best = 1e30;
    for (int r = 0; r < 2; r++) {
        double t0 = bench_now_s();
        cge_conv1d(mel, N_MELS, N_IN, w1, NULL, D, 3, 1, 1, c1);
        cge_gelu_erf(c1, (int64_t)D * N_IN);
        cge_conv1d(c1, D, N_IN, w2, NULL, D, 3, 2, 1, c2);
        cge_gelu_erf(c2, (int64_t)D * N_CTX);
        double t = bench_now_s() - t0;
        if (t < best) best = t;
    }
    free(w1);
    free(w2);
    free(c1);
    free(c2);
    return best;
}

static const double FLOP_STEM = 2.0 * D * N_MELS * 3 * N_IN + 2.0 * D * D * 3 * N_CTX;
static const double FLOP_LAYER =
    2.0 * N_CTX * (4.0 * D * D + 2.0 * D * D_FF) + 4.0 * N_CTX * (double)N_CTX * D;

struct enc_result {
    double t_load, t_2, per_layer, t32;
};

static struct enc_result bench_encoder(const struct cge_weights *w, enum cge_dtype dt,
                                       const float *mel, double t_stem) {
    struct enc_result r = {0, 0, 0, 0};
    cJSON *cfg = cJSON_Parse("{\"model_type\":\"whisper\",\"d_model\":1280,\"encoder_layers\":2,"
                             "\"encoder_attention_heads\":20,\"encoder_ffn_dim\":5120,"
                             "\"num_mel_bins\":128,\"max_source_positions\":1500,"
                             "\"activation_function\":\"gelu\"}");
    struct cge_model_params p = cge_model_default_params();
    p.dtype = dt;
    struct cge_family_load lc;
    memset(&lc, 0, sizeof lc);
    lc.config = cfg;
    lc.w = w;
    lc.p = &p;
    void *impl = NULL;
    double t0 = bench_now_s();
    if (cge__family_whisper.load(&lc, &impl) != CGE_OK) {
        printf("load failed: %s\n", cge_errmsg());
        cJSON_Delete(cfg);
        return r;
    }
    r.t_load = bench_now_s() - t0;
    float *h = malloc(sizeof(float) * N_CTX * D);
    double best = 1e30;
    for (int k = 0; k < 2; k++) {
        t0 = bench_now_s();
        cge__whisper_encode(impl, mel, h);
        double t = bench_now_s() - t0;
        if (t < best) best = t;
    }
    r.t_2 = best;
    r.per_layer = (best - t_stem) / N_LAYER;
    if (r.per_layer < 0) r.per_layer = best / N_LAYER;
    r.t32 = t_stem + FULL_LAYERS * r.per_layer;
    free(h);
    cge__family_whisper.free(impl);
    cJSON_Delete(cfg);
    return r;
}

static void print_encoder(enum cge_dtype dt, struct enc_result r, double peak) {
    double gf = (FLOP_STEM + FULL_LAYERS * FLOP_LAYER) / r.t32 * 1e-9;
    printf("%-6s %9.3f %11.3f %11.3f %14.2f %9.1f %9.1f %7.0f%%\n", cge_dtype_str(dt), r.t_load,
           r.t_2, r.per_layer, r.t32, gf, peak, 100.0 * gf / peak);
}

/* Where one layer's time goes: each op at the layer's shapes, timed alone (best of 2). */
static void bench_breakdown(enum cge_dtype dt) {
    const int64_t T = N_CTX;
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
    const char *names[] = {"qkv 1280->3840", "out 1280->1280", "fc1 1280->5120", "fc2 5120->1280",
                           "attention",      "layernorm x2",   "gelu (fc1 out)"};
    const int64_t shp[4][2] = {{3 * D, D}, {D, D}, {D_FF, D}, {D, D_FF}};
    double t[7], total = 0;
    for (int op = 0; op < 7; op++) {
        double best = 1e30;
        struct cge_linear l;
        if (op < 4) cge_linear_init(&l, w, CGE_DTYPE_F32, NULL, shp[op][0], shp[op][1], dt);
        for (int r = 0; r < 2; r++) {
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
                a.scale = 1.0f;
                cge_attention(&a, qkv, 3 * D, qkv + D, 3 * D, qkv + 2 * D, 3 * D, y, D);
            } else if (op == 5) {
                cge_layernorm(x, T, D, g, b, 1e-5f);
                cge_layernorm(x, T, D, g, b, 1e-5f);
            } else {
                cge_gelu_erf(y, T * D_FF);
            }
            double e = bench_now_s() - t0;
            if (e < best) best = e;
        }
        if (op < 4) cge_linear_deinit(&l);
        t[op] = best;
        total += best;
    }
    printf("\none layer, op by op (%s weights), ms:", cge_dtype_str(dt));
    for (int op = 0; op < 7; op++)
        printf("%s %s %.0f", op ? "," : "", names[op], t[op] * 1e3);
    printf("; sum %.0f\n", total * 1e3);
    free(x);
    free(y);
    free(qkv);
    free(w);
    free(g);
    free(b);
}

/* ---- preprocessing ---- */
static void bench_preprocess(double t32_f32, double t32_bf16) {
    /* a 30-s 48 kHz stereo 16-bit WAV: speech-band tones + noise */
    char path[] = "/tmp/cge_bench_whisper_XXXXXX.wav";
    int fd = mkstemps(path, 4);
    if (fd < 0) return;
    close(fd);
    SF_INFO si;
    memset(&si, 0, sizeof si);
    si.samplerate = 48000;
    si.channels = 2;
    si.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &si);
    if (!sf) return;
    float *buf = malloc(sizeof(float) * 2 * 48000);
    for (int s = 0; s < 30; s++) {
        for (int i = 0; i < 48000; i++) {
            double t = s + i / 48000.0;
            float v = (float)(0.2 * sin(2 * M_PI * 220 * t) * (0.6 + 0.4 * sin(2 * M_PI * 3 * t)) +
                              0.05 * randu());
            buf[2 * i] = v;
            buf[2 * i + 1] = 0.8f * v;
        }
        sf_writef_float(sf, buf, 48000);
    }
    sf_close(sf);
    free(buf);
    struct cge_logmel *lm = NULL;
    if (cge_logmel_new(N_MELS, 16000, 400, 160, 30, &lm) != CGE_OK) return;
    float *mel = malloc(sizeof(float) * N_MELS * N_IN);
    const char *files[2] = {path, "tests/fixtures/e2e/whisper_audio/jfk_16k.flac"};
    const char *what[2] = {"30 s WAV 48 kHz stereo", "11 s FLAC 16 kHz mono"};
    printf("\npreprocessing per clip (best of 3)\n");
    printf("%-24s %10s %10s %10s %12s\n", "input", "load ms", "logmel ms", "total ms",
           "total cpu ms");
    for (int f = 0; f < 2; f++) {
        double bl = 1e30, bm = 1e30, bc = 1e30;
        for (int r = 0; r < 3; r++) {
            float *x = NULL;
            int64_t n = 0;
            double c0 = bench_cpu_s();
            double t0 = bench_now_s();
            if (cge_audio_load(files[f], 16000, 30.0, &x, &n) != CGE_OK) {
                printf("%s: %s\n", files[f], cge_errmsg());
                break;
            }
            double t1 = bench_now_s();
            cge_logmel_compute(lm, x, n, mel);
            double t2 = bench_now_s();
            double c = bench_cpu_s() - c0;
            cge__free(x);
            if (t1 - t0 < bl) bl = t1 - t0;
            if (t2 - t1 < bm) bm = t2 - t1;
            if (c < bc) bc = c;
        }
        printf("%-24s %10.1f %10.1f %10.1f %12.1f\n", what[f], bl * 1e3, bm * 1e3, (bl + bm) * 1e3,
               bc * 1e3);
        if (f == 0 && t32_f32 > 0 && t32_bf16 > 0)
            printf("%-24s preprocessing (wall) = %.1f%% of the fp32 forward, %.1f%% of bf16\n", "",
                   100.0 * (bl + bm) / t32_f32, 100.0 * (bl + bm) / t32_bf16);
    }
    free(mel);
    cge_logmel_free(lm);
    unlink(path);
}

int main(void) {
    printf("Whisper-large-v3-sized encoder, random weights: d_model %d, %d heads, MLP %d, %d mels, "
           "%d -> %d frames, %d threads\n",
           D, N_HEAD, D_FF, N_MELS, N_IN, N_CTX, cge_get_threads());
    printf("built with %d layers; the %d-layer time is extrapolated: t_stem + %d * per-layer\n",
           N_LAYER, FULL_LAYERS, FULL_LAYERS);
    size_t len;
    uint8_t *img = build_image(&len);
    struct cge_weights *w = NULL;
    if (cge_weights_from_safetensors_buffer(img, len, "whisper-bench", &w) != CGE_OK) {
        printf("weights: %s\n", cge_errmsg());
        return 1;
    }
    float *mel = malloc(sizeof(float) * N_MELS * N_IN);
    for (int64_t i = 0; i < (int64_t)N_MELS * N_IN; i++)
        mel[i] = 0.5f * randu();
    double t_stem = stem_time(mel);
    double p32 = bench_gemm_peak(CGE_DTYPE_F32, N_CTX, D_FF, D, 3);
    double p16 = bench_gemm_peak(CGE_DTYPE_BF16, N_CTX, D_FF, D, 3);
    struct enc_result r32 = bench_encoder(w, CGE_DTYPE_F32, mel, t_stem);
    struct enc_result r16 = bench_encoder(w, CGE_DTYPE_BF16, mel, t_stem);
    /* the peak again, after: on a shared machine the larger of the two is the better estimate */
    double q32 = bench_gemm_peak(CGE_DTYPE_F32, N_CTX, D_FF, D, 3);
    double q16 = bench_gemm_peak(CGE_DTYPE_BF16, N_CTX, D_FF, D, 3);
    if (q32 > p32) p32 = q32;
    if (q16 > p16) p16 = q16;
    printf("GEMM peak (cge_linear 1500x1280 -> 5120, best before/after): fp32 %.1f GFLOP/s, "
           "bf16 %.1f GFLOP/s\n",
           p32, p16);
    printf("stem (conv1+conv2+GELU, fp32): %.3f s; FLOPs: stem %.1f G, per layer %.1f G\n", t_stem,
           FLOP_STEM * 1e-9, FLOP_LAYER * 1e-9);
    printf("\n%-6s %9s %11s %11s %14s %9s %9s %8s\n", "dtype", "load s", "2-layer s", "per-layer s",
           "s/clip (32 L)", "GFLOP/s", "peak", "of peak");
    print_encoder(CGE_DTYPE_F32, r32, p32);
    print_encoder(CGE_DTYPE_BF16, r16, p16);
    double t32 = r32.t32, t16 = r16.t32;
    bench_breakdown(CGE_DTYPE_F32);
    bench_breakdown(CGE_DTYPE_BF16);
    bench_preprocess(t32, t16);
    free(mel);
    cge_weights_free(w);
    free(img);
    return 0;
}
