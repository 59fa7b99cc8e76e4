/*
 * http.h: the HTTP server of `cge serve` (libmicrohttpd) over one engine.
 *
 * Design: libmicrohttpd's epoll threads read requests and write answers, and never run the
 * engine: a route that embeds (a "worker" route) is handed to a fixed pool of worker threads
 * while its connection is suspended, and resumed with the answer. So a slow client holds a
 * connection slot, never a worker; the pool's size is the concurrency limit (one more request
 * is answered 429 at once, with Retry-After); the engine batches what the workers submit at the
 * same time. Routes are one table (routes.c): method, path, handler, flags; a route is a few
 * lines there. Every answer is counted in the metrics and logged in one line when it completes.
 *
 * Thread safety: handlers run on worker threads (worker routes) or on the epoll threads (the
 * others); everything a handler reaches through the server is thread-safe.
 */
#ifndef CGE_SERVER_HTTP_H
#define CGE_SERVER_HTTP_H

#include "cge.h"
#include "core/core.h"

#include <stddef.h>
#include <stdint.h>

struct cge__mcp_sessions;

/* `cge serve --model DIR`: one model folder served alone, no engine (no fusion, no slots, no
 * cache, no batching across requests: each request is one cge_model_embed call). */
struct cge__http_model {
    const struct cge_model *m; /* not owned */
    const char *id;            /* the name clients give as "model" (and /v1/models lists) */
    const char *path;          /* the folder, as /info shows it */
};

struct cge__http_params {
    const char *host;          /* "127.0.0.1" */
    int port;                  /* 8080; 0 picks a free port (cge__http_port says which) */
    const char *api_key;       /* bearer key of every route but /health and the page (NULL: open) */
    const char *admin_key;     /* bearer key of the admin routes; NULL: they are off (404) */
    int max_concurrent;        /* worker routes running at once (the worker pool); 64 */
    int max_client_batch;      /* inputs in one request; 256 */
    size_t payload_limit;      /* request body bytes; 2 MiB */
    int64_t request_timeout_ms;/* engine deadline of one request; 30000 */
    int conn_timeout_s;        /* an idle connection is closed after this; 10 */
    const char *allow_files;   /* folder media paths may name; NULL: paths refused */
    int log_json;              /* 1: one JSON object per request log line */
    int quiet;                 /* 1: no request log lines */
    int io_threads;            /* epoll threads; 0 = 2 */
    struct cge__mcp_sessions *mcp; /* POST/DELETE /mcp: MCP's streamable HTTP transport
                                      (mcp_http.h; not owned); NULL: /mcp answers 404 */
    const struct cge__http_model *model; /* --model: serve this one model (not owned); the
                                            engine is then NULL. NULL: the engine */
};
void cge__http_default_params(struct cge__http_params *p);

struct cge__http_server;

/* Starts listening and serving `e` (not owned; it must outlive the server), or p->model when e
 * is NULL. On failure *out is NULL and cge_errmsg() says why (port in use, bad host). */
enum cge_status cge__http_start(struct cge_engine *e, const struct cge__http_params *p,
                                struct cge__http_server **out);
/* The port the server listens on (the real one when started with port 0). */
int cge__http_port(const struct cge__http_server *s);
/* Graceful shutdown, step 1: stop accepting connections, answer new requests on open ones 503,
 * and wait (at most timeout_ms) for the requests already running to be answered. */
void cge__http_drain(struct cge__http_server *s, int64_t timeout_ms);
/* Stops the threads and frees the server. NULL is a no-op. */
void cge__http_stop(struct cge__http_server *s);

/* ==== What a route handler sees ==============================================================
 * A request with its body read in full; the handler answers with cge__http_reply or
 * cge__http_error (once). The request and its strings live until the answer is sent. */
struct cge__http_req;

struct cge__http_route {
    const char *method; /* "GET", "POST" */
    const char *path;   /* exact path ("/v1/embeddings") */
    void (*handle)(struct cge__http_req *r);
    unsigned flags;     /* CGE__ROUTE_* */
    const char *name;   /* metrics label ("embeddings") */
};
#define CGE__ROUTE_OPEN   1u /* no API key needed (/health, the page) */
#define CGE__ROUTE_ADMIN  2u /* needs --admin-key's token instead of the API key */
#define CGE__ROUTE_WORKER 4u /* runs on a worker thread and counts against the limit */

/* The route table (routes.c) and its length. */
extern const struct cge__http_route cge__http_routes[];
extern const size_t cge__http_n_routes;

struct cge_engine *cge__http_engine(struct cge__http_req *r);
/* The one model of `cge serve --model` (then cge__http_engine is NULL), or NULL. */
const struct cge__http_model *cge__http_model(struct cge__http_req *r);
const struct cge__http_params *cge__http_params(struct cge__http_req *r);
const char *cge__http_body(struct cge__http_req *r, size_t *len);
/* A request header (case-insensitive name), or NULL. */
const char *cge__http_header(struct cge__http_req *r, const char *name);
/* 1 when the request carries "Authorization: Bearer KEY" (compared in constant time). */
int cge__http_check_bearer(struct cge__http_req *r, const char *key);
/* Milliseconds left before the request's deadline (its start + request_timeout_ms); >= 1. */
int64_t cge__http_ms_left(struct cge__http_req *r);
/* The number of inputs the request carried, for the log line and the metrics. */
void cge__http_set_items(struct cge__http_req *r, int64_t n);

/* Answers with body (owned from now on: cge__free'd after sending; NULL for none). */
void cge__http_reply(struct cge__http_req *r, int status, const char *content_type, char *body,
                     size_t len);
/* Answers with a static body (not freed). */
void cge__http_reply_static(struct cge__http_req *r, int status, const char *content_type,
                            const char *body);
/* Answers {"error": {"message": ..., "type": ..., "code": status}}; the type follows the
 * status (invalid_request_error, authentication_error, ...). */
void cge__http_error(struct cge__http_req *r, int status, const char *fmt, ...) CGE_PRINTF(3, 4);
/* Adds a response header (copied) to the answer about to be sent. At most 8. */
void cge__http_add_header(struct cge__http_req *r, const char *name, const char *value);

/* The Prometheus text of the server's own counters (requests by route and status, durations),
 * appended to b. */
enum cge_status cge__http_metrics_text(struct cge__http_server *s, struct cge_buf *b);
struct cge__http_server *cge__http_server_of(struct cge__http_req *r);
/* 1 while draining (health answers 503). */
int cge__http_draining(struct cge__http_server *s);

#endif /* CGE_SERVER_HTTP_H */
