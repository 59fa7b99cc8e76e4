/*
 * cache_file.c: read-only inspection of a cache file, for `cge cache stats` and `cge cache verify`.
 *
 * Key decision: these never change or move the file (a cache in use by a server can be checked
 * in place): the structure is checked first with cache_lmdbcheck.c, then LMDB opens it read-only
 * inside one read transaction, which pins a consistent snapshot while another process writes.
 */
#include "cache/cache_internal.h"
#include "core/core.h"

#include <errno.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct ro {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, ent, age;
    struct cge__hdr hdr;
    struct cge__lmdb_info info;
    int empty; /* an LMDB file with nothing committed yet */
};

static void ro_close(struct ro *r) {
    if (r->txn) mdb_txn_abort(r->txn);
    if (r->env) mdb_env_close(r->env);
    r->txn = NULL;
    r->env = NULL;
}

static enum cge_status ro_open(const char *path, struct ro *r) {
    memset(r, 0, sizeof *r);
    char why[512];
    enum cge_status st = cge__lmdb_check(path, &r->info, why, sizeof why);
    if (st != CGE_OK) return st;
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        /* First with LMDB's lock (safe beside a writer); without it when the lock file cannot
         * be created (a read-only folder). */
        if ((rc = mdb_env_create(&r->env)) != 0) break;
        mdb_env_set_maxdbs(r->env, 4);
        unsigned fl = MDB_RDONLY | MDB_NOSUBDIR | MDB_NOTLS | (attempt ? MDB_NOLOCK : 0);
        rc = mdb_env_open(r->env, path, fl, 0644);
        if (rc == 0) break;
        mdb_env_close(r->env);
        r->env = NULL;
    }
    if (rc) return cge__err(CGE_ERR_CACHE, "%s: %s", path, mdb_strerror(rc));
    if ((rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->txn)) != 0) {
        ro_close(r);
        return cge__err(CGE_ERR_CACHE, "%s: %s", path, mdb_strerror(rc));
    }
    MDB_stat ms;
    MDB_dbi main_dbi;
    if (mdb_dbi_open(r->txn, NULL, 0, &main_dbi) == 0 && mdb_stat(r->txn, main_dbi, &ms) == 0 &&
        ms.ms_entries == 0) {
        r->empty = 1; /* created, then killed before its first commit: an empty cache */
        return CGE_OK;
    }
    if ((rc = mdb_dbi_open(r->txn, "meta", 0, &r->meta)) != 0 ||
        (rc = mdb_dbi_open(r->txn, "ent", 0, &r->ent)) != 0 ||
        (rc = mdb_dbi_open(r->txn, "age", 0, &r->age)) != 0) {
        ro_close(r);
        return cge__err(CGE_ERR_CACHE, "%s: not a cge cache file (%s)", path, mdb_strerror(rc));
    }
    MDB_val hk = {6, (void *)"header"}, hv;
    if ((rc = mdb_get(r->txn, r->meta, &hk, &hv)) != 0) {
        ro_close(r);
        return cge__err(CGE_ERR_CACHE, "%s: no header record (%s)", path, mdb_strerror(rc));
    }
    if ((st = cge__hdr_decode(hv.mv_data, hv.mv_size, &r->hdr)) != CGE_OK) {
        ro_close(r);
        return cge__err(CGE_ERR_CACHE, "%s: %s", path, cge_errmsg());
    }
    return CGE_OK;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

enum cge_status cge_cache_file_info(const char *path, struct cge_cache_file_info *out) {
    memset(out, 0, sizeof *out);
    struct ro r;
    enum cge_status st = ro_open(path, &r);
    if (st != CGE_OK) return st;
    out->format_version = r.hdr.format_version;
    out->fused_dim = r.hdr.fused_dim;
    out->total_dim = r.hdr.total_dim;
    memcpy(out->ensemble_version, r.hdr.ensemble_version, sizeof out->ensemble_version);
    out->created_us = r.hdr.created_us;
    out->file_bytes = r.info.file_bytes;
    if (r.empty) {
        ro_close(&r);
        return CGE_OK;
    }
    out->live_bytes = r.info.live_pages * r.info.psize;
    out->map_bytes = r.info.mapsize;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(r.txn, r.ent, &cur);
    MDB_val k, v;
    MDB_cursor_op op = MDB_FIRST;
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        out->entries++;
        if (v.mv_size < CGE__REC_FIXED) continue;
        const unsigned char *b = v.mv_data;
        int64_t created = (int64_t)le64(b + 48);
        if (!out->oldest_us || created < out->oldest_us) out->oldest_us = created;
        if (created > out->newest_us) out->newest_us = created;
        if (le64(b + 72) >> 32) out->entries_with_slots++; /* n_slot_floats (bytes 76..79) */
    }
    if (rc == 0 || rc == MDB_NOTFOUND) mdb_cursor_close(cur);
    ro_close(&r);
    if (rc != MDB_NOTFOUND) return cge__err(CGE_ERR_CACHE, "%s: %s", path, mdb_strerror(rc));
    return CGE_OK;
}

