/*
 * engine.h - one worker's inference engine: requests in (token ids, sampling
 * parameters, an id), events out (tokens, finish with reason, errors), a step
 * function driven by the worker's loop, cancellation at any point.
 *
 * Scheduling is vLLM's: continuous batching (requests join and leave between
 * steps), decodes scheduled first, then chunked prefill under a token budget
 * per step (max_num_batched_tokens), at most max_num_seqs running, preemption
 * by recompute when the KV pool is full. The KV cache is paged (block_size
 * tokens per block) with prefix caching: full blocks are identified by chained
 * xxh3 hashes (include/rotor/block_pool.h) and reused across requests; every
 * block stored or removed is published as a KV event.
 *
 * Backends sit behind engine_backend_ops_t (cpu; sim, which only models a
 * GPU's time; cuda later) and
 * only run forward passes over a model_batch_t; everything else (scheduling,
 * blocks, sampling, stop conditions) is backend-independent.
 *
 * Ownership: the engine copies requests (prompt, stop lists); events and
 * stats are written into caller buffers. Nothing is allocated per step.
 */
#ifndef ROTOR_ENGINE_H
#define ROTOR_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/block_pool.h"
#include "rotor/model.h"
#include "rotor/sampler.h"
#include "rotor/status.h"

typedef struct engine engine_t;

/* Expert parallelism (roles:ep): this engine is one rank of an instance
 * whose MoE experts are split over `size` ranks (model.h,
 * model_ctx_set_expert_parallel). Replicated attention (combine set): the
 * leader (rank 0 of the instance) schedules and talks to the router; before
 * each forward pass it hands the batch to step(), which sends it to the
 * other ranks; they run it with engine_forward_batch, so every MoE layer's
 * combine is a collective over the same batch. Data-parallel attention
 * (alltoall set, model_ctx_set_expert_parallel_dp): every rank is an engine
 * of its own; the caller steps them together and a rank whose step ran no
 * forward pass joins with engine_forward_batch of an empty batch. Owned by
 * the caller; outlives the engine. */
typedef struct engine_ep {
    int rank, size;
    model_ep_combine_fn combine;     /* replicated attention */
    model_ep_alltoall_fn alltoall;   /* data-parallel attention */
    void (*step)(void *ud, const model_batch_t *b); /* the leader's; NULL on the others */
    /* the leader's: a KV block it wrote outside a forward pass (import,
     * onboarding), for the others' caches (engine_kv_block_write) */
    void (*block_write)(void *ud, int32_t id, const void *src, size_t bytes);
    void *ud;
} engine_ep_t;

typedef struct {
    const char *backend;        /* "cpu" or "sim" */
    const char *model_path;
    int threads;                /* 0 = all cores */
    int block_size;             /* tokens per KV block (default 16) */
    int64_t kv_blocks;          /* pool size in blocks; 0 = from kv_bytes */
    int64_t kv_bytes;           /* pool size in bytes when kv_blocks is 0 */
    int max_num_seqs;           /* running sequences (default 64) */
    int max_num_batched_tokens; /* tokens per step (default 512) */
    int max_model_len;          /* prompt + output tokens per request; 0 = model's */
    rt_type_t kv_type;          /* RT_TYPE_F16 (default) or RT_TYPE_F32 */
    int64_t host_kv_bytes;      /* the KV block manager's host tier (G2, kvbm.h); 0 = none */
    const char *disk_kv_dir;    /* its disk tier (G3): a folder on node-local disk; NULL or "" = none */
    int64_t disk_kv_bytes;      /* the disk tier's size; 0 = none */
    const engine_ep_t *ep;      /* expert parallelism (cpu backend); NULL = none */
    int cuda_device;            /* cuda backend: the GPU; -1 = the node-local rank modulo the GPUs */
    int cuda_graph_max_tokens;  /* cuda backend: steps of up to this many tokens run as CUDA graphs; 0 = none */
    int cuda_gemv_max_tokens;   /* cuda backend: matmuls of up to this many tokens skip cuBLAS; 0 = never */
    double gpu_memory_utilization; /* cuda backend: share of the GPU's memory for weights, scratch and
                                      the KV pool (the pool's size unless kv_blocks is set) */
    struct {                    /* speculative decoding by n-gram lookup (spec_ngram.h) */
        int tokens;             /* draft tokens per decode step; 0 = off */
        int ngram_min, ngram_max; /* the suffix lengths looked up */
        int max_running;        /* draft only while at most this many sequences run */
    } spec;
    struct {                    /* the sim backend's time model (sim_model.h), [sim] keys */
        const char *gpu;        /* a preset: a100, h100, h200, b200, l40s */
        const char *shape;      /* "file" (the GGUF's) or a preset shape */
        double tflops, hbm_gbps; /* 0: the preset's */
        double mfu, mbu, overhead_s, weight_bytes, kv_bytes, gpu_memory_utilization;
        double link_gbps;       /* a disaggregated hand-off's link (engine_kv_transfer_s) */
    } sim;
} engine_config_t;

