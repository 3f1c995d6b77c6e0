/*
 * quant_dot_scalar.c - portable dot products of a weight row with an
 * activation row in its vec_dot type. The fallback on CPUs without AVX2 and
 * the baseline the SIMD kernels are tested against.
 *
 * Integer sums per block (or per K-quant super-block), scaled and added
 * into one float accumulator in block order, like ggml's generic kernels.
 */
#include "cpu/quant_impl.h"

typedef float (*dot1_fn)(int64_t n, const void *w, const void *x);

static float dot_f32(int64_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static float dot_f16(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += cpu_h2f(a[i]) * cpu_h2f(b[i]);
    return s;
}

static float dot_bf16(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += cpu_bf2f(a[i]) * cpu_bf2f(b[i]);
    return s;
}

static float dot_q4_0(int64_t n, const void *w, const void *x) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((a[i].qs[j] & 0xF) - 8) * b[i].qs[j];
            sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + 16];
        }
        s += (float)sumi * (cpu_h2f(a[i].d) * cpu_h2f(b[i].d));
    }
    return s;
}

static float dot_q5_0(int64_t n, const void *w, const void *x) {
    const block_q5_0 *a = w;
    const block_q8_0 *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, a[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            sumi += (((a[i].qs[j] & 0xF) | h0) - 16) * b[i].qs[j];
            sumi += (((a[i].qs[j] >> 4) | h1) - 16) * b[i].qs[j + 16];
        }
        s += (float)sumi * (cpu_h2f(a[i].d) * cpu_h2f(b[i].d));
    }
    return s;
}

static float dot_q5_1(int64_t n, const void *w, const void *x) {
    const block_q5_1 *a = w;
    const block_q8_1 *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, a[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            sumi += ((a[i].qs[j] & 0xF) | h0) * b[i].qs[j];
            sumi += ((a[i].qs[j] >> 4) | h1) * b[i].qs[j + 16];
        }
        s += (float)sumi * (cpu_h2f(a[i].d) * cpu_h2f(b[i].d)) + cpu_h2f(a[i].m) * cpu_h2f(b[i].s);
    }
    return s;
}

static float dot_q2_K(int64_t n, const void *w, const void *x) {
    const block_q2_K *a = w;
    const block_q8_K *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        const int8_t *q8 = b[i].qs;
        int g = 0;
        for (int k = 0; k < 2; k++) {
            const uint8_t *q = a[i].qs + 32 * k;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++, g++) {
                    int d = 0;
                    for (int l = 0; l < 16; l++)
                        d += ((q[16 * half + l] >> shift) & 3) * *q8++;
                    sumi += (a[i].scales[g] & 0xF) * d;
                    summ += (a[i].scales[g] >> 4) * b[i].bsums[g];
                }
            }
        }
        s += b[i].d * cpu_h2f(a[i].d) * (float)sumi - b[i].d * cpu_h2f(a[i].dmin) * (float)summ;
    }
    return s;
}

static float dot_q3_K(int64_t n, const void *w, const void *x) {
    const block_q3_K *a = w;
    const block_q8_K *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t sc[16];
        for (int j = 0; j < 16; j++) {
            const uint8_t *p = a[i].scales;
            int lo = j < 8 ? p[j] & 0xF : p[j - 8] >> 4;
            int hi = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
            sc[j] = (int8_t)((lo | (hi << 4)) - 32);
        }
        int sumi = 0, g = 0;
        const int8_t *q8 = b[i].qs;
        uint8_t m = 1;
        for (int k = 0; k < 2; k++) {
            const uint8_t *q = a[i].qs + 32 * k;
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int half = 0; half < 2; half++, g++) {
                    int d = 0;
                    for (int l = 0; l < 16; l++) {
                        const int idx = 16 * half + l;
                        const int v = ((q[idx] >> shift) & 3) - ((a[i].hmask[idx] & m) ? 0 : 4);
                        d += v * *q8++;
                    }
                    sumi += sc[g] * d;
                }
            }
        }
        s += cpu_h2f(a[i].d) * b[i].d * (float)sumi;
    }
    return s;
}

