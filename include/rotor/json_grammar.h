/*
 * json_grammar.h - a byte-level JSON recognizer for constrained decoding
 * (OpenAI's response_format {"type": "json_object"}). It says whether a
 * stream of bytes can still be, or already is, a JSON text (RFC 8259); the
 * sampler feeds each candidate token's bytes to a copy of the state and
 * masks the tokens that are refused. It does not build values: parsing is
 * cJSON's job.
 *
 * Beyond RFC 8259 it bounds what a small model could otherwise repeat
 * forever: nesting depth, whitespace runs, digit runs and string lengths.
 * UTF-8 inside strings is not validated (every byte >= 0x80 is accepted).
 *
 * Ownership: json_state_t is a value; nothing is allocated. Copy it with `=`
 * to try bytes without changing the original.
 */
#ifndef ROTOR_JSON_GRAMMAR_H
#define ROTOR_JSON_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* nesting deeper than this is refused */
#define JSON_MAX_DEPTH 32
/* whitespace bytes in a row (outside strings) accepted, enough for the
 * indentation of deep pretty-printed JSON; more are refused, and so is a
 * second '\n' or '\r' in one run (a line break, never a blank line), so a
 * small model cannot loop on blanks */
#define JSON_MAX_WS 32
/* digits in a row in a number (its integer, fraction or exponent part) */
#define JSON_MAX_DIGITS 32
/* bytes between a string's quotes, as written (an escape counts its bytes) */
#define JSON_MAX_STRING 4096

typedef struct {
    uint32_t objects; /* bit d: the container at depth d+1 is an object (else array) */
    uint16_t str_len; /* bytes so far in the current string */
    uint8_t depth;    /* open containers, 0..JSON_MAX_DEPTH */
    uint8_t mode;     /* what the next byte may be (json_grammar.c's enum) */
    uint8_t sub;      /* literal: which one; \u: hex digits read */
    uint8_t pos;      /* literal: bytes matched */
    uint8_t ws;       /* whitespace bytes in the current run */
    uint8_t breaks;   /* in the current run: bit 0 a '\n', bit 1 a '\r' */
    uint8_t digits;   /* digits in the current run of a number */
    bool object_only; /* the top-level value must be an object */
    bool in_key;      /* the current string is an object key */
} json_state_t;

/* object_only: the top-level value must be an object (OpenAI's JSON mode) */
void json_state_init(json_state_t *s, bool object_only);
/* Feed n bytes; false as soon as a byte cannot continue a valid JSON text
 * (then *s is unspecified: callers feed a copy). Nothing may follow the
 * top-level value, whitespace included, so a top-level number (which the
 * next byte would end) never completes. */
bool json_state_feed(json_state_t *s, const char *bytes, size_t n);
/* A whole top-level value has been read (object, array, string or literal
 * closed). A top-level number is never done (it could go on); with
 * object_only that cannot happen. After done, every further byte is
 * refused, whitespace included. */
bool json_state_done(const json_state_t *s);

#endif
