/*
 * text_internal.h: the pieces of a tokenizer shared by the files of src/text/.
 *
 * A tokenizer is the Hugging Face pipeline, flattened into plain structs:
 *   added tokens → normalizer → pre-tokenizer → model → post-processor.
 * Offsets are never needed by cge (models only take ids), so every stage works on plain byte
 * strings and lists of spans; this keeps each stage a simple loop over bytes. Unicode facts
 * (categories, case, normalization forms, grapheme clusters) come from utf8proc and regexes from
 * PCRE2, never from hand-written tables.
 */
#ifndef CGE_TEXT_INTERNAL_H
#define CGE_TEXT_INTERNAL_H

#include "core/core.h"
#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* The longest text one encode call accepts (bytes); longer input is CGE_ERR_INPUT_TOO_LONG. */
#define TOK_MAX_TEXT ((size_t)256 << 20)

/* ==== small containers (tok_util.c) ========================================================== */

/* Growable byte string (not NUL-terminated unless sb_cstr is called). */
struct sbuf {
    char *p;
    size_t n, cap;
};
enum cge_status sb_reserve(struct sbuf *b, size_t extra);
enum cge_status sb_put(struct sbuf *b, const void *s, size_t n);
enum cge_status sb_putc(struct sbuf *b, char c);
enum cge_status sb_put_cp(struct sbuf *b, int32_t cp); /* UTF-8 encodes one code point */
void sb_free(struct sbuf *b);

/* Growable int32 list. */
struct ivec {
    int32_t *p;
    size_t n, cap;
};
enum cge_status iv_push(struct ivec *v, int32_t x);
void iv_free(struct ivec *v);

/* A piece of a pre-tokenized string: bytes [off, off+len) of a buffer. */
struct span {
    uint32_t off, len;
};
struct spans {
    struct span *p;
    size_t n, cap;
};
enum cge_status sp_push(struct spans *v, size_t off, size_t len);
void sp_free(struct spans *v);

/* String → int32 map (open addressing). Keys are not owned: they must outlive the map. */
struct smap_ent {
    const char *s;
    uint32_t len;
    int32_t val;
};
struct smap {
    struct smap_ent *e;
    size_t mask, n;
};
enum cge_status smap_put(struct smap *m, const char *s, size_t len, int32_t val);
/* Returns the value, or -1 when absent. */
int32_t smap_get(const struct smap *m, const char *s, size_t len);
void smap_free(struct smap *m);

/* uint64 → uint64 map (open addressing; the key UINT64_MAX is reserved). */
struct umap {
    uint64_t *k, *v;
    size_t mask, n;
};
enum cge_status umap_put(struct umap *m, uint64_t key, uint64_t val);
/* 1 and *val when present, else 0. */
int umap_get(const struct umap *m, uint64_t key, uint64_t *val);
void umap_free(struct umap *m);

/* Chunked string arena: strings live until the arena is freed. */
struct arena {
    struct arena_chunk *head;
};
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_free(struct arena *a);

/* Prefix trie over bytes, stored as a hash of edges ((node << 8) | byte → child). Node 0 is the
 * root. val[node] is the id of the piece ending there, or -1. */
struct trie {
    struct umap edges;
    int32_t *val;
    size_t n_nodes, cap;
};
enum cge_status trie_insert(struct trie *t, const char *s, size_t len, int32_t id);
void trie_free(struct trie *t);

/* ==== UTF-8 and Unicode (tok_util.c) ========================================================= */

/* Decodes one code point at s[0..n); returns its length (>= 1) or -1 when invalid. */
int utf8_decode(const char *s, size_t n, int32_t *cp);
/* Length of the UTF-8 sequence starting with lead byte c (1 for bytes that are not a lead). */
static inline int utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}
/* Checks the whole string; on failure returns CGE_ERR_TOKENIZE with the byte offset. */
enum cge_status utf8_validate(const char *s, size_t n);
int uni_is_whitespace(int32_t c);  /* Rust char::is_whitespace (the White_Space property) */
int uni_is_punctuation(int32_t c); /* categories P* */
/* The Rust library's own Unicode reading, where it differs from utf8proc/PCRE2 (unicode_rust.c). */
int uni_is_bert_punct(int32_t c);  /* ASCII punctuation or P* (HF BertPreTokenizer) */
int uni_is_control_other(int32_t c); /* Cc Cf Co other than \t \n \r; not Cn (BertNormalizer) */
int uni_is_bert_mn(int32_t c);     /* nonspacing mark (BertNormalizer strip_accents) */
int32_t uni_lower_extra(int32_t c); /* lowercase pairs newer than utf8proc's; -1: none */
int uni_grapheme_extend_extra(int32_t c); /* extends a grapheme cluster only for the Rust library */
int uni_nf_barrier(int32_t c);      /* no mapping, class 0 in the Rust library's NFC/NFD data */
/* Appends the extra ranges of \p{L} (kind 'L') or \p{N} ('N') as PCRE2 class items. */
struct sbuf;
enum cge_status uni_regex_extra(struct sbuf *out, char kind);
int uni_is_chinese(int32_t c);     /* HF BertNormalizer's CJK blocks */
int uni_is_mn(int32_t c);          /* nonspacing mark */
int uni_is_alnum(int32_t c);       /* letter or number */
/* Appends Rust char::to_lowercase(c) (full mapping: U+0130 gives two code points). */
enum cge_status uni_lower(struct sbuf *out, int32_t c);
/* Unicode normalization of s[0..n) appended to out; form: 'C','D','c' (NFKC),'d' (NFKD). */
enum cge_status uni_normalize(const char *s, size_t n, int form, struct sbuf *out);

