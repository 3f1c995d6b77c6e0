/* test_tokenizer.c - tokenizers on tiny vocabularies written with the GGUF
 * writer: SPM merges by score, space prefix, byte fallback; byte-level BPE
 * merges by rank; special-token partition; BOS/EOS/EOG; pieces; the
 * streaming detokenizer; and that BPE on 10k characters is fast. Expected ids
 * are worked out by hand with llama.cpp's rules (the pytest suite compares
 * against llama.cpp itself). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rotor/gguf.h"
#include "rotor/tokenizer.h"

typedef struct {
    gguf_ctx_t *g;
    tok_vocab_t *v;
} fixture_t;

static void open_written(gguf_writer_t *w, fixture_t *f) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/rotor-tok-%d-%p.gguf", (int)getpid(), (void *)f);
    assert_int_equal(gguf_writer_write(w, path), RT_OK);
    gguf_writer_destroy(w);
    assert_int_equal(gguf_open(path, &f->g), RT_OK);
    unlink(path); /* the mapping stays valid */
    assert_int_equal(tok_vocab_from_gguf(f->g, &f->v), RT_OK);
}

static void close_fixture(fixture_t *f) {
    tok_vocab_destroy(f->v);
    gguf_close(f->g);
}

/* ---------------------------------------------------------------- SPM */

enum { S_UNK, S_BOS, S_EOS, S_BYTE0 };
#define S_WS (S_BYTE0 + 256) /* "▁" */
enum { S_A = S_WS + 1, S_B, S_WA, S_AB, S_WAB, S_HELLO, S_CTL, S_USR };

static void build_spm(fixture_t *f) {
    const char *tok[S_USR + 1];
    float score[S_USR + 1];
    int32_t type[S_USR + 1];
    static char bytes[256][8];
    tok[S_UNK] = "<unk>", type[S_UNK] = TOK_TYPE_UNKNOWN;
    tok[S_BOS] = "<s>", type[S_BOS] = TOK_TYPE_CONTROL;
    tok[S_EOS] = "</s>", type[S_EOS] = TOK_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tok[S_BYTE0 + b] = bytes[b];
        type[S_BYTE0 + b] = TOK_TYPE_BYTE;
    }
    const char *normal[] = {"\xe2\x96\x81",
                            "a",
                            "b",
                            "\xe2\x96\x81"
                            "a",
                            "ab",
                            "\xe2\x96\x81"
                            "ab",
                            "\xe2\x96\x81"
                            "hello"};
    float nscore[] = {-1, -2, -2, -3, -1, -4, -5};
    for (int i = 0; i < 7; i++) {
        tok[S_WS + i] = normal[i];
        score[S_WS + i] = nscore[i];
        type[S_WS + i] = TOK_TYPE_NORMAL;
    }
    tok[S_CTL] = "<|ctl|>", type[S_CTL] = TOK_TYPE_CONTROL;
    tok[S_USR] = "<|usr|>", type[S_USR] = TOK_TYPE_USER_DEFINED;
    for (int i = 0; i < S_WS; i++)
        score[i] = 0;
    score[S_CTL] = score[S_USR] = 0;

    gguf_writer_t *w;
    assert_int_equal(gguf_writer_create(&w), RT_OK);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, S_USR + 1);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, score, S_USR + 1);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type, S_USR + 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", S_BOS);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", S_EOS);
    open_written(w, f);
}

static void expect_ids(const tok_vocab_t *v, const char *text, bool add, bool special,
                       const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(v, text, strlen(text), add, special, &ids, &n), RT_OK);
    if (n != n_want) {
        fprintf(stderr, "'%s': got %zu ids:", text, n);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    free(ids);
}

#define EXPECT(v, text, add, sp, ...)                                                              \
    do {                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                        \
        expect_ids(v, text, add, sp, w_, sizeof w_ / sizeof w_[0]);                                \
    } while (0)

