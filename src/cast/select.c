#include "cast/select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/rng.h"

static const char *const strategy_names[] = {"cast", "random", "inverse", "oc", "fs", "full", "pcgrad"};
static const char *const scope_names[] = {"attn", "attn+mlp", "all"};

int cast_strategy_parse(const char *s, cast_strategy *out) {
    for (int i = 0; s && i < 7; i++)
        if (!strcmp(s, strategy_names[i])) {
            *out = (cast_strategy)i;
            return 0;
        }
    return -1;
}
const char *cast_strategy_name(cast_strategy s) { return strategy_names[s]; }
int cast_strategy_needs_map(cast_strategy s) { return s == CAST_STRATEGY_CAST || s == CAST_STRATEGY_INVERSE || s == CAST_STRATEGY_OC || s == CAST_STRATEGY_FS; }

int cast_scope_parse(const char *s, cast_train_scope *out) {
    for (int i = 0; s && i < 3; i++)
        if (!strcmp(s, scope_names[i])) {
            *out = (cast_train_scope)i;
            return 0;
        }
    return -1;
}
const char *cast_scope_name(cast_train_scope s) { return scope_names[s]; }

typedef struct { double key; int i; } keyed;

static int by_key_desc(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->i - y->i;
}

int cast_select_heads(const cast_conflict_map *map, int layers, int heads, cast_strategy s, int k, uint64_t seed, int *skip,
                      cast_err *err) {
    int n = layers * heads;
    if (k < 0 || k > n) return cast_fail(err, "cannot skip %d of %d heads", k, n);
    if (k == 0 || s == CAST_STRATEGY_FULL || s == CAST_STRATEGY_PCGRAD) return 0;
    if (s == CAST_STRATEGY_RANDOM) {
        int *all = cast_xmalloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) all[i] = i;
        cast_rng r;
        cast_rng_seed(&r, seed);
        cast_rng_shuffle(&r, all, n);
        memcpy(skip, all, sizeof(int) * (size_t)k);
        free(all);
        return 0;
    }
    if (!map) return cast_fail(err, "strategy %s needs a conflict map", cast_strategy_name(s));
    if (map->layers != layers || map->heads != heads)
        return cast_fail(err, "the conflict map is of a model with %d layers x %d heads (%s), this model has %d x %d", map->layers,
                         map->heads, map->model_path, layers, heads);
    int per_unit = cast_map_unit_heads(map);
    if (k % per_unit)
        return cast_fail(err, "the conflict map scores k/v groups of %d heads: %d heads are not whole groups", per_unit, k);
    /* a group's heads share their key and are consecutive, so the order below
     * lists whole groups: the top k heads are k / per_unit groups */
    keyed *order = cast_xmalloc(sizeof *order * (size_t)n);
    for (int i = 0; i < n; i++) {
        const cast_head_stat *h = &map->stat[i];
        double key = 0;
        switch (s) {
        case CAST_STRATEGY_CAST: key = h->score; break;
        case CAST_STRATEGY_OC: key = h->oc; break;
        case CAST_STRATEGY_FS: key = h->fs; break;
        case CAST_STRATEGY_INVERSE:
            /* conflicting heads first, lowest score first; then the rest, lowest score first */
            key = (cast_head_conflicts(map, h) ? 2.0 : 0.0) - h->score;
            break;
        default: break;
        }
        order[i] = (keyed){key, i};
    }
    qsort(order, (size_t)n, sizeof *order, by_key_desc);
    for (int i = 0; i < k; i++) skip[i] = order[i].i;
    free(order);
    return 0;
}

int cast_select_count(const cast_conflict_map *map, cast_strategy s, int k) {
    if (!map || !cast_strategy_needs_map(s) || k <= 0) return k;
    int per_unit = cast_map_unit_heads(map), n = map->layers * map->heads;
    /* the nearest whole number of groups, halves up, at least one */
    int groups = (2 * k + per_unit) / (2 * per_unit);
    if (groups < 1) groups = 1;
    return groups * per_unit < n ? groups * per_unit : n;
}

void cast_mask_for_heads(cast_mask *k, const cast_model *m, cast_train_scope scope, const int *skip, int n_skip, cast_kv_freeze kv) {
    const cast_config *c = &m->cfg;
    cast_mask_init(k, m);
    for (int l = 0; l < c->layers; l++) {
        const cast_layer_index *x = &m->layer[l];
        int attn[] = {x->wq, x->bq, x->wk, x->bk, x->wv, x->bv, x->wo, x->bo};
        int mlp[] = {x->wg, x->bg, x->wu, x->bu, x->wd, x->bd};
        for (size_t i = 0; i < sizeof attn / sizeof attn[0]; i++)
            if (attn[i] >= 0) k->trainable[attn[i]] = 1;
        if (scope != CAST_TRAIN_ATTN)
            for (size_t i = 0; i < sizeof mlp / sizeof mlp[0]; i++)
                if (mlp[i] >= 0) k->trainable[mlp[i]] = 1;
    }
    if (scope == CAST_TRAIN_ALL)
        for (int i = 0; i < m->n_tensors; i++) k->trainable[i] = 1;
    int H = c->heads, K = c->kv_heads, group = H / K;
    int *skipped = cast_xcalloc((size_t)(c->layers * H), sizeof(int));
    for (int i = 0; i < n_skip; i++) skipped[skip[i]] = 1;
    /* the head unit's slices, rows inside a fused qkv_proj included; q/k norms
     * and other per-layer norms are not in the attention scope at all */
    for (int l = 0; l < c->layers; l++) {
        for (int h = 0; h < H; h++) {
            if (!skipped[l * H + h]) continue;
            cast_head_slices s = cast_model_head(m, l, h);
            cast_mask_freeze_rows(k, m, s.wq, s.q_row0, s.d);
            cast_mask_freeze_rows(k, m, s.bq, s.q_row0, s.d);
            cast_mask_freeze_cols(k, m, s.wo, s.o_col0, s.d);
        }
        for (int g = 0; g < K; g++) {
            int count = 0;
            for (int h = g * group; h < (g + 1) * group; h++) count += skipped[l * H + h];
            if (kv == CAST_KV_FREEZE_ALL ? count == group : count > 0) {
                cast_head_slices s = cast_model_head(m, l, g * group);
                cast_mask_freeze_rows(k, m, s.wk, s.k_row0, s.d);
                cast_mask_freeze_rows(k, m, s.bk, s.k_row0, s.d);
                cast_mask_freeze_rows(k, m, s.wv, s.v_row0, s.d);
                cast_mask_freeze_rows(k, m, s.bv, s.v_row0, s.d);
            }
        }
    }
    free(skipped);
}
