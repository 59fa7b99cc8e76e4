/*
 * heads.c: pooling, sentence-transformers Dense and Normalize, and the reader of a model
 * folder's sentence-transformers files.
 *
 * Design: the heads follow sentence-transformers' documented semantics exactly (mean =
 * Σ h·mask / max(Σ mask, 1e-9), max over real tokens, CLS = row 0, last = row len-1), with sums
 * accumulated in double so a batch row and the same text alone agree to float rounding.
 * modules.json decides which heads apply; module types are matched by their last dotted
 * component so INSTRUCTOR's `InstructorEmbedding.INSTRUCTOR_Transformer` and the like load too.
 */
#include "models/heads.h"

#include "core/core.h"
#include "io/weights.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* ==== pooling ================================================================================== */

enum cge_status cge__pool(enum cge_pooling p, const float *hidden, int64_t B, int64_t L, int64_t H,
                          const int64_t *len, const int64_t *skip, float *out) {
    for (int64_t b = 0; b < B; b++) {
        const float *h = hidden + b * L * H;
        float *o = out + b * H;
        int64_t n = len ? len[b] : L;
        if (n < 0 || n > L) return cge__err(CGE_ERR_INVALID_VALUE, "pooling: length %lld of row %lld outside [0, %lld]", (long long)n, (long long)b, (long long)L);
        switch (p) {
        case CGE_POOL_CLS:
            if (n == 0) {
                memset(o, 0, (size_t)H * sizeof *o);
            } else {
                memcpy(o, h, (size_t)H * sizeof *o);
            }
            break;
        case CGE_POOL_LAST:
            if (n == 0) {
                memset(o, 0, (size_t)H * sizeof *o);
            } else {
                memcpy(o, h + (n - 1) * H, (size_t)H * sizeof *o);
            }
            break;
        case CGE_POOL_MEAN:
        case CGE_POOL_MEAN_SQRT_LEN:
        case CGE_POOL_MEAN_NO_INSTR: {
            int64_t t0 = 0;
            if (p == CGE_POOL_MEAN_NO_INSTR && skip) t0 = skip[b] < 0 ? 0 : skip[b];
            if (t0 > n) t0 = n;
            double cnt = (double)(n - t0);
            double div = p == CGE_POOL_MEAN_SQRT_LEN ? sqrt(cnt > 1e-9 ? cnt : 1e-9)
                                                     : (cnt > 1e-9 ? cnt : 1e-9);
            for (int64_t j = 0; j < H; j++) {
                double s = 0;
                for (int64_t t = t0; t < n; t++) s += h[t * H + j];
                o[j] = (float)(s / div);
            }
            break;
        }
        case CGE_POOL_MAX:
            for (int64_t j = 0; j < H; j++) {
                /* sentence-transformers sets padding to -1e9 before the max; an empty row
                 * therefore gives -1e9. */
                float m = n > 0 ? h[j] : -1e9f;
                for (int64_t t = 1; t < n; t++)
                    if (h[t * H + j] > m) m = h[t * H + j];
                o[j] = m;
            }
            break;
        default:
            return cge__err(CGE_ERR_UNSUPPORTED, "pooling '%s' cannot be computed from hidden states",
                            cge_pooling_str(p));
        }
    }
    return CGE_OK;
}

/* ==== sentence-transformers files ================================================================ */

static const char *last_component(const char *s) {
    const char *d = strrchr(s, '.');
    return d ? d + 1 : s;
}

static int json_bool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return def;
}

