/*
 * forward_impl.h - private to src/model: what forward.c shares with the
 * parts of the forward pass in files of their own (moe.c).
 */
#ifndef ROTOR_MODEL_FORWARD_IMPL_H
#define ROTOR_MODEL_FORWARD_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model_impl.h"

/* How a layer's operations run: over the whole batch, each one split over
 * the pool (dp false), or over tokens [t0, t1) on the calling thread alone
 * (dp: its share of a data-parallel batch; scores is its scratch). */
typedef struct {
    int t0, t1;
    bool dp;
    float *scores;
} fwd_run_t;

/* y_i = x W_i^T for the n weights (same input dim), x: m rows of stride
 * x_stride, as rows [xq_row0, xq_row0 + m) of the context's
 * quantized-activation buffers; then each thread asks for its share of the
 * n_next weights. serial: on the calling thread alone (the data-parallel
 * forward, where each thread has its own rows), else split over the pool. */
void fwd_matmul_rows(model_ctx_t *c, int n, const model_weight_t *const *w, const float *x, int64_t x_stride,
                     int64_t m, float *const *y, const int64_t *y_stride, int n_next, const model_weight_t *const *next,
                     int64_t xq_row0, bool serial);

/* The mixture-of-experts FFN of tokens [r->t0, r->t1) of layer L: c->xn
 * (their normed rows) in, the FFN's output in c->xn (moe.c). */
void fwd_moe(model_ctx_t *c, const model_layer_t *L, const fwd_run_t *r);

#endif
