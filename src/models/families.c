/*
 * families.c: the table of model families cge_model_load chooses from, in order: the first
 * whose matches() accepts config.json wins. A family is one file with one struct cge_family.
 * To add one: one extern line and one table line (keep the others as they are).
 */
#include "models/model.h"

#include <stddef.h>

extern const struct cge_family cge__family_bert;
extern const struct cge_family cge__family_roberta;
extern const struct cge_family cge__family_mpnet;
extern const struct cge_family cge__family_t5;
extern const struct cge_family cge__family_mistral;
extern const struct cge_family cge__family_whisper;
extern const struct cge_family cge__family_clip;

const struct cge_family *const cge__families[] = {
    &cge__family_bert,
    &cge__family_roberta,
    &cge__family_mpnet,
    &cge__family_t5,
    &cge__family_mistral,
    &cge__family_whisper,
    &cge__family_clip,
    NULL,
};
