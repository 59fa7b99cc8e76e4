/*
 * test_net_redis.c: the Redis cache tier and the Redis Streams workers against a real
 * redis-server (started here on 127.0.0.1, on a free port, with no persistence and its folder
 * removed at exit), and through the built cge command as users run it.
 *
 *  - URLs, the value framing, and a server that accepts but never answers (the call returns
 *    within its timeout, and the next ones at once while the backoff lasts);
 *  - the tier: values round-trip with their TTL; a corrupt value is a miss, then overwritten;
 *  - two `cge embed --redis` processes: the second computes nothing (its stats) and prints the
 *    same bytes; corrupt engine values are recomputed; a slot swap recomputes that slot only;
 *  - two workers and a submitter give what `cge embed --ensemble` gives; malformed jobs and a
 *    job retried too often are dead-lettered with a reason and the workers stay up;
 *  - a worker SIGKILLed holding jobs: another takes them over, each line printed exactly once;
 *  - Redis restarted (without persistence) mid-job: workers reconnect, the submitter enqueues
 *    what was lost, and the job completes.
 * Every wait is bounded; child processes are killed at exit whatever happened.
 */
#include "core/core.h"
#include "ensemble_fixture.h"
#include "net/redis.h"
#include "testhelp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char cge_bin[1024];
static char tmpdir[256];
static int redis_port;
static pid_t redis_pid;
static char url[128];
static pid_t children[32];
static int n_children;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int find_cge(void) {
    return th_find_cge(cge_bin, sizeof cge_bin);
}

/* ==== processes ================================================================================= */

/* Starts `sh -c "exec CMD"` in the fixture folder (stdin, stdout, stderr as given: NULL keeps
 * ours / /dev/null for stdin). Returns the pid (the command's own, thanks to exec). */
static pid_t spawn(const char *cmd, const char *in, const char *out, const char *err) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        if (chdir(EF_DIR) != 0) _exit(126);
        int fd = open(in ? in : "/dev/null", O_RDONLY);
        if (fd >= 0) dup2(fd, 0);
        if (out) {
            fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) dup2(fd, 1);
        }
        if (err) {
            fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) dup2(fd, 2);
        }
        char full[8192];
        snprintf(full, sizeof full, "exec %s", cmd);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    if (n_children < 32) children[n_children++] = pid;
    return pid;
}

static void forget(pid_t pid) {
    for (int i = 0; i < n_children; i++)
        if (children[i] == pid) children[i] = 0;
}

/* Waits up to ms for pid; returns its exit status (128+sig when killed), -1 on timeout (the
 * process is then killed). */
static int wait_for(pid_t pid, int ms) {
    int64_t end = now_ms() + ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget(pid);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (r < 0) return -1;
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            forget(pid);
            return -1;
        }
        sleep_ms(20);
    }
}

static void cleanup(void) {
    for (int i = 0; i < n_children; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
    }
    if (tmpdir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

static void tmp(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

/* ==== the server ================================================================================ */

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0) close(s);
    return port;
}

/* A client of our own for checks (hiredis directly: not the code under test). */
static redisContext *client(void) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c) redisSetTimeout(c, tv);
    return c;
}

static long long cmd_int(const char *fmt, ...) {
    redisContext *c = client();
    if (!c) return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r) freeReplyObject(r);
    redisFree(c);
    return v;
}

/* Starts redis-server on redis_port (a free one is picked when 0); 0 when it answers PING. */
static int start_redis(void) {
    for (int attempt = 0; attempt < 3; attempt++) {
        if (!redis_port || attempt) redis_port = free_port();
        char port[16], log[300];
        snprintf(port, sizeof port, "%d", redis_port);
        tmp(log, sizeof log, "redis.log");
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", tmpdir, "--protected-mode", "yes", (char *)NULL);
            _exit(127);
        }
        redis_pid = pid;
        for (int i = 0; i < 250; i++) { /* up to 5 s */
            redisContext *c = client();
            if (c) {
                redisReply *r = redisCommand(c, "PING");
                int ok = r && r->type == REDIS_REPLY_STATUS;
                if (r) freeReplyObject(r);
                redisFree(c);
                if (ok) {
                    snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis_port);
                    return 0;
                }
            }
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) break; /* died (port taken?): next port */
            sleep_ms(20);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        redis_pid = 0;
        if (attempt == 0) redis_port = 0;
    }
    return -1;
}

