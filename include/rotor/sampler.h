/*
 * sampler.h - token sampling: penalties (repetition, frequency, presence over
 * the last penalty_last_n tokens), then greedy when temperature <= 0, else
 * top-k, top-p, min-p, temperature and a draw from a per-request seeded RNG.
 * Same seed and same logits give the same tokens. Stop strings are matched on
 * the generated text by stop_matcher_t, holding back text that may be the
 * start of a stop string so a stream never shows part of one.
 *
 * Ownership: sampler_t allocates its scratch (n_vocab candidates, history
 * ring) once at create; sampling never allocates.
 */
#ifndef ROTOR_SAMPLER_H
#define ROTOR_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

typedef struct {
    float temperature;        /* <= 0: greedy */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off (llama.cpp/CTRL style: divide positive logits) */
    float frequency_penalty;  /* 0: off (OpenAI semantics) */
    float presence_penalty;   /* 0: off */
    int32_t penalty_last_n;   /* window for penalties; 0: off, -1: whole history */
    uint64_t seed;
} sampler_params_t;

/* Defaults: greedy off (temperature 1), no filters, no penalties, window 64. */
sampler_params_t sampler_params_default(void);

typedef struct sampler sampler_t;

rt_status_t sampler_create(const sampler_params_t *p, int32_t n_vocab, sampler_t **out);
void sampler_destroy(sampler_t *s);
/* Record a token (prompt or generated) for the penalties. */
void sampler_accept(sampler_t *s, int32_t token);
/* Choose the next token from logits[0..n_vocab) (logits may be modified).
 * If logprob is non-NULL, it receives log-softmax of the chosen token over the
 * raw (pre-penalty, temperature 1) logits as OpenAI reports them. */
int32_t sampler_sample(sampler_t *s, float *logits, float *logprob);
/* The n most likely tokens of logits[0..n_vocab) (n clamped to n_vocab),
 * best first, ties to the lower id, into ids[0..n) and their log-softmax over
 * the raw logits into logprobs[0..n): the values sampler_sample reports for
 * a chosen token, to the bit. Call it before sampler_sample, which may change
 * logits. Uses the sampler's scratch; allocates nothing. Returns n. */
int sampler_top_logprobs(sampler_t *s, const float *logits, int n, int32_t *ids, float *logprobs);
/* OpenAI's logit_bias: bias[i] is added to the logit of token ids[i] at
 * every step, after the penalties, before the filters and the draw (greedy
 * too): -100 all but bans a token, +100 all but forces it. Reported
 * logprobs stay those of the raw logits. Copied; replaces any earlier
 * list. RT_ERR_INVALID for an id outside the vocabulary, a bias that is not
 * finite or more than SAMPLER_MAX_LOGIT_BIAS entries. */
#define SAMPLER_MAX_LOGIT_BIAS 1024
rt_status_t sampler_set_logit_bias(sampler_t *s, const int32_t *ids, const float *bias, size_t n);
/* log-softmax of token id over the raw logits[0..n_vocab): the value
 * sampler_sample reports when it chooses id from the same logits, to the
 * bit (a prompt token's logprob). */
float sampler_token_logprob(const sampler_t *s, const float *logits, int32_t id);
/* Tokens that cannot be chosen while sampler_suppress(s, true) is in force
 * (min_tokens: end-of-generation and stop tokens). Copied; replaces any
 * earlier list; off until sampler_suppress. RT_ERR_INVALID for an id
 * outside the vocabulary. */
rt_status_t sampler_set_suppressed(sampler_t *s, const int32_t *ids, size_t n);
void sampler_suppress(sampler_t *s, bool on);
/* Constrained decoding: allowed(ud, id) says whether token id may come
 * next; sampler_sample then returns an allowed token. Its first pick is
 * made as always; if that one is not allowed, every token that is not is
 * masked out (-inf) and the pick made again (greedy: the best allowed
 * token; sampled: a draw over the allowed tokens, llama.cpp's grammar
 * order), so the vocabulary is scanned only when the model strays. Reported
 * logprobs stay those of the raw logits. fn NULL: none. allowed may be
 * called from the thread that samples; ud is the caller's. */
typedef bool (*sampler_allowed_fn)(void *ud, int32_t id);
void sampler_set_constraint(sampler_t *s, sampler_allowed_fn fn, void *ud);
/* Reset history and reseed. */
void sampler_reset(sampler_t *s, uint64_t seed);

/* ---- stop strings ---- */
typedef struct stop_matcher stop_matcher_t;

/* stops: n NUL-terminated strings, copied. */
rt_status_t stop_matcher_create(const char *const *stops, size_t n, stop_matcher_t **out);
void stop_matcher_destroy(stop_matcher_t *m);
/* Feed newly generated text. Writes to out (from out[0], cap bytes,
 * NUL-terminated) the
 * text that is now safe to emit; returns true when a stop string was found
 * (the stop string and anything after it are never emitted). */
bool stop_matcher_push(stop_matcher_t *m, const char *text, size_t len, char *out, size_t cap,
                       size_t *out_len);
/* At the end of generation: emit whatever was held back. */
size_t stop_matcher_flush(stop_matcher_t *m, char *out, size_t cap);

#endif
