/*
 * redis.c: the Redis connection (URL, deadlines, reconnect with backoff) and the shared cache
 * tier (framed values in a pool of connections). See redis.h for the contract.
 *
 * Key design decision: hiredis's blocking API with a socket timeout reset before every call to
 * the time left of that call's deadline. A call that fails for any transport reason frees the
 * context (hiredis contexts are unusable after an I/O error) and arms a backoff; until it has
 * passed, calls fail at once without touching the network. The cache tier shares one backoff
 * over its whole pool, so a dead server costs the engine one timeout per backoff period, not one
 * per connection or per input.
 *
 * hiredis writes with write(2): a server that went away raises SIGPIPE, which would kill a host
 * program that did not ignore it. Each call blocks SIGPIPE on its thread and swallows one it
 * caused (the curl way), so the library never changes the process's signal dispositions.
 */
#include "net/redis.h"

#include "core/core.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <xxhash.h>

/* ==== URLs ====================================================================================== */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Copies s[0..n) into out (cap) undoing %XX escapes; 0 when it does not fit or is malformed. */
static int unescape(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) return 0;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return 0;
            c = h * 16 + l;
            i += 2;
        }
        if (o + 1 >= cap) return 0;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 1;
}

enum cge_status cge__redis_url_parse(const char *url, struct cge__redis_url *out) {
    if (!url || !out) return cge__err(CGE_ERR_INVALID_VALUE, "redis URL: NULL");
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p = url;
    if (!strncmp(p, "rediss://", 9))
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "redis URL %.200s: rediss:// (TLS) is not supported by this build's "
                        "hiredis (0.14, no TLS); use redis:// over a trusted network or a tunnel",
                        url);
    if (strncmp(p, "redis://", 8) != 0)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "redis URL %.200s: expected redis://[user:pass@]host[:port][/db]", url);
    p += 8;
    const char *end = p + strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@') at = q; /* the last '@': a password may hold one unescaped */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (!unescape(p, ul, out->user, sizeof out->user))
            return cge__err(CGE_ERR_INVALID_VALUE, "redis URL: bad or too long user name");
        if (colon && !unescape(colon + 1, (size_t)(at - colon - 1), out->pass, sizeof out->pass))
            return cge__err(CGE_ERR_INVALID_VALUE, "redis URL: bad or too long password");
        if (!colon) { /* redis://secret@host: a lone word is a password (redis-cli reads it so) */
            memcpy(out->pass, out->user, sizeof out->pass < sizeof out->user ? sizeof out->pass
                                                                            : sizeof out->user);
            out->user[0] = '\0';
        }
        p = at + 1;
    }
    const char *hs = p, *he;
    const char *portp = NULL;
    if (*p == '[') {
        he = memchr(p, ']', (size_t)(end - p));
        if (!he) return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: unclosed [", url);
        hs = p + 1;
        if (he + 1 < end) {
            if (he[1] != ':') return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: bad port", url);
            portp = he + 2;
        }
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he) portp = he + 1;
        else he = end;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0) return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: no host", url);
    if (hl >= sizeof out->host) return cge__err(CGE_ERR_INVALID_VALUE, "redis URL: host too long");
    memcpy(out->host, hs, hl);
    out->host[hl] = '\0';
    if (portp) {
        long v = 0;
        const char *q = portp;
        if (q == end) return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: empty port", url);
        for (; q < end; q++) {
            if (!isdigit((unsigned char)*q) || v > 65535)
                return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: bad port", url);
            v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > 65535) return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: bad port", url);
        out->port = (int)v;
    }
    if (*end == '/' && end[1]) {
        long v = 0;
        const char *q = end + 1;
        for (; *q; q++) {
            if (!isdigit((unsigned char)*q) || v > 100000)
                return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: bad database number", url);
            v = v * 10 + (*q - '0');
        }
        out->db = (int)v;
    } else if (*end && !(*end == '/' && !end[1])) {
        return cge__err(CGE_ERR_INVALID_VALUE, "redis URL %.200s: unexpected '%c'", url, *end);
    }
    return CGE_OK;
}

/* ==== one connection ============================================================================ */

struct cge__redis {
    struct cge__redis_url url;
    struct cge__redis_params p;
    redisContext *c;          /* NULL: not connected */
    int64_t retry_at_us;      /* no attempt before this (backoff after a failure) */
    int64_t backoff_ms;       /* the next wait */
    uint64_t connects;
    int warned;               /* a "went away" warning was logged since the last connect */
    char run_id[48];
};

