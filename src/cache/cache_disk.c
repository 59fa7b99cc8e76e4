/*
 * cache_disk.c: the disk tier: one LMDB file, written behind by a background thread.
 *
 * Key decision: crash safety is LMDB's copy-on-write B-tree plus one transaction per batch. A
 * transaction becomes visible only when its meta page is written, after all its pages, so a
 * process killed at any moment leaves the last committed batch intact; what the file holds is
 * then double-checked where LMDB cannot: cache_lmdbcheck.c walks the structure before LMDB maps
 * the file, and every record carries its key and an XXH3 checksum (cache_record.c), verified on
 * every read. Anything that fails is reported and the file moved aside: the cache may forget,
 * never return a wrong vector.
 *
 * Layout, three named DBs in the file (MDB_NOSUBDIR: PATH and PATH-lock):
 *   meta: "header" -> the header record (format, dimensions, ensemble version, checksum)
 *   ent:  key (h1, h2, content_len; 24 bytes LE) -> record
 *   age:  big-endian write sequence + key (32 bytes) -> "" ; the oldest entry is the first key,
 *         which is what the size bound evicts and what warm start skips (newest loaded first).
 * The size bound: the map size is the hard limit (the file cannot grow past it); after each batch,
 * when the live pages pass 80 % of it, the oldest entries are deleted down to 60 %, and a batch
 * that still hits MDB_MAP_FULL triggers the same eviction and one retry.
 */
#include "cache/cache_internal.h"
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct qitem {
    struct qitem *next;
    struct cge_cache_key key;
    unsigned char *rec; /* NULL: delete */
    size_t len;
};

struct cge__disk {
    MDB_env *env;
    MDB_dbi dbi_meta, dbi_ent, dbi_age;
    char *path;
    int64_t (*clock)(void *);
    void *clock_user;
    char ensemble_version[257];
    uint64_t max_bytes;
    int durable;
    int interval_ms;
    size_t batch;
    size_t qmax; /* the queue's bound: put waits beyond it */

    pthread_t thr;
    int thr_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* flusher: work or stop */
    pthread_cond_t cv_done; /* putters and flush(): progress */
    struct qitem *head, *tail;
    size_t qn;
    uint64_t n_enq, n_done;
    int stop, urgent;
    atomic_uint_fast64_t seq;

    /* counters, under mu */
    uint64_t disk_entries, disk_bytes, writes, evictions, errors;
};

/* ==== Helpers ================================================================================= */

static void key_bytes(const struct cge_cache_key *k, unsigned char b[24]) {
    uint64_t v[3] = {k->h1, k->h2, k->content_len};
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 8; i++) b[8 * j + i] = (unsigned char)(v[j] >> (8 * i));
}

static void age_bytes(uint64_t seq, const unsigned char kb[24], unsigned char b[32]) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(seq >> (56 - 8 * i));
    memcpy(b + 8, kb, 24);
}

static uint64_t age_seq(const unsigned char *b) {
    uint64_t s = 0;
    for (int i = 0; i < 8; i++) s = s << 8 | b[i];
    return s;
}

static int is_corruption(int rc) {
    return rc == MDB_CORRUPTED || rc == MDB_INVALID || rc == MDB_PAGE_NOTFOUND ||
           rc == MDB_VERSION_MISMATCH || rc == MDB_INCOMPATIBLE || rc == MDB_BAD_DBI;
}

/* 1 when another process holds LMDB's lock on PATH-lock (it has the file open). Locks held by
 * this process do not conflict with F_GETLK, so this only sees other processes. */
