#include "cast/diagnose.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "model/forward.h"

static const char *const oc_names[] = {"neg", "half", "negdot"};
static const char *const fs_names[] = {"gate", "ablation", "snip"};
static const char *const combine_names[] = {"product", "rank", "sum"};

static int parse_name(const char *s, const char *const *names, int n, int *out) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

int cast_oc_parse(const char *s, cast_oc_kind *out) {
    int v;
    if (parse_name(s, oc_names, 3, &v)) return -1;
    *out = (cast_oc_kind)v;
    return 0;
}
int cast_fs_parse(const char *s, cast_fs_kind *out) {
    int v;
    if (parse_name(s, fs_names, 3, &v)) return -1;
    *out = (cast_fs_kind)v;
    return 0;
}
int cast_combine_parse(const char *s, cast_combine_kind *out) {
    int v;
    if (parse_name(s, combine_names, 3, &v)) return -1;
    *out = (cast_combine_kind)v;
    return 0;
}
const char *cast_oc_name(cast_oc_kind k) { return oc_names[k]; }
const char *cast_fs_name(cast_fs_kind k) { return fs_names[k]; }
const char *cast_combine_name(cast_combine_kind k) { return combine_names[k]; }

void cast_diag_opts_default(cast_diag_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_in_score = 1;
    o->oc = CAST_OC_NEG;
    o->fs = CAST_FS_GATE;
    o->combine = CAST_COMBINE_PRODUCT;
    o->micro_batch = 4;
}

int cast_top5_count(int n) {
    int k = cast_top_count(0.05, n);
    return k < 1 && n > 0 ? 1 : k;
}

int cast_top_count(double ratio, int n) {
    int k = (int)lround(ratio * n);
    return k < 0 ? 0 : k > n ? n : k;
}

/* ---- per-head reductions over the head's parameter slices ------------------ */

/* Σ f(a_i, b_i) over the slices of head (l, h); f picks dot, |a|·|b| or a². */
typedef enum { RED_DOT, RED_ABS_PRODUCT } reduction;

static double reduce_span(const float *a, const float *b, int64_t n, reduction r) {
    double s = 0;
    if (r == RED_DOT)
        for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    else
        for (int64_t i = 0; i < n; i++) s += fabs((double)a[i]) * fabs((double)b[i]);
    return s;
}

/* a and b are per-tensor arrays (gradients or weights) indexed like m->tensors. */
static double head_reduce(const cast_model *m, float *const *a, float *const *b, int layer, int head, int kv_in_score,
                          reduction r) {
    cast_head_slices s = cast_model_head(m, layer, head);
    int64_t D = m->cfg.hidden, d = s.d, Hd = (int64_t)m->cfg.heads * d;
    double sum = reduce_span(a[s.wq] + s.q_row0 * D, b[s.wq] + s.q_row0 * D, d * D, r);
    if (s.bq >= 0) sum += reduce_span(a[s.bq] + s.q_row0, b[s.bq] + s.q_row0, d, r);
    for (int64_t row = 0; row < D; row++) sum += reduce_span(a[s.wo] + row * Hd + s.o_col0, b[s.wo] + row * Hd + s.o_col0, d, r);
    if (kv_in_score) {
        sum += reduce_span(a[s.wk] + s.kv_row0 * D, b[s.wk] + s.kv_row0 * D, d * D, r);
        sum += reduce_span(a[s.wv] + s.kv_row0 * D, b[s.wv] + s.kv_row0 * D, d * D, r);
        if (s.bk >= 0) sum += reduce_span(a[s.bk] + s.kv_row0, b[s.bk] + s.kv_row0, d, r);
        if (s.bv >= 0) sum += reduce_span(a[s.bv] + s.kv_row0, b[s.bv] + s.kv_row0, d, r);
    }
    return sum;
}

/* ---- gradients of the mean loss over a whole set --------------------------- */

typedef struct progress {
    const cast_diag_opts *o;
    int64_t done, total;
} progress;

static void tick(progress *p, int64_t n, const char *stage) {
    p->done += n;
    if (p->o->progress) p->o->progress(p->o->ctx, p->done, p->total, stage);
}

