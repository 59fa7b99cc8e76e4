/*
 * cmd_fusion.c: `cge fusion init | run | train` — FuseMoE weights from the command line.
 *
 *   init  --config FILE --out DIR [--seed N]      deterministic initial weights
 *   run   --weights DIR [--dtype f32|bf16|i8] [--batch N] [--input FILE]
 *         {"slots": [...]} lines in → {"embedding","expert_weights","selected"} lines out
 *   train --weights DIR --data FILE [--epochs N --lr X --batch N --out DIR ...]
 *
 * Key decision: every input problem ends as one line on stderr ("cge fusion run: line 3: item:
 * slot 1 has 5 values, expected 10") and a nonzero exit; results already computed for earlier
 * lines are written first, so a pipeline keeps its good output.
 */
#include "cge.h"
#include "commands.h"
#include "fusion/fusemoe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINE ((size_t)64 << 20)

static void usage_init(FILE *f) {
    fprintf(
        f, "usage: cge fusion init --config FILE --out DIR [--seed N]\n"
           "Writes deterministic initial FuseMoE weights (config.json + model.safetensors).\n"
           "FILE is a config.json; every key is optional over the production defaults\n"
           "(slot_dims from `cge models`, num_experts 8, top_k 2, shared_dim 4096,\n"
           "expert_hidden_dim 4096, output_dim 1536, gating \"softmax\" or \"laplace\",\n"
           "temperature 1, layer_norm_eps 1e-5, load_balance_coef 0.01, capacity_factor 1.25),\n"
           "so a file holding {} gives the production layer (238 M parameters, 955 MB).\n"
           "\n"
           "The initialization is usable before training: from the seed (default 0), a shared\n"
           "random projection with orthonormal rows (Gram-Schmidt; variance-matched uniform\n"
           "entries for large matrices) chains input_proj -> fc1 -> fc2 with zero biases and\n"
           "small pre-activations, where GELU(u) ~ u/2 (fc1 and fc2 carry the factor 2), so each\n"
           "expert maps x to about the same random projection of it and the fused cosine of two\n"
           "items already tracks the cosine of their slot-normalized concatenations (the\n"
           "ensemble's similarity). Each expert is the shared projection plus a 5%% perturbation;\n"
           "gates start near uniform (N(0, 0.02^2) weights, zero biases "
           "and mask projection); missing_embed starts at 0; the LayerNorms at identity.\n");
}

static void usage_run(FILE *f) {
    fprintf(
        f,
        "usage: cge fusion run --weights DIR [--dtype f32|bf16|i8] [--batch N] [--input FILE]\n"
        "Reads {\"slots\": [vector or null, ...]} lines (stdin by default) and writes one\n"
        "{\"embedding\": [...], \"expert_weights\": [...], \"selected\": [a, b]} line per item.\n"
        "--dtype: storage of the large matrices (default f32). --batch: items per forward\n"
        "(default 32; results do not depend on it).\n");
}

static void usage_train(FILE *f) {
    fprintf(
        f, "usage: cge fusion train --weights DIR --data FILE [options]\n"
           "       cge fusion train --ensemble DIR --corpus FILE [options]\n"
           "  (embeds the corpus, `cge embed` lines with an optional \"pair\", through the\n"
           "   ensemble's slots and trains the fusion folder it names, or --weights DIR)\n"
           "Trains FuseMoE on {\"slots\": [...], \"pair\": id} lines (pair optional: items with\n"
           "the same id are positives for the InfoNCE term). Loss: similarity preservation +\n"
           "load_balance_coef x load balance (+ InfoNCE). Progress (loss, expert load) on stderr.\n"
           "Writes weights and optimizer state to --out after every epoch; if DIR holds\n"
           "optimizer state (optimizer.safetensors, trainer_state.json) training resumes from it.\n"
           "options:\n"
           "  --epochs N        passes over the data (1)\n"
           "  --lr X            AdamW learning rate (default 0.01/sqrt(total slot dims))\n"
           "  --batch N         items per step (32; at least 2)\n"
           "  --out DIR         where to write (default: --weights DIR)\n"
           "  --weight-decay X  AdamW decoupled weight decay on matrices (0.01)\n"
           "  --clip X          global gradient-norm clipping (1.0; 0 = off)\n"
           "  --noise X         std of the gate-logit noise while training (0.1)\n"
           "  --dropout X       dropout while training (0)\n"
           "  --no-capacity     no capacity limit while training (default: capacity_factor)\n"
           "  --nce X           InfoNCE weight (1.0)  --nce-temp X (0.05)\n"
           "  --seed N          shuffling, noise and dropout (42)\n");
}

