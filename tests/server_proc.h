/*
 * server_proc.h: runs `cge serve` as a child process for tests and benchmarks: starts it with
 * --port 0, waits for its `listening on http://127.0.0.1:PORT` line, keeps its stderr (the
 * request log) in memory, and stops it with a signal, returning its exit status.
 * Header-only; needs CGE_BIN (the cge binary's path) defined by the build.
 */
#ifndef CGE_TESTS_SERVER_PROC_H
#define CGE_TESTS_SERVER_PROC_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ==== the server process ===================================================================== */
struct srv {
    pid_t pid;
    int port;
    int err_fd;
    pthread_t reader;
    pthread_mutex_t mu;
    char log[1 << 20]; /* its stderr (cut at 1 MiB) */
    size_t log_len;
};

static inline void *read_log(void *arg) {
    struct srv *s = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(s->err_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        pthread_mutex_lock(&s->mu);
        size_t k = (size_t)n < sizeof s->log - 1 - s->log_len ? (size_t)n
                                                              : sizeof s->log - 1 - s->log_len;
        memcpy(s->log + s->log_len, buf, k);
        s->log_len += k;
        s->log[s->log_len] = '\0';
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* Starts `cge serve --port 0 ARGS...` and waits (at most 120 s) for its listening line. */
static inline int srv_start(struct srv *s, const char *const *args) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    const char *argv[40];
    int n = 0;
    argv[n++] = CGE_BIN;
    argv[n++] = "serve";
    argv[n++] = "--port";
    argv[n++] = "0";
    for (int i = 0; args && args[i] && n < 38; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int fds[2];
    if (pipe(fds) != 0) return -1;
    s->pid = fork();
    if (s->pid == 0) {
        dup2(fds[1], 2);
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0) dup2(dn, 1);
        close(fds[0]);
        close(fds[1]);
        execv(CGE_BIN, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    s->err_fd = fds[0];
    /* Read up to the listening line, then hand the pipe to the reader thread. */
    time_t t0 = time(NULL);
    while (time(NULL) - t0 < 120) {
        struct pollfd p = {.fd = s->err_fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) continue;
        ssize_t k = read(s->err_fd, s->log + s->log_len, sizeof s->log - 1 - s->log_len);
        if (k <= 0) break;
        s->log_len += (size_t)k;
        s->log[s->log_len] = '\0';
        const char *l = strstr(s->log, "listening on http://127.0.0.1:");
        if (l && strchr(l, '\n')) {
            s->port = atoi(l + strlen("listening on http://127.0.0.1:"));
            pthread_create(&s->reader, NULL, read_log, s);
            return s->port > 0 ? 0 : -1;
        }
    }
    printf("  server did not start: %s\n", s->log);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* Sends sig, waits (at most 60 s) and returns the exit status (-1: killed / did not stop). */
static inline int srv_stop(struct srv *s, int sig) {
    if (!s->pid) return -1;
    kill(s->pid, sig);
    int status = 0;
    for (int i = 0; i < 600; i++) {
        pid_t w = waitpid(s->pid, &status, WNOHANG);
        if (w == s->pid) {
            pthread_join(s->reader, NULL);
            close(s->err_fd);
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(100 * 1000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    pthread_join(s->reader, NULL);
    close(s->err_fd);
    s->pid = 0;
    return -1;
}

static inline int srv_log_has(struct srv *s, const char *needle) {
    pthread_mutex_lock(&s->mu);
    int yes = strstr(s->log, needle) != NULL;
    pthread_mutex_unlock(&s->mu);
    return yes;
}

#endif /* CGE_TESTS_SERVER_PROC_H */
