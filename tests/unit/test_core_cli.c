/*
 * test_core_cli.c: the cge command's dispatcher and its small commands, run as a user runs them
 * (<build>/cge in a shell, stdin/stdout/stderr in files): usage and exit codes (0 ok, 1 failed,
 * 2 usage), `version`, `models` against the slot table written out here, `inspect` against the
 * fixture's own safetensors header (read here with cJSON), `tokenize` against the ids of
 * tests/fixtures/e2e/bert_mean_l2/case.json (made by @huggingface/tokenizers) and its JSON string
 * decoding and error lines, `cache bench | stats | verify` on a temporary file, and the options
 * and bad lines of `embed` (its values are checked by test_models_e2e_text_cli; `fusion` has
 * test_fusion_cli), `info` (its ISA list against /proc/cpuinfo) and `embed --backend`.
 */
#include "cge.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <sys/wait.h>
#include <unistd.h>

static char cge_bin[1024], tmpdir[] = "/tmp/cge_test_cli_XXXXXX";
static char *out, *err; /* the last run's stdout and stderr */

static int find_cge(void) {
    return th_find_cge(cge_bin, sizeof cge_bin);
}

/* Runs `cge ARGS` with stdin from the text `in` (NULL: /dev/null); returns the exit status
 * (-1 when it did not exit normally) and leaves stdout/stderr in out/err. */
