/*
 * mcp.c: the Model Context Protocol server core (JSON-RPC 2.0, MCP 2024-11-05 .. 2025-06-18).
 *
 * One call of cge__mcp_handle takes one message (or a batch) and returns the reply. The methods:
 * initialize (version negotiation: the client's version when cge speaks it, else the newest),
 * ping, tools/list, tools/call, and the notifications initialized and cancelled. The tools are
 * thin adapters over the public engine API (include/cge.h): embed, embed_batch, similarity,
 * models, health. Every tool answers with `content` (one short text summary an agent can read;
 * never 1536 numbers in prose) and `structuredContent` (the data; for embed, the fields that
 * `cge embed --output both` prints).
 *
 * Errors, in two kinds, as the MCP specification separates them:
 *  - protocol errors are JSON-RPC errors: -32700 the message is not JSON, -32600 it is not a
 *    JSON-RPC request (or is over CGE__MCP_MAX_MESSAGE), -32601 unknown method, -32602 the params
 *    or a tool's arguments do not match the schema (the message names the parameter, e.g.
 *    "arguments.inputs[2].role: expected \"document\" or \"query\""), -32603 out of memory;
 *  - a tool that was called correctly but failed (the engine refused the image, a path is outside
 *    --allow-files or does not exist) returns a result with isError: true and the reason, so an
 *    agent sees it and can correct itself.
 *
 * Cancellation: a running request is recorded under its id; notifications/cancelled marks it,
 * and when it finishes its result is dropped (the engine call itself runs to its end: the
 * engine has no way to stop one input halfway). A cancellation that overtakes its request (two
 * threads of a transport) is remembered in a small ring, and the request is then not run.
 *
 * Key design decision: tool schemas are JSON text in this file, parsed once per session, and
 * cut down per negotiated version (outputSchema and title exist from 2025-06-18, annotations
 * from 2025-03-26), so the schema a client sees is the one the code validates against by hand.
 */
#include "server/mcp.h"

#include "core/core.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_BATCH_INPUTS 256 /* embed_batch: inputs per call */
#define PRECANCEL_N      64  /* cancellations remembered before their request arrives */

static const char *const versions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

/* ==== the session ============================================================================= */

/* A request running now, so that notifications/cancelled can find it. */
struct pending {
    char *key;     /* the id as compact JSON ("7", "\"abc\"") */
    int cancelled; /* set by notifications/cancelled */
    struct pending *next;
};

struct cge__mcp {
    struct cge_engine *e; /* not owned */
    char *allow;          /* realpath of the --allow-files folder, or NULL: no paths */
    cJSON *tools;         /* the full tool list (newest version), read-only after new */
    char *instructions;   /* initialize's instructions */
    pthread_mutex_t mu;   /* guards everything below */
    char version[16];     /* negotiated protocol version ("" before initialize) */
    struct pending *pending;
    char *precancelled[PRECANCEL_N]; /* ring of ids cancelled before they were seen */
    int precancel_next;
};

/* A failure while serving one request: a JSON-RPC error (code < 0) or, with code 0, a tool
 * failure answered as an isError result. */
struct fail {
    int code;
    char msg[700];
};

static int failf(struct fail *f, int code, const char *fmt, ...) CGE_PRINTF(3, 4);
static int failf(struct fail *f, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    f->code = code;
    return -1;
}

#define E_PARSE    (-32700)
#define E_REQUEST  (-32600)
#define E_METHOD   (-32601)
#define E_PARAMS   (-32602)
#define E_INTERNAL (-32603)
#define E_TOOL     0

/* ==== tool schemas ===============================================================================
 * The tool list is JSON text below; strings "@name" in it stand for the shared pieces (one
 * input's fields, an embedding result's fields), spliced in when a session starts (C99 caps a
 * string literal at 4095 bytes, and the pieces repeat). Exactly one content field is required
 * per input; the code checks what JSON Schema without oneOf cannot say (several agents' schema
 * readers do not take oneOf at this level). */
static const char input_props_json[] =
    "{\"text\":{\"type\":\"string\",\"description\":\"Natural-language text to embed (may be "
    "empty).\"},"
    "\"code\":{\"type\":\"string\",\"description\":\"Source code to embed (read exactly as "
    "written).\"},"
    "\"language\":{\"type\":\"string\",\"description\":\"The code's language, e.g. python "
    "(informative; with code only).\"},"
    "\"role\":{\"type\":\"string\",\"enum\":[\"document\",\"query\"],\"description\":\"document "
    "(default): content to be found later; query: a search query (some models encode queries "
    "differently). With text or code only.\"},"
    "\"instruction\":{\"type\":\"string\",\"description\":\"Optional task instruction for the "
    "instruction-following models, e.g. 'Represent the question for retrieving supporting "
    "documents: '. With text or code only.\"},"
    "\"image_path\":{\"type\":\"string\",\"description\":\"An image file (PNG, JPEG, WebP) inside "
    "the folder the server allows (relative paths are taken from it).\"},"
    "\"audio_path\":{\"type\":\"string\",\"description\":\"An audio file (WAV, FLAC, OGG) inside "
    "the folder the server allows; the first 30 s are used.\"},"
    "\"image_base64\":{\"type\":\"string\",\"description\":\"The bytes of a PNG, JPEG or WebP "
    "file in base64 (a data: URL is accepted).\"},"
    "\"audio_base64\":{\"type\":\"string\",\"description\":\"The bytes of a WAV, FLAC or OGG file "
    "in base64 (a data: URL is accepted).\"}}";

static const char output_prop_json[] =
    "{\"type\":\"string\",\"enum\":[\"fused\",\"slots\",\"both\"],\"description\":"
    "\"fused (default): the fused vector, the gate's expert weights and the chosen experts; slots "
    "or both: also each model's own vector (slots E1..E12, null where a model did not take the "
    "input).\"}";

static const char result_props_json[] =
    "{\"embedding\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"description\":\"The "
    "fused vector (unit length).\"},"
    "\"expert_weights\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"description\":"
    "\"The gate's distribution over the fusion's experts (sums to 1).\"},"
    "\"selected\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"description\":\"The "
    "experts the gate chose, larger weight first.\"},"
    "\"slots\":{\"type\":\"object\",\"additionalProperties\":{\"type\":[\"array\",\"null\"],"
    "\"items\":{\"type\":\"number\"}},\"description\":\"Per slot (E1..E12): the model's vector, "
    "or null.\"},"
    "\"slot_errors\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"},"
    "\"description\":\"Only when a slot failed (it is then null in slots and left out of the "
    "fusion): why, per slot.\"},"
    "\"cached\":{\"type\":\"boolean\"},"
    "\"latency_ms\":{\"type\":\"number\"}}";

#define READ_ONLY "{\"readOnlyHint\":true,\"destructiveHint\":false,\"openWorldHint\":false}"

