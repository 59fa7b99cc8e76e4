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

/* libcge.so is built with -fvisibility=hidden: what this header declares is exported, nothing
 * else (the library's internal cge__ symbols cannot collide with a host program's). */
#if defined(__GNUC__) && !defined(CGE_NO_VISIBILITY)
#    pragma GCC visibility push(default)
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
    CGE_ERR_QUEUE_FULL = 19,          /* the engine's queue is full: try again later (HTTP 429) */
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

/* ---- addition (issue 16, Redis): the shared cache tier behind the in-process cache ----------
 *    "redis":  {"url": "redis://host:6379/0", "ttl_seconds": 0, "timeout_ms": 200} */
struct cge_redis_config {
    char url[CGE_CONFIG_PATH_MAX]; /* redis://[user:pass@]host[:port][/db]; "" (default): none */
    int64_t ttl_seconds;           /* 0 (default): entries never expire */
    int64_t timeout_ms;            /* 200: per Redis call; past it the call is a miss */
};
/* ---- end of addition ---------------------------------------------------------------------- */

struct cge_config {
    char ensemble[CGE_CONFIG_PATH_MAX];          /* "ensemble": an ensemble folder or file ("") */
    struct cge_model_config models[CGE_N_SLOTS]; /* index = slot - 1 ("E1" is models[0]) */
    struct cge_batch_config batch;
    struct cge_fusion_config fusion;
    struct cge_cache_config cache;
    struct cge_gpu_config gpu;
    struct cge_redis_config redis;               /* addition (issue 16): "redis" */
};

/* The defaults listed above. */
struct cge_config cge_config_default(void);
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


/* ==== Inputs ====================================================================================
 * One input to a model or to the engine. Exactly one content is set: text (text or source code),
 * ids (pre-tokenized; cge_model_embed only), an image or an audio clip, each given as a path or
 * as the encoded file's bytes in memory (PNG/JPEG/WebP; WAV/FLAC/OGG). Strings are only read,
 * and only during the call. Zero-initialize, then set what applies. */
enum cge_role {
    CGE_ROLE_DOCUMENT = 0, /* default: a passage to be found */
    CGE_ROLE_QUERY = 1,    /* a search query: E2 adds its query prefix, E10 uses its query encoder */
};

struct cge_input {
    const char *text;        /* UTF-8 text or code, text_len bytes (need not be NUL-terminated) */
    size_t text_len;
    int is_code;             /* 1: text is source code (embedded exactly as text; in the cache key) */
    const char *language;    /* code only, informative (ignored by the models); may be NULL */
    enum cge_role role;      /* engine: picks E2's prefix and E10's encoder; models ignore it */
    /* Optional, NUL-terminated. A model folder applies it by its family: INSTRUCTOR (T5) reads
     * instruction.strip() + text.strip() and leaves the instruction's tokens out of the mean;
     * E5-Mistral reads "Instruct: {instruction}\nQuery: {text}"; other folders read it as a
     * prefix. The engine gives it to E3 and E12 only (the ensemble's convention). */
    const char *instruction;
    const int32_t *ids;      /* pre-tokenized ids, used as is (cge_model_embed only) */
    int64_t n_ids;
    const char *image_path;  /* an image file ... */
    const void *image_data;  /* ... or its bytes (image_len) */
    size_t image_len;
    const char *audio_path;  /* an audio file ... */
    const void *audio_data;  /* ... or its bytes (audio_len) */
    size_t audio_len;
};

/* The modality bit of an input (CGE_MOD_TEXT, _CODE, _IMAGE, _AUDIO); 0 when not exactly one
 * content is set (ids count as text). */
unsigned cge_input_modality(const struct cge_input *in);

/* ==== Threads ===================================================================================
 * The compute kernels run on a team of n threads (0 = one per core). Process-wide. */
void cge_set_threads(int n);
int cge_get_threads(void);

/* ==== One model folder (src/models/model.c) =====================================================
 * A Hugging Face model folder: config.json, weights (model.safetensors, sharded, or
 * pytorch_model.bin), tokenizer files, and the sentence-transformers modules when the model has
 * them (modules.json, 1_Pooling, 2_Dense, Normalize: they decide pooling and heads; without them
 * the family's default: masked mean, not normalized). A model is read-only after load and may be
 * shared by threads; cge_model_embed may be called from several threads at once. */
struct cge_model;

struct cge_model_params {
    enum cge_dtype dtype;     /* weight storage: F32 (default), BF16 or I8; compute is fp32 */
    enum cge_pooling pooling; /* CGE_POOL_NONE = as the folder says; else an override */
    int no_truncate;          /* 1: an input longer than the max length is an error, not cut */
    int64_t max_seq_len;      /* 0 = from sentence_bert_config / config / tokenizer_config */
    const char *backend; /* NULL or "cpu" (default), "cuda", "cuda:N", "auto" */
};
struct cge_model_params cge_model_default_params(void);

