/*
 * test_server_model.c: `cge serve --model DIR` (one model folder, no fusion) and the
 * Server-Timing header, driven with the curl command.
 *
 * --model: the ensemble fixture's E1 folder (a small sentence-transformers BERT) and E4 (CLIP,
 * for an image): every vector over HTTP (/v1/embeddings float and base64, /embed, the cosine of
 * /similarity) must equal `cge embed --model` of the same folder to 1e-6; the name rules of
 * "model" (absent or the served name: 200, another: 404), /info and /v1/models listing the one
 * model, what has no meaning without an ensemble ("output": "slots", /admin/swap) refused 400.
 * Server-Timing: every embedding route answers "engine;dur=MS" with MS a number no larger than
 * the latency curl measured, on the ensemble and on --model; other routes do not carry it.
 */
#include "server_proc.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <math.h>

#ifndef CGE_BIN
#    error "CGE_BIN (the cge binary) must be defined by the build"
#endif

#define EF_DIR      "tests/fixtures/ensemble"
#define EF_ENSEMBLE EF_DIR "/ensemble"
#define E1_DIR      EF_ENSEMBLE "/E1"
#define E4_DIR      EF_ENSEMBLE "/E4"

/* ==== curl =================================================================================== */
struct answer {
    long status;
    double seconds;     /* curl's time_total */
    char headers[4096];
    char *body;
    cJSON *json;
};

static void answer_free(struct answer *a) {
    free(a->body);
    cJSON_Delete(a->json);
    memset(a, 0, sizeof *a);
}

static char tmpdir[64];

/* Runs curl on 127.0.0.1:port (POST with body when body is not NULL). */
static long curl(int port, const char *path, const char *key, const char *body, struct answer *a) {
    memset(a, 0, sizeof *a);
    char req[128], hdr[128], out[128], cmd[1024], auth[160] = "";
    snprintf(req, sizeof req, "%s/req.json", tmpdir);
    snprintf(hdr, sizeof hdr, "%s/headers", tmpdir);
    snprintf(out, sizeof out, "%s/body", tmpdir);
    if (body) {
        FILE *f = fopen(req, "wb");
        if (!f) return -1;
        fputs(body, f);
        fclose(f);
    }
    if (key) snprintf(auth, sizeof auth, "-H 'Authorization: Bearer %s'", key);
    snprintf(cmd, sizeof cmd,
             "curl -sS --max-time 60 -D %s -o %s -w '%%{http_code} %%{time_total}' %s %s%s%s "
             "'http://127.0.0.1:%d%s'",
             hdr, out, auth, body ? "-H 'Content-Type: application/json' --data-binary @" : "",
             body ? req : "", "", port, path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    if (fscanf(p, "%ld %lf", &a->status, &a->seconds) != 2) a->status = -1;
    pclose(p);
    size_t n = 0;
    char *h = th_read_file(hdr, &n);
    if (h) snprintf(a->headers, sizeof a->headers, "%s", h);
    free(h);
    a->body = th_read_file(out, &n);
    if (a->body) a->json = cJSON_Parse(a->body);
    return a->status;
}

/* The value of header `name` (case-insensitive) into v, or 0 when absent. */
static int header(const struct answer *a, const char *name, char *v, size_t cap) {
    size_t nl = strlen(name);
    for (const char *l = a->headers; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncasecmp(l, name, nl) || l[nl] != ':') continue;
        const char *s = l + nl + 1;
        while (*s == ' ') s++;
        size_t k = strcspn(s, "\r\n");
        snprintf(v, cap, "%.*s", (int)k, s);
        return 1;
    }
    return 0;
}

/* Server-Timing: exactly "engine;dur=MS", MS a finite number in [0, the client's latency]. */
static void check_server_timing(const struct answer *a, const char *what) {
    char v[256];
    CHECK_MSG(header(a, "Server-Timing", v, sizeof v), "%s: no Server-Timing header", what);
    if (!header(a, "Server-Timing", v, sizeof v)) return;
    double ms = -1;
    int used = 0;
    int ok = sscanf(v, "engine;dur=%lf%n", &ms, &used) == 1 && v[used] == '\0';
    CHECK_MSG(ok && isfinite(ms) && ms >= 0 && ms <= a->seconds * 1000.0 + 1e-3,
              "%s: Server-Timing: %s (curl took %.3f ms)", what, v, a->seconds * 1000.0);
}

/* ==== cge embed --model: the reference ======================================================= */
#define MAX_ROWS 8
struct ref {
    int n, dim;
    float v[MAX_ROWS][2048];
};