static const char *const tool_json[] = {
    "{\"name\":\"embed\",\"title\":\"Embed one input\","
    "\"description\":\"Embeds one input (text, source code, an image or an audio clip) into cge's "
    "fused vector: up to twelve embedding models each embed it and a mixture-of-experts fusion "
    "joins their vectors into one unit-length vector. Text, code, images and audio land in the "
    "same space, so vectors can be compared across kinds. Returns the vector in "
    "structuredContent.embedding (store it in a vector index, or compare by cosine).\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":\"@input_props_output\","
    "\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":\"@result_props\","
    "\"required\":[\"embedding\",\"expert_weights\",\"selected\"]},"
    "\"annotations\":" READ_ONLY "}",

    "{\"name\":\"embed_batch\",\"title\":\"Embed several inputs\","
    "\"description\":\"Embeds a list of inputs (each as in embed) in one call, which is faster "
    "than one call each. Results come in input order in structuredContent.results; an input that "
    "fails has an error instead of a vector and the others still run.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"inputs\":{\"type\":\"array\","
    "\"minItems\":1,\"maxItems\":256,\"items\":\"@input_schema\"},\"output\":\"@output\"},"
    "\"required\":[\"inputs\"],\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"results\":{\"type\":\"array\","
    "\"items\":{\"type\":\"object\",\"properties\":\"@result_props_error\"}}},"
    "\"required\":[\"results\"]},"
    "\"annotations\":" READ_ONLY "}",

    "{\"name\":\"similarity\",\"title\":\"Compare two inputs\","
    "\"description\":\"Embeds two inputs and returns the cosine similarity of their fused vectors "
    "(1: same direction; near 0: unrelated), and the cosine in each model's own space (null where "
    "a model did not take both inputs).\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"a\":\"@input_schema\","
    "\"b\":\"@input_schema\"},\"required\":[\"a\",\"b\"],\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"cosine\":{\"type\":\"number\"},"
    "\"slots\":{\"type\":\"object\",\"additionalProperties\":{\"type\":[\"number\",\"null\"]}},"
    "\"selected_a\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}},"
    "\"selected_b\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}},"
    "\"required\":[\"cosine\",\"slots\"]},"
    "\"annotations\":" READ_ONLY "}",

    "{\"name\":\"models\",\"title\":\"The models in the ensemble\","
    "\"description\":\"Lists the ensemble's slots E1..E12: for each, the model, the kinds of input "
    "it takes, its state (ready, unloaded, loading, failed, absent), version, weight type, "
    "dimension and memory.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"ensemble\":{\"type\":\"string\"},"
    "\"demo\":{\"type\":\"boolean\"},\"dim\":{\"type\":\"integer\"},\"slots\":{\"type\":\"array\","
    "\"items\":{\"type\":\"object\",\"properties\":{\"slot\":{\"type\":\"string\"},"
    "\"model\":{\"type\":\"string\"},\"family\":{\"type\":\"string\"},\"modalities\":{\"type\":"
    "\"array\",\"items\":{\"type\":\"string\"}},\"state\":{\"type\":\"string\"},\"version\":{"
    "\"type\":\"integer\"},\"dtype\":{\"type\":\"string\"},\"dim\":{\"type\":\"integer\"},"
    "\"resident_bytes\":{\"type\":\"integer\"},\"path\":{\"type\":\"string\"},\"error\":{\"type\":"
    "\"string\"}},\"required\":[\"slot\",\"state\"]}}},\"required\":[\"slots\"]},"
    "\"annotations\":" READ_ONLY "}",

    "{\"name\":\"health\",\"title\":\"Engine health and statistics\","
    "\"description\":\"Says whether the engine can serve (status ok) and gives its counters: "
    "requests, inputs, failures, the embedding cache's hits, misses and hit rate, calls in flight "
    "and each slot's queue depth.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"properties\":{\"status\":{\"type\":\"string\"},"
    "\"message\":{\"type\":\"string\"},\"requests\":{\"type\":\"integer\"},\"inputs\":{\"type\":"
    "\"integer\"},\"failures\":{\"type\":\"integer\"},\"cache\":{\"type\":\"object\"},"
    "\"in_flight\":{\"type\":\"integer\"},\"queue_depths\":{\"type\":\"object\","
    "\"additionalProperties\":{\"type\":\"integer\"}}},\"required\":[\"status\"]},"
    "\"annotations\":" READ_ONLY "}",
};

/* The piece that the string "@name" stands for (a new tree), or NULL when name is unknown. */
static cJSON *schema_piece(const char *name) {
    cJSON *p = NULL;
    if (!strcmp(name, "@input_props") || !strcmp(name, "@input_props_output")) {
        p = cJSON_Parse(input_props_json);
        if (p && strcmp(name, "@input_props"))
            cJSON_AddItemToObject(p, "output", cJSON_Parse(output_prop_json));
    } else if (!strcmp(name, "@input_schema")) {
        p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "object");
        cJSON_AddStringToObject(p, "description",
                                "One input: exactly one of text, code, image_path, audio_path, "
                                "image_base64, audio_base64.");
        cJSON_AddItemToObject(p, "properties", cJSON_Parse(input_props_json));
        cJSON_AddFalseToObject(p, "additionalProperties");
    } else if (!strcmp(name, "@output")) {
        p = cJSON_Parse(output_prop_json);
    } else if (!strcmp(name, "@result_props") || !strcmp(name, "@result_props_error")) {
        p = cJSON_Parse(result_props_json);
        if (p && strcmp(name, "@result_props")) {
            cJSON *e = cJSON_AddObjectToObject(p, "error");
            cJSON_AddStringToObject(e, "type", "string");
            cJSON_AddStringToObject(e, "description", "Why this input failed.");
        }
    }
    return p;
}

/* Replaces every "@name" string under node by its piece; -1 when one cannot be made. */
static int splice_schema(cJSON *node) {
    for (cJSON *c = node->child; c;) {
        cJSON *next = c->next;
        if (cJSON_IsString(c) && c->valuestring[0] == '@') {
            cJSON *piece = schema_piece(c->valuestring);
            /* ...InObject names the new item after the old one; ...ViaPointer would not. */
            int ok =
                piece && (c->string ? cJSON_ReplaceItemInObjectCaseSensitive(node, c->string, piece)
                                    : cJSON_ReplaceItemViaPointer(node, c, piece));
            if (!ok) {
                cJSON_Delete(piece);
                return -1;
            }
        } else if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && splice_schema(c) != 0) {
            return -1;
        }
        c = next;
    }
    return 0;
}

/* The full tool list (the newest protocol version's), or NULL when out of memory. */
static cJSON *build_tools(void) {
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; list && i < sizeof tool_json / sizeof tool_json[0]; i++) {
        cJSON *t = cJSON_Parse(tool_json[i]);
        if (!t || splice_schema(t) != 0) {
            cJSON_Delete(t);
            cJSON_Delete(list);
            return NULL;
        }
        cJSON_AddItemToArray(list, t);
    }
    return list;
}

/* ==== small JSON helpers ====================================================================== */

