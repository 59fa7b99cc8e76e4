/*
 * test_server_mcp_stdio.c: `cge mcp` over its stdio transport, driven with raw JSON-RPC through
 * pipes, as an agent's client would: <build>/cge mcp --ensemble tests/fixtures/ensemble/ensemble
 * --allow-files tests/fixtures/ensemble runs as a subprocess.
 *
 * Checks: version negotiation (each supported version, an unknown and a newer one; the tool list
 * each version gets); every protocol error (-32700, -32600, -32601, -32602 naming the parameter)
 * and tool failures as isError results; batches; notifications and responses interleaved with
 * requests (never answered); a request cancelled before it ran; 1 MB messages (four images as
 * base64 in one batch, whitespace, garbage); a 64 KB text; a message over the 64 MiB limit; deep
 * nesting; and the embed tool's vectors against the shared fixture's expected.jsonl (embedding
 * and expert_weights max abs <= 1e-5, selected equal in order, slot vectors rel <= 1e-5 and null
 * where the fixture has null), by path and by base64, one by one and as one embed_batch. Every stdout line must be JSON (logs go to
 * stderr only), and EOF on stdin must end the server with status 0.
 */
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 60000 /* the longest wait for one reply (ASan builds load twelve models) */

static char cge_bin[1024];

static int find_cge(void) {
    return th_find_cge(cge_bin, sizeof cge_bin);
}

/* ==== the child and its pipes ================================================================= */

static pid_t child = -1;
static int to_child = -1, from_child = -1;
static char *inbox; /* bytes read from the child, not yet taken as lines */
static size_t inbox_len, inbox_cap;
static int child_eof;
static int n_bad_lines; /* stdout lines that were not JSON */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int spawn(void) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return 0;
    child = fork();
    if (child < 0) return 0;
    if (child == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (!getenv("MCP_TEST_STDERR") && devnull >= 0) dup2(devnull, 2);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(cge_bin, cge_bin, "mcp", "--ensemble", "tests/fixtures/ensemble/ensemble",
              "--allow-files", "tests/fixtures/ensemble", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_child = in[1];
    from_child = out[0];
    fcntl(to_child, F_SETFL, fcntl(to_child, F_GETFL) | O_NONBLOCK);
    fcntl(from_child, F_SETFL, fcntl(from_child, F_GETFL) | O_NONBLOCK);
    return 1;
}

/* Reads what the child has written (waits up to ms for something). */
static void pump(int ms) {
    struct pollfd p = {.fd = from_child, .events = POLLIN};
    if (child_eof || poll(&p, 1, ms) <= 0) return;
    for (;;) {
        if (inbox_cap - inbox_len < 65536) {
            inbox_cap = inbox_cap ? inbox_cap * 2 : 1 << 20;
            inbox = realloc(inbox, inbox_cap);
        }
        ssize_t n = read(from_child, inbox + inbox_len, inbox_cap - inbox_len);
        if (n > 0) {
            inbox_len += (size_t)n;
            continue;
        }
        if (n == 0) child_eof = 1;
        return;
    }
}

/* Writes all of s (+ a newline), reading the child's output meanwhile so neither side blocks. */
static void send_raw(const char *s, size_t n, int newline) {
    size_t off = 0;
    int64_t t0 = now_ms();
    while (off < n + (size_t)newline && now_ms() - t0 < WAIT_MS) {
        const char *p = off < n ? s + off : "\n";
        size_t left = off < n ? n - off : 1;
        ssize_t w = write(to_child, p, left);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN) break;
        struct pollfd fds[2] = {{.fd = to_child, .events = POLLOUT},
                                {.fd = from_child, .events = POLLIN}};
        poll(fds, 2, 100);
        if (fds[1].revents) pump(0);
    }
    CHECK_MSG(off == n + (size_t)newline, "wrote %zu of %zu bytes", off, n);
}

static void send_line(const char *s) {
    send_raw(s, strlen(s), 1);
}

/* The next stdout line as JSON (NULL after WAIT_MS or at EOF). */
static cJSON *next_msg(int wait_ms) {
    int64_t t0 = now_ms();
    for (;;) {
        char *nl = inbox_len ? memchr(inbox, '\n', inbox_len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - inbox);
            cJSON *d = cJSON_ParseWithLength(inbox, n);
            if (!d) {
                n_bad_lines++;
                printf("  stdout line is not JSON: %.100s\n", inbox);
            }
            memmove(inbox, nl + 1, inbox_len - n - 1);
            inbox_len -= n + 1;
            if (d) return d;
            continue;
        }
        if (child_eof || now_ms() - t0 >= wait_ms) return NULL;
        pump(100);
    }
}

/* Replies that came while waiting for another id. */
static cJSON *stash[64];
static int n_stash;

static int id_is(const cJSON *msg, const char *id_json) {
    const cJSON *id = cJSON_GetObjectItem(msg, "id");
    if (!id) return 0;
    char *s = cJSON_PrintUnformatted(id);
    int eq = s && !strcmp(s, id_json);
    cJSON_free(s);
    return eq;
}

/* The reply whose id prints as id_json ("7", "\"a\"", "null"). */
static cJSON *wait_reply(const char *id_json) {
    for (int i = 0; i < n_stash; i++) {
        if (id_is(stash[i], id_json)) {
            cJSON *r = stash[i];
            stash[i] = stash[--n_stash];
            return r;
        }
    }
    for (;;) {
        cJSON *d = next_msg(WAIT_MS);
        if (!d) {
            printf("  no reply with id %s\n", id_json);
            return NULL;
        }
        if (id_is(d, id_json)) return d;
        if (n_stash < 64)
            stash[n_stash++] = d;
        else
            cJSON_Delete(d);
    }
}

