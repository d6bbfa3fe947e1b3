/* Deterministic random numbers: xoshiro256** seeded through splitmix64. */
#ifndef CAST_BASE_RNG_H
#define CAST_BASE_RNG_H

#include <stdint.h>

typedef struct cast_rng {
    uint64_t s[4];
} cast_rng;

void cast_rng_seed(cast_rng *r, uint64_t seed);
uint64_t cast_rng_u64(cast_rng *r);
/* Uniform in [0, 1). */
double cast_rng_uniform(cast_rng *r);
/* Uniform integer in [0, n). */
uint64_t cast_rng_below(cast_rng *r, uint64_t n);
/* Standard normal (Box–Muller). */
double cast_rng_normal(cast_rng *r);
/* Fisher–Yates shuffle of an int array. */
void cast_rng_shuffle(cast_rng *r, int *v, int n);

#endif
