/*
 * pretokenize.c: the pre-tokenizers of Hugging Face tokenizers (BertPreTokenizer, ByteLevel,
 * Whitespace, WhitespaceSplit, Metaspace, Split, Punctuation, Digits, Sequence) and the PCRE2
 * regex wrapper they share.
 *
 * Key decisions: a pre-tokenized string is a buffer plus a list of spans; each step reads the
 * spans of one buffer and writes new spans into another. Regexes are compiled once at load with
 * PCRE2_UTF | PCRE2_UCP (Unicode \s \w \p{..}) and JIT-compiled when available; matching uses
 * PCRE2_NO_UTF_CHECK because the text was validated once up front, which keeps a 1 MB input
 * linear rather than re-validating the subject at every match. ByteLevel does not rewrite the
 * bytes into GPT-2's printable alphabet here: the BPE model maps raw bytes to ids directly
 * through a 256-entry table, so ByteLevel must be the last pre-tokenizer step (checked at load).
 */
#include "text/text_internal.h"

#include <string.h>
#include <utf8proc.h>

/* ==== regex ================================================================================== */

/* Hugging Face compiles these patterns with Oniguruma, whose \s is the Unicode White_Space
 * property. PCRE2's \s also matches U+180E (a space before Unicode 6.3), so \s and \S are
 * rewritten to the White_Space set spelled out: inside a class the bare list, outside a class
 * a bracketed one. Oniguruma's Unicode tables are also newer than PCRE2's, so \p{L} and \p{N}
 * get the letters and numbers PCRE2 lacks (unicode_rust.c). Other escapes are copied untouched;
 * \S inside a class is left as it is. Returns the pattern NUL-terminated in *o. */
#define WS_LIST "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\p{Zs}\\x{2028}\\x{2029}"
static enum cge_status rewrite_pattern(const char *p, size_t len, struct sbuf *o) {
    enum cge_status st = CGE_OK;
    int in_class = 0;
    for (size_t i = 0; i < len && !st; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < len) {
            char d = p[i + 1];
            if (d == 's' || (d == 'S' && !in_class)) {
                const char *rep = d == 's' ? (in_class ? WS_LIST : "[" WS_LIST "]") : "[^" WS_LIST "]";
                st = sb_put(o, rep, strlen(rep));
            } else if (d == 'p' && i + 4 < len && (p[i + 3] == 'L' || p[i + 3] == 'N') &&
                       p[i + 2] == '{' && p[i + 4] == '}') {
                if (!in_class) st = sb_putc(o, '[');
                if (!st) st = sb_put(o, p + i, 5);
                if (!st) st = uni_regex_extra(o, p[i + 3]);
                if (!st && !in_class) st = sb_putc(o, ']');
                i += 3;
            } else {
                st = sb_put(o, p + i, 2);
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            st = sb_putc(o, c);
            /* A ']' or '^]' right after the opening bracket is literal. */
            if (!st && i + 1 < len && p[i + 1] == '^') st = sb_putc(o, p[++i]);
            if (!st && i + 1 < len && p[i + 1] == ']') st = sb_putc(o, p[++i]);
            continue;
        }
        if (c == '[' && in_class && i + 1 < len && p[i + 1] == ':') {
            /* A POSIX class [:name:] inside a class: copy it whole. */
            const char *e = memchr(p + i + 2, ']', len - i - 2);
            size_t n = e ? (size_t)(e - (p + i)) + 1 : 1;
            st = sb_put(o, p + i, n);
            i += n - 1;
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        st = sb_putc(o, c);
    }
    if (!st) st = sb_putc(o, 0);
    return st;
}

enum cge_status regex_compile(struct regex *r, const char *pattern, size_t len, int literal) {
    int err;
    PCRE2_SIZE off;
    struct sbuf rewritten = {0};
    const char *orig = pattern;
    size_t orig_len = len;
    if (!literal) {
        enum cge_status st = rewrite_pattern(pattern, len, &rewritten);
        if (st) {
            sb_free(&rewritten);
            return cge__err(CGE_ERR_NOMEM, "tokenizer regex: out of memory");
        }
        pattern = rewritten.p;
        len = rewritten.n - 1;
    }
    /* PCRE2_LITERAL refuses PCRE2_UCP (which a literal does not need anyway). */
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    r->code = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &off, NULL);
    sb_free(&rewritten);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return cge__err(CGE_ERR_TOKENIZE, "tokenizer regex '%.*s': %s", (int)(orig_len > 200 ? 200 : orig_len),
                        orig, (const char *)msg);
    }
    (void)pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return CGE_OK;
}

