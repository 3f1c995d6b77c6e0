/*
 * stop.c - stop strings on streamed text.
 *
 * The matcher keeps a small pending buffer: text that may be the start of a
 * stop string (the longest suffix that is a proper prefix of any stop) and
 * text that did not fit in the caller's output. Each push appends the new
 * text in chunks, looks for the earliest complete stop string in the pending
 * text, and releases everything before the possible start of a stop. So the
 * stream never shows any part of a stop string, and a stop split over any
 * number of pushes is still found. The buffer is sized at create (twice the
 * longest stop plus a margin) and grows only if the caller's output buffer is
 * too small to take the released text.
 */
#include "rotor/sampler.h"

#include <stdlib.h>
#include <string.h>

#define STOP_CHUNK_MIN 256

struct stop_matcher {
    char **stops;   /* (n) copies, empty strings dropped */
    size_t *lens;   /* (n) */
    size_t n;
    size_t max_len; /* longest stop */
    char *buf;      /* (cap) pending text, not NUL-terminated */
    size_t len;
    size_t cap;
    bool stopped;   /* a stop was found; buf holds only unemitted text before it */
};

void stop_matcher_destroy(stop_matcher_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->stops[i]);
    free(m->stops);
    free(m->lens);
    free(m->buf);
    free(m);
}

rt_status_t stop_matcher_create(const char *const *stops, size_t n, stop_matcher_t **out)
{
    if (!out || (n > 0 && !stops))
        return rt_error_set(RT_ERR_INVALID, "stop_matcher_create: bad arguments");
    stop_matcher_t *m = calloc(1, sizeof *m);
    if (!m)
        goto nomem;
    if (n > 0) {
        m->stops = calloc(n, sizeof *m->stops);
        m->lens = calloc(n, sizeof *m->lens);
        if (!m->stops || !m->lens)
            goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        if (!stops[i]) {
            stop_matcher_destroy(m);
            return rt_error_set(RT_ERR_INVALID, "stop_matcher_create: stop %zu is NULL", i);
        }
        size_t l = strlen(stops[i]);
        if (l == 0)
            continue; /* an empty stop would end every generation at once */
        m->stops[m->n] = malloc(l + 1);
        if (!m->stops[m->n])
            goto nomem;
        memcpy(m->stops[m->n], stops[i], l + 1);
        m->lens[m->n++] = l;
        if (l > m->max_len)
            m->max_len = l;
    }
    m->cap = 2 * m->max_len + STOP_CHUNK_MIN;
    m->buf = malloc(m->cap);
    if (!m->buf)
        goto nomem;
    *out = m;
    return RT_OK;
nomem:
    stop_matcher_destroy(m);
    return rt_error_set(RT_ERR_NOMEM, "stop_matcher_create: out of memory");
}

/* Earliest start of a complete stop in buf, or SIZE_MAX. */
static size_t find_stop(const stop_matcher_t *m)
{
    size_t best = SIZE_MAX;
    for (size_t j = 0; j < m->n; j++) {
        const char *p = memmem(m->buf, m->len, m->stops[j], m->lens[j]);
        if (p && (size_t)(p - m->buf) < best)
            best = (size_t)(p - m->buf);
    }
    return best;
}

/* Length of the longest suffix of buf that is a proper prefix of a stop. */
static size_t held_suffix(const stop_matcher_t *m)
{
    size_t best = 0;
    for (size_t j = 0; j < m->n; j++) {
        size_t l = m->lens[j] - 1 < m->len ? m->lens[j] - 1 : m->len;
        for (; l > best; l--)
            if (memcmp(m->buf + m->len - l, m->stops[j], l) == 0) {
                best = l;
                break;
            }
    }
    return best;
}

/* Move up to `safe` bytes from the front of buf to out[*out_len..], keeping
 * out NUL-terminated. */
static void emit(stop_matcher_t *m, size_t safe, char *out, size_t cap, size_t *out_len)
{
    if (cap == 0)
        return;
    size_t room = cap - 1 - *out_len;
    size_t k = safe < room ? safe : room;
    memcpy(out + *out_len, m->buf, k);
    *out_len += k;
    out[*out_len] = '\0';
    memmove(m->buf, m->buf + k, m->len - k);
    m->len -= k;
}

bool stop_matcher_push(stop_matcher_t *m, const char *text, size_t len, char *out, size_t cap,
                       size_t *out_len)
{
    size_t written = 0;
    if (cap > 0)
        out[0] = '\0';
    if (m->stopped) {
        emit(m, m->len, out, cap, &written);
        if (out_len)
            *out_len = written;
        return true;
    }
    while (len > 0) {
        if (m->len == m->cap) { /* only when the caller's out was too small */
            char *nb = realloc(m->buf, 2 * m->cap);
            if (!nb) {
                rt_error_set(RT_ERR_NOMEM, "stop_matcher_push: out of memory");
                break;
            }
            m->buf = nb;
            m->cap *= 2;
        }
        size_t take = m->cap - m->len < len ? m->cap - m->len : len;
        memcpy(m->buf + m->len, text, take);
        m->len += take;
        text += take;
        len -= take;

        size_t at = find_stop(m);
        if (at != SIZE_MAX) {
            m->len = at; /* drop the stop and everything after it */
            m->stopped = true;
            emit(m, m->len, out, cap, &written);
            if (out_len)
                *out_len = written;
            return true;
        }
        emit(m, m->len - held_suffix(m), out, cap, &written);
    }
    if (out_len)
        *out_len = written;
    return false;
}

size_t stop_matcher_flush(stop_matcher_t *m, char *out, size_t cap)
{
    size_t written = 0;
    if (cap > 0)
        out[0] = '\0';
    emit(m, m->len, out, cap, &written);
    return written;
}
