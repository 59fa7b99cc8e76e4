/*
 * model.c: a model folder as downloaded from the Hugging Face Hub, and the embedding pipeline
 * tokenize → family forward → pooling → Dense → Normalize.
 *
 * Design: the folder decides everything it can (config.json picks the family; modules.json and
 * its module folders pick pooling and heads; sentence_bert_config.json, config.json and
 * tokenizer_config.json give the max length by sentence-transformers' rule), the family file
 * only maps token ids to hidden states. cge_model_embed sorts the inputs by length and runs them
 * in padded batches (right padding, masked keys), so each row equals that input alone; every
 * call owns its buffers, which is what makes a loaded model safe to share between threads.
 */
#include "models/model.h"

#include "core/core.h"
#include "models/heads.h"
#include "tensor/backend.h"
#include "tensor/ops.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAX_BATCH_ROWS   32
#define MAX_BATCH_TOKENS 8192 /* padded tokens per forward: bounds scratch memory */

struct cge_model {
    char *dir;
    const struct cge_family *family;
    void *impl;                      /* the family's weights */
    struct cge_weights *w;           /* the checkpoint (mmap'd; the impl may point into it) */
    struct cge_tokenizer *tok;       /* NULL for folders without tokenizer files */
    struct cge_st_head head;         /* sentence-transformers modules */
    struct cge_model_params p;
    int64_t hidden;                  /* family hidden width */
    int64_t raw_dim;                 /* family's own embedding width (pool_text / media) */
    int n_pool;
    enum cge_pooling pool[CGE_MAX_POOL_MODES];
    int64_t pooled_dim;              /* width after pooling (modes concatenated) */
    int64_t dim;                     /* output width */
    int normalize;
    int64_t max_seq_len;             /* 0 = no limit */
    int64_t max_positions;
    int32_t pad_id;
    int64_t vocab;
    unsigned modalities;
    int instr_t5;                    /* INSTRUCTOR convention for instructions */
    int instr_e5;                    /* E5-Mistral "Instruct: …\nQuery: …" */
    struct cge_backend *be;          /* p.backend opened (or the CPU fallback); owned */
};

/* ==== helpers for family files ===================================================================== */

