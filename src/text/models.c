/*
 * models.c: the tokenization models: WordPiece (greedy longest match), BPE (merges by rank,
 * Hugging Face), Unigram (Viterbi over the lattice of pieces) and SentencePiece BPE (merges by
 * piece score, for .model files).
 *
 * Key decision: both BPE variants merge with a binary heap over a doubly linked list of
 * symbols, as their reference implementations do, so a long word costs O(n log n) and 1 MB of
 * one character stays fast; Unigram is a single left-to-right Viterbi pass whose inner loop is
 * a walk of the piece trie, so its cost is bounded by the longest piece.
 */
#include "text/text_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ==== WordPiece =============================================================================== */

static enum cge_status wordpiece(const struct cge_tokenizer *t, const char *s, size_t n,
                                 struct ivec *ids) {
    size_t n_chars = 0;
    for (size_t i = 0; i < n; i++) n_chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    if (n_chars > (size_t)t->max_chars_per_word) return iv_push(ids, t->unk_id);
    size_t mark = ids->n;
    struct sbuf tmp = {0};
    enum cge_status st = sb_reserve(&tmp, t->cont_prefix_len + n);
    if (st) return st;
    memcpy(tmp.p, t->cont_prefix, t->cont_prefix_len);
    size_t start = 0;
    while (start < n) {
        size_t end = n;
        int32_t found = -1;
        while (start < end) {
            if (start == 0) {
                found = smap_get(&t->vocab, s, end);
            } else {
                memcpy(tmp.p + t->cont_prefix_len, s + start, end - start);
                found = smap_get(&t->vocab, tmp.p, t->cont_prefix_len + end - start);
            }
            if (found >= 0) break;
            /* Drop the last character. */
            end--;
            while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80) end--;
        }
        if (found < 0) {
            ids->n = mark;
            sb_free(&tmp);
            return iv_push(ids, t->unk_id);
        }
        st = iv_push(ids, found);
        if (st) break;
        start = end;
    }
    sb_free(&tmp);
    return st;
}

/* ==== BPE (Hugging Face) ====================================================================== */

struct sym {
    int32_t id;
    int32_t prev, next; /* -1: none */
    uint32_t len;       /* 0: merged away */
};

struct merge_ent {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
};

static int merge_less(const struct merge_ent *a, const struct merge_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

struct mheap {
    struct merge_ent *h;
    size_t n, cap;
};

static enum cge_status mheap_push(struct mheap *q, struct merge_ent e) {
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        struct merge_ent *nh = cge__realloc(q->h, nc * sizeof *nh);
        if (!nh) return cge__err(CGE_ERR_NOMEM, "BPE: out of memory");
        q->h = nh;
        q->cap = nc;
    }
    size_t i = q->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&e, &q->h[p])) break;
        q->h[i] = q->h[p];
        i = p;
    }
    q->h[i] = e;
    return CGE_OK;
}

static struct merge_ent mheap_pop(struct mheap *q) {
    struct merge_ent top = q->h[0], last = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct merge_ent *best = &last;
        if (l < q->n && merge_less(&q->h[l], best)) {
            m = l;
            best = &q->h[l];
        }
        if (r < q->n && merge_less(&q->h[r], best)) m = r;
        if (m == i) break;
        q->h[i] = q->h[m];
        i = m;
    }
    if (q->n) q->h[i] = last;
    return top;
}

