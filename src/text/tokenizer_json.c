/*
 * tokenizer_json.c: reads a Hugging Face tokenizer.json (cJSON) into a struct cge_tokenizer.
 *
 * Key decision: every field is checked for its JSON type and range before use, since the file
 * is input; anything this loader does not implement (WordLevel, BPE dropout, an unknown
 * normalizer) is a clear CGE_ERR_UNSUPPORTED naming the component, never a silent fallback
 * that would give different ids. The file's own "truncation" and "padding" sections are
 * ignored: truncation is the caller's max_len, as in cge_tokenizer_encode.
 */
#include "text/text_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 16

static const cJSON *get(const cJSON *o, const char *k) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Booleans: absent or null gives def. */
static int get_bool(const cJSON *o, const char *k, int def) {
    const cJSON *v = get(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static int valid_id(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2147483647.0 &&
           v->valuedouble == floor(v->valuedouble);
}

/* ==== base64 (Precompiled's charsmap) ========================================================== */

static int b64v(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

static enum cge_status b64_decode(const char *s, unsigned char **out, size_t *out_len) {
    size_t n = strlen(s);
    unsigned char *o = cge__malloc(n / 4 * 3 + 4);
    if (!o) return cge__err(CGE_ERR_NOMEM, "base64: out of memory");
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64v((unsigned char)s[i]);
        if (v < 0) {
            cge__free(o);
            return cge__err(CGE_ERR_TOKENIZE, "precompiled_charsmap: bad base64 at %zu", i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    *out = o;
    *out_len = k;
    return CGE_OK;
}

/* ==== normalizers ============================================================================== */

static enum cge_status parse_pattern(const cJSON *o, struct regex *re, const char *what) {
    const cJSON *pat = get(o, "pattern");
    const char *s = get_str(pat, "String");
    if (s) return regex_compile(re, s, strlen(s), 1);
    s = get_str(pat, "Regex");
    if (s) return regex_compile(re, s, strlen(s), 0);
    return cge__err(CGE_ERR_TOKENIZE, "%s: pattern is neither String nor Regex", what);
}

static enum cge_status parse_normalizer(const cJSON *o, int depth, struct normalizer **out) {
    *out = NULL;
    if (!o || cJSON_IsNull(o)) return CGE_OK;
    if (depth > MAX_DEPTH) return cge__err(CGE_ERR_TOKENIZE, "normalizer: nested too deep");
    const char *type = get_str(o, "type");
    if (!type) return cge__err(CGE_ERR_TOKENIZE, "normalizer: no \"type\"");
    struct normalizer *n = cge__calloc(1, sizeof *n);
    if (!n) return cge__err(CGE_ERR_NOMEM, "normalizer: out of memory");
    enum cge_status st = CGE_OK;
    if (!strcmp(type, "BertNormalizer")) {
        n->kind = NORM_BERT;
        n->clean_text = get_bool(o, "clean_text", 1);
        n->handle_chinese = get_bool(o, "handle_chinese_chars", 1);
        n->lowercase = get_bool(o, "lowercase", 1);
        n->strip_accents = get_bool(o, "strip_accents", n->lowercase);
    } else if (!strcmp(type, "NFC")) {
        n->kind = NORM_NFC;
    } else if (!strcmp(type, "NFD")) {
        n->kind = NORM_NFD;
    } else if (!strcmp(type, "NFKC")) {
        n->kind = NORM_NFKC;
    } else if (!strcmp(type, "NFKD")) {
        n->kind = NORM_NFKD;
    } else if (!strcmp(type, "Lowercase")) {
        n->kind = NORM_LOWER;
    } else if (!strcmp(type, "StripAccents")) {
        n->kind = NORM_STRIP_ACCENTS;
    } else if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
        n->kind = !strcmp(type, "Replace") ? NORM_REPLACE : NORM_PREPEND;
        const char *c = get_str(o, n->kind == NORM_REPLACE ? "content" : "prepend");
        if (!c) st = cge__err(CGE_ERR_TOKENIZE, "normalizer %s: no content", type);
        if (!st) {
            n->content = cge__strdup(c);
            n->content_len = strlen(c);
            if (!n->content) st = cge__err(CGE_ERR_NOMEM, "normalizer: out of memory");
        }
        if (!st && n->kind == NORM_REPLACE) st = parse_pattern(o, &n->re, "normalizer Replace");
    } else if (!strcmp(type, "Strip")) {
        n->kind = NORM_STRIP;
        n->strip_left = get_bool(o, "strip_left", 1);
        n->strip_right = get_bool(o, "strip_right", 1);
    } else if (!strcmp(type, "Precompiled")) {
        n->kind = NORM_PRECOMPILED;
        const char *b = get_str(o, "precompiled_charsmap");
        if (b && *b) {
            unsigned char *blob = NULL;
            size_t len = 0;
            st = b64_decode(b, &blob, &len);
            if (!st) {
                st = charsmap_init(&n->cmap, blob, len);
                cge__free(blob);
                n->has_cmap = !st;
            }
        }
        if (!st && !n->has_cmap) n->kind = NORM_SEQUENCE; /* an empty map is the identity */
    } else if (!strcmp(type, "Sequence")) {
        n->kind = NORM_SEQUENCE;
        const cJSON *list = get(o, "normalizers");
        if (!cJSON_IsArray(list)) st = cge__err(CGE_ERR_TOKENIZE, "normalizer Sequence: no list");
        int cnt = st ? 0 : cJSON_GetArraySize(list);
        if (cnt > 0) {
            n->sub = cge__calloc((size_t)cnt, sizeof *n->sub);
            if (!n->sub) st = cge__err(CGE_ERR_NOMEM, "normalizer: out of memory");
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, list) {
            if (st) break;
            struct normalizer *sub;
            st = parse_normalizer(e, depth + 1, &sub);
            if (!st && sub) n->sub[n->n_sub++] = sub;
        }
    } else {
        st = cge__err(CGE_ERR_UNSUPPORTED, "normalizer \"%s\" is not supported", type);
    }
    if (st) {
        normalizer_free(n);
        return st;
    }
    *out = n;
    return CGE_OK;
}

/* ==== pre-tokenizers ============================================================================ */

static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int parse_behavior(const char *b, enum split_behavior *out) {
    if (!b) return 0;
    if (!strcmp(b, "Removed")) *out = SPLIT_REMOVED;
    else if (!strcmp(b, "Isolated")) *out = SPLIT_ISOLATED;
    else if (!strcmp(b, "MergedWithPrevious")) *out = SPLIT_MERGED_PREV;
    else if (!strcmp(b, "MergedWithNext")) *out = SPLIT_MERGED_NEXT;
    else if (!strcmp(b, "Contiguous")) *out = SPLIT_CONTIGUOUS;
    else return 0;
    return 1;
}

static enum cge_status parse_pretok(const cJSON *o, int depth, struct pretok **out) {
    *out = NULL;
    if (!o || cJSON_IsNull(o)) return CGE_OK;
    if (depth > MAX_DEPTH) return cge__err(CGE_ERR_TOKENIZE, "pre_tokenizer: nested too deep");
    const char *type = get_str(o, "type");
    if (!type) return cge__err(CGE_ERR_TOKENIZE, "pre_tokenizer: no \"type\"");
    struct pretok *p = cge__calloc(1, sizeof *p);
    if (!p) return cge__err(CGE_ERR_NOMEM, "pre_tokenizer: out of memory");
    enum cge_status st = CGE_OK;
    if (!strcmp(type, "BertPreTokenizer")) {
        p->kind = PRE_BERT;
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = PRE_BYTELEVEL;
        p->add_prefix_space = get_bool(o, "add_prefix_space", 1);
        p->use_regex = get_bool(o, "use_regex", 1);
        if (p->use_regex) st = regex_compile(&p->re, GPT2_RE, sizeof GPT2_RE - 1, 0);
    } else if (!strcmp(type, "Whitespace")) {
        p->kind = PRE_WHITESPACE;
        st = regex_compile(&p->re, "\\w+|[^\\w\\s]+", 13, 0);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = PRE_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "Metaspace")) {
        p->kind = PRE_METASPACE;
        const char *r = get_str(o, "replacement");
        if (!r) r = "\xe2\x96\x81";
        p->replacement_len = strlen(r);
        if (!p->replacement_len || p->replacement_len >= sizeof p->replacement)
            st = cge__err(CGE_ERR_TOKENIZE, "pre_tokenizer Metaspace: bad replacement");
        else
            memcpy(p->replacement, r, p->replacement_len);
        const char *scheme = get_str(o, "prepend_scheme");
        if (scheme) {
            if (!strcmp(scheme, "always")) p->prepend = PREPEND_ALWAYS;
            else if (!strcmp(scheme, "first")) p->prepend = PREPEND_FIRST;
            else if (!strcmp(scheme, "never")) p->prepend = PREPEND_NEVER;
            else st = cge__err(CGE_ERR_TOKENIZE, "pre_tokenizer Metaspace: prepend_scheme \"%s\"", scheme);
        } else {
            p->prepend = get_bool(o, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
        p->split = get_bool(o, "split", 1);
    } else if (!strcmp(type, "Split")) {
        p->kind = PRE_SPLIT;
        p->invert = get_bool(o, "invert", 0);
        if (!parse_behavior(get_str(o, "behavior"), &p->behavior))
            st = cge__err(CGE_ERR_TOKENIZE, "pre_tokenizer Split: bad behavior");
        if (!st) st = parse_pattern(o, &p->re, "pre_tokenizer Split");
    } else if (!strcmp(type, "Punctuation")) {
        p->kind = PRE_PUNCTUATION;
        p->behavior = SPLIT_ISOLATED;
        const char *b = get_str(o, "behavior");
        if (b && !parse_behavior(b, &p->behavior))
            st = cge__err(CGE_ERR_TOKENIZE, "pre_tokenizer Punctuation: bad behavior");
    } else if (!strcmp(type, "Digits")) {
        p->kind = PRE_DIGITS;
        p->individual_digits = get_bool(o, "individual_digits", 0);
    } else if (!strcmp(type, "Sequence")) {
        p->kind = PRE_SEQUENCE;
        const cJSON *list = get(o, "pretokenizers");
        if (!cJSON_IsArray(list)) st = cge__err(CGE_ERR_TOKENIZE, "pre_tokenizer Sequence: no list");
        int cnt = st ? 0 : cJSON_GetArraySize(list);
        if (cnt > 0) {
            p->sub = cge__calloc((size_t)cnt, sizeof *p->sub);
            if (!p->sub) st = cge__err(CGE_ERR_NOMEM, "pre_tokenizer: out of memory");
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, list) {
            if (st) break;
            struct pretok *sub;
            st = parse_pretok(e, depth + 1, &sub);
            if (!st && sub) p->sub[p->n_sub++] = sub;
        }
    } else {
        st = cge__err(CGE_ERR_UNSUPPORTED, "pre_tokenizer \"%s\" is not supported", type);
    }
    if (st) {
        pretok_free(p);
        return st;
    }
    *out = p;
    return CGE_OK;
}

/* ByteLevel leaves raw bytes for the model (see pretokenize.c), so it must come last. Returns
 * 1 if p ends with ByteLevel, 0 if it has none, -1 if a ByteLevel is followed by something. */
static int bytelevel_position(const struct pretok *p) {
    if (!p) return 0;
    if (p->kind == PRE_BYTELEVEL) return 1;
    if (p->kind != PRE_SEQUENCE) return 0;
    int seen = 0;
    for (size_t i = 0; i < p->n_sub; i++) {
        int r = bytelevel_position(p->sub[i]);
        if (r < 0 || (seen && r == 0) || (seen && r == 1)) return -1;
        if (r == 1) seen = 1;
    }
    return seen;
}

/* ==== post-processor ============================================================================= */

static enum cge_status tmpl_add(struct cge_tokenizer *t, int is_seq, const int32_t *ids, size_t n) {
    struct tmpl_item *nt = cge__realloc(t->tmpl, (t->n_tmpl + 1) * sizeof *nt);
    if (!nt) return cge__err(CGE_ERR_NOMEM, "post_processor: out of memory");
    t->tmpl = nt;
    struct tmpl_item *it = &t->tmpl[t->n_tmpl];
    memset(it, 0, sizeof *it);
    it->is_seq = is_seq;
    if (n) {
        it->ids = cge__malloc(n * sizeof *ids);
        if (!it->ids) return cge__err(CGE_ERR_NOMEM, "post_processor: out of memory");
        memcpy(it->ids, ids, n * sizeof *ids);
        it->n_ids = n;
        t->n_special += (int)n;
    }
    t->n_tmpl++;
    return CGE_OK;
}

static enum cge_status parse_pair_token(const cJSON *o, const char *k, int32_t *id) {
    const cJSON *a = get(o, k);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2 || !valid_id(cJSON_GetArrayItem(a, 1)))
        return cge__err(CGE_ERR_TOKENIZE, "post_processor: \"%s\" is not [token, id]", k);
    *id = (int32_t)cJSON_GetArrayItem(a, 1)->valuedouble;
    return CGE_OK;
}

static enum cge_status parse_post(struct cge_tokenizer *t, const cJSON *o, int depth) {
    if (!o || cJSON_IsNull(o)) return CGE_OK;
    if (depth > MAX_DEPTH) return cge__err(CGE_ERR_TOKENIZE, "post_processor: nested too deep");
    const char *type = get_str(o, "type");
    if (!type) return cge__err(CGE_ERR_TOKENIZE, "post_processor: no \"type\"");
    enum cge_status st = CGE_OK;
    if (!strcmp(type, "ByteLevel")) return CGE_OK;
    if (t->tmpl) return cge__err(CGE_ERR_UNSUPPORTED, "post_processor: two templates in a Sequence");
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        int32_t cls, sep;
        st = parse_pair_token(o, "cls", &cls);
        if (!st) st = parse_pair_token(o, "sep", &sep);
        if (!st) st = tmpl_add(t, 0, &cls, 1);
        if (!st) st = tmpl_add(t, 1, NULL, 0);
        if (!st) st = tmpl_add(t, 0, &sep, 1);
        return st;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = get(o, "single"), *specials = get(o, "special_tokens");
        if (!cJSON_IsArray(single)) return cge__err(CGE_ERR_TOKENIZE, "TemplateProcessing: no single");
        const cJSON *e;
        int n_seq = 0;
        cJSON_ArrayForEach(e, single) {
            if (st) break;
            const cJSON *sp = get(e, "SpecialToken");
            if (get(e, "Sequence")) {
                st = tmpl_add(t, 1, NULL, 0);
                n_seq++;
                continue;
            }
            const char *name = get_str(sp, "id");
            const cJSON *def = name ? get(specials, name) : NULL;
            const cJSON *ids = get(def, "ids");
            if (!cJSON_IsArray(ids)) {
                st = cge__err(CGE_ERR_TOKENIZE, "TemplateProcessing: special token %s undefined",
                              name ? name : "(unnamed)");
                break;
            }
            int n = cJSON_GetArraySize(ids);
            int32_t *buf = cge__malloc((size_t)(n ? n : 1) * sizeof *buf);
            if (!buf) {
                st = cge__err(CGE_ERR_NOMEM, "post_processor: out of memory");
                break;
            }
            int k = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, ids) {
                if (!valid_id(x)) {
                    st = cge__err(CGE_ERR_TOKENIZE, "TemplateProcessing: bad id for %s", name);
                    break;
                }
                buf[k++] = (int32_t)x->valuedouble;
            }
            if (!st) st = tmpl_add(t, 0, buf, (size_t)k);
            cge__free(buf);
        }
        if (!st && n_seq != 1)
            st = cge__err(CGE_ERR_TOKENIZE, "TemplateProcessing: single has %d sequences", n_seq);
        return st;
    }
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = get(o, "processors"), *e;
        if (!cJSON_IsArray(list)) return cge__err(CGE_ERR_TOKENIZE, "post_processor Sequence: no list");
        cJSON_ArrayForEach(e, list) {
            st = parse_post(t, e, depth + 1);
            if (st) return st;
        }
        return CGE_OK;
    }
    return cge__err(CGE_ERR_UNSUPPORTED, "post_processor \"%s\" is not supported", type);
}

/* ==== decoder ===================================================================================== */

static enum cge_status parse_decoder(struct cge_tokenizer *t, const cJSON *o) {
    const char *type = get_str(o, "type");
    const char *pfx = NULL;
    if (!type) return CGE_OK;
    if (!strcmp(type, "WordPiece")) {
        t->decoder = DEC_WORDPIECE;
        pfx = get_str(o, "prefix");
        if (!pfx) pfx = "##";
    } else if (!strcmp(type, "ByteLevel")) {
        t->decoder = DEC_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        t->decoder = DEC_METASPACE;
        pfx = get_str(o, "replacement");
        if (!pfx) pfx = "\xe2\x96\x81";
    } else if (!strcmp(type, "BPEDecoder")) {
        t->decoder = DEC_BPE_SUFFIX;
        pfx = get_str(o, "suffix");
        if (!pfx) pfx = "</w>";
    } else if (!strcmp(type, "Sequence")) {
        t->decoder = DEC_SPM; /* Llama-style Replace/ByteFallback/Fuse/Strip */
        pfx = "\xe2\x96\x81";
    }
    if (pfx) {
        t->dec_prefix = cge__strdup(pfx);
        if (!t->dec_prefix) return cge__err(CGE_ERR_NOMEM, "decoder: out of memory");
        t->dec_prefix_len = strlen(pfx);
    }
    return CGE_OK;
}

/* ==== model ======================================================================================= */

static enum cge_status parse_vocab_dict(struct cge_tokenizer *t, const cJSON *vocab,
                                        const cJSON *added) {
    if (!cJSON_IsObject(vocab)) return cge__err(CGE_ERR_TOKENIZE, "model: \"vocab\" is not an object");
    int64_t max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!valid_id(e) || !e->string)
            return cge__err(CGE_ERR_TOKENIZE, "model: vocab entry \"%.40s\" has a bad id",
                            e->string ? e->string : "");
        if ((int64_t)e->valuedouble > max_id) max_id = (int64_t)e->valuedouble;
    }
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = get(e, "id");
        if (valid_id(id) && (int64_t)id->valuedouble > max_id) max_id = (int64_t)id->valuedouble;
    }
    if (max_id > 16 * 1024 * 1024)
        return cge__err(CGE_ERR_TOKENIZE, "model: id %lld is implausibly large", (long long)max_id);
    enum cge_status st = tok_vocab_alloc(t, max_id + 1);
    cJSON_ArrayForEach(e, vocab) {
        if (st) break;
        int32_t id = (int32_t)e->valuedouble;
        st = tok_set_token(t, id, e->string, strlen(e->string));
        if (!st) st = smap_put(&t->vocab, t->tok[id], t->tok_len[id], id);
    }
    return st;
}

