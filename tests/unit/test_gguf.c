/*
 * test_gguf.c - GGUF reader and writer tests.
 *
 * Broken images are built byte by byte in memory and each must be refused
 * with the right status and a message naming the problem; a writer -> file
 * -> reader round trip checks every metadata value and tensor byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rotor/gguf.h"

/* ---- a little-endian byte builder ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bb_t;

static void bb_put(bb_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void bb_le(bb_t *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        bb_put(b, &c, 1);
    }
}

static void bb_u32(bb_t *b, uint32_t v) { bb_le(b, v, 4); }
static void bb_u64(bb_t *b, uint64_t v) { bb_le(b, v, 8); }

static void bb_strn(bb_t *b, const char *s, size_t n)
{
    bb_u64(b, n);
    bb_put(b, s, n);
}

static void bb_str(bb_t *b, const char *s) { bb_strn(b, s, strlen(s)); }

static void bb_header(bb_t *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static void bb_kv_u32(bb_t *b, const char *key, uint32_t v)
{
    bb_str(b, key);
    bb_u32(b, GGUF_TYPE_UINT32);
    bb_u32(b, v);
}

static void bb_tensor(bb_t *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                      uint64_t off)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) bb_u64(b, ne[d]);
    bb_u32(b, type);
    bb_u64(b, off);
}

static void bb_pad(bb_t *b, size_t align)
{
    while (b->len % align) bb_le(b, 0, 1);
}

static void bb_free(bb_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* A valid image: 2 kvs (one a string array), 2 f32 tensors of 4 and 8 elements. */
static void build_valid(bb_t *b)
{
    bb_header(b, 3, 2, 2);
    bb_str(b, "general.architecture");
    bb_u32(b, GGUF_TYPE_STRING);
    bb_str(b, "llama");
    bb_str(b, "tok");
    bb_u32(b, GGUF_TYPE_ARRAY);
    bb_u32(b, GGUF_TYPE_STRING);
    bb_u64(b, 2);
    bb_str(b, "a");
    bb_str(b, "bc");
    uint64_t ne1[1] = {4}, ne2[2] = {4, 2};
    bb_tensor(b, "v", 1, ne1, 0, 0);
    bb_tensor(b, "w", 2, ne2, 0, 32);
    bb_pad(b, 32);
    for (int i = 0; i < 8 + 8; i++) {
        float f = (float)i;
        bb_put(b, &f, 4);
    }
}

/* Open a copy of exactly len bytes (so ASan catches any read past it);
 * check the status and that the message contains each of the words. */
static void expect_status(const uint8_t *img, size_t len, rt_status_t want, int nwords, ...)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, img, len);
    gguf_ctx_t *g = (gguf_ctx_t *)0x1; /* must stay untouched on failure */
    rt_error_clear();
    rt_status_t st = gguf_open_buffer(copy, len, &g);
    if (st != want) fprintf(stderr, "got %s (%s), want %s\n", rt_status_str(st), rt_error_msg(), rt_status_str(want));
    assert_int_equal(st, want);
    if (st == RT_OK) {
        gguf_close(g);
    } else {
        assert_ptr_equal(g, (gguf_ctx_t *)0x1);
        va_list ap;
        va_start(ap, nwords);
        for (int i = 0; i < nwords; i++) {
            const char *w = va_arg(ap, const char *);
            if (!strstr(rt_error_msg(), w)) fprintf(stderr, "message '%s' lacks '%s'\n", rt_error_msg(), w);
            assert_non_null(strstr(rt_error_msg(), w));
        }
        va_end(ap);
    }
    free(copy);
}

/* ---- reader: the valid image ---- */

static void test_valid_image(void **state)
{
    (void)state;
    bb_t b = {0};
    build_valid(&b);
    gguf_ctx_t *g;
    assert_int_equal(gguf_open_buffer(b.p, b.len, &g), RT_OK);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_kv_count(g), 2);
    assert_int_equal(gguf_tensor_count(g), 2);
    assert_string_equal(gguf_get_str(g, "general.architecture", ""), "llama");
    int64_t i = gguf_find_key(g, "tok");
    assert_true(i >= 0);
    assert_int_equal(gguf_arr_type(g, i), GGUF_TYPE_STRING);
    assert_int_equal(gguf_arr_len(g, i), 2);
    gguf_str_t s = gguf_arr_str(g, i, 1);
    assert_int_equal(s.len, 2);
    assert_memory_equal(s.data, "bc", 2);
    const gguf_tensor_info_t *w = gguf_find_tensor(g, "w");
    assert_non_null(w);
    assert_int_equal(w->nbytes, 32);
    assert_int_equal(gguf_data_offset(g) % 32, 0);
    float f;
    memcpy(&f, (const uint8_t *)w->data + 4, 4);
    assert_true(f == 9.0f);
    gguf_close(g);
    bb_free(&b);
}

