/*
 * chat_tools.c - tools (function calling) in chat prompts and in model
 * output, Hermes style on the ChatML family (rotor/chat.h).
 *
 * The instruction text is rotor's own; the markers (<tools>, <tool_call>,
 * <tool_response>) and the call's JSON shape are what Qwen2.5 and Hermes
 * models were trained on. JSON is read and written with cJSON.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_impl.h"
#include "rotor/chat.h"

static bool wants_tools(const chat_msg_t *msgs, size_t n_msgs, size_t n_tools) {
    if (n_tools) return true;
    for (size_t i = 0; i < n_msgs; i++)
        if (msgs[i].n_tool_calls || strcmp(msgs[i].role, "tool") == 0) return true;
    return false;
}

static void put_tools_block(sbuf_t *b, const char *const *tools, size_t n) {
    sb_puts(b, "# Tools\n\nYou may call one or more functions to help with the user's request.\n\n"
               "The functions you can call are described in JSON inside <tools></tools> tags:\n<tools>");
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "\n");
        sb_puts(b, tools[i]);
    }
    sb_puts(b, "\n</tools>\n\nTo call a function, reply with a JSON object holding the function's name and its "
               "arguments inside <tool_call></tool_call> tags:\n<tool_call>\n"
               "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
}

/* {"name": NAME, "arguments": ARGS}: ARGS as given when it is a JSON
 * object, else as a JSON string of it */
static void put_call(sbuf_t *b, const chat_tool_call_t *c) {
    cJSON *name = cJSON_CreateString(c->name ? c->name : "");
    char *qname = name ? cJSON_PrintUnformatted(name) : NULL;
    cJSON_Delete(name);
    cJSON *args = c->arguments ? cJSON_Parse(c->arguments) : NULL;
    const bool object = cJSON_IsObject(args);
    cJSON_Delete(args);
    char *qargs = NULL;
    if (!object) {
        cJSON *s = cJSON_CreateString(c->arguments ? c->arguments : "");
        qargs = s ? cJSON_PrintUnformatted(s) : NULL;
        cJSON_Delete(s);
    }
    if (!qname || (!object && !qargs)) b->oom = true;
    sb_puts(b, CHAT_TOOL_CALL_OPEN "\n{\"name\": ");
    sb_puts(b, qname ? qname : "\"\"");
    sb_puts(b, ", \"arguments\": ");
    sb_puts(b, qargs ? qargs : c->arguments ? c->arguments : "{}");
    sb_puts(b, "}\n" CHAT_TOOL_CALL_CLOSE);
    cJSON_free(qname);
    cJSON_free(qargs);
}

rt_status_t chat_render_tools(chat_tmpl_t t, const chat_msg_t *msgs, size_t n_msgs, const char *const *tools,
                              size_t n_tools, bool add_generation_prompt, const char *bos, const char *eos,
                              char **out) {
    if (!out || (n_msgs && !msgs) || (n_tools && !tools))
        return rt_error_set(RT_ERR_INVALID, "chat_render_tools: bad arguments");
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content || (msgs[i].n_tool_calls && !msgs[i].tool_calls))
            return rt_error_set(RT_ERR_INVALID, "chat_render_tools: message %zu lacks role or content", i);
    if (!wants_tools(msgs, n_msgs, n_tools)) return chat_render(t, msgs, n_msgs, add_generation_prompt, bos, eos, out);
    if (t != CHAT_TMPL_CHATML)
        return rt_error_set(RT_ERR_UNSUPPORTED, "tools need a ChatML chat template (Hermes-style tool calls); this "
                                                "model's is %s", chat_template_name(t));
    sbuf_t b = {0};
    sb_puts(&b, "");
    size_t i = 0;
    if (n_tools) { /* the system turn: its own text, then the tools */
        sb_puts(&b, "<|im_start|>system\n");
        if (n_msgs && strcmp(msgs[0].role, "system") == 0) {
            if (msgs[0].content[0]) {
                sb_puts(&b, msgs[0].content);
                sb_puts(&b, "\n\n");
            }
            i = 1;
        }
        put_tools_block(&b, tools, n_tools);
        sb_puts(&b, "<|im_end|>\n");
    }
    for (; i < n_msgs; i++) {
        const chat_msg_t *m = &msgs[i];
        if (strcmp(m->role, "tool") == 0) { /* a run of results: one user turn */
            if (i == 0 || strcmp(msgs[i - 1].role, "tool") != 0) sb_puts(&b, "<|im_start|>user");
            sb_puts(&b, "\n<tool_response>\n");
            sb_puts(&b, m->content);
            sb_puts(&b, "\n</tool_response>");
            if (i + 1 == n_msgs || strcmp(msgs[i + 1].role, "tool") != 0) sb_puts(&b, "<|im_end|>\n");
            continue;
        }
        sb_puts(&b, "<|im_start|>");
        sb_puts(&b, m->role);
        sb_puts(&b, "\n");
        sb_puts(&b, m->content);
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            if (m->content[0] || k) sb_puts(&b, "\n");
            put_call(&b, &m->tool_calls[k]);
        }
        sb_puts(&b, "<|im_end|>\n");
    }
    if (add_generation_prompt) sb_puts(&b, "<|im_start|>assistant\n");
    if (b.oom) {
        free(b.s);
        return rt_error_set(RT_ERR_NOMEM, "chat_render_tools: out of memory");
    }
    *out = b.s;
    return RT_OK;
}