void regex_free(struct regex *r) {
    if (r->code) pcre2_code_free(r->code);
    r->code = NULL;
}

enum cge_status regex_find_all(const struct regex *r, const char *s, size_t n, struct spans *out) {
    if (!r->code) return cge__err(CGE_ERR_TOKENIZE, "tokenizer: regex missing");
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->code, NULL);
    if (!md) return cge__err(CGE_ERR_NOMEM, "tokenizer: out of memory (regex)");
    enum cge_status st = CGE_OK;
    size_t at = 0;
    while (at <= n) {
        int rc = pcre2_match(r->code, (PCRE2_SPTR)(s ? s : ""), n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = cge__err(CGE_ERR_TOKENIZE, "tokenizer regex: %s", (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b > a) {
            st = sp_push(out, a, b - a);
            if (st) break;
            at = b;
        } else {
            /* An empty match: step one character to make progress (HF ignores empty matches). */
            at = b + (b < n ? (size_t)utf8_len((unsigned char)s[b]) : 1);
        }
    }
    pcre2_match_data_free(md);
    return st;
}

/* ==== splitting helpers ====================================================================== */

/* Appends piece s[a..b) of the source buffer as a new span of out_buf. */
static enum cge_status emit(struct sbuf *ob, struct spans *out, const char *s, size_t len) {
    if (!len) return CGE_OK;
    size_t off = ob->n;
    enum cge_status st = sb_put(ob, s, len);
    return st ? st : sp_push(out, off, len);
}

/* Splits one piece by a list of "delimiter" spans (relative offsets, sorted, non-overlapping)
 * with Hugging Face's SplitDelimiterBehavior. */
static enum cge_status split_with(const char *s, size_t n, const struct spans *m,
                                  enum split_behavior beh, int invert, struct sbuf *ob,
                                  struct spans *out) {
    /* Build the alternating list of (span, is_delimiter). */
    struct span *seg = cge__malloc((2 * m->n + 1) * sizeof *seg);
    unsigned char *isd = cge__malloc(2 * m->n + 1);
    if (!seg || !isd) {
        cge__free(seg);
        cge__free(isd);
        return cge__err(CGE_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    size_t ns = 0, at = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->p[i].off > at) {
            seg[ns].off = (uint32_t)at;
            seg[ns].len = (uint32_t)(m->p[i].off - at);
            isd[ns++] = (unsigned char)invert;
        }
        seg[ns] = m->p[i];
        isd[ns++] = (unsigned char)!invert;
        at = m->p[i].off + m->p[i].len;
    }
    if (at < n) {
        seg[ns].off = (uint32_t)at;
        seg[ns].len = (uint32_t)(n - at);
        isd[ns++] = (unsigned char)invert;
    }
    enum cge_status st = CGE_OK;
    switch (beh) {
    case SPLIT_REMOVED:
        for (size_t i = 0; i < ns && !st; i++)
            if (!isd[i]) st = emit(ob, out, s + seg[i].off, seg[i].len);
        break;
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < ns && !st; i++) st = emit(ob, out, s + seg[i].off, seg[i].len);
        break;
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < ns && !st;) {
            size_t j = i + 1;
            if (isd[i])
                while (j < ns && isd[j]) j++;
            size_t a = seg[i].off, b = seg[j - 1].off + seg[j - 1].len;
            st = emit(ob, out, s + a, b - a);
            i = j;
        }
        break;
    case SPLIT_MERGED_PREV:
        /* A delimiter joins the piece before it (unless that piece was a delimiter too). */
        for (size_t i = 0; i < ns && !st;) {
            size_t j = i + 1;
            if (!isd[i] && j < ns && isd[j]) j++;
            size_t a = seg[i].off, b = seg[j - 1].off + seg[j - 1].len;
            st = emit(ob, out, s + a, b - a);
            i = j;
        }
        break;
    case SPLIT_MERGED_NEXT:
        /* A delimiter joins the piece after it (unless that piece is a delimiter too). */
        for (size_t i = 0; i < ns && !st;) {
            size_t j = i + 1;
            if (isd[i] && j < ns && !isd[j]) j++;
            size_t a = seg[i].off, b = seg[j - 1].off + seg[j - 1].len;
            st = emit(ob, out, s + a, b - a);
            i = j;
        }
        break;
    }
    cge__free(seg);
    cge__free(isd);
    return st;
}