/* ==== regex (pretokenize.c) =================================================================== */

struct regex {
    pcre2_code *code;
};
enum cge_status regex_compile(struct regex *r, const char *pattern, size_t len, int literal);
void regex_free(struct regex *r);
/* Finds all non-overlapping matches in s[0..n), appending (start,len) spans. */
enum cge_status regex_find_all(const struct regex *r, const char *s, size_t n, struct spans *out);

/* ==== normalizers (normalize.c) =============================================================== */

enum norm_kind {
    NORM_BERT = 1, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWER, NORM_STRIP_ACCENTS,
    NORM_REPLACE, NORM_PREPEND, NORM_STRIP, NORM_PRECOMPILED, NORM_SEQUENCE, NORM_SPM
};

/* SentencePiece's Darts double-array trie of a precompiled charsmap. */
struct charsmap {
    const uint32_t *units; /* (n_units) little-endian double array; points into blob */
    size_t n_units;
    const char *normalized; /* (n_norm) NUL-separated replacement strings; points into blob */
    size_t n_norm;
    char *blob; /* owned copy of the charsmap bytes */
};

struct normalizer {
    enum norm_kind kind;
    /* NORM_BERT */
    int clean_text, handle_chinese, strip_accents, lowercase;
    /* NORM_REPLACE: pattern → content; NORM_PREPEND: content */
    struct regex re;
    char *content;
    size_t content_len;
    /* NORM_STRIP */
    int strip_left, strip_right;
    /* NORM_PRECOMPILED, NORM_SPM */
    struct charsmap cmap;
    int has_cmap;
    /* NORM_SPM: NormalizerSpec flags */
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    /* NORM_SEQUENCE */
    struct normalizer **sub;
    size_t n_sub;
};

void normalizer_free(struct normalizer *n);
/* Normalizes s[0..n) into out (out is reset first). */
enum cge_status normalize(const struct normalizer *nm, const char *s, size_t n, struct sbuf *out);
/* Parses a charsmap blob (copied). */
enum cge_status charsmap_init(struct charsmap *c, const void *blob, size_t len);
void charsmap_free(struct charsmap *c);

/* ==== pre-tokenizers (pretokenize.c) ========================================================== */

enum pretok_kind {
    PRE_BERT = 1, PRE_BYTELEVEL, PRE_WHITESPACE, PRE_WHITESPACE_SPLIT, PRE_METASPACE, PRE_SPLIT,
    PRE_PUNCTUATION, PRE_DIGITS, PRE_SEQUENCE
};
enum split_behavior { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT,
                      SPLIT_CONTIGUOUS };
enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

struct pretok {
    enum pretok_kind kind;
    /* PRE_BYTELEVEL */
    int add_prefix_space, use_regex;
    /* PRE_SPLIT (and the regexes of BYTELEVEL / WHITESPACE) */
    struct regex re;
    enum split_behavior behavior;
    int invert;
    /* PRE_METASPACE */
    char replacement[8];
    size_t replacement_len;
    enum prepend_scheme prepend;
    int split;
    /* PRE_DIGITS */
    int individual_digits;
    /* PRE_SEQUENCE */
    struct pretok **sub;
    size_t n_sub;
};
void pretok_free(struct pretok *p);
/* Splits the pieces of `in` (spans of in_buf) into out_buf/out. `first` says whether in's first
 * piece starts the text (Metaspace prepend_scheme "first"). */
enum cge_status pretokenize(const struct pretok *p, const char *in_buf, const struct spans *in,
                            int first, struct sbuf *out_buf, struct spans *out);

/* ==== models (models.c) ======================================================================= */

enum model_kind { MODEL_WORDPIECE = 1, MODEL_BPE, MODEL_UNIGRAM, MODEL_SPM_BPE };

