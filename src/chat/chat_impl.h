/*
 * chat_impl.h - what chat.c and chat_tools.c share: a growing string and
 * llama.cpp's trim.
 *
 * Ownership: sbuf_t owns s (malloc'd); whoever renders hands it out or
 * frees it. An allocation failure sets oom and stops further writes.
 */
#ifndef ROTOR_CHAT_IMPL_H
#define ROTOR_CHAT_IMPL_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf_t;

static inline void sb_putn(sbuf_t *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static inline void sb_puts(sbuf_t *b, const char *s) {
    sb_putn(b, s, strlen(s));
}

static inline bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* content with leading and trailing ASCII whitespace removed (llama.cpp's trim) */
static inline void sb_put_trimmed(sbuf_t *b, const char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n && is_space(s[i]))
        i++;
    while (n > i && is_space(s[n - 1]))
        n--;
    sb_putn(b, s + i, n - i);
}

#endif
