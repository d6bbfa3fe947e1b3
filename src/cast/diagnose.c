#include "cast/diagnose.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "base/rng.h"
#include "cast/memory.h"
#include "cast/select.h"
#include "dist/dist.h"
#include "model/forward.h"
#include "train/trainer.h"

static const char *const oc_names[] = {"neg", "half", "negdot", "trajectory"};
static const char *const fs_names[] = {"gate", "ablation", "snip", "gate-abs"};
static const char *const combine_names[] = {"product", "rank", "sum"};
static const char *const unit_names[] = {"head", "group"};

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
    if (parse_name(s, oc_names, 4, &v)) return -1;
    *out = (cast_oc_kind)v;
    return 0;
}
int cast_fs_parse(const char *s, cast_fs_kind *out) {
    int v;
    if (parse_name(s, fs_names, 4, &v)) return -1;
    *out = (cast_fs_kind)v;
    return 0;
}
int cast_combine_parse(const char *s, cast_combine_kind *out) {
    int v;
    if (parse_name(s, combine_names, 3, &v)) return -1;
    *out = (cast_combine_kind)v;
    return 0;
}
int cast_unit_parse(const char *s, cast_unit_kind *out) {
    int v;
    if (parse_name(s, unit_names, 2, &v)) return -1;
    *out = (cast_unit_kind)v;
    return 0;
}
const char *cast_oc_name(cast_oc_kind k) { return oc_names[k]; }
const char *cast_fs_name(cast_fs_kind k) { return fs_names[k]; }
const char *cast_combine_name(cast_combine_kind k) { return combine_names[k]; }
const char *cast_unit_name(cast_unit_kind k) { return unit_names[k]; }

void cast_diag_opts_default(cast_diag_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_in_score = 1;
    o->oc = CAST_OC_NEG;
    o->fs = CAST_FS_GATE;
    o->combine = CAST_COMBINE_PRODUCT;
    o->micro_batch = 4;
    o->unit = CAST_UNIT_HEAD;
    /* the probe steps as `cast tune` would take them by default */
    o->probe_steps = 8;
    o->probe_batch = 16;
    o->probe_lr = 2e-5;
    o->null_permutations = 1000;
}

int cast_diag_grad_passes(const cast_model *m, const cast_seqs *safety, const cast_seqs *utility, const cast_diag_opts *o) {
    int L = m->cfg.layers;
    if (o->grad_passes > 0) return o->grad_passes < L ? o->grad_passes : L;
    cast_mem_opts mo;
    cast_mem_opts_default(&mo);
    mo.storage = m->storage;
    mo.micro_batch = o->micro_batch > 0 ? o->micro_batch : 4;
    int ls = cast_seqs_longest(safety), lu = cast_seqs_longest(utility);
    mo.seq_len = ls > lu ? ls : lu;
    mo.threads = omp_get_max_threads();
    mo.budget = o->memory_budget;
    mo.stream = m->stream; /* as the caller set it */
    cast_mem_plan plan;
    cast_mem_diagnose(&m->cfg, &mo, &plan);
    return plan.grad_passes;
}

int cast_map_unit_heads(const cast_conflict_map *map) {
    return map->unit == CAST_UNIT_GROUP && map->kv_heads > 0 ? map->heads / map->kv_heads : 1;
}

