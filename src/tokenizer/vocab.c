/*
 * vocab.c - tok_vocab_t built from a GGUF's tokenizer.* metadata: the token
 * table and its text index, BPE merge ranks, special ids, add_bos/add_eos,
 * the special-token list used by the partitioner and the end-of-generation
 * set. Defaults and auto-detection follow llama.cpp's llama_vocab::load.
 *
 * Both indexes are open-addressing tables keyed by XXH3_64bits of the text;
 * the table stores entry indexes, the strings themselves live in one pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "rotor/log.h"
#include "tokenizer/tok_impl.h"

/* ---------------------------------------------------------------- ids */

rt_status_t tok_ids_push(tok_ids_t *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return RT_OK;
}

/* -------------------------------------------------------------- index */

rt_status_t tok_index_init(tok_index_t *ix, size_t n_entries) {
    size_t cap = 16;
    while (cap < n_entries * 2)
        cap <<= 1;
    ix->slots = malloc(cap * sizeof *ix->slots);
    ix->hash = malloc(cap * sizeof *ix->hash);
    if (!ix->slots || !ix->hash) {
        tok_index_free(ix);
        return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
    }
    memset(ix->slots, 0xff, cap * sizeof *ix->slots);
    ix->cap = cap;
    ix->mask = cap - 1;
    return RT_OK;
}

void tok_index_free(tok_index_t *ix) {
    free(ix->slots);
    free(ix->hash);
    memset(ix, 0, sizeof *ix);
}

static uint64_t merge_hash(const char *l, size_t ll, const char *r, size_t rl) {
    return XXH3_64bits_withSeed(r, rl, XXH3_64bits(l, ll));
}

int32_t tok_lookup(const tok_vocab_t *v, const char *s, size_t len) {
    const tok_index_t *ix = &v->tok_ix;
    uint64_t h = XXH3_64bits(s, len);
    for (size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        int32_t e = ix->slots[i];
        if (e < 0) return -1;
        if (ix->hash[i] == h && v->tokens[e].len == len && memcmp(v->tokens[e].text, s, len) == 0)
            return e;
    }
}

int32_t tok_merge_rank(const tok_vocab_t *v, const char *l, size_t ll, const char *r, size_t rl) {
    const tok_index_t *ix = &v->merge_ix;
    if (!ix->cap) return -1;
    uint64_t h = merge_hash(l, ll, r, rl);
    for (size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        int32_t e = ix->slots[i];
        if (e < 0) return -1;
        const tok_merge_t *m = &v->merges[e];
        if (ix->hash[i] == h && m->left_len == ll && m->right_len == rl &&
            memcmp(m->left, l, ll) == 0 && memcmp(m->right, r, rl) == 0)
            return e;
    }
}

static void index_tokens(tok_vocab_t *v) {
    tok_index_t *ix = &v->tok_ix;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint64_t h = XXH3_64bits(v->tokens[id].text, v->tokens[id].len);
        size_t i = h & ix->mask;
        for (;; i = (i + 1) & ix->mask) {
            int32_t e = ix->slots[i];
            if (e < 0) break;
            if (ix->hash[i] == h && v->tokens[e].len == v->tokens[id].len &&
                memcmp(v->tokens[e].text, v->tokens[id].text, v->tokens[id].len) == 0)
                break; /* duplicate text: the later id wins, as in llama.cpp */
        }
        ix->slots[i] = id;
        ix->hash[i] = h;
    }
}

static void index_merges(tok_vocab_t *v) {
    tok_index_t *ix = &v->merge_ix;
    for (int32_t r = 0; r < v->n_merges; r++) {
        const tok_merge_t *m = &v->merges[r];
        uint64_t h = merge_hash(m->left, m->left_len, m->right, m->right_len);
        size_t i = h & ix->mask;
        bool dup = false;
        for (;; i = (i + 1) & ix->mask) {
            int32_t e = ix->slots[i];
            if (e < 0) break;
            const tok_merge_t *o = &v->merges[e];
            if (ix->hash[i] == h && o->left_len == m->left_len && o->right_len == m->right_len &&
                memcmp(o->left, m->left, m->left_len) == 0 &&
                memcmp(o->right, m->right, m->right_len) == 0) {
                dup = true; /* first rank wins (std::map::emplace) */
                break;
            }
        }
        if (!dup) {
            ix->slots[i] = r;
            ix->hash[i] = h;
        }
    }
}

