/*
 * model_pack.c - the packed copy of a model's matrices for the engine's int8
 * GEMM (cpu_packed.h): one 64-aligned allocation owned by the model, one
 * region per packable matrix.
 */
#include "rotor/bigalloc.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model_impl.h"
#include "rotor/cpu_packed.h"
#include "rotor/log.h"

/* the matrices a forward pass multiplies by, each with the number of
 * matrices stacked in it (experts; 1 otherwise) and their distance in the
 * file and the packed copy; the output one last (with tied embeddings it is
 * tok_embd, whose rows the embedding lookup keeps reading from the file) */
typedef struct {
    model_weight_t *w;
    int n_stack;
    size_t stride;   /* bytes between stacked matrices in the file */
    size_t *pstride; /* where to note it in the packed copy, or NULL */
} pack_item_t;

static int pack_list(model_t *m, pack_item_t *out)
{
    int n = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        /* a MoE layer's dense FFN is empty (size 0, skipped); its shared
         * expert is a dense FFN */
        model_weight_t *ws[10] = {&L->wq,     &L->wk,    &L->wv,      &L->wo,    &L->w_gate,
                                  &L->w_up,   &L->w_down, &L->sh_gate, &L->sh_up, &L->sh_down};
        for (int i = 0; i < 10; i++, n++)
            if (out) out[n] = (pack_item_t){ws[i], 1, 0, NULL};
        if (m->hp.n_expert > 0) {
            const pack_item_t ex[3] = {
                {&L->exp_gate, m->hp.n_expert, L->exp_gate_bytes, &L->exp_gate_pbytes},
                {&L->exp_up, m->hp.n_expert, L->exp_up_bytes, &L->exp_up_pbytes},
                {&L->exp_down, m->hp.n_expert, L->exp_down_bytes, &L->exp_down_pbytes},
            };
            for (int i = 0; i < 3; i++, n++)
                if (out) out[n] = ex[i];
        }
    }
    if (out) out[n] = (pack_item_t){&m->output, 1, 0, NULL};
    return n + 1;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* the file-mapped pages of a packed matrix are not read any more: let the
 * kernel drop them from this process (a later read faults them back in from
 * the file), so packing does not double the resident weights */
static void drop_mapped_pages(const model_weight_t *w)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)w->data + pg - 1) & ~(pg - 1);
    const uintptr_t e = ((uintptr_t)w->data + (uintptr_t)(w->ne1 * (int64_t)w->row_bytes)) & ~(pg - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

rt_status_t model_pack_weights(model_t *m) { return model_pack_weights_experts(m, 0, 1); }

rt_status_t model_pack_weights_experts(model_t *m, int rank, int size)
{
    if (m->packed) return RT_OK;
    if (size < 1 || rank < 0 || rank >= size)
        return rt_error_set(RT_ERR_INVALID, "model pack: expert share %d of %d", rank, size);
    m->pack_ep_rank = rank;
    m->pack_ep_size = size;
    const int n = pack_list(m, NULL);
    pack_item_t *ws = malloc(sizeof *ws * (size_t)n);
    if (!ws) return rt_error_set(RT_ERR_NOMEM, "model pack: out of memory");
    pack_list(m, ws);
    /* a stack of experts keeps only this rank's, at e / size */
    for (int i = 0; i < n; i++)
        if (ws[i].n_stack > 1) ws[i].n_stack = (ws[i].n_stack - rank + size - 1) / size;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)ws[i].n_stack * align64(cpu_packed_size(ws[i].w->type, ws[i].w->ne1, ws[i].w->ne0));
    if (total == 0) {
        free(ws);
        return RT_OK;
    }
    m->packed = rt_big_alloc(total);
    if (!m->packed) {
        free(ws);
        return rt_error_set(RT_ERR_NOMEM, "model pack: cannot allocate %zu bytes of packed weights", total);
    }
    char *p = m->packed;
    for (int i = 0; i < n; i++) {
        model_weight_t *w = ws[i].w;
        const size_t sz = cpu_packed_size(w->type, w->ne1, w->ne0);
        if (sz == 0) continue;
        for (int e = 0; e < ws[i].n_stack; e++) {
            const int ex = ws[i].pstride ? rank + e * size : e; /* the expert held at local index e */
            rt_status_t st = cpu_pack_weights(w->type, (const char *)w->data + (size_t)ex * ws[i].stride,
                                              w->row_bytes, w->ne1, w->ne0, p + (size_t)e * align64(sz));
            if (st) { /* cannot happen for a size > 0; leave the model unpacked and usable */
                for (int k = 0; k < n; k++) ws[k].w->packed = NULL;
                m->tok_embd.packed = NULL;
                rt_big_free(m->packed, total);
                m->packed = NULL;
                free(ws);
                return st;
            }
        }
        w->packed = p;
        if (ws[i].pstride) *ws[i].pstride = align64(sz);
        p += (size_t)ws[i].n_stack * align64(sz);
    }
    if (m->hp.tied_embeddings) m->tok_embd.packed = m->output.packed;
    for (int i = 0; i < n; i++) /* tok_embd's rows still serve the embedding lookup */
        if (ws[i].w->packed && !(m->hp.tied_embeddings && ws[i].w == &m->output)) {
            model_weight_t all = *ws[i].w; /* a stack: all of its rows, other ranks' experts too */
            all.ne1 *= ws[i].pstride ? m->hp.n_expert : 1;
            drop_mapped_pages(&all);
        }
    m->packed_bytes = total;
    free(ws);
    RT_LOG_DEBUG("model: %zu bytes of packed weights (experts: %d of every %d)", total, 1, size);
    return RT_OK;
}

size_t model_packed_bytes(const model_t *m) { return m->packed_bytes; }
