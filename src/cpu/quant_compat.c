/*
 * quant_compat.c - portable versions of the llama.cpp-order Q4_1/Q8_0 dot
 * tiles (see quant_compat_avx512.c for the order) and the activation
 * quantizers Q8_0/Q8_1 with llama.cpp's x86 run-time semantics:
 *   d = amax / 127, id = amax ? 127 / amax : 0, q = round-half-even(x * id),
 *   Q8_1: s = fp16(d * (float)sum(q)).
 * (ggml's reference quantizer uses id = 1/d and round-half-away; llama.cpp
 * runs the SIMD one, and so do we for activations.)
 */
#include <math.h>

#include "cpu/quant_impl.h"

static float hsum8_f(const float a[8])
{
    float r[4];
    for (int i = 0; i < 4; i++) r[i] = a[i + 4] + a[i];
    const float s0 = r[0] + r[2], s1 = r[1] + r[3];
    return s0 + s1;
}

void cpu_compat_q4_1_scalar(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs,
                            int nr, float *out)
{
    const int64_t nb = n / 32;
    for (int i = 0; i < nw; i++)
        for (int k = 0; k < nr; k++) {
            const block_q4_1 *a = (const block_q4_1 *)((const char *)w + (size_t)i * ws);
            const block_q8_1 *y = (const block_q8_1 *)((const char *)x + (size_t)k * xs);
            float acc[8] = {0}, mins = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const float d = cpu_h2f(a[b].d) * cpu_h2f(y[b].d);
                mins = fmaf(cpu_h2f(a[b].m), cpu_h2f(y[b].s), mins);
                for (int l = 0; l < 8; l++) {
                    int s = 0;
                    for (int e = 4 * l; e < 4 * l + 4; e++) {
                        const int q = e < 16 ? (a[b].qs[e] & 0x0F) : (a[b].qs[e - 16] >> 4);
                        s += q * y[b].qs[e];
                    }
                    acc[l] = fmaf(d, (float)s, acc[l]);
                }
            }
            out[i * CPU_DOT_NR + k] = hsum8_f(acc) + mins;
        }
}

void cpu_compat_q8_0_scalar(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs,
                            int nr, float *out)
{
    const int64_t nb = n / 32;
    for (int i = 0; i < nw; i++)
        for (int k = 0; k < nr; k++) {
            const block_q8_0 *a = (const block_q8_0 *)((const char *)w + (size_t)i * ws);
            const block_q8_0 *y = (const block_q8_0 *)((const char *)x + (size_t)k * xs);
            float acc[8] = {0};
            for (int64_t b = 0; b < nb; b++) {
                const float d = cpu_h2f(a[b].d) * cpu_h2f(y[b].d);
                for (int l = 0; l < 8; l++) {
                    int s = 0;
                    for (int e = 4 * l; e < 4 * l + 4; e++) s += a[b].qs[e] * y[b].qs[e];
                    acc[l] = fmaf(d, (float)s, acc[l]);
                }
            }
            out[i * CPU_DOT_NR + k] = hsum8_f(acc);
        }
}

void cpu_compat_quantize_q8(const float *x, void *dst, int64_t n, bool with_sum)
{
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int8_t *qs;
        if (with_sum) {
            block_q8_1 *y = (block_q8_1 *)dst + i;
            qs = y->qs;
            y->d = rt_fp32_to_fp16(d);
        } else {
            block_q8_0 *y = (block_q8_0 *)dst + i;
            qs = y->qs;
            y->d = rt_fp32_to_fp16(d);
        }
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            const int q = (int)nearbyintf(x[j] * id);
            qs[j] = (int8_t)q;
            sum += q;
        }
        if (with_sum) ((block_q8_1 *)dst + i)->s = rt_fp32_to_fp16(d * (float)sum);
    }
}
