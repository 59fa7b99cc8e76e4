/*
 * cmd_inspect.c: `cge inspect PATH` lists the tensors of a checkpoint (a .safetensors file, a
 * sharded index, a pytorch_model.bin, or a model folder holding one of them): name, dtype,
 * shape, in file order, then a summary line. Everything is validated by cge_weights_open first;
 * a malformed file gives one line on stderr naming the file and the problem, and exit status 1.
 */
#include "cge.h"
#include "commands.h"
#include "io/weights.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: cge inspect PATH\n"
               "PATH: a .safetensors file, model.safetensors.index.json, pytorch_model.bin,\n"
               "or a model folder holding one of them. Prints each tensor's name, dtype and\n"
               "shape (file order; sorted by name for pytorch_model.bin), then a summary.\n");
}

int cmd_inspect(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 2) {
        usage(stderr);
        return 2;
    }
    struct cge_weights *w = NULL;
    enum cge_status st = cge_weights_open(argv[1], &w);
    if (st) {
        fprintf(stderr, "cge inspect: %s (%s)\n", cge_errmsg(), cge_status_str(st));
        return 1;
    }
    int64_t n = cge_weights_count(w);
    size_t width = 4;
    for (int64_t i = 0; i < n; i++) {
        size_t l = strlen(cge_weights_at(w, i)->name);
        if (l > width) width = l;
    }
    if (width > 80) width = 80;
    int64_t n_elem = 0;
    size_t n_bytes = 0;
    printf("%-*s  %-5s  %s\n", (int)width, "name", "dtype", "shape");
    for (int64_t i = 0; i < n; i++) {
        const struct cge_tensor_info *t = cge_weights_at(w, i);
        char shape[256];
        size_t off = 0;
        shape[off++] = '[';
        for (int d = 0; d < t->n_dim && off < sizeof shape - 24; d++)
            off += (size_t)snprintf(shape + off, sizeof shape - off, d ? ", %lld" : "%lld",
                                    (long long)t->shape[d]);
        snprintf(shape + off, sizeof shape - off, "]");
        printf("%-*s  %-5s  %s\n", (int)width, t->name, cge_dtype_str(t->dtype), shape);
        n_elem += t->n_elem;
        n_bytes += t->n_bytes;
    }
    printf("%s: %lld tensors, %lld elements, %zu bytes\n", cge_weights_path(w), (long long)n,
           (long long)n_elem, n_bytes);
    cge_weights_free(w);
    return 0;
}
