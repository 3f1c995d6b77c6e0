/*
 * spm.c - SentencePiece-style tokenization (llama.cpp's llm_tokenizer_spm):
 * the fragment's spaces become "▁" (with one prepended when the caller asks),
 * each UTF-8 character starts as a symbol, and a max-heap of adjacent pairs
 * whose concatenation is a vocabulary token, ordered by (token score,
 * leftmost first), merges greedily. Symbols that are not tokens fall back to
 * <0xNN> byte tokens.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_impl.h"

typedef struct {
    int32_t prev, next;
    uint32_t off, n;
} ssym_t;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size;
} sbigram_t;

typedef struct {
    const tok_vocab_t *v;
    const char *text;
    ssym_t *sym;
    sbigram_t *heap;
    size_t n_heap, heap_cap;
} spm_ctx_t;

static bool sb_before(const sbigram_t *a, const sbigram_t *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static rt_status_t sheap_push(spm_ctx_t *c, sbigram_t b) {
    if (c->n_heap == c->heap_cap) {
        size_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
        sbigram_t *nh = realloc(c->heap, cap * sizeof *nh);
        if (!nh) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        c->heap = nh;
        c->heap_cap = cap;
    }
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!sb_before(&b, &c->heap[parent])) break;
        c->heap[i] = c->heap[parent];
        i = parent;
    }
    c->heap[i] = b;
    return RT_OK;
}

static sbigram_t sheap_pop(spm_ctx_t *c) {
    sbigram_t top = c->heap[0];
    sbigram_t last = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        const sbigram_t *bv = &last;
        if (l < n && sb_before(&c->heap[l], bv)) {
            best = l;
            bv = &c->heap[l];
        }
        if (l + 1 < n && sb_before(&c->heap[l + 1], bv)) best = l + 1;
        if (best == i) break;
        c->heap[i] = c->heap[best];
        i = best;
    }
    if (n) c->heap[i] = last;
    return top;
}

static rt_status_t try_bigram(spm_ctx_t *c, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return RT_OK;
    const ssym_t *l = &c->sym[left], *r = &c->sym[right];
    int32_t id = tok_lookup(c->v, c->text + l->off, l->n + r->n);
    if (id < 0) return RT_OK;
    return sheap_push(c, (sbigram_t){c->v->tokens[id].score, left, right, l->n + r->n});
}

static rt_status_t emit(spm_ctx_t *c, const ssym_t *s, tok_ids_t *out) {
    int32_t id = tok_lookup(c->v, c->text + s->off, s->n);
    if (id >= 0) return tok_ids_push(out, id);
    for (uint32_t j = 0; j < s->n; j++) {
        id = c->v->byte_tok[(uint8_t)c->text[s->off + j]];
        if (id < 0) id = c->v->unk;
        rt_status_t st;
        if (id >= 0 && (st = tok_ids_push(out, id))) return st;
    }
    return RT_OK;
}

rt_status_t tok_spm_encode(const tok_vocab_t *v, const char *text, size_t len, bool space_prefix,
                           tok_ids_t *out) {
    static const char ws[] = "\xe2\x96\x81"; /* U+2581 */
    rt_status_t st = RT_OK;
    spm_ctx_t c = {.v = v};
    char *buf = malloc(len * 3 + 4);
    c.sym = malloc((len + 1) * sizeof *c.sym);
    if (!buf || !c.sym) {
        st = rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        goto out;
    }
    size_t bl = 0;
    if (space_prefix) {
        memcpy(buf, ws, 3);
        bl = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + bl, ws, 3);
            bl += 3;
        } else {
            buf[bl++] = text[i];
        }
    }
    c.text = buf;
    if (bl == 0) goto out;

    int32_t n = 0;
    for (size_t off = 0; off < bl; n++) {
        size_t cl = tok_utf8_len((uint8_t)buf[off]);
        if (cl > bl - off) cl = bl - off;
        c.sym[n] = (ssym_t){n - 1, -1, (uint32_t)off, (uint32_t)cl};
        off += cl;
        if (off < bl) c.sym[n].next = n + 1;
    }
    for (int32_t i = 1; i < n; i++)
        if ((st = try_bigram(&c, i - 1, i))) goto out;
    while (c.n_heap) {
        sbigram_t b = sheap_pop(&c);
        ssym_t *l = &c.sym[b.left], *r = &c.sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) c.sym[r->next].prev = b.left;
        if ((st = try_bigram(&c, l->prev, b.left)) || (st = try_bigram(&c, b.left, l->next)))
            goto out;
    }
    for (int32_t i = 0; i >= 0; i = c.sym[i].next)
        if ((st = emit(&c, &c.sym[i], out))) goto out;
out:
    free(c.heap);
    free(c.sym);
    free(buf);
    return st;
}