static int run(const char *in, const char *args) {
    char inp[300], outp[300], errp[300], cmd[2400];
    snprintf(inp, sizeof inp, "%s/stdin", tmpdir);
    snprintf(outp, sizeof outp, "%s/stdout", tmpdir);
    snprintf(errp, sizeof errp, "%s/stderr", tmpdir);
    FILE *f = fopen(inp, "w");
    CHECK(f != NULL);
    if (f) {
        if (in) fputs(in, f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s %s <%s >%s 2>%s", cge_bin, args, inp, outp, errp);
    int st = system(cmd);
    free(out);
    free(err);
    out = th_read_file(outp, NULL);
    err = th_read_file(errp, NULL);
    CHECK(out && err);
    if (!out) out = calloc(1, 1);
    if (!err) err = calloc(1, 1);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* ---- dispatcher, version, models ----------------------------------------------------------- */

static void test_dispatch(void) {
    CHECK(run(NULL, "") == 2);
    CHECK(strstr(err, "usage: cge <command>") && !out[0]);
    CHECK(run(NULL, "--help") == 0);
    static const char *const cmds[] = {"models", "cache", "tokenize", "inspect", "embed", "fusion", "version"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, "\n  %s ", cmds[i]);
        CHECK_MSG(strstr(out, want) != NULL, "--help lacks %s", cmds[i]);
    }
    CHECK(run(NULL, "-h") == 0 && strstr(out, "usage: cge"));
    CHECK(run(NULL, "help") == 0 && strstr(out, "usage: cge"));
    CHECK(run(NULL, "frobnicate") == 2);
    CHECK(strstr(err, "cge: unknown command 'frobnicate'") && strstr(err, "usage: cge"));
    /* version: "cge X.Y.Z", the version the header states. */
    char want[64];
    snprintf(want, sizeof want, "cge %s\n", CGE_VERSION_STRING);
    CHECK(run(NULL, "version") == 0 && !strcmp(out, want));
    CHECK(run(NULL, "--version") == 0 && !strcmp(out, want));
    int a, b, c;
    CHECK(sscanf(out, "cge %d.%d.%d", &a, &b, &c) == 3);
}

static void test_models(void) {
    /* The slot table as DESIGN.md §2 gives it (model, family, dim), written out here. */
    static const struct {
        const char *slot, *model, *family;
        int dim;
    } want[12] = {
        {"E1", "sentence-transformers/all-MiniLM-L6-v2", "bert", 384},
        {"E2", "BAAI/bge-large-en-v1.5", "bert", 1024},
        {"E3", "hkunlp/instructor-xl", "t5", 768},
        {"E4", "openai/clip-vit-large-patch14", "clip", 768},
        {"E5", "openai/whisper-large-v3", "whisper", 1280},
        {"E6", "microsoft/codebert-base", "roberta", 768},
        {"E7", "sentence-transformers/sentence-t5-base", "t5", 768},
        {"E8", "sentence-transformers/all-mpnet-base-v2", "mpnet", 768},
        {"E9", "facebook/contriever", "bert", 768},
        {"E10", "facebook/dragon-plus-{query,context}-encoder", "bert", 768},
        {"E11", "thenlper/gte-large", "bert", 1024},
        {"E12", "intfloat/e5-mistral-7b-instruct", "mistral", 4096},
    };
    CHECK(run(NULL, "models") == 0);
    CHECK(!strncmp(out, "slot ", 5) && count_lines(out) == 14);
    const char *line = strchr(out, '\n');
    for (int i = 0; i < 12 && line; i++) {
        char slot[8], model[80], family[16];
        int dim = 0;
        CHECK_MSG(sscanf(line + 1, "%7s %79s %15s %d", slot, model, family, &dim) == 4, "row %d", i);
        CHECK_MSG(!strcmp(slot, want[i].slot) && !strcmp(model, want[i].model) &&
                      !strcmp(family, want[i].family) && dim == want[i].dim,
                  "row %d: %s %s %s %d", i, slot, model, family, dim);
        line = strchr(line + 1, '\n');
    }
    CHECK(strstr(out, "\nE5 ") && strstr(strstr(out, "\nE5 "), " audio "));
    CHECK(strstr(out, "total dimension: 13184 (fused: 1536, 8 experts, top-2)\n") != NULL);
    CHECK(run(NULL, "models --help") == 0 && strstr(out, "usage: cge models"));
}

/* ---- inspect -------------------------------------------------------------------------------- */

static void test_inspect(void) {
    const char *file = "tests/fixtures/e2e/bert_mean_l2/model/model.safetensors";
    /* The reference: the file's own JSON header (8-byte little-endian length, then JSON). */
    size_t len = 0;
    unsigned char *buf = (unsigned char *)th_read_file(file, &len);
    CHECK(buf && len > 8);
    if (!buf) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    cJSON *hdr = hl < len ? cJSON_ParseWithLength((const char *)buf + 8, (size_t)hl) : NULL;
    CHECK(hdr != NULL);
    char args[600];
    snprintf(args, sizeof args, "inspect %s", file);
    CHECK(run(NULL, args) == 0);
    int n_tensors = 0;
    long long n_elem = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, hdr) {
        if (!strcmp(t->string, "__metadata__")) continue;
        n_tensors++;
        const cJSON *shape = cJSON_GetObjectItem(t, "shape"), *d;
        char want[300];
        int off = snprintf(want, sizeof want, "\n%s ", t->string);
        long long ne = 1;
        const char *pos = strstr(out, want);
        CHECK_MSG(pos != NULL, "inspect lacks %s", t->string);
        char dt[16] = ""; /* the header's "F32" is printed as cge_dtype_str's "f32" */
        snprintf(dt, sizeof dt, "%s", cJSON_GetObjectItem(t, "dtype")->valuestring);
        for (char *q = dt; *q; q++) *q = (char)tolower((unsigned char)*q);
        off = snprintf(want, sizeof want, "  %-5s  [", dt);
        int first = 1;
        cJSON_ArrayForEach(d, shape) {
            off += snprintf(want + off, sizeof want - (size_t)off, first ? "%d" : ", %d", d->valueint);
            ne *= d->valueint;
            first = 0;
        }
        snprintf(want + off, sizeof want - (size_t)off, "]\n");
        const char *eol = pos ? strchr(pos + 1, '\n') : NULL;
        CHECK_MSG(pos && eol && strstr(pos, want) && strstr(pos, want) < eol + 1, "%s: want%s", t->string, want);
        n_elem += ne;
    }
    char summary[200];
    snprintf(summary, sizeof summary, ": %d tensors, %lld elements, %lld bytes\n", n_tensors, n_elem, n_elem * 4);
    CHECK_MSG(strstr(out, summary) != NULL, "summary: want%s", summary);
    CHECK(count_lines(out) == n_tensors + 2);
    cJSON_Delete(hdr);
    free(buf);
    /* A folder holding the checkpoint is the same listing. */
    char *file_out = strdup(out);
    CHECK(run(NULL, "inspect tests/fixtures/e2e/bert_mean_l2/model") == 0);
    /* Every line but the summary (which names the path) is the same. */
    const char *summary_at = file_out ? strstr(file_out, "tests/fixtures/") : NULL;
    CHECK(summary_at && summary_at > file_out && !strncmp(out, file_out, (size_t)(summary_at - file_out)));
    free(file_out);
    /* Errors: one line on stderr naming the file, exit 1; usage errors exit 2. */
    CHECK(run(NULL, "inspect tests/fixtures/e2e/bert_mean_l2/model/config.json") == 1);
    CHECK(count_lines(err) == 1 && !strncmp(err, "cge inspect: ", 13) && !out[0]);
    CHECK(run(NULL, "inspect /nonexistent/cge/model.safetensors") == 1);
    CHECK(strstr(err, "/nonexistent/cge") != NULL);
    CHECK(run(NULL, "inspect") == 2 && strstr(err, "usage: cge inspect"));
    CHECK(run(NULL, "inspect a b") == 2);
    CHECK(run(NULL, "inspect --help") == 0 && strstr(out, "usage: cge inspect"));
}

/* ---- tokenize ------------------------------------------------------------------------------- */

static void test_tokenize(void) {
    const char *dir = "tests/fixtures/e2e/bert_mean_l2";
    char p[300];
    snprintf(p, sizeof p, "%s/case.json", dir);
    char *cj = th_read_file(p, NULL);
    cJSON *c = cj ? cJSON_Parse(cj) : NULL;
    free(cj);
    snprintf(p, sizeof p, "%s/inputs.jsonl", dir);
    char *inputs = th_read_file(p, NULL);
    CHECK(c && inputs);
    if (!c || !inputs) return;
    /* Every input as a bare JSON string, one per line: the reference ids line by line. The
     * fixture's max_length truncates the long input, so ask for the same. */
    size_t cap = strlen(inputs) + 64;
    char *in = calloc(1, cap), *save = NULL;
    int n = 0;
    for (char *ln = strtok_r(inputs, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save), n++) {
        cJSON *d = cJSON_Parse(ln);
        char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(d, "text"));
        strcat(in, s);
        strcat(in, "\n");
        cJSON_free(s);
        cJSON_Delete(d);
    }
    int max_len = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "tokenization"), "max_length")->valueint;
    char args[600];
    snprintf(args, sizeof args, "tokenize --tokenizer %s/model --max-length %d", dir, max_len);
    CHECK(run(in, args) == 0);
    CHECK(count_lines(out) == n);
    const cJSON *tids = cJSON_GetObjectItem(c, "token_ids");
    char *line = out;
    for (int i = 0; i < n && line; i++) {
        char *nl = strchr(line, '\n');
        cJSON *got = cJSON_ParseWithLength(line, nl ? (size_t)(nl - line) : strlen(line));
        char *g = cJSON_PrintUnformatted(got), *w = cJSON_PrintUnformatted(cJSON_GetArrayItem(tids, i));
        CHECK_MSG(g && w && !strcmp(g, w), "input %d: %s vs %s", i, g ? g : "?", w ? w : "?");
        cJSON_free(g);
        cJSON_free(w);
        cJSON_Delete(got);
        line = nl ? nl + 1 : NULL;
    }
    /* "Hello world" is [CLS] hello world [SEP] = 101 7592 2088 102 (vocab.txt). */
    snprintf(args, sizeof args, "tokenize --tokenizer %s/model/tokenizer.json", dir);
    CHECK(run("\"Hello world\"\n", args) == 0 && !strcmp(out, "[101,7592,2088,102]\n"));
    snprintf(args, sizeof args, "tokenize --tokenizer %s/model --no-special", dir);
    CHECK(run("\"Hello world\"\n", args) == 0 && !strcmp(out, "[7592,2088]\n"));
    snprintf(args, sizeof args, "tokenize --tokenizer %s/model --max-length 3", dir);
    CHECK(run("\"Hello world\"\n", args) == 0 && !strcmp(out, "[101,7592,102]\n"));
    /* JSON string decoding: escapes, a surrogate pair, blanks around; then bad lines, each an
     * {"error": ...} line in place, and the run goes on. */
    snprintf(args, sizeof args, "tokenize --tokenizer %s/model", dir);
    const char *lines = "  \"Hello\\u0020\\u0077orld\"  \n"     /* = Hello world */
                        "\"\\ud83d\\ude80\"\n"                    /* = the rocket, raw */
                        "\"\xf0\x9f\x9a\x80\"\n"
                        "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\"\n"
                        "hello\n"
                        "\"newline inside\n"
                        "\"bad \\x escape\"\n"
                        "\"bad \\u12G4\"\n"
                        "\"lone \\udc00\"\n"
                        "\"lone \\ud800 high\"\n"
                        "\"ctl \x01\"\n"
                        "\"a\" trailing\n"
                        "\"end\\\n"
                        "\"ok\"\n";
    CHECK(run(lines, args) == 0);
    CHECK_MSG(count_lines(out) == 14, "%d lines", count_lines(out));
    static const char *const want[] = {
        "[101,7592,2088,102]", NULL, NULL, NULL,
        "{\"error\": \"line is not a JSON string\"}",
        "{\"error\": \"control character inside a JSON string\"}",
        "{\"error\": \"bad escape in JSON string\"}",
        "{\"error\": \"bad \\\\u escape\"}",
        "{\"error\": \"unpaired surrogate in \\\\u escape\"}",
        "{\"error\": \"unpaired surrogate in \\\\u escape\"}",
        "{\"error\": \"control character inside a JSON string\"}",
        "{\"error\": \"text after the JSON string\"}",
        "{\"error\": \"bad escape in JSON string\"}",
        NULL,
    };
    char *rows[14] = {0};
    line = out;
    for (int i = 0; i < 14 && line && *line; i++) {
        rows[i] = line;
        line = strchr(line, '\n');
        if (line) *line++ = 0;
    }
    for (int i = 0; i < 14; i++)
        if (want[i]) CHECK_MSG(rows[i] && !strcmp(rows[i], want[i]), "line %d: %s", i, rows[i] ? rows[i] : "-");
    CHECK(rows[1] && rows[2] && !strcmp(rows[1], rows[2]) && rows[1][0] == '[');
    CHECK(rows[3] && rows[3][0] == '[' && !strchr(rows[3], '{'));
    CHECK(rows[13] && rows[13][0] == '[');
    /* A last line without its newline: the string or the escape is cut off. */
    CHECK(run("\"abc", args) == 0 && !strcmp(out, "{\"error\": \"unterminated JSON string\"}\n"));
    CHECK(run("\"abc\\", args) == 0 && !strcmp(out, "{\"error\": \"unterminated escape\"}\n"));
    /* Usage and load errors. */
    CHECK(run(NULL, "tokenize") == 2 && strstr(err, "--tokenizer PATH is required"));
    CHECK(run(NULL, "tokenize --tokenizer") == 2 && strstr(err, "unknown argument"));
    CHECK(run(NULL, "tokenize --bogus") == 2 && strstr(err, "unknown argument '--bogus'"));
    CHECK(run(NULL, "tokenize --tokenizer /nonexistent/tok.json") == 1);
    CHECK(count_lines(err) == 1 && !strncmp(err, "cge tokenize: ", 14));
    CHECK(run(NULL, "tokenize --help") == 0 && strstr(out, "usage: cge tokenize"));
    CHECK(run("", args) == 0 && !out[0]);
    free(in);
    free(inputs);
    cJSON_Delete(c);
}