/* Sends a request built from fmt and returns its reply (ids are numbers chosen here). */
static int next_id = 1000;
static cJSON *call(const char *method, const char *params_json) {
    int id = next_id++;
    size_t n = strlen(params_json ? params_json : "") + strlen(method) + 100;
    char *msg = malloc(n);
    snprintf(msg, n, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\"%s%s}", id, method,
             params_json ? ",\"params\":" : "", params_json ? params_json : "");
    send_line(msg);
    free(msg);
    char ids[32];
    snprintf(ids, sizeof ids, "%d", id);
    return wait_reply(ids);
}

static cJSON *call_tool(const char *name, const char *args_json) {
    size_t n = strlen(args_json) + 100;
    char *p = malloc(n);
    snprintf(p, n, "{\"name\":\"%s\",\"arguments\":%s}", name, args_json);
    cJSON *r = call("tools/call", p);
    free(p);
    return r;
}

static const cJSON *result_of(const cJSON *r) {
    return cJSON_GetObjectItem(r, "result");
}

static int error_code(const cJSON *r) {
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code");
    return cJSON_IsNumber(c) ? c->valueint : 0;
}

static const char *error_msg(const cJSON *r) {
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "message");
    return cJSON_IsString(m) ? m->valuestring : "";
}

/* A JSON-RPC error with this code whose message contains `needle`. */
#define CHECK_ERR(r, code, needle)                                              \
    CHECK_MSG((r) && error_code(r) == (code) && strstr(error_msg(r), (needle)), \
              "expected error %d naming '%s', got %.300s", (code), (needle),    \
              (r) ? cJSON_PrintUnformatted(r) : "nothing")

/* A tool result with isError true whose text contains `needle`. */
static int is_tool_error(const cJSON *r, const char *needle) {
    const cJSON *res = result_of(r);
    const cJSON *t =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(res, "content"), 0), "text");
    return cJSON_IsTrue(cJSON_GetObjectItem(res, "isError")) && cJSON_IsString(t) &&
           strstr(t->valuestring, needle) != NULL;
}

/* Sends a ping and checks that the very next line is its reply: nothing else was answered. */
static void check_nothing_pending(const char *what) {
    send_line("{\"jsonrpc\":\"2.0\",\"id\":\"sync\",\"method\":\"ping\"}");
    cJSON *d = next_msg(WAIT_MS);
    CHECK_MSG(d && id_is(d, "\"sync\"") && cJSON_IsObject(result_of(d)),
              "%s: the next line should be the ping's reply, got %.200s", what,
              d ? cJSON_PrintUnformatted(d) : "nothing");
    cJSON_Delete(d);
}

static char *b64(const unsigned char *p, size_t n);

/* ==== the checks ============================================================================== */

static void test_negotiation(void) {
    static const struct {
        const char *asked, *want;
    } cases[] = {{"2024-11-05", "2024-11-05"},
                 {"2025-03-26", "2025-03-26"},
                 {"1999-01-01", "2025-06-18"},
                 {"2025-11-25", "2025-06-18"},
                 {"2025-06-18", "2025-06-18"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[300];
        snprintf(p, sizeof p,
                 "{\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\","
                 "\"version\":\"1\"}}",
                 cases[i].asked);
        cJSON *r = call("initialize", p);
        const cJSON *res = result_of(r);
        const cJSON *v = cJSON_GetObjectItem(res, "protocolVersion");
        CHECK_MSG(cJSON_IsString(v) && !strcmp(v->valuestring, cases[i].want),
                  "asked %s: got %s, want %s", cases[i].asked,
                  cJSON_IsString(v) ? v->valuestring : "?", cases[i].want);
        const cJSON *si = cJSON_GetObjectItem(res, "serverInfo");
        CHECK(cJSON_IsString(cJSON_GetObjectItem(si, "name")) &&
              !strcmp(cJSON_GetObjectItem(si, "name")->valuestring, "cge"));
        CHECK(cJSON_IsString(cJSON_GetObjectItem(si, "version")));
        CHECK(
            cJSON_IsObject(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "capabilities"), "tools")));
        const cJSON *ins = cJSON_GetObjectItem(res, "instructions");
        CHECK(cJSON_IsString(ins) && strstr(ins->valuestring, "embed_batch"));
        cJSON_Delete(r);
        send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");

        /* The tool list as that version reads it. */
        r = call("tools/list", NULL);
        const cJSON *tools = cJSON_GetObjectItem(result_of(r), "tools");
        CHECK(cJSON_GetArraySize(tools) == 5);
        int n_out = 0, n_ann = 0, n_in = 0;
        const char *names[5] = {"embed", "embed_batch", "similarity", "models", "health"};
        for (int k = 0; k < 5; k++) {
            const cJSON *t = cJSON_GetArrayItem(tools, k);
            CHECK(t && !strcmp(cJSON_GetObjectItem(t, "name")->valuestring, names[k]));
            const cJSON *is = cJSON_GetObjectItem(t, "inputSchema");
            n_in += cJSON_IsObject(is) &&
                    !strcmp(cJSON_GetObjectItem(is, "type")->valuestring, "object");
            n_out += cJSON_GetObjectItem(t, "outputSchema") != NULL;
            n_ann += cJSON_GetObjectItem(t, "annotations") != NULL;
        }
        int newest = !strcmp(cases[i].want, "2025-06-18");
        CHECK_MSG(n_in == 5, "%s: %d tools with an object inputSchema", cases[i].want, n_in);
        CHECK_MSG(n_out == (newest ? 5 : 0), "%s: %d outputSchemas", cases[i].want, n_out);
        CHECK_MSG(n_ann == (!strcmp(cases[i].want, "2024-11-05") ? 0 : 5), "%s: %d annotations",
                  cases[i].want, n_ann);
        if (newest) { /* the embed tool's schemas, spliced together */
            const cJSON *e = cJSON_GetArrayItem(tools, 0);
            const cJSON *props =
                cJSON_GetObjectItem(cJSON_GetObjectItem(e, "inputSchema"), "properties");
            CHECK(cJSON_GetObjectItem(props, "text") &&
                  cJSON_GetObjectItem(props, "image_base64") &&
                  cJSON_GetObjectItem(props, "output"));
            const cJSON *b = cJSON_GetArrayItem(tools, 1);
            const cJSON *items = cJSON_GetObjectItem(
                cJSON_GetObjectItem(
                    cJSON_GetObjectItem(cJSON_GetObjectItem(b, "inputSchema"), "properties"),
                    "inputs"),
                "items");
            CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(items, "properties"), "audio_path"));
        }
        cJSON_Delete(r);
    }
    cJSON *r = call("initialize", "{\"capabilities\":{}}");
    CHECK_ERR(r, -32602, "protocolVersion");
    cJSON_Delete(r);
    r = call("initialize", "{\"protocolVersion\":20250618}");
    CHECK_ERR(r, -32602, "protocolVersion");
    cJSON_Delete(r);
    r = call("ping", NULL);
    CHECK(cJSON_IsObject(result_of(r)) && !result_of(r)->child);
    cJSON_Delete(r);
}

