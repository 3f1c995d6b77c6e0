/* test_rb_workload.c - rotor-bench's workloads (bench/rb/rb_workload.c,
 * rb_prompt.c, rb_trace.c, compiled into this test): prompts of exactly N
 * tokens with a generated model's tokenizer (BPE and SentencePiece), the
 * request bodies, length distributions, seed reproducibility, shared prefixes
 * and per-user contexts, multi-turn sessions (due times, history with the
 * answers), Mooncake trace replay (due times, lengths, equal hash ids ->
 * identical spans) and refused traces naming the line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../bench/rb/rb_prompt.c"
#include "../../bench/rb/rb_trace.c"
#include "../../bench/rb/rb_workload.c"
#include "rotor/gguf.h"
#include "rotor/tokenizer.h"
#include "test_model_util.h"

static char bpe_path[256], spm_path[256];
static tok_vocab_t *bpe_vocab, *spm_vocab;

static tok_vocab_t *load_vocab(const char *path) {
    gguf_ctx_t *g = NULL;
    tok_vocab_t *v = NULL;
    if (gguf_open(path, &g)) return NULL;
    if (tok_vocab_from_gguf(g, &v)) v = NULL;
    gguf_close(g);
    return v;
}

static int group_setup(void **state) {
    (void)state;
    if (test_gen_model(bpe_path, sizeof bpe_path, "rbwl-bpe", "--tokenizer bpe --n-vocab 600"))
        return -1;
    if (test_gen_model(spm_path, sizeof spm_path, "rbwl-spm", "--tokenizer spm --n-vocab 600"))
        return -1;
    bpe_vocab = load_vocab(bpe_path);
    spm_vocab = load_vocab(spm_path);
    return bpe_vocab && spm_vocab ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    tok_vocab_destroy(bpe_vocab);
    tok_vocab_destroy(spm_vocab);
    unlink(bpe_path);
    unlink(spm_path);
    return 0;
}

/* ---- helpers ---- */

static rb_workload_opts_t opts(rb_wl_kind_t kind, rb_api_t api, const char *gguf) {
    rb_workload_opts_t o;
    rb_workload_opts_default(&o);
    o.kind = kind;
    o.api = api;
    o.model = "m";
    o.seed = 1;
    o.tokenizer_gguf = gguf;
    return o;
}

static rb_workload_t *make(const rb_workload_opts_t *o) {
    rb_workload_t *w = NULL;
    rt_status_t st = rb_workload_create(o, &w);
    if (st) fprintf(stderr, "rb_workload_create: %s\n", rt_error_msg());
    assert_int_equal(st, RT_OK);
    return w;
}

/* The next item at time now, which must exist; its body parsed. */
static cJSON *next_item(rb_workload_t *w, double now, rb_item_t *it) {
    double at = -1;
    assert_true(rb_workload_next(w, now, it, &at));
    assert_non_null(it->body);
    assert_int_equal(strlen(it->body), it->body_len);
    cJSON *j = cJSON_Parse(it->body);
    assert_non_null(j);
    return j;
}

/* The first message's content (chat) or the prompt string (completions). */
static const char *prompt_text(const cJSON *j) {
    const cJSON *m = cJSON_GetObjectItem(j, "messages");
    if (m) return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "content"));
    return cJSON_GetStringValue(cJSON_GetObjectItem(j, "prompt"));
}

static int32_t count_tokens(tok_vocab_t *v, const char *text) {
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(v, text, strlen(text), false, false, &ids, &n), RT_OK);
    free(ids);
    return (int32_t)n;
}

/* The prompt's token-id array (completions in id mode) into ids. */
static int prompt_ids(const cJSON *j, int32_t *ids, int cap) {
    const cJSON *p = cJSON_GetObjectItem(j, "prompt");
    assert_true(cJSON_IsArray(p));
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, p) {
        assert_true(n < cap);
        ids[n++] = (int32_t)e->valueint;
    }
    return n;
}

