/*
 * spec_ngram.h - draft tokens for speculative decoding by n-gram lookup in
 * the sequence itself (prompt lookup decoding; vLLM's "ngram" method,
 * llama.cpp's lookup decoding): find the most recent earlier occurrence of
 * the sequence's last n tokens, for n from n_max down to n_min, and propose
 * the tokens that followed it. No draft model, nothing learnt: it pays off
 * where the output repeats its input or itself (code edits, quoting,
 * extraction, structured output) and proposes nothing elsewhere.
 *
 * The engine verifies drafts by sampling every position as it would without
 * them and keeping a draft only while it equals the sampled token, so the
 * output is the same tokens, to the bit, with or without speculation
 * (engine.h; the engine's logits are batch-invariant).
 *
 * Ownership: pure functions over caller arrays; nothing is allocated.
 */
#ifndef ROTOR_SPEC_NGRAM_H
#define ROTOR_SPEC_NGRAM_H

#include <stddef.h>
#include <stdint.h>

/* The max_draft tokens that followed the most recent earlier occurrence of
 * tokens' last n tokens (the longest n in [n_min, n_max] that occurs),
 * written to draft. Where they run past the end of tokens, the stretch from
 * the occurrence to the end repeats (the sequence is in a loop of that
 * period). The occurrence may overlap the suffix. Returns max_draft, or 0
 * when nothing matches (or max_draft <= 0). */
int spec_ngram_propose(const int32_t *tokens, int n_tokens, int n_min, int n_max, int32_t *draft, int max_draft);

#endif
