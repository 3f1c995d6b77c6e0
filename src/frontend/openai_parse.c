/*
 * openai_parse.c - request JSON -> oai_request_t, with a precise 400 for
 * every malformed, mistyped or out-of-range field.
 *
 * Each field has one small getter (number in a range, integer in a range,
 * boolean, string) that writes the error naming the field. A field that is
 * absent or JSON null takes its default, as OpenAI's and vLLM's servers do.
 */
#include "frontend/openai_parse.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request_error"

void oai_error_set(oai_error_t *e, int status, const char *type, const char *code,
                   const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

bool oai_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int need;
        unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f; /* no surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else
            return false;
        if (n - i <= (size_t)need) return false;
        for (int k = 1; k <= need; k++) {
            unsigned char b = s[i + (size_t)k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) return false;
        }
        i += (size_t)need + 1;
    }
    return true;
}

static const char *json_type_name(const cJSON *j) {
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "an unknown value";
}

/* The field, or NULL when absent or null. */
static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

static rt_status_t bad(oai_error_t *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rt_status_t bad(oai_error_t *e, const char *param, const char *fmt, ...) {
    char msg[sizeof e->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    oai_error_set(e, 400, INVALID, NULL, param, "%s", msg);
    return RT_ERR_INVALID;
}

/* A number in [lo, hi] (or (lo, hi] when lo_open). */
static rt_status_t get_number(const cJSON *o, const char *name, double lo, bool lo_open, double hi,
                              double *v, oai_error_t *e) {
    const cJSON *j = field(o, name);
    if (!j) return RT_OK;
    if (!cJSON_IsNumber(j))
        return bad(e, name, "'%s' must be a number, not %s", name, json_type_name(j));
    double x = j->valuedouble;
    if (!isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo))
        return bad(e, name, "'%s' must be %s %g and at most %g, got %g", name,
                   lo_open ? "greater than" : "at least", lo, hi, x);
    *v = x;
    return RT_OK;
}

/* An integer in [lo, hi]. */
static rt_status_t get_int(const cJSON *o, const char *name, double lo, double hi, int64_t *v,
                           oai_error_t *e) {
    const cJSON *j = field(o, name);
    if (!j) return RT_OK;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || !isfinite(j->valuedouble))
        return bad(e, name, "'%s' must be an integer, not %s", name,
                   cJSON_IsNumber(j) ? "a fractional number" : json_type_name(j));
    double x = j->valuedouble;
    if (x < lo || x > hi)
        return bad(e, name, "'%s' must be between %.0f and %.0f, got %.0f", name, lo, hi, x);
    *v = (int64_t)x;
    return RT_OK;
}

static rt_status_t get_bool(const cJSON *o, const char *name, bool *v, oai_error_t *e) {
    const cJSON *j = field(o, name);
    if (!j) return RT_OK;
    if (!cJSON_IsBool(j))
        return bad(e, name, "'%s' must be a boolean, not %s", name, json_type_name(j));
    *v = cJSON_IsTrue(j);
    return RT_OK;
}

/* A copy of a JSON string that must be valid UTF-8. */
static rt_status_t dup_string(const cJSON *j, const char *param, char **out, oai_error_t *e) {
    size_t n = strlen(j->valuestring);
    if (!oai_utf8_valid(j->valuestring, n)) return bad(e, param, "'%s' is not valid UTF-8", param);
    char *s = malloc(n + 1);
    if (!s) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    memcpy(s, j->valuestring, n + 1);
    *out = s;
    return RT_OK;
}

/* A token id array (non-empty, integers in [0, INT32_MAX]). */
static rt_status_t get_ids(const cJSON *arr, const char *param, size_t max, int32_t **ids,
                           size_t *n, oai_error_t *e) {
    size_t k = (size_t)cJSON_GetArraySize(arr);
    if (k > max)
        return bad(e, param, "'%s' has %zu entries; at most %zu are allowed", param, k, max);
    int32_t *r = malloc((k ? k : 1) * sizeof *r);
    if (!r) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        double x = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        if (!cJSON_IsNumber(it) || x != floor(x) || x < 0 || x > 2147483647.0) {
            free(r);
            return bad(e, param, "'%s' must hold token ids (integers >= 0); entry %zu is %s", param,
                       i, cJSON_IsNumber(it) ? "out of range" : json_type_name(it));
        }
        r[i++] = (int32_t)x;
    }
    *ids = r;
    *n = k;
    return RT_OK;
}

