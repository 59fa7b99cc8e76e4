/*
 * routes.c: the routes of `cge serve`: the table and one handler per route.
 *
 * Design: every handler is an adapter between JSON and the engine API (include/cge.h): it parses
 * the request strictly (a field that is unknown, missing or of the wrong type is a 400 naming
 * it), makes one cge_engine_* call, and writes the engine's answer back. Limits, defaults and
 * failure policy (which slot runs, what a missing slot means, truncation, deadlines) are the
 * engine's; the server adds only HTTP's own (body size, batch size, keys, concurrency).
 */
#include "server/http.h"
#include "server/mcp_http.h"
#include "server/page.h"
#include "server/wire.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 512

/* ==== shared steps =========================================================================== */

/* The body as a JSON object, or NULL after answering 400. */
static cJSON *body_object(struct cge__http_req *r) {
    size_t len = 0;
    const char *body = cge__http_body(r, &len);
    if (len == 0) {
        cge__http_error(r, 400, "empty body: expected a JSON object");
        return NULL;
    }
    if (!cge__utf8_valid(body, len)) {
        cge__http_error(r, 400, "the body is not valid UTF-8");
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!j) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        cge__http_error(r, 400, "malformed JSON at byte %zu (or nested deeper than %d)", at,
                        CJSON_NESTING_LIMIT);
        return NULL;
    }
    /* Trailing bytes after the value (other than whitespace) are an error too. */
    while (end && end < body + len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (end && end < body + len && *end) {
        cJSON_Delete(j);
        cge__http_error(r, 400, "malformed JSON: bytes after the value at byte %zu",
                        (size_t)(end - body));
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        cge__http_error(r, 400, "expected a JSON object");
        return NULL;
    }
    return j;
}

/* 400 for a field of `obj` not in the NULL-terminated `known`. Returns 1 when answered. */
static int unknown_field(struct cge__http_req *r, const cJSON *obj, const char *const *known) {
    const cJSON *f;
    cJSON_ArrayForEach(f, obj) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            if (!strcmp(f->string, known[i])) ok = 1;
        if (!ok) {
            char list[256] = "";
            for (int i = 0; known[i]; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", known[i]);
            }
            cge__http_error(r, 400, "%s: unknown field (expected %s)", f->string, list);
            return 1;
        }
    }
    return 0;
}

/* The answer for a buffer that failed to grow. */
static void reply_buf(struct cge__http_req *r, struct cge_buf *b, enum cge_status st) {
    if (st) {
        cge__buf_free(b);
        cge__http_error(r, st == CGE_ERR_NOMEM ? 503 : 500, "building the answer: %s",
                        cge_errmsg());
        return;
    }
    cge__http_reply(r, 200, "application/json", b->data, b->len);
}

/* "Server-Timing: engine;dur=MS" (W3C Server Timing): the time the engine (or the model of
 * --model) took for this request, from the call to its return; the rest of the latency a
 * client sees is the server's and the network's (bench_server reports it). */
static void server_timing(struct cge__http_req *r, int64_t us) {
    char v[48];
    snprintf(v, sizeof v, "engine;dur=%.3f", (double)us / 1000.0);
    cge__http_add_header(r, "Server-Timing", v);
}

/* Answers input i's failure with code, naming its index when the request had several. */
static void input_error(struct cge__http_req *r, int code, const char *field, size_t i, size_t n,
                        const char *msg) {
    if (n == 1) cge__http_error(r, code, "%s", msg);
    else cge__http_error(r, code, "%s[%zu]: %s", field, i, msg);
}

/* 1 (and the 504 answered) when the work begun at t0 ran past the request's deadline. */
static int past_deadline(struct cge__http_req *r, int64_t t0) {
    const struct cge__http_params *p = cge__http_params(r);
    if ((cge__now_us() - t0) / 1000 <= p->request_timeout_ms) return 0;
    cge__http_error(r, 504, "the request took longer than its deadline of %lld ms",
                    (long long)p->request_timeout_ms);
    return 1;
}

/* Runs the engine on n inputs. Returns 1 when the call worked and every input succeeded; else
 * answers the error (the first failed input's, naming its index) and returns 0. The results are
 * the caller's to deinit either way. */
static int run_engine(struct cge__http_req *r, const char *field, const struct cge_input *in,
                      size_t n, struct cge_embed_options *opt, struct cge_result *res) {
    opt->timeout_ms = cge__http_ms_left(r);
    int64_t t0 = cge__now_us();
    enum cge_status st = cge_engine_embed(cge__http_engine(r), in, n, opt, res);
    server_timing(r, cge__now_us() - t0);
    if (st) {
        cge__http_error(r, cge__wire_http_status(st), "%s", cge_errmsg());
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (res[i].status == CGE_OK) continue;
        input_error(r, cge__wire_result_http_status(&res[i]), field, i, n,
                    res[i].errmsg[0] ? res[i].errmsg : cge_status_str(res[i].status));
        return 0;
    }
    /* The engine kept the deadline loosely (or not at all): the client was promised one. */
    return !past_deadline(r, t0);
}

/* --model: runs the one model on n inputs into out (n x dim) and info. Returns 1 when every
 * input succeeded; else answers the error (the first failed input's) and returns 0. */
static int run_model(struct cge__http_req *r, const char *field, const struct cge_input *in,
                     size_t n, float *out, struct cge_embed_info *info) {
    int64_t t0 = cge__now_us();
    enum cge_status st = cge_model_embed(cge__http_model(r)->m, in, (int64_t)n, out, info);
    server_timing(r, cge__now_us() - t0);
    if (st) {
        cge__http_error(r, cge__wire_http_status(st), "%s", cge_errmsg());
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (info[i].status == CGE_OK) continue;
        input_error(r, cge__wire_http_status(info[i].status), field, i, n,
                    info[i].errmsg[0] ? info[i].errmsg : cge_status_str(info[i].status));
        return 0;
    }
    return !past_deadline(r, t0);
}

/* --model: 1 when `model` (a request's "model" field; NULL or null: absent) names the served
 * model; else answers 404 (or 400 for a non-string) and returns 0. */
