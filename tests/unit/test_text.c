/* test_text.c: tokenizers against the reference ids of tests/fixtures/tokenizers/ (Hugging Face
 * tokenizers and SentencePiece), prints "matched M of N" per tokenizer file. */
#include "core/core.h"
#include "testhelp.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>

#define MAX_FILES 16

struct per_file {
    char file[256];
    struct cge_tokenizer *tok;
    int matched, total;
};

static struct per_file files[MAX_FILES];
static int n_files;

static struct per_file *get_file(const char *file) {
    for (int i = 0; i < n_files; i++)
        if (!strcmp(files[i].file, file)) return &files[i];
    if (n_files == MAX_FILES) return NULL;
    struct per_file *f = &files[n_files++];
    snprintf(f->file, sizeof f->file, "%s", file);
    char path[512];
    snprintf(path, sizeof path, "tests/assets/%s", file);
    enum cge_status st = cge_tokenizer_load(path, &f->tok);
    CHECK_MSG(st == CGE_OK, "load %s: %s", path, cge_errmsg());
    return f;
}

static void print_ids(const char *label, const int32_t *ids, int64_t n) {
    printf("    %s (%lld):", label, (long long)n);
    for (int64_t i = 0; i < n && i < 40; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* Runs every case of a refs file; add_special as the generator did. */
static void run_refs(const char *refs_path, int add_special) {
    cJSON *root = NULL;
    enum cge_status st = cge__json_read_file(refs_path, &root);
    CHECK_MSG(st == CGE_OK, "%s: %s", refs_path, cge_errmsg());
    if (st) return;
    int first_file = n_files;
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases"), *c;
    cJSON_ArrayForEach(c, cases) {
        const char *file = cJSON_GetObjectItemCaseSensitive(c, "file")->valuestring;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(c, "text");
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(c, "ids");
        struct per_file *f = get_file(file);
        if (!f || !f->tok) continue;
        f->total++;
        int32_t *ids = NULL;
        int64_t n = 0;
        st = cge_tokenizer_encode(f->tok, text->valuestring, strlen(text->valuestring), add_special,
                                  0, &ids, &n, NULL);
        int ok = st == CGE_OK && n == cJSON_GetArraySize(ref);
        for (int64_t i = 0; ok && i < n; i++) ok = ids[i] == cJSON_GetArrayItem(ref, (int)i)->valueint;
        if (ok) {
            f->matched++;
        } else if (f->total - f->matched <= 3) {
            printf("  MISMATCH %s: \"%.60s\"%s\n", file, text->valuestring, st ? cge_errmsg() : "");
            print_ids("got", ids, n);
            int32_t r[64];
            int k = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, ref) if (k < 64) r[k++] = x->valueint;
            print_ids("ref", r, cJSON_GetArraySize(ref));
        }
        cge__free(ids);
    }
    for (int i = first_file; i < n_files; i++) {
        printf("  %-45s matched %d of %d\n", files[i].file, files[i].matched, files[i].total);
        CHECK_MSG(files[i].matched == files[i].total, "%s: %d of %d", files[i].file, files[i].matched,
                  files[i].total);
    }
    cJSON_Delete(root);
}

static void test_refs(void) {
    run_refs("tests/fixtures/tokenizers/tokenizer_json_refs.json", 1);
    run_refs("tests/fixtures/tokenizers/spm_refs.json", 0);
}

int main(void) {
    RUN(test_refs);
    for (int i = 0; i < n_files; i++) cge_tokenizer_free(files[i].tok);
    return test_report("text");
}