static const cJSON *get(const cJSON *o, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* Appends n floats as one raw JSON array ("%.9g" round-trips a float32; shorter than cJSON's
 * doubles). A non-finite value, which the engine never returns, is written as null. */
static int add_floats(cJSON *parent, const char *key, const float *v, int n) {
    struct cge_buf b;
    cge__buf_init(&b, (size_t)n * 20 + 16);
    int ok = cge__buf_append(&b, "[", 1) == CGE_OK;
    for (int i = 0; ok && i < n; i++) {
        if (isfinite(v[i]))
            ok = cge__buf_printf(&b, i ? ",%.9g" : "%.9g", (double)v[i]) == CGE_OK;
        else
            ok = cge__buf_append(&b, i ? ",null" : "null", i ? 5 : 4) == CGE_OK;
    }
    ok = ok && cge__buf_append(&b, "]", 1) == CGE_OK;
    cJSON *raw = ok ? cJSON_CreateRaw(b.data) : NULL;
    cge__buf_free(&b);
    if (!raw) return -1;
    if (key)
        cJSON_AddItemToObject(parent, key, raw);
    else
        cJSON_AddItemToArray(parent, raw);
    return 0;
}

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

/* cJSON allocates with malloc; replies are handed out as cge__malloc memory. */
static char *print_owned(const cJSON *doc) {
    char *s = cJSON_PrintUnformatted(doc);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *out = cge__malloc(n + 1);
    if (out) memcpy(out, s, n + 1);
    cJSON_free(s);
    return out;
}

static cJSON *rpc_reply(const cJSON *id) {
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    cJSON_AddStringToObject(r, "jsonrpc", "2.0");
    cJSON_AddItemToObject(r, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    return r;
}

static cJSON *rpc_error(const cJSON *id, int code, const char *msg) {
    cJSON *r = rpc_reply(id);
    cJSON *err = cJSON_AddObjectToObject(r, "error");
    cJSON_AddNumberToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", msg);
    return r;
}

static cJSON *rpc_result(const cJSON *id, cJSON *result) {
    cJSON *r = rpc_reply(id);
    if (!r) {
        cJSON_Delete(result);
        return NULL;
    }
    cJSON_AddItemToObject(r, "result", result);
    return r;
}

/* A tool result: one text content item, and the structured data (NULL for an error). */
static cJSON *tool_result(const char *text, cJSON *structured, int is_error) {
    cJSON *r = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(r, "content");
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "type", "text");
    cJSON_AddStringToObject(t, "text", text);
    cJSON_AddItemToArray(content, t);
    if (structured) cJSON_AddItemToObject(r, "structuredContent", structured);
    if (is_error) cJSON_AddBoolToObject(r, "isError", 1);
    return r;
}

/* ==== inputs ================================================================================== */

/* One tool input, parsed from its JSON object into an engine input. The strings point into the
 * request's JSON (alive for the call); decoded media and the resolved path are owned here. */
struct tool_input {
    struct cge_input in;
    void *media;         /* decoded base64 (cge__malloc) */
    char path[PATH_MAX]; /* the resolved image_path / audio_path */
    const char *kind;    /* "text", "code", "image", "audio" */
    size_t bytes;        /* content size, for summaries */
    char err[700];       /* a per-input tool failure ("" when none) */
};

static void tool_input_deinit(struct tool_input *ti) {
    cge__free(ti->media);
    ti->media = NULL;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62; /* '-' and '_': the URL-safe alphabet */
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes base64 (standard or URL-safe, padding optional, whitespace skipped; a "data:...,"
 * prefix is skipped). Returns 0, or -1 with f naming `where`. */
static int b64_decode(const char *s, const char *where, void **out, size_t *out_len,
                      struct fail *f) {
    if (!strncmp(s, "data:", 5)) {
        const char *comma = strchr(s, ',');
        if (!comma) return failf(f, E_PARAMS, "%s: a data: URL without a comma", where);
        if (!strstr(s, ";base64,") || strstr(s, ";base64,") > comma)
            return failf(f, E_PARAMS, "%s: only base64 data: URLs are accepted", where);
        s = comma + 1;
    }
    size_t n = strlen(s);
    unsigned char *buf = cge__malloc(n / 4 * 3 + 3);
    if (!buf) return failf(f, E_INTERNAL, "out of memory decoding %s", where);
    size_t len = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) {
            cge__free(buf);
            return failf(f, E_PARAMS, "%s: invalid base64 at character %zu", where, i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[len++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6 || pad > 2) { /* one lone character left over, or too much padding */
        cge__free(buf);
        return failf(f, E_PARAMS, "%s: truncated base64", where);
    }
    if (len == 0) {
        cge__free(buf);
        return failf(f, E_PARAMS, "%s: empty", where);
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* Resolves a path argument inside the allowed folder into ti->path, or sets ti->err. */
static void resolve_path(const struct cge__mcp *m, const char *p, const char *where,
                         struct tool_input *ti) {
    if (!m->allow) {
        snprintf(ti->err, sizeof ti->err,
                 "%s: this server reads no files (start it with --allow-files DIR); send the "
                 "file's bytes as %s_base64 instead",
                 where, ti->kind);
        return;
    }
    char joined[PATH_MAX * 2];
    if (p[0] == '/')
        snprintf(joined, sizeof joined, "%s", p);
    else
        snprintf(joined, sizeof joined, "%s/%s", m->allow, p);
    if (!realpath(joined, ti->path)) {
        snprintf(ti->err, sizeof ti->err, "%s: cannot open '%s': %s", where, p, strerror(errno));
        return;
    }
    size_t n = strlen(m->allow);
    int inside = !strcmp(m->allow, "/") ||
                 (!strncmp(ti->path, m->allow, n) && (ti->path[n] == '/' || !ti->path[n]));
    struct stat st;
    if (!inside)
        snprintf(ti->err, sizeof ti->err, "%s: '%s' is outside the folder this server may read",
                 where, p);
    else if (stat(ti->path, &st) != 0 || !S_ISREG(st.st_mode))
        snprintf(ti->err, sizeof ti->err, "%s: '%s' is not a regular file", where, p);
    else
        ti->bytes = (size_t)st.st_size;
}

static const char *const input_keys[] = {"text",       "code",         "language",
                                         "role",       "instruction",  "image_path",
                                         "audio_path", "image_base64", "audio_base64"};

static int is_input_key(const char *k, const char *const *extra) {
    for (size_t i = 0; i < sizeof input_keys / sizeof input_keys[0]; i++)
        if (!strcmp(k, input_keys[i])) return 1;
    for (; extra && *extra; extra++)
        if (!strcmp(k, *extra)) return 1;
    return 0;
}

/* Parses one input object at `where` ("arguments", "arguments.inputs[2]", "arguments.a").
 * extra: further keys allowed beside the input's (NULL-terminated; may be NULL). Returns 0 (a
 * per-input tool failure, such as a path outside --allow-files, is left in ti->err), or -1 with
 * f set (invalid params). */
static int parse_input(const struct cge__mcp *m, const cJSON *o, const char *where,
                       const char *const *extra, struct tool_input *ti, struct fail *f) {
    memset(ti, 0, sizeof *ti);
    if (!cJSON_IsObject(o)) return failf(f, E_PARAMS, "%s: expected an object", where);
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        if (!is_input_key(it->string, extra))
            return failf(f, E_PARAMS,
                         "%s.%s: unknown argument (an input is one of text, code, image_path, "
                         "audio_path, image_base64, audio_base64, with language, role, "
                         "instruction)",
                         where, it->string);
    }
    static const char *const content[] = {"text",       "code",         "image_path",
                                          "audio_path", "image_base64", "audio_base64"};
    const char *which = NULL;
    const cJSON *val = NULL;
    int n = 0;
    for (size_t i = 0; i < sizeof content / sizeof content[0]; i++) {
        const cJSON *c = get(o, content[i]);
        if (!c) continue;
        n++;
        if (!which) {
            which = content[i];
            val = c;
        }
        if (!cJSON_IsString(c))
            return failf(f, E_PARAMS, "%s.%s: expected a string", where, content[i]);
    }
    if (n != 1)
        return failf(f, E_PARAMS,
                     "%s: expected exactly one of text, code, image_path, audio_path, "
                     "image_base64, audio_base64 (got %d)",
                     where, n);
    const cJSON *lang = get(o, "language"), *role = get(o, "role"), *ins = get(o, "instruction");
    int textual = !strcmp(which, "text") || !strcmp(which, "code");
    if (lang && (!cJSON_IsString(lang)))
        return failf(f, E_PARAMS, "%s.language: expected a string", where);
    if (lang && strcmp(which, "code"))
        return failf(f, E_PARAMS, "%s.language: only with code", where);
    if (role && !(cJSON_IsString(role) &&
                  (!strcmp(role->valuestring, "document") || !strcmp(role->valuestring, "query"))))
        return failf(f, E_PARAMS, "%s.role: expected \"document\" or \"query\"", where);
    if (role && !textual) return failf(f, E_PARAMS, "%s.role: only with text or code", where);
    if (ins && !cJSON_IsString(ins))
        return failf(f, E_PARAMS, "%s.instruction: expected a string", where);
    if (ins && !textual) return failf(f, E_PARAMS, "%s.instruction: only with text or code", where);

    char w[300];
    snprintf(w, sizeof w, "%s.%s", where, which);
    if (textual) {
        ti->kind = which;
        ti->in.text = val->valuestring;
        ti->in.text_len = strlen(val->valuestring);
        ti->in.is_code = !strcmp(which, "code");
        ti->in.language = lang ? lang->valuestring : NULL;
        ti->in.role =
            role && !strcmp(role->valuestring, "query") ? CGE_ROLE_QUERY : CGE_ROLE_DOCUMENT;
        ti->in.instruction = ins ? ins->valuestring : NULL;
        ti->bytes = ti->in.text_len;
        return 0;
    }
    int image = !strncmp(which, "image", 5);
    ti->kind = image ? "image" : "audio";
    if (strstr(which, "_base64")) {
        void *data = NULL;
        size_t len = 0;
        if (b64_decode(val->valuestring, w, &data, &len, f) != 0) return -1;
        ti->media = data;
        ti->bytes = len;
        if (image) {
            ti->in.image_data = data;
            ti->in.image_len = len;
        } else {
            ti->in.audio_data = data;
            ti->in.audio_len = len;
        }
        return 0;
    }
    if (!val->valuestring[0]) return failf(f, E_PARAMS, "%s: empty path", w);
    resolve_path(m, val->valuestring, w, ti);
    if (image)
        ti->in.image_path = ti->path;
    else
        ti->in.audio_path = ti->path;
    return 0;
}

/* output: fused (default) | slots | both. Sets *with_slots. */
static int parse_output(const cJSON *args, int *with_slots, struct fail *f) {
    const cJSON *o = get(args, "output");
    *with_slots = 0;
    if (!o) return 0;
    if (!cJSON_IsString(o) || (strcmp(o->valuestring, "fused") && strcmp(o->valuestring, "slots") &&
                               strcmp(o->valuestring, "both")))
        return failf(f, E_PARAMS, "arguments.output: expected \"fused\", \"slots\" or \"both\"");
    *with_slots = strcmp(o->valuestring, "fused") != 0;
    return 0;
}

/* ==== results ================================================================================= */

static const char *slot_name(int s) {
    const struct cge_slot_info *si = cge_slot_get(s);
    return si ? si->name : "?";
}

/* The message of a failed result, never empty. */
static const char *result_msg(const struct cge_result *r) {
    return r->errmsg[0] ? r->errmsg : cge_status_str(r->status);
}

/* The fields `cge embed --output both` prints: embedding, expert_weights, selected, and with
 * with_slots the per-slot vectors (null where a slot is absent, skipped or failed) and
 * slot_errors when a slot failed; and cached, latency_ms. */
static cJSON *result_json(const struct cge_result *r, int with_slots) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int bad = add_floats(o, "embedding", r->embedding, r->dim) != 0 ||
              add_floats(o, "expert_weights", r->expert_weights, r->n_experts) != 0;
    cJSON_AddItemToObject(o, "selected", int_array(r->selected, r->top_k));
    if (with_slots) {
        cJSON *slots = cJSON_AddObjectToObject(o, "slots");
        cJSON *errors = NULL;
        for (int s = 0; s < CGE_N_SLOTS; s++) {
            const struct cge_slot_result *sr = &r->slots[s];
            if (sr->state == CGE_SLOT_OK && sr->vector) {
                bad |= add_floats(slots, slot_name(s), sr->vector, sr->dim) != 0;
                continue;
            }
            cJSON_AddNullToObject(slots, slot_name(s));
            if (sr->state != CGE_SLOT_FAILED) continue;
            if (!errors) errors = cJSON_AddObjectToObject(o, "slot_errors");
            cJSON_AddStringToObject(errors, slot_name(s),
                                    sr->errmsg[0] ? sr->errmsg : cge_status_str(sr->status));
        }
    }
    cJSON_AddBoolToObject(o, "cached", r->cached != 0);
    cJSON_AddNumberToObject(o, "latency_ms", (double)r->latency_us / 1000.0);
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int n_present(const struct cge_result *r) {
    int n = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++)
        n += r->slots[s].state == CGE_SLOT_OK;
    return n;
}

/* "E3 failed (reason)" for the first failed slot, or "". */
static void failed_slots_note(const struct cge_result *r, char *buf, size_t cap) {
    buf[0] = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (r->slots[s].state != CGE_SLOT_FAILED) continue;
        snprintf(buf, cap, " %s failed (%s) and was left out.", slot_name(s),
                 r->slots[s].errmsg[0] ? r->slots[s].errmsg : cge_status_str(r->slots[s].status));
        return;
    }
}

/* A result is usable when the input succeeded and the fusion ran. */
static int result_ok(const struct cge_result *r) {
    return r->status == CGE_OK && r->embedding && r->expert_weights && r->selected;
}

/* ==== tools =================================================================================== */

static cJSON *tool_embed(struct cge__mcp *m, const cJSON *args, struct fail *f) {
    static const char *const extra[] = {"output", NULL};
    int with_slots;
    struct tool_input ti;
    if (parse_output(args, &with_slots, f) != 0) return NULL;
    if (parse_input(m, args, "arguments", extra, &ti, f) != 0) return NULL;
    if (ti.err[0]) {
        failf(f, E_TOOL, "%s", ti.err);
        tool_input_deinit(&ti);
        return NULL;
    }
    struct cge_result r;
    memset(&r, 0, sizeof r);
    enum cge_status st = cge_engine_embed(m->e, &ti.in, 1, NULL, &r);
    cJSON *out = NULL;
    if (st != CGE_OK) {
        failf(f, E_TOOL, "embedding failed: %s",
              cge_errmsg()[0] ? cge_errmsg() : cge_status_str(st));
    } else if (!result_ok(&r)) {
        failf(f, E_TOOL, "embedding failed: %s", result_msg(&r));
    } else {
        cJSON *data = result_json(&r, with_slots);
        if (!data) {
            failf(f, E_INTERNAL, "out of memory");
        } else {
            char note[300], text[1024];
            failed_slots_note(&r, note, sizeof note);
            snprintf(text, sizeof text,
                     "Embedded the %s (%zu bytes) into a %d-d unit vector: %d of %d slots took "
                     "part; the gate chose experts %d and %d (weights %.3f, %.3f).%s%s The vector "
                     "is in structuredContent.embedding%s.",
                     ti.kind, ti.bytes, r.dim, n_present(&r), CGE_N_SLOTS, r.selected[0],
                     r.top_k > 1 ? r.selected[1] : r.selected[0],
                     (double)r.expert_weights[r.selected[0]],
                     (double)r.expert_weights[r.top_k > 1 ? r.selected[1] : r.selected[0]], note,
                     r.cached ? " (from the cache)" : "",
                     with_slots ? ", each model's vector in structuredContent.slots" : "");
            out = tool_result(text, data, 0);
        }
    }
    cge_result_deinit(&r);
    tool_input_deinit(&ti);
    return out;
}

static cJSON *tool_embed_batch(struct cge__mcp *m, const cJSON *args, struct fail *f) {
    int with_slots;
    if (parse_output(args, &with_slots, f) != 0) return NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, args) {
        if (strcmp(it->string, "inputs") && strcmp(it->string, "output"))
            return failf(f, E_PARAMS, "arguments.%s: unknown argument (inputs, output)",
                         it->string),
                   NULL;
    }
    const cJSON *inputs = get(args, "inputs");
    if (!cJSON_IsArray(inputs))
        return failf(f, E_PARAMS, "arguments.inputs: expected an array of inputs"), NULL;
    int n = cJSON_GetArraySize(inputs);
    if (n < 1 || n > MAX_BATCH_INPUTS)
        return failf(f, E_PARAMS, "arguments.inputs: expected 1 to %d inputs, got %d",
                     MAX_BATCH_INPUTS, n),
               NULL;
    struct tool_input *tis = cge__calloc((size_t)n, sizeof *tis);
    struct cge_input *ins = cge__calloc((size_t)n, sizeof *ins);
    struct cge_result *rs = cge__calloc((size_t)n, sizeof *rs);
    int *row = cge__calloc((size_t)n, sizeof *row);
    cJSON *out = NULL;
    int parsed = 0;
    if (!tis || !ins || !rs || !row) {
        failf(f, E_INTERNAL, "out of memory");
        goto done;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        char where[64];
        snprintf(where, sizeof where, "arguments.inputs[%d]", i);
        if (parse_input(m, cJSON_GetArrayItem(inputs, i), where, NULL, &tis[i], f) != 0) goto done;
        parsed = i + 1;
        row[i] = tis[i].err[0] ? -1 : k;
        if (!tis[i].err[0]) ins[k++] = tis[i].in;
    }
    enum cge_status st = k ? cge_engine_embed(m->e, ins, (size_t)k, NULL, rs) : CGE_OK;
    if (st != CGE_OK) {
        failf(f, E_TOOL, "embedding failed: %s",
              cge_errmsg()[0] ? cge_errmsg() : cge_status_str(st));
        memset(rs, 0, (size_t)n * sizeof *rs);
        goto done;
    }
    cJSON *data = cJSON_CreateObject();
    cJSON *results = cJSON_AddArrayToObject(data, "results");
    int n_ok = 0, first_bad = -1, dim = 0;
    char first_msg[400] = "";
    for (int i = 0; i < n; i++) {
        cJSON *item = NULL;
        const char *msg = NULL;
        if (row[i] < 0)
            msg = tis[i].err;
        else if (!result_ok(&rs[row[i]]))
            msg = result_msg(&rs[row[i]]);
        if (msg) {
            item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "error", msg);
            if (first_bad < 0) {
                first_bad = i;
                snprintf(first_msg, sizeof first_msg, "%.399s", msg);
            }
        } else {
            item = result_json(&rs[row[i]], with_slots);
            dim = rs[row[i]].dim;
            n_ok++;
        }
        if (!item) {
            cJSON_Delete(data);
            failf(f, E_INTERNAL, "out of memory");
            goto done;
        }
        cJSON_AddItemToArray(results, item);
    }
    char text[1024];
    if (first_bad >= 0)
        snprintf(text, sizeof text,
                 "Embedded %d of %d inputs into %d-d unit vectors; %d failed (the first, "
                 "inputs[%d]: %s). Results are in structuredContent.results, in input order.",
                 n_ok, n, dim, n - n_ok, first_bad, first_msg);
    else
        snprintf(text, sizeof text,
                 "Embedded %d inputs into %d-d unit vectors. Results are in "
                 "structuredContent.results, in input order (each with embedding, "
                 "expert_weights, selected%s).",
                 n, dim, with_slots ? ", slots" : "");
    out = tool_result(text, data, n_ok == 0);
done:
    for (int i = 0; rs && i < n; i++)
        cge_result_deinit(&rs[i]);
    for (int i = 0; tis && i < parsed; i++)
        tool_input_deinit(&tis[i]);
    cge__free(tis);
    cge__free(ins);
    cge__free(rs);
    cge__free(row);
    return out;
}

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

