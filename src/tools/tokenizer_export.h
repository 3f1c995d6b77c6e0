/*
 * tokenizer_export.h - `rotor-model export-tokenizer MODEL.gguf DIR`: write
 * a GGUF model's tokenizer as a Hugging Face tokenizer directory
 * (tokenizer.json, tokenizer_config.json, special_tokens_map.json) that the
 * `tokenizers` and `transformers` packages load offline and that encodes
 * text to the ids rotor gives (for benchmark clients such as aiperf that
 * count tokens with a Hugging Face tokenizer).
 *
 * Byte-level BPE vocabularies (tokenizer.ggml.model "gpt2") become a BPE
 * model behind a Sequence of Split pre-tokenizers (rotor's regexes for
 * tokenizer.ggml.pre) and ByteLevel; SentencePiece-style ones ("llama")
 * become a byte-fallback BPE whose merges are derived from the token scores
 * (Hugging Face's Llama conversion). Where Hugging Face cannot say what the
 * GGUF says (merges whose parts or result are not tokens, tokens that are
 * not valid UTF-8, duplicate token texts), the entry is left out and counted
 * in the stats.
 *
 * Ownership: nothing is kept; the GGUF is opened and closed inside.
 */
#ifndef ROTOR_TOKENIZER_EXPORT_H
#define ROTOR_TOKENIZER_EXPORT_H

#include <stddef.h>

#include "rotor/status.h"

typedef struct {
    int n_tokens;       /* entries of model.vocab */
    int n_merges;       /* entries of model.merges */
    int n_added;        /* added_tokens (control, user-defined, unknown) */
    int dropped_tokens; /* invalid UTF-8 or a duplicate text (the later id wins, as in rotor) */
    int dropped_merges; /* GGUF merges whose left, right or result is not a token, or repeats */
    int spm_score_ties; /* SPM: merges whose result shares its score with another's */
} tokenizer_export_stats_t;

/* Write DIR/tokenizer.json, DIR/tokenizer_config.json and
 * DIR/special_tokens_map.json for the tokenizer of the GGUF at model_path,
 * creating DIR (and its parents) if needed. stats may be NULL. */
rt_status_t tokenizer_export_hf(const char *model_path, const char *dir,
                                tokenizer_export_stats_t *stats);

/* The subcommand: argv[0] is "export-tokenizer". Returns the exit code. */
int tokenizer_export_main(int argc, char **argv);

#endif