static int model_is_served(struct cge__http_req *r, const cJSON *model) {
    const struct cge__http_model *one = cge__http_model(r);
    if (!model || cJSON_IsNull(model)) return 1;
    if (!cJSON_IsString(model)) {
        cge__http_error(r, 400, "model: expected a string (\"%s\")", one->id);
        return 0;
    }
    if (strcmp(model->valuestring, one->id) != 0) {
        cge__http_error(r, 404, "model: '%s' does not exist here (this server serves one model, "
                                "\"%s\", see /v1/models)",
                        model->valuestring, one->id);
        return 0;
    }
    return 1;
}

/* --model: the n x dim output buffer and the per-input info, or 0 after answering 503. */
static int model_buffers(struct cge__http_req *r, size_t n, float **out,
                         struct cge_embed_info **info) {
    int dim = cge_model_dim(cge__http_model(r)->m);
    *out = cge__calloc(n * (size_t)dim, sizeof **out);
    *info = cge__calloc(n, sizeof **info);
    if (*out && *info) return 1;
    cge__free(*out);
    cge__free(*info);
    *out = NULL;
    *info = NULL;
    cge__http_error(r, 503, "out of memory");
    return 0;
}

static struct cge__wire_policy policy_of(struct cge__http_req *r) {
    const struct cge__http_params *p = cge__http_params(r);
    struct cge__wire_policy pol = {p->allow_files, p->payload_limit};
    return pol;
}

/* Parses `j` (an input or an array of inputs) into *ins (n of them). Returns 1, or 0 after
 * answering. */
static int parse_inputs(struct cge__http_req *r, const cJSON *j, const char *field,
                        struct cge__wire_input **ins, size_t *n) {
    *ins = NULL;
    *n = 0;
    if (!j) {
        cge__http_error(r, 400, "%s: missing", field);
        return 0;
    }
    size_t count = cJSON_IsArray(j) ? (size_t)cJSON_GetArraySize(j) : 1;
    if (cJSON_IsArray(j) && count == 0) {
        cge__http_error(r, 400, "%s: empty array", field);
        return 0;
    }
    const struct cge__http_params *p = cge__http_params(r);
    if (count > (size_t)p->max_client_batch) {
        cge__http_error(r, 413, "%s: %zu inputs is over the limit of %d per request "
                                "(--max-client-batch-size)",
                        field, count, p->max_client_batch);
        return 0;
    }
    struct cge__wire_input *w = cge__calloc(count, sizeof *w);
    if (!w) {
        cge__http_error(r, 503, "out of memory");
        return 0;
    }
    struct cge__wire_policy pol = policy_of(r);
    char err[ERRLEN], name[64];
    size_t i = 0;
    const cJSON *item = cJSON_IsArray(j) ? j->child : j;
    for (; i < count && item; i++, item = item->next) {
        if (cJSON_IsArray(j)) snprintf(name, sizeof name, "%s[%zu]", field, i);
        else snprintf(name, sizeof name, "%s", field);
        enum cge_status st = cge__wire_input_parse(item, name, &pol, &w[i], err, sizeof err);
        if (st) {
            for (size_t k = 0; k < i; k++) cge__wire_input_deinit(&w[k]);
            cge__free(w);
            cge__http_error(r, st == CGE_ERR_INPUT_TOO_LONG ? 413 : 400, "%s", err);
            return 0;
        }
        if (w[i].in.text && !cge__utf8_valid(w[i].in.text, w[i].in.text_len)) {
            /* The body was valid UTF-8, but a \u escape can still make a lone surrogate. */
            for (size_t k = 0; k <= i; k++) cge__wire_input_deinit(&w[k]);
            cge__free(w);
            cge__http_error(r, 400, "%s: not valid UTF-8 (a lone surrogate escape?)", name);
            return 0;
        }
    }
    *ins = w;
    *n = count;
    return 1;
}

static void free_inputs(struct cge__wire_input *w, size_t n) {
    for (size_t i = 0; w && i < n; i++) cge__wire_input_deinit(&w[i]);
    cge__free(w);
}

static struct cge_input *engine_inputs(const struct cge__wire_input *w, size_t n) {
    struct cge_input *in = cge__calloc(n ? n : 1, sizeof *in);
    for (size_t i = 0; in && i < n; i++) in[i] = w[i].in;
    return in;
}

static void results_free(struct cge_result *res, size_t n) {
    for (size_t i = 0; res && i < n; i++) cge_result_deinit(&res[i]);
    cge__free(res);
}

