/*
 * cmd_mcp.c: `cge mcp`: the Model Context Protocol server on stdio, for agents that launch cge
 * as a subprocess (Claude Desktop, the MCP Inspector, any MCP client's stdio transport).
 *
 * The transport of the MCP specification: newline-delimited JSON-RPC messages on stdin, one
 * reply per line on stdout, nothing else on stdout (logs go to stderr), EOF on stdin ends the
 * server once the requests already read are answered. The protocol itself is src/server/mcp.c.
 *
 * Design: the main thread only reads lines and queues them; a few worker threads answer them,
 * so that a ping or a notifications/cancelled is read and handled while a long embedding runs
 * (replies may therefore come out of request order, which JSON-RPC allows: they carry their
 * ids). A line is bounded by CGE__MCP_MAX_MESSAGE: a longer one is skipped up to its newline
 * and answered with an error, and the server goes on.
 */
#include "cge.h"
#include "commands.h"
#include "core/core.h"
#include "server/mcp.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_WORKERS_MAX 64
#define QUEUE_MAX     64 /* lines read ahead of the workers */

static void usage(FILE *f) {
    fprintf(f,
            "usage: cge mcp [--ensemble DIR | --config FILE] [--allow-files DIR] [--threads N]\n"
            "               [--workers N] [--verbose]\n"
            "\n"
            "Serves cge as Model Context Protocol tools over stdio: newline-delimited JSON-RPC on\n"
            "stdin and stdout; logs on stderr; EOF on stdin ends it. Tools: embed, embed_batch,\n"
            "similarity, models, health.\n"
            "--ensemble DIR     an ensemble folder (ensemble.json) or file\n"
            "--config FILE      a cge configuration file (see cge.h)\n"
            "                   neither: the configured ensemble, else the demo ensemble\n"
            "--allow-files DIR  let image_path/audio_path read files inside DIR (default: none;\n"
            "                   media then come as image_base64/audio_base64)\n"
            "--threads N        compute threads (default: one per core)\n"
            "--workers N        requests answered at once (default 4)\n"
            "--verbose          log every message on stderr\n"
            "\n"
            "An agent's configuration, e.g. Claude Desktop's claude_desktop_config.json:\n"
            "  {\"mcpServers\": {\"cge\": {\"command\": \"/path/to/cge\",\n"
            "                          \"args\": [\"mcp\", \"--ensemble\", "
            "\"/path/to/ensemble\"]}}}\n");
}

struct job {
    char *msg;
    size_t len;
    struct job *next;
};

struct server {
    struct cge__mcp *mcp;
    int verbose;
    pthread_mutex_t mu; /* guards the queue */
    pthread_cond_t has_work, has_space;
    struct job *head, *tail;
    int n_queued;
    int closing;         /* stdin ended: workers finish the queue and leave */
    pthread_mutex_t out; /* one reply line at a time on stdout */
    int out_broken;      /* stdout is gone: stop reading */
};

static void log_stderr(enum cge_log_level level, const char *msg, void *user) {
    int verbose = *(const int *)user;
    if (level >= CGE_LOG_WARN || (verbose && level >= CGE_LOG_INFO))
        fprintf(stderr, "cge mcp: %s\n", msg);
}

static void write_line(struct server *s, const char *reply) {
    pthread_mutex_lock(&s->out);
    if (!s->out_broken) {
        size_t n = strlen(reply);
        if (fwrite(reply, 1, n, stdout) != n || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
            s->out_broken = 1;
            fprintf(stderr, "cge mcp: stdout: %s; stopping\n", strerror(errno));
        }
    }
    pthread_mutex_unlock(&s->out);
}

static void *worker(void *arg) {
    struct server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->closing)
            pthread_cond_wait(&s->has_work, &s->mu);
        struct job *j = s->head;
        if (j) {
            s->head = j->next;
            if (!s->head) s->tail = NULL;
            s->n_queued--;
            pthread_cond_signal(&s->has_space);
        }
        pthread_mutex_unlock(&s->mu);
        if (!j) return NULL; /* closing and nothing left */
        int64_t t0 = cge__now_us();
        int status = 0;
        char *reply = cge__mcp_handle(s->mcp, j->msg, j->len, &status);
        if (s->verbose)
            fprintf(stderr, "cge mcp: %zu bytes in, %zu out, status %d, %.1f ms\n", j->len,
                    reply ? strlen(reply) : 0, status, (double)(cge__now_us() - t0) / 1000.0);
        if (reply)
            write_line(s, reply);
        else if (status == 500)
            write_line(s, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
                          "\"message\":\"Internal error: out of memory\"}}");
        cge__free(reply);
        free(j->msg);
        free(j);
    }
}

