/*
 * fuzz_cache_file.c: arbitrary bytes opened as a cache file. The structure check, `verify`,
 * `stats` and a full open (warm start, gets, a put, close) must never crash, hang or read out of
 * bounds, whatever the file holds; a corrupt file is moved aside and the cache opens empty.
 */
#include "cache/cache.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char path[128];

static void clean(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

static void remove_dir(void) {
    clean();
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/cge-fuzz-cache-XXXXXX");
        if (!mkdtemp(dir)) return 0;
        snprintf(path, sizeof path, "%s/c.mdb", dir);
        atexit(remove_dir);
    }
    clean();
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size) fwrite(data, 1, size, f);
    fclose(f);

    struct cge_cache_file_info info;
    cge_cache_file_info(path, &info);
    struct cge_cache_verify_report rep;
    cge_cache_file_verify(path, &rep);

    struct cge_cache_params p = cge_cache_default_params();
    p.path = path;
    p.ensemble_version = CGE_CACHE_SYNTHETIC_VERSION;
    p.disk_max_bytes = 4u << 20;
    p.max_entries = 64;
    p.durable = 0;
    p.n_shards = 2;
    struct cge_cache *c = NULL;
    if (cge_cache_open(&p, &c) == CGE_OK) {
        struct cge_fused_embedding out, want;
        for (uint64_t i = 0; i < 8; i++) {
            struct cge_cache_key k;
            cge_cache_synthetic_key(i, &k);
            if (cge_cache_get(c, &k, &out, NULL, NULL)) {
                cge_cache_synthetic(&k, &want);
                /* The corpus files hold synthetic entries: a hit must be the right vector. */
                if (memcmp(out.vector, want.vector, sizeof out.vector) != 0) abort();
            }
        }
        struct cge_cache_key k;
        cge_cache_synthetic_key(1000, &k);
        cge_cache_synthetic(&k, &want);
        cge_cache_put(c, &k, &want, NULL, 0);
        cge_cache_close(c);
    }
    clean();
    return 0;
}
