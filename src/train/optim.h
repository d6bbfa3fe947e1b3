/* Parameter masks and AdamW whose update — step and weight decay — skips
 * frozen elements, so that frozen values stay bit-identical. train/ knows
 * masks, not heads: cast/select.c turns heads into masks. */
#ifndef CAST_TRAIN_OPTIM_H
#define CAST_TRAIN_OPTIM_H

#include <stdint.h>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"

/* Which parameters train. A tensor trains when trainable[i]; inside it an
 * element (r, c) is frozen when frozen_rows[i][r] or frozen_cols[i][c]
 * (either array may be NULL). 1-D tensors use rows only. */
typedef struct cast_mask {
    int n;
    int *trainable;
    uint8_t **frozen_rows;
    uint8_t **frozen_cols;
} cast_mask;

void cast_mask_init(cast_mask *k, const cast_model *m); /* nothing trainable */
void cast_mask_free(cast_mask *k);
void cast_mask_freeze_rows(cast_mask *k, const cast_model *m, int tensor, int64_t row0, int64_t count);
void cast_mask_freeze_cols(cast_mask *k, const cast_model *m, int tensor, int64_t col0, int64_t count);
/* Trainable elements (frozen ones excluded). */
int64_t cast_mask_count(const cast_mask *k, const cast_model *m);
/* Sets the gradient of every frozen element to 0. */
void cast_mask_apply(const cast_mask *k, const cast_model *m, cast_grads *g);

typedef struct cast_adamw_opts {
    double lr, beta1, beta2, eps, weight_decay;
} cast_adamw_opts;

/* The moments cover the range [lo, hi) of the trainable elements, numbered
 * tensor by tensor (all of them, frozen ones included): all of it, or one
 * rank's share when the optimizer state is sharded across ranks (ZeRO stage
 * 1). Tensor i's elements [first[i], first[i] + count[i]) are in the range;
 * its moments are m[i][0, count[i]) and v[i][0, count[i]). */
typedef struct cast_adamw {
    int n;
    float **m, **v;   /* per tensor, NULL when none of it is in the range */
    int64_t *first, *count;
    float *buffer;    /* m of the whole range, then v of the whole range */
    int64_t numel;    /* trainable elements in all */
    int64_t lo, hi;   /* the range held here */
    int shards;       /* 1, or the ranks the state is split across */
    int64_t step;     /* updates done */
} cast_adamw;

void cast_adamw_init(cast_adamw *o, const cast_model *m, const cast_mask *k);
/* This rank's share of the state of `shards` ranks (cast_dist_range). */
void cast_adamw_init_shard(cast_adamw *o, const cast_model *m, const cast_mask *k, int rank, int shards);
void cast_adamw_free(cast_adamw *o);
/* One update with learning rate lr: θ ← θ − lr·(m̂/(√v̂+ε) + wd·θ) on every
 * trainable, unfrozen element in the range. */
void cast_adamw_step(cast_adamw *o, cast_model *m, const cast_mask *k, const cast_grads *g, const cast_adamw_opts *opts, double lr);
/* Sharded state: every rank's updated range, gathered into every rank's
 * weights (nothing when unsharded). */
void cast_adamw_gather(const cast_adamw *o, cast_model *m, const cast_mask *k);

/* ‖g‖ over trainable elements, and scaling. */
double cast_grads_norm(const cast_grads *g, const cast_model *m, const cast_mask *k);
void cast_grads_scale(cast_grads *g, double s);
double cast_grads_dot(const cast_grads *a, const cast_grads *b, const cast_model *m, const cast_mask *k);
/* a += s·b over trainable tensors */
void cast_grads_axpy(cast_grads *a, double s, const cast_grads *b, const cast_model *m, const cast_mask *k);

#endif
