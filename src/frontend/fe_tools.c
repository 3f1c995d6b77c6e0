/*
 * fe_tools.c - tool calls in chat completions (OpenAI's tools, tool_choice):
 * a choice's text (after the forced opening of a call, when tool_choice
 * required one) parsed for Hermes-style <tool_call> blocks
 * (chat_parse_tool_calls) into message.tool_calls, finish_reason
 * "tool_calls"; streaming, the content goes out until a call begins and the
 * calls come as one delta at the end.
 *
 * Ownership: the matchers belong to their choices (fe_req_destroy frees
 * them); the cJSON values returned are the caller's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe_server_impl.h"
#include "frontend/fe_tools.h"

bool fe_tools_on(const fe_req_t *r) { return r->oai.kind == OAI_CHAT && r->oai.tool_choice != OAI_TOOLS_NONE; }

rt_status_t fe_tools_init(fe_req_t *r) {
    if (!fe_tools_on(r)) return RT_OK;
    static const char *const open[1] = {CHAT_TOOL_CALL_OPEN};
    const bool hermes = r->fe->model.chat_template == CHAT_TMPL_CHATML;
    const char *lead = r->oai.tool_prefix;
    for (int i = 0; i < r->n_choices; i++) {
        fe_choice_t *c = &r->choices[i];
        if (lead && !fe_choice_lead(c, lead, strlen(lead))) return RT_ERR_NOMEM;
        c->in_tool = lead != NULL; /* the answer is a call from its first token */
        if (r->oai.stream && !c->in_tool && hermes && stop_matcher_create(open, 1, &c->tool_open))
            return RT_ERR_NOMEM;
    }
    return RT_OK;
}

/* Llama 3: a call is the whole answer, so its first visible character
 * decides: '{' or '<' (<|python_tag|>) holds it and the rest back,
 * anything else streams as content from then on. Whitespace before it goes
 * out as content. */
static size_t filter_llama3(fe_choice_t *c, const char *in, size_t n, char *out, size_t cap) {
    size_t i = 0;
    if (!c->tool_decided) {
        while (i < n && (in[i] == ' ' || in[i] == '\n' || in[i] == '\t' || in[i] == '\r')) i++;
        if (i < n) {
            c->tool_decided = true;
            if (in[i] == '{' || in[i] == '<') {
                c->in_tool = true;
                n = i; /* the whitespace before it only */
            }
        }
    }
    if (n >= cap) n = cap - 1;
    memcpy(out, in, n);
    out[n] = '\0';
    return n;
}

size_t fe_tools_filter(fe_choice_t *c, const char *in, size_t n, char *out, size_t cap) {
    if (c->in_tool) return 0;
    if (!c->tool_open) return filter_llama3(c, in, n, out, cap);
    size_t len = 0;
    if (stop_matcher_push(c->tool_open, in, n, out, cap, &len)) c->in_tool = true;
    return len;
}

size_t fe_tools_flush(fe_choice_t *c, char *out, size_t cap) {
    if (c->in_tool || !c->tool_open) return 0;
    return stop_matcher_flush(c->tool_open, out, cap);
}

bool fe_tools_result(const fe_req_t *r, const fe_choice_t *c, int index, bool with_index, cJSON **calls_out,
                     char **content_out) {
    *calls_out = NULL;
    *content_out = NULL;
    size_t content_len = 0, n = 0;
    chat_parsed_call_t *calls = NULL;
    const char *text = c->text ? c->text : ""; /* a forced call's opening leads it */
    if (chat_parse_tool_calls(r->fe->model.chat_template, text, c->text_len, &calls, &n, &content_len)) return false;
    bool ok = true;
    if (n) {
        char base[64];
        snprintf(base, sizeof base, "%.40s%d", r->id + (strncmp(r->id, "chatcmpl-", 9) == 0 ? 9 : 0), index);
        /* parallel_tool_calls false: the first call only */
        *calls_out = oai_tool_calls(calls, r->oai.parallel_tool_calls ? n : 1, base, with_index);
        ok = *calls_out != NULL;
        if (ok && content_len && !(*content_out = strndup(text, content_len))) ok = false;
    }
    chat_parsed_calls_free(calls, n);
    return ok;
}