static void test_every_truncation(void **state)
{
    (void)state;
    bb_t b = {0};
    build_valid(&b);
    /* every proper prefix fails with FORMAT and a message that says where */
    for (size_t cut = 0; cut < b.len - 31; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.p, cut);
        gguf_ctx_t *g;
        rt_status_t st = gguf_open_buffer(copy, cut, &g);
        if (st != RT_ERR_FORMAT) fprintf(stderr, "cut %zu: %s %s\n", cut, rt_status_str(st), rt_error_msg());
        assert_int_equal(st, RT_ERR_FORMAT);
        const char *m = rt_error_msg();
        assert_true(strstr(m, "truncated") || strstr(m, "past the end") || strstr(m, "more than the file"));
        free(copy);
    }
    expect_status(b.p, 3, RT_ERR_FORMAT, 1, "truncated");
    expect_status(b.p, 20, RT_ERR_FORMAT, 1, "truncated");
    expect_status(b.p, b.len - 4, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
}

/* ---- reader: broken headers ---- */

static void test_bad_magic(void **state)
{
    (void)state;
    bb_t b = {0};
    build_valid(&b);
    b.p[3] = 'X';
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "magic");
    expect_status((const uint8_t *)"", 0, RT_ERR_FORMAT, 1, "truncated");
    bb_free(&b);
}

static void test_versions(void **state)
{
    (void)state;
    bb_t b = {0};
    build_valid(&b);
    b.p[4] = 1;
    expect_status(b.p, b.len, RT_ERR_UNSUPPORTED, 1, "version");
    b.p[4] = 4;
    expect_status(b.p, b.len, RT_ERR_UNSUPPORTED, 1, "version");
    b.p[4] = 0, b.p[7] = 3; /* v3 written big-endian */
    expect_status(b.p, b.len, RT_ERR_UNSUPPORTED, 1, "big-endian");
    b.p[4] = 2, b.p[7] = 0; /* v2: same layout as v3 */
    expect_status(b.p, b.len, RT_OK, 0);
    bb_free(&b);
}

static void test_huge_counts(void **state)
{
    (void)state;
    bb_t b = {0};
    bb_header(&b, 3, 0, UINT64_MAX);
    bb_kv_u32(&b, "a", 1);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "metadata count");
    bb_free(&b);
    bb_header(&b, 3, (uint64_t)1 << 62, 0);
    bb_kv_u32(&b, "a", 1);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "tensor count");
    bb_free(&b);
    /* a count the file could hold at first sight, but the entries run out */
    bb_header(&b, 3, 0, 3);
    bb_kv_u32(&b, "a", 1);
    bb_kv_u32(&b, "b", 2);
    bb_put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 0);
    bb_free(&b);
}

/* ---- reader: broken metadata ---- */

static void test_string_past_end(void **state)
{
    (void)state;
    bb_t b = {0};
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "key");
    bb_u32(&b, GGUF_TYPE_STRING);
    bb_u64(&b, 1000);
    bb_put(&b, "abc", 3);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 2, "string length", "past the end");
    bb_free(&b);
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, UINT64_MAX); /* the key's length */
    bb_put(&b, "keykeykeykeykeykeykey", 21);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
}

static void test_bad_keys(void **state)
{
    (void)state;
    bb_t b = {0};
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "dup", 1);
    bb_kv_u32(&b, "dup", 2);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 2, "duplicate", "dup");
    bb_free(&b);
    bb_header(&b, 3, 0, 1);
    bb_kv_u32(&b, "", 1);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "key");
    bb_free(&b);
    bb_header(&b, 3, 0, 1);
    bb_strn(&b, "a\0b", 3);
    bb_u32(&b, GGUF_TYPE_UINT32);
    bb_u32(&b, 1);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "NUL");
    bb_free(&b);
}

