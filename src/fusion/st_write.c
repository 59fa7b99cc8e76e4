/*
 * st_write.c: a minimal safetensors writer for FuseMoE checkpoints (F32 tensors only).
 *
 * Key decision: write to "<path>.tmp" and rename over the target, so a crash mid-save never
 * leaves a truncated checkpoint where a good one was. Tensors are written sorted by name (as
 * the safetensors Python library does) with the header padded by spaces to a multiple of 8.
 * The io module only reads; this writer lives here to keep module ownership simple.
 */
#include "fusion/fusemoe.h"

#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_entry(const void *a, const void *b) {
    const struct cge__st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

enum cge_status cge__st_write_f32(const char *path, const struct cge__st_entry *e, int n,
                                  const char *format) {
    if (n < 0) return cge__err(CGE_ERR_INVALID_VALUE, "%s: negative tensor count", path);
    const struct cge__st_entry **order = cge__malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return cge__err(CGE_ERR_NOMEM, "%s: writer", path);
    for (int i = 0; i < n; i++)
        order[i] = &e[i];
    qsort(order, (size_t)n, sizeof *order, cmp_entry);

    struct cge_buf h;
    cge__buf_init(&h, (size_t)1 << 28);
    enum cge_status st = cge__buf_printf(&h, "{");
    if (!st && format) st = cge__buf_printf(&h, "\"__metadata__\":{\"format\":\"%s\"}", format);
    uint64_t off = 0;
    for (int i = 0; i < n && !st; i++) {
        const struct cge__st_entry *t = order[i];
        uint64_t cnt = 1;
        for (int d = 0; d < t->n_dim; d++)
            cnt *= (uint64_t)t->shape[d];
        st = cge__buf_printf(&h, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                             (i || format) ? "," : "", t->name);
        for (int d = 0; d < t->n_dim && !st; d++)
            st = cge__buf_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        if (!st)
            st = cge__buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                 (unsigned long long)(off + cnt * 4));
        off += cnt * 4;
    }
    if (!st) st = cge__buf_printf(&h, "}");
    while (!st && h.len % 8)
        st = cge__buf_append(&h, " ", 1);
    if (st) {
        cge__buf_free(&h);
        cge__free(order);
        return st;
    }

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        cge__buf_free(&h);
        cge__free(order);
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: path too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cge__buf_free(&h);
        cge__free(order);
        return cge__err(CGE_ERR_IO, "%s: cannot open for writing", tmp);
    }
    uint8_t len8[8];
    uint64_t hl = h.len;
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)(hl >> (8 * i));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(h.data, 1, h.len, f) != h.len;
    /* Data: little-endian F32 (this code only targets little-endian hosts, like the reader). */
    for (int i = 0; i < n && !bad; i++) {
        const struct cge__st_entry *t = order[i];
        size_t cnt = 1;
        for (int d = 0; d < t->n_dim; d++)
            cnt *= (size_t)t->shape[d];
        if (cnt && fwrite(t->data, sizeof(float), cnt, f) != cnt) bad = 1;
    }
    if (fclose(f)) bad = 1;
    cge__buf_free(&h);
    cge__free(order);
    if (bad) {
        remove(tmp);
        return cge__err(CGE_ERR_IO, "%s: write failed (disk full?)", tmp);
    }
    if (rename(tmp, path)) {
        remove(tmp);
        return cge__err(CGE_ERR_IO, "%s: cannot rename into place", path);
    }
    return CGE_OK;
}