static int other_process_has_it(const char *path) {
    char lock[4096];
    if (snprintf(lock, sizeof lock, "%s-lock", path) >= (int)sizeof lock) return 0;
    int fd = open(lock, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    int held = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    close(fd);
    return held;
}

/* Live bytes of the ent and age DBs (pages in use). */
static void refresh_counts(struct cge__disk *d, MDB_txn *txn) {
    MDB_stat se, sa;
    if (mdb_stat(txn, d->dbi_ent, &se) != 0 || mdb_stat(txn, d->dbi_age, &sa) != 0) return;
    uint64_t pages = se.ms_branch_pages + se.ms_leaf_pages + se.ms_overflow_pages +
                     sa.ms_branch_pages + sa.ms_leaf_pages + sa.ms_overflow_pages;
    pthread_mutex_lock(&d->mu);
    d->disk_entries = se.ms_entries;
    d->disk_bytes = pages * se.ms_psize;
    pthread_mutex_unlock(&d->mu);
}

/* ==== Opening ================================================================================= */

/* Opens the environment and checks/writes the header. Returns 0 on success, 1 when the file is
 * corrupt (why filled, env closed), -1 on another error (cge__err set, env closed). */
static int open_env(struct cge__disk *d, char *why, size_t why_len) {
    int rc;
    MDB_txn *txn = NULL;
    d->env = NULL;
    if ((rc = mdb_env_create(&d->env)) != 0) {
        cge__err(CGE_ERR_CACHE, "%s: mdb_env_create: %s", d->path, mdb_strerror(rc));
        return -1;
    }
    mdb_env_set_maxdbs(d->env, 4);
    mdb_env_set_maxreaders(d->env, 512);
    mdb_env_set_mapsize(d->env, (size_t)d->max_bytes);
    /* Read-ahead stays on: warm start reads the file from end to end, and a cold start after a
     * reboot is where it matters; the file is bounded by disk_max_bytes anyway. */
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | (d->durable ? 0 : MDB_NOSYNC);
    rc = mdb_env_open(d->env, d->path, flags, 0644);
    if (rc != 0) goto fail;
    int dead = 0;
    mdb_reader_check(d->env, &dead);
    if ((rc = mdb_txn_begin(d->env, NULL, 0, &txn)) != 0) goto fail;
    if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &d->dbi_meta)) != 0) goto fail;
    if ((rc = mdb_dbi_open(txn, "ent", MDB_CREATE, &d->dbi_ent)) != 0) goto fail;
    if ((rc = mdb_dbi_open(txn, "age", MDB_CREATE, &d->dbi_age)) != 0) goto fail;

    struct cge__hdr want, have;
    cge__hdr_current(&want, d->ensemble_version);
    MDB_val hk = {6, (void *)"header"}, hv;
    rc = mdb_get(txn, d->dbi_meta, &hk, &hv);
    int write_header = 0;
    if (rc == MDB_NOTFOUND) {
        write_header = 1;
    } else if (rc != 0) {
        goto fail;
    } else if (cge__hdr_decode(hv.mv_data, hv.mv_size, &have) != CGE_OK) {
        snprintf(why, why_len, "%s", cge_errmsg());
        rc = MDB_CORRUPTED;
        goto corrupt;
    } else if (have.format_version != want.format_version || have.fused_dim != want.fused_dim ||
               have.total_dim != want.total_dim || have.n_experts != want.n_experts ||
               have.top_k != want.top_k || strcmp(have.ensemble_version, want.ensemble_version)) {
        cge__log(CGE_LOG_WARN,
                 "cache %s: made for ensemble '%s' (format %u, dim %u/%u), this is '%s' "
                 "(format %u, dim %u/%u): its entries are ignored and dropped",
                 d->path, have.ensemble_version, have.format_version, have.fused_dim,
                 have.total_dim, want.ensemble_version, want.format_version, want.fused_dim,
                 want.total_dim);
        if ((rc = mdb_drop(txn, d->dbi_ent, 0)) != 0) goto fail;
        if ((rc = mdb_drop(txn, d->dbi_age, 0)) != 0) goto fail;
        write_header = 1;
    }
    if (write_header) {
        MDB_stat st;
        if ((rc = mdb_stat(txn, d->dbi_ent, &st)) != 0) goto fail;
        if (st.ms_entries) { /* records without a header: not ours to trust */
            if ((rc = mdb_drop(txn, d->dbi_ent, 0)) != 0) goto fail;
            if ((rc = mdb_drop(txn, d->dbi_age, 0)) != 0) goto fail;
        }
        unsigned char hb[CGE__HDR_MAX];
        want.created_us = d->clock(d->clock_user);
        hv.mv_size = cge__hdr_encode(hb, &want);
        hv.mv_data = hb;
        if ((rc = mdb_put(txn, d->dbi_meta, &hk, &hv, 0)) != 0) goto fail;
    }
    /* The next write sequence follows the newest age key. */
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, d->dbi_age, &cur)) != 0) goto fail;
    MDB_val ak, av;
    uint64_t next = 1;
    rc = mdb_cursor_get(cur, &ak, &av, MDB_LAST);
    if (rc == 0 && ak.mv_size == 32) next = age_seq(ak.mv_data) + 1;
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) goto fail;
    atomic_store(&d->seq, next);
    refresh_counts(d, txn);
    if ((rc = mdb_txn_commit(txn)) != 0) {
        txn = NULL;
        goto fail;
    }
    return 0;

