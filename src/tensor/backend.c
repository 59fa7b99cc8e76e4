/*
 * backend.c: picking a backend by name ("cpu", "cuda", "cuda:N", "auto"), the CPU fallback, and
 * the one-line description of what is compiled in and what devices are found.
 *
 * Design: the CUDA backend lives in src/gpu/ behind two C functions (cge__cuda_backend_open,
 * cge__cuda_describe) that only exist when the build has CUDA (CGE_HAVE_CUDA); without it, the
 * names still parse and say plainly why there is no device. A backend a device returns is
 * checked for a complete table before anyone calls through it, so a missing entry is an error
 * at open (and a CPU fallback), never a NULL call in the middle of a forward.
 */
#include "tensor/backend.h"

#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CGE_HAVE_CUDA
/* src/gpu/ (C linkage) */
enum cge_status cge__cuda_backend_open(int device, struct cge_backend **out);
int cge__cuda_describe(char *buf, size_t cap);
#endif

#define NO_CUDA_REASON "cge was built without CUDA (CGE_CUDA=OFF or nvcc/cuBLAS not found)"

/* "cuda" → 0, "cuda:N" → N; -1 when name is not a CUDA name, -2 when N is malformed. */
static int cuda_device(const char *name) {
    if (strncmp(name, "cuda", 4)) return -1;
    if (!name[4]) return 0;
    if (name[4] != ':' || !name[5]) return -2;
    long v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > 1000000) return -2;
        v = v * 10 + (*p - '0');
    }
    return (int)v;
}

int cge__backend_missing(const struct cge_backend *b, char *buf, size_t cap) {
#define E(f) {#f, b->f == NULL}
    const struct {
        const char *name;
        int missing;
    } e[] = {E(name),      E(alloc),       E(free),      E(to_device),   E(to_host),
             E(sync),      E(linear_init), E(linear_free), E(linear),    E(linear_bytes),
             E(layernorm), E(rmsnorm),     E(softmax),   E(act),         E(add),
             E(add_row),   E(mul),         E(scale),     E(attention),   E(rope),
             E(embed_gather), E(destroy),  E(copy),      E(glu)};
#undef E
    int n = 0;
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        if (!e[i].missing) continue;
        int k = snprintf(buf + o, cap - o, "%s%s", n ? " " : "", e[i].name);
        if (k > 0 && o + (size_t)k < cap) o += (size_t)k;
        n++;
    }
    return n;
}

enum cge_status cge_backend_open(const char *name, struct cge_backend **out) {
    *out = NULL;
    if (!name || !strcmp(name, "cpu")) {
        *out = cge_backend_cpu();
        return CGE_OK;
    }
    int dev = cuda_device(name);
    if (dev == -1)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "backend '%s': unknown (expected cpu, cuda, cuda:N or auto)", name);
    if (dev == -2)
        return cge__err(CGE_ERR_INVALID_VALUE, "backend '%s': expected cuda:N with N a device number",
                        name);
#ifdef CGE_HAVE_CUDA
    struct cge_backend *be = NULL;
    enum cge_status st = cge__cuda_backend_open(dev, &be);
    if (st) return st;
    char missing[256] = "(none)";
    if (!be || cge__backend_missing(be, missing, sizeof missing)) {
        if (be && be->destroy) be->destroy(be);
        return cge__err(CGE_ERR_UNSUPPORTED, "backend '%s': the CUDA backend's table lacks: %s",
                        name, missing);
    }
    *out = be;
    return CGE_OK;
#else
    return cge__err(CGE_ERR_UNSUPPORTED, "backend '%s': " NO_CUDA_REASON, name);
#endif
}

void cge_backend_release(struct cge_backend *be) {
    if (be && be != cge_backend_cpu() && be->destroy) be->destroy(be);
}

static atomic_int fallback_logged;

enum cge_status cge_backend_open_or_cpu(const char *name, struct cge_backend **out) {
    *out = cge_backend_cpu();
    if (!name || !strcmp(name, "cpu")) return CGE_OK;
    const int is_auto = !strcmp(name, "auto");
    struct cge_backend *be = NULL;
    enum cge_status st = cge_backend_open(is_auto ? "cuda" : name, &be);
    if (st == CGE_OK) {
        *out = be;
        return CGE_OK;
    }
    if (st == CGE_ERR_INVALID_VALUE && !is_auto) return st; /* a misspelled name is an error */
    char why[512];
    snprintf(why, sizeof why, "%s", cge_errmsg());
    cge__err_clear();
    if (is_auto) {
        cge__log(CGE_LOG_DEBUG, "backend auto: cpu (%s)", why);
    } else if (atomic_exchange(&fallback_logged, 1) == 0) {
        cge__log(CGE_LOG_WARN, "backend %s unavailable, using the cpu: %s", name, why);
    } else {
        cge__log(CGE_LOG_DEBUG, "backend %s unavailable, using the cpu: %s", name, why);
    }
    return CGE_OK;
}

/* The instruction-set extensions the kernels and oneDNN can use on this CPU. */
static int isa_features(char *buf, size_t cap) {
    __builtin_cpu_init();
    /* __builtin_cpu_supports takes string literals only: one row per feature */
#define F(s) {s, __builtin_cpu_supports(s)}
    const struct { const char *name; int on; } f[] = {
        F("sse4.2"),     F("avx"),        F("avx2"),     F("fma"),
        F("avx512f"),    F("avx512bw"),   F("avx512vl"), F("avx512vnni"),
        F("avx512bf16"), F("avx512fp16"), F("amx-tile"), F("amx-bf16"),
    };
#undef F
    size_t o = 0;
    int n = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].on) continue;
        int k = snprintf(buf + (o < cap ? o : cap), o < cap ? cap - o : 0, "%s%s", n ? " " : "",
                         f[i].name);
        if (k > 0) o += (size_t)k;
        n++;
    }
    if (!n) {
        int k = snprintf(buf, cap, "(none of the x86 extensions)");
        o = k > 0 ? (size_t)k : 0;
    }
    return (int)o;
}

const char *cge_backend_compiled(void) {
#ifdef CGE_HAVE_CUDA
    return "cpu cuda";
#else
    return "cpu";
#endif
}

int cge_backend_describe(char *buf, size_t cap) {
    char isa[256], cuda[1024];
    isa_features(isa, sizeof isa);
#ifdef CGE_HAVE_CUDA
    if (cge__cuda_describe(cuda, sizeof cuda) < 0) snprintf(cuda, sizeof cuda, "cuda: (no report)");
#else
    snprintf(cuda, sizeof cuda, "cuda: not compiled in (%s)", NO_CUDA_REASON);
#endif
    return snprintf(buf, cap, "cpu: %d threads, %s\n%s\n", cge_get_threads(), isa, cuda);
}
