/*
 * bench_tensor_ops.c: the non-GEMM kernels at the sizes of a BERT-base forward on batch 32 × 128
 * tokens (norms, activations, softmax, attention), plus Mistral-style rope and GQA attention.
 * Prints the best time of several runs and ns per element (the machine is shared).
 */
#include "core/core.h"
#include "tensor/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static float *rnd(int64_t n, float scale) {
    static uint64_t seed = 0x12345678ull;
    float *p = cge__malloc_aligned((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        p[i] = ((float)(seed >> 40) / (float)(1 << 24) * 2.0f - 1.0f) * scale;
    }
    return p;
}

#define BENCH(name, n_elem, reps, stmt)                                                  \
    do {                                                                                 \
        stmt;                                                                            \
        double best_ = 1e30;                                                             \
        for (int r_ = 0; r_ < (reps); r_++) {                                            \
            int64_t t0_ = cge__now_us();                                                 \
            stmt;                                                                        \
            double s_ = (double)(cge__now_us() - t0_) * 1e-3;                            \
            best_ = s_ < best_ ? s_ : best_;                                             \
        }                                                                                \
        printf("%-42s %10.3f ms %8.3f ns/elem\n", name, best_,                           \
               best_ * 1e6 / (double)(n_elem));                                          \
    } while (0)

int main(int argc, char **argv) {
    if (argc > 1) cge_set_threads(atoi(argv[1]));
    printf("tensor ops, %d threads; best of several runs\n", cge_get_threads());
    const int64_t B = 32, L = 128, D = 768, F = 3072, H = 12, DH = 64;
    const int64_t T = B * L;
    float *x = rnd(T * F, 2.0f), *w = rnd(D, 1.0f), *b = rnd(D, 1.0f);
    float *h = rnd(T * D, 1.0f);
    BENCH("layernorm 4096×768", T * D, 10, cge_layernorm(h, T, D, w, b, 1e-12f));
    BENCH("rmsnorm 4096×768", T * D, 10, cge_rmsnorm(h, T, D, w, 1e-6f));
    BENCH("add 4096×768 (residual)", T * D, 10, cge_add(h, h, T * D));
    float *x2 = rnd(T * F, 2.0f);
    BENCH("gelu_erf 4096×3072", T * F, 5, cge_gelu_erf(x, T * F));
    BENCH("gelu_tanh 4096×3072", T * F, 5, cge_gelu_tanh(x2, T * F));
    BENCH("quick_gelu 4096×3072", T * F, 5, cge_quick_gelu(x2, T * F));
    BENCH("silu 4096×3072", T * F, 5, cge_silu(x2, T * F));
    float *sm = rnd(B * H * L * L, 5.0f);
    BENCH("softmax (32·12·128)×128", B * H * L * L, 5, cge_softmax(sm, B * H * L, L));

    float *qkv = rnd(T * 3 * D, 1.0f), *out = rnd(T * D, 1.0f);
    int64_t *len = malloc((size_t)B * sizeof(int64_t));
    for (int64_t i = 0; i < B; i++) len[i] = L;
    struct cge_attn a = {.n_batch = B, .n_seq = L, .n_head = (int)H, .n_kv_head = (int)H,
                         .d_head = (int)DH, .scale = 0.125f, .len = len};
    BENCH("attention B32 L128 H12 d64 (full)", B * H * L * L, 5,
          cge_attention(&a, qkv, 3 * D, qkv + D, 3 * D, qkv + 2 * D, 3 * D, out, D));
    for (int64_t i = 0; i < B; i++) len[i] = 16 + (i * 37) % 113; /* mean ≈ 72 */
    BENCH("attention B32 L128 H12 d64 (padded)", B * H * L * L, 5,
          cge_attention(&a, qkv, 3 * D, qkv + D, 3 * D, qkv + 2 * D, 3 * D, out, D));
    free(len);

    /* Mistral-like: 32 heads, 8 kv heads, d 128, causal, 512 tokens, batch 4 */
    const int64_t MB = 4, ML = 512, MH = 32, MKV = 8, MD = 128;
    float *mq = rnd(MB * ML * MH * MD, 1.0f), *mk = rnd(MB * ML * MKV * MD, 1.0f);
    float *mv = rnd(MB * ML * MKV * MD, 1.0f), *mo = rnd(MB * ML * MH * MD, 1.0f);
    int32_t *pos = malloc((size_t)(MB * ML) * sizeof(int32_t));
    for (int64_t i = 0; i < MB * ML; i++) pos[i] = (int32_t)(i % ML);
    BENCH("rope 2048 tok × 32 heads × 128", MB * ML * MH * MD, 5,
          cge_rope(mq, MB * ML, MH * MD, (int)MH, (int)MD, pos, 10000.0f));
    struct cge_attn ma = {.n_batch = MB, .n_seq = ML, .n_head = (int)MH, .n_kv_head = (int)MKV,
                          .d_head = (int)MD, .scale = 1.0f / sqrtf((float)MD), .causal = 1,
                          .window = 4096};
    BENCH("attention B4 L512 H32/8 d128 causal", MB * MH * ML * ML, 3,
          cge_attention(&ma, mq, MH * MD, mk, MKV * MD, mv, MKV * MD, mo, MH * MD));
    free(pos);

    /* Whisper stem: conv1d 80→384 k3 over 3000 frames, then 384→384 stride 2 */
    float *mel = rnd(80 * 3000, 1.0f), *cw1 = rnd(384 * 80 * 3, 0.1f), *cw2 = rnd(384 * 384 * 3, 0.05f);
    float *c1 = rnd(384 * 3000, 1.0f), *c2 = rnd(384 * 1500, 1.0f);
    BENCH("conv1d 80→384 k3 × 3000", 384 * 3000, 5,
          cge_conv1d(mel, 80, 3000, cw1, NULL, 384, 3, 1, 1, c1));
    BENCH("conv1d 384→384 k3 s2 × 3000", 384 * 1500, 5,
          cge_conv1d(c1, 384, 3000, cw2, NULL, 384, 3, 2, 1, c2));
    /* CLIP ViT-B/32 patch embedding on 8 images */
    float *img = rnd(3 * 224 * 224, 1.0f), *pw = rnd(768 * 3 * 32 * 32, 0.02f), *po = rnd(49 * 768, 1.0f);
    BENCH("patch_conv 3×224² p32 → 768", 49 * 768, 20, cge_patch_conv(img, 3, 224, 224, pw, 768, 32, po));

    cge__free_aligned(x), cge__free_aligned(x2), cge__free_aligned(w), cge__free_aligned(b);
    cge__free_aligned(h), cge__free_aligned(sm), cge__free_aligned(qkv), cge__free_aligned(out);
    cge__free_aligned(mq), cge__free_aligned(mk), cge__free_aligned(mv), cge__free_aligned(mo);
    cge__free_aligned(mel), cge__free_aligned(cw1), cge__free_aligned(cw2), cge__free_aligned(c1);
    cge__free_aligned(c2), cge__free_aligned(img), cge__free_aligned(pw), cge__free_aligned(po);
    return 0;
}
