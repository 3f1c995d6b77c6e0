/*
 * model_impl.h - private layout of model_t, kv_cache_t and model_ctx_t.
 */
#ifndef ROTOR_MODEL_IMPL_H
#define ROTOR_MODEL_IMPL_H

#include "rotor/model.h"
#include "rotor/threadpool.h"

typedef struct {
    const void *data; /* into the mapping */
    rt_type_t type;
    int64_t ne0, ne1; /* ne0 = row length (input dim), ne1 = rows (output dim) */
    size_t row_bytes;
    const void *packed; /* cpu_packed.h panels in model_t.packed, or NULL */
} model_weight_t;

typedef struct {
    const float *attn_norm;  /* (n_embd) */
    model_weight_t wq, wk, wv, wo;
    const float *bq, *bk, *bv; /* (n_head*hd), (n_kv*hd) or NULL */
    const float *q_norm, *k_norm; /* (hd) per-head RMSNorm weights (qwen3) or NULL */
    const float *ffn_norm;   /* (n_embd) */
    model_weight_t w_gate, w_up, w_down; /* dense FFN (data NULL in a MoE layer) */
    /* mixture of experts (n_expert > 0): the router (n_embd -> n_expert);
     * expert e's gate/up/down are exp_*.data + e * exp_*_bytes, each a
     * model_weight_t of its own shape (model_expert_weight) */
    model_weight_t router;
    model_weight_t exp_gate, exp_up, exp_down; /* .packed: expert 0's panels, or NULL */
    size_t exp_gate_bytes, exp_up_bytes, exp_down_bytes;
    size_t exp_gate_pbytes, exp_up_pbytes, exp_down_pbytes; /* between experts' panels */
    /* qwen2moe's shared expert and its gate (n_embd -> 1), data NULL if none */
    model_weight_t sh_gate, sh_up, sh_down, sh_router;
} model_layer_t;

/* Expert e's slice of a stacked expert tensor (stride bytes apart in the
 * file, pstride bytes apart in the packed copy). */
/* Expert e of a stacked weight; the packed copy holds only the experts of
 * this rank's share (model_pack_weights_experts: e % ep_size == ep_rank, at
 * e / ep_size), the others have no packed copy. */
static inline model_weight_t model_expert_weight(const model_weight_t *w, size_t stride, size_t pstride, int e,
                                                 int ep_rank, int ep_size)
{
    model_weight_t s = *w;
    s.data = (const char *)w->data + (size_t)e * stride;
    const bool mine = ep_size <= 1 || e % ep_size == ep_rank;
    s.packed = w->packed && mine ? (const char *)w->packed + (size_t)(ep_size > 1 ? e / ep_size : e) * pstride
                                 : NULL;
    return s;
}

struct model {
    gguf_ctx_t *gguf;
    tok_vocab_t *vocab;
    model_hparams_t hp;
    model_weight_t tok_embd; /* (n_vocab rows, n_embd) */
    const float *output_norm;
    model_weight_t output;   /* == tok_embd when tied */
    const float *rope_freqs; /* (rope_dim/2) divisors or NULL */
    model_layer_t *layers;   /* (n_layer), owned */
    size_t bytes_per_token;
    int64_t n_params;
    rt_type_t main_type;
    void *packed;         /* model_pack_weights' panels, owned (rt_big_alloc of packed_bytes) */
    size_t packed_bytes;
    int pack_ep_rank, pack_ep_size; /* the packed copy's share of the experts (model_pack_weights_experts) */
};

struct kv_cache {
    int n_layer, n_blocks, block_size, kv_dim;
    kv_layout_t layout;
    rt_type_t type;
    size_t elt;  /* bytes per element */
    size_t bytes; /* of k and of v (rt_big_alloc blocks) */
    void *k;     /* (n_layer, n_blocks, block_size, kv_dim), owned (engine
                  * layout: (n_layer, n_blocks, kv_dim, block_size)) */
    void *v;     /* (n_layer, n_blocks, kv_dim, block_size), owned: transposed within
                  * a block so a head's values for consecutive positions are
                  * contiguous (vectorized gather of V^T for attention); engine
                  * layout: (n_layer, n_blocks, block_size, kv_dim) */
};

struct model_ctx {
    const model_t *m;
    threadpool_t *pool;
    int ep_rank, ep_size;          /* expert parallelism (model.h); size 1: off */
    model_ep_combine_fn ep_combine;
    model_ep_alltoall_fn ep_alltoall; /* data-parallel attention (model.h); NULL: off */
    void *ep_ud;
    float *ep_send;    /* (max_tokens * n_expert_used, n_embd + 1) rows to send: x, then the expert id */
    int32_t *ep_map;   /* (max_tokens * n_expert_used) the slot of each row sent */
    int *ep_counts;    /* (4 * ep_size) bytes sent, received, returned; the dispatch's offsets */
    int max_tokens;
    model_attn_order_t attn_order; /* MODEL_ATTN_LLAMACPP unless set */
    model_matmul_t matmul;         /* MODEL_MATMUL_LLAMACPP unless set */
    /* activations, (max_tokens, dim) each, owned */
    float *x, *xn, *q, *k, *v, *attn, *g, *u;
    void *xq;            /* quantized activations, (max_tokens, max row bytes) */
    size_t xq_stride;
    float *att_scores;   /* (n_threads, 4, n_ctx_max) scratch for attention */
    int att_cap;
    float *kv_tmp;       /* (n_threads, 2, head_dim) f16->f32 scratch */
    int32_t *out_rows;   /* (max_tokens) indices of rows that want logits */
    float *rope_cs;      /* (max_tokens, rope_dim) cos/sin of each token's position */
    float *att_parts;    /* (4 tokens, n_head, chunks, head_dim + 2) split attention's parts */
    _Atomic unsigned char *att_claim; /* (max_tokens, n_head_kv) engine attention units taken in this layer */
    int32_t *att_first;  /* (max_tokens) each sequence's first token in the batch */
    float *xo;           /* (max_tokens, n_embd) normed rows for the head */
    /* mixture of experts (NULL without experts): */
    float *moe_logits;   /* (max_tokens, n_expert) router logits, then probabilities */
    int32_t *moe_sel;    /* (max_tokens, n_expert_used) chosen experts, best first */
    float *moe_w;        /* (max_tokens, n_expert_used) their weights */
    int32_t *moe_rows;   /* (max_tokens) slot (token * n_expert_used + k) of each gathered row */
    float *moe_x;        /* (max_tokens, n_embd) rows gathered for one expert */
    float *moe_y;        /* (max_tokens, n_embd) an expert's output rows */
    float *moe_slot;     /* (max_tokens, n_expert_used, n_embd) expert outputs per token */
    float *moe_gate;     /* (max_tokens) shared expert's gate inputs */
    int ff_max;          /* row stride of g and u: the widest FFN hidden size (dense, expert, shared) */
};

#endif