static float dot_q4_K(int64_t n, const void *w, const void *x) {
    const block_q4_K *a = w;
    const block_q8_K *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        const int8_t *q8 = b[i].qs;
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            cpu_scale_min_k4(j, a[i].scales, &sc, &m);
            const uint8_t *q = a[i].qs + 32 * (j / 2);
            const int shift = 4 * (j & 1);
            int d = 0;
            for (int l = 0; l < 32; l++)
                d += ((q[l] >> shift) & 0xF) * q8[l];
            q8 += 32;
            sumi += sc * d;
            summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        }
        s += b[i].d * cpu_h2f(a[i].d) * (float)sumi - b[i].d * cpu_h2f(a[i].dmin) * (float)summ;
    }
    return s;
}

static float dot_q5_K(int64_t n, const void *w, const void *x) {
    const block_q5_K *a = w;
    const block_q8_K *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        const int8_t *q8 = b[i].qs;
        for (int j = 0; j < QK_K / 32; j++) {
            uint8_t sc, m;
            cpu_scale_min_k4(j, a[i].scales, &sc, &m);
            const uint8_t *q = a[i].qs + 32 * (j / 2);
            const int shift = 4 * (j & 1);
            int d = 0;
            for (int l = 0; l < 32; l++) {
                const int v = ((q[l] >> shift) & 0xF) | (((a[i].qh[l] >> j) & 1) << 4);
                d += v * q8[l];
            }
            q8 += 32;
            sumi += sc * d;
            summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        }
        s += b[i].d * cpu_h2f(a[i].d) * (float)sumi - b[i].d * cpu_h2f(a[i].dmin) * (float)summ;
    }
    return s;
}

static float dot_q6_K(int64_t n, const void *w, const void *x) {
    const block_q6_K *a = w;
    const block_q8_K *b = x;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q6[QK_K];
        const uint8_t *ql = a[i].ql, *qh = a[i].qh;
        for (int h = 0; h < 2; h++) {
            int8_t *o = q6 + 128 * h;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
            ql += 64;
            qh += 32;
        }
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int d = 0;
            for (int l = 0; l < 16; l++)
                d += q6[16 * g + l] * b[i].qs[16 * g + l];
            sumi += a[i].scales[g] * d;
        }
        s += cpu_h2f(a[i].d) * b[i].d * (float)sumi;
    }
    return s;
}

#define TILE(name)                                                                                 \
    static void tile_##name(int64_t n, const void *w, size_t ws, int nw, const void *x, size_t xs, \
                            int nr, float *out) {                                                  \
        for (int iw = 0; iw < nw; iw++)                                                            \
            for (int k = 0; k < nr; k++)                                                           \
                out[iw * CPU_DOT_NR + k] = dot_##name(n, (const char *)w + (size_t)iw * ws,        \
                                                      (const char *)x + (size_t)k * xs);           \
    }

TILE(f32)
TILE(f16)
TILE(bf16)
TILE(q4_0)
TILE(q5_0)
TILE(q5_1)
TILE(q2_K)
TILE(q3_K)
TILE(q4_K)
TILE(q5_K)
TILE(q6_K)

const cpu_dot_tile_fn cpu_dot_scalar[RT_TYPE_COUNT] = {
    [RT_TYPE_F32] = tile_f32,   [RT_TYPE_F16] = tile_f16,   [RT_TYPE_BF16] = tile_bf16,
    [RT_TYPE_Q4_0] = tile_q4_0, [RT_TYPE_Q4_1] = cpu_compat_q4_1_scalar, /* llama.cpp order */ [RT_TYPE_Q5_0] = tile_q5_0,
    [RT_TYPE_Q5_1] = tile_q5_1, [RT_TYPE_Q8_0] = cpu_compat_q8_0_scalar, [RT_TYPE_Q2_K] = tile_q2_K,
    [RT_TYPE_Q3_K] = tile_q3_K, [RT_TYPE_Q4_K] = tile_q4_K, [RT_TYPE_Q5_K] = tile_q5_K,
    [RT_TYPE_Q6_K] = tile_q6_K,
};