static int get_merge(const struct cge_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                     int32_t *new_id) {
    uint64_t v;
    if (!umap_get(&t->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return 0;
    *rank = (uint32_t)(v >> 32);
    *new_id = (int32_t)(uint32_t)v;
    return 1;
}

/* Looks up the initial symbol for one character c[0..cl) of a word; -1 if absent. */
static int32_t bpe_char_id(const struct cge_tokenizer *t, const char *c, size_t cl, int first,
                           int last, struct sbuf *tmp) {
    if (t->byte_level && !t->cont_prefix_len) {
        unsigned char b = (unsigned char)c[0];
        return last && t->eow_suffix_len ? t->byte_eow_id[b] : t->byte_id[b];
    }
    tmp->n = 0;
    enum cge_status st = sb_reserve(tmp, t->cont_prefix_len + 8 + t->eow_suffix_len);
    if (st) return -2;
    if (!first) sb_put(tmp, t->cont_prefix, t->cont_prefix_len);
    if (t->byte_level) sb_put_cp(tmp, bytelevel_char((unsigned char)c[0]));
    else sb_put(tmp, c, cl);
    if (last) sb_put(tmp, t->eow_suffix, t->eow_suffix_len);
    return smap_get(&t->vocab, tmp->p, tmp->n);
}

static enum cge_status bpe(const struct cge_tokenizer *t, const char *s, size_t n,
                           struct ivec *ids) {
    if (!n) return CGE_OK;
    struct sym *sy = cge__malloc(n * sizeof *sy);
    struct sbuf tmp = {0};
    struct mheap q = {0};
    enum cge_status st = CGE_OK;
    if (!sy) return cge__err(CGE_ERR_NOMEM, "BPE: out of memory (%zu symbols)", n);
    size_t ns = 0;
    int prev_unk = 0;
    for (size_t i = 0; i < n && !st;) {
        size_t cl = t->byte_level ? 1 : (size_t)utf8_len((unsigned char)s[i]);
        if (cl > n - i) cl = n - i;
        int32_t id = bpe_char_id(t, s + i, cl, i == 0, i + cl == n, &tmp);
        if (id == -2) {
            st = cge__err(CGE_ERR_NOMEM, "BPE: out of memory");
            break;
        }
        if (id >= 0) {
            sy[ns++] = (struct sym){id, 0, 0, (uint32_t)cl};
            prev_unk = 0;
        } else if (t->byte_fallback && !t->byte_level) {
            int ok = 1;
            for (size_t k = 0; k < cl; k++) ok &= t->byte_piece[(unsigned char)s[i + k]] >= 0;
            if (ok) {
                for (size_t k = 0; k < cl; k++)
                    sy[ns++] = (struct sym){t->byte_piece[(unsigned char)s[i + k]], 0, 0, 1};
                prev_unk = 0;
            } else if (t->unk_id >= 0) {
                sy[ns++] = (struct sym){t->unk_id, 0, 0, (uint32_t)cl};
                prev_unk = 1;
            }
        } else if (t->unk_id >= 0) {
            if (t->fuse_unk && prev_unk) {
                sy[ns - 1].len += (uint32_t)cl;
            } else {
                sy[ns++] = (struct sym){t->unk_id, 0, 0, (uint32_t)cl};
            }
            prev_unk = 1;
        }
        i += cl;
    }
    for (size_t i = 0; i < ns; i++) {
        sy[i].prev = (int32_t)i - 1;
        sy[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < ns && !st; i++) {
        uint32_t rank;
        int32_t nid;
        if (get_merge(t, sy[i].id, sy[i + 1].id, &rank, &nid))
            st = mheap_push(&q, (struct merge_ent){rank, (uint32_t)i, nid});
    }
    while (q.n && !st) {
        struct merge_ent top = mheap_pop(&q);
        struct sym *L = &sy[top.pos];
        if (!L->len || L->next < 0) continue;
        struct sym *R = &sy[L->next];
        uint32_t rank;
        int32_t nid;
        if (!get_merge(t, L->id, R->id, &rank, &nid) || nid != top.new_id) continue;
        L->id = nid;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) sy[R->next].prev = (int32_t)top.pos;
        if (L->prev >= 0 && get_merge(t, sy[L->prev].id, L->id, &rank, &nid))
            st = mheap_push(&q, (struct merge_ent){rank, (uint32_t)L->prev, nid});
        if (!st && L->next >= 0 && get_merge(t, L->id, sy[L->next].id, &rank, &nid))
            st = mheap_push(&q, (struct merge_ent){rank, top.pos, nid});
    }
    for (int32_t i = ns ? 0 : -1; i >= 0 && !st; i = sy[i].next) st = iv_push(ids, sy[i].id);
    cge__free(sy);
    cge__free(q.h);
    sb_free(&tmp);
    return st;
}

/* ==== Unigram ================================================================================== */

static enum cge_status unigram(const struct cge_tokenizer *t, const char *s, size_t n,
                               struct ivec *ids) {
    if (!n) return CGE_OK;
    double *best = cge__malloc((n + 1) * sizeof *best);
    int32_t *from = cge__malloc((n + 1) * sizeof *from);
    int32_t *tok = cge__malloc((n + 1) * sizeof *tok);
    if (!best || !from || !tok) {
        cge__free(best);
        cge__free(from);
        cge__free(tok);
        return cge__err(CGE_ERR_NOMEM, "Unigram: out of memory (%zu bytes of text)", n);
    }
    for (size_t i = 0; i <= n; i++) from[i] = -1;
    best[0] = 0;
    from[0] = 0;
    /* Hugging Face accumulates f64 scores; SentencePiece accumulates float. Both are kept in
     * `best` as doubles (a float is exact there), so the comparisons below follow each library. */
    int spm = t->spm_user_defined_score;
    double unk_score = spm ? (double)((float)t->min_score - 10.0f) : t->min_score - 10.0;
    for (size_t i = 0; i < n;) {
        size_t mb = (size_t)utf8_len((unsigned char)s[i]);
        if (mb > n - i) mb = n - i;
        double here = best[i];
        int has_single = 0;
        /* Walk the trie from the root over s[i..]. */
        uint64_t node = 0;
        for (size_t j = i; j < n; j++) {
            uint64_t child;
            if (!umap_get(&t->pieces.edges, (node << 8) | (unsigned char)s[j], &child)) break;
            node = child;
            int32_t id = t->pieces.val[node];
            if (id < 0) continue; /* an inner trie node, not a piece */
            size_t end = j + 1;
            if (end < n && ((unsigned char)s[end] & 0xC0) == 0x80) continue; /* mid-character */
            double sc = t->score[id];
            if (spm && t->type && t->type[id] == SPM_USER_DEFINED)
                sc = (double)(float)((double)((float)(end - i) * (float)t->max_score) - 0.1);
            double cand = spm ? (double)((float)here + (float)sc) : here + sc;
            if (from[end] < 0 || cand > best[end]) {
                best[end] = cand;
                from[end] = (int32_t)i;
                tok[end] = id;
            }
            if (end - i == mb) has_single = 1;
        }
        if (!has_single) {
            double cand = spm ? (double)((float)here + (float)unk_score) : here + unk_score;
            if (from[i + mb] < 0 || cand > best[i + mb]) {
                best[i + mb] = cand;
                from[i + mb] = (int32_t)i;
                tok[i + mb] = -1; /* unknown */
            }
        }
        i += mb;
    }
    /* Backtrack into tok order (reuse `best` storage as a list of end positions). */
    size_t cnt = 0;
    for (size_t e = n; e > 0; e = (size_t)from[e]) cnt++;
    size_t *ends = cge__malloc((cnt ? cnt : 1) * sizeof *ends);
    enum cge_status st = CGE_OK;
    if (!ends) st = cge__err(CGE_ERR_NOMEM, "Unigram: out of memory");
    if (!st) {
        size_t k = cnt;
        for (size_t e = n; e > 0; e = (size_t)from[e]) ends[--k] = e;
        for (size_t k2 = 0; k2 < cnt && !st;) {
            size_t e = ends[k2];
            if (tok[e] >= 0) {
                st = iv_push(ids, tok[e]);
                k2++;
                continue;
            }
            /* A run of unknown characters is fused into one piece (fuse_unk). */
            size_t a = (size_t)from[e], b = e;
            k2++;
            while (k2 < cnt && tok[ends[k2]] < 0) b = ends[k2++];
            int done = 0;
            if (t->byte_fallback) {
                int ok = 1;
                for (size_t x = a; x < b; x++) ok &= t->byte_piece[(unsigned char)s[x]] >= 0;
                if (ok) {
                    for (size_t x = a; x < b && !st; x++)
                        st = iv_push(ids, t->byte_piece[(unsigned char)s[x]]);
                    done = 1;
                }
            }
            if (!done && !st) st = iv_push(ids, t->unk_id);
        }
    }
    cge__free(ends);
    cge__free(best);
    cge__free(from);
    cge__free(tok);
    return st;
}

/* ==== SentencePiece BPE ======================================================================== */

struct spair {
    float score;
    int32_t left, right;
    uint32_t size;
};

static int spair_before(const struct spair *a, const struct spair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

struct pheap {
    struct spair *h;
    size_t n, cap;
};

static enum cge_status pheap_push(struct pheap *q, struct spair e) {
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        struct spair *nh = cge__realloc(q->h, nc * sizeof *nh);
        if (!nh) return cge__err(CGE_ERR_NOMEM, "SentencePiece BPE: out of memory");
        q->h = nh;
        q->cap = nc;
    }
    size_t i = q->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spair_before(&e, &q->h[p])) break;
        q->h[i] = q->h[p];
        i = p;
    }
    q->h[i] = e;
    return CGE_OK;
}