static cJSON *tool_similarity(struct cge__mcp *m, const cJSON *args, struct fail *f) {
    const cJSON *it;
    cJSON_ArrayForEach(it, args) {
        if (strcmp(it->string, "a") && strcmp(it->string, "b"))
            return failf(f, E_PARAMS, "arguments.%s: unknown argument (a, b)", it->string), NULL;
    }
    if (!get(args, "a")) return failf(f, E_PARAMS, "arguments.a: required"), NULL;
    if (!get(args, "b")) return failf(f, E_PARAMS, "arguments.b: required"), NULL;
    struct tool_input ti[2];
    struct cge_result r[2];
    memset(r, 0, sizeof r);
    cJSON *out = NULL;
    if (parse_input(m, get(args, "a"), "arguments.a", NULL, &ti[0], f) != 0) return NULL;
    if (parse_input(m, get(args, "b"), "arguments.b", NULL, &ti[1], f) != 0) {
        tool_input_deinit(&ti[0]);
        return NULL;
    }
    struct cge_input ins[2] = {ti[0].in, ti[1].in};
    enum cge_status st = CGE_OK;
    if (ti[0].err[0] || ti[1].err[0]) {
        failf(f, E_TOOL, "%s", ti[0].err[0] ? ti[0].err : ti[1].err);
        goto done;
    }
    st = cge_engine_embed(m->e, ins, 2, NULL, r);
    if (st != CGE_OK) {
        failf(f, E_TOOL, "embedding failed: %s",
              cge_errmsg()[0] ? cge_errmsg() : cge_status_str(st));
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        if (!result_ok(&r[i])) {
            failf(f, E_TOOL, "arguments.%c: embedding failed: %s", "ab"[i], result_msg(&r[i]));
            goto done;
        }
    }
    double c = cosine(r[0].embedding, r[1].embedding, r[0].dim < r[1].dim ? r[0].dim : r[1].dim);
    cJSON *data = cJSON_CreateObject();
    cJSON_AddNumberToObject(data, "cosine", c);
    cJSON *slots = cJSON_AddObjectToObject(data, "slots");
    int n_both = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        const struct cge_slot_result *x = &r[0].slots[s], *y = &r[1].slots[s];
        if (x->state == CGE_SLOT_OK && y->state == CGE_SLOT_OK && x->vector && y->vector &&
            x->dim == y->dim) {
            cJSON_AddNumberToObject(slots, slot_name(s), cosine(x->vector, y->vector, x->dim));
            n_both++;
        } else {
            cJSON_AddNullToObject(slots, slot_name(s));
        }
    }
    cJSON_AddItemToObject(data, "selected_a", int_array(r[0].selected, r[0].top_k));
    cJSON_AddItemToObject(data, "selected_b", int_array(r[1].selected, r[1].top_k));
    char text[512];
    snprintf(text, sizeof text,
             "Cosine similarity of the fused vectors: %.4f (1 = same direction, near 0 = "
             "unrelated). %d slots embedded both inputs; their cosines are in "
             "structuredContent.slots.",
             c, n_both);
    out = tool_result(text, data, 0);
