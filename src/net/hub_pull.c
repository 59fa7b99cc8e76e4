/*
 * hub_pull.c: `cge pull`: one repository revision from the Hub into the HF cache.
 *
 * The protocol is huggingface_hub's: GET /api/models/REPO/revision/REV?blobs=true gives the
 * commit and the file list; for each selected file a HEAD on /REPO/resolve/COMMIT/PATH (no
 * redirect following, except same-host relative ones such as a renamed repository) gives
 * X-Repo-Commit, the ETag (X-Linked-Etag, the SHA-256, for LFS files), the size (X-Linked-Size
 * or Content-Length) and, for LFS files, a Location on the storage host; a GET of that location
 * then fills blobs/ETAG.incomplete, continuing a previous attempt with Range: bytes=N-.
 *
 * Key decision: each file is a small state machine (HEAD, then GET, with retries and backoff in
 * between) and all of them advance in one curl multi loop on the calling thread, at most
 * max_parallel at once. A failed file stops the pull; bytes already written stay in
 * .incomplete files for the next run to resume, but a file whose checksum fails is deleted.
 */
#include "net/net_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define URL_MAX       (CGE_HUB_PATH_MAX + 512)
#define API_BODY_MAX  ((size_t)64 << 20)
#define MAX_REL_HOPS  5
#define MAX_REDIRECTS 10L
#define LOCK_WAIT_US  200000
#define LOCK_WAIT_MAX 3000 /* 10 minutes of LOCK_WAIT_US */
#define TICK_US       100000

void cge_hub_default_params(struct cge_hub_params *p) {
    memset(p, 0, sizeof *p);
    p->offline = -1;
    p->max_parallel = 8;
    p->max_retries = 5;
    p->retry_base_s = 0.5;
    p->connect_timeout_s = 10;
    p->stall_timeout_s = 30;
}

/* ==== the pull's state ======================================================================== */
struct sibling {
    char *path;
    int64_t size;  /* -1 unknown */
    char *blob_id; /* git blob id, or NULL */
    char *lfs_sha; /* lfs.sha256, or NULL */
};

enum stage { ST_HEAD, ST_GET, ST_DONE };
enum digest { MD_NONE, MD_SHA256, MD_GIT_SHA1 };

struct job {
    struct pull *pl;
    const struct sibling *sib;
    enum stage stage;
    int active; /* a curl handle is in the multi */
    CURL *c;
    struct curl_slist *req_headers;
    struct cge__hub_headers h;
    char err[CURL_ERROR_SIZE];
    char url[URL_MAX]; /* HEAD target (the resolve URL, or where a relative redirect led) */
    char dl[URL_MAX];  /* GET target */
    char etag[CGE_HUB_HDR_LEN];
    int lfs;
    int64_t size; /* expected bytes */
    int fd, lock_fd;
    int64_t have; /* bytes in the .incomplete file */
    EVP_MD_CTX *md;
    enum digest md_kind;
    int attempts; /* failed tries of the current stage */
    int lock_waits;
    int hops;
    int64_t not_before;   /* µs: retry or lock wait */
    int body_ok;          /* the GET's answer is 200/206 and bytes go to the file */
    enum cge_status fail; /* set by the write callback */
    char body[256];       /* the start of an error answer's body */
    size_t body_len;
};

struct pull {
    const struct cge_hub_params *p;
    const char *repo_id;
    char endpoint[1024];
    char repo_dir[CGE_HUB_PATH_MAX];
    char lock_dir[CGE_HUB_PATH_MAX];
    char commit[41];
    char *auth; /* "Authorization: Bearer ..." or NULL; wiped at the end */
    struct sibling *sibs;
    int n_sibs;
    struct job *jobs;
    int n_jobs;
    CURLM *m;
    int n_finished, n_fetched;
    int64_t bytes_total, bytes_finished, bytes_fetched;
    int64_t t0;
    struct cge_hub_file_progress *active;
};

static double elapsed(const struct pull *pl) {
    return (double)(cge__now_us() - pl->t0) / 1e6;
}

static void report(struct pull *pl, enum cge_hub_event ev, const char *path, const char *detail) {
    if (!pl->p->progress) return;
    struct cge_hub_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.event = ev;
    pr.repo_id = pl->repo_id;
    pr.path = path;
    pr.detail = detail;
    pr.n_files = pl->n_jobs;
    pr.n_finished = pl->n_finished;
    pr.bytes_total = pl->bytes_total;
    pr.bytes_fetched = pl->bytes_fetched;
    pr.elapsed_s = elapsed(pl);
    int64_t fin = pl->bytes_finished;
    int na = 0;
    for (int i = 0; i < pl->n_jobs && pl->active; i++) {
        struct job *j = &pl->jobs[i];
        if (j->stage == ST_DONE) continue;
        if (j->stage == ST_GET) fin += j->have; /* includes what a resumed file had already */
        if (j->active) {
            pl->active[na].path = j->sib->path;
            pl->active[na].done = j->have;
            pl->active[na].total = j->size > 0 ? j->size : (j->sib->size > 0 ? j->sib->size : 0);
            na++;
        }
    }
    pr.bytes_finished = fin;
    pr.n_active = na;
    pr.active = pl->active;
    pl->p->progress(&pr, pl->p->progress_user);
}

/* ==== the file list =========================================================================== */
struct membuf {
    struct cge_buf b;
    int overflow;
};

static size_t on_body_mem(char *data, size_t size, size_t n, void *user) {
    struct membuf *mb = user;
    if (cge__buf_append(&mb->b, data, size * n)) {
        mb->overflow = 1;
        return 0;
    }
    return size * n;
}

static int transient_status(long s) {
    return s == 408 || s == 429 || s >= 500;
}

static int transient_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return 1;
    default:
        return 0;
    }
}

