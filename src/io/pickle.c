/*
 * pickle.c: a restricted unpickler for PyTorch state dicts. It never executes code.
 *
 * torch.save writes a pickle (protocol 2) whose objects are an OrderedDict of tensors; each
 * tensor is rebuilt by torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) and
 * each storage is a persistent id ('storage', torch.FloatStorage, key, location, numel) whose
 * bytes live in the zip as data/<key>. This file implements the pickle virtual machine for the
 * opcodes such a pickle uses and nothing else: "calling" a global is only ever one of a handful
 * of known constructors interpreted here (OrderedDict, _rebuild_tensor_v2, _rebuild_parameter),
 * and any other opcode or global is refused with CGE_ERR_SERIALIZATION naming it and its byte
 * offset.
 *
 * Key decisions: values live in an arena freed at the end (memo and stack share them freely,
 * cycles are harmless); nothing recurses, so no input can exhaust the C stack; every count is
 * bounded by the input length (one node per opcode at most), so memory is O(input).
 */
#include "io/io_internal.h"

#include <string.h>

/* ==== values ================================================================================= */

enum pk {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,
    PK_BYTES,
    PK_TUPLE,
    PK_LIST,
    PK_DICT, /* items hold key, value, key, value, ... */
    PK_GLOBAL,
    PK_STORAGE,
    PK_TENSOR,
};

enum glob {
    G_ORDERED_DICT,
    G_REBUILD_TENSOR_V2,
    G_REBUILD_PARAMETER,
    G_REBUILD_PARAMETER_WITH_STATE,
    G_STORAGE, /* a typed storage class; dtype in the node */
};

struct pv {
    enum pk kind;
    struct pv *next_alloc; /* arena list */
    int64_t i;             /* INT, BOOL; GLOBAL: enum glob; STORAGE: numel; TENSOR: offset */
    double f;              /* FLOAT */
    char *s;               /* STR, BYTES (NUL-terminated copy); STORAGE: key */
    size_t slen;
    struct pv **items; /* TUPLE, LIST, DICT */
    size_t n, cap;
    enum cge_dtype dtype; /* GLOBAL storage class, STORAGE, TENSOR */
    int supported;        /* GLOBAL storage class: 0 for ShortStorage, BoolStorage, ... */
    const char *gname;    /* GLOBAL: "torch.ShortStorage" for messages */
    const void *data;     /* STORAGE: resolved bytes */
    struct pv *storage;   /* TENSOR */
    int n_dim;            /* TENSOR */
    int64_t shape[CGE_MAX_DIMS], stride[CGE_MAX_DIMS];
};

struct vm {
    const uint8_t *p;
    size_t len, pos;
    const char *label;
    cge__storage_fn storage;
    void *user;
    struct pv *arena;
    struct pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    struct pv **memo;
    size_t memo_cap;
    size_t memo_count; /* entries set, for MEMOIZE (memo[len(memo)]) */
    size_t op_pos;     /* offset of the opcode being run, for messages */
};

static enum cge_status bad(struct vm *m, const char *what) {
    return cge__err(CGE_ERR_SERIALIZATION, "%s: data.pkl byte %zu: %s", m->label, m->op_pos, what);
}

static struct pv *new_val(struct vm *m, enum pk kind) {
    struct pv *v = cge__calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    v->next_alloc = m->arena;
    m->arena = v;
    return v;
}

static void free_arena(struct vm *m) {
    struct pv *v = m->arena;
    while (v) {
        struct pv *next = v->next_alloc;
        cge__free(v->s);
        cge__free(v->items);
        cge__free(v);
        v = next;
    }
    m->arena = NULL;
}

static enum cge_status push(struct vm *m, struct pv *v) {
    if (!v) return cge__err(CGE_ERR_NOMEM, "%s: unpickler value", m->label);
    if (m->sp == m->stack_cap) {
        size_t cap = m->stack_cap ? 2 * m->stack_cap : 64;
        struct pv **s = cge__realloc(m->stack, cap * sizeof *s);
        if (!s) return cge__err(CGE_ERR_NOMEM, "%s: unpickler stack", m->label);
        m->stack = s;
        m->stack_cap = cap;
    }
    m->stack[m->sp++] = v;
    return CGE_OK;
}

