/*
 * bench_models_encoder.c: the BERT encoder forward at real sizes on random weights:
 * MiniLM-L6 (384×6), BERT-base (768×12) and BERT-large (1024×24), batch 1×128 and 32×128
 * tokens, weights stored in fp32, bf16 and int8 (compute fp32): sequences/s, tokens/s, GFLOP/s
 * and the fraction of the fp32 GEMM peak measured in the same run (one large cge_linear
 * product), and for bf16/int8 the cosine of the last hidden states to fp32.
 *
 * Design: the weights are a safetensors image built in memory (N(0, 1/fan_in)-like), opened with
 * cge_weights_from_safetensors_buffer and loaded by the real BERT family loader, so the forward
 * is exactly what `cge embed` runs. Unless --no-peers (or CGE_BENCH_PEERS=0), the BERT-base
 * image is also written to a temporary file and bench/peers_encoder.py runs the same
 * weights with a PyTorch module of the same architecture and, via torch.onnx.export, with
 * ONNX Runtime (bench/peers_encoder.js, onnxruntime-node), each on the same thread count.
 * ONNX Runtime comes from `cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save
 * onnxruntime-node` (bench/node_modules, not committed); a missing peer is reported and skipped.
 * The last column divides the work by the process CPU time per thread: on a busy machine it
 * shows what the forward reaches when it has the cores (run with OMP_WAIT_POLICY=passive there).
 * Usage: bench_models_encoder [--threads N] [--only minilm|base|large] [--no-peers] [--quick]
 */
#include "core/core.h"
#include "io/weights.h"
#include "models/model.h"
#include "tensor/ops.h"

#include "bench_common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern const struct cge_family cge__family_bert;

struct arch {
    const char *key, *name;
    int64_t d, n_layer, n_head, d_ff;
};
static const struct arch ARCHS[] = {
    {"minilm", "MiniLM-L6", 384, 6, 12, 1536},
    {"base", "BERT-base", 768, 12, 12, 3072},
    {"large", "BERT-large", 1024, 24, 16, 4096},
};
#define VOCAB 30522
#define NPOS  512
#define SEQ   128

/* ---- a random BERT checkpoint in safetensors layout ---------------------------------------- */

struct tensor_spec {
    char name[128];
    int64_t shape[2];
    int n_dim;
    int kind; /* 0 matrix N(0,1/fan_in), 1 embedding N(0,1)·0.5, 2 norm weight ~1, 3 bias */
};

/* 0x9e3779b97f4a7c15 advanced by the 5 505 024 draws that the GEMM peak used to take from this
 * stream before the first checkpoint: the random checkpoints (and their cosines) stay as before. */
static uint64_t rng = 0xdb93f87e098b3a3full;
static float gauss(void) {
    /* A uniform of unit variance: cheap, and the distribution's shape does not matter for
     * timing or for the cosine checks. */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return ((float)(rng >> 40) / (float)(1 << 24) - 0.5f) * 3.4641016f;
}

static int add_spec(struct tensor_spec *t, int n, const char *name, int64_t a, int64_t b, int kind) {
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].shape[0] = a;
    t[n].shape[1] = b;
    t[n].n_dim = b ? 2 : 1;
    t[n].kind = kind;
    return n + 1;
}