static void report_bad(struct cge_cache_verify_report *rep, const char *fmt, ...)
    CGE_PRINTF(2, 3);
static void report_bad(struct cge_cache_verify_report *rep, const char *fmt, ...) {
    rep->bad++;
    if (rep->first_error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->first_error, sizeof rep->first_error, fmt, ap);
    va_end(ap);
}

enum cge_status cge_cache_file_verify(const char *path, struct cge_cache_verify_report *out) {
    memset(out, 0, sizeof *out);
    struct ro r;
    enum cge_status st = ro_open(path, &r);
    if (st != CGE_OK) {
        out->bad = 1;
        snprintf(out->first_error, sizeof out->first_error, "%s", cge_errmsg());
        return st;
    }
    if (r.empty) {
        ro_close(&r);
        return CGE_OK;
    }
    struct cge__hdr want;
    cge__hdr_current(&want, r.hdr.ensemble_version);
    if (r.hdr.format_version != want.format_version || r.hdr.fused_dim != want.fused_dim ||
        r.hdr.total_dim != want.total_dim || r.hdr.n_experts != want.n_experts ||
        r.hdr.top_k != want.top_k)
        report_bad(out, "header: format %u, dims %u/%u/%u/%u; this build reads format %u, "
                   "dims %u/%u/%u/%u", r.hdr.format_version, r.hdr.fused_dim, r.hdr.total_dim,
                   r.hdr.n_experts, r.hdr.top_k, want.format_version, want.fused_dim,
                   want.total_dim, want.n_experts, want.top_k);
    int synthetic = !strcmp(r.hdr.ensemble_version, CGE_CACHE_SYNTHETIC_VERSION);
    struct cge__rec *rec = cge__malloc(sizeof *rec);
    struct cge_fused_embedding *expect = cge__malloc(sizeof *expect);
    MDB_cursor *cur = NULL;
    int rc = rec && expect ? mdb_cursor_open(r.txn, r.ent, &cur) : ENOMEM;
    MDB_val k, v;
    MDB_cursor_op op = MDB_FIRST;
    while (rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        out->records++;
        if (cge__rec_decode(v.mv_data, v.mv_size, rec) != CGE_OK) {
            report_bad(out, "record %llu: %s", (unsigned long long)out->records, cge_errmsg());
            continue;
        }
        const unsigned char *kb = k.mv_data;
        if (k.mv_size != 24 || le64(kb) != rec->key.h1 || le64(kb + 8) != rec->key.h2 ||
            le64(kb + 16) != rec->key.content_len) {
            report_bad(out, "record %016llx: stored under another key",
                       (unsigned long long)rec->key.h1);
            continue;
        }
        if (cge_fused_validate(&rec->fused) != CGE_OK) {
            report_bad(out, "record %016llx: %s", (unsigned long long)rec->key.h1, cge_errmsg());
            continue;
        }
        unsigned char ab[32];
        for (int i = 0; i < 8; i++) ab[i] = (unsigned char)(rec->seq >> (56 - 8 * i));
        memcpy(ab + 8, kb, 24);
        MDB_val ak = {32, ab}, av;
        if (mdb_get(r.txn, r.age, &ak, &av) != 0) {
            report_bad(out, "record %016llx: missing from the age index",
                       (unsigned long long)rec->key.h1);
            continue;
        }
        if (synthetic) {
            cge_cache_synthetic(&rec->key, expect);
            out->recomputed++;
            if (memcmp(expect->vector, rec->fused.vector, sizeof expect->vector) ||
                memcmp(expect->expert_weights, rec->fused.expert_weights,
                       sizeof expect->expert_weights) ||
                memcmp(expect->selected, rec->fused.selected, sizeof expect->selected) ||
                expect->latency_us != rec->fused.latency_us)
                report_bad(out, "record %016llx: differs from its recomputed vector",
                           (unsigned long long)rec->key.h1);
        }
    }
    if (cur) mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) report_bad(out, "reading records: %s", mdb_strerror(rc));
    MDB_stat sa;
    if (mdb_stat(r.txn, r.age, &sa) == 0 && sa.ms_entries != out->records)
        report_bad(out, "age index holds %llu keys for %llu records",
                   (unsigned long long)sa.ms_entries, (unsigned long long)out->records);
    cge__free(rec);
    cge__free(expect);
    ro_close(&r);
    if (out->bad)
        return cge__err(CGE_ERR_CACHE, "%s: %llu bad of %llu records; first: %s", path,
                        (unsigned long long)out->bad, (unsigned long long)out->records,
                        out->first_error);
    return CGE_OK;
}
