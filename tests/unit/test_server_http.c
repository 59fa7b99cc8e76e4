/*
 * test_server_http.c: `cge serve` end to end: the real binary started on 127.0.0.1 with --port 0,
 * driven with libcurl (and raw sockets for what a well-behaved client never sends), checked
 * against the shared ensemble fixture (tests/fixtures/ensemble, made by HF transformers) and
 * against `cge embed --ensemble`.
 *
 * Covers every route and every error status of the issue: 400 (malformed, truncated, invalid
 * UTF-8, deep nesting, wrong types, unknown fields, broken base64 and media, paths without
 * --allow-files), 401, 404, 405, 413 (Content-Length answered before the body; huge batches),
 * 422 (--no-truncate), 429 (with Retry-After), 504; slow clients; hot swap and its rollback;
 * the OpenAPI description against the route table; SIGTERM finishing a running request and
 * exiting 0. After the bad inputs the server must still answer.
 */
#include "ensemble_fixture.h"
#include "server/http.h"
#include "server/wire.h"
#include "server_proc.h"
#include "testhelp.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CGE_BIN
#    error "CGE_BIN (the cge binary) must be defined by the build"
#endif

#define RUN_ARG(fn, a)                                                                \
    do {                                                                              \
        int f0_ = th_failed;                                                          \
        fn(a);                                                                        \
        if (th_failed != f0_) printf("  in %s\n", #fn);                               \
    } while (0)

/* ==== HTTP with libcurl ====================================================================== */
struct resp {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    size_t hlen;
    cJSON *json; /* body parsed, when it is JSON */
};

static size_t on_body(char *p, size_t sz, size_t n, void *u) {
    struct resp *r = u;
    char *nb = realloc(r->body, r->len + sz * n + 1);
    if (!nb) return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u) {
    struct resp *r = u;
    size_t k = sz * n < sizeof r->headers - 1 - r->hlen ? sz * n : sizeof r->headers - 1 - r->hlen;
    memcpy(r->headers + r->hlen, p, k);
    r->hlen += k;
    r->headers[r->hlen] = '\0';
    return sz * n;
}

static void resp_free(struct resp *r) {
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static CURL *make_easy(int port, const char *method, const char *path, const char *key,
                       const char *body, long len, struct resp *out, struct curl_slist **hl) {
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    *hl = curl_slist_append(NULL, "Content-Type: application/json");
    *hl = curl_slist_append(*hl, "Expect:"); /* no 100-continue round trip */
    if (key) {
        char h[300];
        snprintf(h, sizeof h, "Authorization: Bearer %s", key);
        *hl = curl_slist_append(*hl, h);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hl);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(len < 0 ? (long)strlen(body) : len));
    }
    if (strcmp(method, body ? "POST" : "GET") != 0) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    return c;
}

static long http(int port, const char *method, const char *path, const char *key,
                 const char *body, long len, struct resp *out) {
    struct curl_slist *hl = NULL;
    CURL *c = make_easy(port, method, path, key, body, len, out, &hl);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    else out->status = -1;
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    if (out->body) out->json = cJSON_Parse(out->body);
    return out->status;
}

/* status of a request whose answer we only need the status of */
static long status_of(int port, const char *method, const char *path, const char *key,
                      const char *body) {
    struct resp r;
    long st = http(port, method, path, key, body, -1, &r);
    if (st >= 400) {
        /* Every error is the JSON error object with its code. */
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(r.json, "error");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        CHECK_MSG(cJSON_IsNumber(code) && code->valueint == st && cJSON_IsString(msg),
                  "%s %s: error body %s", method, path, r.body ? r.body : "(none)");
    }
    resp_free(&r);
    return st;
}

/* Raw bytes over TCP: sends data (then closes the write side if shut), reads what comes back
 * for at most timeout_ms. Returns the bytes read (-1: no connection). */