/* ==== POST /v1/embeddings (OpenAI) ============================================================ */
static void route_embeddings(struct cge__http_req *r) {
    cJSON *j = body_object(r);
    if (!j) return;
    static const char *const known[] = {"input", "model", "encoding_format", "user", "dimensions",
                                        NULL};
    struct cge__wire_input *w = NULL;
    struct cge_input *in = NULL;
    struct cge_result *res = NULL;
    float *mv = NULL;             /* --model: the vectors */
    struct cge_embed_info *mi = NULL;
    size_t n = 0;
    struct cge_buf b;
    cge__buf_init(&b, (size_t)1 << 30);
    if (unknown_field(r, j, known)) goto done;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "encoding_format");
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(j, "dimensions");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(j, "input");
    const struct cge__http_model *one = cge__http_model(r); /* --model */
    int slot = -1; /* -1: the fused vector (or the one model's) */
    const char *model_name = one ? one->id : "cge";
    if (one) {
        if (!model_is_served(r, model)) goto done;
        if (!(cge_model_modalities(one->m) & (CGE_MOD_TEXT | CGE_MOD_CODE))) {
            cge__http_error(r, 400, "model: %s does not read text", one->id);
            goto done;
        }
    } else if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) {
            cge__http_error(r, 400, "model: expected a string (\"cge\" or \"E1\"..\"E12\")");
            goto done;
        }
        model_name = model->valuestring;
        if (strcmp(model_name, "cge") != 0) {
            slot = cge__wire_slot_index(model_name);
            if (slot < 0 || cge_engine_slot_dim(cge__http_engine(r), slot) <= 0) {
                cge__http_error(r, 404, "model: '%s' does not exist here (use \"cge\" or a slot "
                                        "of this ensemble, see /v1/models)",
                                model_name);
                goto done;
            }
            if (!(cge_engine_slot_modalities(cge__http_engine(r), slot) & CGE_MOD_TEXT)) {
                cge__http_error(r, 400, "model: %s does not read text", model_name);
                goto done;
            }
        }
    }
    int b64 = 0;
    if (fmt && !cJSON_IsNull(fmt)) {
        if (!cJSON_IsString(fmt) ||
            (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64"))) {
            cge__http_error(r, 400, "encoding_format: expected \"float\" or \"base64\"");
            goto done;
        }
        b64 = !strcmp(fmt->valuestring, "base64");
    }
    if (user && !cJSON_IsNull(user) && !cJSON_IsString(user)) {
        cge__http_error(r, 400, "user: expected a string");
        goto done;
    }
    int dim = one        ? cge_model_dim(one->m)
              : slot < 0 ? cge_engine_dim(cge__http_engine(r))
                         : cge_engine_slot_dim(cge__http_engine(r), slot);
    if (dims && !cJSON_IsNull(dims) &&
        (!cJSON_IsNumber(dims) || dims->valuedouble != (double)dim)) {
        cge__http_error(r, 400, "dimensions: %s gives %d dimensions, no other number", model_name,
                        dim);
        goto done;
    }
    if (!input) {
        cge__http_error(r, 400, "input: missing");
        goto done;
    }
    /* OpenAI's input: a string or an array of strings (token arrays are not taken: the ensemble
     * has twelve tokenizers). */
    if (cJSON_IsArray(input)) {
        const cJSON *e;
        int i = 0;
        cJSON_ArrayForEach(e, input) {
            if (!cJSON_IsString(e)) {
                cge__http_error(r, 400, "input[%d]: expected a string (token arrays are not "
                                        "accepted)",
                                i);
                goto done;
            }
            i++;
        }
    } else if (!cJSON_IsString(input)) {
        cge__http_error(r, 400, "input: expected a string or an array of strings");
        goto done;
    }
    if (!parse_inputs(r, input, "input", &w, &n)) goto done;
    cge__http_set_items(r, (int64_t)n);
    in = engine_inputs(w, n);
    res = cge__calloc(n, sizeof *res);
    if (!in || !res) {
        cge__http_error(r, 503, "out of memory");
        goto done;
    }
    struct cge_embed_options opt = {0};
    if (slot >= 0) {
        opt.slots = 1u << slot;
        opt.no_fusion = 1;
    }
    if (one) {
        if (!model_buffers(r, n, &mv, &mi) || !run_model(r, "input", in, n, mv, mi)) goto done;
    } else if (!run_engine(r, "input", in, n, &opt, res)) {
        goto done;
    }

    int64_t tokens = 0;
    enum cge_status st = cge__buf_printf(&b, "{\"object\":\"list\",\"data\":[");
    char *enc = NULL;
    if (b64) enc = cge__malloc(((size_t)dim * 4 + 2) / 3 * 4 + 1);
    if (b64 && !enc) st = CGE_ERR_NOMEM;
    for (size_t i = 0; !st && i < n; i++) {
        const float *v = one ? mv + i * (size_t)dim : res[i].embedding;
        if (slot >= 0) {
            const struct cge_slot_result *sr = &res[i].slots[slot];
            if (sr->state != CGE_SLOT_OK || !sr->vector || sr->dim != dim) {
                cge__free(enc);
                cge__http_error(r, 400, "input[%zu]: %s gave no vector (%s)", i, model_name,
                                sr->errmsg[0] ? sr->errmsg : "it does not take this input");
                goto done;
            }
            v = sr->vector;
        }
        tokens += one ? mi[i].n_tokens : res[i].n_tokens;
        st = cge__buf_printf(&b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":",
                             i ? "," : "", i);
        if (st) break;
        if (b64) {
            /* OpenAI's base64: the little-endian float32 bytes (this machine is little-endian,
             * which the build checks). */
            size_t el = cge__base64_encode(v, (size_t)dim * sizeof(float), enc);
            st = cge__buf_append(&b, "\"", 1);
            if (!st) st = cge__buf_append(&b, enc, el);
            if (!st) st = cge__buf_append(&b, "\"", 1);
        } else {
            st = cge__wire_floats(&b, v, dim);
        }
        if (!st) st = cge__buf_append(&b, "}", 1);
    }
    cge__free(enc);
    if (!st) st = cge__buf_printf(&b, "],\"model\":");
    if (!st) st = cge__wire_string(&b, model_name);
    if (!st)
        st = cge__buf_printf(&b, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
                             (long long)tokens, (long long)tokens);
    reply_buf(r, &b, st);
    b.data = NULL;
done:
    cge__buf_free(&b);
    results_free(res, n);
    cge__free(mv);
    cge__free(mi);
    cge__free(in);
    free_inputs(w, n);
    cJSON_Delete(j);
}

/* ==== POST /embed (native) ==================================================================== */
static void route_embed(struct cge__http_req *r) {
    cJSON *j = body_object(r);
    if (!j) return;
    static const char *const known[] = {"inputs", "output", NULL};
    struct cge__wire_input *w = NULL;
    struct cge_input *in = NULL;
    struct cge_result *res = NULL;
    float *mv = NULL;             /* --model: the vectors */
    struct cge_embed_info *mi = NULL;
    size_t n = 0;
    struct cge_buf b;
    cge__buf_init(&b, (size_t)1 << 30);
    if (unknown_field(r, j, known)) goto done;
    const cJSON *output = cJSON_GetObjectItemCaseSensitive(j, "output");
    int out = CGE__OUT_FUSED;
    if (output && !cJSON_IsNull(output)) {
        out = cJSON_IsString(output) ? cge__wire_output_parse(output->valuestring) : 0;
        if (!out) {
            cge__http_error(r, 400, "output: expected \"fused\", \"slots\" or \"both\"");
            goto done;
        }
    }
    const struct cge__http_model *one = cge__http_model(r); /* --model */
    if (one && out != CGE__OUT_FUSED) {
        cge__http_error(r, 400, "output: this server serves one model (--model): its vector is "
                                "\"embedding\"; \"slots\" and \"both\" need an ensemble");
        goto done;
    }
    if (!parse_inputs(r, cJSON_GetObjectItemCaseSensitive(j, "inputs"), "inputs", &w, &n))
        goto done;
    cge__http_set_items(r, (int64_t)n);
    in = engine_inputs(w, n);
    res = cge__calloc(n, sizeof *res);
    if (!in || !res) {
        cge__http_error(r, 503, "out of memory");
        goto done;
    }
    struct cge_embed_options opt = {0};
    opt.no_fusion = out == CGE__OUT_SLOTS;
    if (one) {
        if (!model_buffers(r, n, &mv, &mi) || !run_model(r, "inputs", in, n, mv, mi)) goto done;
    } else if (!run_engine(r, "inputs", in, n, &opt, res)) {
        goto done;
    }
    enum cge_status st = cge__buf_append(&b, "[", 1);
    for (size_t i = 0; !st && i < n; i++) {
        if (i) st = cge__buf_append(&b, ",", 1);
        if (st) break;
        if (one) {
            /* The one model's vector, under the key the fused one has. */
            int dim = cge_model_dim(one->m);
            st = cge__buf_printf(&b, "{\"embedding\":");
            if (!st) st = cge__wire_floats(&b, mv + i * (size_t)dim, dim);
            if (!st) st = cge__buf_append(&b, "}", 1);
        } else {
            st = cge__wire_result_json(&b, &res[i], (unsigned)out);
        }
    }
    if (!st) st = cge__buf_append(&b, "]", 1);
    reply_buf(r, &b, st);
    b.data = NULL;
done:
    cge__buf_free(&b);
    results_free(res, n);
    cge__free(mv);
    cge__free(mi);
    cge__free(in);
    free_inputs(w, n);
    cJSON_Delete(j);
}