static void stop_redis(void) {
    if (redis_pid <= 0) return;
    kill(redis_pid, SIGTERM);
    int st;
    int64_t end = now_ms() + 5000;
    while (waitpid(redis_pid, &st, WNOHANG) == 0 && now_ms() < end) sleep_ms(10);
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = 0;
}

/* ==== comparing outputs ========================================================================= */

/* Structural equality with numbers within tolerance (batching changes the last bits). */
static int json_near(const cJSON *a, const cJSON *b, double *worst) {
    if (!a || !b) return a == b;
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) {
        double d = fabs(a->valuedouble - b->valuedouble) / (1.0 + fabs(b->valuedouble));
        if (d > *worst) *worst = d;
        return d <= 1e-5;
    }
    if ((a->type & 0xff) != (b->type & 0xff)) return 0;
    if (cJSON_IsString(a)) return !strcmp(a->valuestring, b->valuestring);
    if (cJSON_IsArray(a) || cJSON_IsObject(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next) {
            if (cJSON_IsObject(a) && strcmp(x->string, y->string)) return 0;
            if (!json_near(x, y, worst)) return 0;
        }
        return !x && !y;
    }
    return 1;
}

/* Every line of got equals (within tolerance) the same line of want; n lines each. */
static void check_same_lines(const char *got, const char *want, int n, const char *what) {
    size_t la = 0, lb = 0;
    char *a = th_read_file(got, &la), *b = th_read_file(want, &lb);
    CHECK_MSG(a && b, "%s: outputs missing", what);
    if (!a || !b) {
        free(a);
        free(b);
        return;
    }
    int na = 0, nb = 0;
    for (size_t i = 0; i < la; i++) na += a[i] == '\n';
    for (size_t i = 0; i < lb; i++) nb += b[i] == '\n';
    CHECK_MSG(na == n && nb == n, "%s: %d and %d lines, expected %d", what, na, nb, n);
    char *pa = a, *pb = b;
    double worst = 0;
    int bad = 0;
    for (int i = 0; i < n && na == n && nb == n; i++) {
        char *ea = strchr(pa, '\n'), *eb = strchr(pb, '\n');
        *ea = *eb = 0;
        cJSON *x = cJSON_Parse(pa), *y = cJSON_Parse(pb);
        if (!x || !y || !json_near(x, y, &worst)) {
            bad++;
            if (bad < 3) printf("  %s: line %d differs: %.120s | %.120s\n", what, i + 1, pa, pb);
        }
        cJSON_Delete(x);
        cJSON_Delete(y);
        pa = ea + 1;
        pb = eb + 1;
    }
    CHECK_MSG(bad == 0, "%s: %d lines differ (worst relative difference %.3g)", what, bad, worst);
    free(a);
    free(b);
}

/* A number from a JSON stats line in a file (the last line holding key). -1 when absent. */
static long long stat_of(const char *file, const char *key) {
    char *t = th_read_file(file, NULL);
    if (!t) return -1;
    long long v = -1;
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    for (char *p = strstr(t, pat); p; p = strstr(p + 1, pat)) v = atoll(p + strlen(pat));
    free(t);
    return v;
}

static int file_lines(const char *file) {
    size_t n = 0;
    char *t = th_read_file(file, &n);
    if (!t) return -1;
    int l = 0;
    for (size_t i = 0; i < n; i++) l += t[i] == '\n';
    free(t);
    return l;
}

/* ==== no server needed ========================================================================== */

static void test_urls(void) {
    struct cge__redis_url u;
    CHECK(cge__redis_url_parse("redis://127.0.0.1:6380/2", &u) == CGE_OK);
    CHECK(!strcmp(u.host, "127.0.0.1") && u.port == 6380 && u.db == 2 && !u.user[0] && !u.pass[0]);
    CHECK(cge__redis_url_parse("redis://alice:s%40cret@cache.local", &u) == CGE_OK);
    CHECK(!strcmp(u.user, "alice") && !strcmp(u.pass, "s@cret") && u.port == 6379 && u.db == 0);
    CHECK(cge__redis_url_parse("redis://:pw@h:1/", &u) == CGE_OK && !u.user[0] && !strcmp(u.pass, "pw"));
    CHECK(cge__redis_url_parse("redis://[::1]:7000/3", &u) == CGE_OK && !strcmp(u.host, "::1") &&
          u.port == 7000 && u.db == 3);
    CHECK(cge__redis_url_parse("rediss://h:1", &u) == CGE_ERR_UNSUPPORTED);
    CHECK(cge__redis_url_parse("http://h", &u) == CGE_ERR_INVALID_VALUE);
    CHECK(cge__redis_url_parse("redis://h:99999", &u) == CGE_ERR_INVALID_VALUE);
    CHECK(cge__redis_url_parse("redis://h:", &u) == CGE_ERR_INVALID_VALUE);
    CHECK(cge__redis_url_parse("redis://:1", &u) == CGE_ERR_INVALID_VALUE);
    CHECK(cge__redis_url_parse("redis://h/x", &u) == CGE_ERR_INVALID_VALUE);
    CHECK(cge__redis_url_parse("redis://a:%4@h", &u) == CGE_ERR_INVALID_VALUE);
}