static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static long raw_read(int fd, char *out, size_t cap, int timeout_ms) {
    size_t got = 0;
    int64_t until = cge__now_us() + (int64_t)timeout_ms * 1000;
    while (got + 1 < cap) {
        int left = (int)((until - cge__now_us()) / 1000);
        if (left <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) break;
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    out[got] = '\0';
    return (long)got;
}

static long raw_exchange(int port, const char *data, size_t len, int close_after, char *out,
                         size_t cap, int timeout_ms) {
    int fd = raw_connect(port);
    if (fd < 0) return -1;
    send(fd, data, len, MSG_NOSIGNAL);
    if (close_after) shutdown(fd, SHUT_WR);
    long got = raw_read(fd, out, cap, timeout_ms);
    close(fd);
    return got;
}

/* ==== helpers on answers ===================================================================== */
static int floats_of(const cJSON *a, float *v, int cap) {
    return ef_floats(a, v, cap);
}

static char *file_data_url(const char *path, const char *mime) {
    size_t len = 0;
    char *bytes = th_read_file(path, &len);
    if (!bytes) return NULL;
    size_t pre = strlen("data:") + strlen(mime) + strlen(";base64,");
    char *url = malloc(pre + (len + 2) / 3 * 4 + 1);
    sprintf(url, "data:%s;base64,", mime);
    cge__base64_encode(bytes, len, url + pre);
    free(bytes);
    return url;
}

/* The /embed body of fixture rows [0, n): media as data: URLs. */
static char *fixture_embed_body(const struct ef *f, int n, const char *output) {
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "inputs");
    for (int i = 0; i < n; i++) {
        cJSON *in = cJSON_Duplicate(f->rows[i].input, 1);
        const char *kinds[2] = {"image", "audio"};
        for (int k = 0; k < 2; k++) {
            cJSON *m = cJSON_GetObjectItemCaseSensitive(in, kinds[k]);
            if (!cJSON_IsString(m)) continue;
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", EF_DIR, m->valuestring);
            const char *ext = strrchr(path, '.');
            const char *mime = k == 0 ? "image/png" : !strcmp(ext, ".wav") ? "audio/wav" : "audio/flac";
            char *url = file_data_url(path, mime);
            cJSON_ReplaceItemInObjectCaseSensitive(in, kinds[k], cJSON_CreateString(url));
            free(url);
        }
        cJSON_AddItemToArray(arr, in);
    }
    cJSON_AddStringToObject(root, "output", output);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* Checks one /embed result object against fixture row i. */
static float g_emb[1 << 14], g_gate[64], g_slot[CGE_N_SLOTS][1 << 12];
static void check_result_obj(const struct ef *f, int i, const cJSON *o, const char *what) {
    int dim = floats_of(cJSON_GetObjectItemCaseSensitive(o, "embedding"), g_emb, 1 << 14);
    int ng = floats_of(cJSON_GetObjectItemCaseSensitive(o, "expert_weights"), g_gate, 64);
    float selv[8];
    int ns = floats_of(cJSON_GetObjectItemCaseSensitive(o, "selected"), selv, 8);
    int sel[8];
    for (int k = 0; k < ns && k < 8; k++) sel[k] = (int)selv[k];
    const float *slots[CGE_N_SLOTS];
    int dims[CGE_N_SLOTS];
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "slots");
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        char name[8];
        snprintf(name, sizeof name, "E%d", s + 1);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(so, name);
        dims[s] = cJSON_IsArray(v) ? floats_of(v, g_slot[s], 1 << 12) : 0;
        slots[s] = cJSON_IsArray(v) ? g_slot[s] : NULL;
    }
    CHECK_MSG(dim == 1536, "%s #%d: embedding dim %d", what, i, dim);
    ef_check(f->rows[i].expected, what, i, dim > 0 ? g_emb : NULL, dim, ng > 0 ? g_gate : NULL, ng,
             ns > 0 ? sel : NULL, ns, so ? slots : NULL, dims);
}

/* ==== the tests on the default server ======================================================== */
static struct ef F;

static void test_fixture_embed(int port) {
    /* Every fixture input at once (texts, code, images and audio as data: URLs). */
    char *body = fixture_embed_body(&F, F.n, "both");
    struct resp r;
    long st = http(port, "POST", "/embed", NULL, body, -1, &r);
    CHECK_MSG(st == 200, "/embed fixture: %ld %.300s", st, r.body ? r.body : "");
    CHECK(cJSON_IsArray(r.json) && cJSON_GetArraySize(r.json) == F.n);
    for (int i = 0; cJSON_IsArray(r.json) && i < F.n; i++)
        check_result_obj(&F, i, cJSON_GetArrayItem(r.json, i), "POST /embed");

    /* The same vectors as `cge embed --ensemble --output both` prints. */
    FILE *p = popen("cd " EF_DIR " && " CGE_BIN " embed --ensemble ensemble --output both "
                    "< inputs.jsonl 2>/dev/null",
                    "r");
    CHECK(p != NULL);
    static char line[1 << 20];
    int row = 0;
    double mx = 0;
    while (p && fgets(line, sizeof line, p) && row < F.n) {
        cJSON *cli = cJSON_Parse(line);
        const cJSON *srv = cJSON_GetArrayItem(r.json, row);
        static float a[1 << 14], b[1 << 14];
        int na = floats_of(cJSON_GetObjectItemCaseSensitive(cli, "embedding"), a, 1 << 14);
        int nb = floats_of(cJSON_GetObjectItemCaseSensitive(srv, "embedding"), b, 1 << 14);
        CHECK_MSG(na == 1536 && na == nb, "row %d: cli %d vs server %d floats", row, na, nb);
        for (int k = 0; k < na && na == nb; k++) mx = fmax(mx, fabs((double)a[k] - b[k]));
        cJSON_Delete(cli);
        row++;
    }
    if (p) CHECK(pclose(p) == 0);
    CHECK_MSG(row == F.n, "cge embed printed %d rows", row);
    CHECK_MSG(mx <= 1e-6, "server vs cge embed: fused max abs %.3g", mx);
    resp_free(&r);
    free(body);

    /* output "slots": no fused vector, slots as in "both"; output "fused": no slots. */
    body = fixture_embed_body(&F, 1, "slots");
    st = http(port, "POST", "/embed", NULL, body, -1, &r);
    const cJSON *o = cJSON_GetArrayItem(r.json, 0);
    CHECK(st == 200 && o && !cJSON_GetObjectItemCaseSensitive(o, "embedding") &&
          cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "slots")));
    resp_free(&r);
    free(body);
    st = http(port, "POST", "/embed", NULL, "{\"inputs\": \"hello\"}", -1, &r);
    o = cJSON_GetArrayItem(r.json, 0);
    CHECK(st == 200 && cJSON_GetArraySize(r.json) == 1 &&
          cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "embedding")) &&
          !cJSON_GetObjectItemCaseSensitive(o, "slots"));
    resp_free(&r);
}