/* Items above the last mark (or the whole stack with no mark: an error). */
static size_t mark_base(const struct vm *m) {
    return m->n_marks ? m->marks[m->n_marks - 1] : (size_t)-1;
}

static enum cge_status append_item(struct vm *m, struct pv *c, struct pv *v) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4;
        struct pv **it = cge__realloc(c->items, cap * sizeof *it);
        if (!it) return cge__err(CGE_ERR_NOMEM, "%s: unpickler container", m->label);
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = v;
    return CGE_OK;
}

/* ==== reading ================================================================================ */

static int need(struct vm *m, size_t n) {
    return m->len - m->pos >= n;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static enum cge_status push_string(struct vm *m, enum pk kind, size_t n) {
    if (!need(m, n)) return bad(m, "string runs past the end");
    struct pv *v = new_val(m, kind);
    if (!v) return cge__err(CGE_ERR_NOMEM, "%s: string", m->label);
    v->s = cge__malloc(n + 1);
    if (!v->s) return cge__err(CGE_ERR_NOMEM, "%s: string of %zu bytes", m->label, n);
    memcpy(v->s, m->p + m->pos, n);
    v->s[n] = '\0';
    v->slen = n;
    m->pos += n;
    return push(m, v);
}

/* ==== globals ================================================================================ */

static const struct {
    const char *module, *name;
    enum glob g;
    enum cge_dtype dtype;
    int supported;
} globals[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, 0, 1},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, 0, 1},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, 0, 1},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAMETER_WITH_STATE, 0, 1},
    {"torch", "FloatStorage", G_STORAGE, CGE_DTYPE_F32, 1},
    {"torch", "HalfStorage", G_STORAGE, CGE_DTYPE_F16, 1},
    {"torch", "BFloat16Storage", G_STORAGE, CGE_DTYPE_BF16, 1},
    {"torch", "DoubleStorage", G_STORAGE, CGE_DTYPE_F64, 1},
    {"torch", "CharStorage", G_STORAGE, CGE_DTYPE_I8, 1},
    {"torch", "ByteStorage", G_STORAGE, CGE_DTYPE_U8, 1},
    {"torch", "IntStorage", G_STORAGE, CGE_DTYPE_I32, 1},
    {"torch", "LongStorage", G_STORAGE, CGE_DTYPE_I64, 1},
    /* known storage classes whose element types cge has no dtype for */
    {"torch", "ShortStorage", G_STORAGE, 0, 0},
    {"torch", "BoolStorage", G_STORAGE, 0, 0},
    {"torch", "ComplexFloatStorage", G_STORAGE, 0, 0},
    {"torch", "ComplexDoubleStorage", G_STORAGE, 0, 0},
    {"torch", "QInt8Storage", G_STORAGE, 0, 0},
    {"torch", "QUInt8Storage", G_STORAGE, 0, 0},
    {"torch", "QInt32Storage", G_STORAGE, 0, 0},
};

static enum cge_status push_global(struct vm *m, const char *module, size_t mlen, const char *name,
                                   size_t nlen) {
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++) {
        if (strlen(globals[i].module) == mlen && memcmp(globals[i].module, module, mlen) == 0 &&
            strlen(globals[i].name) == nlen && memcmp(globals[i].name, name, nlen) == 0) {
            struct pv *v = new_val(m, PK_GLOBAL);
            if (!v) return cge__err(CGE_ERR_NOMEM, "%s: global", m->label);
            v->i = globals[i].g;
            v->dtype = globals[i].dtype;
            v->supported = globals[i].supported;
            v->gname = globals[i].name;
            return push(m, v);
        }
    }
    int ml = mlen > 64 ? 64 : (int)mlen, nl = nlen > 64 ? 64 : (int)nlen;
    char what[200];
    snprintf(what, sizeof what, "refusing global '%.*s.%.*s' (not part of a state dict)", ml,
             module, nl, name);
    for (char *c = what; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) *c = '?';
    return bad(m, what);
}

