/*
 * bpe.c - byte-level BPE over the pre-tokenizer's words (llama.cpp's
 * llm_tokenizer_bpe_session): each word starts as one symbol per UTF-8
 * character; a min-heap of adjacent pairs ordered by (merge rank, position)
 * repeatedly merges the best pair, skipping entries made stale by earlier
 * merges; the final symbols are looked up in the vocabulary. O(n log n) per
 * word.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_impl.h"

typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the word; n == 0 once merged away */
} sym_t;

typedef struct {
    int32_t rank;
    int32_t left, right;
    uint32_t size; /* bytes of left + right when queued */
} bigram_t;

typedef struct {
    const tok_vocab_t *v;
    tok_ids_t *out;
    sym_t *sym;
    size_t sym_cap;
    bigram_t *heap;
    size_t n_heap, heap_cap;
} bpe_ctx_t;

static bool bigram_before(const bigram_t *a, const bigram_t *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static rt_status_t heap_push(bpe_ctx_t *c, bigram_t b) {
    if (c->n_heap == c->heap_cap) {
        size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
        bigram_t *nh = realloc(c->heap, cap * sizeof *nh);
        if (!nh) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        c->heap = nh;
        c->heap_cap = cap;
    }
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &c->heap[parent])) break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = b;
    return RT_OK;
}

static bigram_t heap_pop(bpe_ctx_t *c) {
    bigram_t top = c->heap[0];
    bigram_t last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        const bigram_t *bv = &last;
        if (l < n && bigram_before(&c->heap[l], bv)) {
            best = l;
            bv = &c->heap[l];
        }
        if (l + 1 < n && bigram_before(&c->heap[l + 1], bv)) best = l + 1;
        if (best == i) break;
        c->heap[i] = c->heap[best];
        i = best;
    }
    if (n) c->heap[i] = last;
    return top;
}

static rt_status_t add_bigram(bpe_ctx_t *c, const char *w, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return RT_OK;
    const sym_t *l = &c->sym[left], *r = &c->sym[right];
    int32_t rank = tok_merge_rank(c->v, w + l->off, l->n, w + r->off, r->n);
    if (rank < 0) return RT_OK;
    return heap_push(c, (bigram_t){rank, left, right, l->n + r->n});
}

static rt_status_t emit_symbol(bpe_ctx_t *c, const char *s, size_t n) {
    int32_t id = tok_lookup(c->v, s, n);
    if (id >= 0) return tok_ids_push(c->out, id);
    /* no such token: llama.cpp falls back to single-byte lookups, dropping misses */
    for (size_t j = 0; j < n; j++) {
        id = tok_lookup(c->v, s + j, 1);
        rt_status_t st;
        if (id >= 0 && (st = tok_ids_push(c->out, id))) return st;
    }
    return RT_OK;
}

static rt_status_t bpe_word(const char *w, size_t len, void *arg) {
    bpe_ctx_t *c = arg;
    rt_status_t st;
    if (len == 0) return RT_OK;
    if (c->v->ignore_merges) {
        int32_t id = tok_lookup(c->v, w, len);
        if (id >= 0) return tok_ids_push(c->out, id);
    }
    if (len > c->sym_cap) {
        sym_t *ns = realloc(c->sym, len * sizeof *ns);
        if (!ns) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        c->sym = ns;
        c->sym_cap = len;
    }
    int32_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t cl = tok_utf8_len((uint8_t)w[off]);
        if (cl > len - off) cl = len - off;
        c->sym[n] = (sym_t){n - 1, -1, (uint32_t)off, (uint32_t)cl};
        off += cl;
        if (off < len) c->sym[n].next = n + 1;
    }
    c->n_heap = 0;
    for (int32_t i = 1; i < n; i++)
        if ((st = add_bigram(c, w, i - 1, i))) return st;
    while (c->n_heap) {
        bigram_t b = heap_pop(c);
        sym_t *l = &c->sym[b.left], *r = &c->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) c->sym[r->next].prev = b.left;
        if ((st = add_bigram(c, w, l->prev, b.left)) || (st = add_bigram(c, w, b.left, l->next)))
            return st;
    }
    for (int32_t i = 0; i >= 0; i = c->sym[i].next)
        if (c->sym[i].n && (st = emit_symbol(c, w + c->sym[i].off, c->sym[i].n))) return st;
    return RT_OK;
}

rt_status_t tok_bpe_encode(const tok_vocab_t *v, const char *text, size_t len, tok_ids_t *out) {
    bpe_ctx_t c = {.v = v, .out = out};
    rt_status_t st = tok_pretok_split(v, text, len, bpe_word, &c);
    free(c.sym);
    free(c.heap);
    return st;
}
