#include "tensor/half.h"

#include <string.h>

float cast_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float cast_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t cast_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

uint16_t cast_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (a < 0x38800000u) {                                    /* subnormal or zero in f16 */
        if (a < 0x33000000u) return (uint16_t)sign;
        /* value = man * 2^(exp-150); in units of 2^-24 that is man >> (126 - exp) */
        uint32_t man = (a & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(a >> 23);
        uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
}

/* The bulk loops are written as plain integer operations so that the
 * compiler vectorises them; target_clones adds an AVX2 copy picked at load. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CAST_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CAST_CLONES
#endif

CAST_CLONES static void bf16_widen(uint32_t *restrict dst, const uint16_t *restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (uint32_t)src[i] << 16;
}

void cast_half_to_f32(float *dst, const uint16_t *src, cast_half type, int64_t n) {
    if (type == CAST_HALF_BF16) {
        bf16_widen((uint32_t *)(void *)dst, src, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) dst[i] = cast_f16_to_f32(src[i]);
}

/* Round to nearest even on the top 16 bits; NaNs stay NaN (quiet). */
static inline uint32_t round_bits(uint32_t u) {
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
    return (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : r;
}

CAST_CLONES static void bf16_narrow(uint16_t *restrict dst, const uint32_t *restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (uint16_t)(round_bits(src[i]) >> 16);
}

CAST_CLONES static void bf16_round(uint32_t *dst, const uint32_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = round_bits(src[i]);
}

void cast_f32_to_bf16_n(uint16_t *dst, const float *src, int64_t n) {
    bf16_narrow(dst, (const uint32_t *)(const void *)src, n);
}

void cast_round_bf16_n(float *dst, const float *src, int64_t n) {
    bf16_round((uint32_t *)(void *)dst, (const uint32_t *)(const void *)src, n);
}