const char *cge__cfg_str(const struct cJSON *config, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

enum cge_status cge__cfg_int(const struct cge_family_load *lc, const char *key, int required,
                             int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(lc->config, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: '%s' is missing", lc->dir, key);
        *out = def;
        return CGE_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: '%s' must be an integer in [%lld, %lld]", lc->dir, key, (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return CGE_OK;
}

enum cge_status cge__cfg_float(const struct cge_family_load *lc, const char *key, int required,
                               double def, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(lc->config, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: '%s' is missing", lc->dir, key);
        *out = def;
        return CGE_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: '%s' must be a non-negative number", lc->dir, key);
    *out = v->valuedouble;
    return CGE_OK;
}

static void shape_str(char *buf, size_t cap, int n_dim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < n_dim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

enum cge_status cge__tensor(const struct cge_family_load *lc, const char *name, int n_dim,
                            const int64_t *shape, const struct cge_tensor_info **out) {
    *out = NULL;
    const struct cge_tensor_info *t = cge_weights_find(lc->w, name);
    char want[160], got[160];
    if (!t) {
        if (shape) {
            shape_str(want, sizeof want, n_dim, shape);
        } else {
            snprintf(want, sizeof want, "(any shape)");
        }
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: tensor '%s' %s is missing from %s", lc->dir, name, want, cge_weights_path(lc->w));
    }
    if (shape) {
        int ok = t->n_dim == n_dim;
        for (int i = 0; ok && i < n_dim; i++)
            if (shape[i] >= 0 && t->shape[i] != shape[i]) ok = 0;
        if (!ok) {
            shape_str(want, sizeof want, n_dim, shape);
            shape_str(got, sizeof got, t->n_dim, t->shape);
            return cge__err(CGE_ERR_MODEL_LOAD, "model %s: tensor '%s': shape %s, expected %s", lc->dir, name, got, want);
        }
    }
    *out = t;
    return CGE_OK;
}

static enum cge_status to_f32(const struct cge_family_load *lc, const struct cge_tensor_info *t, float *dst) {
    if (t->dtype != CGE_DTYPE_F32 && t->dtype != CGE_DTYPE_F16 && t->dtype != CGE_DTYPE_BF16)
        return cge__err(CGE_ERR_UNSUPPORTED, "model %s: tensor '%s': dtype %s (expected F32, F16 or BF16)", lc->dir, t->name, cge_dtype_str(t->dtype));
    return cge_convert_to_f32(t->data, t->dtype, t->n_elem, dst);
}

enum cge_status cge__tensor_f32(const struct cge_family_load *lc, const char *name, int n_dim,
                                const int64_t *shape, float **out) {
    *out = NULL;
    const struct cge_tensor_info *t;
    enum cge_status st = cge__tensor(lc, name, n_dim, shape, &t);
    if (st) return st;
    float *f = cge__malloc((size_t)(t->n_elem > 0 ? t->n_elem : 1) * sizeof *f);
    if (!f) return cge__err(CGE_ERR_NOMEM, "model %s: tensor '%s'", lc->dir, name);
    st = to_f32(lc, t, f);
    if (st) {
        cge__free(f);
        return st;
    }
    *out = f;
    return CGE_OK;
}

enum cge_status cge__linear_load(const struct cge_family_load *lc, struct cge_linear *l,
                                 int n_parts, const char *const *w_names,
                                 const char *const *b_names, const int64_t *part_out, int64_t n_in) {
    enum cge_status st;
    const struct cge_tensor_info *wt[8] = {0}, *bt[8] = {0};
    if (n_parts < 1 || n_parts > 8) return cge__err(CGE_ERR_INVALID_VALUE, "linear: %d parts", n_parts);
    int64_t n_out = 0;
    int n_bias = 0;
    for (int i = 0; i < n_parts; i++) {
        int64_t sh[2] = {part_out[i], n_in};
        if ((st = cge__tensor(lc, w_names[i], 2, sh, &wt[i]))) return st;
        if (b_names && b_names[i]) {
            int64_t shb[1] = {part_out[i]};
            if ((st = cge__tensor(lc, b_names[i], 1, shb, &bt[i]))) return st;
            n_bias++;
        }
        n_out += part_out[i];
    }
    if (n_bias != 0 && n_bias != n_parts)
        return cge__err(CGE_ERR_MODEL_LOAD, "model %s: tensor '%s': some fused parts have a bias and some do not", lc->dir, w_names[0]);
    /* One part in a convertible dtype goes to cge_linear_init straight from the map. */
    if (n_parts == 1 && (wt[0]->dtype == CGE_DTYPE_F32 || wt[0]->dtype == CGE_DTYPE_F16 || wt[0]->dtype == CGE_DTYPE_BF16)) {
        float *b = NULL;
        if (bt[0]) {
            b = cge__malloc((size_t)n_out * sizeof *b);
            if (!b) return cge__err(CGE_ERR_NOMEM, "model %s: tensor '%s'", lc->dir, b_names[0]);
            if ((st = to_f32(lc, bt[0], b))) {
                cge__free(b);
                return st;
            }
        }
        st = cge_linear_init(l, wt[0]->data, wt[0]->dtype, b, n_out, n_in, lc->p ? lc->p->dtype : CGE_DTYPE_F32);
        cge__free(b);
        if (st) return cge__err(st, "model %s: tensor '%s': %s", lc->dir, w_names[0], cge_errmsg());
        return CGE_OK;
    }
    float *w = cge__malloc((size_t)(n_out * n_in) * sizeof *w);
    float *b = n_bias ? cge__malloc((size_t)n_out * sizeof *b) : NULL;
    if (!w || (n_bias && !b)) {
        cge__free(w);
        cge__free(b);
        return cge__err(CGE_ERR_NOMEM, "model %s: tensor '%s': %lld floats", lc->dir, w_names[0], (long long)(n_out * n_in));
    }
    int64_t row = 0;
    st = CGE_OK;
    for (int i = 0; i < n_parts && !st; i++) {
        st = to_f32(lc, wt[i], w + row * n_in);
        if (!st && b) st = to_f32(lc, bt[i], b + row);
        row += part_out[i];
    }
    if (!st) {
        st = cge_linear_init(l, w, CGE_DTYPE_F32, b, n_out, n_in, lc->p ? lc->p->dtype : CGE_DTYPE_F32);
        if (st) st = cge__err(st, "model %s: tensor '%s': %s", lc->dir, w_names[0], cge_errmsg());
    }
    cge__free(w);
    cge__free(b);
    return st;
}

int cge__rel_bucket(int64_t rel, int n_buckets, int max_distance) {
    /* transformers' _relative_position_bucket (bidirectional), in float32 as torch computes it:
     * half the buckets per sign (+half when the key is after the query), exact below
     * max_exact, log-spaced up to max_distance, clamped to the last bucket. */
    int nb = n_buckets / 2;
    int ret = rel > 0 ? nb : 0;
    int64_t n = rel < 0 ? -rel : rel;
    int max_exact = nb / 2;
    if (n < max_exact) return ret + (int)n;
    float lg = logf((float)n / (float)max_exact) / (float)log((double)max_distance / max_exact);
    float v = lg * (float)(nb - max_exact);
    int64_t large = max_exact + (int64_t)v;
    if (large > nb - 1) large = nb - 1;
    return ret + (int)large;
}

/* ==== load ========================================================================================= */

struct cge_model_params cge_model_default_params(void) {
    struct cge_model_params p;
    memset(&p, 0, sizeof p);
    p.dtype = CGE_DTYPE_F32;
    p.pooling = CGE_POOL_NONE;
    return p;
}

void cge_model_free(struct cge_model *m) {
    if (!m) return;
    if (m->family && m->impl) m->family->free(m->impl);
    cge_backend_release(m->be);
    cge__st_head_deinit(&m->head);
    cge_tokenizer_free(m->tok);
    cge_weights_free(m->w);
    cge__free(m->dir);
    cge__free(m);
}

/* A folder of the HF cache (models--org--name) resolves to snapshots/<refs/main>. */
static enum cge_status resolve_dir(const char *dir, char *buf, size_t cap) {
    char p[4096];
    enum cge_status st = cge__path_join(p, sizeof p, dir, "config.json");
    if (st) return st;
    if (cge__file_exists(p)) {
        snprintf(buf, cap, "%s", dir);
        return CGE_OK;
    }
    st = cge__path_join(p, sizeof p, dir, "refs/main");
    if (st) return st;
    char *ref = NULL;
    size_t n = 0;
    if (cge__file_exists(p) && cge__read_file(p, 256, &ref, &n) == CGE_OK) {
        while (n > 0 && (ref[n - 1] == '\n' || ref[n - 1] == '\r' || ref[n - 1] == ' ')) ref[--n] = 0;
        int bad = n == 0 || strchr(ref, '/') != NULL;
        if (!bad) {
            int k = snprintf(buf, cap, "%s/snapshots/%s", dir, ref);
            cge__free(ref);
            if (k < 0 || (size_t)k >= cap) return cge__err(CGE_ERR_INVALID_VALUE, "path too long: %s", dir);
            return CGE_OK;
        }
        cge__free(ref);
    }
    snprintf(buf, cap, "%s", dir);
    return CGE_OK;
}

static int has_file(const char *dir, const char *name) {
    char p[4096];
    if (cge__path_join(p, sizeof p, dir, name)) return 0;
    return cge__file_exists(p);
}

/* sentence-transformers' rule: sentence_bert_config max_seq_length, else
 * min(config.max_position_embeddings, tokenizer_config.model_max_length). */
static int64_t default_max_len(const struct cge_model *m, const cJSON *config) {
    if (m->head.max_seq_len > 0) return m->head.max_seq_len;
    int64_t ml = 0;
    const cJSON *mp = cJSON_GetObjectItemCaseSensitive(config, "max_position_embeddings");
    if (cJSON_IsNumber(mp) && mp->valuedouble >= 1 && mp->valuedouble < 1e9) ml = (int64_t)mp->valuedouble;
    char p[4096];
    cJSON *tc = NULL;
    if (!cge__path_join(p, sizeof p, m->dir, "tokenizer_config.json") && cge__file_exists(p) &&
        cge__json_read_file(p, &tc) == CGE_OK) {
        const cJSON *mm = cJSON_GetObjectItemCaseSensitive(tc, "model_max_length");
        /* Tokenizers without a limit store int(1e30): ignore anything that large. */
        if (cJSON_IsNumber(mm) && mm->valuedouble >= 1 && mm->valuedouble < 1e9) {
            int64_t v = (int64_t)mm->valuedouble;
            ml = ml ? (v < ml ? v : ml) : v;
        }
        cJSON_Delete(tc);
    }
    cge__err_clear();
    return ml;
}

enum cge_status cge_model_load(const char *dir_in, const struct cge_model_params *pp,
                               struct cge_model **out) {
    *out = NULL;
    struct cge_model_params p = pp ? *pp : cge_model_default_params();
    if (p.dtype != CGE_DTYPE_F32 && p.dtype != CGE_DTYPE_BF16 && p.dtype != CGE_DTYPE_I8)
        return cge__err(CGE_ERR_INVALID_VALUE, "model %s: weight dtype %s not supported (f32, bf16, int8)", dir_in, cge_dtype_str(p.dtype));
    if (p.max_seq_len < 0) return cge__err(CGE_ERR_INVALID_VALUE, "model %s: max_seq_len %lld", dir_in, (long long)p.max_seq_len);
    char dir[4096], path[4096];
    enum cge_status st = resolve_dir(dir_in, dir, sizeof dir);
    if (st) return st;
    if ((st = cge__path_join(path, sizeof path, dir, "config.json"))) return st;
    if (!cge__file_exists(path))
        return cge__err(CGE_ERR_MODEL_NOT_FOUND, "model %s: no config.json (not a model folder)", dir_in);

    struct cge_model *m = cge__calloc(1, sizeof *m);
    if (!m) return cge__err(CGE_ERR_NOMEM, "model %s", dir_in);
    m->p = p;
    m->dir = cge__strdup(dir);
    cJSON *config = NULL;
    struct cge_family_load lc;
    memset(&lc, 0, sizeof lc);
    if (!m->dir) {
        st = cge__err(CGE_ERR_NOMEM, "model %s", dir_in);
        goto fail;
    }
    if ((st = cge__json_read_file(path, &config))) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json: %s", dir, cge_errmsg());
        goto fail;
    }
    if (!cJSON_IsObject(config)) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: config.json is not a JSON object", dir);
        goto fail;
    }
    for (int i = 0; cge__families[i]; i++)
        if (cge__families[i]->matches(config)) {
            m->family = cge__families[i];
            break;
        }
    if (!m->family) {
        const char *mt = cge__cfg_str(config, "model_type");
        st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: config.json model_type '%s' is not a supported family", dir, mt ? mt : "(none)");
        goto fail;
    }
    if ((st = cge_weights_open(dir, &m->w))) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: weights: %s", dir, cge_errmsg());
        goto fail;
    }
    /* The backend: an unusable device falls back to the CPU (logged), a bad name fails. */
    if ((st = cge_backend_open_or_cpu(p.backend, &m->be))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        st = cge__err(st, "model %s: %s", dir, msg);
        goto fail;
    }
    m->p.backend = m->be->name; /* the caller's string is not kept */
    lc.dir = dir;
    lc.config = config;
    lc.w = m->w;
    lc.p = &m->p;
    lc.pad_id = -1;
    lc.be = m->be;
    const struct cge_family_load lc0 = lc;
    if ((st = m->family->load(&lc, &m->impl)) && m->be != cge_backend_cpu()) {
        /* A device that fails at load (out of memory, a lost device): the CPU, logged. A
         * model that is simply broken fails again below, with the CPU's message. */
        char why[512];
        snprintf(why, sizeof why, "%s", cge_errmsg());
        cge__log(CGE_LOG_WARN, "model %s: loading on %s failed, loading on the cpu: %s", dir,
                 m->be->name, why);
        m->impl = NULL;
        cge_backend_release(m->be);
        m->be = cge_backend_cpu();
        m->p.backend = m->be->name;
        lc = lc0;
        lc.be = m->be;
        st = m->family->load(&lc, &m->impl);
    }
    if (st) {
        m->impl = NULL;
        if (st != CGE_ERR_NOMEM && st != CGE_ERR_UNSUPPORTED) st = CGE_ERR_MODEL_LOAD;
        goto fail;
    }
    m->hidden = lc.hidden;
    m->max_positions = lc.max_positions;
    m->pad_id = lc.pad_id;
    m->vocab = lc.vocab_size;
    m->modalities = lc.modalities;
    m->raw_dim = m->family->out_dim ? m->family->out_dim(m->impl) : 0;
    if (m->raw_dim <= 0) m->raw_dim = m->hidden;
    m->instr_t5 = !strcmp(m->family->name, "t5");
    m->instr_e5 = !strcmp(m->family->name, "mistral");

    /* Tokenizer: tokenizer.json, else a SentencePiece model (not loaded for families that take
     * no text, such as Whisper, whose folders ship one for the decoder). */
    if (m->family->forward_text && (has_file(dir, "tokenizer.json") || has_file(dir, "tokenizer.model") || has_file(dir, "spiece.model") ||
        has_file(dir, "sentencepiece.bpe.model"))) {
        if ((st = cge_tokenizer_load(dir, &m->tok))) {
            st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: tokenizer: %s", dir, cge_errmsg());
            goto fail;
        }
        int64_t tv = cge_tokenizer_vocab_size(m->tok);
        if (m->vocab > 0 && tv > m->vocab) {
            st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: the tokenizer has %lld ids but tensor '%s' has only %lld rows", dir, (long long)tv, lc.vocab_tensor ? lc.vocab_tensor : "(token embeddings)", (long long)m->vocab);
            goto fail;
        }
    }

    /* Heads. */
    if ((st = cge__st_head_load(dir, m->hidden, m->p.dtype, &m->head))) {
        if (st != CGE_ERR_NOMEM && st != CGE_ERR_UNSUPPORTED) st = CGE_ERR_MODEL_LOAD;
        goto fail;
    }
    if (p.pooling != CGE_POOL_NONE) {
        m->n_pool = 1;
        m->pool[0] = p.pooling;
    } else if (m->head.present && m->head.n_pool > 0) {
        m->n_pool = m->head.n_pool;
        memcpy(m->pool, m->head.pool, sizeof m->pool);
    } else {
        m->n_pool = 1;
        m->pool[0] = lc.default_pooling != CGE_POOL_NONE ? lc.default_pooling : CGE_POOL_MEAN;
    }
    m->normalize = m->head.present ? m->head.normalize : lc.default_normalize;
    m->pooled_dim = 0;
    for (int i = 0; i < m->n_pool; i++) {
        int own = m->pool[i] == CGE_POOL_PROJECTION || m->pool[i] == CGE_POOL_AUDIO_MEAN;
        if (m->pool[i] == CGE_POOL_PROJECTION && !m->family->pool_text) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "model %s: family %s has no projection pooling", dir, m->family->name);
            goto fail;
        }
        m->pooled_dim += own ? m->raw_dim : m->hidden;
    }
    if (m->head.n_dense > 0 && m->head.dense[0].lin.n_in != m->pooled_dim) {
        st = cge__err(CGE_ERR_MODEL_LOAD, "model %s: Dense in_features %lld, but pooling gives %lld values", dir, (long long)m->head.dense[0].lin.n_in, (long long)m->pooled_dim);
        goto fail;
    }
    m->dim = cge__st_head_out_dim(&m->head, m->pooled_dim);

    m->max_seq_len = default_max_len(m, config);
    if (p.max_seq_len > 0) m->max_seq_len = p.max_seq_len;
    if (m->max_positions > 0 && (m->max_seq_len == 0 || m->max_seq_len > m->max_positions))
        m->max_seq_len = m->max_positions;

    cJSON_Delete(config);
    *out = m;
    return CGE_OK;
