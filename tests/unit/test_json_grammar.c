/*
 * test_json_grammar.c - the JSON recognizer for constrained decoding: valid
 * texts (fed whole, byte by byte and in random chunks) reach done and no
 * strict prefix does; invalid ones are refused at the exact byte; the limits
 * (depth, whitespace runs, digit runs, string length); object_only; the
 * copy-and-try pattern; and random documents and their one-byte mutants,
 * cross-checked with cJSON (whatever the recognizer calls done, cJSON
 * parses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "rotor/json_grammar.h"
#define TEST_RNG_SEED 0x6A736F6E5EEDull
#include "test_rng.h"

/* ---- helpers ---- */

static int rnd(int n) { return (int)(urand() * n); }

/* Index of the first byte refused when text[0..n) is fed one byte at a time
 * (n when every byte is accepted); *done_at: the first index after which the
 * state was done (SIZE_MAX if never). */
static size_t first_refused(const char *text, size_t n, bool object_only, size_t *done_at)
{
    json_state_t s;
    json_state_init(&s, object_only);
    size_t done = json_state_done(&s) ? 0 : SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (!json_state_feed(&s, text + i, 1))
            return i;
        if (done == SIZE_MAX && json_state_done(&s))
            done = i + 1;
    }
    if (done_at)
        *done_at = done;
    return n;
}

/* Fed whole: accepted and done? */
static bool whole_done(const char *text, size_t n, bool object_only, bool *accepted)
{
    json_state_t s;
    json_state_init(&s, object_only);
    *accepted = json_state_feed(&s, text, n);
    return *accepted && json_state_done(&s);
}

/* cJSON parses text[0..n) whole (nothing after the value) */
static bool cjson_parses_n(const char *text, size_t n)
{
    char *z = malloc(n + 1);
    assert_non_null(z);
    memcpy(z, text, n);
    z[n] = '\0';
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(z, &end, 1);
    cJSON_Delete(j);
    free(z);
    return j != NULL;
}

static bool cjson_parses(const char *text) { return cjson_parses_n(text, strlen(text)); }

/* text is a complete JSON text: done fed whole, fed byte by byte (and no
 * strict prefix is done), fed in random chunks, and cJSON agrees. */
static void expect_done_n(const char *text, size_t n, bool object_only, bool check_cjson)
{
    bool ok;
    if (!whole_done(text, n, object_only, &ok))
        fail_msg("not done fed whole (accepted %d): %.*s", ok, (int)n, text);
    size_t done_at = 0;
    size_t bad = first_refused(text, n, object_only, &done_at);
    if (bad != n)
        fail_msg("byte %zu (0x%02x) refused: %.*s", bad, (unsigned char)text[bad], (int)n, text);
    if (done_at != n)
        fail_msg("done after %zu of %zu bytes: %.*s", done_at, n, (int)n, text);
    json_state_t s;
    json_state_init(&s, object_only);
    for (size_t i = 0; i < n;) {
        size_t k = 1 + (size_t)rnd(8);
        k = k < n - i ? k : n - i;
        if (!json_state_feed(&s, text + i, k))
            fail_msg("chunk at %zu refused: %.*s", i, (int)n, text);
        i += k;
    }
    assert_true(json_state_done(&s));
    if (check_cjson && !cjson_parses_n(text, n))
        fail_msg("cJSON refuses: %.*s", (int)n, text);
}

static void expect_done(const char *text, bool object_only)
{
    expect_done_n(text, strlen(text), object_only, true);
}

/* ok + bad is refused exactly at the first byte of bad (ok is accepted). */
static void expect_refused(const char *ok, const char *bad, bool object_only)
{
    char text[512];
    size_t n = (size_t)snprintf(text, sizeof text, "%s%s", ok, bad);
    assert_true(n < sizeof text && strlen(bad) > 0);
    size_t got = first_refused(text, n, object_only, NULL);
    if (got != strlen(ok))
        fail_msg("\"%s\" + \"%s\": refused at %zu, want %zu", ok, bad, got, strlen(ok));
    bool accepted;
    whole_done(text, n, object_only, &accepted);
    assert_false(accepted);
}

