/*
 * rb_rng.h - rotor-bench's seeded pseudo-random numbers on top of librotor's
 * generator (src/sampling/rng.h: xoshiro256** seeded through splitmix64):
 * independent streams, unbiased integers below n (Lemire's multiply-shift
 * with rejection) and normal draws (Box-Muller). Header-only; a generator is
 * a plain value with no allocation.
 *
 * Streams: rb_rng_seed2(r, seed, stream) derives an independent generator
 * from a run seed and a stream number (an item index, a session/turn pair, a
 * hash id), so what one item draws does not depend on the order items are
 * made in.
 */
#ifndef ROTOR_RB_RNG_H
#define ROTOR_RB_RNG_H

#include <math.h>
#include <stdint.h>

#include "sampling/rng.h"

typedef rt_rng_t rb_rng_t;

/* One splitmix64 step (mixes stream numbers into seeds). */
static inline uint64_t rb_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void rb_rng_seed(rb_rng_t *r, uint64_t seed) {
    rt_rng_seed(r, seed);
}

/* A generator for (seed, stream): the stream is mixed in through splitmix64
 * so that nearby streams give unrelated sequences. */
static inline void rb_rng_seed2(rb_rng_t *r, uint64_t seed, uint64_t stream) {
    uint64_t x = stream;
    rt_rng_seed(r, seed ^ rb_splitmix64(&x));
}

static inline uint64_t rb_rng_u64(rb_rng_t *r) {
    return rt_rng_next(r);
}

/* Uniform in [0, 1). */
static inline double rb_rng_uniform(rb_rng_t *r) {
    return rt_rng_uniform(r);
}

/* Uniform integer in [0, n); n > 0. */
static inline uint64_t rb_rng_below(rb_rng_t *r, uint64_t n) {
    unsigned __int128 m = (unsigned __int128)rb_rng_u64(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t floor = -n % n;
        while (lo < floor) {
            m = (unsigned __int128)rb_rng_u64(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Normal(mean, stddev) by Box-Muller (one of the pair is used). */
static inline double rb_rng_normal(rb_rng_t *r, double mean, double stddev) {
    if (stddev <= 0) return mean;
    double u1 = 1.0 - rb_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = rb_rng_uniform(r);
    return mean + stddev * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

#endif