/* /v1/embeddings on the fixture's plain texts (rows without role or instruction). */
static void test_openai_route(int port) {
    int rows[EF_MAX], nr = 0;
    for (int i = 0; i < F.n; i++) {
        const cJSON *in = F.rows[i].input;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "text");
        const cJSON *ro = cJSON_GetObjectItemCaseSensitive(in, "role");
        if (cJSON_IsString(t) && !cJSON_GetObjectItemCaseSensitive(in, "instruction") &&
            (!ro || !strcmp(ro->valuestring, "document")))
            rows[nr++] = i;
    }
    CHECK(nr >= 3);
    cJSON *req = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(req, "input");
    for (int k = 0; k < nr; k++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(
                                      cJSON_GetObjectItemCaseSensitive(F.rows[rows[k]].input, "text")
                                          ->valuestring));
    cJSON_AddStringToObject(req, "model", "cge");
    char *body = cJSON_PrintUnformatted(req);
    struct resp r;
    long st = http(port, "POST", "/v1/embeddings", NULL, body, -1, &r);
    free(body);
    CHECK_MSG(st == 200, "/v1/embeddings: %ld %.300s", st, r.body ? r.body : "");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    CHECK(cJSON_GetArraySize(data) == nr);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "object")), "list"));
    for (int k = 0; k < nr && cJSON_GetArraySize(data) == nr; k++) {
        const cJSON *d = cJSON_GetArrayItem(data, k);
        CHECK(cJSON_GetObjectItemCaseSensitive(d, "index")->valueint == k);
        int n = floats_of(cJSON_GetObjectItemCaseSensitive(d, "embedding"), g_emb, 1 << 14);
        CHECK(n == 1536);
        ef_check(F.rows[rows[k]].expected, "/v1/embeddings float", rows[k], g_emb, n, NULL, 0,
                 NULL, 0, NULL, NULL);
    }
    resp_free(&r);

    /* base64: the little-endian float32 bytes of the same vectors. */
    cJSON_ReplaceItemInObjectCaseSensitive(req, "model", cJSON_CreateString("cge"));
    cJSON_AddStringToObject(req, "encoding_format", "base64");
    body = cJSON_PrintUnformatted(req);
    st = http(port, "POST", "/v1/embeddings", NULL, body, -1, &r);
    free(body);
    data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    CHECK(st == 200 && cJSON_GetArraySize(data) == nr);
    for (int k = 0; k < nr && cJSON_GetArraySize(data) == nr; k++) {
        const char *s = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, k), "embedding"));
        unsigned char *bytes = NULL;
        size_t len = 0;
        CHECK(s && cge__base64_decode(s, strlen(s), &bytes, &len) == CGE_OK && len == 1536 * 4);
        if (len == 1536 * 4) {
            float v[1536];
            for (int i = 0; i < 1536; i++) {
                uint32_t u = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
                             (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
                memcpy(&v[i], &u, 4);
            }
            ef_check(F.rows[rows[k]].expected, "/v1/embeddings base64", rows[k], v, 1536, NULL, 0,
                     NULL, 0, NULL, NULL);
        }
        cge__free(bytes);
    }
    resp_free(&r);
    cJSON_Delete(req);

    /* A slot by name: that slot's vector, as the model outputs it. */
    const char *text = cJSON_GetObjectItemCaseSensitive(F.rows[0].input, "text")->valuestring;
    char b2[1024];
    snprintf(b2, sizeof b2, "{\"input\": \"%s\", \"model\": \"E1\"}", text);
    st = http(port, "POST", "/v1/embeddings", NULL, b2, -1, &r);
    data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    int n = floats_of(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "embedding"),
                      g_emb, 1 << 14);
    float ref[64];
    int nref = floats_of(cJSON_GetObjectItemCaseSensitive(
                             cJSON_GetObjectItemCaseSensitive(F.rows[0].expected, "slots"), "E1"),
                         ref, 64);
    CHECK_MSG(st == 200 && n == nref && n > 0, "E1: %ld, %d vs %d floats", st, n, nref);
    if (n == nref && n > 0) CHECK(th_rel_err(g_emb, ref, (size_t)n) <= 1e-5);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "model")), "E1"));
    resp_free(&r);

    /* usage: the tokens read (the largest count over the slots; a text new to the cache). */
    st = http(port, "POST", "/v1/embeddings", NULL, "{\"input\": [\"usage one two three\", \"x\"]}",
              -1, &r);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(r.json, "usage");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    CHECK_MSG(st == 200 && cJSON_IsNumber(pt) && pt->valueint >= 8, "usage: %s", r.body);
    resp_free(&r);

    /* The empty string is a valid input (the special tokens alone), on both routes. */
    CHECK(status_of(port, "POST", "/v1/embeddings", NULL, "{\"input\": \"\"}") == 200);
    CHECK(status_of(port, "POST", "/embed", NULL, "{\"inputs\": [{\"text\": \"\"}]}") == 200);
}

