/*
 * rb_rng.h - rotor-bench's seeded pseudo-random numbers: xoshiro256**
 * (Blackman and Vigna) seeded through splitmix64, uniform doubles in [0, 1),
 * unbiased integers below n (Lemire's multiply-shift with rejection) and
 * normal draws (Box-Muller). Header-only; a generator is a plain value with
 * no allocation.
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

typedef struct {
    uint64_t s[4];
} rb_rng_t;

static inline uint64_t rb_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void rb_rng_seed(rb_rng_t *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = rb_splitmix64(&seed);
}

/* A generator for (seed, stream): the stream is mixed in through splitmix64
 * so that nearby streams give unrelated sequences. */
static inline void rb_rng_seed2(rb_rng_t *r, uint64_t seed, uint64_t stream) {
    uint64_t x = stream;
    rb_rng_seed(r, seed ^ rb_splitmix64(&x));
}

static inline uint64_t rb_rng_rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rb_rng_u64(rb_rng_t *r) {
    uint64_t *s = r->s;
    uint64_t out = rb_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rb_rng_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static inline double rb_rng_uniform(rb_rng_t *r) {
    return (double)(rb_rng_u64(r) >> 11) * 0x1.0p-53;
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
