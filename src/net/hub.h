/*
 * hub.h: downloading model repositories from the Hugging Face Hub into the shared HF cache.
 *
 * cge speaks the Hub's own protocol and writes the cache exactly as huggingface_hub lays it out,
 * so cge, Python transformers and huggingface-cli share one cache and nothing is fetched twice:
 *
 *   $HF_HUB_CACHE/models--ORG--NAME/blobs/ETAG                 the file's bytes (ETag: the git
 *                                                              blob id, or the SHA-256 for LFS)
 *   $HF_HUB_CACHE/models--ORG--NAME/snapshots/COMMIT/PATH      relative symlink to the blob
 *   $HF_HUB_CACHE/models--ORG--NAME/refs/REVISION              the commit REVISION points at
 *   $HF_HUB_CACHE/.locks/models--ORG--NAME/ETAG.lock           flock()ed while a blob downloads
 *
 * Key decisions: a blob is written as blobs/ETAG.incomplete, resumed with a Range request, and
 * renamed into place only after its size (and its SHA-256 for LFS files, its git blob id for
 * small files whose ETag is that id) checks out; the snapshot symlink is made after that and
 * refs/REVISION last, so nothing half-written is ever reachable from snapshots/ or refs/. All
 * transfers of one pull run on one thread through a curl multi handle (up to max_parallel at
 * once), so the progress state needs no locks.
 *
 * Thread safety: a pull touches only its own state; separate pulls may run on separate threads
 * (curl_global_init runs once, under pthread_once). The token is sent as a bearer token to the
 * endpoint's own host only, and never appears in a message, a log line or a progress report.
 */
#ifndef CGE_NET_HUB_H
#define CGE_NET_HUB_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

#define CGE_HUB_PATH_MAX 4096

/* ==== progress ================================================================================ */
enum cge_hub_event {
    CGE_HUB_EV_TICK = 0,        /* periodic (about 10 per second) while transfers run */
    CGE_HUB_EV_LISTED = 1,      /* the file list is known: n_files, bytes_total */
    CGE_HUB_EV_FILE_DONE = 2,   /* `path` was downloaded and verified */
    CGE_HUB_EV_FILE_CACHED = 3, /* `path` was already in the cache */
    CGE_HUB_EV_RETRY = 4,       /* `path` (or the file list when NULL) is retried after `detail` */
};

struct cge_hub_file_progress {
    const char *path; /* the file's path in the repository */
    int64_t done;     /* bytes on disk (a resumed file starts above 0) */
    int64_t total;    /* expected size, 0 while unknown */
};

struct cge_hub_progress {
    enum cge_hub_event event;
    const char *repo_id;
    const char *path;       /* the file the event is about, NULL for TICK and LISTED */
    const char *detail;     /* RETRY: the error that caused it, else NULL */
    int n_files;            /* selected files */
    int n_finished;         /* done or cached */
    int64_t bytes_total;    /* sizes of the selected files */
    int64_t bytes_finished; /* bytes of finished files plus bytes on disk of active ones */
    int64_t bytes_fetched;  /* bytes received in this pull (the rate's numerator) */
    double elapsed_s;       /* since the pull started */
    int n_active;
    const struct cge_hub_file_progress *active; /* n_active entries, valid during the call */
};
typedef void (*cge_hub_progress_fn)(const struct cge_hub_progress *p, void *user);

/* ==== parameters ============================================================================== */
struct cge_hub_params {
    /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *endpoint;
    /* NULL: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub */
    const char *cache_dir;
    /* NULL: $HF_TOKEN, else the file `huggingface-cli login` saved ($HF_TOKEN_PATH,
     * $HF_HOME/token, ~/.cache/huggingface/token) */
    const char *token;
    /* -1: from $HF_HUB_OFFLINE (1/true/yes/on); 0 or 1 to force */
    int offline;
    /* File selection (fnmatch patterns, '*' crosses '/', a pattern ending in '/' means the whole
     * folder, as huggingface_hub's allow/ignore patterns). With include patterns the selection is
     * every file matching one of them; without, the default (cge_hub_select_default). Exclude
     * patterns then remove files from either. */
    const char *const *include;
    int n_include;
    const char *const *exclude;
    int n_exclude;
    int max_parallel;       /* files transferred at once (8; 1..32) */
    int max_retries;        /* retries per request after network errors, 429 and 5xx (5) */
    double retry_base_s;    /* first backoff (0.5 s), doubled per retry, at most 8 s */
    long connect_timeout_s; /* 10 */
    long stall_timeout_s;   /* a transfer that receives nothing for this long fails (30) */
    cge_hub_progress_fn progress;
    void *progress_user;
};

