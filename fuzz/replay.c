/*
 * replay.c: runs every file of a fuzz target's corpus folder through LLVMFuzzerTestOneInput,
 * so the corpus found by libFuzzer is replayed by the ordinary test suite (SQLite's fuzzcheck).
 * A crash or sanitizer report fails the test. The replay is one check, not one per file (the
 * suite's total counts checks): "1 passed, 0 failed" when every file ran, a failure when the
 * corpus is missing, empty or has a file that cannot be read.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : CGE_FUZZ_CORPUS;
    DIR *d = opendir(dir);
    int n = 0, unreadable = 0;
    if (!d) {
        printf("replay %s: no corpus\n0 passed, 1 failed\n", dir);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) {
            printf("replay %s: cannot read %s\n", dir, e->d_name);
            unreadable++;
            continue;
        }
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        size_t got = len > 0 ? fread(buf, 1, (size_t)len, f) : 0;
        fclose(f);
        LLVMFuzzerTestOneInput(buf, got);
        free(buf);
        n++;
    }
    closedir(d);
    int ok = n > 0 && unreadable == 0;
    printf("replay %s: %d files; %d passed, %d failed\n", dir, n, ok, !ok);
    return ok ? 0 : 1;
}