/* ---- embed: options and line errors ------------------------------------------------------- */

/* Splits out into lines; returns the count (at most cap). */
static int split_lines(char *s, char **rows, int cap) {
    int n = 0;
    while (*s && n < cap) {
        rows[n++] = s;
        char *nl = strchr(s, '\n');
        if (!nl) break;
        *nl = 0;
        s = nl + 1;
    }
    return n;
}

static int is_vector(const char *row, int dim) {
    cJSON *a = cJSON_Parse(row);
    int ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == dim;
    cJSON_Delete(a);
    return ok;
}

static void test_embed(void) {
    const char *model = "--model tests/fixtures/e2e/bert_mean_l2/model";
    char args[600];
    /* One output line per input line, in order: good lines a 32-d vector, bad lines an error. */
    const char *in = "{\"text\": \"Hello world\"}\n"
                     "{\"text\": \"Hello world\", \"instruction\": null}\n"
                     "not json\n"
                     "42\n"
                     "{}\n"
                     "{\"text\": \"a\", \"input_ids\": [1]}\n"
                     "{\"text\": 5}\n"
                     "{\"text\": \"a\", \"instruction\": 7}\n"
                     "{\"input_ids\": []}\n"
                     "{\"input_ids\": [101, 1.5, 102]}\n"
                     "{\"input_ids\": [101, 7592, 2088, 102]}\n"
                     "{\"image\": 3}\n"
                     "{\"audio\": false}\n"
                     "{\"image\": \"tests/fixtures/e2e/clip_image/camera.png\"}\n"
                     "{\"audio\": \"tests/fixtures/e2e/whisper_audio/jfk_16k.wav\"}\n"
                     "\"Hello world\"\n";
    static const int good[] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    enum { N = sizeof good / sizeof good[0] };
    snprintf(args, sizeof args, "embed %s --batch 3", model);
    CHECK_MSG(run(in, args) == 0, "%s", err);
    char *rows[N + 4];
    int n = split_lines(out, rows, N + 4);
    CHECK_MSG(n == N, "%d output lines for %d inputs", n, N);
    for (int i = 0; i < n && i < N; i++) {
        if (good[i]) CHECK_MSG(is_vector(rows[i], 32), "line %d: %.80s", i, rows[i]);
        else CHECK_MSG(!strncmp(rows[i], "{\"error\":", 9), "line %d: %.80s", i, rows[i]);
    }
    /* "Hello world" as transformers embedded it (bert_mean_l2 expected.f32, row 0); text,
     * bare string and the same ids give it. */
    float *exp = th_read_f32("tests/fixtures/e2e/bert_mean_l2/expected.f32", NULL);
    CHECK(exp != NULL);
    for (int r = 0; exp && r < n && r < N; r++) {
        if (r != 0 && r != 10 && r != 15) continue;
        cJSON *a = cJSON_Parse(rows[r]);
        float v[32] = {0};
        for (int j = 0; j < 32 && cJSON_GetArraySize(a) == 32; j++) v[j] = (float)cJSON_GetArrayItem(a, j)->valuedouble;
        CHECK_MSG(th_rel_err(v, exp, 32) < 1e-5, "line %d: rel err %.3g", r, th_rel_err(v, exp, 32));
        cJSON_Delete(a);
    }
    free(exp);
    /* Options that change the model: each still gives a vector per line. */
    static const char *const opts[] = {"--pooling cls", "--pooling mean", "--pooling max", "--pooling last",
                                       "--dtype bf16", "--dtype int8", "--dtype f32", "--threads 1",
                                       "--max-len 4"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        snprintf(args, sizeof args, "embed %s %s", model, opts[i]);
        CHECK_MSG(run("\"Hello world, and more words\"\n", args) == 0 && is_vector(out, 32), "%s: %.80s %s", opts[i],
                  out, err);
    }
    /* --no-truncate: an input past --max-len is an error line, the short one still embeds. */
    snprintf(args, sizeof args, "embed %s --no-truncate --max-len 4", model);
    CHECK(run("\"Hello world, and more words\"\n\"Hi\"\n", args) == 0);
    n = split_lines(out, rows, 4);
    CHECK(n == 2 && !strncmp(rows[0], "{\"error\":", 9) && is_vector(rows[1], 32));
    /* Usage errors exit 2 with a message on stderr; a model that does not load exits 1. */
    static const char *const usage_errs[] = {"--pooling median", "--dtype f64", "--batch 0", "--batch 5000",
                                             "--max-len x", "--threads", "--frobnicate 1"};
    for (size_t i = 0; i < sizeof usage_errs / sizeof usage_errs[0]; i++) {
        snprintf(args, sizeof args, "embed %s %s", model, usage_errs[i]);
        CHECK_MSG(run(NULL, args) == 2 && !strncmp(err, "cge embed: ", 11), "%s: %s", usage_errs[i], err);
    }
    CHECK(run(NULL, "embed --help") == 0 && strstr(out, "--model"));
    CHECK(run(NULL, "embed --model /nonexistent/cge/model") == 1 && err[0]);
}