static void test_protocol_errors(void) {
    cJSON *r;
    /* -32700: not JSON, truncated JSON, trailing garbage. */
    const char *bad[] = {"not json", "{\"jsonrpc\":\"2.0\",\"id\":1,", "{\"a\":1} x",
                         "\"unterminated", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        send_line(bad[i]);
        r = wait_reply("null");
        CHECK_ERR(r, -32700, "Parse error");
        cJSON_Delete(r);
    }
    /* -32600: not a JSON-RPC request. */
    static const struct {
        const char *msg, *id, *needle;
    } inval[] = {
        {"{\"jsonrpc\":\"1.0\",\"id\":6,\"method\":\"ping\"}", "6", "jsonrpc"},
        {"{\"id\":7,\"method\":\"ping\"}", "7", "jsonrpc"},
        {"{\"jsonrpc\":\"2.0\",\"id\":8}", "8", "method"},
        {"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":5}", "9", "method"},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", "null", "id"},
        {"{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"method\":\"ping\"}", "null", "id"},
        {"{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}", "null", "id"},
        {"42", "null", "Invalid Request"},
        {"\"ping\"", "null", "Invalid Request"},
        {"[]", "null", "empty batch"},
        {"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"ping\",\"params\":\"x\"}", "10", "params"},
    };
    for (size_t i = 0; i < sizeof inval / sizeof inval[0]; i++) {
        send_line(inval[i].msg);
        r = wait_reply(inval[i].id);
        CHECK_ERR(r, -32600, inval[i].needle);
        cJSON_Delete(r);
    }
    /* -32601 */
    r = call("tools/nope", NULL);
    CHECK_ERR(r, -32601, "tools/nope");
    cJSON_Delete(r);
    r = call("resources/list", "{}");
    CHECK_ERR(r, -32601, "resources/list");
    cJSON_Delete(r);
    /* A string id comes back as the same string. */
    send_line("{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"nope\"}");
    r = wait_reply("\"abc\"");
    CHECK_ERR(r, -32601, "nope");
    cJSON_Delete(r);
    /* -32602, naming the parameter. */
    static const struct {
        const char *method, *params, *needle;
    } params[] = {
        {"tools/list", "[1]", "params"},
        {"tools/call", "{}", "params.name"},
        {"tools/call", "{\"name\":5}", "params.name"},
        {"tools/call", "{\"name\":\"nope\",\"arguments\":{}}", "params.name: unknown tool 'nope'"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":[1]}", "params.arguments"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{}}", "arguments: expected exactly one"},
        {"tools/call", "{\"name\":\"embed\"}", "arguments: expected exactly one"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"text\":5}}", "arguments.text"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"txt\":\"hi\"}}", "arguments.txt"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"text\":\"a\",\"code\":\"b\"}}",
         "exactly one"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"text\":\"a\",\"role\":\"boss\"}}",
         "arguments.role"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"text\":\"a\",\"instruction\":1}}",
         "arguments.instruction"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"text\":\"a\",\"language\":\"c\"}}",
         "arguments.language"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"text\":\"a\",\"output\":\"all\"}}",
         "arguments.output"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"image_base64\":\"!!!!\"}}",
         "arguments.image_base64"},
        {"tools/call", "{\"name\":\"embed\",\"arguments\":{\"audio_base64\":\"\"}}",
         "arguments.audio_base64"},
        {"tools/call",
         "{\"name\":\"embed\",\"arguments\":{\"image_base64\":\"QUJD\",\"role\":\"query\"}}",
         "arguments.role"},
        {"tools/call", "{\"name\":\"embed_batch\",\"arguments\":{\"inputs\":[]}}",
         "arguments.inputs"},
        {"tools/call", "{\"name\":\"embed_batch\",\"arguments\":{\"inputs\":\"a\"}}",
         "arguments.inputs"},
        {"tools/call", "{\"name\":\"embed_batch\",\"arguments\":{}}", "arguments.inputs"},
        {"tools/call",
         "{\"name\":\"embed_batch\",\"arguments\":{\"inputs\":[{\"text\":\"a\"},{\"text\":[]}]}}",
         "arguments.inputs[1].text"},
        {"tools/call", "{\"name\":\"embed_batch\",\"arguments\":{\"inputs\":[{\"text\":\"a\"},7]}}",
         "arguments.inputs[1]"},
        {"tools/call", "{\"name\":\"similarity\",\"arguments\":{\"a\":{\"text\":\"x\"}}}",
         "arguments.b"},
        {"tools/call",
         "{\"name\":\"similarity\",\"arguments\":{\"a\":{\"text\":\"x\"},\"b\":{\"texts\":\"y\"}}}",
         "arguments.b.texts"},
        {"tools/call", "{\"name\":\"models\",\"arguments\":{\"x\":1}}", "arguments.x"},
        {"tools/call", "{\"name\":\"health\",\"arguments\":{\"verbose\":true}}",
         "arguments.verbose"},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        r = call(params[i].method, params[i].params);
        CHECK_ERR(r, -32602, params[i].needle);
        cJSON_Delete(r);
    }
    /* Tool failures are results with isError, and say why. */
    r = call_tool("embed", "{\"image_base64\":\"aGVsbG8gd29ybGQ=\"}"); /* "hello world" */
    CHECK_MSG(is_tool_error(r, "failed"), "bad image bytes: %.300s",
              r ? cJSON_PrintUnformatted(r) : "");
    cJSON_Delete(r);
    r = call_tool("embed", "{\"audio_base64\":\"data:audio/wav;base64,UklGRgAAAAA=\"}");
    CHECK_MSG(is_tool_error(r, "failed"), "bad audio bytes: %.300s",
              r ? cJSON_PrintUnformatted(r) : "");
    cJSON_Delete(r);
    r = call_tool("embed", "{\"image_path\":\"/etc/passwd\"}");
    CHECK_MSG(is_tool_error(r, "outside"), "path outside: %.300s",
              r ? cJSON_PrintUnformatted(r) : "");
    cJSON_Delete(r);
    r = call_tool("embed", "{\"image_path\":\"../../../README.md\"}");
    CHECK_MSG(is_tool_error(r, "outside"), "relative path outside: %.300s",
              r ? cJSON_PrintUnformatted(r) : "");
    cJSON_Delete(r);
    r = call_tool("embed", "{\"audio_path\":\"no_such.wav\"}");
    CHECK_MSG(is_tool_error(r, "no_such.wav"), "missing file: %.300s",
              r ? cJSON_PrintUnformatted(r) : "");
    cJSON_Delete(r);
    r = call_tool("embed", "{\"image_path\":\"ensemble\"}");
    CHECK_MSG(is_tool_error(r, "not a regular file"), "folder: %.300s",
              r ? cJSON_PrintUnformatted(r) : "");
    cJSON_Delete(r);
    r = call_tool("embed", "{\"image_path\":\"inputs.jsonl\"}"); /* inside, but not an image */
    CHECK_MSG(is_tool_error(r, "failed"), "not an image: %.300s",
              r ? cJSON_PrintUnformatted(r) : "");
    cJSON_Delete(r);
    /* embed_batch: a failing input gets an error, the others their vectors. */
    r = call_tool(
        "embed_batch",
        "{\"inputs\":[{\"text\":\"a\"},{\"image_path\":\"/etc/passwd\"},{\"image_base64\":"
        "\"aGVsbG8=\"},{\"code\":\"x=1\",\"language\":\"python\"}]}");
    const cJSON *res =
        cJSON_GetObjectItem(cJSON_GetObjectItem(result_of(r), "structuredContent"), "results");
    CHECK(cJSON_GetArraySize(res) == 4);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 0), "embedding")) == 1536);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 1), "error")));
    CHECK(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 2), "error")));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(res, 3), "embedding")) == 1536);
    CHECK(!cJSON_IsTrue(cJSON_GetObjectItem(result_of(r), "isError")));
    cJSON_Delete(r);
    /* Invalid UTF-8 and control bytes in a text are an input like any other. */
    r = call_tool("embed", "{\"text\":\"\xff\xfe\\u0001 caf\xc3\"}");
    CHECK_MSG(r && (result_of(r) || error_code(r)), "invalid UTF-8: no answer");
    cJSON_Delete(r);
    check_nothing_pending("after the errors");
}