static void test_config(void) {
    struct cge_config c;
    const char *ok = "{\"redis\": {\"url\": \"redis://h:1/2\", \"ttl_seconds\": 60, \"timeout_ms\": 50}}";
    CHECK(cge_config_parse(ok, strlen(ok), "t", &c) == CGE_OK);
    CHECK(!strcmp(c.redis.url, "redis://h:1/2") && c.redis.ttl_seconds == 60 && c.redis.timeout_ms == 50);
    c = cge_config_default();
    CHECK(!c.redis.url[0] && c.redis.timeout_ms == 200 && c.redis.ttl_seconds == 0);
    const char *bad[] = {"{\"redis\": {\"url\": \"http://h\"}}", "{\"redis\": {\"host\": \"h\"}}",
                         "{\"redis\": {\"timeout_ms\": 0}}", "{\"redis\": {\"ttl_seconds\": -1}}",
                         "{\"redis\": \"redis://h\"}"};
    for (int i = 0; i < 5; i++) {
        CHECK_MSG(cge_config_parse(bad[i], strlen(bad[i]), "t", &c) == CGE_ERR_INVALID_VALUE, "%s", bad[i]);
        CHECK(strstr(cge_errmsg(), "redis"));
    }
    /* an engine given a bad URL refuses to open; an unreachable server does not stop it */
    struct cge_engine_params p = cge_engine_default_params();
    p.redis_url = "redis://h:notaport";
    struct cge_engine *e = NULL;
    CHECK(cge_engine_open(EF_ENSEMBLE, &p, &e) == CGE_ERR_INVALID_VALUE && !e);
}

static void test_framing(void) {
    unsigned char v[CGE__REDIS_FRAME_HDR + 5];
    cge__redis_frame("hello", 5, v);
    size_t n = 0;
    const void *p = cge__redis_unframe(v, sizeof v, &n);
    CHECK(p && n == 5 && !memcmp(p, "hello", 5));
    v[CGE__REDIS_FRAME_HDR + 2] ^= 1;
    CHECK(!cge__redis_unframe(v, sizeof v, &n));
    v[CGE__REDIS_FRAME_HDR + 2] ^= 1;
    CHECK(!cge__redis_unframe(v, sizeof v - 1, &n));
    CHECK(!cge__redis_unframe("CGR1", 4, &n));
}

/* A server that accepts connections and never answers: calls end at their deadline, and while
 * the backoff lasts the next calls return at once. */
static void test_silent_server(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 16) == 0 &&
          getsockname(s, (struct sockaddr *)&a, &l) == 0);
    char u[80];
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    struct cge__redis_cache_params cp = cge__redis_cache_default_params();
    cp.timeout_ms = 150;
    struct cge__redis_cache *c = NULL;
    CHECK(cge__redis_cache_open(u, &cp, &c) == CGE_OK);
    void *v = NULL;
    size_t n = 0;
    int64_t t0 = now_ms();
    CHECK(cge__redis_cache_get(c, "k", 1, &v, &n) == 0);
    int64_t t1 = now_ms();
    CHECK(cge__redis_cache_get(c, "k", 1, &v, &n) == 0);
    CHECK(cge__redis_cache_put(c, "k", 1, "x", 1) != CGE_OK);
    int64_t t2 = now_ms();
    CHECK_MSG(t1 - t0 >= 100 && t1 - t0 < 1000, "first call took %lld ms (timeout 150)", (long long)(t1 - t0));
    CHECK_MSG(t2 - t1 < 20, "calls in backoff took %lld ms", (long long)(t2 - t1));
    struct cge__redis_cache_stats st;
    cge__redis_cache_get_stats(c, &st);
    CHECK(st.errors == 3 && st.hits == 0);
    cge__redis_cache_close(c);
    /* nothing listening at all: refused at once, no hang either */
    close(s);
    CHECK(cge__redis_cache_open(u, &cp, &c) == CGE_OK);
    t0 = now_ms();
    CHECK(cge__redis_cache_get(c, "k", 1, &v, &n) == 0);
    CHECK(now_ms() - t0 < 1000);
    cge__redis_cache_close(c);
    /* a connection for the queue: a NULL reply with a message, not a crash */
    struct cge__redis *r = NULL;
    CHECK(cge__redis_open(u, NULL, &r) == CGE_OK);
    const char *argv[1] = {"PING"};
    CHECK(cge__redis_cmd(r, 100, 1, argv, NULL) == NULL && strstr(cge_errmsg(), "redis"));
    CHECK(!cge__redis_connected(r));
    cge__redis_close(r);
}

