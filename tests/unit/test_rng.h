/* test_rng.h - deterministic random numbers for unit tests: xorshift64 and
 * Box-Muller. Each test file has its own state (TEST_RNG_SEED before the
 * include picks its start). */
#ifndef ROTOR_TEST_RNG_H
#define ROTOR_TEST_RNG_H

#include <math.h>
#include <stdint.h>

#ifndef TEST_RNG_SEED
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#endif

static uint64_t g_rng = TEST_RNG_SEED;

/* uniform in (0, 1) */
static inline double urand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((g_rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* standard normal */
static inline float nrand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

#endif