static int words(const char *s) {
    int n = 0;
    bool in = false;
    for (; *s; s++) {
        bool sp = *s == ' ' || *s == '\n' || *s == '\t';
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

/* ---- exact token counts ---- */

static void check_exact_chat(const char *gguf, tok_vocab_t *v) {
    const int lens[] = {1, 2, 3, 17, 200, 1500};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        rb_workload_opts_t o = opts(RB_WL_SYNTHETIC, RB_API_CHAT, gguf);
        o.input_mean = lens[k];
        o.n_requests = 4;
        o.seed = 100 + k;
        rb_workload_t *w = make(&o);
        assert_true(rb_workload_exact_tokens(w));
        for (int i = 0; i < 4; i++) {
            rb_item_t it;
            cJSON *j = next_item(w, 0, &it);
            assert_int_equal(it.input_tokens, lens[k]);
            assert_int_equal(count_tokens(v, prompt_text(j)), lens[k]);
            assert_null(strchr(prompt_text(j), '\n'));
            cJSON_Delete(j);
            rb_item_free(&it);
        }
        rb_workload_destroy(w);
    }
}

static void test_exact_chat_bpe(void **state) {
    (void)state;
    check_exact_chat(bpe_path, bpe_vocab);
}

static void test_exact_chat_spm(void **state) {
    (void)state;
    check_exact_chat(spm_path, spm_vocab);
}

/* Completions with a tokenizer send the ids: exact by construction, and
 * every id is a normal, non-control token. */
static void test_exact_completions_ids(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_SYNTHETIC, RB_API_COMPLETIONS, bpe_path);
    o.input_mean = 300, o.input_stddev = 50, o.n_requests = 20;
    rb_workload_t *w = make(&o);
    static int32_t ids[4096];
    for (int i = 0; i < 20; i++) {
        rb_item_t it;
        cJSON *j = next_item(w, 0, &it);
        int n = prompt_ids(j, ids, 4096);
        assert_int_equal(n, it.input_tokens);
        for (int k = 0; k < n; k++) {
            assert_int_equal(tok_token_type(bpe_vocab, ids[k]), TOK_TYPE_NORMAL);
            assert_false(tok_is_control(bpe_vocab, ids[k]));
        }
        cJSON_Delete(j);
        rb_item_free(&it);
    }
    rb_workload_destroy(w);
}

/* A text prompt following a head counts exactly head + n tokens together. */
static void test_prompt_text_after_head(void **state) {
    (void)state;
    rb_prompt_t *p = NULL;
    assert_int_equal(rb_prompt_create(bpe_path, &p), RT_OK);
    rb_rng_t r;
    rb_rng_seed(&r, 5);
    const char *head = "The quick brown fox";
    int32_t nh = count_tokens(bpe_vocab, head);
    for (int n = 1; n < 40; n += 7) {
        char *t = NULL;
        size_t tl = 0;
        int32_t tot = 0;
        assert_int_equal(rb_prompt_text(p, &r, head, strlen(head), n, &t, &tl, &tot), RT_OK);
        assert_int_equal(tot, nh + n);
        char *full = malloc(strlen(head) + tl + 1);
        sprintf(full, "%s%s", head, t);
        assert_int_equal(count_tokens(bpe_vocab, full), nh + n);
        free(full);
        free(t);
    }
    rb_prompt_destroy(p);
}

/* ---- bodies ---- */

static void test_body_fields(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_SYNTHETIC, RB_API_CHAT, NULL);
    o.input_mean = 10, o.output_mean = 7, o.n_requests = 1;
    rb_workload_t *w = make(&o);
    assert_false(rb_workload_exact_tokens(w));
    rb_item_t it;
    cJSON *j = next_item(w, 0, &it);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "m");
    const cJSON *msgs = cJSON_GetObjectItem(j, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 1);
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "role")), "user");
    assert_int_equal(words(prompt_text(j)), 10);
    assert_int_equal(it.input_tokens, 10);
    assert_int_equal(cJSON_GetObjectItem(j, "max_tokens")->valueint, 7);
    assert_int_equal(cJSON_GetObjectItem(j, "max_completion_tokens")->valueint, 7);
    assert_int_equal(it.max_tokens, 7);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    assert_true(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stream_options"), "include_usage")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ignore_eos")));
    assert_null(cJSON_GetObjectItem(j, "temperature"));
    assert_int_equal(it.session, -1);
    assert_int_equal(it.turn, -1);
    assert_true(it.t_arrival == RB_ASAP);
    cJSON_Delete(j);
    rb_item_free(&it);
    rb_workload_destroy(w);

    /* completions without streaming or ignore_eos */
    o.api = RB_API_COMPLETIONS, o.stream = false, o.ignore_eos = false;
    w = make(&o);
    j = next_item(w, 0, &it);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "prompt")));
    assert_null(cJSON_GetObjectItem(j, "messages"));
    assert_null(cJSON_GetObjectItem(j, "max_completion_tokens"));
    assert_int_equal(cJSON_GetObjectItem(j, "max_tokens")->valueint, 7);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "stream")));
    assert_null(cJSON_GetObjectItem(j, "stream_options"));
    assert_null(cJSON_GetObjectItem(j, "ignore_eos"));
    cJSON_Delete(j);
    rb_item_free(&it);
    rb_workload_destroy(w);
}

