/*
 * engine_config.c - an engine_config_t from the engine:* and model:* keys.
 */
#include <string.h>

#include "rotor/config.h"
#include "rotor/engine.h"

rt_status_t engine_config_from_cfg(const cfg_t *c, const char *model_path, engine_config_t *out)
{
    engine_config_t e = engine_config_default();
    e.backend = cfg_str(c, "engine:backend");
    if (!engine_backend_find(e.backend))
        return rt_error_set(RT_ERR_INVALID, "engine:backend: unknown backend '%s' (known: cpu, sim, cuda)", e.backend);
    e.model_path = model_path ? model_path : cfg_str(c, "model:path");
    e.threads = (int)cfg_int(c, "model:threads");
    e.block_size = (int)cfg_int(c, "engine:block_size");
    e.kv_blocks = cfg_int(c, "engine:kv_cache_blocks");
    e.kv_bytes = cfg_int(c, "engine:kv_cache_bytes");
    e.max_num_seqs = (int)cfg_int(c, "engine:max_num_seqs");
    e.max_num_batched_tokens = (int)cfg_int(c, "engine:max_num_batched_tokens");
    e.max_model_len = (int)cfg_int(c, "model:ctx_size");
    const char *kv = cfg_str(c, "engine:kv_type");
    if (strcmp(kv, "f16") == 0)
        e.kv_type = RT_TYPE_F16;
    else if (strcmp(kv, "f32") == 0)
        e.kv_type = RT_TYPE_F32;
    else
        return rt_error_set(RT_ERR_INVALID, "engine:kv_type: '%s' is not f16 or f32", kv);
    const char *spec = cfg_str(c, "engine:spec_method");
    if (strcmp(spec, "ngram") == 0) {
        e.spec.tokens = (int)cfg_int(c, "engine:spec_tokens");
        e.spec.ngram_min = (int)cfg_int(c, "engine:spec_ngram_min");
        e.spec.ngram_max = (int)cfg_int(c, "engine:spec_ngram_max");
        e.spec.max_running = (int)cfg_int(c, "engine:spec_max_running");
        if (e.spec.ngram_max < e.spec.ngram_min)
            return rt_error_set(RT_ERR_INVALID, "engine:spec_ngram_max %d is less than engine:spec_ngram_min %d",
                                e.spec.ngram_max, e.spec.ngram_min);
    } else if (strcmp(spec, "none") != 0)
        return rt_error_set(RT_ERR_INVALID, "engine:spec_method: '%s' is not none or ngram", spec);
    e.host_kv_bytes = cfg_int(c, "kvbm:host_bytes");
    e.disk_kv_dir = cfg_str(c, "kvbm:disk_dir");
    e.disk_kv_bytes = cfg_int(c, "kvbm:disk_bytes");
    e.cuda_device = (int)cfg_int(c, "engine:cuda_device");
    e.cuda_graph_max_tokens = (int)cfg_int(c, "engine:cuda_graph_max_tokens");
    e.cuda_gemv_max_tokens = (int)cfg_int(c, "engine:cuda_gemv_max_tokens");
    e.gpu_memory_utilization = cfg_float(c, "engine:gpu_memory_utilization");
    e.sim.gpu = cfg_str(c, "sim:gpu");
    e.sim.shape = cfg_str(c, "sim:shape");
    e.sim.tflops = cfg_float(c, "sim:tflops");
    e.sim.hbm_gbps = cfg_float(c, "sim:hbm_gbps");
    e.sim.mfu = cfg_float(c, "sim:mfu");
    e.sim.mbu = cfg_float(c, "sim:mbu");
    e.sim.overhead_s = cfg_float(c, "sim:step_overhead_us") * 1e-6;
    e.sim.weight_bytes = cfg_float(c, "sim:weight_bytes");
    e.sim.kv_bytes = cfg_float(c, "sim:kv_bytes");
    e.sim.gpu_memory_utilization = cfg_float(c, "sim:gpu_memory_utilization");
    e.sim.link_gbps = cfg_float(c, "sim:link_gbps");
    *out = e;
    return RT_OK;
}