fail:
    if (is_corruption(rc)) {
        snprintf(why, why_len, "%s", mdb_strerror(rc));
        goto corrupt;
    }
    cge__err(rc == ENOENT || rc == EACCES ? CGE_ERR_IO : CGE_ERR_CACHE, "%s: %s", d->path,
             mdb_strerror(rc));
    if (txn) mdb_txn_abort(txn);
    mdb_env_close(d->env);
    d->env = NULL;
    return -1;
corrupt:
    if (txn) mdb_txn_abort(txn);
    mdb_env_close(d->env);
    d->env = NULL;
    return 1;
}

static enum cge_status move_aside(struct cge__disk *d, const char *why) {
    char to[4200];
    enum cge_status st = cge__cache_move_aside(d->path, to, sizeof to);
    if (st != CGE_OK) return st;
    cge__log(CGE_LOG_WARN, "cache %s is corrupt (%s): moved aside to %s; starting empty", d->path,
             why, to);
    return CGE_OK;
}

/* Checks the file (when no other process has it open), opens it, and moves it aside when either
 * says it is corrupt. */
static enum cge_status open_checked(struct cge__disk *d, int *moved) {
    char why[512];
    struct stat sb;
    if (stat(d->path, &sb) == 0 && sb.st_size > 0 && !other_process_has_it(d->path)) {
        struct cge__lmdb_info info;
        enum cge_status st = cge__lmdb_check(d->path, &info, why, sizeof why);
        if (st == CGE_ERR_CACHE) {
            if ((st = move_aside(d, why)) != CGE_OK) return st;
            *moved = 1;
        } else if (st != CGE_OK) {
            return st;
        }
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int r = open_env(d, why, sizeof why);
        if (r == 0) return CGE_OK;
        if (r < 0) return CGE_ERR_CACHE;
        enum cge_status st = move_aside(d, why);
        if (st != CGE_OK) return st;
        *moved = 1;
    }
    return cge__err(CGE_ERR_CACHE, "%s: still corrupt after moving it aside", d->path);
}

/* ==== Writing ================================================================================= */