static void test_batches_and_notifications(void) {
    /* A batch: requests, a notification, an invalid element and an unknown method. */
    send_line("[{\"jsonrpc\":\"2.0\",\"id\":\"b1\",\"method\":\"ping\"},"
              "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
              "{\"jsonrpc\":\"2.0\",\"id\":\"b2\",\"method\":\"tools/call\",\"params\":{\"name\":"
              "\"embed\",\"arguments\":{\"text\":\"batch\"}}},"
              "5,"
              "{\"jsonrpc\":\"2.0\",\"id\":\"b3\",\"method\":\"nope\"}]");
    cJSON *d = next_msg(WAIT_MS);
    CHECK_MSG(cJSON_IsArray(d) && cJSON_GetArraySize(d) == 4, "batch reply: %.200s",
              d ? cJSON_PrintUnformatted(d) : "nothing");
    int seen = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, d) {
        if (id_is(it, "\"b1\"") && cJSON_IsObject(result_of(it))) seen |= 1;
        if (id_is(it, "\"b2\"") &&
            cJSON_GetArraySize(cJSON_GetObjectItem(
                cJSON_GetObjectItem(result_of(it), "structuredContent"), "embedding")) == 1536)
            seen |= 2;
        if (id_is(it, "null") && error_code(it) == -32600) seen |= 4;
        if (id_is(it, "\"b3\"") && error_code(it) == -32601) seen |= 8;
    }
    CHECK_MSG(seen == 15, "batch replies seen: %x", seen);
    cJSON_Delete(d);
    /* A batch of notifications and responses only: no reply at all. */
    send_line("[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
              "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}},"
              "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}]");
    check_nothing_pending("a batch of notifications");
    /* Notifications and responses between requests are never answered, even malformed ones. */
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
              "{\"requestId\":424242,\"reason\":\"unknown id\"}}");
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}");
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/whatever\",\"params\":[1]}");
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}");
    send_line("{\"jsonrpc\":\"2.0\",\"id\":77,\"result\":{\"ok\":true}}");
    send_line("{\"jsonrpc\":\"2.0\",\"id\":78,\"error\":{\"code\":-1,\"message\":\"x\"}}");
    send_line("");
    send_line("   ");
    check_nothing_pending("interleaved notifications");
    /* Requests with notifications in between: each request answered once. */
    send_line("{\"jsonrpc\":\"2.0\",\"id\":\"i1\",\"method\":\"tools/call\",\"params\":{\"name\":"
              "\"health\"}}");
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    send_line("{\"jsonrpc\":\"2.0\",\"id\":\"i2\",\"method\":\"ping\"}");
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
              "{\"requestId\":\"never\"}}");
    send_line("{\"jsonrpc\":\"2.0\",\"id\":\"i3\",\"method\":\"tools/call\",\"params\":{\"name\":"
              "\"models\"}}");
    cJSON *r1 = wait_reply("\"i1\""), *r2 = wait_reply("\"i2\""), *r3 = wait_reply("\"i3\"");
    const cJSON *h = cJSON_GetObjectItem(result_of(r1), "structuredContent");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(h, "status")) &&
          !strcmp(cJSON_GetObjectItem(h, "status")->valuestring, "ok"));
    CHECK(cJSON_IsObject(cJSON_GetObjectItem(h, "cache")));
    CHECK(cJSON_IsObject(result_of(r2)));
    const cJSON *slots =
        cJSON_GetObjectItem(cJSON_GetObjectItem(result_of(r3), "structuredContent"), "slots");
    CHECK(cJSON_GetArraySize(slots) == 12);
    int ready = 0;
    cJSON_ArrayForEach(it, slots) {
        const cJSON *st = cJSON_GetObjectItem(it, "state");
        ready += cJSON_IsString(st) && !strcmp(st->valuestring, "ready");
    }
    CHECK_MSG(ready == 12, "%d slots ready", ready);
    cJSON_Delete(r1);
    cJSON_Delete(r2);
    cJSON_Delete(r3);
    /* A request whose cancellation came first is not run (the server remembers it). */
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
              "{\"requestId\":\"c1\",\"reason\":\"changed my mind\"}}");
    send_line("{\"jsonrpc\":\"2.0\",\"id\":\"c1\",\"method\":\"tools/call\",\"params\":{\"name\":"
              "\"embed\",\"arguments\":{\"text\":\"cancelled\"}}}");
    /* A cancellation of a finished request changes nothing. */
    send_line("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
              "{\"requestId\":\"i2\"}}");
    check_nothing_pending("a cancelled request");
}