/* ---- distributions, warmup, totals, seeds ---- */

static void test_length_distributions(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_SYNTHETIC, RB_API_COMPLETIONS, NULL);
    o.input_mean = 200, o.input_stddev = 40, o.output_mean = 100, o.output_stddev = 10;
    o.n_requests = 4000;
    rb_workload_t *w = make(&o);
    double si = 0, si2 = 0, so = 0, so2 = 0;
    int n = 0;
    rb_item_t it;
    double at;
    while (rb_workload_next(w, 0, &it, &at)) {
        si += it.input_tokens, si2 += (double)it.input_tokens * it.input_tokens;
        so += it.max_tokens, so2 += (double)it.max_tokens * it.max_tokens;
        n++;
        rb_item_free(&it);
    }
    assert_int_equal(n, 4000);
    double mi = si / n, mo = so / n;
    double sdi = sqrt(si2 / n - mi * mi), sdo = sqrt(so2 / n - mo * mo);
    /* standard errors: 40/sqrt(4000) = 0.63, 10/sqrt(4000) = 0.16 */
    assert_true(fabs(mi - 200) < 3);
    assert_true(fabs(mo - 100) < 1);
    assert_true(fabs(sdi - 40) < 3);
    assert_true(fabs(sdo - 10) < 1);
    rb_workload_destroy(w);

    /* clipped at 1 */
    o.input_mean = 2, o.input_stddev = 10, o.output_mean = 1, o.output_stddev = 10,
    o.n_requests = 500;
    w = make(&o);
    int ones = 0;
    while (rb_workload_next(w, 0, &it, &at)) {
        assert_true(it.input_tokens >= 1);
        assert_true(it.max_tokens >= 1);
        ones += it.input_tokens == 1;
        rb_item_free(&it);
    }
    assert_true(ones > 100); /* P(N(2,10) < 1.5) = 0.48 */
    rb_workload_destroy(w);
}

static void test_warmup_and_total(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_SYNTHETIC, RB_API_CHAT, NULL);
    o.input_mean = 5, o.n_warmup = 3, o.n_requests = 5;
    rb_workload_t *w = make(&o);
    assert_int_equal(rb_workload_total(w), 8);
    rb_item_t it;
    double at;
    for (int i = 0; i < 8; i++) {
        assert_false(rb_workload_exhausted(w));
        assert_true(rb_workload_next(w, 0, &it, &at));
        assert_int_equal(it.index, i);
        assert_int_equal(it.warmup, i < 3);
        assert_true(it.t_arrival == RB_ASAP);
        rb_item_free(&it);
    }
    assert_true(rb_workload_exhausted(w));
    assert_false(rb_workload_next(w, 0, &it, &at));
    assert_true(isinf(at));
    rb_workload_destroy(w);

    /* n_requests 0: open-ended (the load engine's duration ends it) */
    o.n_requests = 0, o.n_warmup = 0;
    w = make(&o);
    assert_int_equal(rb_workload_total(w), -1);
    for (int i = 0; i < 1000; i++) {
        assert_true(rb_workload_next(w, 0, &it, &at));
        rb_item_free(&it);
    }
    assert_false(rb_workload_exhausted(w));
    rb_workload_destroy(w);
}

