/*
 * config.c: FuseMoE configuration (config.json), the `{"slots": [...]}` item parser and the
 * ensemble similarity targets.
 *
 * Key decision: every config key is optional over the production defaults, which come from the
 * model table (cge_slot_get), so the total dimension is derived, never written down; and every
 * value read from a file is range-checked here, so the rest of the module trusts the config.
 */
#include "fusion/fusemoe.h"

#include "core/core.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cge_fusemoe_config_default(struct cge_fusemoe_config *c) {
    memset(c, 0, sizeof *c);
    c->n_slots = CGE_N_SLOTS;
    c->total_dim = 0;
    for (int i = 0; i < CGE_N_SLOTS; i++) {
        const struct cge_slot_info *s = cge_slot_get(i);
        c->slot_dims[i] = s ? s->dim : 0;
        c->total_dim += c->slot_dims[i];
    }
    c->n_experts = CGE_N_EXPERTS;
    c->top_k = CGE_TOP_K;
    c->shared_dim = 4096;
    c->hidden_dim = 4096;
    c->out_dim = CGE_FUSED_DIM;
    c->gating = CGE_FUSION_GATE_SOFTMAX;
    c->temperature = 1.0f;
    c->eps = 1e-5f;
    c->load_balance_coef = 0.01f;
    c->capacity_factor = 1.25f;
}

/* Reads an integer key into *v if present; range-checked. */
static enum cge_status get_int(const cJSON *root, const char *key, const char *label, int64_t lo,
                               int64_t hi, int64_t *v, int *seen) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (seen) *seen = it != NULL;
    if (!it) return CGE_OK;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) ||
        it->valuedouble != floor(it->valuedouble))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: %s must be an integer", label, key);
    if (it->valuedouble < (double)lo || it->valuedouble > (double)hi)
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s = %.0f, expected %lld..%lld", label, key,
                        it->valuedouble, (long long)lo, (long long)hi);
    *v = (int64_t)it->valuedouble;
    return CGE_OK;
}

static enum cge_status get_float(const cJSON *root, const char *key, const char *label, double lo,
                                 double hi, float *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it) return CGE_OK;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return cge__err(CGE_ERR_SERIALIZATION, "%s: %s must be a number", label, key);
    if (it->valuedouble < lo || it->valuedouble > hi)
        return cge__err(CGE_ERR_INVALID_VALUE, "%s: %s = %g, expected %g..%g", label, key,
                        it->valuedouble, lo, hi);
    *v = (float)it->valuedouble;
    return CGE_OK;
}

#define MAX_DIM ((int64_t)1 << 20)

enum cge_status cge_fusemoe_config_parse(const char *json, size_t len, const char *label,
                                         struct cge_fusemoe_config *out) {
    struct cge_fusemoe_config c;
    cge_fusemoe_config_default(&c);
    if (!label) label = "fusion config";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return cge__err(CGE_ERR_SERIALIZATION, "%s: not valid JSON", label);
    enum cge_status st = CGE_OK;
    if (!cJSON_IsObject(root)) {
        st = cge__err(CGE_ERR_SERIALIZATION, "%s: expected a JSON object", label);
        goto done;
    }
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(root, "slot_dims");
    if (dims) {
        int n = cJSON_GetArraySize(dims);
        if (!cJSON_IsArray(dims) || n < 1 || n > CGE_FUSION_MAX_SLOTS) {
            st = cge__err(CGE_ERR_INVALID_VALUE, "%s: slot_dims must be an array of 1..%d dims",
                          label, CGE_FUSION_MAX_SLOTS);
            goto done;
        }
        c.n_slots = n;
        c.total_dim = 0;
        int i = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, dims) {
            if (!cJSON_IsNumber(d) || !(d->valuedouble >= 1 && d->valuedouble <= (double)MAX_DIM) ||
                d->valuedouble != floor(d->valuedouble)) {
                st = cge__err(CGE_ERR_INVALID_VALUE,
                              "%s: slot_dims[%d] must be an integer in 1..%lld", label, i,
                              (long long)MAX_DIM);
                goto done;
            }
            c.slot_dims[i] = (int)d->valuedouble;
            c.total_dim += c.slot_dims[i];
            i++;
        }
    }
    int64_t v;
    int seen_shared = 0, seen_hidden = 0;
    v = c.n_experts;
    if ((st = get_int(root, "num_experts", label, 1, CGE_FUSION_MAX_EXPERTS, &v, NULL))) goto done;
    c.n_experts = (int)v;
    v = c.top_k;
    if ((st = get_int(root, "top_k", label, 1, c.n_experts, &v, NULL))) goto done;
    c.top_k = (int)v;
    v = c.hidden_dim;
    if ((st = get_int(root, "expert_hidden_dim", label, 1, MAX_DIM, &v, &seen_hidden))) goto done;
    c.hidden_dim = v;
    v = seen_hidden ? c.hidden_dim : c.shared_dim;
    if ((st = get_int(root, "shared_dim", label, 1, MAX_DIM, &v, &seen_shared))) goto done;
    c.shared_dim = v;
    v = c.out_dim;
    if ((st = get_int(root, "output_dim", label, 1, MAX_DIM, &v, NULL))) goto done;
    c.out_dim = v;
    if (c.top_k > c.n_experts) {
        st = cge__err(CGE_ERR_INVALID_VALUE, "%s: top_k = %d exceeds num_experts = %d", label,
                      c.top_k, c.n_experts);
        goto done;
    }
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "gating");
    if (g) {
        if (cJSON_IsString(g) && !strcmp(g->valuestring, "softmax")) {
            c.gating = CGE_FUSION_GATE_SOFTMAX;
        } else if (cJSON_IsString(g) && !strcmp(g->valuestring, "laplace")) {
            c.gating = CGE_FUSION_GATE_LAPLACE;
        } else {
            st = cge__err(CGE_ERR_INVALID_VALUE, "%s: gating must be \"softmax\" or \"laplace\"",
                          label);
            goto done;
        }
    }
    if ((st = get_float(root, "temperature", label, 1e-4, 1e4, &c.temperature))) goto done;
    if ((st = get_float(root, "layer_norm_eps", label, 0, 1, &c.eps))) goto done;
    if ((st = get_float(root, "load_balance_coef", label, 0, 1e3, &c.load_balance_coef))) goto done;
    if ((st = get_float(root, "capacity_factor", label, 0.01, 1e3, &c.capacity_factor))) goto done;
    /* Parameter count must stay addressable: reject absurd products up front. */
    if (cge_fusemoe_config_n_params(&c) > ((int64_t)1 << 34)) {
        st = cge__err(CGE_ERR_INVALID_VALUE, "%s: %lld parameters is too many", label,
                      (long long)cge_fusemoe_config_n_params(&c));
        goto done;
    }
    *out = c;
