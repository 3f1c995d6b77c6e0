/*
 * chat_tools.c - tools (function calling) in chat prompts and in model
 * output: Hermes style on the ChatML family, JSON calls on Llama 3
 * (rotor/chat.h).
 *
 * The instruction texts are rotor's own; the markers (<tools>, <tool_call>,
 * <tool_response>, <|python_tag|>, the ipython role) and the calls' JSON
 * shapes are what Qwen2.5, Hermes and Llama 3.1 models were trained on.
 * JSON is read and written with cJSON.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
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

/* {"name": NAME, "<key>": ARGS}: ARGS as given when it is a JSON object,
 * else as a JSON string of it */
static void put_call_json(sbuf_t *b, const chat_tool_call_t *c, const char *key) {
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
    sb_puts(b, "{\"name\": ");
    sb_puts(b, qname ? qname : "\"\"");
    sb_puts(b, ", \"");
    sb_puts(b, key);
    sb_puts(b, "\": ");
    sb_puts(b, qargs ? qargs : c->arguments ? c->arguments : "{}");
    sb_puts(b, "}");
    cJSON_free(qname);
    cJSON_free(qargs);
}

static void put_call(sbuf_t *b, const chat_tool_call_t *c) {
    sb_puts(b, CHAT_TOOL_CALL_OPEN "\n");
    put_call_json(b, c, "arguments");
    sb_puts(b, "\n" CHAT_TOOL_CALL_CLOSE);
}

bool chat_tools_supported(chat_tmpl_t t) { return t == CHAT_TMPL_CHATML || t == CHAT_TMPL_LLAMA3; }

char *chat_tool_call_prefix(chat_tmpl_t t, const char *name) {
    if (!chat_tools_supported(t)) return NULL;
    const char *open = t == CHAT_TMPL_CHATML ? CHAT_TOOL_CALL_OPEN "\n" : "";
    const char *key = t == CHAT_TMPL_CHATML ? "arguments" : "parameters";
    if (!name) {
        char *s = malloc(strlen(open) + 16);
        if (s) sprintf(s, "%s{\"name\": \"", open);
        return s;
    }
    cJSON *j = cJSON_CreateString(name);
    char *q = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!q) return NULL;
    const size_t n = strlen(open) + strlen(q) + strlen(key) + 24;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s{\"name\": %s, \"%s\": ", open, q, key);
    cJSON_free(q);
    return s;
}

/* Llama 3: the tools and the instruction, ahead of the first user message */
static void put_llama3_tools(sbuf_t *b, const char *const *tools, size_t n) {
    sb_puts(b, "You can call the functions described below in JSON. To call one, answer with only a JSON object "
               "{\"name\": function name, \"parameters\": object of argument names and values}, and nothing "
               "else.\n\n");
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, tools[i]);
        sb_puts(b, "\n\n");
    }
}

static void render_llama3_tools(sbuf_t *b, const chat_msg_t *msgs, size_t n_msgs, const char *const *tools,
                                size_t n_tools, bool add_generation_prompt) {
    bool tools_put = n_tools == 0;
    for (size_t i = 0; i < n_msgs; i++) {
        const chat_msg_t *m = &msgs[i];
        const bool result = strcmp(m->role, "tool") == 0;
        if (!tools_put && strcmp(m->role, "system") != 0) {
            /* the first turn that is not the system's: the tools open it
             * (a user turn of their own when the conversation has none first) */
            sb_puts(b, "<|start_header_id|>user<|end_header_id|>\n\n");
            put_llama3_tools(b, tools, n_tools);
            tools_put = true;
            if (strcmp(m->role, "user") == 0) {
                sb_put_trimmed(b, m->content);
                sb_puts(b, "<|eot_id|>");
                continue;
            }
            sb_puts(b, "<|eot_id|>");
        }
        sb_puts(b, "<|start_header_id|>");
        sb_puts(b, result ? "ipython" : m->role);
        sb_puts(b, "<|end_header_id|>\n\n");
        sb_put_trimmed(b, m->content);
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            if (k) sb_puts(b, "; ");
            put_call_json(b, &m->tool_calls[k], "parameters");
        }
        sb_puts(b, "<|eot_id|>");
    }
    if (!tools_put) {
        sb_puts(b, "<|start_header_id|>user<|end_header_id|>\n\n");
        put_llama3_tools(b, tools, n_tools);
        sb_puts(b, "<|eot_id|>");
    }
    if (add_generation_prompt) sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
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
    if (!chat_tools_supported(t))
        return rt_error_set(RT_ERR_UNSUPPORTED, "tools need a ChatML (Hermes-style calls) or Llama 3 chat template; "
                                                "this model's is %s", chat_template_name(t));
    sbuf_t b = {0};
    sb_puts(&b, "");
    if (t == CHAT_TMPL_LLAMA3) {
        render_llama3_tools(&b, msgs, n_msgs, tools, n_tools, add_generation_prompt);
        goto done;
    }
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
done:
    if (b.oom) {
        free(b.s);
        return rt_error_set(RT_ERR_NOMEM, "chat_render_tools: out of memory");
    }
    *out = b.s;
    return RT_OK;
}

