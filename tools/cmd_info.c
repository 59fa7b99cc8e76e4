/*
 * cmd_info.c: `cge info` prints what this build and this machine offer: the version, the
 * backends compiled in, the devices found (cge_backend_describe: the CPU's threads and
 * instruction-set extensions, the CUDA devices or why there are none).
 *
 * Design: read-only and quick (no model is loaded), so it is the first thing to run when a
 * `--backend cuda` falls back to the CPU. tool_log_warnings, shared by the commands that take
 * --backend, is here too: the library logs the fallback's reason, the command shows it.
 */
#include "cge.h"
#include "commands.h"
#include "tensor/backend.h"
#include "tensor/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: cge info [--threads N]\n"
               "Prints the version, the backends compiled in, and the devices found: the CPU\n"
               "(compute threads, instruction-set extensions) and the CUDA devices, or why\n"
               "there are none. --threads N shows the thread count a run with it would use.\n");
}

static void log_stderr(enum cge_log_level level, const char *msg, void *user) {
    if (level < CGE_LOG_WARN) return;
    fprintf(stderr, "%s: %s: %s\n", (const char *)user, level >= CGE_LOG_ERROR ? "error" : "warning",
            msg);
}

void tool_log_warnings(const char *cmd) {
    cge_log_set(log_stderr, (void *)cmd);
}

int cmd_info(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            char *end = NULL;
            long x = strtol(argv[++i], &end, 10);
            if (!*argv[i] || *end || x < 1 || x > 1 << 16) {
                fprintf(stderr, "cge info: --threads %s: expected a positive integer\n", argv[i]);
                return 2;
            }
            cge_set_threads((int)x);
        } else {
            fprintf(stderr, "cge info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char dev[2048];
    cge_backend_describe(dev, sizeof dev);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("cge %s\n", CGE_VERSION_STRING);
    printf("backends: %s\n", cge_backend_compiled());
    printf("threads: %d (cores online: %ld)\n", cge_get_threads(), cores);
    fputs(dev, stdout);
    return 0;
}
