/*
 * cmd_tokenize.c: `cge tokenize --tokenizer PATH [--no-special] [--max-length N]`: reads one
 * JSON string per line on stdin and writes one JSON array of ids per line; a line that is not a
 * JSON string, or whose text cannot be tokenized, gives {"error": "..."} and the run goes on.
 *
 * The JSON string is decoded here rather than with cJSON, because cJSON stops at an escaped
 * NUL (\u0000) and the tokenizer must see every byte.
 */
#include "cge.h"
#include "commands.h"
#include "core/core.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_u4(const char *s, size_t n, size_t i, unsigned *v) {
    if (i + 4 > n) return 0;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval((unsigned char)s[i + k]);
        if (h < 0) return 0;
        *v = *v * 16 + (unsigned)h;
    }
    return 1;
}

static void put_utf8(char *o, size_t *k, unsigned c) {
    if (c < 0x80) {
        o[(*k)++] = (char)c;
    } else if (c < 0x800) {
        o[(*k)++] = (char)(0xC0 | (c >> 6));
        o[(*k)++] = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        o[(*k)++] = (char)(0xE0 | (c >> 12));
        o[(*k)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[(*k)++] = (char)(0x80 | (c & 0x3F));
    } else {
        o[(*k)++] = (char)(0xF0 | (c >> 18));
        o[(*k)++] = (char)(0x80 | ((c >> 12) & 0x3F));
        o[(*k)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[(*k)++] = (char)(0x80 | (c & 0x3F));
    }
}

/* Decodes the JSON string that is the whole line into out (at most n bytes); returns NULL on
 * success or a constant error message. */
static const char *decode_json_string(const char *s, size_t n, char *out, size_t *out_len) {
    size_t i = 0, k = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    if (i >= n || s[i] != '"') return "line is not a JSON string";
    i++;
    for (;;) {
        if (i >= n) return "unterminated JSON string";
        unsigned char c = (unsigned char)s[i++];
        if (c == '"') break;
        if (c < 0x20) return "control character inside a JSON string";
        if (c != '\\') {
            out[k++] = (char)c;
            continue;
        }
        if (i >= n) return "unterminated escape";
        c = (unsigned char)s[i++];
        unsigned u;
        switch (c) {
        case '"': out[k++] = '"'; break;
        case '\\': out[k++] = '\\'; break;
        case '/': out[k++] = '/'; break;
        case 'b': out[k++] = '\b'; break;
        case 'f': out[k++] = '\f'; break;
        case 'n': out[k++] = '\n'; break;
        case 'r': out[k++] = '\r'; break;
        case 't': out[k++] = '\t'; break;
        case 'u':
            if (!read_u4(s, n, i, &u)) return "bad \\u escape";
            i += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                unsigned lo;
                if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || !read_u4(s, n, i + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return "unpaired surrogate in \\u escape";
                i += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                return "unpaired surrogate in \\u escape";
            }
            put_utf8(out, &k, u);
            break;
        default:
            return "bad escape in JSON string";
        }
    }
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    if (i != n) return "text after the JSON string";
    *out_len = k;
    return NULL;
}

static void print_error(const char *msg) {
    fputs("{\"error\": \"", stdout);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    fputs("\"}\n", stdout);
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int add_special = 1;
    long long max_len = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--no-special")) {
            add_special = 0;
        } else if (!strcmp(argv[i], "--max-length") && i + 1 < argc) {
            max_len = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: cge tokenize --tokenizer PATH [--no-special] [--max-length N]\n"
                   "Reads one JSON string per line on stdin; writes one JSON array of ids per line.\n"
                   "PATH: a tokenizer.json, a SentencePiece .model, or a model folder.\n"
                   "Special tokens are added as Hugging Face add_special_tokens=True does (not for a\n"
                   "bare .model file); --no-special leaves them out. --max-length truncates the\n"
                   "content, keeping the special tokens. A bad line prints {\"error\": ...}.\n");
            return 0;
        } else {
            fprintf(stderr, "cge tokenize: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "cge tokenize: --tokenizer PATH is required\n");
        return 2;
    }
    struct cge_tokenizer *t = NULL;
    enum cge_status st = cge_tokenizer_load(path, &t);
    if (st) {
        fprintf(stderr, "cge tokenize: %s: %s\n", cge_status_str(st), cge_errmsg());
        return 1;
    }
    char *line = NULL, *text = NULL;
    size_t cap = 0, text_cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        if (text_cap < (size_t)len + 1) {
            free(text);
            text_cap = (size_t)len + 1;
            text = malloc(text_cap);
            if (!text) {
                fprintf(stderr, "cge tokenize: out of memory\n");
                break;
            }
        }
        size_t n = 0;
        const char *err = decode_json_string(line, (size_t)len, text, &n);
        if (err) {
            print_error(err);
            continue;
        }
        int32_t *ids = NULL;
        int64_t n_ids = 0;
        st = cge_tokenizer_encode(t, text, n, add_special, max_len, &ids, &n_ids, NULL);
        if (st) {
            print_error(cge_errmsg());
            continue;
        }
        putchar('[');
        for (int64_t i = 0; i < n_ids; i++) printf(i ? ",%d" : "%d", ids[i]);
        fputs("]\n", stdout);
        cge__free(ids);
    }
    free(line);
    free(text);
    cge_tokenizer_free(t);
    return 0;
}