/* Accepted but not done. */
static void expect_partial(const char *text, bool object_only)
{
    size_t n = strlen(text), done_at = 0;
    if (first_refused(text, n, object_only, &done_at) != n || done_at != SIZE_MAX)
        fail_msg("want accepted and not done: %s", text);
}

/* a and b answer every next byte alike (compared by behaviour: the struct
 * may have padding) */
static bool same_state(const json_state_t *a, const json_state_t *b)
{
    if (json_state_done(a) != json_state_done(b))
        return false;
    for (int c = 0; c < 256; c++) {
        json_state_t x = *a, y = *b;
        char ch = (char)c;
        bool okx = json_state_feed(&x, &ch, 1), oky = json_state_feed(&y, &ch, 1);
        if (okx != oky || (okx && json_state_done(&x) != json_state_done(&y)))
            return false;
    }
    return true;
}

static char *repeat(char *p, char c, int n)
{
    memset(p, c, (size_t)n);
    return p + n;
}

/* ---- valid texts ---- */

static void test_valid_documents(void **state)
{
    (void)state;
    static const char *const objects[] = {
        "{}",
        "{\"a\":1}",
        "{\"\":\"\"}",
        "{\"a\":{\"b\":[1,2,{\"c\":null}]},\"d\":[],\"e\":{},\"f\":[[],[{}]]}",
        "{\"t\":true,\"f\":false,\"n\":null,\"arr\":[true,false,null]}",
        "{\"s\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"}",
        "{\"u\":\"\\u00e9\\u00E9\\uABCD\\uabcd\\u0000\\uD83D\\uDE00x\"}",
        "{\"\\u0041\\n\":\"key escapes\"}",
        "{\"n\":[0,-0,1,-1,7,123,-450,0.5,-0.5,10.25,0.000,1e5,1E5,1e+5,1e-5,1E-05,"
        "-1.5e-10,0e0,-0E+0,0.0E+00,2.5e308,12345678901234567890123456789012,"
        "0.12345678901234567890123456789012,1e12345678901234567890123456789012]}",
        "{\"utf8\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\",\"\xc3\xa9\":\"\x7f\"}",
        " \t\n\r{ \"a\" : [ 1 , 2 ]\t,\r\n\"b\"\n:\n\"x\" , \"c\" : { } , \"d\" : [ ] }",
        "{\"sp\":\"   many    blanks    inside    a    string    are    not    limited    \"}",
        "{\"a\":[1,{\"b\":[2,{\"c\":[3]}]}],\"z\":{\"y\":{\"x\":[]}}}",
        "{\"a\":1,\"a\":2}", /* duplicate keys: RFC 8259 allows them */
        "{\"n\":1}",
    };
    for (size_t i = 0; i < sizeof objects / sizeof *objects; i++) {
        expect_done(objects[i], true);
        expect_done(objects[i], false);
    }
    static const char *const others[] = {
        "[]", "[1,[2,[3]]]", "[{}]", " [ ]", "\"a string\"", "\"\"", "true", "false", "null",
        "\t\n null", "[\"\\u1234\", -0.0e-0, true]",
    };
    for (size_t i = 0; i < sizeof others / sizeof *others; i++)
        expect_done(others[i], false);
}

static void test_prefixes_and_literals(void **state)
{
    (void)state;
    expect_partial("", false);
    expect_partial("", true);
    expect_partial("   ", true);
    expect_partial("{", true);
    expect_partial("{\"a", true);
    expect_partial("{\"a\"", true);
    expect_partial("{\"a\":", true);
    expect_partial("{\"a\":\"x\\", true);
    expect_partial("{\"a\":\"\\u00", true);
    expect_partial("{\"a\":[1,", true);
    expect_partial("[tru", false);
    expect_partial("t", false);
    expect_partial("tru", false);
    expect_partial("fals", false);
    expect_partial("nul", false);
    expect_done("[tru" "e]", false);
    expect_done("true", false);
    expect_refused("[tru", "x]", false);
    expect_refused("tru", "x", false);
    expect_refused("[fals", "y]", false);
    expect_refused("[nul", "1]", false);
    expect_refused("[tru", "]", false);
    expect_refused("[", "True]", false);
    expect_refused("[", "NaN]", false);
    expect_refused("[", "Infinity]", false);
    expect_refused("[true", "e]", false);
    /* top-level numbers: accepted, never done, nothing may follow */
    expect_partial("0", false);
    expect_partial("123", false);
    expect_partial("-0.5e+3", false);
    expect_partial("-", false);
    expect_refused("1", " ", false);
    expect_refused("1", ",", false);
    expect_refused("-0.5e+3", "\n", false);
}

