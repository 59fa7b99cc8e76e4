// The public header compiled as C++.
#include "cge.h"
int cge_header_cxx_probe() {
    return static_cast<int>(CGE_OK);
}