static void test_spm_basics(void **state) {
    (void)state;
    fixture_t f;
    build_spm(&f);
    const tok_vocab_t *v = f.v;
    assert_int_equal(tok_kind(v), TOK_KIND_SPM);
    assert_int_equal(tok_bos(v), S_BOS);
    assert_int_equal(tok_eos(v), S_EOS);
    assert_true(tok_add_bos(v)); /* SPM default */
    assert_false(tok_add_eos(v));
    assert_true(tok_is_eog(v, S_EOS));
    assert_false(tok_is_eog(v, S_A));
    assert_true(tok_is_control(v, S_CTL));
    assert_int_equal(tok_find(v, "ab"), S_AB);
    assert_int_equal(tok_find(v, "zz"), -1);
    assert_string_equal(tok_text(v, S_HELLO), "\xe2\x96\x81hello");

    /* "▁ab": pairs ▁a (-3) and ab (-1): ab wins, then ▁+ab = ▁ab (-4) */
    EXPECT(v, "ab", true, true, S_BOS, S_WAB);
    EXPECT(v, "ab", false, true, S_WAB);
    /* "▁a▁b": ▁a merges; "▁b" is no token */
    EXPECT(v, "a b", false, true, S_WA, S_WS, S_B);
    /* byte fallback for "é" = C3 A9 */
    EXPECT(v, "\xc3\xa9", false, true, S_WS, S_BYTE0 + 0xc3, S_BYTE0 + 0xa9);
    /* empty text: only BOS with add_special */
    EXPECT(v, "", true, true, S_BOS);
    {
        int32_t *ids;
        size_t n;
        assert_int_equal(tok_encode(v, "", 0, false, true, &ids, &n), RT_OK);
        assert_int_equal(n, 0);
        free(ids);
    }
    /* control token: parsed only with parse_special; text after a special
     * gets the space prefix again */
    EXPECT(v, "<|ctl|>ab", false, true, S_CTL, S_WAB);
    EXPECT(v, "ab<|ctl|>", false, true, S_WAB, S_CTL);
    /* user-defined tokens are matched even without parse_special */
    EXPECT(v, "<|usr|>ab", false, false, S_USR, S_WAB);
    EXPECT(v, "<s>", false, true, S_BOS);
    close_fixture(&f);
}

static void test_spm_pieces(void **state) {
    (void)state;
    fixture_t f;
    build_spm(&f);
    char buf[32];
    size_t n = tok_token_to_piece(f.v, S_WAB, buf, sizeof buf, false);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, " ab", 3);
    n = tok_token_to_piece(f.v, S_BYTE0 + 'A', buf, sizeof buf, false);
    assert_int_equal(n, 1);
    assert_int_equal(buf[0], 'A');
    assert_int_equal(tok_token_to_piece(f.v, S_CTL, buf, sizeof buf, false), 0);
    n = tok_token_to_piece(f.v, S_CTL, buf, sizeof buf, true);
    assert_int_equal(n, 7);
    assert_memory_equal(buf, "<|ctl|>", 7);
    n = tok_token_to_piece(f.v, S_USR, buf, sizeof buf, false); /* user-defined: always */
    assert_int_equal(n, 7);
    /* truncation reports the full length */
    assert_int_equal(tok_token_to_piece(f.v, S_HELLO, buf, 2, false), 6);
    assert_memory_equal(buf, " h", 2);
    close_fixture(&f);
}

/* ---------------------------------------------------------------- BPE */

/* GPT-2 byte-level code point of byte b */
static unsigned byte_cpt(unsigned b) {
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae)) return b;
    unsigned n = 0;
    for (unsigned i = 0; i < b; i++)
        n += !((i >= 0x21 && i <= 0x7e) || (i >= 0xa1 && i <= 0xac) || (i >= 0xae));
    return 256 + n;
}

static void put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp, o[1] = 0;
    } else {
        o[0] = (char)(0xc0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3f)), o[2] = 0;
    }
}

enum { B_HE = 256, B_GT, B_GTHE, B_EOT, B_IMEND, B_N };

