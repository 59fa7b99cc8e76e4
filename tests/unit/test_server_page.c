/*
 * test_server_page.c: the page of `cge serve` (GET /, src/server/page.html) in headless Chromium.
 *
 * Starts the real binary on the demo ensemble fixture (127.0.0.1, --port 0) and runs
 * tests/browser/page_test.mjs (puppeteer-core from tests/browser's package-lock.json, installed
 * with `npm ci` when node_modules is missing, driving Debian's /usr/bin/chromium): it types two
 * texts, then picks a fixture PNG, and checks every number the page shows against POST
 * /similarity of the same server; its checks add to ours. Then the screenshot it saved in the
 * build folder must be a PNG of a real size. Then the page over `cge serve --model` (one model:
 * a cosine, no bars, no experts). A missing chromium or node is a failure.
 */
#include "server_proc.h"
#include "testhelp.h"

#include <stdint.h>
#include <sys/stat.h>

#ifndef CGE_BIN
#    error "CGE_BIN (the cge binary) must be defined by the build"
#endif
#ifndef CGE_BUILD_DIR
#    error "CGE_BUILD_DIR (where the screenshot goes) must be defined by the build"
#endif

#define EF_DIR      "tests/fixtures/ensemble"
#define EF_ENSEMBLE EF_DIR "/ensemble"
#define SHOT        CGE_BUILD_DIR "/page_screenshot.png"

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The screenshot: the PNG signature, an IHDR of a real size, and more than a blank page's bytes. */
static void check_screenshot(void) {
    FILE *f = fopen(SHOT, "rb");
    CHECK_MSG(f != NULL, "no screenshot at %s", SHOT);
    if (!f) return;
    unsigned char h[24];
    size_t n = fread(h, 1, sizeof h, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    CHECK_MSG(n == sizeof h && !memcmp(h, sig, 8) && !memcmp(h + 12, "IHDR", 4),
              "%s is not a PNG", SHOT);
    if (n != sizeof h) return;
    uint32_t w = be32(h + 16), ht = be32(h + 20);
    CHECK_MSG(w >= 800 && ht >= 600, "screenshot %ux%u", w, ht);
    CHECK_MSG(size > 10000, "screenshot of %ld bytes (a blank page?)", size);
    printf("  screenshot: %s (%ux%u, %ld bytes)\n", SHOT, w, ht, size);
}

static void test_page(int port, const char *mode) {
    struct stat sb;
    CHECK_MSG(stat("/usr/bin/chromium", &sb) == 0 || getenv("CGE_CHROMIUM"),
              "no /usr/bin/chromium (Debian package chromium: scripts/deps.sh)");
    int rc = system("cd tests/browser && { [ -d node_modules/puppeteer-core ] || npm ci "
                    "--no-audit --no-fund --ignore-scripts --loglevel=error >&2; }");
    CHECK_MSG(rc == 0, "npm ci in tests/browser failed (%d)", rc);
    if (!mode[0]) remove(SHOT);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "timeout 120 node tests/browser/page_test.mjs %d " EF_DIR " " SHOT " %s 2>&1", port,
             mode);
    FILE *p = popen(cmd, "r");
    char line[8192];
    int np = -1, nf = -1;
    while (p && fgets(line, sizeof line, p)) {
        if (sscanf(line, "page_test: %d passed, %d failed", &np, &nf) == 2) continue;
        fputs(line, stdout);
    }
    int st = p ? pclose(p) : -1;
    CHECK_MSG(np > 0 && nf == 0 && st == 0, "page test: %d passed, %d failed (exit %d)", np, nf,
              st);
    if (np > 0) th_passed += np - 1; /* its checks count as ours */
    if (!mode[0]) check_screenshot();
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct srv s;
    const char *args[] = {"--ensemble", EF_ENSEMBLE, "--quiet", NULL};
    CHECK(srv_start(&s, args) == 0);
    if (s.port) {
        test_page(s.port, "");
        CHECK(srv_stop(&s, SIGTERM) == 0);
    }
    /* cge serve --model: the same page over one model. */
    const char *margs[] = {"--model", EF_ENSEMBLE "/E1", "--quiet", NULL};
    CHECK(srv_start(&s, margs) == 0);
    if (s.port) {
        test_page(s.port, "model");
        CHECK(srv_stop(&s, SIGTERM) == 0);
    }
    return test_report("server_page");
}
