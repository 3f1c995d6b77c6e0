/*
 * attn_engine.c - the engine's attention (cpu_ops.h: cpu_attn_engine):
 * rotor's own order over the engine layout of the paged KV cache, the same
 * bits on every ISA and whatever the batch.
 *
 * Layout (per layer and block of bs positions, bs % 16 == 0):
 *   K transposed: (kv_dim, bs), element d of position j at d * bs + j, so 16
 *     consecutive positions of one dimension are one vector;
 *   V rows: (bs, kv_dim), position j's values contiguous.
 * With it neither product needs a horizontal reduction, and the G query heads
 * of a kv head share every K and V load and conversion.
 *
 * Written as portable C over 16-lane arrays (the reference; GCC vectorizes
 * some of it per clone) and with AVX-512 intrinsics (attn_engine_avx512.c,
 * the same operations lane by lane). fmaf is exact-rounded everywhere and no
 * reduction is reassociated, so every path gives the same bits.
 */
#include <math.h>
#include <string.h>

#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/fast_exp.h"
#include "rotor/types.h"

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define AE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AE_CLONES
#endif

#define AI static inline __attribute__((always_inline))
#define AE_MAX_G 8    /* query heads per kv head handled together */
#define AE_MAX_HD CPU_ATTN_ENGINE_MAX_HD

/* the cache's f16 and f32 elements, read through types that may alias
 * them (so the compiler vectorizes the conversions: vcvtph2ps) */
typedef _Float16 __attribute__((may_alias)) ae_f16_t;
typedef float __attribute__((may_alias)) ae_f32_t;

/* f16 or f32 cache element -> float (exact) */
AI float ae_ld(const void *base, size_t i, bool f16)
{
    return f16 ? (float)((const ae_f16_t *)base)[i] : ((const ae_f32_t *)base)[i];
}


/* _mm512_reduce_add_ps's order: halves, quarters, then pairs */
AI float ae_reduce16(const float a[16])
{
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++) t3[i] = a[8 + i] + a[i];
    for (int i = 0; i < 4; i++) t6[i] = t3[4 + i] + t3[i];
    return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

/* One chunk [p0, p1) of positions for G heads (G <= AE_MAX_G, hd <=
 * AE_MAX_HD), one query token: per head g, part[g * part_stride + ...] =
 * m (the chunk's highest score), l (sum of e_i = exp(s_i - m), 16-lane
 * partials in position order then reduce16), o[hd] (FMA chain over the
 * positions in order of e_i * v_i[d]). */
AI void ae_part(const int G, const float *q, int q_stride, const void *k, const void *v, const bool f16,
                const int32_t *blocks, int bs, int kvd, int hoff, int hd, int p0, int p1, float scale, float *p,
                float *part, int part_stride)
{
    const int n = p1 - p0, n16 = (n + 15) & ~15;
    float mx[AE_MAX_G];
    for (int g = 0; g < G; g++) mx[g] = -INFINITY;
    /* scores, 16 positions (one vector per head) at a time */
    for (int c0 = 0; c0 < n16; c0 += 16) {
        const int a = p0 + c0;
        const size_t kb = ((size_t)blocks[a / bs] * (size_t)kvd + (size_t)hoff) * (size_t)bs + (size_t)(a % bs);
        float acc[AE_MAX_G][16];
        for (int g = 0; g < G; g++)
            for (int l = 0; l < 16; l++) acc[g][l] = 0.0f;
        for (int d = 0; d < hd; d++) {
            float kf[16];
            for (int l = 0; l < 16; l++) kf[l] = ae_ld(k, kb + (size_t)d * (size_t)bs + (size_t)l, f16);
            for (int g = 0; g < G; g++) {
                const float qd = q[(size_t)g * (size_t)q_stride + (size_t)d];
                for (int l = 0; l < 16; l++) acc[g][l] = fmaf(qd, kf[l], acc[g][l]);
            }
        }
        for (int g = 0; g < G; g++) {
            float *pg = p + (size_t)g * (size_t)n16 + (size_t)c0;
            for (int l = 0; l < 16; l++) {
                /* positions past p1: slots not written yet, never used */
                const float s = c0 + l < n ? acc[g][l] * scale : -INFINITY;
                pg[l] = s;
                mx[g] = s > mx[g] ? s : mx[g];
            }
        }
    }
    /* e_i and their sum per head: 16-lane partial sums in position order, then reduce16 */
    for (int g = 0; g < G; g++) {
        float *pg = p + (size_t)g * (size_t)n16;
        float sum[16] = {0};
        for (int c0 = 0; c0 < n16; c0 += 16)
            for (int l = 0; l < 16; l++) {
                const float e = c0 + l < n ? rt_exp_le0(pg[c0 + l] - mx[g]) : 0.0f;
                pg[c0 + l] = e;
                sum[l] += e;
            }
        part[(size_t)g * (size_t)part_stride] = mx[g];
        part[(size_t)g * (size_t)part_stride + 1] = ae_reduce16(sum);
    }
    /* values: o[g][d] += e[g][i] * v_i[d], positions in order */
    float o[AE_MAX_G][AE_MAX_HD];
    for (int g = 0; g < G; g++)
        for (int d = 0; d < hd; d++) o[g][d] = 0.0f;
    for (int i = 0; i < n; i++) {
        const int a = p0 + i;
        const size_t vb = ((size_t)blocks[a / bs] * (size_t)bs + (size_t)(a % bs)) * (size_t)kvd + (size_t)hoff;
        float vf[AE_MAX_HD];
        for (int d = 0; d < hd; d++) vf[d] = ae_ld(v, vb + (size_t)d, f16);
        for (int g = 0; g < G; g++) {
            const float pi = p[(size_t)g * (size_t)n16 + (size_t)i];
            for (int d = 0; d < hd; d++) o[g][d] = fmaf(pi, vf[d], o[g][d]);
        }
    }
    for (int g = 0; g < G; g++) memcpy(part + (size_t)g * (size_t)part_stride + 2, o[g], sizeof(float) * (size_t)hd);
}

