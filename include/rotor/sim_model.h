/*
 * sim_model.h - the time model of the engine's `sim` backend: what one
 * engine step would take on a chosen GPU, from a roofline of the step's
 * FLOPs and bytes (Dynamo's planner and vLLM's simulators reason the same
 * way). The sim backend sleeps that long instead of computing, so the
 * router, the planner and the job can be exercised with many "GPUs" on a
 * small machine.
 *
 *   step = overhead + max(FLOPs / (peak x mfu), bytes / (bandwidth x mbu))
 *   FLOPs = 2 x active parameters x tokens + 4 x layers x q width x (sum over
 *           tokens of the positions attended)
 *   bytes = weights read (all of a dense model; the experts the step's tokens
 *           touch of an MoE) + every sequence's KV read once
 *
 * Ownership: plain values; nothing is allocated.
 */
#ifndef ROTOR_SIM_MODEL_H
#define ROTOR_SIM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rotor/model.h"
#include "rotor/status.h"

typedef struct {
    const char *name;
    double tflops;   /* dense BF16 peak, 10^12 FLOP/s */
    double hbm_gbps; /* memory bandwidth, 10^9 B/s */
    double hbm_gib;  /* memory, GiB */
} sim_gpu_t;

/* The preset called name (a100, h100, h200, b200, l40s), or NULL. */
const sim_gpu_t *sim_gpu_find(const char *name);
/* The preset names, comma-separated (for messages and docs). */
const char *sim_gpu_names(void);

/* The model shape the time model charges (from the GGUF, or a preset). */
typedef struct {
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    int n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
} sim_shape_t;

/* The shape of a model's hyperparameters. */
sim_shape_t sim_shape_of(const model_hparams_t *hp);
/* A named shape (llama3-8b, qwen2.5-7b) for timing a model larger than the
 * file at hand; RT_ERR_NOT_FOUND otherwise. */
rt_status_t sim_shape_preset(const char *name, sim_shape_t *out);

typedef struct {
    sim_gpu_t gpu;
    double mfu;            /* fraction of peak FLOP/s reached, 0..1 */
    double mbu;            /* fraction of bandwidth reached, 0..1 */
    double overhead_s;     /* per step */
    double weight_bytes;   /* per parameter (2 = BF16, 1 = FP8) */
    double kv_bytes;       /* per KV element */
} sim_cost_t;

/* Parameters: every weight (the embedding and the head counted apart, as
 * untied models have them); those one token computes with (the head, not
 * the embedding). */
double sim_params_total(const sim_shape_t *s);
double sim_params_active(const sim_shape_t *s);
/* KV bytes per token (K and V, every layer). */
double sim_kv_bytes_per_token(const sim_shape_t *s, const sim_cost_t *c);

/* Seconds of one step: n_tokens tokens, n_logits of them with logits (the
 * head runs for those only); attended is the sum over the tokens of the
 * positions each attends to (its position + 1), kv_tokens the sum over the
 * step's sequences of their context after the step. */
double sim_step_seconds(const sim_shape_t *s, const sim_cost_t *c, int64_t n_tokens, int64_t n_logits, double attended,
                        double kv_tokens);

#endif