/* Bodies of the first n items of a workload, concatenated. */
static char *bodies(const rb_workload_opts_t *o, int n) {
    rb_workload_t *w = make(o);
    size_t len = 0, cap = 0;
    char *all = NULL;
    for (int i = 0; i < n; i++) {
        rb_item_t it;
        double at;
        assert_true(rb_workload_next(w, 0, &it, &at));
        assert_int_equal(rb_str_append(&all, &len, &cap, it.body, it.body_len), RT_OK);
        assert_int_equal(rb_str_append(&all, &len, &cap, "\n", 1), RT_OK);
        rb_item_free(&it);
    }
    rb_workload_destroy(w);
    return all;
}

static void test_seed_reproducible(void **state) {
    (void)state;
    const char *gg[] = {NULL, bpe_path};
    for (int g = 0; g < 2; g++) {
        rb_workload_opts_t o = opts(RB_WL_PREFIX, RB_API_CHAT, gg[g]);
        o.input_mean = 30, o.input_stddev = 10, o.output_stddev = 20;
        o.n_prefixes = 3, o.prefix_tokens = 12, o.seed = 7;
        char *a = bodies(&o, 30), *b = bodies(&o, 30);
        assert_string_equal(a, b);
        o.seed = 8;
        char *c = bodies(&o, 30);
        assert_string_not_equal(a, c);
        assert_true(strncmp(a, c, strcspn(a, "\n")) != 0); /* the very first body differs */
        free(a), free(b), free(c);
    }
}

/* ---- shared prefixes ---- */

static void test_prefix_ids_shared(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_PREFIX, RB_API_COMPLETIONS, bpe_path);
    o.n_prefixes = 3, o.prefix_tokens = 20, o.input_mean = 10, o.n_requests = 60;
    rb_workload_t *w = make(&o);
    int32_t pref[3][20], ids[64];
    int n_pref = 0, used[3] = {0};
    for (int i = 0; i < 60; i++) {
        rb_item_t it;
        cJSON *j = next_item(w, 0, &it);
        assert_int_equal(prompt_ids(j, ids, 64), 30);
        assert_int_equal(it.input_tokens, 30);
        int k;
        for (k = 0; k < n_pref; k++)
            if (memcmp(pref[k], ids, sizeof pref[k]) == 0) break;
        if (k == n_pref) {
            assert_true(n_pref < 3); /* never a fourth prefix */
            memcpy(pref[n_pref++], ids, sizeof pref[0]);
        }
        used[k]++;
        cJSON_Delete(j);
        rb_item_free(&it);
    }
    assert_int_equal(n_pref, 3);
    for (int k = 0; k < 3; k++)
        assert_true(used[k] >= 5);
    rb_workload_destroy(w);
}

static void test_prefix_text_shared(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_PREFIX, RB_API_CHAT, bpe_path);
    o.n_prefixes = 2, o.prefix_tokens = 25, o.input_mean = 8, o.n_requests = 20;
    rb_workload_t *w = make(&o);
    /* the prefixes as the workload built them */
    const char *p0 = w->prefixes[0].text, *p1 = w->prefixes[1].text;
    assert_int_equal(count_tokens(bpe_vocab, p0), 25);
    assert_int_equal(count_tokens(bpe_vocab, p1), 25);
    assert_string_not_equal(p0, p1);
    int seen[2] = {0};
    for (int i = 0; i < 20; i++) {
        rb_item_t it;
        cJSON *j = next_item(w, 0, &it);
        const char *t = prompt_text(j);
        bool a = strncmp(t, p0, strlen(p0)) == 0, b = strncmp(t, p1, strlen(p1)) == 0;
        assert_true(a || b);
        seen[b]++;
        assert_int_equal(count_tokens(bpe_vocab, t), 33);
        assert_int_equal(it.input_tokens, 33);
        cJSON_Delete(j);
        rb_item_free(&it);
    }
    assert_true(seen[0] > 0 && seen[1] > 0);
    rb_workload_destroy(w);
}

static void test_system_prompt_and_users(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_PREFIX, RB_API_COMPLETIONS, bpe_path);
    o.system_prompt_tokens = 16, o.user_context_tokens = 8, o.n_users = 4, o.input_mean = 5,
    o.n_requests = 12;
    rb_workload_t *w = make(&o);
    int32_t ids[12][40];
    for (int i = 0; i < 12; i++) {
        rb_item_t it;
        cJSON *j = next_item(w, 0, &it);
        assert_int_equal(prompt_ids(j, ids[i], 40), 29);
        cJSON_Delete(j);
        rb_item_free(&it);
    }
    for (int i = 0; i < 12; i++)
        for (int k = 0; k < 12; k++) {
            assert_memory_equal(ids[i], ids[k],
                                16 * sizeof(int32_t)); /* everyone: the system prompt */
            bool same_user = i % 4 == k % 4;
            bool ctx_equal = memcmp(ids[i] + 16, ids[k] + 16, 8 * sizeof(int32_t)) == 0;
            assert_int_equal(ctx_equal, same_user);
        }
    rb_workload_destroy(w);
}