static void test_other_routes(int port) {
    struct resp r;
    CHECK(http(port, "GET", "/health", NULL, NULL, 0, &r) == 200);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "status")), "ok"));
    resp_free(&r);

    CHECK(http(port, "GET", "/v1/models", NULL, NULL, 0, &r) == 200);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r.json, "data");
    CHECK_MSG(cJSON_GetArraySize(data) == 13, "%d models", cJSON_GetArraySize(data));
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "id")), "cge"));
    resp_free(&r);

    CHECK(http(port, "GET", "/info", NULL, NULL, 0, &r) == 200);
    const cJSON *slots = cJSON_GetObjectItemCaseSensitive(r.json, "slots");
    CHECK(cJSON_GetArraySize(slots) == 12);
    const cJSON *e1 = cJSON_GetArrayItem(slots, 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(e1, "dim")->valueint == 22);
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e1, "path")));
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e1, "dtype")));
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e1, "state")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(e1, "version")));
    CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r.json, "limits")));
    resp_free(&r);

    /* /similarity: the fused cosine is the dot product of the two /embed vectors. */
    const char *sim = "{\"a\": \"the cat sat\", \"b\": {\"text\": \"a dog ran\", \"role\": \"query\"}}";
    CHECK(http(port, "POST", "/similarity", NULL, sim, -1, &r) == 200);
    double cos = cJSON_GetObjectItemCaseSensitive(r.json, "cosine")->valuedouble;
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(r.json, "slots");
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(ss, "E1")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(ss, "E5")));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
              cJSON_GetObjectItemCaseSensitive(r.json, "a"), "selected")) == 2);
    resp_free(&r);
    struct resp ea;
    CHECK(http(port, "POST", "/embed", NULL,
               "{\"inputs\": [\"the cat sat\", {\"text\": \"a dog ran\", \"role\": \"query\"}]}",
               -1, &ea) == 200);
    static float va[1536], vb[1536];
    int na = floats_of(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ea.json, 0), "embedding"), va, 1536);
    int nb = floats_of(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ea.json, 1), "embedding"), vb, 1536);
    CHECK(na == 1536 && nb == 1536);
    if (na == 1536 && nb == 1536) CHECK_NEAR(cos, th_cosine(va, vb, 1536), 1e-6);
    resp_free(&ea);

    /* /tokenize gives the fixture's ids (case.json token_ids). */
    size_t clen = 0;
    char *ctext = th_read_file(EF_DIR "/case.json", &clen);
    cJSON *cs = cJSON_Parse(ctext);
    free(ctext);
    const char *slots_to_check[] = {"E1", "E12"};
    for (int k = 0; k < 2; k++) {
        char body[512];
        snprintf(body, sizeof body, "{\"inputs\": \"%s\", \"model\": \"%s\"}",
                 cJSON_GetObjectItemCaseSensitive(F.rows[0].input, "text")->valuestring,
                 slots_to_check[k]);
        CHECK(http(port, "POST", "/tokenize", NULL, body, -1, &r) == 200);
        const cJSON *want = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cs, "token_ids"), slots_to_check[k]), 0);
        const cJSON *got = cJSON_GetObjectItemCaseSensitive(r.json, "ids");
        int same = cJSON_IsArray(want) && cJSON_GetArraySize(want) == cJSON_GetArraySize(got);
        for (int i = 0; same && i < cJSON_GetArraySize(want); i++)
            same = cJSON_GetArrayItem(want, i)->valueint == cJSON_GetArrayItem(got, i)->valueint;
        CHECK_MSG(same, "/tokenize %s: %s", slots_to_check[k], r.body);
        resp_free(&r);
    }
    cJSON_Delete(cs);
    CHECK(status_of(port, "POST", "/tokenize", NULL, "{\"inputs\": \"x\", \"model\": \"E5\"}") == 400);

    /* The page: self-contained HTML (nothing fetched from elsewhere). */
    CHECK(http(port, "GET", "/", NULL, NULL, 0, &r) == 200);
    CHECK(r.body && strstr(r.body, "<html") && strstr(r.body, "similarity") &&
          !strstr(r.body, "http://") && !strstr(r.body, "https://"));
    CHECK(strstr(r.headers, "text/html") != NULL);
    resp_free(&r);
}

/* The OpenAPI description holds every route of the table, and every path and method it
 * describes is served (neither 404 nor 405). */
static void test_openapi(int port) {
    struct resp r;
    CHECK(http(port, "GET", "/openapi.json", NULL, NULL, 0, &r) == 200);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.json, "openapi")), "3.1.0"));
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(r.json, "paths");
    for (size_t i = 0; i < cge__http_n_routes; i++) {
        const struct cge__http_route *rt = &cge__http_routes[i];
        char m[16];
        size_t k = 0;
        for (; rt->method[k] && k < sizeof m - 1; k++) m[k] = (char)(rt->method[k] | 0x20);
        m[k] = '\0';
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(paths, rt->path);
        CHECK_MSG(cJSON_GetObjectItemCaseSensitive(p, m) != NULL, "openapi lacks %s %s", rt->method,
                  rt->path);
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, paths) {
        const cJSON *op;
        cJSON_ArrayForEach(op, p) {
            int served = 0;
            for (size_t i = 0; i < cge__http_n_routes; i++)
                if (!strcmp(cge__http_routes[i].path, p->string) &&
                    !strcasecmp(cge__http_routes[i].method, op->string))
                    served = 1;
            CHECK_MSG(served, "openapi describes %s %s, which is not a route", op->string, p->string);
        }
    }
    resp_free(&r);
}

