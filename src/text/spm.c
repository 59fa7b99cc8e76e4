/*
 * spm.c: reads a SentencePiece .model file (the ModelProto protobuf) into a struct
 * cge_tokenizer: pieces with scores and types, the trainer's model type (Unigram or BPE) and
 * byte fallback, and the normalizer spec (precompiled charsmap, dummy prefix, whitespace rules).
 *
 * Key decision: a minimal protobuf reader for exactly the fields SentencePiece uses, every
 * length and varint bounds-checked against the buffer, unknown fields skipped by wire type as
 * protobuf requires; a truncated or corrupt file is CGE_ERR_TOKENIZE with the byte offset.
 * Field numbers are those of sentencepiece_model.proto.
 */
#include "text/text_internal.h"

#include <math.h>
#include <string.h>

struct pb {
    const unsigned char *p, *end, *base;
};

static int pb_varint(struct pb *b, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return 0;
        unsigned char c = *b->p++;
        x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* Reads a key; returns 0 at the end, -1 on error. */
static int pb_key(struct pb *b, uint32_t *field, int *wire) {
    if (b->p >= b->end) return 0;
    uint64_t k;
    if (!pb_varint(b, &k) || (k >> 3) == 0 || (k >> 3) > 0x1FFFFFFF) return -1;
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return 1;
}

static int pb_bytes(struct pb *b, const unsigned char **p, size_t *n) {
    uint64_t len;
    if (!pb_varint(b, &len) || len > (uint64_t)(b->end - b->p)) return 0;
    *p = b->p;
    *n = (size_t)len;
    b->p += len;
    return 1;
}

static int pb_skip(struct pb *b, int wire) {
    uint64_t v;
    const unsigned char *p;
    size_t n;
    switch (wire) {
    case 0:
        return pb_varint(b, &v);
    case 1:
        if (b->end - b->p < 8) return 0;
        b->p += 8;
        return 1;
    case 2:
        return pb_bytes(b, &p, &n);
    case 5:
        if (b->end - b->p < 4) return 0;
        b->p += 4;
        return 1;
    default:
        return 0; /* groups (3, 4) are not used by SentencePiece */
    }
}

struct spm_piece {
    const unsigned char *s;
    size_t len;
    float score;
    int type;
};

struct spm_spec {
    int model_type; /* 1 Unigram, 2 BPE, 3 word, 4 char */
    int byte_fallback, ws_suffix;
    int64_t unk_id, bos_id, eos_id, pad_id;
    const unsigned char *cmap;
    size_t cmap_len;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
};

#define PB_FAIL(what) return cge__err(CGE_ERR_TOKENIZE, "%s: corrupt .model: %s at byte %zu", name, what, (size_t)(b.p - b.base))

static enum cge_status parse_piece(const unsigned char *p, size_t n, const unsigned char *base,
                                   struct spm_piece *out, const char *name) {
    struct pb b = {p, p + n, base};
    out->s = (const unsigned char *)"";
    out->len = 0;
    out->score = 0;
    out->type = SPM_NORMAL;
    uint32_t f;
    int w, r;
    while ((r = pb_key(&b, &f, &w)) > 0) {
        if (f == 1 && w == 2) {
            if (!pb_bytes(&b, &out->s, &out->len)) PB_FAIL("piece string");
        } else if (f == 2 && w == 5) {
            if (b.end - b.p < 4) PB_FAIL("piece score");
            uint32_t u = (uint32_t)b.p[0] | (uint32_t)b.p[1] << 8 | (uint32_t)b.p[2] << 16 | (uint32_t)b.p[3] << 24;
            memcpy(&out->score, &u, 4);
            b.p += 4;
        } else if (f == 3 && w == 0) {
            uint64_t v;
            if (!pb_varint(&b, &v)) PB_FAIL("piece type");
            out->type = (int)v;
        } else if (!pb_skip(&b, w)) {
            PB_FAIL("piece field");
        }
    }
    if (r < 0) PB_FAIL("piece key");
    if (!isfinite(out->score)) PB_FAIL("non-finite score");
    if (out->type < SPM_NORMAL || out->type > SPM_BYTE) PB_FAIL("unknown piece type");
    return CGE_OK;
}

static enum cge_status parse_trainer(const unsigned char *p, size_t n, const unsigned char *base,
                                     struct spm_spec *s, const char *name) {
    struct pb b = {p, p + n, base};
    uint32_t f;
    int w, r;
    while ((r = pb_key(&b, &f, &w)) > 0) {
        uint64_t v;
        if (w == 0 && (f == 3 || f == 24 || f == 35 || (f >= 40 && f <= 43))) {
            if (!pb_varint(&b, &v)) PB_FAIL("trainer field");
            int64_t sv = (int64_t)(int32_t)(uint32_t)v; /* int32 fields: negatives are 10 bytes */
            if (f == 3) s->model_type = (int)v;
            else if (f == 24) s->ws_suffix = v != 0;
            else if (f == 35) s->byte_fallback = v != 0;
            else if (f == 40) s->unk_id = sv;
            else if (f == 41) s->bos_id = sv;
            else if (f == 42) s->eos_id = sv;
            else s->pad_id = sv;
        } else if (!pb_skip(&b, w)) {
            PB_FAIL("trainer field");
        }
    }
    if (r < 0) PB_FAIL("trainer key");
    return CGE_OK;
}

static enum cge_status parse_normspec(const unsigned char *p, size_t n, const unsigned char *base,
                                      struct spm_spec *s, const char *name) {
    struct pb b = {p, p + n, base};
    uint32_t f;
    int w, r;
    while ((r = pb_key(&b, &f, &w)) > 0) {
        uint64_t v;
        if (f == 2 && w == 2) {
            if (!pb_bytes(&b, &s->cmap, &s->cmap_len)) PB_FAIL("charsmap");
        } else if (w == 0 && f >= 3 && f <= 5) {
            if (!pb_varint(&b, &v)) PB_FAIL("normalizer flag");
            if (f == 3) s->add_dummy_prefix = v != 0;
            else if (f == 4) s->remove_extra_ws = v != 0;
            else s->escape_ws = v != 0;
        } else if (!pb_skip(&b, w)) {
            PB_FAIL("normalizer field");
        }
    }
    if (r < 0) PB_FAIL("normalizer key");
    return CGE_OK;
}

enum cge_status tok_load_spm(struct cge_tokenizer *t, const void *data, size_t len,
                             const char *name) {
    const unsigned char *base = data;
    struct pb b = {base, base + len, base};
    struct spm_spec spec = {1, 0, 0, 0, 1, 2, -1, NULL, 0, 1, 1, 1};
    size_t n_pieces = 0;
    uint32_t f;
    int w, r;
    /* Pass 1: count pieces, read the specs. */
    while ((r = pb_key(&b, &f, &w)) > 0) {
        const unsigned char *p;
        size_t n;
        if (w == 2 && f <= 3) {
            if (!pb_bytes(&b, &p, &n)) PB_FAIL("truncated field");
            enum cge_status st = CGE_OK;
            if (f == 1) n_pieces++;
            else if (f == 2) st = parse_trainer(p, n, base, &spec, name);
            else st = parse_normspec(p, n, base, &spec, name);
            if (st) return st;
        } else if (!pb_skip(&b, w)) {
            PB_FAIL("field");
        }
    }
    if (r < 0) PB_FAIL("key");
    if (!n_pieces) return cge__err(CGE_ERR_TOKENIZE, "%s: .model has no pieces", name);
    if (n_pieces > 16 * 1024 * 1024) return cge__err(CGE_ERR_TOKENIZE, "%s: too many pieces", name);
    if (spec.model_type != 1 && spec.model_type != 2)
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: SentencePiece model type %d (only Unigram and BPE)",
                        name, spec.model_type);
    if (spec.ws_suffix)
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: treat_whitespace_as_suffix is not supported", name);
    enum cge_status st = tok_vocab_alloc(t, (int64_t)n_pieces);
    if (st) return st;
    t->score = cge__calloc(n_pieces, sizeof *t->score);
    t->type = cge__calloc(n_pieces, 1);
    if (!t->score || !t->type) return cge__err(CGE_ERR_NOMEM, "%s: out of memory", name);
    t->model = spec.model_type == 1 ? MODEL_UNIGRAM : MODEL_SPM_BPE;
    t->byte_fallback = spec.byte_fallback;
    t->fuse_unk = 1;
    t->spm_user_defined_score = 1;
    t->min_score = INFINITY;
    t->max_score = -INFINITY;
    /* Pass 2: the pieces. */
    b.p = base;
    size_t id = 0;
    while (!st && (r = pb_key(&b, &f, &w)) > 0) {
        const unsigned char *p;
        size_t n;
        if (w != 2 || f != 1) {
            if (!pb_skip(&b, w)) PB_FAIL("field");
            continue;
        }
        if (!pb_bytes(&b, &p, &n)) PB_FAIL("truncated piece");
        struct spm_piece pc;
        st = parse_piece(p, n, base, &pc, name);
        if (st) break;
        if (utf8_validate((const char *)pc.s, pc.len)) {
            st = cge__err(CGE_ERR_TOKENIZE, "%s: piece %zu is not UTF-8", name, id);
            break;
        }
        st = tok_set_token(t, (int64_t)id, (const char *)pc.s, pc.len);
        if (st) break;
        t->score[id] = pc.score;
        t->type[id] = (uint8_t)pc.type;
        if (smap_get(&t->vocab, t->tok[id], t->tok_len[id]) < 0)
            st = smap_put(&t->vocab, t->tok[id], t->tok_len[id], (int32_t)id);
        if (pc.type == SPM_NORMAL) {
            if (pc.score < t->min_score) t->min_score = pc.score;
            if (pc.score > t->max_score) t->max_score = pc.score;
        }
        if (!st && pc.len && (pc.type == SPM_NORMAL || pc.type == SPM_USER_DEFINED) &&
            t->model == MODEL_UNIGRAM)
            st = trie_insert(&t->pieces, t->tok[id], t->tok_len[id], (int32_t)id);
        if (!st && pc.len && pc.type == SPM_USER_DEFINED && t->model == MODEL_SPM_BPE)
            st = trie_insert(&t->user_defined, t->tok[id], t->tok_len[id], (int32_t)id);
        if (pc.type == SPM_UNKNOWN) t->unk_id = (int32_t)id;
        id++;
    }
    if (st) return st;
    if (t->min_score == INFINITY) t->min_score = t->max_score = 0;
    if (t->model == MODEL_UNIGRAM && !t->pieces.val) st = trie_insert(&t->pieces, "", 0, -1);
    if (!st && t->unk_id < 0) st = cge__err(CGE_ERR_TOKENIZE, "%s: no piece of type UNKNOWN", name);
    if (st) return st;
    if (spec.bos_id >= 0 && spec.bos_id < (int64_t)n_pieces) t->bos_id = (int32_t)spec.bos_id;
    if (spec.eos_id >= 0 && spec.eos_id < (int64_t)n_pieces) t->eos_id = (int32_t)spec.eos_id;
    if (spec.pad_id >= 0 && spec.pad_id < (int64_t)n_pieces) t->pad_id = (int32_t)spec.pad_id;
    /* The normalizer. */
    t->normalizer = cge__calloc(1, sizeof *t->normalizer);
    if (!t->normalizer) return cge__err(CGE_ERR_NOMEM, "%s: out of memory", name);
    t->normalizer->kind = NORM_SPM;
    t->normalizer->add_dummy_prefix = spec.add_dummy_prefix;
    t->normalizer->remove_extra_ws = spec.remove_extra_ws;
    t->normalizer->escape_ws = spec.escape_ws;
    if (spec.cmap_len) {
        st = charsmap_init(&t->normalizer->cmap, spec.cmap, spec.cmap_len);
        if (st) return cge__err(st, "%s: %s", name, cge_errmsg());
        t->normalizer->has_cmap = 1;
    }
    t->decoder = DEC_SPM;
    return model_finish(t);
}
