/*
 * ctrl.c - packing and receiving of control-plane messages
 * (include/rotor/ctrl.h).
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "job_impl.h"
#include "rotor/ctrl.h"

rt_status_t ctrl_request_pack(const engine_request_t *r, int32_t kv_peer, void **buf, size_t *len)
{
    if (r->n_prompt > INT32_MAX / 8 || r->n_stop_tokens > 1024 || r->n_logit_bias > SAMPLER_MAX_LOGIT_BIAS)
        return rt_error_set(RT_ERR_INVALID, "ctrl: request too large to send");
    ctrl_request_t h = {.id = r->id,
                        .n_prompt = (int32_t)r->n_prompt,
                        .n_stop_tokens = (int32_t)r->n_stop_tokens,
                        .n_logit_bias = (int32_t)r->n_logit_bias,
                        .max_tokens = r->max_tokens,
                        .min_tokens = r->min_tokens,
                        .top_logprobs = r->top_logprobs,
                        .ignore_eos = r->ignore_eos,
                        .logprobs = r->logprobs,
                        .prompt_logprobs = r->prompt_logprobs,
                        .constraint = r->constraint,
                        .kv_peer = kv_peer,
                        .sampling = r->sampling};
    /* header, prompt, stop ids, logit_bias ids, logit_bias values (4 bytes each) */
    const size_t words = r->n_prompt + r->n_stop_tokens + 2 * r->n_logit_bias;
    size_t n = sizeof h + words * sizeof(int32_t);
    uint8_t *b = malloc(n);
    if (!b) return rt_error_set(RT_ERR_NOMEM, "ctrl: out of memory");
    memcpy(b, &h, sizeof h);
    uint8_t *p = b + sizeof h;
    if (r->n_prompt) memcpy(p, r->prompt, r->n_prompt * sizeof(int32_t));
    p += r->n_prompt * sizeof(int32_t);
    if (r->n_stop_tokens) memcpy(p, r->stop_tokens, r->n_stop_tokens * sizeof(int32_t));
    p += r->n_stop_tokens * sizeof(int32_t);
    if (r->n_logit_bias) {
        memcpy(p, r->logit_bias_ids, r->n_logit_bias * sizeof(int32_t));
        memcpy(p + r->n_logit_bias * sizeof(int32_t), r->logit_bias, r->n_logit_bias * sizeof(float));
    }
    *buf = b;
    *len = n;
    return RT_OK;
}

rt_status_t ctrl_request_unpack(const void *buf, size_t len, engine_request_t *r, int32_t *kv_peer)
{
    ctrl_request_t h;
    if (len < sizeof h) return rt_error_set(RT_ERR_FORMAT, "ctrl: short REQUEST message (%zu bytes)", len);
    memcpy(&h, buf, sizeof h);
    if (h.n_prompt < 0 || h.n_stop_tokens < 0 || h.n_logit_bias < 0 ||
        len != sizeof h + ((size_t)h.n_prompt + (size_t)h.n_stop_tokens + 2 * (size_t)h.n_logit_bias) * sizeof(int32_t))
        return rt_error_set(RT_ERR_FORMAT, "ctrl: REQUEST message of %zu bytes does not match its header", len);
    const uint8_t *b = buf;
    memset(r, 0, sizeof *r);
    r->id = h.id;
    r->prompt = (const int32_t *)(const void *)(b + sizeof h);
    r->n_prompt = (size_t)h.n_prompt;
    r->stop_tokens = (const int32_t *)(const void *)(b + sizeof h + (size_t)h.n_prompt * sizeof(int32_t));
    r->n_stop_tokens = (size_t)h.n_stop_tokens;
    r->logit_bias_ids = r->stop_tokens + h.n_stop_tokens;
    r->logit_bias = (const float *)(const void *)(r->logit_bias_ids + h.n_logit_bias);
    r->n_logit_bias = (size_t)h.n_logit_bias;
    r->max_tokens = h.max_tokens;
    r->min_tokens = h.min_tokens;
    r->top_logprobs = h.top_logprobs;
    r->ignore_eos = h.ignore_eos != 0;
    r->logprobs = h.logprobs != 0;
    r->prompt_logprobs = h.prompt_logprobs != 0;
    r->constraint = h.constraint;
    r->sampling = h.sampling;
    if (kv_peer) *kv_peer = h.kv_peer;
    return RT_OK;
}

int ctrl_try_recv(int source, uint8_t **buf, size_t *cap, int *count, int *from, int *tag)
{
    int flag = 0;
    MPI_Message m;
    MPI_Status s;
    MPI_Improbe(source, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &m, &s);
    if (!flag) return 0;
    MPI_Get_count(&s, MPI_BYTE, count);
    if ((size_t)*count > *cap) {
        size_t c = (size_t)*count * 2;
        uint8_t *b = realloc(*buf, c);
        if (!b) RT_PANIC("ctrl: out of memory for a %d-byte message", *count);
        *buf = b;
        *cap = c;
    }
    MPI_Mrecv(*buf, *count, MPI_BYTE, &m, &s);
    *from = s.MPI_SOURCE;
    *tag = s.MPI_TAG;
    return 1;
}
