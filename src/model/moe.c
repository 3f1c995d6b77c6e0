/*
 * moe.c - the mixture-of-experts FFN of the forward pass (Mixtral-style
 * llama, qwen2moe, qwen3moe), in llama.cpp's graph order: the router's
 * softmax, each token's best experts, each expert once over the rows that
 * chose it, the weighted sum in slot order, qwen2moe's gated shared expert.
 * No allocation: the context's moe_* buffers (model_impl.h).
 */
#include <math.h>
#include <string.h>

#include "model/forward_impl.h"
#include "rotor/cpu_ops.h"

/* A token's router logits p (n_expert) become probabilities (ggml's
 * soft_max order), then its n_expert_used best experts, best first (ties:
 * the lower id), and their weights, renormalized to sum 1 when the model
 * says so (the sum in double, as ggml_sum_rows) */
static void moe_route(const model_hparams_t *hp, float *p, int32_t *sel, float *w)
{
    const int NX = hp->n_expert, K = hp->n_expert_used;
    cpu_compat_softmax(p, NX);
    bool taken[MODEL_MAX_EXPERTS] = {false};
    for (int k = 0; k < K; k++) {
        int best = -1; /* NaN probabilities lose every comparison: the first free expert */
        for (int e = 0; e < NX; e++)
            if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
        taken[best] = true;
        sel[k] = best;
        w[k] = p[best];
    }
    if (hp->expert_norm) {
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += (double)w[k];
        float s = (float)sum;
        if (!(s >= 6.103515625e-5f)) s = 6.103515625e-5f; /* llama.cpp's clamp (f16's smallest normal) */
        for (int k = 0; k < K; k++) w[k] = w[k] / s;
    }
}

/* y (rows t0..t1, stride w->ne1) = xn W^T for a router W (n_embd -> n).
 * Under llama.cpp's numerics, an F32 router with 2+ tokens takes tinyBLAS's
 * order, as llama.cpp's F32 matmul does then (GGUF files keep routers in
 * F32): its bits, but not batch invariant, like MODEL_ATTN_LLAMACPP itself.
 * The engine's invariant orders use the matmul. */
static void fwd_router(model_ctx_t *c, const model_weight_t *w, const fwd_run_t *r, float *y)
{
    const int E = c->m->hp.n_embd;
    const int64_t mt = r->t1 - r->t0, n = w->ne1;
    const float *x = c->xn + (size_t)r->t0 * E;
    if (c->attn_order == MODEL_ATTN_LLAMACPP && c->matmul == MODEL_MATMUL_LLAMACPP && mt >= 2 &&
        w->type == RT_TYPE_F32 && E % 16 == 0) {
        for (int64_t i = 0; i < mt; i++)
            for (int64_t o = 0; o < n; o++)
                y[i * n + o] = cpu_compat_dot_f32_gemm((const float *)((const char *)w->data + (size_t)o * w->row_bytes),
                                                       x + (size_t)i * E, E);
        return;
    }
    const model_weight_t *ws[1] = {w};
    float *ys[1] = {y};
    const int64_t ss[1] = {n};
    fwd_matmul_rows(c, 1, ws, x, E, mt, ys, ss, 0, NULL, r->t0, r->dp);
}

/* y (n rows of n_embd) = (silu(x Wg) * (x Wu)) Wd for n rows of x (n_embd
 * each), hidden size ff. Scratch: n rows of ff in g and u from row0 *
 * ff_max on (the region of rows [row0, row0 + n) whatever ff: a
 * data-parallel thread's rows stay its own) */
static void fwd_ffn_rows(model_ctx_t *c, const model_weight_t *wg, const model_weight_t *wu,
                         const model_weight_t *wd, const float *x, int64_t n, int ff, float *y, int64_t row0,
                         bool serial)
{
    const int E = c->m->hp.n_embd;
    float *g = c->g + (size_t)row0 * (size_t)c->ff_max, *u = c->u + (size_t)row0 * (size_t)c->ff_max;
    const model_weight_t *gu[2] = {wg, wu};
    float *ygu[2] = {g, u};
    const int64_t sff[2] = {ff, ff};
    fwd_matmul_rows(c, 2, gu, x, E, n, ygu, sff, 0, NULL, row0, serial);
    for (int64_t j = 0; j < n; j++) cpu_compat_swiglu(g + (size_t)j * ff, u + (size_t)j * ff, ff);
    const model_weight_t *d[1] = {wd};
    float *yd[1] = {y};
    const int64_t se[1] = {E};
    fwd_matmul_rows(c, 1, d, g, ff, n, yd, se, 0, NULL, row0, serial);
}

