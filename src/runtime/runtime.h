/*
 * runtime.h: what the engine's files share: the ensemble specification (which folder each slot
 * loads, which fusion, which settings) read from ensemble.json or a configuration file.
 *
 * Design: the specification is plain data, parsed once (ensemble.c) and then handed to the
 * engine (engine.c), so that every way of naming an ensemble (a folder, its ensemble.json, a
 * config file pointing at one or defining the slots itself) ends in the same struct and the
 * engine has one code path.
 */
#ifndef CGE_RUNTIME_H
#define CGE_RUNTIME_H

#include "cge.h"

#include <stdint.h>

/* The ensemble conventions of the slot table (tests/fixtures/ensemble/README.md §2-3): who takes
 * the instruction, who has a query prefix, who has two encoders. 0-based slot indices. */
#define CGE__SLOT_E2  1  /* query prefix for role query */
#define CGE__SLOT_E3  2  /* INSTRUCTOR: instruction.strip() + text.strip() */
#define CGE__SLOT_E10 9  /* query / document encoders */
#define CGE__SLOT_E12 11 /* E5-Mistral instruction template */
#define CGE__BGE_QUERY_PREFIX "Represent this sentence for searching relevant passages: "

struct cge__slot_spec {
    int configured;                 /* listed (and enabled) */
    char path[CGE_CONFIG_PATH_MAX]; /* the folder; E10: the document encoder */
    char path_query[CGE_CONFIG_PATH_MAX]; /* E10 only: the query encoder ("" = same as path) */
    enum cge_dtype dtype;           /* weight storage */
};

struct cge__ensemble_spec {
    char name[256];                   /* ensemble.json "name" (or the folder's name) */
    char source[CGE_CONFIG_PATH_MAX]; /* the file it came from, for messages */
    struct cge__slot_spec slots[CGE_N_SLOTS];
    char fusion[CGE_CONFIG_PATH_MAX]; /* fusion folder */
    int has_routing;                  /* 1: temperature/top_k below override the fusion's */
    double temperature;
    int top_k;
    struct cge_config cfg;            /* cache and batch settings (defaults without a config) */
    int has_config;                   /* 1: opened through a configuration file */
    int is_demo;
};

/* Reads an ensemble folder, an ensemble.json, or a configuration file into *out. Errors name
 * the file and the key. */
enum cge_status cge__ensemble_spec_load(const char *path, struct cge__ensemble_spec *out);

/* The slot index (0-based) of "E1".."E12", or -1. */
int cge__slot_index(const char *name);

#endif /* CGE_RUNTIME_H */