/* ------------------------------------------------------------ loading */

static bool get_bool(const gguf_ctx_t *g, const char *key, bool *out) {
    int64_t i = gguf_find_key(g, key), x;
    if (i < 0 || !gguf_kv_as_i64(g, i, &x)) return false;
    *out = x != 0;
    return true;
}

static void get_id(const gguf_ctx_t *g, const char *key, int32_t n, int32_t *id) {
    int64_t i = gguf_find_key(g, key), x;
    if (i < 0 || !gguf_kv_as_i64(g, i, &x)) return;
    if (x < 0 || x >= n) {
        RT_LOG_WARN("tokenizer: %s = %lld is out of range (n_vocab %d), ignored", key, (long long)x,
                    n);
        return;
    }
    *id = (int32_t)x;
}

/* Lowest id whose text is one of names (llama.cpp scans its token map). */
static int32_t find_any(const tok_vocab_t *v, const char *const *names) {
    int32_t best = -1;
    for (; *names; names++) {
        int32_t id = tok_lookup(v, *names, strlen(*names));
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
}

static void force_control(tok_vocab_t *v, int32_t id) {
    if (id >= 0 && v->tokens[id].type != TOK_TYPE_CONTROL) v->tokens[id].type = TOK_TYPE_CONTROL;
}

static int cmp_special(const void *a, const void *b, void *arg) {
    const tok_vocab_t *v = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = v->tokens[x].len, ly = v->tokens[y].len;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : (x > y);
}

/* End-of-generation tokens, special-token list and auto-detected ids. */
static rt_status_t build_specials(tok_vocab_t *v) {
    static const char *const eot_names[] = {
        "<|eot_id|>",         "<|im_end|>", "<|end|>", "<end_of_turn>",
        "<|endoftext|>",      "<EOT>",      "_<EOT>",  "<｜end▁of▁sentence｜>",
        "<end_of_utterance>", NULL};
    static const char *const eom_names[] = {"<|eom_id|>", NULL};
    static const char *const fim_pre[] = {"<|fim_prefix|>",
                                          "<fim-prefix>",
                                          "<fim_prefix>",
                                          "<PRE>",
                                          "▁<PRE>",
                                          "<|code_prefix|>",
                                          NULL};
    static const char *const fim_suf[] = {"<|fim_suffix|>",
                                          "<fim-suffix>",
                                          "<fim_suffix>",
                                          "<SUF>",
                                          "▁<SUF>",
                                          "<|code_suffix|>",
                                          NULL};
    static const char *const fim_mid[] = {"<|fim_middle|>",
                                          "<fim-middle>",
                                          "<fim_middle>",
                                          "<MID>",
                                          "▁<MID>",
                                          "<|code_middle|>",
                                          NULL};
    static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", NULL};
    static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                          "<REPO>",       "<reponame>",    NULL};
    static const char *const fim_sep[] = {"<|file_sep|>", NULL};
    static const char *const eog_names[] = {
        "<|eot_id|>",      "<|im_end|>",         "<|end|>",    "<|return|>", "<|call|>",
        "<end_of_turn>",   "<|endoftext|>",      "<|eom_id|>", "<EOT>",      "_<EOT>",
        "<|end_of_text|>", "<end_of_utterance>", NULL};

    if (v->eot < 0) {
        v->eot = find_any(v, eot_names);
        force_control(v, v->eot);
    }
    if (v->eom < 0) {
        v->eom = find_any(v, eom_names);
        force_control(v, v->eom);
    }
    const char *const *fims[] = {fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep};
    int32_t fim_ids[6];
    for (int k = 0; k < 6; k++) {
        fim_ids[k] = find_any(v, fims[k]);
        force_control(v, fim_ids[k]);
    }

    v->eog = calloc((size_t)v->n_tokens, 1);
    if (!v->eog) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
    for (int k = 3; k < 6; k++) /* fim pad, rep, sep end generation */
        if (fim_ids[k] >= 0) v->eog[fim_ids[k]] = 1;
    for (const char *const *p = eog_names; *p; p++) {
        int32_t id = tok_lookup(v, *p, strlen(*p));
        if (id >= 0) {
            v->eog[id] = 1;
            force_control(v, id);
        }
    }
    if (v->eos >= 0) v->eog[v->eos] = 1;
    if (v->eot >= 0) v->eog[v->eot] = 1;
    if (v->eom >= 0) v->eog[v->eom] = 1;

    /* tokens the partitioner matches in raw text, longest first */
    int32_t n = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint8_t t = v->tokens[id].type;
        n += t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN;
    }
    v->special = malloc(((size_t)n + 1) * sizeof *v->special);
    if (!v->special) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
    v->n_special = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint8_t t = v->tokens[id].type;
        if (t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN)
            v->special[v->n_special++] = id;
    }
    qsort_r(v->special, (size_t)v->n_special, sizeof *v->special, cmp_special, v);
    return RT_OK;
}