static int fail(const char *cmd, const char *what) {
    fprintf(stderr, "cge fusion %s: %s\n", cmd, what);
    return 1;
}

static int fail_st(const char *cmd, enum cge_status st) {
    const char *m = cge_errmsg();
    fprintf(stderr, "cge fusion %s: %s\n", cmd, m && m[0] ? m : cge_status_str(st));
    return 1;
}

static int parse_dtype(const char *s, enum cge_dtype *d) {
    if (!strcmp(s, "f32") || !strcmp(s, "fp32"))
        *d = CGE_DTYPE_F32;
    else if (!strcmp(s, "bf16"))
        *d = CGE_DTYPE_BF16;
    else if (!strcmp(s, "i8") || !strcmp(s, "int8"))
        *d = CGE_DTYPE_I8;
    else
        return -1;
    return 0;
}

/* Strict number parsing for options. */
static int num_arg(const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* ==== init ==================================================================================== */
static int fusion_init(int argc, char **argv) {
    const char *config = NULL, *out = NULL;
    double seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_init(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            if (num_arg(argv[++i], 0, 9e15, &seed)) return fail("init", "--seed needs an integer");
        } else {
            usage_init(stderr);
            return 2;
        }
    }
    if (!config || !out) {
        usage_init(stderr);
        return 2;
    }
    struct cge_fusemoe_config c;
    enum cge_status st = cge_fusemoe_config_load(config, &c);
    if (st) return fail_st("init", st);
    struct cge_fusion *f = NULL;
    if ((st = cge_fusion_new(&c, (uint64_t)seed, &f))) return fail_st("init", st);
    st = cge_fusion_save(f, out);
    int64_t np = cge_fusemoe_config_n_params(&c);
    cge_fusion_free(f);
    if (st) return fail_st("init", st);
    fprintf(stderr,
            "cge fusion init: %s: %lld slots (%lld dims) -> %d experts -> %lld, %lld parameters\n",
            out, (long long)c.n_slots, (long long)c.total_dim, c.n_experts, (long long)c.out_dim,
            (long long)np);
    return 0;
}

/* ==== reading items =========================================================================== */
struct items {
    int64_t n, cap;
    float *x;
    uint8_t *present;
    int64_t *pair;
    int any_pair;
};

