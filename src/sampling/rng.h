/*
 * rng.h - the sampler's pseudo-random generator (private to src/sampling).
 *
 * xoshiro256** (Blackman and Vigna) seeded through splitmix64: small, fast and
 * bit-for-bit the same on every platform, so a request's seed reproduces its
 * tokens anywhere. Not for cryptography.
 */
#ifndef ROTOR_SAMPLING_RNG_H
#define ROTOR_SAMPLING_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4]; /* xoshiro256** state, never all zero */
} rt_rng_t;

/* Seed the state from one 64-bit value (any value, 0 included). */
void rt_rng_seed(rt_rng_t *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t rt_rng_next(rt_rng_t *r);
/* Uniform double in [0, 1) with 53 random bits. */
double rt_rng_uniform(rt_rng_t *r);

#endif