/* Loads a folder (or an HF cache folder models--org--name, through refs/main). On failure *out
 * is NULL and cge_errmsg() names the folder and the cause. p NULL = defaults. */
enum cge_status cge_model_load(const char *dir, const struct cge_model_params *p,
                               struct cge_model **out);
void cge_model_free(struct cge_model *m);
int cge_model_dim(const struct cge_model *m);             /* output embedding dimension */
unsigned cge_model_modalities(const struct cge_model *m); /* OR of enum cge_modality */
const char *cge_model_family(const struct cge_model *m);  /* "bert", "t5", "clip", ... */
int64_t cge_model_max_seq_len(const struct cge_model *m); /* max length in effect (0: none) */

/* Per-input outcome of cge_model_embed. */
struct cge_embed_info {
    enum cge_status status; /* per input: a failed input does not fail the others */
    int truncated;          /* 1 if the input was cut (text: to max_seq_len; audio: to 30 s) */
    int64_t n_tokens;       /* tokens (text), frames that hold audio, or 1 (image) */
    char errmsg[256];       /* the failure's message ("" when status is CGE_OK) */
};

/* Embeds n inputs into out (n × dim floats, row-major). Texts are batched internally; each row
 * equals that input embedded alone. Returns CGE_OK when the call itself worked; per-input
 * failures are in info[i].status (their rows are zero). info may be NULL: then any failure fails
 * the call. */
enum cge_status cge_model_embed(const struct cge_model *m, const struct cge_input *in, int64_t n,
                                float *out, struct cge_embed_info *info);

/* Tokenizes text as the model would read it (special tokens, truncation as in embed) into ids
 * (capacity cap). Returns the number of ids (> cap: call again with a larger buffer), or -1 on
 * error (cge_errmsg()). */
int64_t cge_model_tokenize(const struct cge_model *m, const char *text, size_t len, int32_t *ids,
                           int64_t cap);

/* ==== The engine (src/runtime/) ==================================================================
 * An ensemble: up to twelve slots, each a model folder (E10: a query and a document folder picked
 * by the input's role), and a FuseMoE fusion folder. An input goes to every slot that takes its
 * modality (text and code: E1-E4 text tower, E6-E12; images: E4; audio: E5); the slot vectors
 * (the "multi-array") are L2-normalized, concatenated with a presence mask and fused into one
 * unit-length vector. A slot that fails or passes its deadline is missing for that input and the
 * result says why; only when no slot succeeds is the input an error.
 *
 * Opening takes an ensemble folder (with ensemble.json), an ensemble.json file, or a cge
 * configuration file (struct cge_config: "ensemble" points at one, "models"/"fusion" override or
 * define the slots). Thread safety: any number of threads may call cge_engine_embed at once on
 * one engine; cge_engine_close must be the last call. */
struct cge_engine;

struct cge_engine_params {
    int n_threads;         /* compute threads (0 = one per core) */
    int cache;             /* -1 (default): as the config says (on without a config); 0 off; 1 on */
    int no_truncate;       /* 1: inputs longer than a slot's max length fail in that slot */
    int64_t slot_timeout_ms; /* per-slot deadline for one call (0 = none) */
    int preload;           /* 1 (default): load every slot at open; 0: on first use */
    /* Dynamic batching: inputs of concurrent calls share per-slot queues; a slot's batch goes
     * at max_batch_size inputs, at max_batch_tokens (padded), or when its oldest input has
     * waited max_wait_ms with min_batch_size waiting (the config's batch section). */
    int batching;             /* 1 (default); 0: each call runs its own batches, no queues */
    int max_batch_size;       /* 0: the config's batch.max_batch_size (32) */
    int64_t max_batch_tokens; /* 0: 16384 */
    int max_wait_ms;          /* -1 (default): the config's batch.max_wait_ms (50) */
    int64_t max_queue;        /* inputs waiting per slot before CGE_ERR_QUEUE_FULL (0: 4096) */
    int n_workers;            /* batch workers; each gets n_threads / n_workers cores (0: 1) */
    /* Registry. */
    int64_t memory_budget_bytes; /* 0: none; else idle models are unloaded (least recently
                                    used first) to load another, and a model that cannot fit
                                    is an error */
    int max_concurrent_loads;    /* 0: 2 */
    int64_t swap_timeout_ms;     /* a swap taking longer is refused (0: 60000) */
    /* ---- addition (issue 16, Redis) ---- */
    const char *redis_url; /* NULL: none (or the config's "redis" section): a second cache level
                              shared by processes, behind the in-process cache (which it needs) */
    /* ---- addition (issue 19, backends) ---- */
    const char *backend; /* NULL or "cpu" (default), "cuda", "cuda:N", "auto": where every slot's
                            model runs (copied at open; an unusable device falls back to the CPU) */
};
struct cge_engine_params cge_engine_default_params(void);

