/*
 * json_grammar.c - the JSON recognizer behind response_format json_object.
 *
 * A pushdown automaton over bytes. mode says what the next byte may be; the
 * stack of open containers is one bit per depth in a uint32_t (object or
 * array), so the whole state is a few fixed-size fields and a copy is an
 * assignment. Numbers have no closing byte: a number ends at the first byte
 * that cannot continue it, and that byte is then read as the next token
 * (',', '}', ']' or whitespace). Nothing may follow the top-level value, so a
 * top-level number is never done.
 *
 * Strings accept every byte >= 0x80 without checking that they form valid
 * UTF-8 (a model's tokens are UTF-8 already; a broken sequence is the
 * detokenizer's concern, not the grammar's). \uXXXX escapes are not checked
 * for surrogate pairing either, as RFC 8259's grammar allows.
 */
#include "rotor/json_grammar.h"

#include <string.h>

_Static_assert(JSON_MAX_DEPTH <= 32, "the container stack is one uint32_t");
_Static_assert(JSON_MAX_STRING <= UINT16_MAX, "str_len is a uint16_t");
_Static_assert(JSON_MAX_WS <= UINT8_MAX && JSON_MAX_DIGITS <= UINT8_MAX, "uint8_t counters");

enum {
    M_VALUE,       /* a value: top level, after ':', after ',' in an array */
    M_ARRAY_FIRST, /* after '[': a value or ']' */
    M_OBJ_FIRST,   /* after '{': a key or '}' */
    M_KEY,         /* after ',' in an object: a key */
    M_COLON,       /* after a key: ':' */
    M_AFTER,       /* after a value in a container: ',' or the closer */
    M_DONE,        /* the top-level value is complete: nothing more */
    M_STRING,      /* in a string */
    M_ESCAPE,      /* after '\' in a string */
    M_HEX,         /* in \uXXXX; sub hex digits read */
    M_LITERAL,     /* in true/false/null; sub which, pos bytes matched */
    /* numbers: every mode from here on */
    M_MINUS,    /* '-' read: a digit must follow */
    M_ZERO,     /* integer part "0": no more digits */
    M_INT,      /* integer part [1-9][0-9]* */
    M_DOT,      /* '.' read: a digit must follow */
    M_FRAC,     /* fraction digits */
    M_EXP,      /* 'e' or 'E' read: a sign or a digit must follow */
    M_EXP_SIGN, /* exponent sign read: a digit must follow */
    M_EXP_INT,  /* exponent digits */
};

static const char *const literals[] = {"true", "false", "null"};

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool top_is_object(const json_state_t *s)
{
    return s->depth > 0 && ((s->objects >> (s->depth - 1)) & 1u);
}

/* A value just ended: at top level that is the whole text. */
static void end_value(json_state_t *s) { s->mode = s->depth == 0 ? M_DONE : M_AFTER; }

/* ---- containers ---- */

static bool open_container(json_state_t *s, bool object)
{
    if (s->depth >= JSON_MAX_DEPTH)
        return false;
    uint32_t bit = 1u << s->depth;
    s->objects = object ? s->objects | bit : s->objects & ~bit;
    s->depth++;
    s->mode = object ? M_OBJ_FIRST : M_ARRAY_FIRST;
    return true;
}

static bool close_container(json_state_t *s, bool object)
{
    if (s->depth == 0 || top_is_object(s) != object)
        return false;
    s->depth--;
    end_value(s);
    return true;
}

static bool after_value(json_state_t *s, unsigned char c)
{
    if (c == ',') {
        s->mode = top_is_object(s) ? M_KEY : M_VALUE;
        return true;
    }
    if (c == '}' || c == ']')
        return close_container(s, c == '}');
    return false;
}

/* ---- strings ---- */

static bool open_string(json_state_t *s, bool key)
{
    s->mode = M_STRING;
    s->in_key = key;
    s->str_len = 0;
    return true;
}

/* Count one byte between the quotes. */
static bool string_grow(json_state_t *s)
{
    if (s->str_len >= JSON_MAX_STRING)
        return false;
    s->str_len++;
    return true;
}

static bool string_byte(json_state_t *s, unsigned char c)
{
    if (c == '"') {
        if (s->in_key)
            s->mode = M_COLON;
        else
            end_value(s);
        return true;
    }
    if (c < 0x20 || !string_grow(s))
        return false;
    if (c == '\\')
        s->mode = M_ESCAPE;
    return true;
}

static bool escape_byte(json_state_t *s, unsigned char c)
{
    if (!string_grow(s))
        return false;
    if (c == 'u') {
        s->mode = M_HEX;
        s->sub = 0;
        return true;
    }
    if (c == 0 || !strchr("\"\\/bfnrt", c))
        return false;
    s->mode = M_STRING;
    return true;
}

static bool hex_byte(json_state_t *s, unsigned char c)
{
    if (!is_hex(c) || !string_grow(s))
        return false;
    if (++s->sub == 4)
        s->mode = M_STRING;
    return true;
}

