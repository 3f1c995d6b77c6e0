/*
 * model.h - Llama-family transformer models (llama, qwen2, qwen3, mistral; the
 * mixture-of-experts forms: llama with experts (Mixtral), qwen2moe, qwen3moe)
 * loaded from GGUF, their paged KV cache, and the batched forward pass on the
 * CPU.
 *
 * Weights are slices of the GGUF mapping (never copied). The forward pass
 * takes a batch of tokens from any number of sequences; each sequence's KV
 * lives in fixed-size blocks of a kv_cache_t addressed through the
 * sequence's block table, so the engine (continuous batching, prefix caching)
 * builds on this without a rewrite.
 *
 * Ownership: model_t owns the gguf_ctx_t and the vocabulary; kv_cache_t and
 * model_ctx_t are owned by whoever created them and must not outlive the
 * model.
 */
#ifndef ROTOR_MODEL_H
#define ROTOR_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/gguf.h"
#include "rotor/status.h"
#include "rotor/tokenizer.h"
#include "rotor/types.h"

typedef enum {
    MODEL_ARCH_LLAMA = 0,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_MISTRAL,
    MODEL_ARCH_QWEN2MOE,
    MODEL_ARCH_QWEN3,    /* qwen2 without QKV biases, with RMSNorm of each q and k head */
    MODEL_ARCH_QWEN3MOE, /* qwen3 with experts (renormalized, no shared expert) */
} model_arch_t;

/* Largest expert counts a model may declare (DeepSeek-V3: 8 of 256). */
#define MODEL_MAX_EXPERTS 512
#define MODEL_MAX_EXPERTS_USED 64

typedef struct {
    model_arch_t arch;
    char arch_name[32];
    int n_layer;
    int n_embd;
    int n_head;
    int n_head_kv;
    int head_dim;    /* n_embd / n_head unless the file says otherwise */
    int n_ff;
    int n_vocab;
    int n_ctx_train;
    float rms_eps;
    int rope_dim;    /* rotated dimensions per head */
    float rope_base;
    float rope_freq_scale; /* 1/linear scaling factor */
    bool rope_neox;  /* NeoX layout (qwen2) vs normal (llama) */
    bool tied_embeddings;
    bool qkv_bias;
    bool qk_norm;    /* RMSNorm of each query and key head before RoPE (qwen3) */
    /* mixture of experts (0 experts: every layer has a dense FFN). Each
     * token's FFN is the weighted sum of the n_expert_used experts with the
     * largest router probabilities (softmax over all n_expert), weights
     * renormalized to sum 1 when expert_norm (Mixtral, qwen3moe) or not (qwen2moe);
     * qwen2moe adds a shared expert gated by sigmoid(x . w). */
    int n_expert;
    int n_expert_used;
    int n_ff_exp;    /* an expert's hidden size (n_ff for llama/Mixtral) */
    int n_ff_shexp;  /* the shared expert's (0: none) */
    bool expert_norm;
} model_hparams_t;

typedef struct model model_t;

rt_status_t model_load(const char *path, model_t **out);
void model_free(model_t *m);

const model_hparams_t *model_hparams(const model_t *m);
const tok_vocab_t *model_vocab(const model_t *m);
const gguf_ctx_t *model_gguf(const model_t *m);
/* Bytes of weights read to decode one token (every matrix once, plus one
 * embedding row; of the experts, n_expert_used / n_expert of their bytes):
 * the numerator of the decode roofline. */
size_t model_bytes_per_token(const model_t *m);
/* Parameter count (elements of all tensors). */
int64_t model_n_params(const model_t *m);
/* Name of the dominant weight type ("q4_1"). */
const char *model_weight_type_name(const model_t *m);

/* The weights as the file stores them, for backends that keep their own
 * copy (the cuda backend uploads them): a matrix of ne1 rows of ne0
 * elements of type, row_bytes apart (data NULL: the model has none, as a
 * MoE layer's dense FFN); vectors are f32 (NULL: none). Views into the
 * model's mapping: valid while the model is. */
typedef struct {
    const void *data;
    rt_type_t type;
    int64_t ne0, ne1;
    size_t row_bytes;
} model_matrix_t;
typedef enum { MODEL_MAT_Q, MODEL_MAT_K, MODEL_MAT_V, MODEL_MAT_O, MODEL_MAT_GATE, MODEL_MAT_UP, MODEL_MAT_DOWN } model_mat_t;
typedef enum {
    MODEL_VEC_ATTN_NORM, MODEL_VEC_FFN_NORM, MODEL_VEC_BQ, MODEL_VEC_BK, MODEL_VEC_BV, MODEL_VEC_Q_NORM,
    MODEL_VEC_K_NORM
} model_vec_t;
model_matrix_t model_layer_matrix(const model_t *m, int layer, model_mat_t which);
const float *model_layer_vector(const model_t *m, int layer, model_vec_t which);
model_matrix_t model_embedding(const model_t *m);     /* (n_vocab rows, n_embd) */
model_matrix_t model_output_matrix(const model_t *m); /* the head; the embedding when tied */
const float *model_output_norm(const model_t *m);
const float *model_rope_freq_factors(const model_t *m); /* (rope_dim / 2) divisors, or NULL */

