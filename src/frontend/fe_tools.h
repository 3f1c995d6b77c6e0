/*
 * fe_tools.h - tool calls in chat completions (fe_tools.c).
 */
#ifndef ROTOR_FRONTEND_FE_TOOLS_H
#define ROTOR_FRONTEND_FE_TOOLS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "frontend/fe_request.h"

/* The request is a chat with tools and tool_choice not "none". */
bool fe_tools_on(const fe_req_t *r);
/* With tools: a forced call's opening (o.tool_prefix) leads each choice's
 * text; streaming, each choice's matcher for the opening of a call (none
 * when the prompt forced one: the answer is a call from the start). */
rt_status_t fe_tools_init(fe_req_t *r);
/* Streaming: what of a content delta in[0..n) may go out now (into out,
 * cap bytes, NUL-terminated), holding back what may begin a call; nothing
 * once a call began. Returns its length. */
size_t fe_tools_filter(fe_choice_t *c, const char *in, size_t n, char *out, size_t cap);
/* Streaming, at the end: the content held back (no call began). */
size_t fe_tools_flush(fe_choice_t *c, char *out, size_t cap);
/* The choice's calls (a cJSON array, taken by the caller; NULL when none)
 * and its content before them (malloc'd; NULL when empty), from its text.
 * with_index: the stream delta form. false when out of memory. */
bool fe_tools_result(const fe_req_t *r, const fe_choice_t *c, int index, bool with_index, cJSON **calls,
                     char **content);

#endif
