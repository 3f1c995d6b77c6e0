/*
 * tok_impl.h - private layout of tok_vocab_t, shared by the files of
 * src/tokenizer: vocab.c (loading, lookups, special tokens), unicode.c (UTF-8
 * and the byte-level alphabet), pretok.c (PCRE2 pre-tokenizer), bpe.c,
 * spm.c (the two merge algorithms), encode.c (special-token partition,
 * tok_encode) and piece.c (detokenization).
 *
 * Everything follows llama.cpp's llama-vocab.cpp semantics so that rotor and
 * llama.cpp produce the same ids for the same GGUF.
 */
#ifndef ROTOR_TOK_IMPL_H
#define ROTOR_TOK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/tokenizer.h"

#define TOK_MAX_REGEX 6

/* ---- growable int32 array (token output) ---- */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids_t;

rt_status_t tok_ids_push(tok_ids_t *a, int32_t id);

/* ---- open-addressing hash index over strings, keyed by XXH3_64bits ----
 * Slots hold an index into a caller-owned entry array (or -1); the caller
 * compares keys on probe. */
typedef struct {
    int32_t *slots; /* (cap) entry index or -1 */
    uint64_t *hash; /* (cap) hash of the entry in the slot */
    size_t cap;     /* power of two */
    size_t mask;
} tok_index_t;

rt_status_t tok_index_init(tok_index_t *ix, size_t n_entries);
void tok_index_free(tok_index_t *ix);

/* ---- one vocabulary entry ---- */
typedef struct {
    const char *text; /* into v->pool, NUL-terminated */
    uint32_t len;
    float score;
    uint8_t type; /* tok_type_t */
} tok_entry_t;

/* One merge "left right" of a BPE vocabulary; strings are into v->pool. */
typedef struct {
    const char *left, *right;
    uint32_t left_len, right_len;
} tok_merge_t;

/* Pre-tokenizer: compiled regexes applied one after another (each splits the
 * pieces the previous one left), as llama.cpp's unicode_regex_split does. */
typedef struct {
    int n;
    void *code[TOK_MAX_REGEX]; /* pcre2_code_8 * */
    const char *const *rx;     /* (n) their sources, PCRE2 syntax (static table) */
} tok_pretok_t;

struct tok_vocab {
    tok_kind_t kind;
    int32_t n_tokens;
    tok_entry_t *tokens; /* (n_tokens) */
    char *pool;          /* all token and merge strings */
    tok_index_t tok_ix;  /* text -> id (last duplicate wins, like llama.cpp) */

    tok_merge_t *merges; /* (n_merges), rank = index */
    int32_t n_merges;
    tok_index_t merge_ix; /* (left, right) -> rank (first duplicate wins) */

    int32_t bos, eos, eot, eom, unk, pad, nl;
    bool add_bos, add_eos;
    bool add_space_prefix; /* SPM */
    bool ignore_merges;    /* BPE: whole-word lookup first (llama3) */
    char pre[32];          /* tokenizer.ggml.pre as recognized */
    tok_pretok_t pretok;

    int32_t *special; /* (n_special) control/user-defined/unknown ids, longest text first */
    int32_t n_special;
    uint8_t *eog;           /* (n_tokens) 1 for end-of-generation tokens */
    int32_t byte_tok[256];  /* SPM: id of <0xNN> (or the raw byte), -1 if none */
    char byte_utf8[256][4]; /* BPE: UTF-8 of each byte's byte-level code point */
    uint8_t byte_utf8_len[256];
    int16_t cpt_byte[324]; /* BPE: inverse of the above for code points < 324, else -1 */
};

/* vocab.c */
int32_t tok_lookup(const tok_vocab_t *v, const char *s, size_t len);
int32_t tok_merge_rank(const tok_vocab_t *v, const char *l, size_t ll, const char *r, size_t rl);

/* unicode.c */
/* Lenient UTF-8 decode of one code point at s[*off] (llama.cpp's
 * unicode_cpt_from_utf8); invalid bytes yield U+FFFD and advance by one. */
uint32_t tok_utf8_decode(const char *s, size_t len, size_t *off);
/* Bytes of the UTF-8 sequence starting with byte c (1 for invalid leads). */
size_t tok_utf8_len(uint8_t c);
/* Encode cp (any value <= 0x1FFFFF; surrogates are encoded as is), returns
 * the number of bytes (<= 4). */
size_t tok_utf8_encode(uint32_t cp, char *out);
/* Byte-level BPE alphabet (GPT-2 bytes_to_unicode): the code point for byte b. */
uint32_t tok_byte_to_cpt(uint8_t b);
/* Inverse; -1 if cp is not in the alphabet. */
int tok_cpt_to_byte(uint32_t cp);

/* pretok.c */
/* Compile the regexes of pre-tokenizer type `pre` ("" = default); reports
 * llama.cpp's per-type ignore_merges and add_bos defaults. */
rt_status_t tok_pretok_init(tok_pretok_t *p, const char *pre, bool *ignore_merges, bool *add_bos);
void tok_pretok_free(tok_pretok_t *p);
/* Split text into byte-level encoded words with v->pretok. Calls
 * fn(word, len, arg) for each word in order; fn returns non-OK to stop. */
typedef rt_status_t (*tok_word_fn)(const char *word, size_t len, void *arg);
rt_status_t tok_pretok_split(const tok_vocab_t *v, const char *text, size_t len, tok_word_fn fn,
                             void *arg);

/* bpe.c / spm.c: append the ids of one raw-text fragment to out. */
rt_status_t tok_bpe_encode(const tok_vocab_t *v, const char *text, size_t len, tok_ids_t *out);
/* space_prefix: put one "▁" before the text (add_space_prefix after a special). */
rt_status_t tok_spm_encode(const tok_vocab_t *v, const char *text, size_t len, bool space_prefix,
                           tok_ids_t *out);

#endif