/* ==== POST /similarity ======================================================================== */
static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

static enum cge_status gate_json(struct cge_buf *b, const char *name, const struct cge_result *x) {
    enum cge_status st = cge__buf_printf(b, ",\"%s\":{\"selected\":[", name);
    for (int k = 0; !st && k < x->top_k; k++)
        st = cge__buf_printf(b, k ? ",%d" : "%d", x->selected[k]);
    if (!st) st = cge__buf_printf(b, "],\"expert_weights\":");
    if (!st) st = cge__wire_floats(b, x->expert_weights, x->n_experts);
    if (!st) st = cge__buf_append(b, "}", 1);
    return st;
}

static void route_similarity(struct cge__http_req *r) {
    cJSON *j = body_object(r);
    if (!j) return;
    static const char *const known[] = {"a", "b", NULL};
    struct cge__wire_input w[2];
    memset(w, 0, sizeof w);
    struct cge_result res[2];
    memset(res, 0, sizeof res);
    struct cge_buf b;
    cge__buf_init(&b, (size_t)1 << 20);
    if (unknown_field(r, j, known)) goto done;
    struct cge__wire_policy pol = policy_of(r);
    char err[ERRLEN];
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "b" : "a";
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, name);
        if (!x) {
            cge__http_error(r, 400, "%s: missing", name);
            goto done;
        }
        enum cge_status st = cge__wire_input_parse(x, name, &pol, &w[i], err, sizeof err);
        if (st) {
            cge__http_error(r, st == CGE_ERR_INPUT_TOO_LONG ? 413 : 400, "%s", err);
            goto done;
        }
    }
    cge__http_set_items(r, 2);
    struct cge_input in[2] = {w[0].in, w[1].in};
    const struct cge__http_model *one = cge__http_model(r); /* --model */
    if (one) {
        /* The one model's cosine: no slots, no gate. */
        float *mv = NULL;
        struct cge_embed_info *mi = NULL;
        if (model_buffers(r, 2, &mv, &mi) && run_model(r, "inputs", in, 2, mv, mi)) {
            int dim = cge_model_dim(one->m);
            enum cge_status st =
                cge__buf_printf(&b, "{\"cosine\":%.9g,\"model\":", cosine(mv, mv + dim, dim));
            if (!st) st = cge__wire_string(&b, one->id);
            if (!st) st = cge__buf_append(&b, "}", 1);
            reply_buf(r, &b, st);
            b.data = NULL;
        }
        cge__free(mv);
        cge__free(mi);
        goto done;
    }
    struct cge_embed_options opt = {0};
    if (!run_engine(r, "inputs", in, 2, &opt, res)) goto done;
    enum cge_status st =
        cge__buf_printf(&b, "{\"cosine\":%.9g,\"slots\":{",
                        cosine(res[0].embedding, res[1].embedding, res[0].dim));
    for (int s = 0; !st && s < CGE_N_SLOTS; s++) {
        const struct cge_slot_result *x = &res[0].slots[s], *y = &res[1].slots[s];
        if (x->state == CGE_SLOT_OK && y->state == CGE_SLOT_OK && x->dim == y->dim)
            st = cge__buf_printf(&b, "%s\"E%d\":%.9g", s ? "," : "", s + 1,
                                 cosine(x->vector, y->vector, x->dim));
        else st = cge__buf_printf(&b, "%s\"E%d\":null", s ? "," : "", s + 1);
    }
    if (!st) st = cge__buf_append(&b, "}", 1);
    if (!st) st = gate_json(&b, "a", &res[0]);
    if (!st) st = gate_json(&b, "b", &res[1]);
    if (!st) st = cge__buf_append(&b, "}", 1);
    reply_buf(r, &b, st);
    b.data = NULL;
done:
    cge__buf_free(&b);
    cge_result_deinit(&res[0]);
    cge_result_deinit(&res[1]);
    cge__wire_input_deinit(&w[0]);
    cge__wire_input_deinit(&w[1]);
    cJSON_Delete(j);
}

/* ==== POST /tokenize ========================================================================== */
static enum cge_status tokenize_one(struct cge__http_req *r, int slot, const char *text,
                                    enum cge_role role, struct cge_buf *b) {
    int64_t cap = 512;
    int32_t *ids = NULL;
    int64_t n = -1;
    for (int round = 0; round < 2; round++) {
        int32_t *grown = cge__realloc(ids, (size_t)cap * sizeof *ids);
        if (!grown) {
            cge__free(ids);
            return cge__err(CGE_ERR_NOMEM, "tokenize: %lld ids", (long long)cap);
        }
        ids = grown;
        const struct cge__http_model *one = cge__http_model(r);
        n = one ? cge_model_tokenize(one->m, text, strlen(text), ids, cap)
                : cge_engine_tokenize(cge__http_engine(r), slot, text, strlen(text), role, ids,
                                      cap);
        if (n < 0 || n <= cap) break;
        cap = n;
    }
    if (n < 0) {
        cge__free(ids);
        return CGE_ERR_TOKENIZE; /* cge_errmsg() says why */
    }
    enum cge_status st = cge__buf_append(b, "[", 1);
    for (int64_t i = 0; !st && i < n; i++) st = cge__buf_printf(b, i ? ",%d" : "%d", ids[i]);
    if (!st) st = cge__buf_append(b, "]", 1);
    cge__free(ids);
    return st;
}