static rt_status_t parse_stop_ids(const cJSON *o, oai_request_t *r, oai_error_t *e) {
    const cJSON *ids = field(o, "stop_token_ids");
    if (!ids) return RT_OK;
    if (!cJSON_IsArray(ids))
        return bad(e, "stop_token_ids", "'stop_token_ids' must be an array of integers, not %s",
                   json_type_name(ids));
    return get_ids(ids, "stop_token_ids", OAI_MAX_STOP_IDS, &r->stop_token_ids,
                   &r->n_stop_token_ids, e);
}

/* OpenAI's logit_bias: {"token id": bias in [-100, 100], ...}. */
static rt_status_t parse_logit_bias(const cJSON *o, oai_request_t *r, oai_error_t *e) {
    const cJSON *j = field(o, "logit_bias");
    if (!j) return RT_OK;
    if (!cJSON_IsObject(j))
        return bad(e, "logit_bias", "'logit_bias' must be an object mapping token ids to biases, not %s",
                   json_type_name(j));
    size_t k = (size_t)cJSON_GetArraySize(j);
    if (k > OAI_MAX_LOGIT_BIAS)
        return bad(e, "logit_bias", "'logit_bias' has %zu entries; at most %d are allowed", k, OAI_MAX_LOGIT_BIAS);
    if (k == 0) return RT_OK;
    r->logit_bias_ids = malloc(k * sizeof *r->logit_bias_ids);
    r->logit_bias = malloc(k * sizeof *r->logit_bias);
    if (!r->logit_bias_ids || !r->logit_bias) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        char *end = NULL;
        errno = 0;
        long id = strtol(it->string, &end, 10);
        if (!it->string[0] || *end || errno || id < 0 || id > INT32_MAX)
            return bad(e, "logit_bias", "'logit_bias' keys must be token ids (integers >= 0), not \"%s\"",
                       oai_utf8_valid(it->string, strlen(it->string)) && strlen(it->string) < 64
                           ? it->string
                           : "?");
        if (!cJSON_IsNumber(it) || !(it->valuedouble >= -100.0 && it->valuedouble <= 100.0))
            return bad(e, "logit_bias", "'logit_bias' values must be numbers from -100 to 100 (token %ld)", id);
        r->logit_bias_ids[r->n_logit_bias] = (int32_t)id;
        r->logit_bias[r->n_logit_bias++] = (float)it->valuedouble;
    }
    return RT_OK;
}

static rt_status_t parse_stop(const cJSON *o, oai_request_t *r, oai_error_t *e) {
    rt_status_t st = parse_stop_ids(o, r, e);
    const cJSON *j = field(o, "stop");
    if (st || !j) return st;
    size_t k;
    if (cJSON_IsString(j))
        k = 1;
    else if (cJSON_IsArray(j))
        k = (size_t)cJSON_GetArraySize(j);
    else
        return bad(e, "stop", "'stop' must be a string or an array of strings, not %s",
                   json_type_name(j));
    if (k > OAI_MAX_STOPS)
        return bad(e, "stop", "'stop' has %zu strings; at most %d are allowed", k, OAI_MAX_STOPS);
    r->stops = calloc(k ? k : 1, sizeof *r->stops);
    if (!r->stops) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    const cJSON *it = cJSON_IsString(j) ? j : j->child;
    for (size_t i = 0; i < k; i++, it = it->next) {
        if (!cJSON_IsString(it))
            return bad(e, "stop", "'stop' must be a string or an array of strings; entry %zu is %s",
                       i, json_type_name(it));
        size_t l = strlen(it->valuestring);
        if (l > OAI_MAX_STOP_LEN)
            return bad(e, "stop", "stop strings may be at most %d bytes; entry %zu has %zu",
                       OAI_MAX_STOP_LEN, i, l);
        if (l == 0) continue; /* an empty stop would end every generation at once: ignored */
        if ((st = dup_string(it, "stop", &r->stops[r->n_stops], e))) return st;
        r->n_stops++;
    }
    return RT_OK;
}

/* Text of a message's content: a string, null (""), or an array of
 * {"type": "text", "text": ...} parts joined with "\n" (as vLLM does). */