static void test_large_messages(void) {
    /* A 1 MB message: four images as base64 in one embed_batch; their vectors are checked in
     * test_fixture_vectors' way (here: selected experts equal to the fixture's). */
    size_t n = 1 << 20;
    char *big = malloc(n + 200);
    {
        size_t len_a = 0, len_b = 0;
        char *pa = th_read_file("tests/fixtures/ensemble/camera.png", &len_a);
        char *pb = th_read_file("tests/fixtures/ensemble/chelsea.png", &len_b);
        char *ea = pa ? b64((const unsigned char *)pa, len_a) : NULL;
        char *eb = pb ? b64((const unsigned char *)pb, len_b) : NULL;
        size_t cap = (ea ? strlen(ea) : 0) * 2 + (eb ? strlen(eb) : 0) * 2 + 400;
        char *msg = malloc(cap);
        snprintf(
            msg, cap,
            "{\"jsonrpc\":\"2.0\",\"id\":\"big\",\"method\":\"tools/call\",\"params\":{\"name\":"
            "\"embed_batch\",\"arguments\":{\"inputs\":[{\"image_base64\":\"%s\"},{\"image_"
            "base64\":"
            "\"%s\"},{\"image_base64\":\"data:image/png;base64,%s\"},{\"image_base64\":\"%s\"}]}}}",
            ea ? ea : "", eb ? eb : "", ea ? ea : "", eb ? eb : "");
        size_t len = strlen(msg);
        CHECK_MSG(len > 1000000, "the batch message is %zu bytes", len);
        send_line(msg);
        cJSON *r = wait_reply("\"big\"");
        const cJSON *res =
            cJSON_GetObjectItem(cJSON_GetObjectItem(result_of(r), "structuredContent"), "results");
        int ok = cJSON_GetArraySize(res) == 4;
        for (int i = 0; ok && i < 4; i++) {
            const cJSON *sel = cJSON_GetObjectItem(cJSON_GetArrayItem(res, i), "selected");
            /* camera.png: experts [6, 2]; chelsea.png: [6, 0] (fixture README, inputs 8 and 9) */
            ok = cJSON_GetArraySize(sel) == 2 && cJSON_GetArrayItem(sel, 0)->valueint == 6 &&
                 cJSON_GetArrayItem(sel, 1)->valueint == (i % 2 ? 0 : 2);
        }
        CHECK_MSG(ok, "1 MB batch of images: %.300s", r ? cJSON_PrintUnformatted(r) : "nothing");
        cJSON_Delete(r);
        free(msg);
        free(ea);
        free(eb);
        free(pa);
        free(pb);
    }
    cJSON *r;
    /* A long text (64 KB): answered, the models truncate it. */
    {
        size_t tn = 64 << 10;
        int k = snprintf(big, 200,
                         "{\"jsonrpc\":\"2.0\",\"id\":\"long\",\"method\":\"tools/call\","
                         "\"params\":{\"name\":\"embed\",\"arguments\":{\"text\":\"");
        for (size_t i = 0; i < tn; i++)
            big[k + i] = "lorem ipsum dolor "[i % 18];
        snprintf(big + k + tn, 200, "\"}}}");
        send_line(big);
        r = wait_reply("\"long\"");
        CHECK_MSG(cJSON_GetArraySize(cJSON_GetObjectItem(
                      cJSON_GetObjectItem(result_of(r), "structuredContent"), "embedding")) == 1536,
                  "64 KB text: %.200s", r ? cJSON_PrintUnformatted(r) : "nothing");
        cJSON_Delete(r);
    }
    /* 1 MB of whitespace around a small request. */
    memset(big, ' ', n);
    int k = snprintf(big + n / 2, 100, "{\"jsonrpc\":\"2.0\",\"id\":\"ws\",\"method\":\"ping\"}");
    big[n / 2 + (size_t)k] = ' ';
    big[n] = 0;
    send_line(big);
    r = wait_reply("\"ws\"");
    CHECK(r && cJSON_IsObject(result_of(r)));
    cJSON_Delete(r);
    /* 1 MB of garbage: a parse error, and the server goes on. */
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('!' + i % 90);
    big[0] = '{';
    big[n] = 0;
    send_line(big);
    r = wait_reply("null");
    CHECK_ERR(r, -32700, "Parse error");
    cJSON_Delete(r);
    /* Deep nesting: refused by the parser's depth limit, not by a crash. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = 0;
    send_line(deep);
    r = wait_reply("null");
    CHECK_ERR(r, -32700, "Parse error");
    cJSON_Delete(r);
    free(deep);
    free(big);
    /* Over the 64 MiB limit: skipped with an error; the next line is read as usual. */
    size_t over = ((size_t)64 << 20) + 4096;
    char *huge = malloc(over);
    memset(huge, 'x', over);
    int64_t t0 = now_ms();
    send_raw(huge, over, 1);
    free(huge);
    r = wait_reply("null");
    CHECK_ERR(r, -32600, "limit");
    cJSON_Delete(r);
    printf("  64 MiB + 4 KiB line: refused in %lld ms\n", (long long)(now_ms() - t0));
    check_nothing_pending("after the large messages");
}

