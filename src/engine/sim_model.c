/*
 * sim_model.c - the sim backend's time model (sim_model.h): GPU presets,
 * model shapes, and the roofline of one step.
 */
#include <math.h>
#include <string.h>

#include "rotor/sim_model.h"

/* dense BF16 peaks and memory from the vendors' data sheets (SXM parts) */
static const sim_gpu_t gpus[] = {
    {"a100", 312, 2039, 80}, {"h100", 989, 3350, 80}, {"h200", 989, 4800, 141},
    {"b200", 2250, 8000, 180}, {"l40s", 362, 864, 48},
};

const sim_gpu_t *sim_gpu_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof gpus / sizeof *gpus; i++)
        if (strcmp(gpus[i].name, name) == 0) return &gpus[i];
    return NULL;
}

const char *sim_gpu_names(void) { return "a100, h100, h200, b200, l40s"; }

sim_shape_t sim_shape_of(const model_hparams_t *hp)
{
    return (sim_shape_t){.n_layer = hp->n_layer, .n_embd = hp->n_embd, .n_head = hp->n_head,
                         .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim, .n_ff = hp->n_ff,
                         .n_vocab = hp->n_vocab, .n_expert = hp->n_expert, .n_expert_used = hp->n_expert_used,
                         .n_ff_exp = hp->n_ff_exp, .n_ff_shexp = hp->n_ff_shexp};
}

rt_status_t sim_shape_preset(const char *name, sim_shape_t *out)
{
    if (name && strcmp(name, "llama3-8b") == 0) {
        *out = (sim_shape_t){.n_layer = 32, .n_embd = 4096, .n_head = 32, .n_head_kv = 8, .head_dim = 128,
                             .n_ff = 14336, .n_vocab = 128256};
        return RT_OK;
    }
    if (name && strcmp(name, "qwen2.5-7b") == 0) {
        *out = (sim_shape_t){.n_layer = 28, .n_embd = 3584, .n_head = 28, .n_head_kv = 4, .head_dim = 128,
                             .n_ff = 18944, .n_vocab = 152064};
        return RT_OK;
    }
    return rt_error_set(RT_ERR_NOT_FOUND, "sim: unknown model shape '%s' (file, llama3-8b, qwen2.5-7b)",
                        name ? name : "");
}

/* per layer: attention, and one expert's (or the dense FFN's) weights */
static double attn_params(const sim_shape_t *s)
{
    const double qd = (double)s->n_head * s->head_dim, kvd = (double)s->n_head_kv * s->head_dim;
    return (double)s->n_embd * (2 * qd + 2 * kvd);
}

static double ffn_params(int d, int ff) { return 3.0 * d * ff; }

/* per layer, what every token computes with besides its routed experts */
static double shared_ffn_params(const sim_shape_t *s)
{
    if (s->n_expert == 0) return ffn_params(s->n_embd, s->n_ff);
    double p = (double)s->n_embd * s->n_expert; /* the router */
    if (s->n_ff_shexp > 0) p += ffn_params(s->n_embd, s->n_ff_shexp) + s->n_embd;
    return p;
}

static double head_params(const sim_shape_t *s) { return (double)s->n_vocab * s->n_embd; }

double sim_params_total(const sim_shape_t *s)
{
    const double experts = s->n_expert ? (double)s->n_expert * ffn_params(s->n_embd, s->n_ff_exp) : 0;
    /* the token embedding too (in memory; a step reads only its rows) */
    return s->n_layer * (attn_params(s) + shared_ffn_params(s) + experts) + 2 * head_params(s);
}

double sim_params_active(const sim_shape_t *s)
{
    const double experts = s->n_expert ? (double)s->n_expert_used * ffn_params(s->n_embd, s->n_ff_exp) : 0;
    return s->n_layer * (attn_params(s) + shared_ffn_params(s) + experts) + head_params(s);
}

double sim_kv_bytes_per_token(const sim_shape_t *s, const sim_cost_t *c)
{
    return 2.0 * s->n_layer * s->n_head_kv * s->head_dim * c->kv_bytes;
}

double sim_step_seconds(const sim_shape_t *s, const sim_cost_t *c, int64_t n_tokens, int64_t n_logits,
                        double attended, double kv_tokens)
{
    if (n_tokens <= 0) return c->overhead_s;
    const double body = s->n_layer * (attn_params(s) + shared_ffn_params(s));
    double body_active = body, body_read = body;
    if (s->n_expert > 0) {
        const double e = ffn_params(s->n_embd, s->n_ff_exp);
        /* expected distinct experts the tokens pick (routing taken as uniform) */
        const double touched =
            s->n_expert * (1.0 - pow(1.0 - (double)s->n_expert_used / s->n_expert, (double)n_tokens));
        body_active += s->n_layer * s->n_expert_used * e;
        body_read += s->n_layer * touched * e;
    }
    const double qd = (double)s->n_head * s->head_dim;
    const double flops = 2.0 * body_active * (double)n_tokens + 2.0 * head_params(s) * (double)n_logits +
                         4.0 * s->n_layer * qd * attended;
    const double bytes = (body_read + head_params(s)) * c->weight_bytes + kv_tokens * sim_kv_bytes_per_token(s, c);
    const double t_compute = flops / (c->gpu.tflops * 1e12 * c->mfu);
    const double t_memory = bytes / (c->gpu.hbm_gbps * 1e9 * c->mbu);
    return c->overhead_s + (t_compute > t_memory ? t_compute : t_memory);
}