static void build_byte_tables(tok_vocab_t *v) {
    for (int cp = 0; cp < 324; cp++)
        v->cpt_byte[cp] = (int16_t)tok_cpt_to_byte((uint32_t)cp);
    for (int b = 0; b < 256; b++) {
        char buf[8];
        v->byte_utf8_len[b] =
            (uint8_t)tok_utf8_encode(tok_byte_to_cpt((uint8_t)b), v->byte_utf8[b]);
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        int32_t id = tok_lookup(v, buf, strlen(buf));
        if (id < 0) {
            buf[0] = (char)b;
            id = tok_lookup(v, buf, 1);
        }
        v->byte_tok[b] = id;
    }
}

rt_status_t tok_vocab_from_gguf(const gguf_ctx_t *g, tok_vocab_t **out) {
    rt_status_t st;
    const char *model = gguf_get_str(g, "tokenizer.ggml.model", NULL);
    if (!model)
        return rt_error_set(RT_ERR_NOT_FOUND, "tokenizer: no tokenizer.ggml.model in the file");
    tok_kind_t kind;
    if (strcmp(model, "llama") == 0)
        kind = TOK_KIND_SPM;
    else if (strcmp(model, "gpt2") == 0)
        kind = TOK_KIND_BPE;
    else
        return rt_error_set(RT_ERR_UNSUPPORTED, "tokenizer: model '%s' is not supported", model);

    int64_t ti = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ti < 0 || gguf_kv_type(g, ti) != GGUF_TYPE_ARRAY ||
        gguf_arr_type(g, ti) != GGUF_TYPE_STRING)
        return rt_error_set(RT_ERR_FORMAT,
                            "tokenizer: tokenizer.ggml.tokens missing or not strings");
    uint64_t n64 = gguf_arr_len(g, ti);
    if (n64 == 0 || n64 > INT32_MAX / 2)
        return rt_error_set(RT_ERR_FORMAT, "tokenizer: bad vocabulary size %llu",
                            (unsigned long long)n64);
    int32_t n = (int32_t)n64;

    int64_t si = gguf_find_key(g, "tokenizer.ggml.scores");
    if (si >= 0 && (gguf_kv_type(g, si) != GGUF_TYPE_ARRAY ||
                    gguf_arr_type(g, si) != GGUF_TYPE_FLOAT32 || gguf_arr_len(g, si) != n64))
        return rt_error_set(RT_ERR_FORMAT, "tokenizer: tokenizer.ggml.scores is not f32[%d]", n);
    int64_t tti = gguf_find_key(g, "tokenizer.ggml.token_type");
    if (tti >= 0 &&
        (gguf_kv_type(g, tti) != GGUF_TYPE_ARRAY ||
         (gguf_arr_type(g, tti) != GGUF_TYPE_INT32 && gguf_arr_type(g, tti) != GGUF_TYPE_UINT32) ||
         gguf_arr_len(g, tti) != n64))
        return rt_error_set(RT_ERR_FORMAT, "tokenizer: tokenizer.ggml.token_type is not i32[%d]",
                            n);
    int64_t mi = -1;
    uint64_t n_merges = 0;
    if (kind == TOK_KIND_BPE) {
        mi = gguf_find_key(g, "tokenizer.ggml.merges");
        if (mi < 0 || gguf_kv_type(g, mi) != GGUF_TYPE_ARRAY ||
            gguf_arr_type(g, mi) != GGUF_TYPE_STRING)
            return rt_error_set(RT_ERR_FORMAT, "tokenizer: BPE vocabulary without merges");
        n_merges = gguf_arr_len(g, mi);
        if (n_merges > INT32_MAX / 2)
            return rt_error_set(RT_ERR_FORMAT, "tokenizer: too many merges");
    }

    tok_vocab_t *v = calloc(1, sizeof *v);
    if (!v) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
    v->kind = kind;
    v->n_tokens = n;
    v->n_merges = (int32_t)n_merges;

    /* one pool for all strings; empty tokens become "[EMPTY_i]" as in llama.cpp */
    size_t pool_size = 0;
    for (int32_t i = 0; i < n; i++) {
        gguf_str_t s = gguf_arr_str(g, ti, (uint64_t)i);
        pool_size += (s.len ? s.len : 24) + 1;
    }
    for (uint64_t i = 0; i < n_merges; i++)
        pool_size += gguf_arr_str(g, mi, i).len + 2;
    v->pool = malloc(pool_size + 1);
    v->tokens = calloc((size_t)n, sizeof *v->tokens);
    v->merges = calloc(n_merges + 1, sizeof *v->merges);
    if (!v->pool || !v->tokens || !v->merges) {
        st = rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        goto err;
    }
    char *p = v->pool;
    const uint8_t *scores = si >= 0 ? gguf_arr_data(g, si) : NULL;
    const uint8_t *types = tti >= 0 ? gguf_arr_data(g, tti) : NULL;
    for (int32_t i = 0; i < n; i++) {
        gguf_str_t s = gguf_arr_str(g, ti, (uint64_t)i);
        tok_entry_t *e = &v->tokens[i];
        e->text = p;
        if (s.len) {
            memcpy(p, s.data, s.len);
            e->len = (uint32_t)s.len;
        } else {
            RT_LOG_WARN("tokenizer: empty token at index %d", i);
            e->len = (uint32_t)sprintf(p, "[EMPTY_%d]", i);
        }
        p[e->len] = '\0';
        p += e->len + 1;
        if (scores) memcpy(&e->score, scores + 4 * (size_t)i, 4);
        int32_t t = TOK_TYPE_NORMAL;
        if (types) memcpy(&t, types + 4 * (size_t)i, 4);
        e->type = (uint8_t)(t >= TOK_TYPE_NORMAL && t <= TOK_TYPE_BYTE ? t : TOK_TYPE_UNDEFINED);
    }
    for (uint64_t i = 0; i < n_merges; i++) {
        gguf_str_t s = gguf_arr_str(g, mi, i);
        tok_merge_t *m = &v->merges[i];
        /* split at the first space after position 0 (llama.cpp: find(' ', 1)) */
        size_t sp = 0;
        for (size_t k = 1; k < s.len; k++) {
            if (s.data[k] == ' ') {
                sp = k;
                break;
            }
        }
        if (sp) {
            m->left = p;
            m->left_len = (uint32_t)sp;
            memcpy(p, s.data, sp);
            p[sp] = '\0';
            p += sp + 1;
            m->right = p;
            m->right_len = (uint32_t)(s.len - sp - 1);
            memcpy(p, s.data + sp + 1, m->right_len);
            p[m->right_len] = '\0';
            p += m->right_len + 1;
        } else { /* malformed: llama.cpp ranks the pair ("", "") */
            m->left = m->right = p;
            *p++ = '\0';
        }
    }

    if ((st = tok_index_init(&v->tok_ix, (size_t)n))) goto err;
    index_tokens(v);
    if (kind == TOK_KIND_BPE) {
        if ((st = tok_index_init(&v->merge_ix, n_merges))) goto err;
        index_merges(v);
    }

    /* defaults per model type, then metadata */
    v->eot = v->eom = v->pad = v->nl = -1;
    if (kind == TOK_KIND_SPM) {
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
        v->add_bos = true;
        v->add_eos = false;
        v->add_space_prefix = true;
        snprintf(v->pre, sizeof v->pre, "default");
    } else {
        v->bos = 11;
        v->eos = 11;
        v->unk = -1;
        v->add_space_prefix = false;
        const char *pre = gguf_get_str(g, "tokenizer.ggml.pre", "");
        if (!*pre) RT_LOG_WARN("tokenizer: missing tokenizer.ggml.pre, using 'default'");
        snprintf(v->pre, sizeof v->pre, "%s", *pre ? pre : "default");
        if ((st = tok_pretok_init(&v->pretok, pre, &v->ignore_merges, &v->add_bos))) goto err;
        v->add_eos = false;
    }
    if (v->bos >= n) v->bos = -1;
    if (v->eos >= n) v->eos = -1;
    if (v->unk >= n) v->unk = -1;
    get_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix);
    get_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos);
    get_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos);
    get_id(g, "tokenizer.ggml.eot_token_id", n, &v->eot);
    get_id(g, "tokenizer.ggml.eom_token_id", n, &v->eom);
    get_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk);
    get_id(g, "tokenizer.ggml.padding_token_id", n, &v->pad);
    get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos);
    get_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos);

    build_byte_tables(v);
    if ((st = build_specials(v))) goto err;
    *out = v;
    return RT_OK;