static enum cge_status load_pooling(const char *dir, const char *sub, int64_t hidden,
                                    struct cge_st_head *head) {
    char path[4096], cfgp[4096];
    enum cge_status st = cge__path_join(path, sizeof path, dir, sub);
    if (st) return st;
    st = cge__path_join(cfgp, sizeof cfgp, path, "config.json");
    if (st) return st;
    cJSON *c = NULL;
    st = cge__json_read_file(cfgp, &c);
    if (st) return cge__err(CGE_ERR_MODEL_LOAD, "%s: cannot read the Pooling config: %s", cfgp, cge_errmsg());
    const cJSON *wd = cJSON_GetObjectItemCaseSensitive(c, "word_embedding_dimension");
    if (cJSON_IsNumber(wd) && (int64_t)wd->valuedouble != hidden) {
        long long got = (long long)wd->valuedouble;
        cJSON_Delete(c);
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: word_embedding_dimension %lld, but the model's hidden size is %lld", cfgp, got, (long long)hidden);
    }
    static const struct {
        const char *key;
        enum cge_pooling p;
    } modes[] = {
        {"pooling_mode_cls_token", CGE_POOL_CLS},
        {"pooling_mode_mean_tokens", CGE_POOL_MEAN},
        {"pooling_mode_max_tokens", CGE_POOL_MAX},
        {"pooling_mode_mean_sqrt_len_tokens", CGE_POOL_MEAN_SQRT_LEN},
        {"pooling_mode_weightedmean_tokens", CGE_POOL_NONE},
        {"pooling_mode_lasttoken", CGE_POOL_LAST},
    };
    head->n_pool = 0;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (!json_bool(c, modes[i].key, 0)) continue;
        if (modes[i].p == CGE_POOL_NONE) {
            cJSON_Delete(c);
            return cge__err(CGE_ERR_UNSUPPORTED, "%s: pooling_mode_weightedmean_tokens is not supported", cfgp);
        }
        head->pool[head->n_pool++] = modes[i].p;
    }
    /* Older configs name the mode in one string field. */
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(c, "pooling_mode");
    if (head->n_pool == 0 && cJSON_IsString(pm)) {
        const char *s = pm->valuestring;
        if (!strcmp(s, "cls")) head->pool[head->n_pool++] = CGE_POOL_CLS;
        else if (!strcmp(s, "mean")) head->pool[head->n_pool++] = CGE_POOL_MEAN;
        else if (!strcmp(s, "max")) head->pool[head->n_pool++] = CGE_POOL_MAX;
        else if (!strcmp(s, "lasttoken")) head->pool[head->n_pool++] = CGE_POOL_LAST;
    }
    head->include_prompt = json_bool(c, "include_prompt", 1);
    cJSON_Delete(c);
    if (head->n_pool == 0)
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: no pooling mode is set", cfgp);
    return CGE_OK;
}

