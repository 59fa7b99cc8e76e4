/*
 * normalize.c: the normalizers of Hugging Face tokenizers (BertNormalizer, NFC/NFD/NFKC/NFKD,
 * Lowercase, StripAccents, Replace, Prepend, Strip, Precompiled, Sequence) and SentencePiece's
 * own normalizer (charsmap + dummy prefix + whitespace handling) for .model files.
 *
 * Key decision: each normalizer maps a whole string to a new string; no alignment is kept,
 * because cge never needs offsets. The Precompiled charsmap is the Darts double-array trie that
 * SentencePiece ships; it is walked in place with bounds checks, because the blob comes from a
 * file. Hugging Face applies it per grapheme cluster (shortest prefix match, whole cluster
 * replaced, clusters of 6 bytes or more go character by character); SentencePiece walks bytes
 * and takes the longest match. Both behaviours are reproduced, each where its library is the
 * reference.
 */
#include "text/text_internal.h"

#include <string.h>
#include <utf8proc.h>

/* ==== the charsmap (Darts double array) ======================================================= */

enum cge_status charsmap_init(struct charsmap *c, const void *blob, size_t len) {
    memset(c, 0, sizeof *c);
    if (len < 4) return cge__err(CGE_ERR_TOKENIZE, "precompiled_charsmap: %zu bytes, too short", len);
    const unsigned char *b = blob;
    uint32_t trie_size = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    if (trie_size % 4 || (size_t)trie_size > len - 4 || trie_size == 0)
        return cge__err(CGE_ERR_TOKENIZE, "precompiled_charsmap: trie size %u does not fit %zu bytes",
                        trie_size, len);
    /* Copy into 4-byte aligned storage; the units are little-endian like this machine. */
    size_t words = (len + 3) / 4 + 1;
    uint32_t *store = cge__calloc(words, 4);
    if (!store) return cge__err(CGE_ERR_NOMEM, "precompiled_charsmap: out of memory");
    memcpy(store, b + 4, len - 4);
    c->blob = (char *)store;
    c->units = store;
    c->n_units = trie_size / 4;
    c->normalized = (const char *)store + trie_size;
    c->n_norm = len - 4 - trie_size;
    return CGE_OK;
}

void charsmap_free(struct charsmap *c) {
    cge__free(c->blob);
    memset(c, 0, sizeof *c);
}

static inline uint32_t du_offset(uint32_t u) {
    return (u >> 10) << ((u & (1u << 9)) >> 6);
}

/* Walks the trie over s[0..n); returns the number of matches and the (shortest or longest)
 * match's length and value offset. A NUL byte ends the key, as in both libraries. */
static int charsmap_search(const struct charsmap *c, const char *s, size_t n, int longest,
                           size_t *mlen, uint32_t *mval) {
    if (!c->n_units) return 0;
    int found = 0;
    size_t pos = du_offset(c->units[0]);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!ch) break;
        pos ^= ch;
        if (pos >= c->n_units) break;
        uint32_t u = c->units[pos];
        if ((u & (0x80000000u | 0xFFu)) != ch) break;
        pos ^= du_offset(u);
        if ((u >> 8) & 1) {
            if (pos >= c->n_units) break;
            *mlen = i + 1;
            *mval = c->units[pos] & 0x7FFFFFFFu;
            found++;
            if (!longest) return found;
        }
    }
    return found;
}

/* The replacement string at value offset v (NUL-terminated inside the blob); NULL if invalid. */
static const char *charsmap_str(const struct charsmap *c, uint32_t v, size_t *len) {
    if (v >= c->n_norm) return NULL;
    const char *p = c->normalized + v;
    const char *e = memchr(p, 0, c->n_norm - v);
    *len = e ? (size_t)(e - p) : c->n_norm - v;
    return p;
}

/* Hugging Face's Precompiled::normalize_string: per grapheme cluster. */
static enum cge_status precompiled_hf(const struct charsmap *c, const char *s, size_t n,
                                      struct sbuf *out) {
    size_t i = 0;
    while (i < n) {
        /* Find the end of this extended grapheme cluster. */
        int32_t c1;
        int k = utf8_decode(s + i, n - i, &c1);
        if (k < 0) return cge__err(CGE_ERR_TOKENIZE, "normalizer: invalid UTF-8");
        size_t j = i + (size_t)k;
        utf8proc_int32_t state = 0;
        while (j < n) {
            int32_t c2;
            int k2 = utf8_decode(s + j, n - j, &c2);
            if (k2 < 0) return cge__err(CGE_ERR_TOKENIZE, "normalizer: invalid UTF-8");
            /* A mark newer than utf8proc's tables extends the cluster as U+0300 would (so not
             * after a control, CR or LF). */
            if (utf8proc_grapheme_break_stateful(c1, uni_grapheme_extend_extra(c2) ? 0x300 : c2, &state))
                break;
            c1 = c2;
            j += (size_t)k2;
        }
        size_t mlen, slen;
        uint32_t mval;
        const char *rep;
        enum cge_status st;
        if (j - i < 6 && charsmap_search(c, s + i, j - i, 0, &mlen, &mval) &&
            (rep = charsmap_str(c, mval, &slen)) != NULL) {
            st = sb_put(out, rep, slen);
            if (st) return st;
        } else {
            size_t p = i;
            while (p < j) {
                size_t cl = (size_t)utf8_len((unsigned char)s[p]);
                if (cl > j - p) cl = j - p;
                if (charsmap_search(c, s + p, cl, 0, &mlen, &mval) &&
                    (rep = charsmap_str(c, mval, &slen)) != NULL)
                    st = sb_put(out, rep, slen);
                else
                    st = sb_put(out, s + p, cl);
                if (st) return st;
                p += cl;
            }
        }
        i = j;
    }
    return CGE_OK;
}