/* ---- literals ---- */

static bool open_literal(json_state_t *s, unsigned char c)
{
    s->sub = c == 't' ? 0 : c == 'f' ? 1 : 2;
    s->pos = 1;
    s->mode = M_LITERAL;
    return true;
}

static bool literal_byte(json_state_t *s, unsigned char c)
{
    const char *lit = literals[s->sub];
    if (c != (unsigned char)lit[s->pos])
        return false;
    if (lit[++s->pos] == '\0')
        end_value(s);
    return true;
}

/* ---- numbers ---- */

/* The first digit of a run (integer, fraction or exponent). */
static int num_run(json_state_t *s, uint8_t mode)
{
    s->mode = mode;
    s->digits = 1;
    return 1;
}

static int num_more(json_state_t *s)
{
    if (s->digits >= JSON_MAX_DIGITS)
        return 0;
    s->digits++;
    return 1;
}

static int num_mark(json_state_t *s, uint8_t mode)
{
    s->mode = mode;
    s->digits = 0;
    return 1;
}

/* After a complete integer or fraction: '.', 'e' or 'E' may go on. */
static int num_tail(json_state_t *s, unsigned char c, bool dot)
{
    if (dot && c == '.')
        return num_mark(s, M_DOT);
    if (c == 'e' || c == 'E')
        return num_mark(s, M_EXP);
    return -1;
}

/* 1: c continues the number; 0: refused; -1: the number ended before c. */
static int number_byte(json_state_t *s, unsigned char c)
{
    bool digit = is_digit(c);
    switch (s->mode) {
    case M_MINUS:
        return digit ? num_run(s, c == '0' ? M_ZERO : M_INT) : 0;
    case M_ZERO:
        return num_tail(s, c, true);
    case M_INT:
        return digit ? num_more(s) : num_tail(s, c, true);
    case M_DOT:
        return digit ? num_run(s, M_FRAC) : 0;
    case M_FRAC:
        return digit ? num_more(s) : num_tail(s, c, false);
    case M_EXP:
        if (c == '+' || c == '-')
            return num_mark(s, M_EXP_SIGN);
        return digit ? num_run(s, M_EXP_INT) : 0;
    case M_EXP_SIGN:
        return digit ? num_run(s, M_EXP_INT) : 0;
    default: /* M_EXP_INT */
        return digit ? num_more(s) : -1;
    }
}

/* ---- values and structure ---- */

static bool open_value(json_state_t *s, unsigned char c)
{
    if (s->object_only && s->depth == 0 && c != '{')
        return false;
    if (c == '{' || c == '[')
        return open_container(s, c == '{');
    if (c == '"')
        return open_string(s, false);
    if (c == 't' || c == 'f' || c == 'n')
        return open_literal(s, c);
    if (c == '-')
        return num_mark(s, M_MINUS) == 1;
    if (is_digit(c))
        return num_run(s, c == '0' ? M_ZERO : M_INT) == 1;
    return false;
}

/* Between tokens: whitespace, punctuation or the start of a value. */
static bool structural_byte(json_state_t *s, unsigned char c)
{
    if (is_ws(c)) {
        const uint8_t brk = c == '\n' ? 1 : c == '\r' ? 2 : 0;
        if (s->ws >= JSON_MAX_WS || (s->breaks & brk))
            return false;
        s->ws++;
        s->breaks |= brk;
        return true;
    }
    s->ws = 0;
    s->breaks = 0;
    switch (s->mode) {
    case M_VALUE:
        return open_value(s, c);
    case M_ARRAY_FIRST:
        return c == ']' ? close_container(s, false) : open_value(s, c);
    case M_OBJ_FIRST:
        if (c == '}')
            return close_container(s, true);
        return c == '"' && open_string(s, true);
    case M_KEY:
        return c == '"' && open_string(s, true);
    case M_COLON:
        if (c != ':')
            return false;
        s->mode = M_VALUE;
        return true;
    default: /* M_AFTER */
        return after_value(s, c);
    }
}

static bool step(json_state_t *s, unsigned char c)
{
    if (s->mode >= M_MINUS) {
        int r = number_byte(s, c);
        if (r >= 0)
            return r == 1;
        end_value(s); /* c is the next token */
    }
    switch (s->mode) {
    case M_DONE:
        return false;
    case M_STRING:
        return string_byte(s, c);
    case M_ESCAPE:
        return escape_byte(s, c);
    case M_HEX:
        return hex_byte(s, c);
    case M_LITERAL:
        return literal_byte(s, c);
    default:
        return structural_byte(s, c);
    }
}

void json_state_init(json_state_t *s, bool object_only)
{
    memset(s, 0, sizeof *s);
    s->mode = M_VALUE;
    s->object_only = object_only;
}

bool json_state_feed(json_state_t *s, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!step(s, (unsigned char)bytes[i]))
            return false;
    return true;
}

bool json_state_done(const json_state_t *s) { return s->mode == M_DONE; }
