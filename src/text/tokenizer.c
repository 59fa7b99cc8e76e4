/*
 * tokenizer.c: the public tokenizer API: loading (tokenizer.json, .model, or a model folder),
 * the encode pipeline (added tokens → normalizer → pre-tokenizer → model → template →
 * truncation), decode, and lookups.
 *
 * Key decision: the pipeline follows Hugging Face's AddedVocabulary exactly: tokens marked
 * normalized=false are matched on the raw text first (leftmost-longest), the text between them
 * is normalized, then tokens marked normalized=true are matched on the normalized text, and only
 * what remains reaches the pre-tokenizer and the model. Added tokens are always recognised, with
 * or without add_special (as HF does unless split_special_tokens is set). Encode allocates only
 * per call, so a loaded tokenizer is read-only and shareable across threads.
 */
#include "text/text_internal.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>

/* ==== vocabulary storage ============================================================================ */

enum cge_status tok_vocab_alloc(struct cge_tokenizer *t, int64_t n) {
    if (n < 0 || n > 16 * 1024 * 1024) return cge__err(CGE_ERR_TOKENIZE, "vocabulary of %lld ids", (long long)n);
    t->tok = cge__calloc((size_t)(n ? n : 1), sizeof *t->tok);
    t->tok_len = cge__calloc((size_t)(n ? n : 1), sizeof *t->tok_len);
    if (!t->tok || !t->tok_len) return cge__err(CGE_ERR_NOMEM, "vocabulary: out of memory");
    t->n_vocab = n;
    return CGE_OK;
}

enum cge_status tok_set_token(struct cge_tokenizer *t, int64_t id, const char *s, size_t len) {
    if (id < 0 || id >= t->n_vocab) return cge__err(CGE_ERR_TOKENIZE, "token id %lld out of range", (long long)id);
    char *c = arena_strndup(&t->strings, s, len);
    if (!c) return cge__err(CGE_ERR_NOMEM, "vocabulary: out of memory");
    t->tok[id] = c;
    t->tok_len[id] = (uint32_t)len;
    return CGE_OK;
}

void tok_destroy(struct cge_tokenizer *t) {
    arena_free(&t->strings);
    cge__free(t->tok);
    cge__free(t->tok_len);
    cge__free(t->score);
    cge__free(t->type);
    smap_free(&t->vocab);
    cge__free(t->cont_prefix);
    cge__free(t->eow_suffix);
    umap_free(&t->merges);
    trie_free(&t->pieces);
    trie_free(&t->user_defined);
    normalizer_free(t->normalizer);
    pretok_free(t->pretok);
    cge__free(t->added);
    cge__free(t->added_idx[0]);
    cge__free(t->added_idx[1]);
    for (size_t i = 0; i < t->n_tmpl; i++) cge__free(t->tmpl[i].ids);
    cge__free(t->tmpl);
    cge__free(t->dec_prefix);
}

void cge_tokenizer_free(struct cge_tokenizer *t) {
    if (!t) return;
    tok_destroy(t);
    cge__free(t);
}

/* ==== loading ======================================================================================= */