fail:
    cJSON_Delete(config);
    cge_model_free(m);
    return st;
}

int cge_model_dim(const struct cge_model *m) {
    return (int)m->dim;
}
unsigned cge_model_modalities(const struct cge_model *m) {
    return m->modalities;
}
const char *cge_model_family(const struct cge_model *m) {
    return m->family->name;
}
int64_t cge_model_max_seq_len(const struct cge_model *m) {
    return m->max_seq_len;
}
const struct cge_family *cge__model_family(const struct cge_model *m) {
    return m->family;
}
const void *cge__model_impl(const struct cge_model *m) {
    return m->impl;
}
const struct cge_tokenizer *cge__model_tokenizer(const struct cge_model *m) {
    return m->tok;
}

const char *cge__model_backend(const struct cge_model *m) {
    /* Mistral (issue 20) does not go through the backend yet: its layers are on the CPU. */
    if (!m->be || !strcmp(m->family->name, "mistral")) return "cpu";
    return m->be->name;
}

/* ==== embed ======================================================================================== */

/* One text input on its way through the pipeline. */
struct item {
    int64_t idx;       /* position in the caller's array */
    int32_t *ids;      /* owned when own_ids */
    int own_ids;
    int64_t n;
    int64_t skip;      /* leading instruction tokens left out of the mean (INSTRUCTOR) */
};

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *n) {
    while (*n > 0 && is_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1])) (*n)--;
}

