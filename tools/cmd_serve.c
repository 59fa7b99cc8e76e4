/*
 * cmd_serve.c: `cge serve`: the HTTP server (src/server) over one engine.
 *
 * Design: SIGINT and SIGTERM are blocked before any thread starts (the engine's and the
 * server's threads inherit the mask), and the main thread waits for them with sigwait(): the
 * shutdown runs in ordinary code, not in a signal handler. Shutdown: stop accepting, answer
 * what is running (bounded by the request timeout), stop, close the engine, exit 0. Keys may
 * come from the environment (CGE_API_KEY, CGE_ADMIN_KEY) so they stay out of `ps`.
 * --model DIR serves one model folder (cge_model_load) instead of an engine: the same server and
 * routes, each answering from the model alone (routes.c, struct cge__http_model).
 */
#include "cge.h"
#include "commands.h"
#include "server/http.h"
#include "server/mcp_http.h"
#include "net/hub.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge serve [--ensemble DIR | --config FILE | --model DIR [--model-name NAME]]\n"
            "                 [--host H] [--port N]\n"
            "                 [--api-key KEY] [--admin-key KEY] [--max-concurrent-requests N]\n"
            "                 [--max-client-batch-size N] [--payload-limit BYTES]\n"
            "                 [--request-timeout SECONDS] [--allow-files DIR]\n"
            "                 [--log-format text|json] [--threads N] [--no-truncate] [--no-cache]\n"
            "                 [--lazy] [--conn-timeout SECONDS] [--quiet] [--mcp]\n"
            "\n"
            "Serves the ensemble over HTTP: POST /v1/embeddings (OpenAI), /embed, /similarity,\n"
            "/tokenize; GET /health, /info, /v1/models, /metrics, /openapi.json, / (a page);\n"
            "POST /admin/swap, /admin/unload with --admin-key. Prints `listening on\n"
            "http://HOST:PORT` on stderr when ready, then one line per request.\n"
            "\n"
            "--ensemble DIR   an ensemble folder (ensemble.json); --config FILE: a cge config.\n"
            "                 Neither: the configured ensemble, else the demo ensemble.\n"
            "--model DIR      serve one model folder alone (no fusion; `cge embed --model DIR`\n"
            "                 over HTTP): DIR as `cge embed` takes it (a Hugging Face folder, or\n"
            "                 ORG/NAME fetched with `cge pull`). /v1/embeddings and /embed give\n"
            "                 its vector (\"model\" absent or its name), /similarity its cosine,\n"
            "                 /tokenize its ids; /info and /v1/models list it. No slots, gate,\n"
            "                 cache or admin routes; each request runs as one batch of its own.\n"
            "--model-name NAME  the name /v1/models lists and requests give as \"model\"\n"
            "                 (default: ORG/NAME for an HF cache folder, else the folder's name)\n"
            "--host H         address to listen on (default 127.0.0.1)\n"
            "--port N         port (default 8080; 0 picks a free one)\n"
            "--api-key KEY    every route but /health and the page needs \"Authorization:\n"
            "                 Bearer KEY\" (or set CGE_API_KEY)\n"
            "--admin-key KEY  enables /admin/swap and /admin/unload with this token (or set\n"
            "                 CGE_ADMIN_KEY)\n"
            "--max-concurrent-requests N  embedding requests at once; more get 429 (default 64)\n"
            "--max-client-batch-size N    inputs in one request (default 256)\n"
            "--payload-limit BYTES        request body limit, answered 413 (default 2097152)\n"
            "--request-timeout SECONDS    deadline of a request, answered 504 (default 30)\n"
            "--conn-timeout SECONDS       idle connections are closed after this (default 10)\n"
            "--allow-files DIR            media inputs may name files inside DIR (else only\n"
            "                             data: URLs)\n"
            "--no-truncate    inputs longer than a slot's max length fail (422) instead of being cut\n"
            "--lazy           load each slot on first use instead of before listening\n"
            "--redis URL      redis://[user:pass@]host[:port][/db]: a second cache level shared\n"
            "                 by every server and worker on it\n"
            "--mcp            also serve MCP (streamable HTTP) at /mcp: POST JSON-RPC messages,\n"
            "                 Mcp-Session-Id sessions, DELETE ends one; the same API key\n");
}

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "cge serve: %s %s: expected an integer in %ld..%ld\n", opt, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

static int parse_seconds(const char *opt, const char *v, double *out) {
    char *end = NULL;
    double x = strtod(v, &end);
    if (!*v || *end || !(x > 0) || x > 86400) {
        fprintf(stderr, "cge serve: %s %s: expected seconds (> 0)\n", opt, v);
        return 0;
    }
    *out = x;
    return 1;
}

