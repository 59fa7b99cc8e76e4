/*
 * redis.h: Redis for cge: a connection that reconnects by itself (cge__redis), and on top of it
 * the shared cache tier (cge__redis_cache): opaque values by key, framed with a small header and
 * a checksum, with an optional TTL.
 *
 * Key design decision: Redis is an accelerator, never a dependency of an answer. Every call has
 * a deadline (the connection's timeout, connect included); a failed call drops the connection
 * and the next attempts fail at once until a backoff (doubling, capped) has passed, so a dead or
 * slow Redis costs a caller at most one timeout per backoff period, never a hang.
 *
 * Thread safety: a cge__redis must not be used by two threads at once (give each its own). A
 * cge__redis_cache may be used by any number of threads: it keeps a small pool of connections
 * and answers "miss" rather than wait when every one is busy.
 */
#ifndef CGE_NET_REDIS_H
#define CGE_NET_REDIS_H

#include "cge.h"

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

/* ==== URLs ======================================================================================
 * redis://[user[:password]@]host[:port][/db] (user and password may be %XX-escaped; an empty
 * user, "redis://:pw@host", is the legacy AUTH password form); rediss:// is refused here
 * (CGE_ERR_UNSUPPORTED): Debian's hiredis 0.14 has no TLS. Host may be [v6 address]. */
struct cge__redis_url {
    char host[256];
    int port;       /* 6379 when not given */
    char user[128]; /* "" = none */
    char pass[256]; /* "" = no AUTH */
    int db;         /* 0 when not given */
};
enum cge_status cge__redis_url_parse(const char *url, struct cge__redis_url *out);

/* ==== One connection ============================================================================ */
struct cge__redis_params {
    int64_t timeout_ms;     /* per call, connect included (default 1000) */
    int64_t backoff_min_ms; /* first wait after a failure (default 100) */
    int64_t backoff_max_ms; /* cap of the doubling wait (default 5000) */
    int quiet;              /* 1: no log lines (the owner logs); default 0 */
};
struct cge__redis_params cge__redis_default_params(void);

struct cge__redis;

/* Parses the URL and prepares the connection; does not connect (the first call does), so an
 * unreachable server is not an error here. CGE_ERR_INVALID_VALUE / _UNSUPPORTED for a bad URL.
 * p NULL = defaults. */
enum cge_status cge__redis_open(const char *url, const struct cge__redis_params *p,
                                struct cge__redis **out);
void cge__redis_close(struct cge__redis *r);

/* Runs one command (binary-safe arguments; lens NULL: NUL-terminated strings) with a deadline of
 * timeout_ms (0: the connection's). Returns the reply (free with freeReplyObject; a Redis error
 * reply is returned as such, type REDIS_REPLY_ERROR), or NULL when the server could not be
 * reached or did not answer in time (cge_errmsg() says why; the connection is dropped and the
 * next call waits for the backoff). */
redisReply *cge__redis_cmd(struct cge__redis *r, int64_t timeout_ms, int argc, const char **argv,
                           const size_t *lens);
/* The same for n commands sent at once (a pipeline): replies[0..n) get the replies. CGE_OK when
 * every reply was read (some may be error replies); otherwise every reply is NULL. */
enum cge_status cge__redis_pipeline(struct cge__redis *r, int64_t timeout_ms, int n,
                                    const int *argcs, const char *const *const *argvs,
                                    const size_t *const *lens, redisReply **replies);
/* A printf-style command (hiredis's format: %s, %b with a length, %d, %lld). */
redisReply *cge__redis_cmdf(struct cge__redis *r, int64_t timeout_ms, const char *fmt, ...);

/* 1 while connected. */
int cge__redis_connected(const struct cge__redis *r);
/* Connections made after the first (a counter that grows when the server went away). */
uint64_t cge__redis_reconnects(const struct cge__redis *r);
/* The server's run_id (changes when the server restarts), "" when unknown. Refreshed at every
 * (re)connection. */
const char *cge__redis_run_id(const struct cge__redis *r);

/* ==== The cache tier ============================================================================
 * A value is stored as a 16-byte header (magic "CGR1", payload length, XXH64 of the payload)
 * and the payload. A value whose header or checksum does not match is a miss (counted as
 * corrupt) and the caller's next put overwrites it. Keys are taken as given (binary-safe). */
struct cge__redis_cache_params {
    int64_t timeout_ms;  /* per call (default 200: a cache must be cheaper than a recompute) */
    int64_t ttl_seconds; /* 0: entries never expire (Redis's own eviction policy still applies) */
    int max_conns;       /* connections in the pool (default 8) */
};
struct cge__redis_cache_params cge__redis_cache_default_params(void);

struct cge__redis_cache_stats {
    uint64_t hits, misses; /* gets that found a good value / did not (absent, corrupt, error) */
    uint64_t corrupt;      /* values found with a bad header or checksum */
    uint64_t errors;       /* calls that failed (unreachable, timeout, busy pool) */
    uint64_t puts;         /* values stored */
};

struct cge__redis_cache;
enum cge_status cge__redis_cache_open(const char *url, const struct cge__redis_cache_params *p,
                                      struct cge__redis_cache **out);
void cge__redis_cache_close(struct cge__redis_cache *c);
/* 1 on a hit: *payload (cge__free it) holds *len bytes. 0 otherwise (never an error: a cache
 * that cannot answer is a miss). */
int cge__redis_cache_get(struct cge__redis_cache *c, const void *key, size_t key_len,
                         void **payload, size_t *len);
/* Stores payload under key (with the TTL). CGE_ERR_CACHE when it could not be stored. */
enum cge_status cge__redis_cache_put(struct cge__redis_cache *c, const void *key, size_t key_len,
                                     const void *payload, size_t len);
void cge__redis_cache_get_stats(struct cge__redis_cache *c, struct cge__redis_cache_stats *out);

/* The framing alone (tests, and callers that store values themselves): frame writes
 * 16 + len bytes into out; unframe returns the payload inside a value, or NULL when the value is
 * not a good frame. */
#define CGE__REDIS_FRAME_HDR 16
void cge__redis_frame(const void *payload, size_t len, unsigned char *out);
const void *cge__redis_unframe(const void *value, size_t value_len, size_t *payload_len);

#endif
