/*
 * release.c: telling the kernel that a tensor's bytes in a mapped checkpoint are no longer
 * needed, once a loader has converted them into its own storage.
 *
 * Why: a 14 GB bf16 checkpoint converted to int8 would otherwise keep every page it touched
 * resident (file-backed, reclaimable, but counted in the process's resident set and competing
 * with the converted weights for RAM). Dropping the pages of a read-only private file mapping
 * is always safe: a later access re-reads them from the file. Heap regions (copied or
 * decompressed tensors) are never touched here — MADV_DONTNEED would zero them.
 */
#include "io/io_internal.h"

#include <sys/mman.h>
#include <unistd.h>

void cge_weights_release(const struct cge_weights *w, const struct cge_tensor_info *t) {
    if (!w || !t || !t->data || !t->n_bytes) return;
    const uintptr_t a = (uintptr_t)t->data, b = a + t->n_bytes;
    for (int i = 0; i < w->n_regions; i++) {
        const struct cge__region *r = &w->regions[i];
        const uintptr_t lo = (uintptr_t)r->base, hi = lo + r->len;
        if (r->kind != CGE__REGION_MMAP || a < lo || b > hi) continue;
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t start = a & ~(page - 1), end = (b + page - 1) & ~(page - 1);
        if (start < lo) start = lo;
        if (end > hi) end = hi;
        if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
        return;
    }
}