static void route_tokenize(struct cge__http_req *r) {
    cJSON *j = body_object(r);
    if (!j) return;
    static const char *const known[] = {"inputs", "model", "role", NULL};
    struct cge_buf b;
    cge__buf_init(&b, (size_t)256 << 20);
    if (unknown_field(r, j, known)) goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(j, "role");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    const struct cge__http_model *one = cge__http_model(r); /* --model */
    const char *name = one ? one->id : "E1";
    int slot = -1;
    if (one) {
        if (!model_is_served(r, model)) goto done;
        if (!(cge_model_modalities(one->m) & (CGE_MOD_TEXT | CGE_MOD_CODE))) {
            cge__http_error(r, 400, "model: %s does not read text", name);
            goto done;
        }
    } else if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) {
            cge__http_error(r, 400, "model: expected \"E1\"..\"E12\"");
            goto done;
        }
        name = model->valuestring;
    }
    if (!one) slot = cge__wire_slot_index(name);
    if (!one && (slot < 0 || cge_engine_slot_dim(cge__http_engine(r), slot) <= 0)) {
        cge__http_error(r, 404, "model: '%s' is not a slot of this ensemble", name);
        goto done;
    }
    if (!one &&
        !(cge_engine_slot_modalities(cge__http_engine(r), slot) & (CGE_MOD_TEXT | CGE_MOD_CODE))) {
        cge__http_error(r, 400, "model: %s does not read text", name);
        goto done;
    }
    enum cge_role rl = CGE_ROLE_DOCUMENT;
    if (role && !cJSON_IsNull(role)) {
        if (!cJSON_IsString(role) ||
            (strcmp(role->valuestring, "query") && strcmp(role->valuestring, "document"))) {
            cge__http_error(r, 400, "role: expected \"query\" or \"document\"");
            goto done;
        }
        rl = !strcmp(role->valuestring, "query") ? CGE_ROLE_QUERY : CGE_ROLE_DOCUMENT;
    }
    int many = cJSON_IsArray(inputs);
    if (!inputs || !(cJSON_IsString(inputs) || many)) {
        cge__http_error(r, 400, "inputs: expected a string or an array of strings");
        goto done;
    }
    int count = many ? cJSON_GetArraySize(inputs) : 1;
    if (count > cge__http_params(r)->max_client_batch) {
        cge__http_error(r, 413, "inputs: %d texts is over the limit of %d per request", count,
                        cge__http_params(r)->max_client_batch);
        goto done;
    }
    cge__http_set_items(r, count);
    enum cge_status st = cge__buf_printf(&b, "{\"model\":");
    if (!st) st = cge__wire_string(&b, name);
    if (!st) st = cge__buf_printf(&b, ",\"ids\":%s", many ? "[" : "");
    int i = 0;
    const cJSON *e = many ? inputs->child : inputs;
    for (; !st && e; e = many ? e->next : NULL, i++) {
        if (!cJSON_IsString(e)) {
            cge__buf_free(&b);
            cge__http_error(r, 400, "inputs[%d]: expected a string", i);
            goto done;
        }
        if (i) st = cge__buf_append(&b, ",", 1);
        if (!st) st = tokenize_one(r, slot, e->valuestring, rl, &b);
        if (st == CGE_ERR_TOKENIZE) {
            cge__buf_free(&b);
            if (many) cge__http_error(r, 400, "inputs[%d]: %s", i, cge_errmsg());
            else cge__http_error(r, 400, "inputs: %s", cge_errmsg());
            goto done;
        }
    }
    if (!st) st = cge__buf_printf(&b, "%s}", many ? "]" : "");
    reply_buf(r, &b, st);
    b.data = NULL;
done:
    cge__buf_free(&b);
    cJSON_Delete(j);
}

/* ==== GET /health, /info, /v1/models ========================================================== */
static void route_health(struct cge__http_req *r) {
    if (cge__http_draining(cge__http_server_of(r))) {
        cge__http_reply_static(r, 503, "application/json", "{\"status\":\"draining\"}");
        return;
    }
    /* --model: the model was loaded before the server started. */
    enum cge_status st = cge__http_model(r) ? CGE_OK : cge_engine_health(cge__http_engine(r));
    if (st) {
        cge__http_error(r, 503, "unavailable: %s", cge_errmsg()[0] ? cge_errmsg()
                                                                   : cge_status_str(st));
        return;
    }
    cge__http_reply_static(r, 200, "application/json", "{\"status\":\"ok\"}");
}

static const char *load_state_str(enum cge_slot_load_state s) {
    switch (s) {
    case CGE_LOAD_ABSENT: return "absent";
    case CGE_LOAD_UNLOADED: return "unloaded";
    case CGE_LOAD_LOADING: return "loading";
    case CGE_LOAD_READY: return "ready";
    case CGE_LOAD_FAILED: return "failed";
    }
    return "unknown";
}

/* The "limits" object of /info. */
static enum cge_status limits_json(struct cge_buf *b, const struct cge__http_params *p) {
    return cge__buf_printf(
        b,
        "\"limits\":{\"max_concurrent_requests\":%d,\"max_client_batch_size\":%d,"
        "\"payload_limit_bytes\":%zu,\"request_timeout_ms\":%lld,\"allow_files\":%s,"
        "\"api_key\":%s,\"admin\":%s}",
        p->max_concurrent, p->max_client_batch, p->payload_limit, (long long)p->request_timeout_ms,
        p->allow_files ? "true" : "false", p->api_key ? "true" : "false",
        p->admin_key ? "true" : "false");
}

