/*
 * test_models_wcache.c: the converted-weights file (models/wcache.c) through the Mistral family,
 * on a copy of the mistral fixture in a temporary folder: a mapped file gives the embedding of
 * converting in memory bit for bit (every dtype); a truncated, corrupted or stale file is refused
 * and rewritten, never used; two processes starting at once leave one valid file; and
 * `cge convert --out` writes a file a later load maps.
 */
#include "core/core.h"
#include "io/weights.h"
#include "models/model.h"
#include "tensor/ops.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern const struct cge_family cge__family_mistral;
void cge__mistral_set_i8(int mode);

#define FIX "tests/fixtures/models/mistral"
#define N_OUT (2 * 11 * 64)

static const int32_t ids[2 * 11] = {1, 907, 403, 98, 307, 808, 677, 399, 160, 338, 2,
                                    1, 793, 411, 96, 258, 369, 15, 66, 609, 964, 2};

struct seen {
    int saved, mapped, refused;
    char why[512];
};

static void on_log(enum cge_log_level level, const char *msg, void *user) {
    struct seen *s = user;
    (void)level;
    if (strstr(msg, "saved to")) s->saved++;
    if (strstr(msg, "mapped from")) s->mapped++;
    if (strstr(msg, "refused")) {
        s->refused++;
        snprintf(s->why, sizeof s->why, "%s", msg);
    }
}

/* Loads dir in dtype, runs the fixture's ids; what the load did with the file lands in *s. */
static enum cge_status embed(const char *dir, enum cge_dtype dtype, float *out, struct seen *s) {
    struct cge_weights *w = NULL;
    cJSON *config = NULL;
    void *impl = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    memset(s, 0, sizeof *s);
    cge_log_set(on_log, s);
    enum cge_status st = cge_weights_open(dir, &w);
    if (!st) st = cge__json_read_file(path, &config);
    struct cge_model_params p = {.dtype = dtype};
    struct cge_family_load lc = {.dir = dir, .config = config, .w = w, .p = &p};
    if (!st) st = cge__family_mistral.load(&lc, &impl);
    cge_log_set(NULL, NULL);
    int64_t len[2] = {11, 11};
    if (!st) st = cge__family_mistral.forward_text(impl, ids, len, 2, 11, out);
    if (impl) cge__family_mistral.free(impl);
    cge_weights_free(w);
    cJSON_Delete(config);
    return st;
}