engine_config_t engine_config_default(void);
/* The engine:* and model:* keys of a config (model:path unless model_path is
 * non-NULL). Strings point into cfg, which must outlive the result.
 * RT_ERR_INVALID for an unknown engine:kv_type or backend. */
struct cfg;
rt_status_t engine_config_from_cfg(const struct cfg *cfg, const char *model_path, engine_config_t *out);

/* Constrained decoding: every token is one the constraint allows (the
 * sampler never chooses another), and the request finishes (STOP) when
 * the constraint is complete. */
typedef enum {
    ENGINE_CONSTRAINT_NONE = 0,
    ENGINE_CONSTRAINT_JSON_OBJECT, /* a JSON object (OpenAI's response_format json_object; json_grammar.h) */
} engine_constraint_t;

typedef struct {
    uint64_t id;                /* caller's id, unique among live requests */
    const int32_t *prompt;      /* (n_prompt) copied */
    size_t n_prompt;
    sampler_params_t sampling;
    int max_tokens;
    int min_tokens;             /* vLLM's: end-of-generation and stop tokens cannot be chosen before this
                                   many tokens (0..max_tokens) */
    bool ignore_eos;
    const int32_t *stop_tokens; /* (n_stop_tokens) extra stop ids, copied */
    size_t n_stop_tokens;
    const int32_t *logit_bias_ids; /* (n_logit_bias) OpenAI's logit_bias: token ids, copied */
    const float *logit_bias;       /* (n_logit_bias) added to their logits (sampler_set_logit_bias) */
    size_t n_logit_bias;
    int top_logprobs;           /* 0..ENGINE_MAX_TOP_LOGPROBS alternatives per token */
    bool logprobs;              /* compute TOKEN.logprob (a log-sum-exp over the vocabulary
                                   per token); implied by top_logprobs > 0 */
    bool prompt_logprobs;       /* also a PROMPT_LOGPROB event per prompt token after the first (its
                                   logprob given the tokens before it, with top_logprobs
                                   alternatives: OpenAI's echo with logprobs); the prompt is then
                                   computed whole, no prefix-cache hit, at most
                                   ENGINE_PROMPT_LOGPROB_ROWS positions a step */
    int constraint;             /* engine_constraint_t: what the output must be */
    bool prefill_only;          /* disaggregation's prefill side: compute the prompt's KV
                                   (its full blocks enter the prefix cache, for
                                   engine_kv_export) and finish with ENGINE_FINISH_PREFILL;
                                   no logits, no token */
} engine_request_t;

/* The most draft tokens per decode step (engine_config_t.spec.tokens). */
#define ENGINE_MAX_SPEC_TOKENS 16

/* OpenAI caps top_logprobs at 20. */
#define ENGINE_MAX_TOP_LOGPROBS 20

/* Logits rows a step keeps for prompt logprobs, besides the decodes' (and
 * PROMPT_LOGPROB events: room for them in engine_step's buffer beyond
 * engine_events_min). */
#define ENGINE_PROMPT_LOGPROB_ROWS 64

typedef enum {
    ENGINE_EV_TOKEN = 1,
    ENGINE_EV_FINISH,
    ENGINE_EV_ERROR,
    ENGINE_EV_PROMPT_LOGPROB, /* token = prompt token `position`, with its logprob and top alternatives;
                                 all of a request's come before its first TOKEN, in order */
} engine_event_kind_t;

typedef enum {
    ENGINE_FINISH_NONE = 0,
    ENGINE_FINISH_STOP,      /* end-of-generation or stop token */
    ENGINE_FINISH_LENGTH,    /* max_tokens or max_model_len */
    ENGINE_FINISH_CANCELLED, /* engine_cancel */
    ENGINE_FINISH_ERROR,
    ENGINE_FINISH_PREFILL,   /* a prefill_only request's prompt is computed */
} engine_finish_t;

