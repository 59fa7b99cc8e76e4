/*
 * cge.c: the command-line entry point. Dispatches `cge <command> ...` to tools/cmd_*.c.
 * Only this folder may exit(); the library never does.
 */
#include "cge.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"models", cmd_models, "print the table of the twelve models (slots E1..E12)"},
    {"cache", cmd_cache, "embedding cache files: stats, verify, bench"},
    {"tokenize", cmd_tokenize, "tokenize JSON strings from stdin (one per line) into ids"},
    {"inspect", cmd_inspect, "list the tensors of a checkpoint file or model folder"},
    {"convert", cmd_convert, "write a model's converted-weights file (int8/bf16, packed) ahead of time"},
    {"embed", cmd_embed, "embed JSON lines from stdin: an ensemble (fused vector), or one --model DIR"},
    {"fusion", cmd_fusion, "FuseMoE: init, run and train the fusion weights"},
    {"pull", cmd_pull, "download models from the Hugging Face Hub into the HF cache"},
    {"ensemble", cmd_ensemble, "ensemble folders: init (over the models in the HF cache)"},
    {"serve", cmd_serve, "HTTP server: OpenAI-compatible and native embedding routes"},
    {"mcp", cmd_mcp, "serve the engine as MCP tools over stdio (for AI agents)"},
    {"worker", cmd_worker, "embed jobs from a Redis stream (cge submit's), with a consumer group"},
    {"submit", cmd_submit, "put JSON lines on a Redis stream for workers; print their results in order"},
    {"info", cmd_info, "version, backends compiled in, devices found (CPU threads and ISA, CUDA)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: cge <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-10s %s\n", "version", "print the version");
    fprintf(f, "\n`cge <command> --help` describes a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("cge %s\n", CGE_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cge: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