/* ---- fusion: usage and option errors (values: test_fusion_cli) ------------------------------ */

static void test_fusion_args(void) {
    const char *w = "--weights tests/fixtures/fusion/laplace/weights";
    char args[600];
    CHECK(run(NULL, "fusion") == 2 && strstr(err, "usage: cge fusion"));
    CHECK(run(NULL, "fusion --help") == 0 && strstr(out, "usage: cge fusion"));
    CHECK(run(NULL, "fusion frob") == 2 && strstr(err, "unknown subcommand 'frob'"));
    static const char *const subs[] = {"init", "run", "train"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "fusion %s --help", subs[i]);
        CHECK_MSG(run(NULL, args) == 0 && strstr(out, "usage: cge fusion"), "%s --help", subs[i]);
        snprintf(args, sizeof args, "fusion %s --bogus", subs[i]);
        CHECK_MSG(run(NULL, args) == 2 && strstr(err, "usage: cge fusion"), "%s --bogus", subs[i]);
    }
    /* Each out-of-range value is refused with a message naming the option, exit 1. */
    static const char *const bad_train[] = {"--epochs 0", "--batch 1", "--lr 0", "--weight-decay 11", "--clip -1",
                                            "--noise 101", "--dropout 1", "--nce -1", "--nce-temp 0",
                                            "--seed x"};
    for (size_t i = 0; i < sizeof bad_train / sizeof bad_train[0]; i++) {
        snprintf(args, sizeof args, "fusion train %s --data /dev/null %s", w, bad_train[i]);
        char opt[32];
        snprintf(opt, sizeof opt, "%.*s", (int)strcspn(bad_train[i], " "), bad_train[i]);
        CHECK_MSG(run(NULL, args) == 1 && strstr(err, "cge fusion train: ") && strstr(err, opt), "%s: %s",
                  bad_train[i], err);
    }
    CHECK(run(NULL, "fusion train --data /dev/null") == 2);
    snprintf(args, sizeof args, "fusion run %s --dtype f64", w);
    CHECK(run(NULL, args) == 1 && strstr(err, "--dtype"));
    snprintf(args, sizeof args, "fusion run %s --batch 0", w);
    CHECK(run(NULL, args) == 1 && strstr(err, "--batch"));
    snprintf(args, sizeof args, "fusion run %s --input /nonexistent/cge/in.jsonl", w);
    CHECK(run(NULL, args) == 1 && strstr(err, "cannot open"));
    CHECK(run(NULL, "fusion run") == 2);
}