static enum cge_status load_dense(const char *dir, const char *sub, int64_t in_dim,
                                  enum cge_dtype dtype, struct cge_dense *d, int64_t *out_dim) {
    char path[4096], cfgp[4096];
    enum cge_status st = cge__path_join(path, sizeof path, dir, sub);
    if (st) return st;
    st = cge__path_join(cfgp, sizeof cfgp, path, "config.json");
    if (st) return st;
    cJSON *c = NULL;
    st = cge__json_read_file(cfgp, &c);
    if (st) return cge__err(CGE_ERR_MODEL_LOAD, "%s: cannot read the Dense config: %s", cfgp, cge_errmsg());
    const cJSON *jin = cJSON_GetObjectItemCaseSensitive(c, "in_features");
    const cJSON *jout = cJSON_GetObjectItemCaseSensitive(c, "out_features");
    const cJSON *jact = cJSON_GetObjectItemCaseSensitive(c, "activation_function");
    int bias = json_bool(c, "bias", 1);
    if (!cJSON_IsNumber(jin) || !cJSON_IsNumber(jout) || jin->valuedouble < 1 ||
        jout->valuedouble < 1 || jout->valuedouble > 1e6 || jin->valuedouble > 1e6) {
        cJSON_Delete(c);
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: in_features/out_features missing or invalid", cfgp);
    }
    int64_t n_in = (int64_t)jin->valuedouble, n_out = (int64_t)jout->valuedouble;
    if (n_in != in_dim) {
        cJSON_Delete(c);
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: in_features %lld, but its input has %lld values", cfgp, (long long)n_in, (long long)in_dim);
    }
    d->act = CGE_ACT_TANH; /* sentence-transformers' Dense default */
    if (cJSON_IsString(jact)) {
        const unsigned ok = CGE__ACT_BIT(CGE_ACT_IDENTITY) | CGE__ACT_BIT(CGE_ACT_TANH) |
                            CGE__ACT_BIT(CGE_ACT_RELU) | CGE__ACT_BIT(CGE_ACT_GELU) |
                            CGE__ACT_BIT(CGE_ACT_SIGMOID);
        if (cge__act_parse(jact->valuestring, &d->act) || !(ok & CGE__ACT_BIT(d->act))) {
            st = cge__err(CGE_ERR_UNSUPPORTED, "%s: activation_function '%s' is not supported", cfgp, jact->valuestring);
            cJSON_Delete(c);
            return st;
        }
    }
    cJSON_Delete(c);

    struct cge_weights *w = NULL;
    st = cge_weights_open(path, &w);
    if (st) return cge__err(CGE_ERR_MODEL_LOAD, "%s: cannot open the Dense weights: %s", path, cge_errmsg());
    float *wt = NULL, *bv = NULL;
    int64_t shw[2] = {n_out, n_in}, shb[1] = {n_out};
    st = cge_weights_get_f32(w, "linear.weight", 2, shw, &wt);
    if (st) st = cge__err(CGE_ERR_MODEL_LOAD, "Dense %s: %s", path, cge_errmsg());
    if (!st && bias) {
        st = cge_weights_get_f32(w, "linear.bias", 1, shb, &bv);
        if (st) st = cge__err(CGE_ERR_MODEL_LOAD, "Dense %s: %s", path, cge_errmsg());
    }
    if (!st) st = cge_linear_init(&d->lin, wt, CGE_DTYPE_F32, bv, n_out, n_in, dtype);
    cge__free(wt);
    cge__free(bv);
    cge_weights_free(w);
    if (st) return st;
    *out_dim = n_out;
    return CGE_OK;
}

