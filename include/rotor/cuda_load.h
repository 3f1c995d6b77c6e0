/*
 * cuda_load.h - find and load librotor_cuda.so (cuda_kernels.h) at run
 * time. Tried in order: $ROTOR_CUDA_LIB, ../lib/librotor_cuda.so next to
 * the running executable (build/bin -> build/lib), then the dynamic
 * linker's search path. Loaded once per process and never unloaded.
 */
#ifndef ROTOR_CUDA_LOAD_H
#define ROTOR_CUDA_LOAD_H

#include "rotor/cuda_kernels.h"
#include "rotor/status.h"

/* The CUDA interface, or RT_ERR_UNAVAILABLE with what was tried (no library:
 * built without nvcc; or no usable device). */
rt_status_t rt_cuda_load(const rt_cuda_api_t **out);

#endif
