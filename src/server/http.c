/*
 * http.c: the HTTP server core: libmicrohttpd daemon, request life cycle, worker pool, limits,
 * metrics of the server's own, request log lines, graceful drain. Routes live in routes.c.
 *
 * A request's life: (1) its headers arrive: it is matched to a route and checked (draining 503,
 * unknown path 404, key 401, method 405, Content-Length over the limit 413) and answered at once
 * when a check fails, before any body byte is read; (2) its body is read into a bounded buffer;
 * a body that grows past the limit (chunked uploads) is answered 413, one that trickles past the
 * request deadline is cut; (3) a worker route takes a worker if one is free (else 429 with
 * Retry-After), its connection is suspended until the worker resumes it with the answer; other
 * routes are answered on the epoll thread; (4) when the answer is sent, the completion callback
 * counts it, logs one line and frees the request.
 *
 * Design: the worker pool is the concurrency limit, so there is no queue in the server to grow:
 * the engine's batcher is the queue. libmicrohttpd's connection timeout closes idle connections
 * (slow headers); its epoll threads hold no worker while a client is slow.
 */
#include "server/http.h"
#include "server/wire.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS  64
#define MAX_EXTRA    8
#define N_CODES      500 /* statuses 100..599 */
#define N_BUCKETS    14
static const double bucket_le[N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,    10,   30};

struct cge__http_req {
    struct cge__http_server *srv;
    struct MHD_Connection *conn;
    const struct cge__http_route *route; /* NULL: no route matched */
    size_t route_idx;                    /* metrics row: cge__http_n_routes = "other" */
    char method[16];
    char path[256];                      /* for the log line (cut) */
    struct cge_buf body;
    size_t discarded;                    /* body bytes dropped after the limit */
    int too_big;                         /* the body passed the payload limit */
    int queued;                          /* the answer was handed to libmicrohttpd */
    int done;                            /* a worker answered; send on resume */
    int n_headers;
    char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS];
    /* the answer */
    int status;
    char *resp;
    size_t resp_len;
    int resp_static;
    const char *ctype;
    int n_extra;
    char *extra[MAX_EXTRA][2];
    int64_t items;
    int64_t t0_us;
    struct cge__http_req *next;          /* worker queue link */
};

struct route_metrics {
    uint64_t codes[N_CODES];
    uint64_t buckets[N_BUCKETS]; /* non-cumulative; made cumulative when printed */
    uint64_t count;
    double sum;
};

struct cge__http_server {
    struct cge_engine *engine;
    struct cge__http_params p;
    char *host, *api_key, *admin_key, *allow_files; /* owned copies of the params' strings */
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t work;          /* a job is queued (or stopping) */
    pthread_cond_t idle;          /* n_busy or n_open went down */
    struct cge__http_req *q_head, *q_tail;
    int n_busy;                   /* worker requests accepted and not yet answered */
    int n_open;                   /* requests begun and not yet completed */
    int stopping;
    atomic_int draining;
    pthread_t *workers;
    int n_workers;
    pthread_mutex_t mmu;          /* metrics */
    struct route_metrics *rm;     /* [cge__http_n_routes + 1] */
};

void cge__http_default_params(struct cge__http_params *p) {
    memset(p, 0, sizeof *p);
    p->host = "127.0.0.1";
    p->port = 8080;
    p->max_concurrent = 64;
    p->max_client_batch = 256;
    p->payload_limit = (size_t)2 << 20;
    p->request_timeout_ms = 30000;
    p->conn_timeout_s = 10;
    p->io_threads = 2;
}

