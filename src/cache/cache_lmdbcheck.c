/*
 * cache_lmdbcheck.c: a structural check of an LMDB file before LMDB maps it.
 *
 * LMDB trusts its file: a truncated file makes it touch mapped pages past the end (SIGBUS), and
 * a damaged page can send it out of bounds. The cache promises never to crash on a bad file, so
 * before opening one it reads the file with pread (a short read is an error, not a signal) and
 * checks what LMDB will rely on, for the snapshot LMDB will pick (the meta page with the larger
 * transaction id): both meta pages, the page size, that the file holds every page up to last_pg,
 * and every page reachable from the free-list DB, the main DB and the named DBs in it: its page
 * number, type, key/node bounds, tree depth, overflow runs, free-list contents, and that no page
 * is reachable twice or both live and free. Overflow pages are checked by header, not read
 * (except the free list's), so the walk costs about one pread per B-tree page.
 *
 * The layout constants are LMDB 0.9's on-disk format (mdb.c: MDB_page, MDB_node, MDB_meta,
 * MDB_db) for 64-bit builds; MDB_DATA_VERSION 1.
 */
#include "cache/cache_internal.h"
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MDB_MAGIC      0xBEEFC0DEu
#define MDB_DATA_VER   1u
#define PAGEHDRSZ      16u
#define NODESZ         8u
#define P_BRANCH       0x01u
#define P_LEAF         0x02u
#define P_OVERFLOW     0x04u
#define P_META         0x08u
#define P_DIRTY        0x10u
#define P_KEEP         0x8000u
#define F_BIGDATA      0x01u
#define F_SUBDATA      0x02u
#define F_DUPDATA      0x04u
#define P_INVALID      (~(uint64_t)0)
#define MAX_DEPTH      16
#define MAX_KEY        511u
#define DB_SIZE        48u

enum tree_kind { TREE_FREE, TREE_MAIN, TREE_SUB };

struct walk {
    int fd;
    uint64_t psize;
    uint64_t npages;          /* last_pg + 1 */
    uint8_t *seen;            /* bit per page: reachable */
    uint8_t *freed;           /* bit per page: listed in the free DB */
    unsigned char *pg[2 * MAX_DEPTH + 1]; /* one page buffer per level (main, then a named DB) */
    unsigned char *ov;        /* a free-list overflow run (grown as needed) */
    size_t ov_cap;
    uint64_t live;            /* pages of the main and named DBs */
    char *why;
    size_t why_len;
};

static uint16_t g16(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t g32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t g64(const unsigned char *p) {
    return (uint64_t)g32(p) | (uint64_t)g32(p + 4) << 32;
}

static int bad(struct walk *w, const char *fmt, ...) CGE_PRINTF(2, 3);
static int bad(struct walk *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, w->why_len, fmt, ap);
    va_end(ap);
    return -1;
}

