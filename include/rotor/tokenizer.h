/*
 * tokenizer.h - tokenizers built from a GGUF file's tokenizer.* metadata:
 *   - byte-level BPE (tokenizer.ggml.model = "gpt2"), pre-tokenized with the
 *     regexes llama.cpp uses for tokenizer.ggml.pre (PCRE2), then merges by rank;
 *   - SentencePiece-style (tokenizer.ggml.model = "llama"): score-driven merges
 *     with byte fallback (<0xNN> tokens), "▁" for spaces.
 * Special/control tokens are matched in the text when parse_special is set.
 * BOS/EOS ids and add_bos/add_eos come from the metadata.
 *
 * Ownership: tok_vocab_t owns copies of all strings it needs (it does not
 * keep the gguf_ctx_t alive). Token id arrays returned by tok_encode are
 * malloc'd and owned by the caller.
 */
#ifndef ROTOR_TOKENIZER_H
#define ROTOR_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/gguf.h"
#include "rotor/status.h"

typedef struct tok_vocab tok_vocab_t;

typedef enum { TOK_KIND_SPM = 1, TOK_KIND_BPE = 2 } tok_kind_t;

/* Token attributes, from tokenizer.ggml.token_type (llama.cpp's values). */
typedef enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type_t;

rt_status_t tok_vocab_from_gguf(const gguf_ctx_t *g, tok_vocab_t **out);
void tok_vocab_destroy(tok_vocab_t *v);

tok_kind_t tok_kind(const tok_vocab_t *v);
int32_t tok_n_vocab(const tok_vocab_t *v);
int32_t tok_bos(const tok_vocab_t *v); /* -1 if none */
int32_t tok_eos(const tok_vocab_t *v); /* -1 if none */
bool tok_add_bos(const tok_vocab_t *v);
bool tok_add_eos(const tok_vocab_t *v);
/* End-of-generation: eos, eot and tokens such as <|im_end|>, <|eot_id|>, </s>. */
bool tok_is_eog(const tok_vocab_t *v, int32_t id);
bool tok_is_control(const tok_vocab_t *v, int32_t id);
/* Raw vocabulary text of a token (as stored in the file), or NULL. */
const char *tok_text(const tok_vocab_t *v, int32_t id);
/* Id of an exact vocabulary string, or -1. */
int32_t tok_find(const tok_vocab_t *v, const char *text);

/*
 * Encode text[0..len) to token ids, with llama.cpp's semantics:
 * add_special adds BOS (and EOS) when the metadata asks for it;
 * parse_special turns the text of special/control tokens into those tokens.
 * On success *ids (malloc'd, caller frees) holds *n_ids ids.
 */
rt_status_t tok_encode(const tok_vocab_t *v, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t **ids, size_t *n_ids);

/* The bytes a token stands for (decoded from byte-level / "▁" / <0xNN>
 * forms), written to buf (not NUL-terminated). Control tokens produce their
 * text only if render_special. Returns the number of bytes the piece has
 * (which may exceed cap; then only cap bytes were written). */
size_t tok_token_to_piece(const tok_vocab_t *v, int32_t id, char *buf, size_t cap,
                          bool render_special);

/* Streaming detokenizer: holds back an incomplete UTF-8 sequence between
 * tokens so each push emits only whole characters. Zero-initialize. */
typedef struct {
    char pending[16];
    int n_pending;
} tok_stream_t;

/* Append the text of token id to out (capacity cap, NUL-terminated); returns
 * bytes written (excluding NUL). Bytes that do not yet form a whole UTF-8
 * character stay pending. */
size_t tok_stream_push(const tok_vocab_t *v, tok_stream_t *st, int32_t id, char *out, size_t cap,
                       bool render_special);
/* Flush whatever is pending (invalid tails become U+FFFD). */
size_t tok_stream_flush(tok_stream_t *st, char *out, size_t cap);

/* ---- additions ---- */
int32_t tok_eot(const tok_vocab_t *v); /* end-of-turn id (metadata or auto-detected), -1 if none */
tok_type_t tok_token_type(const tok_vocab_t *v, int32_t id); /* TOK_TYPE_UNDEFINED if out of range */
/* tokenizer.ggml.pre of a BPE vocabulary ("default" if absent; "default" for SPM). */
const char *tok_pre(const tok_vocab_t *v);
/* BPE: the pre-tokenizer regexes (PCRE2 syntax) applied one after another;
 * returns their count (0 for SPM). The strings are static. */
int tok_pretok_patterns(const tok_vocab_t *v, const char *const **rx);
/* BPE: whole words are looked up before merging (llama3, tekken). */
bool tok_ignore_merges(const tok_vocab_t *v);

#endif
