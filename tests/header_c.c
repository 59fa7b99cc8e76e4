/* Includes only the public header: it must compile on its own, with no other includes. */
#include "cge.h"

#include <stdio.h>

int main(void) {
    int ok = cge_status_str(CGE_OK) != NULL && cge_total_dim() == 13184;
    printf("header_c: %d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
