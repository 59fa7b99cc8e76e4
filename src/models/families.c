/*
 * families.c: the table of model families cge_model_load chooses from, in order: the first
 * whose matches() accepts config.json wins. A family is one file with one struct cge_family.
 */
#include "models/model.h"

#include <stddef.h>

/* extern const struct cge_family cge__family_bert; */

const struct cge_family *const cge__families[] = {
    /* &cge__family_bert, */
    NULL,
};