done:
    cJSON_Delete(root);
    return st;
}

enum cge_status cge_fusemoe_config_load(const char *path, struct cge_fusemoe_config *out) {
    char *text = NULL;
    size_t len = 0;
    enum cge_status st = cge__read_file(path, 1 << 20, &text, &len);
    if (st) return st;
    st = cge_fusemoe_config_parse(text, len, path, out);
    cge__free(text);
    return st;
}

/* Shortest decimal that reads back as the same float ("0.7", not "0.699999988"). */
static const char *fmt_float(float v, char *buf, size_t cap) {
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    return buf;
}

enum cge_status cge_fusemoe_config_save(const struct cge_fusemoe_config *c, const char *path) {
    char f1[32], f2[32], f3[32], f4[32];
    struct cge_buf b;
    cge__buf_init(&b, 1 << 20);
    enum cge_status st = cge__buf_printf(&b, "{\n  \"slot_dims\": [");
    for (int i = 0; i < c->n_slots && !st; i++)
        st = cge__buf_printf(&b, "%s%d", i ? ", " : "", c->slot_dims[i]);
    if (!st)
        st = cge__buf_printf(
            &b,
            "],\n  \"num_experts\": %d,\n  \"top_k\": %d,\n  \"shared_dim\": %lld,\n"
            "  \"expert_hidden_dim\": %lld,\n  \"output_dim\": %lld,\n  \"gating\": \"%s\",\n"
            "  \"temperature\": %s,\n  \"layer_norm_eps\": %s,\n"
            "  \"load_balance_coef\": %s,\n  \"capacity_factor\": %s\n}\n",
            c->n_experts, c->top_k, (long long)c->shared_dim, (long long)c->hidden_dim,
            (long long)c->out_dim, c->gating == CGE_FUSION_GATE_LAPLACE ? "laplace" : "softmax",
            fmt_float(c->temperature, f1, sizeof f1), fmt_float(c->eps, f2, sizeof f2),
            fmt_float(c->load_balance_coef, f3, sizeof f3),
            fmt_float(c->capacity_factor, f4, sizeof f4));
    if (st) {
        cge__buf_free(&b);
        return st;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        cge__buf_free(&b);
        return cge__err(CGE_ERR_IO, "%s: cannot open for writing", path);
    }
    size_t w = fwrite(b.data, 1, b.len, f);
    int bad = w != b.len;
    if (fclose(f)) bad = 1;
    cge__buf_free(&b);
    return bad ? cge__err(CGE_ERR_IO, "%s: write failed", path) : CGE_OK;
}

int64_t cge_fusemoe_config_n_params(const struct cge_fusemoe_config *c) {
    int64_t D = c->total_dim, E = c->n_experts, H = c->shared_dim, Hd = c->hidden_dim,
            O = c->out_dim, S = c->n_slots;
    int64_t n = D       /* missing_embed */
                + 2 * D /* gate.norm */
                + E * D + E + E * S + H * D + H + 2 * O;
    n += E * (Hd * H + Hd + O * Hd + O);
    return n;
}