static double backoff_s(const struct cge_hub_params *p, int attempt) {
    double d = p->retry_base_s;
    for (int i = 1; i < attempt && d < 8; i++)
        d *= 2;
    return d > 8 ? 8 : d;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static void free_sibs(struct pull *pl) {
    for (int i = 0; i < pl->n_sibs; i++) {
        cge__free(pl->sibs[i].path);
        cge__free(pl->sibs[i].blob_id);
        cge__free(pl->sibs[i].lfs_sha);
    }
    cge__free(pl->sibs);
    pl->sibs = NULL;
    pl->n_sibs = 0;
}

static char *dup_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring[0] ? cge__strdup(v->valuestring) : NULL;
}

static enum cge_status parse_listing(struct pull *pl, const char *json, size_t len,
                                     const char *revision) {
    cJSON *doc = cJSON_ParseWithLength(json, len);
    if (!doc)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: the file list is not valid JSON", pl->repo_id);
    enum cge_status st = CGE_OK;
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(doc, "sha");
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(doc, "siblings");
    if (!cJSON_IsString(sha) || !cge__hub_is_commit(sha->valuestring) || !cJSON_IsArray(sib)) {
        st = cge__err(CGE_ERR_SERIALIZATION,
                      "%s: the file list has no commit (\"sha\": 40 hex digits) or no "
                      "\"siblings\" array",
                      pl->repo_id);
        goto done;
    }
    memcpy(pl->commit, sha->valuestring, 41);
    if (cge__hub_is_commit(revision) && strcmp(revision, pl->commit)) {
        st = cge__err(CGE_ERR_SERIALIZATION, "%s: asked for commit %s, the server answered %s",
                      pl->repo_id, revision, pl->commit);
        goto done;
    }
    int n = cJSON_GetArraySize(sib);
    if (n > 1000000) {
        st = cge__err(CGE_ERR_SERIALIZATION, "%s: %d files listed", pl->repo_id, n);
        goto done;
    }
    pl->sibs = cge__calloc((size_t)(n ? n : 1), sizeof *pl->sibs);
    if (!pl->sibs) {
        st = cge__err(CGE_ERR_NOMEM, "file list");
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, sib) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "rfilename");
        if (!cJSON_IsString(name) || !cge__hub_safe_path(name->valuestring)) {
            st = cge__err(CGE_ERR_SERIALIZATION,
                          "%s: file list entry %d has no usable \"rfilename\"", pl->repo_id,
                          pl->n_sibs);
            goto done;
        }
        struct sibling *s = &pl->sibs[pl->n_sibs++];
        s->path = cge__strdup(name->valuestring);
        s->size = -1;
        s->blob_id = dup_str(it, "blobId");
        const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(it, "lfs");
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(it, "size");
        if (cJSON_IsObject(lfs)) {
            s->lfs_sha = dup_str(lfs, "sha256");
            const cJSON *lsz = cJSON_GetObjectItemCaseSensitive(lfs, "size");
            if (cJSON_IsNumber(lsz)) sz = lsz;
        }
        if (cJSON_IsNumber(sz) && sz->valuedouble >= 0 && sz->valuedouble < 9e15)
            s->size = (int64_t)sz->valuedouble;
        if (!s->path) {
            st = cge__err(CGE_ERR_NOMEM, "file list");
            goto done;
        }
    }
done:
    cJSON_Delete(doc);
    return st;
}

static enum cge_status fetch_listing(struct pull *pl, const char *revision, int *net_err) {
    struct cge_buf url;
    cge__buf_init(&url, URL_MAX);
    enum cge_status st =
        cge__buf_printf(&url, "%s/api/models/%s/revision/", pl->endpoint, pl->repo_id);
    if (!st) st = cge__hub_quote(revision, 0, &url);
    if (!st) st = cge__buf_append(&url, "?blobs=true", 11);
    if (st) {
        cge__buf_free(&url);
        return st;
    }
    char what[600];
    snprintf(what, sizeof what, "%s@%s", pl->repo_id, revision);
    struct membuf mb;
    cge__buf_init(&mb.b, API_BODY_MAX);
    struct cge__hub_headers h;
    char err[CURL_ERROR_SIZE];
    for (int attempt = 0;; attempt++) {
        CURL *c = curl_easy_init();
        if (!c) {
            st = cge__err(CGE_ERR_NOMEM, "curl handle");
            break;
        }
        struct curl_slist *hl = NULL;
        if (pl->auth) hl = curl_slist_append(hl, pl->auth);
        cge__hub_easy_common(c, pl->p, &h, err);
        memset(&h, 0, sizeof h);
        cge__buf_reset(&mb.b);
        mb.overflow = 0;
        curl_easy_setopt(c, CURLOPT_URL, url.data);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_mem);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &mb);
        /* The API may redirect (a renamed repository); its answer is small. */
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        curl_slist_free_all(hl);
        int retry = 0;
        char why[400];
        if (mb.overflow) {
            st = cge__err(CGE_ERR_SERIALIZATION, "%s: the file list is larger than %zu bytes", what,
                          API_BODY_MAX);
        } else if (rc == CURLE_TOO_MANY_REDIRECTS) {
            st =
                cge__err(CGE_ERR_SERIALIZATION, "%s: more than %ld redirects", what, MAX_REDIRECTS);
        } else if (rc != CURLE_OK) {
            snprintf(why, sizeof why, "%s", err[0] ? err : curl_easy_strerror(rc));
            retry = transient_curl(rc);
            *net_err = 1;
            st = cge__err(CGE_ERR_IO, "%s: cannot reach %s: %s", what, pl->endpoint, why);
        } else if (status != 200) {
            *net_err = 0;
            snprintf(why, sizeof why, "HTTP %ld", status);
            retry = transient_status(status);
            st = cge__hub_http_error(status, &h, what, mb.b.data, pl->auth != NULL);
        } else {
            st = parse_listing(pl, mb.b.data ? mb.b.data : "", mb.b.len, revision);
            break;
        }
        if (!retry || attempt >= pl->p->max_retries) break;
        report(pl, CGE_HUB_EV_RETRY, NULL, why);
        sleep_s(backoff_s(pl->p, attempt + 1));
    }
    cge__buf_free(&mb.b);
    cge__buf_free(&url);
    return st;
}