static void test_metrics(int port, struct srv *s) {
    struct resp r;
    CHECK(http(port, "GET", "/metrics", NULL, NULL, 0, &r) == 200);
    const char *need[] = {"cge_requests_total{route=\"/v1/embeddings\",status=\"200\"}",
                          "cge_requests_total{route=\"/embed\",status=\"400\"}",
                          "cge_request_duration_seconds_bucket{route=\"/embed\",le=\"+Inf\"}",
                          "cge_queue_depth{slot=\"E1\"}",
                          "cge_cache_hits_total",
                          "cge_cache_misses_total",
                          "cge_model_loaded{slot=\"E12\"} 1",
                          "cge_model_resident_bytes{slot=\"E1\"}",
                          "cge_slot_duration_seconds{slot=\"E1\",quantile=\"0.95\"}",
                          "# TYPE cge_request_duration_seconds histogram"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        CHECK_MSG(r.body && strstr(r.body, need[i]), "/metrics lacks %s", need[i]);
    CHECK(strstr(r.headers, "text/plain") != NULL);
    resp_free(&r);
    /* One log line per request: method, route, status, items, latency. */
    CHECK(srv_log_has(s, "POST /v1/embeddings 200 items="));
    CHECK(srv_log_has(s, "GET /health 200 items=0"));
    CHECK(srv_log_has(s, "POST /embed 400 items="));
}

/* ==== bad input: each its 4xx, and the server stays up ======================================= */
static void test_bad_input(int port) {
    struct {
        const char *path, *body;
        long want;
    } cases[] = {
        {"/v1/embeddings", "{\"input\": \"abc", 400},              /* truncated JSON */
        {"/v1/embeddings", "", 400},                               /* empty body */
        {"/v1/embeddings", "[1, 2]", 400},                         /* not an object */
        {"/v1/embeddings", "{\"input\": 5}", 400},                 /* wrong type */
        {"/v1/embeddings", "{\"input\": [1, 2, 3]}", 400},         /* token arrays */
        {"/v1/embeddings", "{\"input\": []}", 400},                /* empty batch */
        {"/v1/embeddings", "{\"input\": \"x\", \"temperature\": 1}", 400}, /* unknown field */
        {"/v1/embeddings", "{\"input\": \"x\", \"encoding_format\": \"int8\"}", 400},
        {"/v1/embeddings", "{\"input\": \"x\", \"model\": \"gpt-4\"}", 404},
        {"/v1/embeddings", "{\"input\": \"x\", \"model\": \"E13\"}", 404},
        {"/v1/embeddings", "{\"input\": \"x\", \"model\": \"E5\"}", 400}, /* audio slot, text */
        {"/v1/embeddings", "{\"input\": \"x\", \"dimensions\": 256}", 400},
        {"/v1/embeddings", "{\"input\": \"\\ud800\"}", 400},       /* lone surrogate */
        {"/v1/embeddings", "{\"input\": \"x\"} trailing", 400},
        {"/embed", "{\"inputs\": [{\"text\": \"a\", \"image\": \"b\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"txt\": \"a\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"text\": 3}]}", 400},
        {"/embed", "{\"inputs\": [{\"text\": \"a\", \"role\": \"boss\"}]}", 400},
        {"/embed", "{\"inputs\": \"a\", \"output\": \"all\"}", 400},
        {"/embed", "{\"inputs\": \"a\", \"extra\": 1}", 400},
        {"/embed", "{}", 400},
        {"/embed", "{\"inputs\": [{\"image\": \"data:image/png;base64,@@@@\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"image\": \"data:image/png;base64,iVBORw0K=\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"image\": \"data:image/png,rawbytes\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"image\": \"data:image/png;base64,aGVsbG8gd29ybGQ=\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"audio\": \"data:audio/wav;base64,UklGRiQAAABXQVZFZm10\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"audio\": \"data:audio/ogg;base64,T2dnUwACAAAAAAAAAAA=\"}]}", 400},
        {"/embed", "{\"inputs\": [{\"image\": \"" EF_DIR "/camera.png\"}]}", 400}, /* a path */
        {"/embed", "{\"inputs\": [{\"image\": \"/etc/passwd\"}]}", 400},
        {"/similarity", "{\"a\": \"x\"}", 400},
        {"/similarity", "{\"a\": \"x\", \"b\": 7}", 400},
        {"/tokenize", "{\"inputs\": 7}", 400},
        {"/tokenize", "{\"inputs\": \"x\", \"model\": \"E99\"}", 404},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long st = status_of(port, "POST", cases[i].path, NULL, cases[i].body);
        CHECK_MSG(st == cases[i].want, "case %zu %s %s: %ld, want %ld", i, cases[i].path,
                  cases[i].body, st, cases[i].want);
    }
    /* Invalid UTF-8 in a string. */
    const char bad_utf8[] = "{\"input\": \"caf\xc3\x28 \xff\"}";
    struct resp r;
    CHECK(http(port, "POST", "/v1/embeddings", NULL, bad_utf8, -1, &r) == 400);
    resp_free(&r);
    /* Deep nesting: 100k brackets (under the payload limit). */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 32);
    size_t k = (size_t)sprintf(deep, "{\"input\": ");
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    CHECK(http(port, "POST", "/v1/embeddings", NULL, deep, (long)k, &r) == 400);
    resp_free(&r);
    free(deep);
    /* A 10 MB string: 413 (over the 2 MiB default), and the answer does not wait for the body. */
    size_t big = (size_t)10 << 20;
    char *huge = malloc(big + 32);
    k = (size_t)sprintf(huge, "{\"input\": \"");
    memset(huge + k, 'a', big);
    k += big;
    k += (size_t)sprintf(huge + k, "\"}");
    CHECK(http(port, "POST", "/v1/embeddings", NULL, huge, (long)k, &r) == 413);
    resp_free(&r);
    free(huge);
    char hdr[512], out[8192];
    int n = snprintf(hdr, sizeof hdr,
                     "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 104857600\r\n\r\n");
    int64_t t0 = cge__now_us();
    long got = raw_exchange(port, hdr, (size_t)n, 0, out, sizeof out, 3000);
    CHECK_MSG(got > 0 && strstr(out, " 413 ") && cge__now_us() - t0 < 2500000,
              "413 before the body: %ld bytes: %.200s", got, out);
    /* A chunked body past the limit (no Content-Length): 413 or the connection is cut. */
    {
        int fd = raw_connect(port);
        const char *h = "POST /embed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        send(fd, h, strlen(h), MSG_NOSIGNAL);
        static char chunk[1 << 16];
        memset(chunk, 'a', sizeof chunk);
        char ch[32];
        int sent_ok = 1;
        for (int i = 0; i < 64 && sent_ok; i++) { /* 4 MiB */
            int hl = snprintf(ch, sizeof ch, "%x\r\n", (unsigned)sizeof chunk);
            sent_ok = send(fd, ch, (size_t)hl, MSG_NOSIGNAL) > 0 &&
                      send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) > 0 &&
                      send(fd, "\r\n", 2, MSG_NOSIGNAL) > 0;
        }
        if (sent_ok) send(fd, "0\r\n\r\n", 5, MSG_NOSIGNAL);
        got = raw_read(fd, out, sizeof out, 5000);
        CHECK_MSG(got == 0 || strstr(out, " 413 "), "chunked over the limit: %.200s", out);
        close(fd);
    }
    /* A truncated body: Content-Length 100, 10 bytes, then the client goes away. */
    n = snprintf(hdr, sizeof hdr,
                 "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inputs\":");
    raw_exchange(port, hdr, (size_t)n, 1, out, sizeof out, 500);
    /* Garbage instead of HTTP. */
    raw_exchange(port, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 20, 1, out,
                 sizeof out, 1000);
    /* A batch over --max-client-batch-size (256). */
    size_t cap = 300 * 8 + 64;
    char *many = malloc(cap);
    k = (size_t)sprintf(many, "{\"input\": [");
    for (int i = 0; i < 300; i++) k += (size_t)sprintf(many + k, "%s\"x\"", i ? "," : "");
    k += (size_t)sprintf(many + k, "]}");
    CHECK(status_of(port, "POST", "/v1/embeddings", NULL, many) == 413);
    free(many);
    /* Methods and paths. */
    CHECK(status_of(port, "GET", "/embed", NULL, NULL) == 405);
    CHECK(status_of(port, "DELETE", "/v1/embeddings", NULL, NULL) == 405);
    CHECK(status_of(port, "GET", "/nope", NULL, NULL) == 404);
    CHECK(status_of(port, "POST", "/admin/swap", NULL, "{}") == 404); /* no --admin-key */
    /* Still up, and still right. */
    CHECK(status_of(port, "GET", "/health", NULL, NULL) == 200);
    CHECK(status_of(port, "POST", "/v1/embeddings", NULL, "{\"input\": \"still here\"}") == 200);
}