static int copy_file(const char *from, const char *to) {
    size_t n;
    char *d = th_read_file(from, &n);
    if (!d) return -1;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(d, 1, n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    free(d);
    return ok ? 0 : -1;
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void flip_byte(const char *p, long off) {
    int fd = open(p, O_RDWR);
    unsigned char c = 0;
    if (fd >= 0 && pread(fd, &c, 1, off) == 1) {
        c ^= 0x5a;
        CHECK(pwrite(fd, &c, 1, off) == 1);
    }
    if (fd >= 0) close(fd);
}

static int tmp_leftovers(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

int main(void) {
    char dir[] = "/tmp/cge-test-wcache-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p_cfg[600], p_st[600], p_file[600], p_out[600];
    snprintf(p_cfg, sizeof p_cfg, "%s/config.json", dir);
    snprintf(p_st, sizeof p_st, "%s/model.safetensors", dir);
    snprintf(p_file, sizeof p_file, "%s/cge-mistral-i8.cgew", dir);
    snprintf(p_out, sizeof p_out, "%s/out.cgew", dir);
    CHECK(copy_file(FIX "/config.json", p_cfg) == 0);
    CHECK(copy_file(FIX "/model.safetensors", p_st) == 0);
    setenv("CGE_CONVERTED", "1", 1);
    unsetenv("CGE_CONVERTED_FILE");
    unsetenv("CGE_CONVERTED_DIR");

    /* Round trip, every dtype: written, then mapped; both equal converting in memory. */
    static float ref[N_OUT], a[N_OUT], b[N_OUT];
    /* int8 twice: W8A8 (the scheme the encoders use), then the default W8A16 */
    const enum cge_dtype dts[4] = {CGE_DTYPE_F32, CGE_DTYPE_BF16, CGE_DTYPE_I8, CGE_DTYPE_I8};
    struct seen s;
    for (int k = 0; k < 4; k++) {
        cge__mistral_set_i8(k == 2 ? 1 : 0);
        setenv("CGE_CONVERTED", "0", 1);
        CHECK(embed(dir, dts[k], ref, &s) == CGE_OK && !s.saved && !s.mapped);
        setenv("CGE_CONVERTED", "1", 1);
        enum cge_status st = embed(dir, dts[k], a, &s);
        CHECK_MSG(st == CGE_OK && s.saved == 1 && !s.mapped, "%s: first load: %s",
                  cge_dtype_str(dts[k]), cge_errmsg());
        st = embed(dir, dts[k], b, &s);
        CHECK_MSG(st == CGE_OK && s.mapped == 1 && !s.saved && !s.refused, "%s: second load",
                  cge_dtype_str(dts[k]));
        CHECK_MSG(!memcmp(ref, a, sizeof a) && !memcmp(ref, b, sizeof b),
                  "%s: mapped layers differ from converting in memory", cge_dtype_str(dts[k]));
    }
    cge__mistral_set_i8(0);
    long size = file_size(p_file);
    CHECK(size > 4096);

    /* Damage, then a load: refused (with the reason), rewritten, same result, valid again. */
    struct { const char *what; int kind; } dmg[] = {
        {"truncated", 0}, {"corrupted entry", 1}, {"corrupted header", 2}, {"stale", 3},
        {"grown", 4},
    };
    for (size_t k = 0; k < sizeof dmg / sizeof dmg[0]; k++) {
        if (dmg[k].kind == 0) CHECK(truncate(p_file, size - 1000) == 0);
        if (dmg[k].kind == 1) flip_byte(p_file, size - 5000);
        if (dmg[k].kind == 2) flip_byte(p_file, 100);
        if (dmg[k].kind == 3) { /* the checkpoint changed after the file was written */
            struct timespec ts[2] = {{0, UTIME_OMIT}, {1700000000, 0}};
            CHECK(utimensat(AT_FDCWD, p_st, ts, 0) == 0);
        }
        if (dmg[k].kind == 4) {
            FILE *f = fopen(p_file, "ab");
            CHECK(f && fputs("x", f) >= 0 && fclose(f) == 0);
        }
        enum cge_status st = embed(dir, CGE_DTYPE_I8, b, &s);
        CHECK_MSG(st == CGE_OK && s.refused == 1 && s.saved == 1 && !s.mapped,
                  "%s: refused %d saved %d mapped %d", dmg[k].what, s.refused, s.saved, s.mapped);
        printf("  %-16s -> %s\n", dmg[k].what, s.why);
        CHECK_MSG(!memcmp(a, b, sizeof a), "%s: result changed", dmg[k].what);
        CHECK(embed(dir, CGE_DTYPE_I8, b, &s) == CGE_OK && s.mapped == 1 && !s.refused);
        CHECK(file_size(p_file) == size);
    }

    /* Two processes starting at once with no file (two `cge convert`: a fork of this process
     * would inherit OpenMP's threads half-way): both succeed, one valid file remains. */
    char cge[1024], cmd[4096];
    CHECK(th_find_cge(cge, sizeof cge));
    CHECK(unlink(p_file) == 0);
    snprintf(cmd, sizeof cmd, "sh -c '%s convert %s >/dev/null & a=$!; %s convert %s >/dev/null "
             "& b=$!; wait $a && wait $b'", cge, dir, cge, dir);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    CHECK(embed(dir, CGE_DTYPE_I8, b, &s) == CGE_OK && s.mapped == 1 && !s.refused);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(tmp_leftovers(dir) == 0);

    /* cge convert --out FILE: a load told of FILE maps it. */
    snprintf(cmd, sizeof cmd, "%s convert %s --dtype int8 --out %s >/dev/null", cge, dir, p_out);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s convert %s --dtype nope 2>/dev/null", cge, dir);
    CHECK(system(cmd) != 0);
    setenv("CGE_CONVERTED_FILE", p_out, 1);
    CHECK(embed(dir, CGE_DTYPE_I8, b, &s) == CGE_OK && s.mapped == 1 && !s.saved);
    CHECK(!memcmp(a, b, sizeof a));
    unsetenv("CGE_CONVERTED_FILE");

    unlink(p_out);
    unlink(p_file);
    snprintf(cmd, sizeof cmd, "%s/cge-mistral-f32.cgew", dir);
    unlink(cmd);
    snprintf(cmd, sizeof cmd, "%s/cge-mistral-bf16.cgew", dir);
    unlink(cmd);
    unlink(p_cfg);
    unlink(p_st);
    CHECK(rmdir(dir) == 0);
    return test_report("models_wcache");
}