/* The weights of layer L's expert e (the packed copy holds this rank's share). */
static void expert_weights(const model_ctx_t *c, const model_layer_t *L, int e, model_weight_t w[3])
{
    const int pr = c->m->pack_ep_rank, ps = c->m->pack_ep_size;
    w[0] = model_expert_weight(&L->exp_gate, L->exp_gate_bytes, L->exp_gate_pbytes, e, pr, ps);
    w[1] = model_expert_weight(&L->exp_up, L->exp_up_bytes, L->exp_up_pbytes, e, pr, ps);
    w[2] = model_expert_weight(&L->exp_down, L->exp_down_bytes, L->exp_down_pbytes, e, pr, ps);
}

/* Data-parallel attention (model.h, model_ctx_set_expert_parallel_dp): the
 * slots of tokens [t0, t1) (possibly none) are computed where their experts
 * live. Dispatch: each (token, k) row goes, as n_embd floats and the expert
 * id, to rank e % size, grouped by rank; every rank runs its experts over
 * what it received (gathered per expert, at most max_tokens rows a pass) and
 * overwrites each row's floats with the output; combine: the rows go back
 * the way they came, and land in their slots. No allocation: the context's
 * ep_* buffers and the exchange's own. */
static void moe_exchange(model_ctx_t *c, const model_layer_t *L, int t0, int t1)
{
    const model_hparams_t *hp = &c->m->hp;
    const int E = hp->n_embd, K = hp->n_expert_used, NX = hp->n_expert, S = c->ep_size;
    const size_t row = (size_t)E + 1; /* floats per exchanged row */
    int *send_bytes = c->ep_counts, *recv_bytes = c->ep_counts + S, *back_bytes = c->ep_counts + 2 * S;
    int *at = c->ep_counts + 3 * S; /* each destination's next row */
    /* dispatch: rows grouped by destination rank (counted, then placed) */
    memset(at, 0, sizeof(int) * (size_t)S);
    for (int i = t0; i < t1; i++)
        for (int k = 0; k < K; k++) at[c->moe_sel[(size_t)i * K + k] % S]++;
    for (int d = 0, first = 0; d < S; d++) {
        send_bytes[d] = (int)((size_t)at[d] * row * sizeof(float));
        const int nd = at[d];
        at[d] = first;
        first += nd;
    }
    const int64_t n = (int64_t)(t1 - t0) * K;
    for (int i = t0; i < t1; i++)
        for (int k = 0; k < K; k++) {
            const int32_t e = c->moe_sel[(size_t)i * K + k];
            const int q = at[e % S]++;
            float *r = c->ep_send + (size_t)q * row;
            memcpy(r, c->xn + (size_t)i * E, sizeof(float) * (size_t)E);
            memcpy(r + E, &e, sizeof e);
            c->ep_map[q] = i * K + k;
        }
    void *recv = NULL;
    c->ep_alltoall(c->ep_ud, c->ep_send, send_bytes, &recv, recv_bytes);
    int64_t n_recv = 0;
    for (int s = 0; s < S; s++) n_recv += recv_bytes[s] / (int64_t)(row * sizeof(float));
    float *rx = recv;
    /* each of this rank's experts (e = rank + S x) with its rows: one pass
     * links them into a list per expert through the id slot, in arrival
     * order; the id is not needed after */
    int32_t head[MODEL_MAX_EXPERTS];
    const int n_mine = (NX - c->ep_rank + S - 1) / S;
    for (int x = 0; x < n_mine; x++) head[x] = -1;
    for (int64_t j = n_recv - 1; j >= 0; j--) {
        int32_t id;
        memcpy(&id, rx + (size_t)j * row + E, sizeof id);
        const int x = (id - c->ep_rank) / S;
        memcpy(rx + (size_t)j * row + E, &head[x], sizeof head[x]);
        head[x] = (int32_t)j;
    }
    for (int x = 0; x < n_mine; x++) {
        model_weight_t w[3];
        expert_weights(c, L, c->ep_rank + S * x, w);
        for (int32_t j = head[x]; j >= 0;) { /* in passes of at most max_tokens rows */
            int64_t m = 0;
            for (; j >= 0 && m < c->max_tokens; m++) {
                c->moe_rows[m] = j;
                memcpy(c->moe_x + (size_t)m * E, rx + (size_t)j * row, sizeof(float) * (size_t)E);
                memcpy(&j, rx + (size_t)j * row + E, sizeof j);
            }
            fwd_ffn_rows(c, &w[0], &w[1], &w[2], c->moe_x, m, hp->n_ff_exp, c->moe_y, 0, false);
            for (int64_t q = 0; q < m; q++)
                memcpy(rx + (size_t)c->moe_rows[q] * row, c->moe_y + (size_t)q * E, sizeof(float) * (size_t)E);
        }
    }
    /* combine: what each rank sent comes back from it, in the order sent */
    void *back = NULL;
    c->ep_alltoall(c->ep_ud, rx, recv_bytes, &back, back_bytes);
    const float *bk = back;
    for (int64_t j = 0; j < n; j++)
        memcpy(c->moe_slot + (size_t)c->ep_map[j] * E, bk + (size_t)j * row, sizeof(float) * (size_t)E);
}