/* ---- sessions ---- */

static const cJSON *msg(const cJSON *j, int i, const char *role) {
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), i);
    assert_non_null(m);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(m, "role")), role);
    return cJSON_GetObjectItem(m, "content");
}

static void test_sessions_turns(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_SESSIONS, RB_API_CHAT, NULL);
    o.n_sessions = 2, o.turns = 3, o.think_time_s = 0.5, o.input_mean = 4, o.output_mean = 3;
    rb_workload_t *w = make(&o);
    assert_int_equal(rb_workload_total(w), 6);
    rb_item_t a, b, c;
    double at;
    cJSON *ja = next_item(w, 0, &a), *jb = next_item(w, 0, &b);
    assert_int_equal(a.session, 0);
    assert_int_equal(a.turn, 0);
    assert_int_equal(b.session, 1);
    assert_int_equal(b.turn, 0);
    assert_true(a.t_arrival == RB_ASAP);
    assert_int_equal(a.input_tokens, 4);
    /* both wait on their answers */
    assert_false(rb_workload_next(w, 10, &c, &at));
    assert_true(isinf(at));
    assert_false(rb_workload_exhausted(w));

    rb_workload_complete(w, &a, true, "first answer", 1.0);
    assert_false(rb_workload_next(w, 1.2, &c, &at));
    assert_true(fabs(at - 1.5) < 1e-9);
    cJSON *jc = next_item(w, 1.5, &c);
    assert_int_equal(c.session, 0);
    assert_int_equal(c.turn, 1);
    assert_true(fabs(c.t_arrival - 1.5) < 1e-9);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(jc, "messages")), 3);
    assert_string_equal(cJSON_GetStringValue(msg(jc, 0, "user")), prompt_text(ja));
    assert_string_equal(cJSON_GetStringValue(msg(jc, 1, "assistant")), "first answer");
    assert_int_equal(words(cJSON_GetStringValue(msg(jc, 2, "user"))), 4);
    assert_int_equal(c.input_tokens, 4 + 2 + 4);

    /* an error answers with an empty assistant message */
    rb_workload_complete(w, &b, false, NULL, 2.0);
    rb_item_t d;
    assert_false(rb_workload_next(w, 2.4, &d, &at));
    cJSON *jd = next_item(w, 2.5, &d);
    assert_int_equal(d.session, 1);
    assert_string_equal(cJSON_GetStringValue(msg(jd, 1, "assistant")), "");

    /* the rest */
    rb_workload_complete(w, &c, true, "second", 3.0);
    rb_workload_complete(w, &d, true, "x", 3.0);
    rb_item_t e, f;
    cJSON *je = next_item(w, 3.5, &e), *jf = next_item(w, 3.5, &f);
    assert_int_equal(e.turn, 2);
    assert_int_equal(f.turn, 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(je, "messages")), 5);
    assert_true(rb_workload_exhausted(w));
    rb_item_t *all[] = {&a, &b, &c, &d, &e, &f};
    cJSON *js[] = {ja, jb, jc, jd, je, jf};
    for (int i = 0; i < 6; i++) {
        cJSON_Delete(js[i]);
        rb_item_free(all[i]);
    }
    rb_workload_destroy(w);

    /* n_requests caps the total */
    o.n_requests = 3, o.think_time_s = 0;
    w = make(&o);
    assert_int_equal(rb_workload_total(w), 3);
    int n = 0;
    for (double t = 0; t < 10 && !rb_workload_exhausted(w); t += 1) {
        rb_item_t it;
        while (rb_workload_next(w, t, &it, &at)) {
            rb_workload_complete(w, &it, true, "ok", t);
            rb_item_free(&it);
            n++;
        }
    }
    assert_int_equal(n, 3);
    rb_workload_destroy(w);
}

