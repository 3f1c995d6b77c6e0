/*
 * model_view.c - the weights as the file stores them, for backends that
 * keep their own copy (model.h, model_layer_matrix).
 */
#include "model/model_impl.h"

static model_matrix_t view(const model_weight_t *w)
{
    return (model_matrix_t){.data = w->data, .type = w->type, .ne0 = w->ne0, .ne1 = w->ne1, .row_bytes = w->row_bytes};
}

model_matrix_t model_layer_matrix(const model_t *m, int layer, model_mat_t which)
{
    if (layer < 0 || layer >= m->hp.n_layer) return (model_matrix_t){0};
    const model_layer_t *L = &m->layers[layer];
    switch (which) {
    case MODEL_MAT_Q: return view(&L->wq);
    case MODEL_MAT_K: return view(&L->wk);
    case MODEL_MAT_V: return view(&L->wv);
    case MODEL_MAT_O: return view(&L->wo);
    case MODEL_MAT_GATE: return view(&L->w_gate);
    case MODEL_MAT_UP: return view(&L->w_up);
    case MODEL_MAT_DOWN: return view(&L->w_down);
    }
    return (model_matrix_t){0};
}

const float *model_layer_vector(const model_t *m, int layer, model_vec_t which)
{
    if (layer < 0 || layer >= m->hp.n_layer) return NULL;
    const model_layer_t *L = &m->layers[layer];
    switch (which) {
    case MODEL_VEC_ATTN_NORM: return L->attn_norm;
    case MODEL_VEC_FFN_NORM: return L->ffn_norm;
    case MODEL_VEC_BQ: return L->bq;
    case MODEL_VEC_BK: return L->bk;
    case MODEL_VEC_BV: return L->bv;
    case MODEL_VEC_Q_NORM: return L->q_norm;
    case MODEL_VEC_K_NORM: return L->k_norm;
    }
    return NULL;
}

model_matrix_t model_embedding(const model_t *m) { return view(&m->tok_embd); }
model_matrix_t model_output_matrix(const model_t *m) { return view(&m->output); }
const float *model_output_norm(const model_t *m) { return m->output_norm; }
const float *model_rope_freq_factors(const model_t *m) { return m->rope_freqs; }
