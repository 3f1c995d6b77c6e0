/*
 * openai_parse.h - OpenAI request bodies (JSON, parsed with cJSON) turned
 * into a validated oai_request_t, or an oai_error_t that says precisely what
 * is wrong (HTTP status, OpenAI error type, the offending parameter).
 *
 * Both /v1/chat/completions and /v1/completions are covered, with vLLM's
 * extensions (top_k, min_p, repetition_penalty, ignore_eos, stop_token_ids,
 * skip_special_tokens, add_generation_prompt). Unknown fields are ignored;
 * fields rotor cannot honour (tools, suffix, non-text
 * content parts, structured output) are refused rather than silently
 * dropped. vLLM's /tokenize and /detokenize bodies are parsed here too.
 * docs/http-api.md lists every parameter.
 *
 * Ownership: oai_request_t (oai_tokenize_t, oai_detokenize_t) owns every
 * string and array it points to; oai_request_free (oai_tokenize_free,
 * oai_detokenize_free) releases them (the struct itself is the caller's).
 */
#ifndef ROTOR_FRONTEND_OPENAI_PARSE_H
#define ROTOR_FRONTEND_OPENAI_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/chat.h"
#include "rotor/sampler.h"
#include "rotor/status.h"

typedef enum { OAI_CHAT = 1, OAI_COMPLETION = 2 } oai_kind_t;

/* Limits of what a request may ask for. */
#define OAI_MAX_N 16              /* choices per request */
#define OAI_MAX_STOPS 16          /* stop strings */
#define OAI_MAX_STOP_LEN 1024     /* bytes per stop string */
#define OAI_MAX_STOP_IDS 64       /* stop_token_ids */
#define OAI_MAX_LOGIT_BIAS 1024   /* logit_bias entries (SAMPLER_MAX_LOGIT_BIAS) */
#define OAI_MAX_TOP_LOGPROBS 20   /* chat top_logprobs */
#define OAI_MAX_LEGACY_LOGPROBS 5 /* completions logprobs */

/* tool_choice: whether the model may, must, or must not call a tool. */
typedef enum { OAI_TOOLS_AUTO = 0, OAI_TOOLS_NONE, OAI_TOOLS_REQUIRED, OAI_TOOLS_NAMED } oai_tool_choice_t;

#define OAI_MAX_TOOLS 128

/* An OpenAI error: {"error": {"message", "type", "param", "code"}}. */
typedef struct {
    int status;       /* HTTP status */
    const char *type; /* static: "invalid_request_error", "server_error", ... */
    const char *code; /* static, or NULL for JSON null */
    char param[64];   /* "" for JSON null */
    char message[512];
} oai_error_t;

/* Fill e (message printf-style; param and code may be NULL). */
void oai_error_set(oai_error_t *e, int status, const char *type, const char *code,
                   const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Server-side defaults (the sampling:* config keys). */
typedef struct {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
} oai_defaults_t;

typedef struct {
    oai_kind_t kind;
    char *model; /* owned */
    /* chat */
    chat_msg_t *msgs; /* (n_msgs) role is a static string, content and tool_calls (names,
                         arguments) owned */
    size_t n_msgs;
    bool add_generation_prompt;
    char **tools;     /* (n_tools) owned: each tool's JSON definition */
    size_t n_tools;
    oai_tool_choice_t tool_choice;
    char *tool_choice_name; /* OAI_TOOLS_NAMED: the function; owned */
    bool parallel_tool_calls;
    char *tool_prefix; /* set by the front end: the forced opening of a call (tool_choice required or
                          named) that ends the prompt, or NULL; owned */
    /* completions: exactly one of prompt / prompt_ids */
    char *prompt;        /* owned, NUL-terminated, or NULL */
    int32_t *prompt_ids; /* (n_prompt_ids) owned, or NULL */
    size_t n_prompt_ids;
    /* both */
    int max_tokens; /* 0 when not given (server default applies) */
    int min_tokens; /* vLLM's: no end before this many tokens (stop strings too); 0 = off */
    bool json_object; /* response_format json_object: the output is a JSON object */
    sampler_params_t sampling;
    bool has_seed; /* seed given; else the server picks one per choice */
    char **stops;  /* (n_stops) owned, non-empty strings */
    size_t n_stops;
    int32_t *stop_token_ids; /* (n_stop_token_ids) owned; range-checked later */
    size_t n_stop_token_ids;
    int32_t *logit_bias_ids; /* (n_logit_bias) owned; range-checked later */
    float *logit_bias;       /* (n_logit_bias) owned, each in [-100, 100] */
    size_t n_logit_bias;
    int n;            /* choices, 1..OAI_MAX_N */
    bool logprobs;    /* report logprobs */
    int top_logprobs; /* alternatives per token */
    bool ignore_eos;
    bool echo; /* completions: the prompt before the text (and its logprobs, first null) */
    bool skip_special_tokens; /* default true: control tokens are not rendered */
    bool stream;
    bool include_usage; /* stream_options.include_usage */
} oai_request_t;

/* Parse and validate body[0..len). On success *out owns its contents (free
 * with oai_request_free). On failure *err says why (status 400) and *out is
 * left zeroed. */
rt_status_t oai_parse(oai_kind_t kind, const char *body, size_t len, const oai_defaults_t *d,
                      oai_request_t *out, oai_error_t *err);
void oai_request_free(oai_request_t *r);

/* POST /tokenize (vLLM): a text prompt, or chat messages rendered with the
 * model's template. */
typedef struct {
    char *model;      /* owned; NULL when not given */
    char *prompt;     /* owned, or NULL for the messages form */
    chat_msg_t *msgs; /* (n_msgs) as in oai_request_t; NULL for the text form */
    size_t n_msgs;
    bool add_generation_prompt; /* messages: default true */
    char **tools;               /* (n_tools) owned: the tools' JSON definitions, rendered into the messages */
    size_t n_tools;
    bool add_special_tokens;    /* default true for a prompt, false for messages */
    bool return_token_strs;     /* also answer each token's vocabulary string */
} oai_tokenize_t;

/* POST /detokenize (vLLM). */
typedef struct {
    char *model;     /* owned; NULL when not given */
    int32_t *tokens; /* (n_tokens) owned, ids >= 0; checked against the vocabulary later */
    size_t n_tokens;
} oai_detokenize_t;

/* Parse and validate a /tokenize or /detokenize body as oai_parse does
 * (same errors for the body, the messages and mistyped fields). On success
 * *out owns its contents; on failure *err says why and *out is zeroed. */
rt_status_t oai_parse_tokenize(const char *body, size_t len, oai_tokenize_t *out, oai_error_t *err);
void oai_tokenize_free(oai_tokenize_t *t);
rt_status_t oai_parse_detokenize(const char *body, size_t len, oai_detokenize_t *out,
                                 oai_error_t *err);
void oai_detokenize_free(oai_detokenize_t *t);

/* True when s[0..n) is well-formed UTF-8 (RFC 3629). */
bool oai_utf8_valid(const char *s, size_t n);

#endif