/* Repack the model's matrices of the types cpu_packed_supported() takes
 * (attention, FFN, output) into the panels of cpu_packed.h, for contexts set
 * to MODEL_MATMUL_PACKED. The model owns the copy (one allocation, freed by
 * model_free); the file-mapped pages of the packed matrices are released
 * (madvise DONTNEED: read again from the file only if something asks), so
 * the resident weights do not double. Call before creating contexts; a
 * second call does nothing. */
rt_status_t model_pack_weights(model_t *m);
/* The same, keeping of each MoE layer's experts only those with
 * e % size == rank (expert parallelism: this rank's share; the others are
 * never computed here, and their file pages are dropped like the packed
 * ones'). model_pack_weights is the share 0 of 1. */
rt_status_t model_pack_weights_experts(model_t *m, int rank, int size);
/* Bytes of the packed copy (0 before model_pack_weights or when no matrix
 * has a packed form). */
size_t model_packed_bytes(const model_t *m);

/* ---- paged KV cache ---- */
typedef struct kv_cache kv_cache_t;

/* n_blocks blocks of block_size token slots for every layer; kv_type is F16
 * (default, like llama.cpp) or F32. */
rt_status_t kv_cache_create(const model_t *m, int n_blocks, int block_size, rt_type_t kv_type,
                            kv_cache_t **out);

/* Element order inside a block, per layer:
 *   KV_LAYOUT_LLAMACPP (kv_cache_create): K rows (block_size, kv_dim), V
 *     transposed (kv_dim, block_size), for llama.cpp's attention orders;
 *   KV_LAYOUT_ENGINE: K transposed, V rows, for MODEL_ATTN_ENGINE
 *     (cpu_ops.h: cpu_attn_engine); block_size must be a multiple of 16. */
typedef enum { KV_LAYOUT_LLAMACPP = 0, KV_LAYOUT_ENGINE } kv_layout_t;
rt_status_t kv_cache_create_layout(const model_t *m, int n_blocks, int block_size, rt_type_t kv_type,
                                   kv_layout_t layout, kv_cache_t **out);
void kv_cache_destroy(kv_cache_t *kv);
int kv_cache_block_size(const kv_cache_t *kv);
int kv_cache_n_blocks(const kv_cache_t *kv);
size_t kv_cache_bytes(const kv_cache_t *kv);
/* Bytes of one block's K and V, every layer; copy them out of block id into
 * dst, or from src into it (the KV block manager's offload and onboard: the
 * same bytes, so the same logits). id must be in range. */
size_t kv_cache_block_bytes(const kv_cache_t *kv);
void kv_cache_block_read(const kv_cache_t *kv, int id, void *dst);
void kv_cache_block_write(kv_cache_t *kv, int id, const void *src);

/* A sequence's view of the cache: position p lives in block
 * blocks[p / block_size], slot p % block_size. */
typedef struct {
    const int32_t *blocks; /* (n_blocks) */
    int n_blocks;
} kv_block_table_t;

/* ---- forward ---- */
typedef struct {
    int n_tokens;
    const int32_t *tokens;  /* (n_tokens) token ids */
    const int32_t *pos;     /* (n_tokens) position of each token in its sequence */
    const int32_t *seq;     /* (n_tokens) index into seq_tables */
    const uint8_t *logits;  /* (n_tokens) 1 = compute logits for this token */
    const kv_block_table_t *seq_tables; /* (n_seqs) */
    int n_seqs;
} model_batch_t;

typedef struct model_ctx model_ctx_t;

/* Scratch for batches of up to max_tokens tokens, with n_threads threads
 * (0 = all online cores). The forward pass allocates nothing. */
rt_status_t model_ctx_create(const model_t *m, int max_tokens, int n_threads, model_ctx_t **out);
void model_ctx_destroy(model_ctx_t *c);
int model_ctx_threads(const model_ctx_t *c);
/* its thread pool, for other work between forward passes (the engine's
 * sampling); owned by the context */
struct threadpool *model_ctx_pool(model_ctx_t *c);

/*
 * Order of the attention dot products (both orders are llama.cpp's; they
 * differ in the last bits):
 *   MODEL_ATTN_LLAMACPP (the default): a sequence with 2+ tokens in the
 *     batch uses the multi-token (tinyBLAS) order, one with a single token
 *     the vec_dot order, as llama.cpp chooses. A whole prompt in one batch
 *     then one token per step is bit-identical to llama.cpp, but a token's
 *     bits depend on how many tokens of its sequence share its batch.
 *   MODEL_ATTN_INVARIANT: every token in the multi-token order. The logits
 *     and KV of a token are then a function of its sequence's tokens so far
 *     only, whatever the chunking, the batch company or where its earlier KV
 *     came from (the engine's batch invariance). A prompt's last token gets
 *     the same bits as under MODEL_ATTN_LLAMACPP with the prompt in one batch.
 *   MODEL_ATTN_ENGINE: rotor's own order (cpu_attn_engine), batch invariant
 *     like MODEL_ATTN_INVARIANT and the same bits on every ISA; the query
 *     heads of a kv head share every K/V load. Needs a KV_LAYOUT_ENGINE
 *     cache (model_forward refuses other pairings). RMSNorm then sums in the
 *     engine's order too (cpu_rmsnorm_engine). The engine uses it.
 */
