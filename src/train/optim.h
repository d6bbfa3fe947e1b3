/* AdamW whose update — step and weight decay — skips the mask's frozen
 * elements (model/mask.h), so that frozen values stay bit-identical. */
#ifndef CAST_TRAIN_OPTIM_H
#define CAST_TRAIN_OPTIM_H

#include <stdint.h>

#include "base/error.h"
#include "model/forward.h"
#include "model/mask.h"
#include "model/model.h"

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
    float **m, **v;   /* per tensor, NULL when none of it is in the range (or the moments are bf16) */
    uint16_t **hm, **hv; /* half: the same as bf16 */
    int half;         /* moments held as bf16: half the memory; each update is
                       * rounded stochastically (unbiased; seeded by step and
                       * element, so runs repeat), since v's per-step change
                       * (1 - β2 = 0.1 %) is below bf16's resolution (0.4 %) */
    int64_t *first, *count;
    float *buffer;    /* m of the whole range, then v of the whole range (f32 moments) */
    uint16_t *hbuffer; /* the same, bf16 moments */
    int64_t numel;    /* trainable elements in all */
    int64_t lo, hi;   /* the range held here */
    int shards;       /* 1, or the ranks the state is split across */
    int64_t step;     /* updates done */
} cast_adamw;

void cast_adamw_init(cast_adamw *o, const cast_model *m, const cast_mask *k);
/* This rank's share of the state of `shards` ranks (cast_dist_range); half: bf16 moments. */
void cast_adamw_init_shard(cast_adamw *o, const cast_model *m, const cast_mask *k, int rank, int shards);
void cast_adamw_init_as(cast_adamw *o, const cast_model *m, const cast_mask *k, int rank, int shards, int half);
/* Bytes of moments held here. */
int64_t cast_adamw_bytes(const cast_adamw *o);
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