err:
    tok_vocab_destroy(v);
    return st;
}

void tok_vocab_destroy(tok_vocab_t *v) {
    if (!v) return;
    tok_pretok_free(&v->pretok);
    tok_index_free(&v->tok_ix);
    tok_index_free(&v->merge_ix);
    free(v->special);
    free(v->eog);
    free(v->merges);
    free(v->tokens);
    free(v->pool);
    free(v);
}

/* ---------------------------------------------------------- accessors */

tok_kind_t tok_kind(const tok_vocab_t *v) {
    return v->kind;
}
int32_t tok_n_vocab(const tok_vocab_t *v) {
    return v->n_tokens;
}
int32_t tok_bos(const tok_vocab_t *v) {
    return v->bos;
}
int32_t tok_eos(const tok_vocab_t *v) {
    return v->eos;
}
bool tok_add_bos(const tok_vocab_t *v) {
    return v->add_bos;
}
bool tok_add_eos(const tok_vocab_t *v) {
    return v->add_eos;
}

bool tok_is_eog(const tok_vocab_t *v, int32_t id) {
    return id >= 0 && id < v->n_tokens && v->eog[id];
}

bool tok_is_control(const tok_vocab_t *v, int32_t id) {
    return id >= 0 && id < v->n_tokens && v->tokens[id].type == TOK_TYPE_CONTROL;
}

const char *tok_text(const tok_vocab_t *v, int32_t id) {
    return id >= 0 && id < v->n_tokens ? v->tokens[id].text : NULL;
}

int32_t tok_find(const tok_vocab_t *v, const char *text) {
    return text ? tok_lookup(v, text, strlen(text)) : -1;
}

int32_t tok_eot(const tok_vocab_t *v) {
    return v->eot;
}
const char *tok_pre(const tok_vocab_t *v) {
    return v->pre;
}

int tok_pretok_patterns(const tok_vocab_t *v, const char *const **rx) {
    *rx = v->pretok.rx;
    return v->kind == TOK_KIND_BPE ? v->pretok.n : 0;
}

bool tok_ignore_merges(const tok_vocab_t *v) {
    return v->ignore_merges;
}

tok_type_t tok_token_type(const tok_vocab_t *v, int32_t id) {
    return id >= 0 && id < v->n_tokens ? (tok_type_t)v->tokens[id].type : TOK_TYPE_UNDEFINED;
}