/* The name of a model folder: ORG/NAME for .../models--ORG--NAME[/snapshots/REV], else the
 * folder's own name. */
static void model_id_of(const char *dir, char *out, size_t cap) {
    const char *hub = strstr(dir, "models--");
    if (hub) {
        const char *s = hub + strlen("models--");
        const char *sep = strstr(s, "--");
        size_t n = strcspn(s, "/");
        if (sep && sep < s + n) {
            snprintf(out, cap, "%.*s/%.*s", (int)(sep - s), s, (int)(s + n - sep - 2), sep + 2);
            return;
        }
    }
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(out, cap, "%.*s", (int)(len - b), dir + b);
}

/* Waits for SIGINT or SIGTERM (blocked in every thread), then drains and stops the server. */
static void wait_and_stop(struct cge__http_server *srv, const struct cge__http_params *hp,
                          sigset_t *sigs) {
    int v6 = strchr(hp->host, ':') != NULL;
    fprintf(stderr, "listening on http://%s%s%s:%d\n", v6 ? "[" : "", hp->host, v6 ? "]" : "",
            cge__http_port(srv));
    fflush(stderr);
    int sig = 0;
    while (sigwait(sigs, &sig) != 0) {
    }
    fprintf(stderr, "cge serve: %s: draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    cge__http_drain(srv, hp->request_timeout_ms + 5000);
    cge__http_stop(srv);
}

/* `cge serve --model DIR`: the server over one model (http.h: struct cge__http_model). */
static int serve_model(const char *dir, const char *name, int no_truncate, int n_threads,
                       struct cge__http_params *hp, sigset_t *sigs) {
    /* ORG/NAME that is no path here: the snapshot of its main in the HF cache (cge pull). */
    char snap[CGE_HUB_PATH_MAX], id[256];
    struct stat sb;
    if (stat(dir, &sb) != 0 && cge_hub_repo_folder(dir, snap, sizeof snap) == CGE_OK) {
        if (cge_hub_cache_lookup(NULL, dir, NULL, snap, sizeof snap, NULL)) {
            fprintf(stderr, "cge serve: %s is no folder here, and %s (run `cge pull %s`)\n", dir,
                    cge_errmsg(), dir);
            return 1;
        }
        snprintf(id, sizeof id, "%s", dir);
        dir = snap;
    } else {
        model_id_of(dir, id, sizeof id);
    }
    if (name) snprintf(id, sizeof id, "%s", name);
    if (!id[0]) {
        fprintf(stderr, "cge serve: --model %s: give it a name with --model-name\n", dir);
        return 2;
    }
    if (n_threads > 0) cge_set_threads(n_threads);
    struct cge_model_params mp = cge_model_default_params();
    mp.no_truncate = no_truncate;
    struct cge_model *m = NULL;
    enum cge_status st = cge_model_load(dir, &mp, &m);
    if (st) {
        fprintf(stderr, "cge serve: %s: %s\n", cge_status_str(st), cge_errmsg());
        return 1;
    }
    struct cge__http_model one = {m, id, dir};
    hp->model = &one;
    struct cge__http_server *srv = NULL;
    st = cge__http_start(NULL, hp, &srv);
    if (st) {
        fprintf(stderr, "cge serve: %s\n", cge_errmsg());
        cge_model_free(m);
        return 1;
    }
    wait_and_stop(srv, hp, sigs);
    cge_model_free(m);
    fprintf(stderr, "cge serve: stopped\n");
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *ensemble = NULL;
    const char *model_dir = NULL, *model_name = NULL; /* --model, --model-name */
    int lazy = 0;
    struct cge__http_params hp;
    cge__http_default_params(&hp);
    hp.api_key = getenv("CGE_API_KEY");
    hp.admin_key = getenv("CGE_ADMIN_KEY");
    struct cge_engine_params ep = cge_engine_default_params();
    char allow[PATH_MAX];
    int mcp = 0; /* --mcp: the MCP streamable HTTP transport at /mcp */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x = 0;
        double secs = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-truncate")) {
            ep.no_truncate = 1;
            continue;
        } else if (!strcmp(a, "--no-cache")) {
            ep.cache = 0;
            continue;
        } else if (!strcmp(a, "--mcp")) {
            mcp = 1;
            continue;
        } else if (!strcmp(a, "--lazy")) {
            ep.preload = 0;
            lazy = 1;
            continue;
        } else if (!strcmp(a, "--quiet")) {
            hp.quiet = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "cge serve: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--ensemble") || !strcmp(a, "--config")) {
            ensemble = v;
        } else if (!strcmp(a, "--model")) {
            model_dir = v;
        } else if (!strcmp(a, "--model-name")) {
            model_name = v;
        } else if (!strcmp(a, "--redis")) {
            ep.redis_url = v;
        } else if (!strcmp(a, "--host")) {
            hp.host = v;
        } else if (!strcmp(a, "--port")) {
            if (!parse_long(a, v, 0, 65535, &x)) return 2;
            hp.port = (int)x;
        } else if (!strcmp(a, "--api-key")) {
            hp.api_key = v;
        } else if (!strcmp(a, "--admin-key")) {
            hp.admin_key = v;
        } else if (!strcmp(a, "--max-concurrent-requests")) {
            if (!parse_long(a, v, 1, 4096, &x)) return 2;
            hp.max_concurrent = (int)x;
        } else if (!strcmp(a, "--max-client-batch-size")) {
            if (!parse_long(a, v, 1, 1 << 20, &x)) return 2;
            hp.max_client_batch = (int)x;
        } else if (!strcmp(a, "--payload-limit")) {
            if (!parse_long(a, v, 1, LONG_MAX, &x)) return 2;
            hp.payload_limit = (size_t)x;
        } else if (!strcmp(a, "--request-timeout")) {
            if (!parse_seconds(a, v, &secs)) return 2;
            hp.request_timeout_ms = (int64_t)(secs * 1000.0 + 0.5);
            if (hp.request_timeout_ms < 1) hp.request_timeout_ms = 1;
        } else if (!strcmp(a, "--conn-timeout")) {
            if (!parse_long(a, v, 1, 3600, &x)) return 2;
            hp.conn_timeout_s = (int)x;
        } else if (!strcmp(a, "--io-threads")) {
            if (!parse_long(a, v, 1, 64, &x)) return 2;
            hp.io_threads = (int)x;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_long(a, v, 0, 4096, &x)) return 2;
            ep.n_threads = (int)x;
        } else if (!strcmp(a, "--allow-files")) {
            if (!realpath(v, allow)) {
                fprintf(stderr, "cge serve: --allow-files %s: %s\n", v, strerror(errno));
                return 2;
            }
            hp.allow_files = allow;
        } else if (!strcmp(a, "--log-format")) {
            if (strcmp(v, "text") && strcmp(v, "json")) {
                fprintf(stderr, "cge serve: --log-format %s: expected text or json\n", v);
                return 2;
            }
            hp.log_json = !strcmp(v, "json");
        } else {
            fprintf(stderr, "cge serve: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    if (model_dir) {
        const char *clash = ensemble ? "--ensemble/--config" : mcp ? "--mcp" : lazy ? "--lazy"
                          : ep.redis_url ? "--redis" : NULL;
        if (clash) {
            fprintf(stderr, "cge serve: --model serves one model alone: %s does not go with it\n",
                    clash);
            return 2;
        }
    } else if (model_name) {
        fprintf(stderr, "cge serve: --model-name needs --model\n");
        return 2;
    }

    /* Before any thread exists: every thread inherits this mask, so only sigwait sees them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (model_dir) return serve_model(model_dir, model_name, ep.no_truncate, ep.n_threads, &hp,
                                      &sigs);

    struct cge_engine *e = NULL;
    enum cge_status st = cge_engine_open(ensemble, &ep, &e);
    if (st) {
        fprintf(stderr, "cge serve: %s: %s\n", cge_status_str(st), cge_errmsg());
        return 1;
    }
    if (cge_engine_is_demo(e))
        fprintf(stderr, "cge serve: serving the demo ensemble (tiny random weights: its vectors "
                        "are well-formed but mean nothing)\n");
    struct cge__mcp_sessions *sessions = NULL;
    if (mcp && cge__mcp_sessions_new(e, hp.allow_files, 0, &sessions) != CGE_OK) {
        fprintf(stderr, "cge serve: --mcp: %s\n", cge_errmsg());
        cge_engine_close(e);
        return 1;
    }
    hp.mcp = sessions;
    struct cge__http_server *srv = NULL;
    st = cge__http_start(e, &hp, &srv);
    if (st) {
        fprintf(stderr, "cge serve: %s\n", cge_errmsg());
        cge__mcp_sessions_free(sessions);
        cge_engine_close(e);
        return 1;
    }
    wait_and_stop(srv, &hp, &sigs);
    cge__mcp_sessions_free(sessions);
    cge_engine_close(e);
    fprintf(stderr, "cge serve: stopped\n");
    return 0;
}