static enum cge_status parse_merges(struct cge_tokenizer *t, const cJSON *merges) {
    if (!cJSON_IsArray(merges)) return cge__err(CGE_ERR_TOKENIZE, "BPE: \"merges\" is not a list");
    struct sbuf tmp = {0};
    enum cge_status st = CGE_OK;
    uint32_t rank = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t al, bl;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = cge__err(CGE_ERR_TOKENIZE, "BPE: merge %u \"%.40s\" is not \"a b\"", rank, s);
                break;
            }
            a = s;
            al = (size_t)(sp - s);
            b = sp + 1;
            bl = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) && cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            al = strlen(a);
            bl = strlen(b);
        } else {
            st = cge__err(CGE_ERR_TOKENIZE, "BPE: merge %u is neither \"a b\" nor [a, b]", rank);
            break;
        }
        int32_t ia = smap_get(&t->vocab, a, al), ib = smap_get(&t->vocab, b, bl);
        size_t strip = t->cont_prefix_len && bl >= t->cont_prefix_len ? t->cont_prefix_len : 0;
        tmp.n = 0;
        st = sb_put(&tmp, a, al);
        if (!st) st = sb_put(&tmp, b + strip, bl - strip);
        if (st) break;
        int32_t in = smap_get(&t->vocab, tmp.p, tmp.n);
        if (ia < 0 || ib < 0 || in < 0) {
            st = cge__err(CGE_ERR_TOKENIZE, "BPE: merge %u \"%.*s %.*s\" uses a token outside the vocabulary",
                          rank, (int)(al > 40 ? 40 : al), a, (int)(bl > 40 ? 40 : bl), b);
            break;
        }
        st = umap_put(&t->merges, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib,
                      (uint64_t)rank << 32 | (uint32_t)in);
        if (st) break;
        rank++;
    }
    sb_free(&tmp);
    return st;
}

