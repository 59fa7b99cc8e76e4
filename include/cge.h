/*
 * cge.h: the public C API of cge, the context-graph embedding engine.
 *
 * cge turns text, source code, images and audio into embeddings: twelve pretrained models each
 * embed the input (slots E1..E12, 13184 dimensions together) and a FuseMoE layer fuses their
 * concatenation into one unit-length 1536-d vector. This header is the contract: everything
 * not declared here is internal and may change.
 *
 * Conventions (see STYLE.md):
 *  - Functions that can fail return an `enum cge_status`; the detail of the last failure on the
 *    calling thread is in cge_errmsg() (thread-local, valid until the next failing call).
 *  - Every *_free(NULL) / *_deinit of a zeroed struct is a no-op.
 *  - The library never calls exit() and never aborts on bad input.
 *
 * Thread safety: the model table and status functions are thread-safe. cge_errmsg() is
 * per-thread.
 */
#ifndef CGE_H
#define CGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CGE_VERSION_STRING "0.1.0"

/* ==== Status codes =========================================================================
 * Append only; never renumber (the server maps them to HTTP statuses, logs keep the numbers). */
enum cge_status {
    CGE_OK = 0,
    CGE_ERR_MODEL_NOT_FOUND = 1,      /* no such model, slot or folder */
    CGE_ERR_MODEL_LOAD = 2,           /* a model folder exists but cannot be loaded */
    CGE_ERR_INVALID_DIM = 3,          /* a vector or tensor has the wrong dimension or shape */
    CGE_ERR_INVALID_VALUE = 4,        /* bad argument or value: NaN, out of range, wrong type */
    CGE_ERR_INPUT_TOO_LONG = 5,       /* input exceeds max tokens / samples / pixels / bytes */
    CGE_ERR_EMPTY_INPUT = 6,          /* nothing to embed */
    CGE_ERR_BATCH = 7,                /* a batch could not be formed or run */
    CGE_ERR_FUSION = 8,               /* FuseMoE failed (e.g. no slot present) */
    CGE_ERR_CACHE = 9,                /* the embedding cache failed or is corrupt */
    CGE_ERR_GPU = 10,                 /* CUDA / device failure */
    CGE_ERR_TOKENIZE = 11,            /* tokenizer file or tokenization failure */
    CGE_ERR_IO = 12,                  /* open/read/write/mmap failed */
    CGE_ERR_SERIALIZATION = 13,       /* malformed data: weights, JSON, images, audio, pickles */
    CGE_ERR_TIMEOUT = 14,             /* a deadline passed */
    CGE_ERR_NOT_INITIALIZED = 15,     /* used before init / load */
    CGE_ERR_UNSUPPORTED_MODALITY = 16,/* the model cannot take this kind of input */
    CGE_ERR_NOMEM = 17,               /* allocation failed */
    CGE_ERR_UNSUPPORTED = 18,         /* valid but not supported here (a dtype, an op, a format) */
};

/* A constant English name for a status ("input too long"). Never NULL. */
const char *cge_status_str(int status);

/* The detail of the last failure on this thread, with context (which model, expected vs actual,
 * which file and byte offset). Thread-local; valid until the next failing call on this thread.
 * Never NULL ("" when there was none). */
const char *cge_errmsg(void);

/* ==== Logging ================================================================================
 * cge never writes to stdout/stderr by itself; messages go to this callback (default: none). */
enum cge_log_level { CGE_LOG_DEBUG = 0, CGE_LOG_INFO = 1, CGE_LOG_WARN = 2, CGE_LOG_ERROR = 3 };
typedef void (*cge_log_fn)(enum cge_log_level level, const char *msg, void *user);
void cge_log_set(cge_log_fn fn, void *user);

/* ==== The model table =========================================================================
 * Twelve slots E1..E12; the total dimension is derived from it (13184), never hard-coded. */
#define CGE_N_SLOTS    12
#define CGE_FUSED_DIM  1536
#define CGE_N_EXPERTS  8
#define CGE_TOP_K      2

enum cge_modality {
    CGE_MOD_TEXT = 1u << 0,
    CGE_MOD_CODE = 1u << 1,
    CGE_MOD_IMAGE = 1u << 2,
    CGE_MOD_AUDIO = 1u << 3,
};