/* ==== one file ================================================================================ */
static void job_close_file(struct job *j) {
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
    if (j->md) EVP_MD_CTX_free(j->md);
    j->md = NULL;
}

static void job_unlock(struct job *j) {
    if (j->lock_fd >= 0) {
        flock(j->lock_fd, LOCK_UN);
        close(j->lock_fd);
    }
    j->lock_fd = -1;
}

static void job_detach(struct job *j) {
    if (j->c) {
        if (j->active) curl_multi_remove_handle(j->pl->m, j->c);
        curl_easy_cleanup(j->c);
    }
    j->c = NULL;
    j->active = 0;
    curl_slist_free_all(j->req_headers);
    j->req_headers = NULL;
}

static int blob_path(const struct job *j, char *buf, size_t cap, const char *suffix) {
    int k = snprintf(buf, cap, "%s/blobs/%s%s", j->pl->repo_dir, j->etag, suffix);
    return k >= 0 && (size_t)k < cap;
}

static size_t on_body_file(char *data, size_t size, size_t nmemb, void *user) {
    struct job *j = user;
    size_t n = size * nmemb;
    if (!j->body_ok) {
        long status = 0;
        curl_easy_getinfo(j->c, CURLINFO_RESPONSE_CODE, &status);
        if (status == 206) {
            /* Content-Range: bytes START-END/TOTAL must start where the file ends. */
            long long a = -1;
            if (sscanf(j->h.content_range, "bytes %lld-", &a) != 1 || a != (long long)j->have) {
                j->fail = cge__err(CGE_ERR_SERIALIZATION,
                                   "%s: asked for bytes %lld-, the server sent '%s'", j->sib->path,
                                   (long long)j->have, j->h.content_range);
                return 0;
            }
            j->body_ok = 1;
        } else if (status == 200) {
            if (j->have > 0) {
                /* The server ignored the Range: start again from zero. */
                if (ftruncate(j->fd, 0) || lseek(j->fd, 0, SEEK_SET) < 0) {
                    j->fail = cge__err(CGE_ERR_IO, "%s: cannot truncate: %s", j->sib->path,
                                       strerror(errno));
                    return 0;
                }
                j->have = 0;
                EVP_DigestInit_ex(j->md, j->md_kind == MD_SHA256 ? EVP_sha256() : EVP_sha1(), NULL);
                if (j->md_kind == MD_GIT_SHA1) {
                    char hdr[64];
                    int k = snprintf(hdr, sizeof hdr, "blob %lld", (long long)j->size);
                    EVP_DigestUpdate(j->md, hdr, (size_t)k + 1);
                }
            }
            j->body_ok = 1;
        } else {
            /* An error answer: keep its start for the message, never write it to the blob. */
            size_t k = n < sizeof j->body - 1 - j->body_len ? n : sizeof j->body - 1 - j->body_len;
            memcpy(j->body + j->body_len, data, k);
            j->body_len += k;
            j->body[j->body_len] = 0;
            return n;
        }
    }
    if (j->have + (int64_t)n > j->size) {
        j->fail = cge__err(CGE_ERR_SERIALIZATION,
                           "%s: the server sent more than the %lld bytes it announced",
                           j->sib->path, (long long)j->size);
        return 0;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(j->fd, data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            j->fail = cge__err(CGE_ERR_IO,
                               "%s: cannot write blobs/%s.incomplete: %s (%lld bytes kept; run "
                               "again to resume)",
                               j->sib->path, j->etag, strerror(e), (long long)j->have);
            return 0;
        }
        off += (size_t)w;
    }
    EVP_DigestUpdate(j->md, data, n);
    j->have += (int64_t)n;
    j->pl->bytes_fetched += (int64_t)n;
    return n;
}

/* Opens blobs/ETAG.incomplete, hashes what it holds already. */
static enum cge_status open_incomplete(struct job *j) {
    char p[CGE_HUB_PATH_MAX];
    if (!blob_path(j, p, sizeof p, ".incomplete"))
        return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    j->fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->fd < 0) return cge__err(CGE_ERR_IO, "cannot open %s: %s", p, strerror(errno));
    struct stat sb;
    if (fstat(j->fd, &sb)) return cge__err(CGE_ERR_IO, "%s: %s", p, strerror(errno));
    j->have = (int64_t)sb.st_size;
    if (j->have > j->size) {
        if (ftruncate(j->fd, 0)) return cge__err(CGE_ERR_IO, "%s: %s", p, strerror(errno));
        j->have = 0;
    }
    /* An LFS ETag is the SHA-256; a small file's ETag is its git blob id when the file list's
     * blobId says so (then sha1("blob SIZE\0" + bytes) must give it back). */
    j->md_kind = MD_NONE;
    if (j->lfs && strlen(j->etag) == 64)
        j->md_kind = MD_SHA256;
    else if (!j->lfs && j->sib->blob_id && !strcasecmp(j->sib->blob_id, j->etag) &&
             strlen(j->etag) == 40)
        j->md_kind = MD_GIT_SHA1;
    j->md = EVP_MD_CTX_new();
    if (!j->md) return cge__err(CGE_ERR_NOMEM, "digest");
    EVP_DigestInit_ex(j->md, j->md_kind == MD_SHA256 ? EVP_sha256() : EVP_sha1(), NULL);
    if (j->md_kind == MD_GIT_SHA1) {
        char hdr[64];
        int k = snprintf(hdr, sizeof hdr, "blob %lld", (long long)j->size);
        EVP_DigestUpdate(j->md, hdr, (size_t)k + 1);
    }
    char buf[1 << 16];
    int64_t left = j->have;
    while (left > 0) {
        ssize_t r = pread(j->fd, buf, left < (int64_t)sizeof buf ? (size_t)left : sizeof buf,
                          j->have - left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return cge__err(CGE_ERR_IO, "cannot read %s: %s", p, strerror(errno));
        EVP_DigestUpdate(j->md, buf, (size_t)r);
        left -= r;
    }
    if (lseek(j->fd, j->have, SEEK_SET) < 0)
        return cge__err(CGE_ERR_IO, "%s: %s", p, strerror(errno));
    return CGE_OK;
}