/* Deletes the n oldest entries (age order) in txn. */
static int evict_oldest(struct cge__disk *d, MDB_txn *txn, uint64_t n, uint64_t *done) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, d->dbi_age, &cur);
    if (rc) return rc;
    MDB_val ak, av;
    *done = 0;
    while (*done < n && (rc = mdb_cursor_get(cur, &ak, &av, MDB_FIRST)) == 0) {
        if (ak.mv_size == 32) {
            MDB_val ek = {24, (char *)ak.mv_data + 8};
            rc = mdb_del(txn, d->dbi_ent, &ek, NULL);
            if (rc && rc != MDB_NOTFOUND) break;
        }
        if ((rc = mdb_cursor_del(cur, 0)) != 0) break;
        (*done)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Evicts in its own transaction until the live bytes are at most target. */
static void shrink_to(struct cge__disk *d, uint64_t target) {
    MDB_txn *txn;
    if (mdb_txn_begin(d->env, NULL, 0, &txn) != 0) return;
    MDB_stat se, sa;
    if (mdb_stat(txn, d->dbi_ent, &se) || mdb_stat(txn, d->dbi_age, &sa) || !se.ms_entries) {
        mdb_txn_abort(txn);
        return;
    }
    uint64_t live = (se.ms_branch_pages + se.ms_leaf_pages + se.ms_overflow_pages +
                     sa.ms_branch_pages + sa.ms_leaf_pages + sa.ms_overflow_pages) *
                    se.ms_psize;
    if (live <= target) {
        mdb_txn_abort(txn);
        return;
    }
    uint64_t per = live / se.ms_entries + 1;
    uint64_t n = (live - target + per - 1) / per, done = 0;
    int rc = evict_oldest(d, txn, n, &done);
    if (rc == 0) rc = mdb_txn_commit(txn);
    else mdb_txn_abort(txn);
    if (rc != 0) {
        /* Even deleting needs fresh pages (copy-on-write); when the map is too full for that,
         * empty the cache instead: dropping frees every page at the cost of one. */
        done = 0;
        if (mdb_txn_begin(d->env, NULL, 0, &txn) == 0) {
            MDB_stat s0;
            if (mdb_stat(txn, d->dbi_ent, &s0) == 0) done = s0.ms_entries;
            int r2 = mdb_drop(txn, d->dbi_ent, 0);
            if (!r2) r2 = mdb_drop(txn, d->dbi_age, 0);
            if (r2) mdb_txn_abort(txn);
            else r2 = mdb_txn_commit(txn); /* frees txn either way */
            if (r2) done = 0;
        }
        cge__log(CGE_LOG_WARN, "cache %s: evicting the oldest entries failed (%s); %s", d->path,
                 mdb_strerror(rc), done ? "emptied the file instead" : "emptying failed too");
        pthread_mutex_lock(&d->mu);
        d->errors++;
        d->evictions += done;
        pthread_mutex_unlock(&d->mu);
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->evictions += done;
    pthread_mutex_unlock(&d->mu);
}

/* Removes the age index entry of the record stored under ek, if any. */
static int drop_old(struct cge__disk *d, MDB_txn *txn, MDB_val *ek, const unsigned char kb[24]) {
    MDB_val old;
    int rc = mdb_get(txn, d->dbi_ent, ek, &old);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    if (old.mv_size >= CGE__REC_FIXED) {
        const unsigned char *o = old.mv_data;
        uint64_t s = 0;
        for (int i = 0; i < 8; i++) s |= (uint64_t)o[40 + i] << (8 * i);
        unsigned char ab[32];
        age_bytes(s, kb, ab);
        MDB_val akv = {32, ab};
        rc = mdb_del(txn, d->dbi_age, &akv, NULL);
        if (rc && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
}

static int write_items(struct cge__disk *d, struct qitem *list, uint64_t *n_written) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(d->env, NULL, 0, &txn);
    if (rc) return rc;
    *n_written = 0;
    for (struct qitem *q = list; q; q = q->next) {
        unsigned char kb[24];
        key_bytes(&q->key, kb);
        MDB_val ek = {24, kb};
        if ((rc = drop_old(d, txn, &ek, kb)) != 0) break;
        if (!q->rec) {
            rc = mdb_del(txn, d->dbi_ent, &ek, NULL);
            if (rc == MDB_NOTFOUND) rc = 0;
            if (rc) break;
            continue;
        }
        uint64_t s = 0;
        for (int i = 0; i < 8; i++) s |= (uint64_t)q->rec[40 + i] << (8 * i);
        MDB_val rv = {q->len, q->rec};
        if ((rc = mdb_put(txn, d->dbi_ent, &ek, &rv, 0)) != 0) break;
        unsigned char ab[32];
        age_bytes(s, kb, ab);
        MDB_val akv = {32, ab}, empty = {0, NULL};
        if ((rc = mdb_put(txn, d->dbi_age, &akv, &empty, 0)) != 0) break;
        (*n_written)++;
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static void write_batch(struct cge__disk *d, struct qitem *list) {
    uint64_t n = 0;
    int rc = write_items(d, list, &n);
    if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL) {
        shrink_to(d, d->max_bytes / 2);
        rc = write_items(d, list, &n);
    }
    pthread_mutex_lock(&d->mu);
    if (rc) {
        d->errors++;
        n = 0;
    }
    d->writes += n;
    pthread_mutex_unlock(&d->mu);
    if (rc) cge__log(CGE_LOG_ERROR, "cache %s: write-behind batch failed: %s", d->path,
                     mdb_strerror(rc));
    MDB_txn *txn;
    if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) == 0) {
        refresh_counts(d, txn);
        mdb_txn_abort(txn);
    }
    pthread_mutex_lock(&d->mu);
    uint64_t live = d->disk_bytes;
    pthread_mutex_unlock(&d->mu);
    if (live > d->max_bytes / 10 * 8) {
        shrink_to(d, d->max_bytes / 10 * 6);
        if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) == 0) {
            refresh_counts(d, txn);
            mdb_txn_abort(txn);
        }
    }
}