done:
    cge_result_deinit(&r[0]);
    cge_result_deinit(&r[1]);
    tool_input_deinit(&ti[0]);
    tool_input_deinit(&ti[1]);
    return out;
}

static int no_arguments(const cJSON *args, struct fail *f) {
    if (args && args->child)
        return failf(f, E_PARAMS, "arguments.%s: unknown argument (this tool takes none)",
                     args->child->string);
    return 0;
}

static const char *load_state_str(enum cge_slot_load_state s) {
    switch (s) {
    case CGE_LOAD_ABSENT:
        return "absent";
    case CGE_LOAD_UNLOADED:
        return "unloaded";
    case CGE_LOAD_LOADING:
        return "loading";
    case CGE_LOAD_READY:
        return "ready";
    case CGE_LOAD_FAILED:
        return "failed";
    }
    return "unknown";
}

static cJSON *tool_models(struct cge__mcp *m, const cJSON *args, struct fail *f) {
    if (no_arguments(args, f) != 0) return NULL;
    struct cge_engine_stats *st = cge__calloc(1, sizeof *st);
    if (!st) return failf(f, E_INTERNAL, "out of memory"), NULL;
    if (cge_engine_get_stats(m->e, st) != CGE_OK) {
        failf(f, E_TOOL, "cannot read the engine's state: %s", cge_errmsg());
        cge__free(st);
        return NULL;
    }
    cJSON *data = cJSON_CreateObject();
    const char *name = cge_engine_name(m->e);
    cJSON_AddStringToObject(data, "ensemble", name ? name : "");
    cJSON_AddBoolToObject(data, "demo", cge_engine_is_demo(m->e) != 0);
    cJSON_AddNumberToObject(data, "dim", cge_engine_dim(m->e));
    cJSON *slots = cJSON_AddArrayToObject(data, "slots");
    int n_ready = 0, n_conf = 0;
    int64_t bytes = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        const struct cge_slot_info *si = cge_slot_get(s);
        const struct cge_slot_stats *ss = &st->slots[s];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "slot", si->name);
        cJSON_AddStringToObject(o, "model", si->hf_id);
        cJSON_AddStringToObject(o, "family", si->family);
        cJSON *mods = cJSON_AddArrayToObject(o, "modalities");
        unsigned mm = cge_engine_slot_modalities(m->e, s);
        if (!mm) mm = si->modalities;
        for (unsigned bit = 1; bit <= CGE_MOD_AUDIO; bit <<= 1)
            if (mm & bit) cJSON_AddItemToArray(mods, cJSON_CreateString(cge_modality_str(bit)));
        cJSON_AddStringToObject(o, "state", load_state_str(ss->state));
        if (ss->state != CGE_LOAD_ABSENT) {
            n_conf++;
            n_ready += ss->state == CGE_LOAD_READY;
            bytes += ss->resident_bytes;
            cJSON_AddNumberToObject(o, "version", (double)ss->version);
            cJSON_AddStringToObject(o, "dtype", cge_dtype_str(ss->dtype));
            cJSON_AddNumberToObject(o, "dim", cge_engine_slot_dim(m->e, s));
            cJSON_AddNumberToObject(o, "resident_bytes", (double)ss->resident_bytes);
            cJSON_AddStringToObject(o, "path", ss->path);
            if (ss->state == CGE_LOAD_FAILED && ss->errmsg[0])
                cJSON_AddStringToObject(o, "error", ss->errmsg);
        }
        cJSON_AddItemToArray(slots, o);
    }
    char text[512];
    snprintf(text, sizeof text,
             "Ensemble '%s'%s: %d of %d configured slots ready (of E1..E12), %.1f MB of weights "
             "in memory, fused dimension %d. Per-slot details are in structuredContent.slots.",
             name ? name : "", cge_engine_is_demo(m->e) ? " (the demo: random weights)" : "",
             n_ready, n_conf, (double)bytes / 1e6, cge_engine_dim(m->e));
    cge__free(st);
    return tool_result(text, data, 0);
}