/* ==== small accessors ======================================================================== */
struct cge_engine *cge__http_engine(struct cge__http_req *r) {
    return r->srv->engine;
}
const struct cge__http_model *cge__http_model(struct cge__http_req *r) {
    return r->srv->p.model;
}
const struct cge__http_params *cge__http_params(struct cge__http_req *r) {
    return &r->srv->p;
}
struct cge__http_server *cge__http_server_of(struct cge__http_req *r) {
    return r->srv;
}
int cge__http_draining(struct cge__http_server *s) {
    return atomic_load(&s->draining);
}
int cge__http_port(const struct cge__http_server *s) {
    return s->port;
}
const char *cge__http_body(struct cge__http_req *r, size_t *len) {
    if (len) *len = r->body.len;
    return r->body.data ? r->body.data : "";
}
void cge__http_set_items(struct cge__http_req *r, int64_t n) {
    r->items = n;
}
int64_t cge__http_ms_left(struct cge__http_req *r) {
    int64_t left = (r->t0_us + r->srv->p.request_timeout_ms * 1000 - cge__now_us()) / 1000;
    return left < 1 ? 1 : left;
}

const char *cge__http_header(struct cge__http_req *r, const char *name) {
    for (int i = 0; i < r->n_headers; i++)
        if (!strcasecmp(r->hname[i], name)) return r->hvalue[i];
    return NULL;
}

/* Equal strings, in time that depends on the lengths only. */
static int same_secret(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i < lb ? i : 0]);
    return diff == 0 && lb > 0;
}

int cge__http_check_bearer(struct cge__http_req *r, const char *key) {
    const char *h = cge__http_header(r, "Authorization");
    if (!h || !key || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    return same_secret(h, key);
}

/* ==== answers ================================================================================ */
static void set_answer(struct cge__http_req *r, int status, const char *ctype, char *body,
                       size_t len, int is_static) {
    if (r->status) { /* answered twice: keep the first, free the second */
        if (!is_static) cge__free(body);
        return;
    }
    r->status = status;
    r->ctype = ctype;
    r->resp = body;
    r->resp_len = len;
    r->resp_static = is_static;
}

void cge__http_reply(struct cge__http_req *r, int status, const char *content_type, char *body,
                     size_t len) {
    set_answer(r, status, content_type, body, body ? len : 0, 0);
}

void cge__http_reply_static(struct cge__http_req *r, int status, const char *content_type,
                            const char *body) {
    set_answer(r, status, content_type, (char *)body, strlen(body), 1);
}

static const char *error_type(int status) {
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 422: return "unprocessable_entity";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    case 504: return "timeout_error";
    default: return "server_error";
    }
}

void cge__http_error(struct cge__http_req *r, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct cge_buf b;
    cge__buf_init(&b, (size_t)64 << 10);
    enum cge_status st = cge__buf_printf(&b, "{\"error\":{\"message\":");
    if (!st) st = cge__wire_string(&b, msg);
    if (!st) st = cge__buf_printf(&b, ",\"type\":\"%s\",\"code\":%d}}", error_type(status), status);
    if (st) {
        cge__buf_free(&b);
        cge__http_reply_static(r, status, "application/json",
                               "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                               "\"code\":500}}");
        return;
    }
    cge__http_reply(r, status, "application/json", b.data, b.len);
}

void cge__http_add_header(struct cge__http_req *r, const char *name, const char *value) {
    if (r->n_extra >= MAX_EXTRA) return;
    char *n = cge__strdup(name), *v = cge__strdup(value);
    if (!n || !v) {
        cge__free(n);
        cge__free(v);
        return;
    }
    r->extra[r->n_extra][0] = n;
    r->extra[r->n_extra][1] = v;
    r->n_extra++;
}