/* Runs `cge embed --model dir` on the JSON lines and keeps its vectors. */
static int embed_ref(const char *dir, const char *const *lines, int n, struct ref *r) {
    memset(r, 0, sizeof *r);
    char in[128], cmd[1024];
    snprintf(in, sizeof in, "%s/lines.jsonl", tmpdir);
    FILE *f = fopen(in, "wb");
    if (!f) return -1;
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s embed --model %s < %s", CGE_BIN, dir, in);
    FILE *p = popen(cmd, "r");
    static char line[1 << 16];
    while (p && r->n < MAX_ROWS && fgets(line, sizeof line, p)) {
        cJSON *j = cJSON_Parse(line);
        int k = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 0;
        if (k <= 0 || k > 2048) {
            printf("  cge embed: %s", line);
            cJSON_Delete(j);
            continue;
        }
        r->dim = k;
        for (int c = 0; c < k; c++) r->v[r->n][c] = (float)cJSON_GetArrayItem(j, c)->valuedouble;
        r->n++;
        cJSON_Delete(j);
    }
    int st = p ? pclose(p) : -1;
    return st == 0 && r->n == n ? 0 : -1;
}

static double max_abs_json(const cJSON *arr, const float *ref, int dim) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != dim) return INFINITY;
    double m = 0;
    int c = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) m = fmax(m, fabs(x->valuedouble - ref[c++]));
    return m;
}

/* OpenAI's base64: little-endian float32 bytes. */
static double max_abs_b64(const char *s, const float *ref, int dim) {
    static const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char bytes[8192];
    size_t nb = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; s && *s && *s != '=' && nb < sizeof bytes; s++) {
        const char *q = strchr(tab, *s);
        if (!q) return INFINITY;
        acc = acc << 6 | (unsigned)(q - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            bytes[nb++] = (unsigned char)(acc >> bits);
        }
    }
    if (nb != (size_t)dim * 4) return INFINITY;
    double m = 0;
    for (int c = 0; c < dim; c++) {
        float v;
        memcpy(&v, bytes + 4 * c, 4);
        m = fmax(m, fabs((double)v - ref[c]));
    }
    return m;
}

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* ==== --model ================================================================================ */
static const char *const texts[] = {"The quick brown fox jumps over the lazy dog.",
                                    "Embeddings over HTTP, one model.", ""};