static int set_gradient(const cast_model *m, cast_acts *a, const cast_seqs *set, const char *path, cast_grads *gr,
                        cast_set_stat *st, progress *pg, const char *stage, int micro, cast_err *err) {
    int64_t scored = cast_seqs_scored(set);
    if (set->n == 0) return cast_fail(err, "%s: empty set", path);
    if (scored == 0) return cast_fail(err, "%s: no scored tokens (every label is -100)", path);
    double sum = 0;
    for (int i = 0; i < set->n; i += micro) {
        cast_seqs part = cast_seqs_slice(set, i, set->n - i < micro ? set->n - i : micro);
        cast_loss l;
        if (cast_model_forward_backward(m, a, &part, gr, (double)scored, &l, err)) return cast_fail_prefix(err, path);
        sum += l.sum;
        tick(pg, part.n, stage);
    }
    if (!isfinite(sum)) return cast_fail(err, "%s: the loss is not finite", path);
    st->path = cast_xstrdup(path);
    st->examples = set->n;
    st->tokens = scored;
    st->loss = sum / (double)scored;
    return 0;
}

static int mean_loss(const cast_model *m, cast_acts *a, const cast_seqs *set, int micro, double *out, cast_err *err) {
    double sum = 0;
    int64_t count = 0;
    for (int i = 0; i < set->n; i += micro) {
        cast_seqs part = cast_seqs_slice(set, i, set->n - i < micro ? set->n - i : micro);
        cast_loss l;
        if (cast_model_forward(m, a, &part, NULL, &l, NULL, NULL, err)) return -1;
        sum += l.sum;
        count += l.count;
    }
    *out = sum / (double)count;
    return 0;
}

int cast_diagnose(const cast_model *m, const cast_seqs *safety, const cast_seqs *utility, const char *safety_path,
                  const char *utility_path, const cast_diag_opts *o, cast_conflict_map *map, cast_err *err) {
    const cast_config *c = &m->cfg;
    int L = c->layers, H = c->heads, n = L * H, micro = o->micro_batch > 0 ? o->micro_batch : 4;
    memset(map, 0, sizeof *map);
    map->model_path = cast_xstrdup(m->path ? m->path : "(in memory)");
    snprintf(map->architecture, sizeof map->architecture, "%s", c->architecture);
    map->layers = L;
    map->heads = H;
    map->kv_heads = c->kv_heads;
    map->head_dim = c->head_dim;
    map->kv_in_score = o->kv_in_score;
    map->oc = o->oc;
    map->fs = o->fs;
    map->combine = o->combine;
    map->stat = NULL;

    /* gradient buffers for the attention tensors only */
    int *keep = cast_xcalloc((size_t)m->n_tensors, sizeof(int));
    for (int l = 0; l < L; l++) {
        const cast_layer_index *x = &m->layer[l];
        int idx[] = {x->wq, x->bq, x->wk, x->bk, x->wv, x->bv, x->wo};
        for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++)
            if (idx[k] >= 0) keep[idx[k]] = 1;
    }
    cast_grads gs, gu;
    cast_grads_init(&gs, m, keep, 0);
    cast_grads_init(&gu, m, keep, o->fs == CAST_FS_GATE);
    free(keep);
    cast_acts *a = cast_acts_new();
    progress pg = {o, 0, (int64_t)safety->n + utility->n + (o->fs == CAST_FS_ABLATION ? (int64_t)n * utility->n : 0)};
    int rc = -1;
    if (set_gradient(m, a, safety, safety_path, &gs, &map->safety, &pg, "safety", micro, err)) goto done;
    if (set_gradient(m, a, utility, utility_path, &gu, &map->utility, &pg, "utility", micro, err)) goto done;

    map->stat = cast_xcalloc((size_t)n, sizeof *map->stat);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            cast_head_stat *s = &map->stat[l * H + h];
            s->layer = l;
            s->head = h;
            s->dot = head_reduce(m, gs.g, gu.g, l, h, o->kv_in_score, RED_DOT);
            s->norm_safety = sqrt(head_reduce(m, gs.g, gs.g, l, h, o->kv_in_score, RED_DOT));
            s->norm_utility = sqrt(head_reduce(m, gu.g, gu.g, l, h, o->kv_in_score, RED_DOT));
            s->cos_defined = s->norm_safety > 0 && s->norm_utility > 0;
            s->cos = s->cos_defined ? s->dot / (s->norm_safety * s->norm_utility + 1e-12) : 0.0;
            switch (o->oc) {
            case CAST_OC_NEG: s->oc = s->cos_defined && s->cos < 0 ? -s->cos : 0.0; break;
            case CAST_OC_HALF: s->oc = s->cos_defined ? (1.0 - s->cos) / 2.0 : 0.0; break;
            case CAST_OC_NEGDOT: s->oc = s->dot < 0 ? -s->dot : 0.0; break;
            }
        }
    /* functional sensitivity on the utility set */
    if (o->fs == CAST_FS_GATE) {
        for (int i = 0; i < n; i++) map->stat[i].fs = fabs(gu.gates[i]);
    } else if (o->fs == CAST_FS_SNIP) {
        float **w = cast_xmalloc(sizeof(float *) * (size_t)m->n_tensors);
        for (int i = 0; i < m->n_tensors; i++) w[i] = m->tensors[i].data;
        for (int i = 0; i < n; i++)
            map->stat[i].fs = head_reduce(m, w, gu.g, map->stat[i].layer, map->stat[i].head, o->kv_in_score, RED_ABS_PRODUCT);
        free(w);
    } else {
        for (int i = 0; i < n; i++) {
            /* the gates are the model's own switch for a head's output */
            float keep_gate = m->gates[i];
            m->gates[i] = 0.0f;
            double ablated;
            int bad = mean_loss(m, a, utility, micro, &ablated, err);
            m->gates[i] = keep_gate;
            if (bad) {
                cast_fail_prefix(err, utility_path);
                goto done;
            }
            map->stat[i].fs = ablated - map->utility.loss;
            tick(&pg, utility->n, "ablation");
        }
    }
    for (int i = 0; i < n; i++)
        if (!isfinite(map->stat[i].fs) || !isfinite(map->stat[i].oc) || !isfinite(map->stat[i].cos)) {
            cast_fail(err, "%s: non-finite gradient statistics at layer %d head %d", map->model_path, map->stat[i].layer,
                      map->stat[i].head);
            goto done;
        }
    cast_conflict_map_score(map);
    rc = 0;
