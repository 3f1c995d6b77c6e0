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
    {"engine:block_size", CFG_INT, "16", 1, 1024, "Tokens per KV cache block (paged attention, prefix caching)."},
    {"engine:kv_cache_bytes", CFG_INT, "268435456", 1048576, 1099511627776.0,
     "KV cache pool size in bytes per engine (K and V, all layers); ignored when kv_cache_blocks is set."},
    {"engine:kv_cache_blocks", CFG_INT, "0", 0, 16777216, "KV cache pool size in blocks; 0 = from kv_cache_bytes."},
    {"engine:kv_type", CFG_STRING, "f16", 1, 0, "KV cache element type: f16 (like llama.cpp) or f32."},
    {"engine:max_num_seqs", CFG_INT, "64", 1, 4096, "Most sequences running at once in one engine."},
    {"engine:max_num_batched_tokens", CFG_INT, "512", 1, 65536,
     "Token budget of one engine step (decodes first, then chunked prefill)."},
    {"log:level", CFG_STRING, "info", 1, 0, "Text log level: debug, info, warn, error, off."},
    {"log:dir", CFG_STRING, "logs", 1, 0, "Folder for the job's logs (HDF5 and endpoint file)."},
    {NULL, CFG_INT, NULL, 0, 0, NULL},
};

const cfg_key_t *cfg_keys(void) { return cfg_key_table; }
