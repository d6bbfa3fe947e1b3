#include "eval/attribute.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/stats.h"
#include "base/timer.h"
#include "model/forward.h"

const char *const cast_attr_map_columns[4] = {"cos", "oc", "fs", "score"};

const char *cast_attr_kind_name(cast_attr_kind k) {
    return k == CAST_ATTR_HEAD ? "head" : k == CAST_ATTR_GROUP ? "group" : "layer";
}

void cast_attr_opts_default(cast_attr_opts *o) {
    memset(o, 0, sizeof *o);
    o->on_long = CAST_ON_LONG_SKIP;
    o->max_k = 4;
    o->refusal_floor = 0.9;
}

/* ---- the pair of models --------------------------------------------------- */

int cast_attr_check_pair(const cast_model *tuned, const cast_model *base, cast_err *err) {
    const cast_config *a = &tuned->cfg, *b = &base->cfg;
    const char *tp = tuned->path ? tuned->path : "TUNED", *bp = base->path ? base->path : "BASE";
    if (strcmp(a->architecture, b->architecture))
        return cast_fail(err, "%s: architecture %s, but the base %s is %s", tp, a->architecture, bp, b->architecture);
    if (a->layers != b->layers || a->heads != b->heads || a->kv_heads != b->kv_heads || a->head_dim != b->head_dim ||
        a->hidden != b->hidden || a->vocab != b->vocab)
        return cast_fail(err,
                         "%s: shape %d layers x %d heads (%d kv, dim %d), hidden %d, vocab %d differs from the base %s "
                         "(%d x %d, %d kv, dim %d, hidden %d, vocab %d)",
                         tp, a->layers, a->heads, a->kv_heads, a->head_dim, a->hidden, a->vocab, bp, b->layers, b->heads,
                         b->kv_heads, b->head_dim, b->hidden, b->vocab);
    if (tuned->n_tensors != base->n_tensors)
        return cast_fail(err, "%s: %d tensors, but the base %s has %d", tp, tuned->n_tensors, bp, base->n_tensors);
    for (int i = 0; i < tuned->n_tensors; i++) {
        const cast_tensor *x = &tuned->tensors[i], *y = &base->tensors[i];
        if (strcmp(x->name, y->name) || x->ndim != y->ndim || x->numel != y->numel || x->shape[0] != y->shape[0] ||
            (x->ndim == 2 && x->shape[1] != y->shape[1]))
            return cast_fail(err, "%s: tensor %s [%lld, %lld] does not match the base %s's %s [%lld, %lld]", tp, x->name,
                             (long long)x->shape[0], (long long)(x->ndim == 2 ? x->shape[1] : 1), bp, y->name,
                             (long long)y->shape[0], (long long)(y->ndim == 2 ? y->shape[1] : 1));
    }
    return 0;
}

/* ---- resetting part of the tuned model ------------------------------------ */

/* A rectangle of one tensor: rows [r0, r0+nr) x columns [c0, c0+nc); a 1-D
 * tensor is one column. */
typedef struct span {
    int t;
    int64_t r0, nr, c0, nc;
} span;

/* The spans of a unit or a head set, and the tuned values they held while reset. */
typedef struct patch {
    span *s;
    int n, cap;
    float *saved;
    size_t cap_saved;
} patch;

static int64_t width(const cast_tensor *t) { return t->ndim == 2 ? t->shape[1] : 1; }

static void push_span(patch *p, span s) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->s = cast_xrealloc(p->s, sizeof(span) * (size_t)p->cap);
    }
    p->s[p->n++] = s;
}

static void patch_rows(patch *p, const cast_model *m, int t, int64_t r0, int64_t nr) {
    if (t >= 0) push_span(p, (span){t, r0, nr, 0, width(&m->tensors[t])});
}
static void patch_cols(patch *p, const cast_model *m, int t, int64_t c0, int64_t nc) {
    if (t >= 0) push_span(p, (span){t, 0, m->tensors[t].shape[0], c0, nc});
}
static void patch_tensor(patch *p, const cast_model *m, int t) {
    if (t >= 0) patch_rows(p, m, t, 0, m->tensors[t].shape[0]);
}

/* What a head, a k/v group and a layer own. These three functions are the
 * only place that knows the layout: cast_model_head's slices, whose rows are
 * offsets inside a fused qkv_proj (Phi-3) where there is one. */