static void hex(const unsigned char *d, unsigned n, char *out) {
    static const char x[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[2 * n] = 0;
}

static void finish_file(struct job *j, int fetched) {
    j->stage = ST_DONE;
    struct pull *pl = j->pl;
    pl->n_finished++;
    pl->n_fetched += fetched;
    pl->bytes_finished += j->size > 0 ? j->size : 0;
    report(pl, fetched ? CGE_HUB_EV_FILE_DONE : CGE_HUB_EV_FILE_CACHED, j->sib->path, NULL);
}

/* The .incomplete file holds j->size bytes: check it, move it into blobs/, link it. */
static enum cge_status complete_blob(struct job *j) {
    char inc[CGE_HUB_PATH_MAX], blob[CGE_HUB_PATH_MAX];
    if (!blob_path(j, inc, sizeof inc, ".incomplete") || !blob_path(j, blob, sizeof blob, ""))
        return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    if (j->md_kind != MD_NONE) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned dn = 0;
        char got[2 * EVP_MAX_MD_SIZE + 1];
        EVP_DigestFinal_ex(j->md, d, &dn);
        hex(d, dn, got);
        if (strcasecmp(got, j->etag)) {
            job_close_file(j);
            unlink(inc);
            return cge__err(CGE_ERR_SERIALIZATION,
                            "%s: %s mismatch: the Hub says %s, the downloaded bytes give %s; "
                            "the download was deleted",
                            j->sib->path, j->md_kind == MD_SHA256 ? "SHA-256" : "git blob id",
                            j->etag, got);
        }
    }
    if (fsync(j->fd)) {
        int e = errno;
        job_close_file(j);
        return cge__err(CGE_ERR_IO, "%s: %s", inc, strerror(e));
    }
    job_close_file(j);
    if (rename(inc, blob)) return cge__err(CGE_ERR_IO, "cannot move %s: %s", inc, strerror(errno));
    job_unlock(j);
    return cge__hub_link(j->pl->repo_dir, j->pl->commit, j->sib->path, j->etag);
}