/* ==== calls (REDUCE) ========================================================================= */

static int is_int(const struct pv *v) {
    return v->kind == PK_INT || v->kind == PK_BOOL;
}

static enum cge_status int_tuple(struct vm *m, const struct pv *t, int64_t *out, int *n,
                                 const char *what) {
    char msg[128];
    if (t->kind != PK_TUPLE) {
        snprintf(msg, sizeof msg, "tensor %s is not a tuple", what);
        return bad(m, msg);
    }
    if (t->n > CGE_MAX_DIMS) {
        snprintf(msg, sizeof msg, "tensor with %zu dimensions (at most %d)", t->n, CGE_MAX_DIMS);
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: data.pkl byte %zu: %s", m->label, m->op_pos, msg);
    }
    for (size_t i = 0; i < t->n; i++) {
        if (!is_int(t->items[i]) || t->items[i]->i < 0) {
            snprintf(msg, sizeof msg, "tensor %s[%zu] is not a non-negative integer", what, i);
            return bad(m, msg);
        }
        out[i] = t->items[i]->i;
    }
    *n = (int)t->n;
    return CGE_OK;
}

static enum cge_status rebuild_tensor(struct vm *m, const struct pv *args, struct pv **out) {
    if (args->n < 6 || args->n > 7) return bad(m, "_rebuild_tensor_v2 takes 6 or 7 arguments");
    const struct pv *storage = args->items[0], *offset = args->items[1];
    if (storage->kind != PK_STORAGE)
        return bad(m, "_rebuild_tensor_v2: first argument is not a storage");
    if (offset->kind != PK_INT || offset->i < 0)
        return bad(m, "_rebuild_tensor_v2: storage offset is not a non-negative integer");
    struct pv *t = new_val(m, PK_TENSOR);
    if (!t) return cge__err(CGE_ERR_NOMEM, "%s: tensor", m->label);
    int n_size = 0, n_stride = 0;
    enum cge_status st = int_tuple(m, args->items[2], t->shape, &n_size, "size");
    if (!st) st = int_tuple(m, args->items[3], t->stride, &n_stride, "stride");
    if (st) return st;
    if (n_size != n_stride) return bad(m, "_rebuild_tensor_v2: size and stride differ in length");
    if (args->items[4]->kind != PK_BOOL && args->items[4]->kind != PK_INT)
        return bad(m, "_rebuild_tensor_v2: requires_grad is not a bool");
    if (args->items[5]->kind != PK_DICT && args->items[5]->kind != PK_NONE)
        return bad(m, "_rebuild_tensor_v2: backward_hooks is not a dict");
    if (args->items[5]->kind == PK_DICT && args->items[5]->n)
        return bad(m, "_rebuild_tensor_v2: refusing backward hooks");
    /* Elements and the furthest element reached, with overflow checks (limit 2^53). */
    const int64_t lim = (int64_t)1 << 53;
    int64_t n_elem = 1, extent = 0;
    int zero = 0;
    for (int i = 0; i < n_size; i++) {
        if (t->shape[i] == 0) zero = 1;
        if (t->shape[i] > lim || t->stride[i] > lim) return bad(m, "tensor size overflows");
        if (!zero && n_elem > lim / (t->shape[i] ? t->shape[i] : 1))
            return bad(m, "tensor size overflows");
        if (!zero) n_elem *= t->shape[i];
    }
    if (zero) n_elem = 0;
    if (n_elem > 0) {
        for (int i = 0; i < n_size; i++) {
            int64_t d = t->shape[i] - 1;
            if (t->stride[i] && d > (lim - extent) / t->stride[i])
                return bad(m, "tensor extent overflows");
            extent += d * t->stride[i];
        }
        if (offset->i > lim - extent - 1) return bad(m, "tensor extent overflows");
        if (offset->i + extent + 1 > storage->i) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "tensor (offset %lld, last element %lld) lies outside its storage '%.32s' "
                     "of %lld elements",
                     (long long)offset->i, (long long)(offset->i + extent), storage->s,
                     (long long)storage->i);
            return bad(m, msg);
        }
    }
    t->storage = (struct pv *)storage;
    t->i = offset->i;
    t->n_dim = n_size;
    t->dtype = storage->dtype;
    *out = t;
    return CGE_OK;
}