static cJSON *tool_health(struct cge__mcp *m, const cJSON *args, struct fail *f) {
    if (no_arguments(args, f) != 0) return NULL;
    struct cge_engine_stats *st = cge__calloc(1, sizeof *st);
    if (!st) return failf(f, E_INTERNAL, "out of memory"), NULL;
    enum cge_status h = cge_engine_health(m->e);
    char hmsg[300];
    snprintf(hmsg, sizeof hmsg, "%s", h == CGE_OK ? "" : cge_errmsg());
    if (cge_engine_get_stats(m->e, st) != CGE_OK) {
        failf(f, E_TOOL, "cannot read the engine's state: %s", cge_errmsg());
        cge__free(st);
        return NULL;
    }
    cJSON *data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "status", h == CGE_OK ? "ok" : "unavailable");
    if (h != CGE_OK) cJSON_AddStringToObject(data, "message", hmsg[0] ? hmsg : cge_status_str(h));
    cJSON_AddNumberToObject(data, "requests", (double)st->requests);
    cJSON_AddNumberToObject(data, "inputs", (double)st->inputs);
    cJSON_AddNumberToObject(data, "failures", (double)st->failures);
    cJSON *c = cJSON_AddObjectToObject(data, "cache");
    cJSON_AddNumberToObject(c, "hits", (double)st->cache_hits);
    cJSON_AddNumberToObject(c, "misses", (double)st->cache_misses);
    cJSON_AddNumberToObject(c, "entries", (double)st->cache_entries);
    cJSON_AddNumberToObject(c, "hit_rate", isfinite(st->cache_hit_rate) ? st->cache_hit_rate : 0);
    cJSON_AddNumberToObject(data, "in_flight", (double)st->in_flight);
    cJSON *q = cJSON_AddObjectToObject(data, "queue_depths");
    int64_t queued = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        if (st->slots[s].state == CGE_LOAD_ABSENT) continue;
        cJSON_AddNumberToObject(q, slot_name(s), (double)st->slots[s].queue_depth);
        queued += st->slots[s].queue_depth;
    }
    char text[700];
    snprintf(text, sizeof text,
             "Engine %s%s%s. %llu requests, %llu inputs, %llu failed; cache hit rate %.1f%% "
             "(%llu hits, %llu misses); %lld calls in flight, %lld inputs queued.",
             h == CGE_OK ? "ok" : "unavailable", h == CGE_OK ? "" : ": ",
             h == CGE_OK ? "" : (hmsg[0] ? hmsg : cge_status_str(h)),
             (unsigned long long)st->requests, (unsigned long long)st->inputs,
             (unsigned long long)st->failures,
             100.0 * (isfinite(st->cache_hit_rate) ? st->cache_hit_rate : 0),
             (unsigned long long)st->cache_hits, (unsigned long long)st->cache_misses,
             (long long)st->in_flight, (long long)queued);
    cge__free(st);
    return tool_result(text, data, 0);
}