/* ==== the tier against the server =============================================================== */

static void test_tier(void) {
    struct cge__redis_cache_params cp = cge__redis_cache_default_params();
    cp.ttl_seconds = 100;
    struct cge__redis_cache *c = NULL;
    CHECK(cge__redis_cache_open(url, &cp, &c) == CGE_OK);
    CHECK(cge__redis_cache_put(c, "t:a", 3, "payload\0bytes", 13) == CGE_OK);
    void *v = NULL;
    size_t n = 0;
    CHECK(cge__redis_cache_get(c, "t:a", 3, &v, &n) == 1 && n == 13 && !memcmp(v, "payload\0bytes", 13));
    cge__free(v);
    long long ttl = cmd_int("TTL t:a");
    CHECK_MSG(ttl > 90 && ttl <= 100, "TTL %lld", ttl);
    CHECK(cge__redis_cache_get(c, "t:none", 6, &v, &n) == 0);
    /* a corrupt value: a miss, then overwritten by the next put */
    redisContext *rc = client();
    redisReply *r = rc ? redisCommand(rc, "SET t:a %b", "CGR1garbagegarbagegarbage", (size_t)25) : NULL;
    if (r) freeReplyObject(r);
    if (rc) redisFree(rc);
    CHECK(cge__redis_cache_get(c, "t:a", 3, &v, &n) == 0);
    struct cge__redis_cache_stats st;
    cge__redis_cache_get_stats(c, &st);
    CHECK(st.corrupt == 1 && st.hits == 1 && st.puts == 1);
    CHECK(cge__redis_cache_put(c, "t:a", 3, "fresh", 5) == CGE_OK);
    CHECK(cge__redis_cache_get(c, "t:a", 3, &v, &n) == 1 && n == 5 && !memcmp(v, "fresh", 5));
    cge__free(v);
    cge__redis_cache_close(c);
}

/* ==== the engine's second level ================================================================= */

static char ref_fused[300], ref_both[300];

static void test_embed_shared(void) {
    char o1[300], o2[300], e1[300], e2[300], cmd[2048];
    tmp(o1, sizeof o1, "embed1.jsonl");
    tmp(o2, sizeof o2, "embed2.jsonl");
    tmp(e1, sizeof e1, "embed1.err");
    tmp(e2, sizeof e2, "embed2.err");
    snprintf(cmd, sizeof cmd, "%s embed --ensemble ensemble --redis %s --stats", cge_bin, url);
    CHECK(wait_for(spawn(cmd, "inputs.jsonl", o1, e1), 120000) == 0);
    CHECK(wait_for(spawn(cmd, "inputs.jsonl", o2, e2), 120000) == 0);
    int n = file_lines(o1);
    CHECK(n == 12);
    CHECK_MSG(stat_of(e1, "slot_runs") > 0 && stat_of(e1, "redis_puts") >= 12, "first run: computes and stores");
    CHECK_MSG(stat_of(e2, "slot_runs") == 0, "second run ran %lld slot inputs", stat_of(e2, "slot_runs"));
    CHECK(stat_of(e2, "redis_hits") == 12 && stat_of(e2, "cache_hits") == 12);
    size_t l1 = 0, l2 = 0;
    char *a = th_read_file(o1, &l1), *b = th_read_file(o2, &l2);
    CHECK_MSG(a && b && l1 == l2 && !memcmp(a, b, l1), "the cached run prints other bytes");
    free(a);
    free(b);
    snprintf(ref_fused, sizeof ref_fused, "%s", o1);
    /* the reference for the workers: plain cge embed --ensemble, no Redis */
    tmp(ref_both, sizeof ref_both, "embed_both.jsonl");
    snprintf(cmd, sizeof cmd, "%s embed --ensemble ensemble --output both", cge_bin);
    CHECK(wait_for(spawn(cmd, "inputs.jsonl", ref_both, "/dev/null"), 120000) == 0);
    CHECK(file_lines(ref_both) == 12);
}