/* SentencePiece piece types (sentencepiece_model.proto). */
enum spm_type { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4,
                SPM_UNUSED = 5, SPM_BYTE = 6 };

struct added_token {
    char *content; /* as written in the file */
    size_t len;
    char *norm; /* content after the normalizer (normalized tokens only) */
    size_t norm_len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
};

/* One element of a post-processing template for a single sequence. */
struct tmpl_item {
    int is_seq;     /* 1: the sequence A; 0: special ids */
    int32_t *ids;   /* (n_ids) */
    size_t n_ids;
};

enum decoder_kind { DEC_NONE = 0, DEC_WORDPIECE, DEC_BYTELEVEL, DEC_METASPACE, DEC_BPE_SUFFIX,
                    DEC_SPM };

struct cge_tokenizer {
    struct arena strings; /* every token string */

    /* vocabulary: id → string; string → id */
    char **tok;        /* (n_vocab) NULL for holes */
    uint32_t *tok_len; /* (n_vocab) */
    double *score;     /* (n_vocab) Unigram / SentencePiece scores as read (f64 JSON, f32 proto) */
    uint8_t *type;     /* (n_vocab) enum spm_type for .model files, else NULL */
    int64_t n_vocab;   /* largest id + 1, added tokens included */
    struct smap vocab; /* model vocabulary */

    enum model_kind model;
    int32_t unk_id;           /* -1: none */
    char *cont_prefix;        /* WordPiece / BPE continuing_subword_prefix ("" if none) */
    size_t cont_prefix_len;
    char *eow_suffix;         /* BPE end_of_word_suffix */
    size_t eow_suffix_len;
    int max_chars_per_word;   /* WordPiece */
    int byte_fallback, fuse_unk;
    int byte_level;           /* the pre-tokenizer ends with ByteLevel: BPE sees raw bytes */
    int32_t byte_id[256];     /* byte-level: id of the mapped character of each byte */
    int32_t byte_eow_id[256]; /* byte-level: id of that character + eow_suffix */
    int32_t byte_piece[256];  /* byte fallback: id of "<0xXX>" */
    struct umap merges;       /* BPE: (left id << 32 | right id) → (rank << 32 | new id) */
    struct trie pieces;       /* Unigram: trie of pieces */
    double min_score, max_score;
    int spm_user_defined_score; /* from a .model: SentencePiece's float arithmetic and its
                                   user-defined piece score len*max-0.1 */
    struct trie user_defined;   /* SPM BPE: user-defined symbols, matched whole */

    struct normalizer *normalizer; /* NULL: none */
    struct pretok *pretok;         /* NULL: none */

    struct added_token *added; /* (n_added) */
    size_t n_added;
    int any_added_raw, any_added_norm;
    /* Added-token index per kind (0: matched raw, 1: normalized): indices into `added`, grouped
     * by first byte; the group of byte c is added_idx[k][added_first[k][c] .. [c + 1]). */
    uint32_t *added_idx[2];
    uint32_t added_first[2][257];

    struct tmpl_item *tmpl; /* (n_tmpl) single-sequence template; NULL: no special tokens */
    size_t n_tmpl;
    int n_special;          /* special ids the template adds */

    enum decoder_kind decoder;
    char *dec_prefix; /* WordPiece "##" / Metaspace replacement / BPE suffix */
    size_t dec_prefix_len;
    int32_t pad_id;
    int32_t bos_id, eos_id; /* .model with tokenizer_config: added around the ids; -1: none */
    int add_bos, add_eos;
};

/* Runs the model over one pre-tokenized piece, appending ids. */
enum cge_status model_encode(const struct cge_tokenizer *t, const char *s, size_t n,
                             struct ivec *ids);
/* Builds derived tables (byte ids, merges) once vocab and model fields are set. */
enum cge_status model_finish(struct cge_tokenizer *t);
/* GPT-2's byte → code point map. */
int32_t bytelevel_char(unsigned char b);

/* ==== loaders ================================================================================== */

enum cge_status tok_vocab_alloc(struct cge_tokenizer *t, int64_t n);
enum cge_status tok_set_token(struct cge_tokenizer *t, int64_t id, const char *s, size_t len);
enum cge_status tok_load_json(struct cge_tokenizer *t, const char *text, size_t len,
                              const char *what);
enum cge_status tok_load_spm(struct cge_tokenizer *t, const void *data, size_t len,
                             const char *what);
void tok_destroy(struct cge_tokenizer *t);
/* Loads a tokenizer.json (json=1) or .model (json=0) held in memory (tests and fuzzers). */
enum cge_status cge__tokenizer_load_mem(const void *data, size_t len, int json,
                                        struct cge_tokenizer **out);

#endif /* CGE_TEXT_INTERNAL_H */