static enum cge_status set_string(char **dst, size_t *len, const char *s) {
    *dst = cge__strdup(s ? s : "");
    if (!*dst) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory");
    *len = strlen(*dst);
    return CGE_OK;
}

static enum cge_status parse_model(struct cge_tokenizer *t, const cJSON *m, const cJSON *added) {
    if (!cJSON_IsObject(m)) return cge__err(CGE_ERR_TOKENIZE, "tokenizer.json: no \"model\" object");
    const char *type = get_str(m, "type");
    const cJSON *vocab = get(m, "vocab");
    if (!type) {
        /* Older files omit the tag; serde tries BPE, WordPiece, WordLevel, Unigram in order. */
        if (cJSON_IsObject(vocab) && get(m, "merges")) type = "BPE";
        else if (cJSON_IsObject(vocab) && get(m, "continuing_subword_prefix")) type = "WordPiece";
        else if (cJSON_IsArray(vocab)) type = "Unigram";
        else return cge__err(CGE_ERR_TOKENIZE, "model: no \"type\" and the fields fit no model");
    }
    enum cge_status st = CGE_OK;
    const char *unk = get_str(m, "unk_token");
    if (!strcmp(type, "WordPiece")) {
        t->model = MODEL_WORDPIECE;
        st = parse_vocab_dict(t, vocab, added);
        if (!st) st = set_string(&t->cont_prefix, &t->cont_prefix_len,
                                 get_str(m, "continuing_subword_prefix") ? get_str(m, "continuing_subword_prefix") : "##");
        const cJSON *mx = get(m, "max_input_chars_per_word");
        t->max_chars_per_word = valid_id(mx) ? (int)mx->valuedouble : 100;
        t->unk_id = unk ? smap_get(&t->vocab, unk, strlen(unk)) : -1;
        return st;
    }
    if (!strcmp(type, "BPE")) {
        t->model = MODEL_BPE;
        const cJSON *drop = get(m, "dropout");
        if (drop && !cJSON_IsNull(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0))
            return cge__err(CGE_ERR_UNSUPPORTED, "BPE: dropout is not supported");
        if (get_bool(m, "ignore_merges", 0))
            return cge__err(CGE_ERR_UNSUPPORTED, "BPE: ignore_merges is not supported");
        st = parse_vocab_dict(t, vocab, added);
        if (!st) st = set_string(&t->cont_prefix, &t->cont_prefix_len, get_str(m, "continuing_subword_prefix"));
        if (!st) st = set_string(&t->eow_suffix, &t->eow_suffix_len, get_str(m, "end_of_word_suffix"));
        if (!st) st = parse_merges(t, get(m, "merges"));
        t->fuse_unk = get_bool(m, "fuse_unk", 0);
        t->byte_fallback = get_bool(m, "byte_fallback", 0);
        t->unk_id = unk ? smap_get(&t->vocab, unk, strlen(unk)) : -1;
        if (!st && unk && t->unk_id < 0)
            st = cge__err(CGE_ERR_TOKENIZE, "BPE: unk_token \"%.40s\" is not in the vocabulary", unk);
        return st;
    }
    if (!strcmp(type, "Unigram")) {
        t->model = MODEL_UNIGRAM;
        if (!cJSON_IsArray(vocab)) return cge__err(CGE_ERR_TOKENIZE, "Unigram: \"vocab\" is not a list");
        int n = cJSON_GetArraySize(vocab);
        int64_t max_id = n - 1;
        const cJSON *e;
        cJSON_ArrayForEach(e, added) {
            const cJSON *id = get(e, "id");
            if (valid_id(id) && (int64_t)id->valuedouble > max_id) max_id = (int64_t)id->valuedouble;
        }
        if (max_id > 16 * 1024 * 1024) return cge__err(CGE_ERR_TOKENIZE, "Unigram: id too large");
        st = tok_vocab_alloc(t, max_id + 1);
        if (!st) {
            t->score = cge__calloc((size_t)(max_id + 1), sizeof *t->score);
            if (!t->score) st = cge__err(CGE_ERR_NOMEM, "Unigram: out of memory");
        }
        int id = 0;
        t->min_score = INFINITY;
        cJSON_ArrayForEach(e, vocab) {
            if (st) break;
            const cJSON *p = cJSON_GetArrayItem(e, 0), *sc = cJSON_GetArrayItem(e, 1);
            if (!cJSON_IsArray(e) || !cJSON_IsString(p) || !cJSON_IsNumber(sc) || !isfinite(sc->valuedouble)) {
                st = cge__err(CGE_ERR_TOKENIZE, "Unigram: vocab entry %d is not [piece, score]", id);
                break;
            }
            st = tok_set_token(t, id, p->valuestring, strlen(p->valuestring));
            if (!st) st = smap_put(&t->vocab, t->tok[id], t->tok_len[id], id);
            if (!st && t->tok_len[id]) st = trie_insert(&t->pieces, t->tok[id], t->tok_len[id], id);
            t->score[id] = sc->valuedouble; /* f64, as tokenizers keeps it */
            if (t->score[id] < t->min_score) t->min_score = t->score[id];
            id++;
        }
        const cJSON *u = get(m, "unk_id");
        t->unk_id = valid_id(u) && u->valuedouble < n ? (int32_t)u->valuedouble : -1;
        if (!st && t->unk_id < 0) st = cge__err(CGE_ERR_TOKENIZE, "Unigram: no valid unk_id");
        if (!st && !t->pieces.val) st = trie_insert(&t->pieces, "", 0, -1);
        t->byte_fallback = get_bool(m, "byte_fallback", 0);
        t->fuse_unk = 1;
        return st;
    }
    return cge__err(CGE_ERR_UNSUPPORTED, "model \"%s\" is not supported", type);
}

