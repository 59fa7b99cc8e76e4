/*
 * example.c: a program a user writes against the installed cge (cge.h + libcge.so via
 * pkg-config): the EmbeddingProvider of the context-graph core on an ensemble folder, and a
 * one-line check of the engine. Built and run by tests/unit/test_core_install.c.
 * Prints "dim N norm X first F" for the fused vector of argv[2].
 */
#include <cge.h>

#include <math.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: example ENSEMBLE TEXT\n");
        return 2;
    }
    struct cge_provider *p = NULL;
    if (cge_provider_open(argv[1], &p) != CGE_OK) {
        fprintf(stderr, "example: %s\n", cge_errmsg());
        return 1;
    }
    static float v[1536];
    size_t dim = cge_provider_dimension(p);
    if (dim != 1536 || cge_provider_embed(p, argv[2], v) != CGE_OK) {
        fprintf(stderr, "example: %s\n", cge_errmsg());
        cge_provider_close(p);
        return 1;
    }
    double norm = 0;
    for (size_t i = 0; i < dim; i++) norm += (double)v[i] * v[i];
    printf("dim %zu norm %.6f first %.9g model %s\n", dim, sqrt(norm), (double)v[0],
           cge_provider_model_name(p));
    cge_provider_close(p);
    return 0;
}