void cpu_attn_engine_part_avx512(const float *q, int G, int q_stride, const void *k, const void *v, bool f16,
                                 const int32_t *blocks, int bs, int kvd, int hoff, int hd, int p0, int p1, float scale,
                                 float *p, float *part, int part_stride);

AE_CLONES
void cpu_attn_engine_part(const float *q, int G, int q_stride, const void *k, const void *v, bool f16,
                          const int32_t *blocks, int bs, int kvd, int hoff, int hd, int p0, int p1, float scale,
                          float *p, float *part, int part_stride)
{
    for (int g0 = 0; g0 < G; g0 += 4) { /* a head's part does not depend on the others */
        const int ng = G - g0 < 4 ? G - g0 : 4;
        const float *qg = q + (size_t)g0 * (size_t)q_stride;
        float *pg = part + (size_t)g0 * (size_t)part_stride;
        if (cpu_quant_get_isa() == CPU_ISA_AVX512 && hd % 16 == 0) {
            cpu_attn_engine_part_avx512(qg, ng, q_stride, k, v, f16, blocks, bs, kvd, hoff, hd, p0, p1, scale, p, pg,
                                        part_stride);
            continue;
        }
#define AE_P(NG, F) ae_part(NG, qg, q_stride, k, v, F, blocks, bs, kvd, hoff, hd, p0, p1, scale, p, pg, part_stride)
        switch ((ng - 1) * 2 + (f16 ? 1 : 0)) {
        case 0: AE_P(1, false); break;
        case 1: AE_P(1, true); break;
        case 2: AE_P(2, false); break;
        case 3: AE_P(2, true); break;
        case 4: AE_P(3, false); break;
        case 5: AE_P(3, true); break;
        case 6: AE_P(4, false); break;
        default: AE_P(4, true); break;
        }
#undef AE_P
    }
}

AE_CLONES
void cpu_attn_engine_merge(float *state, const float *part, int hd)
{
    const float m = state[0] > part[0] ? state[0] : part[0];
    const float a = rt_exp_le0(state[0] - m), b = rt_exp_le0(part[0] - m);
    state[0] = m;
    state[1] = fmaf(state[1], a, part[1] * b);
    for (int d = 0; d < hd; d++) state[2 + d] = fmaf(state[2 + d], a, part[2 + d] * b);
}

AE_CLONES
void cpu_attn_engine_finish(const float *state, float *out, int hd)
{
    const float inv = 1.0f / state[1];
    for (int d = 0; d < hd; d++) out[d] = state[2 + d] * inv;
}

AE_CLONES
void cpu_attn_engine(const float *q, int G, int q_stride, const void *k, const void *v, bool f16,
                     const int32_t *blocks, int bs, int kvd, int hoff, int hd, int n_pos, float scale, float *p,
                     float *out, int out_stride)
{
    /* chunk by chunk, merged in order into a running state per head */
    float state[AE_MAX_G * (AE_MAX_HD + 2)], part[AE_MAX_G * (AE_MAX_HD + 2)];
    const int ps = hd + 2;
    for (int g0 = 0; g0 < G; g0 += AE_MAX_G) {
        const int ng = G - g0 < AE_MAX_G ? G - g0 : AE_MAX_G;
        const float *qg = q + (size_t)g0 * (size_t)q_stride;
        for (int p0 = 0; p0 < n_pos; p0 += CPU_ATTN_ENGINE_CHUNK) {
            const int p1 = p0 + CPU_ATTN_ENGINE_CHUNK < n_pos ? p0 + CPU_ATTN_ENGINE_CHUNK : n_pos;
            cpu_attn_engine_part(qg, ng, q_stride, k, v, f16, blocks, bs, kvd, hoff, hd, p0, p1, scale, p,
                                 p0 == 0 ? state : part, ps);
            if (p0 > 0)
                for (int g = 0; g < ng; g++) cpu_attn_engine_merge(state + g * ps, part + g * ps, hd);
        }
        for (int g = 0; g < ng; g++) cpu_attn_engine_finish(state + g * ps, out + (size_t)(g0 + g) * (size_t)out_stride, hd);
    }
}