/* ==== the fixture's vectors =================================================================== */

static char *b64(const unsigned char *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1), *q = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *q++ = tab[v >> 18];
        *q++ = tab[(v >> 12) & 63];
        *q++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *q++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *q = 0;
    return o;
}

/* The tool arguments for one fixture input line; media by path, or by base64 when as_b64. */
static cJSON *fixture_args(const cJSON *in, int as_b64) {
    cJSON *a = cJSON_CreateObject();
    const char *media[2] = {"image", "audio"};
    for (int k = 0; k < 2; k++) {
        const cJSON *f = cJSON_GetObjectItem(in, media[k]);
        if (!f) continue;
        char key[32];
        if (as_b64) {
            char path[512];
            snprintf(path, sizeof path, "tests/fixtures/ensemble/%s", f->valuestring);
            size_t len = 0;
            char *bytes = th_read_file(path, &len);
            char *enc = bytes ? b64((const unsigned char *)bytes, len) : NULL;
            snprintf(key, sizeof key, "%s_base64", media[k]);
            cJSON_AddStringToObject(a, key, enc ? enc : "");
            free(bytes);
            free(enc);
        } else {
            snprintf(key, sizeof key, "%s_path", media[k]);
            cJSON_AddStringToObject(a, key, f->valuestring);
        }
        return a;
    }
    const char *keys[] = {"text", "code", "language", "role", "instruction"};
    for (int k = 0; k < 5; k++) {
        const cJSON *v = cJSON_GetObjectItem(in, keys[k]);
        if (v) cJSON_AddItemToObject(a, keys[k], cJSON_Duplicate(v, 1));
    }
    return a;
}

static double max_abs(const cJSON *got, const cJSON *want, int *n_out) {
    int n = cJSON_GetArraySize(want);
    *n_out = cJSON_GetArraySize(got);
    if (*n_out != n) return INFINITY;
    double w = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs(cJSON_GetArrayItem(got, i)->valuedouble -
                        cJSON_GetArrayItem(want, i)->valuedouble);
        if (!(d <= w)) w = d;
    }
    return w;
}

