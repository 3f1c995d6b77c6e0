/*
 * model_vocab.h - tokenizer vocabularies for `rotor-model gen`.
 *
 * Builds, deterministically, the vocabulary of a generated model: either a
 * SentencePiece-style one (tokenizer.ggml.model "llama": <unk> <s> </s>,
 * byte pieces, "▁word" prefixes, padding pieces, scores -id) or a GPT-2
 * byte-level BPE one (tokenizer.ggml.model "gpt2": the 256 byte symbols,
 * merge chains for a word list and padding words, then the ChatML special
 * tokens), and writes it with its special token ids and chat template as
 * GGUF tokenizer.* metadata. The same arguments always give the same bytes.
 *
 * Memory: a model_vocab_t starts zeroed ({0}); the build functions allocate
 * into it and it owns every piece and merge string. The caller frees it with
 * model_vocab_free, also after a failed build (which leaves it partly filled).
 * model_vocab_write_gguf copies what it needs into the writer, so the vocab
 * may be freed any time after.
 */
#ifndef ROTOR_TOOLS_MODEL_VOCAB_H
#define ROTOR_TOOLS_MODEL_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/gguf.h"
#include "rotor/status.h"

typedef struct {
    char **text; /* (n) owned strings */
    float *score;
    int32_t *type; /* llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte */
    size_t n, cap;
    int32_t *slots; /* hash set of ids, (nslots) power of two, -1 empty */
    size_t nslots;
    char **merges; /* (n_merges) "a b" strings, BPE only */
    size_t n_merges, cap_merges;
    bool spm; /* set by the build function: true SPM, false BPE */
} model_vocab_t;

/* Build into a zeroed vocab. n_vocab is the size to pad up to (the word list
 * is cut to fit); tiny keeps only specials, bytes and a few pieces, ignoring
 * n_vocab. false when out of memory. */
bool model_vocab_build_spm(model_vocab_t *v, size_t n_vocab, bool tiny);
bool model_vocab_build_bpe(model_vocab_t *v, size_t n_vocab, bool tiny);

/* The id of piece s, or -1. */
int32_t model_vocab_find(const model_vocab_t *v, const char *s);

/* Free everything the vocab owns and zero it. */
void model_vocab_free(model_vocab_t *v);

/* Add the tokenizer.* keys: model, pre (BPE only: `pre`), tokens, scores
 * (SPM only), token types, merges (BPE only), BOS/EOS/UNK/PAD ids, add_bos/
 * add_eos, and the chat template (SPM: Llama 2, or Mistral when `mistral`;
 * BPE: ChatML). Returns the first writer error (message in rt_error_msg()). */
rt_status_t model_vocab_write_gguf(gguf_writer_t *w, const model_vocab_t *v, const char *pre, bool mistral);

#endif