void cge_hub_default_params(struct cge_hub_params *p);

/* ==== results ================================================================================= */
struct cge_hub_result {
    char commit[41];                 /* the commit the revision resolved to */
    char snapshot[CGE_HUB_PATH_MAX]; /* .../models--ORG--NAME/snapshots/COMMIT */
    int n_files;                     /* selected files */
    int n_fetched;                   /* downloaded now (the others were cached) */
    int64_t bytes_fetched;           /* bytes received now (resumed files count what was new) */
    int64_t bytes_total;             /* sizes of the selected files */
    double seconds;                  /* wall time of the pull */
    int offline;                     /* resolved from the cache without the network */
};

/* ==== functions ===============================================================================
 * cge_hub_pull: fetches `revision` (NULL: "main"; a branch, tag or 40-hex commit) of `repo_id`
 * ("ORG/NAME" or "NAME") into the cache. In offline mode it only resolves the revision from the
 * cache (refs/REVISION → snapshots/COMMIT) and fails with CGE_ERR_MODEL_NOT_FOUND when that
 * snapshot is absent. Errors (cge_errmsg() holds the detail; `out` may be NULL):
 *   CGE_ERR_MODEL_NOT_FOUND   404: repository, revision or file (the message says which);
 *                             offline and not cached
 *   CGE_ERR_IO                401/403 (gated or private: set HF_TOKEN), network failures after
 *                             the retries, write failures (disk full), other HTTP statuses
 *   CGE_ERR_SERIALIZATION     malformed answers: bad JSON, missing or unsafe headers, sizes or
 *                             checksums that do not match (both values in the message), too
 *                             many redirects
 *   CGE_ERR_INVALID_VALUE     a bad repo id, revision or parameter */
enum cge_status cge_hub_pull(const char *repo_id, const char *revision,
                             const struct cge_hub_params *p, struct cge_hub_result *out);

/* The cache folder from the environment (HF_HUB_CACHE, HF_HOME, HOME), into buf. */
enum cge_status cge_hub_cache_dir(char *buf, size_t cap);

/* The snapshot folder of a cached revision (NULL: "main") of repo_id, without the network:
 * cache_dir NULL means cge_hub_cache_dir(). CGE_ERR_MODEL_NOT_FOUND when not cached. */
enum cge_status cge_hub_cache_lookup(const char *cache_dir, const char *repo_id,
                                     const char *revision, char *snapshot, size_t cap,
                                     char commit[41]);

/* The default selection over a repository's file list: sel[i] = 1 for what cge needs:
 *  - configs and tokenizer files (*.json, *.txt, *.model, *.tiktoken) in the root and in
 *    sentence-transformers module folders (N_Name/, e.g. 1_Pooling/, 2_Dense/);
 *  - one weight format per folder: safetensors (model.safetensors, or the shards
 *    model-XXXXX-of-YYYYY.safetensors with their index; any *.safetensors in a module folder)
 *    over pytorch_model*.bin (with its index); never both;
 *  - never ONNX, OpenVINO, Core ML, TensorFlow, Flax, Rust, GGUF, training state or hidden
 *    files, and nothing from other folders.
 * Returns the number selected. */
int cge_hub_select_default(const char *const *paths, int n, unsigned char *sel);

/* Whether `path` matches an allow/ignore pattern as huggingface_hub does (fnmatch, no
 * FNM_PATHNAME; "dir/" means "dir/" followed by anything). */
int cge_hub_match(const char *pattern, const char *path);

/* Checks a repo id ("NAME" or "ORG/NAME" of [A-Za-z0-9._-], no "..", no leading '.' or '-')
 * and writes its cache folder name ("models--ORG--NAME") into buf. */
enum cge_status cge_hub_repo_folder(const char *repo_id, char *buf, size_t cap);

/* The repositories of slot i (0-based) of the model table: its hf_id, or for an id of the form
 * "pre{a,b}post" (E10) the two ids "preapost" (the query encoder) and "prebpost" (the
 * document/context encoder), in that order. Returns how many (0 when i is out of range). */
int cge_hub_slot_repos(int i, char repos[2][128]);

#endif /* CGE_NET_HUB_H */