static rt_status_t parse_content(const cJSON *c, size_t idx, char **out, oai_error_t *e) {
    char param[48];
    snprintf(param, sizeof param, "messages[%zu].content", idx);
    if (!c || cJSON_IsNull(c)) {
        *out = calloc(1, 1);
        if (*out) return RT_OK;
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    if (cJSON_IsString(c)) return dup_string(c, param, out, e);
    if (!cJSON_IsArray(c))
        return bad(e, param, "'%s' must be a string or an array of content parts, not %s", param,
                   json_type_name(c));
    size_t total = 1;
    const cJSON *p;
    size_t k = 0;
    cJSON_ArrayForEach(p, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type))
            return bad(e, param, "'%s[%zu]' must be an object with a 'type'", param, k);
        if (strcmp(type->valuestring, "text") != 0)
            return bad(e, param, "content part type '%s' is not supported (only 'text')",
                       oai_utf8_valid(type->valuestring, strlen(type->valuestring)) &&
                               strlen(type->valuestring) < 64
                           ? type->valuestring
                           : "?");
        if (!cJSON_IsString(text))
            return bad(e, param, "'%s[%zu].text' must be a string", param, k);
        if (!oai_utf8_valid(text->valuestring, strlen(text->valuestring)))
            return bad(e, param, "'%s[%zu].text' is not valid UTF-8", param, k);
        total += strlen(text->valuestring) + 1;
        k++;
    }
    char *s = malloc(total);
    if (!s) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    size_t at = 0;
    cJSON_ArrayForEach(p, c) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        if (at) s[at++] = '\n';
        size_t l = strlen(t);
        memcpy(s + at, t, l);
        at += l;
    }
    s[at] = '\0';
    *out = s;
    return RT_OK;
}

/* tools: [{"type": "function", "function": {"name", "description"?,
 * "parameters"?}}], each kept as compact JSON in *defs (n). */
static rt_status_t parse_tool_defs(const cJSON *o, char ***defs, size_t *n, oai_error_t *e) {
    const cJSON *tools = field(o, "tools");
    if (!tools) return RT_OK;
    if (!cJSON_IsArray(tools)) return bad(e, "tools", "'tools' must be an array, not %s", json_type_name(tools));
    size_t k = (size_t)cJSON_GetArraySize(tools);
    if (k > OAI_MAX_TOOLS) return bad(e, "tools", "'tools' has %zu entries; at most %d", k, OAI_MAX_TOOLS);
    *defs = calloc(k ? k : 1, sizeof **defs);
    if (!*defs) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 ||
            !cJSON_IsObject(fn) || !cJSON_IsString(name) || !name->valuestring[0] || (params && !cJSON_IsObject(params)))
            return bad(e, "tools", "'tools[%zu]' must be {\"type\": \"function\", \"function\": {\"name\": "
                       "non-empty string, \"parameters\": JSON Schema object}}", *n);
        char *str = cJSON_PrintUnformatted(t);
        if (!str || !oai_utf8_valid(str, strlen(str))) {
            cJSON_free(str);
            if (!str) oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
            return str ? bad(e, "tools", "'tools[%zu]' is not valid UTF-8", *n) : RT_ERR_NOMEM;
        }
        (*defs)[(*n)++] = str;
    }
    return RT_OK;
}

/* tools (parse_tool_defs), tool_choice: "auto", "none", "required" or
 * {"type": "function", "function": {"name"}} naming one of them;
 * parallel_tool_calls. */
static rt_status_t parse_tools(const cJSON *o, oai_request_t *r, oai_error_t *e) {
    r->parallel_tool_calls = true;
    rt_status_t st = get_bool(o, "parallel_tool_calls", &r->parallel_tool_calls, e);
    if (!st) st = parse_tool_defs(o, &r->tools, &r->n_tools, e);
    if (st) return st;
    const cJSON *tc = field(o, "tool_choice");
    if (!tc) {
        r->tool_choice = r->n_tools ? OAI_TOOLS_AUTO : OAI_TOOLS_NONE;
        return RT_OK;
    }
    if (cJSON_IsString(tc) && strcmp(tc->valuestring, "auto") == 0)
        r->tool_choice = OAI_TOOLS_AUTO;
    else if (cJSON_IsString(tc) && strcmp(tc->valuestring, "none") == 0)
        r->tool_choice = OAI_TOOLS_NONE;
    else if (cJSON_IsString(tc) && strcmp(tc->valuestring, "required") == 0)
        r->tool_choice = OAI_TOOLS_REQUIRED;
    else if (cJSON_IsObject(tc)) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tc, "function"), "name");
        if (!cJSON_IsString(name))
            return bad(e, "tool_choice", "'tool_choice' must name a function: {\"type\": \"function\", "
                       "\"function\": {\"name\": ...}}");
        bool known = false; /* among the tools just parsed */
        const cJSON *t;
        cJSON_ArrayForEach(t, field(o, "tools")) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
            known |= strcmp(n->valuestring, name->valuestring) == 0;
        }
        if (!known) return bad(e, "tool_choice", "'tool_choice' names a function that is not in 'tools'");
        r->tool_choice = OAI_TOOLS_NAMED;
        if ((st = dup_string(name, "tool_choice", &r->tool_choice_name, e))) return st;
    } else
        return bad(e, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or name a function");
    if (r->tool_choice != OAI_TOOLS_NONE && r->n_tools == 0)
        return bad(e, "tool_choice", "'tool_choice' needs 'tools'");
    return RT_OK;
}