/* ==== added tokens ================================================================================ */

static enum cge_status parse_added(struct cge_tokenizer *t, const cJSON *added) {
    if (!added || cJSON_IsNull(added)) return CGE_OK;
    if (!cJSON_IsArray(added)) return cge__err(CGE_ERR_TOKENIZE, "\"added_tokens\" is not a list");
    int n = cJSON_GetArraySize(added);
    if (!n) return CGE_OK;
    t->added = cge__calloc((size_t)n, sizeof *t->added);
    if (!t->added) return cge__err(CGE_ERR_NOMEM, "added tokens: out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = get(e, "id");
        const char *content = get_str(e, "content");
        if (!valid_id(id) || !content || !*content || (int64_t)id->valuedouble >= t->n_vocab)
            return cge__err(CGE_ERR_TOKENIZE, "added token %zu: bad id or content", t->n_added);
        struct added_token *a = &t->added[t->n_added++];
        a->id = (int32_t)id->valuedouble;
        a->len = strlen(content);
        a->content = arena_strndup(&t->strings, content, a->len);
        if (!a->content) return cge__err(CGE_ERR_NOMEM, "added tokens: out of memory");
        a->special = get_bool(e, "special", 0);
        a->lstrip = get_bool(e, "lstrip", 0);
        a->rstrip = get_bool(e, "rstrip", 0);
        a->single_word = get_bool(e, "single_word", 0);
        a->normalized = get_bool(e, "normalized", !a->special);
        if (!t->tok[a->id]) {
            enum cge_status st = tok_set_token(t, a->id, content, a->len);
            if (st) return st;
        }
    }
    return CGE_OK;
}

