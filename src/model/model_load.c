/*
 * model_load.c - read hyper-parameters and bind weight tensors of a
 * Llama-family GGUF (llama, qwen2, qwen3, mistral; with experts:
 * llama/Mixtral, qwen2moe, qwen3moe), checking every shape.
 */
#include "rotor/bigalloc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "rotor/log.h"

static rt_status_t hp_int(const gguf_ctx_t *g, const char *arch, const char *name, bool required,
                          int64_t dflt, int64_t lo, int64_t hi, int *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    int64_t i = gguf_find_key(g, key);
    int64_t v = dflt;
    if (i < 0) {
        if (required) return rt_error_set(RT_ERR_FORMAT, "model: missing hyper-parameter %s", key);
    } else if (!gguf_kv_as_i64(g, i, &v)) {
        return rt_error_set(RT_ERR_FORMAT, "model: hyper-parameter %s is not an integer", key);
    }
    if (v < lo || v > hi)
        return rt_error_set(RT_ERR_FORMAT, "model: hyper-parameter %s = %lld out of range [%lld, %lld]", key,
                            (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return RT_OK;
}

/* A stack of n_stack matrices [ne0, ne1] (GGUF shape [ne0, ne1, n_stack]; 1:
 * a plain matrix): w describes the first, *stride (if not NULL) is the bytes
 * between them. A missing optional tensor leaves w zeroed. */
static rt_status_t bind_stack(const gguf_ctx_t *g, const char *name, int64_t ne0, int64_t ne1, int64_t n_stack,
                              bool optional, model_weight_t *w, size_t *stride)
{
    const gguf_tensor_info_t *t = gguf_find_tensor(g, name);
    if (!t) {
        if (optional) {
            memset(w, 0, sizeof *w);
            return RT_OK;
        }
        return rt_error_set(RT_ERR_FORMAT, "model: missing tensor %s", name);
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != n_stack || t->ne[3] != 1) {
        char want[96];
        if (n_stack == 1) snprintf(want, sizeof want, "[%lld, %lld]", (long long)ne0, (long long)ne1);
        else snprintf(want, sizeof want, "[%lld, %lld, %lld]", (long long)ne0, (long long)ne1, (long long)n_stack);
        return rt_error_set(RT_ERR_FORMAT, "model: tensor %s has shape [%lld, %lld, %lld], expected %s", name,
                            (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], want);
    }
    const rt_type_traits_t *tr = rt_type_traits(t->type);
    if (!tr || !tr->supported)
        return rt_error_set(RT_ERR_UNSUPPORTED, "model: tensor %s has type %s, which rotor cannot compute with",
                            name, rt_type_name(t->type));
    w->data = t->data;
    w->type = t->type;
    w->ne0 = ne0;
    w->ne1 = ne1;
    w->row_bytes = rt_type_row_size(t->type, ne0);
    w->packed = NULL;
    if (stride) *stride = w->row_bytes * (size_t)ne1;
    return RT_OK;
}

static rt_status_t bind_weight(const gguf_ctx_t *g, const char *name, int64_t ne0, int64_t ne1, bool optional,
                               model_weight_t *w)
{
    return bind_stack(g, name, ne0, ne1, 1, optional, w, NULL);
}

/* A stack of n_expert matrices (the experts of a MoE layer) */
static rt_status_t bind_experts(const gguf_ctx_t *g, const char *name, int64_t ne0, int64_t ne1, int64_t n_expert,
                                model_weight_t *w, size_t *stride)
{
    return bind_stack(g, name, ne0, ne1, n_expert, false, w, stride);
}

static rt_status_t bind_vec(const gguf_ctx_t *g, const char *name, int64_t n, bool optional, const float **out)
{
    const gguf_tensor_info_t *t = gguf_find_tensor(g, name);
    if (!t) {
        *out = NULL;
        return optional ? RT_OK : rt_error_set(RT_ERR_FORMAT, "model: missing tensor %s", name);
    }
    if (t->type != RT_TYPE_F32 || t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return rt_error_set(RT_ERR_FORMAT, "model: tensor %s must be f32 [%lld], is %s [%lld, %lld]", name,
                            (long long)n, rt_type_name(t->type), (long long)t->ne[0], (long long)t->ne[1]);
    *out = t->data;
    return RT_OK;
}

static rt_status_t model_read_hparams(const gguf_ctx_t *g, model_hparams_t *hp)
{
    const char *arch = gguf_get_str(g, "general.architecture", NULL);
    if (!arch) return rt_error_set(RT_ERR_FORMAT, "model: general.architecture missing");
    if (strcmp(arch, "llama") == 0) hp->arch = MODEL_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) hp->arch = MODEL_ARCH_QWEN2;
    else if (strcmp(arch, "mistral") == 0) hp->arch = MODEL_ARCH_MISTRAL;
    else if (strcmp(arch, "qwen2moe") == 0) hp->arch = MODEL_ARCH_QWEN2MOE;
    else if (strcmp(arch, "qwen3") == 0) hp->arch = MODEL_ARCH_QWEN3;
    else if (strcmp(arch, "qwen3moe") == 0) hp->arch = MODEL_ARCH_QWEN3MOE;
    else return rt_error_set(RT_ERR_UNSUPPORTED,
                             "model: architecture '%s' is not supported (llama, qwen2, qwen3, mistral, qwen2moe, "
                             "qwen3moe are)", arch);
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", arch);
    rt_status_t st;
    if ((st = hp_int(g, arch, "block_count", true, 0, 1, 4096, &hp->n_layer))) return st;
    if ((st = hp_int(g, arch, "embedding_length", true, 0, 1, 1 << 20, &hp->n_embd))) return st;
    if ((st = hp_int(g, arch, "attention.head_count", true, 0, 1, 4096, &hp->n_head))) return st;
    if ((st = hp_int(g, arch, "attention.head_count_kv", false, hp->n_head, 1, hp->n_head, &hp->n_head_kv))) return st;
    const bool qmoe = hp->arch == MODEL_ARCH_QWEN2MOE || hp->arch == MODEL_ARCH_QWEN3MOE;
    if ((st = hp_int(g, arch, "feed_forward_length", true, 0, 1, 1 << 22, &hp->n_ff))) return st;
    /* experts: Mixtral is llama with expert_count; qwen2moe and qwen3moe always have them */
    if ((st = hp_int(g, arch, "expert_count", qmoe, 0, qmoe ? 1 : 0, MODEL_MAX_EXPERTS, &hp->n_expert))) return st;
    if (hp->n_expert > 0) {
        const int used_max = hp->n_expert < MODEL_MAX_EXPERTS_USED ? hp->n_expert : MODEL_MAX_EXPERTS_USED;
        if ((st = hp_int(g, arch, "expert_used_count", true, 0, 1, used_max, &hp->n_expert_used))) return st;
        /* llama.cpp's defaults: Mixtral's experts are n_ff wide; qwen2moe's
         * and qwen3moe's n_ff / n_expert_used, qwen2moe's shared expert n_ff */
        const int ff_exp = qmoe ? (hp->n_ff / hp->n_expert_used > 0 ? hp->n_ff / hp->n_expert_used : 1) : hp->n_ff;
        if ((st = hp_int(g, arch, "expert_feed_forward_length", false, ff_exp, 1, 1 << 22, &hp->n_ff_exp)))
            return st;
        if (hp->arch == MODEL_ARCH_QWEN2MOE &&
            (st = hp_int(g, arch, "expert_shared_feed_forward_length", false, hp->n_ff, 1, 1 << 22, &hp->n_ff_shexp)))
            return st;
        /* llama.cpp: Mixtral and qwen3moe renormalize the chosen weights, qwen2moe does not */
        hp->expert_norm = hp->arch != MODEL_ARCH_QWEN2MOE;
    }
    if ((st = hp_int(g, arch, "context_length", false, 2048, 1, 1 << 24, &hp->n_ctx_train))) return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return rt_error_set(RT_ERR_FORMAT, "model: head_count %d is not a multiple of head_count_kv %d",
                            hp->n_head, hp->n_head_kv);
    int hd_default = hp->n_embd / hp->n_head;
    if ((st = hp_int(g, arch, "attention.key_length", false, hd_default, 1, 4096, &hp->head_dim))) return st;
    int vlen;
    if ((st = hp_int(g, arch, "attention.value_length", false, hp->head_dim, 1, 4096, &vlen))) return st;
    if (vlen != hp->head_dim)
        return rt_error_set(RT_ERR_UNSUPPORTED, "model: key_length %d != value_length %d", hp->head_dim, vlen);
    if ((st = hp_int(g, arch, "rope.dimension_count", false, hp->head_dim, 2, hp->head_dim, &hp->rope_dim))) return st;
    if (hp->rope_dim % 2)
        return rt_error_set(RT_ERR_FORMAT, "model: rope.dimension_count %d is odd", hp->rope_dim);
    if (hp->head_dim % 2)
        return rt_error_set(RT_ERR_FORMAT, "model: head dimension %d is odd", hp->head_dim);
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    hp->rms_eps = (float)gguf_get_f64(g, key, 1e-5);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    hp->rope_base = (float)gguf_get_f64(g, key, 10000.0);
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope_base > 1))
        return rt_error_set(RT_ERR_FORMAT, "model: bad rms epsilon %g or rope base %g", hp->rms_eps, hp->rope_base);
    hp->rope_freq_scale = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *stype = gguf_get_str(g, key, "none");
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    double factor = gguf_get_f64(g, key, 0.0);
    if (strcmp(stype, "linear") == 0 && factor > 0) hp->rope_freq_scale = (float)(1.0 / factor);
    else if (strcmp(stype, "none") != 0 && strcmp(stype, "linear") != 0)
        return rt_error_set(RT_ERR_UNSUPPORTED, "model: rope scaling type '%s' is not supported", stype);
    hp->rope_neox = hp->arch == MODEL_ARCH_QWEN2 || hp->arch == MODEL_ARCH_QWEN2MOE || hp->arch == MODEL_ARCH_QWEN3 ||
                    hp->arch == MODEL_ARCH_QWEN3MOE;
    hp->qk_norm = hp->arch == MODEL_ARCH_QWEN3 || hp->arch == MODEL_ARCH_QWEN3MOE;
    return RT_OK;
}

