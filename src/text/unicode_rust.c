/*
 * unicode_rust.c: where Hugging Face's Rust tokenizers library (the reference: the library that
 * transformers' fast tokenizers, sentence-transformers and text-embeddings-inference run) reads
 * Unicode differently from utf8proc and PCRE2, as small explicit tables.
 *
 * Key decision: cge keeps utf8proc and PCRE2 for every Unicode fact and corrects only the code
 * points where the reference disagrees, each table with its reason, rather than shipping its own
 * Unicode database. The Rust library's tables come from three places, of three ages:
 *  - BertNormalizer and BertPreTokenizer ask the `unicode_categories` crate (Unicode 8.0) for
 *    "other" (Cc, Cf, Co, Cs), "non-spacing mark" and "punctuation". Characters assigned since
 *    have no category there (rust_gc_missing), and three changed category since (overrides).
 *    Unassigned code points (Cn) are not "other" to it: they are kept (and become [UNK]).
 *  - Lowercase is Rust's char::to_lowercase, newer (Unicode 16/17) than utf8proc 2.8's 15.0:
 *    rust_lower_extra holds the case pairs utf8proc does not know yet.
 *  - Regexes run on Oniguruma with Unicode 16/17 tables, while Debian's PCRE2 10.42 has 14.0:
 *    \p{L} and \p{N} in a tokenizer.json pattern are widened with rust_letters_extra and
 *    rust_numbers_extra (pretokenize.c's pattern rewrite). A newer PCRE2 already has them; the union is the same.
 *  - Grapheme clusters (the Precompiled normalizer) come from unicode-segmentation, Unicode 17:
 *    rust_extend_extra holds the marks that extend a cluster there and not in utf8proc.
 *  - NFC/NFD come from `unicode-normalization-alignments`, whose data predates the combining
 *    marks of Unicode 9.0 to 15.0 (rust_ccc_zero: class 0 for it, so never reordered) and
 *    Unicode 13's U+11938 DIVES AKURU VOWEL SIGN O = U+11935 U+11930 (neither decomposed nor
 *    composed). uni_normalize cuts the text at these code points, copies them as they are and
 *    normalizes the runs between, which is what "class 0, no mapping" means.
 * test_text_rust_unicode derives each difference again from the Rust library, code point by code
 * point over planes 0-3 and a sample of the rest, and fails when a table is wrong or incomplete
 * (a new utf8proc or PCRE2 shows up there first).
 */
#include "text/text_internal.h"

#include <stdio.h>
#include <utf8proc.h>

struct urange {
    uint32_t lo, hi;
};

static int in_ranges(const struct urange *r, size_t n, uint32_t c) {
    size_t a = 0, b = n;
    while (a < b) {
        size_t m = (a + b) / 2;
        if (c < r[m].lo) b = m;
        else if (c > r[m].hi) a = m + 1;
        else return 1;
    }
    return 0;
}
#define IN(table, c) in_ranges(table, sizeof table / sizeof table[0], (uint32_t)(c))

/* Characters that utf8proc (Unicode 15.0) calls Mn, Cf or P* and that have no general category
 * in the unicode_categories crate (Unicode 8.0): assigned in Unicode 9.0 to 15.0. For the Rust
 * library they are neither "other", nor non-spacing marks, nor punctuation. */