static double rel(const cJSON *got, const cJSON *want) {
    int n = cJSON_GetArraySize(want);
    if (cJSON_GetArraySize(got) != n) return INFINITY;
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double g = cJSON_GetArrayItem(got, i)->valuedouble,
               w = cJSON_GetArrayItem(want, i)->valuedouble;
        num += (g - w) * (g - w);
        den += w * w;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Compares one structured result with its expected.jsonl line; returns the worst errors. */
static void compare(const char *what, const cJSON *got, const cJSON *want, double *worst_abs,
                    double *worst_rel) {
    int n;
    double e =
        max_abs(cJSON_GetObjectItem(got, "embedding"), cJSON_GetObjectItem(want, "embedding"), &n);
    CHECK_MSG(n == 1536 && e <= 1e-5, "%s: embedding (%d floats) max abs %.3g", what, n, e);
    if (e > *worst_abs) *worst_abs = e;
    e = max_abs(cJSON_GetObjectItem(got, "expert_weights"),
                cJSON_GetObjectItem(want, "expert_weights"), &n);
    CHECK_MSG(n == 8 && e <= 1e-5, "%s: expert_weights max abs %.3g", what, e);
    if (e > *worst_abs) *worst_abs = e;
    const cJSON *gs = cJSON_GetObjectItem(got, "selected"),
                *ws = cJSON_GetObjectItem(want, "selected");
    CHECK_MSG(cJSON_GetArraySize(gs) == 2 && cJSON_GetArraySize(ws) == 2 &&
                  cJSON_GetArrayItem(gs, 0)->valueint == cJSON_GetArrayItem(ws, 0)->valueint &&
                  cJSON_GetArrayItem(gs, 1)->valueint == cJSON_GetArrayItem(ws, 1)->valueint,
              "%s: selected differ", what);
    const cJSON *gslots = cJSON_GetObjectItem(got, "slots"),
                *wslots = cJSON_GetObjectItem(want, "slots");
    CHECK_MSG(cJSON_GetArraySize(gslots) == 12, "%s: %d slots", what, cJSON_GetArraySize(gslots));
    const cJSON *w;
    cJSON_ArrayForEach(w, wslots) {
        const cJSON *g = cJSON_GetObjectItem(gslots, w->string);
        if (cJSON_IsNull(w)) {
            CHECK_MSG(cJSON_IsNull(g), "%s: slot %s should be null", what, w->string);
            continue;
        }
        double r = rel(g, w);
        CHECK_MSG(r <= 1e-5, "%s: slot %s rel %.3g", what, w->string, r);
        if (r > *worst_rel) *worst_rel = r;
    }
}

static void test_fixture_vectors(void) {
    char *inputs = th_read_file("tests/fixtures/ensemble/inputs.jsonl", NULL);
    char *expected = th_read_file("tests/fixtures/ensemble/expected.jsonl", NULL);
    CHECK(inputs && expected);
    if (!inputs || !expected) return;
    cJSON *in[32], *want[32];
    int n = 0;
    char *s1 = NULL, *s2 = NULL;
    char *a = strtok_r(inputs, "\n", &s1), *b = strtok_r(expected, "\n", &s2);
    for (; a && b && n < 32; a = strtok_r(NULL, "\n", &s1), b = strtok_r(NULL, "\n", &s2), n++) {
        in[n] = cJSON_Parse(a);
        want[n] = cJSON_Parse(b);
    }
    CHECK(n == 12);
    double worst_abs = 0, worst_rel = 0;
    /* One by one (media by path; the last image and audio also by base64). */
    cJSON *batch = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        int as_b64 = i == 9 || i == 11;
        for (int pass = 0; pass <= as_b64; pass++) {
            cJSON *args = fixture_args(in[i], pass);
            if (pass == 0) cJSON_AddItemToArray(batch, cJSON_Duplicate(args, 1));
            cJSON_AddStringToObject(args, "output", i % 2 ? "both" : "slots");
            char *js = cJSON_PrintUnformatted(args);
            cJSON *r = call_tool("embed", js);
            const cJSON *sc = cJSON_GetObjectItem(result_of(r), "structuredContent");
            char what[64];
            snprintf(what, sizeof what, "input %d%s", i, pass ? " (base64)" : "");
            CHECK_MSG(sc != NULL, "%s: %.300s", what, r ? cJSON_PrintUnformatted(r) : "no reply");
            if (sc) compare(what, sc, want[i], &worst_abs, &worst_rel);
            /* The text content is a short summary, not the vector. */
            const cJSON *t = cJSON_GetObjectItem(
                cJSON_GetArrayItem(cJSON_GetObjectItem(result_of(r), "content"), 0), "text");
            CHECK(cJSON_IsString(t) && strlen(t->valuestring) < 600);
            cJSON_free(js);
            cJSON_Delete(args);
            cJSON_Delete(r);
        }
    }
    /* output fused (the default) leaves the slots out. */
    cJSON *r = call_tool("embed", "{\"text\":\"Hello world\",\"role\":\"document\"}");
    const cJSON *sc = cJSON_GetObjectItem(result_of(r), "structuredContent");
    int dim;
    CHECK(sc && !cJSON_GetObjectItem(sc, "slots"));
    CHECK(max_abs(cJSON_GetObjectItem(sc, "embedding"), cJSON_GetObjectItem(want[7], "embedding"),
                  &dim) <= 1e-5);
    cJSON_Delete(r);
    /* All at once through embed_batch. */
    cJSON *args = cJSON_CreateObject();
    cJSON_AddItemToObject(args, "inputs", batch);
    cJSON_AddStringToObject(args, "output", "both");
    char *js = cJSON_PrintUnformatted(args);
    r = call_tool("embed_batch", js);
    const cJSON *res =
        cJSON_GetObjectItem(cJSON_GetObjectItem(result_of(r), "structuredContent"), "results");
    CHECK_MSG(cJSON_GetArraySize(res) == n, "embed_batch: %d results", cJSON_GetArraySize(res));
    for (int i = 0; i < n && i < cJSON_GetArraySize(res); i++) {
        char what[64];
        snprintf(what, sizeof what, "embed_batch input %d", i);
        compare(what, cJSON_GetArrayItem(res, i), want[i], &worst_abs, &worst_rel);
    }
    cJSON_free(js);
    cJSON_Delete(args);
    cJSON_Delete(r);
    /* similarity: the fused cosine equals the expected vectors' dot product. */
    for (int pair = 0; pair < 2; pair++) {
        int x = pair ? 0 : 2, y = pair ? 8 : 3;
        cJSON *sa = cJSON_CreateObject();
        cJSON_AddItemToObject(sa, "a", fixture_args(in[x], 0));
        cJSON_AddItemToObject(sa, "b", fixture_args(in[y], 0));
        js = cJSON_PrintUnformatted(sa);
        r = call_tool("similarity", js);
        const cJSON *s = cJSON_GetObjectItem(result_of(r), "structuredContent");
        double dot = 0;
        const cJSON *ea = cJSON_GetObjectItem(want[x], "embedding"),
                    *eb = cJSON_GetObjectItem(want[y], "embedding");
        for (int k = 0; k < 1536; k++)
            dot += cJSON_GetArrayItem(ea, k)->valuedouble * cJSON_GetArrayItem(eb, k)->valuedouble;
        const cJSON *c = cJSON_GetObjectItem(s, "cosine");
        CHECK_MSG(cJSON_IsNumber(c) && fabs(c->valuedouble - dot) <= 1e-5,
                  "similarity %d,%d: %g vs %g", x, y, cJSON_IsNumber(c) ? c->valuedouble : NAN,
                  dot);
        const cJSON *e1 = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "slots"), "E1");
        CHECK(pair ? cJSON_IsNull(e1) : cJSON_IsNumber(e1)); /* text vs image: no shared E1 */
        cJSON_free(js);
        cJSON_Delete(sa);
        cJSON_Delete(r);
    }
    printf("  fixture: %d inputs, worst embedding/gate abs %.3g, worst slot rel %.3g\n", n,
           worst_abs, worst_rel);
    for (int i = 0; i < n; i++) {
        cJSON_Delete(in[i]);
        cJSON_Delete(want[i]);
    }
    free(inputs);
    free(expected);
}

