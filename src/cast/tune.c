#include "cast/tune.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/timer.h"

void cast_tune_opts_default(cast_tune_opts *o) {
    memset(o, 0, sizeof *o);
    o->strategy = CAST_STRATEGY_CAST;
    o->skip = 0.05;
    o->skip_heads = -1;
    o->scope = CAST_TRAIN_ATTN;
    o->kv_freeze = CAST_KV_FREEZE_ALL;
    cast_train_opts_default(&o->train);
    o->train.anchor_weight = -1;
}

static int skips_heads(cast_strategy s) { return s != CAST_STRATEGY_FULL && s != CAST_STRATEGY_PCGRAD; }

int cast_tune_budget(const cast_tune_opts *o, int n_heads) {
    return !skips_heads(o->strategy) ? 0 : o->fixed ? o->n_fixed : o->skip_heads >= 0 ? o->skip_heads : cast_top_count(o->skip, n_heads);
}

double cast_tune_anchor_weight(const cast_tune_opts *o) {
    return o->train.anchor_weight >= 0 ? o->train.anchor_weight : o->strategy == CAST_STRATEGY_PCGRAD ? 1.0 : 0.0;
}

int cast_tune_plan(const cast_model *m, const cast_conflict_map *map, const cast_tune_opts *o, cast_tune_run *run, cast_err *err) {
    memset(run, 0, sizeof *run);
    int n = m->cfg.layers * m->cfg.heads;
    int skips = skips_heads(o->strategy), k = cast_tune_budget(o, n);
    if (k < 0 || k > n) return cast_fail(err, "cannot skip %d heads of %d", k, n);
    run->skip = cast_xcalloc((size_t)n + 1, sizeof(int));
    if (o->fixed && skips) {
        for (int i = 0; i < k; i++)
            if (o->fixed[i] < 0 || o->fixed[i] >= n) {
                cast_tune_run_free(run);
                return cast_fail(err, "head index %d is outside the model's %d heads", o->fixed[i], n);
            }
        memcpy(run->skip, o->fixed, sizeof(int) * (size_t)k);
    } else if (k > 0) {
        if (cast_strategy_needs_map(o->strategy)) {
            if (!map) {
                cast_tune_run_free(run);
                return cast_fail(err, "strategy %s needs a conflict map", cast_strategy_name(o->strategy));
            }
            if (map->layers != m->cfg.layers || map->heads != m->cfg.heads) {
                cast_tune_run_free(run);
                return cast_fail(err, "the conflict map is of %d x %d heads, the model has %d x %d", map->layers, map->heads,
                                 m->cfg.layers, m->cfg.heads);
            }
            k = cast_select_count(map, o->strategy, k); /* a map of k/v groups skips whole groups */
        }
        if (cast_select_heads(map, m->cfg.layers, m->cfg.heads, o->strategy, k, o->select_seed, run->skip, err)) {
            cast_tune_run_free(run);
            return -1;
        }
    }
    run->k = k;
    cast_mask_for_heads(&run->mask, m, o->scope, run->skip, k, o->kv_freeze);
    run->trainable = cast_mask_count(&run->mask, m);
    return 0;
}

int cast_tune_train(cast_model *m, cast_tune_run *run, const cast_seqs *safety, const cast_seqs *utility, const cast_tune_opts *o,
                    cast_err *err) {
    cast_train_opts t = o->train;
    t.pcgrad = o->strategy == CAST_STRATEGY_PCGRAD;
    t.anchor_weight = cast_tune_anchor_weight(o);
    if (t.pcgrad && !(utility && utility->n > 0)) return cast_fail(err, "strategy pcgrad needs a utility set");
    if (o->keep_before && !run->before) {
        cast_model_fingerprint(m, run->fingerprint); /* of the base, before training */
        run->before = cast_xcalloc((size_t)m->n_tensors, sizeof(float *));
        run->before_held = cast_xcalloc((size_t)m->n_tensors, sizeof(cast_tensor));
        for (int i = 0; i < m->n_tensors; i++)
            if (run->mask.trainable[i]) {
                if (!m->tensors[i].data) {
                    run->before_held[i] = m->tensors[i]; /* the file's values stay readable in the mapping */
                    continue;
                }
                run->before[i] = cast_xmalloc(sizeof(float) * (size_t)m->tensors[i].numel);
                memcpy(run->before[i], m->tensors[i].data, sizeof(float) * (size_t)m->tensors[i].numel);
            }
    }
    double t0 = cast_now_s();
    int rc = cast_train(m, &run->mask, safety, (t.pcgrad || t.anchor_weight > 0) ? utility : NULL, &t, err);
    run->wall_s = cast_now_s() - t0;
    return rc;
}

int cast_tune_save(const cast_model *m, const cast_tune_run *run, const char *dir, cast_dtype dtype, const char *delta_path,
                   cast_delta_format fmt, cast_err *err) {
    if (cast_model_save(m, dir, dtype, err)) return -1;
    if (!delta_path) return 0;
    return cast_tune_delta_write(m, run, delta_path, fmt, err);
}

int cast_tune_delta_write(const cast_model *m, const cast_tune_run *run, const char *path, cast_delta_format fmt, cast_err *err) {
    if (!run->before) return cast_fail(err, "%s: a delta needs the starting values (keep_before)", path);
    float **b = cast_xcalloc((size_t)m->n_tensors, sizeof(float *));
    for (int i = 0; i < m->n_tensors; i++) {
        const cast_tensor *h = &run->before_held[i];
        b[i] = run->before[i];
        if (!b[i] && h->half) {
            b[i] = cast_alloc_floats((size_t)h->numel);
            cast_half_to_f32(b[i], h->half, h->half_type, h->numel);
        }
    }
    int rc = cast_delta_write(path, m, (const float *const *)b, &run->mask, fmt, run->fingerprint, err);
    for (int i = 0; i < m->n_tensors; i++)
        if (b[i] != run->before[i]) free(b[i]);
    free(b);
    return rc;
}

void cast_tune_run_free(cast_tune_run *run) {
    if (run->before)
        for (int i = 0; i < run->mask.n; i++) free(run->before[i]);
    free(run->before);
    free(run->before_held);
    free(run->skip);
    if (run->mask.n) cast_mask_free(&run->mask);
    memset(run, 0, sizeof *run);
}