/* --model: the one model in place of the ensemble and its slots. */
static void info_model(struct cge__http_req *r, const struct cge__http_model *one) {
    struct cge_buf b;
    cge__buf_init(&b, (size_t)1 << 20);
    enum cge_status st = cge__buf_printf(&b, "{\"name\":\"cge\",\"version\":\"%s\","
                                             "\"dim\":%d,\"models\":[{\"id\":",
                                         CGE_VERSION_STRING, cge_model_dim(one->m));
    if (!st) st = cge__wire_string(&b, one->id);
    if (!st) st = cge__buf_printf(&b, ",\"path\":");
    if (!st) st = cge__wire_string(&b, one->path);
    if (!st) st = cge__buf_printf(&b, ",\"family\":");
    if (!st) st = cge__wire_string(&b, cge_model_family(one->m));
    unsigned mods = cge_model_modalities(one->m);
    static const char *const mod_names[] = {"text", "code", "image", "audio"};
    if (!st)
        st = cge__buf_printf(&b, ",\"dim\":%d,\"max_tokens\":%lld,\"state\":\"ready\","
                                 "\"modalities\":[",
                             cge_model_dim(one->m), (long long)cge_model_max_seq_len(one->m));
    int first = 1;
    for (unsigned k = 0; !st && k < 4; k++) {
        if (!(mods & (1u << k))) continue;
        st = cge__buf_printf(&b, "%s\"%s\"", first ? "" : ",", mod_names[k]);
        first = 0;
    }
    if (!st) st = cge__buf_append(&b, "]}],", 4);
    if (!st) st = limits_json(&b, cge__http_params(r));
    if (!st) st = cge__buf_append(&b, "}", 1);
    reply_buf(r, &b, st);
}

static void route_info(struct cge__http_req *r) {
    if (cge__http_model(r)) {
        info_model(r, cge__http_model(r));
        return;
    }
    struct cge_engine *e = cge__http_engine(r);
    struct cge_engine_stats *stats = cge__calloc(1, sizeof *stats);
    if (!stats) {
        cge__http_error(r, 503, "out of memory");
        return;
    }
    enum cge_status st = cge_engine_get_stats(e, stats);
    if (st) {
        cge__free(stats);
        cge__http_error(r, 500, "stats: %s", cge_errmsg());
        return;
    }
    const struct cge__http_params *p = cge__http_params(r);
    struct cge_buf b;
    cge__buf_init(&b, (size_t)16 << 20);
    st = cge__buf_printf(&b, "{\"name\":\"cge\",\"version\":\"%s\",\"ensemble\":",
                         CGE_VERSION_STRING);
    if (!st) st = cge__wire_string(&b, cge_engine_name(e) ? cge_engine_name(e) : "");
    if (!st)
        st = cge__buf_printf(&b, ",\"demo\":%s,\"dim\":%d,\"slots\":[",
                             cge_engine_is_demo(e) ? "true" : "false", cge_engine_dim(e));
    int first = 1;
    for (int s = 0; !st && s < CGE_N_SLOTS; s++) {
        const struct cge_slot_stats *ss = &stats->slots[s];
        if (ss->state == CGE_LOAD_ABSENT && cge_engine_slot_dim(e, s) <= 0) continue;
        st = cge__buf_printf(&b, "%s{\"slot\":\"E%d\",\"path\":", first ? "" : ",", s + 1);
        first = 0;
        if (!st) st = cge__wire_string(&b, ss->path);
        if (!st && ss->path2[0]) {
            st = cge__buf_printf(&b, ",\"path_query\":");
            if (!st) st = cge__wire_string(&b, ss->path2);
        }
        if (!st)
            st = cge__buf_printf(
                &b,
                ",\"dim\":%d,\"dtype\":\"%s\",\"state\":\"%s\",\"version\":%llu,"
                "\"resident_bytes\":%lld,\"load_ms\":%lld,\"requests\":%llu,\"failures\":%llu,"
                "\"mean_latency_ms\":%.3f,\"p95_latency_ms\":%.3f,\"queue_depth\":%lld,"
                "\"max_tokens\":%lld,\"error\":",
                ss->dim ? ss->dim : cge_engine_slot_dim(e, s), cge_dtype_str(ss->dtype),
                load_state_str(ss->state), (unsigned long long)ss->version,
                (long long)ss->resident_bytes, (long long)ss->load_ms,
                (unsigned long long)ss->requests, (unsigned long long)ss->failures,
                ss->mean_latency_ms, ss->p95_latency_ms, (long long)ss->queue_depth,
                (long long)cge_engine_slot_max_tokens(e, s));
        if (!st) st = cge__wire_string(&b, ss->errmsg);
        if (!st) st = cge__buf_append(&b, "}", 1);
    }
    if (!st)
        st = cge__buf_printf(
            &b,
            "],\"cache\":{\"hits\":%llu,\"misses\":%llu,\"entries\":%llu,\"hit_rate\":%.6f},",
            (unsigned long long)stats->cache_hits, (unsigned long long)stats->cache_misses,
            (unsigned long long)stats->cache_entries, stats->cache_hit_rate);
    if (!st) st = limits_json(&b, p);
    if (!st) st = cge__buf_append(&b, "}", 1);
    cge__free(stats);
    reply_buf(r, &b, st);
}