/* Delimiters given by a per-character predicate; consecutive matching characters are separate
 * delimiters (HF splits on each character). */
static enum cge_status char_delims(const char *s, size_t n, int (*pred)(int32_t),
                                   struct spans *m) {
    for (size_t i = 0; i < n;) {
        int32_t c;
        int k = utf8_decode(s + i, n - i, &c);
        if (k < 0) return cge__err(CGE_ERR_TOKENIZE, "pre-tokenizer: invalid UTF-8");
        if (pred(c)) {
            enum cge_status st = sp_push(m, i, (size_t)k);
            if (st) return st;
        }
        i += (size_t)k;
    }
    return CGE_OK;
}

static int is_digit_char(int32_t c) {
    /* Rust char::is_numeric: categories Nd, Nl, No. */
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

/* ==== the pre-tokenizers ===================================================================== */

/* Splits on whitespace (dropped). With bert_punct, each BERT punctuation character is also a
 * piece of its own (BertPreTokenizer); without, this is WhitespaceSplit. */
static enum cge_status split_whitespace(const char *s, size_t n, int bert_punct, struct sbuf *ob,
                                        struct spans *out) {
    enum cge_status st = CGE_OK;
    size_t i = 0;
    while (i < n && !st) {
        int32_t c;
        int k = utf8_decode(s + i, n - i, &c);
        if (k < 0) return cge__err(CGE_ERR_TOKENIZE, "pre-tokenizer: invalid UTF-8");
        if (uni_is_whitespace(c)) {
            i += (size_t)k;
            continue;
        }
        if (bert_punct && uni_is_bert_punct(c)) {
            st = emit(ob, out, s + i, (size_t)k);
            i += (size_t)k;
            continue;
        }
        size_t j = i + (size_t)k;
        while (j < n) {
            int k2 = utf8_decode(s + j, n - j, &c);
            if (k2 < 0 || uni_is_whitespace(c) || (bert_punct && uni_is_bert_punct(c))) break;
            j += (size_t)k2;
        }
        st = emit(ob, out, s + i, j - i);
        i = j;
    }
    return st;
}

static enum cge_status pretok_piece(const struct pretok *p, const char *s, size_t n, int first,
                                    struct sbuf *ob, struct spans *out) {
    struct spans m = {0};
    enum cge_status st = CGE_OK;
    switch (p->kind) {
    case PRE_BERT: /* whitespace removed, then each punctuation character isolated */
        return split_whitespace(s, n, 1, ob, out);
    case PRE_WHITESPACE_SPLIT:
        return split_whitespace(s, n, 0, ob, out);
    case PRE_BYTELEVEL: {
        /* The prefix space goes in front of the piece; bytes stay raw (see the file comment). */
        struct sbuf tmp = {0};
        const char *src = s;
        size_t len = n;
        if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
            st = sb_putc(&tmp, ' ');
            if (!st) st = sb_put(&tmp, s, n);
            src = tmp.p;
            len = tmp.n;
        }
        if (!st) {
            if (p->use_regex) {
                st = regex_find_all(&p->re, src, len, &m);
                if (!st) st = split_with(src, len, &m, SPLIT_ISOLATED, 0, ob, out);
            } else {
                st = emit(ob, out, src, len);
            }
        }
        sb_free(&tmp);
        sp_free(&m);
        return st;
    }
    case PRE_WHITESPACE:
    case PRE_SPLIT:
        st = regex_find_all(&p->re, s, n, &m);
        if (!st) st = split_with(s, n, &m, p->kind == PRE_WHITESPACE ? SPLIT_REMOVED : p->behavior,
                                 p->kind == PRE_WHITESPACE ? 1 : p->invert, ob, out);
        sp_free(&m);
        return st;
    case PRE_PUNCTUATION:
        st = char_delims(s, n, uni_is_bert_punct, &m);
        if (!st) st = split_with(s, n, &m, p->behavior, 0, ob, out);
        sp_free(&m);
        return st;
    case PRE_DIGITS:
        st = char_delims(s, n, is_digit_char, &m);
        if (!st)
            st = split_with(s, n, &m, p->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0, ob,
                            out);
        sp_free(&m);
        return st;
    case PRE_METASPACE: {
        /* Spaces become the replacement; a replacement is prepended per the scheme; then split
         * before every replacement (MergedWithNext). */
        struct sbuf tmp = {0};
        int prepend = p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && first);
        if (prepend && !(n >= p->replacement_len && !memcmp(s, p->replacement, p->replacement_len)))
            st = sb_put(&tmp, p->replacement, p->replacement_len);
        for (size_t i = 0; i < n && !st; i++)
            st = s[i] == ' ' ? sb_put(&tmp, p->replacement, p->replacement_len) : sb_putc(&tmp, s[i]);
        if (!st && !p->split) st = emit(ob, out, tmp.p, tmp.n);
        if (!st && p->split) {
            for (size_t i = 0; i + p->replacement_len <= tmp.n && !st;) {
                if (!memcmp(tmp.p + i, p->replacement, p->replacement_len)) {
                    st = sp_push(&m, i, p->replacement_len);
                    i += p->replacement_len;
                } else {
                    i++;
                }
            }
            if (!st) st = split_with(tmp.p, tmp.n, &m, SPLIT_MERGED_NEXT, 0, ob, out);
        }
        sb_free(&tmp);
        sp_free(&m);
        return st;
    }
    case PRE_SEQUENCE:
        break;
    }
    return cge__err(CGE_ERR_UNSUPPORTED, "pre-tokenizer: unknown kind %d", (int)p->kind);
}

