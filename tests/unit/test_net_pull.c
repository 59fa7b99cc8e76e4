/*
 * test_net_pull.c: `cge pull`, `cge ensemble init` and `cge embed --model ORG/NAME` end to end,
 * against a Hub stand-in (tests/net/fake_hub.py, Python standard library) on 127.0.0.1 at a
 * free port. No test touches the internet.
 *
 * The stand-in serves the e2e fixture tests/fixtures/e2e/bert_mean_l2/model as test-org/tiny-bert
 * (plus ONNX/TF/.bin/README files that the default selection must leave out), the same folder
 * as the gated test-org/gated, and the thirteen folders of tests/fixtures/ensemble/ensemble as
 * the repositories of the slot table. Checked: the exact huggingface_hub layout (every path,
 * symlink target, blob name = git blob id or SHA-256 computed here, refs/main, bytes), a second
 * pull fetching nothing, include/exclude, resume after a cut transfer within a run and across
 * runs (Range requests and the bytes served counted by the server), a server that ignores
 * Range, corrupted LFS and small files rejected with both hashes and nothing in snapshots/,
 * wrong sizes, endless redirects, missing headers, bad JSON, 503 retries, gated repositories
 * (the token reaches the Hub, never the storage host, never any output), 404s, offline mode,
 * loading by repo id, and the ensemble folder.
 */
#include "testhelp.h"

/* Paths here are short and fixed (a /tmp folder and fixture names); gcc's worst-case guesses
 * about snprintf truncation do not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#    pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "hf_cgeTestToken_5b1f0c"
#define BERT  "tests/fixtures/e2e/bert_mean_l2/model"
#define ENS   "tests/fixtures/ensemble/ensemble"

static char cge_bin[1024];
static char tmp[256];
static char endpoint[64];
static pid_t server = -1;

/* ==== helpers ================================================================================= */
static int find_cge(void) {
    return th_find_cge(cge_bin, sizeof cge_bin);
}

struct mem {
    char *p;
    size_t n;
};

static size_t mem_write(char *d, size_t s, size_t n, void *u) {
    struct mem *m = u;
    char *q = realloc(m->p, m->n + s * n + 1);
    if (!q) return 0;
    memcpy(q + m->n, d, s * n);
    m->p = q;
    m->n += s * n;
    m->p[m->n] = 0;
    return s * n;
}

/* GET (body NULL) or POST to the stand-in; returns the body (free) or NULL. */
static char *http(const char *path, const char *body) {
    char url[256];
    snprintf(url, sizeof url, "%s%s", endpoint, path);
    CURL *c = curl_easy_init();
    struct mem m = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        free(m.p);
        return NULL;
    }
    return m.p ? m.p : strdup("");
}

static void control(const char *json) {
    free(http("/_control", json));
}

static void reset_stats(void) {
    free(http("/_reset", ""));
}

static cJSON *stats(void) {
    char *s = http("/_stats", NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

/* Bytes of `path` served since the last reset. */
static long long served(const char *path) {
    cJSON *s = stats();
    const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "bytes"), path);
    long long v = cJSON_IsNumber(b) ? (long long)b->valuedouble : 0;
    cJSON_Delete(s);
    return v;
}

/* Requests of a kind ("api", "resolve", "cdn") for `path` (NULL: any) since the last reset;
 * the Range values of the matching ones go into ranges (up to 8, "" for none). */
static int count_requests(const char *kind, const char *path, char ranges[8][64]) {
    cJSON *s = stats();
    const cJSON *r;
    int n = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(s, "requests")) {
        if (kind && strcmp(cJSON_GetObjectItem(r, "kind")->valuestring, kind)) continue;
        if (path && strcmp(cJSON_GetObjectItem(r, "path")->valuestring, path)) continue;
        if (ranges && n < 8) {
            const cJSON *g = cJSON_GetObjectItem(r, "range");
            snprintf(ranges[n], 64, "%s", cJSON_IsString(g) ? g->valuestring : "");
        }
        n++;
    }
    cJSON_Delete(s);
    return n;
}

/* Runs cge with `env` (assignments) and `args`; stdout/stderr into tmp/out, tmp/err. */
static const char *shell_prefix = ""; /* e.g. a ulimit for the next cge() */

static int cge(const char *env, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s env -u HF_TOKEN -u HF_HUB_OFFLINE -u HF_HOME -u HF_HUB_CACHE -u HF_ENDPOINT "
             "-u HF_TOKEN_PATH -u XDG_CACHE_HOME HOME=%s HF_ENDPOINT=%s %s %s %s >%s/out "
             "2>%s/err </dev/null",
             shell_prefix, tmp, endpoint, env, cge_bin, args, tmp, tmp);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static char *slurp(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    char *s = th_read_file(p, NULL);
    return s ? s : strdup("");
}

static int err_has(const char *needle) {
    char *e = slurp("err");
    int ok = strstr(e, needle) != NULL;
    if (!ok) printf("  stderr was: %s\n", e);
    free(e);
    return ok;
}