static void route_models(struct cge__http_req *r) {
    struct cge_engine *e = cge__http_engine(r);
    struct cge_buf b;
    cge__buf_init(&b, (size_t)1 << 20);
    const struct cge__http_model *one = cge__http_model(r);
    if (one) { /* --model: the one model */
        enum cge_status st = cge__buf_printf(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
        if (!st) st = cge__wire_string(&b, one->id);
        if (!st)
            st = cge__buf_printf(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"cge\","
                                     "\"dimensions\":%d}]}",
                                 cge_model_dim(one->m));
        reply_buf(r, &b, st);
        return;
    }
    enum cge_status st = cge__buf_printf(
        &b, "{\"object\":\"list\",\"data\":[{\"id\":\"cge\",\"object\":\"model\",\"created\":0,"
            "\"owned_by\":\"cge\",\"dimensions\":%d}",
        cge_engine_dim(e));
    for (int s = 0; !st && s < CGE_N_SLOTS; s++) {
        int dim = cge_engine_slot_dim(e, s);
        if (dim <= 0) continue;
        st = cge__buf_printf(&b, ",{\"id\":\"E%d\",\"object\":\"model\",\"created\":0,"
                                 "\"owned_by\":\"cge\",\"dimensions\":%d}",
                             s + 1, dim);
    }
    if (!st) st = cge__buf_append(&b, "]}", 2);
    reply_buf(r, &b, st);
}

/* ==== GET /metrics (Prometheus text) ========================================================== */
static void route_metrics(struct cge__http_req *r) {
    struct cge_engine_stats *stats = cge__calloc(1, sizeof *stats);
    if (!stats) {
        cge__http_error(r, 503, "out of memory");
        return;
    }
    /* --model: the server's own counters only (no engine, no slots, no cache). */
    const struct cge__http_model *one = cge__http_model(r);
    enum cge_status st = one ? CGE_OK : cge_engine_get_stats(cge__http_engine(r), stats);
    struct cge_buf b;
    cge__buf_init(&b, (size_t)16 << 20);
    if (!st) st = cge__http_metrics_text(cge__http_server_of(r), &b);
    if (one) goto out;
    if (!st)
        st = cge__buf_printf(
            &b,
            "# HELP cge_engine_requests_total Engine embed calls.\n"
            "# TYPE cge_engine_requests_total counter\ncge_engine_requests_total %llu\n"
            "# HELP cge_engine_inputs_total Inputs embedded.\n"
            "# TYPE cge_engine_inputs_total counter\ncge_engine_inputs_total %llu\n"
            "# HELP cge_engine_failures_total Inputs that failed as a whole.\n"
            "# TYPE cge_engine_failures_total counter\ncge_engine_failures_total %llu\n"
            "# HELP cge_engine_in_flight Engine calls running now.\n"
            "# TYPE cge_engine_in_flight gauge\ncge_engine_in_flight %lld\n"
            "# HELP cge_cache_hits_total Inputs answered from the cache.\n"
            "# TYPE cge_cache_hits_total counter\ncge_cache_hits_total %llu\n"
            "# HELP cge_cache_misses_total Inputs not in the cache.\n"
            "# TYPE cge_cache_misses_total counter\ncge_cache_misses_total %llu\n"
            "# HELP cge_cache_entries Entries in the cache.\n"
            "# TYPE cge_cache_entries gauge\ncge_cache_entries %llu\n",
            (unsigned long long)stats->requests, (unsigned long long)stats->inputs,
            (unsigned long long)stats->failures, (long long)stats->in_flight,
            (unsigned long long)stats->cache_hits, (unsigned long long)stats->cache_misses,
            (unsigned long long)stats->cache_entries);
    /* Per-slot families, one HELP/TYPE each, then a line per configured slot. */
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"cge_queue_depth", "gauge", "Inputs waiting in a slot's queue."},
        {"cge_model_loaded", "gauge", "1 when the slot's model is loaded and ready."},
        {"cge_model_resident_bytes", "gauge", "Weight bytes the slot's model holds in memory."},
        {"cge_model_version", "gauge", "The slot's model version (a hot swap increments it)."},
        {"cge_slot_requests_total", "counter", "Inputs the slot ran."},
        {"cge_slot_failures_total", "counter", "Inputs the slot failed."},
        {"cge_slot_duration_seconds", "summary",
         "Per-input time in the slot: P95 over the last 1024 batches, sum and count."},
    };
    for (size_t f = 0; !st && f < sizeof fam / sizeof fam[0]; f++) {
        st = cge__buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help,
                             fam[f].name, fam[f].type);
        for (int s = 0; !st && s < CGE_N_SLOTS; s++) {
            const struct cge_slot_stats *ss = &stats->slots[s];
            if (ss->state == CGE_LOAD_ABSENT) continue;
            switch (f) {
            case 0:
                st = cge__buf_printf(&b, "%s{slot=\"E%d\"} %lld\n", fam[f].name, s + 1,
                                     (long long)ss->queue_depth);
                break;
            case 1:
                st = cge__buf_printf(&b, "%s{slot=\"E%d\"} %d\n", fam[f].name, s + 1,
                                     ss->state == CGE_LOAD_READY);
                break;
            case 2:
                st = cge__buf_printf(&b, "%s{slot=\"E%d\"} %lld\n", fam[f].name, s + 1,
                                     (long long)ss->resident_bytes);
                break;
            case 3:
                st = cge__buf_printf(&b, "%s{slot=\"E%d\"} %llu\n", fam[f].name, s + 1,
                                     (unsigned long long)ss->version);
                break;
            case 4:
                st = cge__buf_printf(&b, "%s{slot=\"E%d\"} %llu\n", fam[f].name, s + 1,
                                     (unsigned long long)ss->requests);
                break;
            case 5:
                st = cge__buf_printf(&b, "%s{slot=\"E%d\"} %llu\n", fam[f].name, s + 1,
                                     (unsigned long long)ss->failures);
                break;
            default:
                st = cge__buf_printf(&b,
                                     "%s{slot=\"E%d\",quantile=\"0.95\"} %.6f\n"
                                     "%s_sum{slot=\"E%d\"} %.6f\n%s_count{slot=\"E%d\"} %llu\n",
                                     fam[f].name, s + 1, ss->p95_latency_ms / 1e3, fam[f].name,
                                     s + 1, ss->mean_latency_ms / 1e3 * (double)ss->requests,
                                     fam[f].name, s + 1, (unsigned long long)ss->requests);
                break;
            }
        }
    }
out:
    cge__free(stats);
    if (st) {
        cge__buf_free(&b);
        cge__http_error(r, 500, "metrics: %s", cge_errmsg());
        return;
    }
    cge__http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
}

/* ==== admin: POST /admin/swap, /admin/unload ================================================== */
static int admin_slot(struct cge__http_req *r, const cJSON *j) {
    if (cge__http_model(r)) {
        cge__http_error(r, 400, "slot: this server serves one model (--model): no slots");
        return -1;
    }
    const cJSON *slot = cJSON_GetObjectItemCaseSensitive(j, "slot");
    int s = cJSON_IsString(slot) ? cge__wire_slot_index(slot->valuestring) : -1;
    if (s < 0) cge__http_error(r, 400, "slot: expected \"E1\"..\"E12\"");
    return s;
}