/* ---- invalid texts ---- */

static void test_invalid_refused_at_right_byte(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        /* trailing commas, stray and doubled commas */
        {"[1,2,", "]"},
        {"{\"a\":1,", "}"},
        {"{\"a\":1 ,  ", "}"},
        {"[", ",1]"},
        {"{", ",}"},
        {"[1,", ",2]"},
        {"{\"a\":1,", ","},
        /* colons */
        {"{\"a\"", "1}"},
        {"{\"a\" ", "1}"},
        {"{\"a\"", ",\"b\":1}"},
        {"{\"a\":", "}"},
        {"{\"a\":", ":1}"},
        {"[1", ":2]"},
        /* keys */
        {"{", "'a':1}"},
        {"{", "a:1}"},
        {"{", "1:2}"},
        {"{", "{}}"},
        {"{\"a\":1,", "b:2}"},
        {"{\"a\":1 ", "\"b\":2}"},
        /* quotes and values */
        {"[", "'x']"},
        {"[1 ", "2]"},
        {"[\"a\"", "\"b\"]"},
        {"[", "}"},
        {"[1", "}"},
        {"{\"a\":1", "]"},
        {"", "]"},
        {"", "}"},
        {"", ","},
        {"", ":"},
        /* numbers */
        {"[0", "1]"},
        {"[-0", "1]"},
        {"[0", "0"},
        {"[1.", "]"},
        {"[1.", "e5]"},
        {"[1.", ".]"},
        {"[-", "]"},
        {"[-", "a]"},
        {"[-", "-1]"},
        {"[", ".5]"},
        {"[", "+1]"},
        {"[1e", "]"},
        {"[1e+", "]"},
        {"[1e+", "-1]"},
        {"[1E-", "+1]"},
        {"[1e", "e]"},
        {"[1e5", ".0]"},
        {"[1.5", ".0]"},
        {"[0", "x"},
        {"[1", "x]"},
        {"[1", "a]"},
        /* escapes and raw bytes in strings */
        {"[\"a\\", "x\"]"},
        {"[\"a\\", "a\"]"},
        {"[\"a\\", "U0041\"]"},
        {"[\"a\\", "'\"]"},
        {"[\"\\u", "\"]"},
        {"[\"\\u12", "\"]"},
        {"[\"\\u12", "g4\"]"},
        {"[\"\\u123", "G\"]"},
        {"[\"a", "\n\"]"},
        {"[\"a", "\t\"]"},
        {"[\"a", "\r\"]"},
        {"[\"a", "\x01\"]"},
        {"[\"a", "\x1f\"]"},
        {"{\"k", "\x1f\":1}"},
        /* bytes that are not tokens */
        {"[", "\f1]"},
        {"[", "\v1]"},
        {"[", "\x80]"},
        {"", "\xef\xbb\xbf{}"}, /* a byte-order mark */
        {"[1", "/*x*/]"},
        {"", "//"},
        {"", "#"},
        /* after done: a second value, any byte, whitespace included */
        {"{}", "{}"},
        {"{}", " "},
        {"{}", "\n"},
        {"{}", ","},
        {"{}", "}"},
        {"[]", " []"},
        {"[1]", ","},
        {"\"a\"", "\"b\""},
        {"true", "false"},
        {"null", " "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_refused(cases[i][0], cases[i][1], false);
    /* a NUL byte is never accepted, in a string or out of one */
    json_state_t s;
    json_state_init(&s, false);
    assert_true(json_state_feed(&s, "[\"a", 3));
    json_state_t t = s;
    assert_false(json_state_feed(&t, "\0", 1));
    json_state_init(&s, false);
    assert_false(json_state_feed(&s, "\0", 1));
}

static void test_object_only(void **state)
{
    (void)state;
    expect_refused("", "[]", true);
    expect_refused("", "\"a\"", true);
    expect_refused("", "1", true);
    expect_refused("", "-1", true);
    expect_refused("", "0", true);
    expect_refused("", "true", true);
    expect_refused("", "null", true);
    expect_refused("  \n", "[1]", true);
    expect_done("{\"a\":[1,\"s\",true,-2.5]}", true);
    expect_done("\n{}", true);
    /* the same texts are fine without object_only */
    expect_done("[]", false);
    expect_done("\"a\"", false);
    expect_partial("-1", false);
}

/* ---- limits ---- */

static void test_depth_limit(void **state)
{
    (void)state;
    char text[4 * JSON_MAX_DEPTH + 16], *p = text;
    p = repeat(p, '[', JSON_MAX_DEPTH);
    p = repeat(p, ']', JSON_MAX_DEPTH);
    expect_done_n(text, (size_t)(p - text), false, true);
    p = repeat(text, '[', JSON_MAX_DEPTH + 1);
    assert_int_equal(first_refused(text, (size_t)(p - text), false, NULL), JSON_MAX_DEPTH);

    /* objects: {"a":{"a":...{}...}} */
    char obj[8 * JSON_MAX_DEPTH + 16];
    p = obj;
    for (int i = 0; i < JSON_MAX_DEPTH - 1; i++)
        p += sprintf(p, "{\"a\":");
    p += sprintf(p, "{}");
    p = repeat(p, '}', JSON_MAX_DEPTH - 1);
    *p = '\0';
    expect_done(obj, true);
    json_state_t s;
    json_state_init(&s, true);
    for (int i = 0; i < JSON_MAX_DEPTH; i++)
        assert_true(json_state_feed(&s, "{\"a\":", 5));
    json_state_t t = s;
    assert_false(json_state_feed(&t, "{", 1));
    t = s;
    assert_false(json_state_feed(&t, "[", 1));
    t = s;
    assert_true(json_state_feed(&t, "1", 1));

    /* a mixed stack of 32: each level takes only its own closer */
    char open[JSON_MAX_DEPTH + 1];
    for (int i = 0; i < JSON_MAX_DEPTH; i++)
        open[i] = (i * 7 % 3 == 0) ? '{' : '[';
    json_state_init(&s, false);
    for (int i = 0; i < JSON_MAX_DEPTH; i++) {
        if (i > 0 && open[i - 1] == '{')
            assert_true(json_state_feed(&s, "\"k\":", 4));
        assert_true(json_state_feed(&s, &open[i], 1));
    }
    for (int i = JSON_MAX_DEPTH - 1; i >= 0; i--) {
        char good = open[i] == '{' ? '}' : ']', bad = open[i] == '{' ? ']' : '}';
        t = s;
        assert_false(json_state_feed(&t, &bad, 1));
        assert_true(json_state_feed(&s, &good, 1));
        assert_true(json_state_done(&s) == (i == 0));
    }
}

static void test_whitespace_limit(void **state)
{
    (void)state;
    char text[1024], *p; /* 13 tokens with a run of JSON_MAX_WS + 1 blanks before each fit */
    /* leading */
    p = repeat(text, ' ', JSON_MAX_WS);
    strcpy(p, "{}");
    expect_done(text, true);
    p = repeat(text, ' ', JSON_MAX_WS + 1);
    strcpy(p, "{}");
    assert_int_equal(first_refused(text, strlen(text), true, NULL), JSON_MAX_WS);
    /* every kind of blank counts toward the same run */
    p = repeat(text, ' ', JSON_MAX_WS - 3);
    strcpy(p, "\t\r\n{}");
    expect_done(text, true);
    text[0] = '{';
    p = repeat(text + 1, '\t', JSON_MAX_WS - 2);
    strcpy(p, "\r\n }");
    assert_int_equal(first_refused(text, strlen(text), true, NULL), 1 + JSON_MAX_WS);
    /* one line break a run: a second '\n' (or '\r') is a blank line, refused */
    strcpy(text, "{\n  \"a\": 1,\r\n  \"b\": [\n    2\n  ]\n}");
    expect_done(text, true);
    strcpy(text, "{\n\n\"a\": 1}");
    assert_int_equal(first_refused(text, strlen(text), true, NULL), 2);
    strcpy(text, "{\"a\": 1,\n \r\n}");
    assert_int_equal(first_refused(text, strlen(text), true, NULL), 11);
    strcpy(text, "{\"a\":\n1\n,\n\"b\"\n:\n2\n}"); /* a break in every gap is fine */
    expect_done(text, true);
    /* a run of JSON_MAX_WS at every gap between tokens */
    static const char *const toks[] = {"{", "\"a\"", ":", "[", "1", ",", "-2.5", "]", ",",
                                       "\"b\"", ":", "null", "}"};
    for (size_t bad = 0; bad <= sizeof toks / sizeof *toks; bad++) {
        p = text;
        for (size_t i = 0; i < sizeof toks / sizeof *toks; i++) {
            p = repeat(p, ' ', JSON_MAX_WS + (i == bad && i > 0));
            p += sprintf(p, "%s", toks[i]);
        }
        bool ok;
        bool done = whole_done(text, (size_t)(p - text), true, &ok);
        assert_true(done == (bad == 0 || bad == sizeof toks / sizeof *toks));
        if (done)
            assert_true(cjson_parses_n(text, (size_t)(p - text)));
    }
    /* blanks inside strings are not limited */
    p = text;
    p += sprintf(p, "{\"a\":\"");
    p = repeat(p, ' ', 100);
    strcpy(p, "\"}");
    expect_done(text, true);
}

static void test_digit_limit(void **state)
{
    (void)state;
    static const char *const heads[] = {"[", "[-", "[1.", "[1e", "[1e-", "[-0.5E+"};
    static const char first[] = {'1', '9', '0', '0', '7', '3'};
    char text[128];
    for (size_t h = 0; h < sizeof heads / sizeof *heads; h++) {
        size_t len = strlen(heads[h]);
        memcpy(text, heads[h], len);
        text[len] = first[h];
        memset(text + len + 1, '5', JSON_MAX_DIGITS - 1);
        size_t n = len + JSON_MAX_DIGITS;
        text[n] = ']';
        text[n + 1] = '\0';
        expect_done(text, false);
        text[n] = '5'; /* digit JSON_MAX_DIGITS + 1 */
        assert_int_equal(first_refused(text, n + 1, false, NULL), n);
    }
    /* each run counts on its own: 32 + 32 + 32 digits */
    char *p = text;
    p = repeat(p, '[', 1);
    p = repeat(p, '7', JSON_MAX_DIGITS);
    p = repeat(p, '.', 1);
    p = repeat(p, '0', JSON_MAX_DIGITS);
    p = repeat(p, 'e', 1);
    p = repeat(p, '1', JSON_MAX_DIGITS);
    strcpy(p, "]");
    expect_done(text, false);
    /* a long run of zeros after "0" is refused at once (no leading zeros) */
    expect_refused("[0", "00000]", false);
}

static void test_string_limit(void **state)
{
    (void)state;
    static char text[JSON_MAX_STRING + 64];
    for (int key = 0; key <= 1; key++) {
        char *p = text;
        p += sprintf(p, key ? "{\"" : "{\"k\":\"");
        p = repeat(p, 'a', JSON_MAX_STRING);
        p += sprintf(p, key ? "\":1}" : "\"}");
        expect_done(text, true);
        /* one more byte: refused at the byte past the limit */
        size_t head = key ? 2 : 6;
        p = text + head;
        p = repeat(p, 'a', JSON_MAX_STRING + 1);
        assert_int_equal(first_refused(text, (size_t)(p - text), true, NULL),
                         head + JSON_MAX_STRING);
    }
    /* escapes count their written bytes: 4094 + "\n" fits, 4093 + "\u00e9" does not */
    char *p = text;
    p += sprintf(p, "[\"");
    p = repeat(p, 'b', JSON_MAX_STRING - 2);
    p += sprintf(p, "\\n\"]");
    expect_done(text, false);
    p = text + 2;
    p = repeat(p, 'b', JSON_MAX_STRING - 3);
    p += sprintf(p, "\\u00e9\"]");
    assert_int_equal(first_refused(text, (size_t)(p - text), false, NULL), 2 + JSON_MAX_STRING);
    /* the limit is per string */
    p = text;
    p += sprintf(p, "[\"");
    p = repeat(p, 'c', JSON_MAX_STRING);
    p += sprintf(p, "\",\"");
    p = repeat(p, 'd', 40);
    p += sprintf(p, "\"]");
    expect_done(text, false);
}

static void test_string_bytes(void **state)
{
    (void)state;
    /* 0x20..0x7f and every byte >= 0x80 (UTF-8 not validated) */
    char text[300], *p = text;
    p += sprintf(p, "[\"");
    for (int c = 0x20; c <= 0xff; c++)
        if (c != '"' && c != '\\')
            *p++ = (char)c;
    p += sprintf(p, "\"]");
    expect_done_n(text, (size_t)(p - text), false, false);
    /* bytes 0x00..0x1f are refused raw */
    for (int c = 0; c < 0x20; c++) {
        json_state_t s;
        json_state_init(&s, false);
        assert_true(json_state_feed(&s, "[\"x", 3));
        char b = (char)c;
        assert_false(json_state_feed(&s, &b, 1));
    }
    /* after \u: exactly four hex digits, then ordinary characters */
    expect_done("[\"\\u12345\"]", false);
    expect_done("[\"\\uFfFf\\u0a0B\"]", false);
    expect_refused("[\"\\u00", "\\u\"]", false);
}

/* ---- copy and try ---- */

static void test_copy_and_try(void **state)
{
    (void)state;
    json_state_t s;
    json_state_init(&s, true);
    assert_true(json_state_feed(&s, "{\"a\":", 5));
    const json_state_t saved = s;

    /* the sampler's mask: which candidate tokens may come next */
    static const char *const toks[] = {"1", "}", "\"x", " ", "]", "tr", "true}", "-", ".5",
                                       "{}", "[1,2]", "nul", ",", ":", "'", "  \n\t ", "\"a\"}"};
    static const bool want[] = {1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1};
    for (size_t i = 0; i < sizeof toks / sizeof *toks; i++) {
        json_state_t t = s;
        bool ok = json_state_feed(&t, toks[i], strlen(toks[i]));
        if (ok != want[i])
            fail_msg("token \"%s\": %d, want %d", toks[i], ok, want[i]);
        assert_true(same_state(&s, &saved));
    }
    /* a refused try leaves the original usable */
    json_state_t t = s;
    assert_false(json_state_feed(&t, "]", 1));
    t = s;
    assert_true(json_state_feed(&t, "tru", 3));
    json_state_t u = t;
    assert_false(json_state_feed(&u, "x", 1));
    assert_true(json_state_feed(&t, "e}", 2));
    assert_true(json_state_done(&t));
    assert_false(json_state_done(&s));
    assert_true(json_state_feed(&s, "null}", 5));
    assert_true(json_state_done(&s));
    /* a done state refuses everything, and an empty feed changes nothing */
    for (int c = 0; c < 256; c++) {
        json_state_t d = s;
        char b = (char)c;
        assert_false(json_state_feed(&d, &b, 1));
    }
    assert_true(json_state_feed(&s, "", 0));
    assert_true(json_state_done(&s));
}

/* ---- random documents ---- */

typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static void put(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(sbuf_t *b, const char *s) { put(b, s, strlen(s)); }
static void putc_(sbuf_t *b, char c) { put(b, &c, 1); }

/* Whitespace before a token: at most one run between two tokens. */
static void gen_ws(sbuf_t *b)
{
    if (rnd(3) != 0)
        return;
    int breaks = 0; /* at most one '\n' and one '\r' a run */
    for (int n = rnd(JSON_MAX_WS + 1); n > 0; n--) {
        const char c = " \t\n\r"[rnd(4)];
        const int brk = c == '\n' ? 1 : c == '\r' ? 2 : 0;
        putc_(b, brk & breaks ? ' ' : c);
        breaks |= brk;
    }
}

static void gen_hex4(sbuf_t *b)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    char u[5];
    do {
        for (int i = 0; i < 4; i++)
            u[i] = hex[rnd(22)];
        u[4] = '\0';
    } while ((u[0] == 'd' || u[0] == 'D') && strchr("89abcdefABCDEF", u[1])); /* no surrogates */
    puts_(b, "\\u");
    puts_(b, u);
}

static void gen_string(sbuf_t *b)
{
    static const char *const pieces[] = {"\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r",
                                         "\\t", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80",
                                         "\x7f", "\\uD83D\\uDE00", " "};
    putc_(b, '"');
    for (int n = rnd(12); n > 0; n--) {
        int k = rnd(10);
        if (k < 6) {
            char c = (char)(0x20 + rnd(0x5f)); /* printable ASCII */
            putc_(b, c == '"' || c == '\\' ? 'q' : c);
        } else if (k < 9)
            puts_(b, pieces[rnd(sizeof pieces / sizeof *pieces)]);
        else
            gen_hex4(b);
    }
    putc_(b, '"');
}

static void gen_digits(sbuf_t *b, int max)
{
    int n = rnd(6) == 0 ? max : rnd(4);
    for (int i = 0; i < n; i++)
        putc_(b, (char)('0' + rnd(10)));
}

static void gen_number(sbuf_t *b)
{
    if (rnd(2))
        putc_(b, '-');
    if (rnd(4) == 0) {
        putc_(b, '0');
    } else {
        putc_(b, (char)('1' + rnd(9)));
        gen_digits(b, JSON_MAX_DIGITS - 1);
    }
    if (rnd(2)) {
        putc_(b, '.');
        putc_(b, (char)('0' + rnd(10)));
        gen_digits(b, JSON_MAX_DIGITS - 1);
    }
    if (rnd(2)) {
        putc_(b, "eE"[rnd(2)]);
        int sign = rnd(3);
        if (sign)
            putc_(b, "+-"[sign - 1]);
        putc_(b, (char)('0' + rnd(10)));
        gen_digits(b, JSON_MAX_DIGITS - 1);
    }
}

static void gen_value(sbuf_t *b, int depth);

static void gen_container(sbuf_t *b, int depth, bool object)
{
    putc_(b, object ? '{' : '[');
    int n = rnd(depth < 3 ? 6 : 3);
    for (int i = 0; i < n; i++) {
        if (i > 0) {
            gen_ws(b);
            putc_(b, ',');
        }
        if (object) {
            gen_ws(b);
            gen_string(b);
            gen_ws(b);
            putc_(b, ':');
        }
        gen_value(b, depth + 1);
    }
    gen_ws(b);
    putc_(b, object ? '}' : ']');
}

/* kind: 0 object, 1 array, 2 string, 3 number, 4 literal; -1 random */
static void gen_kind(sbuf_t *b, int depth, int kind)
{
    gen_ws(b);
    static const char *const lits[] = {"true", "false", "null"};
    switch (kind) {
    case 0:
    case 1:
        gen_container(b, depth, kind == 0);
        break;
    case 2:
        gen_string(b);
        break;
    case 3:
        gen_number(b);
        break;
    default:
        puts_(b, lits[rnd(3)]);
    }
}

static void gen_value(sbuf_t *b, int depth)
{
    int kind = depth >= 6 ? 2 + rnd(3) : rnd(depth < 2 ? 5 : 8) % 5;
    gen_kind(b, depth, kind);
}

static void test_random_documents(void **state)
{
    (void)state;
    sbuf_t b = {0};
    size_t total = 0;
    for (int iter = 0; iter < 3000; iter++) {
        b.len = 0;
        int kind = iter % 3 == 0 ? rnd(5) : 0;
        gen_kind(&b, 0, kind);
        bool object_only = kind == 0 && iter % 2 == 0;
        total += b.len;
        if (kind == 3) { /* a top-level number: every prefix accepted, never done */
            size_t done_at = 0;
            assert_int_equal(first_refused(b.p, b.len, false, &done_at), b.len);
            assert_true(done_at == SIZE_MAX);
            continue;
        }
        /* done at the end and at no strict prefix, chunked alike; cJSON agrees */
        expect_done_n(b.p, b.len, object_only, true);
        /* and nothing more */
        json_state_t s;
        json_state_init(&s, object_only);
        assert_true(json_state_feed(&s, b.p, b.len));
        char c = (char)rnd(256);
        assert_false(json_state_feed(&s, &c, 1));
    }
    print_message("random documents: 3000, %zu bytes\n", total);
    free(b.p);
}

/* RFC 8259's grammar allows a \u escape of an unpaired UTF-16 surrogate;
 * cJSON 1.7 refuses it. Rewrite every \uD800..\uDFFF to \u00XX (still four
 * hex digits, and where "\u" was an escaped backslash and text, still
 * ordinary characters). Returns whether anything changed. */
static bool unsurrogate(char *t)
{
    bool changed = false;
    for (char *p = strstr(t, "\\u"); p; p = strstr(p + 1, "\\u"))
        if ((p[2] == 'd' || p[2] == 'D') && p[3] && strchr("89abcdefABCDEF", p[3])) {
            p[2] = p[3] = '0';
            changed = true;
        }
    return changed;
}

static void mutate(sbuf_t *b)
{
    static const char interesting[] = "{}[]:,\"\\ \t\n0123456789.-+eEtfnulrsa'/x\x01\x1f\x7f\x80";
    char c = rnd(2) ? interesting[rnd((int)sizeof interesting - 1)] : (char)(1 + rnd(255));
    size_t at = (size_t)rnd((int)b->len + 1);
    int op = rnd(3);
    if (op == 0 && at < b->len) { /* replace */
        b->p[at] = c;
    } else if (op == 1 && at < b->len) { /* delete */
        memmove(b->p + at, b->p + at + 1, b->len - at);
        b->len--;
    } else { /* insert */
        putc_(b, ' ');
        memmove(b->p + at + 1, b->p + at, b->len - at - 1);
        b->p[at] = c;
    }
}

static void test_random_mutations(void **state)
{
    (void)state;
    sbuf_t b = {0};
    int done = 0, refused = 0, partial = 0, surrogates = 0;
    for (int iter = 0; iter < 3000; iter++) {
        b.len = 0;
        int kind = iter % 4 == 0 ? rnd(5) : 0;
        gen_kind(&b, 0, kind);
        bool object_only = iter % 2 == 0;
        for (int m = 0; m < 8; m++) {
            sbuf_t t = {0};
            put(&t, b.p, b.len);
            for (int k = 1 + (rnd(4) == 0); k > 0; k--)
                mutate(&t);
            bool ok;
            bool d = whole_done(t.p, t.len, object_only, &ok);
            size_t done_at = 0;
            size_t bad = first_refused(t.p, t.len, object_only, &done_at);
            assert_true(ok == (bad == t.len)); /* whole and byte by byte agree */
            assert_true(!d || done_at == t.len);
            if (!ok) {
                refused++;
            } else if (!d) {
                partial++;
            } else if (!cjson_parses(t.p)) {
                if (!unsurrogate(t.p) || !cjson_parses(t.p))
                    fail_msg("done but cJSON refuses: %s", t.p);
                surrogates++;
            } else {
                done++;
            }
            free(t.p);
        }
    }
    print_message("mutants: %d done (cJSON parses), %d done with a lone surrogate escape (cJSON "
                  "parses once it is rewritten), %d refused, %d partial\n",
                  done, surrogates, refused, partial);
    assert_true(done > 1000 && refused > 1000);
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),
        cmocka_unit_test(test_prefixes_and_literals),
        cmocka_unit_test(test_invalid_refused_at_right_byte),
        cmocka_unit_test(test_object_only),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_whitespace_limit),
        cmocka_unit_test(test_digit_limit),
        cmocka_unit_test(test_string_limit),
        cmocka_unit_test(test_string_bytes),
        cmocka_unit_test(test_copy_and_try),
        cmocka_unit_test(test_random_documents),
        cmocka_unit_test(test_random_mutations),
    };
    return cmocka_run_group_tests_name("json_grammar", tests, NULL, NULL);
}