done:
    cast_acts_free(a);
    cast_grads_free(&gs);
    cast_grads_free(&gu);
    if (rc) cast_conflict_map_free(map);
    return rc;
}

/* ---- normalisation, combination, ranks ------------------------------------- */

static void min_max(double *v, int n) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    for (int i = 0; i < n; i++) v[i] = hi > lo ? (v[i] - lo) / (hi - lo) : 0.0;
}

typedef struct { double v; int i; } value_index;

static int by_value_asc(const void *a, const void *b) {
    const value_index *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i - y->i;
}

/* Percentile ranks in [0, 1], ties sharing their mean rank. */
static void percentile_ranks(const double *v, double *out, int n) {
    value_index *s = cast_xmalloc(sizeof *s * (size_t)n);
    for (int i = 0; i < n; i++) s[i] = (value_index){v[i], i};
    qsort(s, (size_t)n, sizeof *s, by_value_asc);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && s[j + 1].v == s[i].v) j++;
        double r = n > 1 ? 0.5 * (i + j) / (n - 1) : 0.0;
        for (int k = i; k <= j; k++) out[s[k].i] = r;
        i = j + 1;
    }
    free(s);
}

static int by_score_desc(const void *a, const void *b) {
    const value_index *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i - y->i; /* ties: layer-major order */
}

void cast_conflict_map_score(cast_conflict_map *map) {
    int n = map->layers * map->heads;
    double *oc = cast_xmalloc(sizeof(double) * (size_t)n), *fs = cast_xmalloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        oc[i] = map->stat[i].oc;
        fs[i] = map->stat[i].fs;
    }
    if (map->combine == CAST_COMBINE_RANK) {
        double *ro = cast_xmalloc(sizeof(double) * (size_t)n), *rf = cast_xmalloc(sizeof(double) * (size_t)n);
        percentile_ranks(oc, ro, n);
        percentile_ranks(fs, rf, n);
        for (int i = 0; i < n; i++) map->stat[i].score = 0.5 * (ro[i] + rf[i]);
        free(ro);
        free(rf);
    } else {
        min_max(oc, n);
        min_max(fs, n);
        for (int i = 0; i < n; i++)
            map->stat[i].score = map->combine == CAST_COMBINE_PRODUCT ? oc[i] * fs[i] : 0.5 * (oc[i] + fs[i]);
    }
    /* no conflict, no score: a head whose gradients agree (or are zero) is never singled out */
    for (int i = 0; i < n; i++)
        if (!map->stat[i].cos_defined || map->stat[i].cos >= 0) map->stat[i].score = 0.0;
    value_index *order = cast_xmalloc(sizeof *order * (size_t)n);
    double total = 0;
    for (int i = 0; i < n; i++) {
        order[i] = (value_index){map->stat[i].score, i};
        total += map->stat[i].score;
    }
    qsort(order, (size_t)n, sizeof *order, by_score_desc);
    for (int r = 0; r < n; r++) map->stat[order[r].i].rank = r;
    int k = cast_top5_count(n);
    double top = 0;
    for (int r = 0; r < k; r++) top += order[r].v;
    map->concentration = total > 0 ? top / total : 0.0;
    free(order);
    free(oc);
    free(fs);
}

