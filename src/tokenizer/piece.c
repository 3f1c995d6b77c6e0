/*
 * piece.c - detokenization. tok_token_to_piece gives the bytes of one token
 * (llama.cpp's token_to_piece: byte-level decoding for BPE, "▁" -> " " and
 * <0xNN> for SPM, control/unknown tokens only when render_special,
 * user-defined tokens verbatim). The tok_stream_* functions turn a token
 * stream into whole UTF-8 characters, holding back a split multi-byte
 * character until its last byte arrives.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_impl.h"

static size_t put(char *buf, size_t cap, size_t at, const char *s, size_t n) {
    if (at < cap) memcpy(buf + at, s, n < cap - at ? n : cap - at);
    return at + n;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t tok_token_to_piece(const tok_vocab_t *v, int32_t id, char *buf, size_t cap,
                          bool render_special) {
    if (!v || id < 0 || id >= v->n_tokens) return 0;
    const tok_entry_t *e = &v->tokens[id];
    uint8_t t = e->type;
    bool special = t == TOK_TYPE_CONTROL || t == TOK_TYPE_UNKNOWN;
    if (special && !render_special) return 0;
    if (special || t == TOK_TYPE_USER_DEFINED) return put(buf, cap, 0, e->text, e->len);

    size_t n = 0;
    if (v->kind == TOK_KIND_SPM) {
        if (t == TOK_TYPE_NORMAL) {
            for (uint32_t i = 0; i < e->len;) {
                if (i + 3 <= e->len && memcmp(e->text + i, "\xe2\x96\x81", 3) == 0) {
                    n = put(buf, cap, n, " ", 1);
                    i += 3;
                } else {
                    n = put(buf, cap, n, e->text + i, 1);
                    i++;
                }
            }
            return n;
        }
        if (t == TOK_TYPE_BYTE && e->len == 6) {
            int hi = hexval(e->text[3]), lo = hexval(e->text[4]);
            if (hi >= 0 && lo >= 0) {
                char c = (char)(hi * 16 + lo);
                return put(buf, cap, 0, &c, 1);
            }
        }
        return 0;
    }
    if (t != TOK_TYPE_NORMAL) return 0;
    for (size_t i = 0; i < e->len;) {
        size_t start = i;
        uint32_t cp = tok_utf8_decode(e->text, e->len, &i);
        int b = cp < 324 ? v->cpt_byte[cp] : -1;
        if (b >= 0) {
            char c = (char)b;
            n = put(buf, cap, n, &c, 1);
        } else { /* not in the byte alphabet: pass the character through */
            n = put(buf, cap, n, e->text + start, i - start);
        }
    }
    return n;
}

/* Length of the valid UTF-8 sequence at s[0..n): >0 complete, 0 a valid but
 * incomplete prefix, -1 invalid (the first byte should be replaced). */
static int utf8_seq(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    int need;
    uint8_t lo = 0x80, hi = 0xbf; /* bounds of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return -1;
    for (int k = 1; k < need; k++) {
        if ((size_t)k >= n) return 0;
        uint8_t lb = k == 1 ? lo : 0x80, hb = k == 1 ? hi : 0xbf;
        if (s[k] < lb || s[k] > hb) return -1;
    }
    return need;
}

static const char replacement[3] = {(char)0xef, (char)0xbf, (char)0xbd};

/* Append whole characters of s[0..n) to out; returns bytes of s consumed
 * (the rest is an incomplete tail unless final). */
static size_t emit_utf8(const char *s, size_t n, bool final, char *out, size_t cap, size_t *w) {
    size_t i = 0;
    while (i < n) {
        int l = utf8_seq((const uint8_t *)s + i, n - i);
        const char *src = s + i;
        size_t sl = (size_t)l;
        if (l == 0 && !final) break;
        if (l <= 0) {
            src = replacement;
            sl = 3;
            l = 1;
        }
        if (*w + sl < cap) { /* keep room for the NUL */
            memcpy(out + *w, src, sl);
            *w += sl;
        }
        i += (size_t)l;
    }
    return i;
}

size_t tok_stream_push(const tok_vocab_t *v, tok_stream_t *st, int32_t id, char *out, size_t cap,
                       bool render_special) {
    char small[256];
    size_t w = 0;
    size_t pn = tok_token_to_piece(v, id, NULL, 0, render_special);
    size_t total = (size_t)st->n_pending + pn;
    char *b = total <= sizeof small ? small : malloc(total);
    if (!b) { /* out of memory: drop this piece rather than fail the stream */
        b = small;
        pn = 0;
        total = (size_t)st->n_pending;
    }
    memcpy(b, st->pending, (size_t)st->n_pending);
    tok_token_to_piece(v, id, b + st->n_pending, pn, render_special);
    size_t used = emit_utf8(b, total, false, out, cap, &w);
    st->n_pending = (int)(total - used); /* an incomplete character: < 4 bytes */
    memmove(st->pending, b + used, (size_t)st->n_pending);
    if (cap) out[w < cap ? w : cap - 1] = '\0';
    if (b != small) free(b);
    return w;
}

size_t tok_stream_flush(tok_stream_t *st, char *out, size_t cap) {
    size_t w = 0;
    emit_utf8(st->pending, (size_t)st->n_pending, true, out, cap, &w);
    st->n_pending = 0;
    if (cap) out[w < cap ? w : cap - 1] = '\0';
    return w;
}
