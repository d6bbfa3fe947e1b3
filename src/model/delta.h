/* Sparse deltas: only the slices a tuning run changed, stored as a
 * safetensors file, and applied on top of the base model.
 *   "<name>"          the new values: whole tensor, or the kept rows / columns
 *   "rows.<name>"     F32 row indices of the kept rows (exact below 2^24)
 *   "cols.<name>"     F32 column indices of the kept columns */
#ifndef CAST_MODEL_DELTA_H
#define CAST_MODEL_DELTA_H

#include "base/error.h"
#include "model/model.h"
#include "train/optim.h"

/* Writes the slices of m that differ from before[i] (NULL = tensor not
 * trained). A tensor with frozen columns keeps its unfrozen columns; any other
 * keeps the rows that changed. */
int cast_delta_write(const char *path, const cast_model *m, const float *const *before, const cast_mask *k, cast_err *err);
/* Applies a delta file to m in place; every name and shape is checked first. */
int cast_delta_apply(cast_model *m, const char *path, cast_err *err);

#endif
