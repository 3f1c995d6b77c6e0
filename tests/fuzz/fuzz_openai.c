/*
 * fuzz_openai.c - libFuzzer target for the OpenAI request parsers.
 *
 * Feeds the input, as an HTTP request body, to oai_parse (chat and
 * completions, with the server's default sampling settings),
 * oai_parse_tokenize and oai_parse_detokenize. When a parser accepts it,
 * touches everything the parsed struct hands out (model, messages, prompt
 * text or ids, stop strings, stop ids, logit_bias, tools and tool calls)
 * and checks the ranges the parser promises, then frees it with the
 * matching free function. When a parser refuses it, the error must say why
 * as the server sends it: an HTTP status, a type, a non-empty message, all
 * valid UTF-8, the output struct left zeroed; the error is rendered with
 * oai_render_error (what fe_reply_error sends) and read back. Any read the parser did not bounds-check shows up under
 * AddressSanitizer, anything it leaks under LeakSanitizer; a broken promise
 * abort()s.
 *
 * Built by tests/fuzz/run_fuzz.sh openai (clang -fsanitize=fuzzer,address,
 * undefined) and, with replay_main.c, by the Makefile as
 * build/tests/fuzz_openai_replay.
 */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/openai_parse.h"
#include "frontend/openai_render.h"

#include "fuzz_touch.h"


/* A string the parser handed out: NUL-terminated, valid UTF-8. */
static uint64_t touch_str(const char *s)
{
    if (!s) abort();
    size_t n = strlen(s);
    if (!oai_utf8_valid(s, n)) abort();
    return touch(s, n + 1);
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

/* The server's defaults: the sampling:* keys' defaults (src/core/config_keys.c)
 * as http_server.c copies them into fe->defaults. */
static const oai_defaults_t defaults = {
    .temperature = 1.0f,
    .top_k = 0,
    .top_p = 1.0f,
    .min_p = 0.0f,
};

/* An assistant message's tool calls. */
static uint64_t walk_tool_calls(const chat_msg_t *m)
{
    if (m->n_tool_calls > OAI_MAX_TOOLS || (m->n_tool_calls && !m->tool_calls)) abort();
    if (m->n_tool_calls && strcmp(m->role, "assistant") != 0) abort();
    uint64_t h = 0;
    for (size_t k = 0; k < m->n_tool_calls; k++) {
        h += touch_str(m->tool_calls[k].name);
        const char *a = m->tool_calls[k].arguments;
        if (!a) abort();
        h += touch(a, strlen(a) + 1); /* JSON text as the client sent it */
    }
    return h;
}

/* tools, tool_choice, parallel_tool_calls (chat). */
static uint64_t walk_tools(const oai_request_t *r)
{
    if (r->n_tools > OAI_MAX_TOOLS || (r->n_tools && !r->tools)) abort();
    uint64_t h = 0;
    for (size_t i = 0; i < r->n_tools; i++) h += touch_str(r->tools[i]);
    switch (r->tool_choice) {
    case OAI_TOOLS_NONE: break;
    case OAI_TOOLS_AUTO:
    case OAI_TOOLS_REQUIRED:
        if (r->n_tools == 0) abort();
        break;
    case OAI_TOOLS_NAMED:
        if (r->n_tools == 0) abort();
        h += touch_str(r->tool_choice_name);
        break;
    default: abort();
    }
    if (r->tool_choice != OAI_TOOLS_NAMED && r->tool_choice_name) abort();
    if (r->tool_prefix) abort(); /* the front end's, not the parser's */
    return h + (uint64_t)r->parallel_tool_calls;
}

static uint64_t walk_msgs(const chat_msg_t *msgs, size_t n)
{
    if (n == 0 || !msgs) abort(); /* a parsed chat has at least one message */
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 &&
                   strcmp(r, "assistant") != 0 && strcmp(r, "tool") != 0))
            abort(); /* roles are canonical */
        h += touch_str(r) + touch_str(msgs[i].content);
        h += walk_tool_calls(&msgs[i]);
    }
    return h;
}

