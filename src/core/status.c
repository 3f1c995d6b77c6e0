/*
 * status.c - status names and the thread-local error message.
 */
#include "rotor/status.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char rt_error_buf[512];

const char *rt_status_str(rt_status_t st)
{
    switch (st) {
    case RT_OK: return "RT_OK";
    case RT_ERR_INVALID: return "RT_ERR_INVALID";
    case RT_ERR_NOMEM: return "RT_ERR_NOMEM";
    case RT_ERR_IO: return "RT_ERR_IO";
    case RT_ERR_FORMAT: return "RT_ERR_FORMAT";
    case RT_ERR_UNSUPPORTED: return "RT_ERR_UNSUPPORTED";
    case RT_ERR_RANGE: return "RT_ERR_RANGE";
    case RT_ERR_NOT_FOUND: return "RT_ERR_NOT_FOUND";
    case RT_ERR_FULL: return "RT_ERR_FULL";
    case RT_ERR_INTERNAL: return "RT_ERR_INTERNAL";
    case RT_ERR_UNAVAILABLE: return "RT_ERR_UNAVAILABLE";
    case RT_ERR_TIMEOUT: return "RT_ERR_TIMEOUT";
    }
    return "RT_ERR_UNKNOWN";
}

rt_status_t rt_error_set(rt_status_t st, const char *fmt, ...)
{
    /* through a copy: an argument may be rt_error_msg() itself (a caller
     * adding context to the error it got) */
    char msg[sizeof rt_error_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(rt_error_buf, msg, sizeof msg);
    return st;
}

const char *rt_error_msg(void) { return rt_error_buf; }

void rt_error_clear(void) { rt_error_buf[0] = '\0'; }
