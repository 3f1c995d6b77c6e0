/*
 * matmul.c - Y = X * W^T over a range of weight rows, on top of the dot-tile
 * kernels of the current ISA.
 *
 * Loop order: a block of weight rows small enough to stay in L1, then tiles
 * of CPU_DOT_NR activation rows, then pairs of rows of the block. Each kernel
 * call unpacks CPU_GEMM_NW weight rows once for up to CPU_DOT_NR activation
 * rows. The kernels compute each (weight row, activation row) pair with the
 * same operations whatever the tile shape, so the output does not depend on
 * m or on [r0, r1) (batch invariance). Where the ISA has a batched tile for
 * the type (cpu_gemm8_kernel), groups of 8 activation rows go through it:
 * same bits per element, weights unpacked once per 8 rows. F16 on AVX-512
 * takes tiles of 4 weight rows x 6 activation rows (cpu_f16_gemm46_avx512).
 */
#include "cpu/quant_impl.h"

/* activation-scale scratch of the batched tiles, on the stack (32 KiB):
 * rows of up to 512 32-blocks (n_in <= 16384); wider rows use the dot tiles */
#define MATMUL_SC_FLOATS 8192
#define MATMUL_SC_MAX_BLOCKS (MATMUL_SC_FLOATS / CPU_GEMM8_SC)
/* how far ahead a GEMV asks for the weight lines of its next tiles */
#define MATMUL_GEMV_PF 8192

/* activation rows [0, m8) (m8 a multiple of 8) through the batched tile:
 * chunks of 8-row groups whose scales fit the scratch, converted once per
 * chunk; in a chunk, each L1-sized block of weight rows serves every group */
static void matmul_gemm8(const cpu_gemm8_t *g8, cpu_dot_tile_fn fn, int64_t n_in, const char *w, size_t w_stride,
                         const char *x, size_t x_stride, int64_t m8, float *Y, int64_t y_stride, int64_t r0,
                         int64_t r1, int64_t rb_rows) {
    float sc[MATMUL_SC_FLOATS];
    float tmp[CPU_DOT_NW * CPU_DOT_NR];
    const int64_t nb = n_in / 32, per_group = nb * CPU_GEMM8_SC;
    const int64_t chunk = MATMUL_SC_FLOATS / per_group * CPU_GEMM8_NR;
    for (int64_t g0 = 0; g0 < m8; g0 += chunk) {
        const int64_t g1 = g0 + chunk < m8 ? g0 + chunk : m8;
        for (int64_t i = g0; i < g1; i += CPU_GEMM8_NR)
            g8->prep(nb, x + (size_t)i * x_stride, x_stride, sc + (i - g0) / CPU_GEMM8_NR * per_group);
        for (int64_t rb = r0; rb < r1; rb += rb_rows) {
            const int64_t re = rb + rb_rows < r1 ? rb + rb_rows : r1;
            for (int64_t i = g0; i < g1; i += CPU_GEMM8_NR) {
                const char *xi = x + (size_t)i * x_stride;
                const float *sci = sc + (i - g0) / CPU_GEMM8_NR * per_group;
                int64_t r = rb;
                for (; r + CPU_GEMM_NW <= re; r += CPU_GEMM_NW)
                    g8->tile(n_in, w + (size_t)r * w_stride, w_stride, xi, x_stride, sci, Y + i * y_stride + r,
                             y_stride);
                /* fewer than 4 weight rows left: the dot tile, 4 activation rows at a time */
                for (int64_t k0 = 0; r < re && k0 < CPU_GEMM8_NR; k0 += CPU_DOT_NR) {
                    const int nw = (int)(re - r);
                    fn(n_in, w + (size_t)r * w_stride, w_stride, nw, xi + (size_t)k0 * x_stride, x_stride,
                       CPU_DOT_NR, tmp);
                    for (int iw = 0; iw < nw; iw++)
                        for (int k = 0; k < CPU_DOT_NR; k++)
                            Y[(i + k0 + k) * y_stride + r + iw] = tmp[iw * CPU_DOT_NR + k];
                }
            }
        }
    }
}

/* F16 on AVX-512, activation rows [0, m6) (m6 a multiple of 6): chunks of
 * rows that stay in L2 (~384 KiB), and in a chunk each group of 4 weight rows
 * (in L1) serves every tile of 6 activation rows; the last < 4 weight rows
 * through the dot tile */
