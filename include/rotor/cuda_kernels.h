/*
 * cuda_kernels.h - C interface to rotor's CUDA kernels (the .cu files in kernels/).
 * Each op has a launcher taking a cudaStream_t (as void*) and device
 * pointers, and is tested against the CPU reference of the same op
 * (rotor-cuda-check). Status: the first ops of the CUDA backend; the backend
 * itself (engine ops table) comes with the Engine issue.
 */
#ifndef ROTOR_CUDA_KERNELS_H
#define ROTOR_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0 on success, else a cudaError_t value. */
int rt_cuda_device_count(int *count);
const char *rt_cuda_error_string(int err);

/* y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w   for r < rows */
int rt_cuda_rmsnorm_f32(const float *x, const float *w, float *y, int rows, int n, float eps, void *stream);

/* y[r] = dot(W[r, :], x) for r < rows; W is q8_0 blocks (ggml layout), n % 32 == 0 */
int rt_cuda_matvec_q8_0(const void *W, const float *x, float *y, int rows, int n, void *stream);

/* host helpers for the check tool */
int rt_cuda_malloc(void **p, uint64_t bytes);
int rt_cuda_free(void *p);
int rt_cuda_memcpy_h2d(void *dst, const void *src, uint64_t bytes);
int rt_cuda_memcpy_d2h(void *dst, const void *src, uint64_t bytes);
int rt_cuda_sync(void);

#ifdef __cplusplus
}
#endif

#endif
