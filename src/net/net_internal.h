/*
 * net_internal.h: what the files of src/net/ share: the cache layout helpers (hub_cache.c) and
 * the HTTP helpers over libcurl (hub_http.c) that the pull (hub_pull.c) is built from.
 */
#ifndef CGE_NET_INTERNAL_H
#define CGE_NET_INTERNAL_H

#include "core/core.h"
#include "net/hub.h"

#include <curl/curl.h>

/* ==== cache layout (hub_cache.c) ============================================================== */
/* A repository file path that is safe to place under snapshots/COMMIT/: relative, no empty, "."
 * or ".." component, no backslash or control character, at most 1024 bytes. */
int cge__hub_safe_path(const char *p);
/* 40 lowercase hex digits. */
int cge__hub_is_commit(const char *s);
/* A revision name safe under refs/: like a safe path (branches may hold '/'). */
int cge__hub_safe_revision(const char *s);
/* An ETag usable as a blob file name: 1..128 of [A-Za-z0-9_-]. */
int cge__hub_safe_etag(const char *s);
/* mkdir -p `dir` (0755 before umask). */
enum cge_status cge__hub_mkdirs(const char *dir);
/* snapshots/COMMIT/PATH -> ../../(..)/blobs/ETAG, replacing whatever was there. */
enum cge_status cge__hub_link(const char *repo_dir, const char *commit, const char *path,
                              const char *etag);
/* refs/REVISION holding COMMIT (written to a temporary name, then renamed). */
enum cge_status cge__hub_write_ref(const char *repo_dir, const char *revision, const char *commit);
/* Whether snapshots/COMMIT/PATH exists and leads to a regular file. */
int cge__hub_pointer_ok(const char *repo_dir, const char *commit, const char *path);
/* The environment's switch: "1", "true", "yes", "on" (any case) are true. */
int cge__hub_env_true(const char *name);

/* ==== HTTP (hub_http.c) ======================================================================== */
#define CGE_HUB_HDR_LEN 2048

/* The headers of the last response of a transfer that cge reads. Each is "" when absent; a
 * value longer than CGE_HUB_HDR_LEN - 1 sets `too_long` (the answer is then refused). */
struct cge__hub_headers {
    char etag[CGE_HUB_HDR_LEN];
    char linked_etag[CGE_HUB_HDR_LEN]; /* X-Linked-Etag: the LFS file's SHA-256 */
    char linked_size[CGE_HUB_HDR_LEN]; /* X-Linked-Size */
    char repo_commit[CGE_HUB_HDR_LEN]; /* X-Repo-Commit */
    char location[CGE_HUB_HDR_LEN];
    char content_length[CGE_HUB_HDR_LEN];
    char content_range[CGE_HUB_HDR_LEN];
    char error_code[CGE_HUB_HDR_LEN];    /* X-Error-Code: RepoNotFound, GatedRepo, ... */
    char error_message[CGE_HUB_HDR_LEN]; /* X-Error-Message */
    int too_long;
};

/* curl_global_init once per process (thread-safe). */
enum cge_status cge__hub_curl_init(void);
/* Options every request shares: protocols http(s) only, no signals, timeouts, user agent,
 * the header callback into `h`, and the error buffer (CURL_ERROR_SIZE bytes). */
void cge__hub_easy_common(CURL *c, const struct cge_hub_params *p, struct cge__hub_headers *h,
                          char *errbuf);
/* Percent-encodes `s` (RFC 3986 unreserved kept; '/' kept when keep_slash) onto `out`. */
enum cge_status cge__hub_quote(const char *s, int keep_slash, struct cge_buf *out);
/* Resolves a Location value against the URL it answered (absolute, "//host/...", "/path" or a
 * relative path) into out. */
enum cge_status cge__hub_url_resolve(const char *base, const char *loc, char *out, size_t cap);
/* Whether two absolute URLs share scheme, host and port. */
int cge__hub_same_origin(const char *a, const char *b);
/* Strips a weak prefix (W/) and the quotes of an ETag, in place. */
void cge__hub_etag_normalize(char *s);
/* A strict non-negative decimal; -1 when `s` is not one. */
int64_t cge__hub_parse_size(const char *s);
/* The message for a failed HTTP answer about `what` ("repository org/x", "org/x/config.json"):
 * 401/403 → gated/private and HF_TOKEN advice, 404 → not found (repo, revision or file from
 * X-Error-Code), else the status; `body` (may be NULL) adds the server's own short message. */
enum cge_status cge__hub_http_error(long status, const struct cge__hub_headers *h, const char *what,
                                    const char *body, int had_token);

#endif /* CGE_NET_INTERNAL_H */