static void route_swap(struct cge__http_req *r) {
    cJSON *j = body_object(r);
    if (!j) return;
    static const char *const known[] = {"slot", "path", NULL};
    if (unknown_field(r, j, known)) goto done;
    int s = admin_slot(r, j);
    if (s < 0) goto done;
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(j, "path");
    if (!cJSON_IsString(path) || !path->valuestring[0]) {
        cge__http_error(r, 400, "path: expected a model folder");
        goto done;
    }
    cge__http_set_items(r, 1);
    uint64_t version = 0;
    enum cge_status st = cge_engine_swap(cge__http_engine(r), s, path->valuestring, &version);
    if (st == CGE_ERR_INVALID_VALUE && cge_engine_slot_dim(cge__http_engine(r), s) <= 0) {
        cge__http_error(r, 400, "slot: E%d is not in this ensemble: %s", s + 1, cge_errmsg());
        goto done;
    }
    if (st) {
        /* Validation failed (it does not load, wrong dimension, non-finite probe): the old
         * model keeps serving. */
        cge__http_error(r, 422, "swap of E%d refused (the old model keeps serving): %s: %s", s + 1,
                        cge_status_str(st), cge_errmsg());
        goto done;
    }
    struct cge_buf b;
    cge__buf_init(&b, (size_t)64 << 10);
    st = cge__buf_printf(&b, "{\"slot\":\"E%d\",\"version\":%llu,\"path\":", s + 1,
                         (unsigned long long)version);
    if (!st) st = cge__wire_string(&b, path->valuestring);
    if (!st) st = cge__buf_append(&b, "}", 1);
    reply_buf(r, &b, st);
done:
    cJSON_Delete(j);
}

static void route_unload(struct cge__http_req *r) {
    cJSON *j = body_object(r);
    if (!j) return;
    static const char *const known[] = {"slot", NULL};
    if (unknown_field(r, j, known)) goto done;
    int s = admin_slot(r, j);
    if (s < 0) goto done;
    enum cge_status st = cge_engine_unload(cge__http_engine(r), s);
    if (st) {
        cge__http_error(r, cge__wire_http_status(st), "unload E%d: %s", s + 1, cge_errmsg());
        goto done;
    }
    char *body = cge__malloc(64);
    if (!body) {
        cge__http_error(r, 503, "out of memory");
        goto done;
    }
    int n = snprintf(body, 64, "{\"slot\":\"E%d\",\"unloaded\":true}", s + 1);
    cge__http_reply(r, 200, "application/json", body, (size_t)n);
done:
    cJSON_Delete(j);
}

/* ==== the page and the API description ======================================================== */
static void route_page(struct cge__http_req *r) {
    cge__http_reply_static(r, 200, "text/html; charset=utf-8", cge__page_html);
}

static void route_openapi(struct cge__http_req *r) {
    cge__http_reply_static(r, 200, "application/json", cge__openapi_json);
}

/* ==== /mcp: the MCP streamable HTTP transport (cge serve --mcp) =================================
 * The protocol and its sessions are mcp_http.c's; here only HTTP: headers in, headers out, and
 * the Origin check the MCP specification asks of servers against DNS rebinding (a browser page
 * from elsewhere must not reach a server on 127.0.0.1). Answers are JSON; GET (an SSE stream
 * for server-initiated messages, which cge never sends) is 405 by the route table. */

/* 1 when an Origin header is absent or names this machine. */
static int local_origin(struct cge__http_req *r) {
    const char *o = cge__http_header(r, "Origin");
    if (!o) return 1;
    static const char *const ok[] = {"http://localhost", "https://localhost", "http://127.0.0.1",
                                     "https://127.0.0.1", "http://[::1]", "https://[::1]"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n = strlen(ok[i]);
        if (!strncmp(o, ok[i], n) && (o[n] == '\0' || o[n] == ':')) return 1;
    }
    return 0;
}

static int mcp_gate(struct cge__http_req *r) {
    if (!cge__http_params(r)->mcp) {
        cge__http_error(r, 404, "/mcp: not enabled (start cge serve with --mcp)");
        return 0;
    }
    if (!local_origin(r)) {
        cge__http_error(r, 403, "/mcp: Origin %.100s is not allowed",
                        cge__http_header(r, "Origin"));
        return 0;
    }
    return 1;
}

static void route_mcp_post(struct cge__http_req *r) {
    if (!mcp_gate(r)) return;
    size_t len = 0;
    const char *body = cge__http_body(r, &len);
    struct cge__mcp_http_answer a;
    cge__mcp_sessions_post(cge__http_params(r)->mcp, cge__http_header(r, "Mcp-Session-Id"),
                           cge__http_header(r, "MCP-Protocol-Version"), body, len, &a);
    if (a.session_id[0]) cge__http_add_header(r, "Mcp-Session-Id", a.session_id);
    if (!a.body) {
        cge__http_reply(r, a.status ? a.status : 500, NULL, NULL, 0);
        return;
    }
    cge__http_reply(r, a.status, "application/json", a.body, strlen(a.body));
}

static void route_mcp_delete(struct cge__http_req *r) {
    if (!mcp_gate(r)) return;
    int st = cge__mcp_sessions_delete(cge__http_params(r)->mcp,
                                      cge__http_header(r, "Mcp-Session-Id"));
    if (st == 200) cge__http_reply(r, 200, NULL, NULL, 0);
    else cge__http_error(r, st, "%s", st == 400 ? "no Mcp-Session-Id header" : "no such session");
}

/* ==== the table ===============================================================================
 * One line per method and path, and one entry in openapi.json (test_server_http checks that they
 * agree). */
const struct cge__http_route cge__http_routes[] = {
    {"POST", "/v1/embeddings", route_embeddings, CGE__ROUTE_WORKER, "embeddings"},
    {"POST", "/embed", route_embed, CGE__ROUTE_WORKER, "embed"},
    {"POST", "/similarity", route_similarity, CGE__ROUTE_WORKER, "similarity"},
    {"POST", "/tokenize", route_tokenize, CGE__ROUTE_WORKER, "tokenize"},
    {"GET", "/health", route_health, CGE__ROUTE_OPEN, "health"},
    {"GET", "/info", route_info, 0, "info"},
    {"GET", "/v1/models", route_models, 0, "models"},
    {"GET", "/metrics", route_metrics, 0, "metrics"},
    {"GET", "/openapi.json", route_openapi, 0, "openapi"},
    {"GET", "/", route_page, CGE__ROUTE_OPEN, "page"},
    {"GET", "/docs", route_page, CGE__ROUTE_OPEN, "page"},
    {"POST", "/admin/swap", route_swap, CGE__ROUTE_ADMIN | CGE__ROUTE_WORKER, "admin_swap"},
    {"POST", "/admin/unload", route_unload, CGE__ROUTE_ADMIN | CGE__ROUTE_WORKER, "admin_unload"},
    {"POST", "/mcp", route_mcp_post, CGE__ROUTE_WORKER, "mcp"},
    {"DELETE", "/mcp", route_mcp_delete, 0, "mcp"},
};
const size_t cge__http_n_routes = sizeof cge__http_routes / sizeof cge__http_routes[0];