static void add_head(patch *p, const cast_model *m, int layer, int head) {
    cast_head_slices s = cast_model_head(m, layer, head);
    patch_rows(p, m, s.wq, s.q_row0, s.d);
    patch_rows(p, m, s.bq, s.q_row0, s.d);
    patch_cols(p, m, s.wo, s.o_col0, s.d);
}

static void add_group_kv(patch *p, const cast_model *m, int layer, int group) {
    cast_head_slices s = cast_model_head(m, layer, group * (m->cfg.heads / m->cfg.kv_heads));
    patch_rows(p, m, s.wk, s.k_row0, s.d);
    patch_rows(p, m, s.bk, s.k_row0, s.d);
    patch_rows(p, m, s.wv, s.v_row0, s.d);
    patch_rows(p, m, s.bv, s.v_row0, s.d);
}

/* Every tensor of the layer: those the layer index names, and any other
 * tensor named "model.layers.<l>." (norms of other architectures, ...). */
static void add_layer(patch *p, const cast_model *m, int layer) {
    char prefix[48];
    snprintf(prefix, sizeof prefix, "model.layers.%d.", layer);
    size_t np = strlen(prefix);
    const cast_layer_index *x = &m->layer[layer];
    const int idx[] = CAST_LAYER_TENSORS(x);
    for (int t = 0; t < m->n_tensors; t++) { /* each tensor once, fused ones too */
        int in = !strncmp(m->tensors[t].name, prefix, np);
        for (size_t k = 0; k < sizeof idx / sizeof idx[0] && !in; k++) in = idx[k] == t;
        if (in) patch_tensor(p, m, t);
    }
}

/* A skip set of heads (layer-major indices): their q rows and o columns, and
 * a group's k/v rows when every head of the group is in the set. */
static void add_heads(patch *p, const cast_model *m, const int *heads, int n) {
    int H = m->cfg.heads, G = H / m->cfg.kv_heads;
    for (int i = 0; i < n; i++) add_head(p, m, heads[i] / H, heads[i] % H);
    for (int l = 0; l < m->cfg.layers; l++)
        for (int g = 0; g < m->cfg.kv_heads; g++) {
            int count = 0;
            for (int i = 0; i < n; i++) count += heads[i] / H == l && (heads[i] % H) / G == g;
            if (count == G) add_group_kv(p, m, l, g);
        }
}

static void add_all(patch *p, const cast_model *m) {
    for (int t = 0; t < m->n_tensors; t++) patch_tensor(p, m, t);
}

/* Row r of a span in the tuned model's f32 values (made f32 by patch_apply). */
static float *elem(const cast_model *m, const span *s, int64_t r) {
    return m->tensors[s->t].data + r * width(&m->tensors[s->t]) + s->c0;
}

/* Row r of a span as f32 into dst, whatever form the model holds it in. */
static void read_row(const cast_model *m, const span *s, int64_t r, float *dst) {
    cast_model_read(m, s->t, r * width(&m->tensors[s->t]) + s->c0, s->nc, dst);
}

/* 1 when some value of the spans differs bit for bit between the models. */
static int patch_changed(const patch *p, const cast_model *tuned, const cast_model *base) {
    int changed = 0;
    for (int i = 0; i < p->n && !changed; i++) {
        float *a = cast_xmalloc(sizeof(float) * (size_t)p->s[i].nc), *b = cast_xmalloc(sizeof(float) * (size_t)p->s[i].nc);
        for (int64_t r = p->s[i].r0; r < p->s[i].r0 + p->s[i].nr && !changed; r++) {
            read_row(tuned, &p->s[i], r, a);
            read_row(base, &p->s[i], r, b);
            changed = memcmp(a, b, sizeof(float) * (size_t)p->s[i].nc) != 0;
        }
        free(a);
        free(b);
    }
    return changed;
}

/* Saves the tuned values and writes the base's; restore undoes it in reverse
 * order, so that even overlapping spans come back bit for bit. */
static void patch_apply(patch *p, cast_model *tuned, const cast_model *base) {
    size_t need = 0;
    for (int i = 0; i < p->n; i++) need += (size_t)(p->s[i].nr * p->s[i].nc);
    if (need > p->cap_saved) {
        free(p->saved);
        p->saved = cast_xmalloc(sizeof(float) * need);
        p->cap_saved = need;
    }
    float *w = p->saved;
    for (int i = 0; i < p->n; i++) {
        cast_model_master(tuned, p->s[i].t);
        for (int64_t r = p->s[i].r0; r < p->s[i].r0 + p->s[i].nr; r++) {
            memcpy(w, elem(tuned, &p->s[i], r), sizeof(float) * (size_t)p->s[i].nc);
            read_row(base, &p->s[i], r, elem(tuned, &p->s[i], r));
            w += p->s[i].nc;
        }
    }
}

