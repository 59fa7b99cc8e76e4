/*
 * test_core_install.c: `cmake --install` of this build into a temporary prefix, then a user's
 * program (tests/install/example.c) compiled with `pkg-config --cflags --libs cge` against the
 * installed header and libcge.so, run on the installed demo ensemble; its vector must equal the
 * fixture's (row 0 of tests/fixtures/ensemble, made by transformers). Also: libcge.so exports
 * exactly the functions cge.h declares, and carries a SONAME.
 */
#include "ensemble_fixture.h"
#include "testhelp.h"

#include <stdlib.h>
#include <unistd.h>

static char build[900];

static int find_build(void) {
    ssize_t n = readlink("/proc/self/exe", build, sizeof build - 1);
    if (n <= 0) return 0;
    build[n] = 0;
    for (int k = 0; k < 2; k++) {
        char *s = strrchr(build, '/');
        if (!s) return 0;
        *s = 0;
    }
    return 1;
}

static char *run(const char *cmd, int *rc) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

int main(void) {
    CHECK(find_build());
    char prefix[] = "/tmp/cge-install-XXXXXX";
    CHECK(mkdtemp(prefix) != NULL);
    char cmd[4096];
    int rc = -1;
    snprintf(cmd, sizeof cmd, "cmake --install %s --prefix %s >/dev/null 2>&1", build, prefix);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    char lib[1024];
    snprintf(lib, sizeof lib, "%s/lib", prefix);
    snprintf(cmd, sizeof cmd, "test -d %s/lib/x86_64-linux-gnu && echo multiarch", prefix);
    if (strstr(run(cmd, &rc), "multiarch")) snprintf(lib, sizeof lib, "%s/lib/x86_64-linux-gnu", prefix);

    /* the SONAME, and exports == the header's functions (less libgcov's own symbols, which a
     * coverage build, -DCGE_COVERAGE=ON as make test's ASan build is, links into every .so) */
    snprintf(cmd, sizeof cmd, "objdump -p %s/libcge.so | grep SONAME", lib);
    CHECK(strstr(run(cmd, &rc), "libcge.so.0") != NULL);
    snprintf(cmd, sizeof cmd,
             "nm -D --defined-only %s/libcge.so | awk '{print $3}' | grep -vE '^(__gcov_|mangle_path$)' | sort > %s/exported.txt && "
             "grep -oE '\\bcge_[a-z0-9_]+ *\\(' %s/include/cge.h | tr -d ' (' | sort -u > %s/declared.txt && "
             "diff %s/exported.txt %s/declared.txt && wc -l < %s/exported.txt",
             lib, prefix, prefix, prefix, prefix, prefix, prefix);
    char *out = run(cmd, &rc);
    CHECK_MSG(rc == 0 && atoi(out) > 40, "exports differ from cge.h: %s", out);

    /* a user's program, built with pkg-config against the installed files */
    const char *san = "";
#ifdef CGE_TEST_SANITIZE
    san = "-fsanitize=address,undefined";
#endif
    snprintf(cmd, sizeof cmd,
             "PKG_CONFIG_PATH=%s/pkgconfig cc -std=c11 -Wall -Werror %s tests/install/example.c -o %s/example "
             "$(PKG_CONFIG_PATH=%s/pkgconfig pkg-config --cflags --libs cge) -lm 2>&1",
             lib, san, prefix, lib);
    out = run(cmd, &rc);
    CHECK_MSG(rc == 0, "compile: %s", out);
    snprintf(cmd, sizeof cmd, "LD_LIBRARY_PATH=%s %s/example %s/share/cge/demo-ensemble "
             "'The quick brown fox jumps over the lazy dog.' 2>&1", lib, prefix, prefix);
    out = run(cmd, &rc);
    CHECK_MSG(rc == 0 && strstr(out, "dim 1536 norm 1.000000"), "example: %s", out);
    /* the first value equals the fixture's (row 0 is that text as a document) */
    struct ef F;
    CHECK(ef_load(EF_DIR, &F) == 0);
    const char *first = strstr(out, "first ");
    float ref[1536];
    if (F.n && first && ef_floats(cJSON_GetObjectItemCaseSensitive(F.rows[0].expected, "embedding"), ref, 1536) == 1536)
        CHECK_NEAR(strtod(first + 6, NULL), ref[0], 1e-5);
    else
        CHECK(0);
    ef_free(&F);
    snprintf(cmd, sizeof cmd, "rm -rf %s", prefix);
    CHECK(system(cmd) == 0);
    return test_report("test_core_install");
}
