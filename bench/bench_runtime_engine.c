/*
 * bench_runtime_engine.c: the engine's own costs, on an ensemble folder (default: the demo, the
 * shared fixture's twelve tiny slots; give a folder of real models as argv[1]):
 *  1. per-slot latency of one input (a text, an image, an audio clip), median of repetitions;
 *  2. pipeline overhead: cge_engine_embed over a batch of texts against the sum of each slot's
 *     own cge_model_embed on the same inputs plus the fusion alone (cache off);
 *  3. cache-hit latency through the engine (P50/P99 of single-input calls of a cached input).
 * The tiny demo slots make (2) a worst case: fixed per-call costs weigh most when the models
 * cost least. Prints a table and one "BENCH_JSON {...}" line for the history.
 */
#include "bench_common.h"
#include "cge.h"
#include "fusion/fusemoe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NB 32

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static const char *texts[] = {
    "The quick brown fox jumps over the lazy dog.",
    "what is the capital of France?",
    "def add(a, b):\n    return a + b  # sum",
    "A context graph stores facts as nodes and the relations between them as edges.",
    "Embeddings turn text, code, images and audio into vectors that can be compared.",
    "Hello world",
    "The mixture of experts routes each input to two of eight experts.",
    "Ünïcödé café naïve — Zürich, Ελληνικά και 東京タワー",
};