rt_status_t model_load(const char *path, model_t **out)
{
    rt_status_t st;
    model_t *m = calloc(1, sizeof *m);
    if (!m) return rt_error_set(RT_ERR_NOMEM, "model: out of memory");
    if ((st = gguf_open(path, &m->gguf))) goto err;
    const gguf_ctx_t *g = m->gguf;
    model_hparams_t *hp = &m->hp;
    if ((st = model_read_hparams(g, hp))) goto err;

    const gguf_tensor_info_t *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) {
        st = rt_error_set(RT_ERR_FORMAT, "model: missing tensor token_embd.weight");
        goto err;
    }
    hp->n_vocab = (int)te->ne[1];
    if (te->ne[1] > (1 << 24)) {
        st = rt_error_set(RT_ERR_FORMAT, "model: vocabulary of %lld tokens is too large", (long long)te->ne[1]);
        goto err;
    }
    int E = hp->n_embd, HD = hp->head_dim, QD = hp->n_head * HD, KVD = hp->n_head_kv * HD;
    if ((st = bind_weight(g, "token_embd.weight", E, hp->n_vocab, false, &m->tok_embd))) goto err;
    if ((st = bind_vec(g, "output_norm.weight", E, false, &m->output_norm))) goto err;
    if ((st = bind_weight(g, "output.weight", E, hp->n_vocab, true, &m->output))) goto err;
    hp->tied_embeddings = m->output.data == NULL;
    if (hp->tied_embeddings) m->output = m->tok_embd;
    if ((st = bind_vec(g, "rope_freqs.weight", hp->rope_dim / 2, true, &m->rope_freqs))) goto err;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        st = rt_error_set(RT_ERR_NOMEM, "model: out of memory");
        goto err;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        model_layer_t *L = &m->layers[l];
        char n[96];