typedef struct {
    engine_event_kind_t kind;
    uint64_t request_id;
    int32_t token;            /* TOKEN, PROMPT_LOGPROB */
    int32_t position;         /* PROMPT_LOGPROB: the prompt token's index (1 .. n_prompt - 1) */
    float logprob;            /* TOKEN: log-softmax of the chosen token (0 unless asked) */
    int n_top;                /* TOKEN: alternatives below (request's top_logprobs) */
    int32_t top_ids[ENGINE_MAX_TOP_LOGPROBS];  /* TOKEN: most likely ids, best first */
    float top_logprobs[ENGINE_MAX_TOP_LOGPROBS]; /* TOKEN: their log-softmax */
    engine_finish_t finish;   /* FINISH */
    int n_prompt;             /* FINISH: prompt tokens */
    int n_cached;             /* FINISH: prompt tokens served from the prefix cache */
    int n_generated;          /* FINISH */
    double t_scheduled;       /* FINISH: CLOCK_REALTIME s when first scheduled (0: never) */
    double t_prefill_done;    /* FINISH: CLOCK_REALTIME s when its prompt was done (0: never) */
    rt_status_t status;       /* ERROR */
} engine_event_t;

typedef struct {
    int n_seqs;               /* sequences in this step's batch */
    int n_prefill_tokens;
    int n_decode_tokens;
    int n_running, n_waiting, n_preempted_total;
    int blocks_total, blocks_used, blocks_cached, blocks_free;
    int64_t prefix_query_tokens_total; /* prompt tokens looked up in the prefix cache */
    int64_t prefix_hit_tokens_total;   /* of those, found cached (G1, or onboarded from G2) */
    int64_t kvbm_offloaded_total;      /* blocks copied from G1 to the host tier when evicted */
    int64_t kvbm_onboarded_total;      /* blocks copied back for a prefix hit */
    int32_t kvbm_blocks, kvbm_capacity; /* held in the host tier / its size (0: none) */
    int32_t kvbm_disk_blocks, kvbm_disk_capacity; /* the same for the disk tier */
    int n_spec_draft_tokens;           /* draft tokens verified in this step */
    int n_spec_accepted_tokens;        /* of those, accepted */
    int64_t spec_draft_tokens_total;   /* speculative decoding: draft tokens verified */
    int64_t spec_accepted_tokens_total; /* of those, accepted (each saved a decode step) */
    double step_s;
    double forward_s;                  /* of step_s, the backend's forward pass (the rest: scheduling, sampling) */
} engine_step_stats_t;

/* Backend ops table: designated initializers in a static registry. */
typedef struct {
    const char *name;
    /* load the model and a KV pool sized by cfg (kv_blocks, else kv_bytes);
     * reports the pool's block count, the vocabulary size and tokenizer */
    rt_status_t (*create)(const engine_config_t *cfg, void **state, int *n_blocks, int *n_vocab,
                          const tok_vocab_t **vocab, int *n_ctx);
    void (*destroy)(void *state);
    /* run one batch; logits of flagged tokens in batch order */
    rt_status_t (*forward)(void *state, const model_batch_t *batch, float *logits);
    /* optional (NULL: no KV block manager tiers): one block's KV bytes,
     * every layer; copy block id's out to dst / in from src */
    size_t (*block_bytes)(void *state);
    void (*block_read)(void *state, int32_t id, void *dst);
    void (*block_write)(void *state, int32_t id, const void *src);
    /* no KV bytes at all (sim): blocks are bookkeeping only, so a hand-off
     * (engine_kv_export/import) moves which blocks are cached, no bytes */
    bool kv_virtual;
    /* optional: the modelled seconds a hand-off of n blocks takes (sim: its
     * KV bytes over the link); NULL: a real transfer, already timed */
    double (*kv_transfer_s)(void *state, size_t n_blocks);
    /* optional: threads the engine may use between forward passes (sampling
     * a step's rows in parallel); NULL, or a NULL pool: it samples serially */
    struct threadpool *(*pool)(void *state);
} engine_backend_ops_t;

/* The registered backend called name, or NULL. */
const engine_backend_ops_t *engine_backend_find(const char *name);

rt_status_t engine_create(const engine_config_t *cfg, engine_t **out);
void engine_destroy(engine_t *e);

/* Queue a request. RT_ERR_INVALID for bad ones (empty prompt, bad ids, a
 * prompt longer than max_model_len), RT_ERR_FULL when the queue is full. */