static void test_unknown_value_type(void **state)
{
    (void)state;
    bb_t b = {0};
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_TYPE_COUNT);
    bb_u64(&b, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 2, "unknown value type", "'k'");
    bb_free(&b);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_TYPE_ARRAY);
    bb_u32(&b, 99);
    bb_u64(&b, 1);
    bb_u64(&b, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "unknown element type");
    bb_free(&b);
}

static void test_arrays(void **state)
{
    (void)state;
    bb_t b = {0};
    /* array of arrays (and deeper nesting) */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_TYPE_ARRAY);
    for (int depth = 0; depth < 16; depth++) {
        bb_u32(&b, GGUF_TYPE_ARRAY);
        bb_u64(&b, 1);
    }
    bb_u32(&b, GGUF_TYPE_UINT8);
    bb_u64(&b, 1);
    bb_le(&b, 7, 1);
    expect_status(b.p, b.len, RT_ERR_UNSUPPORTED, 1, "arrays of arrays");
    bb_free(&b);
    /* numeric array longer than the file, and one whose byte size overflows */
    uint64_t lens[2] = {1000, ((uint64_t)1 << 61) + 1};
    for (int i = 0; i < 2; i++) {
        bb_header(&b, 3, 0, 1);
        bb_str(&b, "k");
        bb_u32(&b, GGUF_TYPE_ARRAY);
        bb_u32(&b, GGUF_TYPE_UINT64);
        bb_u64(&b, lens[i]);
        bb_u64(&b, 5);
        expect_status(b.p, b.len, RT_ERR_FORMAT, 2, "array length", "past the end");
        bb_free(&b);
    }
    /* string array: count too big, and one string running past the end */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_STRING);
    bb_u64(&b, (uint64_t)1 << 62);
    bb_str(&b, "x");
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "array length");
    bb_free(&b);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_TYPE_ARRAY);
    bb_u32(&b, GGUF_TYPE_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "x");
    bb_u64(&b, 50);
    bb_put(&b, "yyyy", 4);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
}

static void test_bad_alignment(void **state)
{
    (void)state;
    uint32_t bad[3] = {0, 48, 1u << 31};
    for (int i = 0; i < 3; i++) {
        bb_t b = {0};
        bb_header(&b, 3, 0, 1);
        bb_kv_u32(&b, "general.alignment", bad[i]);
        expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "alignment");
        bb_free(&b);
    }
}

/* ---- reader: broken tensor infos ---- */

/* One tensor image: n_dims/ne/type/offset as given, 64 bytes of data. */
static void one_tensor(bb_t *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t off)
{
    bb_header(b, 3, 1, 0);
    bb_tensor(b, name, n_dims, ne, type, off);
    bb_pad(b, 32);
    for (int i = 0; i < 64; i++) bb_le(b, 0, 1);
}

static void test_bad_dims(void **state)
{
    (void)state;
    bb_t b = {0};
    uint64_t ne[5] = {4, 1, 1, 1, 1};
    one_tensor(&b, "t", 0, ne, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "dimension");
    bb_free(&b);
    one_tensor(&b, "t", 5, ne, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "dimension");
    bb_free(&b);
    uint64_t zero[2] = {4, 0};
    one_tensor(&b, "t", 2, zero, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "dimension");
    bb_free(&b);
    uint64_t absurd[1] = {UINT64_MAX};
    one_tensor(&b, "t", 1, absurd, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "dimension");
    bb_free(&b);
    uint64_t overflow[4] = {1u << 16, 1u << 16, 1u << 16, 1u << 16};
    one_tensor(&b, "t", 4, overflow, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "overflow");
    bb_free(&b);
    uint64_t big[1] = {(uint64_t)1 << 58}; /* element count fine, bytes do not fit */
    one_tensor(&b, "t", 1, big, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
}

static void test_bad_tensor_type(void **state)
{
    (void)state;
    uint32_t bad[4] = {4, 5, 39, 0x80000001u};
    for (int i = 0; i < 4; i++) {
        bb_t b = {0};
        uint64_t ne[1] = {32};
        one_tensor(&b, "t", 1, ne, bad[i], 0);
        expect_status(b.p, b.len, RT_ERR_UNSUPPORTED, 1, "tensor type");
        bb_free(&b);
    }
    bb_t b = {0};
    uint64_t ne[1] = {33};
    one_tensor(&b, "t", 1, ne, RT_TYPE_Q8_0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "block size");
    bb_free(&b);
    uint64_t ne2[1] = {64};
    one_tensor(&b, "t", 1, ne2, RT_TYPE_Q4_K, 0); /* K-quants need rows of 256 */
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "block size");
    bb_free(&b);
}

