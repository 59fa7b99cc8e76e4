/*
 * mcp_http.c: the sessions of MCP's streamable HTTP transport (see mcp_http.h).
 *
 * The rules kept here (MCP 2025-06-18 and 2025-03-26, "Streamable HTTP"): a POST carries one
 * message; an initialize request without a session opens one, and its answer carries the new
 * Mcp-Session-Id; every later POST must carry that header (400 without it, 404 when the session
 * is unknown or was ended, which tells the client to initialize again); a POST of notifications
 * or responses only is answered 202 with no body; an MCP-Protocol-Version header naming a
 * version cge does not speak is a 400. Answers are JSON, never SSE: cge sends no requests or
 * notifications of its own, so a stream would only ever hold the one reply.
 *
 * A session is reference counted: a DELETE (or an eviction) while one of its requests runs takes
 * it out of the table at once, and the request's end frees it.
 */
#include "server/mcp_http.h"

#include "core/core.h"
#include "server/mcp.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define IDLE_EXPIRY_US ((int64_t)3600 * 1000000) /* an idle hour ends a session */

struct session {
    char id[CGE__MCP_SESSION_ID_LEN + 1];
    struct cge__mcp *mcp;
    int refs;        /* requests running on it (guarded by the table's mu) */
    int removed;     /* out of the table: the last request frees it */
    int64_t last_us; /* last use, for eviction and expiry */
};

struct cge__mcp_sessions {
    struct cge_engine *e; /* not owned */
    char *allow;          /* --allow-files, or NULL */
    int max;              /* sessions kept at once */
    pthread_mutex_t mu;   /* guards tab, n and every session's refs/removed/last_us */
    struct session **tab;
    int n;
};

static void session_free(struct session *x) {
    if (!x) return;
    cge__mcp_free(x->mcp);
    cge__free(x);
}

/* Takes tab[i] out of the table (mu held); returns it when nobody uses it (free it then). */
static struct session *take_out(struct cge__mcp_sessions *s, int i) {
    struct session *x = s->tab[i];
    s->tab[i] = s->tab[--s->n];
    x->removed = 1;
    return x->refs == 0 ? x : NULL;
}

static int find(struct cge__mcp_sessions *s, const char *id) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->tab[i]->id, id)) return i;
    return -1;
}

static void new_id(char *out) {
    unsigned char r[CGE__MCP_SESSION_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof r) { /* no getrandom: the clock and the address space, still unguessable
                             enough to tell sessions apart, which is all an id does here */
        uint64_t t = (uint64_t)cge__now_us() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = got; i < sizeof r; i++) {
            t = t * 6364136223846793005ull + 1442695040888963407ull;
            r[i] = (unsigned char)(t >> 56);
        }
    }
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* A JSON-RPC error as a whole answer (the transport's own failures). */
static void answer_error(struct cge__mcp_http_answer *out, int status, int code, const char *msg) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddNullToObject(r, "id");
    cJSON *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    out->status = status;
    out->body = s ? cge__strdup(s) : NULL;
    cJSON_free(s);
}

static int is_initialize(const cJSON *m) {
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(m, "method");
    return cJSON_IsObject(m) && cJSON_IsString(method) &&
           !strcmp(method->valuestring, "initialize") && cJSON_GetObjectItemCaseSensitive(m, "id");
}

/* 1 when the message (or a batch) holds an initialize request. */
static int opens_session(const char *body, size_t len, int *parsed) {
    cJSON *d = cJSON_ParseWithLength(body, len);
    *parsed = d != NULL;
    int init = is_initialize(d);
    const cJSON *it;
    if (cJSON_IsArray(d)) cJSON_ArrayForEach(it, d) init |= is_initialize(it);
    cJSON_Delete(d);
    return init;
}

/* 1 when the reply holds a result (the initialize succeeded). */
static int has_result(const char *reply) {
    cJSON *d = reply ? cJSON_Parse(reply) : NULL;
    int ok = cJSON_GetObjectItemCaseSensitive(d, "result") != NULL;
    const cJSON *it;
    if (cJSON_IsArray(d))
        cJSON_ArrayForEach(it, d) ok |= cJSON_GetObjectItemCaseSensitive(it, "result") != NULL;
    cJSON_Delete(d);
    return ok;
}