/* Normalizes the content of normalized added tokens, as HF does when it builds its matcher. */
static enum cge_status finish_added(struct cge_tokenizer *t) {
    struct sbuf b = {0};
    enum cge_status st = CGE_OK;
    for (size_t i = 0; i < t->n_added && !st; i++) {
        struct added_token *a = &t->added[i];
        if (!a->normalized || !t->normalizer) {
            a->norm = a->content;
            a->norm_len = a->len;
        } else {
            st = normalize(t->normalizer, a->content, a->len, &b);
            if (st) break;
            a->norm = arena_strndup(&t->strings, b.p ? b.p : "", b.n);
            a->norm_len = b.n;
            if (!a->norm) st = cge__err(CGE_ERR_NOMEM, "added tokens: out of memory");
        }
        if (a->normalized) t->any_added_norm |= a->norm_len > 0;
        else t->any_added_raw = 1;
    }
    sb_free(&b);
    /* Index both kinds by first byte (a counting sort), so the scan in find_added only looks at
     * the tokens that can start at a given byte. */
    for (int k = 0; k < 2 && !st; k++) {
        memset(t->added_first[k], 0, sizeof t->added_first[k]);
        t->added_idx[k] = cge__malloc((t->n_added ? t->n_added : 1) * sizeof *t->added_idx[k]);
        if (!t->added_idx[k]) {
            st = cge__err(CGE_ERR_NOMEM, "added tokens: out of memory");
            break;
        }
        for (size_t i = 0; i < t->n_added; i++) {
            const struct added_token *a = &t->added[i];
            size_t len = k ? a->norm_len : a->len;
            if (a->normalized == k && len) t->added_first[k][(unsigned char)(k ? a->norm : a->content)[0] + 1]++;
        }
        for (int c = 0; c < 256; c++) t->added_first[k][c + 1] += t->added_first[k][c];
        uint32_t fill[256];
        memcpy(fill, t->added_first[k], sizeof fill);
        for (size_t i = 0; i < t->n_added; i++) {
            const struct added_token *a = &t->added[i];
            size_t len = k ? a->norm_len : a->len;
            if (a->normalized == k && len)
                t->added_idx[k][fill[(unsigned char)(k ? a->norm : a->content)[0]]++] = (uint32_t)i;
        }
    }
    return st;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* In a model folder, transformers' slow SentencePiece tokenizers (Llama, T5) treat the control
 * and unknown pieces (<s>, </s>, <unk>, <pad>) as special added tokens: they are recognised in
 * the text, and each stretch between them is encoded on its own (with its own dummy prefix, the
 * "legacy" behaviour). A bare .model file keeps SentencePiece's behaviour instead. */
static enum cge_status spm_add_specials(struct cge_tokenizer *t) {
    size_t n = 0;
    for (int64_t i = 0; i < t->n_vocab; i++)
        n += t->tok_len[i] && (t->type[i] == SPM_CONTROL || t->type[i] == SPM_UNKNOWN);
    if (!n) return CGE_OK;
    t->added = cge__calloc(n, sizeof *t->added);
    if (!t->added) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory");
    for (int64_t i = 0; i < t->n_vocab; i++) {
        if (!t->tok_len[i] || (t->type[i] != SPM_CONTROL && t->type[i] != SPM_UNKNOWN)) continue;
        struct added_token *a = &t->added[t->n_added++];
        a->content = t->tok[i];
        a->len = t->tok_len[i];
        a->id = (int32_t)i;
        a->special = 1;
    }
    return CGE_OK;
}

static enum cge_status load_file(struct cge_tokenizer *t, const char *path, int folder) {
    char *data;
    size_t len;
    enum cge_status st = cge__read_file(path, (size_t)512 << 20, &data, &len);
    if (st) return st == CGE_ERR_IO ? st : cge__err(st, "%s: %s", path, cge_errmsg());
    /* A .model is a protobuf (its first byte is field 1, wire type 2: 0x0A); JSON opens with
     * whitespace or '{'. */
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    if (ends_with(path, ".json") || (i < len && data[i] == '{'))
        st = tok_load_json(t, data, len, path);
    else
        st = tok_load_spm(t, data, len, path);
    cge__free(data);
    if (!st && folder && t->type) st = spm_add_specials(t);
    if (!st) st = finish_added(t);
    return st;
}

/* Reads add_bos_token / add_eos_token / pad_token of a folder's tokenizer_config.json. */
static enum cge_status apply_config(struct cge_tokenizer *t, const char *dir, int spm) {
    char path[4096];
    if (cge__path_join(path, sizeof path, dir, "tokenizer_config.json")) return CGE_OK;
    if (!cge__file_exists(path)) {
        if (spm && t->type) {
            /* Without a config, follow the model family's usual choice: Llama/Mistral add BOS,
             * T5 appends EOS. We can tell them apart by byte fallback (BPE) vs Unigram. */
            t->add_bos = t->model == MODEL_SPM_BPE && t->bos_id >= 0;
            t->add_eos = t->model == MODEL_UNIGRAM && t->eos_id >= 0;
        }
        return CGE_OK;
    }
    struct cJSON *cfg;
    enum cge_status st = cge__json_read_file(path, &cfg);
    if (st) return cge__err(CGE_ERR_TOKENIZE, "%s: %s", path, cge_errmsg());
    if (spm) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
        t->add_bos = cJSON_IsBool(b) ? cJSON_IsTrue(b) : t->model == MODEL_SPM_BPE;
        t->add_eos = cJSON_IsBool(e) ? cJSON_IsTrue(e) : t->model == MODEL_UNIGRAM;
        if (t->bos_id < 0) t->add_bos = 0;
        if (t->eos_id < 0) t->add_eos = 0;
    }
    if (t->pad_id < 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(cfg, "pad_token");
        const char *ps = cJSON_IsString(p) ? p->valuestring : NULL;
        if (!ps && cJSON_IsObject(p)) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(p, "content");
            ps = cJSON_IsString(c) ? c->valuestring : NULL;
        }
        if (ps) t->pad_id = cge_tokenizer_token_to_id(t, ps);
    }
    cJSON_Delete(cfg);
    return CGE_OK;
}