static int items_push(struct items *it, const struct cge_fusemoe_config *c) {
    if (it->n < it->cap) return 0;
    int64_t cap = it->cap ? it->cap * 2 : 64;
    float *x = realloc(it->x, (size_t)(cap * c->total_dim) * sizeof(float));
    if (!x) return -1;
    it->x = x;
    uint8_t *p = realloc(it->present, (size_t)(cap * c->n_slots));
    if (!p) return -1;
    it->present = p;
    int64_t *q = realloc(it->pair, (size_t)cap * sizeof(int64_t));
    if (!q) return -1;
    it->pair = q;
    it->cap = cap;
    return 0;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* ==== run ===================================================================================== */
static void print_floats(FILE *f, const float *v, int64_t n) {
    fputc('[', f);
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%s%.9g", i ? ", " : "", (double)v[i]);
    fputc(']', f);
}

static int flush_batch(const struct cge_fusion *f, struct cge_fusion_ctx *ctx, struct items *it,
                       float *emb, float *gate, int *sel, int64_t first_line) {
    if (!it->n) return 0;
    const struct cge_fusemoe_config *c = cge_fusion_get_config(f);
    enum cge_status st = cge_fusion_forward(f, ctx, it->n, it->x, it->present, emb, gate, sel);
    if (st) {
        fprintf(stderr, "cge fusion run: lines %lld..%lld: %s\n", (long long)first_line,
                (long long)(first_line + it->n - 1), cge_errmsg());
        return 1;
    }
    for (int64_t i = 0; i < it->n; i++) {
        fputs("{\"embedding\": ", stdout);
        print_floats(stdout, emb + i * c->out_dim, c->out_dim);
        fputs(", \"expert_weights\": ", stdout);
        print_floats(stdout, gate + i * c->n_experts, c->n_experts);
        fputs(", \"selected\": [", stdout);
        for (int q = 0; q < c->top_k; q++)
            printf("%s%d", q ? ", " : "", sel[i * c->top_k + q]);
        fputs("]}\n", stdout);
    }
    it->n = 0;
    return 0;
}

static int fusion_run(int argc, char **argv) {
    const char *weights = NULL, *input = NULL;
    enum cge_dtype dtype = CGE_DTYPE_F32;
    double batch = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_run(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            weights = argv[++i];
        } else if (!strcmp(argv[i], "--input") && i + 1 < argc) {
            input = argv[++i];
        } else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            if (parse_dtype(argv[++i], &dtype))
                return fail("run", "--dtype must be f32, bf16 or i8");
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            if (num_arg(argv[++i], 1, 4096, &batch)) return fail("run", "--batch must be 1..4096");
        } else {
            usage_run(stderr);
            return 2;
        }
    }
    if (!weights) {
        usage_run(stderr);
        return 2;
    }
    FILE *in = stdin;
    if (input && !(in = fopen(input, "rb"))) {
        fprintf(stderr, "cge fusion run: %s: cannot open\n", input);
        return 1;
    }
    struct cge_fusion *f = NULL;
    enum cge_status st = cge_fusion_load(weights, dtype, &f);
    if (st) {
        if (in != stdin) fclose(in);
        return fail_st("run", st);
    }
    const struct cge_fusemoe_config *c = cge_fusion_get_config(f);
    int64_t nb = (int64_t)batch;
    struct items it = {0, 0, NULL, NULL, NULL, 0};
    float *emb = malloc((size_t)(nb * c->out_dim) * sizeof(float));
    float *gate = malloc((size_t)(nb * c->n_experts) * sizeof(float));
    int *sel = malloc((size_t)(nb * c->top_k) * sizeof(int));
    struct cge_fusion_ctx *ctx = NULL;
    int rc = 0;
    if (!emb || !gate || !sel || cge_fusion_ctx_new(&ctx)) {
        rc = fail("run", "out of memory");
        goto done;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0, first = 1;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (is_blank(line, (size_t)len)) continue;
        if ((size_t)len > MAX_LINE) {
            flush_batch(f, ctx, &it, emb, gate, sel, first);
            fprintf(stderr, "cge fusion run: line %lld: longer than %zu bytes\n", (long long)lineno,
                    MAX_LINE);
            rc = 1;
            break;
        }
        if (items_push(&it, c)) {
            rc = fail("run", "out of memory");
            break;
        }
        if (!it.n) first = lineno;
        st = cge_fusion_parse_item(c, line, (size_t)len, it.x + it.n * c->total_dim,
                                   it.present + it.n * c->n_slots, NULL);
        if (st) {
            rc = flush_batch(f, ctx, &it, emb, gate, sel, first);
            fprintf(stderr, "cge fusion run: line %lld: %s\n", (long long)lineno, cge_errmsg());
            rc = 1;
            break;
        }
        it.n++;
        if (it.n == nb && (rc = flush_batch(f, ctx, &it, emb, gate, sel, first))) break;
    }
    if (!rc) rc = flush_batch(f, ctx, &it, emb, gate, sel, first);
    free(line);
done:
    fflush(stdout);
    if (in != stdin) fclose(in);
    cge_fusion_ctx_free(ctx);
    cge_fusion_free(f);
    free(emb);
    free(gate);
    free(sel);
    free(it.x);
    free(it.present);
    free(it.pair);
    return rc;
}