static void test_bad_offsets(void **state)
{
    (void)state;
    bb_t b = {0};
    uint64_t ne[1] = {4};
    one_tensor(&b, "t", 1, ne, 0, 4);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "aligned");
    bb_free(&b);
    one_tensor(&b, "t", 1, ne, 0, 64); /* starts right at the end */
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
    one_tensor(&b, "t", 1, ne, 0, UINT64_MAX - 31); /* wraps around */
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
    uint64_t ne16[1] = {16};
    one_tensor(&b, "t", 1, ne16, 0, 32); /* 64 bytes from 32: 32 too many */
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
    /* tensor infos but no data section at all */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "t", 1, ne, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "past the end");
    bb_free(&b);
}

static void test_bad_tensor_names(void **state)
{
    (void)state;
    bb_t b = {0};
    uint64_t ne[1] = {4};
    one_tensor(&b, "", 1, ne, 0, 0);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 1, "name");
    bb_free(&b);
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "t", 1, ne, 0, 0);
    bb_tensor(&b, "t", 1, ne, 0, 32);
    bb_pad(&b, 32);
    for (int i = 0; i < 64; i++) bb_le(&b, 0, 1);
    expect_status(b.p, b.len, RT_ERR_FORMAT, 2, "duplicate", "'t'");
    bb_free(&b);
}

/* ---- writer -> reader round trip ---- */

static char tmp_path[64];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmp_path, sizeof tmp_path, "/tmp/rotor_test_gguf_%d.gguf", (int)getpid());
    return 0;
}

static int teardown_tmp(void **state)
{
    (void)state;
    unlink(tmp_path);
    return 0;
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 131u + seed * 17u + (i >> 8));
}