/* For a .model: the template is [BOS] A [EOS] as the config asks. */
static enum cge_status spm_template(struct cge_tokenizer *t) {
    if (!t->add_bos && !t->add_eos) return CGE_OK;
    size_t n = 1 + (size_t)t->add_bos + (size_t)t->add_eos;
    t->tmpl = cge__calloc(n, sizeof *t->tmpl);
    if (!t->tmpl) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory");
    if (t->add_bos) {
        t->tmpl[t->n_tmpl].ids = cge__malloc(sizeof(int32_t));
        if (!t->tmpl[t->n_tmpl].ids) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory");
        t->tmpl[t->n_tmpl].ids[0] = t->bos_id;
        t->tmpl[t->n_tmpl++].n_ids = 1;
        t->n_special++;
    }
    t->tmpl[t->n_tmpl++].is_seq = 1;
    if (t->add_eos) {
        t->tmpl[t->n_tmpl].ids = cge__malloc(sizeof(int32_t));
        if (!t->tmpl[t->n_tmpl].ids) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory");
        t->tmpl[t->n_tmpl].ids[0] = t->eos_id;
        t->tmpl[t->n_tmpl++].n_ids = 1;
        t->n_special++;
    }
    return CGE_OK;
}

enum cge_status cge__tokenizer_load_mem(const void *data, size_t len, int json,
                                        struct cge_tokenizer **out) {
    *out = NULL;
    struct cge_tokenizer *t = cge__calloc(1, sizeof *t);
    if (!t) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory");
    t->unk_id = t->pad_id = t->bos_id = t->eos_id = -1;
    enum cge_status st = json ? tok_load_json(t, data, len, "(memory)")
                              : tok_load_spm(t, data, len, "(memory)");
    if (!st) st = finish_added(t);
    if (st) {
        cge_tokenizer_free(t);
        return st;
    }
    *out = t;
    return CGE_OK;
}

enum cge_status cge_tokenizer_load(const char *path, struct cge_tokenizer **out) {
    *out = NULL;
    if (!path) return cge__err(CGE_ERR_INVALID_VALUE, "cge_tokenizer_load: path is NULL");
    struct cge_tokenizer *t = cge__calloc(1, sizeof *t);
    if (!t) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory");
    t->unk_id = t->pad_id = t->bos_id = t->eos_id = -1;
    enum cge_status st = CGE_OK;
    if (is_dir(path)) {
        static const char *const names[] = {"tokenizer.json", "tokenizer.model", "spiece.model"};
        char file[4096];
        int found = 0;
        for (size_t i = 0; i < 3 && !found && !st; i++) {
            st = cge__path_join(file, sizeof file, path, names[i]);
            if (!st && cge__file_exists(file)) {
                found = 1;
                st = load_file(t, file, 1);
                if (!st) st = apply_config(t, path, i > 0);
                if (!st && i > 0) st = spm_template(t);
            }
        }
        if (!st && !found)
            st = cge__err(CGE_ERR_MODEL_NOT_FOUND,
                          "%s: no tokenizer.json, tokenizer.model or spiece.model in the folder", path);
    } else if (!cge__file_exists(path)) {
        st = cge__err(CGE_ERR_MODEL_NOT_FOUND, "%s: no such tokenizer file or folder", path);
    } else {
        st = load_file(t, path, 0);
    }
    if (st) {
        cge_tokenizer_free(t);
        return st;
    }
    *out = t;
    return CGE_OK;
}

