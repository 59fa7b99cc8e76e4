/*
 * bench_io_weights.c: what opening a checkpoint costs. Writes a 256 MiB safetensors file (F32,
 * F16, BF16 tensors of 32 Mi elements each) to /tmp, then measures cge_weights_open (mmap +
 * header validation: should not depend on the data size), a first touch of every page, and
 * cge_weights_get_f32 per dtype (copy / F16C conversion / bf16 shift), in GB/s of fp32 output.
 */
#include "core/core.h"
#include "io/weights.h"

#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_ELEM ((int64_t)32 << 20)

static int write_file(const char *path) {
    char header[512];
    int64_t a = N_ELEM * 4, b = a + N_ELEM * 2, c = b + N_ELEM * 2;
    snprintf(header, sizeof header,
             "{\"f32\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[0,%lld]},"
             "\"f16\":{\"dtype\":\"F16\",\"shape\":[%lld],\"data_offsets\":[%lld,%lld]},"
             "\"bf16\":{\"dtype\":\"BF16\",\"shape\":[%lld],\"data_offsets\":[%lld,%lld]}}",
             (long long)N_ELEM, (long long)a, (long long)N_ELEM, (long long)a, (long long)b,
             (long long)N_ELEM, (long long)b, (long long)c);
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    memset(header + hl, ' ', padded - hl);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, padded, f);
    size_t chunk = 1 << 20;
    uint16_t *buf = malloc(chunk * 2);
    for (size_t i = 0; i < chunk; i++)
        buf[i] = (uint16_t)(0x3c00 + (i % 1000));
    for (int64_t done = 0; done < c; done += (int64_t)chunk * 2)
        fwrite(buf, 1, chunk * 2, f);
    free(buf);
    fclose(f);
    return 1;
}

int main(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/cge_bench_io_%d.safetensors", (int)getpid());
    if (!write_file(path)) {
        printf("cannot write %s\n", path);
        return 1;
    }
    printf("bench_io_weights: 256 MiB safetensors, 3 tensors x %lld elements\n", (long long)N_ELEM);
    printf("%-28s %10s %10s\n", "step", "ms", "GB/s");
    double best_open = 1e9;
    for (int r = 0; r < 5; r++) {
        struct cge_weights *w = NULL;
        double t0 = bench_now_s();
        if (cge_weights_open(path, &w) != CGE_OK) {
            printf("open failed: %s\n", cge_errmsg());
            return 1;
        }
        double t = bench_now_s() - t0;
        if (t < best_open) best_open = t;
        cge_weights_free(w);
    }
    printf("%-28s %10.3f %10s\n", "open (mmap + validate)", best_open * 1e3, "-");
    struct cge_weights *w = NULL;
    cge_weights_open(path, &w);
    double t0 = bench_now_s();
    volatile uint64_t sum = 0;
    for (int64_t i = 0; i < cge_weights_count(w); i++) {
        const struct cge_tensor_info *t = cge_weights_at(w, i);
        for (size_t b = 0; b < t->n_bytes; b += 4096)
            sum += ((const uint8_t *)t->data)[b];
    }
    (void)sum;
    double touch = bench_now_s() - t0;
    printf("%-28s %10.1f %10.2f\n", "first touch of every page", touch * 1e3,
           256.0 * 1048576 / touch / 1e9);
    static const char *const names[] = {"f32", "f16", "bf16"};
    for (int k = 0; k < 3; k++) {
        double best = 1e9;
        for (int r = 0; r < 3; r++) {
            float *f = NULL;
            t0 = bench_now_s();
            if (cge_weights_get_f32(w, names[k], 0, NULL, &f) != CGE_OK) return 1;
            double t = bench_now_s() - t0;
            if (t < best) best = t;
            cge__free(f);
        }
        char label[64];
        snprintf(label, sizeof label, "get_f32 %s", names[k]);
        printf("%-28s %10.1f %10.2f\n", label, best * 1e3, (double)N_ELEM * 4 / best / 1e9);
    }
    cge_weights_free(w);
    unlink(path);
    return 0;
}