enum cge_status pretokenize(const struct pretok *p, const char *in_buf, const struct spans *in,
                            int first, struct sbuf *out_buf, struct spans *out) {
    out_buf->n = 0;
    out->n = 0;
    if (p->kind != PRE_SEQUENCE) {
        for (size_t i = 0; i < in->n; i++) {
            enum cge_status st = pretok_piece(p, in_buf + in->p[i].off, in->p[i].len,
                                              first && i == 0, out_buf, out);
            if (st) return st;
        }
        return CGE_OK;
    }
    /* A sequence: ping-pong between two buffer/span pairs. */
    struct sbuf b1 = {0}, b2 = {0};
    struct spans s1 = {0}, s2 = {0};
    enum cge_status st = CGE_OK;
    const char *cur_buf = in_buf;
    const struct spans *cur = in;
    for (size_t k = 0; k < p->n_sub && !st; k++) {
        struct sbuf *nb = (k % 2) ? &b2 : &b1;
        struct spans *ns = (k % 2) ? &s2 : &s1;
        st = pretokenize(p->sub[k], cur_buf, cur, first, nb, ns);
        cur_buf = nb->p;
        cur = ns;
    }
    if (!st) {
        for (size_t i = 0; i < cur->n && !st; i++) st = emit(out_buf, out, cur_buf + cur->p[i].off, cur->p[i].len);
    }
    sb_free(&b1);
    sb_free(&b2);
    sp_free(&s1);
    sp_free(&s2);
    return st;
}

void pretok_free(struct pretok *p) {
    if (!p) return;
    regex_free(&p->re);
    for (size_t i = 0; i < p->n_sub; i++) pretok_free(p->sub[i]);
    cge__free(p->sub);
    cge__free(p);
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the others to 256+k. */
int32_t bytelevel_char(unsigned char b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174)) return b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174))) k++;
    return 256 + k;
}