static enum cge_status op_reduce(struct vm *m) {
    if (m->sp < 2 || (m->n_marks && m->sp - 2 < mark_base(m)))
        return bad(m, "REDUCE on a short stack");
    struct pv *args = m->stack[m->sp - 1], *fn = m->stack[m->sp - 2];
    m->sp -= 2;
    if (fn->kind != PK_GLOBAL) return bad(m, "REDUCE of something that is not a known global");
    if (args->kind != PK_TUPLE) return bad(m, "REDUCE arguments are not a tuple");
    struct pv *r = NULL;
    enum cge_status st = CGE_OK;
    switch ((enum glob)fn->i) {
    case G_ORDERED_DICT:
        if (args->n != 0) return bad(m, "OrderedDict() with arguments");
        r = new_val(m, PK_DICT);
        break;
    case G_REBUILD_TENSOR_V2:
        st = rebuild_tensor(m, args, &r);
        break;
    case G_REBUILD_PARAMETER:
        if (args->n != 3 || args->items[0]->kind != PK_TENSOR)
            return bad(m, "_rebuild_parameter takes (tensor, requires_grad, hooks)");
        r = args->items[0];
        break;
    case G_REBUILD_PARAMETER_WITH_STATE: /* torch >= 2.0: a Parameter with extra attributes */
        if (args->n != 4 || args->items[0]->kind != PK_TENSOR)
            return bad(m, "_rebuild_parameter_with_state takes (tensor, requires_grad, hooks, "
                          "state)");
        r = args->items[0];
        break;
    default: {
        char msg[96];
        snprintf(msg, sizeof msg, "refusing to call torch.%s", fn->gname);
        return bad(m, msg);
    }
    }
    if (st) return st;
    return push(m, r);
}

static enum cge_status op_persid(struct vm *m) {
    if (m->sp < 1 || (m->n_marks && m->sp - 1 < mark_base(m)))
        return bad(m, "BINPERSID on an empty stack");
    struct pv *pid = m->stack[--m->sp];
    if (pid->kind != PK_TUPLE || pid->n != 5 || pid->items[0]->kind != PK_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        return bad(m, "persistent id is not ('storage', type, key, location, numel)");
    const struct pv *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->kind != PK_GLOBAL || type->i != G_STORAGE)
        return bad(m, "persistent id: storage type is not a torch storage class");
    if (!type->supported) {
        char msg[96];
        snprintf(msg, sizeof msg, "storages of type torch.%s are not supported", type->gname);
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: data.pkl byte %zu: %s", m->label, m->op_pos, msg);
    }
    if (key->kind != PK_STR || key->slen == 0 || key->slen != strlen(key->s) ||
        strchr(key->s, '/') || strcmp(key->s, "..") == 0)
        return bad(m, "persistent id: bad storage key");
    if (pid->items[3]->kind != PK_STR) return bad(m, "persistent id: location is not a string");
    size_t es = cge_dtype_size(type->dtype);
    if (numel->kind != PK_INT || numel->i < 0 || numel->i > ((int64_t)1 << 53) / (int64_t)es)
        return bad(m, "persistent id: bad storage size");
    struct pv *s = new_val(m, PK_STORAGE);
    if (!s) return cge__err(CGE_ERR_NOMEM, "%s: storage", m->label);
    s->dtype = type->dtype;
    s->i = numel->i;
    s->s = cge__strdup(key->s);
    if (!s->s) return cge__err(CGE_ERR_NOMEM, "%s: storage key", m->label);
    s->slen = key->slen;
    enum cge_status st = m->storage(m->user, s->s, (size_t)numel->i * es, &s->data);
    if (st) return st;
    return push(m, s);
}

/* ==== the machine ============================================================================ */

