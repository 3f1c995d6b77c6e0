/*
 * openai_render.h - the JSON the front end answers with, built with cJSON in
 * OpenAI's shapes: chat.completion / text_completion responses, their
 * streaming chunks (chat.completion.chunk, SSE "data: ...\n\n"), usage,
 * logprobs (chat's content entries and completions' legacy arrays), the
 * /v1/models list and error bodies.
 *
 * Ownership: functions returning cJSON * give the caller a new tree to
 * attach or cJSON_Delete; parameters marked "taken" are attached to the
 * result (or deleted on failure) and must not be used afterwards. char *
 * results are malloc'd and owned by the caller. NULL means out of memory.
 */
#ifndef ROTOR_FRONTEND_OPENAI_RENDER_H
#define ROTOR_FRONTEND_OPENAI_RENDER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/openai_parse.h"
#include "rotor/engine.h"
#include "rotor/tokenizer.h"

/* {"error": {"message", "type", "param", "code"}} as text. */
char *oai_render_error(const oai_error_t *e);

/* "data: <compact json>\n\n"; *len receives the length. */
char *oai_sse_event(const cJSON *obj, size_t *len);

/* What every response and chunk of one request repeats. */
typedef struct {
    oai_kind_t kind;
    const char *id; /* "chatcmpl-..." or "cmpl-..." */
    const char *model;
    int64_t created; /* Unix seconds */
} oai_head_t;

/* One streaming chunk of one choice. role (chat only) and text may be NULL;
 * finish_reason NULL = still running; logprobs taken (may be NULL). */
cJSON *oai_chunk(const oai_head_t *h, int index, const char *role, const char *text,
                 const char *finish_reason, cJSON *logprobs);
/* The last chunk of include_usage: empty choices and usage (taken). */
cJSON *oai_usage_chunk(const oai_head_t *h, cJSON *usage);
/* A streamed error: {"error": {...}} (sent as an SSE event before [DONE]). */
cJSON *oai_error_object(const oai_error_t *e);

/* usage {prompt_tokens, completion_tokens, total_tokens,
 * prompt_tokens_details: {cached_tokens}}. */
cJSON *oai_usage(int prompt_tokens, int completion_tokens, int cached_tokens);
/* One choice of a whole response; logprobs taken (may be NULL). */
cJSON *oai_choice(oai_kind_t kind, int index, const char *text, const char *finish_reason,
                  cJSON *logprobs);
/* The whole response; choices (array) and usage taken. */
cJSON *oai_response(const oai_head_t *h, cJSON *choices, cJSON *usage);

/* Tool calls as OpenAI reports them: [{"id": "call_<id_base><i>", "type":
 * "function", "function": {"name", "arguments": JSON string}}] (with
 * "index" for stream deltas). NULL when out of memory. */
cJSON *oai_tool_calls(const chat_parsed_call_t *calls, size_t n, const char *id_base, bool with_index);
/* A chat choice whose message has content (NULL: null) and tool_calls
 * (taken; NULL: none); logprobs taken. */
cJSON *oai_choice_message(int index, const char *content, cJSON *tool_calls, const char *finish_reason,
                          cJSON *logprobs);
/* A chat chunk whose delta has content (NULL: none) and tool_calls (taken). */
cJSON *oai_chunk_tool_calls(const oai_head_t *h, int index, const char *content, cJSON *tool_calls,
                            const char *finish_reason);

/* GET /v1/models. */
cJSON *oai_models(const char *model, int64_t created, int max_model_len);

/* Logprobs collected token by token for one choice. Zero-initialize, then
 * oai_lp_add per generated token; oai_lp_take hands over what was added
 * since the last take as the choice's "logprobs" value (chat: {"content":
 * [...]}, completions: {"tokens", "token_logprobs", "top_logprobs",
 * "text_offset"}) and starts over; NULL when nothing was added. */
typedef struct {
    oai_kind_t kind;
    cJSON *obj; /* the value being built, NULL when empty */
    size_t n;   /* entries in obj */
} oai_lp_t;

/* text_offset: bytes of the choice's text before this token. false on OOM. */
bool oai_lp_add(oai_lp_t *lp, oai_kind_t kind, const tok_vocab_t *v, const engine_event_t *ev,
                int n_top, int text_offset);
/* Completions' echo: the prompt's first token, which has no logprob (null
 * in token_logprobs and top_logprobs). false on OOM. */
bool oai_lp_add_null(oai_lp_t *lp, const tok_vocab_t *v, int32_t token, int text_offset);
cJSON *oai_lp_take(oai_lp_t *lp);
void oai_lp_clear(oai_lp_t *lp);

/* Copy s[0..n) to out (cap bytes, NUL-terminated) replacing every invalid
 * UTF-8 byte by U+FFFD; returns the length written. */
size_t oai_utf8_sanitize(const char *s, size_t n, char *out, size_t cap);

#endif