/* SentencePiece's Normalizer::Normalize (normalizer.cc), without user-defined symbols. */
static enum cge_status normalize_spm(const struct normalizer *nm, const char *s, size_t n,
                                     struct sbuf *out) {
    static const char kSpace[] = "\xe2\x96\x81"; /* U+2581 */
    enum cge_status st = CGE_OK;
    size_t i = 0;
    /* One prefix normalization step: the replacement and how many input bytes it consumes. */
#define SPM_PREFIX(at, rep, rep_len, used)                                                      \
    do {                                                                                        \
        size_t ml_;                                                                             \
        uint32_t mv_;                                                                           \
        (rep) = NULL;                                                                           \
        if (nm->has_cmap && charsmap_search(&nm->cmap, s + (at), n - (at), 1, &ml_, &mv_)) {     \
            (rep) = charsmap_str(&nm->cmap, mv_, &(rep_len));                                   \
            (used) = ml_;                                                                       \
        }                                                                                       \
        if (!(rep)) {                                                                           \
            (used) = (size_t)utf8_len((unsigned char)s[(at)]);                                  \
            if ((used) > n - (at)) (used) = n - (at);                                           \
            (rep) = s + (at);                                                                   \
            (rep_len) = (used);                                                                 \
        }                                                                                       \
    } while (0)
    if (nm->remove_extra_ws) {
        while (i < n) {
            const char *rep;
            size_t rl, used;
            SPM_PREFIX(i, rep, rl, used);
            if (!(rl == 1 && rep[0] == ' ')) break;
            i += used;
        }
    }
    if (i >= n) return CGE_OK;
    if (nm->add_dummy_prefix) {
        st = nm->escape_ws ? sb_put(out, kSpace, 3) : sb_putc(out, ' ');
        if (st) return st;
    }
    int prev_space = nm->remove_extra_ws;
    while (i < n) {
        const char *rep;
        size_t rl, used;
        SPM_PREFIX(i, rep, rl, used);
        if (prev_space && nm->remove_extra_ws)
            while (rl && rep[0] == ' ') {
                rep++;
                rl--;
            }
        if (rl) {
            for (size_t k = 0; k < rl && !st; k++)
                st = (nm->escape_ws && rep[k] == ' ') ? sb_put(out, kSpace, 3) : sb_putc(out, rep[k]);
            if (st) return st;
            prev_space = rep[rl - 1] == ' ';
        }
        i += used;
        if (!nm->remove_extra_ws) prev_space = 0;
    }
#undef SPM_PREFIX
    if (nm->remove_extra_ws) {
        const char *sp = nm->escape_ws ? kSpace : " ";
        size_t sl = nm->escape_ws ? 3 : 1;
        while (out->n >= sl && !memcmp(out->p + out->n - sl, sp, sl)) out->n -= sl;
    }
    return CGE_OK;
}

/* ==== the Hugging Face normalizers ============================================================= */

static enum cge_status normalize_bert(const struct normalizer *nm, const char *s, size_t n,
                                      struct sbuf *out) {
    enum cge_status st = CGE_OK;
    struct sbuf tmp = {0};
    int strip = nm->strip_accents;
    /* Pass 1: clean text and pad CJK characters (into tmp when accents are stripped next). */
    struct sbuf *dst = strip ? &tmp : out;
    for (size_t i = 0; i < n && !st;) {
        int32_t c;
        int k = utf8_decode(s + i, n - i, &c);
        if (k < 0) {
            st = cge__err(CGE_ERR_TOKENIZE, "normalizer: invalid UTF-8");
            break;
        }
        i += (size_t)k;
        if (nm->clean_text) {
            if (c == 0 || c == 0xFFFD || uni_is_control_other(c)) continue;
            if (c == '\t' || c == '\n' || c == '\r' || uni_is_whitespace(c)) c = ' ';
        }
        if (nm->handle_chinese && uni_is_chinese(c)) {
            st = sb_putc(dst, ' ');
            if (!st) st = sb_put_cp(dst, c);
            if (!st) st = sb_putc(dst, ' ');
            continue;
        }
        if (!strip && nm->lowercase) st = uni_lower(dst, c);
        else st = sb_put_cp(dst, c);
    }
    if (!st && strip) {
        struct sbuf nfd = {0};
        st = uni_normalize(tmp.p, tmp.n, 'D', &nfd);
        for (size_t i = 0; i < nfd.n && !st;) {
            int32_t c;
            int k = utf8_decode(nfd.p + i, nfd.n - i, &c);
            if (k < 0) break;
            i += (size_t)k;
            if (uni_is_bert_mn(c)) continue;
            st = nm->lowercase ? uni_lower(out, c) : sb_put_cp(out, c);
        }
        sb_free(&nfd);
    }
    sb_free(&tmp);
    return st;
}