static enum cge_status memo_put(struct vm *m, uint64_t idx) {
    if (m->sp == 0) return bad(m, "memo store from an empty stack");
    /* A writer numbers memo entries 0, 1, 2, ...: an index beyond the input length is bogus. */
    if (idx > m->len) return bad(m, "memo index out of range");
    if (idx >= m->memo_cap) {
        size_t cap = m->memo_cap ? m->memo_cap : 64;
        while (cap <= idx)
            cap *= 2;
        struct pv **mm = cge__realloc(m->memo, cap * sizeof *mm);
        if (!mm) return cge__err(CGE_ERR_NOMEM, "%s: memo", m->label);
        memset(mm + m->memo_cap, 0, (cap - m->memo_cap) * sizeof *mm);
        m->memo = mm;
        m->memo_cap = cap;
    }
    if (!m->memo[idx]) m->memo_count++;
    m->memo[idx] = m->stack[m->sp - 1];
    return CGE_OK;
}

static enum cge_status memo_get(struct vm *m, uint64_t idx) {
    if (idx >= m->memo_cap || !m->memo[idx]) return bad(m, "memo get of an unset entry");
    return push(m, m->memo[idx]);
}

/* Pops everything above the last mark into a new container of `kind`. */
static enum cge_status pop_mark_into(struct vm *m, struct pv *c) {
    if (!m->n_marks) return bad(m, "no MARK on the stack");
    size_t base = m->marks[--m->n_marks];
    for (size_t i = base; i < m->sp; i++) {
        enum cge_status st = append_item(m, c, m->stack[i]);
        if (st) return st;
    }
    m->sp = base;
    return CGE_OK;
}

