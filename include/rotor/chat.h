/*
 * chat.h - chat templates. The GGUF's tokenizer.chat_template (Jinja source)
 * is recognized as one of the common families and rendered by C code for that
 * family, the way llama.cpp's llama_chat_apply_template does; a config key can
 * name a family instead.
 */
#ifndef ROTOR_CHAT_H
#define ROTOR_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "rotor/status.h"

typedef enum {
    CHAT_TMPL_UNKNOWN = 0,
    CHAT_TMPL_CHATML,  /* <|im_start|>role\n...<|im_end|>\n (SmolLM2, Qwen) */
    CHAT_TMPL_LLAMA3,  /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    CHAT_TMPL_LLAMA2,  /* [INST] <<SYS>>..<</SYS>> ... [/INST] (Llama 2 chat) */
    CHAT_TMPL_MISTRAL, /* [INST] ... [/INST] without <<SYS>> (llama.cpp's "mistral"/llama2) */
    /* Variants llama.cpp also detects, named as llama.cpp names them. */
    CHAT_TMPL_LLAMA2_SYS_BOS,    /* "llama2-sys-bos": <s> before each later [INST] */
    CHAT_TMPL_LLAMA2_SYS_STRIP,  /* "llama2-sys-strip": contents trimmed */
    CHAT_TMPL_MISTRAL_V1,        /* "mistral-v1": " [INST] ... [/INST] ..." */
    CHAT_TMPL_MISTRAL_V3,        /* "mistral-v3": "[INST] ...[/INST] ..." */
    CHAT_TMPL_MISTRAL_V3_TEKKEN, /* "mistral-v3-tekken": "[INST]...[/INST]..." */
} chat_tmpl_t;

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* UTF-8 */
} chat_msg_t;

/* Recognize a Jinja chat template by its markers; CHAT_TMPL_UNKNOWN if none. */
chat_tmpl_t chat_template_detect(const char *jinja);
/* "chatml", "llama3", "llama2", "mistral" -> id; CHAT_TMPL_UNKNOWN otherwise.
 * Also accepts llama.cpp's "llama2-sys" (= llama2), "llama2-sys-bos",
 * "llama2-sys-strip", "mistral-v1", "mistral-v3", "mistral-v3-tekken". */
chat_tmpl_t chat_template_from_name(const char *name);
const char *chat_template_name(chat_tmpl_t t);

/* Render messages to a prompt string (malloc'd into *out, caller frees).
 * bos/eos are the vocabulary's BOS/EOS texts where a template spells them. */
rt_status_t chat_render(chat_tmpl_t t, const chat_msg_t *msgs, size_t n_msgs,
                        bool add_generation_prompt, const char *bos, const char *eos, char **out);

#endif
