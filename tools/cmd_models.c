/* cmd_models.c: `cge models` prints the slot table (the source of the total dimension). */
#include "cge.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

int cmd_models(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cge models\nPrints slot, Hugging Face id, family, dimension, max tokens,\n"
               "modalities, default pooling, L2 normalization and default weight dtype.\n");
        return 0;
    }
    printf("%-4s %-46s %-8s %5s %6s %-17s %-20s %-4s %s\n", "slot", "model", "family", "dim",
           "max", "inputs", "pooling", "l2", "dtype");
    for (int i = 0; i < CGE_N_SLOTS; i++) {
        const struct cge_slot_info *s = cge_slot_get(i);
        char mods[64] = "";
        for (unsigned b = 1; b <= CGE_MOD_AUDIO; b <<= 1)
            if (s->modalities & b) {
                if (mods[0]) strcat(mods, ",");
                strcat(mods, cge_modality_str(b));
            }
        printf("%-4s %-46s %-8s %5d %6d %-17s %-20s %-4s %s\n", s->name, s->hf_id, s->family,
               s->dim, s->max_tokens, mods, cge_pooling_str(s->pooling), s->normalize ? "yes" : "no",
               cge_dtype_str(s->dtype));
    }
    printf("total dimension: %d (fused: %d, %d experts, top-%d)\n", cge_total_dim(), CGE_FUSED_DIM,
           CGE_N_EXPERTS, CGE_TOP_K);
    return 0;
}