enum cge_pooling {
    CGE_POOL_NONE = 0,
    CGE_POOL_CLS = 1,           /* hidden state of the first token */
    CGE_POOL_MEAN = 2,          /* mean over real (unmasked) tokens */
    CGE_POOL_MAX = 3,           /* max over real tokens */
    CGE_POOL_MEAN_SQRT_LEN = 4, /* sum over real tokens / sqrt(n) */
    CGE_POOL_LAST = 5,          /* hidden state of the last real token */
    CGE_POOL_MEAN_NO_INSTR = 6, /* INSTRUCTOR: mean leaving out the instruction's tokens */
    CGE_POOL_PROJECTION = 7,    /* the model's own projection head (CLIP) */
    CGE_POOL_AUDIO_MEAN = 8,    /* Whisper: mean over the frames that hold audio */
};

enum cge_dtype {
    CGE_DTYPE_F32 = 0,
    CGE_DTYPE_F16 = 1,
    CGE_DTYPE_BF16 = 2,
    CGE_DTYPE_I8 = 3,
    CGE_DTYPE_U8 = 4,
    CGE_DTYPE_I32 = 5,
    CGE_DTYPE_I64 = 6,
    CGE_DTYPE_F64 = 7,
};

struct cge_slot_info {
    int slot;                  /* 1..12 */
    const char *name;          /* "E1".. "E12" */
    const char *hf_id;         /* Hugging Face id, e.g. "sentence-transformers/all-MiniLM-L6-v2" */
    const char *family;        /* "bert", "t5", "clip", "whisper", "roberta", "mpnet", "mistral" */
    int dim;                   /* output dimension */
    int max_tokens;            /* max input tokens (Whisper: 30 s of audio = 3000 mel frames) */
    unsigned modalities;       /* OR of enum cge_modality */
    enum cge_pooling pooling;  /* default pooling */
    int normalize;             /* 1 when the default head L2-normalizes */
    enum cge_dtype dtype;      /* default weight storage */
};

/* The slot table. i in 0..CGE_N_SLOTS-1; NULL outside. */
const struct cge_slot_info *cge_slot_get(int i);
/* Sum of the slots' dimensions (13184). */
int cge_total_dim(void);
/* Offset of slot i (0-based) in the concatenated vector; -1 when i is out of range. */
int cge_slot_offset(int i);
const char *cge_modality_str(unsigned modality_bit);
const char *cge_pooling_str(enum cge_pooling p);
const char *cge_dtype_str(enum cge_dtype d);
/* Size in bytes of one element; 0 for an unknown dtype. */
size_t cge_dtype_size(enum cge_dtype d);

/* ==== Embedding records =======================================================================
 * Ownership: vectors inside these records are heap memory owned by the record; *_deinit frees
 * them. Records are plain structs: zero-initialize, then use. */

/* One model's embedding. */
struct cge_model_embedding {
    int slot;             /* 0-based slot index */
    int dim;              /* == cge_slot_get(slot)->dim */
    float *vector;        /* [dim], owned */
    int64_t latency_us;   /* time spent in this model */
    float *attention;     /* optional attention weights, owned; NULL when not requested */
    int64_t n_attention;  /* number of floats in attention */
};

/* The per-model embeddings of one input, and their concatenation. */
struct cge_concat_embedding {
    struct cge_model_embedding slots[CGE_N_SLOTS];
    uint32_t present;          /* bit i set: slot i holds a vector */
    float *vector;             /* [cge_total_dim()], owned; zeros where a slot is missing */
    int64_t total_latency_us;  /* sum of the models' latencies */
};

/* The fused embedding: the pipeline's final output. */
struct cge_fused_embedding {
    float vector[CGE_FUSED_DIM];          /* unit length */
    float expert_weights[CGE_N_EXPERTS];  /* the gate's full distribution (sums to 1) */
    int selected[CGE_TOP_K];              /* the two chosen experts, larger weight first */
    int64_t latency_us;                   /* whole pipeline */
    uint64_t content_hash;                /* xxhash64 of the request (the cache key) */
};

void cge_model_embedding_deinit(struct cge_model_embedding *e);

/* Sets up an empty concatenation (allocates the 13184-d vector). */
enum cge_status cge_concat_init(struct cge_concat_embedding *c);
/* Copies `vec` (dim floats) into slot `slot` (0-based). Checks the dimension against the table
 * and that every value is finite. */
enum cge_status cge_concat_set(struct cge_concat_embedding *c, int slot, const float *vec,
                               int dim, int64_t latency_us);
/* 1 when all twelve slots are present. */
int cge_concat_is_complete(const struct cge_concat_embedding *c);
void cge_concat_deinit(struct cge_concat_embedding *c);