/* ------------------------------------------------------------- parsing */

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static const char *find(const char *s, const char *end, const char *needle) {
    const size_t n = strlen(needle);
    for (const char *p = s; p + n <= end; p++)
        if (memcmp(p, needle, n) == 0) return p;
    return NULL;
}

/* The JSON value after "key": in json[0..len) (the first such key), parsed
 * on its own; NULL if none. For a block whose object is not well formed as
 * a whole: small models often drop its closing brace. */
static cJSON *value_after_key(const char *json, size_t len, const char *key) {
    const char *end = json + len, *k = find(json, end, key);
    if (!k) return NULL;
    const char *p = k + strlen(key);
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')) p++;
    if (p == end || *p != ':') return NULL;
    return cJSON_ParseWithLengthOpts(p + 1, (size_t)(end - p - 1), NULL, false);
}

/* the call in one block's JSON, or false: {"name": string, "arguments"
 * (or "parameters"): object}, the whole object or, failing that, the two
 * values one by one */
static bool parse_call(const char *json, size_t len, chat_parsed_call_t *out) {
    cJSON *o = cJSON_ParseWithLength(json, len), *name_v = NULL, *args_v = NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (!cJSON_IsObject(o)) {
        name = name_v = value_after_key(json, len, "\"name\"");
        args = args_v = value_after_key(json, len, "\"arguments\"");
        if (!args) args = args_v = value_after_key(json, len, "\"parameters\"");
    }
    bool ok = cJSON_IsString(name) && name->valuestring[0] && cJSON_IsObject(args);
    if (ok) {
        out->name = strdup(name->valuestring);
        out->arguments = cJSON_PrintUnformatted(args);
        if (!out->name || !out->arguments) {
            free(out->name);
            cJSON_free(out->arguments);
            ok = false;
        }
    }
    cJSON_Delete(o);
    cJSON_Delete(name_v);
    cJSON_Delete(args_v);
    return ok;
}

rt_status_t chat_parse_tool_calls(const char *text, size_t len, chat_parsed_call_t **calls, size_t *n,
                                  size_t *content_len) {
    *calls = NULL;
    *n = 0;
    *content_len = len;
    const char *end = text + len, *open = find(text, end, CHAT_TOOL_CALL_OPEN);
    if (!open) return RT_OK;
    size_t cap = 0;
    for (const char *p = open; p; p = p ? find(p, end, CHAT_TOOL_CALL_OPEN) : NULL) {
        const char *body = p + strlen(CHAT_TOOL_CALL_OPEN);
        const char *close = find(body, end, CHAT_TOOL_CALL_CLOSE);
        const char *stop = close ? close : end;
        if (*n == cap) {
            cap = cap ? 2 * cap : 4;
            chat_parsed_call_t *c = realloc(*calls, cap * sizeof *c);
            if (!c) {
                chat_parsed_calls_free(*calls, *n);
                *calls = NULL;
                *n = 0;
                return rt_error_set(RT_ERR_NOMEM, "chat_parse_tool_calls: out of memory");
            }
            *calls = c;
        }
        if (parse_call(body, (size_t)(stop - body), &(*calls)[*n])) (*n)++;
        p = close ? close + strlen(CHAT_TOOL_CALL_CLOSE) : NULL;
    }
    if (*n == 0) {
        free(*calls);
        *calls = NULL;
        return RT_OK;
    }
    while (open > text && is_ws(open[-1])) open--;
    *content_len = (size_t)(open - text);
    return RT_OK;
}

void chat_parsed_calls_free(chat_parsed_call_t *calls, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(calls[i].name);
        cJSON_free(calls[i].arguments);
    }
    free(calls);
}