static void roundtrip(size_t alignment)
{
    gguf_writer_t *w;
    assert_int_equal(gguf_writer_create(&w), RT_OK);
    if (alignment) assert_int_equal(gguf_writer_set_u32(w, "general.alignment", (uint32_t)alignment), RT_OK);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), RT_OK);
    assert_int_equal(gguf_writer_set_u32(w, "u32", 0xdeadbeefu), RT_OK);
    assert_int_equal(gguf_writer_set_i32(w, "i32", -123456), RT_OK);
    assert_int_equal(gguf_writer_set_u64(w, "u64", 0x0123456789abcdefull), RT_OK);
    assert_int_equal(gguf_writer_set_f32(w, "f32", 0.1f), RT_OK);
    assert_int_equal(gguf_writer_set_bool(w, "bool", true), RT_OK);
    assert_int_equal(gguf_writer_set_str(w, "str", "h\xc3\xa9llo \xe2\x96\x81world"), RT_OK);
    assert_int_equal(gguf_writer_set_str(w, "empty", ""), RT_OK);
    assert_int_equal(gguf_writer_set_u32(w, "replaced", 1), RT_OK);
    assert_int_equal(gguf_writer_set_str(w, "replaced", "now a string"), RT_OK); /* replaces in place */
    const int32_t ai32[5] = {1, -2, 3, INT32_MIN, INT32_MAX};
    const float af32[3] = {0.5f, -1.25f, 3e38f};
    const uint8_t au8[4] = {0, 1, 254, 255};
    const int8_t ai8[2] = {-128, 127};
    const uint16_t au16[2] = {1, 65535};
    const int16_t ai16[2] = {-32768, 32767};
    const uint32_t au32[2] = {0, UINT32_MAX};
    const uint64_t au64[2] = {0, UINT64_MAX};
    const int64_t ai64[2] = {INT64_MIN, INT64_MAX};
    const double af64[2] = {1e300, -0.0};
    const bool abool[3] = {true, false, true};
    assert_int_equal(gguf_writer_set_arr(w, "a.i32", GGUF_TYPE_INT32, ai32, 5), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.f32", GGUF_TYPE_FLOAT32, af32, 3), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.u8", GGUF_TYPE_UINT8, au8, 4), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.i8", GGUF_TYPE_INT8, ai8, 2), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.u16", GGUF_TYPE_UINT16, au16, 2), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.i16", GGUF_TYPE_INT16, ai16, 2), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.u32", GGUF_TYPE_UINT32, au32, 2), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.u64", GGUF_TYPE_UINT64, au64, 2), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.i64", GGUF_TYPE_INT64, ai64, 2), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, af64, 2), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.bool", GGUF_TYPE_BOOL, abool, 3), RT_OK);
    assert_int_equal(gguf_writer_set_arr(w, "a.empty", GGUF_TYPE_INT32, NULL, 0), RT_OK);
    const char *strs[4] = {"<unk>", "", "\xe2\x96\x81the", "a b"};
    assert_int_equal(gguf_writer_set_arr_str(w, "a.str", strs, 4), RT_OK);

    /* tensors: every layout the writer must pad */
    struct {
        const char *name;
        rt_type_t t;
        int n_dims;
        int64_t ne[4];
    } ts[] = {
        {"f32.vec", RT_TYPE_F32, 1, {3, 1, 1, 1}},        {"f16.mat", RT_TYPE_F16, 2, {5, 3, 1, 1}},
        {"bf16.3d", RT_TYPE_BF16, 3, {2, 3, 4, 1}},       {"q8_0", RT_TYPE_Q8_0, 2, {64, 3, 1, 1}},
        {"q4_0", RT_TYPE_Q4_0, 2, {32, 1, 1, 1}},         {"q4_K", RT_TYPE_Q4_K, 2, {256, 2, 1, 1}},
        {"q6_K.4d", RT_TYPE_Q6_K, 4, {256, 1, 2, 1}},     {"f32.one", RT_TYPE_F32, 1, {1, 1, 1, 1}},
    };
    const size_t n_ts = sizeof ts / sizeof ts[0];
    uint8_t *bufs[8];
    size_t sizes[8];
    for (size_t i = 0; i < n_ts; i++) {
        int64_t rows = ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3];
        sizes[i] = rt_type_row_size(ts[i].t, ts[i].ne[0]) * (size_t)rows;
        bufs[i] = malloc(sizes[i]);
        fill_pattern(bufs[i], sizes[i], (unsigned)i);
        assert_int_equal(gguf_writer_add_tensor(w, ts[i].name, ts[i].t, ts[i].n_dims, ts[i].ne, bufs[i]), RT_OK);
    }
    assert_int_equal(gguf_writer_write(w, tmp_path), RT_OK);
    gguf_writer_destroy(w);

    gguf_ctx_t *g;
    assert_int_equal(gguf_open(tmp_path, &g), RT_OK);
    size_t al = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), al);
    assert_int_equal(gguf_data_offset(g) % al, 0);
    assert_int_equal(gguf_kv_count(g), 22 + (alignment ? 1 : 0));
    /* insertion order is kept, replaced keys keep their place */
    assert_string_equal(gguf_kv_key(g, alignment ? 1 : 0), "general.architecture");
    assert_int_equal(gguf_find_key(g, "replaced"), (alignment ? 1 : 0) + 8);

    int64_t v;
    double d;
    assert_string_equal(gguf_get_str(g, "general.architecture", ""), "llama");
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "u32")), GGUF_TYPE_UINT32);
    assert_int_equal(gguf_get_i64(g, "u32", 0), 0xdeadbeef);
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "i32")), GGUF_TYPE_INT32);
    assert_int_equal(gguf_get_i64(g, "i32", 0), -123456);
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "u64")), GGUF_TYPE_UINT64);
    assert_true(gguf_kv_as_i64(g, gguf_find_key(g, "u64"), &v));
    assert_true((uint64_t)v == 0x0123456789abcdefull);
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "f32")), GGUF_TYPE_FLOAT32);
    assert_true(gguf_kv_as_f64(g, gguf_find_key(g, "f32"), &d));
    assert_true((float)d == 0.1f);
    assert_int_equal(gguf_kv_type(g, gguf_find_key(g, "bool")), GGUF_TYPE_BOOL);
    assert_int_equal(gguf_get_i64(g, "bool", 0), 1);
    assert_string_equal(gguf_get_str(g, "str", ""), "h\xc3\xa9llo \xe2\x96\x81world");
    assert_string_equal(gguf_get_str(g, "empty", "x"), "");
    assert_string_equal(gguf_get_str(g, "replaced", ""), "now a string");
    assert_null(gguf_kv_as_str(g, gguf_find_key(g, "u32")));
    assert_int_equal(gguf_get_i64(g, "missing", 42), 42);

    struct {
        const char *key;
        gguf_type_t t;
        const void *data;
        uint64_t n;
        size_t es;
    } arrs[] = {
        {"a.i32", GGUF_TYPE_INT32, ai32, 5, 4},   {"a.f32", GGUF_TYPE_FLOAT32, af32, 3, 4},
        {"a.u8", GGUF_TYPE_UINT8, au8, 4, 1},     {"a.i8", GGUF_TYPE_INT8, ai8, 2, 1},
        {"a.u16", GGUF_TYPE_UINT16, au16, 2, 2},  {"a.i16", GGUF_TYPE_INT16, ai16, 2, 2},
        {"a.u32", GGUF_TYPE_UINT32, au32, 2, 4},  {"a.u64", GGUF_TYPE_UINT64, au64, 2, 8},
        {"a.i64", GGUF_TYPE_INT64, ai64, 2, 8},   {"a.f64", GGUF_TYPE_FLOAT64, af64, 2, 8},
    };
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        int64_t k = gguf_find_key(g, arrs[i].key);
        assert_true(k >= 0);
        assert_int_equal(gguf_kv_type(g, k), GGUF_TYPE_ARRAY);
        assert_int_equal(gguf_arr_type(g, k), arrs[i].t);
        assert_int_equal(gguf_arr_len(g, k), arrs[i].n);
        assert_memory_equal(gguf_arr_data(g, k), arrs[i].data, arrs[i].n * arrs[i].es);
    }
    int64_t kb = gguf_find_key(g, "a.bool");
    assert_int_equal(gguf_arr_type(g, kb), GGUF_TYPE_BOOL);
    assert_int_equal(gguf_arr_len(g, kb), 3);
    const uint8_t *pb = gguf_arr_data(g, kb);
    assert_true(pb[0] == 1 && pb[1] == 0 && pb[2] == 1);
    assert_int_equal(gguf_arr_len(g, gguf_find_key(g, "a.empty")), 0);
    int64_t ks = gguf_find_key(g, "a.str");
    assert_int_equal(gguf_arr_type(g, ks), GGUF_TYPE_STRING);
    assert_int_equal(gguf_arr_len(g, ks), 4);
    assert_null(gguf_arr_data(g, ks));
    for (uint64_t j = 0; j < 4; j++) {
        gguf_str_t s = gguf_arr_str(g, ks, j);
        assert_int_equal(s.len, strlen(strs[j]));
        assert_memory_equal(s.data, strs[j], s.len);
    }

    assert_int_equal(gguf_tensor_count(g), (int64_t)n_ts);
    size_t end = 0;
    for (size_t i = 0; i < n_ts; i++) {
        const gguf_tensor_info_t *t = gguf_tensor(g, (int64_t)i);
        assert_string_equal(t->name, ts[i].name);
        assert_ptr_equal(gguf_find_tensor(g, ts[i].name), t);
        assert_int_equal(t->type, ts[i].t);
        assert_int_equal(t->n_dims, ts[i].n_dims);
        for (int k = 0; k < 4; k++) assert_int_equal(t->ne[k], ts[i].ne[k]);
        assert_int_equal(t->offset % al, 0);
        assert_true(t->offset >= end); /* no overlap, in order */
        assert_int_equal(t->nbytes, sizes[i]);
        assert_memory_equal(t->data, bufs[i], sizes[i]);
        end = t->offset + t->nbytes;
        free(bufs[i]);
    }
    /* the file ends with the last tensor padded to the alignment */
    assert_int_equal(gguf_file_size(g), gguf_data_offset(g) + (end + al - 1) / al * al);
    gguf_close(g);
}

