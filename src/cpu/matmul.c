/*
 * matmul.c - Y = X * W^T over a range of weight rows, on top of the dot-tile
 * kernels of the current ISA.
 *
 * Loop order: a block of weight rows small enough to stay in L1, then tiles
 * of CPU_DOT_NR activation rows, then pairs of rows of the block. Each kernel
 * call unpacks CPU_GEMM_NW weight rows once for up to CPU_DOT_NR activation
 * rows. The kernels compute each (weight row, activation row) pair with the
 * same operations whatever the tile shape, so the output does not depend on
 * m or on [r0, r1) (batch invariance).
 */
#include "cpu/quant_impl.h"

void cpu_matmul(rt_type_t t, int64_t n_in, const void *W, size_t w_stride, const void *X,
                size_t x_stride, int64_t m, float *Y, int64_t y_stride, int64_t r0, int64_t r1) {
    cpu_dot_tile_fn fn = cpu_dot_kernel(t);
    if (fn == NULL || m <= 0 || r1 <= r0) return;
    const char *w = W;
    const char *x = X;
    float tmp[CPU_DOT_NW * CPU_DOT_NR];
    if (m == 1) {
        int64_t r = r0;
        for (; r + CPU_GEMV_NW <= r1; r += CPU_GEMV_NW) {
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
    for (int64_t rb = r0; rb < r1; rb += rb_rows) {
        const int64_t re = rb + rb_rows < r1 ? rb + rb_rows : r1;
        for (int64_t i = 0; i < m; i += CPU_DOT_NR) {
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