/* ==== added tokens ================================================================================= */

static int is_word_char(const char *s, size_t n, size_t at, int before) {
    /* The character just before `at` (before=1) or at `at`. */
    if (before) {
        if (at == 0) return 0;
        size_t p = at - 1;
        while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
        at = p;
    } else if (at >= n) {
        return 0;
    }
    int32_t c;
    if (utf8_decode(s + at, n - at, &c) < 0) return 0;
    return c == '_' || uni_is_alnum(c) || (c >= 0x300 && uni_is_mn(c));
}

/* Finds the leftmost-longest added token of the given kind (normalized or not) in s[from..n).
 * On success returns the token index and the [start, end) of the match (after lstrip/rstrip). */
static int find_added(const struct cge_tokenizer *t, int norm, const char *s, size_t n, size_t from,
                      size_t *ms, size_t *me) {
    const uint32_t *first = t->added_first[norm];
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (first[b] == first[b + 1]) continue;
        int best = -1;
        size_t best_len = 0;
        for (uint32_t j = first[b]; j < first[b + 1]; j++) {
            uint32_t k = t->added_idx[norm][j];
            const struct added_token *a = &t->added[k];
            const char *c = norm ? a->norm : a->content;
            size_t cl = norm ? a->norm_len : a->len;
            if (cl > n - i || cl <= best_len || memcmp(c, s + i, cl)) continue;
            best = (int)k;
            best_len = cl;
        }
        if (best < 0) continue;
        const struct added_token *a = &t->added[best];
        size_t a0 = i, b0 = i + best_len;
        if (a->single_word && (is_word_char(s, n, a0, 1) || is_word_char(s, n, b0, 0))) continue;
        if (a->lstrip)
            while (a0 > from) {
                size_t p = a0 - 1;
                while (p > from && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                int32_t c;
                if (utf8_decode(s + p, n - p, &c) < 0 || !uni_is_whitespace(c)) break;
                a0 = p;
            }
        if (a->rstrip)
            while (b0 < n) {
                int32_t c;
                int k = utf8_decode(s + b0, n - b0, &c);
                if (k < 0 || !uni_is_whitespace(c)) break;
                b0 += (size_t)k;
            }
        *ms = a0;
        *me = b0;
        return best;
    }
    return -1;
}

/* ==== encode ======================================================================================== */

struct enc_state {
    struct sbuf norm, pb1, pb2;
    struct spans ps1, ps2;
};

/* Pre-tokenizes and models one normalized stretch without added tokens. */
static enum cge_status encode_plain(const struct cge_tokenizer *t, struct enc_state *e,
                                    const char *s, size_t n, int first, struct ivec *ids) {
    if (!n) return CGE_OK;
    if (!t->pretok) return model_encode(t, s, n, ids);
    e->ps1.n = 0;
    enum cge_status st = sp_push(&e->ps1, 0, n);
    if (!st) st = pretokenize(t->pretok, s, &e->ps1, first, &e->pb2, &e->ps2);
    for (size_t i = 0; i < e->ps2.n && !st; i++)
        st = model_encode(t, e->pb2.p + e->ps2.p[i].off, e->ps2.p[i].len, ids);
    return st;
}

/* Normalizes one raw stretch, splits it on normalized added tokens and encodes the rest. */
static enum cge_status encode_raw(const struct cge_tokenizer *t, struct enc_state *e, const char *s,
                                  size_t n, int first, struct ivec *ids) {
    if (!n) return CGE_OK;
    enum cge_status st = normalize(t->normalizer, s, n, &e->norm);
    if (st) return st;
    /* Copy: the normalized buffer is reused by nested calls. */
    struct sbuf nb = {0};
    st = sb_put(&nb, e->norm.p ? e->norm.p : "", e->norm.n);
    size_t at = 0;
    while (!st && at < nb.n) {
        size_t ms, me;
        int k = t->any_added_norm ? find_added(t, 1, nb.p, nb.n, at, &ms, &me) : -1;
        if (k < 0) {
            st = encode_plain(t, e, nb.p + at, nb.n - at, first && at == 0, ids);
            break;
        }
        st = encode_plain(t, e, nb.p + at, ms - at, first && at == 0, ids);
        if (!st) st = iv_push(ids, t->added[k].id);
        at = me;
    }
    sb_free(&nb);
    return st;
}

