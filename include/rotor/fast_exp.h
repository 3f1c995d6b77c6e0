/*
 * fast_exp.h - exp(x) for x <= 0 (softmax and log-sum-exp arguments), shared
 * by the sampler and the engine's attention.
 *
 * 2^n * p(b), n = round(x / ln 2), a degree-5 polynomial with the
 * coefficients of ARM's optimized-routines expf (as ggml vectorizes it),
 * relative error < 3e-7; results below 2^-125 flush to 0 (a sum holding
 * exp(0) = 1 cannot see them); NaN passes through. Branch-free with exactly
 * rounded fmaf, so loops over it vectorize and every ISA gives the same bits
 * (src/cpu/attn_engine_avx512.c mirrors it lane by lane).
 */
#ifndef ROTOR_FAST_EXP_H
#define ROTOR_FAST_EXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* the scheme's core: exp(x) = 2^n * (returned value), n = round(x / ln 2)
 * (an integer-valued float) */
static inline float rt_exp_poly(float x, float *n_out)
{
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    *n_out = n;
    return fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                fmaf(0x1.ffffecp-1f, b, 1.0f));
}

static inline float rt_exp_le0(float x)
{
    float n;
    const float j = rt_exp_poly(x, &n);
    const int32_t e = (int32_t)(n > -126.0f ? n : -126.0f) + 127;
    uint32_t bits = (uint32_t)e << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float v = j * scale;
    return n >= -125.0f ? v : (x != x ? x : 0.0f);
}

#endif