static int exists(const char *p) {
    struct stat sb;
    return lstat(p, &sb) == 0;
}

static void hexdigest(const EVP_MD *md, const void *pre, size_t pre_n, const void *d, size_t n,
                      char *out) {
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hn = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, md, NULL);
    if (pre_n) EVP_DigestUpdate(c, pre, pre_n);
    EVP_DigestUpdate(c, d, n);
    EVP_DigestFinal_ex(c, h, &hn);
    EVP_MD_CTX_free(c);
    for (unsigned i = 0; i < hn; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

/* The blob name huggingface_hub gives a file of the stand-in: SHA-256 for LFS (.safetensors,
 * .bin, .model), else the git blob id. */
static void expected_etag(const char *path, const char *data, size_t n, char *out) {
    size_t l = strlen(path);
    int lfs = (l > 12 && !strcmp(path + l - 12, ".safetensors")) ||
              (l > 4 && !strcmp(path + l - 4, ".bin")) ||
              (l > 6 && !strcmp(path + l - 6, ".model"));
    if (lfs) {
        hexdigest(EVP_sha256(), NULL, 0, data, n, out);
    } else {
        char pre[64];
        int k = snprintf(pre, sizeof pre, "blob %zu", n);
        hexdigest(EVP_sha1(), pre, (size_t)k + 1, data, n, out);
    }
}

/* Regular files under dir (relative paths, sorted by walk order), at most cap. */
static int list_files(const char *dir, const char *rel, char (*out)[256], int n, int cap) {
    char p[1024];
    snprintf(p, sizeof p, "%s%s%s", dir, rel[0] ? "/" : "", rel);
    DIR *d = opendir(p);
    if (!d) return n;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.') continue;
        char r[256], full[1300];
        snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", dir, r);
        struct stat sb;
        if (lstat(full, &sb)) continue;
        if (S_ISDIR(sb.st_mode))
            n = list_files(dir, r, out, n, cap);
        else
            snprintf(out[n++], 256, "%s", r);
    }
    closedir(d);
    return n;
}