static struct spair pheap_pop(struct pheap *q) {
    struct spair top = q->h[0], last = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct spair *best = &last;
        if (l < q->n && spair_before(&q->h[l], best)) {
            m = l;
            best = &q->h[l];
        }
        if (r < q->n && spair_before(&q->h[r], best)) m = r;
        if (m == i) break;
        q->h[i] = q->h[m];
        i = m;
    }
    if (q->n) q->h[i] = last;
    return top;
}

struct ssym {
    uint32_t off, len;
    int32_t prev, next;
    int freeze;
};

/* An id that BPE may merge into: normal, user-defined or unused pieces (model_interface.cc). */
static int32_t spm_piece(const struct cge_tokenizer *t, const char *s, size_t n) {
    int32_t id = smap_get(&t->vocab, s, n);
    if (id < 0) return -1;
    uint8_t ty = t->type[id];
    return ty == SPM_NORMAL || ty == SPM_USER_DEFINED || ty == SPM_UNUSED ? id : -1;
}

static enum cge_status spm_add_pair(const struct cge_tokenizer *t, const char *s,
                                    const struct ssym *sy, int32_t l, int32_t r, struct pheap *q) {
    if (l < 0 || r < 0 || sy[l].freeze || sy[r].freeze) return CGE_OK;
    size_t size = sy[l].len + sy[r].len;
    int32_t id = spm_piece(t, s + sy[l].off, size);
    if (id < 0) return CGE_OK;
    return pheap_push(q, (struct spair){(float)t->score[id], l, r, (uint32_t)size});
}