/* Completions with a tokenizer: the history is ids, the answers encoded. */
static void test_sessions_completions_ids(void **state) {
    (void)state;
    rb_workload_opts_t o = opts(RB_WL_SESSIONS, RB_API_COMPLETIONS, bpe_path);
    o.n_sessions = 1, o.turns = 2, o.input_mean = 6, o.system_prompt_tokens = 5,
    o.user_context_tokens = 3;
    rb_workload_t *w = make(&o);
    rb_item_t a, b;
    static int32_t ia[64], ib[64];
    cJSON *ja = next_item(w, 0, &a);
    int na = prompt_ids(ja, ia, 64);
    assert_int_equal(na, 5 + 3 + 6);
    assert_int_equal(a.input_tokens, na);
    const char *answer = " the answer";
    int32_t *aids = NULL;
    size_t nans = 0;
    assert_int_equal(tok_encode(bpe_vocab, answer, strlen(answer), false, false, &aids, &nans),
                     RT_OK);
    rb_workload_complete(w, &a, true, answer, 1.0);
    cJSON *jb = next_item(w, 1.0, &b);
    int nb = prompt_ids(jb, ib, 64);
    assert_int_equal(nb, na + (int)nans + 6);
    assert_memory_equal(ib, ia, (size_t)na * sizeof(int32_t));
    assert_memory_equal(ib + na, aids, nans * sizeof(int32_t));
    free(aids);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    rb_item_free(&a);
    rb_item_free(&b);
    rb_workload_destroy(w);
}

/* ---- trace ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *trace_text =
    "{\"timestamp\": 1000, \"input_length\": 16, \"output_length\": 5, \"hash_ids\": [1, 2]}\n"
    "\n"
    "{\"timestamp\": 1500, \"input_length\": 20, \"output_length\": 6, \"hash_ids\": [1, 2, 3], "
    "\"extra\": \"ignored\"}\n"
    "{\"timestamp\": 1500, \"input_length\": 12, \"output_length\": 7, \"hash_ids\": [1, 9]}\n"
    "{\"timestamp\": 4000, \"input_length\": 5, \"output_length\": 8, \"hash_ids\": []}\n";

static void test_trace_replay(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "/tmp/rotor-test-rbwl-%d.jsonl", (int)getpid());
    write_file(path, trace_text);
    int32_t ids[2][4][32];
    int n[2][4];
    for (int run = 0; run < 2; run++) {
        rb_workload_opts_t o = opts(RB_WL_TRACE, RB_API_COMPLETIONS, bpe_path);
        o.trace_path = path, o.speed = 2, o.block_tokens = 8, o.seed = 1 + (uint64_t)run;
        rb_workload_t *w = make(&o);
        assert_int_equal(rb_workload_total(w), 4);
        const double due[4] = {0, 0.25, 0.25, 1.5};
        const int outl[4] = {5, 6, 7, 8}, inl[4] = {16, 20, 12, 5};
        double at;
        rb_item_t it;
        for (int i = 0; i < 4; i++) {
            if (due[i] > 0 && (i == 0 || due[i] > due[i - 1])) { /* not before its time */
                assert_false(rb_workload_next(w, due[i] - 0.01, &it, &at));
                assert_true(fabs(at - due[i]) < 1e-9);
            }
            cJSON *j = next_item(w, due[i], &it);
            assert_int_equal(it.index, i);
            assert_true(fabs(it.t_arrival - due[i]) < 1e-9);
            assert_int_equal(it.max_tokens, outl[i]);
            n[run][i] = prompt_ids(j, ids[run][i], 32);
            assert_int_equal(n[run][i], inl[i]);
            assert_int_equal(it.input_tokens, inl[i]);
            cJSON_Delete(j);
            rb_item_free(&it);
        }
        assert_true(rb_workload_exhausted(w));
        assert_false(rb_workload_next(w, 100, &it, &at));
        rb_workload_destroy(w);
    }
    for (int run = 0; run < 2; run++) {
        int32_t(*x)[32] = ids[run];
        assert_memory_equal(x[0], x[1], 16 * sizeof(int32_t));             /* blocks 1, 2 */
        assert_memory_equal(x[2], x[0], 8 * sizeof(int32_t));              /* block 1 */
        assert_memory_not_equal(x[2] + 8, x[0] + 8, 4 * sizeof(int32_t));  /* block 9 != block 2 */
        assert_memory_not_equal(x[1] + 16, x[0] + 8, 4 * sizeof(int32_t)); /* block 3 != block 2 */
    }
    /* blocks are seeded by hash id alone: the same in both runs (seeds 1, 2);
     * the trailing tokens with no block are the run's own */
    for (int i = 0; i < 3; i++)
        assert_memory_equal(ids[0][i], ids[1][i], (size_t)n[0][i] * sizeof(int32_t));
    assert_memory_not_equal(ids[0][3], ids[1][3], 5 * sizeof(int32_t));

    /* chat text with a tokenizer: the count is of the text as sent; without
     * one, words */
    const char *gg[] = {bpe_path, NULL};
    for (int g = 0; g < 2; g++) {
        rb_workload_opts_t o = opts(RB_WL_TRACE, RB_API_CHAT, gg[g]);
        o.trace_path = path, o.block_tokens = 8, o.n_warmup = 2, o.n_requests = 1;
        rb_workload_t *w = make(&o);
        assert_int_equal(rb_workload_total(w), 3);
        /* warmup lines on the trace's clock; the measured lines' clock starts
         * at the first measured line (the load engine restarts its clock) */
        const double due[3] = {0, 0.5, 0};
        const int words_in[3] = {16, 20, 12};
        rb_item_t it;
        for (int i = 0; i < 3; i++) {
            cJSON *j = next_item(w, 100, &it);
            assert_int_equal(it.warmup, i < 2);
            assert_true(fabs(it.t_arrival - due[i]) < 1e-9);
            const char *t = prompt_text(j);
            assert_int_equal(it.input_tokens, gg[g] ? count_tokens(bpe_vocab, t) : words(t));
            if (!gg[g]) assert_int_equal(it.input_tokens, words_in[i]);
            cJSON_Delete(j);
            rb_item_free(&it);
        }
        assert_true(rb_workload_exhausted(w));
        rb_workload_destroy(w);
    }
    unlink(path);
}