static char *api_commit(const char *repo, char out[41]) {
    char path[256];
    snprintf(path, sizeof path, "/api/models/%s/revision/main", repo);
    char *s = http(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    const cJSON *sha = cJSON_GetObjectItem(j, "sha");
    snprintf(out, 41, "%s", cJSON_IsString(sha) ? sha->valuestring : "");
    cJSON_Delete(j);
    free(s);
    return out;
}

/* ==== the stand-in ============================================================================ */
static int start_server(void) {
    char spec[512], port_file[512];
    snprintf(spec, sizeof spec, "%s/spec.json", tmp);
    snprintf(port_file, sizeof port_file, "%s/port", tmp);
    char cwd[512];
    if (!getcwd(cwd, sizeof cwd)) return 0;
    FILE *f = fopen(spec, "w");
    if (!f) return 0;
    fprintf(f, "{\"token\": \"%s\", \"repos\": {\n", TOKEN);
    fprintf(f,
            " \"test-org/tiny-bert\": {\"dir\": \"%s/" BERT "\", \"extra\": {"
            "\"onnx/model.onnx\": \"onnx\", \"pytorch_model.bin\": \"not this one\", "
            "\"tf_model.h5\": \"tf\", \"README.md\": \"# tiny\", \".gitattributes\": \"*\", "
            "\"dup1.txt\": \"same bytes\", \"dup2.txt\": \"same bytes\"}},\n",
            cwd);
    fprintf(f, " \"test-org/gated\": {\"dir\": \"%s/" BERT "\", \"gated\": true}", cwd);
    const char *ens[][2] = {{"sentence-transformers/all-MiniLM-L6-v2", "E1"},
                            {"BAAI/bge-large-en-v1.5", "E2"},
                            {"hkunlp/instructor-xl", "E3"},
                            {"openai/clip-vit-large-patch14", "E4"},
                            {"openai/whisper-large-v3", "E5"},
                            {"microsoft/codebert-base", "E6"},
                            {"sentence-transformers/sentence-t5-base", "E7"},
                            {"sentence-transformers/all-mpnet-base-v2", "E8"},
                            {"facebook/contriever", "E9"},
                            {"facebook/dragon-plus-query-encoder", "E10-query"},
                            {"facebook/dragon-plus-context-encoder", "E10-document"},
                            {"thenlper/gte-large", "E11"},
                            {"intfloat/e5-mistral-7b-instruct", "E12"}};
    for (size_t i = 0; i < sizeof ens / sizeof ens[0]; i++)
        fprintf(f, ",\n \"%s\": {\"dir\": \"%s/" ENS "/%s\"}", ens[i][0], cwd, ens[i][1]);
    fprintf(f, "}}\n");
    fclose(f);
    server = fork();
    if (server == 0) {
        execlp("python3", "python3", "tests/net/fake_hub.py", "--spec", spec, "--port-file",
               port_file, "--lifetime", "600", (char *)NULL);
        _exit(127);
    }
    if (server < 0) return 0;
    /* Up to 60 s for the port file (the stand-in hashes ~60 MB of fixtures first). */
    for (int i = 0; i < 600; i++) {
        char *s = th_read_file(port_file, NULL);
        if (s) {
            snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", atoi(s));
            free(s);
            return 1;
        }
        int st;
        if (waitpid(server, &st, WNOHANG) == server) {
            server = -1;
            return 0;
        }
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void stop_server(void) {
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    server = -1;
}

/* ==== tests =================================================================================== */
static char cache[400];
static int cache_no;

/* A fresh, empty cache folder; env holds "HF_HUB_CACHE=..." for cge(). */
static void new_cache(char *env, size_t cap) {
    snprintf(cache, sizeof cache, "%s/cache%d", tmp, ++cache_no);
    snprintf(env, cap, "HF_HUB_CACHE=%s", cache);
}

#define REPO_DIR "models--test-org--tiny-bert"

static void test_layout(void) {
    char env[512], commit[41], snap[700];
    new_cache(env, sizeof env);
    api_commit("test-org/tiny-bert", commit);
    CHECK(strlen(commit) == 40);
    reset_stats();
    CHECK(cge(env, "pull test-org/tiny-bert") == 0);
    char *out = slurp("out");
    snprintf(snap, sizeof snap, "%s/" REPO_DIR "/snapshots/%s", cache, commit);
    CHECK_MSG(!strncmp(out, snap, strlen(snap)) && out[strlen(snap)] == '\n',
              "stdout '%s', expected '%s'", out, snap);
    free(out);
    CHECK(err_has("downloaded")); /* quiet lines when stderr is no terminal */
    /* Every fixture file, as a relative symlink to blobs/ETAG with the same bytes. */
    static char files[64][256], got[64][256];
    int n = list_files(BERT, "", files, 0, 64);
    CHECK(n == 10);
    for (int i = 0; i < n; i++) {
        char src[600], link[1000], target[600], want[700], etag[130];
        snprintf(src, sizeof src, BERT "/%s", files[i]);
        size_t len = 0;
        char *data = th_read_file(src, &len);
        expected_etag(files[i], data, len, etag);
        snprintf(link, sizeof link, "%s/%s", snap, files[i]);
        ssize_t k = readlink(link, target, sizeof target - 1);
        target[k > 0 ? k : 0] = 0;
        int depth = 2;
        for (const char *c = files[i]; *c; c++)
            depth += *c == '/';
        want[0] = 0;
        for (int d = 0; d < depth; d++)
            strcat(want, "../");
        strcat(want, "blobs/");
        strcat(want, etag);
        CHECK_MSG(!strcmp(target, want), "%s -> '%s', expected '%s'", files[i], target, want);
        size_t glen = 0;
        char *g = th_read_file(link, &glen);
        CHECK_MSG(g && glen == len && !memcmp(g, data, len), "%s: bytes differ", files[i]);
        free(g);
        free(data);
    }
    /* Two files with the same bytes share one blob (one download waited for the other's). */
    char d1[800], d2[800], t1[300], t2[300];
    snprintf(d1, sizeof d1, "%s/dup1.txt", snap);
    snprintf(d2, sizeof d2, "%s/dup2.txt", snap);
    ssize_t k1 = readlink(d1, t1, sizeof t1 - 1), k2 = readlink(d2, t2, sizeof t2 - 1);
    CHECK(k1 > 0 && k2 > 0);
    t1[k1 > 0 ? k1 : 0] = 0;
    t2[k2 > 0 ? k2 : 0] = 0;
    CHECK_MSG(!strcmp(t1, t2) && strstr(t1, "../../blobs/"), "'%s' vs '%s'", t1, t2);
    char *dd = th_read_file(d2, NULL);
    CHECK(dd && !strcmp(dd, "same bytes"));
    free(dd);
    /* Nothing else in the snapshot (no ONNX, TF, .bin, README, .gitattributes). */
    CHECK(list_files(snap, "", got, 0, 64) == n + 2);
    /* blobs: exactly one per distinct file, no .incomplete left. */
    char blobs[600];
    snprintf(blobs, sizeof blobs, "%s/" REPO_DIR "/blobs", cache);
    int nb = list_files(blobs, "", got, 0, 64);
    CHECK_MSG(nb == n + 1, "%d blobs", nb);
    for (int i = 0; i < nb; i++)
        CHECK(!strstr(got[i], ".incomplete"));
    /* refs/main: the bare commit. */
    char ref[600];
    snprintf(ref, sizeof ref, "%s/" REPO_DIR "/refs/main", cache);
    size_t rl = 0;
    char *r = th_read_file(ref, &rl);
    CHECK(r && rl == 40 && !memcmp(r, commit, 40));
    free(r);
    /* Requests: one listing, a HEAD per file, the LFS body from the storage host. */
    CHECK(count_requests("api", NULL, NULL) == 1);
    CHECK(count_requests("cdn", "model.safetensors", NULL) == 1);
    CHECK(served("model.safetensors") == 4049552);

    /* Again: everything is cached, no file is fetched. */
    reset_stats();
    CHECK(cge(env, "pull test-org/tiny-bert") == 0);
    CHECK(count_requests("resolve", NULL, NULL) == 0 && count_requests("cdn", NULL, NULL) == 0);
    CHECK(err_has("0 fetched"));

    /* A blob present but its snapshot link gone (another revision): HEAD, then linked. */
    char link[1000];
    snprintf(link, sizeof link, "%s/config.json", snap);
    unlink(link);
    reset_stats();
    CHECK(cge(env, "pull test-org/tiny-bert --revision v1") == 0);
    CHECK(count_requests("resolve", "config.json", NULL) == 1 && served("config.json") == 0);
    CHECK(exists(link));
    snprintf(ref, sizeof ref, "%s/" REPO_DIR "/refs/v1", cache);
    CHECK(exists(ref));

    /* Offline: the cached revision resolves without a request; an uncached one fails. */
    reset_stats();
    char env2[700];
    snprintf(env2, sizeof env2, "%s HF_HUB_OFFLINE=1", env);
    CHECK(cge(env2, "pull test-org/tiny-bert") == 0);
    out = slurp("out");
    CHECK(!strncmp(out, snap, strlen(snap)));
    free(out);
    CHECK(cge(env2, "pull test-org/gated") != 0);
    CHECK(err_has("offline mode"));
    CHECK(count_requests(NULL, NULL, NULL) == 0);

    /* cge embed --model ORG/NAME loads the cached snapshot: same output as the fixture. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "printf '\"hello world\"\\n\"the cache\"\\n' | env %s %s embed --model "
             "test-org/tiny-bert > %s/emb1 2>&1 && printf '\"hello world\"\\n\"the cache\"\\n' | "
             "%s embed --model " BERT " > %s/emb2 2>&1",
             env, cge_bin, tmp, cge_bin, tmp);
    CHECK(system(cmd) == 0);
    char *e1 = slurp("emb1"), *e2 = slurp("emb2");
    CHECK_MSG(e1[0] == '[' && !strcmp(e1, e2), "embed by repo id: %.200s", e1);
    free(e1);
    free(e2);
    snprintf(cmd, sizeof cmd, "echo '\"x\"' | env %s %s embed --model test-org/absent >%s/err 2>&1",
             env, cge_bin, tmp);
    CHECK(system(cmd) != 0);
    CHECK(err_has("cge pull test-org/absent"));
}

static void test_select(void) {
    char env[512], commit[41], snap[700];
    static char got[64][256];
    new_cache(env, sizeof env);
    api_commit("test-org/tiny-bert", commit);
    CHECK(cge(env, "pull test-org/tiny-bert --include '*.json' --exclude 'tokenizer*'") == 0);
    snprintf(snap, sizeof snap, "%s/" REPO_DIR "/snapshots/%s", cache, commit);
    int n = list_files(snap, "", got, 0, 64);
    CHECK_MSG(n == 6, "%d files", n);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(got[i]);
        CHECK_MSG(l > 5 && !strcmp(got[i] + l - 5, ".json") && strncmp(got[i], "tokenizer", 9),
                  "%s", got[i]);
    }
    CHECK(cge(env, "pull test-org/tiny-bert --include onnx/") == 0);
    char p[800];
    snprintf(p, sizeof p, "%s/onnx/model.onnx", snap);
    CHECK(exists(p));
    CHECK(cge(env, "pull test-org/tiny-bert --include 'nothing*'") != 0);
    CHECK(err_has("no file matches"));
}

static void test_resume(void) {
    char env[512], commit[41], p[900], ranges[8][64];
    const long long size = 4049552, cut = 1500000;
    api_commit("test-org/tiny-bert", commit);

    /* Within one run: the cut transfer is retried from where it stopped. */
    new_cache(env, sizeof env);
    reset_stats();
    control("{\"cut\": {\"model.safetensors\": 1500000}}");
    CHECK(cge(env, "pull test-org/tiny-bert") == 0);
    CHECK(err_has("retrying"));
    int n = count_requests("cdn", "model.safetensors", ranges);
    CHECK_MSG(n == 2 && !ranges[0][0] && !strcmp(ranges[1], "bytes=1500000-"),
              "%d requests, ranges '%s' '%s'", n, ranges[0], ranges[1]);
    CHECK_MSG(served("model.safetensors") == size, "%lld bytes served",
              served("model.safetensors"));
    snprintf(p, sizeof p, "%s/" REPO_DIR "/snapshots/%s/model.safetensors", cache, commit);
    size_t len = 0;
    char *got = th_read_file(p, &len), *want = th_read_file(BERT "/model.safetensors", NULL);
    CHECK(got && want && len == (size_t)size && !memcmp(got, want, len));
    free(got);

    /* Across runs: the first run stops (no retries), the second continues the file. */
    new_cache(env, sizeof env);
    reset_stats();
    control("{\"cut\": {\"model.safetensors\": 1500000}}");
    CHECK(cge(env, "pull test-org/tiny-bert --retries 0") != 0);
    CHECK(err_has("model.safetensors"));
    char inc[900], ref[700];
    char sha[65];
    hexdigest(EVP_sha256(), NULL, 0, want, (size_t)size, sha);
    snprintf(inc, sizeof inc, "%s/" REPO_DIR "/blobs/%s.incomplete", cache, sha);
    struct stat sb;
    int inc_ok = stat(inc, &sb) == 0 && sb.st_size == cut;
    CHECK_MSG(inc_ok, "no .incomplete of %lld bytes", cut);
    if (!inc_ok) CHECK(err_has("(the first run's stderr)"));
    snprintf(p, sizeof p, "%s/" REPO_DIR "/snapshots/%s/model.safetensors", cache, commit);
    CHECK(!exists(p));
    snprintf(ref, sizeof ref, "%s/" REPO_DIR "/refs/main", cache);
    CHECK(!exists(ref));
    reset_stats();
    control("{}");
    CHECK(cge(env, "pull test-org/tiny-bert") == 0);
    n = count_requests("cdn", "model.safetensors", ranges);
    CHECK_MSG(n == 1 && !strcmp(ranges[0], "bytes=1500000-"), "%d requests, range '%s'", n,
              ranges[0]);
    CHECK_MSG(served("model.safetensors") == size - cut, "%lld bytes served in the second run",
              served("model.safetensors"));
    got = th_read_file(p, &len);
    CHECK(got && len == (size_t)size && !memcmp(got, want, len));
    free(got);
    CHECK(!exists(inc) && exists(ref));

    /* A write that fails (a file size limit standing in for a full disk): a clear message,
     * the bytes written are kept, and the next run continues from them. */
    new_cache(env, sizeof env);
    shell_prefix = "trap '' XFSZ; ulimit -f 4000;"; /* 4000 blocks of 512 bytes */
    CHECK(cge(env, "pull test-org/tiny-bert --retries 0") != 0);
    shell_prefix = "";
    CHECK(err_has("cannot write blobs/") && err_has("File too large") &&
          err_has("run again to resume"));
    snprintf(inc, sizeof inc, "%s/" REPO_DIR "/blobs/%s.incomplete", cache, sha);
    CHECK_MSG(stat(inc, &sb) == 0 && sb.st_size == 4000 * 512, "no .incomplete of 2048000 bytes");
    reset_stats();
    CHECK(cge(env, "pull test-org/tiny-bert") == 0);
    n = count_requests("cdn", "model.safetensors", ranges);
    CHECK_MSG(n == 1 && !strcmp(ranges[0], "bytes=2048000-"), "%d requests, range '%s'", n,
              ranges[0]);
    snprintf(p, sizeof p, "%s/" REPO_DIR "/snapshots/%s/model.safetensors", cache, commit);
    got = th_read_file(p, &len);
    CHECK(got && len == (size_t)size && !memcmp(got, want, len));
    free(got);

    /* A server that ignores Range: the file restarts from zero and still checks out. */
    new_cache(env, sizeof env);
    control("{\"cut\": {\"model.safetensors\": 1500000}}");
    CHECK(cge(env, "pull test-org/tiny-bert --retries 0") != 0);
    reset_stats();
    control("{\"ignore_range\": true}");
    CHECK(cge(env, "pull test-org/tiny-bert") == 0);
    CHECK(served("model.safetensors") == size);
    snprintf(p, sizeof p, "%s/" REPO_DIR "/snapshots/%s/model.safetensors", cache, commit);
    got = th_read_file(p, &len);
    CHECK(got && len == (size_t)size && !memcmp(got, want, len));
    free(got);
    free(want);
    control("{}");
}

/* Runs a pull that must fail with `needle` in its message, under fault `faults`; then checks
 * that `file` did not land in snapshots/ and refs/main was not written. */
static void bad_answer(const char *faults, const char *args, const char *needle, const char *file) {
    char env[512], commit[41], p[900];
    new_cache(env, sizeof env);
    api_commit("test-org/tiny-bert", commit);
    control(faults);
    CHECK_MSG(cge(env, args) != 0, "%s: pull succeeded", faults);
    CHECK_MSG(err_has(needle), "%s: no '%s'", faults, needle);
    control("{}");
    if (file) {
        snprintf(p, sizeof p, "%s/" REPO_DIR "/snapshots/%s/%s", cache, commit, file);
        CHECK_MSG(!exists(p), "%s: %s in snapshots/", faults, file);
    }
    snprintf(p, sizeof p, "%s/" REPO_DIR "/refs/main", cache);
    CHECK_MSG(!exists(p), "%s: refs/main written", faults);
}

static void test_bad_answers(void) {
    char sha[65];
    size_t len = 0;
    char *d = th_read_file(BERT "/model.safetensors", &len);
    hexdigest(EVP_sha256(), NULL, 0, d, len, sha);
    free(d);
    /* A corrupted LFS body: rejected with both hashes, deleted, not linked. */
    bad_answer("{\"corrupt\": [\"model.safetensors\"]}", "pull test-org/tiny-bert",
               "SHA-256 mismatch", "model.safetensors");
    CHECK(err_has(sha));
    char blob[900];
    snprintf(blob, sizeof blob, "%s/" REPO_DIR "/blobs/%s", cache, sha);
    CHECK(!exists(blob));
    strcat(blob, ".incomplete");
    CHECK(!exists(blob));
    /* A corrupted small file: its git blob id does not match. */
    bad_answer("{\"corrupt\": [\"config.json\"]}", "pull test-org/tiny-bert",
               "git blob id mismatch", "config.json");
    /* More bytes than announced. */
    bad_answer("{\"extra\": [\"vocab.txt\"]}", "pull test-org/tiny-bert --retries 0",
               "more than the 231508 bytes", "vocab.txt");
    bad_answer("{\"redirect_loop\": true}", "pull test-org/tiny-bert", "redirects",
               "model.safetensors");
    bad_answer("{\"head_loop\": true}", "pull test-org/tiny-bert",
               "more than 5 redirects on the Hub", NULL);
    bad_answer("{\"wrong_size\": [\"model.safetensors\"]}", "pull test-org/tiny-bert",
               "announces 4049553 bytes, the file list 4049552", "model.safetensors");
    bad_answer("{\"wrong_size\": [\"vocab.txt\"]}", "pull test-org/tiny-bert",
               "announces 231509 bytes, the file list 231508", "vocab.txt");
    bad_answer("{\"no_commit\": true}", "pull test-org/tiny-bert", "no X-Repo-Commit", NULL);
    bad_answer("{\"bad_json\": true}", "pull test-org/tiny-bert", "not valid JSON", NULL);
    bad_answer("{}", "pull test-org/tiny-bert --revision no-such-branch", "revision not found",
               NULL);
    bad_answer("{}", "pull test-org/no-such-repo", "HF_TOKEN", NULL);
    bad_answer("{}", "pull '../../etc'", "not a repo id", NULL);
    /* 503, then the file: retried after a backoff. */
    char env[512];
    new_cache(env, sizeof env);
    control("{\"fail\": {\"config.json\": 1}}");
    CHECK(cge(env, "pull test-org/tiny-bert") == 0);
    CHECK(err_has("HTTP 503"));
    control("{}");
    /* Nothing listening (a port just bound and released): a network error, retried, then a
     * clear message. */
    new_cache(env, sizeof env);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
          getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    char cmd[2048], want[64];
    snprintf(want, sizeof want, "cannot reach http://127.0.0.1:%d", ntohs(sa.sin_port));
    snprintf(cmd, sizeof cmd,
             "env -u HF_TOKEN HF_ENDPOINT=http://127.0.0.1:%d %s %s pull test-org/tiny-bert "
             "--retries 1 >%s/out 2>%s/err",
             ntohs(sa.sin_port), env, cge_bin, tmp, tmp);
    CHECK(system(cmd) != 0);
    CHECK(err_has(want) && err_has("retrying"));
    /* ... and with the repository cached, the message points at offline mode. */
    snprintf(cmd, sizeof cmd,
             "env -u HF_TOKEN HF_ENDPOINT=http://127.0.0.1:%d HF_HUB_CACHE=%s/cache1 %s pull "
             "test-org/tiny-bert --retries 0 >%s/out 2>%s/err",
             ntohs(sa.sin_port), tmp, cge_bin, tmp, tmp);
    CHECK(system(cmd) != 0);
    CHECK(err_has("HF_HUB_OFFLINE=1 uses it"));
}

static void test_token(void) {
    char env[600];
    new_cache(env, sizeof env);
    /* Without a token: refused, with the advice to set HF_TOKEN. */
    CHECK(cge(env, "pull test-org/gated") != 0);
    CHECK(err_has("gated or private") && err_has("HF_TOKEN"));
    /* A wrong token: refused, token not echoed. */
    char env2[800];
    snprintf(env2, sizeof env2, "%s HF_TOKEN=hf_wrong_token_123", env);
    CHECK(cge(env2, "pull test-org/gated") != 0);
    CHECK(err_has("access denied"));
    char *e = slurp("err");
    CHECK(!strstr(e, "hf_wrong_token_123"));
    free(e);
    /* The right token: sent to the Hub (API and resolve), never to the storage host, and in no
     * output. */
    reset_stats();
    snprintf(env2, sizeof env2, "%s HF_TOKEN=" TOKEN, env);
    CHECK(cge(env2, "pull test-org/gated") == 0);
    cJSON *s = stats();
    const cJSON *r;
    int hub = 0, hub_ok = 0, cdn = 0, cdn_auth = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(s, "requests")) {
        const char *kind = cJSON_GetObjectItem(r, "kind")->valuestring;
        int auth = cJSON_IsTrue(cJSON_GetObjectItem(r, "auth"));
        int ok = cJSON_IsTrue(cJSON_GetObjectItem(r, "auth_ok"));
        if (!strcmp(kind, "cdn")) {
            cdn++;
            cdn_auth += auth;
        } else {
            hub++;
            hub_ok += ok;
        }
    }
    cJSON_Delete(s);
    CHECK_MSG(hub > 0 && hub_ok == hub, "%d of %d Hub requests carried the token", hub_ok, hub);
    CHECK_MSG(cdn == 1 && cdn_auth == 0, "%d storage requests, %d with a token", cdn, cdn_auth);
    char *o = slurp("out");
    e = slurp("err");
    CHECK(!strstr(o, TOKEN) && !strstr(e, TOKEN));
    free(o);
    free(e);
    /* The token `huggingface-cli login` saves in $HF_HOME/token, and the cache in
     * $HF_HOME/hub when HF_HUB_CACHE is unset. */
    char home[600], p[700];
    snprintf(home, sizeof home, "%s/hf_home", tmp);
    mkdir(home, 0755);
    snprintf(p, sizeof p, "%s/token", home);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fprintf(f, "%s\n", TOKEN);
        fclose(f);
    }
    snprintf(env2, sizeof env2, "HF_HOME=%s", home);
    CHECK(cge(env2, "pull test-org/gated") == 0);
    snprintf(p, sizeof p, "%s/hub/models--test-org--gated/refs/main", home);
    CHECK(exists(p));
    e = slurp("err");
    CHECK(!strstr(e, TOKEN));
    free(e);
}

static void test_ensemble(void) {
    char env[600], out_dir[700], args[1200];
    new_cache(env, sizeof env);
    snprintf(out_dir, sizeof out_dir, "%s/ens", tmp);
    /* Before the pull: init names what is missing. */
    snprintf(args, sizeof args, "ensemble init --out %s", out_dir);
    CHECK(cge(env, args) != 0);
    CHECK(err_has("cge pull --ensemble"));
    CHECK(cge(env, "pull --ensemble") == 0);
    char *o = slurp("out");
    int lines = 0;
    for (char *c = o; *c; c++)
        lines += *c == '\n';
    CHECK_MSG(lines == 13, "%d snapshot lines", lines);
    free(o);
    snprintf(args, sizeof args,
             "ensemble init --out %s --fusion-config " ENS "/fusion/config.json --seed 3", out_dir);
    CHECK(cge(env, args) == 0);
    char p[900];
    snprintf(p, sizeof p, "%s/ensemble.json", out_dir);
    char *js = th_read_file(p, NULL);
    cJSON *doc = js ? cJSON_Parse(js) : NULL;
    free(js);
    CHECK(doc != NULL);
    const cJSON *slots = cJSON_GetObjectItem(doc, "slots");
    CHECK(cJSON_GetArraySize(slots) == 12);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(doc, "version")));
    const cJSON *fu = cJSON_GetObjectItem(doc, "fusion");
    CHECK(cJSON_IsString(fu) && !strcmp(fu->valuestring, "fusion"));
    /* Each slot path is a folder holding the fixture folder's files, byte for byte. */
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, slots) {
        char name[8];
        snprintf(name, sizeof name, "E%d", ++i);
        const cJSON *sl = cJSON_GetObjectItem(s, "slot");
        CHECK(cJSON_IsString(sl) && !strcmp(sl->valuestring, name));
        const cJSON *path = cJSON_GetObjectItem(s, "path");
        const char *dirs[2] = {NULL, NULL};
        if (i == 10) {
            const cJSON *q = cJSON_GetObjectItem(path, "query"),
                        *d = cJSON_GetObjectItem(path, "document");
            CHECK(cJSON_IsString(q) && cJSON_IsString(d));
            if (!cJSON_IsString(q) || !cJSON_IsString(d)) continue;
            CHECK(!strcmp(q->valuestring, "E10-query") && !strcmp(d->valuestring, "E10-document"));
            dirs[0] = q->valuestring;
            dirs[1] = d->valuestring;
        } else {
            CHECK(cJSON_IsString(path));
            if (!cJSON_IsString(path)) continue;
            dirs[0] = path->valuestring;
        }
        for (int k = 0; k < 2 && dirs[k]; k++) {
            static char files[64][256];
            char fx[600];
            snprintf(fx, sizeof fx, ENS "/%s", dirs[k]);
            int n = list_files(fx, "", files, 0, 64);
            CHECK(n > 0);
            for (int f = 0; f < n; f++) {
                char a[1200], b[1200];
                snprintf(a, sizeof a, "%s/%s", fx, files[f]);
                snprintf(b, sizeof b, "%s/%s/%s", out_dir, dirs[k], files[f]);
                size_t la = 0, lb = 0;
                char *da = th_read_file(a, &la), *db = th_read_file(b, &lb);
                CHECK_MSG(da && db && la == lb && !memcmp(da, db, la), "%s/%s", dirs[k], files[f]);
                free(da);
                free(db);
            }
        }
    }
    cJSON_Delete(doc);
    snprintf(p, sizeof p, "%s/fusion/model.safetensors", out_dir);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/fusion/config.json", out_dir);
    char *fc = th_read_file(p, NULL);
    cJSON *c = fc ? cJSON_Parse(fc) : NULL;
    free(fc);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(c, "slot_dims")) == 12);
    cJSON_Delete(c);
    /* The engine runs the new ensemble: the pulled models give the fixture's slot vectors
     * (the fusion weights are new, so only the slots are compared). Two inputs, a text (11
     * slots) and an image (E4), keep it quick under ASan; test_runtime_cli runs them all. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd tests/fixtures/ensemble && sed -n '1p;9p' inputs.jsonl | %s embed --ensemble %s "
             "--output slots --no-cache > %s/slots.jsonl 2>%s/err",
             cge_bin, out_dir, tmp, tmp);
    CHECK(system(cmd) == 0);
    char *got = slurp("slots.jsonl"),
         *exp = th_read_file("tests/fixtures/ensemble/expected.jsonl", NULL);
    CHECK(got && exp);
    char *gs = NULL, *es = NULL;
    char *g = got ? strtok_r(got, "\n", &gs) : NULL, *x = exp ? strtok_r(exp, "\n", &es) : NULL;
    int rows = 0, present = 0;
    double worst = 0;
    for (int line = 0; g && x; line++, x = strtok_r(NULL, "\n", &es)) {
        if (line != 0 && line != 8) continue;
        cJSON *a = cJSON_Parse(g), *b = cJSON_Parse(x);
        g = strtok_r(NULL, "\n", &gs);
        rows++;
        const cJSON *sa = cJSON_GetObjectItem(a, "slots"), *sb2 = cJSON_GetObjectItem(b, "slots");
        CHECK_MSG(sa && sb2, "input %d: no slots", line);
        const cJSON *v;
        cJSON_ArrayForEach(v, sb2) {
            const cJSON *w = cJSON_GetObjectItem(sa, v->string);
            if (cJSON_IsNull(v)) {
                CHECK_MSG(cJSON_IsNull(w), "input %d %s: expected null", line, v->string);
                continue;
            }
            int n = cJSON_GetArraySize(v);
            CHECK_MSG(cJSON_GetArraySize(w) == n, "input %d %s: size", line, v->string);
            if (cJSON_GetArraySize(w) != n) continue;
            double num = 0, den = 0;
            for (int k = 0; k < n; k++) {
                double r = cJSON_GetArrayItem(v, k)->valuedouble;
                double d = cJSON_GetArrayItem(w, k)->valuedouble - r;
                num += d * d;
                den += r * r;
            }
            double rel = sqrt(num / (den > 0 ? den : 1));
            worst = rel > worst ? rel : worst;
            present++;
        }
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    CHECK_MSG(rows == 2 && present == 12, "%d inputs, %d slot vectors", rows, present);
    CHECK_MSG(worst <= 1e-5, "slot vectors off the fixture by %.3g (relative)", worst);
    free(got);
    free(exp);

    /* A second init refuses to overwrite without --force. */
    snprintf(args, sizeof args, "ensemble init --out %s --fusion-config " ENS "/fusion/config.json",
             out_dir);
    CHECK(cge(env, args) != 0);
    CHECK(err_has("--force"));
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CHECK_MSG(find_cge(), "no cge binary at %s", cge_bin);
    snprintf(tmp, sizeof tmp, "/tmp/cge_pull_XXXXXX");
    CHECK(mkdtemp(tmp) != NULL);
    int up = start_server();
    CHECK_MSG(up, "the Hub stand-in (python3 tests/net/fake_hub.py) did not start");
    if (up && cge_bin[0]) {
        void (*tests[])(void) = {test_layout,      test_select, test_resume,
                                 test_bad_answers, test_token,  test_ensemble};
        const char *names[] = {"layout", "select", "resume", "bad_answers", "token", "ensemble"};
        for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
            struct timespec a, b;
            int f0 = th_failed;
            clock_gettime(CLOCK_MONOTONIC, &a);
            tests[i]();
            clock_gettime(CLOCK_MONOTONIC, &b);
            printf("  %-12s %5.2f s%s\n", names[i],
                   (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec),
                   th_failed != f0 ? "  FAILED" : "");
        }
    }
    stop_server();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (th_failed == 0 && system(cmd) != 0) printf("  could not remove %s\n", tmp);
    curl_global_cleanup();
    return test_report("net_pull");
}
