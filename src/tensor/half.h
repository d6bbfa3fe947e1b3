/* 16-bit floats: bf16 (the top half of an f32) and IEEE f16, one value at a
 * time and in bulk. f32 -> 16-bit rounds to nearest even; 16-bit -> f32 is exact. */
#ifndef CAST_TENSOR_HALF_H
#define CAST_TENSOR_HALF_H

#include <stdint.h>

typedef enum { CAST_HALF_NONE = 0, CAST_HALF_BF16, CAST_HALF_F16 } cast_half;

float cast_bf16_to_f32(uint16_t h);
float cast_f16_to_f32(uint16_t h);
uint16_t cast_f32_to_bf16(float f);
uint16_t cast_f32_to_f16(float f);

/* dst[n] = src[n] widened to f32 (exact). */
void cast_half_to_f32(float *dst, const uint16_t *src, cast_half type, int64_t n);
/* dst[n] = src[n] rounded to bf16. */
void cast_f32_to_bf16_n(uint16_t *dst, const float *src, int64_t n);
/* dst[n] = src[n] rounded to bf16 and widened back (dst may be src). */
void cast_round_bf16_n(float *dst, const float *src, int64_t n);

#endif