/* Opens an ensemble or configuration (see above). NULL: the configured ensemble (CGE_CONFIG or
 * ~/.config/cge/config.json when one exists), else the demo ensemble. On failure *out is NULL and
 * cge_errmsg() names the file and the cause. p NULL = defaults. */
enum cge_status cge_engine_open(const char *ensemble_or_config, const struct cge_engine_params *p,
                                struct cge_engine **out);
/* Waits for running calls to finish, then frees everything. NULL is a no-op. */
void cge_engine_close(struct cge_engine *e);

/* The demo ensemble's folder (tiny random weights, the real tokenizers: well-formed vectors that
 * mean nothing), or NULL when it cannot be found (CGE_DEMO overrides). */
const char *cge_demo_ensemble_path(void);
/* 1 when the engine runs the demo ensemble. */
int cge_engine_is_demo(const struct cge_engine *e);

/* What a slot did for one input. */
enum cge_slot_state {
    CGE_SLOT_ABSENT = 0,  /* not in the ensemble (or disabled): missing in the fusion */
    CGE_SLOT_SKIPPED = 1, /* takes no input of this modality (or not asked for): missing */
    CGE_SLOT_OK = 2,      /* vector present */
    CGE_SLOT_FAILED = 3,  /* failed or passed its deadline: missing; status and errmsg say why */
};

struct cge_slot_result {
    enum cge_slot_state state;
    enum cge_status status; /* CGE_OK unless FAILED */
    int dim;                /* the slot's dimension (0 when absent) */
    float *vector;          /* [dim] when OK: the model's output, before the fusion's per-slot
                               normalization; NULL otherwise. Owned by the result. */
    int64_t latency_us;     /* this slot's share of the call (its batch time / batch items) */
    int64_t n_tokens;       /* tokens (frames for audio) the model read */
    int truncated;          /* 1 when the input was cut to the slot's max length */
    int cached;             /* 1 when the vector came from the cache */
    uint64_t version;       /* the slot's model version (a hot swap increments it) */
    char errmsg[200];       /* why it failed ("" otherwise) */
};

struct cge_result {
    enum cge_status status; /* CGE_OK; else the input failed as a whole (bad input, or no slot
                               succeeded) and errmsg says why */
    char errmsg[256];
    int dim;                /* fused dimension (1536); 0 when the fusion did not run */
    float *embedding;       /* [dim] unit length; owned by the result; NULL on failure */
    int n_experts;          /* the gate's experts (8) */
    float *expert_weights;  /* [n_experts] the full gate distribution (sums to 1); owned */
    int top_k;              /* experts chosen (2) */
    int *selected;          /* [top_k] chosen experts, larger weight first; owned */
    uint32_t present;       /* bit s: slot s (0-based) took part in the fusion */
    struct cge_slot_result slots[CGE_N_SLOTS];
    int cached;             /* 1: the whole result came from the cache */
    int64_t latency_us;     /* whole call, divided by the items of the call */
    int64_t n_tokens;       /* the largest token count over the slots (usage figures) */
};
/* Frees what a result owns and zeroes it. A zeroed result is a no-op. */
void cge_result_deinit(struct cge_result *r);

/* Per-call options; zero = defaults. */
struct cge_embed_options {
    uint32_t slots;     /* bit s: run slot s (0-based); 0 = every slot */
    int no_fusion;      /* 1: slot vectors only (embedding stays NULL; an input with no slot
                           vector still fails) */
    int no_cache;       /* 1: neither read nor write the cache */
    int64_t timeout_ms; /* deadline for the call (0: the engine's slot_timeout_ms) */
};

/* Embeds n inputs into out[0..n) (zeroed by the call; cge_result_deinit each). Inputs are
 * batched per slot. Returns CGE_OK when the call itself worked (per-input failures are in
 * out[i].status); CGE_ERR_INVALID_VALUE for bad arguments, CGE_ERR_NOMEM. opt may be NULL. */
enum cge_status cge_engine_embed(struct cge_engine *e, const struct cge_input *in, size_t n,
                                 const struct cge_embed_options *opt, struct cge_result *out);

/* The ensemble. */
const char *cge_engine_name(const struct cge_engine *e);   /* ensemble.json "name" */
int cge_engine_dim(const struct cge_engine *e);            /* fused dimension */
/* Slot s (0-based): dimension in this ensemble (0 = absent), max length, modalities. */
int cge_engine_slot_dim(const struct cge_engine *e, int slot);
int64_t cge_engine_slot_max_tokens(const struct cge_engine *e, int slot);
unsigned cge_engine_slot_modalities(const struct cge_engine *e, int slot);
/* Tokenizes text as slot s reads it (role picks E2's prefix and E10's encoder). Returns the
 * number of ids (> cap: call again), or -1 on error. */
