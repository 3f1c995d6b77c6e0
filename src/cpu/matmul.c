/*
 * matmul.c - Y = X * W^T over a range of weight rows, on top of the dot-tile
 * kernels of the current ISA.
 *
 * Loop order: a block of weight rows small enough to stay in L1, then tiles
 * of CPU_DOT_NR activation rows, then the rows of the block. Each kernel call
 * unpacks a weight row once for up to CPU_DOT_NR activation rows. The kernels
 * compute each (weight row, activation row) pair with the same operations
 * whatever the tile size, so the output does not depend on m or [r0, r1).
 */
#include "cpu/quant_impl.h"

void cpu_matmul(rt_type_t t, int64_t n_in, const void *W, size_t w_stride, const void *X,
                size_t x_stride, int64_t m, float *Y, int64_t y_stride, int64_t r0, int64_t r1)
{
    cpu_dot_tile_fn fn = cpu_dot_kernel(t);
    if (fn == NULL || m <= 0 || r1 <= r0)
        return;
    const char *w = W;
    const char *x = X;
    const size_t row_bytes = rt_type_row_size(t, n_in);
    int64_t rb_rows = row_bytes ? (int64_t)(24576 / row_bytes) : 1;
    if (rb_rows < 1)
        rb_rows = 1;
    if (m == 1) {
        for (int64_t r = r0; r < r1; r++)
            fn(n_in, w + (size_t)r * w_stride, x, x_stride, 1, &Y[r]);
        return;
    }
    float tmp[CPU_DOT_NR];
    for (int64_t rb = r0; rb < r1; rb += rb_rows) {
        const int64_t re = rb + rb_rows < r1 ? rb + rb_rows : r1;
        for (int64_t i = 0; i < m; i += CPU_DOT_NR) {
            const int nr = (int)(m - i < CPU_DOT_NR ? m - i : CPU_DOT_NR);
            const char *xi = x + (size_t)i * x_stride;
            for (int64_t r = rb; r < re; r++) {
                fn(n_in, w + (size_t)r * w_stride, xi, x_stride, nr, tmp);
                for (int k = 0; k < nr; k++)
                    Y[(i + k) * y_stride + r] = tmp[k];
            }
        }
    }
}
