/*
 * cmd_ensemble.c: `cge ensemble init --out DIR`: an ensemble folder over the models that
 * `cge pull --ensemble` put in the HF cache, plus fresh FuseMoE weights.
 *
 *   DIR/ensemble.json   {"version": 1, "name": ..., "slots": [{"slot": "E1", "path": "E1"}, ...,
 *                        {"slot": "E10", "path": {"query": "E10-query",
 *                                                 "document": "E10-document"}}, ...],
 *                        "fusion": "fusion"}   (tests/fixtures/ensemble/README.md)
 *   DIR/E1 ... DIR/E12, DIR/E10-query, DIR/E10-document   symlinks to the cached snapshots
 *   DIR/fusion          `cge fusion init` weights (config.json + model.safetensors)
 *
 * Key decision: the slot folders are symlinks to snapshots/COMMIT, not to the repository's
 * refs/main: an ensemble's vectors must stay comparable, so a later `cge pull` that moves main
 * does not change this ensemble; running init again (--force) moves it on. ensemble.json
 * itself holds only relative names, exactly like the fixture's.
 */
#include "cge.h"
#include "commands.h"
#include "fusion/fusemoe.h"
#include "net/hub.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge ensemble init --out DIR [--fusion-config FILE] [--seed N] [--force]\n"
            "Writes an ensemble folder over the models in the HF cache (`cge pull --ensemble`\n"
            "first): DIR/ensemble.json, one symlink per slot folder to its cached snapshot of\n"
            "main (E10: E10-query and E10-document), and DIR/fusion, initial FuseMoE weights as\n"
            "`cge fusion init` makes them (--fusion-config: a fusion config.json, default the\n"
            "production layer, 955 MB; --seed N, default 0), ready for `cge fusion train`.\n"
            "--force replaces an existing ensemble in DIR.\n"
            "The cache is found as `cge pull` finds it (HF_HUB_CACHE, HF_HOME).\n");
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cge ensemble init: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* DIR/name -> target, replacing an old symlink (never a real file or folder). */
static int place_link(const char *dir, const char *name, const char *target) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    if (lstat(p, &sb) == 0) {
        if (!S_ISLNK(sb.st_mode)) return fail("%s exists and is not a symlink", p);
        if (unlink(p)) return fail("cannot replace %s: %s", p, strerror(errno));
    }
    if (symlink(target, p)) return fail("cannot link %s: %s", p, strerror(errno));
    return 0;
}

static int ensemble_init(int argc, char **argv) {
    const char *out = NULL, *fconfig = NULL;
    long seed = 0;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--fusion-config") && i + 1 < argc) {
            fconfig = argv[++i];
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            char *end = NULL;
            seed = strtol(argv[++i], &end, 10);
            if (!end || *end || seed < 0) return fail("--seed needs an integer >= 0");
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!out) {
        usage(stderr);
        return 2;
    }
    /* 1. Every slot's snapshot, all missing ones named at once. */
    char snaps[CGE_N_SLOTS][2][CGE_HUB_PATH_MAX];
    char repos[CGE_N_SLOTS][2][128];
    int n_repos[CGE_N_SLOTS], missing = 0;
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        n_repos[s] = cge_hub_slot_repos(s, repos[s]);
        for (int k = 0; k < n_repos[s]; k++) {
            char commit[41];
            if (cge_hub_cache_lookup(NULL, repos[s][k], "main", snaps[s][k], CGE_HUB_PATH_MAX,
                                     commit)) {
                fprintf(stderr, "cge ensemble init: %s: %s\n", cge_slot_get(s)->name, cge_errmsg());
                missing++;
            }
        }
    }
    if (missing)
        return fail("%d model repositories are not in the cache: run `cge pull --ensemble`",
                    missing);
    /* 2. The folder. */
    char json_path[PATH_MAX + 64], fusion_dir[PATH_MAX + 64];
    if (mkdir(out, 0755) && errno != EEXIST)
        return fail("cannot create %s: %s", out, strerror(errno));
    snprintf(json_path, sizeof json_path, "%s/ensemble.json", out);
    snprintf(fusion_dir, sizeof fusion_dir, "%s/fusion", out);
    struct stat sb;
    if (!force && stat(json_path, &sb) == 0)
        return fail("%s exists (--force replaces it)", json_path);
    /* 3. Slot links and ensemble.json. */
    cJSON *doc = cJSON_CreateObject(), *slots = cJSON_CreateArray();
    cJSON_AddNumberToObject(doc, "version", 1);
    cJSON_AddStringToObject(doc, "name", "cge-ensemble");
    cJSON_AddItemToObject(doc, "slots", slots);
    for (int s = 0; s < CGE_N_SLOTS; s++) {
        const char *name = cge_slot_get(s)->name;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "slot", name);
        char lname[2][32];
        for (int k = 0; k < n_repos[s]; k++) {
            if (n_repos[s] == 2)
                snprintf(lname[k], sizeof lname[k], "%s-%s", name, k ? "document" : "query");
            else
                snprintf(lname[k], sizeof lname[k], "%s", name);
            char real[PATH_MAX];
            if (!realpath(snaps[s][k], real) || place_link(out, lname[k], real)) {
                cJSON_Delete(e);
                cJSON_Delete(doc);
                return fail("cannot link slot %s (%s)", name, snaps[s][k]);
            }
        }
        if (n_repos[s] == 2) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "query", lname[0]);
            cJSON_AddStringToObject(p, "document", lname[1]);
            cJSON_AddItemToObject(e, "path", p);
        } else {
            cJSON_AddStringToObject(e, "path", lname[0]);
        }
        cJSON_AddItemToArray(slots, e);
    }
    cJSON_AddStringToObject(doc, "fusion", "fusion");
    /* 4. The fusion weights, before ensemble.json: the file appears only when all is there. */
    struct cge_fusemoe_config c;
    enum cge_status st;
    if (fconfig) {
        st = cge_fusemoe_config_load(fconfig, &c);
    } else {
        cge_fusemoe_config_default(&c);
        st = CGE_OK;
    }
    struct cge_fusion *f = NULL;
    if (!st) st = cge_fusion_new(&c, (uint64_t)seed, &f);
    if (!st) st = cge_fusion_save(f, fusion_dir);
    cge_fusion_free(f);
    if (st) {
        cJSON_Delete(doc);
        return fail("fusion: %s", cge_errmsg());
    }
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    char tmp[PATH_MAX + 80];
    snprintf(tmp, sizeof tmp, "%s.tmp", json_path);
    FILE *jf = text ? fopen(tmp, "wb") : NULL;
    int bad = !jf;
    if (jf) {
        bad |= fputs(text, jf) < 0 || fputc('\n', jf) == EOF;
        bad |= fclose(jf) != 0;
    }
    free(text);
    if (bad || rename(tmp, json_path)) {
        unlink(tmp);
        return fail("cannot write %s", json_path);
    }
    fprintf(stderr,
            "cge ensemble init: %s: %d slots over the HF cache, fusion %lld -> %lld (%lld "
            "parameters)\n",
            out, CGE_N_SLOTS, (long long)c.total_dim, (long long)c.out_dim,
            (long long)cge_fusemoe_config_n_params(&c));
    printf("%s\n", json_path);
    return 0;
}

int cmd_ensemble(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "init")) return ensemble_init(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