struct tool {
    const char *name;
    cJSON *(*run)(struct cge__mcp *m, const cJSON *args, struct fail *f);
};

static const struct tool tool_table[] = {
    {"embed", tool_embed},   {"embed_batch", tool_embed_batch}, {"similarity", tool_similarity},
    {"models", tool_models}, {"health", tool_health},
};

/* ==== methods ================================================================================= */

static cJSON *m_initialize(struct cge__mcp *m, const cJSON *params, struct fail *f) {
    const cJSON *v = get(params, "protocolVersion");
    if (!cJSON_IsString(v))
        return failf(f, E_PARAMS, "params.protocolVersion: expected a string"), NULL;
    const cJSON *caps = get(params, "capabilities");
    if (caps && !cJSON_IsObject(caps))
        return failf(f, E_PARAMS, "params.capabilities: expected an object"), NULL;
    const char *chosen = versions[0];
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
        if (!strcmp(v->valuestring, versions[i])) chosen = versions[i];
    pthread_mutex_lock(&m->mu);
    snprintf(m->version, sizeof m->version, "%s", chosen);
    pthread_mutex_unlock(&m->mu);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "protocolVersion", chosen);
    cJSON *c = cJSON_AddObjectToObject(r, "capabilities");
    cJSON *t = cJSON_AddObjectToObject(c, "tools");
    cJSON_AddBoolToObject(t, "listChanged", 0);
    cJSON *si = cJSON_AddObjectToObject(r, "serverInfo");
    cJSON_AddStringToObject(si, "name", "cge");
    if (strcmp(chosen, "2025-06-18") >= 0) cJSON_AddStringToObject(si, "title", "cge embeddings");
    cJSON_AddStringToObject(si, "version", CGE_VERSION_STRING);
    cJSON_AddStringToObject(r, "instructions", m->instructions);
    return r;
}

/* The tool list as a client of the negotiated version reads it. */
static cJSON *m_tools_list(struct cge__mcp *m, const cJSON *params, struct fail *f) {
    const cJSON *cursor = get(params, "cursor");
    if (cursor && !cJSON_IsString(cursor) && !cJSON_IsNull(cursor))
        return failf(f, E_PARAMS, "params.cursor: expected a string"), NULL;
    char version[16];
    pthread_mutex_lock(&m->mu);
    snprintf(version, sizeof version, "%s", m->version[0] ? m->version : versions[0]);
    pthread_mutex_unlock(&m->mu);
    cJSON *tools = cJSON_Duplicate(m->tools, 1);
    if (!tools) return failf(f, E_INTERNAL, "out of memory"), NULL;
    cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        if (strcmp(version, "2025-06-18") < 0) {
            cJSON_DeleteItemFromObjectCaseSensitive(t, "outputSchema");
            cJSON_DeleteItemFromObjectCaseSensitive(t, "title");
        }
        if (strcmp(version, "2025-03-26") < 0)
            cJSON_DeleteItemFromObjectCaseSensitive(t, "annotations");
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "tools", tools);
    return r;
}

static cJSON *m_tools_call(struct cge__mcp *m, const cJSON *params, struct fail *f) {
    const cJSON *name = get(params, "name");
    const cJSON *args = get(params, "arguments");
    if (!cJSON_IsString(name)) return failf(f, E_PARAMS, "params.name: expected a string"), NULL;
    if (args && !cJSON_IsObject(args) && !cJSON_IsNull(args))
        return failf(f, E_PARAMS, "params.arguments: expected an object"), NULL;
    cJSON *empty = NULL;
    if (!args || cJSON_IsNull(args)) {
        empty = cJSON_CreateObject();
        args = empty;
    }
    cJSON *r = NULL;
    size_t i = 0;
    for (; i < sizeof tool_table / sizeof tool_table[0]; i++)
        if (!strcmp(name->valuestring, tool_table[i].name)) break;
    if (i == sizeof tool_table / sizeof tool_table[0]) {
        failf(f, E_PARAMS,
              "params.name: unknown tool '%.100s' (embed, embed_batch, similarity, models, "
              "health)",
              name->valuestring);
    } else if (!args) {
        failf(f, E_INTERNAL, "out of memory");
    } else {
        f->code = E_INTERNAL;
        snprintf(f->msg, sizeof f->msg, "out of memory");
        r = tool_table[i].run(m, args, f);
        /* A tool failure is a result the agent reads, not a protocol error. */
        if (!r && f->code == E_TOOL) r = tool_result(f->msg, NULL, 1);
    }
    cJSON_Delete(empty);
    return r;
}

/* ==== cancellation ============================================================================ */

static char *id_key(const cJSON *id) {
    char *s = cJSON_PrintUnformatted(id);
    char *k = s ? cge__strdup(s) : NULL;
    cJSON_free(s);
    return k;
}

/* Records a running request; returns 1 when it was cancelled before it arrived. */
static int pending_add(struct cge__mcp *m, struct pending *p) {
    int pre = 0;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < PRECANCEL_N; i++) {
        if (m->precancelled[i] && !strcmp(m->precancelled[i], p->key)) {
            cge__free(m->precancelled[i]);
            m->precancelled[i] = NULL;
            pre = 1;
            break;
        }
    }
    p->next = m->pending;
    m->pending = p;
    pthread_mutex_unlock(&m->mu);
    return pre;
}