/* Unicode lower-casing (sentence-transformers do_lower_case). */
static enum cge_status lower_utf8(const char *s, size_t n, char **out, size_t *out_n) {
    utf8proc_uint8_t *buf = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &buf, UTF8PROC_CASEFOLD);
    if (r < 0) return cge__err(CGE_ERR_TOKENIZE, "input is not valid UTF-8");
    char *c = cge__malloc((size_t)r + 1);
    if (!c) {
        free(buf);
        return cge__err(CGE_ERR_NOMEM, "lower-casing");
    }
    memcpy(c, buf, (size_t)r + 1);
    free(buf);
    *out = c;
    *out_n = (size_t)r;
    return CGE_OK;
}

static enum cge_status encode_text(const struct cge_model *m, const char *s, size_t n, int64_t max_len,
                                   int32_t **ids, int64_t *n_ids, int *truncated) {
    char *low = NULL;
    size_t low_n = 0;
    enum cge_status st;
    if (m->head.do_lower_case) {
        if ((st = lower_utf8(s, n, &low, &low_n))) return st;
        s = low;
        n = low_n;
    }
    st = cge_tokenizer_encode(m->tok, s, n, 1, max_len, ids, n_ids, truncated);
    cge__free(low);
    return st;
}

/* Tokenizes input `in` into it (text path). */
static enum cge_status prepare_text(const struct cge_model *m, const struct cge_input *in, struct item *it,
                                    struct cge_embed_info *info) {
    enum cge_status st;
    if (!m->tok) return cge__err(CGE_ERR_TOKENIZE, "model %s has no tokenizer files: give input_ids", m->dir);
    if (!m->family->forward_text) return cge__err(CGE_ERR_UNSUPPORTED_MODALITY, "model %s (%s) takes no text", m->dir, m->family->name);
    const char *text = in->text;
    size_t tn = in->text_len;
    char *joined = NULL;
    int64_t skip = 0;
    if (in->instruction) {
        const char *ins = in->instruction;
        size_t in_n = strlen(ins);
        struct cge_buf b;
        cge__buf_init(&b, (size_t)1 << 30);
        if (m->instr_e5) {
            st = cge__buf_printf(&b, "Instruct: %s\nQuery: ", ins);
            if (!st) st = cge__buf_append(&b, text, tn);
        } else if (m->instr_t5) {
            /* INSTRUCTOR: instruction.strip() + text.strip(); the instruction's tokens (with its
             * </s>, minus one) are left out of the mean. */
            trim(&ins, &in_n);
            trim(&text, &tn);
            int32_t *iid = NULL;
            int64_t ni = 0;
            st = encode_text(m, ins, in_n, m->max_seq_len, &iid, &ni, NULL);
            cge__free(iid);
            if (!st) {
                skip = ni - 1 > 0 ? ni - 1 : 0;
                st = cge__buf_append(&b, ins, in_n);
            }
            if (!st) st = cge__buf_append(&b, text, tn);
        } else {
            /* A prefix (BGE's query instruction, a sentence-transformers prompt). A Pooling
             * config with include_prompt false leaves its tokens out of the mean, counted as
             * sentence-transformers does: the prompt's tokens with special tokens, minus one. */
            st = CGE_OK;
            if (!m->head.include_prompt) {
                int32_t *iid = NULL;
                int64_t ni = 0;
                st = encode_text(m, ins, in_n, m->max_seq_len, &iid, &ni, NULL);
                cge__free(iid);
                if (!st) skip = ni - 1 > 0 ? ni - 1 : 0;
            }
            if (!st) st = cge__buf_append(&b, ins, in_n);
            if (!st) st = cge__buf_append(&b, text, tn);
        }
        if (st) {
            cge__buf_free(&b);
            return st;
        }
        joined = b.data;
        text = b.data ? b.data : "";
        tn = b.len;
    }
    int trunc = 0;
    int64_t limit = m->p.no_truncate ? 0 : m->max_seq_len;
    st = encode_text(m, text, tn, limit, &it->ids, &it->n, &trunc);
    cge__free(joined);
    if (st) return st;
    it->own_ids = 1;
    it->skip = skip;
    if (m->p.no_truncate && m->max_seq_len > 0 && it->n > m->max_seq_len)
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "input has %lld tokens, the model takes at most %lld (--no-truncate)", (long long)it->n, (long long)m->max_seq_len);
    if (info) info->truncated = trunc;
    if (it->n == 0) return cge__err(CGE_ERR_EMPTY_INPUT, "input gives no tokens");
    return CGE_OK;
}

