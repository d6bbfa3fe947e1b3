/* CAST stage B as one flow (DESIGN §3 "Sparse tuning"): strategy → k → skip
 * set → mask → masked AdamW → the tuned model and its delta. `cast tune`, the
 * demo and the public API all run it; nothing else decides k or the mask. */
#ifndef CAST_CAST_TUNE_H
#define CAST_CAST_TUNE_H

#include <stdint.h>

#include "base/error.h"
#include "cast/diagnose.h"
#include "cast/select.h"
#include "model/delta.h"
#include "model/model.h"
#include "model/seqs.h"
#include "train/optim.h"
#include "train/trainer.h"

typedef struct cast_tune_opts {
    cast_strategy strategy;
    double skip;             /* share of heads skipped: k = round(skip · layers · heads) */
    int skip_heads;          /* >= 0: exactly this many instead of skip */
    const int *fixed;        /* a given skip set (layer-major head indices), n_fixed long: no selection */
    int n_fixed;
    uint64_t select_seed;    /* the random strategy's draw */
    cast_train_scope scope;  /* which tensors train */
    cast_kv_freeze kv_freeze;
    /* the training run; its pcgrad follows the strategy, and an anchor
     * weight < 0 means unset: 1 for pcgrad, else 0 (safety data only) */
    cast_train_opts train;
    int keep_before;         /* keep the trained tensors' starting values and the base's fingerprint, for a delta */
} cast_tune_opts;

void cast_tune_opts_default(cast_tune_opts *o);

typedef struct cast_tune_run {
    int k;                   /* heads skipped */
    int *skip;               /* [k] layer-major head indices */
    cast_mask mask;
    int64_t trainable;       /* elements that train */
    float **before;          /* keep_before: per trainable tensor, its f32 values before training ... */
    cast_tensor *before_held; /* ... or, for a tensor held 16-bit, the tensor as it was (its mapped values):
                                 no copy while training; widened when the delta is written */
    char fingerprint[CAST_FINGERPRINT_LEN]; /* keep_before: the base's */
    double wall_s;           /* training time */
} cast_tune_run;

/* Heads to skip before a map of k/v-group units rounds them to whole
 * groups: 0 for full and pcgrad, the fixed set's size, skip_heads, or
 * round(skip · n_heads). */
int cast_tune_budget(const cast_tune_opts *o, int n_heads);
/* The anchor weight the run trains with: train.anchor_weight, or when it is
 * unset (< 0) 1 for pcgrad and 0 (safety data only) otherwise. */
double cast_tune_anchor_weight(const cast_tune_opts *o);

/* Strategy → k → skip set → mask, before any training. map is needed by the
 * strategies that read one (cast_strategy_needs_map) unless k is 0 or a
 * fixed set is given; a map of k/v-group units rounds k to whole groups. */
int cast_tune_plan(const cast_model *m, const cast_conflict_map *map, const cast_tune_opts *o, cast_tune_run *run, cast_err *err);
/* The delta of the trained tensors against their starting values (keep_before). */
int cast_tune_delta_write(const cast_model *m, const cast_tune_run *run, const char *path, cast_delta_format fmt, cast_err *err);
/* Trains m in place with the plan (utility: the anchor or PCGrad set, may be NULL). */
int cast_tune_train(cast_model *m, cast_tune_run *run, const cast_seqs *safety, const cast_seqs *utility, const cast_tune_opts *o,
                    cast_err *err);
/* The tuned model folder (config.json, weights in dtype) and, with
 * delta_path, the delta against the starting values (needs keep_before). */
int cast_tune_save(const cast_model *m, const cast_tune_run *run, const char *dir, cast_dtype dtype, const char *delta_path,
                   cast_delta_format fmt, cast_err *err);
void cast_tune_run_free(cast_tune_run *run);

#endif