static void expect_bad(const char *text, const char *want1, const char *want2) {
    rb_trace_t *t = NULL;
    rt_status_t st = rb_trace_parse(text, strlen(text), "t.jsonl", &t);
    assert_int_equal(st, RT_ERR_FORMAT);
    assert_null(t);
    const char *m = rt_error_msg();
    if (!strstr(m, want1) || (want2 && !strstr(m, want2)))
        fail_msg("message '%s' lacks '%s' / '%s'", m, want1, want2);
}

static void test_trace_refused(void **state) {
    (void)state;
    const char *ok =
        "{\"timestamp\": 0, \"input_length\": 3, \"output_length\": 1, \"hash_ids\": [0]}\n";
    char buf[1024];
#define BAD(line3, w1, w2)                                                                         \
    do {                                                                                           \
        snprintf(buf, sizeof buf, "%s%s%s\n", ok, ok, line3);                                      \
        expect_bad(buf, w1, w2);                                                                   \
    } while (0)
    BAD("{\"timestamp\": 5, \"output_length\": 1}", "t.jsonl:3:", "input_length");
    BAD("{\"input_length\": 5, \"output_length\": 1}", "t.jsonl:3:", "timestamp");
    BAD("{\"timestamp\": 5, \"input_length\": 5}", "t.jsonl:3:", "output_length");
    BAD("{\"timestamp\": 5, \"input_length\": -4, \"output_length\": 1}",
        "t.jsonl:3:", "input_length");
    BAD("{\"timestamp\": 5, \"input_length\": 4, \"output_length\": 0}",
        "t.jsonl:3:", "output_length");
    BAD("{\"timestamp\": 5, \"input_length\": 4.5, \"output_length\": 1}",
        "t.jsonl:3:", "input_length");
    BAD("{\"timestamp\": 5, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": \"x\"}",
        "t.jsonl:3:", "hash_ids");
    BAD("{\"timestamp\": 5, \"input_length\": 4, \"output_length\": 1, \"hash_ids\": [1, -2]}",
        "t.jsonl:3:", "hash_ids");
    BAD("{\"timestamp\": -1, \"input_length\": 4, \"output_length\": 1}",
        "t.jsonl:3:", "timestamp");
    BAD("{\"timestamp\": 5, \"input_length\": 4,", "t.jsonl:3:", "JSON");
    BAD("[1, 2]", "t.jsonl:3:", "JSON object");
#undef BAD
    /* unsorted */
    expect_bad("{\"timestamp\": 10, \"input_length\": 3, \"output_length\": 1}\n"
               "{\"timestamp\": 20, \"input_length\": 3, \"output_length\": 1}\n"
               "{\"timestamp\": 15, \"input_length\": 3, \"output_length\": 1}\n",
               "t.jsonl:3:", "sorted");
    expect_bad("\n\n", "t.jsonl", "no requests");

    /* a missing file */
    rb_trace_t *t = NULL;
    assert_int_equal(rb_trace_load("/nonexistent/trace.jsonl", &t), RT_ERR_IO);
    assert_non_null(strstr(rt_error_msg(), "/nonexistent/trace.jsonl"));

    /* through the workload: create fails with the message */
    char path[256];
    snprintf(path, sizeof path, "/tmp/rotor-test-rbwl-bad-%d.jsonl", (int)getpid());
    write_file(
        path,
        "{\"timestamp\": 0, \"input_length\": 3, \"output_length\": 1}\n{\"timestamp\": 1}\n");
    rb_workload_opts_t o = opts(RB_WL_TRACE, RB_API_CHAT, NULL);
    o.trace_path = path;
    rb_workload_t *w = NULL;
    assert_int_equal(rb_workload_create(&o, &w), RT_ERR_FORMAT);
    assert_null(w);
    assert_non_null(strstr(rt_error_msg(), ":2: missing \"input_length\""));
    unlink(path);

    /* hash_ids may be missing or null; CRLF line ends are fine */
    const char *fine =
        "{\"timestamp\": 0, \"input_length\": 3, \"output_length\": 1}\r\n"
        "{\"timestamp\": 0.5, \"input_length\": 3, \"output_length\": 1, \"hash_ids\": null}\r\n";
    assert_int_equal(rb_trace_parse(fine, strlen(fine), "f", &t), RT_OK);
    assert_int_equal(t->n, 2);
    assert_int_equal(t->lines[1].n_hash, 0);
    assert_true(t->lines[1].timestamp_ms == 0.5);
    rb_trace_destroy(t);
}

