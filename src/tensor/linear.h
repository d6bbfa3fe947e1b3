/* y = x·W^T + b and its backward, for weights held as f32 or as the 16-bit
 * values (bf16, f16) a checkpoint stores, in f32 or in bf16 compute.
 *
 * f32 compute: the products are OpenBLAS sgemm. 16-bit weights are widened
 * (exactly) a panel at a time into per-thread scratch, never as a whole; each
 * output is the same f32 sum of the same products as with the whole matrix
 * widened, grouped as OpenBLAS groups a panel (results agree to f32 rounding,
 * ~1e-7 relative, not bit for bit). F32 weights take the unchanged path.
 * bf16 compute: inputs and weights rounded to bf16, products accumulated in
 * f32 (dW too). With oneDNN built in and a CPU with bf16 dot products
 * (AVX512-BF16, AMX) oneDNN's matmul runs them; otherwise the same numbers
 * come from rounding in scratch and sgemm ("emulated": for tests, not speed). */
#ifndef CAST_TENSOR_LINEAR_H
#define CAST_TENSOR_LINEAR_H

#include <stdint.h>

#include "tensor/half.h"

/* A weight matrix [out, in] (row-major, nn.Linear's layout). */
typedef struct cast_wmat {
    const float *f32;     /* f32 values, or NULL when held 16-bit */
    const uint16_t *half; /* else the 16-bit values, of type `type` */
    cast_half type;
    int bf16;             /* 1: bf16 compute */
} cast_wmat;

static inline cast_wmat cast_wmat_f32(const float *w) {
    cast_wmat m = {w, 0, CAST_HALF_NONE, 0};
    return m;
}
/* Rows [row0, ...) of a matrix whose rows hold `width` values (a block of a fused tensor). */
static inline cast_wmat cast_wmat_rows(cast_wmat w, int64_t row0, int64_t width) {
    if (w.f32) w.f32 += row0 * width;
    if (w.half) w.half += row0 * width;
    return w;
}
static inline int cast_wmat_present(cast_wmat w) { return w.f32 || w.half; }

/* y[N,out] (= or += per accumulate) x[N,in] · W[out,in]^T + b[out] (b may be NULL). */
void cast_linear_fwd(float *y, const float *x, cast_wmat w, const float *b, int64_t N, int in, int out, int accumulate);
/* dx[N,in] (= or += per accumulate_dx) dy·W;  dw[out,in] += dy^T·x;  db += Σ dy.
 * Any of dx, dw, db may be NULL. */
void cast_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, cast_wmat w, int64_t N, int in,
                     int out, int accumulate_dx);

/* 1 when bf16 products run on bf16 hardware here (oneDNN built in and the
 * CPU has AVX512-BF16 or AMX-BF16); 0 when they would be emulated. */
int cast_linear_bf16_native(void);
/* "onednn" or "emulated": what computes bf16 products in this process. */
const char *cast_linear_bf16_engine(void);

/* Tests: oneDNN's matmul with f32 inputs through the bf16 path's product
 * set-up (forward, dx, dW, each accumulating), against sgemm; *max_rel gets
 * the largest |difference| / max |value|. -1 without oneDNN. */
int cast_linear_onednn_check(int64_t N, int in, int out, double *max_rel);

#endif
