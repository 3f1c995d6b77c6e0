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

/* A function call an assistant message made (OpenAI's tool_calls). */
typedef struct {
    const char *name;
    const char *arguments; /* JSON text of the arguments (OpenAI sends a string) */
} chat_tool_call_t;

typedef struct {
    const char *role;    /* "system", "user", "assistant", "tool" (a function's result) */
    const char *content; /* UTF-8 ("" for an assistant message that only calls tools) */
    const chat_tool_call_t *tool_calls; /* (n_tool_calls) an assistant message's calls */
    size_t n_tool_calls;
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

/* ---- tools (function calling), chat_tools.c ----
 *
 * Two families, each the way its models are trained for it:
 * - ChatML (Qwen2.5, Hermes): Hermes style. The tools' JSON definitions go
 *   into the system turn between <tools></tools> with an instruction to
 *   answer a call as <tool_call>{"name": ..., "arguments": {...}}</tool_call>;
 *   an assistant message's calls are rendered the same way; consecutive
 *   "tool" messages become one user turn of <tool_response> blocks.
 * - Llama 3 (3.1 and later): JSON calls. The tools' definitions and an
 *   instruction go at the start of the first user message; a call is the
 *   whole answer, {"name": ..., "parameters": {...}} (several joined by
 *   ";"), optionally after <|python_tag|>; results are "ipython" turns.
 * Other families: tools and tool messages are RT_ERR_UNSUPPORTED. */

/* What a Hermes-style model writes around a call's JSON. */
#define CHAT_TOOL_CALL_OPEN "<tool_call>"
#define CHAT_TOOL_CALL_CLOSE "</tool_call>"

/* The family supports tools. */
bool chat_tools_supported(chat_tmpl_t t);
/* The text an answer starts with when a call is required (name NULL: any
 * function; else that one, whose arguments the model then writes):
 * malloc'd, NULL when out of memory or the family has no tools. */
char *chat_tool_call_prefix(chat_tmpl_t t, const char *name);

/* chat_render with tools: tools_json[0..n_tools) are the tools' JSON
 * definitions (OpenAI's {"type": "function", "function": {...}}). With no
 * tools and no tool messages or calls it renders exactly as chat_render. */
rt_status_t chat_render_tools(chat_tmpl_t t, const chat_msg_t *msgs, size_t n_msgs, const char *const *tools_json,
                              size_t n_tools, bool add_generation_prompt, const char *bos, const char *eos,
                              char **out);

/* A call parsed from model output. */
typedef struct {
    char *name;      /* owned */
    char *arguments; /* owned: the arguments object as compact JSON */
} chat_parsed_call_t;

/* The tool calls in text (the model's output). ChatML: every <tool_call>
 * block (the last one may lack its closing tag, as when generation stopped
 * at it) holding a JSON object with a string "name" and an object
 * "arguments" (or "parameters"). Llama 3: the whole answer (after
 * whitespace and <|python_tag|>) is such objects joined by ";". *calls
 * (malloc'd array, caller frees with
 * chat_parsed_calls_free) and *n get them; *content_len is the length of
 * the text before the first block (trailing whitespace dropped). A block
 * that does not parse is skipped; *n = 0 and *content_len = the text's
 * length when there are none. RT_ERR_NOMEM only. */
rt_status_t chat_parse_tool_calls(chat_tmpl_t t, const char *text, size_t len, chat_parsed_call_t **calls,
                                  size_t *n, size_t *content_len);
void chat_parsed_calls_free(chat_parsed_call_t *calls, size_t n);

#endif