int64_t cge_engine_tokenize(struct cge_engine *e, int slot, const char *text, size_t len,
                            enum cge_role role, int32_t *ids, int64_t cap);

/* Health: CGE_OK when the engine can serve (the fusion and at least one slot are usable). */
enum cge_status cge_engine_health(struct cge_engine *e);

enum cge_slot_load_state {
    CGE_LOAD_ABSENT = 0,  /* not configured */
    CGE_LOAD_UNLOADED = 1,/* configured, not loaded (lazy, or unloaded) */
    CGE_LOAD_LOADING = 2,
    CGE_LOAD_READY = 3,
    CGE_LOAD_FAILED = 4,
};

struct cge_slot_stats {
    enum cge_slot_load_state state;
    char path[CGE_CONFIG_PATH_MAX];    /* model folder (E10: the document folder) */
    char path2[CGE_CONFIG_PATH_MAX];   /* E10: the query folder ("" otherwise) */
    enum cge_dtype dtype;
    int dim;
    uint64_t version;
    int64_t resident_bytes;  /* weights held in memory */
    int64_t load_ms;         /* last load's duration */
    uint64_t requests;       /* inputs this slot ran */
    uint64_t failures;       /* inputs this slot failed */
    double mean_latency_ms;  /* per input */
    double p95_latency_ms;   /* per input, over the last 1024 batches */
    int64_t queue_depth;     /* inputs waiting for this slot */
    char errmsg[200];        /* the last load failure */
    uint64_t batches;        /* batches run through the queue */
    double mean_batch;       /* inputs per batch */
    double padding;          /* padded fraction of the batches' tokens (padded to the longest) */
    int64_t max_batch;       /* largest batch */
};

struct cge_engine_stats {
    uint64_t requests;     /* cge_engine_embed calls */
    uint64_t inputs;       /* inputs embedded */
    uint64_t failures;     /* inputs that failed as a whole */
    uint64_t cache_hits;   /* inputs answered from the cache */
    uint64_t cache_misses;
    uint64_t cache_entries;
    double cache_hit_rate; /* hits / (hits + misses) */
    int64_t in_flight;     /* calls running now */
    struct cge_slot_stats slots[CGE_N_SLOTS];
    /* ---- addition (issue 16, Redis): the shared tier (all 0 without one) ---- */
    uint64_t redis_hits;    /* entries found in Redis after an in-process miss (full or per-slot;
                               full hits are also in cache_hits) */
    uint64_t redis_misses;  /* lookups Redis did not answer (absent, corrupt, unreachable) */
    uint64_t redis_corrupt; /* values ignored for a bad header or checksum (then overwritten) */
    uint64_t redis_errors;  /* calls that failed or were skipped (unreachable, timeout) */
    uint64_t redis_puts;    /* entries stored */
};
enum cge_status cge_engine_get_stats(struct cge_engine *e, struct cge_engine_stats *out);

/* Hot swap: loads `path` (a model folder; for E10 a folder holding query and document folders is
 * not accepted: give "query=DIR,document=DIR") beside the current model, validates it (it loads,
 * its dimension is the one the fusion expects, a probe input gives a finite vector), then
 * switches atomically: calls already running finish on the old model, new ones use the new one;
 * the old is freed by its last user. On failure the old model keeps serving and cge_errmsg()
 * says why. *version (may be NULL) gets the new version. Swaps of one slot run one at a time. */
enum cge_status cge_engine_swap(struct cge_engine *e, int slot, const char *path,
                                uint64_t *version);
/* Unloads a slot's model (it reloads on next use). CGE_OK also when it was not loaded. */
enum cge_status cge_engine_unload(struct cge_engine *e, int slot);

/* ==== The EmbeddingProvider of the context-graph core ============================================
 * Texts are embedded as documents (role document, no instruction) into the fused vector.
 * Thread-safe; out holds cge_provider_dimension() floats per text. */
struct cge_provider;
enum cge_status cge_provider_open(const char *ensemble_or_config, struct cge_provider **out);
enum cge_status cge_provider_embed(struct cge_provider *p, const char *text, float *out);
enum cge_status cge_provider_embed_batch(struct cge_provider *p, const char *const *texts,
                                         size_t n, float *out); /* n × 1536, row-major */
size_t cge_provider_dimension(const struct cge_provider *p);     /* 1536 */
const char *cge_provider_model_name(const struct cge_provider *p);
size_t cge_provider_max_tokens(const struct cge_provider *p);
void cge_provider_close(struct cge_provider *p);

#if defined(__GNUC__) && !defined(CGE_NO_VISIBILITY)
#    pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* CGE_H */