/* The MoE FFN of tokens [t0, t1): xn (their normed rows) -> xn (the FFN's
 * output), as llama.cpp's graph computes it: router probabilities, each
 * token's chosen experts, each expert over the rows that chose it (gathered,
 * one matmul per expert), outputs times their weights summed best first,
 * plus qwen2moe's shared expert times sigmoid(x . w). Each token's result
 * depends on its own row only (batch invariant). Under expert parallelism
 * only this rank's experts run; the slots are summed over the ranks, or
 * (data-parallel attention) the rows travel to their experts' ranks and
 * back. With no tokens (model_forward_idle) only the exchange runs. */
void fwd_moe(model_ctx_t *c, const model_layer_t *L, const fwd_run_t *r)
{
    const model_hparams_t *hp = &c->m->hp;
    const int E = hp->n_embd, NX = hp->n_expert, K = hp->n_expert_used;
    const int t0 = r->t0, t1 = r->t1;
    const int64_t mt = t1 - t0;
    float *xn = c->xn;
    if (c->ep_alltoall && mt <= 0) { /* no tokens here: serve the other ranks' rows */
        moe_exchange(c, L, t0, t0);
        return;
    }
    fwd_router(c, &L->router, r, c->moe_logits + (size_t)t0 * NX);
    for (int i = t0; i < t1; i++)
        moe_route(hp, c->moe_logits + (size_t)i * NX, c->moe_sel + (size_t)i * K, c->moe_w + (size_t)i * K);
    const bool ep = c->ep_size > 1 && !c->ep_alltoall;
    if (c->ep_alltoall) moe_exchange(c, L, t0, t1);
    else if (ep) memset(c->moe_slot + (size_t)t0 * K * E, 0, sizeof(float) * (size_t)mt * K * E);
    for (int e = 0; e < NX && !c->ep_alltoall; e++) {
        if (ep && e % c->ep_size != c->ep_rank) continue; /* another rank's expert */
        int64_t n = 0; /* a token picks an expert at most once: n <= mt */
        for (int i = t0; i < t1; i++)
            for (int k = 0; k < K; k++)
                if (c->moe_sel[(size_t)i * K + k] == e) {
                    c->moe_rows[t0 + n] = i * K + k;
                    memcpy(c->moe_x + (size_t)(t0 + n) * E, xn + (size_t)i * E, sizeof(float) * (size_t)E);
                    n++;
                }
        if (n == 0) continue;
        model_weight_t w[3];
        expert_weights(c, L, e, w);
        fwd_ffn_rows(c, &w[0], &w[1], &w[2], c->moe_x + (size_t)t0 * E, n, hp->n_ff_exp, c->moe_y + (size_t)t0 * E, t0,
                     r->dp);
        for (int64_t j = 0; j < n; j++)
            memcpy(c->moe_slot + (size_t)c->moe_rows[t0 + j] * E, c->moe_y + (size_t)(t0 + j) * E,
                   sizeof(float) * (size_t)E);
    }
    /* expert parallelism: each slot was computed on one rank, zero on the
     * others; the sum restores every slot exactly (model.h) */
    if (ep) c->ep_combine(c->ep_ud, c->moe_slot + (size_t)t0 * K * E, (size_t)mt * K * E);
    const bool shared = L->sh_gate.data != NULL;
    if (shared) {
        fwd_router(c, &L->sh_router, r, c->moe_gate + t0);
        fwd_ffn_rows(c, &L->sh_gate, &L->sh_up, &L->sh_down, xn + (size_t)t0 * E, mt, hp->n_ff_shexp,
                     c->moe_y + (size_t)t0 * E, t0, r->dp);
    }
    for (int i = t0; i < t1; i++) {
        const float *slot = c->moe_slot + (size_t)i * K * E, *w = c->moe_w + (size_t)i * K;
        const float *sh = c->moe_y + (size_t)i * E;
        const float g = shared ? 1.0f / (1.0f + expf(-c->moe_gate[i])) : 0.0f;
        float *out = xn + (size_t)i * E;
        for (int d = 0; d < E; d++) {
            float o = slot[d] * w[0];
            for (int k = 1; k < K; k++) o = o + slot[(size_t)k * E + d] * w[k];
            out[d] = shared ? o + sh[d] * g : o;
        }
    }
}