/* An assistant message's tool_calls: [{"id", "type": "function",
 * "function": {"name", "arguments": JSON text}}]. */
static rt_status_t parse_tool_calls(const cJSON *calls, size_t idx, chat_msg_t *m, oai_error_t *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].tool_calls", idx);
    if (!cJSON_IsArray(calls)) return bad(e, param, "'%s' must be an array, not %s", param, json_type_name(calls));
    size_t k = (size_t)cJSON_GetArraySize(calls);
    if (k == 0) return RT_OK;
    if (k > OAI_MAX_TOOLS) return bad(e, param, "'%s' has %zu calls; at most %d", param, k, OAI_MAX_TOOLS);
    chat_tool_call_t *tc = calloc(k, sizeof *tc);
    if (!tc) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    m->tool_calls = tc;
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsObject(c) || !cJSON_IsObject(fn) || !cJSON_IsString(name) ||
            !(cJSON_IsString(args) || cJSON_IsObject(args)))
            return bad(e, param, "'%s[%zu]' must be {\"type\": \"function\", \"function\": {\"name\": string, "
                       "\"arguments\": JSON string}}", param, m->n_tool_calls);
        if (!oai_utf8_valid(name->valuestring, strlen(name->valuestring)))
            return bad(e, param, "'%s[%zu].function.name' is not valid UTF-8", param, m->n_tool_calls);
        if (cJSON_IsString(args) && !oai_utf8_valid(args->valuestring, strlen(args->valuestring)))
            return bad(e, param, "'%s[%zu].function.arguments' is not valid UTF-8", param, m->n_tool_calls);
        chat_tool_call_t *t = &tc[m->n_tool_calls];
        t->name = strdup(name->valuestring);
        t->arguments = cJSON_IsString(args) ? strdup(args->valuestring) : cJSON_PrintUnformatted(args);
        if (!t->name || !t->arguments) {
            free((char *)t->name);
            free((char *)t->arguments);
            t->name = t->arguments = NULL;
            oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
            return RT_ERR_NOMEM;
        }
        m->n_tool_calls++;
    }
    return RT_OK;
}

/* The chat messages of body o into *msgs (n_msgs); on failure what was
 * parsed so far is left there for the caller's free_msgs. */
static rt_status_t parse_messages(const cJSON *o, chat_msg_t **msgs, size_t *n_msgs,
                                  oai_error_t *e) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!m || cJSON_IsNull(m)) return bad(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(m))
        return bad(e, "messages", "'messages' must be an array, not %s", json_type_name(m));
    size_t k = (size_t)cJSON_GetArraySize(m);
    if (k == 0) return bad(e, "messages", "'messages' must hold at least one message");
    *msgs = calloc(k, sizeof **msgs);
    if (!*msgs) {
        oai_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return RT_ERR_NOMEM;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, m) {
        size_t i = *n_msgs;
        char param[48];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!cJSON_IsObject(it))
            return bad(e, param, "'%s' must be an object, not %s", param, json_type_name(it));
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!cJSON_IsString(role))
            return bad(e, param, "'%s' must be a string, not %s", param,
                       role ? json_type_name(role) : "missing");
        const char *rs = role->valuestring;
        const char *canon;
        if (strcmp(rs, "system") == 0 || strcmp(rs, "developer") == 0)
            canon = "system";
        else if (strcmp(rs, "user") == 0)
            canon = "user";
        else if (strcmp(rs, "assistant") == 0)
            canon = "assistant";
        else if (strcmp(rs, "tool") == 0)
            canon = "tool";
        else
            return bad(e, param, "role '%s' is not supported (system, developer, user, assistant, tool)",
                       oai_utf8_valid(rs, strlen(rs)) && strlen(rs) < 64 ? rs : "?");
        char *content = NULL;
        rt_status_t st =
            parse_content(cJSON_GetObjectItemCaseSensitive(it, "content"), i, &content, e);
        if (st) return st;
        (*msgs)[i].role = canon;
        (*msgs)[i].content = content;
        (*n_msgs)++;
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(it, "tool_calls");
        if (calls && !cJSON_IsNull(calls)) {
            if (strcmp(canon, "assistant") != 0)
                return bad(e, "messages", "'messages[%zu].tool_calls' is only for assistant messages", i);
            if ((st = parse_tool_calls(calls, i, &(*msgs)[i], e))) return st;
        }
    }
    return RT_OK;
}

