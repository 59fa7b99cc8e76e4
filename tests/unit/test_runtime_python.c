/*
 * test_runtime_python.c: runs the Python binding's tests (tests/python/test_cge.py) against
 * this build's libcge.so and counts their results, so tests/run.sh and `make test` include them.
 *
 * Key design decision: a missing python3 or numpy is a failure, not a skip (scripts/deps.sh
 * installs python3-numpy), and so is a Python test that skips: the binding is checked on every
 * run or the run fails. The interpreter is $CGE_PYTHON, else Debian's /usr/bin/python3 (not the
 * first python3 on PATH, which may be another installation without numpy). The struct layouts
 * the compiler computes from cge.h (tests/python/cge_layout.c) go to the Python test in a
 * temporary file, which checks every ctypes struct against them. In a sanitizer build
 * libcge.so needs the ASan runtime loaded first: it is preloaded into python3 (the one this
 * program runs with, found in /proc/self/maps), with leak detection off, since the interpreter
 * itself keeps memory to the end by design (libcge's leaks are the C tests' business).
 */
#include "testhelp.h"

#include "python/cge_layout.c"

#include <unistd.h>

static char build_dir[1024];

static int find_build_dir(void) {
    char self[900];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 0;
    self[n] = 0;
    char *s = strrchr(self, '/'); /* <build>/tests/test_x */
    if (!s) return 0;
    *s = 0;
    s = strrchr(self, '/');
    if (!s) return 0;
    *s = 0;
    snprintf(build_dir, sizeof build_dir, "%s", self);
    return 1;
}

/* The path of the ASan runtime this program runs with, or "" when it has none. */
static void asan_runtime(char *out, size_t cap) {
    out[0] = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[1400];
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (!p || !strstr(p, "/libasan.so")) continue;
        p[strcspn(p, "\n")] = 0;
        snprintf(out, cap, "%s", p);
        break;
    }
    fclose(f);
}

int main(void) {
    CHECK_MSG(find_build_dir(), "cannot find the build folder from /proc/self/exe");
    char lib[1200];
    snprintf(lib, sizeof lib, "%s/libcge.so", build_dir);
    CHECK_MSG(access(lib, R_OK) == 0, "no %s (the cge_shared target)", lib);
    const char *py = getenv("CGE_PYTHON");
    if (!py || !*py) py = "/usr/bin/python3";
    CHECK_MSG(access(py, X_OK) == 0, "no %s: install python3 (scripts/deps.sh)", py);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", py);
    int has_numpy = access(py, X_OK) == 0 && system(cmd) == 0;
    CHECK_MSG(has_numpy, "%s cannot import numpy: install python3-numpy (scripts/deps.sh)", py);
    if (th_failed) return test_report("runtime_python");

    char layout[] = "/tmp/cge_layout_XXXXXX";
    int fd = mkstemp(layout);
    FILE *lf = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(lf != NULL);
    if (!lf) return test_report("runtime_python");
    cge_layout_print(lf);
    fclose(lf);

    char asan[1024], preload[1100] = "";
    asan_runtime(asan, sizeof asan);
    if (asan[0]) {
        snprintf(preload, sizeof preload,
                 "LD_PRELOAD=%s ASAN_OPTIONS=detect_leaks=0:"
                 "detect_odr_violation=0 ",
                 asan);
    }
    snprintf(cmd, sizeof cmd,
             "%sCGE_LIBRARY=%s CGE_TEST_LAYOUT=%s PYTHONPATH=python PYTHONDONTWRITEBYTECODE=1 "
             "%s tests/python/test_cge.py 2>&1",
             preload, lib, layout, py);
    FILE *p = popen(cmd, "r");
    CHECK_MSG(p != NULL, "cannot run %s", cmd);
    int py_passed = -1, py_failed = -1, py_skipped = -1;
    if (p) {
        char line[4096];
        while (fgets(line, sizeof line, p)) {
            fputs(line, stdout);
            int a, b, c;
            if (sscanf(line, "python: %d passed, %d failed, %d skipped", &a, &b, &c) == 3) {
                py_passed = a;
                py_failed = b;
                py_skipped = c;
            }
        }
        int rc = pclose(p);
        CHECK_MSG(rc == 0, "the Python tests exited with status %d", rc);
    }
    unlink(layout);
    CHECK_MSG(py_passed >= 0, "no summary line from tests/python/test_cge.py");
    CHECK_MSG(py_skipped <= 0, "%d Python tests skipped (a skip is a failure here)", py_skipped);
    if (py_passed > 0) th_passed += py_passed;
    if (py_failed > 0) th_failed += py_failed;
    return test_report("runtime_python");
}