static void matmul_f16_gemm46(cpu_dot_tile_fn fn, int64_t n_in, const char *w, size_t w_stride, const char *x,
                              size_t x_stride, int64_t m6, float *Y, int64_t y_stride, int64_t r0, int64_t r1) {
    float tmp[CPU_DOT_NW * CPU_DOT_NR];
    int64_t chunk = (int64_t)(393216 / x_stride);
    chunk = chunk < CPU_F16_GEMM_NR ? CPU_F16_GEMM_NR : chunk - chunk % CPU_F16_GEMM_NR;
    for (int64_t i0 = 0; i0 < m6; i0 += chunk) {
        const int64_t i1 = i0 + chunk < m6 ? i0 + chunk : m6;
        int64_t r = r0;
        for (; r + CPU_GEMM_NW <= r1; r += CPU_GEMM_NW)
            for (int64_t i = i0; i < i1; i += CPU_F16_GEMM_NR)
                cpu_f16_gemm46_avx512(n_in, w + (size_t)r * w_stride, w_stride, x + (size_t)i * x_stride, x_stride,
                                      Y + i * y_stride + r, y_stride);
        if (r == r1) continue;
        const int nw = (int)(r1 - r);
        for (int64_t i = i0; i < i1; i += CPU_DOT_NR) {
            const int nr = (int)(i1 - i < CPU_DOT_NR ? i1 - i : CPU_DOT_NR);
            fn(n_in, w + (size_t)r * w_stride, w_stride, nw, x + (size_t)i * x_stride, x_stride, nr, tmp);
            for (int iw = 0; iw < nw; iw++)
                for (int k = 0; k < nr; k++) Y[(i + k) * y_stride + r + iw] = tmp[iw * CPU_DOT_NR + k];
        }
    }
}

void cpu_matmul(rt_type_t t, int64_t n_in, const void *W, size_t w_stride, const void *X,
                size_t x_stride, int64_t m, float *Y, int64_t y_stride, int64_t r0, int64_t r1) {
    cpu_dot_tile_fn fn = cpu_dot_kernel(t);
    if (fn == NULL || m <= 0 || r1 <= r0) return;
    const char *w = W;
    const char *x = X;
    float tmp[CPU_DOT_NW * CPU_DOT_NR];
    if (m == 1) {
        /* decode reads each weight once: before each tile, the lines of the
         * tile MATMUL_GEMV_PF bytes ahead, unless the kernel asks for them
         * itself as it goes */
        const bool burst = !cpu_dot_gemv_prefetches(t);
        int64_t r = r0;
        for (; r + CPU_GEMV_NW <= r1; r += CPU_GEMV_NW) {
            for (size_t o = 0; burst && o < CPU_GEMV_NW * w_stride; o += 64)
                __builtin_prefetch(w + (size_t)r * w_stride + MATMUL_GEMV_PF + o, 0, 3);
            fn(n_in, w + (size_t)r * w_stride, w_stride, CPU_GEMV_NW, x, x_stride, 1, tmp);
            for (int iw = 0; iw < CPU_GEMV_NW; iw++)
                Y[r + iw] = tmp[iw * CPU_DOT_NR];
        }
        for (; r < r1; r++) {
            fn(n_in, w + (size_t)r * w_stride, w_stride, 1, x, x_stride, 1, tmp);
            Y[r] = tmp[0];
        }
        return;
    }
    const size_t row_bytes = rt_type_row_size(t, n_in);
    int64_t rb_rows = row_bytes ? (int64_t)(24576 / row_bytes) : 1;
    rb_rows = rb_rows < CPU_GEMM_NW ? CPU_GEMM_NW : rb_rows - rb_rows % CPU_GEMM_NW;
    const cpu_gemm8_t *g8 = m >= CPU_GEMM8_NR ? cpu_gemm8_kernel(t) : NULL;
    int64_t m8 = 0;
    if (t == RT_TYPE_F16 && m >= CPU_F16_GEMM_NR && cpu_quant_get_isa() == CPU_ISA_AVX512) {
        m8 = m - m % CPU_F16_GEMM_NR;
        matmul_f16_gemm46(fn, n_in, w, w_stride, x, x_stride, m8, Y, y_stride, r0, r1);
    } else if (g8 && n_in % 32 == 0 && n_in / 32 <= MATMUL_SC_MAX_BLOCKS) {
        m8 = m - m % CPU_GEMM8_NR;
        matmul_gemm8(g8, fn, n_in, w, w_stride, x, x_stride, m8, Y, y_stride, r0, r1, rb_rows);
    }
    for (int64_t rb = r0; rb < r1 && m8 < m; rb += rb_rows) {
        const int64_t re = rb + rb_rows < r1 ? rb + rb_rows : r1;
        for (int64_t i = m8; i < m; i += CPU_DOT_NR) {
            const int nr = (int)(m - i < CPU_DOT_NR ? m - i : CPU_DOT_NR);
            const char *xi = x + (size_t)i * x_stride;
            for (int64_t r = rb; r < re; r += CPU_GEMM_NW) {
                const int nw = (int)(re - r < CPU_GEMM_NW ? re - r : CPU_GEMM_NW);
                fn(n_in, w + (size_t)r * w_stride, w_stride, nw, xi, x_stride, nr, tmp);
                for (int iw = 0; iw < nw; iw++)
                    for (int k = 0; k < nr; k++)
                        Y[(i + k) * y_stride + r + iw] = tmp[iw * CPU_DOT_NR + k];
            }
        }
    }
}
