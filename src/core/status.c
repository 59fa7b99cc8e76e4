/*
 * status.c: status names, the thread-local error detail, assertions and logging.
 *
 * The detail message is thread-local so that concurrent callers never see each other's errors
 * and no context object is needed to report a failure from deep inside a parser.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char errbuf[1024];

const char *cge_status_str(int status) {
    switch (status) {
    case CGE_OK: return "ok";
    case CGE_ERR_MODEL_NOT_FOUND: return "model not found";
    case CGE_ERR_MODEL_LOAD: return "model load error";
    case CGE_ERR_INVALID_DIM: return "invalid dimension";
    case CGE_ERR_INVALID_VALUE: return "invalid value";
    case CGE_ERR_INPUT_TOO_LONG: return "input too long";
    case CGE_ERR_EMPTY_INPUT: return "empty input";
    case CGE_ERR_BATCH: return "batch error";
    case CGE_ERR_FUSION: return "fusion error";
    case CGE_ERR_CACHE: return "cache error";
    case CGE_ERR_GPU: return "GPU error";
    case CGE_ERR_TOKENIZE: return "tokenization error";
    case CGE_ERR_IO: return "I/O error";
    case CGE_ERR_SERIALIZATION: return "serialization error";
    case CGE_ERR_TIMEOUT: return "timeout";
    case CGE_ERR_NOT_INITIALIZED: return "not initialized";
    case CGE_ERR_UNSUPPORTED_MODALITY: return "unsupported modality";
    case CGE_ERR_NOMEM: return "out of memory";
    case CGE_ERR_UNSUPPORTED: return "unsupported";
    case CGE_ERR_QUEUE_FULL: return "queue full";
    }
    return "unknown status";
}

const char *cge_errmsg(void) {
    return errbuf;
}

enum cge_status cge__err(enum cge_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return status;
}

void cge__err_clear(void) {
    errbuf[0] = '\0';
}

void cge__assert_fail(const char *file, int line, const char *expr) {
    fprintf(stderr, "cge: %s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}

/* ---- logging --------------------------------------------------------------------------------- */

static cge_log_fn log_fn;
static void *log_user;

void cge_log_set(cge_log_fn fn, void *user) {
    log_fn = fn;
    log_user = user;
}

void cge__log(enum cge_log_level level, const char *fmt, ...) {
    if (!log_fn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_user);
}
