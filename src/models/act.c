/*
 * act.c: the activation functions named by model configs, shared by every family and by the
 * sentence-transformers Dense heads.
 *
 * Design: one enum and one name table for all of them (the union of what the families accept);
 * a family that supports fewer activations checks the parsed value against its own set, so the
 * parser stays free of per-family knowledge. Application goes through the tensor kernels.
 */
#include "models/model.h"

#include "core/core.h"
#include "tensor/ops.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    enum cge__act act;
} hf_names[] = {
    {"gelu", CGE_ACT_GELU},           {"gelu_new", CGE_ACT_GELU_TANH},
    {"gelu_pytorch_tanh", CGE_ACT_GELU_TANH}, {"gelu_fast", CGE_ACT_GELU_TANH},
    {"quick_gelu", CGE_ACT_QUICK_GELU}, {"relu", CGE_ACT_RELU},
    {"silu", CGE_ACT_SILU},           {"swish", CGE_ACT_SILU},
};

/* torch.nn class names (sentence-transformers Dense), matched on the last dotted component */
static const struct {
    const char *name;
    enum cge__act act;
} torch_names[] = {
    {"Identity", CGE_ACT_IDENTITY}, {"Tanh", CGE_ACT_TANH},       {"ReLU", CGE_ACT_RELU},
    {"GELU", CGE_ACT_GELU},         {"Sigmoid", CGE_ACT_SIGMOID},
};

enum cge_status cge__act_parse(const char *name, enum cge__act *out) {
    if (!name) return cge__err(CGE_ERR_UNSUPPORTED, "activation: missing name");
    for (size_t i = 0; i < sizeof hf_names / sizeof hf_names[0]; i++)
        if (!strcmp(name, hf_names[i].name)) {
            *out = hf_names[i].act;
            return CGE_OK;
        }
    const char *dot = strrchr(name, '.');
    const char *last = dot ? dot + 1 : name;
    for (size_t i = 0; i < sizeof torch_names / sizeof torch_names[0]; i++)
        if (!strcmp(last, torch_names[i].name)) {
            *out = torch_names[i].act;
            return CGE_OK;
        }
    return cge__err(CGE_ERR_UNSUPPORTED, "activation '%s' is not supported", name);
}

void cge__act_apply(enum cge__act a, float *x, int64_t n) {
    switch (a) {
    case CGE_ACT_IDENTITY:
        break;
    case CGE_ACT_TANH:
        cge_tanh_inplace(x, n);
        break;
    case CGE_ACT_RELU:
        cge_relu(x, n);
        break;
    case CGE_ACT_GELU:
        cge_gelu_erf(x, n);
        break;
    case CGE_ACT_GELU_TANH:
        cge_gelu_tanh(x, n);
        break;
    case CGE_ACT_QUICK_GELU:
        cge_quick_gelu(x, n);
        break;
    case CGE_ACT_SILU:
        cge_silu(x, n);
        break;
    case CGE_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    }
}