static rt_status_t parse_prompt(const cJSON *o, oai_request_t *r, oai_error_t *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (!p || cJSON_IsNull(p)) return bad(e, "prompt", "'prompt' is required");
    if (cJSON_IsString(p)) return dup_string(p, "prompt", &r->prompt, e);
    if (!cJSON_IsArray(p))
        return bad(
            e, "prompt",
            "'prompt' must be a string, an array of token ids or an array of one string, not %s",
            json_type_name(p));
    int k = cJSON_GetArraySize(p);
    if (k == 0) return bad(e, "prompt", "'prompt' must not be empty");
    const cJSON *first = p->child;
    if (cJSON_IsString(first) || cJSON_IsArray(first)) {
        if (k != 1)
            return bad(e, "prompt",
                       "batched prompts (%d) are not supported; send one prompt per request", k);
        if (cJSON_IsString(first)) return dup_string(first, "prompt", &r->prompt, e);
        if (cJSON_GetArraySize(first) == 0) return bad(e, "prompt", "'prompt' must not be empty");
        return get_ids(first, "prompt", (size_t)1 << 24, &r->prompt_ids, &r->n_prompt_ids, e);
    }
    return get_ids(p, "prompt", (size_t)1 << 24, &r->prompt_ids, &r->n_prompt_ids, e);
}

/* Fields that ask for something rotor does not do: refused, not ignored. */
static rt_status_t refuse_unsupported(const cJSON *o, oai_kind_t kind, oai_error_t *e) {
    const cJSON *j;
    if (kind == OAI_COMPLETION && (j = field(o, "tools")) && !(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 0))
        return bad(e, "tools", "tools need the chat completions endpoint");
    if ((j = field(o, "functions")) && !(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 0))
        return bad(e, "functions", "the deprecated 'functions' is not supported; use 'tools'");
    if (kind == OAI_COMPLETION) {
        if ((j = field(o, "suffix")) && !(cJSON_IsString(j) && !j->valuestring[0]))
            return bad(e, "suffix", "'suffix' is not supported");
    }
    if ((j = field(o, "best_of"))) {
        const cJSON *n = field(o, "n");
        double nv = n && cJSON_IsNumber(n) ? n->valuedouble : 1;
        if (!cJSON_IsNumber(j) || j->valuedouble != nv)
            return bad(e, "best_of", "'best_of' is not supported (only best_of == n)");
    }
    return RT_OK;
}