static enum cge_status run(struct vm *m, struct pv **result) {
    *result = NULL;
    while (m->pos < m->len) {
        m->op_pos = m->pos;
        uint8_t op = m->p[m->pos++];
        enum cge_status st = CGE_OK;
        size_t base = mark_base(m);
        size_t above = m->n_marks ? m->sp - base : m->sp; /* items usable by this opcode */
        switch (op) {
        case 0x80: /* PROTO */
            if (!need(m, 1)) return bad(m, "truncated PROTO");
            if (m->p[m->pos] > 5) return bad(m, "unknown pickle protocol");
            m->pos++;
            break;
        case 0x95: /* FRAME: an 8-byte length; the frame's opcodes follow inline */
            if (!need(m, 8)) return bad(m, "truncated FRAME");
            if (rd_le(m->p + m->pos, 8) > m->len - m->pos - 8)
                return bad(m, "FRAME runs past the end");
            m->pos += 8;
            break;
        case '.': /* STOP */
            if (above < 1) return bad(m, "STOP on an empty stack");
            *result = m->stack[m->sp - 1];
            return CGE_OK;
        case '(': /* MARK */
            if (m->n_marks == m->marks_cap) {
                size_t cap = m->marks_cap ? 2 * m->marks_cap : 16;
                size_t *mk = cge__realloc(m->marks, cap * sizeof *mk);
                if (!mk) return cge__err(CGE_ERR_NOMEM, "%s: marks", m->label);
                m->marks = mk;
                m->marks_cap = cap;
            }
            m->marks[m->n_marks++] = m->sp;
            break;
        case '0': /* POP */
            if (above < 1) return bad(m, "POP on an empty stack");
            m->sp--;
            break;
        case '1': /* POP_MARK */
            if (!m->n_marks) return bad(m, "POP_MARK without MARK");
            m->sp = m->marks[--m->n_marks];
            break;
        case '2': /* DUP */
            if (above < 1) return bad(m, "DUP on an empty stack");
            st = push(m, m->stack[m->sp - 1]);
            break;
        case 'N':
            st = push(m, new_val(m, PK_NONE));
            break;
        case 0x88:   /* NEWTRUE */
        case 0x89: { /* NEWFALSE */
            struct pv *v = new_val(m, PK_BOOL);
            if (v) v->i = op == 0x88;
            st = push(m, v);
            break;
        }
        case 'J':   /* BININT */
        case 'K':   /* BININT1 */
        case 'M': { /* BININT2 */
            int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
            if (!need(m, (size_t)n)) return bad(m, "truncated integer");
            uint64_t u = rd_le(m->p + m->pos, n);
            m->pos += (size_t)n;
            struct pv *v = new_val(m, PK_INT);
            if (v) v->i = op == 'J' ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
            st = push(m, v);
            break;
        }
        case 0x8a: { /* LONG1: n bytes, little-endian two's complement */
            if (!need(m, 1)) return bad(m, "truncated LONG1");
            size_t n = m->p[m->pos++];
            if (n > 8) return bad(m, "LONG1 integer wider than 64 bits");
            if (!need(m, n)) return bad(m, "truncated LONG1");
            uint64_t u = n ? rd_le(m->p + m->pos, (int)n) : 0;
            if (n && n < 8 && (m->p[m->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
            m->pos += n;
            struct pv *v = new_val(m, PK_INT);
            if (v) memcpy(&v->i, &u, sizeof u);
            st = push(m, v);
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            if (!need(m, 8)) return bad(m, "truncated BINFLOAT");
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = (u << 8) | m->p[m->pos + (size_t)i];
            m->pos += 8;
            struct pv *v = new_val(m, PK_FLOAT);
            if (v) memcpy(&v->f, &u, sizeof u);
            st = push(m, v);
            break;
        }
        case 'X':    /* BINUNICODE */
        case 0x8c:   /* SHORT_BINUNICODE */
        case 0x8d:   /* BINUNICODE8 */
        case 'B':    /* BINBYTES */
        case 'C':    /* SHORT_BINBYTES */
        case 0x8e: { /* BINBYTES8 */
            int n = (op == 0x8c || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            if (!need(m, (size_t)n)) return bad(m, "truncated string length");
            uint64_t l = rd_le(m->p + m->pos, n);
            m->pos += (size_t)n;
            if (l > m->len - m->pos) return bad(m, "string runs past the end");
            int is_str = op == 'X' || op == 0x8c || op == 0x8d;
            st = push_string(m, is_str ? PK_STR : PK_BYTES, (size_t)l);
            break;
        }
        case 'c': { /* GLOBAL "module\nname\n" */
            const char *s = (const char *)m->p + m->pos;
            size_t rem = m->len - m->pos;
            const char *nl1 = memchr(s, '\n', rem);
            if (!nl1) return bad(m, "truncated GLOBAL");
            const char *nl2 = memchr(nl1 + 1, '\n', rem - (size_t)(nl1 + 1 - s));
            if (!nl2) return bad(m, "truncated GLOBAL");
            m->pos += (size_t)(nl2 + 1 - s);
            st = push_global(m, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1));
            break;
        }
        case 0x93: { /* STACK_GLOBAL */
            if (above < 2) return bad(m, "STACK_GLOBAL on a short stack");
            struct pv *name = m->stack[m->sp - 1], *mod = m->stack[m->sp - 2];
            if (name->kind != PK_STR || mod->kind != PK_STR)
                return bad(m, "STACK_GLOBAL of non-strings");
            m->sp -= 2;
            st = push_global(m, mod->s, mod->slen, name->s, name->slen);
            break;
        }
        case ')':
            st = push(m, new_val(m, PK_TUPLE));
            break;
        case ']':
            st = push(m, new_val(m, PK_LIST));
            break;
        case '}':
            st = push(m, new_val(m, PK_DICT));
            break;
        case 't':   /* TUPLE */
        case 'l':   /* LIST */
        case 'd': { /* DICT */
            struct pv *c = new_val(m, op == 't' ? PK_TUPLE : op == 'l' ? PK_LIST : PK_DICT);
            if (!c) return cge__err(CGE_ERR_NOMEM, "%s: container", m->label);
            if (op == 'd' && m->n_marks && (m->sp - base) % 2) return bad(m, "DICT of odd length");
            st = pop_mark_into(m, c);
            if (!st) st = push(m, c);
            break;
        }
        case 0x85:   /* TUPLE1 */
        case 0x86:   /* TUPLE2 */
        case 0x87: { /* TUPLE3 */
            size_t n = (size_t)(op - 0x84);
            if (above < n) return bad(m, "TUPLEn on a short stack");
            struct pv *c = new_val(m, PK_TUPLE);
            if (!c) return cge__err(CGE_ERR_NOMEM, "%s: tuple", m->label);
            for (size_t i = m->sp - n; i < m->sp && !st; i++)
                st = append_item(m, c, m->stack[i]);
            if (st) return st;
            m->sp -= n;
            st = push(m, c);
            break;
        }
        case 'a': { /* APPEND */
            if (above < 2) return bad(m, "APPEND on a short stack");
            struct pv *l = m->stack[m->sp - 2];
            if (l->kind != PK_LIST) return bad(m, "APPEND to a non-list");
            st = append_item(m, l, m->stack[m->sp - 1]);
            m->sp--;
            break;
        }
        case 'e': { /* APPENDS */
            if (!m->n_marks || base < 1) return bad(m, "APPENDS without MARK and list");
            struct pv *l = m->stack[base - 1];
            if (l->kind != PK_LIST) return bad(m, "APPENDS to a non-list");
            st = pop_mark_into(m, l);
            break;
        }
        case 's': { /* SETITEM */
            if (above < 3) return bad(m, "SETITEM on a short stack");
            struct pv *d = m->stack[m->sp - 3];
            if (d->kind != PK_DICT) return bad(m, "SETITEM on a non-dict");
            st = append_item(m, d, m->stack[m->sp - 2]);
            if (!st) st = append_item(m, d, m->stack[m->sp - 1]);
            m->sp -= 2;
            break;
        }
        case 'u': { /* SETITEMS */
            if (!m->n_marks || base < 1) return bad(m, "SETITEMS without MARK and dict");
            struct pv *d = m->stack[base - 1];
            if (d->kind != PK_DICT) return bad(m, "SETITEMS on a non-dict");
            if ((m->sp - base) % 2) return bad(m, "SETITEMS of odd length");
            st = pop_mark_into(m, d);
            break;
        }
        case 'b': { /* BUILD: state for an OrderedDict (its _metadata): accepted, ignored */
            if (above < 2) return bad(m, "BUILD on a short stack");
            struct pv *state = m->stack[m->sp - 1], *obj = m->stack[m->sp - 2];
            if (obj->kind != PK_DICT) return bad(m, "refusing BUILD on anything but a dict");
            if (state->kind != PK_DICT && state->kind != PK_NONE && state->kind != PK_TUPLE)
                return bad(m, "BUILD with an unexpected state");
            m->sp--;
            break;
        }
        case 'R':
            st = op_reduce(m);
            break;
        case 'Q':
            st = op_persid(m);
            break;
        case 'q': /* BINPUT */
            if (!need(m, 1)) return bad(m, "truncated BINPUT");
            st = memo_put(m, m->p[m->pos++]);
            break;
        case 'r': /* LONG_BINPUT */
            if (!need(m, 4)) return bad(m, "truncated LONG_BINPUT");
            st = memo_put(m, rd_le(m->p + m->pos, 4));
            m->pos += 4;
            break;
        case 0x94: /* MEMOIZE */
            st = memo_put(m, m->memo_count);
            break;
        case 'h': /* BINGET */
            if (!need(m, 1)) return bad(m, "truncated BINGET");
            st = memo_get(m, m->p[m->pos++]);
            break;
        case 'j': /* LONG_BINGET */
            if (!need(m, 4)) return bad(m, "truncated LONG_BINGET");
            st = memo_get(m, rd_le(m->p + m->pos, 4));
            m->pos += 4;
            break;
        default: {
            char msg[96];
            if (op >= 0x20 && op < 0x7f)
                snprintf(msg, sizeof msg, "refusing opcode 0x%02x ('%c')", op, op);
            else
                snprintf(msg, sizeof msg, "refusing opcode 0x%02x", op);
            return bad(m, msg);
        }
        }
        if (st) return st;
    }
    m->op_pos = m->pos;
    return bad(m, "no STOP opcode (truncated pickle)");
}

/* ==== the state dict ========================================================================= */

static int contiguous(const struct pv *t) {
    int64_t want = 1;
    for (int i = t->n_dim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != want) return 0;
        want *= t->shape[i];
    }
    return 1;
}

/* Copies a strided tensor into contiguous memory (row-major), element by element. */
static void gather(const struct pv *t, uint8_t *dst, size_t es) {
    const uint8_t *src = (const uint8_t *)t->storage->data;
    int64_t idx[CGE_MAX_DIMS] = {0};
    int64_t n = 1;
    for (int i = 0; i < t->n_dim; i++)
        n *= t->shape[i];
    for (int64_t k = 0; k < n; k++) {
        int64_t off = t->i;
        for (int i = 0; i < t->n_dim; i++)
            off += idx[i] * t->stride[i];
        memcpy(dst + (size_t)k * es, src + (size_t)off * es, es);
        for (int i = t->n_dim - 1; i >= 0; i--) {
            if (++idx[i] < t->shape[i]) break;
            idx[i] = 0;
        }
    }
}

static enum cge_status add_tensor(struct vm *m, struct cge_weights *w, const struct pv *key,
                                  const struct pv *t) {
    if (key->kind != PK_STR || key->slen != strlen(key->s))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: data.pkl: a state dict key is not a string",
                        m->label);
    struct cge_tensor_info info;
    memset(&info, 0, sizeof info);
    info.name = key->s;
    info.dtype = t->dtype;
    info.n_dim = t->n_dim;
    int64_t n = 1;
    for (int i = 0; i < t->n_dim; i++) {
        info.shape[i] = t->shape[i];
        n *= t->shape[i];
    }
    size_t es = cge_dtype_size(t->dtype);
    info.n_elem = n;
    info.n_bytes = (size_t)n * es;
    if (n == 0 || contiguous(t)) {
        info.data = (const uint8_t *)t->storage->data + (size_t)t->i * es;
        if (n == 0) info.data = t->storage->data;
    } else {
        uint8_t *copy = cge__malloc_aligned(info.n_bytes);
        if (!copy)
            return cge__err(CGE_ERR_NOMEM, "%s: tensor '%s': copy of %zu bytes", m->label, key->s,
                            info.n_bytes);
        gather(t, copy, es);
        struct cge__region r = {copy, info.n_bytes, CGE__REGION_HEAP};
        enum cge_status st = cge__weights_add_region(w, r);
        if (st) return st;
        info.data = copy;
    }
    return cge__weights_add_tensor(w, &info);
}

enum cge_status cge__unpickle_state_dict(const uint8_t *buf, size_t len, const char *label,
                                         cge__storage_fn storage, void *user,
                                         struct cge_weights *w) {
    struct vm m;
    memset(&m, 0, sizeof m);
    m.p = buf;
    m.len = buf ? len : 0;
    m.label = label ? label : "(pickle)";
    m.storage = storage;
    m.user = user;
    struct pv *root = NULL;
    enum cge_status st = run(&m, &root);
    if (!st && root->kind != PK_DICT) {
        st = cge__err(CGE_ERR_SERIALIZATION,
                      "%s: data.pkl: the pickle is not a state dict (a dict "
                      "of tensors)",
                      m.label);
    }
    if (!st) {
        /* A checkpoint may wrap the state dict: {"state_dict": {...}} or {"model": {...}}. */
        int has_tensor = 0;
        const struct pv *inner = NULL;
        for (size_t i = 0; i + 1 < root->n; i += 2) {
            const struct pv *k = root->items[i], *v = root->items[i + 1];
            if (v->kind == PK_TENSOR) has_tensor = 1;
            if (k->kind == PK_STR && v->kind == PK_DICT &&
                (strcmp(k->s, "state_dict") == 0 || strcmp(k->s, "model") == 0))
                inner = v;
        }
        if (!has_tensor && inner) root = (struct pv *)inner;
        for (size_t i = 0; i + 1 < root->n && !st; i += 2) {
            const struct pv *k = root->items[i], *v = root->items[i + 1];
            if (v->kind != PK_TENSOR) {
                cge__log(CGE_LOG_DEBUG, "%s: skipping non-tensor entry in the state dict", m.label);
                continue;
            }
            st = add_tensor(&m, w, k, v);
        }
    }
    free_arena(&m);
    cge__free(m.stack);
    cge__free(m.marks);
    cge__free(m.memo);
    return st;
}
