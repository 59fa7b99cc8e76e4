/*
 * catalog.c: the table of the twelve slots (E1..E12) and the names of enums.
 *
 * The table is the single source of the ensemble's shape: the total dimension and each slot's
 * offset in the concatenated vector are derived from it, never written down elsewhere.
 */
#include "core/core.h"

#define TXT (CGE_MOD_TEXT | CGE_MOD_CODE)

static const struct cge_slot_info slots[CGE_N_SLOTS] = {
    {1, "E1", "sentence-transformers/all-MiniLM-L6-v2", "bert", 384, 256, TXT, CGE_POOL_MEAN, 1,
     CGE_DTYPE_F32},
    {2, "E2", "BAAI/bge-large-en-v1.5", "bert", 1024, 512, TXT, CGE_POOL_CLS, 1, CGE_DTYPE_F32},
    {3, "E3", "hkunlp/instructor-xl", "t5", 768, 512, TXT, CGE_POOL_MEAN_NO_INSTR, 1,
     CGE_DTYPE_BF16},
    {4, "E4", "openai/clip-vit-large-patch14", "clip", 768, 77, TXT | CGE_MOD_IMAGE,
     CGE_POOL_PROJECTION, 1, CGE_DTYPE_F32},
    /* Whisper's "max tokens" is its 30-s window: 3000 mel frames. */
    {5, "E5", "openai/whisper-large-v3", "whisper", 1280, 3000, CGE_MOD_AUDIO,
     CGE_POOL_AUDIO_MEAN, 0, CGE_DTYPE_BF16},
    {6, "E6", "microsoft/codebert-base", "roberta", 768, 512, TXT, CGE_POOL_MEAN, 0,
     CGE_DTYPE_F32},
    {7, "E7", "sentence-transformers/sentence-t5-base", "t5", 768, 512, TXT, CGE_POOL_MEAN, 1,
     CGE_DTYPE_F32},
    {8, "E8", "sentence-transformers/all-mpnet-base-v2", "mpnet", 768, 384, TXT, CGE_POOL_MEAN, 1,
     CGE_DTYPE_F32},
    {9, "E9", "facebook/contriever", "bert", 768, 512, TXT, CGE_POOL_MEAN, 0, CGE_DTYPE_F32},
    /* Two encoders (query and context), chosen by the input's role. */
    {10, "E10", "facebook/dragon-plus-{query,context}-encoder", "bert", 768, 512, TXT,
     CGE_POOL_CLS, 0, CGE_DTYPE_F32},
    {11, "E11", "thenlper/gte-large", "bert", 1024, 512, TXT, CGE_POOL_MEAN, 1, CGE_DTYPE_F32},
    /* 7.1 B parameters: int8 so that it fits 24 GB of RAM and the 16 GB GPU budget. */
    {12, "E12", "intfloat/e5-mistral-7b-instruct", "mistral", 4096, 4096, TXT, CGE_POOL_LAST, 1,
     CGE_DTYPE_I8},
};

const struct cge_slot_info *cge_slot_get(int i) {
    if (i < 0 || i >= CGE_N_SLOTS) return NULL;
    return &slots[i];
}

int cge_slot_offset(int i) {
    if (i < 0 || i >= CGE_N_SLOTS) return -1;
    int off = 0;
    for (int k = 0; k < i; k++) off += slots[k].dim;
    return off;
}

int cge_total_dim(void) {
    int total = 0;
    for (int k = 0; k < CGE_N_SLOTS; k++) total += slots[k].dim;
    return total;
}

const char *cge_modality_str(unsigned m) {
    switch (m) {
    case CGE_MOD_TEXT: return "text";
    case CGE_MOD_CODE: return "code";
    case CGE_MOD_IMAGE: return "image";
    case CGE_MOD_AUDIO: return "audio";
    }
    return "?";
}

const char *cge_pooling_str(enum cge_pooling p) {
    switch (p) {
    case CGE_POOL_NONE: return "none";
    case CGE_POOL_CLS: return "cls";
    case CGE_POOL_MEAN: return "mean";
    case CGE_POOL_MAX: return "max";
    case CGE_POOL_MEAN_SQRT_LEN: return "mean_sqrt_len";
    case CGE_POOL_LAST: return "last";
    case CGE_POOL_MEAN_NO_INSTR: return "mean_no_instruction";
    case CGE_POOL_PROJECTION: return "projection";
    case CGE_POOL_AUDIO_MEAN: return "audio_mean";
    }
    return "?";
}

const char *cge_dtype_str(enum cge_dtype d) {
    switch (d) {
    case CGE_DTYPE_F32: return "f32";
    case CGE_DTYPE_F16: return "f16";
    case CGE_DTYPE_BF16: return "bf16";
    case CGE_DTYPE_I8: return "i8";
    case CGE_DTYPE_U8: return "u8";
    case CGE_DTYPE_I32: return "i32";
    case CGE_DTYPE_I64: return "i64";
    case CGE_DTYPE_F64: return "f64";
    }
    return "?";
}

size_t cge_dtype_size(enum cge_dtype d) {
    switch (d) {
    case CGE_DTYPE_F32: return 4;
    case CGE_DTYPE_F16: return 2;
    case CGE_DTYPE_BF16: return 2;
    case CGE_DTYPE_I8: return 1;
    case CGE_DTYPE_U8: return 1;
    case CGE_DTYPE_I32: return 4;
    case CGE_DTYPE_I64: return 8;
    case CGE_DTYPE_F64: return 8;
    }
    return 0;
}