void cast_conflict_map_free(cast_conflict_map *map) {
    free(map->model_path);
    free(map->safety.path);
    free(map->utility.path);
    free(map->stat);
    memset(map, 0, sizeof *map);
}

/* ---- files ------------------------------------------------------------------ */

static void json_set(cast_buf *b, const char *name, const cast_set_stat *s) {
    cast_buf_printf(b, "\"%s\": {\"path\": ", name);
    cast_buf_json_string(b, s->path ? s->path : "", s->path ? strlen(s->path) : 0);
    cast_buf_printf(b, ", \"examples\": %d, \"tokens\": %lld, \"loss\": ", s->examples, (long long)s->tokens);
    cast_buf_json_number(b, s->loss);
    cast_buf_puts(b, "}");
}

void cast_conflict_map_json(const cast_conflict_map *map, cast_buf *b) {
    cast_buf_puts(b, "{\"model\": {\"path\": ");
    cast_buf_json_string(b, map->model_path, strlen(map->model_path));
    cast_buf_printf(b, ", \"architecture\": \"%s\", \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d},\n",
                    map->architecture, map->layers, map->heads, map->kv_heads, map->head_dim);
    cast_buf_puts(b, " \"data\": {");
    json_set(b, "safety", &map->safety);
    cast_buf_puts(b, ",\n          ");
    json_set(b, "utility", &map->utility);
    cast_buf_printf(b, "},\n \"settings\": {\"kv_in_score\": %s, \"oc\": \"%s\", \"fs\": \"%s\", \"combine\": \"%s\"},\n",
                    map->kv_in_score ? "true" : "false", cast_oc_name(map->oc), cast_fs_name(map->fs),
                    cast_combine_name(map->combine));
    cast_buf_puts(b, " \"heads\": [");
    int n = map->layers * map->heads;
    for (int i = 0; i < n; i++) {
        const cast_head_stat *s = &map->stat[i];
        cast_buf_printf(b, "%s\n  {\"layer\": %d, \"head\": %d, \"cos\": ", i ? "," : "", s->layer, s->head);
        if (s->cos_defined) cast_buf_json_number(b, s->cos);
        else cast_buf_puts(b, "null");
        cast_buf_puts(b, ", \"norm_safety\": ");
        cast_buf_json_number(b, s->norm_safety);
        cast_buf_puts(b, ", \"norm_utility\": ");
        cast_buf_json_number(b, s->norm_utility);
        cast_buf_puts(b, ", \"oc\": ");
        cast_buf_json_number(b, s->oc);
        cast_buf_puts(b, ", \"fs\": ");
        cast_buf_json_number(b, s->fs);
        cast_buf_puts(b, ", \"score\": ");
        cast_buf_json_number(b, s->score);
        cast_buf_printf(b, ", \"rank\": %d}", s->rank);
    }
    cast_buf_puts(b, "],\n \"concentration_top5pct\": ");
    cast_buf_json_number(b, map->concentration);
    cast_buf_puts(b, "}\n");
}

void cast_conflict_map_csv(const cast_conflict_map *map, cast_buf *b) {
    cast_buf_puts(b, "layer,head,cos,norm_safety,norm_utility,oc,fs,score,rank\n");
    int n = map->layers * map->heads;
    for (int i = 0; i < n; i++) {
        const cast_head_stat *s = &map->stat[i];
        cast_buf_printf(b, "%d,%d,", s->layer, s->head);
        if (s->cos_defined) cast_buf_json_number(b, s->cos);
        cast_buf_putc(b, ',');
        cast_buf_json_number(b, s->norm_safety);
        cast_buf_putc(b, ',');
        cast_buf_json_number(b, s->norm_utility);
        cast_buf_putc(b, ',');
        cast_buf_json_number(b, s->oc);
        cast_buf_putc(b, ',');
        cast_buf_json_number(b, s->fs);
        cast_buf_putc(b, ',');
        cast_buf_json_number(b, s->score);
        cast_buf_printf(b, ",%d\n", s->rank);
    }
}

static int load_set(const cast_json *data, const char *key, cast_set_stat *s, const char *path, cast_err *err) {
    cast_json *j = cast_json_get(data, key);
    if (!cast_json_is_object(j)) return cast_fail(err, "%s: missing data.%s", path, key);
    const char *p = NULL;
    int64_t ex = 0, tok = 0;
    if (cast_json_opt_string(j, "path", &p, path, err) || cast_json_opt_int(j, "examples", 0, &ex, path, err) ||
        cast_json_opt_int(j, "tokens", 0, &tok, path, err) || cast_json_opt_number(j, "loss", 0, &s->loss, path, err))
        return -1;
    s->path = cast_xstrdup(p ? p : "");
    s->examples = (int)ex;
    s->tokens = tok;
    return 0;
}