static void test_model_text(void) {
    const char *lines[] = {"\"The quick brown fox jumps over the lazy dog.\"",
                           "\"Embeddings over HTTP, one model.\"", "\"\""};
    struct ref R;
    CHECK_MSG(embed_ref(E1_DIR, lines, 3, &R) == 0, "cge embed --model " E1_DIR ": %d rows", R.n);
    if (R.n != 3) return;

    struct srv s;
    const char *args[] = {"--model", E1_DIR, "--model-name", "mini-bert", "--quiet",
                          "--admin-key", "A", NULL};
    CHECK(srv_start(&s, args) == 0);
    if (!s.port) return;
    int port = s.port;
    struct answer a;
    char body[1024];

    /* /v1/embeddings: model absent, then by its name; float and base64. */
    for (int form = 0; form < 3; form++) {
        snprintf(body, sizeof body, "{\"input\": [\"%s\", \"%s\", \"%s\"]%s}", texts[0], texts[1],
                 texts[2],
                 form == 0   ? ""
                 : form == 1 ? ", \"model\": \"mini-bert\""
                             : ", \"model\": \"mini-bert\", \"encoding_format\": \"base64\"");
        CHECK_MSG(curl(port, "/v1/embeddings", NULL, body, &a) == 200, "form %d: %ld %s", form,
                  a.status, a.body);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(a.json, "data");
        CHECK_MSG(cJSON_GetArraySize(data) == 3, "form %d: %s", form, a.body);
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(a.json, "model");
        CHECK(cJSON_IsString(model) && !strcmp(model->valuestring, "mini-bert"));
        for (int i = 0; i < 3 && cJSON_GetArraySize(data) == 3; i++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, i), "embedding");
            double m = form == 2 ? max_abs_b64(cJSON_IsString(e) ? e->valuestring : NULL, R.v[i], R.dim)
                                 : max_abs_json(e, R.v[i], R.dim);
            CHECK_MSG(m <= 1e-6, "/v1/embeddings form %d row %d: max abs %g vs cge embed", form,
                      i, m);
        }
        if (form == 0) check_server_timing(&a, "--model /v1/embeddings");
        answer_free(&a);
    }
    CHECK(curl(port, "/v1/embeddings", NULL, "{\"input\": \"x\", \"model\": \"cge\"}", &a) == 404);
    answer_free(&a);
    CHECK(curl(port, "/v1/embeddings", NULL, "{\"input\": \"x\", \"model\": \"E1\"}", &a) == 404);
    answer_free(&a);
    CHECK(curl(port, "/v1/embeddings", NULL, "{\"input\": \"x\", \"model\": 3}", &a) == 400);
    answer_free(&a);

    /* /embed: the same vector under "embedding"; slots have no meaning here. */
    snprintf(body, sizeof body, "{\"inputs\": [{\"text\": \"%s\"}, \"%s\"]}", texts[0], texts[1]);
    CHECK_MSG(curl(port, "/embed", NULL, body, &a) == 200, "/embed: %ld %s", a.status, a.body);
    for (int i = 0; i < 2; i++) {
        const cJSON *o = cJSON_GetArrayItem(a.json, i);
        double m = max_abs_json(cJSON_GetObjectItemCaseSensitive(o, "embedding"), R.v[i], R.dim);
        CHECK_MSG(m <= 1e-6, "/embed row %d: max abs %g", i, m);
        CHECK(cJSON_GetObjectItemCaseSensitive(o, "selected") == NULL);
    }
    check_server_timing(&a, "--model /embed");
    answer_free(&a);
    CHECK(curl(port, "/embed", NULL, "{\"inputs\": \"x\", \"output\": \"slots\"}", &a) == 400);
    answer_free(&a);
    /* An image to a text model: 400, saying so. */
    CHECK(curl(port, "/embed", NULL,
               "{\"inputs\": [{\"image\": \"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"
               "CAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\"}]}",
               &a) == 400);
    CHECK_MSG(a.body && strstr(a.body, "takes no images"), "%s", a.body);
    answer_free(&a);

    /* /similarity: the cosine of the two vectors. */
    snprintf(body, sizeof body, "{\"a\": {\"text\": \"%s\"}, \"b\": {\"text\": \"%s\"}}", texts[0],
             texts[1]);
    CHECK_MSG(curl(port, "/similarity", NULL, body, &a) == 200, "%ld %s", a.status, a.body);
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(a.json, "cosine");
    double want = cosine(R.v[0], R.v[1], R.dim);
    CHECK_MSG(cJSON_IsNumber(cs) && fabs(cs->valuedouble - want) <= 1e-6, "cosine %s vs %.9g",
              a.body, want);
    check_server_timing(&a, "--model /similarity");
    answer_free(&a);

    /* /tokenize: BERT's [CLS] ... [SEP]. */
    CHECK(curl(port, "/tokenize", NULL, "{\"inputs\": \"hello world\"}", &a) == 200);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(a.json, "ids");
    CHECK_MSG(cJSON_GetArraySize(ids) == 4 && cJSON_GetArrayItem(ids, 0)->valueint == 101 &&
                  cJSON_GetArrayItem(ids, 3)->valueint == 102,
              "%s", a.body);
    answer_free(&a);
    CHECK(curl(port, "/tokenize", NULL, "{\"inputs\": \"x\", \"model\": \"E2\"}", &a) == 404);
    answer_free(&a);

    /* /info and /v1/models: the one model. */
    CHECK(curl(port, "/info", NULL, NULL, &a) == 200);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(a.json, "models");
    const cJSON *m0 = cJSON_GetArrayItem(models, 0);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m0, "id");
    const cJSON *dim = cJSON_GetObjectItemCaseSensitive(m0, "dim");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(m0, "path");
    CHECK_MSG(cJSON_GetArraySize(models) == 1 && cJSON_IsString(id) &&
                  !strcmp(id->valuestring, "mini-bert") && cJSON_IsNumber(dim) &&
                  dim->valueint == R.dim && cJSON_IsString(path) &&
                  !strcmp(path->valuestring, E1_DIR) &&
                  !cJSON_GetObjectItemCaseSensitive(a.json, "slots"),
              "/info: %s", a.body);
    char v[256];
    CHECK_MSG(!header(&a, "Server-Timing", v, sizeof v), "/info has Server-Timing: %s", v);
    answer_free(&a);
    CHECK(curl(port, "/v1/models", NULL, NULL, &a) == 200);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(a.json, "data");
    CHECK_MSG(cJSON_GetArraySize(data) == 1 &&
                  !strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "id")
                              ->valuestring,
                          "mini-bert"),
              "/v1/models: %s", a.body);
    answer_free(&a);
    CHECK(curl(port, "/health", NULL, NULL, &a) == 200);
    answer_free(&a);
    CHECK(curl(port, "/metrics", NULL, NULL, &a) == 200);
    CHECK(a.body && strstr(a.body, "cge_requests_total{route=\"/v1/embeddings\",status=\"200\"} 3"));
    answer_free(&a);
    CHECK(curl(port, "/admin/swap", "A", "{\"slot\": \"E1\", \"path\": \"" E1_DIR "\"}", &a) == 400);
    answer_free(&a);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* An image model (E4, CLIP) with no name given: its folder's name; an image as a data URL. */