enum cge_status tok_load_json(struct cge_tokenizer *t, const char *text, size_t len,
                              const char *what) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return cge__err(CGE_ERR_TOKENIZE, "%s: not valid JSON", what);
    enum cge_status st = CGE_OK;
    if (!cJSON_IsObject(root)) st = cge__err(CGE_ERR_TOKENIZE, "%s: not a JSON object", what);
    const cJSON *added = get(root, "added_tokens");
    if (!st) st = parse_model(t, get(root, "model"), cJSON_IsArray(added) ? added : NULL);
    if (!st) st = parse_added(t, added);
    if (!st) st = parse_normalizer(get(root, "normalizer"), 0, &t->normalizer);
    if (!st) st = parse_pretok(get(root, "pre_tokenizer"), 0, &t->pretok);
    if (!st) {
        int r = bytelevel_position(t->pretok);
        if (r < 0) st = cge__err(CGE_ERR_UNSUPPORTED, "%s: ByteLevel must be the last pre-tokenizer", what);
        t->byte_level = r == 1;
        if (!st && t->byte_level && t->model != MODEL_BPE)
            st = cge__err(CGE_ERR_UNSUPPORTED, "%s: ByteLevel pre-tokenizer with a non-BPE model", what);
    }
    if (!st) st = parse_post(t, get(root, "post_processor"), 0);
    for (size_t i = 0; !st && i < t->n_tmpl; i++)
        for (size_t j = 0; j < t->tmpl[i].n_ids; j++)
            if (t->tmpl[i].ids[j] >= t->n_vocab) {
                st = cge__err(CGE_ERR_TOKENIZE, "post_processor: special id %d outside the vocabulary (%lld)",
                              t->tmpl[i].ids[j], (long long)t->n_vocab);
                break;
            }
    if (!st) st = parse_decoder(t, get(root, "decoder"));
    if (!st) {
        const cJSON *pad = get(root, "padding");
        const cJSON *pid = get(pad, "pad_id");
        t->pad_id = valid_id(pid) && pid->valuedouble < (double)t->n_vocab ? (int32_t)pid->valuedouble : -1;
    }
    if (!st) st = model_finish(t);
    if (st) {
        /* Prefix the file name to the message for context. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        st = cge__err(st, "%s: %s", what, msg);
    }
    cJSON_Delete(root);
    return st;
}
