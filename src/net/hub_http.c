/*
 * hub_http.c: the HTTP helpers of the Hub client over libcurl: shared request options, the
 * response headers the protocol reads, URL quoting and Location resolution, error messages.
 *
 * Key decision: headers are captured per response into fixed-size fields (a hostile server
 * cannot grow memory with them), and a new status line clears them, so after a transfer that
 * followed redirects they describe the last answer only.
 */
#include "net/net_internal.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ==== global init ============================================================================= */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum cge_status cge__hub_curl_init(void) {
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return cge__err(CGE_ERR_IO, "libcurl: %s", curl_easy_strerror(curl_init_rc));
    return CGE_OK;
}

/* ==== headers ================================================================================= */
struct hdr_field {
    const char *name;
    size_t off;
};

#define F(n, m) \
    { n, offsetof(struct cge__hub_headers, m) }
static const struct hdr_field fields[] = {
    F("etag", etag),
    F("x-linked-etag", linked_etag),
    F("x-linked-size", linked_size),
    F("x-repo-commit", repo_commit),
    F("location", location),
    F("content-length", content_length),
    F("content-range", content_range),
    F("x-error-code", error_code),
    F("x-error-message", error_message),
};
#undef F

static size_t on_header(char *data, size_t size, size_t nitems, void *user) {
    struct cge__hub_headers *h = user;
    size_t n = size * nitems;
    if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
        /* A new response (after a redirect, or a 100 Continue): forget the last one's. */
        memset(h, 0, sizeof *h);
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon) return n;
    size_t name_len = (size_t)(colon - data);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (strlen(fields[i].name) != name_len || strncasecmp(fields[i].name, data, name_len))
            continue;
        const char *v = colon + 1, *end = data + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        size_t len = (size_t)(end - v);
        char *dst = (char *)h + fields[i].off;
        if (len >= CGE_HUB_HDR_LEN) {
            h->too_long = 1;
            len = 0;
        }
        memcpy(dst, v, len);
        dst[len] = 0;
        break;
    }
    return n;
}

void cge__hub_easy_common(CURL *c, const struct cge_hub_params *p, struct cge__hub_headers *h,
                          char *errbuf) {
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cge/" CGE_VERSION_STRING " (libcurl)");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, p->connect_timeout_s);
    /* A stall (no byte for stall_timeout_s) fails the transfer; the retry resumes it. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, p->stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    /* Bodies exactly as stored: the sizes and checksums are of the raw bytes. */
    curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    errbuf[0] = 0;
}

/* ==== URLs ==================================================================================== */
enum cge_status cge__hub_quote(const char *s, int keep_slash, struct cge_buf *out) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        enum cge_status st;
        if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~' ||
            (keep_slash && *c == '/')) {
            st = cge__buf_append(out, c, 1);
        } else {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            st = cge__buf_append(out, e, 3);
        }
        if (st) return st;
    }
    return CGE_OK;
}

/* Length of "scheme://authority" of an absolute URL, 0 if not absolute. */
static size_t origin_len(const char *u) {
    const char *s = strstr(u, "://");
    if (!s) return 0;
    for (const char *c = u; c < s; c++)
        if (!isalpha((unsigned char)*c)) return 0;
    const char *a = s + 3;
    size_t n = strcspn(a, "/?#");
    return (size_t)(a - u) + n;
}

int cge__hub_same_origin(const char *a, const char *b) {
    size_t na = origin_len(a), nb = origin_len(b);
    return na && na == nb && !strncasecmp(a, b, na);
}

enum cge_status cge__hub_url_resolve(const char *base, const char *loc, char *out, size_t cap) {
    int k;
    size_t ob = origin_len(base);
    if (origin_len(loc)) {
        k = snprintf(out, cap, "%s", loc);
    } else if (loc[0] == '/' && loc[1] == '/') {
        const char *s = strstr(base, "://");
        if (!s) return cge__err(CGE_ERR_SERIALIZATION, "bad base URL");
        k = snprintf(out, cap, "%.*s:%s", (int)(s - base), base, loc);
    } else if (!ob) {
        return cge__err(CGE_ERR_SERIALIZATION, "bad base URL");
    } else if (loc[0] == '/') {
        k = snprintf(out, cap, "%.*s%s", (int)ob, base, loc);
    } else {
        /* relative to the base's folder */
        size_t qpos = strcspn(base, "?#");
        const char *last = base + ob;
        for (const char *c = base + ob; c < base + qpos; c++)
            if (*c == '/') last = c + 1;
        k = snprintf(out, cap, "%.*s%s%s", (int)(last - base), base, last == base + ob ? "/" : "",
                     loc);
    }
    if (k < 0 || (size_t)k >= cap) return cge__err(CGE_ERR_SERIALIZATION, "redirect URL too long");
    return CGE_OK;
}

void cge__hub_etag_normalize(char *s) {
    size_t n = strlen(s);
    if (n >= 2 && (s[0] == 'W' || s[0] == 'w') && s[1] == '/') {
        memmove(s, s + 2, n - 1);
        n -= 2;
    }
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        memmove(s, s + 1, n - 2);
        s[n - 2] = 0;
    }
}

int64_t cge__hub_parse_size(const char *s) {
    if (!s || !*s) return -1;
    int64_t v = 0;
    for (const char *c = s; *c; c++) {
        if (!isdigit((unsigned char)*c)) return -1;
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*c - '0');
    }
    return v;
}

/* ==== errors ================================================================================== */
enum cge_status cge__hub_http_error(long status, const struct cge__hub_headers *h, const char *what,
                                    const char *body, int had_token) {
    char srv[300] = "";
    const char *m = h && h->error_message[0] ? h->error_message : NULL;
    if (!m && body && *body) m = body;
    if (m) {
        /* One short printable line of the server's own words. */
        size_t j = 0;
        for (size_t i = 0; m[i] && j < 200; i++)
            srv[j++] = (unsigned char)m[i] >= 0x20 && m[i] != 0x7f ? m[i] : ' ';
        srv[j] = 0;
    }
    const char *code = h ? h->error_code : "";
    const char *sep = srv[0] ? " (server: " : "";
    const char *end = srv[0] ? ")" : "";
    if (status == 401 || status == 403 || !strcmp(code, "GatedRepo")) {
        if (had_token)
            return cge__err(CGE_ERR_IO,
                            "%s: HTTP %ld: access denied with the token given (HF_TOKEN or "
                            "the saved login); the repository is gated or private: accept its "
                            "terms on the Hub with this account, or use a token with read "
                            "access%s%s%s",
                            what, status, sep, srv, end);
        return cge__err(CGE_ERR_IO,
                        "%s: HTTP %ld: the repository is gated or private (or does not exist): "
                        "set HF_TOKEN to an access token of an account that may read it%s%s%s",
                        what, status, sep, srv, end);
    }
    if (status == 404) {
        const char *kind = "not found";
        if (!strcmp(code, "RepoNotFound"))
            kind = "repository not found";
        else if (!strcmp(code, "RevisionNotFound"))
            kind = "revision not found";
        else if (!strcmp(code, "EntryNotFound"))
            kind = "file not found";
        return cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s: HTTP 404: %s%s%s%s", what, kind, sep, srv,
                        end);
    }
    return cge__err(CGE_ERR_IO, "%s: HTTP %ld%s%s%s", what, status, sep, srv, end);
}