static void patch_restore(patch *p, cast_model *tuned) {
    size_t off = 0;
    for (int i = 0; i < p->n; i++) off += (size_t)(p->s[i].nr * p->s[i].nc);
    for (int i = p->n - 1; i >= 0; i--)
        for (int64_t r = p->s[i].r0 + p->s[i].nr - 1; r >= p->s[i].r0; r--) {
            off -= (size_t)p->s[i].nc;
            memcpy(elem(tuned, &p->s[i], r), p->saved + off, sizeof(float) * (size_t)p->s[i].nc);
        }
}

static void patch_clear(patch *p) { p->n = 0; }
static void patch_free(patch *p) {
    free(p->s);
    free(p->saved);
    memset(p, 0, sizeof *p);
}

/* ---- evaluating one state of the model ------------------------------------ */

typedef struct run {
    cast_model *m;
    const cast_model *base;
    const cast_tokenizer *tok;
    cast_eval_set *harmful, *benign, *utility;
    int n_utility, n_exact;
    cast_eval_opts eo; /* the caller's, with our progress hook */
    cast_seqs *gold;   /* [n_utility] gold answers of each utility set (batched per set, as cast score does) */
    cast_acts *acts;
    int64_t per_eval;  /* progress units of one evaluation */
    int64_t done, total;
    const char *stage;
    const cast_attr_opts *o;
    int evaluations;
    cast_attr_numbers tuned;
} run;

static void tick(run *r, int64_t units) {
    r->done += units;
    if (r->done > r->total) r->total = r->done;
    if (r->o->progress) r->o->progress(r->o->ctx, r->done, r->total, r->stage);
}

static void on_eval_units(void *ctx, int64_t units) { tick(ctx, units); }

static int gold_nll(run *r, double *nll, cast_err *err) {
    double sum = 0;
    int64_t count = 0;
    int b = r->eo.batch;
    for (int s = 0; s < r->n_utility; s++) {
        const cast_seqs *g = &r->gold[s];
        for (int i = 0; i < g->n; i += b) {
            cast_seqs part = cast_seqs_slice(g, i, g->n - i < b ? g->n - i : b);
            cast_loss l;
            if (cast_model_forward(r->m, r->acts, &part, NULL, &l, NULL, NULL, err)) return cast_fail_prefix(err, r->utility[s].path);
            sum += l.sum;
            count += l.count;
            tick(r, part.off[part.n] - part.off[0]);
        }
    }
    *nll = count ? sum / (double)count : NAN;
    if (count && !isfinite(*nll)) return cast_fail_as(err, CAST_E_NUMERIC, "the gold answers' NLL is not finite (%g)", *nll);
    return 0;
}

static int evaluate(run *r, cast_attr_numbers *out, cast_err *err) {
    out->refusal = out->benign = out->utility = out->nll = NAN;
    r->evaluations++;
    if (r->harmful) {
        if (cast_eval_set_run(r->harmful, r->m, r->tok, &r->eo, err)) return -1;
        out->refusal = r->harmful->refusal_rate;
    }
    if (r->benign) {
        if (cast_eval_set_run(r->benign, r->m, r->tok, &r->eo, err)) return -1;
        out->benign = r->benign->refusal_rate;
    }
    if (r->n_exact) {
        double sum = 0;
        for (int i = 0; i < r->n_utility; i++) {
            if (r->utility[i].metric != CAST_METRIC_EXACT) continue;
            if (cast_eval_set_run(&r->utility[i], r->m, r->tok, &r->eo, err)) return -1;
            sum += r->utility[i].exact_match;
        }
        out->utility = sum / r->n_exact;
    }
    if (r->n_utility && gold_nll(r, &out->nll, err)) return -1;
    return 0;
}

static cast_attr_effect effect_of(const cast_attr_numbers *reset, const cast_attr_numbers *tuned) {
    cast_attr_effect e;
    e.utility_recovered = 100 * (reset->utility - tuned->utility);
    e.utility_nll_recovered = tuned->nll - reset->nll;
    e.refusal_lost = 100 * (tuned->refusal - reset->refusal);
    e.benign_refusal_change = 100 * (reset->benign - tuned->benign);
    return e;
}