enum cge_status cge_tokenizer_encode(const struct cge_tokenizer *t, const char *text, size_t len,
                                     int add_special, int64_t max_len, int32_t **ids_out,
                                     int64_t *n_out, int *truncated) {
    if (ids_out) *ids_out = NULL;
    if (n_out) *n_out = 0;
    if (truncated) *truncated = 0;
    if (!t || !ids_out || !n_out || (!text && len))
        return cge__err(CGE_ERR_INVALID_VALUE, "cge_tokenizer_encode: NULL argument");
    if (len > TOK_MAX_TEXT)
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "tokenizer: text of %zu bytes (max %zu)", len, TOK_MAX_TEXT);
    if (!text) text = "";
    enum cge_status st = utf8_validate(text, len);
    if (st) return st;
    struct enc_state e;
    memset(&e, 0, sizeof e);
    struct ivec content = {0};
    size_t at = 0;
    while (!st && at < len) {
        size_t ms, me;
        int k = t->any_added_raw ? find_added(t, 0, text, len, at, &ms, &me) : -1;
        if (k < 0) {
            st = encode_raw(t, &e, text + at, len - at, at == 0, &content);
            break;
        }
        st = encode_raw(t, &e, text + at, ms - at, at == 0, &content);
        if (!st) st = iv_push(&content, t->added[k].id);
        at = me;
    }
    sb_free(&e.norm);
    sb_free(&e.pb1);
    sb_free(&e.pb2);
    sp_free(&e.ps1);
    sp_free(&e.ps2);
    if (st) {
        iv_free(&content);
        return st;
    }
    int use_tmpl = add_special && t->tmpl;
    size_t n_special = use_tmpl ? (size_t)t->n_special : 0;
    if (max_len > 0) {
        /* Below the special-token count no content is kept. (The Rust tokenizers library then
         * keeps the first max_len pre-tokenized words, however many ids they make; cge stays
         * bounded instead. No model's max_len is that small.) */
        size_t avail = (size_t)max_len > n_special ? (size_t)max_len - n_special : 0;
        if (content.n > avail) {
            content.n = avail;
            if (truncated) *truncated = 1;
        }
    }
    size_t total = content.n + n_special;
    int32_t *ids = cge__malloc((total ? total : 1) * sizeof *ids);
    if (!ids) {
        iv_free(&content);
        return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory (%zu ids)", total);
    }
    size_t k = 0;
    if (use_tmpl) {
        for (size_t i = 0; i < t->n_tmpl; i++) {
            if (t->tmpl[i].is_seq) {
                if (content.n) memcpy(ids + k, content.p, content.n * sizeof *ids);
                k += content.n;
            } else if (t->tmpl[i].n_ids) { /* a special token may map to no ids (NULL) */
                memcpy(ids + k, t->tmpl[i].ids, t->tmpl[i].n_ids * sizeof *ids);
                k += t->tmpl[i].n_ids;
            }
        }
    } else if (content.n) {
        memcpy(ids, content.p, content.n * sizeof *ids);
        k = content.n;
    }
    iv_free(&content);
    *ids_out = ids;
    *n_out = (int64_t)k;
    return CGE_OK;
}