rt_status_t engine_add_request(engine_t *e, const engine_request_t *r);
/* Cancel a waiting or running request; its FINISH (CANCELLED) comes with the
 * next step. RT_ERR_NOT_FOUND if unknown. */
rt_status_t engine_cancel(engine_t *e, uint64_t id);
/* Run one scheduling step and forward pass. Writes up to cap events; cap must
 * be at least engine_events_min(e): 2 * max_num_seqs (a token and a finish
 * per sequence), plus spec.tokens per sequence with speculative decoding (a
 * sequence's accepted drafts are tokens of the same step). Prompt logprobs
 * use the room beyond that, up to ENGINE_PROMPT_LOGPROB_ROWS events a step:
 * a request with prompt_logprobs waits while there is none. Cancelled
 * requests are finished first; when their FINISH events would leave less
 * room than that, the call only finishes cancellations (no forward pass) and
 * the next call goes on: no event is ever dropped. */
rt_status_t engine_step(engine_t *e, engine_event_t *events, size_t cap, size_t *n_events,
                        engine_step_stats_t *stats);
/* The smallest event buffer engine_step takes. */
size_t engine_events_min(const engine_t *e);
/* An event buffer no step ever waits for: the minimum, a FINISH for every
 * request the engine holds all cancelled at once, and the prompt logprobs'
 * ENGINE_PROMPT_LOGPROB_ROWS (what the worker and the in-process dispatcher
 * use). */
size_t engine_events_room(const engine_t *e);
/* Expert parallelism's other ranks: run one forward pass over a batch the
 * leader's step() sent (logits are computed and dropped). */
rt_status_t engine_forward_batch(engine_t *e, const model_batch_t *b);
/* ... and write a KV block the leader wrote (bytes must be a block's). */
rt_status_t engine_kv_block_write(engine_t *e, int32_t id, const void *src, size_t bytes);
/* Vocabulary size of the engine's model (valid token ids are below it). */
int engine_n_vocab(const engine_t *e);
/* Prompt + output tokens a request may reach (the context length). */
int engine_max_model_len(const engine_t *e);
/* The engine's state now, without a step (per-step fields zero). */
void engine_stats(const engine_t *e, engine_step_stats_t *stats);
/* True while requests are waiting or running. */
bool engine_has_work(const engine_t *e);
/* Test and debugging hook: fn sees each sequence's raw logits (n_vocab
 * floats, read-only, valid during the call) right before a token is chosen
 * from them; step is the index of that output token (0 = the first). NULL
 * removes it. Called from engine_step on the caller's thread. */
typedef void (*engine_logits_fn)(void *ud, uint64_t request_id, int step, const float *logits, int n_vocab);
void engine_set_logits_observer(engine_t *e, engine_logits_fn fn, void *ud);
/* Disaggregation's KV hand-off (transfer.h moves the bytes). One block's KV
 * bytes, every layer; 0 if the backend has none. A backend with none moves
 * nothing (the receiving engine computes the prompt itself), unless its KV
 * is virtual (sim): then export and import still count and cache the blocks,
 * with no bytes. */
size_t engine_kv_block_bytes(const engine_t *e);
/* Copy the KV of tokens' leading n_blocks full blocks, as far as they are in
 * the prefix cache (G1) from the first on, into dst (n_blocks x
 * engine_kv_block_bytes, caller-owned); *n_out receives how many. Touches
 * them (LRU) but changes nothing else. */
void engine_kv_export(engine_t *e, const int32_t *tokens, size_t n_blocks, void *dst, size_t *n_out);
/* Put n_blocks blocks of KV (src, as engine_kv_export wrote them) into the
 * prefix cache as tokens' leading full blocks: blocks already cached are
 * kept, the others are written into blocks from the pool (STORED events),
 * until the pool has no free or evictable block left. They end cached, the
 * most recently used, so a request for tokens admitted next finds them as a
 * prefix hit. *n_in receives the leading blocks now cached. */
void engine_kv_import(engine_t *e, const int32_t *tokens, size_t n_blocks, const void *src, size_t *n_in);
/* Seconds a hand-off of n blocks would take on the modelled link (sim; the
 * receiver admits the request only then); 0 for a real backend. */
double engine_kv_transfer_s(const engine_t *e, size_t n_blocks);

/* KV events (blocks stored in / removed from the prefix cache) since the last
 * drain, oldest first; see block_pool.h. */
size_t engine_kv_events_drain(engine_t *e, bp_event_t *out, size_t max);

#endif
