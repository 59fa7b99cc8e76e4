/*
 * tokenizer.h: Hugging Face tokenizer.json and SentencePiece .model tokenizers.
 *
 * A loaded tokenizer is read-only and every function here is thread-safe.
 * Ids are int32. Text is UTF-8; invalid UTF-8 is an error (CGE_ERR_TOKENIZE), never a crash.
 *
 * Supported (the twelve models' files and more): normalizers BertNormalizer, NFC/NFD/NFKC/NFKD,
 * Lowercase (Rust char::to_lowercase), StripAccents, Replace, Prepend, Strip, Precompiled,
 * Sequence; pre-tokenizers BertPreTokenizer, ByteLevel, Whitespace, WhitespaceSplit, Metaspace,
 * Split, Punctuation, Digits, Sequence; models WordPiece, BPE (ranks, byte-level, suffix, prefix,
 * byte fallback), Unigram; post-processors BertProcessing, RobertaProcessing, TemplateProcessing,
 * ByteLevel, Sequence; SentencePiece .model (Unigram, BPE with byte fallback). Added tokens are
 * always recognised in the text (HF's default), with or without add_special. The "truncation"
 * and "padding" sections of a tokenizer.json are ignored: callers pass max_len / pad_to.
 * Not supported (a clear CGE_ERR_UNSUPPORTED at load): WordLevel, BPE dropout, ignore_merges.
 * The reference for tokenizer.json is Hugging Face's Rust tokenizers library (what transformers'
 * fast tokenizers run), Unicode tables included (unicode_rust.c); test_text_rust and
 * test_text_rust_unicode compare with it id for id. For .model files it is SentencePiece.
 */
#ifndef CGE_TEXT_TOKENIZER_H
#define CGE_TEXT_TOKENIZER_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

struct cge_tokenizer;

/* Loads a tokenizer.json, a SentencePiece .model file, or a model folder (tokenizer.json if
 * present, else tokenizer.model / spiece.model with tokenizer_config.json's add_bos_token and
 * add_eos_token deciding the special tokens; without a config, BPE models add BOS as Llama does
 * and Unigram models append EOS as T5 does). In a folder, the .model's control and unknown pieces
 * are recognised in the text as transformers does; a bare .model file adds and recognises no
 * special tokens, as SentencePiece's encode() does. On failure *out is NULL and cge_errmsg()
 * names the file and the component. */
enum cge_status cge_tokenizer_load(const char *path, struct cge_tokenizer **out);
void cge_tokenizer_free(struct cge_tokenizer *t);

/* Encodes text (len bytes) to ids. add_special: add the post-processor's special tokens (HF
 * add_special_tokens=True). max_len > 0 truncates as HF does for one sequence: the content is
 * cut from the right to max_len minus the number of special tokens, which are kept;
 * *truncated (may be NULL) is set to 1 when that happened. *ids is allocated with cge__malloc
 * and owned by the caller. */
enum cge_status cge_tokenizer_encode(const struct cge_tokenizer *t, const char *text, size_t len,
                                     int add_special, int64_t max_len, int32_t **ids, int64_t *n,
                                     int *truncated);
/* A padded batch: row i holds lengths[i] real ids then pad ids; mask is 1 on real ids, 0 on
 * padding (right padding, as HF does for these models). All arrays are owned by the batch. */
struct cge_token_batch {
    int64_t n_seq;   /* number of rows */
    int64_t seq_len; /* columns: the longest row, or pad_to */
    int32_t *ids;    /* (n_seq, seq_len) */
    int32_t *mask;   /* (n_seq, seq_len) attention mask */
    int64_t *lengths; /* (n_seq) real ids per row */
};
/* Encodes n texts (texts[i] of lens[i] bytes) like cge_tokenizer_encode, then pads every row to
 * the longest (pad_to <= 0) or to pad_to (which must be >= the longest row) with
 * cge_tokenizer_pad_id (0 when the tokenizer has none). On failure *out is zeroed and the
 * message names the text's index. Free with cge_token_batch_deinit. */
enum cge_status cge_tokenizer_encode_batch(const struct cge_tokenizer *t, const char *const *texts,
                                           const size_t *lens, int64_t n, int add_special,
                                           int64_t max_len, int64_t pad_to,
                                           struct cge_token_batch *out);
void cge_token_batch_deinit(struct cge_token_batch *b);
/* Size of the vocabulary including added tokens (the largest id + 1). */
int64_t cge_tokenizer_vocab_size(const struct cge_tokenizer *t);
/* Id of a token string (vocabulary or added token), -1 if absent. */
int32_t cge_tokenizer_token_to_id(const struct cge_tokenizer *t, const char *token);
/* Id used for padding (-1 if the tokenizer has none). */
int32_t cge_tokenizer_pad_id(const struct cge_tokenizer *t);
/* Decodes ids to text for debugging (NUL-terminated, cge__free it). */
enum cge_status cge_tokenizer_decode(const struct cge_tokenizer *t, const int32_t *ids, int64_t n,
                                     int skip_special, char **out);

#endif /* CGE_TEXT_TOKENIZER_H */