static enum cge_status spm_bpe(const struct cge_tokenizer *t, const char *s, size_t n,
                               struct ivec *ids) {
    if (!n) return CGE_OK;
    struct ssym *sy = cge__malloc(n * sizeof *sy);
    struct pheap q = {0};
    enum cge_status st = CGE_OK;
    if (!sy) return cge__err(CGE_ERR_NOMEM, "SentencePiece BPE: out of memory");
    size_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        int freeze = 0;
        if (t->user_defined.val) {
            /* Longest user-defined symbol at i. */
            uint64_t node = 0, child;
            for (size_t j = i; j < n; j++) {
                if (!umap_get(&t->user_defined.edges, (node << 8) | (unsigned char)s[j], &child)) break;
                node = child;
                if (t->user_defined.val[node] >= 0) len = j + 1 - i;
            }
            freeze = len > 0;
        }
        if (!len) {
            len = (size_t)utf8_len((unsigned char)s[i]);
            if (len > n - i) len = n - i;
        }
        sy[ns] = (struct ssym){(uint32_t)i, (uint32_t)len, (int32_t)ns - 1, 0, freeze};
        ns++;
        i += len;
    }
    for (size_t i = 0; i < ns; i++) sy[i].next = i + 1 < ns ? (int32_t)i + 1 : -1;
    for (size_t i = 1; i < ns && !st; i++) st = spm_add_pair(t, s, sy, (int32_t)i - 1, (int32_t)i, &q);
    while (q.n && !st) {
        struct spair top = pheap_pop(&q);
        struct ssym *L = &sy[top.left], *R = &sy[top.right];
        if (!L->len || !R->len || L->len + R->len != top.size) continue;
        L->len += R->len;
        L->next = R->next;
        if (R->next >= 0) sy[R->next].prev = top.left;
        R->len = 0;
        st = spm_add_pair(t, s, sy, L->prev, top.left, &q);
        if (!st) st = spm_add_pair(t, s, sy, top.left, L->next, &q);
    }
    int prev_unk = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0 && !st; i = sy[i].next) {
        int32_t id = smap_get(&t->vocab, s + sy[i].off, sy[i].len);
        if (id < 0 || t->type[id] == SPM_UNKNOWN) {
            if (t->byte_fallback) {
                for (uint32_t k = 0; k < sy[i].len && !st; k++) {
                    int32_t b = t->byte_piece[(unsigned char)s[sy[i].off + k]];
                    st = iv_push(ids, b >= 0 ? b : t->unk_id);
                }
                prev_unk = 0;
                continue;
            }
            if (!prev_unk) st = iv_push(ids, t->unk_id);
            prev_unk = 1;
            continue;
        }
        prev_unk = 0;
        st = iv_push(ids, id);
    }
    cge__free(sy);
    cge__free(q.h);
    return st;
}