struct cge__redis_params cge__redis_default_params(void) {
    struct cge__redis_params p = {.timeout_ms = 1000, .backoff_min_ms = 100, .backoff_max_ms = 5000};
    return p;
}

enum cge_status cge__redis_open(const char *url, const struct cge__redis_params *p,
                                struct cge__redis **out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge__redis_open: out is NULL");
    *out = NULL;
    struct cge__redis_url u;
    enum cge_status st = cge__redis_url_parse(url, &u);
    if (st) return st;
    struct cge__redis *r = cge__calloc(1, sizeof *r);
    if (!r) return cge__err(CGE_ERR_NOMEM, "redis connection");
    r->url = u;
    r->p = p ? *p : cge__redis_default_params();
    if (r->p.timeout_ms <= 0) r->p.timeout_ms = 1000;
    if (r->p.backoff_min_ms <= 0) r->p.backoff_min_ms = 100;
    if (r->p.backoff_max_ms < r->p.backoff_min_ms) r->p.backoff_max_ms = r->p.backoff_min_ms;
    r->backoff_ms = r->p.backoff_min_ms;
    *out = r;
    return CGE_OK;
}

void cge__redis_close(struct cge__redis *r) {
    if (!r) return;
    if (r->c) redisFree(r->c);
    cge__free(r);
}

int cge__redis_connected(const struct cge__redis *r) {
    return r && r->c;
}

uint64_t cge__redis_reconnects(const struct cge__redis *r) {
    return r && r->connects ? r->connects - 1 : 0;
}

const char *cge__redis_run_id(const struct cge__redis *r) {
    return r ? r->run_id : "";
}

static struct timeval tv_of_us(int64_t us) {
    if (us < 1000) us = 1000; /* hiredis treats a zero timeout as "none" */
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000), .tv_usec = (suseconds_t)(us % 1000000)};
    return tv;
}

/* Drops the connection after a failure and arms the backoff. */
static void drop(struct cge__redis *r, const char *why) {
    if (!r->warned && !r->p.quiet)
        cge__log(CGE_LOG_WARN, "redis %s:%d: %s; retrying in %lld ms (calls skip Redis meanwhile)",
                 r->url.host, r->url.port, why, (long long)r->backoff_ms);
    r->warned = 1;
    if (r->c) redisFree(r->c);
    r->c = NULL;
    r->retry_at_us = cge__now_us() + r->backoff_ms * 1000;
    r->backoff_ms *= 2;
    if (r->backoff_ms > r->p.backoff_max_ms) r->backoff_ms = r->p.backoff_max_ms;
}

/* A command on a context just made (AUTH, SELECT, INFO); 0 on success. */
static int setup_cmd(redisContext *c, char *err, size_t cap, int argc, const char **argv,
                     redisReply **keep) {
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    if (!rep) {
        snprintf(err, cap, "%s: %s", argv[0], c->errstr[0] ? c->errstr : "no reply");
        return -1;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, cap, "%s: %.200s", argv[0], rep->str);
        freeReplyObject(rep);
        return -1;
    }
    if (keep) *keep = rep;
    else freeReplyObject(rep);
    return 0;
}

/* Connects when needed, within the deadline. 0 when connected. */
static int ensure(struct cge__redis *r, int64_t deadline_us) {
    if (r->c) return 0;
    int64_t now = cge__now_us();
    if (now < r->retry_at_us) {
        cge__err(CGE_ERR_IO, "redis %s:%d: unavailable (next attempt in %lld ms)", r->url.host,
                 r->url.port, (long long)((r->retry_at_us - now) / 1000));
        return -1;
    }
    char err[300] = "";
    redisContext *c = redisConnectWithTimeout(r->url.host, r->url.port, tv_of_us(deadline_us - now));
    if (!c || c->err) {
        snprintf(err, sizeof err, "connect: %s", c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        drop(r, err);
        cge__err(CGE_ERR_IO, "redis %s:%d: %s", r->url.host, r->url.port, err);
        return -1;
    }
    redisSetTimeout(c, tv_of_us(deadline_us - cge__now_us()));
    int bad = 0;
    if (r->url.pass[0]) {
        const char *a[3] = {"AUTH", r->url.user[0] ? r->url.user : r->url.pass, r->url.pass};
        bad = setup_cmd(c, err, sizeof err, r->url.user[0] ? 3 : 2, a, NULL);
    }
    if (!bad && r->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->url.db);
        const char *a[2] = {"SELECT", db};
        bad = setup_cmd(c, err, sizeof err, 2, a, NULL);
    }
    redisReply *info = NULL;
    if (!bad) {
        const char *a[2] = {"INFO", "server"};
        bad = setup_cmd(c, err, sizeof err, 2, a, &info);
    }
    if (bad) {
        redisFree(c);
        drop(r, err);
        cge__err(CGE_ERR_IO, "redis %s:%d: %s", r->url.host, r->url.port, err);
        return -1;
    }
    r->run_id[0] = '\0';
    const char *rid = info->type == REDIS_REPLY_STRING ? strstr(info->str, "run_id:") : NULL;
    if (rid) {
        rid += 7;
        size_t n = strcspn(rid, "\r\n");
        if (n >= sizeof r->run_id) n = sizeof r->run_id - 1;
        memcpy(r->run_id, rid, n);
        r->run_id[n] = '\0';
    }
    freeReplyObject(info);
    if (r->warned && !r->p.quiet) cge__log(CGE_LOG_INFO, "redis %s:%d: connected again", r->url.host, r->url.port);
    /* Keep the reply buffer between calls: by default hiredis frees it after each reply larger
     * than 16 KiB, and growing it again for every 59 KB cache value (16, 32, 64, 128 KiB) costs
     * brk() calls and fresh page faults each time: 10x the latency of the GET itself. */
    c->reader->maxbuf = 0;
    r->c = c;
    r->warned = 0;
    r->connects++;
    r->backoff_ms = r->p.backoff_min_ms;
    return 0;
}