/* Hands the answer to libmicrohttpd. */
static enum MHD_Result send_answer(struct cge__http_req *r) {
    if (!r->status) cge__http_error(r, 500, "the route gave no answer");
    struct MHD_Response *resp;
    if (r->resp_static || !r->resp)
        resp = MHD_create_response_from_buffer(r->resp_len, r->resp ? r->resp : (char *)"",
                                               MHD_RESPMEM_PERSISTENT);
    else
        resp = MHD_create_response_from_buffer_with_free_callback(r->resp_len, r->resp,
                                                                  cge__free);
    if (!resp) return MHD_NO;
    if (!r->resp_static) r->resp = NULL; /* the response owns it now */
    if (r->ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    for (int i = 0; i < r->n_extra; i++)
        MHD_add_response_header(resp, r->extra[i][0], r->extra[i][1]);
    /* Draining: tell keep-alive clients to go elsewhere next time. */
    if (atomic_load(&r->srv->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->queued = 1;
    return ret;
}

/* ==== metrics and the log line =============================================================== */
static void record(struct cge__http_server *s, struct cge__http_req *r, double secs) {
    pthread_mutex_lock(&s->mmu);
    struct route_metrics *m = &s->rm[r->route_idx];
    if (r->status >= 100 && r->status < 100 + N_CODES) m->codes[r->status - 100]++;
    int k = 0;
    while (k < N_BUCKETS && secs > bucket_le[k]) k++;
    if (k < N_BUCKETS) m->buckets[k]++;
    m->count++;
    m->sum += secs;
    pthread_mutex_unlock(&s->mmu);
}

static void log_line(struct cge__http_server *s, struct cge__http_req *r, double secs) {
    if (s->p.quiet) return;
    char line[768];
    /* The path is client text: print it printable only, so a log line stays one line. */
    char path[sizeof r->path];
    size_t k = 0;
    for (const char *p = r->path; *p && k + 1 < sizeof path; p++)
        path[k++] = (*p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : '?';
    path[k] = '\0';
    if (s->p.log_json) {
        snprintf(line, sizeof line,
                 "{\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,\"items\":%lld,"
                 "\"latency_ms\":%.3f}\n",
                 r->method, path, r->status, (long long)r->items, secs * 1e3);
    } else {
        snprintf(line, sizeof line, "%s %s %d items=%lld %.3fms\n", r->method, path, r->status,
                 (long long)r->items, secs * 1e3);
    }
    fputs(line, stderr);
}

static void json_label(struct cge_buf *b, const char *s) {
    /* Prometheus label values escape \, " and newline. Paths in the table have none. */
    cge__buf_append(b, s, strlen(s));
}

enum cge_status cge__http_metrics_text(struct cge__http_server *s, struct cge_buf *b) {
    size_t n = cge__http_n_routes + 1;
    struct route_metrics *copy = cge__malloc(n * sizeof *copy);
    if (!copy) return cge__err(CGE_ERR_NOMEM, "metrics");
    pthread_mutex_lock(&s->mmu);
    memcpy(copy, s->rm, n * sizeof *copy);
    pthread_mutex_unlock(&s->mmu);
    enum cge_status st = cge__buf_printf(
        b, "# HELP cge_requests_total HTTP requests answered, by route and status.\n"
           "# TYPE cge_requests_total counter\n");
    for (size_t i = 0; !st && i < n; i++) {
        const char *route = i < cge__http_n_routes ? cge__http_routes[i].path : "other";
        for (int c = 0; !st && c < N_CODES; c++) {
            if (!copy[i].codes[c]) continue;
            st = cge__buf_printf(b, "cge_requests_total{route=\"");
            json_label(b, route);
            if (!st)
                st = cge__buf_printf(b, "\",status=\"%d\"} %llu\n", c + 100,
                                     (unsigned long long)copy[i].codes[c]);
        }
    }
    if (!st)
        st = cge__buf_printf(
            b, "# HELP cge_request_duration_seconds Time from a request's headers to its answer.\n"
               "# TYPE cge_request_duration_seconds histogram\n");
    for (size_t i = 0; !st && i < n; i++) {
        const char *route = i < cge__http_n_routes ? cge__http_routes[i].path : "other";
        /* One series per route, printed whether or not it was used, so rates start at 0. */
        uint64_t cum = 0;
        for (int k = 0; !st && k < N_BUCKETS; k++) {
            cum += copy[i].buckets[k];
            st = cge__buf_printf(b, "cge_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                                    "%llu\n",
                                 route, bucket_le[k], (unsigned long long)cum);
        }
        if (!st)
            st = cge__buf_printf(b,
                                 "cge_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                                 "%llu\n"
                                 "cge_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                                 "cge_request_duration_seconds_count{route=\"%s\"} %llu\n",
                                 route, (unsigned long long)copy[i].count, route, copy[i].sum,
                                 route, (unsigned long long)copy[i].count);
    }
    pthread_mutex_lock(&s->mu);
    int busy = s->n_busy, open = s->n_open;
    pthread_mutex_unlock(&s->mu);
    if (!st)
        st = cge__buf_printf(b,
                             "# HELP cge_http_requests_in_flight Requests begun, not yet answered.\n"
                             "# TYPE cge_http_requests_in_flight gauge\n"
                             "cge_http_requests_in_flight %d\n"
                             "# HELP cge_http_workers_busy Workers running a request (the "
                             "concurrency limit is cge_http_workers).\n"
                             "# TYPE cge_http_workers_busy gauge\n"
                             "cge_http_workers_busy %d\n"
                             "# TYPE cge_http_workers gauge\n"
                             "cge_http_workers %d\n",
                             open, busy, s->n_workers - 1);
    cge__free(copy);
    return st;
}

/* ==== the request life cycle ================================================================= */
static enum MHD_Result copy_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    struct cge__http_req *r = cls;
    if (r->n_headers >= MAX_HEADERS || !key) return MHD_YES;
    char *k = cge__strdup(key), *v = cge__strdup(value ? value : "");
    if (!k || !v) {
        cge__free(k);
        cge__free(v);
        return MHD_NO;
    }
    r->hname[r->n_headers] = k;
    r->hvalue[r->n_headers] = v;
    r->n_headers++;
    return MHD_YES;
}

static void req_free(struct cge__http_req *r) {
    if (!r) return;
    cge__buf_free(&r->body);
    for (int i = 0; i < r->n_headers; i++) {
        cge__free(r->hname[i]);
        cge__free(r->hvalue[i]);
    }
    for (int i = 0; i < r->n_extra; i++) {
        cge__free(r->extra[i][0]);
        cge__free(r->extra[i][1]);
    }
    if (!r->resp_static) cge__free(r->resp);
    cge__free(r);
}

/* The checks made on the headers alone. Returns 1 when the request is answered. */
static int check_headers(struct cge__http_server *s, struct cge__http_req *r, const char *url) {
    if (atomic_load(&s->draining)) {
        cge__http_error(r, 503, "the server is shutting down");
        return 1;
    }
    const struct cge__http_route *path_match = NULL;
    for (size_t i = 0; i < cge__http_n_routes; i++) {
        const struct cge__http_route *rt = &cge__http_routes[i];
        if (strcmp(rt->path, url) != 0) continue;
        if (!path_match) path_match = rt;
        if (!strcmp(rt->method, r->method) ||
            (!strcmp(r->method, "HEAD") && !strcmp(rt->method, "GET"))) {
            r->route = rt;
            r->route_idx = i;
            break;
        }
    }
    const struct cge__http_route *rt = r->route ? r->route : path_match;
    unsigned flags = rt ? rt->flags : 0;
    if (flags & CGE__ROUTE_ADMIN) {
        if (!s->admin_key) {
            r->route = NULL;
            r->route_idx = cge__http_n_routes;
            cge__http_error(r, 404, "no route %s (admin routes need --admin-key)", url);
            return 1;
        }
        if (!cge__http_check_bearer(r, s->admin_key)) {
            cge__http_add_header(r, "WWW-Authenticate", "Bearer");
            cge__http_error(r, 401, "admin routes need \"Authorization: Bearer <admin key>\"");
            return 1;
        }
    } else if (!(flags & CGE__ROUTE_OPEN) && s->api_key &&
               !cge__http_check_bearer(r, s->api_key)) {
        /* Unknown paths too: without the key, nothing about the routes is told. */
        cge__http_add_header(r, "WWW-Authenticate", "Bearer");
        cge__http_error(r, 401, "missing or wrong API key (\"Authorization: Bearer <key>\")");
        return 1;
    }
    if (!rt) {
        cge__http_error(r, 404, "no route %s", url);
        return 1;
    }
    if (!r->route) {
        char allow[64] = "";
        for (size_t i = 0; i < cge__http_n_routes; i++) {
            if (strcmp(cge__http_routes[i].path, url) != 0) continue;
            size_t l = strlen(allow);
            snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "",
                     cge__http_routes[i].method);
        }
        cge__http_add_header(r, "Allow", allow);
        cge__http_error(r, 405, "%s does not take %s (allowed: %s)", url, r->method, allow);
        return 1;
    }
    const char *cl = cge__http_header(r, "Content-Length");
    if (cl) {
        char *end = NULL;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || n > s->p.payload_limit) {
            cge__http_error(r, 413, "request body of %s bytes is over the limit of %zu bytes", cl,
                            s->p.payload_limit);
            return 1;
        }
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    struct cge__http_server *s = cls;
    struct cge__http_req *r = *con_cls;
    if (!r) {
        r = cge__calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t0_us = cge__now_us();
        r->route_idx = cge__http_n_routes;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        cge__buf_init(&r->body, s->p.payload_limit);
        *con_cls = r;
        pthread_mutex_lock(&s->mu);
        s->n_open++;
        pthread_mutex_unlock(&s->mu);
        MHD_get_connection_values(conn, MHD_HEADER_KIND, copy_header, r);
        if (check_headers(s, r, url)) return send_answer(r);
        return MHD_YES;
    }
    if (r->queued) { /* answered before the body: drop what still arrives */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        /* A body still trickling in past the deadline (plus the idle allowance, so a tiny
         * --request-timeout does not cut ordinary uploads): cut the connection. */
        if (cge__now_us() - r->t0_us >
            (s->p.request_timeout_ms + (int64_t)s->p.conn_timeout_s * 1000) * 1000)
            return MHD_NO;
        if (!r->too_big && cge__buf_append(&r->body, upload_data, n) != CGE_OK) {
            r->too_big = 1;
            cge__buf_free(&r->body);
        }
        if (r->too_big) {
            /* The answer can only go after the body (libmicrohttpd's rule for chunked
             * uploads); drop it, and cut a client that sends far more than the limit. */
            r->discarded += n;
            if (r->discarded > 4 * s->p.payload_limit + ((size_t)1 << 20)) return MHD_NO;
        }
        return MHD_YES;
    }
    /* The whole request is here. */
    if (r->done) return send_answer(r);
    if (r->too_big) {
        cge__http_error(r, 413, "request body is over the limit of %zu bytes",
                        s->p.payload_limit);
        return send_answer(r);
    }
    if (!(r->route->flags & CGE__ROUTE_WORKER)) {
        r->route->handle(r);
        return send_answer(r);
    }
    pthread_mutex_lock(&s->mu);
    const int limit = r->route->flags & CGE__ROUTE_ADMIN ? s->n_workers : s->n_workers - 1;
    int verdict = atomic_load(&s->draining) ? 503 : s->n_busy >= limit ? 429 : 0;
    if (!verdict) s->n_busy++;
    pthread_mutex_unlock(&s->mu);
    if (verdict == 503) {
        cge__http_error(r, 503, "the server is shutting down");
        return send_answer(r);
    }
    if (verdict == 429) {
        cge__http_add_header(r, "Retry-After", "1");
        cge__http_error(r, 429, "all %d workers are busy (--max-concurrent-requests); retry",
                        limit);
        return send_answer(r);
    }
    MHD_suspend_connection(conn);
    pthread_mutex_lock(&s->mu);
    r->next = NULL;
    if (s->q_tail) s->q_tail->next = r;
    else s->q_head = r;
    s->q_tail = r;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    (void)toe;
    struct cge__http_server *s = cls;
    struct cge__http_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    double secs = (double)(cge__now_us() - r->t0_us) / 1e6;
    if (r->queued) {
        record(s, r, secs);
        log_line(s, r, secs);
    }
    req_free(r);
    pthread_mutex_lock(&s->mu);
    s->n_open--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

static void *worker_main(void *arg) {
    struct cge__http_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->q_head && !s->stopping) pthread_cond_wait(&s->work, &s->mu);
        struct cge__http_req *r = s->q_head;
        if (!r) { /* stopping, and nothing left to run */
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        s->q_head = r->next;
        if (!s->q_head) s->q_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        r->route->handle(r);
        if (!r->status) cge__http_error(r, 500, "the route gave no answer");
        r->done = 1;
        pthread_mutex_lock(&s->mu);
        s->n_busy--;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mu);
        MHD_resume_connection(r->conn);
    }
}

/* ==== start and stop ========================================================================= */
static char *dup_or_null(const char *s) {
    return s && *s ? cge__strdup(s) : NULL;
}

static void server_free(struct cge__http_server *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->mmu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    cge__free(s->host);
    cge__free(s->api_key);
    cge__free(s->admin_key);
    cge__free(s->allow_files);
    cge__free(s->workers);
    cge__free(s->rm);
    cge__free(s);
}

static void stop_workers(struct cge__http_server *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++) pthread_join(s->workers[i], NULL);
    s->n_workers = 0;
}

enum cge_status cge__http_start(struct cge_engine *e, const struct cge__http_params *p,
                                struct cge__http_server **out) {
    *out = NULL;
    if (!p || (e != NULL) == (p->model != NULL && p->model->m != NULL) ||
        p->max_concurrent < 1 || p->port < 0 || p->port > 65535 ||
        p->payload_limit < 1 || p->request_timeout_ms < 1)
        return cge__err(CGE_ERR_INVALID_VALUE, "serve: bad server parameters");
    struct cge__http_server *s = cge__calloc(1, sizeof *s);
    if (!s) return cge__err(CGE_ERR_NOMEM, "serve: server");
    s->engine = e;
    s->p = *p;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->mmu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    atomic_init(&s->draining, 0);
    s->host = cge__strdup(p->host ? p->host : "127.0.0.1");
    s->api_key = dup_or_null(p->api_key);
    s->admin_key = dup_or_null(p->admin_key);
    s->allow_files = dup_or_null(p->allow_files);
    s->rm = cge__calloc(cge__http_n_routes + 1, sizeof *s->rm);
    /* one worker more than --max-concurrent-requests, kept for the admin routes, so that a swap
     * or an unload goes through while the embedding requests fill every other worker */
    s->workers = cge__calloc((size_t)p->max_concurrent + 1, sizeof *s->workers);
    if (!s->host || !s->rm || !s->workers || (p->api_key && *p->api_key && !s->api_key) ||
        (p->admin_key && *p->admin_key && !s->admin_key) ||
        (p->allow_files && *p->allow_files && !s->allow_files)) {
        server_free(s);
        return cge__err(CGE_ERR_NOMEM, "serve: server");
    }
    s->p.host = s->host;
    s->p.api_key = s->api_key;
    s->p.admin_key = s->admin_key;
    s->p.allow_files = s->allow_files;