/* ==== dispatch ================================================================================== */

enum cge_status model_encode(const struct cge_tokenizer *t, const char *s, size_t n,
                             struct ivec *ids) {
    switch (t->model) {
    case MODEL_WORDPIECE:
        return wordpiece(t, s, n, ids);
    case MODEL_BPE:
        return bpe(t, s, n, ids);
    case MODEL_UNIGRAM:
        return unigram(t, s, n, ids);
    case MODEL_SPM_BPE:
        return spm_bpe(t, s, n, ids);
    }
    return cge__err(CGE_ERR_UNSUPPORTED, "tokenizer: unknown model kind %d", (int)t->model);
}

enum cge_status model_finish(struct cge_tokenizer *t) {
    char tmp[64];
    for (int b = 0; b < 256; b++) {
        snprintf(tmp, sizeof tmp, "<0x%02X>", b);
        t->byte_piece[b] = smap_get(&t->vocab, tmp, strlen(tmp));
        t->byte_id[b] = t->byte_eow_id[b] = -1;
    }
    if (t->model == MODEL_BPE && t->byte_level) {
        for (int b = 0; b < 256; b++) {
            uint8_t u[8];
            int32_t c = bytelevel_char((unsigned char)b);
            int k = c < 0x80 ? (u[0] = (uint8_t)c, 1) : (u[0] = (uint8_t)(0xC0 | (c >> 6)), u[1] = (uint8_t)(0x80 | (c & 0x3F)), 2);
            t->byte_id[b] = smap_get(&t->vocab, (const char *)u, (size_t)k);
            if (t->eow_suffix_len && t->eow_suffix_len < 32) {
                memcpy(tmp, u, (size_t)k);
                memcpy(tmp + k, t->eow_suffix, t->eow_suffix_len);
                t->byte_eow_id[b] = smap_get(&t->vocab, tmp, (size_t)k + t->eow_suffix_len);
            }
        }
    }
    if (t->model == MODEL_WORDPIECE && t->unk_id < 0)
        return cge__err(CGE_ERR_TOKENIZE, "WordPiece: the unk_token is not in the vocabulary");
    if ((t->model == MODEL_UNIGRAM || t->model == MODEL_SPM_BPE) && !t->score)
        return cge__err(CGE_ERR_TOKENIZE, "tokenizer: scores missing");
    if ((t->model == MODEL_UNIGRAM || t->model == MODEL_SPM_BPE) &&
        (t->unk_id < 0 || t->unk_id >= t->n_vocab))
        return cge__err(CGE_ERR_TOKENIZE, "tokenizer: unk id %d outside the vocabulary", t->unk_id);
    if (t->model == MODEL_SPM_BPE && !t->type)
        return cge__err(CGE_ERR_TOKENIZE, "tokenizer: piece types missing");
    return CGE_OK;
}
