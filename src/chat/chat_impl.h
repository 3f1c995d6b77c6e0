/*
 * chat_impl.h - what chat.c and chat_tools.c share: a growing string.
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

#endif