/* Checks dimension-independent invariants: every value finite, weights in [0,1] summing to 1,
 * selected experts valid and distinct. Does not require unit length (see normalize). */
enum cge_status cge_fused_validate(const struct cge_fused_embedding *f);
/* Scales the vector to unit L2 length; CGE_ERR_INVALID_VALUE for a zero or non-finite vector. */
enum cge_status cge_fused_normalize(struct cge_fused_embedding *f);

/* ==== Configuration (src/core/config.c) =======================================================
 * The engine's settings, read from a JSON file whose sections mirror these structs:
 *   {"models": {"E1": {"enabled": true, "path": "...", "dtype": "bf16"}, ...},
 *    "batch":  {"max_batch_size": 32, "min_batch_size": 1, "max_wait_ms": 50},
 *    "fusion": {"weights": "...", "temperature": 1.0, "top_k": 2},
 *    "cache":  {"enabled": true, "policy": "lru", "max_entries": 100000,
 *               "max_bytes": 1073741824, "ttl_seconds": 0, "path": ""},
 *    "gpu":    {"enabled": false, "device": 0, "memory_limit_bytes": 17179869184}}
 * Every key is optional (cge_config_default's value); an unknown key, a wrong type or a value
 * out of range is CGE_ERR_INVALID_VALUE naming the key path ("cache.max_entries: expected
 * integer"). A config is a plain struct (no heap memory, nothing to free); these functions are
 * thread-safe. */
#define CGE_CONFIG_PATH_MAX 1024 /* bytes, including the NUL */

enum cge_cache_policy {
    CGE_CACHE_LRU = 0,     /* "lru" (default) */
    CGE_CACHE_LFU = 1,     /* "lfu" */
    CGE_CACHE_TTL_LRU = 2, /* "ttl_lru": LRU whose entries also expire after ttl_seconds */
    CGE_CACHE_ARC = 3,     /* "arc" */
};

struct cge_model_config {
    int enabled;                    /* 1 (default): the slot takes part */
    char path[CGE_CONFIG_PATH_MAX]; /* model folder; "" (default): not configured */
    enum cge_dtype dtype;           /* weight storage; default: the slot table's dtype */
};

struct cge_batch_config {
    int max_batch_size; /* 32: a batch goes when it holds this many items */
    int min_batch_size; /* 1: ... or when max_wait_ms passed with at least this many */
    int max_wait_ms;    /* 50 */
};

struct cge_fusion_config {
    char weights[CGE_CONFIG_PATH_MAX]; /* FuseMoE weights folder/file; "" = not configured */
    double temperature;                /* 1.0: gate softmax temperature, > 0 */
    int top_k;                         /* 2: experts per input, 1..CGE_N_EXPERTS */
};

struct cge_cache_config {
    int enabled;                    /* 1 */
    enum cge_cache_policy policy;   /* CGE_CACHE_LRU */
    int64_t max_entries;            /* 100000 */
    int64_t max_bytes;              /* 1 GiB */
    int64_t ttl_seconds;            /* 0: entries never expire */
    char path[CGE_CONFIG_PATH_MAX]; /* persistent cache folder; "" = memory only */
};

struct cge_gpu_config {
    int enabled;                /* 0: CPU only */
    int device;                 /* 0: CUDA device index */
    int64_t memory_limit_bytes; /* 16 GiB; 0 = no limit */
};

struct cge_config {
    struct cge_model_config models[CGE_N_SLOTS]; /* index = slot - 1 ("E1" is models[0]) */
    struct cge_batch_config batch;
    struct cge_fusion_config fusion;
    struct cge_cache_config cache;
    struct cge_gpu_config gpu;
};

/* The defaults listed above. */
void cge_config_default(struct cge_config *c);
/* Defaults, then the JSON file at `path` over them. Relative paths in the file (models.*.path,
 * fusion.weights, cache.path) are taken relative to the file's folder. On failure *out holds
 * the defaults and cge_errmsg() names the file and the key path. */
enum cge_status cge_config_load(const char *path, struct cge_config *out);
/* The same from JSON text in memory (len bytes; need not be NUL-terminated); relative paths are
 * kept as written. `label` names the source in messages. */
enum cge_status cge_config_parse(const char *json, size_t len, const char *label,
                                 struct cge_config *out);
/* Checks ranges and cross-field rules (min_batch_size <= max_batch_size, ...). */
enum cge_status cge_config_validate(const struct cge_config *c);
/* ==== end of Configuration ==================================================================== */

#ifdef __cplusplus
}
#endif
#endif /* CGE_H */
