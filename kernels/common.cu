// common.cu - device management helpers behind the C interface.
#include <cuda_runtime.h>

#include "rotor/cuda_kernels.h"

extern "C" int rt_cuda_device_count(int *count)
{
    cudaError_t e = cudaGetDeviceCount(count);
    if (e != cudaSuccess) *count = 0;
    return (int)e;
}

extern "C" const char *rt_cuda_error_string(int err) { return cudaGetErrorString((cudaError_t)err); }
extern "C" int rt_cuda_malloc(void **p, uint64_t bytes) { return (int)cudaMalloc(p, bytes); }
extern "C" int rt_cuda_free(void *p) { return (int)cudaFree(p); }
extern "C" int rt_cuda_memcpy_h2d(void *d, const void *s, uint64_t n)
{
    return (int)cudaMemcpy(d, s, n, cudaMemcpyHostToDevice);
}
extern "C" int rt_cuda_memcpy_d2h(void *d, const void *s, uint64_t n)
{
    return (int)cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost);
}
extern "C" int rt_cuda_sync(void) { return (int)cudaDeviceSynchronize(); }
