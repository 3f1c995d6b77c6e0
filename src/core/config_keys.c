/*
 * config_keys.c - the one table of configuration keys. Add a key here and
 * it is parsed, bounds-checked, overridable from the environment, printed by
 * `rotor --help-config` and listed in docs/configuration.md.
 */
#include "rotor/config.h"

static const cfg_key_t cfg_key_table[] = {
    {"model:path", CFG_STRING, "", 1, 0,
     "GGUF model file. Empty: the default model fetched by `make run`."},
    {"model:threads", CFG_INT, "0", 0, 1024,
     "CPU threads for the model's kernels; 0 = all online cores."},
    {"model:ctx_size", CFG_INT, "0", 0, 1048576,
     "Context length in tokens; 0 = the model's own (capped at 8192 to bound KV memory)."},
    {"model:chat_template", CFG_STRING, "", 1, 0,
     "Chat template family overriding the GGUF's tokenizer.chat_template: chatml, llama3, "
     "llama2, llama2-sys-bos, llama2-sys-strip, mistral, mistral-v1, mistral-v3, "
     "mistral-v3-tekken. Empty = detect from the file."},
    {"sampling:temperature", CFG_FLOAT, "1.0", 0, 10, "Default sampling temperature; 0 = greedy."},
    {"sampling:top_k", CFG_INT, "0", 0, 1000000, "Default top-k; 0 = off."},
    {"sampling:top_p", CFG_FLOAT, "1.0", 0, 1, "Default top-p (nucleus); 1 = off."},
    {"sampling:min_p", CFG_FLOAT, "0.0", 0, 1, "Default min-p; 0 = off."},
    {"sampling:max_tokens", CFG_INT, "256", 1, 1048576,
     "Default maximum number of generated tokens per request."},
    {"engine:block_size", CFG_INT, "16", 16, 1024, "Tokens per KV cache block (paged attention, prefix caching); a multiple of 16."},
    {"engine:kv_cache_bytes", CFG_INT, "268435456", 1048576, 1099511627776.0,
     "KV cache pool size in bytes per engine (K and V, all layers), cpu backend; ignored when kv_cache_blocks is "
     "set. The cuda and sim backends size the pool from the GPU's memory instead."},
    {"engine:kv_cache_blocks", CFG_INT, "0", 0, 16777216,
     "KV cache pool size in blocks; 0 = from kv_cache_bytes (cpu) or the GPU's memory (cuda, sim)."},
    {"engine:gpu_memory_utilization", CFG_FLOAT, "0.9", 0.05, 1,
     "cuda backend: share of the GPU's memory for this engine (weights, scratch and the KV pool, which gets what "
     "is left: vLLM's --gpu-memory-utilization) unless engine:kv_cache_blocks is set."},
    {"engine:kv_type", CFG_STRING, "f16", 1, 0, "KV cache element type: f16 (like llama.cpp) or f32."},
    {"engine:max_num_seqs", CFG_INT, "64", 1, 4096, "Most sequences running at once in one engine."},
    {"engine:max_num_batched_tokens", CFG_INT, "512", 1, 65536,
     "Token budget of one engine step (decodes first, then chunked prefill)."},
    {"engine:spec_method", CFG_STRING, "none", 1, 0,
     "Speculative decoding: none, or ngram (prompt lookup: draft the tokens that followed the latest earlier "
     "occurrence of the sequence's last n tokens, vLLM's ngram method). Drafts are verified by sampling every "
     "position as plain decoding would, so the output is the same tokens with or without it."},
    {"engine:spec_tokens", CFG_INT, "4", 1, 16, "Speculative decoding: draft tokens per decode step at most."},
    {"engine:spec_ngram_min", CFG_INT, "2", 1, 64, "ngram speculation: the shortest suffix looked up."},
    {"engine:spec_ngram_max", CFG_INT, "4", 1, 64,
     "ngram speculation: the longest suffix looked up (tried first); at least spec_ngram_min."},
    {"engine:spec_max_running", CFG_INT, "4", 1, 4096,
     "Speculative decoding drafts only while at most this many sequences run in the engine: a big batch is "
     "compute-bound, where verifying drafts costs as much as decoding them (vLLM's disable_by_batch_size)."},
    {"engine:backend", CFG_STRING, "cpu", 1, 0,
     "Engine backend: cpu, cuda (one NVIDIA GPU per rank through build/lib/librotor_cuda.so, built where nvcc "
     "is: dense Llama-family models, weights in f16, cuBLAS matmuls, paged f16 KV cache), or sim (computes "
     "nothing: each step sleeps for the time the [sim] GPU would take; scheduling, KV blocks, prefix caching, "
     "routing are real)."},
    {"engine:cuda_device", CFG_INT, "-1", -1, 1024,
     "cuda backend: the GPU this rank uses; -1 = its node-local rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID) "
     "modulo the GPUs it sees."},
    {"engine:cuda_gemv_max_tokens", CFG_INT, "8", 0, 8,
     "cuda backend: matmuls of up to this many tokens (decode steps of few sequences) run in rotor's own "
     "kernel, which reads each weight row once for all of them, instead of cuBLAS; 0 = cuBLAS always."},
    {"engine:cuda_graph_max_tokens", CFG_INT, "512", 0, 65536,
     "cuda backend: steps of up to this many tokens (decode steps, small prefill chunks) run as CUDA graphs, "
     "one recorded per batch shape the second time it is seen (one launch instead of hundreds); 0 = no graphs "
     "(vLLM's enforce_eager)."},
    {"disagg:max_local_prefill_tokens", CFG_INT, "1000", 0, 1073741824,
     "Disaggregated serving (roles:prefill and roles:decode set): a prompt whose tokens not already cached on "
     "its decode worker number more than this is prefilled on a prefill worker and its KV moved to the decode "
     "worker; shorter ones prefill where they decode (Dynamo's conditional disaggregation). 0 = always remote."},
    {"disagg:max_prefill_queue", CFG_INT, "0", 0, 1000000,
     "Disaggregated serving: a long prompt prefills where it decodes instead when every prefill worker it could "
     "go to already has this many prompts queued or running (Dynamo's max prefill queue size); 0 = no limit."},
    {"disagg:transfer", CFG_STRING, "mpi", 1, 0,
     "Transfer layer that moves KV blocks from prefill to decode workers: mpi (Open MPI's transport: shared "
     "memory in a node, UCX or TCP across nodes) or ucx (UCP tagged messages between the workers' own UCX "
     "workers: shared memory, CMA or RDMA as UCX picks)."},
    {"planner:ttft_slo_ms", CFG_FLOAT, "1000", 0.01, 3600000,
     "SLO planner (a roles:planner rank and disaggregated serving): target mean time to first token. Over it, "
     "with decode under planner:headroom of its target, a decode rank becomes a prefill rank."},
    {"planner:itl_slo_ms", CFG_FLOAT, "100", 0.01, 3600000,
     "SLO planner: target mean inter-token latency. Over it, with TTFT under planner:headroom of its target, a "
     "prefill rank becomes a decode rank."},
    {"planner:interval_s", CFG_FLOAT, "5", 0.1, 3600,
     "SLO planner: seconds per observation interval (rank 0 measures TTFT and ITL over it and asks the planner)."},
    {"planner:cooldown_s", CFG_FLOAT, "15", 0, 86400,
     "SLO planner: seconds it holds after moving a rank, so the move's effect is measured before the next."},
    {"planner:headroom", CFG_FLOAT, "0.8", 0.01, 1,
     "SLO planner: a pool gives up a rank only while its own latency is under this fraction of its target."},
    {"planner:kv_high", CFG_FLOAT, "0.9", 0, 1,
     "SLO planner: decode ranks' KV use (blocks in use / pool) that counts as decode pressure, as ITL over its "
     "target does (sequences are about to be preempted): no decode rank leaves, and a prefill rank may join; "
     "0 = ignore KV use."},
    {"planner:min_samples", CFG_INT, "4", 1, 1000000,
     "SLO planner: an interval with fewer first tokens or token gaps than this is not acted on."},
    {"planner:mode", CFG_STRING, "reactive", 1, 0,
     "SLO planner: reactive (moves one rank when measured TTFT or ITL misses its target and the other side has "
     "headroom) or predictive (Dynamo's SLA planner: forecasts each pool's demand in tokens/s, divides by what "
     "one rank serves, and moves as many ranks as it takes to load both pools alike)."},
    {"planner:predictor", CFG_STRING, "constant", 1, 0,
     "SLO planner, predictive mode: load forecaster, constant (the next interval looks like the last) or trend "
     "(Holt's double exponential smoothing: level and slope, one interval ahead)."},
    {"planner:prefill_capacity_tps", CFG_FLOAT, "0", 0, 1e12,
     "SLO planner, predictive mode: prompt tokens/s one prefill rank serves (from a profile, e.g. rotor "
     "generate's prefill tokens/s); 0 = learn it from the prefill ranks' steps (tokens per busy second)."},
    {"planner:decode_capacity_tps", CFG_FLOAT, "0", 0, 1e12,
     "SLO planner, predictive mode: output tokens/s one decode rank serves with its step within "
     "planner:itl_slo_ms; 0 = learn it from the decode ranks' steps (a line of step time against batch size)."},
    {"kvbm:host_bytes", CFG_INT, "0", 0, 1099511627776.0,
     "KV block manager's host tier (G2) per engine, bytes: blocks evicted from the KV pool are copied here and "
     "copied back on a prefix hit instead of prefilled again; 0 = none (evicted blocks are lost). cpu backend."},
    {"kvbm:disk_dir", CFG_STRING, "", 1, 0,
     "KV block manager's disk tier (G3): a folder on node-local disk (NVMe) for one HDF5 file per engine, removed "
     "at exit; blocks the host tier drops go there (or, without a host tier, those the KV pool evicts). Empty = none."},
    {"kvbm:disk_bytes", CFG_INT, "0", 0, 1099511627776.0 * 64, "KV block manager's disk tier size per engine, bytes; "
     "0 = none."},
    {"sim:gpu", CFG_STRING, "h100", 1, 0, "sim: the GPU whose time is modelled: a100, h100, h200, b200 or l40s."},
    {"sim:shape", CFG_STRING, "file", 1, 0,
     "sim: the model shape timed: file (the GGUF's), llama3-8b or qwen2.5-7b (the GGUF still gives the tokenizer)."},
    {"sim:tflops", CFG_FLOAT, "0", 0, 1e6, "sim: dense BF16 peak in TFLOP/s; 0 = the GPU's."},
    {"sim:hbm_gbps", CFG_FLOAT, "0", 0, 1e6, "sim: memory bandwidth in GB/s; 0 = the GPU's."},
    {"sim:mfu", CFG_FLOAT, "0.5", 0.01, 1, "sim: fraction of peak FLOP/s a step reaches when compute-bound."},
    {"sim:mbu", CFG_FLOAT, "0.8", 0.01, 1, "sim: fraction of the bandwidth a step reaches when memory-bound."},
    {"sim:step_overhead_us", CFG_FLOAT, "150", 0, 1e6, "sim: fixed time of every step (launches, scheduling), us."},
    {"sim:weight_bytes", CFG_FLOAT, "2", 0.125, 8, "sim: bytes per weight (2 = BF16, 1 = FP8, 0.5 = 4-bit)."},
    {"sim:kv_bytes", CFG_FLOAT, "2", 0.5, 8, "sim: bytes per KV-cache element."},
    {"sim:link_gbps", CFG_FLOAT, "50", 0.1, 100000,
     "sim: GB/s of the link a disaggregated KV hand-off crosses (50: a 400 Gb/s InfiniBand NIC per GPU); the "
     "decode GPU admits a handed-off request once its KV bytes would have arrived."},
    {"sim:gpu_memory_utilization", CFG_FLOAT, "0.9", 0.05, 1,
     "sim: share of the GPU's memory for weights + KV pool (the pool's size unless engine:kv_cache_blocks is set)."},
    {"roles:router", CFG_STRING, "0", 1, 0,
     "Ranks of the router (front end); exactly rank 0. Rank lists look like 0, 1-3, 4,6 or 1- (to the last rank)."},
    {"roles:worker", CFG_STRING, "1-", 1, 0,
     "Ranks that prefill and decode (aggregated serving). The default, 1-, is every rank from 1 that no other "
     "role names. With one rank in the job, rank 0 also runs an engine."},
    {"roles:prefill", CFG_STRING, "", 1, 0, "Ranks that only prefill (disaggregated serving): they compute long prompts and hand the KV to a decode "
     "rank (see [disagg]). Needs roles:decode."},
    {"roles:decode", CFG_STRING, "", 1, 0, "Ranks that decode (disaggregated serving): the router sends every request to one of them (or a worker "
     "rank); prompts longer than disagg:max_local_prefill_tokens are prefilled on a prefill rank first."},
    {"roles:planner", CFG_STRING, "", 1, 0,
     "Rank of the SLO planner (at most one): it moves ranks between the prefill and decode pools to meet "
     "planner:ttft_slo_ms and planner:itl_slo_ms."},
    {"roles:tp", CFG_INT, "1", 1, 1, "Tensor-parallel ranks per engine instance (1 for now)."},
    {"roles:ep", CFG_INT, "1", 1, 64,
     "Expert-parallel ranks per engine instance (mixture-of-experts models, cpu backend): the engine ranks form "
     "instances of this many consecutive ranks of one role; the first schedules and serves, each rank computes "
     "the experts e with e % ep == its index, and every MoE layer sums the experts' outputs over the instance "
     "(MPI_Allreduce). Attention and dense layers are replicated on every rank of the instance."},
    {"roles:ep_attention", CFG_STRING, "replicated", 1, 0,
     "Expert parallelism (roles:ep > 1): replicated (the instance's first rank schedules; every rank runs the "
     "whole batch and sums the experts' outputs) or data_parallel (DeepSeek-style: every rank of the instance "
     "is a worker of its own with its own requests, batch and KV cache; in each MoE layer the rows go to their "
     "experts' ranks and back with MPI_Alltoallv, and the instance's ranks step together)."},
    {"router:policy", CFG_STRING, "least_loaded", 1, 0,
     "How rank 0 picks a worker: round_robin; least_loaded (fewest requests in flight); random; kv_aware (the least "
     "kv_overlap_weight x new + its KV blocks in flight + new, new = prompt blocks the worker does not hold in its KV "
     "cache, learnt from the workers' KV events: Dynamo's KV router)."},
    {"router:kv_overlap_weight", CFG_FLOAT, "1.0", 0, 1000,
     "kv_aware: weight of a prompt block to prefill against a block of load; 0 = least blocks in flight (the "
     "request's own counted) only."},
    {"router:kv_temperature", CFG_FLOAT, "0.0", 0, 100,
     "kv_aware: 0 = always the least cost; above 0, sample workers by softmax of -cost (normalized to 0..1) / "
     "temperature, spreading load among near-equal ones."},
    {"server:host", CFG_STRING, "127.0.0.1", 1, 0, "Address the OpenAI-compatible HTTP endpoint listens on."},
    {"server:port", CFG_INT, "8000", 0, 65535, "TCP port of the endpoint; 0 = any free port (see the endpoint file)."},
    {"server:api_key", CFG_STRING, "", 1, 0,
     "If set, every /v1 request needs `Authorization: Bearer <key>` (401 otherwise)."},
    {"server:model_name", CFG_STRING, "", 1, 0,
     "Model id served at /v1/models and accepted in requests; empty = the GGUF file name without .gguf."},
    {"server:max_body_bytes", CFG_INT, "1048576", 1024, 1073741824, "Largest request body accepted (413 above)."},
    {"server:max_queued_requests", CFG_INT, "4096", 1, 1048576,
     "Requests admitted at once (running + waiting); more get 429 with Retry-After."},
    {"server:max_tokens_limit", CFG_INT, "0", 0, 1048576,
     "Largest max_tokens a request may ask for; 0 = the context length."},
    {"server:timeout_s", CFG_INT, "30", 1, 86400,
     "Seconds a client may take to send its request (slow clients are dropped)."},
    {"job:shutdown_grace_s", CFG_FLOAT, "10", 0, 3600,
     "On SIGINT/SIGTERM: seconds in-flight requests may take to finish before they are cancelled."},
    {"job:heartbeat_interval_s", CFG_FLOAT, "0.5", 0.01, 60, "Seconds between a worker's heartbeats to rank 0."},
    {"job:heartbeat_timeout_s", CFG_FLOAT, "10", 0.1, 3600,
     "A worker silent this long is taken out of routing and its requests fail."},
    {"log:hdf5", CFG_BOOL, "true", 0, 0, "Write the job's HDF5 log (rotor-<time>.h5 in log:dir)."},
    {"log:flush_interval_s", CFG_FLOAT, "1", 0.01, 3600,
     "Seconds between HDF5 log flushes; a killed job loses at most this much."},
    {"log:level", CFG_STRING, "info", 1, 0, "Text log level: debug, info, warn, error, off."},
    {"log:dir", CFG_STRING, "logs", 1, 0, "Folder for the job's logs (HDF5 and endpoint file)."},
    {NULL, CFG_INT, NULL, 0, 0, NULL},
};

const cfg_key_t *cfg_keys(void) { return cfg_key_table; }