static rt_status_t parse_logprobs(const cJSON *o, oai_kind_t kind, oai_request_t *r,
                                  oai_error_t *e) {
    rt_status_t st;
    if (kind == OAI_CHAT) {
        if ((st = get_bool(o, "logprobs", &r->logprobs, e))) return st;
        int64_t top = -1;
        if ((st = get_int(o, "top_logprobs", 0, OAI_MAX_TOP_LOGPROBS, &top, e))) return st;
        if (top >= 0 && !r->logprobs)
            return bad(e, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
        r->top_logprobs = top > 0 ? (int)top : 0;
        return RT_OK;
    }
    const cJSON *j = field(o, "logprobs");
    if (!j) return RT_OK;
    if (cJSON_IsBool(j)) /* tolerated: false = none, true = the sampled token only */
        r->logprobs = cJSON_IsTrue(j);
    else {
        int64_t lp = 0;
        if ((st = get_int(o, "logprobs", 0, OAI_MAX_LEGACY_LOGPROBS, &lp, e))) return st;
        r->logprobs = true;
        r->top_logprobs = (int)lp;
    }
    return RT_OK;
}

static rt_status_t parse_sampling(const cJSON *o, const oai_defaults_t *d, oai_request_t *r,
                                  oai_error_t *e) {
    rt_status_t st;
    sampler_params_t *sp = &r->sampling;
    *sp = sampler_params_default();
    sp->temperature = d->temperature;
    sp->top_k = d->top_k;
    sp->top_p = d->top_p;
    sp->min_p = d->min_p;
    /* OpenAI's penalties apply to the whole generated text. */
    sp->penalty_last_n = -1;
    double x;
    int64_t i;

    x = sp->temperature;
    if ((st = get_number(o, "temperature", 0, false, 2, &x, e))) return st;
    sp->temperature = (float)x;
    x = sp->top_p;
    if ((st = get_number(o, "top_p", 0, true, 1, &x, e))) return st;
    sp->top_p = (float)x;
    x = sp->min_p;
    if ((st = get_number(o, "min_p", 0, false, 1, &x, e))) return st;
    sp->min_p = (float)x;
    i = sp->top_k;
    if ((st = get_int(o, "top_k", -1, 1e9, &i, e))) return st;
    sp->top_k = i < 0 ? 0 : (int32_t)i;
    x = 0;
    if ((st = get_number(o, "presence_penalty", -2, false, 2, &x, e))) return st;
    sp->presence_penalty = (float)x;
    x = 0;
    if ((st = get_number(o, "frequency_penalty", -2, false, 2, &x, e))) return st;
    sp->frequency_penalty = (float)x;
    x = 1;
    if ((st = get_number(o, "repetition_penalty", 0, true, 2, &x, e))) return st;
    sp->repetition_penalty = (float)x;
    const cJSON *seed = field(o, "seed");
    if (seed) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble != floor(seed->valuedouble) ||
            fabs(seed->valuedouble) > 9.2e18)
            return bad(e, "seed", "'seed' must be an integer, not %s",
                       cJSON_IsNumber(seed) ? "a fractional or huge number" : json_type_name(seed));
        sp->seed = (uint64_t)(int64_t)seed->valuedouble;
        r->has_seed = true;
    }
    return RT_OK;
}

/* response_format: {"type": "text"} (the default) or {"type":
 * "json_object"} (the output is constrained to a JSON object); json_schema
 * is refused, not taken as json_object, since the schema would not hold. */
static rt_status_t parse_response_format(const cJSON *o, oai_request_t *r, oai_error_t *e) {
    const cJSON *j = field(o, "response_format");
    if (!j) return RT_OK;
    const cJSON *t = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
    if (!cJSON_IsString(t))
        return bad(e, "response_format", "'response_format' must be {\"type\": \"text\"} or {\"type\": \"json_object\"}");
    if (!strcmp(t->valuestring, "text")) return RT_OK;
    if (!strcmp(t->valuestring, "json_object")) {
        if (r->n_tools && r->tool_choice != OAI_TOOLS_NONE)
            return bad(e, "response_format", "'response_format' json_object cannot be combined with tools");
        r->json_object = true;
        return RT_OK;
    }
    if (!strcmp(t->valuestring, "json_schema"))
        return bad(e, "response_format", "'response_format' json_schema is not supported yet; json_object "
                   "(any JSON object) is");
    return bad(e, "response_format", "'response_format' type must be \"text\" or \"json_object\"");
}