/* In-process: corrupt values are recomputed and overwritten; a swapped slot is the only one run. */
static void test_engine_corrupt_and_swap(void) {
    struct ef F;
    CHECK(ef_load(EF_DIR, &F) == 0);
    struct cge_input in[EF_MAX];
    static char paths[EF_MAX][512];
    for (int i = 0; i < F.n; i++) ef_input(&F, EF_DIR, i, &in[i], paths[i], sizeof paths[i]);
    /* every cge:* value garbled, keys kept */
    redisContext *c = client();
    redisReply *keys = c ? redisCommand(c, "KEYS cge:*") : NULL;
    int garbled = 0;
    for (size_t i = 0; keys && keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++) {
        redisReply *r = redisCommand(c, "SETRANGE %b 20 xx", keys->element[i]->str, keys->element[i]->len);
        garbled += r && r->type == REDIS_REPLY_INTEGER;
        if (r) freeReplyObject(r);
    }
    CHECK(garbled >= 24);
    struct cge_engine_params p = cge_engine_default_params();
    p.redis_url = url;
    struct cge_engine *e = NULL;
    CHECK(cge_engine_open(EF_ENSEMBLE, &p, &e) == CGE_OK);
    struct cge_result res[EF_MAX];
    CHECK(e && cge_engine_embed(e, in, (size_t)F.n, NULL, res) == CGE_OK);
    struct cge_engine_stats st;
    CHECK(e && cge_engine_get_stats(e, &st) == CGE_OK);
    uint64_t runs = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) runs += st.slots[s].requests;
    CHECK_MSG(st.redis_corrupt >= 12 && st.redis_hits == 0 && runs > 0,
              "corrupt %llu hits %llu runs %llu", (unsigned long long)st.redis_corrupt,
              (unsigned long long)st.redis_hits, (unsigned long long)runs);
    for (int i = 0; i < F.n; i++) {
        ef_check_result(F.rows[i].expected, "engine after corrupt values", i, &res[i]);
        cge_result_deinit(&res[i]);
    }
    cge_engine_close(e);
    /* every value overwritten: good again (the command ran from another folder: same keys) */
    int good = 0;
    for (size_t i = 0; keys && keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++) {
        redisReply *r = redisCommand(c, "GET %b", keys->element[i]->str, keys->element[i]->len);
        size_t pl = 0;
        good += r && r->type == REDIS_REPLY_STRING && cge__redis_unframe(r->str, r->len, &pl);
        if (r) freeReplyObject(r);
    }
    CHECK_MSG(good == garbled, "%d of %d values overwritten", good, garbled);
    CHECK((long long)garbled == cmd_int("DBSIZE") - 1); /* and no new keys beside t:a */
    if (keys) freeReplyObject(keys);
    if (c) redisFree(c);

    /* a fresh engine, Redis named by a config file's "redis" section (with a TTL), swaps E1 (same
     * folder, a new version: a new model identity) */
    char cfg[300], abs_ens[PATH_MAX], json[PATH_MAX + 300];
    tmp(cfg, sizeof cfg, "config.json");
    CHECK(realpath(EF_ENSEMBLE, abs_ens) != NULL);
    snprintf(json, sizeof json, "{\"ensemble\": \"%s\", \"redis\": {\"url\": \"%s\", \"ttl_seconds\": 3600}}",
             abs_ens, url);
    FILE *cf = fopen(cfg, "w");
    if (cf) {
        fputs(json, cf);
        fclose(cf);
    }
    e = NULL;
    p.redis_url = NULL;
    CHECK(cge_engine_open(cfg, &p, &e) == CGE_OK);
    char e1[1100];
    snprintf(e1, sizeof e1, "%s/E1", EF_ENSEMBLE);
    uint64_t ver = 0;
    CHECK(e && cge_engine_swap(e, 0, e1, &ver) == CGE_OK && ver == 2);
    CHECK(e && cge_engine_embed(e, in, (size_t)F.n, NULL, res) == CGE_OK);
    CHECK(e && cge_engine_get_stats(e, &st) == CGE_OK);
    int n_text = 0;
    for (int i = 0; i < F.n; i++) n_text += in[i].text != NULL;
    uint64_t others = 0;
    for (int s = 1; s < CGE_N_SLOTS; s++) others += st.slots[s].requests;
    CHECK_MSG(st.slots[0].requests == (uint64_t)n_text && others == 0,
              "after the swap E1 ran %llu inputs (expected %d), the other slots %llu (expected 0)",
              (unsigned long long)st.slots[0].requests, n_text, (unsigned long long)others);
    CHECK(st.redis_hits == (uint64_t)F.n); /* the per-slot entries */
    CHECK(st.redis_puts == (uint64_t)(F.n + n_text)); /* full entries, and per-slot ones with a new E1 */
    c = client();
    keys = c ? redisCommand(c, "KEYS cge:*") : NULL;
    int with_ttl = 0;
    for (size_t i = 0; keys && keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++) {
        redisReply *r = redisCommand(c, "TTL %b", keys->element[i]->str, keys->element[i]->len);
        with_ttl += r && r->type == REDIS_REPLY_INTEGER && r->integer > 3500 && r->integer <= 3600;
        if (r) freeReplyObject(r);
    }
    CHECK_MSG(with_ttl == F.n + n_text, "%d values with the config's TTL, expected %d", with_ttl, F.n + n_text);
    if (keys) freeReplyObject(keys);
    if (c) redisFree(c);
    for (int i = 0; i < F.n; i++) {
        ef_check_result(F.rows[i].expected, "engine after a swap", i, &res[i]);
        CHECK(res[i].slots[0].state != CGE_SLOT_OK || (!res[i].slots[0].cached && res[i].slots[0].version == 2));
        CHECK(res[i].slots[1].state != CGE_SLOT_OK || res[i].slots[1].cached);
        cge_result_deinit(&res[i]);
    }
    cge_engine_close(e);
    ef_free(&F);
}