static const struct urange rust_gc_missing[] = {
    {0x061D, 0x061D}, {0x07FD, 0x07FD}, {0x0890, 0x0891}, {0x0898, 0x089F}, {0x08CA, 0x08E2},
    {0x09FD, 0x09FE}, {0x0A76, 0x0A76}, {0x0AFA, 0x0AFF}, {0x0B55, 0x0B55}, {0x0C04, 0x0C04},
    {0x0C3C, 0x0C3C}, {0x0C77, 0x0C77}, {0x0C84, 0x0C84}, {0x0D00, 0x0D00}, {0x0D3B, 0x0D3C},
    {0x0D81, 0x0D81}, {0x0EBA, 0x0EBA}, {0x0ECE, 0x0ECE}, {0x180F, 0x180F}, {0x1885, 0x1886},
    {0x1ABF, 0x1ACE}, {0x1B7D, 0x1B7E}, {0x1DF6, 0x1DFB}, {0x2E43, 0x2E4F}, {0x2E52, 0x2E5D},
    {0xA82C, 0xA82C}, {0xA8C5, 0xA8C5}, {0xA8FF, 0xA8FF}, {0xA9BD, 0xA9BD}, {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAD}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50}, {0x10F55, 0x10F59},
    {0x10F82, 0x10F89}, {0x11070, 0x11070}, {0x11073, 0x11074}, {0x110C2, 0x110C2},
    {0x110CD, 0x110CD}, {0x111CF, 0x111CF}, {0x1123E, 0x1123E}, {0x11241, 0x11241},
    {0x1133B, 0x1133B}, {0x11438, 0x1143F}, {0x11442, 0x11444}, {0x11446, 0x11446},
    {0x1144B, 0x1144F}, {0x1145A, 0x1145B}, {0x1145D, 0x1145E}, {0x11660, 0x1166C},
    {0x116B9, 0x116B9}, {0x1182F, 0x11837}, {0x11839, 0x1183B}, {0x1193B, 0x1193C},
    {0x1193E, 0x1193E}, {0x11943, 0x11946}, {0x119D4, 0x119D7}, {0x119DA, 0x119DB},
    {0x119E0, 0x119E0}, {0x119E2, 0x119E2}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A38},
    {0x11A3B, 0x11A47}, {0x11A51, 0x11A56}, {0x11A59, 0x11A5B}, {0x11A8A, 0x11A96},
    {0x11A98, 0x11A9C}, {0x11A9E, 0x11AA2}, {0x11B00, 0x11B09}, {0x11C30, 0x11C36},
    {0x11C38, 0x11C3D}, {0x11C3F, 0x11C3F}, {0x11C41, 0x11C45}, {0x11C70, 0x11C71},
    {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3}, {0x11CB5, 0x11CB6},
    {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45},
    {0x11D47, 0x11D47}, {0x11D90, 0x11D91}, {0x11D95, 0x11D95}, {0x11D97, 0x11D97},
    {0x11EF3, 0x11EF4}, {0x11EF7, 0x11EF8}, {0x11F00, 0x11F01}, {0x11F36, 0x11F3A},
    {0x11F40, 0x11F40}, {0x11F42, 0x11F4F}, {0x11FFF, 0x11FFF}, {0x12FF1, 0x12FF2},
    {0x13430, 0x13440}, {0x13447, 0x13455}, {0x16E97, 0x16E9A}, {0x16F4F, 0x16F4F},
    {0x16FE2, 0x16FE2}, {0x16FE4, 0x16FE4}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46},
    {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021}, {0x1E023, 0x1E024},
    {0x1E026, 0x1E02A}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF}, {0x1E944, 0x1E94A}, {0x1E95E, 0x1E95F},
};

/* Letters (\p{L}) and numbers (\p{N}) of Oniguruma's tables that PCRE2 10.42 (Unicode 14.0)
 * does not have: Unicode 15.0 to 17.0 additions (CJK extensions H and I, Kawi, Todhri, Garay,
 * Tulu-Tigalari, Sunuwar, Kirat Rai, Ol Onal, Beria Erfe, ...), as PCRE2 class ranges. */
static const struct urange rust_letters_extra[] = {
    {0x1C89, 0x1C8A}, {0xA7CB, 0xA7CD}, {0xA7DA, 0xA7DC}, {0x105C0, 0x105F3}, {0x10D4A, 0x10D65},
    {0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x1123F, 0x11240}, {0x11380, 0x11389},
    {0x1138B, 0x1138B}, {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7},
    {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11BC0, 0x11BE0}, {0x11F02, 0x11F02},
    {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x1342F, 0x1342F}, {0x13441, 0x13446},
    {0x13460, 0x143FA}, {0x16100, 0x1611D}, {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF},
    {0x1B132, 0x1B132}, {0x1B155, 0x1B155}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D},
    {0x1E4D0, 0x1E4EB}, {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x2B739, 0x2B739},
    {0x2EBF0, 0x2EE5D}, {0x31350, 0x323AF},
};

static const struct urange rust_numbers_extra[] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x11F50, 0x11F59},
    {0x16130, 0x16139}, {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1D2C0, 0x1D2D3},
    {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA},
};

/* Combining marks (canonical combining class > 0 in utf8proc) that the Rust library's
 * normalization data does not have yet (Unicode 9.0 to 15.0): for it they are unassigned, class
 * 0, so they neither reorder nor compose. Plus U+11930 and U+11938 (see the file comment) and
 * U+11A7 (see uni_nf_barrier). */