/* SIGPIPE guard: blocked on this thread during a call; one the call raised is consumed. */
struct pipe_guard {
    sigset_t old;
    int was_pending;
};

static void guard_begin(struct pipe_guard *g) {
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void guard_end(struct pipe_guard *g) {
    if (!g->was_pending) {
        sigset_t set, pend;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigpending(&pend);
        if (sigismember(&pend, SIGPIPE)) {
            struct timespec zero = {0, 0};
            while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
            }
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static int64_t deadline_of(const struct cge__redis *r, int64_t timeout_ms) {
    return cge__now_us() + (timeout_ms > 0 ? timeout_ms : r->p.timeout_ms) * 1000;
}

enum cge_status cge__redis_pipeline(struct cge__redis *r, int64_t timeout_ms, int n,
                                    const int *argcs, const char *const *const *argvs,
                                    const size_t *const *lens, redisReply **replies) {
    for (int i = 0; i < n; i++) replies[i] = NULL;
    if (!r || n <= 0) return cge__err(CGE_ERR_INVALID_VALUE, "redis pipeline: bad arguments");
    int64_t deadline = deadline_of(r, timeout_ms);
    struct pipe_guard g;
    guard_begin(&g);
    enum cge_status st = CGE_OK;
    if (ensure(r, deadline)) {
        st = CGE_ERR_IO;
        goto out;
    }
    redisSetTimeout(r->c, tv_of_us(deadline - cge__now_us()));
    for (int i = 0; i < n; i++) {
        if (redisAppendCommandArgv(r->c, argcs[i], (const char **)argvs[i], lens ? lens[i] : NULL) !=
            REDIS_OK) {
            st = cge__err(CGE_ERR_NOMEM, "redis: cannot format a command");
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        void *rep = NULL;
        int64_t left = deadline - cge__now_us();
        if (left <= 0 || redisSetTimeout(r->c, tv_of_us(left)) != REDIS_OK ||
            redisGetReply(r->c, &rep) != REDIS_OK || !rep) {
            char why[200];
            snprintf(why, sizeof why, "%s", left <= 0 ? "timed out" : r->c->errstr[0] ? r->c->errstr : "no reply");
            if (strstr(why, "Resource temporarily unavailable")) snprintf(why, sizeof why, "timed out");
            if (rep) freeReplyObject(rep);
            for (int j = 0; j < i; j++) {
                freeReplyObject(replies[j]);
                replies[j] = NULL;
            }
            st = cge__err(CGE_ERR_IO, "redis %s:%d: %s", r->url.host, r->url.port, why);
            drop(r, why);
            goto out;
        }
        replies[i] = rep;
    }
out:
    guard_end(&g);
    return st;
}

redisReply *cge__redis_cmd(struct cge__redis *r, int64_t timeout_ms, int argc, const char **argv,
                           const size_t *lens) {
    redisReply *rep = NULL;
    const char *const *av = argv;
    if (cge__redis_pipeline(r, timeout_ms, 1, &argc, &av, lens ? &lens : NULL, &rep)) return NULL;
    return rep;
}

redisReply *cge__redis_cmdf(struct cge__redis *r, int64_t timeout_ms, const char *fmt, ...) {
    if (!r) return NULL;
    int64_t deadline = deadline_of(r, timeout_ms);
    struct pipe_guard g;
    guard_begin(&g);
    redisReply *rep = NULL;
    if (!ensure(r, deadline)) {
        redisSetTimeout(r->c, tv_of_us(deadline - cge__now_us()));
        va_list ap;
        va_start(ap, fmt);
        rep = redisvCommand(r->c, fmt, ap);
        va_end(ap);
        if (!rep) {
            char why[200];
            snprintf(why, sizeof why, "%s", r->c->errstr[0] ? r->c->errstr : "no reply");
            if (strstr(why, "Resource temporarily unavailable")) snprintf(why, sizeof why, "timed out");
            cge__err(CGE_ERR_IO, "redis %s:%d: %s", r->url.host, r->url.port, why);
            drop(r, why);
        }
    }
    guard_end(&g);
    return rep;
}

/* ==== framing =================================================================================== */

#define FRAME_SEED 0x43475231u /* "CGR1" */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void cge__redis_frame(const void *payload, size_t len, unsigned char *out) {
    memcpy(out, "CGR1", 4);
    put_u32(out + 4, (uint32_t)len);
    put_u64(out + 8, XXH64(payload, len, FRAME_SEED));
    if (len) memcpy(out + CGE__REDIS_FRAME_HDR, payload, len);
}

const void *cge__redis_unframe(const void *value, size_t value_len, size_t *payload_len) {
    const unsigned char *v = value;
    if (!v || value_len < CGE__REDIS_FRAME_HDR || memcmp(v, "CGR1", 4) != 0) return NULL;
    uint32_t len = 0;
    for (int i = 0; i < 4; i++) len |= (uint32_t)v[4 + i] << (8 * i);
    if ((size_t)len != value_len - CGE__REDIS_FRAME_HDR) return NULL;
    if (XXH64(v + CGE__REDIS_FRAME_HDR, len, FRAME_SEED) != get_u64(v + 8)) return NULL;
    *payload_len = len;
    return v + CGE__REDIS_FRAME_HDR;
}

/* ==== the cache tier ============================================================================ */

#define POOL_MAX 32

struct cge__redis_cache {
    struct cge__redis_cache_params p;
    char url[1024];
    pthread_mutex_t mu;                /* guards the pool and the backoff */
    struct cge__redis *pool[POOL_MAX]; /* idle connections */
    int n_idle, n_made;
    int64_t retry_at_us; /* shared backoff: no call before this */
    int64_t backoff_ms;
    int warned;
    atomic_ullong hits, misses, corrupt, errors, puts;
};

struct cge__redis_cache_params cge__redis_cache_default_params(void) {
    struct cge__redis_cache_params p = {.timeout_ms = 200, .ttl_seconds = 0, .max_conns = 8};
    return p;
}

enum cge_status cge__redis_cache_open(const char *url, const struct cge__redis_cache_params *p,
                                      struct cge__redis_cache **out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge__redis_cache_open: out is NULL");
    *out = NULL;
    struct cge__redis_url u;
    enum cge_status st = cge__redis_url_parse(url, &u);
    if (st) return st;
    if (strlen(url) >= sizeof((struct cge__redis_cache *)0)->url)
        return cge__err(CGE_ERR_INVALID_VALUE, "redis URL too long");
    struct cge__redis_cache *c = cge__calloc(1, sizeof *c);
    if (!c) return cge__err(CGE_ERR_NOMEM, "redis cache");
    c->p = p ? *p : cge__redis_cache_default_params();
    if (c->p.timeout_ms <= 0) c->p.timeout_ms = 200;
    if (c->p.max_conns <= 0) c->p.max_conns = 8;
    if (c->p.max_conns > POOL_MAX) c->p.max_conns = POOL_MAX;
    if (c->p.ttl_seconds < 0) c->p.ttl_seconds = 0;
    snprintf(c->url, sizeof c->url, "%s", url);
    pthread_mutex_init(&c->mu, NULL);
    c->backoff_ms = 100;
    *out = c;
    return CGE_OK;
}

void cge__redis_cache_close(struct cge__redis_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->n_idle; i++) cge__redis_close(c->pool[i]);
    pthread_mutex_destroy(&c->mu);
    cge__free(c);
}

/* An idle connection, a new one, or NULL (in backoff, or every connection busy). */
static struct cge__redis *cache_take(struct cge__redis_cache *c) {
    struct cge__redis *r = NULL;
    pthread_mutex_lock(&c->mu);
    if (cge__now_us() < c->retry_at_us) {
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    if (c->n_idle) {
        r = c->pool[--c->n_idle];
    } else if (c->n_made < c->p.max_conns) {
        struct cge__redis_params rp = cge__redis_default_params();
        rp.timeout_ms = c->p.timeout_ms;
        rp.backoff_min_ms = 1; /* the pool keeps the backoff and logs */
        rp.quiet = 1;
        if (cge__redis_open(c->url, &rp, &r) == CGE_OK) c->n_made++;
        else cge__err_clear();
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* Returns a connection after a call; failed: arm the shared backoff. */
static void cache_give(struct cge__redis_cache *c, struct cge__redis *r, int failed) {
    pthread_mutex_lock(&c->mu);
    if (failed) {
        if (!c->warned)
            cge__log(CGE_LOG_WARN, "redis cache: %s; going on without it for %lld ms", cge_errmsg(),
                     (long long)c->backoff_ms);
        c->warned = 1;
        c->retry_at_us = cge__now_us() + c->backoff_ms * 1000;
        c->backoff_ms = c->backoff_ms * 2 > 5000 ? 5000 : c->backoff_ms * 2;
    } else if (c->warned) {
        cge__log(CGE_LOG_INFO, "redis cache: reachable again");
        c->warned = 0;
        c->backoff_ms = 100;
    }
    c->pool[c->n_idle++] = r;
    pthread_mutex_unlock(&c->mu);
}

int cge__redis_cache_get(struct cge__redis_cache *c, const void *key, size_t key_len, void **payload,
                         size_t *len) {
    *payload = NULL;
    *len = 0;
    if (!c) return 0;
    struct cge__redis *r = cache_take(c);
    if (!r) {
        atomic_fetch_add(&c->errors, 1);
        atomic_fetch_add(&c->misses, 1);
        return 0;
    }
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, key_len};
    redisReply *rep = cge__redis_cmd(r, 0, 2, argv, lens);
    cache_give(c, r, rep == NULL);
    int hit = 0;
    if (!rep) {
        atomic_fetch_add(&c->errors, 1);
        cge__err_clear();
    } else if (rep->type == REDIS_REPLY_STRING) {
        size_t pl = 0;
        const void *p = cge__redis_unframe(rep->str, rep->len, &pl);
        if (!p) {
            atomic_fetch_add(&c->corrupt, 1);
        } else {
            *payload = cge__malloc(pl ? pl : 1);
            if (*payload) {
                memcpy(*payload, p, pl);
                *len = pl;
                hit = 1;
            }
        }
    }
    if (rep) freeReplyObject(rep);
    atomic_fetch_add(hit ? &c->hits : &c->misses, 1);
    return hit;
}

enum cge_status cge__redis_cache_put(struct cge__redis_cache *c, const void *key, size_t key_len,
                                     const void *payload, size_t len) {
    if (!c) return cge__err(CGE_ERR_CACHE, "redis cache: none");
    if (len > 0x7fffffffu) return cge__err(CGE_ERR_CACHE, "redis cache: value too large");
    unsigned char *v = cge__malloc(CGE__REDIS_FRAME_HDR + len);
    if (!v) return cge__err(CGE_ERR_NOMEM, "redis cache: value of %zu bytes", len);
    cge__redis_frame(payload, len, v);
    struct cge__redis *r = cache_take(c);
    if (!r) {
        cge__free(v);
        atomic_fetch_add(&c->errors, 1);
        return cge__err(CGE_ERR_CACHE, "redis cache: unavailable");
    }
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", (long long)c->p.ttl_seconds);
    const char *argv[5] = {"SET", key, (const char *)v, "EX", ttl};
    size_t lens[5] = {3, key_len, CGE__REDIS_FRAME_HDR + len, 2, strlen(ttl)};
    redisReply *rep = cge__redis_cmd(r, 0, c->p.ttl_seconds > 0 ? 5 : 3, argv, lens);
    cache_give(c, r, rep == NULL);
    cge__free(v);
    enum cge_status st = CGE_OK;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&c->errors, 1);
        st = cge__err(CGE_ERR_CACHE, "redis cache: SET failed: %.200s",
                      rep ? rep->str : cge_errmsg());
    } else {
        atomic_fetch_add(&c->puts, 1);
    }
    if (rep) freeReplyObject(rep);
    return st;
}

void cge__redis_cache_get_stats(struct cge__redis_cache *c, struct cge__redis_cache_stats *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->corrupt = atomic_load(&c->corrupt);
    out->errors = atomic_load(&c->errors);
    out->puts = atomic_load(&c->puts);
}