/* ==== workers =================================================================================== */

static pid_t start_worker(const char *name, const char *extra, char *errfile, size_t cap) {
    char cmd[2048];
    snprintf(errfile, cap, "%s/worker_%s.err", tmpdir, name);
    snprintf(cmd, sizeof cmd, "%s worker --ensemble ensemble --redis %s --consumer %s --stats %s", cge_bin, url,
             name, extra);
    return spawn(cmd, NULL, "/dev/null", errfile);
}

/* SIGTERM, then the exit status (bounded). */
static int stop_worker(pid_t pid) {
    kill(pid, SIGTERM);
    return wait_for(pid, 30000);
}

static long long pending_of(const char *consumer) {
    redisContext *c = client();
    if (!c) return -1;
    redisReply *r = redisCommand(c, "XPENDING cge:jobs cge-workers - + 100 %s", consumer);
    long long n = r && r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : -1;
    if (r) freeReplyObject(r);
    redisFree(c);
    return n;
}

static void test_two_workers_and_bad_jobs(void) {
    char w1e[300], w2e[300], out[300], err[300], cmd[2048];
    pid_t w1 = start_worker("w1", "--batch 4 --claim-idle-ms 2000 --max-retries 2", w1e, sizeof w1e);
    pid_t w2 = start_worker("w2", "--batch 4 --claim-idle-ms 2000 --max-retries 2", w2e, sizeof w2e);
    tmp(out, sizeof out, "submit_both.jsonl");
    tmp(err, sizeof err, "submit_both.err");
    snprintf(cmd, sizeof cmd, "%s submit --redis %s --output both --timeout 120 --stats", cge_bin, url);
    CHECK(wait_for(spawn(cmd, "inputs.jsonl", out, err), 130000) == 0);
    check_same_lines(out, ref_both, 12, "2 workers --output both vs cge embed --ensemble");
    CHECK(stat_of(err, "results") == 12 && stat_of(err, "jobs") == 12);

    /* malformed jobs: dead-lettered with a reason, answered when they can be, workers stay up */
    redisContext *c = client();
    const char *rk = "cge:reply:badjobs";
    const char *bad[][12] = {
        {"XADD", "cge:jobs", "*", "junk", "1", NULL},
        {"XADD", "cge:jobs", "*", "v", "1", "reply", rk, "idx", "zero", "output", "fused", NULL},
        {"XADD", "cge:jobs", "*", "v", "1", "reply", "elsewhere", "idx", "1", "output", "fused", NULL},
        {"XADD", "cge:jobs", "*", "v", "1", "reply", rk, "idx", "2", "output", "vectors", NULL},
        {"XADD", "cge:jobs", "*", "v", "2", "reply", rk, "idx", "3", "output", "fused", NULL},
    };
    for (int i = 0; c && i < 5; i++) {
        int n = 0;
        while (bad[i][n]) n++;
        redisReply *r = redisCommandArgv(c, n, bad[i], NULL);
        if (r) freeReplyObject(r);
    }
    /* well-formed, but an input line that is not valid: an answer, as cge embed gives it */
    redisReply *r = c ? redisCommand(c, "XADD cge:jobs * v 1 reply %s idx 4 output fused line %s", rk, "{\"text\": 5}")
                      : NULL;
    if (r) freeReplyObject(r);
    r = c ? redisCommand(c, "XADD cge:jobs * v 1 reply %s idx 5 output fused line %s", rk, "\"fine\"") : NULL;
    if (r) freeReplyObject(r);
    int64_t end = now_ms() + 20000;
    long long dead = 0, answers = 0;
    while (now_ms() < end && (dead < 5 || answers < 4)) {
        dead = cmd_int("XLEN cge:jobs:dead");
        answers = cmd_int("LLEN %s", rk);
        sleep_ms(50);
    }
    CHECK_MSG(dead == 5, "dead letters: %lld, expected 5", dead);
    CHECK_MSG(answers == 4, "answers: %lld, expected 4 (idx 2, 3, 4, 5)", answers);
    redisReply *dl = c ? redisCommand(c, "XRANGE cge:jobs:dead - +") : NULL;
    int reasons = 0;
    for (size_t i = 0; dl && dl->type == REDIS_REPLY_ARRAY && i < dl->elements; i++) {
        redisReply *kv = dl->element[i]->element[1];
        for (size_t k = 0; k + 1 < kv->elements; k += 2)
            if (!strcmp(kv->element[k]->str, "reason") && kv->element[k + 1]->len > 5) reasons++;
    }
    CHECK(reasons == 5);
    if (dl) freeReplyObject(dl);
    redisReply *ans = c ? redisCommand(c, "LRANGE %s 0 -1", rk) : NULL;
    int err_answers = 0, line_answer = 0;
    for (size_t i = 0; ans && ans->type == REDIS_REPLY_ARRAY && i < ans->elements; i++) {
        err_answers += strstr(ans->element[i]->str, "dead-lettered") != NULL;
        line_answer += !strncmp(ans->element[i]->str, "4 {\"error\": \"\\\"text\\\" must be a string\"}", 40);
        if (!strncmp(ans->element[i]->str, "5 [", 3)) line_answer++;
    }
    CHECK_MSG(err_answers == 2 && line_answer == 2, "answers: %d dead-lettered, %d lines", err_answers, line_answer);
    if (ans) freeReplyObject(ans);

    /* A job delivered too often (a poison job): made pending on a ghost consumer in the same
     * transaction as its XADD (so no worker reads it first), its delivery count set to 9; the
     * workers take it over after --claim-idle-ms and dead-letter it instead of running it. */
    redisReply *x[4] = {0};
    if (c) {
        x[0] = redisCommand(c, "MULTI");
        x[1] = redisCommand(c, "XADD cge:jobs * v 1 reply %s idx 6 output fused line %s", rk, "\"poison\"");
        x[2] = redisCommand(c, "XREADGROUP GROUP cge-workers ghost COUNT 1 STREAMS cge:jobs >");
        x[3] = redisCommand(c, "EXEC");
    }
    char gid[64] = "";
    if (x[3] && x[3]->type == REDIS_REPLY_ARRAY && x[3]->elements == 2 &&
        x[3]->element[0]->type == REDIS_REPLY_STRING)
        snprintf(gid, sizeof gid, "%s", x[3]->element[0]->str);
    for (int i = 0; i < 4; i++)
        if (x[i]) freeReplyObject(x[i]);
    CHECK(gid[0]);
    r = c && gid[0] ? redisCommand(c, "XCLAIM cge:jobs cge-workers ghost 0 %s RETRYCOUNT 9", gid) : NULL;
    if (r) freeReplyObject(r);
    end = now_ms() + 20000;
    while (now_ms() < end && cmd_int("XLEN cge:jobs:dead") < 6) sleep_ms(50);
    CHECK_MSG(cmd_int("XLEN cge:jobs:dead") == 6, "the retried job was not dead-lettered");
    redisReply *last = c ? redisCommand(c, "XREVRANGE cge:jobs:dead + - COUNT 1") : NULL;
    CHECK(last && last->type == REDIS_REPLY_ARRAY && last->elements == 1);
    int why = 0;
    for (size_t k = 0; last && last->elements == 1 && k + 1 < last->element[0]->element[1]->elements; k += 2) {
        redisReply *kv = last->element[0]->element[1];
        if (!strcmp(kv->element[k]->str, "reason")) why = strstr(kv->element[k + 1]->str, "delivered 10 times") != NULL;
    }
    CHECK_MSG(why, "the poison job's reason does not say how often it was delivered");
    if (last) freeReplyObject(last);
    if (c) redisFree(c);
    CHECK(kill(w1, 0) == 0 && kill(w2, 0) == 0);
    CHECK(stop_worker(w1) == 0);
    CHECK(stop_worker(w2) == 0);
    long long jobs = stat_of(w1e, "jobs") + stat_of(w2e, "jobs");
    CHECK_MSG(jobs >= 14, "workers ran %lld jobs", jobs);
    CHECK(stat_of(w1e, "dead_lettered") + stat_of(w2e, "dead_lettered") == 6);
    /* the poison job, and any batch that took a worker longer than --claim-idle-ms */
    CHECK(stat_of(w1e, "claims") + stat_of(w2e, "claims") >= 1);
    cmd_int("DEL cge:jobs:dead %s", rk);
}

