/*
 * test_text_rust_unicode.c: cge's normalizers and pre-tokenizers against Hugging Face's Rust
 * tokenizers, code point by code point.
 *
 * tests/rust-tokenizers/unicode.cjs asks the Rust library (the npm binding `tokenizers` 0.23.2)
 * what the normalizer of a tokenizer.json does to each code point alone, and what its
 * pre-tokenizer does to "a" c "b" (and "1" c " " for byte-level ones), over all of planes 0 and 1
 * and a sample of the rest (see the script); this program asks cge's same stages the same questions and counts the code
 * points whose answers differ. This is where Unicode-version differences show up (the Rust
 * library's tables are older than utf8proc's, or newer), one per code point rather than hidden
 * in a random string. test_text_rust covers whole strings and the models.
 * A missing node or package fails with the command that installs it.
 */
#include "core/core.h"
#include "testhelp.h"
#include "text/text_internal.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <unistd.h>

#define RUST_DIR "tests/rust-tokenizers"
#define FIX_CMD "(cd " RUST_DIR " && npm ci --ignore-scripts)"

static const struct {
    const char *name, *path;
    int byte_level, nfd; /* nfd: also probe NFD's canonical ordering (once is enough) */
} toks[] = {
    {"BERT (MiniLM, bert-base, MPNet)", "tests/assets/all-MiniLM-L6-v2/tokenizer.json", 0, 1},
    {"CLIP", "tests/assets/clip-vit-large-patch14/tokenizer.json", 1, 0},
    {"RoBERTa (CodeBERT; Whisper's is the same)", "tests/assets/codebert-base/tokenizer.json", 1, 0},
    {"T5 (INSTRUCTOR)", "tests/assets/t5-tokenizer/tokenizer.json", 0, 0},
};

static int probed(uint32_t c) {
    if (c >= 0xD800 && c <= 0xDFFF) return 0;
    if (c < 0x20000 || (c >= 0xE0000 && c < 0xE1000) || c >= 0x10FF00) return 1;
    return c < 0x40000 ? c % 7 == 0 : c % 61 == 0;
}

/* The answer format of unicode.cjs: pieces in hex, c's bytes as "{}", joined by ','. */
static void answer(struct sbuf *a, const char *const *piece, const size_t *len, size_t n,
                   const char *c, size_t clen) {
    a->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && sb_putc(a, ',')) abort();
        for (size_t k = 0; k < len[i];) {
            if (clen && k + clen <= len[i] && !memcmp(piece[i] + k, c, clen)) {
                if (sb_put(a, "{}", 2)) abort();
                k += clen;
            } else {
                char h[3];
                snprintf(h, sizeof h, "%02x", (unsigned char)piece[i][k]);
                if (sb_put(a, h, 2)) abort();
                k++;
            }
        }
    }
    if (!a->n && sb_putc(a, '.')) abort();
    if (sb_putc(a, 0)) abort();
}

/* cge's answer for one kind ('n', 'p', 'q') and code point; 0 on a cge error. */
static int cge_answer(const struct cge_tokenizer *t, char kind, uint32_t cp, struct sbuf *a) {
    struct sbuf c = {0}, in = {0}, ob = {0};
    struct spans sp_in = {0}, sp_out = {0};
    int ok = 0;
    if (sb_put_cp(&c, (int32_t)cp)) goto done;
    if (kind == 'd' || kind == 'e') { /* NFD of "a" c U+0334, of "a" U+0301 c */
        if (sb_put(&in, kind == 'd' ? "a" : "a\xcc\x81", kind == 'd' ? 1 : 3) || sb_put(&in, c.p, c.n) ||
            (kind == 'd' && sb_put(&in, "\xcc\xb4", 2)) || uni_normalize(in.p, in.n, 'D', &ob))
            goto done;
        const char *p = ob.p ? ob.p : "";
        size_t l = ob.n;
        answer(a, &p, &l, 1, c.p, c.n);
        ok = 1;
        goto done;
    }
    if (kind == 'n' || kind == 'g') { /* the normalizer on c, on U+00A0 c */
        if ((kind == 'g' && sb_put(&in, "\xc2\xa0", 2)) || sb_put(&in, c.p, c.n)) goto done;
        if (normalize(t->normalizer, in.p, in.n, &ob)) goto done;
        const char *p = ob.p ? ob.p : "";
        size_t l = ob.n;
        answer(a, &p, &l, 1, c.p, c.n);
        ok = 1;
        goto done;
    }
    if (sb_putc(&in, kind == 'p' ? 'a' : '1') || sb_put(&in, c.p, c.n) || sb_putc(&in, kind == 'p' ? 'b' : ' '))
        goto done;
    if (sp_push(&sp_in, 0, in.n) || pretokenize(t->pretok, in.p, &sp_in, 1, &ob, &sp_out)) goto done;
    {
        const char *pieces[64];
        size_t lens[64], n = sp_out.n < 64 ? sp_out.n : 64;
        for (size_t i = 0; i < n; i++) {
            pieces[i] = ob.p + sp_out.p[i].off;
            lens[i] = sp_out.p[i].len;
        }
        answer(a, pieces, lens, n, c.p, c.n);
        ok = 1;
    }
done:
    sb_free(&c);
    sb_free(&in);
    sb_free(&ob);
    sp_free(&sp_in);
    sp_free(&sp_out);
    return ok;
}

