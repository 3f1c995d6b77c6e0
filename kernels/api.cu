// api.cu - the one symbol librotor_cuda.so exports: the table of
// include/rotor/cuda_kernels.h over the functions of rcu.h.
#include "rcu.h"
#include "rotor/cuda_kernels.h"

static const rt_cuda_api_t api = {
    RT_CUDA_API_VERSION,
    rcu_device_count, rcu_error_string, rcu_set_device, rcu_device_name, rcu_mem_info, rcu_malloc, rcu_free, rcu_memcpy_h2d,
    rcu_memcpy_d2h, rcu_memcpy_d2d, rcu_sync, rcu_blas_create, rcu_blas_destroy, rcu_gemm_f16, rcu_f32_to_f16,
    rcu_embed_f16, rcu_rmsnorm_f16, rcu_add_bias, rcu_add, rcu_swiglu_f16, rcu_gather_rows, rcu_qkv_rope_store,
    rcu_attention, rcu_matvec_q8_0, rcu_host_alloc, rcu_host_free, rcu_graph_begin, rcu_graph_end,
    rcu_graph_launch, rcu_graph_destroy, rcu_gemv_f16,
};

extern "C" __attribute__((visibility("default"))) const rt_cuda_api_t *rt_cuda_api(void) { return &api; }
