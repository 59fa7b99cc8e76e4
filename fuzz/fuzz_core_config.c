/*
 * fuzz_core_config.c: arbitrary bytes as a configuration file. Parsing must never crash; an
 * accepted config must pass cge_config_validate and hold NUL-terminated strings.
 */
#include "core/core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cge_config c;
    if (cge_config_parse((const char *)data, size, "fuzz.json", &c) != CGE_OK) return 0;
    if (cge_config_validate(&c) != CGE_OK) abort();
    for (int i = 0; i < CGE_N_SLOTS; i++)
        if (strlen(c.models[i].path) >= CGE_CONFIG_PATH_MAX) abort();
    return 0;
}