int main(int argc, char **argv) {
    const char *ens = argc > 1 ? argv[1] : cge_demo_ensemble_path();
    char media_dir[1024];
    snprintf(media_dir, sizeof media_dir, "%s/..", ens ? ens : ".");
    struct cge_engine_params p = cge_engine_default_params();
    p.cache = 0;
    p.max_wait_ms = 0; /* one caller: nothing to wait for (see bench_runtime_batching) */
    struct cge_engine *e = NULL;
    if (!ens || cge_engine_open(ens, &p, &e)) {
        fprintf(stderr, "bench_runtime_engine: %s\n", cge_errmsg());
        return 1;
    }
    printf("ensemble %s (%s), %d threads\n", cge_engine_name(e), ens, cge_get_threads());

    /* 1. per-slot latency of one input */
    char img[1100], aud[1100];
    snprintf(img, sizeof img, "%s/chelsea.png", media_dir);
    snprintf(aud, sizeof aud, "%s/jfk_16k.wav", media_dir);
    struct cge_input one[3];
    memset(one, 0, sizeof one);
    one[0].text = texts[0];
    one[0].text_len = strlen(texts[0]);
    one[1].image_path = img;
    one[2].audio_path = aud;
    const char *names[3] = {"text", "image", "audio"};
    enum { REPS = 15 };
    printf("\n1. per-slot latency of one input (median of %d, ms)\n%-6s", REPS, "input");
    for (int s = 0; s < CGE_N_SLOTS; s++) printf(" %6s%d", "E", s + 1);
    printf(" %8s\n", "total");
    double lat[3][CGE_N_SLOTS + 1];
    for (int k = 0; k < 3; k++) {
        static double v[CGE_N_SLOTS + 1][REPS];
        for (int r = 0; r < REPS; r++) {
            struct cge_result res;
            double t0 = bench_now_s();
            cge_engine_embed(e, &one[k], 1, NULL, &res);
            v[CGE_N_SLOTS][r] = (bench_now_s() - t0) * 1e3;
            for (int s = 0; s < CGE_N_SLOTS; s++) v[s][r] = res.slots[s].latency_us * 1e-3;
            if (res.status) fprintf(stderr, "%s: %s\n", names[k], res.errmsg);
            cge_result_deinit(&res);
        }
        printf("%-6s", names[k]);
        for (int s = 0; s <= CGE_N_SLOTS; s++) {
            lat[k][s] = pct(v[s], REPS, 0.5);
            printf(s < CGE_N_SLOTS ? " %7.2f" : " %8.2f", lat[k][s]);
        }
        printf("\n");
    }

    /* 2. overhead: the engine on a batch vs the slots alone + the fusion alone */
    struct cge_input in[NB];
    memset(in, 0, sizeof in);
    for (int i = 0; i < NB; i++) {
        in[i].text = texts[i % 8];
        in[i].text_len = strlen(texts[i % 8]);
    }
    struct cge_model *models[CGE_N_SLOTS] = {0};
    char path[1200];
    int n_models = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (!(cge_engine_slot_modalities(e, s) & CGE_MOD_TEXT)) continue;
        snprintf(path, sizeof path, s == 9 ? "%s/E10-document" : "%s/E%d", ens, s + 1);
        if (cge_model_load(path, NULL, &models[s]) == CGE_OK) n_models++;
        else fprintf(stderr, "E%d: %s (left out of the sum)\n", s + 1, cge_errmsg());
    }
    struct cge_fusion *fu = NULL;
    snprintf(path, sizeof path, "%s/fusion", ens);
    int have_fusion = cge_fusion_load(path, CGE_DTYPE_F32, &fu) == CGE_OK;
    const struct cge_fusemoe_config *fc = have_fusion ? cge_fusion_get_config(fu) : NULL;
    float *vec = malloc(sizeof(float) * NB * 4096);
    float *x = have_fusion ? calloc((size_t)(NB * fc->total_dim), sizeof(float)) : NULL;
    uint8_t *present = have_fusion ? calloc((size_t)(NB * fc->n_slots), 1) : NULL;
    float *emb = malloc(sizeof(float) * NB * 4096);
    struct cge_fusion_ctx *ctx = NULL;
    cge_fusion_ctx_new(&ctx);
    enum { R2 = 7 };
    double t_eng[R2], t_sum[R2], t_fus[R2];
    struct cge_result res[NB];
    for (int r = 0; r < R2; r++) {
        double t0 = bench_now_s();
        cge_engine_embed(e, in, NB, NULL, res);
        t_eng[r] = bench_now_s() - t0;
        for (int i = 0; i < NB; i++) cge_result_deinit(&res[i]);
        t_sum[r] = 0;
        struct cge_input ins[NB];
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            if (!models[s]) continue;
            memcpy(ins, in, sizeof ins);
            for (int i = 0; i < NB; i++) ins[i].instruction = s == 2 ? "" : NULL; /* as the engine */
            t0 = bench_now_s();
            cge_model_embed(models[s], ins, NB, vec, NULL);
            t_sum[r] += bench_now_s() - t0;
        }
        t_fus[r] = 0;
        if (have_fusion) {
            for (int i = 0; i < NB; i++)
                for (int s = 0; s < fc->n_slots; s++) present[i * fc->n_slots + s] = models[s] != NULL;
            t0 = bench_now_s();
            cge_fusion_forward(fu, ctx, NB, x, present, emb, NULL, NULL);
            t_fus[r] = bench_now_s() - t0;
        }
    }
    double me = pct(t_eng, R2, 0.5), ms = pct(t_sum, R2, 0.5), mf = pct(t_fus, R2, 0.5);
    double overhead = me / (ms + mf) - 1;
    printf("\n2. a batch of %d texts (median of %d)\n", NB, R2);
    printf("   engine (cge_engine_embed, cache off)      %8.2f ms  (%.1f items/s)\n", me * 1e3, NB / me);
    printf("   %d slots alone (cge_model_embed each)     %8.2f ms\n", n_models, ms * 1e3);
    printf("   fusion alone (cge_fusion_forward)          %8.2f ms\n", mf * 1e3);
    printf("   engine overhead over slots + fusion        %+7.1f %%\n", overhead * 100);

    /* 3. cache hits */
    cge_engine_close(e);
    p.cache = 1;
    cge_engine_open(ens, &p, &e);
    struct cge_result r1;
    cge_engine_embed(e, &one[0], 1, NULL, &r1);
    cge_result_deinit(&r1);
    enum { R3 = 2000 };
    static double hit[R3];
    int all_cached = 1;
    for (int r = 0; r < R3; r++) {
        double t0 = bench_now_s();
        cge_engine_embed(e, &one[0], 1, NULL, &r1);
        hit[r] = (bench_now_s() - t0) * 1e6;
        all_cached &= r1.cached;
        cge_result_deinit(&r1);
    }
    double h50 = pct(hit, R3, 0.5), h99 = pct(hit, R3, 0.99);
    printf("\n3. cache hit through the engine (%d calls%s): P50 %.1f us, P99 %.1f us\n", R3,
           all_cached ? "" : ", NOT ALL CACHED", h50, h99);
    printf("\nBENCH_JSON {\"bench\": \"runtime_engine\", \"ensemble\": \"%s\", \"text_total_ms\": %.3f, "
           "\"image_total_ms\": %.3f, \"audio_total_ms\": %.3f, \"batch_items_per_s\": %.2f, "
           "\"overhead_pct\": %.2f, \"cache_hit_p50_us\": %.2f, \"cache_hit_p99_us\": %.2f}\n",
           cge_engine_name(e), lat[0][CGE_N_SLOTS], lat[1][CGE_N_SLOTS], lat[2][CGE_N_SLOTS],
           NB / me, overhead * 100, h50, h99);
    cge_engine_close(e);
    for (int s = 0; s < CGE_N_SLOTS; s++) cge_model_free(models[s]);
    cge_fusion_ctx_free(ctx);
    cge_fusion_free(fu);
    free(vec);
    free(x);
    free(present);
    free(emb);
    return 0;
}