/* Builds the safetensors image of a random BertModel; *len its size. */
static uint8_t *build_image(const struct arch *a, size_t *len) {
    struct tensor_spec *t = calloc(32 * (size_t)a->n_layer + 16, sizeof *t);
    int n = 0;
    char nm[128];
    n = add_spec(t, n, "embeddings.word_embeddings.weight", VOCAB, a->d, 1);
    n = add_spec(t, n, "embeddings.position_embeddings.weight", NPOS, a->d, 1);
    n = add_spec(t, n, "embeddings.token_type_embeddings.weight", 2, a->d, 1);
    n = add_spec(t, n, "embeddings.LayerNorm.weight", a->d, 0, 2);
    n = add_spec(t, n, "embeddings.LayerNorm.bias", a->d, 0, 3);
    for (int64_t l = 0; l < a->n_layer; l++) {
        static const char *const sq[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                         "attention.output.dense"};
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "encoder.layer.%lld.%s.weight", (long long)l, sq[k]);
            n = add_spec(t, n, nm, a->d, a->d, 0);
            snprintf(nm, sizeof nm, "encoder.layer.%lld.%s.bias", (long long)l, sq[k]);
            n = add_spec(t, n, nm, a->d, 0, 3);
        }
        snprintf(nm, sizeof nm, "encoder.layer.%lld.attention.output.LayerNorm.weight", (long long)l);
        n = add_spec(t, n, nm, a->d, 0, 2);
        snprintf(nm, sizeof nm, "encoder.layer.%lld.attention.output.LayerNorm.bias", (long long)l);
        n = add_spec(t, n, nm, a->d, 0, 3);
        snprintf(nm, sizeof nm, "encoder.layer.%lld.intermediate.dense.weight", (long long)l);
        n = add_spec(t, n, nm, a->d_ff, a->d, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%lld.intermediate.dense.bias", (long long)l);
        n = add_spec(t, n, nm, a->d_ff, 0, 3);
        snprintf(nm, sizeof nm, "encoder.layer.%lld.output.dense.weight", (long long)l);
        n = add_spec(t, n, nm, a->d, a->d_ff, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%lld.output.dense.bias", (long long)l);
        n = add_spec(t, n, nm, a->d, 0, 3);
        snprintf(nm, sizeof nm, "encoder.layer.%lld.output.LayerNorm.weight", (long long)l);
        n = add_spec(t, n, nm, a->d, 0, 2);
        snprintf(nm, sizeof nm, "encoder.layer.%lld.output.LayerNorm.bias", (long long)l);
        n = add_spec(t, n, nm, a->d, 0, 3);
    }
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t ne = t[i].shape[0] * (t[i].n_dim == 2 ? t[i].shape[1] : 1);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *sh = cJSON_CreateArray();
        for (int k = 0; k < t[i].n_dim; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[k]));
        cJSON_AddItemToObject(e, "shape", sh);
        cJSON *o = cJSON_CreateArray();
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + (size_t)ne * 4)));
        cJSON_AddItemToObject(e, "data_offsets", o);
        cJSON_AddItemToObject(h, t[i].name, e);
        off += (size_t)ne * 4;
    }
    char *hs = cJSON_PrintUnformatted(h);
    size_t hn = strlen(hs), pad = (8 - hn % 8) % 8;
    *len = 8 + hn + pad + off;
    uint8_t *buf = malloc(*len);
    uint64_t hl = hn + pad;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, hs, hn);
    memset(buf + 8 + hn, ' ', pad);
    float *data = (float *)(buf + 8 + hn + pad);
    size_t p = 0;
    for (int i = 0; i < n; i++) {
        int64_t ne = t[i].shape[0] * (t[i].n_dim == 2 ? t[i].shape[1] : 1);
        float sc = t[i].kind == 0 ? 1.0f / sqrtf((float)t[i].shape[1]) : t[i].kind == 1 ? 0.5f : t[i].kind == 2 ? 0.1f : 0.05f;
        for (int64_t k = 0; k < ne; k++) data[p + (size_t)k] = (t[i].kind == 2 ? 1.0f : 0.0f) + sc * gauss();
        p += (size_t)ne;
    }
    cJSON_free(hs);
    cJSON_Delete(h);
    free(t);
    return buf;
}