/* ------------------------------------------------------------- parsing */

static bool is_ws(char c) { return is_space(c); }

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

/* room for one more call in *calls */
static bool grow(chat_parsed_call_t **calls, size_t n, size_t *cap) {
    if (n < *cap) return true;
    const size_t c = *cap ? 2 * *cap : 4;
    chat_parsed_call_t *p = realloc(*calls, c * sizeof *p);
    if (!p) return false;
    *calls = p;
    *cap = c;
    return true;
}

/* Llama 3: the answer is calls, {...}; {...}, optionally after <|python_tag|> */
static rt_status_t parse_llama3(const char *text, size_t len, chat_parsed_call_t **calls, size_t *n, size_t *cap) {
    const char *p = text, *end = text + len;
    while (p < end && is_ws(*p)) p++;
    static const char tag[] = "<|python_tag|>";
    if ((size_t)(end - p) >= sizeof tag - 1 && memcmp(p, tag, sizeof tag - 1) == 0) p += sizeof tag - 1;
    while (p < end && is_ws(*p)) p++;
    while (p < end && *p == '{') {
        if (!grow(calls, *n, cap)) return RT_ERR_NOMEM;
        const char *stop = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, false);
        const bool whole = o != NULL;
        cJSON_Delete(o);
        /* a broken object (its closing brace dropped): the rest, value by value */
        if (!parse_call(p, whole ? (size_t)(stop - p) : (size_t)(end - p), &(*calls)[*n])) break;
        (*n)++;
        if (!whole) break;
        p = stop;
        while (p < end && (is_ws(*p) || *p == ';')) p++;
    }
    return RT_OK;
}

rt_status_t chat_parse_tool_calls(chat_tmpl_t t, const char *text, size_t len, chat_parsed_call_t **calls,
                                  size_t *n, size_t *content_len) {
    *calls = NULL;
    *n = 0;
    *content_len = len;
    if (t == CHAT_TMPL_LLAMA3) {
        size_t cap = 0;
        if (parse_llama3(text, len, calls, n, &cap)) {
            chat_parsed_calls_free(*calls, *n);
            *calls = NULL;
            *n = 0;
            return rt_error_set(RT_ERR_NOMEM, "chat_parse_tool_calls: out of memory");
        }
        if (*n == 0) {
            free(*calls);
            *calls = NULL;
        } else
            *content_len = 0; /* the whole answer is the calls */
        return RT_OK;
    }
    const char *end = text + len, *open = find(text, end, CHAT_TOOL_CALL_OPEN);
    if (!open) return RT_OK;
    size_t cap = 0;
    for (const char *p = open; p; p = p ? find(p, end, CHAT_TOOL_CALL_OPEN) : NULL) {
        const char *body = p + strlen(CHAT_TOOL_CALL_OPEN);
        const char *close = find(body, end, CHAT_TOOL_CALL_CLOSE);
        const char *stop = close ? close : end;
        if (!grow(calls, *n, &cap)) {
            chat_parsed_calls_free(*calls, *n);
            *calls = NULL;
            *n = 0;
            return rt_error_set(RT_ERR_NOMEM, "chat_parse_tool_calls: out of memory");
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