/* ---- cache ---------------------------------------------------------------------------------- */

static void test_cache_cmd(void) {
    char args[700], path[300];
    snprintf(path, sizeof path, "%s/cache.mdb", tmpdir);
    snprintf(args, sizeof args, "cache bench --path %s --n 300 --max-entries 100 --policy lfu --disk-mb 64", path);
    CHECK_MSG(run(NULL, args) == 0, "%s", err);
    CHECK(strstr(out, "300 synthetic entries, policy lfu, memory limit 100 entries") != NULL);
    CHECK(strstr(out, "get (hit)") && strstr(out, "warm start (reopen)"));
    snprintf(args, sizeof args, "cache stats %s", path);
    CHECK(run(NULL, args) == 0);
    CHECK(strstr(out, "entries           300 (0 with per-slot vectors)\n") != NULL);
    CHECK(strstr(out, "dimensions        fused 1536, per-slot total 13184\n") != NULL);
    snprintf(args, sizeof args, "cache verify %s", path);
    CHECK(run(NULL, args) == 0);
    CHECK_MSG(strstr(out, ": 300 records, 300 recomputed, 0 bad (") != NULL, "%s", out);
    /* A file that is not a cache: stats and verify fail with one message, exit 1. */
    snprintf(args, sizeof args, "cache stats %s/stdin", tmpdir);
    CHECK(run(NULL, args) == 1 && !strncmp(err, "cge cache: ", 11));
    CHECK(run(NULL, "cache stats /nonexistent/cge/cache.mdb") == 1);
    CHECK(run(NULL, "cache verify /nonexistent/cge/cache.mdb") == 1 && strstr(err, "cge cache verify: "));
    /* Usage errors exit 2. */
    CHECK(run(NULL, "cache") == 2 && strstr(err, "usage: cge cache"));
    CHECK(run(NULL, "cache --help") == 0 && strstr(out, "usage: cge cache"));
    CHECK(run(NULL, "cache frob x") == 2);
    CHECK(run(NULL, "cache stats") == 2);
    snprintf(args, sizeof args, "cache bench --path %s --n 10 --policy mru", path);
    CHECK(run(NULL, args) == 2 && strstr(err, "cge cache bench: "));
    snprintf(args, sizeof args, "cache bench --path %s", path);
    CHECK(run(NULL, args) == 2);
    CHECK(run(NULL, "cache bench --n 10") == 2);
    snprintf(args, sizeof args, "cache bench --path %s --n 10 --max-entries 0", path);
    CHECK(run(NULL, args) == 2);
    snprintf(args, sizeof args, "cache bench --path %s --n 10 --bogus", path);
    CHECK(run(NULL, args) == 2);
    /* A cache file under a folder that does not exist cannot be opened. */
    CHECK(run(NULL, "cache bench --path /nonexistent/cge/c.mdb --n 10") == 1 && strstr(err, "cge cache bench: "));
}