/* Closes stdin and waits (bounded) for the child to exit; returns its wait status or -1. */
static int finish(void) {
    close(to_child);
    int st = -1;
    int64_t t0 = now_ms();
    while (now_ms() - t0 < WAIT_MS) {
        pid_t w = waitpid(child, &st, WNOHANG);
        if (w == child) break;
        pump(50); /* drain what it still writes */
        st = -1;
    }
    if (st == -1) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    return st;
}

int main(void) {
    CHECK_MSG(find_cge(), "no cge binary at %s", cge_bin);
    if (!cge_bin[0] || access(cge_bin, X_OK) != 0) return test_report("server_mcp_stdio");
    signal(SIGPIPE, SIG_IGN);
    CHECK(spawn());
    if (child < 0) return test_report("server_mcp_stdio");
    static const struct {
        const char *name;
        void (*fn)(void);
    } parts[] = {{"negotiation", test_negotiation},
                 {"protocol errors", test_protocol_errors},
                 {"batches and notifications", test_batches_and_notifications},
                 {"large messages", test_large_messages},
                 {"fixture vectors", test_fixture_vectors}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        int64_t t0 = now_ms();
        int f0 = th_failed;
        parts[i].fn();
        printf("  %s: %lld ms%s\n", parts[i].name, (long long)(now_ms() - t0),
               th_failed != f0 ? " (failed)" : "");
    }
    int st = finish();
    CHECK_MSG(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "cge mcp did not exit 0 at EOF (%d)", st);
    cJSON *extra = next_msg(0);
    CHECK_MSG(!extra, "an unexpected line after the last reply");
    cJSON_Delete(extra);
    CHECK_MSG(n_bad_lines == 0, "%d stdout lines were not JSON", n_bad_lines);
    for (int i = 0; i < n_stash; i++) {
        printf("  unexpected reply: %.200s\n", cJSON_PrintUnformatted(stash[i]));
        th_failed++;
        cJSON_Delete(stash[i]);
    }
    /* Usage errors end at once with a status, before any engine work. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s mcp --allow-files tests/no_such </dev/null >/dev/null 2>&1",
             cge_bin);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s mcp --ensemble tests/fixtures/no_such </dev/null >/dev/null 2>&1",
             cge_bin);
    CHECK(system(cmd) != 0);
    snprintf(cmd, sizeof cmd, "%s mcp --bogus </dev/null >/dev/null 2>&1", cge_bin);
    CHECK(system(cmd) != 0);
    free(inbox);
    return test_report("server_mcp_stdio");
}