static uint64_t walk_ids(const int32_t *ids, size_t n, size_t max)
{
    if (n > max || (n && !ids)) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0) abort();
    return touch(ids, n * sizeof *ids);
}

static bool in(double x, double lo, double hi)
{
    return x >= lo && x <= hi; /* false for NaN */
}

static uint64_t walk_request(const oai_request_t *r, oai_kind_t kind)
{
    uint64_t h = 0;
    if (r->kind != kind) abort();
    h += touch_str(r->model);
    if (kind == OAI_CHAT) {
        h += walk_msgs(r->msgs, r->n_msgs);
        if (r->prompt || r->prompt_ids || r->n_prompt_ids || r->echo) abort();
        h += walk_tools(r);
    } else {
        if (r->msgs || r->n_msgs) abort();
        if (r->tools || r->n_tools || r->tool_choice_name) abort();
        if (!r->prompt == !r->prompt_ids) abort(); /* exactly one of them */
        if (r->prompt) h += touch_str(r->prompt);
        if (r->prompt_ids && r->n_prompt_ids == 0) abort();
        h += walk_ids(r->prompt_ids, r->n_prompt_ids, (size_t)1 << 24);
    }
    if (r->max_tokens < 0 || r->max_tokens > 1000000000) abort();
    const sampler_params_t *sp = &r->sampling;
    if (!in(sp->temperature, 0, 2) || !(sp->top_p > 0 && sp->top_p <= 1) ||
        !in(sp->min_p, 0, 1) || sp->top_k < 0 || !in(sp->presence_penalty, -2, 2) ||
        !in(sp->frequency_penalty, -2, 2) ||
        !(sp->repetition_penalty > 0 && sp->repetition_penalty <= 2))
        abort();
    h += sp->seed + (uint64_t)r->has_seed;

    if (r->n_stops > OAI_MAX_STOPS || (r->n_stops && !r->stops)) abort();
    for (size_t i = 0; i < r->n_stops; i++) {
        size_t l = r->stops[i] ? strlen(r->stops[i]) : 0;
        if (l == 0 || l > OAI_MAX_STOP_LEN) abort(); /* non-empty, bounded */
        h += touch_str(r->stops[i]);
    }
    h += walk_ids(r->stop_token_ids, r->n_stop_token_ids, OAI_MAX_STOP_IDS);
    h += walk_ids(r->logit_bias_ids, r->n_logit_bias, OAI_MAX_LOGIT_BIAS);
    if (r->n_logit_bias && !r->logit_bias) abort();
    for (size_t i = 0; i < r->n_logit_bias; i++)
        if (!in(r->logit_bias[i], -100, 100)) abort();
    h += touch(r->logit_bias, r->n_logit_bias * sizeof *r->logit_bias);

    if (r->n < 1 || r->n > OAI_MAX_N) abort();
    int max_top = kind == OAI_CHAT ? OAI_MAX_TOP_LOGPROBS : OAI_MAX_LEGACY_LOGPROBS;
    if (r->top_logprobs < 0 || r->top_logprobs > max_top) abort();
    if (r->top_logprobs && !r->logprobs) abort();
    if (r->include_usage && !r->stream) abort();
    if (r->json_object && r->n_tools && r->tool_choice != OAI_TOOLS_NONE) abort(); /* refused together */
    h += (uint64_t)r->json_object + (uint64_t)r->n + (uint64_t)r->ignore_eos + (uint64_t)r->skip_special_tokens +
         (uint64_t)r->add_generation_prompt;
    return h;
}

