/*
 * cuda_check_main.c - rotor-cuda-check: runs every CUDA kernel against the
 * CPU reference of the same op and prints the max relative error. With no
 * GPU it says so and exits 0 (the build and link are what CI checks here);
 * bench/gpu/check.sh runs it on a GPU machine.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/cuda_kernels.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

#define CK(x)                                                                                      \
    do {                                                                                           \
        int e_ = (x);                                                                              \
        if (e_) {                                                                                  \
            fprintf(stderr, "cuda-check: %s failed: %s\n", #x, rt_cuda_error_string(e_));          \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void)
{
    int n_dev = 0;
    if (rt_cuda_device_count(&n_dev) != 0 || n_dev == 0) {
        printf("cuda-check: no CUDA device; kernels built and linked, nothing run\n");
        return 0;
    }
    unsigned seed = 1;
    const int rows = 1536, n = 576;
    float *x = malloc(sizeof(float) * rows * n), *w = malloc(sizeof(float) * n);
    float *ref = malloc(sizeof(float) * rows * n), *got = malloc(sizeof(float) * rows * n);
    for (int i = 0; i < rows * n; i++) x[i] = frand(&seed);
    for (int i = 0; i < n; i++) w[i] = 1.0f + 0.1f * frand(&seed);
    for (int r = 0; r < rows; r++) cpu_rmsnorm(x + (size_t)r * n, w, ref + (size_t)r * n, n, 1e-5f);
    float *dx, *dw, *dy;
    CK(rt_cuda_malloc((void **)&dx, sizeof(float) * rows * n));
    CK(rt_cuda_malloc((void **)&dw, sizeof(float) * n));
    CK(rt_cuda_malloc((void **)&dy, sizeof(float) * rows * n));
    CK(rt_cuda_memcpy_h2d(dx, x, sizeof(float) * rows * n));
    CK(rt_cuda_memcpy_h2d(dw, w, sizeof(float) * n));
    CK(rt_cuda_rmsnorm_f32(dx, dw, dy, rows, n, 1e-5f, NULL));
    CK(rt_cuda_sync());
    CK(rt_cuda_memcpy_d2h(got, dy, sizeof(float) * rows * n));
    double worst = 0;
    for (int i = 0; i < rows * n; i++) worst = fmax(worst, fabs(got[i] - ref[i]) / (fabs(ref[i]) + 1e-6));
    printf("cuda-check: rmsnorm_f32 %dx%d max rel err %.3g %s\n", rows, n, worst, worst < 1e-4 ? "OK" : "FAIL");
    int fail = worst >= 1e-4;

    /* q8_0 matvec against cpu_vec_dot on the same blocks */
    size_t rb = rt_type_row_size(RT_TYPE_Q8_0, n);
    char *wq = malloc(rb * rows);
    for (int r = 0; r < rows; r++) cpu_quantize_row(RT_TYPE_Q8_0, x + (size_t)r * n, wq + rb * r, n);
    float *v = malloc(sizeof(float) * n), *yref = malloc(sizeof(float) * rows), *ygot = malloc(sizeof(float) * rows);
    for (int i = 0; i < n; i++) v[i] = frand(&seed);
    for (int r = 0; r < rows; r++) {
        float tmp[576];
        cpu_dequantize_row(RT_TYPE_Q8_0, wq + rb * r, tmp, n);
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)tmp[i] * v[i];
        yref[r] = (float)s;
    }
    void *dwq;
    CK(rt_cuda_malloc(&dwq, rb * rows));
    CK(rt_cuda_memcpy_h2d(dwq, wq, rb * rows));
    CK(rt_cuda_memcpy_h2d(dx, v, sizeof(float) * n));
    CK(rt_cuda_matvec_q8_0(dwq, dx, dy, rows, n, NULL));
    CK(rt_cuda_sync());
    CK(rt_cuda_memcpy_d2h(ygot, dy, sizeof(float) * rows));
    worst = 0;
    for (int r = 0; r < rows; r++) worst = fmax(worst, fabs(ygot[r] - yref[r]) / (fabs(yref[r]) + 1e-3));
    printf("cuda-check: matvec_q8_0 %dx%d max rel err %.3g %s\n", rows, n, worst, worst < 1e-3 ? "OK" : "FAIL");
    fail |= worst >= 1e-3;
    rt_cuda_free(dx);
    rt_cuda_free(dw);
    rt_cuda_free(dy);
    rt_cuda_free(dwq);
    free(x); free(w); free(ref); free(got); free(wq); free(v); free(yref); free(ygot);
    return fail;
}