static int node_ok(void) {
    if (access(RUST_DIR "/node_modules/tokenizers/package.json", R_OK) != 0) {
        printf("  FAIL the Rust reference is not installed: run %s\n", FIX_CMD);
        return 0;
    }
    if (system("node -e 'require(\"./" RUST_DIR "/node_modules/tokenizers\")' >/dev/null 2>&1") != 0) {
        printf("  FAIL node cannot load %s/node_modules/tokenizers: install nodejs and run %s\n", RUST_DIR,
               FIX_CMD);
        return 0;
    }
    return 1;
}

static int show_max = 12;

static void run_one(size_t k, const char *dir) {
    struct cge_tokenizer *t = NULL;
    enum cge_status st = cge_tokenizer_load(toks[k].path, &t);
    CHECK_MSG(st == CGE_OK, "%s: %s", toks[k].path, cge_errmsg());
    if (st) return;
    char out[512], cmd[1024];
    snprintf(out, sizeof out, "%s/unicode_%zu.txt", dir, k);
    snprintf(cmd, sizeof cmd, "node " RUST_DIR "/unicode.cjs '%s' %d '%s'%s", toks[k].path, toks[k].byte_level, out,
             toks[k].nfd ? " nfd" : "");
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "'%s' exited with %d", cmd, rc);
    size_t len = 0;
    char *data = rc == 0 ? th_read_file(out, &len) : NULL;
    CHECK_MSG(data != NULL, "%s: no output", out);
    if (!data) {
        cge_tokenizer_free(t);
        return;
    }
    /* Per kind: code points compared and code points that differ. */
    long n_cmp[4] = {0}, n_diff[4] = {0};
    int shown = 0;
    struct sbuf a = {0};
    for (char *line = data; *line;) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        char kind;
        unsigned lo, hi;
        int pos = 0;
        if (sscanf(line, "%c %x %x %n", &kind, &lo, &hi, &pos) == 3 && pos > 0) {
            const char *want = line + pos;
            int ki = kind == 'n' || kind == 'g' ? 0 : kind == 'p' ? 1 : kind == 'q' ? 2 : 3;
            if ((ki == 0 && !t->normalizer) || ((ki == 1 || ki == 2) && !t->pretok)) {
                CHECK_MSG(0, "%s: the Rust library has a %s, cge has none", toks[k].name,
                          ki ? "pre-tokenizer" : "normalizer");
                break;
            }
            for (uint32_t c = lo; c <= hi; c++) {
                if (!probed(c)) continue;
                n_cmp[ki]++;
                int ok = cge_answer(t, kind, c, &a);
                if (ok && !strcmp(a.p, want)) continue;
                n_diff[ki]++;
                if (shown++ < show_max)
                    printf("    %s %c U+%04X: rust %s, cge %s\n", toks[k].name, kind, c, want,
                           ok ? a.p : cge_errmsg());
            }
        }
        if (!eol) break;
        line = eol + 1;
    }
    sb_free(&a);
    free(data);
    printf("  %-32s code points that differ: normalizer %ld of %ld, pre-tokenizer \"a?b\" %ld of %ld, "
           "\"1? \" %ld of %ld, NFD order %ld of %ld\n",
           toks[k].name, n_diff[0], n_cmp[0], n_diff[1], n_cmp[1], n_diff[2], n_cmp[2], n_diff[3], n_cmp[3]);
    CHECK_MSG(n_cmp[1] > 0, "%s: nothing compared", toks[k].name);
    CHECK_MSG(n_diff[0] + n_diff[1] + n_diff[2] + n_diff[3] == 0, "%s: %ld code points differ from the Rust library",
              toks[k].name, n_diff[0] + n_diff[1] + n_diff[2] + n_diff[3]);
    cge_tokenizer_free(t);
}

int main(void) {
    const char *env = getenv("CGE_RUST_SHOW"); /* how many differences to print */
    if (env) show_max = atoi(env);
    if (!node_ok()) {
        th_failed++;
        return test_report("text_rust_unicode");
    }
    char dir[] = "/tmp/cge_text_rust_unicode_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const char *only = getenv("CGE_RUST_ONLY"); /* one tokenizer, by index */
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
        if (!only || atoi(only) == (int)k) run_one(k, dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", dir);
    return test_report("text_rust_unicode");
}