int cast_head_conflicts(const cast_conflict_map *map, const cast_head_stat *s) {
    if (map->oc == CAST_OC_TRAJECTORY) return s->oc > 0;
    return s->cos_defined && s->cos < 0;
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

/* a and b are per-tensor arrays (gradients or weights) indexed like m->tensors.
 * The unit is heads [head, head + count) of one layer (count > 1: a k/v group,
 * whose k/v rows count once). */
static double unit_reduce(const cast_model *m, float *const *a, float *const *b, int layer, int head, int count, int kv_in_score,
                          reduction r) {
    cast_head_slices s = cast_model_head(m, layer, head);
    int64_t D = m->cfg.hidden, d = s.d, Hd = (int64_t)m->cfg.heads * d;
    double sum = 0;
    for (int h = head; h < head + count; h++) {
        s = cast_model_head(m, layer, h);
        sum += reduce_span(a[s.wq] + s.q_row0 * D, b[s.wq] + s.q_row0 * D, d * D, r);
        if (s.bq >= 0) sum += reduce_span(a[s.bq] + s.q_row0, b[s.bq] + s.q_row0, d, r);
        for (int64_t row = 0; row < D; row++)
            sum += reduce_span(a[s.wo] + row * Hd + s.o_col0, b[s.wo] + row * Hd + s.o_col0, d, r);
    }
    if (kv_in_score) {
        /* k_row0 / v_row0: the group's rows, offset inside a fused qkv_proj */
        sum += reduce_span(a[s.wk] + s.k_row0 * D, b[s.wk] + s.k_row0 * D, d * D, r);
        sum += reduce_span(a[s.wv] + s.v_row0 * D, b[s.wv] + s.v_row0 * D, d * D, r);
        if (s.bk >= 0) sum += reduce_span(a[s.bk] + s.k_row0, b[s.bk] + s.k_row0, d, r);
        if (s.bv >= 0) sum += reduce_span(a[s.bv] + s.v_row0, b[s.bv] + s.v_row0, d, r);
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

/* --fs gate-abs: after one example's backward, its gate gradients are in
 * gates (zeroed before it); each unit adds |Σ of its heads' gradients|. */
static void add_gate_abs(float *gates, int n_heads, int per_unit, double *gate_abs) {
    for (int u = 0; u < n_heads / per_unit; u++) {
        double g = 0;
        for (int i = u * per_unit; i < (u + 1) * per_unit; i++) g += gates[i];
        gate_abs[u] += fabs(g);
    }
    memset(gates, 0, sizeof(float) * (size_t)n_heads);
}

/* G = ∇ of the set's token-weighted mean loss, accumulated over micro-batches.
 * gate_abs (NULL unless --fs gate-abs): one example per pass instead, so that
 * each example's gate gradient can be read off alone. */
static int set_gradient(const cast_model *m, cast_acts *a, const cast_seqs *set, const char *path, cast_grads *gr,
                        cast_set_stat *st, progress *pg, const char *stage, int micro, int per_unit, double *gate_abs,
                        cast_err *err) {
    int64_t scored = cast_seqs_scored(set);
    if (set->n == 0) return cast_fail(err, "%s: empty set", path);
    if (scored == 0) return cast_fail(err, "%s: no scored tokens (every label is -100)", path);
    if (gate_abs) micro = 1;
    double sum = 0;
    /* data parallel: micro-batch k on rank k mod size, partial sums added after */
    for (int i = 0, k = 0; i < set->n; i += micro, k++) {
        if (!cast_dist_mine(k)) continue;
        cast_seqs part = cast_seqs_slice(set, i, set->n - i < micro ? set->n - i : micro);
        cast_loss l;
        if (cast_model_forward_backward(m, a, &part, gr, (double)scored, &l, err)) return cast_fail_prefix(err, path);
        sum += l.sum;
        if (gate_abs) add_gate_abs(gr->gates, m->cfg.layers * m->cfg.heads, per_unit, gate_abs);
        tick(pg, (int64_t)part.n * cast_dist_size(), stage);
    }
    cast_grads_sum_ranks(gr);
    cast_dist_sum_f64(&sum, 1);
    if (gate_abs) cast_dist_sum_f64(gate_abs, m->cfg.layers * m->cfg.heads / per_unit);
    if (!isfinite(sum)) return cast_fail_as(err, CAST_E_NUMERIC, "%s: the loss is not finite", path);
    st->path = cast_xstrdup(path);
    st->examples = set->n;
    st->tokens = scored;
    st->loss = sum / (double)scored;
    return 0;
}

static int mean_loss(const cast_model *m, cast_acts *a, const cast_seqs *set, int micro, double *out, cast_err *err) {
    double sum = 0;
    int64_t count = 0;
    for (int i = 0, k = 0; i < set->n; i += micro, k++) {
        if (!cast_dist_mine(k)) continue;
        cast_seqs part = cast_seqs_slice(set, i, set->n - i < micro ? set->n - i : micro);
        cast_loss l;
        if (cast_model_forward(m, a, &part, NULL, &l, NULL, NULL, err)) return -1;
        sum += l.sum;
        count += l.count;
    }
    cast_dist_sum_f64(&sum, 1);
    cast_dist_sum_i64(&count, 1);
    *out = sum / (double)count;
    return 0;
}

/* ---- --oc trajectory: the safety probe --------------------------------------- */

static void copy_rows(float *dst, const float *src, int64_t row0, int64_t rows, int64_t cols) {
    memcpy(dst + row0 * cols, src + row0 * cols, sizeof(float) * (size_t)(rows * cols));
}

/* Copies the unit's slices (heads [head, head + count) of layer: q rows and
 * bias, o columns; the group's k/v rows and biases when kv_in_score) from the
 * per-tensor arrays src into the model's weights. */
static void unit_copy(cast_model *m, float *const *src, int layer, int head, int count, int kv_in_score) {
    int64_t D = m->cfg.hidden, Hd = (int64_t)m->cfg.heads * m->cfg.head_dim;
    cast_head_slices s = cast_model_head(m, layer, head);
    for (int h = head; h < head + count; h++) {
        s = cast_model_head(m, layer, h);
        copy_rows(m->tensors[s.wq].data, src[s.wq], s.q_row0, s.d, D);
        if (s.bq >= 0) copy_rows(m->tensors[s.bq].data, src[s.bq], s.q_row0, s.d, 1);
        for (int64_t row = 0; row < D; row++)
            memcpy(m->tensors[s.wo].data + row * Hd + s.o_col0, src[s.wo] + row * Hd + s.o_col0, sizeof(float) * (size_t)s.d);
    }
    if (kv_in_score) {
        copy_rows(m->tensors[s.wk].data, src[s.wk], s.k_row0, s.d, D);
        copy_rows(m->tensors[s.wv].data, src[s.wv], s.v_row0, s.d, D);
        if (s.bk >= 0) copy_rows(m->tensors[s.bk].data, src[s.bk], s.k_row0, s.d, 1);
        if (s.bv >= 0) copy_rows(m->tensors[s.bv].data, src[s.bv], s.v_row0, s.d, 1);
    }
}

static int probe_step(void *ctx, const cast_step_log *log) {
    progress *pg = ctx;
    (void)log;
    tick(pg, pg->o->probe_batch, "probe");
    return 0;
}

/* rise[u] = L_u(θ0 + Δ_u) − L_u(θ0), where Δ = θ_N − θ0 after N AdamW steps
 * on the safety set with every attention tensor trainable (cast_train, as
 * `cast tune --skip 0` would take them) and Δ_u is unit u's slice of Δ. One
 * training run, then one utility forward per unit; θ0 is restored bit for bit
 * (the slices are copied, never added). */
static int trajectory_rises(cast_model *m, cast_acts *a, const cast_seqs *safety, const cast_seqs *utility, const char *safety_path,
                            const char *utility_path, const cast_diag_opts *o, int micro, int per_unit, double *rise, progress *pg,
                            cast_err *err) {
    if (o->probe_steps <= 0 || o->probe_batch <= 0 || !(o->probe_lr > 0))
        return cast_fail(err, "the trajectory probe needs steps, batch and learning rate > 0");
    int L = m->cfg.layers, H = m->cfg.heads;
    cast_mask k;
    cast_mask_for_heads(&k, m, CAST_TRAIN_ATTN, NULL, 0, CAST_KV_FREEZE_ALL);
    float **theta0 = cast_xcalloc((size_t)m->n_tensors, sizeof(float *)), **theta_n = cast_xcalloc((size_t)m->n_tensors, sizeof(float *));
    for (int i = 0; i < m->n_tensors; i++)
        if (k.trainable[i]) {
            theta0[i] = cast_xmalloc(sizeof(float) * (size_t)m->tensors[i].numel);
            memcpy(theta0[i], cast_model_master(m, i), sizeof(float) * (size_t)m->tensors[i].numel);
        }
    cast_train_opts to;
    cast_train_opts_default(&to);
    to.adam.lr = o->probe_lr;
    to.steps = o->probe_steps;
    to.batch = o->probe_batch;
    to.micro_batch = micro;
    to.seed = o->seed;
    to.anchor_weight = 0;
    to.on_step = probe_step;
    to.ctx = pg;
    int rc = cast_train(m, &k, safety, NULL, &to, err);
    if (rc) cast_fail_prefix(err, safety_path);
    /* θ_N aside, θ0 back in place whatever happened */
    for (int i = 0; i < m->n_tensors; i++)
        if (k.trainable[i]) {
            theta_n[i] = cast_xmalloc(sizeof(float) * (size_t)m->tensors[i].numel);
            memcpy(theta_n[i], m->tensors[i].data, sizeof(float) * (size_t)m->tensors[i].numel);
            memcpy(m->tensors[i].data, theta0[i], sizeof(float) * (size_t)m->tensors[i].numel);
        }
    double base = 0;
    if (rc == 0 && (rc = mean_loss(m, a, utility, micro, &base, err))) cast_fail_prefix(err, utility_path);
    if (rc == 0) tick(pg, utility->n, "probe");
    for (int u = 0; rc == 0 && u < L * H / per_unit; u++) {
        int l = u * per_unit / H, h = u * per_unit % H;
        double loss;
        unit_copy(m, theta_n, l, h, per_unit, o->kv_in_score);
        if ((rc = mean_loss(m, a, utility, micro, &loss, err))) cast_fail_prefix(err, utility_path);
        unit_copy(m, theta0, l, h, per_unit, o->kv_in_score);
        rise[u] = loss - base;
        tick(pg, utility->n, "probe");
    }
    for (int i = 0; i < m->n_tensors; i++) {
        free(theta0[i]);
        free(theta_n[i]);
    }
    free(theta0);
    free(theta_n);
    cast_mask_free(&k);
    return rc;
}

/* ---- the map ------------------------------------------------------------------ */

int cast_diagnose_map(cast_model *m, const cast_seqs *safety, const cast_seqs *utility, const char *safety_path,
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
    map->unit = o->unit;
    if (o->oc == CAST_OC_TRAJECTORY) {
        map->probe_steps = o->probe_steps;
        map->probe_batch = o->probe_batch;
        map->probe_lr = o->probe_lr;
    }
    map->stat = NULL;
    /* a unit: per_unit consecutive heads of one layer (a k/v group's heads are consecutive) */
    int per_unit = cast_map_unit_heads(map), n_units = n / per_unit;
    int gate_grads = o->fs == CAST_FS_GATE || o->fs == CAST_FS_GATE_ABS;

    cast_acts *a = cast_acts_new();
    double *unit_fs = cast_xcalloc((size_t)n_units, sizeof(double)), *rise = cast_xcalloc((size_t)n_units, sizeof(double));
    double *dot = cast_xcalloc((size_t)n_units, sizeof(double)), *nss = cast_xcalloc((size_t)n_units, sizeof(double)),
           *nuu = cast_xcalloc((size_t)n_units, sizeof(double));
    float *gates = gate_grads ? cast_xcalloc((size_t)n, sizeof(float)) : NULL;
    int passes = cast_diag_grad_passes(m, safety, utility, o);
    int64_t extra = 0;
    if (o->fs == CAST_FS_ABLATION) extra += (int64_t)n_units * utility->n;
    if (o->oc == CAST_OC_TRAJECTORY)
        extra += (int64_t)o->probe_steps * o->probe_batch + (int64_t)(n_units + 1) * utility->n;
    progress pg = {o, 0, (int64_t)passes * (safety->n + utility->n) + extra};
    int rc = -1;

    /* The gradients of both sets for the attention tensors of a group of
     * layers at a time, top group first: a group's backward stops at its
     * lowest layer, and a layer's gradient is the same whichever group it is
     * in, so the map does not depend on the number of passes. The per-head
     * gate gradients come with the last group (layer 0: a full backward). */
    for (int p = 0; p < passes; p++) {
        int hi = L - p * L / passes, lo = L - (p + 1) * L / passes, last = p == passes - 1;
        int *keep = cast_xcalloc((size_t)m->n_tensors, sizeof(int));
        for (int l = lo; l < hi; l++) {
            const cast_layer_index *x = &m->layer[l];
            int idx[] = {x->wq, x->bq, x->wk, x->bk, x->wv, x->bv, x->wo};
            for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++)
                if (idx[k] >= 0) keep[idx[k]] = 1;
        }
        cast_grads gs, gu;
        cast_grads_init(&gs, m, keep, 0);
        cast_grads_init(&gu, m, keep, gate_grads && last);
        free(keep);
        cast_set_stat st_s = {0}, st_u = {0};
        int bad = set_gradient(m, a, safety, safety_path, &gs, &st_s, &pg, "safety", micro, per_unit, NULL, err) ||
                  set_gradient(m, a, utility, utility_path, &gu, &st_u, &pg, "utility", micro, per_unit,
                               o->fs == CAST_FS_GATE_ABS && last ? unit_fs : NULL, err);
        if (!bad && p == 0) map->safety = st_s, map->utility = st_u;
        else free(st_s.path), free(st_u.path);
        if (!bad) {
            float **w = o->fs == CAST_FS_SNIP ? cast_xcalloc((size_t)m->n_tensors, sizeof(float *)) : NULL;
            for (int i = 0; w && i < m->n_tensors; i++)
                if (gu.g[i]) w[i] = cast_model_master(m, i);
            for (int u = lo * H / per_unit; u < hi * H / per_unit; u++) {
                int l = u * per_unit / H, h0 = u * per_unit % H;
                dot[u] = unit_reduce(m, gs.g, gu.g, l, h0, per_unit, o->kv_in_score, RED_DOT);
                nss[u] = unit_reduce(m, gs.g, gs.g, l, h0, per_unit, o->kv_in_score, RED_DOT);
                nuu[u] = unit_reduce(m, gu.g, gu.g, l, h0, per_unit, o->kv_in_score, RED_DOT);
                if (w) unit_fs[u] = unit_reduce(m, w, gu.g, l, h0, per_unit, o->kv_in_score, RED_ABS_PRODUCT);
            }
            free(w);
            if (gates && last) memcpy(gates, gu.gates, sizeof(float) * (size_t)n);
        }
        cast_grads_free(&gs);
        cast_grads_free(&gu);
        if (bad) goto done;
    }
    if (o->oc == CAST_OC_TRAJECTORY && trajectory_rises(m, a, safety, utility, safety_path, utility_path, o, micro, per_unit, rise, &pg, err))
        goto done;

    /* functional sensitivity of each unit on the utility set */
    if (o->fs == CAST_FS_GATE) {
        /* a group's gate scales all its heads: dL/dξ_g = Σ_h dL/dξ_h */
        for (int u = 0; u < n_units; u++) {
            double g = 0;
            for (int i = u * per_unit; i < (u + 1) * per_unit; i++) g += gates[i];
            unit_fs[u] = fabs(g);
        }
    } else if (o->fs == CAST_FS_ABLATION) {
        for (int u = 0; u < n_units; u++) {
            /* the gates are the model's own switch for a head's output */
            float *gate = m->gates + u * per_unit, keep_gate[1];
            float *kept = per_unit == 1 ? keep_gate : cast_xmalloc(sizeof(float) * (size_t)per_unit);
            memcpy(kept, gate, sizeof(float) * (size_t)per_unit);
            memset(gate, 0, sizeof(float) * (size_t)per_unit);
            double ablated;
            int bad = mean_loss(m, a, utility, micro, &ablated, err);
            memcpy(gate, kept, sizeof(float) * (size_t)per_unit);
            if (kept != keep_gate) free(kept);
            if (bad) {
                cast_fail_prefix(err, utility_path);
                goto done;
            }
            unit_fs[u] = ablated - map->utility.loss;
            tick(&pg, utility->n, "ablation");
        }
    }

    map->stat = cast_xcalloc((size_t)n, sizeof *map->stat);
    for (int u = 0; u < n_units; u++) {
        int l = u * per_unit / H, h0 = u * per_unit % H;
        cast_head_stat s = {0};
        s.dot = dot[u];
        s.norm_safety = sqrt(nss[u]);
        s.norm_utility = sqrt(nuu[u]);
        s.cos_defined = s.norm_safety > 0 && s.norm_utility > 0;
        s.cos = s.cos_defined ? s.dot / (s.norm_safety * s.norm_utility + 1e-12) : 0.0;
        switch (o->oc) {
        case CAST_OC_NEG: s.oc = s.cos_defined && s.cos < 0 ? -s.cos : 0.0; break;
        case CAST_OC_HALF: s.oc = s.cos_defined ? (1.0 - s.cos) / 2.0 : 0.0; break;
        case CAST_OC_NEGDOT: s.oc = s.dot < 0 ? -s.dot : 0.0; break;
        case CAST_OC_TRAJECTORY:
            s.rise = rise[u];
            s.oc = rise[u] > 0 ? rise[u] : 0.0;
            break;
        }
        s.fs = o->fs == CAST_FS_GATE && per_unit == 1 ? fabs(gates[u]) : unit_fs[u];
        s.layer = l;
        for (int h = h0; h < h0 + per_unit; h++) {
            s.head = h;
            map->stat[l * H + h] = s;
        }
    }
    for (int i = 0; i < n; i++)
        if (!isfinite(map->stat[i].fs) || !isfinite(map->stat[i].oc) || !isfinite(map->stat[i].cos)) {
            cast_fail_as(err, CAST_E_NUMERIC, "%s: non-finite gradient statistics at layer %d head %d", map->model_path, map->stat[i].layer,
                      map->stat[i].head);
            goto done;
        }
    cast_conflict_map_score(map);
    cast_conflict_map_null(map, o->null_permutations, o->seed);
    rc = 0;
done:
    free(unit_fs);
    free(rise);
    free(dot), free(nss), free(nuu), free(gates);
    cast_acts_free(a);
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

/* Scores of n units from their raw OC and FS (oc and fs are overwritten),
 * 0 where the unit does not conflict. */
static void unit_scores(double *oc, double *fs, const int *conflict, int n, cast_combine_kind how, double *score) {
    if (how == CAST_COMBINE_RANK) {
        double *ro = cast_xmalloc(sizeof(double) * (size_t)n), *rf = cast_xmalloc(sizeof(double) * (size_t)n);
        percentile_ranks(oc, ro, n);
        percentile_ranks(fs, rf, n);
        for (int i = 0; i < n; i++) score[i] = 0.5 * (ro[i] + rf[i]);
        free(ro);
        free(rf);
    } else {
        min_max(oc, n);
        min_max(fs, n);
        for (int i = 0; i < n; i++) score[i] = how == CAST_COMBINE_PRODUCT ? oc[i] * fs[i] : 0.5 * (oc[i] + fs[i]);
    }
    /* no conflict, no score: a unit whose gradients agree (or are zero) is never singled out */
    for (int i = 0; i < n; i++)
        if (!conflict[i]) score[i] = 0.0;
}

/* Share of Σ score held by the top max(1, round(0.05 n)) units; order
 * receives the units by score, highest first (ties in index order). */
static double top_share(const double *score, int n, value_index *order) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        order[i] = (value_index){score[i], i};
        total += score[i];
    }
    qsort(order, (size_t)n, sizeof *order, by_score_desc);
    int k = cast_top5_count(n);
    double top = 0;
    for (int r = 0; r < k; r++) top += order[r].v;
    return total > 0 ? top / total : 0.0;
}

/* The units' raw OC, FS and conflict flags, read off their first heads. */
static int unit_inputs(const cast_conflict_map *map, double *oc, double *fs, int *conflict) {
    int per_unit = cast_map_unit_heads(map), n_units = map->layers * map->heads / per_unit;
    for (int u = 0; u < n_units; u++) {
        const cast_head_stat *s = &map->stat[u * per_unit];
        oc[u] = s->oc;
        fs[u] = s->fs;
        conflict[u] = cast_head_conflicts(map, s);
    }
    return n_units;
}

void cast_conflict_map_score(cast_conflict_map *map) {
    int n = map->layers * map->heads, per_unit = cast_map_unit_heads(map);
    double *oc = cast_xmalloc(sizeof(double) * (size_t)n), *fs = cast_xmalloc(sizeof(double) * (size_t)n),
           *score = cast_xmalloc(sizeof(double) * (size_t)n);
    int *conflict = cast_xmalloc(sizeof(int) * (size_t)n);
    int n_units = unit_inputs(map, oc, fs, conflict);
    unit_scores(oc, fs, conflict, n_units, map->combine, score);
    value_index *order = cast_xmalloc(sizeof *order * (size_t)n_units);
    map->concentration = top_share(score, n_units, order);
    /* a group's heads take consecutive ranks, so that the top k heads are whole groups */
    for (int r = 0; r < n_units; r++)
        for (int j = 0; j < per_unit; j++) {
            cast_head_stat *s = &map->stat[order[r].i * per_unit + j];
            s->score = score[order[r].i];
            s->rank = r * per_unit + j;
        }
    free(order);
    free(oc);
    free(fs);
    free(score);
    free(conflict);
}

void cast_conflict_map_null(cast_conflict_map *map, int permutations, uint64_t seed) {
    map->null_permutations = permutations > 0 ? permutations : 0;
    map->seed = seed;
    map->concentration_null_mean = map->concentration_null_p = NAN;
    if (permutations <= 0) return;
    int n = map->layers * map->heads;
    double *oc = cast_xmalloc(sizeof(double) * (size_t)n), *fs = cast_xmalloc(sizeof(double) * (size_t)n),
           *oc_r = cast_xmalloc(sizeof(double) * (size_t)n), *fs_r = cast_xmalloc(sizeof(double) * (size_t)n),
           *score = cast_xmalloc(sizeof(double) * (size_t)n);
    int *conflict = cast_xmalloc(sizeof(int) * (size_t)n), *perm = cast_xmalloc(sizeof(int) * (size_t)n);
    int n_units = unit_inputs(map, oc, fs, conflict);
    value_index *order = cast_xmalloc(sizeof *order * (size_t)n_units);
    for (int u = 0; u < n_units; u++) perm[u] = u;
    /* each permutation a Fisher–Yates shuffle of the previous one; OC and
     * the conflict flags stay on their units, FS moves */
    cast_rng r;
    cast_rng_seed(&r, seed);
    double sum = 0;
    int at_least = 0;
    for (int p = 0; p < permutations; p++) {
        cast_rng_shuffle(&r, perm, n_units);
        for (int u = 0; u < n_units; u++) {
            oc_r[u] = oc[u];
            fs_r[u] = fs[perm[u]];
        }
        unit_scores(oc_r, fs_r, conflict, n_units, map->combine, score);
        double c = top_share(score, n_units, order);
        sum += c;
        at_least += c >= map->concentration;
    }
    map->concentration_null_mean = sum / permutations;
    map->concentration_null_p = (1.0 + at_least) / (1.0 + permutations);
    free(oc);
    free(fs);
    free(oc_r);
    free(fs_r);
    free(score);
    free(conflict);
    free(perm);
    free(order);
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
    cast_buf_printf(b, ", \"examples\": %d, \"skipped\": %d, \"tokens\": %lld, \"loss\": ", s->examples, s->skipped,
                    (long long)s->tokens);
    cast_buf_json_number(b, s->loss);
    cast_buf_puts(b, "}");
}

/* The per-head fields of conflict_map.json and .csv, in order: one table for
 * both writers. "rise" appears in --oc trajectory maps only. */
typedef enum { FIELD_INT, FIELD_NUMBER, FIELD_COS } field_kind;
typedef struct head_field {
    const char *name;
    field_kind kind;
    size_t offset;
    int trajectory_only;
} head_field;

static const head_field head_fields[] = {
    {"layer", FIELD_INT, offsetof(cast_head_stat, layer), 0},
    {"head", FIELD_INT, offsetof(cast_head_stat, head), 0},
    {"cos", FIELD_COS, offsetof(cast_head_stat, cos), 0},
    {"norm_safety", FIELD_NUMBER, offsetof(cast_head_stat, norm_safety), 0},
    {"norm_utility", FIELD_NUMBER, offsetof(cast_head_stat, norm_utility), 0},
    {"rise", FIELD_NUMBER, offsetof(cast_head_stat, rise), 1},
    {"oc", FIELD_NUMBER, offsetof(cast_head_stat, oc), 0},
    {"fs", FIELD_NUMBER, offsetof(cast_head_stat, fs), 0},
    {"score", FIELD_NUMBER, offsetof(cast_head_stat, score), 0},
    {"rank", FIELD_INT, offsetof(cast_head_stat, rank), 0},
};
enum { N_HEAD_FIELDS = sizeof head_fields / sizeof head_fields[0] };

static int field_present(const cast_conflict_map *map, const head_field *f) {
    return !f->trajectory_only || map->oc == CAST_OC_TRAJECTORY;
}

/* An undefined cos is null in the JSON and an empty CSV field. */
static void put_field(cast_buf *b, const head_field *f, const cast_head_stat *s, int json) {
    const char *p = (const char *)s + f->offset;
    if (f->kind == FIELD_INT) cast_buf_printf(b, "%d", *(const int *)p);
    else if (f->kind == FIELD_COS && !s->cos_defined) cast_buf_puts(b, json ? "null" : "");
    else cast_buf_json_number(b, *(const double *)p);
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
    cast_buf_printf(b, "},\n \"settings\": {\"kv_in_score\": %s, \"oc\": \"%s\", \"fs\": \"%s\", \"combine\": \"%s\", \"unit\": \"%s\"",
                    map->kv_in_score ? "true" : "false", cast_oc_name(map->oc), cast_fs_name(map->fs),
                    cast_combine_name(map->combine), cast_unit_name(map->unit));
    if (map->oc == CAST_OC_TRAJECTORY) {
        cast_buf_printf(b, ", \"probe_steps\": %d, \"probe_batch\": %d, \"probe_lr\": ", map->probe_steps, map->probe_batch);
        cast_buf_json_number(b, map->probe_lr);
    }
    cast_buf_printf(b, ", \"null_permutations\": %d, \"seed\": %llu},\n", map->null_permutations, (unsigned long long)map->seed);
    cast_buf_puts(b, " \"heads\": [");
    int n = map->layers * map->heads;
    for (int i = 0; i < n; i++) {
        cast_buf_puts(b, i ? ",\n  " : "\n  ");
        for (int f = 0, first = 1; f < N_HEAD_FIELDS; f++) {
            if (!field_present(map, &head_fields[f])) continue;
            cast_buf_printf(b, "%s\"%s\": ", first ? "{" : ", ", head_fields[f].name);
            put_field(b, &head_fields[f], &map->stat[i], 1);
            first = 0;
        }
        cast_buf_putc(b, '}');
    }
    cast_buf_puts(b, "],\n \"concentration_top5pct\": ");
    cast_buf_json_number(b, map->concentration);
    cast_buf_puts(b, ", \"concentration_null_mean\": ");
    cast_buf_json_number(b, map->concentration_null_mean);
    cast_buf_puts(b, ", \"concentration_null_p\": ");
    cast_buf_json_number(b, map->concentration_null_p);
    cast_buf_puts(b, "}\n");
}

void cast_conflict_map_csv(const cast_conflict_map *map, cast_buf *b) {
    for (int f = 0, first = 1; f < N_HEAD_FIELDS; f++)
        if (field_present(map, &head_fields[f])) {
            cast_buf_printf(b, "%s%s", first ? "" : ",", head_fields[f].name);
            first = 0;
        }
    cast_buf_putc(b, '\n');
    int n = map->layers * map->heads;
    for (int i = 0; i < n; i++) {
        for (int f = 0, first = 1; f < N_HEAD_FIELDS; f++) {
            if (!field_present(map, &head_fields[f])) continue;
            if (!first) cast_buf_putc(b, ',');
            put_field(b, &head_fields[f], &map->stat[i], 0);
            first = 0;
        }
        cast_buf_putc(b, '\n');
    }
}

/* An optional integer field that must fit an int in [lo, hi]. */
static int opt_int_in(const cast_json *obj, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out,
                      const char *path, cast_err *err) {
    if (cast_json_opt_int(obj, key, dflt, out, path, err)) return -1;
    if (*out < lo || *out > hi)
        return cast_fail(err, "%s: \"%s\" %lld is out of range (%lld to %lld)", path, key, (long long)*out, (long long)lo,
                         (long long)hi);
    return 0;
}

static int load_set(const cast_json *data, const char *key, cast_set_stat *s, const char *path, cast_err *err) {
    cast_json *j = cast_json_get(data, key);
    if (!cast_json_is_object(j)) return cast_fail(err, "%s: missing data.%s", path, key);
    const char *p = NULL;
    int64_t ex = 0, tok = 0;
    if (cast_json_opt_string(j, "path", &p, path, err) || opt_int_in(j, "examples", 0, 0, INT_MAX, &ex, path, err) ||
        cast_json_opt_int(j, "tokens", 0, &tok, path, err) || cast_json_opt_number(j, "loss", 0, &s->loss, path, err))
        return -1;
    s->path = cast_xstrdup(p ? p : "");
    s->examples = (int)ex;
    s->tokens = tok;
    return 0;
}

int cast_conflict_map_load(cast_conflict_map *map, const char *path, cast_err *err) {
    memset(map, 0, sizeof *map);
    char *text;
    size_t n;
    if (cast_read_file(path, &text, &n, err)) return -1;
    int rc = cast_conflict_map_parse(map, text, n, path, err);
    free(text);
    return rc;
}

int cast_conflict_map_parse(cast_conflict_map *map, const char *text, size_t n, const char *path, cast_err *err) {
    memset(map, 0, sizeof *map);
    cast_json *j = cast_json_parse(text, n, path, err);
    if (!j) return -1;
    int rc = -1;
    cast_json *model = cast_json_get(j, "model"), *settings = cast_json_get(j, "settings"), *heads = cast_json_get(j, "heads");
    int64_t L, H, K = 0, d = 0;
    const char *mp = NULL, *arch = NULL, *oc = NULL, *fs = NULL, *comb = NULL, *unit = NULL;
    if (!cast_json_is_object(model) || !cast_json_is_array(heads)) {
        cast_fail(err, "%s: not a conflict map (needs \"model\" and \"heads\")", path);
        goto done;
    }
    if (cast_json_req_int(model, "layers", &L, path, err) || cast_json_req_int(model, "heads", &H, path, err) ||
        opt_int_in(model, "kv_heads", 0, 0, INT_MAX, &K, path, err) || opt_int_in(model, "head_dim", 0, 0, INT_MAX, &d, path, err) ||
        cast_json_opt_string(model, "path", &mp, path, err) || cast_json_opt_string(model, "architecture", &arch, path, err))
        goto done;
    /* each factor bounded first: their product must not overflow */
    if (L <= 0 || H <= 0 || L > (1 << 20) || H > (1 << 20) || L * H > (1 << 20) || cast_json_array_size(heads) != L * H) {
        if (L > 0 && H > 0 && L <= (1 << 20) && H <= (1 << 20))
            cast_fail(err, "%s: \"heads\" must list layers x heads = %lld entries", path, (long long)(L * H));
        else cast_fail(err, "%s: model.layers %lld and model.heads %lld must be 1 to 2^20 each", path, (long long)L, (long long)H);
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
        cast_json_opt_string(settings, "fs", &fs, path, err) || cast_json_opt_string(settings, "combine", &comb, path, err) ||
        cast_json_opt_string(settings, "unit", &unit, path, err))
        goto done;
    map->kv_in_score = kv;
    const char *bad_key = oc && cast_oc_parse(oc, &map->oc)                 ? "oc"
                          : fs && cast_fs_parse(fs, &map->fs)               ? "fs"
                          : comb && cast_combine_parse(comb, &map->combine) ? "combine"
                          : unit && cast_unit_parse(unit, &map->unit)       ? "unit"
                                                                            : NULL;
    if (bad_key) {
        const char *v = !strcmp(bad_key, "oc") ? oc : !strcmp(bad_key, "fs") ? fs : !strcmp(bad_key, "combine") ? comb : unit;
        cast_fail(err, "%s: settings.%s \"%s\" is not one cast knows", path, bad_key, v);
        goto done;
    }
    if (map->unit == CAST_UNIT_GROUP && (K <= 0 || H % K != 0)) {
        cast_fail(err, "%s: a map of group units needs model.kv_heads dividing model.heads", path);
        goto done;
    }
    int64_t steps = 0, pbatch = 0, perms = 0, seed = 0;
    if (opt_int_in(settings, "probe_steps", 0, 0, INT_MAX, &steps, path, err) ||
        opt_int_in(settings, "probe_batch", 0, 0, INT_MAX, &pbatch, path, err) ||
        cast_json_opt_number(settings, "probe_lr", 0, &map->probe_lr, path, err) ||
        opt_int_in(settings, "null_permutations", 0, 0, INT_MAX, &perms, path, err) ||
        cast_json_opt_int(settings, "seed", 0, &seed, path, err))
        goto done;
    map->probe_steps = (int)steps;
    map->probe_batch = (int)pbatch;
    map->null_permutations = (int)perms;
    map->seed = (uint64_t)seed;
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
            opt_int_in(e, "rank", i, 0, L * H - 1, &r, path, err) || cast_json_opt_number(e, "norm_safety", 0, &hs[i].norm_safety, path, err) ||
            cast_json_opt_number(e, "norm_utility", 0, &hs[i].norm_utility, path, err) ||
            cast_json_opt_number(e, "oc", 0, &hs[i].oc, path, err) || cast_json_opt_number(e, "fs", 0, &hs[i].fs, path, err) ||
            cast_json_opt_number(e, "rise", 0, &hs[i].rise, path, err))
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
        /* selection takes whole groups only if a group's heads share its numbers */
        int first = i - i % cast_map_unit_heads(map);
        if (first != i && (hs[i].score != hs[first].score || hs[i].oc != hs[first].oc || hs[i].fs != hs[first].fs)) {
            cast_fail(err, "%s: heads[%d] differs from heads[%d], the first head of its k/v group (unit group)", path, i, first);
            goto done;
        }
    }
    cast_json *conc = cast_json_get(j, "concentration_top5pct"), *null_mean = cast_json_get(j, "concentration_null_mean"),
              *null_p = cast_json_get(j, "concentration_null_p");
    map->concentration = cast_json_number(conc);
    map->concentration_null_mean = cast_json_is_number(null_mean) ? cast_json_number(null_mean) : NAN;
    map->concentration_null_p = cast_json_is_number(null_p) ? cast_json_number(null_p) : NAN;
    rc = 0;
done:
    cast_json_free(j);
    if (rc) cast_conflict_map_free(map);
    return rc;
}