enum cge_status cge__st_head_load(const char *dir, int64_t hidden, enum cge_dtype dtype,
                                  struct cge_st_head *head) {
    memset(head, 0, sizeof *head);
    head->include_prompt = 1;
    char path[4096];
    enum cge_status st;

    st = cge__path_join(path, sizeof path, dir, "sentence_bert_config.json");
    if (st) return st;
    if (cge__file_exists(path)) {
        cJSON *c = NULL;
        st = cge__json_read_file(path, &c);
        if (st) return cge__err(CGE_ERR_MODEL_LOAD, "%s: %s", path, cge_errmsg());
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "max_seq_length");
        if (cJSON_IsNumber(m)) {
            if (m->valuedouble < 1 || m->valuedouble > 1e7) {
                cJSON_Delete(c);
                return cge__err(CGE_ERR_MODEL_LOAD, "%s: max_seq_length %g out of range", path, m->valuedouble);
            }
            head->max_seq_len = (int64_t)m->valuedouble;
        }
        head->do_lower_case = json_bool(c, "do_lower_case", 0);
        cJSON_Delete(c);
    }

    st = cge__path_join(path, sizeof path, dir, "modules.json");
    if (st) return st;
    if (!cge__file_exists(path)) return CGE_OK;
    cJSON *mods = NULL;
    st = cge__json_read_file(path, &mods);
    if (st) return cge__err(CGE_ERR_MODEL_LOAD, "%s: %s", path, cge_errmsg());
    if (!cJSON_IsArray(mods)) {
        cJSON_Delete(mods);
        return cge__err(CGE_ERR_MODEL_LOAD, "%s: not a JSON array of modules", path);
    }
    head->present = 1;
    int64_t width = hidden;
    int seen_pool = 0;
    const cJSON *mod;
    cJSON_ArrayForEach(mod, mods) {
        const cJSON *jt = cJSON_GetObjectItemCaseSensitive(mod, "type");
        const cJSON *jp = cJSON_GetObjectItemCaseSensitive(mod, "path");
        if (!cJSON_IsString(jt)) {
            st = cge__err(CGE_ERR_MODEL_LOAD, "%s: a module has no \"type\"", path);
            break;
        }
        const char *sub = cJSON_IsString(jp) ? jp->valuestring : "";
        const char *t = last_component(jt->valuestring);
        /* Paths come from a file: refuse ones that leave the folder. */
        if (sub[0] == '/' || strstr(sub, "..")) {
            st = cge__err(CGE_ERR_MODEL_LOAD, "%s: module path '%s' leaves the model folder", path, sub);
            break;
        }
        if (strstr(t, "Transformer")) {
            continue; /* the folder's own model: the family forward */
        } else if (strstr(t, "Pooling")) {
            st = load_pooling(dir, sub, width, head);
            if (st) break;
            width = width * head->n_pool;
            seen_pool = 1;
        } else if (!strcmp(t, "Dense")) {
            if (!seen_pool) {
                st = cge__err(CGE_ERR_UNSUPPORTED, "%s: a Dense module before Pooling is not supported", path);
                break;
            }
            if (head->n_dense == CGE_MAX_DENSE) {
                st = cge__err(CGE_ERR_UNSUPPORTED, "%s: more than %d Dense modules", path, CGE_MAX_DENSE);
                break;
            }
            int64_t out = 0;
            st = load_dense(dir, sub, width, dtype, &head->dense[head->n_dense], &out);
            if (st) break;
            head->n_dense++;
            width = out;
        } else if (!strcmp(t, "Normalize")) {
            head->normalize = 1; /* its folder need not exist (as on the Hub) */
        } else {
            st = cge__err(CGE_ERR_UNSUPPORTED, "%s: module type '%s' is not supported", path, jt->valuestring);
            break;
        }
    }
    cJSON_Delete(mods);
    if (st) {
        cge__st_head_deinit(head);
        return st;
    }
    return CGE_OK;
}

void cge__st_head_deinit(struct cge_st_head *head) {
    if (!head) return;
    for (int i = 0; i < head->n_dense; i++) cge_linear_deinit(&head->dense[i].lin);
    head->n_dense = 0;
}

int64_t cge__st_head_out_dim(const struct cge_st_head *head, int64_t pooled) {
    if (head->n_dense > 0) return head->dense[head->n_dense - 1].lin.n_out;
    return pooled;
}

enum cge_status cge__dense_apply(const struct cge_st_head *head, const float *x, int64_t n,
                                 int64_t in, float *out) {
    if (head->n_dense == 0) {
        memcpy(out, x, (size_t)(n * in) * sizeof *out);
        return CGE_OK;
    }
    /* Ping-pong between two scratch buffers; the last layer writes into out. */
    int64_t maxw = in;
    for (int i = 0; i < head->n_dense; i++)
        if (head->dense[i].lin.n_out > maxw) maxw = head->dense[i].lin.n_out;
    float *buf = cge__malloc((size_t)(2 * n * maxw) * sizeof *buf);
    if (!buf) return cge__err(CGE_ERR_NOMEM, "Dense: %lld floats", (long long)(2 * n * maxw));
    const float *src = x;
    enum cge_status st = CGE_OK;
    for (int i = 0; i < head->n_dense && !st; i++) {
        const struct cge_dense *d = &head->dense[i];
        float *dst = i == head->n_dense - 1 ? out : buf + (i % 2) * n * maxw;
        st = cge_linear_forward(&d->lin, src, n, dst);
        if (!st) cge__act_apply(d->act, dst, n * d->lin.n_out);
        src = dst;
    }
    cge__free(buf);
    return st;
}