static enum cge_status start_request(struct job *j) {
    struct pull *pl = j->pl;
    j->c = curl_easy_init();
    if (!j->c) return cge__err(CGE_ERR_NOMEM, "curl handle");
    cge__hub_easy_common(j->c, pl->p, &j->h, j->err);
    memset(&j->h, 0, sizeof j->h);
    j->body_ok = 0;
    j->body_len = 0;
    j->body[0] = 0;
    j->fail = CGE_OK;
    const char *url = j->stage == ST_HEAD ? j->url : j->dl;
    /* The token goes to the Hub's own host only, never to a storage host it redirects to
     * (curl also drops it when a redirect leaves the host). */
    if (pl->auth && cge__hub_same_origin(url, pl->endpoint))
        j->req_headers = curl_slist_append(j->req_headers, pl->auth);
    curl_easy_setopt(j->c, CURLOPT_URL, url);
    curl_easy_setopt(j->c, CURLOPT_PRIVATE, j);
    if (j->stage == ST_HEAD) {
        curl_easy_setopt(j->c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(j->c, CURLOPT_FOLLOWLOCATION, 0L);
    } else {
        char range[64];
        if (j->have > 0) {
            snprintf(range, sizeof range, "Range: bytes=%lld-", (long long)j->have);
            j->req_headers = curl_slist_append(j->req_headers, range);
        }
        curl_easy_setopt(j->c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(j->c, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
        /* Large reads: fewer write() and digest calls per byte (16 KiB by default). */
        curl_easy_setopt(j->c, CURLOPT_BUFFERSIZE, 512L * 1024);
        curl_easy_setopt(j->c, CURLOPT_WRITEFUNCTION, on_body_file);
        curl_easy_setopt(j->c, CURLOPT_WRITEDATA, j);
    }
    curl_easy_setopt(j->c, CURLOPT_HTTPHEADER, j->req_headers);
    CURLMcode mc = curl_multi_add_handle(pl->m, j->c);
    if (mc != CURLM_OK) return cge__err(CGE_ERR_IO, "curl: %s", curl_multi_strerror(mc));
    j->active = 1;
    return CGE_OK;
}

/* Schedules a retry of the current stage, or fails with `st` (the message already set). */
static enum cge_status retry_or_fail(struct job *j, enum cge_status st) {
    if (j->attempts >= j->pl->p->max_retries) return st;
    j->attempts++;
    j->not_before = cge__now_us() + (int64_t)(backoff_s(j->pl->p, j->attempts) * 1e6);
    report(j->pl, CGE_HUB_EV_RETRY, j->sib->path, cge_errmsg());
    return CGE_OK;
}

/* After the HEAD: the blob is there already, or take the lock and go to the GET. */
static enum cge_status after_head(struct job *j) {
    struct pull *pl = j->pl;
    char blob[CGE_HUB_PATH_MAX];
    struct stat sb;
    if (!blob_path(j, blob, sizeof blob, ""))
        return cge__err(CGE_ERR_INVALID_VALUE, "path too long");
    if (stat(blob, &sb) == 0 && S_ISREG(sb.st_mode)) {
        enum cge_status st = cge__hub_link(pl->repo_dir, pl->commit, j->sib->path, j->etag);
        if (!st) finish_file(j, 0);
        return st;
    }
    if (j->lock_fd < 0) {
        char lp[CGE_HUB_PATH_MAX];
        int k = snprintf(lp, sizeof lp, "%s/%s.lock", pl->lock_dir, j->etag);
        if (k < 0 || (size_t)k >= sizeof lp) return cge__err(CGE_ERR_INVALID_VALUE, "too long");
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return cge__err(CGE_ERR_IO, "cannot open %s: %s", lp, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            close(fd);
            /* Someone else (another process, or a file of this repository with the same
             * bytes) is fetching this blob: wait for it, then link what it made. */
            if (++j->lock_waits > LOCK_WAIT_MAX)
                return cge__err(CGE_ERR_TIMEOUT, "%s: %s stayed locked for 10 minutes",
                                j->sib->path, lp);
            j->not_before = cge__now_us() + LOCK_WAIT_US;
            return CGE_OK;
        }
        j->lock_fd = fd;
        /* The blob may have landed between the stat and the lock. */
        if (stat(blob, &sb) == 0 && S_ISREG(sb.st_mode)) {
            job_unlock(j);
            enum cge_status st = cge__hub_link(pl->repo_dir, pl->commit, j->sib->path, j->etag);
            if (!st) finish_file(j, 0);
            return st;
        }
    }
    j->stage = ST_GET;
    j->attempts = 0;
    enum cge_status st = open_incomplete(j);
    if (st) return st;
    if (j->have == j->size) {
        /* A previous run got every byte but stopped before the move. */
        if (!(st = complete_blob(j))) finish_file(j, 1);
        return st;
    }
    j->not_before = 0;
    return CGE_OK;
}

static enum cge_status head_done(struct job *j, CURLcode rc) {
    struct pull *pl = j->pl;
    long status = 0;
    curl_easy_getinfo(j->c, CURLINFO_RESPONSE_CODE, &status);
    job_detach(j);
    const char *path = j->sib->path;
    if (rc != CURLE_OK) {
        enum cge_status st = cge__err(CGE_ERR_IO, "%s: cannot reach %s: %s", path, pl->endpoint,
                                      j->err[0] ? j->err : curl_easy_strerror(rc));
        return transient_curl(rc) ? retry_or_fail(j, st) : st;
    }
    char what[CGE_HUB_PATH_MAX];
    snprintf(what, sizeof what, "%s/%s", pl->repo_id, path);
    if (j->h.too_long)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: a header longer than %d bytes", what,
                        CGE_HUB_HDR_LEN - 1);
    int redirect = status >= 300 && status <= 399;
    if (!redirect && !(status >= 200 && status <= 299)) {
        enum cge_status st = cge__hub_http_error(status, &j->h, what, NULL, pl->auth != NULL);
        return transient_status(status) ? retry_or_fail(j, st) : st;
    }
    if (redirect) {
        if (!j->h.location[0])
            return cge__err(CGE_ERR_SERIALIZATION, "%s: HTTP %ld without a Location", what, status);
        char to[URL_MAX];
        enum cge_status st = cge__hub_url_resolve(j->url, j->h.location, to, sizeof to);
        if (st) return st;
        /* A relative Location stays on the Hub (a renamed repository): follow it with another
         * HEAD. An absolute one is the storage URL to GET. */
        if (j->h.location[0] == '/' && j->h.location[1] != '/') {
            if (++j->hops > MAX_REL_HOPS)
                return cge__err(CGE_ERR_SERIALIZATION, "%s: more than %d redirects on the Hub",
                                what, MAX_REL_HOPS);
            memcpy(j->url, to, sizeof to);
            j->not_before = 0;
            return CGE_OK;
        }
        memcpy(j->dl, to, sizeof to);
    } else {
        memcpy(j->dl, j->url, sizeof j->dl);
    }
    if (!j->h.repo_commit[0])
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: no X-Repo-Commit header: %s does not answer like the Hub (check "
                        "HF_ENDPOINT and any proxy)",
                        what, pl->endpoint);
    if (strcmp(j->h.repo_commit, pl->commit))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: X-Repo-Commit %.64s, the file list said %s",
                        what, j->h.repo_commit, pl->commit);
    j->lfs = j->h.linked_etag[0] != 0;
    memcpy(j->etag, j->lfs ? j->h.linked_etag : j->h.etag, sizeof j->etag);
    cge__hub_etag_normalize(j->etag);
    if (!j->etag[0]) return cge__err(CGE_ERR_SERIALIZATION, "%s: no ETag header", what);
    if (!cge__hub_safe_etag(j->etag))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: unusable ETag '%.80s'", what, j->etag);
    if (j->lfs && j->sib->lfs_sha && strcasecmp(j->sib->lfs_sha, j->etag))
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: X-Linked-Etag %s, the file list's lfs.sha256 %s", what, j->etag,
                        j->sib->lfs_sha);
    int64_t size = -1;
    if (j->h.linked_size[0]) {
        if ((size = cge__hub_parse_size(j->h.linked_size)) < 0)
            return cge__err(CGE_ERR_SERIALIZATION, "%s: bad X-Linked-Size '%.40s'", what,
                            j->h.linked_size);
    } else if (!redirect && j->h.content_length[0]) {
        if ((size = cge__hub_parse_size(j->h.content_length)) < 0)
            return cge__err(CGE_ERR_SERIALIZATION, "%s: bad Content-Length '%.40s'", what,
                            j->h.content_length);
    }
    if (size < 0) size = j->sib->size;
    if (size < 0) return cge__err(CGE_ERR_SERIALIZATION, "%s: no size (X-Linked-Size)", what);
    if (j->sib->size >= 0 && j->sib->size != size)
        return cge__err(CGE_ERR_SERIALIZATION,
                        "%s: the server announces %lld bytes, the file list %lld", what,
                        (long long)size, (long long)j->sib->size);
    j->size = size;
    return after_head(j);
}

