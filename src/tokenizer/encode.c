/*
 * encode.c - tok_encode: the text is first partitioned around the texts of
 * special tokens (llama.cpp's tokenizer_st_partition: special tokens longest
 * first, each splitting every still-raw fragment at all its occurrences;
 * control and unknown tokens only when parse_special, user-defined tokens
 * always), then each raw fragment goes through the BPE or SPM algorithm and
 * BOS/EOS are added as the vocabulary asks.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_impl.h"

typedef struct {
    int32_t token; /* -1: raw text [off, off+len) */
    size_t off, len;
} frag_t;

typedef struct {
    frag_t *v;
    size_t n, cap;
} frags_t;

static rt_status_t frags_push(frags_t *f, int32_t token, size_t off, size_t len) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag_t *nv = realloc(f->v, cap * sizeof *nv);
        if (!nv) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        f->v = nv;
        f->cap = cap;
    }
    f->v[f->n++] = (frag_t){token, off, len};
    return RT_OK;
}

/* Split the raw fragments of *cur at every occurrence of special token id. */
static rt_status_t split_special(const tok_vocab_t *v, const char *text, int32_t id, frags_t *cur,
                                 frags_t *next) {
    const char *st_text = v->tokens[id].text;
    size_t st_len = v->tokens[id].len;
    rt_status_t st;
    next->n = 0;
    for (size_t i = 0; i < cur->n; i++) {
        frag_t f = cur->v[i];
        if (f.token >= 0 || f.len < st_len) {
            if ((st = frags_push(next, f.token, f.off, f.len))) return st;
            continue;
        }
        size_t pos = f.off, end = f.off + f.len;
        for (;;) {
            const char *m = memmem(text + pos, end - pos, st_text, st_len);
            if (!m) break;
            size_t mo = (size_t)(m - text);
            if (mo > pos && (st = frags_push(next, -1, pos, mo - pos))) return st;
            if ((st = frags_push(next, id, mo, st_len))) return st;
            pos = mo + st_len;
        }
        if (pos < end && (st = frags_push(next, -1, pos, end - pos))) return st;
    }
    return RT_OK;
}

rt_status_t tok_encode(const tok_vocab_t *v, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t **ids, size_t *n_ids) {
    rt_status_t st = RT_OK;
    frags_t a = {0}, b = {0};
    tok_ids_t out = {0};
    if (!v || (!text && len)) return rt_error_set(RT_ERR_INVALID, "tok_encode: bad arguments");

    if (len) {
        if ((st = frags_push(&a, -1, 0, len))) goto err;
        for (int32_t k = 0; k < v->n_special; k++) {
            int32_t id = v->special[k];
            uint8_t t = v->tokens[id].type;
            if (!parse_special && (t == TOK_TYPE_CONTROL || t == TOK_TYPE_UNKNOWN)) continue;
            if ((st = split_special(v, text, id, &a, &b))) goto err;
            frags_t tmp = a;
            a = b;
            b = tmp;
        }
    }

    bool add_bos = add_special && v->add_bos && v->bos >= 0;
    bool add_eos = add_special && v->add_eos && v->eos >= 0;
    if (add_bos && (st = tok_ids_push(&out, v->bos))) goto err;
    bool prev_special = true; /* SPM: the first fragment gets the space prefix */
    for (size_t i = 0; i < a.n; i++) {
        const frag_t *f = &a.v[i];
        if (f->token >= 0) {
            st = tok_ids_push(&out, f->token);
            prev_special = true;
        } else if (v->kind == TOK_KIND_SPM) {
            st =
                tok_spm_encode(v, text + f->off, f->len, v->add_space_prefix && prev_special, &out);
            prev_special = false;
        } else {
            st = tok_bpe_encode(v, text + f->off, f->len, &out);
        }
        if (st) goto err;
    }
    if (add_eos && (st = tok_ids_push(&out, v->eos))) goto err;

    free(a.v);
    free(b.v);
    if (!out.v) { /* empty result: hand out a valid pointer anyway */
        out.v = malloc(sizeof *out.v);
        if (!out.v) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
    }
    *ids = out.v;
    *n_ids = out.n;
    return RT_OK;
err:
    free(a.v);
    free(b.v);
    free(out.v);
    return st;
}