static const struct urange rust_ccc_zero[] = {
    {0x07FD, 0x07FD}, {0x0898, 0x089F}, {0x08CA, 0x08D3}, {0x09FE, 0x09FE}, {0x0C3C, 0x0C3C},
    {0x0D3B, 0x0D3C}, {0x0EBA, 0x0EBA}, {0x1715, 0x1715}, {0x1ABF, 0x1ACE}, {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B},
    {0x1145E, 0x1145E}, {0x11839, 0x1183A}, {0x1193D, 0x1193E}, {0x11943, 0x11943},
    {0x119E0, 0x119E0}, {0x11A34, 0x11A34}, {0x11A47, 0x11A47}, {0x11A99, 0x11A99},
    {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97}, {0x11F41, 0x11F42},
    {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

int uni_nf_barrier(int32_t c) {
    /* U+11A7 is here for utf8proc rather than for the Rust library: utf8proc 2.8 composes a
     * Hangul LV syllable with U+11A7 (the T base, not a trailing consonant) and loses it; the
     * Rust library, like Unicode, leaves the pair alone. U+11A7 is a starter with no mapping. */
    return c == 0x11A7 || c == 0x11930 || c == 0x11938 || IN(rust_ccc_zero, c);
}

/* Grapheme_Cluster_Break=Extend in the Rust library's unicode-segmentation (Unicode 17) that
 * utf8proc 2.8 (15.0) does not know: combining marks of Unicode 16.0 and 17.0. The Precompiled
 * normalizer replaces whole grapheme clusters, so a mark there changes what a cluster is. */
static const struct urange rust_extend_extra[] = {
    {0x0897, 0x0897}, {0x1ACF, 0x1ADD}, {0x1AE0, 0x1AEB},
};

int uni_grapheme_extend_extra(int32_t c) {
    return c >= 0x0897 && IN(rust_extend_extra, c);
}

/* Case pairs of Rust's char::to_lowercase (Unicode 16/17) that utf8proc 2.8 does not have. */
static const struct {
    uint32_t lo, hi;
    int32_t delta;
} rust_lower_extra[] = {
    {0x1C89, 0x1C89, 1},          {0xA7CB, 0xA7CB, 0x0264 - 0xA7CB}, {0xA7CC, 0xA7CC, 1},
    {0xA7CE, 0xA7CE, 1},          {0xA7D2, 0xA7D2, 1},               {0xA7D4, 0xA7D4, 1},
    {0xA7DA, 0xA7DA, 1},          {0xA7DC, 0xA7DC, 0x019B - 0xA7DC}, {0x10D50, 0x10D65, 0x20},
    {0x16EA0, 0x16EB8, 0x1B},
};

static int is_other(utf8proc_category_t k) {
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CS ||
           k == UTF8PROC_CATEGORY_CO;
}

int uni_is_control_other(int32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    if (c < 0x80) return c < 0x20 || c == 0x7F;
    return is_other(utf8proc_category(c)) && !IN(rust_gc_missing, c);
}

int uni_is_bert_punct(int32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return 1;
    if (c < 0x80) return 0;
    /* Punctuation in Unicode 8.0, other categories now: U+166D CANADIAN SYLLABICS CHI SIGN (So
     * since 12.0), U+111C9 SHARADA SANDHI MARK (Mn since 11.0). */
    if (c == 0x166D || c == 0x111C9) return 1;
    return uni_is_punctuation(c) && !IN(rust_gc_missing, c);
}

int uni_is_bert_mn(int32_t c) {
    if (c < 0x300) return 0;
    /* U+1734 HANUNOO SIGN PAMUDPOD was Mn in Unicode 8.0 (Mc since 14.0); U+111C9 SHARADA
     * SANDHI MARK was Po (Mn since 11.0). */
    if (c == 0x1734) return 1;
    if (c == 0x111C9) return 0;
    return utf8proc_category(c) == UTF8PROC_CATEGORY_MN && !IN(rust_gc_missing, c);
}

int32_t uni_lower_extra(int32_t c) {
    for (size_t i = 0; i < sizeof rust_lower_extra / sizeof rust_lower_extra[0]; i++)
        if ((uint32_t)c >= rust_lower_extra[i].lo && (uint32_t)c <= rust_lower_extra[i].hi)
            return c + rust_lower_extra[i].delta;
    return -1;
}

/* Appends the extra ranges of \p{L} (kind 'L') or \p{N} ('N') as PCRE2 class items. */
enum cge_status uni_regex_extra(struct sbuf *out, char kind) {
    const struct urange *r = kind == 'L' ? rust_letters_extra : rust_numbers_extra;
    size_t n = kind == 'L' ? sizeof rust_letters_extra / sizeof rust_letters_extra[0]
                           : sizeof rust_numbers_extra / sizeof rust_numbers_extra[0];
    char buf[48];
    for (size_t i = 0; i < n; i++) {
        int k = r[i].lo == r[i].hi ? snprintf(buf, sizeof buf, "\\x{%X}", (unsigned)r[i].lo)
                                   : snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", (unsigned)r[i].lo,
                                              (unsigned)r[i].hi);
        enum cge_status st = sb_put(out, buf, (size_t)k);
        if (st) return st;
    }
    return CGE_OK;
}