int cast_conflict_map_load(cast_conflict_map *map, const char *path, cast_err *err) {
    memset(map, 0, sizeof *map);
    cast_json *j = cast_json_parse_file(path, err);
    if (!j) return -1;
    int rc = -1;
    cast_json *model = cast_json_get(j, "model"), *settings = cast_json_get(j, "settings"), *heads = cast_json_get(j, "heads");
    int64_t L, H, K = 0, d = 0;
    const char *mp = NULL, *arch = NULL, *oc = NULL, *fs = NULL, *comb = NULL;
    if (!cast_json_is_object(model) || !cast_json_is_array(heads)) {
        cast_fail(err, "%s: not a conflict map (needs \"model\" and \"heads\")", path);
        goto done;
    }
    if (cast_json_req_int(model, "layers", &L, path, err) || cast_json_req_int(model, "heads", &H, path, err) ||
        cast_json_opt_int(model, "kv_heads", 0, &K, path, err) || cast_json_opt_int(model, "head_dim", 0, &d, path, err) ||
        cast_json_opt_string(model, "path", &mp, path, err) || cast_json_opt_string(model, "architecture", &arch, path, err))
        goto done;
    if (L <= 0 || H <= 0 || L * H > (1 << 20) || cast_json_array_size(heads) != L * H) {
        cast_fail(err, "%s: \"heads\" must list layers x heads = %lld entries", path, (long long)(L * H));
        goto done;
    }
    map->model_path = cast_xstrdup(mp ? mp : "");
    snprintf(map->architecture, sizeof map->architecture, "%s", arch ? arch : "");
    map->layers = (int)L;
    map->heads = (int)H;
    map->kv_heads = (int)K;
    map->head_dim = (int)d;
    int kv = 1;
    if (cast_json_opt_bool(settings, "kv_in_score", 1, &kv, path, err) || cast_json_opt_string(settings, "oc", &oc, path, err) ||
        cast_json_opt_string(settings, "fs", &fs, path, err) || cast_json_opt_string(settings, "combine", &comb, path, err))
        goto done;
    map->kv_in_score = kv;
    if ((oc && cast_oc_parse(oc, &map->oc)) || (fs && cast_fs_parse(fs, &map->fs)) ||
        (comb && cast_combine_parse(comb, &map->combine))) {
        cast_fail(err, "%s: unknown setting in \"settings\"", path);
        goto done;
    }
    cast_json *data = cast_json_get(j, "data");
    if (data && (load_set(data, "safety", &map->safety, path, err) || load_set(data, "utility", &map->utility, path, err)))
        goto done;
    map->stat = NULL;
    cast_head_stat *hs = cast_xcalloc((size_t)(L * H), sizeof *hs);
    map->stat = hs;
    for (int i = 0; i < L * H; i++) {
        cast_json *e = cast_json_array_item(heads, i);
        int64_t l, h, r;
        if (cast_json_req_int(e, "layer", &l, path, err) || cast_json_req_int(e, "head", &h, path, err) ||
            cast_json_opt_int(e, "rank", i, &r, path, err) || cast_json_opt_number(e, "norm_safety", 0, &hs[i].norm_safety, path, err) ||
            cast_json_opt_number(e, "norm_utility", 0, &hs[i].norm_utility, path, err) ||
            cast_json_opt_number(e, "oc", 0, &hs[i].oc, path, err) || cast_json_opt_number(e, "fs", 0, &hs[i].fs, path, err))
            goto done;
        if (l != i / H || h != i % H) {
            cast_fail(err, "%s: heads[%d] is layer %lld head %lld; expected layer-major order", path, i, (long long)l, (long long)h);
            goto done;
        }
        cast_json *cos = cast_json_get(e, "cos"), *score = cast_json_get(e, "score");
        hs[i].layer = (int)l;
        hs[i].head = (int)h;
        hs[i].rank = (int)r;
        hs[i].cos_defined = cast_json_is_number(cos);
        hs[i].cos = cast_json_number(cos);
        if (!cast_json_is_number(score) || !isfinite(cast_json_number(score))) {
            cast_fail(err, "%s: heads[%d] needs a numeric \"score\"", path, i);
            goto done;
        }
        hs[i].score = cast_json_number(score);
    }
    cast_json *conc = cast_json_get(j, "concentration_top5pct");
    map->concentration = cast_json_number(conc);
    rc = 0;
done:
    cast_json_free(j);
    if (rc) cast_conflict_map_free(map);
    return rc;
}