static rt_status_t parse_fields(const cJSON *o, oai_kind_t kind, const oai_defaults_t *d,
                                oai_request_t *r, oai_error_t *e) {
    rt_status_t st;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (!model || cJSON_IsNull(model)) return bad(e, "model", "'model' is required");
    if (!cJSON_IsString(model))
        return bad(e, "model", "'model' must be a string, not %s", json_type_name(model));
    if ((st = dup_string(model, "model", &r->model, e))) return st;

    if ((st = refuse_unsupported(o, kind, e))) return st;
    if (kind == OAI_CHAT) {
        if ((st = parse_messages(o, &r->msgs, &r->n_msgs, e))) return st;
        r->add_generation_prompt = true;
        if ((st = get_bool(o, "add_generation_prompt", &r->add_generation_prompt, e))) return st;
        if ((st = parse_tools(o, r, e))) return st;
    } else if ((st = parse_prompt(o, r, e)))
        return st;
    if ((st = parse_response_format(o, r, e))) return st;

    /* max_completion_tokens wins over the older max_tokens (as in vLLM) */
    int64_t mt = 0, mct = 0;
    if ((st = get_int(o, "max_tokens", 1, 1e9, &mt, e))) return st;
    if ((st = get_int(o, "max_completion_tokens", 1, 1e9, &mct, e))) return st;
    r->max_tokens = (int)(mct ? mct : mt);
    int64_t mint = 0; /* vLLM's min_tokens */
    if ((st = get_int(o, "min_tokens", 0, 1e9, &mint, e))) return st;
    if (r->max_tokens && mint > r->max_tokens)
        return bad(e, "min_tokens", "'min_tokens' (%lld) must not exceed 'max_tokens' (%d)", (long long)mint,
                   r->max_tokens);
    r->min_tokens = (int)mint;

    if ((st = parse_sampling(o, d, r, e))) return st;
    if ((st = parse_stop(o, r, e))) return st;
    if ((st = parse_logit_bias(o, r, e))) return st;
    int64_t n = 1;
    if ((st = get_int(o, "n", 1, OAI_MAX_N, &n, e))) return st;
    r->n = (int)n;
    if ((st = parse_logprobs(o, kind, r, e))) return st;
    if ((st = get_bool(o, "ignore_eos", &r->ignore_eos, e))) return st;
    r->skip_special_tokens = true;
    if ((st = get_bool(o, "skip_special_tokens", &r->skip_special_tokens, e))) return st;
    if ((st = get_bool(o, "stream", &r->stream, e))) return st;
    if (kind == OAI_COMPLETION && (st = get_bool(o, "echo", &r->echo, e))) return st;
    const cJSON *so = field(o, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return bad(e, "stream_options", "'stream_options' must be an object, not %s",
                       json_type_name(so));
        if (!r->stream)
            return bad(e, "stream_options",
                       "'stream_options' is only allowed when 'stream' is true");
        if ((st = get_bool(so, "include_usage", &r->include_usage, e))) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            return st;
        }
    }
    const cJSON *user = field(o, "user");
    if (user && !cJSON_IsString(user))
        return bad(e, "user", "'user' must be a string, not %s", json_type_name(user));
    return RT_OK;
}

/* The request body as a JSON object (*o, the caller's to delete), or a 400. */
static rt_status_t parse_body(const char *body, size_t len, cJSON **out, oai_error_t *err) {
    *out = NULL;
    if (len == 0) {
        oai_error_set(err, 400, INVALID, NULL, NULL,
                      "the request body is empty; expected a JSON object");
        return RT_ERR_INVALID;
    }
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!o) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        oai_error_set(err, 400, INVALID, NULL, NULL,
                      "the request body is not valid JSON (error near byte %zu)", at);
        return RT_ERR_INVALID;
    }
    /* only whitespace may follow the object */
    for (const char *p = end; p && p < body + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(o);
            oai_error_set(err, 400, INVALID, NULL, NULL,
                          "the request body is not valid JSON (unexpected data at byte %zu)",
                          (size_t)(p - body));
            return RT_ERR_INVALID;
        }
    if (!cJSON_IsObject(o)) {
        oai_error_set(err, 400, INVALID, NULL, NULL,
                      "the request body must be a JSON object, not %s", json_type_name(o));
        cJSON_Delete(o);
        return RT_ERR_INVALID;
    }
    *out = o;
    return RT_OK;
}

rt_status_t oai_parse(oai_kind_t kind, const char *body, size_t len, const oai_defaults_t *d,
                      oai_request_t *out, oai_error_t *err) {
    memset(out, 0, sizeof *out);
    cJSON *o;
    rt_status_t st = parse_body(body, len, &o, err);
    if (st) return st;
    oai_request_t r = {.kind = kind};
    st = parse_fields(o, kind, d, &r, err);
    if (st)
        oai_request_free(&r);
    else
        *out = r;
    cJSON_Delete(o);
    return st;
}

static void free_msgs(chat_msg_t *msgs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free((char *)msgs[i].content);
        for (size_t k = 0; k < msgs[i].n_tool_calls; k++) {
            free((char *)msgs[i].tool_calls[k].name);
            free((char *)msgs[i].tool_calls[k].arguments);
        }
        free((void *)msgs[i].tool_calls);
    }
    free(msgs);
}