/* Queues one line (blank lines are skipped); waits while the queue is full. */
static int submit(struct server *s, const char *p, size_t n) {
    while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i == n) return 0;
    struct job *j = malloc(sizeof *j);
    char *msg = malloc(n + 1);
    if (!j || !msg) {
        free(j);
        free(msg);
        write_line(s, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
                      "\"message\":\"Internal error: out of memory\"}}");
        return 0;
    }
    memcpy(msg, p, n);
    msg[n] = 0;
    j->msg = msg;
    j->len = n;
    j->next = NULL;
    pthread_mutex_lock(&s->mu);
    while (s->n_queued >= QUEUE_MAX)
        pthread_cond_wait(&s->has_space, &s->mu);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->n_queued++;
    pthread_cond_signal(&s->has_work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Reads stdin to EOF, line by line, each line at most CGE__MCP_MAX_MESSAGE bytes. */
static void read_loop(struct server *s) {
    size_t cap = (size_t)1 << 20, len = 0, start = 0, scan = 0;
    char *buf = malloc(cap);
    int skipping = 0; /* inside a line that was too long */
    if (!buf) {
        fprintf(stderr, "cge mcp: out of memory\n");
        return;
    }
    for (;;) {
        char *nl = scan < len ? memchr(buf + scan, '\n', len - scan) : NULL;
        if (nl) {
            size_t end = (size_t)(nl - buf);
            if (!skipping) submit(s, buf + start, end - start);
            skipping = 0;
            start = scan = end + 1;
            continue;
        }
        scan = len;
        if (len - start > CGE__MCP_MAX_MESSAGE) {
            if (!skipping) {
                char msg[200];
                snprintf(msg, sizeof msg,
                         "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":"
                         "\"Invalid Request: message over the limit of %zu bytes; skipped\"}}",
                         CGE__MCP_MAX_MESSAGE);
                write_line(s, msg);
                fprintf(stderr, "cge mcp: a message over %zu bytes was skipped\n",
                        CGE__MCP_MAX_MESSAGE);
            }
            skipping = 1;
            start = scan = len;
        }
        if (start > 0) {
            memmove(buf, buf + start, len - start);
            len -= start;
            scan -= start;
            start = 0;
        }
        if (len == cap) {
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                fprintf(stderr, "cge mcp: out of memory reading a message of %zu bytes\n", len);
                skipping = 1; /* drop this line; the next one starts clean */
                len = start = scan = 0;
                continue;
            }
            buf = nb;
            cap = ncap;
        }
        if (s->out_broken) break;
        ssize_t n = read(0, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n < 0) fprintf(stderr, "cge mcp: stdin: %s\n", strerror(errno));
            if (!skipping && len > start) submit(s, buf + start, len - start); /* no final \n */
            break;
        }
        len += (size_t)n;
    }
    free(buf);
}

int cmd_mcp(int argc, char **argv) {
    const char *ensemble = NULL, *config = NULL, *allow = NULL;
    struct cge_engine_params p = cge_engine_default_params();
    int n_workers = 4;
    static int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            verbose = 1;
        } else if (!v) {
            fprintf(stderr, "cge mcp: %s needs a value\n", a);
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--ensemble")) {
            ensemble = v;
            i++;
        } else if (!strcmp(a, "--config")) {
            config = v;
            i++;
        } else if (!strcmp(a, "--allow-files")) {
            allow = v;
            i++;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "--workers")) {
            char *end = NULL;
            long x = strtol(v, &end, 10);
            int threads = !strcmp(a, "--threads");
            if (!*v || *end || x < (threads ? 0 : 1) || x > (threads ? 4096 : N_WORKERS_MAX)) {
                fprintf(stderr, "cge mcp: %s %s: expected an integer in %d..%d\n", a, v,
                        threads ? 0 : 1, threads ? 4096 : N_WORKERS_MAX);
                return 2;
            }
            if (threads)
                p.n_threads = (int)x;
            else
                n_workers = (int)x;
            i++;
        } else {
            fprintf(stderr, "cge mcp: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (ensemble && config) {
        fprintf(stderr, "cge mcp: give --ensemble or --config, not both\n");
        return 2;
    }
    cge_log_set(log_stderr, &verbose);
    /* A client that goes away must not kill the server mid-write: write() reports EPIPE. */
    signal(SIGPIPE, SIG_IGN);

    struct cge_engine *e = NULL;
    const char *what = ensemble ? ensemble : config;
    enum cge_status st = cge_engine_open(what, &p, &e);
    if (st != CGE_OK) {
        fprintf(stderr, "cge mcp: %s\n", cge_errmsg()[0] ? cge_errmsg() : cge_status_str(st));
        return 1;
    }
    struct server s;
    memset(&s, 0, sizeof s);
    s.verbose = verbose;
    st = cge__mcp_new(e, allow, &s.mcp);
    if (st != CGE_OK) {
        fprintf(stderr, "cge mcp: %s\n", cge_errmsg());
        cge_engine_close(e);
        return 2;
    }
    if (cge_engine_is_demo(e))
        fprintf(stderr, "cge mcp: the demo ensemble (random weights: vectors carry no meaning)\n");
    fprintf(stderr, "cge mcp: serving ensemble '%s' over stdio%s%s\n", cge_engine_name(e),
            allow ? ", files from " : "", allow ? allow : "");
    pthread_mutex_init(&s.mu, NULL);
    pthread_mutex_init(&s.out, NULL);
    pthread_cond_init(&s.has_work, NULL);
    pthread_cond_init(&s.has_space, NULL);
    pthread_t th[N_WORKERS_MAX];
    int started = 0;
    for (; started < n_workers; started++)
        if (pthread_create(&th[started], NULL, worker, &s) != 0) break;
    int rc = 0;
    if (started == 0) {
        fprintf(stderr, "cge mcp: cannot start a worker thread\n");
        rc = 1;
    } else {
        read_loop(&s);
    }
    pthread_mutex_lock(&s.mu);
    s.closing = 1;
    pthread_cond_broadcast(&s.has_work);
    pthread_mutex_unlock(&s.mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    for (struct job *j = s.head; j;) { /* only when no worker ran */
        struct job *next = j->next;
        free(j->msg);
        free(j);
        j = next;
    }
    cge__mcp_free(s.mcp);
    cge_engine_close(e);
    pthread_cond_destroy(&s.has_work);
    pthread_cond_destroy(&s.has_space);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&s.out);
    if (s.out_broken) rc = 1;
    return rc;
}