static void *flusher(void *arg) {
    struct cge__disk *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (!d->stop && !d->urgent && d->qn < d->batch) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (int64_t)d->interval_ms * 1000000;
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            while (!d->stop && !d->urgent && d->qn < d->batch) {
                if (pthread_cond_timedwait(&d->cv_work, &d->mu, &ts) == ETIMEDOUT) break;
            }
        }
        if (d->qn == 0) {
            d->urgent = 0;
            if (d->stop) break;
            pthread_cond_wait(&d->cv_work, &d->mu);
            continue;
        }
        /* At most one batch per transaction: a transaction's new pages must fit in the map
         * beside the live ones. */
        struct qitem *list = d->head, *last = d->head;
        size_t n = 1;
        while (n < d->batch && last->next) {
            last = last->next;
            n++;
        }
        d->head = last->next;
        last->next = NULL;
        if (!d->head) d->tail = NULL;
        d->qn -= n;
        if (d->qn == 0) d->urgent = 0;
        pthread_cond_broadcast(&d->cv_done); /* room in the queue */
        pthread_mutex_unlock(&d->mu);
        write_batch(d, list);
        while (list) {
            struct qitem *nx = list->next;
            cge__free(list->rec);
            cge__free(list);
            list = nx;
        }
        pthread_mutex_lock(&d->mu);
        d->n_done += n;
        pthread_cond_broadcast(&d->cv_done);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

void cge__disk_enqueue(struct cge__disk *d, const struct cge_cache_key *k, unsigned char *rec,
                       size_t len) {
    struct qitem *q = cge__malloc(sizeof *q);
    if (!q) {
        cge__free(rec);
        pthread_mutex_lock(&d->mu);
        d->errors++;
        pthread_mutex_unlock(&d->mu);
        return;
    }
    q->next = NULL;
    q->key = *k;
    q->rec = rec;
    q->len = len;
    pthread_mutex_lock(&d->mu);
    while (d->qn >= d->qmax && !d->stop) {
        d->urgent = 1;
        pthread_cond_signal(&d->cv_work);
        pthread_cond_wait(&d->cv_done, &d->mu);
    }
    if (d->tail) d->tail->next = q;
    else d->head = q;
    d->tail = q;
    d->qn++;
    d->n_enq++;
    if (d->qn == 1 || d->qn >= d->batch) pthread_cond_signal(&d->cv_work); /* start the timer */
    pthread_mutex_unlock(&d->mu);
}

