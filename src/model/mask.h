/* Parameter masks: which tensors train, and inside them which rows and
 * columns stay frozen. model/ knows masks, not heads: cast/select.c turns
 * heads into masks; train/optim.c and model/delta.c read them. */
#ifndef CAST_MODEL_MASK_H
#define CAST_MODEL_MASK_H

#include <stdint.h>

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

static inline int cast_mask_frozen(const cast_mask *k, int i, int64_t r, int64_t c) {
    return (k->frozen_rows[i] && k->frozen_rows[i][r]) || (k->frozen_cols[i] && k->frozen_cols[i][c]);
}

#endif
