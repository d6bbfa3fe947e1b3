/* Deltas: what a tuning run changed, stored as a safetensors file, applied on
 * top of the base model. Two formats (__metadata__ "cast_delta"):
 *   sparse (the default; files without the key are sparse): only the slices
 *     that changed, as their new values:
 *       "<name>"       the new values: whole tensor, or the kept rows / columns
 *       "rows.<name>"  F32 row indices of the kept rows (exact below 2^24)
 *       "cols.<name>"  F32 column indices of the kept columns
 *   diff: a task vector, "<name>" = tuned − base (F32, the tensor's shape) for
 *     every trained tensor, names as in the model.
 * Both record the base model's fingerprint (cast_model_fingerprint) as
 * __metadata__ "cast_base_fingerprint". */
#ifndef CAST_MODEL_DELTA_H
#define CAST_MODEL_DELTA_H

#include "base/error.h"
#include "model/model.h"
#include "model/mask.h"

typedef enum { CAST_DELTA_SPARSE, CAST_DELTA_DIFF } cast_delta_format;

/* 16 lowercase hex digits + NUL. */
#define CAST_FINGERPRINT_LEN 17

/* The model's fingerprint: 64-bit FNV-1a over, for each tensor in byte order
 * of the names: the name's bytes and a 0 byte, ndim and each dimension as
 * 8-byte little-endian integers, then the 4-byte little-endian zlib CRC-32 of
 * the tensor's values as little-endian IEEE f32 (the values cast computes
 * with, so an F32 checkpoint and its BF16 copy differ). CRC-32 does the bulk
 * of the bytes (fast); FNV-1a folds names, shapes and CRCs into 64 bits. */
void cast_model_fingerprint(const cast_model *m, char out[CAST_FINGERPRINT_LEN]);

/* Writes what changed between before[i] (NULL = tensor not trained) and m.
 * sparse: a tensor with frozen columns keeps its unfrozen columns; any other
 * keeps the rows that changed. diff: every tensor with before[i], whole.
 * base_fingerprint (NULL: none) goes into the metadata. */
int cast_delta_write(const char *path, const cast_model *m, const float *const *before, const cast_mask *k,
                     cast_delta_format fmt, const char *base_fingerprint, cast_err *err);

/* A delta's format and recorded base fingerprint ("" when the file has none). */
int cast_delta_info(const char *path, cast_delta_format *fmt, char fingerprint[CAST_FINGERPRINT_LEN], cast_err *err);

/* Applies a delta to m in place, every name and shape checked first (a bad
 * delta changes nothing). w = base + scale·(delta's change): for a diff,
 * base + scale·diff; for sparse, base + scale·(new − base) on the kept slices
 * (scale 1 copies the new values exactly). Arithmetic in double, rounded once
 * to f32. The fingerprint is the caller's to check (cast_delta_info). */
int cast_delta_apply(cast_model *m, const char *path, double scale, cast_err *err);

#endif