static void build_bpe(fixture_t *f, const char *pre) {
    static char alpha[256][4];
    const char *tok[B_N];
    int32_t type[B_N];
    for (unsigned b = 0; b < 256; b++) {
        put_utf8(alpha[b], byte_cpt(b));
        tok[b] = alpha[b];
        type[b] = TOK_TYPE_NORMAL;
    }
    tok[B_HE] = "he", tok[B_GT] = "\xc4\xa0t", tok[B_GTHE] = "\xc4\xa0the";
    tok[B_EOT] = "<|endoftext|>", tok[B_IMEND] = "<|im_end|>";
    type[B_HE] = type[B_GT] = type[B_GTHE] = TOK_TYPE_NORMAL;
    type[B_EOT] = type[B_IMEND] = TOK_TYPE_CONTROL;
    const char *merges[] = {"h e", "\xc4\xa0 t", "\xc4\xa0t he"};

    gguf_writer_t *w;
    assert_int_equal(gguf_writer_create(&w), RT_OK);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, B_N);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type, B_N);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 3);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", B_EOT);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", B_EOT);
    open_written(w, f);
}

static void test_bpe_merges(void **state) {
    (void)state;
    fixture_t f;
    build_bpe(&f, "gpt-2");
    const tok_vocab_t *v = f.v;
    assert_int_equal(tok_kind(v), TOK_KIND_BPE);
    assert_false(tok_add_bos(v)); /* gpt2 default */
    /* " the": h+e (rank 0), Ġ+t (1), Ġt+he (2) */
    EXPECT(v, " the", true, true, B_GTHE);
    EXPECT(v, "the", false, true, 't', B_HE);
    /* pre-tokenizer splits "the the" into "the", " the" */
    EXPECT(v, "the the", false, true, 't', B_HE, B_GTHE);
    /* bytes map through the alphabet: "\n" is byte 0x0a's token */
    EXPECT(v, "a\n", false, true, 'a', 0x0a);
    EXPECT(v, "\xc3\xa9", false, true, 0xc3, 0xa9);
    /* special tokens */
    EXPECT(v, "x<|endoftext|>y", false, true, 'x', B_EOT, 'y');
    {
        int32_t *ids;
        size_t n;
        const char *t = "x<|endoftext|>y";
        assert_int_equal(tok_encode(v, t, strlen(t), false, false, &ids, &n), RT_OK);
        assert_true(n > 3);
        for (size_t i = 0; i < n; i++)
            assert_int_not_equal(ids[i], B_EOT);
        free(ids);
    }
    /* EOG: eos and <|im_end|> by name; eot auto-detected as the lowest id */
    assert_true(tok_is_eog(v, B_EOT));
    assert_true(tok_is_eog(v, B_IMEND));
    assert_false(tok_is_eog(v, B_HE));
    assert_int_equal(tok_eot(v), B_EOT);
    close_fixture(&f);
}

static void test_bpe_llama3_adds_bos(void **state) {
    (void)state;
    fixture_t f;
    build_bpe(&f, "llama-bpe");
    assert_true(tok_add_bos(f.v));
    EXPECT(f.v, " the", true, true, B_EOT, B_GTHE);
    close_fixture(&f);
}

static void test_bpe_unknown_pre_fails(void **state) {
    (void)state;
    gguf_writer_t *w;
    const char *tok[] = {"a", "b"};
    const char *merges[] = {"a b"};
    assert_int_equal(gguf_writer_create(&w), RT_OK);
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, 2);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
    char path[64];
    snprintf(path, sizeof path, "/tmp/rotor-tok-bad-%d.gguf", (int)getpid());
    assert_int_equal(gguf_writer_write(w, path), RT_OK);
    gguf_writer_destroy(w);
    gguf_ctx_t *g;
    assert_int_equal(gguf_open(path, &g), RT_OK);
    unlink(path);
    tok_vocab_t *v = NULL;
    assert_int_equal(tok_vocab_from_gguf(g, &v), RT_ERR_UNSUPPORTED);
    assert_null(v);
    gguf_close(g);
}