/* ==== limits: 429, 422, slow clients ========================================================= */
static void test_limits(struct srv *sp) {
    struct srv s = {.port = sp->port};
    /* 422: the long input (#5) is longer than every text slot reads. */
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "input", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(F.rows[5].input, "text"), 1));
    char *body = cJSON_PrintUnformatted(req);
    CHECK_MSG(status_of(s.port, "POST", "/v1/embeddings", "K", body) == 422, "no-truncate");
    /* 429: eight heavy requests at once against one worker. */
    cJSON_Delete(req);
    free(body);
    req = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(req, "inputs");
    for (int i = 0; i < 48; i++) {
        char t[64];
        snprintf(t, sizeof t, "request text number %d with a few words in it", i);
        cJSON_AddItemToArray(arr, cJSON_CreateString(t));
    }
    body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    CURLM *m = curl_multi_init();
    enum { NREQ = 8 };
    struct resp rs[NREQ];
    struct curl_slist *hls[NREQ];
    CURL *cs[NREQ];
    for (int i = 0; i < NREQ; i++) {
        cs[i] = make_easy(s.port, "POST", "/embed", "K", body, -1, &rs[i], &hls[i]);
        curl_multi_add_handle(m, cs[i]);
    }
    int running = 1;
    for (int spins = 0; running && spins < 100000; spins++) {
        curl_multi_perform(m, &running);
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int n200 = 0, n429 = 0, retry_after = 1;
    for (int i = 0; i < NREQ; i++) {
        long st = 0;
        curl_easy_getinfo(cs[i], CURLINFO_RESPONSE_CODE, &st);
        n200 += st == 200;
        if (st == 429) {
            n429++;
            retry_after &= strstr(rs[i].headers, "Retry-After: 1") != NULL;
        }
        curl_multi_remove_handle(m, cs[i]);
        curl_easy_cleanup(cs[i]);
        curl_slist_free_all(hls[i]);
        resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    free(body);
    CHECK_MSG(n200 >= 1 && n429 >= 1 && n200 + n429 == NREQ, "200: %d, 429: %d", n200, n429);
    CHECK(retry_after);
    /* Slow clients hold no worker: with one worker and five stalled uploads, a request is
     * still answered; the idle ones are closed after --conn-timeout. */
    int slow[6];
    for (int i = 0; i < 5; i++) {
        slow[i] = raw_connect(s.port);
        const char *h = "POST /embed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer K\r\n"
                        "Content-Length: 100\r\n\r\n{\"in";
        send(slow[i], h, strlen(h), MSG_NOSIGNAL);
    }
    slow[5] = raw_connect(s.port);
    send(slow[5], "POST /embed HTTP/1.1\r\nHo", 24, MSG_NOSIGNAL); /* headers cut short */
    int64_t t0 = cge__now_us();
    CHECK(status_of(s.port, "POST", "/v1/embeddings", "K", "{\"input\": \"hi\"}") == 200);
    CHECK_MSG(cge__now_us() - t0 < 5000000, "a request behind slow clients took %lld us",
              (long long)(cge__now_us() - t0));
    int closed = 0;
    for (int i = 0; i < 6; i++) {
        char out[256];
        raw_read(slow[i], out, sizeof out, 4000); /* returns at close (or after 4 s) */
        struct pollfd p = {.fd = slow[i], .events = POLLIN};
        char c;
        closed += poll(&p, 1, 0) == 1 && recv(slow[i], &c, 1, MSG_DONTWAIT) <= 0;
        close(slow[i]);
    }
    CHECK_MSG(closed == 6, "%d of 6 stalled connections closed by the server", closed);
}

/* ==== 504 ==================================================================================== */
static void test_deadline(void) {
    struct srv s;
    const char *args[] = {"--ensemble", EF_ENSEMBLE, "--request-timeout", "0.001", "--no-cache",
                          "--lazy", NULL};
    CHECK(srv_start(&s, args) == 0);
    if (!s.port) return;
    CHECK(status_of(s.port, "POST", "/embed", NULL,
                    "{\"inputs\": [\"a text that takes longer than a millisecond to embed in "
                    "twelve models\"]}") == 504);
    CHECK(status_of(s.port, "GET", "/health", NULL, NULL) == 200);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* ==== keys, admin, files, JSON logs, graceful shutdown ======================================= */
struct bg {
    int port;
    long status;
};
static void *bg_request(void *arg) {
    struct bg *b = arg;
    char body[16384];
    size_t k = (size_t)sprintf(body, "{\"inputs\": [");
    for (int i = 0; i < 64; i++) k += (size_t)sprintf(body + k, "%s\"in flight text %d\"", i ? "," : "", i);
    sprintf(body + k, "]}");
    b->status = status_of(b->port, "POST", "/embed", "K", body);
    return NULL;
}

/* The official openai npm client (tests/http: package.json + package-lock.json, installed with
 * `npm ci` when node_modules is missing) against the server; its checks add to ours. */
static void test_openai_client(int port) {
    int rc = system("cd tests/http && { [ -d node_modules/openai ] || npm ci --no-audit --no-fund "
                    "--ignore-scripts --loglevel=error >&2; }");
    CHECK_MSG(rc == 0, "npm ci in tests/http failed (%d)", rc);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "node tests/http/openai_client.mjs %d K " EF_DIR " 2>&1", port);
    FILE *p = popen(cmd, "r");
    char line[4096];
    int np = -1, nf = -1;
    while (p && fgets(line, sizeof line, p)) {
        if (sscanf(line, "openai_client: %d passed, %d failed", &np, &nf) == 2) continue;
        fputs(line, stdout);
    }
    int st = p ? pclose(p) : -1;
    CHECK_MSG(np > 0 && nf == 0 && st == 0, "openai client: %d passed, %d failed (exit %d)", np,
              nf, st);
    if (np > 0) th_passed += np - 1; /* its checks count as ours */
}

/* One server for the keys, the admin routes, the limits and the shutdown (each start loads the
 * whole ensemble). */
static void test_keys_admin_limits_shutdown(void) {
    struct srv s;
    const char *args[] = {"--ensemble", EF_ENSEMBLE, "--api-key", "K", "--admin-key", "A",
                          "--allow-files", EF_DIR, "--log-format", "json",
                          "--max-concurrent-requests", "1", "--no-truncate", "--conn-timeout", "1",
                          "--no-cache", NULL};
    CHECK(srv_start(&s, args) == 0);
    if (!s.port) return;
    int port = s.port;
    RUN_ARG(test_limits, &s);
    CHECK(status_of(port, "GET", "/health", NULL, NULL) == 200); /* open */
    CHECK(status_of(port, "GET", "/", NULL, NULL) == 200);       /* the page asks for the key */
    CHECK(status_of(port, "GET", "/info", NULL, NULL) == 401);
    CHECK(status_of(port, "GET", "/info", "wrong", NULL) == 401);
    CHECK(status_of(port, "GET", "/info", "KK", NULL) == 401);
    CHECK(status_of(port, "GET", "/info", "K", NULL) == 200);
    CHECK(status_of(port, "GET", "/metrics", NULL, NULL) == 401);
    CHECK(status_of(port, "POST", "/v1/embeddings", NULL, "{\"input\": \"x\"}") == 401);
    CHECK(status_of(port, "GET", "/nope", NULL, NULL) == 401);
    CHECK(status_of(port, "GET", "/nope", "K", NULL) == 404);
    CHECK(status_of(port, "POST", "/v1/embeddings", "K", "{\"input\": \"x\"}") == 200);
    CHECK(status_of(port, "POST", "/admin/swap", "K", "{\"slot\": \"E1\", \"path\": \"x\"}") == 401);

    /* --allow-files: a path inside the folder is read, one outside is refused. */
    CHECK(status_of(port, "POST", "/embed", "K", "{\"inputs\": [{\"image\": \"camera.png\"}]}") == 200);
    CHECK(status_of(port, "POST", "/embed", "K", "{\"inputs\": [{\"image\": \"../../../README.md\"}]}") == 400);
    CHECK(status_of(port, "POST", "/embed", "K", "{\"inputs\": [{\"audio\": \"/etc/hostname\"}]}") == 400);
    CHECK(status_of(port, "POST", "/embed", "K", "{\"inputs\": [{\"audio\": \"nope.wav\"}]}") == 400);

    /* Hot swap: E1 to a copy of itself (version 2), then to E2's folder (24-d, the fusion wants
     * 22): refused, and the old model keeps serving. */
    struct resp r;
    long st = http(port, "POST", "/admin/swap", "A",
                   "{\"slot\": \"E1\", \"path\": \"" EF_ENSEMBLE "/E1\"}", -1, &r);
    CHECK_MSG(st == 200, "swap: %ld %s", st, r.body);
    int version = cJSON_GetObjectItemCaseSensitive(r.json, "version")
                      ? cJSON_GetObjectItemCaseSensitive(r.json, "version")->valueint
                      : 0;
    CHECK(version >= 2);
    resp_free(&r);
    st = http(port, "POST", "/admin/swap", "A", "{\"slot\": \"E1\", \"path\": \"" EF_ENSEMBLE "/E2\"}",
              -1, &r);
    CHECK_MSG(st == 422, "bad swap: %ld %s", st, r.body);
    resp_free(&r);
    CHECK(status_of(port, "POST", "/admin/swap", "A", "{\"slot\": \"E0\", \"path\": \"x\"}") == 400);
    CHECK(http(port, "GET", "/info", "K", NULL, 0, &r) == 200);
    const cJSON *e1 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "slots"), 0);
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(e1, "version");
    CHECK_MSG(cJSON_IsNumber(ver) && ver->valueint == version,
              "E1 version after the refused swap: %s", r.body);
    resp_free(&r);
    char *body = fixture_embed_body(&F, 1, "both");
    CHECK(http(port, "POST", "/embed", "K", body, -1, &r) == 200);
    if (cJSON_IsArray(r.json)) check_result_obj(&F, 0, cJSON_GetArrayItem(r.json, 0), "after swaps");
    resp_free(&r);
    free(body);
    CHECK(status_of(port, "POST", "/admin/unload", "A", "{\"slot\": \"E1\"}") == 200);
    CHECK(status_of(port, "POST", "/v1/embeddings", "K", "{\"input\": \"reloads E1\"}") == 200);

    RUN_ARG(test_openai_client, port);

    /* JSON log lines. */
    CHECK(srv_log_has(&s, "{\"method\":\"POST\",\"route\":\"/admin/swap\",\"status\":422,"));

    /* SIGTERM with a request running: it is answered, then the server exits 0. */
    struct bg b = {port, 0};
    pthread_t th;
    pthread_create(&th, NULL, bg_request, &b);
    usleep(100 * 1000);
    int64_t t0 = cge__now_us();
    int rc = srv_stop(&s, SIGTERM);
    pthread_join(th, NULL);
    CHECK_MSG(rc == 0, "exit status %d", rc);
    CHECK_MSG(b.status == 200, "the request running at SIGTERM got %ld", b.status);
    CHECK(cge__now_us() - t0 < 30000000);
    CHECK(status_of(port, "GET", "/health", NULL, NULL) == -1); /* gone */
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* failures show even if a later check crashes */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CHECK(ef_load(EF_DIR, &F) == 0);
    struct srv s;
    const char *args[] = {"--ensemble", EF_ENSEMBLE, NULL};
    CHECK(srv_start(&s, args) == 0);
    if (s.port) {
        RUN_ARG(test_fixture_embed, s.port);
        RUN_ARG(test_openai_route, s.port);
        RUN_ARG(test_other_routes, s.port);
        RUN_ARG(test_openapi, s.port);
        RUN_ARG(test_bad_input, s.port);
        test_metrics(s.port, &s);
        CHECK(srv_stop(&s, SIGINT) == 0);
        CHECK(strstr(s.log, "listening on http://127.0.0.1:") != NULL);
    }
    RUN(test_deadline);
    RUN(test_keys_admin_limits_shutdown);
    ef_free(&F);
    curl_global_cleanup();
    return test_report("server_http");
}