enum cge_status cge_tokenizer_encode_batch(const struct cge_tokenizer *t, const char *const *texts,
                                           const size_t *lens, int64_t n, int add_special,
                                           int64_t max_len, int64_t pad_to,
                                           struct cge_token_batch *out) {
    if (!out) return cge__err(CGE_ERR_INVALID_VALUE, "cge_tokenizer_encode_batch: out is NULL");
    memset(out, 0, sizeof *out);
    if (!t || n < 0 || (n > 0 && (!texts || !lens)))
        return cge__err(CGE_ERR_INVALID_VALUE, "cge_tokenizer_encode_batch: bad arguments");
    int32_t **rows = cge__calloc((size_t)(n ? n : 1), sizeof *rows);
    int64_t *lengths = cge__calloc((size_t)(n ? n : 1), sizeof *lengths);
    enum cge_status st = CGE_OK;
    if (!rows || !lengths) st = cge__err(CGE_ERR_NOMEM, "tokenizer batch: out of memory");
    int64_t longest = 0;
    for (int64_t i = 0; i < n && !st; i++) {
        st = cge_tokenizer_encode(t, texts[i], lens[i], add_special, max_len, &rows[i], &lengths[i], NULL);
        if (st) st = cge__err(st, "text %lld of the batch: %s", (long long)i, cge_errmsg());
        else if (lengths[i] > longest) longest = lengths[i];
    }
    int64_t cols = pad_to > 0 ? pad_to : longest;
    if (!st && cols < longest)
        st = cge__err(CGE_ERR_INPUT_TOO_LONG, "tokenizer batch: a row has %lld ids, pad_to is %lld",
                      (long long)longest, (long long)pad_to);
    if (!st && n && cols > (int64_t)(((size_t)1 << 40) / (size_t)n))
        st = cge__err(CGE_ERR_INPUT_TOO_LONG, "tokenizer batch: %lld x %lld ids", (long long)n, (long long)cols);
    if (!st) {
        size_t cells = (size_t)n * (size_t)cols;
        out->ids = cge__malloc((cells ? cells : 1) * sizeof *out->ids);
        out->mask = cge__malloc((cells ? cells : 1) * sizeof *out->mask);
        if (!out->ids || !out->mask) st = cge__err(CGE_ERR_NOMEM, "tokenizer batch: out of memory");
    }
    if (!st) {
        int32_t pad = t->pad_id >= 0 ? t->pad_id : 0;
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < cols; j++) {
                int real = j < lengths[i];
                out->ids[i * cols + j] = real ? rows[i][j] : pad;
                out->mask[i * cols + j] = real;
            }
        }
        out->n_seq = n;
        out->seq_len = cols;
        out->lengths = lengths;
        lengths = NULL;
    }
    for (int64_t i = 0; rows && i < n; i++) cge__free(rows[i]);
    cge__free(rows);
    cge__free(lengths);
    if (st) cge_token_batch_deinit(out);
    return st;
}

void cge_token_batch_deinit(struct cge_token_batch *b) {
    if (!b) return;
    cge__free(b->ids);
    cge__free(b->mask);
    cge__free(b->lengths);
    memset(b, 0, sizeof *b);
}

/* ==== lookups ======================================================================================= */

int64_t cge_tokenizer_vocab_size(const struct cge_tokenizer *t) {
    return t ? t->n_vocab : 0;
}

int32_t cge_tokenizer_token_to_id(const struct cge_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, token, n)) return t->added[i].id;
    return smap_get(&t->vocab, token, n);
}

int32_t cge_tokenizer_pad_id(const struct cge_tokenizer *t) {
    return t ? t->pad_id : -1;
}

/* ==== decode ======================================================================================== */

static const struct added_token *added_of(const struct cge_tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return &t->added[i];
    return NULL;
}

/* Reverses GPT-2's byte map for one code point; -1 if it is not in the alphabet. */
static int byte_of_char(int32_t c) {
    for (int b = 0; b < 256; b++)
        if (bytelevel_char((unsigned char)b) == c) return b;
    return -1;
}

