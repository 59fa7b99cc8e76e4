/*
 * tok_util.c: the small containers of the tokenizers (growable buffers, open-addressing hash
 * maps, a string arena, an edge-hash trie) and the Unicode predicates.
 *
 * Key decision: every Unicode property comes from utf8proc (categories, simple case mapping,
 * normalization forms); the only constants here are the ones Hugging Face itself hard-codes
 * (its CJK blocks) and the one multi-character lowercase mapping of Rust's char::to_lowercase
 * (U+0130), which utf8proc's simple mapping cannot express. Where the Rust tokenizers library's
 * Unicode tables differ from utf8proc's, unicode_rust.c holds the difference.
 */
#include "text/text_internal.h"

#include <string.h>
#include <utf8proc.h>

/* ==== growable buffers ======================================================================= */

static enum cge_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return CGE_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > ((size_t)1 << 40) / elem) return cge__err(CGE_ERR_NOMEM, "tokenizer: buffer too big");
        nc *= 2;
    }
    void *q = cge__realloc(*p, nc * elem);
    if (!q) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", nc * elem);
    *p = q;
    *cap = nc;
    return CGE_OK;
}

enum cge_status sb_reserve(struct sbuf *b, size_t extra) {
    return grow((void **)&b->p, &b->cap, b->n + extra + 1, 1);
}

enum cge_status sb_put(struct sbuf *b, const void *s, size_t n) {
    enum cge_status st = sb_reserve(b, n);
    if (st) return st;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return CGE_OK;
}

enum cge_status sb_putc(struct sbuf *b, char c) {
    if (b->n + 2 > b->cap) {
        enum cge_status st = sb_reserve(b, 1);
        if (st) return st;
    }
    b->p[b->n++] = c;
    return CGE_OK;
}

enum cge_status sb_put_cp(struct sbuf *b, int32_t cp) {
    uint8_t tmp[4];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, tmp);
    if (k <= 0) return cge__err(CGE_ERR_TOKENIZE, "tokenizer: cannot encode U+%04X", (unsigned)cp);
    return sb_put(b, tmp, (size_t)k);
}

void sb_free(struct sbuf *b) {
    cge__free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

enum cge_status iv_push(struct ivec *v, int32_t x) {
    if (v->n == v->cap) {
        enum cge_status st = grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p);
        if (st) return st;
    }
    v->p[v->n++] = x;
    return CGE_OK;
}

void iv_free(struct ivec *v) {
    cge__free(v->p);
    v->p = NULL;
    v->n = v->cap = 0;
}

enum cge_status sp_push(struct spans *v, size_t off, size_t len) {
    if (v->n == v->cap) {
        enum cge_status st = grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p);
        if (st) return st;
    }
    v->p[v->n].off = (uint32_t)off;
    v->p[v->n].len = (uint32_t)len;
    v->n++;
    return CGE_OK;
}

void sp_free(struct spans *v) {
    cge__free(v->p);
    v->p = NULL;
    v->n = v->cap = 0;
}

/* ==== hash maps ============================================================================== */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static enum cge_status smap_grow(struct smap *m) {
    size_t ncap = m->e ? (m->mask + 1) * 2 : 64;
    struct smap_ent *ne = cge__calloc(ncap, sizeof *ne);
    if (!ne) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory (vocabulary map)");
    if (m->e) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (!m->e[i].s) continue;
            size_t j = hash_bytes(m->e[i].s, m->e[i].len) & (ncap - 1);
            while (ne[j].s) j = (j + 1) & (ncap - 1);
            ne[j] = m->e[i];
        }
    }
    cge__free(m->e);
    m->e = ne;
    m->mask = ncap - 1;
    return CGE_OK;
}

enum cge_status smap_put(struct smap *m, const char *s, size_t len, int32_t val) {
    if (!m->e || (m->n + 1) * 2 > m->mask + 1) {
        enum cge_status st = smap_grow(m);
        if (st) return st;
    }
    size_t j = hash_bytes(s, len) & m->mask;
    while (m->e[j].s) {
        if (m->e[j].len == len && !memcmp(m->e[j].s, s, len)) {
            m->e[j].val = val;
            return CGE_OK;
        }
        j = (j + 1) & m->mask;
    }
    m->e[j].s = s;
    m->e[j].len = (uint32_t)len;
    m->e[j].val = val;
    m->n++;
    return CGE_OK;
}

