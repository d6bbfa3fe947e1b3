/* CAST stage B: which heads to skip, and the parameter masks that skipping
 * them means (DESIGN §3 "Sparse tuning"). */
#ifndef CAST_CAST_SELECT_H
#define CAST_CAST_SELECT_H

#include <stdint.h>

#include "base/error.h"
#include "cast/diagnose.h"
#include "model/model.h"
#include "train/optim.h"

typedef enum {
    CAST_STRATEGY_CAST,    /* top k by conflict score */
    CAST_STRATEGY_RANDOM,  /* k heads drawn with the seed */
    CAST_STRATEGY_INVERSE, /* bottom k by score among heads with cos < 0 */
    CAST_STRATEGY_OC,      /* top k by optimization conflict alone */
    CAST_STRATEGY_FS,      /* top k by functional sensitivity alone */
    CAST_STRATEGY_FULL,    /* no skip */
    CAST_STRATEGY_PCGRAD,  /* no skip; projected gradients */
} cast_strategy;

typedef enum { CAST_TRAIN_ATTN, CAST_TRAIN_ATTN_MLP, CAST_TRAIN_ALL } cast_train_scope;
typedef enum { CAST_KV_FREEZE_ALL, CAST_KV_FREEZE_ANY } cast_kv_freeze;

int cast_strategy_parse(const char *s, cast_strategy *out);
const char *cast_strategy_name(cast_strategy s);
int cast_strategy_needs_map(cast_strategy s);
int cast_scope_parse(const char *s, cast_train_scope *out);
const char *cast_scope_name(cast_train_scope s);

/* Picks k heads (layer-major indices into skip[], length k; with a map of
 * k/v-group units k must be whole groups: see cast_select_count). For inverse, when
 * fewer than k heads conflict, the rest are the lowest-scoring other heads so
 * that budgets stay equal. map may be NULL for random/full/pcgrad. */
int cast_select_heads(const cast_conflict_map *map, int layers, int heads, cast_strategy s, int k, uint64_t seed, int *skip,
                      cast_err *err);

/* The number of heads cast_select_heads takes for a budget of k: k, or with
 * a map of k/v-group units (and a strategy that reads it) k rounded to the
 * nearest whole number of groups (halves up, at least one group). */
int cast_select_count(const cast_conflict_map *map, cast_strategy s, int k);

/* The mask: the scope's tensors train; each skipped head freezes its q rows
 * (and q bias), its o columns, and its group's k/v rows (and biases) when all
 * (kv-freeze all) or any (any) of the group's heads are skipped. */
void cast_mask_for_heads(cast_mask *k, const cast_model *m, cast_train_scope scope, const int *skip, int n_skip,
                         cast_kv_freeze kv);

#endif