/* The model with the patch's spans reset. An unchanged patch leaves the model
 * bit-identical: the tuned numbers, no run (its work is credited to progress). */
static int evaluate_patch(run *r, patch *p, cast_attr_numbers *out, int *unchanged, cast_err *err) {
    *unchanged = !patch_changed(p, r->m, r->base);
    if (*unchanged) {
        *out = r->tuned;
        tick(r, r->per_eval);
        return 0;
    }
    patch_apply(p, r->m, r->base);
    int rc = evaluate(r, out, err);
    patch_restore(p, r->m);
    return rc;
}

/* Gold answers of a utility set, encoded as `cast score` encodes the file:
 * the evaluated examples (few-shot examples left out), an exact-answer item
 * with its worked response or else its bare answer. */
static int encode_gold(run *r, const cast_eval_set *s, cast_seqs *out, const cast_chat_template *tpl, const cast_attr_opts *o,
                       int *skipped, cast_err *err) {
    int first = s->metric == CAST_METRIC_EXACT ? s->shots : 0;
    cast_dataset view = s->ds;
    view.n = s->ds.n - first;
    view.ex = cast_xmalloc(sizeof(cast_example) * (size_t)(view.n ? view.n : 1));
    memcpy(view.ex, s->ds.ex + first, sizeof(cast_example) * (size_t)view.n);
    for (int i = 0; i < view.n; i++)
        if (!view.ex[i].response && view.ex[i].answer) view.ex[i].response = view.ex[i].answer;
    cast_encode_opts eo = {o->max_len, 0, o->on_long, r->m->cfg.vocab};
    int n_skip = 0;
    int rc = cast_dataset_encode_opts(&view, r->tok, tpl, &eo, out, &n_skip, NULL, err);
    free(view.ex);
    if (rc) return -1;
    for (int64_t t = 0; t < out->off[out->n] && rc == 0; t++)
        if (out->ids[t] < 0 || out->ids[t] >= r->m->cfg.vocab)
            rc = cast_fail(err, "%s: token id %d is outside the model's vocabulary (%d)", s->path, out->ids[t], r->m->cfg.vocab);
    *skipped += n_skip;
    return rc;
}

/* ---- ranking heads --------------------------------------------------------- */

static double key_of(const cast_attr_effect *e, int by_exact) {
    double v = by_exact ? e->utility_recovered : e->utility_nll_recovered;
    return isnan(v) ? -INFINITY : v;
}

/* 1 when a recovers more utility than b: the ranking metric, then NLL. */
static int better(const cast_attr_effect *a, const cast_attr_effect *b, int by_exact) {
    double ka = key_of(a, by_exact), kb = key_of(b, by_exact);
    if (ka != kb) return ka > kb;
    double na = isnan(a->utility_nll_recovered) ? -INFINITY : a->utility_nll_recovered;
    double nb = isnan(b->utility_nll_recovered) ? -INFINITY : b->utility_nll_recovered;
    return na > nb;
}

static const cast_attribution *sort_ctx;
static int by_recovery(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    const cast_attr_effect *ea = &sort_ctx->units[a].effect, *eb = &sort_ctx->units[b].effect;
    if (better(ea, eb, sort_ctx->by_exact)) return -1;
    if (better(eb, ea, sort_ctx->by_exact)) return 1;
    return a - b; /* layer-major order among equals */
}

static int feasible(const cast_attribution *a, const cast_attr_numbers *x) {
    return !a->floor_applies || x->refusal >= a->refusal_floor - 1e-12;
}

/* Greedy: S_k = S_{k-1} + the candidate whose reset recovers the most utility
 * among those that keep refusal >= the floor. */