/* ==== item lines ============================================================================ */
enum cge_status cge_fusion_parse_item(const struct cge_fusemoe_config *c, const char *line,
                                      size_t len, float *x, uint8_t *present, int64_t *pair) {
    if (pair) *pair = -1;
    cJSON *root = cJSON_ParseWithLength(line, len);
    if (!root) return cge__err(CGE_ERR_SERIALIZATION, "item: not valid JSON");
    enum cge_status st = CGE_OK;
    const cJSON *slots =
        cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "slots") : NULL;
    if (!cJSON_IsArray(slots)) {
        st = cge__err(CGE_ERR_SERIALIZATION, "item: expected {\"slots\": [...]}");
        goto done;
    }
    int n = cJSON_GetArraySize(slots);
    if (n != c->n_slots) {
        st = cge__err(CGE_ERR_INVALID_DIM, "item: %d slots, expected %d", n, c->n_slots);
        goto done;
    }
    int s = 0, n_present = 0;
    int64_t off = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, slots) {
        int d = c->slot_dims[s];
        if (cJSON_IsNull(v)) {
            present[s] = 0;
            memset(x + off, 0, (size_t)d * sizeof(float));
        } else if (cJSON_IsArray(v)) {
            int m = cJSON_GetArraySize(v);
            if (m != d) {
                st = cge__err(CGE_ERR_INVALID_DIM, "item: slot %d has %d values, expected %d", s, m,
                              d);
                goto done;
            }
            int j = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, v) {
                if (!cJSON_IsNumber(e)) {
                    st = cge__err(CGE_ERR_INVALID_VALUE, "item: slot %d value %d is not a number",
                                  s, j);
                    goto done;
                }
                float f = (float)e->valuedouble;
                if (!isfinite(f)) {
                    st = cge__err(CGE_ERR_INVALID_VALUE, "item: slot %d value %d is not finite", s,
                                  j);
                    goto done;
                }
                x[off + j] = f;
                j++;
            }
            present[s] = 1;
            n_present++;
        } else {
            st = cge__err(CGE_ERR_SERIALIZATION, "item: slot %d must be an array or null", s);
            goto done;
        }
        off += d;
        s++;
    }
    if (!n_present) {
        st = cge__err(CGE_ERR_FUSION, "item: all %d slots are missing", c->n_slots);
        goto done;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pair");
    if (p && pair && !cJSON_IsNull(p)) {
        if (cJSON_IsNumber(p) && p->valuedouble >= 0 && p->valuedouble < 9.0e15 &&
            p->valuedouble == floor(p->valuedouble)) {
            *pair = (int64_t)p->valuedouble;
        } else if (cJSON_IsString(p)) {
            uint64_t h = 1469598103934665603ull; /* FNV-1a, top bit cleared: ids stay >= 0 */
            for (const char *q = p->valuestring; *q; q++)
                h = (h ^ (uint8_t)*q) * 1099511628211ull;
            *pair = (int64_t)(h >> 1);
        } else {
            st = cge__err(CGE_ERR_INVALID_VALUE,
                          "item: pair must be a non-negative integer or a string");
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

/* ==== similarity targets ===================================================================== */
enum cge_status cge_fusion_similarity_targets(const struct cge_fusemoe_config *c, int64_t n,
                                              const float *x, const uint8_t *present, double *T) {
    int S = c->n_slots;
    int64_t D = c->total_dim;
    double *nrm = cge__malloc((size_t)(n * S) * sizeof(double));
    if (!nrm) return cge__err(CGE_ERR_NOMEM, "fusion: similarity targets");
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        for (int s = 0; s < S; s++) {
            double a = 0;
            if (present[i * S + s])
                for (int j = 0; j < c->slot_dims[s]; j++)
                    a += (double)x[i * D + off + j] * x[i * D + off + j];
            nrm[i * S + s] = sqrt(a);
            off += c->slot_dims[s];
        }
    }
    for (int64_t i = 0; i < n; i++) {
        T[i * n + i] = 1.0;
        for (int64_t j = i + 1; j < n; j++) {
            double sum = 0;
            int cnt = 0;
            int64_t off = 0;
            for (int s = 0; s < S; s++) {
                int d = c->slot_dims[s];
                if (present[i * S + s] && present[j * S + s]) {
                    double dot = 0;
                    for (int k = 0; k < d; k++)
                        dot += (double)x[i * D + off + k] * x[j * D + off + k];
                    double den = fmax(nrm[i * S + s], 1e-12) * fmax(nrm[j * S + s], 1e-12);
                    sum += dot / den;
                    cnt++;
                }
                off += d;
            }
            T[i * n + j] = T[j * n + i] = cnt ? sum / cnt : 0.0;
        }
    }
    cge__free(nrm);
    return CGE_OK;
}