static enum cge_status decode_piece(const struct cge_tokenizer *t, const char *s, size_t n,
                                    int first, struct sbuf *out) {
    enum cge_status st = CGE_OK;
    switch (t->decoder) {
    case DEC_WORDPIECE:
        if (t->dec_prefix_len && n >= t->dec_prefix_len && !memcmp(s, t->dec_prefix, t->dec_prefix_len))
            return sb_put(out, s + t->dec_prefix_len, n - t->dec_prefix_len);
        if (!first) st = sb_putc(out, ' ');
        return st ? st : sb_put(out, s, n);
    case DEC_BYTELEVEL: {
        /* CLIP: the end-of-word suffix marks a space (HF CLIPTokenizer's decode). */
        int eow = t->eow_suffix_len && n >= t->eow_suffix_len &&
                  !memcmp(s + n - t->eow_suffix_len, t->eow_suffix, t->eow_suffix_len);
        if (eow) n -= t->eow_suffix_len;
        for (size_t i = 0; i < n && !st;) {
            int32_t c;
            int k = utf8_decode(s + i, n - i, &c);
            if (k < 0) break;
            int b = byte_of_char(c);
            st = b >= 0 ? sb_putc(out, (char)b) : sb_put(out, s + i, (size_t)k);
            i += (size_t)k;
        }
        if (!st && eow) st = sb_putc(out, ' ');
        return st;
    }
    case DEC_BPE_SUFFIX:
        if (t->dec_prefix_len && n >= t->dec_prefix_len &&
            !memcmp(s + n - t->dec_prefix_len, t->dec_prefix, t->dec_prefix_len)) {
            st = sb_put(out, s, n - t->dec_prefix_len);
            return st ? st : sb_putc(out, ' ');
        }
        return sb_put(out, s, n);
    case DEC_METASPACE:
    case DEC_SPM:
    default:
        if (n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
            (t->decoder == DEC_SPM || t->type)) {
            unsigned v = 0;
            for (int i = 3; i < 5; i++) {
                char c = s[i];
                v = v * 16 + (unsigned)(c >= 'A' ? c - 'A' + 10 : c - '0');
            }
            return sb_putc(out, (char)v);
        }
        for (size_t i = 0; i < n && !st;) {
            if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
                st = sb_putc(out, ' ');
                i += 3;
            } else {
                st = sb_putc(out, s[i]);
                i++;
            }
        }
        return st;
    }
}

enum cge_status cge_tokenizer_decode(const struct cge_tokenizer *t, const int32_t *ids, int64_t n,
                                     int skip_special, char **out) {
    if (out) *out = NULL;
    if (!t || !out || (!ids && n > 0)) return cge__err(CGE_ERR_INVALID_VALUE, "cge_tokenizer_decode: NULL argument");
    struct sbuf b = {0};
    enum cge_status st = CGE_OK;
    int first = 1;
    for (int64_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || !t->tok[id]) {
            st = cge__err(CGE_ERR_INVALID_VALUE, "decode: id %d outside the vocabulary", id);
            break;
        }
        const struct added_token *a = added_of(t, id);
        if (a && a->special && skip_special) continue;
        if (t->type && skip_special && (t->type[id] == SPM_CONTROL || t->type[id] == SPM_UNKNOWN)) continue;
        if (a) st = sb_put(&b, a->content, a->len);
        else st = decode_piece(t, t->tok[id], t->tok_len[id], first, &b);
        first = 0;
    }
    if (!st) st = sb_reserve(&b, 0);
    if (st) {
        sb_free(&b);
        return st;
    }
    if (t->decoder == DEC_WORDPIECE) {
        /* HF's cleanup: no space before punctuation and English contractions. */
        static const char *const from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
        static const char *const to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
        for (size_t r = 0; r < sizeof from / sizeof from[0]; r++) {
            size_t fl = strlen(from[r]), tl = strlen(to[r]), w = 0;
            for (size_t i = 0; i < b.n;) {
                if (i + fl <= b.n && !memcmp(b.p + i, from[r], fl)) {
                    memcpy(b.p + w, to[r], tl);
                    w += tl;
                    i += fl;
                } else {
                    b.p[w++] = b.p[i++];
                }
            }
            b.n = w;
        }
    }
    size_t start = 0, end = b.n;
    if (t->decoder == DEC_METASPACE || t->decoder == DEC_SPM || t->type)
        if (end > 0 && b.p[0] == ' ') start = 1;
    if (t->decoder == DEC_BPE_SUFFIX || (t->decoder == DEC_BYTELEVEL && t->eow_suffix_len))
        while (end > start && b.p[end - 1] == ' ') end--;
    char *r = cge__malloc(end - start + 1);
    if (!r) {
        sb_free(&b);
        return cge__err(CGE_ERR_NOMEM, "decode: out of memory");
    }
    memcpy(r, b.p + start, end - start);
    r[end - start] = '\0';
    sb_free(&b);
    *out = r;
    return CGE_OK;
}