static enum cge_status get_done(struct job *j, CURLcode rc) {
    struct pull *pl = j->pl;
    long status = 0;
    curl_easy_getinfo(j->c, CURLINFO_RESPONSE_CODE, &status);
    job_detach(j);
    const char *path = j->sib->path;
    char what[CGE_HUB_PATH_MAX];
    snprintf(what, sizeof what, "%s/%s", pl->repo_id, path);
    if (j->fail) {
        if (j->fail == CGE_ERR_SERIALIZATION) {
            /* A wrong answer (too many bytes, a bad range): start this file over once. */
            char inc[CGE_HUB_PATH_MAX];
            job_close_file(j);
            if (blob_path(j, inc, sizeof inc, ".incomplete")) unlink(inc);
            j->stage = ST_HEAD;
            return retry_or_fail(j, j->fail);
        }
        return j->fail;
    }
    if (rc == CURLE_TOO_MANY_REDIRECTS)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: more than %ld redirects", what, MAX_REDIRECTS);
    if (rc != CURLE_OK) {
        enum cge_status st = cge__err(
            CGE_ERR_IO, "%s: transfer failed after %lld of %lld bytes: %s", what,
            (long long)j->have, (long long)j->size, j->err[0] ? j->err : curl_easy_strerror(rc));
        if (!transient_curl(rc)) return st;
        /* What arrived stays in .incomplete; the retry asks for the rest. */
        return retry_or_fail(j, st);
    }
    if (status == 416) {
        /* The server cannot serve the rest of what is on disk: start from zero. */
        if (ftruncate(j->fd, 0)) return cge__err(CGE_ERR_IO, "%s: %s", what, strerror(errno));
        job_close_file(j);
        enum cge_status st = open_incomplete(j);
        if (st) return st;
        return retry_or_fail(j, cge__err(CGE_ERR_SERIALIZATION, "%s: HTTP 416 for bytes %lld-",
                                         what, (long long)j->have));
    }
    if (status != 200 && status != 206) {
        enum cge_status st = cge__hub_http_error(status, &j->h, what, j->body, pl->auth != NULL);
        return transient_status(status) ? retry_or_fail(j, st) : st;
    }
    if (j->have != j->size) {
        enum cge_status st = cge__err(CGE_ERR_IO, "%s: the transfer ended at %lld of %lld bytes",
                                      what, (long long)j->have, (long long)j->size);
        return retry_or_fail(j, st);
    }
    enum cge_status st = complete_blob(j);
    if (!st) finish_file(j, 1);
    return st;
}

/* ==== the loop ================================================================================ */
static enum cge_status run_jobs(struct pull *pl) {
    pl->m = curl_multi_init();
    if (!pl->m) return cge__err(CGE_ERR_NOMEM, "curl multi handle");
    int maxp = pl->p->max_parallel < 1 ? 1 : (pl->p->max_parallel > 32 ? 32 : pl->p->max_parallel);
    /* The number of active jobs bounds the transfers (each job has at most one request in
     * flight), so curl needs no connection limit of its own. */
    enum cge_status st = CGE_OK;
    int64_t last_tick = 0;
    while (!st && pl->n_finished < pl->n_jobs) {
        int64_t now = cge__now_us();
        int n_active = 0;
        for (int i = 0; i < pl->n_jobs; i++)
            n_active += pl->jobs[i].active;
        for (int i = 0; i < pl->n_jobs && n_active < maxp && !st; i++) {
            struct job *j = &pl->jobs[i];
            if (j->active || j->stage == ST_DONE || j->not_before > now) continue;
            if (j->stage == ST_HEAD && j->etag[0] && j->lock_waits) {
                st = after_head(j); /* waiting for another download of the same blob */
                if (st || j->stage == ST_DONE || j->not_before > now) continue;
            }
            if (!(st = start_request(j))) n_active++;
        }
        if (st) break;
        int running = 0;
        CURLMcode mc = curl_multi_perform(pl->m, &running);
        if (mc != CURLM_OK) {
            st = cge__err(CGE_ERR_IO, "curl: %s", curl_multi_strerror(mc));
            break;
        }
        CURLMsg *msg;
        int left, finished = 0;
        while (!st && (msg = curl_multi_info_read(pl->m, &left))) {
            finished++;
            if (msg->msg != CURLMSG_DONE) continue;
            char *priv = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            struct job *j = (struct job *)(void *)priv;
            CURLcode rc = msg->data.result;
            st = j->stage == ST_HEAD ? head_done(j, rc) : get_done(j, rc);
        }
        if (st) break;
        if (now - last_tick >= TICK_US) {
            report(pl, CGE_HUB_EV_TICK, NULL, NULL);
            last_tick = now;
        }
        /* A finished request usually makes the next one startable: go round at once rather
         * than wait in poll with nothing in flight. */
        if (!finished && pl->n_finished < pl->n_jobs) curl_multi_poll(pl->m, NULL, 0, 50, NULL);
    }
    for (int i = 0; i < pl->n_jobs; i++) {
        job_detach(&pl->jobs[i]);
        job_close_file(&pl->jobs[i]);
        job_unlock(&pl->jobs[i]);
    }
    curl_multi_cleanup(pl->m);
    pl->m = NULL;
    return st;
}

