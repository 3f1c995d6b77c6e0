/*
 * rb_prompt.h - prompt material for rotor-bench: random prompts of a wanted
 * number of tokens.
 *
 * Two modes:
 *   exact   (a GGUF given): the model's own vocabulary is loaded with
 *           librotor's tokenizer and a pool of plain tokens is picked: normal
 *           tokens whose text is a space followed by ASCII letters and that
 *           encode back to themselves alone (so " w1 w2 w3" re-encodes to
 *           w1 w2 w3 almost always); if a vocabulary has too few of those,
 *           any printable ASCII normal token without newlines or markup
 *           characters. Control, byte, unused and odd-byte tokens are never
 *           used. Text is built from random pool ids, decoded, re-encoded
 *           (no BOS) and adjusted (ids dropped or added) until it encodes to
 *           exactly the wanted count.
 *   approx  (no GGUF): a fixed list of common English words, each " word"
 *           counted as one token; counts of other text are its number of
 *           whitespace-separated words.
 *
 * "Ids" are vocabulary ids in exact mode and indexes into the word list in
 * approx mode; rb_prompt_decode maps either to text, so spans of ids (trace
 * blocks) work the same in both.
 *
 * Ownership: rb_prompt_t owns the vocabulary and the pool. Strings and id
 * arrays returned through out parameters are malloc'd and owned by the
 * caller. Not thread-safe.
 */
#ifndef ROTOR_RB_PROMPT_H
#define ROTOR_RB_PROMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rb_rng.h"
#include "rotor/status.h"

typedef struct rb_prompt rb_prompt_t;

/* gguf_path NULL: approx mode (word list). */
rt_status_t rb_prompt_create(const char *gguf_path, rb_prompt_t **out);
void rb_prompt_destroy(rb_prompt_t *p);

/* true with a tokenizer: counts are exact. */
bool rb_prompt_exact(const rb_prompt_t *p);
/* Number of ids random prompts are drawn from. */
int32_t rb_prompt_pool_size(const rb_prompt_t *p);

/* n random pool ids into ids[0..n). */
void rb_prompt_random_ids(const rb_prompt_t *p, rb_rng_t *r, int32_t *ids, size_t n);

/* Append the text of ids[0..n) to the growing string *buf (length *len,
 * capacity *cap; *buf may start NULL). Always NUL-terminated. */
rt_status_t rb_prompt_decode(const rb_prompt_t *p, const int32_t *ids, size_t n, char **buf,
                             size_t *len, size_t *cap);

/* Tokens of text (exact: encoded without BOS; approx: words). */
rt_status_t rb_prompt_count(const rb_prompt_t *p, const char *text, size_t len, int32_t *n);

/* Exact mode only: the ids of text, encoded without BOS/EOS and without
 * parsing special tokens. *ids malloc'd (caller frees). */
rt_status_t rb_prompt_encode(const rb_prompt_t *p, const char *text, size_t len, int32_t **ids,
                             size_t *n);

/*
 * Random text of n_own tokens to follow head[0..head_len) (head may be
 * empty): on success *text (malloc'd, caller frees, *text_len bytes) is such
 * that head + text counts exactly count(head) + n_own tokens (exact mode),
 * and *n_total is that count. In approx mode text is n_own words and
 * *n_total = count(head) + n_own. n_own >= 1.
 */
rt_status_t rb_prompt_text(const rb_prompt_t *p, rb_rng_t *r, const char *head, size_t head_len,
                           int32_t n_own, char **text, size_t *text_len, int32_t *n_total);

/* Append bytes to a growing NUL-terminated string (as rb_prompt_decode). */
rt_status_t rb_str_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

#endif