static enum cge_status prepare_ids(const struct cge_model *m, const struct cge_input *in, struct item *it) {
    if (!m->family->forward_text) return cge__err(CGE_ERR_UNSUPPORTED_MODALITY, "model %s (%s) takes no text", m->dir, m->family->name);
    if (in->n_ids <= 0) return cge__err(CGE_ERR_EMPTY_INPUT, "input_ids is empty");
    if (m->max_seq_len > 0 && in->n_ids > m->max_seq_len)
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "input_ids has %lld ids, the model takes at most %lld", (long long)in->n_ids, (long long)m->max_seq_len);
    for (int64_t i = 0; i < in->n_ids; i++)
        if (in->ids[i] < 0 || (m->vocab > 0 && in->ids[i] >= m->vocab))
            return cge__err(CGE_ERR_INVALID_VALUE, "input_ids[%lld] = %d is outside the vocabulary [0, %lld)", (long long)i, in->ids[i], (long long)m->vocab);
    it->ids = (int32_t *)in->ids;
    it->own_ids = 0;
    it->n = in->n_ids;
    return CGE_OK;
}

static int cmp_len_desc(const void *a, const void *b) {
    const struct item *x = *(const struct item *const *)a, *y = *(const struct item *const *)b;
    if (x->n != y->n) return x->n > y->n ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Dense + Normalize on rows of the pooled width, into out rows of m->dim. */
static enum cge_status apply_head(const struct cge_model *m, const float *pooled, int64_t n, float *out) {
    enum cge_status st = cge__dense_apply(&m->head, pooled, n, m->pooled_dim, out);
    if (st) return st;
    if (m->normalize) cge_l2_normalize(out, n, m->dim, 1e-12f);
    return CGE_OK;
}

static void fail_info(struct cge_embed_info *info, enum cge_status st) {
    if (!info) return;
    info->status = st;
    snprintf(info->errmsg, sizeof info->errmsg, "%s", cge_errmsg()[0] ? cge_errmsg() : cge_status_str(st));
}

/* Runs one padded batch of text items and writes their rows of out. */
static enum cge_status run_batch(const struct cge_model *m, struct item **items, int64_t B, float *out) {
    int64_t L = 0;
    for (int64_t b = 0; b < B; b++)
        if (items[b]->n > L) L = items[b]->n;
    const int64_t H = m->hidden;
    int32_t *ids = cge__malloc((size_t)(B * L) * sizeof *ids);
    int64_t *len = cge__malloc((size_t)B * 2 * sizeof *len);
    float *hidden = cge__malloc_aligned((size_t)(B * L * H) * sizeof *hidden);
    float *pooled = cge__malloc((size_t)(B * m->pooled_dim) * sizeof *pooled);
    float *tmp = cge__malloc((size_t)(B * m->raw_dim) * sizeof *tmp);
    float *res = cge__malloc((size_t)(B * m->dim) * sizeof *res);
    enum cge_status st = CGE_OK;
    if (!ids || !len || !hidden || !pooled || !tmp || !res) {
        st = cge__err(CGE_ERR_NOMEM, "model %s: batch of %lld × %lld tokens", m->dir, (long long)B, (long long)L);
        goto done;
    }
    int64_t *skip = len + B;
    int32_t pad = m->pad_id >= 0 ? m->pad_id : 0;
    for (int64_t b = 0; b < B; b++) {
        memcpy(ids + b * L, items[b]->ids, (size_t)items[b]->n * sizeof *ids);
        for (int64_t t = items[b]->n; t < L; t++) ids[b * L + t] = pad;
        len[b] = items[b]->n;
        skip[b] = items[b]->skip;
    }
    if ((st = m->family->forward_text(m->impl, ids, len, B, L, hidden))) goto done;
    /* Pooling modes, concatenated per row. */
    int64_t off = 0;
    for (int k = 0; k < m->n_pool; k++) {
        enum cge_pooling pm = m->pool[k];
        int64_t w = m->hidden;
        if (pm == CGE_POOL_PROJECTION) {
            w = m->raw_dim;
            st = m->family->pool_text(m->impl, hidden, ids, len, B, L, tmp);
        } else {
            int any_skip = 0;
            for (int64_t b = 0; b < B; b++) any_skip |= skip[b] > 0;
            /* An instruction turns the INSTRUCTOR mean into the mean without its tokens. */
            if (pm == CGE_POOL_MEAN && any_skip) pm = CGE_POOL_MEAN_NO_INSTR;
            st = cge__pool(pm, hidden, B, L, H, len, skip, tmp);
        }
        if (st) goto done;
        for (int64_t b = 0; b < B; b++) memcpy(pooled + b * m->pooled_dim + off, tmp + b * w, (size_t)w * sizeof *tmp);
        off += w;
    }
    if ((st = apply_head(m, pooled, B, res))) goto done;
    for (int64_t b = 0; b < B; b++) memcpy(out + items[b]->idx * m->dim, res + b * m->dim, (size_t)m->dim * sizeof *res);
done:
    cge__free(ids);
    cge__free(len);
    cge__free_aligned(hidden);
    cge__free(pooled);
    cge__free(tmp);
    cge__free(res);
    return st;
}

const char *cge__media_label(const struct cge__media *m, char *buf, size_t cap) {
    if (m->path) return m->path;
    snprintf(buf, cap, "<%zu bytes>", m->len);
    return buf;
}

unsigned cge_input_modality(const struct cge_input *in) {
    if (!in) return 0;
    int img = in->image_path != NULL || in->image_data != NULL;
    int aud = in->audio_path != NULL || in->audio_data != NULL;
    int kinds = (in->text != NULL) + (in->ids != NULL) + img + aud;
    if (kinds != 1 || (in->image_path && in->image_data) || (in->audio_path && in->audio_data))
        return 0;
    if (img) return CGE_MOD_IMAGE;
    if (aud) return CGE_MOD_AUDIO;
    return in->is_code && in->text ? CGE_MOD_CODE : CGE_MOD_TEXT;
}

int64_t cge_model_tokenize(const struct cge_model *m, const char *text, size_t len, int32_t *ids,
                           int64_t cap) {
    if (!m || (!text && len) || cap < 0 || (cap > 0 && !ids)) {
        cge__err(CGE_ERR_INVALID_VALUE, "cge_model_tokenize: bad arguments");
        return -1;
    }
    if (!m->tok) {
        cge__err(CGE_ERR_TOKENIZE, "model %s has no tokenizer files", m->dir);
        return -1;
    }
    int32_t *tmp = NULL;
    int64_t n = 0;
    enum cge_status st =
        encode_text(m, text ? text : "", len, m->p.no_truncate ? 0 : m->max_seq_len, &tmp, &n, NULL);
    if (st) return -1;
    if (n <= cap) memcpy(ids, tmp, (size_t)n * sizeof *ids);
    cge__free(tmp);
    return n;
}

static enum cge_status embed_media(const struct cge_model *m, const struct cge_input *in, float *out,
                                   struct cge_embed_info *info) {
    int image = in->image_path != NULL || in->image_data != NULL;
    enum cge_status (*fn)(const void *, struct cge__media *, float *) = image ? m->family->embed_image : m->family->embed_audio;
    if (!fn)
        return cge__err(CGE_ERR_UNSUPPORTED_MODALITY, "model %s (%s) takes no %s", m->dir, m->family->name, image ? "images" : "audio");
    if (m->raw_dim != m->pooled_dim)
        return cge__err(CGE_ERR_UNSUPPORTED, "model %s: its %s embedding has %lld values, the head expects %lld", m->dir, image ? "image" : "audio", (long long)m->raw_dim, (long long)m->pooled_dim);
    struct cge__media src = {
        .path = image ? in->image_path : in->audio_path,
        .data = image ? in->image_data : in->audio_data,
        .len = image ? in->image_len : in->audio_len,
        .no_truncate = m->p.no_truncate,
    };
    float *raw = cge__malloc((size_t)m->raw_dim * sizeof *raw);
    if (!raw) return cge__err(CGE_ERR_NOMEM, "model %s", m->dir);
    enum cge_status st = fn(m->impl, &src, raw);
    if (!st) st = apply_head(m, raw, 1, out);
    if (!st && info) {
        info->truncated = src.truncated;
        info->n_tokens = src.n_frames;
    }
    cge__free(raw);
    return st;
}

enum cge_status cge_model_embed(const struct cge_model *m, const struct cge_input *in, int64_t n,
                                float *out, struct cge_embed_info *info) {
    if (!m || (n > 0 && (!in || !out)) || n < 0) return cge__err(CGE_ERR_INVALID_VALUE, "cge_model_embed: bad arguments");
    if (n == 0) return CGE_OK;
    struct item *items = cge__calloc((size_t)n, sizeof *items);
    struct item **order = cge__calloc((size_t)n, sizeof *order);
    if (!items || !order) {
        cge__free(items);
        cge__free(order);
        return cge__err(CGE_ERR_NOMEM, "cge_model_embed: %lld inputs", (long long)n);
    }
    enum cge_status first = CGE_OK;
    int64_t n_text = 0;
    for (int64_t i = 0; i < n; i++) {
        struct cge_embed_info *fi = info ? &info[i] : NULL;
        if (fi) memset(fi, 0, sizeof *fi);
        items[i].idx = i;
        const struct cge_input *x = &in[i];
        unsigned mod = cge_input_modality(x);
        enum cge_status st;
        if (!mod) {
            st = cge__err(CGE_ERR_INVALID_VALUE, "input %lld: exactly one of text, ids, image, audio must be set", (long long)i);
        } else if (mod & (CGE_MOD_IMAGE | CGE_MOD_AUDIO)) {
            st = embed_media(m, x, out + i * m->dim, fi);
        } else {
            st = x->text ? prepare_text(m, x, &items[i], fi) : prepare_ids(m, x, &items[i]);
            if (!st) {
                order[n_text++] = &items[i];
                if (fi) fi->n_tokens = items[i].n;
            }
        }
        if (st) {
            fail_info(fi, st);
            if (!first) first = st;
            memset(out + i * m->dim, 0, (size_t)m->dim * sizeof *out);
        }
    }
    /* Longest first, so each batch pads little. */
    qsort(order, (size_t)n_text, sizeof *order, cmp_len_desc);
    for (int64_t s = 0; s < n_text;) {
        int64_t B = 1, L = order[s]->n;
        while (s + B < n_text && B < MAX_BATCH_ROWS && (B + 1) * L <= MAX_BATCH_TOKENS) B++;
        enum cge_status st = run_batch(m, order + s, B, out);
        if (st) {
            for (int64_t b = 0; b < B; b++) {
                int64_t i = order[s + b]->idx;
                fail_info(info ? &info[i] : NULL, st);
                memset(out + i * m->dim, 0, (size_t)m->dim * sizeof *out);
            }
            if (!first) first = st;
        }
        s += B;
    }
    for (int64_t i = 0; i < n; i++)
        if (items[i].own_ids) cge__free(items[i].ids);
    cge__free(items);
    cge__free(order);
    if (info) return CGE_OK;
    return first;
}