static void test_model_image(void) {
    const char *lines[] = {"{\"image\": \"" EF_DIR "/camera.png\"}"};
    struct ref R;
    CHECK_MSG(embed_ref(E4_DIR, lines, 1, &R) == 0, "cge embed --model " E4_DIR);
    if (R.n != 1) return;
    struct srv s;
    const char *args[] = {"--model", E4_DIR "/", "--quiet", NULL};
    CHECK(srv_start(&s, args) == 0);
    if (!s.port) return;
    size_t n = 0;
    char *png = th_read_file(EF_DIR "/camera.png", &n);
    static const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t cap = n * 4 / 3 + 256;
    char *body = malloc(cap);
    size_t k = (size_t)sprintf(body, "{\"inputs\": [{\"image\": \"data:image/png;base64,");
    for (size_t i = 0; png && i < n; i += 3) {
        unsigned x = (unsigned char)png[i] << 16 | (i + 1 < n ? (unsigned char)png[i + 1] << 8 : 0) |
                     (i + 2 < n ? (unsigned char)png[i + 2] : 0);
        body[k++] = tab[x >> 18 & 63];
        body[k++] = tab[x >> 12 & 63];
        body[k++] = i + 1 < n ? tab[x >> 6 & 63] : '=';
        body[k++] = i + 2 < n ? tab[x & 63] : '=';
    }
    sprintf(body + k, "\"}]}");
    struct answer a;
    CHECK_MSG(curl(s.port, "/embed", NULL, body, &a) == 200, "%ld %.300s", a.status, a.body);
    double m = max_abs_json(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(a.json, 0), "embedding"),
                            R.v[0], R.dim);
    CHECK_MSG(m <= 1e-6, "/embed image: max abs %g vs cge embed", m);
    answer_free(&a);
    CHECK(curl(s.port, "/v1/models", NULL, NULL, &a) == 200);
    CHECK_MSG(a.body && strstr(a.body, "\"id\":\"E4\""), "%s", a.body);
    answer_free(&a);
    free(body);
    free(png);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

/* ==== Server-Timing on the ensemble ========================================================== */
static void test_ensemble_timing(void) {
    struct srv s;
    const char *args[] = {"--ensemble", EF_ENSEMBLE, "--quiet", NULL};
    CHECK(srv_start(&s, args) == 0);
    if (!s.port) return;
    struct answer a;
    static const struct {
        const char *path, *body;
    } routes[] = {
        {"/v1/embeddings", "{\"input\": \"server timing\"}"},
        {"/v1/embeddings", "{\"input\": [\"a\", \"b\"], \"model\": \"E1\"}"},
        {"/embed", "{\"inputs\": [\"server timing\"], \"output\": \"both\"}"},
        {"/similarity", "{\"a\": \"one\", \"b\": {\"text\": \"two\"}}"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        CHECK_MSG(curl(s.port, routes[i].path, NULL, routes[i].body, &a) == 200, "%s: %ld %s",
                  routes[i].path, a.status, a.body);
        check_server_timing(&a, routes[i].path);
        answer_free(&a);
    }
    char v[256];
    CHECK(curl(s.port, "/health", NULL, NULL, &a) == 200);
    CHECK_MSG(!header(&a, "Server-Timing", v, sizeof v), "/health has Server-Timing: %s", v);
    answer_free(&a);
    CHECK(srv_stop(&s, SIGTERM) == 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cge_test_model_XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    CHECK_MSG(system("curl --version > /dev/null 2>&1") == 0, "no curl (Debian package curl)");
    RUN(test_model_text);
    RUN(test_model_image);
    RUN(test_ensemble_timing);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("  could not remove %s\n", tmpdir);
    return test_report("server_model");
}