static int search(run *r, cast_attribution *a, const int *ks, int n_k, cast_err *err) {
    int G = a->heads / a->kv_heads, max_k = ks[n_k - 1];
    int *set = cast_xmalloc(sizeof(int) * (size_t)(max_k + 1));
    int *used = cast_xcalloc((size_t)a->n_candidates, sizeof(int));
    patch p = {0};
    int found = 1, rc = 0, next = 0;
    char stage[32];
    r->stage = stage;
    a->step_s = cast_xcalloc((size_t)max_k, sizeof(double));
    for (int k = 1; k <= max_k && rc == 0; k++) {
        double t0 = cast_now_s();
        snprintf(stage, sizeof stage, "k=%d", k);
        int best = -1;
        cast_attr_numbers best_x = {0};
        cast_attr_effect best_e = {0};
        for (int c = 0; c < a->n_candidates && found; c++) {
            if (used[c]) continue;
            int h = a->ranking[c];
            cast_attr_numbers x;
            if (k == 1 && G > 1) {
                x = a->units[h].reset; /* one head of a shared group: its head unit */
            } else {
                int unchanged;
                set[k - 1] = h;
                patch_clear(&p);
                add_heads(&p, r->m, set, k);
                if ((rc = evaluate_patch(r, &p, &x, &unchanged, err))) break;
            }
            cast_attr_effect e = effect_of(&x, &a->tuned);
            if (feasible(a, &x) && (best < 0 || better(&e, &best_e, a->by_exact))) best = c, best_x = x, best_e = e;
        }
        if (rc) break;
        a->step_s[a->n_steps++] = cast_now_s() - t0;
        if (best < 0) found = 0;
        else set[k - 1] = a->ranking[best], used[best] = 1;
        if (next < n_k && ks[next] == k) {
            cast_attr_set *b = &a->best[next++];
            b->k = k;
            b->found = found;
            if (found) {
                b->heads = cast_xmalloc(sizeof(int) * (size_t)k);
                memcpy(b->heads, set, sizeof(int) * (size_t)k);
                b->reset = best_x;
                b->effect = best_e;
            } else {
                b->reset = (cast_attr_numbers){NAN, NAN, NAN, NAN};
                b->effect = (cast_attr_effect){NAN, NAN, NAN, NAN};
            }
        }
    }
    a->n_best = next;
    patch_free(&p);
    free(set);
    free(used);
    return rc;
}

/* ---- the whole run ---------------------------------------------------------- */

static int check_ks(const cast_attr_opts *o, int n_cand, int **ks, int *n_k, cast_err *err) {
    *ks = NULL;
    *n_k = 0;
    if (o->ks && o->n_k > 0) {
        *ks = cast_xmalloc(sizeof(int) * (size_t)o->n_k);
        for (int i = 0; i < o->n_k; i++) {
            if (o->ks[i] < 1 || o->ks[i] > n_cand || (i > 0 && o->ks[i] <= o->ks[i - 1])) {
                free(*ks);
                *ks = NULL;
                return cast_fail(err, "set sizes must increase and lie in 1..%d (the candidate heads); got %d", n_cand,
                                 o->ks[i]);
            }
            (*ks)[i] = o->ks[i];
        }
        *n_k = o->n_k;
        return 0;
    }
    if (o->max_k < 0) return cast_fail(err, "the largest set size must be >= 0 (got %d)", o->max_k);
    int max_k = o->max_k < n_cand ? o->max_k : n_cand; /* no larger set than the candidates */
    if (max_k == 0) return 0;
    *ks = cast_xmalloc(sizeof(int) * (size_t)max_k);
    for (int i = 0; i < max_k; i++) (*ks)[i] = i + 1;
    *n_k = max_k;
    return 0;
}

static void fill_units(cast_attribution *a, int heads_only) {
    int L = a->layers, H = a->heads, K = a->kv_heads;
    a->n_units = heads_only ? L * H : L * H + L * K + L;
    a->units = cast_xcalloc((size_t)a->n_units, sizeof(cast_attr_unit));
    cast_attr_unit *u = a->units;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++, u++) u->kind = CAST_ATTR_HEAD, u->layer = l, u->index = h;
    if (heads_only) return;
    for (int l = 0; l < L; l++)
        for (int g = 0; g < K; g++, u++) u->kind = CAST_ATTR_GROUP, u->layer = l, u->index = g;
    for (int l = 0; l < L; l++, u++) u->kind = CAST_ATTR_LAYER, u->layer = l, u->index = -1;
}

static void unit_patch(patch *p, const cast_model *m, const cast_attr_unit *u) {
    patch_clear(p);
    if (u->kind == CAST_ATTR_HEAD) {
        add_head(p, m, u->layer, u->index);
    } else if (u->kind == CAST_ATTR_GROUP) {
        int G = m->cfg.heads / m->cfg.kv_heads;
        for (int h = u->index * G; h < (u->index + 1) * G; h++) add_head(p, m, u->layer, h);
        add_group_kv(p, m, u->layer, u->index);
    } else {
        add_layer(p, m, u->layer);
    }
}

