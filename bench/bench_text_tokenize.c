/*
 * bench_text_tokenize.c: tokens per second on one thread for each tokenizer kind over the real
 * text of tests/assets/media/text/ (fortunes, literature, riddles as documents; the word list
 * as 16-word lines), side by side with the @huggingface/tokenizers npm package (a JavaScript
 * port of HF tokenizers) on the same texts and tokenizer files, in the same run.
 *
 * A second peer is Hugging Face's Rust library itself (bench/bench_text_tokenize_rust.cjs, the
 * npm binding of tests/rust-tokenizers, RAYON_NUM_THREADS=1), the one transformers runs.
 * The JavaScript peer is bench/bench_text_tokenize.cjs, run through node when
 * bench/node_modules holds the package (`cd bench && npm install`); without it the column says
 * "skipped". The peer also returns a checksum of its ids, so the table shows whether both
 * libraries produced the same ids. Run from the repository root (bench/run.sh does).
 */
#include "core/core.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PASSES 3    /* cge passes over the corpus */
#define JS_PASSES 1 /* the JavaScript peer is ~10-40x slower: one pass keeps the bench short */

struct kind {
    const char *name, *path;
    int js; /* 1: the JS peer can read this file (tokenizer.json) */
};

static const struct kind kinds[] = {
    {"WordPiece (MiniLM)", "tests/assets/all-MiniLM-L6-v2/tokenizer.json", 1},
    {"BPE byte-level (CodeBERT)", "tests/assets/codebert-base/tokenizer.json", 1},
    {"BPE CLIP", "tests/assets/clip-vit-large-patch14/tokenizer.json", 1},
    {"BPE byte-level (Whisper)", "tests/assets/whisper-large-v3/tokenizer.json", 1},
    {"Unigram (T5 tokenizer.json)", "tests/assets/instructor-xl/tokenizer.json", 1},
    {"SPM Unigram (spiece.model)", "tests/assets/instructor-xl/spiece.model", 0},
    {"SPM BPE (Mistral .model)", "tests/assets/e5-mistral-7b-instruct/tokenizer.model", 0},
};

struct doc {
    char *s;
    size_t n;
};
static struct doc *docs;
static size_t n_docs, cap_docs, total_bytes;

static void add_doc(const char *s, size_t n) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ')) n--;
    while (n && (s[0] == '\n' || s[0] == ' ')) {
        s++;
        n--;
    }
    if (!n) return;
    if (n_docs == cap_docs) {
        cap_docs = cap_docs ? cap_docs * 2 : 1024;
        docs = realloc(docs, cap_docs * sizeof *docs);
    }
    docs[n_docs].s = malloc(n);
    memcpy(docs[n_docs].s, s, n);
    docs[n_docs++].n = n;
    total_bytes += n;
}

static int load_corpus(void) {
    static const char *const fortune_files[] = {"fortunes", "literature", "riddles"};
    for (int f = 0; f < 3; f++) {
        char path[256];
        snprintf(path, sizeof path, "tests/assets/media/text/%s", fortune_files[f]);
        char *data;
        size_t len;
        if (cge__read_file(path, (size_t)64 << 20, &data, &len)) return 0;
        /* Documents are separated by lines holding a single '%'. */
        size_t start = 0;
        for (size_t i = 0; i + 1 < len; i++)
            if (data[i] == '\n' && data[i + 1] == '%' && (i + 2 == len || data[i + 2] == '\n')) {
                add_doc(data + start, i - start);
                start = i + 3 < len ? i + 3 : len;
            }
        add_doc(data + start, len - start);
        cge__free(data);
    }
    char *data;
    size_t len;
    if (cge__read_file("tests/assets/media/text/american-english", (size_t)64 << 20, &data, &len)) return 0;
    size_t start = 0, words = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') continue;
        data[i] = ' ';
        if (++words == 16) {
            add_doc(data + start, i - start);
            start = i + 1;
            words = 0;
        }
    }
    add_doc(data + start, len - start);
    cge__free(data);
    return 1;
}