#define W(field, nm, a, b)                                                   \
    snprintf(n, sizeof n, "blk.%d." nm ".weight", l);                        \
    if ((st = bind_weight(g, n, a, b, false, &L->field))) goto err;
#define V(field, nm, len, opt)                                               \
    snprintf(n, sizeof n, "blk.%d." nm, l);                                  \
    if ((st = bind_vec(g, n, len, opt, &L->field))) goto err;
        V(attn_norm, "attn_norm.weight", E, false);
        V(ffn_norm, "ffn_norm.weight", E, false);
        W(wq, "attn_q", E, QD);
        W(wk, "attn_k", E, KVD);
        W(wv, "attn_v", E, KVD);
        W(wo, "attn_output", QD, E);
        if (hp->n_expert == 0) {
            W(w_gate, "ffn_gate", E, hp->n_ff);
            W(w_up, "ffn_up", E, hp->n_ff);
            W(w_down, "ffn_down", hp->n_ff, E);
        } else {
            const int FX = hp->n_ff_exp, NX = hp->n_expert;
            W(router, "ffn_gate_inp", E, NX);
#define X(field, nm, a, b)                                                                     \
    snprintf(n, sizeof n, "blk.%d." nm ".weight", l);                                          \
    if ((st = bind_experts(g, n, a, b, NX, &L->field, &L->field##_bytes))) goto err;
            X(exp_gate, "ffn_gate_exps", E, FX);
            X(exp_up, "ffn_up_exps", E, FX);
            X(exp_down, "ffn_down_exps", FX, E);
#undef X
            if (hp->n_ff_shexp > 0) {
                W(sh_gate, "ffn_gate_shexp", E, hp->n_ff_shexp);
                W(sh_up, "ffn_up_shexp", E, hp->n_ff_shexp);
                W(sh_down, "ffn_down_shexp", hp->n_ff_shexp, E);
                W(sh_router, "ffn_gate_inp_shexp", E, 1);
            }
        }
        V(q_norm, "attn_q_norm.weight", HD, !hp->qk_norm);
        V(k_norm, "attn_k_norm.weight", HD, !hp->qk_norm);
        V(bq, "attn_q.bias", QD, true);
        V(bk, "attn_k.bias", KVD, true);
        V(bv, "attn_v.bias", KVD, true);
#undef W
#undef V
        if ((L->bq != NULL) != (L->bk != NULL) || (L->bk != NULL) != (L->bv != NULL)) {
            st = rt_error_set(RT_ERR_FORMAT, "model: layer %d has only some of the q/k/v biases", l);
            goto err;
        }
        if (L->bq) hp->qkv_bias = true;
    }

    /* bytes read per decoded token, parameter count, dominant type */
    size_t bytes = m->tok_embd.row_bytes; /* one embedding row */
    size_t type_bytes[RT_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < gguf_tensor_count(g); i++) {
        const gguf_tensor_info_t *t = gguf_tensor(g, i);
        int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        m->n_params += nel;
        if (t->n_dims >= 2 && (int)t->type < RT_TYPE_COUNT) type_bytes[t->type] += t->nbytes;
        if (strcmp(t->name, "token_embd.weight") == 0 && !hp->tied_embeddings) continue;
        /* a token reads n_expert_used of the n_expert experts */
        if (hp->n_expert > 0 && strstr(t->name, "_exps."))
            bytes += t->nbytes / (size_t)hp->n_expert * (size_t)hp->n_expert_used;
        else
            bytes += t->nbytes;
    }
    m->bytes_per_token = bytes;
    size_t best = 0;
    for (int t = 0; t < RT_TYPE_COUNT; t++)
        if (type_bytes[t] > best) {
            best = type_bytes[t];
            m->main_type = (rt_type_t)t;
        }

    if ((st = tok_vocab_from_gguf(g, &m->vocab))) goto err;
    if (tok_n_vocab(m->vocab) > hp->n_vocab) {
        st = rt_error_set(RT_ERR_FORMAT, "model: tokenizer has %d tokens but token_embd has %d rows",
                          tok_n_vocab(m->vocab), hp->n_vocab);
        goto err;
    }
    RT_LOG_DEBUG("model: %s %s, %d layers, d=%d, heads %d/%d, ff %d, vocab %d, experts %d/%d (ff %d, shared %d)",
                 hp->arch_name, rt_type_name(m->main_type), hp->n_layer, E, hp->n_head, hp->n_head_kv, hp->n_ff,
                 hp->n_vocab, hp->n_expert_used, hp->n_expert, hp->n_ff_exp, hp->n_ff_shexp);
    *out = m;
    return RT_OK;
err:
    model_free(m);
    return st;
}

void model_free(model_t *m)
{
    if (!m) return;
    tok_vocab_destroy(m->vocab);
    free(m->layers);
    rt_big_free(m->packed, m->packed_bytes);
    gguf_close(m->gguf);
    free(m);
}

const model_hparams_t *model_hparams(const model_t *m) { return &m->hp; }
const tok_vocab_t *model_vocab(const model_t *m) { return m->vocab; }
const gguf_ctx_t *model_gguf(const model_t *m) { return m->gguf; }
size_t model_bytes_per_token(const model_t *m) { return m->bytes_per_token; }
int64_t model_n_params(const model_t *m) { return m->n_params; }
const char *model_weight_type_name(const model_t *m) { return rt_type_name(m->main_type); }