int32_t smap_get(const struct smap *m, const char *s, size_t len) {
    if (!m->e) return -1;
    size_t j = hash_bytes(s, len) & m->mask;
    while (m->e[j].s) {
        if (m->e[j].len == len && !memcmp(m->e[j].s, s, len)) return m->e[j].val;
        j = (j + 1) & m->mask;
    }
    return -1;
}

void smap_free(struct smap *m) {
    cge__free(m->e);
    memset(m, 0, sizeof *m);
}

static enum cge_status umap_grow(struct umap *m) {
    size_t ncap = m->k ? (m->mask + 1) * 2 : 64;
    uint64_t *nk = cge__malloc(ncap * sizeof *nk), *nv = cge__malloc(ncap * sizeof *nv);
    if (!nk || !nv) {
        cge__free(nk);
        cge__free(nv);
        return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory (hash map)");
    }
    memset(nk, 0xff, ncap * sizeof *nk);
    if (m->k) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->k[i] == UINT64_MAX) continue;
            size_t j = hash_u64(m->k[i]) & (ncap - 1);
            while (nk[j] != UINT64_MAX) j = (j + 1) & (ncap - 1);
            nk[j] = m->k[i];
            nv[j] = m->v[i];
        }
    }
    cge__free(m->k);
    cge__free(m->v);
    m->k = nk;
    m->v = nv;
    m->mask = ncap - 1;
    return CGE_OK;
}

enum cge_status umap_put(struct umap *m, uint64_t key, uint64_t val) {
    if (!m->k || (m->n + 1) * 2 > m->mask + 1) {
        enum cge_status st = umap_grow(m);
        if (st) return st;
    }
    size_t j = hash_u64(key) & m->mask;
    while (m->k[j] != UINT64_MAX) {
        if (m->k[j] == key) {
            m->v[j] = val;
            return CGE_OK;
        }
        j = (j + 1) & m->mask;
    }
    m->k[j] = key;
    m->v[j] = val;
    m->n++;
    return CGE_OK;
}

int umap_get(const struct umap *m, uint64_t key, uint64_t *val) {
    if (!m->k) return 0;
    size_t j = hash_u64(key) & m->mask;
    while (m->k[j] != UINT64_MAX) {
        if (m->k[j] == key) {
            *val = m->v[j];
            return 1;
        }
        j = (j + 1) & m->mask;
    }
    return 0;
}

void umap_free(struct umap *m) {
    cge__free(m->k);
    cge__free(m->v);
    memset(m, 0, sizeof *m);
}

/* ==== arena and trie ========================================================================= */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
};

char *arena_strndup(struct arena *a, const char *s, size_t n) {
    struct arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > 65536 ? n + 1 : 65536;
        c = cge__malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    char *p = c->data + c->used;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

void arena_free(struct arena *a) {
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        cge__free(c);
        c = next;
    }
    a->head = NULL;
}

enum cge_status trie_insert(struct trie *t, const char *s, size_t len, int32_t id) {
    if (!t->val) {
        t->val = cge__malloc(64 * sizeof *t->val);
        if (!t->val) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory (trie)");
        t->cap = 64;
        t->n_nodes = 1;
        t->val[0] = -1;
    }
    uint64_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t key = (node << 8) | (unsigned char)s[i], child;
        if (umap_get(&t->edges, key, &child)) {
            node = child;
            continue;
        }
        if (t->n_nodes == t->cap) {
            enum cge_status st = grow((void **)&t->val, &t->cap, t->n_nodes + 1, sizeof *t->val);
            if (st) return st;
        }
        child = t->n_nodes++;
        t->val[child] = -1;
        enum cge_status st = umap_put(&t->edges, key, child);
        if (st) return st;
        node = child;
    }
    t->val[node] = id;
    return CGE_OK;
}

void trie_free(struct trie *t) {
    umap_free(&t->edges);
    cge__free(t->val);
    memset(t, 0, sizeof *t);
}

/* ==== UTF-8 and Unicode ====================================================================== */

int utf8_decode(const char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s, (utf8proc_ssize_t)(n < 4 ? n : 4), &c);
    if (k <= 0) return -1;
    *cp = c;
    return (int)k;
}

enum cge_status utf8_validate(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        int32_t c;
        int k = utf8_decode(s + i, n - i, &c);
        if (k < 0) return cge__err(CGE_ERR_TOKENIZE, "tokenizer: invalid UTF-8 at byte %zu", i);
        i += (size_t)k;
    }
    return CGE_OK;
}