static void test_worker_killed(void) {
    char ve[300], we[300], out[300], err[300], cmd[2048];
    /* the victim holds every job it reads for 60 s: it is killed holding them */
    pid_t victim = start_worker("victim", "--batch 4 --delay-ms 60000", ve, sizeof ve);
    tmp(out, sizeof out, "submit_kill.jsonl");
    tmp(err, sizeof err, "submit_kill.err");
    snprintf(cmd, sizeof cmd, "%s submit --redis %s --timeout 150 --stats", cge_bin, url);
    pid_t sub = spawn(cmd, "inputs.jsonl", out, err);
    int64_t end = now_ms() + 90000;
    while (now_ms() < end && pending_of("victim") < 4) sleep_ms(50);
    CHECK_MSG(pending_of("victim") == 4, "the victim holds %lld jobs", pending_of("victim"));
    kill(victim, SIGKILL);
    CHECK(wait_for(victim, 10000) == 128 + SIGKILL);
    /* the survivor also pauses a little per batch: the restart test below runs mid-job */
    pid_t w = start_worker("survivor", "--batch 2 --claim-idle-ms 300 --delay-ms 200", we, sizeof we);
    CHECK(wait_for(sub, 160000) == 0);
    CHECK_MSG(file_lines(out) == 12, "submit printed %d lines", file_lines(out));
    check_same_lines(out, ref_fused, 12, "after a worker was killed");
    CHECK(stat_of(err, "results") == 12);

    /* Redis restarted (no persistence: the stream and unread results are lost) mid-job */
    tmp(out, sizeof out, "submit_restart.jsonl");
    tmp(err, sizeof err, "submit_restart.err");
    sub = spawn(cmd, "inputs.jsonl", out, err);
    end = now_ms() + 60000;
    while (now_ms() < end && pending_of("survivor") <= 0) sleep_ms(10);
    CHECK_MSG(pending_of("survivor") > 0, "the survivor took no job");
    stop_redis();
    sleep_ms(300);
    CHECK(start_redis() == 0);
    CHECK(wait_for(sub, 160000) == 0);
    CHECK_MSG(file_lines(out) == 12, "submit printed %d lines", file_lines(out));
    check_same_lines(out, ref_fused, 12, "across a Redis restart");
    CHECK_MSG(stat_of(err, "resubmits") >= 1, "the submitter did not enqueue again");
    CHECK(stop_worker(w) == 0);
    CHECK_MSG(stat_of(we, "claims") >= 4, "the survivor took over %lld jobs", stat_of(we, "claims"));
    CHECK_MSG(stat_of(we, "reconnects") >= 1, "the survivor did not reconnect");
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN(test_urls);
    RUN(test_framing);
    RUN(test_config);
    RUN(test_silent_server);
    CHECK_MSG(find_cge(), "the cge command is not built next to the tests");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cge-test-redis-XXXXXX");
    if (!mkdtemp(tmpdir)) tmpdir[0] = '\0';
    CHECK(tmpdir[0]);
    int have_server = system("command -v redis-server > /dev/null 2>&1") == 0;
    CHECK_MSG(have_server, "redis-server is not installed (scripts/deps.sh installs it)");
    if (have_server && tmpdir[0] && cge_bin[0]) {
        int up = start_redis() == 0;
        CHECK_MSG(up, "redis-server did not start (see its log in %s)", tmpdir);
        if (up) {
            RUN(test_tier);
            RUN(test_embed_shared);
            RUN(test_engine_corrupt_and_swap);
            RUN(test_two_workers_and_bad_jobs);
            RUN(test_worker_killed);
        }
    }
    cleanup();
    return test_report("test_net_redis");
}