    /* The address: numeric or a name, IPv4 or IPv6. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        server_free(s);
        return cge__err(CGE_ERR_INVALID_VALUE, "serve: --host %s: %s", p->host,
                        gai_strerror(gai));
    }

    for (int i = 0; i < p->max_concurrent + 1; i++) {
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
            stop_workers(s);
            freeaddrinfo(ai);
            server_free(s);
            return cge__err(CGE_ERR_NOMEM, "serve: cannot start worker %d", i);
        }
        s->n_workers = i + 1;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_TURBO;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    int io = p->io_threads > 0 ? p->io_threads : 2;
    s->d = MHD_start_daemon(
        flags, (uint16_t)p->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)io, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(p->conn_timeout_s > 0 ? p->conn_timeout_s : 10), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)1000, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)128 << 10,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)512, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        s, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        stop_workers(s);
        server_free(s);
        return cge__err(CGE_ERR_IO, "serve: cannot listen on %s:%d (in use, or not an address "
                                    "of this machine)",
                        p->host, p->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : p->port;
    *out = s;
    return CGE_OK;
}

void cge__http_drain(struct cge__http_server *s, int64_t timeout_ms) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(timeout_ms / 1000);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while ((s->n_open > 0 || s->n_busy > 0) &&
           pthread_cond_timedwait(&s->idle, &s->mu, &until) == 0) {
    }
    pthread_mutex_unlock(&s->mu);
}

void cge__http_stop(struct cge__http_server *s) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    /* Workers first: each finishes its request and resumes its connection, so no connection
     * is left suspended when the daemon stops. */
    stop_workers(s);
    MHD_stop_daemon(s->d);
    server_free(s);
}