static void test_roundtrip_default_alignment(void **state)
{
    (void)state;
    roundtrip(0);
}

static void test_roundtrip_alignment_64(void **state)
{
    (void)state;
    roundtrip(64);
}

static void test_roundtrip_alignment_1(void **state)
{
    (void)state;
    roundtrip(1);
}

static void test_writer_empty(void **state)
{
    (void)state;
    gguf_writer_t *w;
    assert_int_equal(gguf_writer_create(&w), RT_OK);
    assert_int_equal(gguf_writer_write(w, tmp_path), RT_OK);
    gguf_writer_destroy(w);
    gguf_ctx_t *g;
    assert_int_equal(gguf_open(tmp_path, &g), RT_OK);
    assert_int_equal(gguf_kv_count(g), 0);
    assert_int_equal(gguf_tensor_count(g), 0);
    gguf_close(g);
}

static void test_writer_refuses(void **state)
{
    (void)state;
    gguf_writer_t *w;
    assert_int_equal(gguf_writer_create(&w), RT_OK);
    float data[512] = {0};
    int64_t ne[2] = {4, 2};
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 48), RT_ERR_INVALID);
    assert_non_null(strstr(rt_error_msg(), "alignment"));
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 0), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_set_u64(w, "general.alignment", 64), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_set_str(w, "general.alignment", "64"), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_set_u32(w, "", 1), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_set_str(w, "s", NULL), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_set_arr(w, "a", GGUF_TYPE_STRING, data, 1), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_set_arr(w, "a", GGUF_TYPE_ARRAY, data, 1), RT_ERR_INVALID);
    const char *bad[2] = {"x", NULL};
    assert_int_equal(gguf_writer_set_arr_str(w, "a", bad, 2), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "t", RT_TYPE_F32, 2, ne, data), RT_OK);
    assert_int_equal(gguf_writer_add_tensor(w, "t", RT_TYPE_F32, 2, ne, data), RT_ERR_INVALID);
    assert_non_null(strstr(rt_error_msg(), "duplicate"));
    assert_int_equal(gguf_writer_add_tensor(w, "", RT_TYPE_F32, 2, ne, data), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "u", RT_TYPE_F32, 0, ne, data), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "u", RT_TYPE_F32, 5, ne, data), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "u", (rt_type_t)4, 2, ne, data), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "u", RT_TYPE_Q8_0, 2, ne, data), RT_ERR_INVALID);
    assert_non_null(strstr(rt_error_msg(), "block size"));
    int64_t ne_k[1] = {128};
    assert_int_equal(gguf_writer_add_tensor(w, "u", RT_TYPE_Q4_K, 1, ne_k, data), RT_ERR_INVALID);
    int64_t ne_neg[2] = {4, -1};
    assert_int_equal(gguf_writer_add_tensor(w, "u", RT_TYPE_F32, 2, ne_neg, data), RT_ERR_INVALID);
    char longname[80];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(gguf_writer_add_tensor(w, longname, RT_TYPE_F32, 2, ne, data), RT_ERR_INVALID);
    assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf"), RT_ERR_IO);
    /* the valid parts still write */
    assert_int_equal(gguf_writer_write(w, tmp_path), RT_OK);
    gguf_writer_destroy(w);
    gguf_ctx_t *g;
    assert_int_equal(gguf_open(tmp_path, &g), RT_OK);
    assert_int_equal(gguf_tensor_count(g), 1);
    assert_int_equal(gguf_alignment(g), 32);
    gguf_close(g);
}

static void test_open_errors(void **state)
{
    (void)state;
    gguf_ctx_t *g;
    assert_int_equal(gguf_open("/nonexistent-dir/x.gguf", &g), RT_ERR_IO);
    assert_int_equal(gguf_open("/tmp", &g), RT_ERR_IO);
    FILE *f = fopen(tmp_path, "wb");
    assert_non_null(f);
    fwrite("GGUF", 1, 4, f);
    fclose(f);
    assert_int_equal(gguf_open(tmp_path, &g), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_error_msg(), "truncated"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_image),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_string_past_end),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_unknown_value_type),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_bad_tensor_type),
        cmocka_unit_test(test_bad_offsets),
        cmocka_unit_test(test_bad_tensor_names),
        cmocka_unit_test_setup_teardown(test_roundtrip_default_alignment, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_roundtrip_alignment_64, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_roundtrip_alignment_1, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_writer_empty, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_writer_refuses, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_open_errors, setup_tmp, teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