/* Tensors outside every layer that tuning changed (embeddings, final norm, lm_head). */
static void outside_changes(cast_attribution *a, const cast_model *m, const cast_model *base) {
    patch in = {0};
    for (int l = 0; l < m->cfg.layers; l++) add_layer(&in, m, l);
    for (int t = 0; t < m->n_tensors; t++) {
        int inside = 0;
        for (int i = 0; i < in.n && !inside; i++) inside = in.s[i].t == t;
        if (inside) continue;
        patch one = {0};
        patch_tensor(&one, m, t);
        if (patch_changed(&one, m, base)) {
            a->changed_outside = cast_xrealloc(a->changed_outside, sizeof(char *) * (size_t)(a->n_changed_outside + 1));
            a->changed_outside[a->n_changed_outside++] = cast_xstrdup(m->tensors[t].name);
        }
        patch_free(&one);
    }
    patch_free(&in);
}

int cast_attribute(cast_model *tuned, const cast_model *base, const cast_tokenizer *tok, const cast_chat_template *tpl,
                   cast_eval_set *harmful, cast_eval_set *benign, cast_eval_set *utility, int n_utility,
                   const cast_eval_opts *eo, const cast_attr_opts *o, cast_attribution *a, cast_err *err) {
    memset(a, 0, sizeof *a);
    if (cast_attr_check_pair(tuned, base, err)) return -1;
    if (!harmful && !benign && n_utility <= 0) return cast_fail(err, "attribution needs at least one evaluation set");
    if (!(o->refusal_floor >= 0 && o->refusal_floor <= 1))
        return cast_fail(err, "the refusal floor is a fraction in [0, 1] (got %g)", o->refusal_floor);
    if (o->candidates < 0) return cast_fail(err, "the number of candidate heads must be >= 0 (got %d)", o->candidates);
    const cast_config *c = &tuned->cfg;
    int n_heads = c->layers * c->heads;
    int n_cand = o->candidates > 0 ? (o->candidates < n_heads ? o->candidates : n_heads) : (n_heads < 16 ? n_heads : 16);
    int *ks = NULL, n_k = 0;
    if (n_utility > 0 && check_ks(o, n_cand, &ks, &n_k, err)) return -1;

    run r;
    memset(&r, 0, sizeof r);
    r.m = tuned;
    r.base = base;
    r.tok = tok;
    r.harmful = harmful;
    r.benign = benign;
    r.utility = utility;
    r.n_utility = n_utility;
    r.eo = *eo;
    r.eo.progress = on_eval_units;
    r.eo.ctx = &r;
    r.o = o;
    r.stage = "tuned";

    a->tuned_path = cast_xstrdup(tuned->path ? tuned->path : "");
    a->base_path = cast_xstrdup(base->path ? base->path : "");
    a->harmful_path = harmful ? cast_xstrdup(harmful->path) : NULL;
    a->benign_path = benign ? cast_xstrdup(benign->path) : NULL;
    a->n_utility = n_utility > 0 ? n_utility : 0;
    a->utility_paths = cast_xcalloc((size_t)(a->n_utility ? a->n_utility : 1), sizeof(char *));
    for (int i = 0; i < a->n_utility; i++) {
        a->utility_paths[i] = cast_xstrdup(utility[i].path);
        a->n_exact += utility[i].metric == CAST_METRIC_EXACT;
    }
    r.n_exact = a->n_exact;
    a->layers = c->layers;
    a->heads = c->heads;
    a->kv_heads = c->kv_heads;
    a->refusal_floor = o->refusal_floor;
    a->floor_applies = harmful != NULL;
    a->by_exact = a->n_exact > 0;
    a->max_len = o->max_len;
    a->on_long = o->on_long;
    fill_units(a, o->heads_only);
    outside_changes(a, tuned, base);

    int rc = -1;
    patch p = {0};
    r.acts = cast_acts_new();
    r.gold = cast_xcalloc((size_t)(a->n_utility ? a->n_utility : 1), sizeof(cast_seqs));
    for (int i = 0; i < a->n_utility; i++)
        if (encode_gold(&r, &utility[i], &r.gold[i], tpl, o, &a->gold_skipped, err)) goto done;

    /* the plan, for the progress total */
    r.per_eval = (harmful ? harmful->units : 0) + (benign ? benign->units : 0);
    for (int i = 0; i < a->n_utility; i++) {
        a->gold_tokens += cast_seqs_scored(&r.gold[i]);
        r.per_eval += r.gold[i].off[r.gold[i].n] + (utility[i].metric == CAST_METRIC_EXACT ? utility[i].units : 0);
    }
    int64_t evals = 2 + a->n_units;
    if (n_k) {
        int G = c->heads / c->kv_heads, max_k = ks[n_k - 1];
        for (int k = 1; k <= max_k; k++)
            if (k > 1 || G == 1) evals += n_cand - (k - 1);
    }
    r.total = evals * r.per_eval;

    double t0 = cast_now_s();
    if (evaluate(&r, &a->tuned, err)) goto done;
    r.tuned = a->tuned;
    r.stage = "base";
    {
        int unchanged;
        add_all(&p, tuned);
        if (evaluate_patch(&r, &p, &a->base, &unchanged, err)) goto done;
    }
    r.stage = "units";
    for (int u = 0; u < a->n_units; u++) {
        cast_attr_unit *x = &a->units[u];
        unit_patch(&p, tuned, x);
        if (evaluate_patch(&r, &p, &x->reset, &x->unchanged, err)) goto done;
        x->effect = effect_of(&x->reset, &a->tuned);
    }
    a->units_s = cast_now_s() - t0;

    if (a->n_utility) {
        a->ranking = cast_xmalloc(sizeof(int) * (size_t)n_heads);
        for (int i = 0; i < n_heads; i++) a->ranking[i] = i;
        sort_ctx = a;
        qsort(a->ranking, (size_t)n_heads, sizeof(int), by_recovery);
        sort_ctx = NULL;
    }
    if (n_k) {
        t0 = cast_now_s();
        a->n_candidates = n_cand;
        a->best = cast_xcalloc((size_t)n_k, sizeof(cast_attr_set));
        if (search(&r, a, ks, n_k, err)) goto done;
        a->search_s = cast_now_s() - t0;
    }
    rc = 0;
done:
    a->evaluations = r.evaluations;
    patch_free(&p);
    cast_acts_free(r.acts);
    for (int i = 0; i < a->n_utility && r.gold; i++) cast_seqs_free(&r.gold[i]);
    free(r.gold);
    free(ks);
    if (rc) cast_attribution_free(a);
    return rc;
}