/* Forgets a finished request; returns 1 when it was cancelled while it ran. */
static int pending_remove(struct cge__mcp *m, struct pending *p) {
    pthread_mutex_lock(&m->mu);
    for (struct pending **pp = &m->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return p->cancelled;
}

static void cancel(struct cge__mcp *m, const cJSON *params) {
    const cJSON *id = get(params, "requestId");
    if (!cJSON_IsString(id) && !cJSON_IsNumber(id)) return; /* a notification gets no error */
    char *key = id_key(id);
    if (!key) return;
    int found = 0;
    pthread_mutex_lock(&m->mu);
    for (struct pending *p = m->pending; p; p = p->next) {
        if (!strcmp(p->key, key)) {
            p->cancelled = 1;
            found = 1;
        }
    }
    if (!found) { /* not seen yet (or finished): remember it a while */
        cge__free(m->precancelled[m->precancel_next]);
        m->precancelled[m->precancel_next] = key;
        m->precancel_next = (m->precancel_next + 1) % PRECANCEL_N;
        key = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    cge__free(key);
}

/* ==== messages ================================================================================ */

/* One JSON-RPC message; returns the reply or NULL when none is due. */
static cJSON *handle_one(struct cge__mcp *m, const cJSON *msg) {
    if (!cJSON_IsObject(msg))
        return rpc_error(NULL, E_REQUEST, "Invalid Request: expected a JSON-RPC message object");
    const cJSON *id = get(msg, "id");
    const cJSON *jsonrpc = get(msg, "jsonrpc");
    const cJSON *method = get(msg, "method");
    const cJSON *params = get(msg, "params");
    int id_ok = cJSON_IsString(id) || cJSON_IsNumber(id);
    const cJSON *rid = id_ok ? id : NULL;
    if (!cJSON_IsString(jsonrpc) || strcmp(jsonrpc->valuestring, "2.0"))
        return rpc_error(rid, E_REQUEST, "Invalid Request: \"jsonrpc\" must be \"2.0\"");
    if (!method) {
        /* A response to a request of ours: cge sends none, so there is nothing to match. */
        if (id && (get(msg, "result") || get(msg, "error"))) return NULL;
        return rpc_error(rid, E_REQUEST, "Invalid Request: no \"method\"");
    }
    if (!cJSON_IsString(method))
        return rpc_error(rid, E_REQUEST, "Invalid Request: \"method\" must be a string");
    if (id && !id_ok)
        return rpc_error(NULL, E_REQUEST, "Invalid Request: \"id\" must be a string or a number");
    if (params && !cJSON_IsObject(params)) {
        if (!id) return NULL;
        return rpc_error(rid, cJSON_IsArray(params) ? E_PARAMS : E_REQUEST,
                         cJSON_IsArray(params) ? "params: expected an object"
                                               : "Invalid Request: \"params\" must be an object");
    }
    const char *name = method->valuestring;
    if (!id) { /* a notification: never answered */
        if (!strcmp(name, "notifications/cancelled")) cancel(m, params);
        return NULL;
    }

    struct pending p = {.key = id_key(id)};
    if (!p.key) return NULL;
    int cancellable = strcmp(name, "initialize") != 0; /* initialize cannot be cancelled */
    if (cancellable && pending_add(m, &p)) {
        pending_remove(m, &p);
        cge__free(p.key);
        return NULL;
    }
    struct fail f = {E_INTERNAL, "out of memory"};
    cJSON *result = NULL;
    if (!strcmp(name, "initialize"))
        result = m_initialize(m, params, &f);
    else if (!strcmp(name, "ping"))
        result = cJSON_CreateObject();
    else if (!strcmp(name, "tools/list"))
        result = m_tools_list(m, params, &f);
    else if (!strcmp(name, "tools/call"))
        result = m_tools_call(m, params, &f);
    else
        failf(&f, E_METHOD, "Method not found: %.200s", name);
    int cancelled = cancellable && pending_remove(m, &p);
    cge__free(p.key);
    if (cancelled) {
        cJSON_Delete(result);
        return NULL;
    }
    if (result) return rpc_result(id, result);
    return rpc_error(id, f.code ? f.code : E_INTERNAL, f.msg);
}

char *cge__mcp_handle(struct cge__mcp *m, const char *msg, size_t len, int *status) {
    int st = 200;
    cJSON *reply = NULL;
    if (len > CGE__MCP_MAX_MESSAGE) {
        char buf[160];
        snprintf(buf, sizeof buf, "Invalid Request: message of %zu bytes is over the limit of %zu",
                 len, CGE__MCP_MAX_MESSAGE);
        reply = rpc_error(NULL, E_REQUEST, buf);
        st = 400;
    } else {
        const char *end = NULL;
        cJSON *doc = cJSON_ParseWithLengthOpts(msg, len, &end, 0);
        if (doc && end) { /* only whitespace may follow the value */
            while (end < msg + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
                end++;
            if (end < msg + len) {
                cJSON_Delete(doc);
                doc = NULL;
            }
        }
        if (!doc) {
            char buf[160];
            size_t at = end && end >= msg && end <= msg + len ? (size_t)(end - msg) : 0;
            snprintf(buf, sizeof buf, "Parse error: not valid JSON (at byte %zu of %zu)", at, len);
            reply = rpc_error(NULL, E_PARSE, buf);
            st = 400;
        } else if (cJSON_IsArray(doc)) {
            if (!doc->child) {
                reply = rpc_error(NULL, E_REQUEST, "Invalid Request: an empty batch");
            } else {
                reply = cJSON_CreateArray();
                const cJSON *it;
                cJSON_ArrayForEach(it, doc) {
                    cJSON *r = handle_one(m, it);
                    if (r) cJSON_AddItemToArray(reply, r);
                }
                if (reply && !reply->child) {
                    cJSON_Delete(reply);
                    reply = NULL;
                    st = 202;
                }
            }
        } else {
            reply = handle_one(m, doc);
            if (!reply) st = 202;
        }
        cJSON_Delete(doc);
    }
    char *out = reply ? print_owned(reply) : NULL;
    if (reply && !out) st = 500;
    cJSON_Delete(reply);
    if (status) *status = st;
    return out;
}

/* ==== the session's life ====================================================================== */

enum cge_status cge__mcp_new(struct cge_engine *e, const char *allow_files, struct cge__mcp **out) {
    *out = NULL;
    if (!e) return cge__err(CGE_ERR_INVALID_VALUE, "mcp: no engine");
    struct cge__mcp *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "mcp: session");
    m->e = e;
    pthread_mutex_init(&m->mu, NULL);
    if (allow_files) {
        char real[PATH_MAX];
        struct stat st;
        if (!realpath(allow_files, real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            cge__mcp_free(m);
            return cge__err(CGE_ERR_IO, "--allow-files %s: not a folder (%s)", allow_files,
                            errno ? strerror(errno) : "not a directory");
        }
        m->allow = cge__strdup(real);
    }
    m->tools = build_tools();
    const char *base =
        "cge embeds text, source code, images and audio into one fused 1536-dimensional vector "
        "(up to twelve embedding models joined by a mixture-of-experts fusion), so that items of "
        "any kind can be stored and compared in one vector space. Use `embed` for one item and "
        "`embed_batch` for many (for example to index memories or documents in a vector store); "
        "`similarity` to compare two items (fused cosine, and per model); `models` and `health` "
        "to see what is loaded and how the engine is doing. Give search queries role \"query\" "
        "and stored content role \"document\" (the default). The vectors are in "
        "structuredContent; the text content is only a summary.";
    const char *demo = " This server runs cge's demo ensemble (tiny random weights): its vectors "
                       "are well-formed but carry no meaning.";
    size_t n = strlen(base) + strlen(demo) + 1;
    m->instructions = cge__malloc(n);
    if (m->instructions)
        snprintf(m->instructions, n, "%s%s", base, cge_engine_is_demo(e) ? demo : "");
    if (!m->tools || !m->instructions || (allow_files && !m->allow)) {
        cge__mcp_free(m);
        return cge__err(CGE_ERR_NOMEM, "mcp: session");
    }
    *out = m;
    return CGE_OK;
}

void cge__mcp_free(struct cge__mcp *m) {
    if (!m) return;
    cJSON_Delete(m->tools);
    cge__free(m->instructions);
    cge__free(m->allow);
    for (int i = 0; i < PRECANCEL_N; i++)
        cge__free(m->precancelled[i]);
    pthread_mutex_destroy(&m->mu);
    cge__free(m);
}
