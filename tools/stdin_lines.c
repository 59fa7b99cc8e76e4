/*
 * stdin_lines.c: the JSON-lines reader of `cge embed` (one model or the ensemble): stdin split
 * into lines (surrounding blanks trimmed, blank lines skipped), handed out in batches.
 *
 * Design: a batch goes when it holds `batch` lines, or as soon as stdin has nothing more ready,
 * so an interactive session answers each line at once while a file or a pipe gets full batches.
 * A line longer than 64 MiB is reported (line callback with NULL) and skipped to its end, so one
 * bad line never stops the others.
 */
#include "commands.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINE ((size_t)64 << 20)

static int stdin_ready(void) {
    struct pollfd p = {.fd = 0, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

int tool_read_lines(const char *cmd, int batch, const struct tool_lines_ops *ops, void *user) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        return 1;
    }
    int n = 0, eof = 0, skipping = 0, rc = 0;
    while (!eof || len > 0) {
        /* every complete line in the buffer */
        size_t start = 0;
        for (;;) {
            char *nl = memchr(buf + start, '\n', len - start);
            if (!nl && !(eof && start < len)) break;
            size_t end = nl ? (size_t)(nl - buf) : len;
            size_t s = start, e = end;
            while (s < e && (buf[s] == ' ' || buf[s] == '\t' || buf[s] == '\r')) s++;
            while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t' || buf[e - 1] == '\r')) e--;
            size_t used = (nl ? end + 1 : len) - start;
            if (e > s) {
                ops->line(user, buf + s, e - s, used);
                if (++n == batch) {
                    ops->flush(user);
                    n = 0;
                }
            } else if (ops->consumed) {
                ops->consumed(user, used);
            }
            start = nl ? end + 1 : len;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
        if (eof) break;
        if (n > 0 && !stdin_ready()) {
            ops->flush(user);
            n = 0;
        }
        if (len + 4096 > cap) {
            if (cap >= MAX_LINE) {
                if (n > 0) ops->flush(user); /* keep the answers in input order */
                n = 0;
                ops->line(user, NULL, 0, len);
                ops->flush(user);
                len = 0;
                skipping = 1;
            } else {
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    fprintf(stderr, "%s: out of memory\n", cmd);
                    rc = 1;
                    break;
                }
                buf = nb;
                cap *= 2;
            }
        }
        ssize_t r = read(0, buf + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r < 0) fprintf(stderr, "%s: reading stdin: %s\n", cmd, strerror(errno));
            eof = 1;
        } else if (skipping) {
            char *nl = memchr(buf + len, '\n', (size_t)r);
            if (nl) {
                size_t rest = (size_t)r - (size_t)(nl + 1 - (buf + len));
                memmove(buf, nl + 1, rest);
                len = rest;
                skipping = 0;
            }
        } else {
            len += (size_t)r;
        }
    }
    if (n > 0) ops->flush(user);
    free(buf);
    return rc;
}