/* ---- info, embed --backend ---------------------------------------------------------------- */

/* 1 when /proc/cpuinfo's first "flags" line lists flag (the kernel's names: avx512_bf16, sse4_2). */
static int cpu_flag(const char *flag) {
    FILE *f = fopen("/proc/cpuinfo", "r"); /* /proc files have no size: read by lines */
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int found = -1;
    while (found < 0 && getline(&line, &cap, f) > 0) {
        if (strncmp(line, "flags", 5)) continue;
        found = 0;
        size_t n = strlen(flag);
        for (char *p = strstr(line, flag); p && !found; p = strstr(p + 1, flag))
            found = p[-1] == ' ' && (p[n] == ' ' || p[n] == '\n' || p[n] == 0);
    }
    free(line);
    fclose(f);
    return found;
}

static void test_info(void) {
    char want[64];
    snprintf(want, sizeof want, "cge %s\n", CGE_VERSION_STRING);
    CHECK(run(NULL, "info") == 0 && !strncmp(out, want, strlen(want)) && !err[0]);
    CHECK(strstr(out, "\nbackends: cpu") != NULL);
    CHECK(strstr(out, "\ncpu: ") && strstr(out, " threads, ") && strstr(out, "\ncuda: "));
    const int cuda = strstr(out, "\nbackends: cpu cuda\n") != NULL;
    if (!cuda) CHECK(strstr(out, "cuda: not compiled in (cge was built without CUDA") != NULL);
    /* the ISA list against the kernel's own flags */
    static const char *const isa[][2] = {{" avx2", "avx2"}, {" avx512f", "avx512f"},
                                         {" avx512bf16", "avx512_bf16"}, {" fma", "fma"}};
    for (size_t i = 0; i < sizeof isa / sizeof *isa; i++) {
        int k = cpu_flag(isa[i][1]);
        if (k < 0) continue;
        CHECK_MSG(!!strstr(out, isa[i][0]) == k, "%s: /proc/cpuinfo says %d", isa[i][1], k);
    }
    CHECK(run(NULL, "info --threads 1") == 0 && strstr(out, "\nthreads: 1 ") && strstr(out, "cpu: 1 threads"));
    CHECK(run(NULL, "info --help") == 0 && strstr(out, "usage: cge info"));
    CHECK(run(NULL, "info --frob") == 2 && strstr(err, "cge info: unknown option '--frob'"));
    CHECK(run(NULL, "info --threads 0") == 2);
    CHECK(run(NULL, "--help") == 0 && strstr(out, "\n  info "));

    /* embed --backend: the same vector on every name that ends on the cpu, a warning for a
     * device that cannot be had, a usage error for a name that is none */
    const char *in = "{\"input_ids\": [1, 5, 9, 33, 2]}\n";
    CHECK(run(in, "embed --model tests/fixtures/models/bert") == 0);
    char *ref = strdup(out);
    CHECK(run(in, "embed --model tests/fixtures/models/bert --backend cpu") == 0 && !strcmp(out, ref) && !err[0]);
    CHECK(run(in, "embed --model tests/fixtures/models/bert --backend auto") == 0);
    if (!cuda) CHECK(!strcmp(out, ref) && !err[0]);
    CHECK(run(in, "embed --model tests/fixtures/models/bert --backend cuda:1") == 0);
    if (!cuda) {
        CHECK(!strcmp(out, ref));
        CHECK_MSG(strstr(err, "cge embed: warning: backend cuda:1 unavailable, using the cpu: ") &&
                      strstr(err, "built without CUDA"), "stderr: %s", err);
    }
    CHECK(run(in, "embed --model tests/fixtures/models/bert --backend tpu") == 1);
    CHECK(strstr(err, "backend 'tpu': unknown") != NULL && !out[0]);
    free(ref);
}

int main(void) {
    CHECK_MSG(find_cge(), "no cge binary at %s", cge_bin);
    int have_dir = mkdtemp(tmpdir) != NULL;
    CHECK_MSG(have_dir, "mkdtemp failed");
    if (!cge_bin[0] || access(cge_bin, X_OK) != 0 || !have_dir) return test_report("core_cli");
    RUN(test_dispatch);
    RUN(test_models);
    RUN(test_inspect);
    RUN(test_tokenize);
    RUN(test_cache_cmd);
    RUN(test_embed);
    RUN(test_fusion_args);
    RUN(test_info);
    free(out);
    free(err);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
    return test_report("core_cli");
}