/* Writes the documents as JSON strings, one per line, for the JavaScript peer. */
static int write_jsonl(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    for (size_t d = 0; d < n_docs; d++) {
        fputc('"', f);
        for (size_t i = 0; i < docs[d].n; i++) {
            unsigned char c = (unsigned char)docs[d].s[i];
            if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
            else if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
        fputs("\"\n", f);
    }
    return fclose(f) == 0;
}

int main(void) {
    if (!load_corpus()) {
        printf("bench_text_tokenize: tests/assets/media/text/ not found (run from the repository root)\n");
        return 1;
    }
    char jsonl[] = "/tmp/cge_bench_text_XXXXXX";
    int fd = mkstemp(jsonl);
    int have_js = fd >= 0 && access("bench/node_modules/@huggingface/tokenizers/package.json", F_OK) == 0 &&
                  system("node --version > /dev/null 2>&1") == 0;
    if (fd >= 0) close(fd);
    int have_rust = access("tests/rust-tokenizers/node_modules/tokenizers/package.json", F_OK) == 0 &&
                    system("node --version > /dev/null 2>&1") == 0;
    if ((have_js || have_rust) && !write_jsonl(jsonl)) have_js = have_rust = 0;
    printf("tokenizer throughput, one thread: %zu documents, %.2f MB of text, add_special; cge %d passes,"
           " js %d\n", n_docs, (double)total_bytes / 1e6, PASSES, JS_PASSES);
    if (!have_js)
        printf("(@huggingface/tokenizers peer skipped: run `cd bench && npm install` and have node)\n");
    if (!have_rust)
        printf("(Rust tokenizers peer skipped: run `make rust-tokenizers` and have node)\n");
    printf("%-28s %10s %12s %9s | %12s %7s %4s | %12s %9s %7s %s\n", "kind", "tokens", "cge tok/s",
           "cge MB/s", "rust tok/s", "vs rust", "same", "js tok/s", "js MB/s", "speedup", "same ids");
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        struct cge_tokenizer *t = NULL;
        if (cge_tokenizer_load(kinds[k].path, &t) != CGE_OK) {
            printf("%-28s load failed: %s\n", kinds[k].name, cge_errmsg());
            continue;
        }
        long long tokens = 0, checksum = 0;
        int64_t t0 = cge__now_us();
        for (int p = 0; p < PASSES; p++) {
            for (size_t d = 0; d < n_docs; d++) {
                int32_t *ids = NULL;
                int64_t n = 0;
                if (cge_tokenizer_encode(t, docs[d].s, docs[d].n, 1, 0, &ids, &n, NULL) != CGE_OK) {
                    printf("encode failed: %s\n", cge_errmsg());
                    continue;
                }
                tokens += n;
                if (p == 0)
                    for (int64_t i = 0; i < n; i++) checksum = (checksum + ids[i]) % 1000000007;
                cge__free(ids);
            }
        }
        double secs = (double)(cge__now_us() - t0) / 1e6;
        double tps = (double)tokens / secs, mbs = (double)total_bytes * PASSES / secs / 1e6;
        printf("%-28s %10lld %12.0f %9.2f |", kinds[k].name, tokens / PASSES, tps, mbs);
        if (have_rust && kinds[k].js) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "RAYON_NUM_THREADS=1 node bench/bench_text_tokenize_rust.cjs %s %s %d 2>&1",
                     kinds[k].path, jsonl, PASSES);
            FILE *p = popen(cmd, "r");
            long long r_tokens = 0, r_sum = -1;
            double r_secs = 0;
            int ok = p && fscanf(p, "%lld %lf %lld", &r_tokens, &r_secs, &r_sum) == 3 && r_secs > 0;
            if (p) pclose(p);
            if (ok)
                printf(" %12.0f %6.2fx %4s |", (double)r_tokens / r_secs, tps / ((double)r_tokens / r_secs),
                       r_tokens == tokens && r_sum == checksum ? "yes" : "NO");
            else
                printf(" %12s %7s %4s |", "(failed)", "", "");
        } else {
            printf(" %12s %7s %4s |", have_rust ? "(n/a)" : "(skipped)", "", "");
        }
        if (have_js && kinds[k].js) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "node bench/bench_text_tokenize.cjs %s %s %d 2>&1", kinds[k].path,
                     jsonl, JS_PASSES);
            FILE *p = popen(cmd, "r");
            long long js_tokens = 0, js_sum = -1;
            double js_secs = 0;
            int ok = p && fscanf(p, "%lld %lf %lld", &js_tokens, &js_secs, &js_sum) == 3 && js_secs > 0;
            if (p) pclose(p);
            if (ok) {
                double jtps = (double)js_tokens / js_secs;
                printf(" %12.0f %9.2f %6.1fx %s\n", jtps, (double)total_bytes * JS_PASSES / js_secs / 1e6,
                       tps / jtps, js_tokens * PASSES == tokens * JS_PASSES && js_sum == checksum ? "yes" : "NO");
            } else {
                printf(" %12s\n", "(peer failed)");
            }
        } else {
            printf(" %12s\n", have_js ? "(n/a: .model)" : "(skipped)");
        }
        cge_tokenizer_free(t);
    }
    unlink(jsonl);
    for (size_t d = 0; d < n_docs; d++) free(docs[d].s);
    free(docs);
    return 0;
}