/* A refusal as the server sends it: status, type, message, JSON. */
static uint64_t check_error(const oai_error_t *e)
{
    if (e->status < 400 || e->status > 599) abort();
    if (!e->type || !e->type[0]) abort();
    if (!memchr(e->message, '\0', sizeof e->message) || !e->message[0]) abort();
    if (!memchr(e->param, '\0', sizeof e->param)) abort();
    /* the message and param go to the client in a JSON string */
    uint64_t h = touch_str(e->message) + touch_str(e->param) + touch_str(e->type);
    if (e->code) h += touch_str(e->code);

    char *body = oai_render_error(e);
    if (!body) abort();
    cJSON *j = cJSON_Parse(body);
    const cJSON *eo = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(eo, "message");
    const cJSON *param = cJSON_GetObjectItemCaseSensitive(eo, "param");
    if (!cJSON_IsString(msg) || strcmp(msg->valuestring, e->message) != 0) abort();
    if (e->param[0] ? !cJSON_IsString(param) || strcmp(param->valuestring, e->param) != 0
                    : !cJSON_IsNull(param))
        abort();
    h += touch_str(body);
    cJSON_Delete(j);
    free(body);
    return h;
}

static uint64_t run_parse(oai_kind_t kind, const char *body, size_t len)
{
    oai_request_t r;
    oai_error_t e;
    memset(&e, 0, sizeof e);
    uint64_t h;
    if (oai_parse(kind, body, len, &defaults, &r, &e) == RT_OK) {
        h = walk_request(&r, kind);
        oai_request_free(&r);
        if (!all_zero(&r, sizeof r)) abort();
    } else {
        if (!all_zero(&r, sizeof r)) abort(); /* *out is left zeroed */
        h = check_error(&e);
    }
    return h;
}

static uint64_t run_tokenize(const char *body, size_t len)
{
    oai_tokenize_t t;
    oai_error_t e;
    memset(&e, 0, sizeof e);
    uint64_t h = 0;
    if (oai_parse_tokenize(body, len, &t, &e) == RT_OK) {
        if (t.model) h += touch_str(t.model);
        if (!t.prompt == !t.msgs) abort(); /* a prompt or messages */
        if (t.prompt) {
            h += touch_str(t.prompt);
            if (t.n_msgs) abort();
        } else {
            h += walk_msgs(t.msgs, t.n_msgs);
        }
        h += (uint64_t)t.add_generation_prompt + (uint64_t)t.add_special_tokens +
             (uint64_t)t.return_token_strs;
        oai_tokenize_free(&t);
        if (!all_zero(&t, sizeof t)) abort();
    } else {
        if (!all_zero(&t, sizeof t)) abort();
        h = check_error(&e);
    }
    return h;
}

static uint64_t run_detokenize(const char *body, size_t len)
{
    oai_detokenize_t d;
    oai_error_t e;
    memset(&e, 0, sizeof e);
    uint64_t h = 0;
    if (oai_parse_detokenize(body, len, &d, &e) == RT_OK) {
        if (d.model) h += touch_str(d.model);
        if (!d.tokens) abort();
        h += walk_ids(d.tokens, d.n_tokens, (size_t)1 << 24);
        oai_detokenize_free(&d);
        if (!all_zero(&d, sizeof d)) abort();
    } else {
        if (!all_zero(&d, sizeof d)) abort();
        h = check_error(&e);
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the server hands the parsers the body as it came, not NUL-terminated;
     * libFuzzer's and the replay's buffers are exact-size, so a read past
     * len shows */
    const char *body = (const char *)data;
    uint64_t h = run_parse(OAI_CHAT, body, size);
    h += run_parse(OAI_COMPLETION, body, size);
    h += run_tokenize(body, size);
    h += run_detokenize(body, size);

    /* what the server does to echo a client's string: valid UTF-8 out */
    size_t n = size < 256 ? size : 256;
    char shown[3 * 256 + 1];
    size_t w = oai_utf8_sanitize(body, n, shown, sizeof shown);
    if (w >= sizeof shown || shown[w] != '\0' || !oai_utf8_valid(shown, w)) abort();
    if (oai_utf8_valid(body, n) && (w != n || memcmp(shown, body, n) != 0)) abort();
    fuzz_sink = h + w;
    return 0;
}