static utf8proc_category_t cat(int32_t c) {
    return utf8proc_category(c);
}

int uni_is_whitespace(int32_t c) {
    if (c == ' ' || (c >= 9 && c <= 13) || c == 0x85) return 1;
    if (c < 0x80) return 0;
    utf8proc_category_t k = cat(c);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

int uni_is_punctuation(int32_t c) {
    utf8proc_category_t k = cat(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

int uni_is_chinese(int32_t c) {
    /* The blocks of Hugging Face's BertNormalizer::is_chinese_char. */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int uni_is_mn(int32_t c) {
    return c >= 0x300 && cat(c) == UTF8PROC_CATEGORY_MN;
}

int uni_is_alnum(int32_t c) {
    utf8proc_category_t k = cat(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

enum cge_status uni_lower(struct sbuf *out, int32_t c) {
    if (c < 0x80) return sb_putc(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
    if (c == 0x130) return sb_put(out, "i\xcc\x87", 3); /* SpecialCasing: İ → i + U+0307 */
    int32_t l = c >= 0x1C89 ? uni_lower_extra(c) : -1; /* pairs newer than utf8proc's */
    return sb_put_cp(out, l >= 0 ? l : utf8proc_tolower(c));
}

static enum cge_status normalize_run(const char *s, size_t n, int form, struct sbuf *out) {
    if (!n) return CGE_OK;
    int opts = UTF8PROC_STABLE;
    if (form == 'C' || form == 'c') opts |= UTF8PROC_COMPOSE;
    else opts |= UTF8PROC_DECOMPOSE;
    if (form == 'c' || form == 'd') opts |= UTF8PROC_COMPAT;
    utf8proc_ssize_t need =
        utf8proc_decompose((const uint8_t *)s, (utf8proc_ssize_t)n, NULL, 0, (utf8proc_option_t)opts);
    if (need < 0) return cge__err(CGE_ERR_TOKENIZE, "normalizer: %s", utf8proc_errmsg(need));
    utf8proc_int32_t *buf = cge__malloc(((size_t)need + 1) * sizeof *buf);
    if (!buf) return cge__err(CGE_ERR_NOMEM, "normalizer: out of memory");
    utf8proc_ssize_t k = utf8proc_decompose((const uint8_t *)s, (utf8proc_ssize_t)n, buf, need,
                                            (utf8proc_option_t)opts);
    if (k >= 0 && (opts & UTF8PROC_COMPOSE)) k = utf8proc_normalize_utf32(buf, k, (utf8proc_option_t)opts);
    enum cge_status st = CGE_OK;
    if (k < 0) st = cge__err(CGE_ERR_TOKENIZE, "normalizer: %s", utf8proc_errmsg(k));
    for (utf8proc_ssize_t i = 0; !st && i < k; i++) st = sb_put_cp(out, buf[i]);
    cge__free(buf);
    return st;
}

/* The Rust library's normalization data is older than utf8proc's: some combining marks and
 * U+11930/U+11938 have no mapping and class 0 there (uni_nf_barrier, unicode_rust.c). The text
 * is normalized in runs cut at each of them, and they are copied as they are. */
enum cge_status uni_normalize(const char *s, size_t n, int form, struct sbuf *out) {
    if (!n) return CGE_OK;
    /* ASCII is unchanged by every normalization form: skip utf8proc for it (the common case). */
    size_t ascii = 0;
    while (ascii < n && (unsigned char)s[ascii] < 0x80) ascii++;
    if (ascii == n) return sb_put(out, s, n);
    size_t start = 0;
    for (size_t i = ascii; i < n;) {
        unsigned char b = (unsigned char)s[i];
        if (b < 0xDF) { /* below U+07C0: no barrier there */
            i += (size_t)utf8_len(b);
            continue;
        }
        int32_t c;
        int k = utf8_decode(s + i, n - i, &c);
        if (k < 0) return cge__err(CGE_ERR_TOKENIZE, "normalizer: invalid UTF-8");
        if (uni_nf_barrier(c)) {
            enum cge_status st = normalize_run(s + start, i - start, form, out);
            if (!st) st = sb_put(out, s + i, (size_t)k);
            if (st) return st;
            start = i + (size_t)k;
        }
        i += (size_t)k;
    }
    return normalize_run(s + start, n - start, form, out);
}