static void test_bpe_pieces_and_stream(void **state) {
    (void)state;
    fixture_t f;
    build_bpe(&f, "gpt-2");
    char buf[32];
    size_t n = tok_token_to_piece(f.v, B_GTHE, buf, sizeof buf, false);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, " the", 4);
    n = tok_token_to_piece(f.v, 0x0a, buf, sizeof buf, false);
    assert_int_equal(n, 1);
    assert_int_equal(buf[0], '\n');

    /* "é" arrives as two byte tokens: nothing until the second */
    tok_stream_t st = {0};
    char out[64];
    assert_int_equal(tok_stream_push(f.v, &st, 0xc3, out, sizeof out, false), 0);
    assert_string_equal(out, "");
    assert_int_equal(tok_stream_push(f.v, &st, 0xa9, out, sizeof out, false), 2);
    assert_string_equal(out, "\xc3\xa9");
    /* a 4-byte emoji F0 9F 98 80 in four pushes */
    assert_int_equal(tok_stream_push(f.v, &st, 0xf0, out, sizeof out, false), 0);
    assert_int_equal(tok_stream_push(f.v, &st, 0x9f, out, sizeof out, false), 0);
    assert_int_equal(tok_stream_push(f.v, &st, 0x98, out, sizeof out, false), 0);
    assert_int_equal(tok_stream_push(f.v, &st, 0x80, out, sizeof out, false), 4);
    assert_string_equal(out, "\xf0\x9f\x98\x80");
    /* an incomplete tail flushes as U+FFFD; an invalid byte is replaced at once */
    assert_int_equal(tok_stream_push(f.v, &st, B_GTHE, out, sizeof out, false), 4);
    assert_string_equal(out, " the");
    assert_int_equal(tok_stream_push(f.v, &st, 0xe4, out, sizeof out, false), 0);
    assert_int_equal(tok_stream_flush(&st, out, sizeof out), 3);
    assert_string_equal(out, "\xef\xbf\xbd");
    assert_int_equal(tok_stream_push(f.v, &st, 0xff, out, sizeof out, false), 3);
    assert_string_equal(out, "\xef\xbf\xbd");
    assert_int_equal(tok_stream_flush(&st, out, sizeof out), 0);
    /* control tokens only with render_special */
    assert_int_equal(tok_stream_push(f.v, &st, B_EOT, out, sizeof out, false), 0);
    assert_int_equal(tok_stream_push(f.v, &st, B_EOT, out, sizeof out, true), 13);
    assert_string_equal(out, "<|endoftext|>");
    close_fixture(&f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_bpe_speed(void **state) {
    (void)state;
    fixture_t f;
    build_bpe(&f, "llama-bpe");
    const char *unit =
        "the hehe thethe 12345  \n\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 aaaaaaaa ";
    size_t ul = strlen(unit), len = 0;
    char *text = malloc(10000 + ul);
    while (len < 10000) {
        memcpy(text + len, unit, ul);
        len += ul;
    }
    /* one long word too: worst case for naive merging */
    memset(text + 5000, 'h', 2000);
    int32_t *ids;
    size_t n;
    double t0 = now_s();
    assert_int_equal(tok_encode(f.v, text, len, true, true, &ids, &n), RT_OK);
    double dt = now_s() - t0;
    assert_true(n > 1000);
    free(ids);
    free(text);
    fprintf(stderr, "  bpe: %zu bytes in %.2f ms\n", len, dt * 1e3);
    assert_true(dt < 0.1);
    close_fixture(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_basics),
        cmocka_unit_test(test_spm_pieces),
        cmocka_unit_test(test_bpe_merges),
        cmocka_unit_test(test_bpe_llama3_adds_bos),
        cmocka_unit_test(test_bpe_unknown_pre_fails),
        cmocka_unit_test(test_bpe_pieces_and_stream),
        cmocka_unit_test(test_bpe_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
