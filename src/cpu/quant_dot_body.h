/*
 * quant_dot_body.h - the parts of the dot-tile kernels that are the same
 * code for every ISA, included by quant_dot_avx2.c and quant_dot_avx512.c
 * (each compiled with its own -m flags, so each gets its own copy).
 *
 * Before including it a file defines DOT_NAME(t), the name of the table
 * entry for kernel t (tile2_t, tile512_t). After it the file defines the
 * per-ISA kernels declared below (q32_tile, q6_K_tile1, qk45_tile1, the
 * float tiles), then instantiates PER_ROW_TILE and TILE_ENTRY and fills its
 * cpu_dot_tile_fn table.
 */
#include <immintrin.h>
#include <string.h>

#include "cpu/quant_impl.h"

#define AI static inline __attribute__((always_inline))
#define XROW(T, x, xs, k) ((const T *)((const char *)(x) + (size_t)(k) * (xs)))

AI float h2f(rt_half h) {
    return _cvtsh_ss(h);
}

/* Fixed-order horizontal sum of 8 floats. */
AI float hsum256(__m256 a) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* ------------------------------------- 32-blocks: Q4_0, Q5_0, Q5_1
 * (Q4_1 and Q8_0 use the llama.cpp-order tiles of quant_compat_avx*.c) */

enum { K_Q4_0, K_Q5_0, K_Q5_1 };
#define HAS_MIN(K) ((K) == K_Q5_1)

/* Defined per ISA by the including file. */
AI void q32_tile(const int KIND, int64_t n, const void *w, size_t ws, const int NW, const void *x,
                 size_t xs, const int NR, float *out);
AI void q6_K_tile1(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out);
AI void qk45_tile1(const bool Q5, int64_t n, const void *w, const void *x, size_t xs, const int NR,
                   float *out);

AI void q4_0_tile(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs,
                  const int NR, float *out) {
    q32_tile(K_Q4_0, n, w, ws, NW, x, xs, NR, out);
}

AI void q5_0_tile(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs,
                  const int NR, float *out) {
    q32_tile(K_Q5_0, n, w, ws, NW, x, xs, NR, out);
}

AI void q5_1_tile(int64_t n, const void *w, size_t ws, const int NW, const void *x, size_t xs,
                  const int NR, float *out) {
    q32_tile(K_Q5_1, n, w, ws, NW, x, xs, NR, out);
}

/* ------------------------------------------------- Q4_K / Q5_K x Q8_K */

AI void q4_K_tile1(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out) {
    qk45_tile1(false, n, w, x, xs, NR, out);
}

AI void q5_K_tile1(int64_t n, const void *w, const void *x, size_t xs, const int NR, float *out) {
    qk45_tile1(true, n, w, x, xs, NR, out);
}

/* K-quant tiles: one weight row at a time. Instantiate after the tile1s. */
#define PER_ROW_TILE(name)                                                                         \
    AI void name##_tile(int64_t n, const void *w, size_t ws, const int NW, const void *x,          \
                        size_t xs, const int NR, float *out) {                                     \
        for (int iw = 0; iw < NW; iw++)                                                            \
            name##_tile1(n, (const char *)w + (size_t)iw * ws, x, xs, NR, out + iw * CPU_DOT_NR);  \
    }

/* ---------------------------------------------------------------- tables */

/* Instantiate the (nw, nr) shapes matmul uses: nr = 1 with nw <= 4, and
 * nr <= 4 with nw <= MAXW (2 or 4). Other shapes are split into those. */
#define TILE_ENTRY(name, MAXW)                                                                     \
    static void DOT_NAME(name)(int64_t n, const void *w, size_t ws, int nw, const void *x,         \
                               size_t xs, int nr, float *out) {                                    \
        if (nr == 1) {                                                                             \
            switch (nw) {                                                                          \
            case 1:                                                                                \
                name##_tile(n, w, ws, 1, x, xs, 1, out);                                           \
                return;                                                                            \
            case 2:                                                                                \
                name##_tile(n, w, ws, 2, x, xs, 1, out);                                           \
                return;                                                                            \
            case 3:                                                                                \
                name##_tile(n, w, ws, 3, x, xs, 1, out);                                           \
                return;                                                                            \
            default:                                                                               \
                name##_tile(n, w, ws, 4, x, xs, 1, out);                                           \
                return;                                                                            \
            }                                                                                      \
        }                                                                                          \
        for (int iw = 0; iw < nw; iw += MAXW) {                                                    \
            const char *wi = (const char *)w + (size_t)iw * ws;                                    \
            float *o = out + iw * CPU_DOT_NR;                                                      \
            const int cw = nw - iw < MAXW ? nw - iw : MAXW;                                        \
            switch (nr * 8 + cw) {                                                                 \
            case 17:                                                                               \
                name##_tile(n, wi, ws, 1, x, xs, 2, o);                                            \
                break;                                                                             \
            case 18:                                                                               \
                name##_tile(n, wi, ws, 2, x, xs, 2, o);                                            \
                break;                                                                             \
            case 19:                                                                               \
                name##_tile(n, wi, ws, MAXW > 2 ? 3 : 2, x, xs, 2, o);                             \
                break;                                                                             \
            case 20:                                                                               \
                name##_tile(n, wi, ws, MAXW > 2 ? 4 : 2, x, xs, 2, o);                             \
                break;                                                                             \
            case 25:                                                                               \
                name##_tile(n, wi, ws, 1, x, xs, 3, o);                                            \
                break;                                                                             \
            case 26:                                                                               \
                name##_tile(n, wi, ws, 2, x, xs, 3, o);                                            \
                break;                                                                             \
            case 27:                                                                               \
                name##_tile(n, wi, ws, MAXW > 2 ? 3 : 2, x, xs, 3, o);                             \
                break;                                                                             \
            case 28:                                                                               \
                name##_tile(n, wi, ws, MAXW > 2 ? 4 : 2, x, xs, 3, o);                             \
                break;                                                                             \
            case 33:                                                                               \
                name##_tile(n, wi, ws, 1, x, xs, 4, o);                                            \
                break;                                                                             \
            case 34:                                                                               \
                name##_tile(n, wi, ws, 2, x, xs, 4, o);                                            \
                break;                                                                             \
            case 35:                                                                               \
                name##_tile(n, wi, ws, MAXW > 2 ? 3 : 2, x, xs, 4, o);                             \
                break;                                                                             \
            default:                                                                               \
                name##_tile(n, wi, ws, MAXW > 2 ? 4 : 2, x, xs, 4, o);                             \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    }