void cast_attribution_free(cast_attribution *a) {
    free(a->tuned_path);
    free(a->base_path);
    free(a->harmful_path);
    free(a->benign_path);
    for (int i = 0; i < a->n_utility; i++) free(a->utility_paths[i]);
    free(a->utility_paths);
    for (int i = 0; i < a->n_changed_outside; i++) free(a->changed_outside[i]);
    free(a->changed_outside);
    free(a->units);
    free(a->ranking);
    free(a->step_s);
    for (int i = 0; i < a->n_best; i++) free(a->best[i].heads);
    free(a->best);
    free(a->map_path);
    memset(a, 0, sizeof *a);
}

/* ---- comparison with a conflict map ------------------------------------------ */

int cast_attribution_compare_map(cast_attribution *a, const cast_conflict_map *map, const char *map_path, cast_err *err) {
    if (map->layers != a->layers || map->heads != a->heads)
        return cast_fail(err, "%s: a map of %d layers x %d heads, but the models have %d x %d", map_path, map->layers, map->heads,
                         a->layers, a->heads);
    int n = a->layers * a->heads;
    double *col = cast_xmalloc(sizeof(double) * (size_t)n), *ex = cast_xmalloc(sizeof(double) * (size_t)n),
           *nl = cast_xmalloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        ex[i] = a->units[i].effect.utility_recovered; /* head units come first, layer-major */
        nl[i] = a->units[i].effect.utility_nll_recovered;
    }
    a->map_heads = 0;
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < n; i++) {
            const cast_head_stat *s = &map->stat[i];
            col[i] = k == 0 ? (s->cos_defined ? s->cos : NAN) : k == 1 ? s->oc : k == 2 ? s->fs : s->score;
        }
        int used;
        a->map_rho_exact[k] = cast_spearman(col, ex, n, NULL);
        a->map_rho_nll[k] = cast_spearman(col, nl, n, &used);
        if (k == 3) a->map_heads = used; /* heads with a score and an NLL recovery */
    }
    free(col);
    free(ex);
    free(nl);
    free(a->map_path);
    a->map_path = cast_xstrdup(map_path);
    return 0;
}