void oai_request_free(oai_request_t *r) {
    if (!r) return;
    free(r->model);
    for (size_t i = 0; i < r->n_tools; i++)
        cJSON_free(r->tools[i]);
    free(r->tools);
    free(r->tool_choice_name);
    free(r->tool_prefix);
    free_msgs(r->msgs, r->n_msgs);
    free(r->prompt);
    free(r->prompt_ids);
    if (r->stops)
        for (size_t i = 0; i < r->n_stops; i++)
            free(r->stops[i]);
    free(r->stops);
    free(r->stop_token_ids);
    free(r->logit_bias_ids);
    free(r->logit_bias);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------- /tokenize and /detokenize */

/* 'model' is optional here (vLLM): NULL when absent or null. */
static rt_status_t parse_optional_model(const cJSON *o, char **model, oai_error_t *e) {
    const cJSON *j = field(o, "model");
    if (!j) return RT_OK;
    if (!cJSON_IsString(j))
        return bad(e, "model", "'model' must be a string, not %s", json_type_name(j));
    return dup_string(j, "model", model, e);
}

static rt_status_t parse_tokenize_fields(const cJSON *o, oai_tokenize_t *t, oai_error_t *e) {
    rt_status_t st;
    if ((st = parse_optional_model(o, &t->model, e))) return st;
    const cJSON *prompt = field(o, "prompt");
    const cJSON *msgs = field(o, "messages");
    if (prompt && msgs) return bad(e, "messages", "give either 'prompt' or 'messages', not both");
    if (!prompt && !msgs) return bad(e, "prompt", "'prompt' (text) or 'messages' is required");
    if (prompt) {
        if (!cJSON_IsString(prompt))
            return bad(e, "prompt", "'prompt' must be a string, not %s", json_type_name(prompt));
        if ((st = dup_string(prompt, "prompt", &t->prompt, e))) return st;
        t->add_special_tokens = true;
    } else {
        const cJSON *j;
        if ((st = parse_tool_defs(o, &t->tools, &t->n_tools, e))) return st;
        if ((j = field(o, "chat_template")))
            return bad(e, "chat_template",
                       "'chat_template' is not supported: the model's template is used "
                       "(model:chat_template)");
        bool cont = false;
        if ((st = get_bool(o, "continue_final_message", &cont, e))) return st;
        if (cont)
            return bad(e, "continue_final_message", "'continue_final_message' is not supported");
        if ((st = parse_messages(o, &t->msgs, &t->n_msgs, e))) return st;
        t->add_generation_prompt = true;
        if ((st = get_bool(o, "add_generation_prompt", &t->add_generation_prompt, e))) return st;
        t->add_special_tokens = false;
    }
    if ((st = get_bool(o, "add_special_tokens", &t->add_special_tokens, e))) return st;
    return get_bool(o, "return_token_strs", &t->return_token_strs, e);
}

rt_status_t oai_parse_tokenize(const char *body, size_t len, oai_tokenize_t *out,
                               oai_error_t *err) {
    memset(out, 0, sizeof *out);
    cJSON *o;
    rt_status_t st = parse_body(body, len, &o, err);
    if (st) return st;
    oai_tokenize_t t = {0};
    st = parse_tokenize_fields(o, &t, err);
    if (st)
        oai_tokenize_free(&t);
    else
        *out = t;
    cJSON_Delete(o);
    return st;
}

void oai_tokenize_free(oai_tokenize_t *t) {
    if (!t) return;
    free(t->model);
    for (size_t i = 0; i < t->n_tools; i++)
        cJSON_free(t->tools[i]);
    free(t->tools);
    free(t->prompt);
    free_msgs(t->msgs, t->n_msgs);
    memset(t, 0, sizeof *t);
}

rt_status_t oai_parse_detokenize(const char *body, size_t len, oai_detokenize_t *out,
                                 oai_error_t *err) {
    memset(out, 0, sizeof *out);
    cJSON *o;
    rt_status_t st = parse_body(body, len, &o, err);
    if (st) return st;
    oai_detokenize_t t = {0};
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    if ((st = parse_optional_model(o, &t.model, err))) goto done;
    if (!tokens || cJSON_IsNull(tokens)) {
        st = bad(err, "tokens", "'tokens' is required");
    } else if (!cJSON_IsArray(tokens)) {
        st = bad(err, "tokens", "'tokens' must be an array of token ids, not %s",
                 json_type_name(tokens));
    } else {
        st = get_ids(tokens, "tokens", (size_t)1 << 24, &t.tokens, &t.n_tokens, err);
    }
done:
    if (st)
        oai_detokenize_free(&t);
    else
        *out = t;
    cJSON_Delete(o);
    return st;
}

void oai_detokenize_free(oai_detokenize_t *t) {
    if (!t) return;
    free(t->model);
    free(t->tokens);
    memset(t, 0, sizeof *t);
}