static cJSON *build_config(const struct arch *a) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "model_type", "bert");
    cJSON_AddNumberToObject(c, "hidden_size", (double)a->d);
    cJSON_AddNumberToObject(c, "num_hidden_layers", (double)a->n_layer);
    cJSON_AddNumberToObject(c, "num_attention_heads", (double)a->n_head);
    cJSON_AddNumberToObject(c, "intermediate_size", (double)a->d_ff);
    cJSON_AddNumberToObject(c, "vocab_size", VOCAB);
    cJSON_AddNumberToObject(c, "max_position_embeddings", NPOS);
    cJSON_AddNumberToObject(c, "type_vocab_size", 2);
    cJSON_AddNumberToObject(c, "layer_norm_eps", 1e-12);
    cJSON_AddStringToObject(c, "hidden_act", "gelu");
    return c;
}

/* ---- timing --------------------------------------------------------------------------------- */

static double forward_flops(const struct arch *a, int64_t B, int64_t L) {
    double tok = (double)(B * L);
    double per_layer = tok * (8.0 * a->d * a->d + 4.0 * a->d * a->d_ff) + 4.0 * (double)B * L * L * a->d;
    return per_layer * (double)a->n_layer;
}

static double min_cosine(const float *a, const float *b, int64_t rows, int64_t d) {
    double worst = 1;
    for (int64_t r = 0; r < rows; r++) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t j = 0; j < d; j++) {
            ab += (double)a[r * d + j] * b[r * d + j];
            aa += (double)a[r * d + j] * a[r * d + j];
            bb += (double)b[r * d + j] * b[r * d + j];
        }
        double c = ab / (sqrt(aa * bb) + 1e-300);
        if (c < worst) worst = c;
    }
    return worst;
}

static int only_dtype = -1; /* --dtype: one storage type only */

static void run_arch(const struct arch *a, double peak, int quick, const char *peer_file) {
    size_t len = 0;
    uint8_t *img = build_image(a, &len);
    if (peer_file) {
        FILE *f = fopen(peer_file, "wb");
        if (f) {
            fwrite(img, 1, len, f);
            fclose(f);
        }
    }
    struct cge_weights *w = NULL;
    if (cge_weights_from_safetensors_buffer(img, len, a->name, &w) != CGE_OK) {
        fprintf(stderr, "%s: %s\n", a->name, cge_errmsg());
        free(img);
        return;
    }
    cJSON *cfg = build_config(a);
    int32_t *ids = malloc(32 * SEQ * sizeof *ids);
    for (int i = 0; i < 32 * SEQ; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        ids[i] = (int32_t)(rng % VOCAB);
    }
    float *h = cge__malloc_aligned((size_t)(32 * SEQ * a->d) * 4);
    float *ref = malloc((size_t)(32 * SEQ * a->d) * 4);
    static const enum cge_dtype dts[] = {CGE_DTYPE_F32, CGE_DTYPE_BF16, CGE_DTYPE_I8};
    int have_ref = 0;
    for (int di = 0; di < 3; di++) {
        if (only_dtype >= 0 && (int)dts[di] != only_dtype) continue;
        struct cge_model_params p = cge_model_default_params();
        p.dtype = dts[di];
        struct cge_family_load lc;
        memset(&lc, 0, sizeof lc);
        lc.dir = a->name;
        lc.config = cfg;
        lc.w = w;
        lc.p = &p;
        void *impl = NULL;
        if (cge__family_bert.load(&lc, &impl) != CGE_OK) {
            fprintf(stderr, "%s: %s\n", a->name, cge_errmsg());
            continue;
        }
        static const int64_t batches[] = {1, 32};
        for (int bi = 0; bi < 2; bi++) {
            int64_t B = batches[bi];
            if (quick && B == 32 && a->d > 768) continue;
            double flops = forward_flops(a, B, SEQ);
            /* warm-up (primitives, page faults) at batch 1, then best of reps within ~1.5 s */
            cge__family_bert.forward_text(impl, ids, NULL, 1, SEQ, h);
            double best = 1e30, total = 0, best_cpu = 1e30;
            int reps = 0;
            while (reps < (B == 1 ? 20 : 3)) {
                int64_t t0 = cge__now_us();
                double c0 = bench_cpu_s();
                if (cge__family_bert.forward_text(impl, ids, NULL, B, SEQ, h) != CGE_OK) {
                    fprintf(stderr, "%s forward: %s\n", a->name, cge_errmsg());
                    break;
                }
                double s = (double)(cge__now_us() - t0) * 1e-6;
                double c = (bench_cpu_s() - c0) / cge_get_threads();
                if (s < best) best = s;
                if (c < best_cpu) best_cpu = c;
                total += s;
                reps++;
                if (total > (B == 1 ? 1.5 : 0.1)) break;
            }
            if (!reps) continue;
            char cosb[32] = "";
            if (B == 32) {
                if (dts[di] == CGE_DTYPE_F32) {
                    memcpy(ref, h, (size_t)(32 * SEQ * a->d) * 4);
                    have_ref = 1;
                } else if (have_ref) {
                    snprintf(cosb, sizeof cosb, "%.6f", min_cosine(h, ref, 32 * SEQ, a->d));
                }
            }
            double gf = flops / best * 1e-9;
            printf("%-11s %-5s %3lldx%-4d %9.4f %8.1f %9.0f %8.1f %6.1f%% %9s %8.1f\n", a->name, cge_dtype_str(dts[di]),
                   (long long)B, SEQ, best, (double)B / best, (double)(B * SEQ) / best, gf, 100.0 * gf / peak, cosb,
                   flops / best_cpu * 1e-9);
            fflush(stdout);
        }
        cge__family_bert.free(impl);
    }
    cJSON_Delete(cfg);
    cge_weights_free(w);
    cge__free_aligned(h);
    free(ref);
    free(ids);
    free(img);
}