/* ==== train =================================================================================== */
static void progress(int epoch, int epochs, int64_t step, int64_t steps,
                     const struct cge_fusion_stats *s, int n_experts) {
    char bar[21];
    int fill = steps ? (int)(20 * step / steps) : 20;
    for (int i = 0; i < 20; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[20] = 0;
    fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %.5f (sim %.5f lb %.3f", epoch, epochs, bar,
            (long long)step, (long long)steps, s->total_loss, s->similarity_loss,
            s->load_balance_loss);
    if (s->info_nce_loss > 0) fprintf(stderr, " nce %.4f", s->info_nce_loss);
    fprintf(stderr, ") load");
    for (int e = 0; e < n_experts && e < 16; e++)
        fprintf(stderr, " %.2f", s->load[e]);
    fprintf(stderr, "   ");
    fflush(stderr);
}

static int fusion_train(int argc, char **argv) {
    const char *weights = NULL, *data = NULL, *out = NULL, *ensemble = NULL, *corpus = NULL;
    char corpus_data[256] = "", fusion_dir[1024];
    double epochs = 1, batch = 32, v;
    struct cge_fusion_train_params tp;
    cge_fusion_train_default_params(&tp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_train(stdout);
            return 0;
        } else if (!strcmp(a, "--weights") && has) {
            weights = argv[++i];
        } else if (!strcmp(a, "--ensemble") && has) {
            ensemble = argv[++i];
        } else if (!strcmp(a, "--corpus") && has) {
            corpus = argv[++i];
        } else if (!strcmp(a, "--data") && has) {
            data = argv[++i];
        } else if (!strcmp(a, "--out") && has) {
            out = argv[++i];
        } else if (!strcmp(a, "--epochs") && has) {
            if (num_arg(argv[++i], 1, 1e6, &epochs)) return fail("train", "--epochs must be >= 1");
        } else if (!strcmp(a, "--batch") && has) {
            if (num_arg(argv[++i], 2, 4096, &batch))
                return fail("train", "--batch must be 2..4096");
        } else if (!strcmp(a, "--lr") && has) {
            if (num_arg(argv[++i], 1e-9, 10, &v)) return fail("train", "--lr must be in (0, 10]");
            tp.lr = (float)v;
        } else if (!strcmp(a, "--weight-decay") && has) {
            if (num_arg(argv[++i], 0, 10, &v))
                return fail("train", "--weight-decay must be in [0, 10]");
            tp.weight_decay = (float)v;
        } else if (!strcmp(a, "--clip") && has) {
            if (num_arg(argv[++i], 0, 1e9, &v)) return fail("train", "--clip must be >= 0");
            tp.max_grad_norm = (float)v;
        } else if (!strcmp(a, "--noise") && has) {
            if (num_arg(argv[++i], 0, 100, &v)) return fail("train", "--noise must be in [0, 100]");
            tp.gate_noise = (float)v;
        } else if (!strcmp(a, "--dropout") && has) {
            if (num_arg(argv[++i], 0, 0.99, &v))
                return fail("train", "--dropout must be in [0, 0.99]");
            tp.dropout = (float)v;
        } else if (!strcmp(a, "--nce") && has) {
            if (num_arg(argv[++i], 0, 1e3, &v)) return fail("train", "--nce must be >= 0");
            tp.info_nce_coef = (float)v;
        } else if (!strcmp(a, "--nce-temp") && has) {
            if (num_arg(argv[++i], 1e-4, 100, &v)) return fail("train", "--nce-temp must be > 0");
            tp.info_nce_temp = (float)v;
        } else if (!strcmp(a, "--seed") && has) {
            if (num_arg(argv[++i], 0, 9e15, &v)) return fail("train", "--seed needs an integer");
            tp.seed = (uint64_t)v;
        } else if (!strcmp(a, "--no-capacity")) {
            tp.use_capacity = 0;
        } else {
            usage_train(stderr);
            return 2;
        }
    }
    if (!ensemble != !corpus || (ensemble && data)) {
        fprintf(stderr, "cge fusion train: give --ensemble DIR --corpus FILE, or --data FILE\n");
        return 2;
    }
    if (ensemble) {
        /* embed the corpus through the slots, then train on it as --data does; the fusion
         * folder the ensemble names is the one trained (unless --weights says otherwise) */
        if (fusion_corpus_to_data(ensemble, corpus, corpus_data, sizeof corpus_data, fusion_dir,
                                  sizeof fusion_dir))
            return 1;
        data = corpus_data;
        if (!weights) weights = fusion_dir;
    }
    if (!weights || !data) {
        usage_train(stderr);
        return 2;
    }
    if (!out) out = weights;
    struct cge_fusion *f = NULL;
    enum cge_status st = cge_fusion_load(weights, CGE_DTYPE_F32, &f);
    if (st) {
        if (corpus_data[0]) unlink(corpus_data);
        return fail_st("train", st);
    }
    const struct cge_fusemoe_config *c = cge_fusion_get_config(f);
    struct items it = {0, 0, NULL, NULL, NULL, 0};
    struct cge_fusion_trainer *t = NULL;
    float *bx = NULL;
    uint8_t *bp = NULL;
    int64_t *bq = NULL, *order = NULL;
    int rc = 0;
    FILE *in = fopen(data, "rb");
    if (!in) {
        fprintf(stderr, "cge fusion train: %s: cannot open\n", data);
        rc = 1;
        goto done;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (is_blank(line, (size_t)len)) continue;
        if (items_push(&it, c)) {
            rc = fail("train", "out of memory reading the data");
            break;
        }
        st = cge_fusion_parse_item(c, line, (size_t)len, it.x + it.n * c->total_dim,
                                   it.present + it.n * c->n_slots, &it.pair[it.n]);
        if (st) {
            fprintf(stderr, "cge fusion train: %s: line %lld: %s\n", data, (long long)lineno,
                    cge_errmsg());
            rc = 1;
            break;
        }
        it.any_pair |= it.pair[it.n] >= 0;
        it.n++;
    }
    free(line);
    fclose(in);
    if (rc) goto done;
    if (it.n < 2) {
        rc = fail("train", "need at least 2 items");
        goto done;
    }
    if ((st = cge_fusion_trainer_new(f, &tp, &t))) {
        rc = fail_st("train", st);
        goto done;
    }
    int resumed = 0;
    if ((st = cge_fusion_trainer_resume(t, weights, &resumed))) {
        rc = fail_st("train", st);
        goto done;
    }
    int64_t nb = (int64_t)batch < it.n ? (int64_t)batch : it.n;
    bx = malloc((size_t)(nb * c->total_dim) * sizeof(float));
    bp = malloc((size_t)(nb * c->n_slots));
    bq = malloc((size_t)nb * sizeof(int64_t));
    order = malloc((size_t)it.n * sizeof(int64_t));
    if (!bx || !bp || !bq || !order) {
        rc = fail("train", "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < it.n; i++)
        order[i] = i;
    fprintf(stderr, "cge fusion train: %lld items, batch %lld, %d epochs\n", (long long)it.n,
            (long long)nb, (int)epochs);
    if (resumed)
        fprintf(stderr, "cge fusion train: resuming from %s at step %lld\n", weights,
                (long long)cge_fusion_trainer_steps(t));
    uint64_t rng = tp.seed * 0x9e3779b97f4a7c15ull + 1 + (uint64_t)cge_fusion_trainer_steps(t);
    int64_t steps = it.n / nb;
    for (int ep = 1; ep <= (int)epochs && !rc; ep++) {
        for (int64_t i = it.n - 1; i > 0; i--) { /* Fisher-Yates with xorshift */
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            int64_t j = (int64_t)(rng % (uint64_t)(i + 1)), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        struct cge_fusion_stats s, avg;
        memset(&avg, 0, sizeof avg);
        for (int64_t b = 0; b < steps; b++) {
            for (int64_t q = 0; q < nb; q++) {
                int64_t src = order[b * nb + q];
                memcpy(bx + q * c->total_dim, it.x + src * c->total_dim,
                       (size_t)c->total_dim * sizeof(float));
                memcpy(bp + q * c->n_slots, it.present + src * c->n_slots, (size_t)c->n_slots);
                bq[q] = it.pair[src];
            }
            st = cge_fusion_trainer_step(t, nb, bx, bp, it.any_pair ? bq : NULL, &s);
            if (st) {
                fputc('\n', stderr);
                rc = fail_st("train", st);
                break;
            }
            avg.total_loss += s.total_loss / (double)steps;
            avg.similarity_loss += s.similarity_loss / (double)steps;
            avg.load_balance_loss += s.load_balance_loss / (double)steps;
            avg.info_nce_loss += s.info_nce_loss / (double)steps;
            for (int e = 0; e < c->n_experts; e++)
                avg.load[e] += s.load[e] / (double)steps;
            progress(ep, (int)epochs, b + 1, steps, &s, c->n_experts);
        }
        if (rc) break;
        progress(ep, (int)epochs, steps, steps, &avg, c->n_experts);
        fputc('\n', stderr);
        if ((st = cge_fusion_trainer_save(t, out))) {
            rc = fail_st("train", st);
            break;
        }
    }
    if (!rc)
        fprintf(stderr, "cge fusion train: wrote %s (step %lld)\n", out,
                (long long)cge_fusion_trainer_steps(t));
done:
    cge_fusion_trainer_free(t);
    cge_fusion_free(f);
    free(it.x);
    free(it.present);
    free(it.pair);
    free(bx);
    free(bp);
    free(bq);
    free(order);
    if (corpus_data[0]) unlink(corpus_data);
    return rc;
}

int cmd_fusion(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: cge fusion <init|run|train> [options]\n"
                   "  init   write deterministic initial FuseMoE weights\n"
                   "  run    fuse {\"slots\": [...]} lines into embeddings with routing\n"
                   "  train  train FuseMoE weights on slot lines\n"
                   "`cge fusion <sub> --help` describes each.\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "init")) return fusion_init(argc - 1, argv + 1);
    if (!strcmp(argv[1], "run")) return fusion_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return fusion_train(argc - 1, argv + 1);
    fprintf(stderr, "cge fusion: unknown subcommand '%s' (init, run, train)\n", argv[1]);
    return 2;
}
