/*
 * test_server_mcp_sessions.c: the MCP core's transport contract and the streamable HTTP
 * sessions, in process over the shared ensemble fixture: cge__mcp_handle's statuses (200 with a
 * reply, 202 with none, 400 for a parse error or an oversized message, a reply that is one line);
 * sessions opened by initialize only, 400 without the header, 404 for unknown and ended
 * sessions, 400 for an unsupported MCP-Protocol-Version, 202 for notifications, DELETE, the
 * bounded table evicting the least recently used session; and eight threads calling tools on
 * shared sessions while others are deleted and opened (ASan/TSan find what the refcount misses);
 * a request cancelled while the engine runs it gets no reply.
 */
#include "testhelp.h"

#include "core/core.h"
#include "server/mcp.h"
#include "server/mcp_http.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <unistd.h>

static struct cge_engine *engine;

static const char *init_msg =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
    "\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}";
static const char *ping_msg = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}";
static const char *notif_msg = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";

static void test_core_statuses(void) {
    struct cge__mcp *m = NULL;
    CHECK(cge__mcp_new(engine, NULL, &m) == CGE_OK && m);
    int st = 0;
    char *r = cge__mcp_handle(m, ping_msg, strlen(ping_msg), &st);
    CHECK(r && st == 200 && strstr(r, "\"result\":{}") && !strchr(r, '\n'));
    cge__free(r);
    r = cge__mcp_handle(m, notif_msg, strlen(notif_msg), &st);
    CHECK(!r && st == 202);
    r = cge__mcp_handle(m, "{oops", 5, &st);
    CHECK(r && st == 400 && strstr(r, "-32700"));
    cge__free(r);
    /* The length is the message's: bytes past it are not read (no NUL needed). */
    char buf[64];
    memcpy(buf, ping_msg, strlen(ping_msg));
    memset(buf + strlen(ping_msg), 'x', sizeof buf - strlen(ping_msg));
    r = cge__mcp_handle(m, buf, strlen(ping_msg), &st);
    CHECK(r && st == 200 && strstr(r, "\"result\""));
    cge__free(r);
    r = cge__mcp_handle(m, ping_msg, CGE__MCP_MAX_MESSAGE + 1, &st); /* never read: too long */
    CHECK(r && st == 400 && strstr(r, "-32600"));
    cge__free(r);
    r = cge__mcp_handle(m, ping_msg, strlen(ping_msg), NULL); /* status may be NULL */
    CHECK(r != NULL);
    cge__free(r);
    /* A tool call through the core: the fused vector is unit length. */
    const char *call =
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
        "\"embed\",\"arguments\":{\"text\":\"hello\"}}}";
    r = cge__mcp_handle(m, call, strlen(call), &st);
    cJSON *d = r ? cJSON_Parse(r) : NULL;
    const cJSON *emb = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(d, "result"), "structuredContent"), "embedding");
    double nn = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, emb) nn += x->valuedouble * x->valuedouble;
    CHECK_MSG(cJSON_GetArraySize(emb) == 1536 && fabs(nn - 1) < 1e-4, "norm^2 %g", nn);
    cJSON_Delete(d);
    cge__free(r);
    cge__mcp_free(m);
    cge__mcp_free(NULL);
    CHECK(cge__mcp_new(engine, "tests/no_such_folder", &m) == CGE_ERR_IO && !m);
    CHECK(cge__mcp_new(NULL, NULL, &m) != CGE_OK && !m);
}

/* Opens a session; returns its id in id (33 bytes) or "" on failure. */
static void open_session(struct cge__mcp_sessions *s, char *id) {
    struct cge__mcp_http_answer a;
    cge__mcp_sessions_post(s, NULL, NULL, init_msg, strlen(init_msg), &a);
    CHECK_MSG(a.status == 200 && a.body && strstr(a.body, "\"protocolVersion\":\"2025-06-18\""),
              "initialize: %d %.200s", a.status, a.body ? a.body : "");
    CHECK(strlen(a.session_id) == CGE__MCP_SESSION_ID_LEN);
    strcpy(id, a.session_id);
    cge__free(a.body);
}

