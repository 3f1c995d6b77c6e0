/*
 * ops.c - RMSNorm, RoPE and f16 row conversion, in the order llama.cpp's
 * CPU backend computes them (see docs/architecture.md, "Numerics").
 */
#include "rotor/cpu_ops.h"

#include <math.h>
#include <string.h>

#include "rotor/types.h"

/* vectorized (with FMA instructions for fmaf) where the CPU has them; the
 * operations, and so the bits, are the same in every clone */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define OPS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define OPS_CLONES
#endif

OPS_CLONES void cpu_rmsnorm(const float *x, const float *w, float *y, int n, float eps)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

OPS_CLONES void cpu_rmsnorm_engine(const float *x, const float *w, float *y, int n, float eps)
{
    float acc[16] = {0};
    const int n16 = n & ~15;
    for (int i = 0; i < n16; i += 16)
        for (int l = 0; l < 16; l++) acc[l] = fmaf(x[i + l], x[i + l], acc[l]);
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++) t3[i] = acc[8 + i] + acc[i];
    for (int i = 0; i < 4; i++) t6[i] = t3[4 + i] + t3[i];
    float sum = (t6[0] + t6[2]) + (t6[1] + t6[3]);
    for (int i = n16; i < n; i++) sum = fmaf(x[i], x[i], sum);
    const float scale = 1.0f / sqrtf(sum / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void cpu_rope_table(int pos, int n_dims, float base, float freq_scale, const float *freq_factors, float *cs)
{
    const float theta_scale = powf(base, -2.0f / (float)n_dims);
    float theta = (float)pos;
    for (int i0 = 0; i0 < n_dims; i0 += 2) {
        const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
        const float t = freq_scale * (theta / ff);
        cs[i0] = cosf(t);
        cs[i0 + 1] = sinf(t);
        theta *= theta_scale;
    }
}

OPS_CLONES void cpu_rope_apply(float *x, int n_heads, int head_dim, int n_dims, bool neox, const float *cs)
{
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        if (!neox) {
            for (int i0 = 0; i0 < n_dims; i0 += 2) {
                const float c = cs[i0], s = cs[i0 + 1];
                const float x0 = v[i0], x1 = v[i0 + 1];
                /* llama.cpp's build contracts these to FMAs this way */
                v[i0] = fmaf(x0, c, -(x1 * s));
                v[i0 + 1] = fmaf(x0, s, x1 * c);
            }
        } else {
            const int half = n_dims / 2;
            for (int i0 = 0; i0 < n_dims; i0 += 2) {
                const float c = cs[i0], s = cs[i0 + 1];
                const int i = i0 / 2;
                const float x0 = v[i], x1 = v[i + half];
                v[i] = fmaf(x0, c, -(x1 * s));
                v[i + half] = fmaf(x0, s, x1 * c);
            }
        }
    }
}

void cpu_f16_to_f32_row_avx2(const uint16_t *src, float *dst, int n);

void cpu_f16_to_f32_row(const uint16_t *src, float *dst, int n)
{
#if defined(__x86_64__)
    static int has_f16c = -1;
    if (has_f16c < 0) has_f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2");
    if (has_f16c) {
        cpu_f16_to_f32_row_avx2(src, dst, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) dst[i] = rt_fp16_to_fp32(src[i]);
}

void cpu_f32_to_f16_row_avx2(const float *src, uint16_t *dst, int n);

/* F16C rounds to nearest even and quiets NaNs as rt_fp32_to_fp16 does */
void cpu_f32_to_f16_row(const float *src, uint16_t *dst, int n)
{
#if defined(__x86_64__)
    static int has_f16c = -1;
    if (has_f16c < 0) has_f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2");
    if (has_f16c) {
        cpu_f32_to_f16_row_avx2(src, dst, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) dst[i] = rt_fp32_to_fp16(src[i]);
}