void cge__mcp_sessions_post(struct cge__mcp_sessions *s, const char *session_id,
                            const char *version, const char *body, size_t len,
                            struct cge__mcp_http_answer *out) {
    memset(out, 0, sizeof *out);
    if (version && strcmp(version, "2025-06-18") && strcmp(version, "2025-03-26") &&
        strcmp(version, "2024-11-05")) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "Bad Request: MCP-Protocol-Version '%.60s' is not one cge speaks (2025-06-18, "
                 "2025-03-26, 2024-11-05)",
                 version);
        answer_error(out, 400, -32600, msg);
        return;
    }
    if (len > CGE__MCP_MAX_MESSAGE) {
        answer_error(out, 413, -32600, "Invalid Request: message over the size limit");
        return;
    }
    if (!session_id) {
        int parsed = 0;
        if (!opens_session(body, len, &parsed)) {
            if (!parsed) {
                answer_error(out, 400, -32700, "Parse error: not valid JSON");
                return;
            }
            answer_error(out, 400, -32600,
                         "Bad Request: no Mcp-Session-Id header (send initialize first to open "
                         "a session)");
            return;
        }
        struct session *x = cge__calloc(1, sizeof *x);
        if (!x || cge__mcp_new(s->e, s->allow, &x->mcp) != CGE_OK) {
            cge__free(x);
            answer_error(out, 500, -32603, "Internal error: cannot open a session");
            return;
        }
        int st = 0;
        char *reply = cge__mcp_handle(x->mcp, body, len, &st);
        if (!has_result(reply)) { /* the initialize failed: no session */
            session_free(x);
            out->status = reply ? st : 500;
            out->body = reply;
            return;
        }
        new_id(x->id);
        x->last_us = cge__now_us();
        struct session *gone[2] = {NULL, NULL};
        pthread_mutex_lock(&s->mu);
        /* Room: expired sessions go, then the least recently used idle one if still full. */
        for (int i = s->n - 1; i >= 0; i--) {
            if (s->tab[i]->refs == 0 && x->last_us - s->tab[i]->last_us > IDLE_EXPIRY_US) {
                struct session *t = take_out(s, i);
                session_free(gone[0]);
                gone[0] = t;
            }
        }
        if (s->n >= s->max) {
            int lru = -1;
            for (int i = 0; i < s->n; i++)
                if (s->tab[i]->refs == 0 && (lru < 0 || s->tab[i]->last_us < s->tab[lru]->last_us))
                    lru = i;
            if (lru >= 0) gone[1] = take_out(s, lru);
        }
        int added = s->n < s->max;
        if (added) s->tab[s->n++] = x;
        pthread_mutex_unlock(&s->mu);
        session_free(gone[0]);
        session_free(gone[1]);
        if (!added) {
            session_free(x);
            cge__free(reply);
            answer_error(out, 503, -32603, "Server busy: too many MCP sessions in use");
            return;
        }
        memcpy(out->session_id, x->id, sizeof out->session_id);
        out->status = st;
        out->body = reply;
        return;
    }
    pthread_mutex_lock(&s->mu);
    int i = find(s, session_id);
    struct session *x = i >= 0 ? s->tab[i] : NULL;
    if (x) {
        x->refs++;
        x->last_us = cge__now_us();
    }
    pthread_mutex_unlock(&s->mu);
    if (!x) {
        answer_error(out, 404, -32001, "Session not found: initialize again");
        return;
    }
    int st = 0;
    out->body = cge__mcp_handle(x->mcp, body, len, &st);
    out->status = st;
    pthread_mutex_lock(&s->mu);
    int last = --x->refs == 0 && x->removed;
    pthread_mutex_unlock(&s->mu);
    if (last) session_free(x);
}

int cge__mcp_sessions_delete(struct cge__mcp_sessions *s, const char *session_id) {
    if (!session_id) return 400;
    pthread_mutex_lock(&s->mu);
    int i = find(s, session_id);
    struct session *x = i >= 0 ? take_out(s, i) : NULL;
    pthread_mutex_unlock(&s->mu);
    session_free(x);
    return i >= 0 ? 200 : 404;
}

int cge__mcp_sessions_count(struct cge__mcp_sessions *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

enum cge_status cge__mcp_sessions_new(struct cge_engine *e, const char *allow_files,
                                      int max_sessions, struct cge__mcp_sessions **out) {
    *out = NULL;
    /* Check the folder once, as a session would. */
    struct cge__mcp *probe = NULL;
    enum cge_status st = cge__mcp_new(e, allow_files, &probe);
    if (st != CGE_OK) return st;
    cge__mcp_free(probe);
    struct cge__mcp_sessions *s = cge__calloc(1, sizeof *s);
    if (!s) return cge__err(CGE_ERR_NOMEM, "mcp sessions");
    s->e = e;
    s->max = max_sessions > 0 ? max_sessions : 256;
    s->tab = cge__calloc((size_t)s->max, sizeof *s->tab);
    s->allow = allow_files ? cge__strdup(allow_files) : NULL;
    pthread_mutex_init(&s->mu, NULL);
    if (!s->tab || (allow_files && !s->allow)) {
        cge__mcp_sessions_free(s);
        return cge__err(CGE_ERR_NOMEM, "mcp sessions");
    }
    *out = s;
    return CGE_OK;
}

void cge__mcp_sessions_free(struct cge__mcp_sessions *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++)
        session_free(s->tab[i]);
    cge__free(s->tab);
    cge__free(s->allow);
    pthread_mutex_destroy(&s->mu);
    cge__free(s);
}