static void test_bad_options(void **state) {
    (void)state;
    rb_workload_t *w = NULL;
    rb_workload_opts_t o = opts(RB_WL_SYNTHETIC, RB_API_CHAT, NULL);
    o.model = NULL;
    assert_int_equal(rb_workload_create(&o, &w), RT_ERR_INVALID);
    o = opts(RB_WL_PREFIX, RB_API_CHAT, NULL);
    assert_int_equal(rb_workload_create(&o, &w), RT_ERR_INVALID); /* nothing shared */
    o.user_context_tokens = 5;
    assert_int_equal(rb_workload_create(&o, &w), RT_ERR_INVALID); /* no users */
    o = opts(RB_WL_SESSIONS, RB_API_CHAT, NULL);
    o.turns = 0;
    assert_int_equal(rb_workload_create(&o, &w), RT_ERR_INVALID);
    o = opts(RB_WL_TRACE, RB_API_CHAT, NULL);
    assert_int_equal(rb_workload_create(&o, &w), RT_ERR_INVALID); /* no file */
    o = opts(RB_WL_SYNTHETIC, RB_API_CHAT, "/nonexistent/model.gguf");
    assert_int_not_equal(rb_workload_create(&o, &w), RT_OK);
    assert_null(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_chat_bpe),
        cmocka_unit_test(test_exact_chat_spm),
        cmocka_unit_test(test_exact_completions_ids),
        cmocka_unit_test(test_prompt_text_after_head),
        cmocka_unit_test(test_body_fields),
        cmocka_unit_test(test_length_distributions),
        cmocka_unit_test(test_warmup_and_total),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_prefix_ids_shared),
        cmocka_unit_test(test_prefix_text_shared),
        cmocka_unit_test(test_system_prompt_and_users),
        cmocka_unit_test(test_sessions_turns),
        cmocka_unit_test(test_sessions_completions_ids),
        cmocka_unit_test(test_trace_replay),
        cmocka_unit_test(test_trace_refused),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