/* ==== the pull ================================================================================ */
/* The token `huggingface-cli login` saved: $HF_TOKEN_PATH, else $HF_HOME/token, else
 * ~/.cache/huggingface/token (as huggingface_hub looks for it). NULL when there is none. */
static char *read_token_file(void) {
    char p[CGE_HUB_PATH_MAX];
    const char *v;
    int k = -1;
    if ((v = getenv("HF_TOKEN_PATH")) && *v)
        k = snprintf(p, sizeof p, "%s", v);
    else if ((v = getenv("HF_HOME")) && *v)
        k = snprintf(p, sizeof p, "%s/token", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v)
        k = snprintf(p, sizeof p, "%s/huggingface/token", v);
    else if ((v = getenv("HOME")) && *v)
        k = snprintf(p, sizeof p, "%s/.cache/huggingface/token", v);
    if (k < 0 || (size_t)k >= sizeof p || !cge__file_exists(p)) return NULL;
    char *t = NULL;
    size_t n = 0;
    if (cge__read_file(p, 4096, &t, &n) != CGE_OK) {
        cge__err_clear();
        return NULL;
    }
    /* strip surrounding blanks and the newline */
    size_t a = 0;
    while (a < n && (t[a] == ' ' || t[a] == '\t' || t[a] == '\r' || t[a] == '\n'))
        a++;
    while (n > a && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\r' || t[n - 1] == '\n'))
        n--;
    memmove(t, t + a, n - a);
    t[n - a] = 0;
    return t;
}

static enum cge_status setup(struct pull *pl, const char *repo_id, const struct cge_hub_params *p,
                             char *cache, size_t cache_cap) {
    enum cge_status st;
    char folder[256];
    if ((st = cge_hub_repo_folder(repo_id, folder, sizeof folder))) return st;
    if (p->cache_dir) {
        int k = snprintf(cache, cache_cap, "%s", p->cache_dir);
        if (k < 0 || (size_t)k >= cache_cap) return cge__err(CGE_ERR_INVALID_VALUE, "too long");
    } else if ((st = cge_hub_cache_dir(cache, cache_cap))) {
        return st;
    }
    int k = snprintf(pl->repo_dir, sizeof pl->repo_dir, "%s/%s", cache, folder);
    int k2 = snprintf(pl->lock_dir, sizeof pl->lock_dir, "%s/.locks/%s", cache, folder);
    if (k < 0 || (size_t)k >= sizeof pl->repo_dir || k2 < 0 || (size_t)k2 >= sizeof pl->lock_dir)
        return cge__err(CGE_ERR_INVALID_VALUE, "cache path too long");
    const char *ep = p->endpoint ? p->endpoint : getenv("HF_ENDPOINT");
    if (!ep || !*ep) ep = "https://huggingface.co";
    k = snprintf(pl->endpoint, sizeof pl->endpoint, "%s", ep);
    if (k < 0 || (size_t)k >= sizeof pl->endpoint)
        return cge__err(CGE_ERR_INVALID_VALUE, "HF_ENDPOINT too long");
    while (k > 0 && pl->endpoint[k - 1] == '/')
        pl->endpoint[--k] = 0;
    if (strncmp(pl->endpoint, "http://", 7) && strncmp(pl->endpoint, "https://", 8))
        return cge__err(CGE_ERR_INVALID_VALUE, "HF_ENDPOINT '%s' is not an http(s) URL",
                        pl->endpoint);
    const char *tok = p->token ? p->token : getenv("HF_TOKEN");
    char *saved = NULL;
    if (!tok || !*tok) tok = saved = read_token_file();
    st = CGE_OK;
    if (tok && *tok) {
        for (const char *c = tok; *c && !st; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                st = cge__err(CGE_ERR_INVALID_VALUE, "the token (%s) holds a control character",
                              saved ? "token file" : "HF_TOKEN");
        size_t n = strlen(tok) + 32;
        if (!st && !(pl->auth = cge__malloc(n))) st = cge__err(CGE_ERR_NOMEM, "token");
        if (!st) snprintf(pl->auth, n, "Authorization: Bearer %s", tok);
    }
    if (saved) {
        explicit_bzero(saved, strlen(saved));
        cge__free(saved);
    }
    return st;
}

static void teardown(struct pull *pl) {
    if (pl->auth) {
        explicit_bzero(pl->auth, strlen(pl->auth));
        cge__free(pl->auth);
    }
    pl->auth = NULL;
    cge__free(pl->jobs);
    cge__free(pl->active);
    free_sibs(pl);
}

static int selected(const struct cge_hub_params *p, const char *path, int by_default) {
    int in = p->n_include ? 0 : by_default;
    for (int i = 0; i < p->n_include && !in; i++)
        in = cge_hub_match(p->include[i], path);
    for (int i = 0; i < p->n_exclude && in; i++)
        in = !cge_hub_match(p->exclude[i], path);
    return in;
}

enum cge_status cge_hub_pull(const char *repo_id, const char *revision,
                             const struct cge_hub_params *params, struct cge_hub_result *out) {
    struct cge_hub_params defaults;
    cge_hub_default_params(&defaults);
    const struct cge_hub_params *p = params ? params : &defaults;
    struct cge_hub_result res;
    memset(&res, 0, sizeof res);
    if (out) memset(out, 0, sizeof *out);
    if (!revision || !*revision) revision = "main";
    if (!cge__hub_safe_revision(revision))
        return cge__err(CGE_ERR_INVALID_VALUE, "'%s' is not a revision name", revision);
    struct pull pl;
    memset(&pl, 0, sizeof pl);
    pl.p = p;
    pl.repo_id = repo_id;
    pl.t0 = cge__now_us();
    char cache[CGE_HUB_PATH_MAX];
    enum cge_status st = setup(&pl, repo_id, p, cache, sizeof cache);
    int offline = p->offline >= 0 ? p->offline : cge__hub_env_true("HF_HUB_OFFLINE");
    if (!st && offline) {
        st = cge_hub_cache_lookup(cache, repo_id, revision, res.snapshot, sizeof res.snapshot,
                                  res.commit);
        if (st == CGE_ERR_MODEL_NOT_FOUND)
            st = cge__err(CGE_ERR_MODEL_NOT_FOUND,
                          "offline mode (HF_HUB_OFFLINE) and %s@%s is not in the cache %s", repo_id,
                          revision, cache);
        res.offline = 1;
        goto done;
    }
    if (st || (st = cge__hub_curl_init())) goto done;
    int net_err = 0;
    if ((st = fetch_listing(&pl, revision, &net_err))) {
        char snap[CGE_HUB_PATH_MAX], msg[1024];
        if (net_err) {
            snprintf(msg, sizeof msg, "%s", cge_errmsg());
            if (cge_hub_cache_lookup(cache, repo_id, revision, snap, sizeof snap, NULL) == CGE_OK)
                st = cge__err(st, "%s (a cached copy is at %s; HF_HUB_OFFLINE=1 uses it)", msg,
                              snap);
            else
                st = cge__err(st, "%s", msg);
        }
        goto done;
    }
    /* Select, and skip what the snapshot has already. */
    {
        const char **paths = cge__calloc((size_t)(pl.n_sibs ? pl.n_sibs : 1), sizeof *paths);
        unsigned char *def = cge__calloc((size_t)(pl.n_sibs ? pl.n_sibs : 1), 1);
        pl.jobs = cge__calloc((size_t)(pl.n_sibs ? pl.n_sibs : 1), sizeof *pl.jobs);
        pl.active = cge__calloc((size_t)(pl.n_sibs ? pl.n_sibs : 1), sizeof *pl.active);
        if (!paths || !def || !pl.jobs || !pl.active) {
            cge__free(paths);
            cge__free(def);
            st = cge__err(CGE_ERR_NOMEM, "file list");
            goto done;
        }
        for (int i = 0; i < pl.n_sibs; i++)
            paths[i] = pl.sibs[i].path;
        cge_hub_select_default(paths, pl.n_sibs, def);
        for (int i = 0; i < pl.n_sibs; i++) {
            if (!selected(p, pl.sibs[i].path, def[i])) continue;
            struct job *j = &pl.jobs[pl.n_jobs++];
            j->pl = &pl;
            j->sib = &pl.sibs[i];
            j->fd = -1;
            j->lock_fd = -1;
            j->size = pl.sibs[i].size;
            pl.bytes_total += pl.sibs[i].size > 0 ? pl.sibs[i].size : 0;
        }
        cge__free(paths);
        cge__free(def);
    }
    if (pl.n_jobs == 0) {
        st = cge__err(CGE_ERR_MODEL_NOT_FOUND,
                      "%s@%s: no file matches the selection (%d files in the repository)", repo_id,
                      revision, pl.n_sibs);
        goto done;
    }
    char blobs[CGE_HUB_PATH_MAX];
    int kb = snprintf(blobs, sizeof blobs, "%s/blobs", pl.repo_dir);
    if (kb < 0 || (size_t)kb >= sizeof blobs) {
        st = cge__err(CGE_ERR_INVALID_VALUE, "cache path too long");
        goto done;
    }
    if ((st = cge__hub_mkdirs(blobs)) || (st = cge__hub_mkdirs(pl.lock_dir))) goto done;
    report(&pl, CGE_HUB_EV_LISTED, NULL, NULL);
    for (int i = 0; i < pl.n_jobs; i++) {
        struct job *j = &pl.jobs[i];
        if (cge__hub_pointer_ok(pl.repo_dir, pl.commit, j->sib->path)) {
            char ptr[CGE_HUB_PATH_MAX];
            struct stat sb;
            int kp = snprintf(ptr, sizeof ptr, "%s/snapshots/%s/%s", pl.repo_dir, pl.commit,
                              j->sib->path);
            if (kp > 0 && (size_t)kp < sizeof ptr && stat(ptr, &sb) == 0)
                j->size = (int64_t)sb.st_size;
            finish_file(j, 0);
            continue;
        }
        struct cge_buf u;
        cge__buf_init(&u, URL_MAX - 1);
        st = cge__buf_printf(&u, "%s/%s/resolve/%s/", pl.endpoint, repo_id, pl.commit);
        if (!st) st = cge__hub_quote(j->sib->path, 1, &u);
        if (!st) memcpy(j->url, u.data, u.len + 1);
        cge__buf_free(&u);
        if (st) goto done;
    }
    if ((st = run_jobs(&pl))) goto done;
    /* refs last: a revision name never points at a snapshot that lacks files. */
    if (strcmp(revision, pl.commit) && (st = cge__hub_write_ref(pl.repo_dir, revision, pl.commit)))
        goto done;
    memcpy(res.commit, pl.commit, 41);
    int ks = snprintf(res.snapshot, sizeof res.snapshot, "%s/snapshots/%s", pl.repo_dir, pl.commit);
    if (ks < 0 || (size_t)ks >= sizeof res.snapshot) {
        st = cge__err(CGE_ERR_INVALID_VALUE, "cache path too long");
        goto done;
    }
    res.n_files = pl.n_jobs;
    res.n_fetched = pl.n_fetched;
    res.bytes_fetched = pl.bytes_fetched;
    res.bytes_total = pl.bytes_total;
    report(&pl, CGE_HUB_EV_TICK, NULL, NULL);
done:
    res.seconds = elapsed(&pl);
    teardown(&pl);
    if (out) *out = res;
    return st;
}