int main(int argc, char **argv) {
    int threads = 2, quick = 0, peers = !(getenv("CGE_BENCH_PEERS") && !strcmp(getenv("CGE_BENCH_PEERS"), "0"));
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--peers")) peers = 1;
        else if (!strcmp(argv[i], "--no-peers")) peers = 0;
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            i++;
            only_dtype = !strcmp(argv[i], "bf16") ? CGE_DTYPE_BF16 : !strcmp(argv[i], "int8") ? CGE_DTYPE_I8 : CGE_DTYPE_F32;
        }
        else {
            fprintf(stderr, "usage: %s [--threads N] [--only minilm|base|large] [--no-peers] [--quick] [--dtype f32|bf16|int8]\n", argv[0]);
            return 2;
        }
    }
    cge_set_threads(threads);
    double peak = bench_gemm_peak(CGE_DTYPE_F32, 4096, 3072, 768, 3);
    printf("BERT encoder forward, random weights, %d threads; fp32 GEMM peak (cge_linear 4096x3072x768): %.1f GFLOP/s\n",
           threads, peak);
    printf("%-11s %-5s %8s %9s %8s %9s %8s %7s %9s %8s\n", "model", "dtype", "batch", "s/batch", "seq/s", "tok/s",
           "GFLOP/s", "%peak", "cos(fp32)", "G/cpu-s");
    char peer_file[64] = "";
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++) {
        if (only && strcmp(only, ARCHS[i].key)) continue;
        int want_peer = peers && !strcmp(ARCHS[i].key, "base");
        if (want_peer) snprintf(peer_file, sizeof peer_file, "/tmp/cge_bench_bert_base_%d.safetensors", (int)getpid());
        run_arch(&ARCHS[i], peak, quick, want_peer ? peer_file : NULL);
    }
    if (peer_file[0]) {
        /* Same weights, same threads: PyTorch and ONNX Runtime (skipped when absent). */
        char cmd[512];
        snprintf(cmd, sizeof cmd,
                 "PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3; "
                 "$PY bench/peers_encoder.py --weights %s --threads %d --peak %.1f",
                 peer_file, threads, peak);
        fflush(stdout);
        if (system(cmd) != 0) printf("(peers: bench/peers_encoder.py did not finish; skipped)\n");
        unlink(peer_file);
    }
    return 0;
}