static int bit(const uint8_t *b, uint64_t i) {
    return b[i >> 3] >> (i & 7) & 1;
}
static void setbit(uint8_t *b, uint64_t i) {
    b[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static int read_at(int fd, void *buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Marks a page reachable; a page reached twice means a cycle or shared page: corrupt. */
static int mark(struct walk *w, uint64_t pgno, const char *what) {
    if (pgno < 2 || pgno >= w->npages)
        return bad(w, "%s page %llu outside 2..%llu", what, (unsigned long long)pgno,
                   (unsigned long long)(w->npages - 1));
    if (bit(w->seen, pgno))
        return bad(w, "%s page %llu reachable twice", what, (unsigned long long)pgno);
    setbit(w->seen, pgno);
    return 0;
}

/* Checks an overflow run starting at pgno holding dsize bytes; for the free list, reads it whole
 * into w->ov. */
static int check_overflow(struct walk *w, uint64_t pgno, uint64_t dsize, enum tree_kind kind,
                          unsigned char *hdr) {
    if (pgno < 2 || pgno >= w->npages)
        return bad(w, "overflow page %llu out of range", (unsigned long long)pgno);
    if (read_at(w->fd, hdr, PAGEHDRSZ, pgno * w->psize) != 0)
        return bad(w, "overflow page %llu unreadable", (unsigned long long)pgno);
    uint32_t pages = g32(hdr + 12);
    if (g64(hdr) != pgno || !(g16(hdr + 10) & P_OVERFLOW))
        return bad(w, "page %llu: not the overflow page its node points to",
                   (unsigned long long)pgno);
    if (pages == 0 || pages > w->npages - pgno)
        return bad(w, "overflow run at %llu: %u pages past the end", (unsigned long long)pgno,
                   pages);
    if (dsize + PAGEHDRSZ > (uint64_t)pages * w->psize)
        return bad(w, "overflow run at %llu: %llu bytes in %u pages", (unsigned long long)pgno,
                   (unsigned long long)dsize, pages);
    for (uint64_t i = 0; i < pages; i++)
        if (mark(w, pgno + i, "overflow") != 0) return -1;
    if (kind != TREE_FREE) {
        w->live += pages;
        return 0;
    }
    if (dsize > w->ov_cap) {
        unsigned char *b = cge__realloc(w->ov, (size_t)dsize);
        if (!b) return bad(w, "out of memory reading the free list");
        w->ov = b;
        w->ov_cap = (size_t)dsize;
    }
    if (read_at(w->fd, w->ov, (size_t)dsize, pgno * w->psize + PAGEHDRSZ) != 0)
        return bad(w, "overflow run at %llu unreadable", (unsigned long long)pgno);
    return 0;
}

/* A free-list record: u64 count, then count page numbers. */
static int check_idl(struct walk *w, const unsigned char *d, uint64_t dsize) {
    if (dsize < 8 || dsize % 8) return bad(w, "free list record of %llu bytes",
                                           (unsigned long long)dsize);
    uint64_t n = g64(d);
    if (n != dsize / 8 - 1)
        return bad(w, "free list record: count %llu in %llu bytes", (unsigned long long)n,
                   (unsigned long long)dsize);
    for (uint64_t i = 1; i <= n; i++) {
        uint64_t pg = g64(d + 8 * i);
        if (pg < 2 || pg >= w->npages)
            return bad(w, "free list names page %llu, outside the file",
                       (unsigned long long)pg);
        setbit(w->freed, pg);
    }
    return 0;
}

static int walk_db(struct walk *w, const unsigned char *db, enum tree_kind kind, int bufi);

/* bufi: which page buffer this level uses (a named DB's walk continues after its parent's). */
static int walk_page(struct walk *w, uint64_t pgno, int level, int depth, enum tree_kind kind,
                     int bufi) {
    if (level >= depth || level >= MAX_DEPTH) return bad(w, "tree deeper than its depth %d", depth);
    if (mark(w, pgno, "tree") != 0) return -1;
    if (kind != TREE_FREE) w->live++;
    unsigned char *p = w->pg[bufi];
    if (read_at(w->fd, p, (size_t)w->psize, pgno * w->psize) != 0)
        return bad(w, "page %llu unreadable", (unsigned long long)pgno);
    if (g64(p) != pgno)
        return bad(w, "page %llu says it is page %llu", (unsigned long long)pgno,
                   (unsigned long long)g64(p));
    unsigned flags = g16(p + 10) & ~(P_DIRTY | P_KEEP);
    int leaf = level == depth - 1;
    if (flags != (leaf ? P_LEAF : P_BRANCH))
        return bad(w, "page %llu: flags 0x%x at level %d of %d", (unsigned long long)pgno,
                   g16(p + 10), level, depth);
    unsigned lower = g16(p + 12), upper = g16(p + 14);
    if (lower < PAGEHDRSZ || (lower - PAGEHDRSZ) % 2 || lower > upper || upper > w->psize)
        return bad(w, "page %llu: bounds %u..%u", (unsigned long long)pgno, lower, upper);
    unsigned n = (lower - PAGEHDRSZ) / 2;
    if (n == 0 && !(leaf && level == 0))
        return bad(w, "page %llu: no nodes", (unsigned long long)pgno);
    for (unsigned i = 0; i < n; i++) {
        unsigned off = g16(p + PAGEHDRSZ + 2 * i);
        if (off < upper || off % 2 || off + NODESZ > w->psize)
            return bad(w, "page %llu node %u: offset %u", (unsigned long long)pgno, i, off);
        const unsigned char *nd = p + off;
        uint64_t lohi = (uint64_t)g16(nd) | (uint64_t)g16(nd + 2) << 16;
        unsigned nflags = g16(nd + 4), ksize = g16(nd + 6);
        uint64_t room = w->psize - off - NODESZ;
        if (ksize > MAX_KEY || ksize > room)
            return bad(w, "page %llu node %u: key of %u bytes", (unsigned long long)pgno, i,
                       ksize);
        const unsigned char *data = nd + NODESZ + ksize;
        if (!leaf) {
            uint64_t child = lohi | (uint64_t)nflags << 32;
            if (walk_page(w, child, level + 1, depth, kind, bufi + 1) != 0) return -1;
            continue;
        }
        if (nflags & ~(F_BIGDATA | F_SUBDATA))
            return bad(w, "page %llu node %u: flags 0x%x", (unsigned long long)pgno, i, nflags);
        uint64_t dsize = lohi;
        if (kind == TREE_FREE && ksize != 8)
            return bad(w, "free list key of %u bytes", ksize);
        if (nflags & F_BIGDATA) {
            if (nflags & F_SUBDATA || room - ksize < 8)
                return bad(w, "page %llu node %u: bad big-data node", (unsigned long long)pgno, i);
            unsigned char hdr[PAGEHDRSZ];
            if (check_overflow(w, g64(data), dsize, kind, hdr) != 0) return -1;
            if (kind == TREE_FREE && check_idl(w, w->ov, dsize) != 0) return -1;
            continue;
        }
        if (dsize > room - ksize)
            return bad(w, "page %llu node %u: %llu data bytes overflow the page",
                       (unsigned long long)pgno, i, (unsigned long long)dsize);
        if (nflags & F_SUBDATA) {
            if (kind != TREE_MAIN || dsize != DB_SIZE)
                return bad(w, "page %llu node %u: unexpected named DB", (unsigned long long)pgno,
                           i);
            if (walk_db(w, data, TREE_SUB, bufi + 1) != 0) return -1;
            continue;
        }
        if (kind == TREE_FREE && check_idl(w, data, dsize) != 0) return -1;
    }
    return 0;
}

/* MDB_db: pad u32, flags u16, depth u16, branch, leaf, overflow, entries, root (u64 each). */
static int walk_db(struct walk *w, const unsigned char *db, enum tree_kind kind, int bufi) {
    unsigned depth = g16(db + 6);
    uint64_t root = g64(db + 40);
    if (root == P_INVALID) return depth == 0 ? 0 : bad(w, "empty DB with depth %u", depth);
    if (depth == 0 || depth > MAX_DEPTH) return bad(w, "DB depth %u", depth);
    /* DUPSORT, DUPFIXED, INTEGERDUP, REVERSEDUP: never used here. (The free DB's flags word
     * holds the environment's flags instead.) */
    if (kind != TREE_FREE && (g16(db + 4) & 0x74)) return bad(w, "DB flags 0x%x", g16(db + 4));
    if (bufi + (int)depth > 2 * MAX_DEPTH + 1) return bad(w, "named DB too deep");
    return walk_page(w, root, 0, (int)depth, kind, bufi);
}

enum cge_status cge__lmdb_check(const char *path, struct cge__lmdb_info *info, char *why,
                                size_t why_len) {
    struct walk w;
    memset(&w, 0, sizeof w);
    w.why = why;
    w.why_len = why_len;
    why[0] = '\0';
    memset(info, 0, sizeof *info);
    w.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (w.fd < 0) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(errno));
    enum cge_status st = CGE_ERR_CACHE;
    struct stat sb;
    unsigned char m[2][160];
    if (fstat(w.fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        bad(&w, "not a regular file");
        goto done;
    }
    info->file_bytes = (uint64_t)sb.st_size;
    /* Meta page 0 gives the page size; meta page 1 sits one page later. */
    if (read_at(w.fd, m[0], sizeof m[0], 0) != 0) {
        bad(&w, "%llu bytes: too short for an LMDB file", (unsigned long long)sb.st_size);
        goto done;
    }
    w.psize = g32(m[0] + 40);
    if (w.psize < 512 || w.psize > 32768 || (w.psize & (w.psize - 1))) {
        bad(&w, "page size %llu", (unsigned long long)w.psize);
        goto done;
    }
    if (read_at(w.fd, m[1], sizeof m[1], w.psize) != 0) {
        bad(&w, "%llu bytes: second meta page missing", (unsigned long long)sb.st_size);
        goto done;
    }
    /* LMDB takes the page size from the meta it picks and finds meta 1 one page in: the two
     * must agree, or LMDB's idea of where pages are differs from ours. */
    if (g32(m[1] + 40) != w.psize) {
        bad(&w, "meta pages disagree on the page size (%u, %llu)", g32(m[1] + 40),
            (unsigned long long)w.psize);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        if (g64(m[i]) != (uint64_t)i) {
            bad(&w, "meta page %d says it is page %llu", i, (unsigned long long)g64(m[i]));
            goto done;
        }
        if (!(g16(m[i] + 10) & P_META) || g32(m[i] + 16) != MDB_MAGIC) {
            bad(&w, "meta page %d: not an LMDB meta page", i);
            goto done;
        }
        if (g32(m[i] + 20) != MDB_DATA_VER) {
            bad(&w, "meta page %d: LMDB format version %u", i, g32(m[i] + 20));
            goto done;
        }
    }
    const unsigned char *mt = g64(m[0] + 144) < g64(m[1] + 144) ? m[1] : m[0];
    info->psize = w.psize;
    info->mapsize = g64(mt + 32);
    info->last_pg = g64(mt + 136);
    info->txnid = g64(mt + 144);
    if (info->last_pg < 1 || info->last_pg >= (uint64_t)sb.st_size / w.psize) {
        bad(&w, "truncated: last page %llu, file holds %llu pages",
            (unsigned long long)info->last_pg, (unsigned long long)(sb.st_size / w.psize));
        goto done;
    }
    w.npages = info->last_pg + 1;
    w.seen = cge__calloc((size_t)(w.npages / 8 + 1), 1);
    w.freed = cge__calloc((size_t)(w.npages / 8 + 1), 1);
    for (int i = 0; i <= 2 * MAX_DEPTH; i++) w.pg[i] = cge__malloc((size_t)w.psize);
    int ok = w.seen && w.freed;
    for (int i = 0; i <= 2 * MAX_DEPTH; i++) ok = ok && w.pg[i];
    if (!ok) {
        st = cge__err(CGE_ERR_NOMEM, "%s: checking %llu pages", path,
                      (unsigned long long)w.npages);
        goto done;
    }
    setbit(w.seen, 0);
    setbit(w.seen, 1);
    if (walk_db(&w, mt + 40, TREE_FREE, 0) != 0) goto done;
    if (walk_db(&w, mt + 88, TREE_MAIN, 0) != 0) goto done;
    for (uint64_t i = 0; i < w.npages; i++)
        if (bit(w.seen, i) && bit(w.freed, i)) {
            bad(&w, "page %llu is both in use and free", (unsigned long long)i);
            goto done;
        }
    info->live_pages = w.live;
    st = CGE_OK;
done:
    if (st == CGE_ERR_CACHE) cge__err(CGE_ERR_CACHE, "%s: corrupt cache file: %s", path, why);
    close(w.fd);
    cge__free(w.seen);
    cge__free(w.freed);
    for (int i = 0; i <= 2 * MAX_DEPTH; i++) cge__free(w.pg[i]);
    cge__free(w.ov);
    return st;
}