enum cge_status cge__disk_flush(struct cge__disk *d) {
    pthread_mutex_lock(&d->mu);
    uint64_t target = d->n_enq, errors0 = d->errors;
    if (d->n_done < target) {
        d->urgent = 1;
        pthread_cond_signal(&d->cv_work);
    }
    while (d->n_done < target && d->thr_started) pthread_cond_wait(&d->cv_done, &d->mu);
    uint64_t errors = d->errors;
    pthread_mutex_unlock(&d->mu);
    if (errors != errors0)
        return cge__err(CGE_ERR_CACHE, "cache %s: %llu write-behind batch(es) failed", d->path,
                        (unsigned long long)(errors - errors0));
    return CGE_OK;
}

uint64_t cge__disk_next_seq(struct cge__disk *d) {
    return atomic_fetch_add(&d->seq, 1);
}

/* ==== Reading ================================================================================= */

int cge__disk_get(struct cge__disk *d, const struct cge_cache_key *k, struct cge__rec *r,
                  float **slots) {
    *slots = NULL;
    unsigned char kb[24];
    key_bytes(k, kb);
    MDB_val ek = {24, kb}, v;
    MDB_txn *txn;
    if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) != 0) return 0;
    int found = 0;
    if (mdb_get(txn, d->dbi_ent, &ek, &v) == 0) {
        /* Decoded in place (the map is valid until the transaction ends), then copied out. */
        enum cge_status st = cge__rec_decode(v.mv_data, v.mv_size, r);
        if (st == CGE_OK && (r->key.h1 != k->h1 || r->key.h2 != k->h2 ||
                             r->key.content_len != k->content_len))
            st = cge__err(CGE_ERR_CACHE, "cache record: stored under another key");
        if (st != CGE_OK) {
            cge__log(CGE_LOG_ERROR, "cache %s: bad record for key %016llx: %s", d->path,
                     (unsigned long long)k->h1, cge_errmsg());
            pthread_mutex_lock(&d->mu);
            d->errors++;
            pthread_mutex_unlock(&d->mu);
        } else if (r->n_slot_floats) {
            *slots = cge__malloc((size_t)r->n_slot_floats * sizeof(float));
            if (*slots) {
                cge__rec_copy_slots(r, *slots);
                found = 1;
            }
        } else {
            found = 1;
        }
        r->slots_le = NULL;
    }
    mdb_txn_abort(txn);
    return found;
}

enum cge_status cge__disk_scan(struct cge__disk *d,
                               int (*fn)(void *user, const struct cge__rec *r), void *user) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn);
    if (rc) return cge__err(CGE_ERR_CACHE, "%s: %s", d->path, mdb_strerror(rc));
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, d->dbi_age, &cur)) != 0) {
        mdb_txn_abort(txn);
        return cge__err(CGE_ERR_CACHE, "%s: %s", d->path, mdb_strerror(rc));
    }
    enum cge_status st = CGE_OK;
    struct cge__rec *r = cge__malloc(sizeof *r);
    if (!r) st = cge__err(CGE_ERR_NOMEM, "cache scan");
    MDB_val ak, av;
    MDB_cursor_op op = MDB_LAST;
    while (st == CGE_OK && (rc = mdb_cursor_get(cur, &ak, &av, op)) == 0) {
        op = MDB_PREV;
        MDB_val ek, v;
        if (ak.mv_size != 32) {
            st = cge__err(CGE_ERR_CACHE, "%s: age index key of %zu bytes", d->path, ak.mv_size);
            break;
        }
        ek.mv_size = 24;
        ek.mv_data = (char *)ak.mv_data + 8;
        if ((rc = mdb_get(txn, d->dbi_ent, &ek, &v)) != 0) {
            st = cge__err(CGE_ERR_CACHE, "%s: age index names a missing record (%s)", d->path,
                          mdb_strerror(rc));
            break;
        }
        if (cge__rec_decode(v.mv_data, v.mv_size, r) != CGE_OK) {
            st = CGE_ERR_CACHE;
            break;
        }
        unsigned char kb[24];
        key_bytes(&r->key, kb);
        if (memcmp(kb, ek.mv_data, 24) != 0 || r->seq != age_seq(ak.mv_data)) {
            st = cge__err(CGE_ERR_CACHE, "%s: record stored under another key", d->path);
            break;
        }
        if (!fn(user, r)) break;
    }
    if (st == CGE_OK && rc != 0 && rc != MDB_NOTFOUND)
        st = cge__err(CGE_ERR_CACHE, "%s: scan: %s", d->path, mdb_strerror(rc));
    cge__free(r);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return st;
}

