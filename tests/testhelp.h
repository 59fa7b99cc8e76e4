/*
 * testhelp.h: the in-house test harness (redis testhelp.h in spirit).
 *
 * Each CHECK counts one passed or failed check; SKIP counts a check that could not run (a
 * missing optional dependency), and says why. test_report() prints the summary line
 * "<suite>: N passed, N failed, N skipped" that tests/run.sh sums, and returns the exit status.
 * A skip is never silent: it is printed, counted and summed into the suite's total.
 * Helpers for fixtures: read a file, read float32 arrays, relative error.
 */
#ifndef CGE_TESTHELP_H
#define CGE_TESTHELP_H

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Atomic: threaded tests CHECK from several threads at once (and TSan runs them). */
static atomic_int th_passed, th_failed, th_skipped;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            th_passed++;                                                              \
        } else {                                                                      \
            th_failed++;                                                              \
            printf("  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
        }                                                                             \
    } while (0)

#define CHECK_MSG(cond, ...)                                                          \
    do {                                                                              \
        if (cond) {                                                                   \
            th_passed++;                                                              \
        } else {                                                                      \
            th_failed++;                                                              \
            printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                  \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
        }                                                                             \
    } while (0)

/* A check that cannot run here: counted as skipped, with its reason, never as passed. */
#define SKIP(...)                                                                     \
    do {                                                                              \
        th_skipped++;                                                                 \
        printf("  SKIP %s:%d: ", __FILE__, __LINE__);                                 \
        printf(__VA_ARGS__);                                                          \
        printf("\n");                                                                 \
    } while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol)                                                         \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)",      \
              (double)(a), (double)(b), (double)(tol))

#define RUN(fn)                                                                       \
    do {                                                                              \
        int f0_ = th_failed;                                                          \
        fn();                                                                         \
        if (th_failed != f0_) printf("  in %s\n", #fn);                               \
    } while (0)

static inline int test_report(const char *suite) {
    int p = th_passed, f = th_failed, s = th_skipped;
    printf("%s: %d passed, %d failed, %d skipped\n", suite, p, f, s);
    return f ? 1 : 0;
}

/* Reads a whole file; returns malloc'd bytes (NUL-terminated) or NULL. */
static inline char *th_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

/* Reads a raw little-endian float32 file; *n = number of floats. */
static inline float *th_read_f32(const char *path, size_t *n) {
    size_t len = 0;
    float *p = (float *)th_read_file(path, &len);
    if (n) *n = len / sizeof(float);
    return p;
}

/* ||a - b|| / ||b|| in double. */
static inline double th_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double th_cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-300);
}

/* Deterministic uniform floats in [-1, 1) (xorshift), for random-input tests. */
static inline float th_randf(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* The cge command of the build this test belongs to (<build>/cge, found from
 * <build>/tests/test_x) into buf; 1 when it exists and runs. */
#include <unistd.h>
static inline int th_find_cge(char *buf, size_t cap) {
    char self[900];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 0;
    self[n] = 0;
    for (int k = 0; k < 2; k++) {
        char *s = strrchr(self, '/');
        if (!s) return 0;
        *s = 0;
    }
    snprintf(buf, cap, "%s/cge", self);
    return access(buf, X_OK) == 0;
}

#endif /* CGE_TESTHELP_H */
