/*
 * status.h - the one status type of rotor.
 *
 * Every fallible function returns an rt_status_t: 0 is OK, negative is an
 * error. The function that first sees an error records a human-readable
 * message with rt_error_set(); callers up the stack read it with
 * rt_error_msg() (thread-local, overwritten by the next error on the thread).
 * Output parameters are written only on success.
 */
#ifndef ROTOR_STATUS_H
#define ROTOR_STATUS_H

#include <stdarg.h>

typedef enum {
    RT_OK = 0,
    RT_ERR_INVALID = -1,     /* bad argument or malformed input */
    RT_ERR_NOMEM = -2,       /* allocation failed */
    RT_ERR_IO = -3,          /* open/read/write/mmap failed */
    RT_ERR_FORMAT = -4,      /* file content is corrupt or not understood */
    RT_ERR_UNSUPPORTED = -5, /* valid but not implemented (type, arch) */
    RT_ERR_RANGE = -6,       /* value out of bounds */
    RT_ERR_NOT_FOUND = -7,   /* key, token or file missing */
    RT_ERR_FULL = -8,        /* a pool or queue has no room */
    RT_ERR_INTERNAL = -9,    /* broken invariant that we chose not to abort on */
    RT_ERR_UNAVAILABLE = -10, /* no worker can take it now (down, shutting down) */
    RT_ERR_TIMEOUT = -11,    /* a peer did not answer in time */
} rt_status_t;

/* Short constant name of a status ("RT_ERR_FORMAT"). */
const char *rt_status_str(rt_status_t st);

/* Record the message of the current error on this thread; returns st so that
 * `return rt_error_set(RT_ERR_IO, "open %s: %s", p, strerror(errno));` works. */
rt_status_t rt_error_set(rt_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Message of the last error recorded on this thread ("" if none). The string
 * is owned by the thread-local buffer and valid until the next rt_error_set. */
const char *rt_error_msg(void);

/* Clear the thread's error message. */
void rt_error_clear(void);

#endif