static int post_status(struct cge__mcp_sessions *s, const char *id, const char *version,
                       const char *msg, const char *needle) {
    struct cge__mcp_http_answer a;
    cge__mcp_sessions_post(s, id, version, msg, strlen(msg), &a);
    if (needle && !(a.body && strstr(a.body, needle))) {
        printf("  body %.200s lacks %s\n", a.body ? a.body : "(none)", needle);
        a.status = -a.status;
    }
    cge__free(a.body);
    return a.status;
}

static void test_sessions(void) {
    struct cge__mcp_sessions *s = NULL;
    CHECK(cge__mcp_sessions_new(engine, NULL, 2, &s) == CGE_OK && s);
    if (!s) return;
    CHECK(post_status(s, NULL, NULL, ping_msg, "Mcp-Session-Id") == 400);
    CHECK(post_status(s, NULL, NULL, "[1,", "-32700") == 400);
    CHECK(post_status(s, NULL, NULL, notif_msg, "Mcp-Session-Id") == 400);
    /* A failed initialize opens nothing. */
    CHECK(post_status(s, NULL, NULL,
                      "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}",
                      "protocolVersion") == 200);
    CHECK(cge__mcp_sessions_count(s) == 0);
    char a[40], b[40], c[40];
    open_session(s, a);
    open_session(s, b);
    CHECK(strcmp(a, b) != 0);
    CHECK(cge__mcp_sessions_count(s) == 2);
    CHECK(post_status(s, a, "2025-06-18", ping_msg, "\"result\"") == 200);
    CHECK(post_status(s, a, NULL, notif_msg, NULL) == 202);
    CHECK(post_status(s, a, "2023-01-01", ping_msg, "MCP-Protocol-Version") == 400);
    CHECK(post_status(s, "0123456789abcdef0123456789abcdef", NULL, ping_msg, "Session not found") ==
          404);
    CHECK(post_status(s, a, NULL, "nope", "-32700") == 400);
    /* Full table: the least recently used session (b: a was used since) makes room. */
    open_session(s, c);
    CHECK(cge__mcp_sessions_count(s) == 2);
    CHECK(post_status(s, b, NULL, ping_msg, NULL) == 404);
    CHECK(post_status(s, a, NULL, ping_msg, NULL) == 200);
    CHECK(post_status(s, c, NULL, ping_msg, NULL) == 200);
    CHECK(cge__mcp_sessions_delete(s, c) == 200);
    CHECK(cge__mcp_sessions_delete(s, c) == 404);
    CHECK(cge__mcp_sessions_delete(s, NULL) == 400);
    CHECK(post_status(s, c, NULL, ping_msg, NULL) == 404);
    CHECK(cge__mcp_sessions_count(s) == 1);
    cge__mcp_sessions_free(s);
    cge__mcp_sessions_free(NULL);
    CHECK(cge__mcp_sessions_new(engine, "tests/no_such_folder", 0, &s) != CGE_OK && !s);
}

/* ---- threads --------------------------------------------------------------------------------- */

static struct cge__mcp_sessions *shared;
static char shared_ids[4][40];
static pthread_mutex_t ids_mu = PTHREAD_MUTEX_INITIALIZER;
static int thread_bad;

static void *hammer(void *arg) {
    int t = (int)(intptr_t)arg;
    char msg[300], id[40];
    for (int i = 0; i < 30; i++) {
        pthread_mutex_lock(&ids_mu);
        strcpy(id, shared_ids[(t + i) % 4]);
        pthread_mutex_unlock(&ids_mu);
        if (t == 0 && i % 5 == 4) { /* one thread ends a session and opens a new one */
            cge__mcp_sessions_delete(shared, id);
            struct cge__mcp_http_answer a;
            cge__mcp_sessions_post(shared, NULL, NULL, init_msg, strlen(init_msg), &a);
            pthread_mutex_lock(&ids_mu);
            if (a.status == 200) strcpy(shared_ids[(t + i) % 4], a.session_id);
            pthread_mutex_unlock(&ids_mu);
            cge__free(a.body);
            continue;
        }
        snprintf(msg, sizeof msg,
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"%s\",\"arguments\":%s}}",
                 i, i % 3 ? "embed" : "health",
                 i % 3 ? "{\"text\":\"thread text\",\"output\":\"both\"}" : "{}");
        struct cge__mcp_http_answer a;
        cge__mcp_sessions_post(shared, id, NULL, msg, strlen(msg), &a);
        /* 404 is right when the session was just ended; anything else must be a result. */
        int ok = a.status == 404 || (a.status == 200 && a.body && strstr(a.body, "\"result\""));
        if (!ok) __atomic_add_fetch(&thread_bad, 1, __ATOMIC_RELAXED);
        cge__free(a.body);
    }
    return NULL;
}