static enum cge_status normalize_one(const struct normalizer *nm, const char *s, size_t n,
                                     struct sbuf *out) {
    enum cge_status st = CGE_OK;
    switch (nm->kind) {
    case NORM_BERT:
        return normalize_bert(nm, s, n, out);
    case NORM_NFC:
        return uni_normalize(s, n, 'C', out);
    case NORM_NFD:
        return uni_normalize(s, n, 'D', out);
    case NORM_NFKC:
        return uni_normalize(s, n, 'c', out);
    case NORM_NFKD:
        return uni_normalize(s, n, 'd', out);
    case NORM_LOWER:
        for (size_t i = 0; i < n && !st;) {
            int32_t c;
            int k = utf8_decode(s + i, n - i, &c);
            if (k < 0) return cge__err(CGE_ERR_TOKENIZE, "normalizer: invalid UTF-8");
            i += (size_t)k;
            st = uni_lower(out, c);
        }
        return st;
    case NORM_STRIP_ACCENTS:
        for (size_t i = 0; i < n && !st;) {
            int32_t c;
            int k = utf8_decode(s + i, n - i, &c);
            if (k < 0) return cge__err(CGE_ERR_TOKENIZE, "normalizer: invalid UTF-8");
            if (!uni_is_mn(c)) st = sb_put(out, s + i, (size_t)k);
            i += (size_t)k;
        }
        return st;
    case NORM_REPLACE: {
        struct spans m = {0};
        st = regex_find_all(&nm->re, s, n, &m);
        size_t at = 0;
        for (size_t i = 0; i < m.n && !st; i++) {
            st = sb_put(out, s + at, m.p[i].off - at);
            if (!st) st = sb_put(out, nm->content, nm->content_len);
            at = m.p[i].off + m.p[i].len;
        }
        if (!st) st = sb_put(out, s + at, n - at);
        sp_free(&m);
        return st;
    }
    case NORM_PREPEND:
        if (n) st = sb_put(out, nm->content, nm->content_len);
        return st ? st : sb_put(out, s, n);
    case NORM_STRIP: {
        size_t a = 0, b = n;
        while (nm->strip_left && a < b) {
            int32_t c;
            int k = utf8_decode(s + a, b - a, &c);
            if (k < 0 || !uni_is_whitespace(c)) break;
            a += (size_t)k;
        }
        while (nm->strip_right && b > a) {
            size_t p = b - 1;
            while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
            int32_t c;
            int k = utf8_decode(s + p, b - p, &c);
            if (k < 0 || !uni_is_whitespace(c)) break;
            b = p;
        }
        return sb_put(out, s + a, b - a);
    }
    case NORM_PRECOMPILED:
        return precompiled_hf(&nm->cmap, s, n, out);
    case NORM_SPM:
        return normalize_spm(nm, s, n, out);
    case NORM_SEQUENCE: {
        struct sbuf a = {0}, b = {0};
        st = sb_put(&a, s, n);
        for (size_t i = 0; i < nm->n_sub && !st; i++) {
            b.n = 0;
            st = normalize_one(nm->sub[i], a.p ? a.p : "", a.n, &b);
            struct sbuf t = a;
            a = b;
            b = t;
        }
        if (!st) st = sb_put(out, a.p ? a.p : "", a.n);
        sb_free(&a);
        sb_free(&b);
        return st;
    }
    }
    return cge__err(CGE_ERR_UNSUPPORTED, "normalizer: unknown kind %d", (int)nm->kind);
}

enum cge_status normalize(const struct normalizer *nm, const char *s, size_t n, struct sbuf *out) {
    out->n = 0;
    if (!nm) return sb_put(out, s, n);
    enum cge_status st = normalize_one(nm, s, n, out);
    if (!st) st = sb_reserve(out, 0);
    return st;
}

void normalizer_free(struct normalizer *n) {
    if (!n) return;
    regex_free(&n->re);
    cge__free(n->content);
    charsmap_free(&n->cmap);
    for (size_t i = 0; i < n->n_sub; i++) normalizer_free(n->sub[i]);
    cge__free(n->sub);
    cge__free(n);
}