/* ==== Lifecycle =============================================================================== */

enum cge_status cge__disk_open(const struct cge_cache_params *p, struct cge__disk **out,
                               int *moved) {
    *out = NULL;
    *moved = 0;
    struct cge__disk *d = cge__calloc(1, sizeof *d);
    if (!d) return cge__err(CGE_ERR_NOMEM, "cache: disk tier");
    d->path = cge__strdup(p->path);
    if (!d->path) {
        cge__free(d);
        return cge__err(CGE_ERR_NOMEM, "cache: disk tier");
    }
    d->clock = p->clock ? p->clock : cge__cache_wall_us;
    d->clock_user = p->clock_user;
    snprintf(d->ensemble_version, sizeof d->ensemble_version, "%s",
             p->ensemble_version ? p->ensemble_version : "");
    d->max_bytes = p->disk_max_bytes;
    d->durable = p->durable;
    d->interval_ms = p->flush_interval_ms > 0 ? p->flush_interval_ms : 50;
    d->batch = p->flush_batch > 0 ? (size_t)p->flush_batch : 512;
    /* A batch's new pages (about 8 KiB per entry) must fit well inside the map. */
    size_t fit = (size_t)(d->max_bytes / (16 * 8192));
    if (d->batch > fit) d->batch = fit ? fit : 1;
    d->qmax = d->batch * 8;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv_work, NULL);
    pthread_cond_init(&d->cv_done, NULL);
    enum cge_status st = open_checked(d, moved);
    if (st != CGE_OK) {
        cge__disk_close(d);
        return st;
    }
    *out = d;
    return CGE_OK;
}

enum cge_status cge__disk_start(struct cge__disk *d) {
    if (pthread_create(&d->thr, NULL, flusher, d) != 0)
        return cge__err(CGE_ERR_CACHE, "%s: cannot start the write-behind thread", d->path);
    d->thr_started = 1;
    return CGE_OK;
}

enum cge_status cge__disk_reset_corrupt(struct cge__disk *d, const char *why) {
    if (d->env) mdb_env_close(d->env);
    d->env = NULL;
    enum cge_status st = move_aside(d, why);
    if (st != CGE_OK) return st;
    int moved = 0;
    return open_checked(d, &moved);
}

void cge__disk_close(struct cge__disk *d) {
    if (!d) return;
    if (d->thr_started) {
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_broadcast(&d->cv_work);
        pthread_cond_broadcast(&d->cv_done);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thr, NULL);
    }
    while (d->head) { /* only when the thread never started */
        struct qitem *nx = d->head->next;
        cge__free(d->head->rec);
        cge__free(d->head);
        d->head = nx;
    }
    if (d->env) mdb_env_close(d->env);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv_work);
    pthread_cond_destroy(&d->cv_done);
    cge__free(d->path);
    cge__free(d);
}

void cge__disk_stats(struct cge__disk *d, struct cge_cache_stats *out) {
    pthread_mutex_lock(&d->mu);
    out->disk_entries = d->disk_entries;
    out->disk_bytes = d->disk_bytes;
    out->disk_writes = d->writes;
    out->disk_evictions = d->evictions;
    out->disk_errors = d->errors;
    pthread_mutex_unlock(&d->mu);
}