static void test_threads(void) {
    CHECK(cge__mcp_sessions_new(engine, NULL, 8, &shared) == CGE_OK);
    for (int i = 0; i < 4; i++)
        open_session(shared, shared_ids[i]);
    pthread_t th[8];
    for (int t = 0; t < 8; t++)
        pthread_create(&th[t], NULL, hammer, (void *)(intptr_t)t);
    for (int t = 0; t < 8; t++)
        pthread_join(th[t], NULL);
    CHECK_MSG(thread_bad == 0, "%d answers were neither results nor 404", thread_bad);
    CHECK(cge__mcp_sessions_count(shared) <= 8);
    cge__mcp_sessions_free(shared);
}

/* ---- cancellation of a running request ------------------------------------------------------- */

struct slow_call {
    struct cge__mcp *m;
    char *msg;
    char *reply;
    int status;
};

static void *run_slow(void *arg) {
    struct slow_call *c = arg;
    c->reply = cge__mcp_handle(c->m, c->msg, strlen(c->msg), &c->status);
    return NULL;
}

static void test_cancel_running(void) {
    struct slow_call c = {0};
    CHECK(cge__mcp_new(engine, NULL, &c.m) == CGE_OK);
    /* 12 distinct texts of 2 KB: 0.7 s in the engine here (more under ASan), far longer than
     * the cancellation takes. */
    struct cge_buf b;
    cge__buf_init(&b, (size_t)1 << 24);
    cge__buf_printf(&b, "{\"jsonrpc\":\"2.0\",\"id\":\"slow\",\"method\":\"tools/call\",\"params\":"
                        "{\"name\":\"embed_batch\",\"arguments\":{\"inputs\":[");
    for (int i = 0; i < 12; i++) {
        cge__buf_printf(&b, "%s{\"text\":\"%d", i ? "," : "", i);
        for (int k = 0; k < 200; k++)
            cge__buf_printf(&b, " word%d", (i * 7 + k) % 997);
        cge__buf_printf(&b, "\"}");
    }
    cge__buf_printf(&b, "]}}}");
    c.msg = b.data;
    pthread_t th;
    pthread_create(&th, NULL, run_slow, &c);
    /* Wait until the call is inside the engine, then cancel it. */
    struct cge_engine_stats st;
    int inside = 0;
    for (int i = 0; i < 20000 && !inside; i++) {
        cge_engine_get_stats(engine, &st);
        inside = st.in_flight > 0;
        if (!inside) usleep(100);
    }
    CHECK_MSG(inside, "the slow call never showed in the engine's in_flight");
    const char *cancel = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                         "{\"requestId\":\"slow\",\"reason\":\"test\"}}";
    int cst = 0;
    char *r = cge__mcp_handle(c.m, cancel, strlen(cancel), &cst);
    CHECK(!r && cst == 202);
    cge_engine_get_stats(engine, &st);
    int still_running = st.in_flight > 0;
    pthread_join(th, NULL);
    /* The batch runs for far longer than the cancellation takes; if it did not, the check
     * below would test nothing, so that is a failure too (make the batch longer). */
    CHECK_MSG(still_running, "the slow call ended before its cancellation was handled");
    CHECK_MSG(!c.reply && c.status == 202, "a request cancelled while it ran was answered: %.100s",
              c.reply ? c.reply : "");
    cge__free(c.reply);
    cge__buf_free(&b);
    cge__mcp_free(c.m);
}

int main(void) {
    enum cge_status st = cge_engine_open("tests/fixtures/ensemble/ensemble", NULL, &engine);
    CHECK_MSG(st == CGE_OK, "engine: %s", cge_errmsg());
    if (st != CGE_OK) return test_report("server_mcp_sessions");
    RUN(test_core_statuses);
    RUN(test_sessions);
    RUN(test_threads);
    RUN(test_cancel_running);
    cge_engine_close(engine);
    return test_report("server_mcp_sessions");
}