typedef enum { MODEL_ATTN_LLAMACPP = 0, MODEL_ATTN_INVARIANT, MODEL_ATTN_ENGINE } model_attn_order_t;

void model_ctx_set_attn_order(model_ctx_t *c, model_attn_order_t order);

/*
 * Matmul numerics:
 *   MODEL_MATMUL_LLAMACPP (the default): the cpu_quant.h kernels, in
 *     llama.cpp's dot-product order for Q4_1 and Q8_0 (its bits) and in
 *     ggml's vec_dot order for Q5_0 (its bits for one token; llama.cpp's
 *     tinyBLAS takes Q5_0 with 2+); the other types close to llama.cpp's.
 *   MODEL_MATMUL_PACKED: the types cpu_packed_supported() takes (Q4_0, Q4_1,
 *     Q8_0, Q4_K, Q6_K, Q5_0, Q5_1, Q5_K, by ISA) go through the int8 GEMM on
 *     the model's packed panels (cpu_packed.h; model_pack_weights first),
 *     much faster for batches and bit-identical on every ISA; other types
 *     keep the default order. Batch invariant like the default.
 */
typedef enum { MODEL_MATMUL_LLAMACPP = 0, MODEL_MATMUL_PACKED } model_matmul_t;

void model_ctx_set_matmul(model_ctx_t *c, model_matmul_t mm);

/*
 * Expert parallelism: this context computes only the experts e of each MoE
 * layer with e % size == rank and leaves the other experts' outputs zero;
 * combine(ud, buf, n) must sum buf (n floats) in place over the `size`
 * contexts (one per rank of the engine instance, each running the same
 * batch: a collective, called once per MoE layer in the same order on every
 * rank). Each expert output is then computed on exactly one rank, so the sum
 * restores it exactly and the weighted combination that follows runs in the
 * same order as on one rank: the same bits. The forward pass then splits each
 * layer over the thread pool instead of running data-parallel by rows (a
 * collective per thread would not do). size 1 or a NULL combine: off.
 */
typedef void (*model_ep_combine_fn)(void *ud, float *buf, size_t n);
void model_ctx_set_expert_parallel(model_ctx_t *c, int rank, int size, model_ep_combine_fn combine, void *ud);

/*
 * Expert parallelism with data-parallel attention: each rank of the
 * instance runs its own batch (its own sequences, KV cache and scheduler);
 * in every MoE layer each token's rows for its chosen experts go to the
 * ranks that own them (e % size == rank), which run them, and the outputs
 * come back (dispatch and combine, as DeepSeek-style serving does).
 * alltoall(ud, send, send_bytes, &recv, recv_bytes) is one such exchange, a
 * collective over the instance's ranks: send_bytes[d] bytes of send, in
 * rank order, go to rank d; *recv receives a buffer owned by ud holding
 * recv_bytes[s] bytes from each rank s in rank order, valid until the
 * second call after this one. Called twice per MoE layer on every rank in
 * the same order, so every rank must run a forward pass when any does: one
 * with nothing of its own calls model_forward_idle. An expert's rows are
 * independent of each other (the engine's batch-invariant matmuls) and the
 * weighted sum runs in slot order on the token's own rank: the same bits as
 * one rank. Data-parallel threads stay off (one exchange per layer). Sets up
 * its buffers: RT_ERR_NOMEM if they cannot be had.
 */
typedef void (*model_ep_alltoall_fn)(void *ud, const void *send, const int *send_bytes, void **recv,
                                     int *recv_bytes);
rt_status_t model_ctx_set_expert_parallel_dp(model_ctx_t *c, int rank, int size, model_ep_alltoall_fn alltoall,
                                             void *ud);
/* Under model_ctx_set_expert_parallel_dp: a forward pass with no tokens of
 * this rank's own, joining every MoE layer's exchanges (running the rows
 * the other ranks send to this rank's experts). */
rt_status_t model_forward_idle(model_ctx_t *c);

/*
 * Run the batch. Token i attends to positions 0..pos[i] of its sequence,
 * whose KV for positions < pos[i] must already be in the cache (earlier
 * batches, or earlier tokens of this batch). Logits of the tokens flagged in
 * batch->logits are written to `logits` in batch order, n_vocab floats each.
 */
rt_status_t model_forward(model_ctx_t *c, kv_cache_t *kv, const model_batch_t *batch, float *logits);

#endif
