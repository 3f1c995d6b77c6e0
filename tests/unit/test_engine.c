/* test_engine.c - continuous batching, chunked prefill, prefix caching,
 * preemption and cancellation in the engine, on small generated models
 * (written by ../bin/rotor-model beside this binary). Greedy outputs of
 * requests batched together must equal the same requests run one at a time;
 * top logprobs against a log-softmax of direct model_forward logits; finish
 * timings and prefix-cache counters; batch invariance: every step's logits
 * bit-identical whatever the chunk size, the prefix cache, preemption or the
 * other sequences in the step, on every ISA and KV type, and for
 * mixture-of-experts models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_model_util.h"
#include "rotor/cpu_quant.h"
#include "rotor/engine.h"
#include "rotor/json_grammar.h"
#include "rotor/model.h"
#include "rotor/tokenizer.h"
#include <cjson/cJSON.h>

#define NREQ 6
#define MAXOUT 12

static char model_path[512];
/* q4_1 like SmolLM2 (llama.cpp-order kernels), head_dim 64, GQA 2:1 */
static char q_model_path[512];
/* mixture of experts: qwen2moe (8 experts, 2 per token, a shared expert) in
 * q4_1, and Mixtral-style llama (4 experts) in q8_0 */
static char moe_model_path[512], mix_model_path[512];
/* qwen3moe: per-head q/k norms, heads wider than n_embd / n_head, renormalized experts */
static char q3_model_path[512];
/* Q5_1 and Q5_K (packed with AVX-512: a 5th-bit plane; llama.cpp's order elsewhere) */
static char q5_model_path[512], q5k_model_path[512];

/* the models setup writes (rotor-model gen arguments) and teardown removes */
static const struct {
    char *path;
    const char *tag, *args;
} k_models[] = {
    {model_path, "engine", "--type f32 --tokenizer bpe --seed 11 --n-ctx 512"},
    {q_model_path, "engine-q",
     "--type q4_1 --embd-type q8_0 --tokenizer bpe --seed 12 --n-ctx 512 --n-embd 128 --n-head 2 --n-head-kv 1 "
     "--n-ff 256 --n-layer 2"},
    {moe_model_path, "engine-moe",
     "--arch qwen2moe --type q4_1 --n-expert 8 --n-expert-used 2 --seed 13 --n-ctx 512 --n-embd 128 --n-ff 256 "
     "--n-layer 2"},
    {mix_model_path, "engine-mix", "--type q8_0 --n-expert 4 --n-expert-used 2 --tokenizer bpe --seed 14 --n-ctx 512"},
    {q3_model_path, "engine-q3",
     "--arch qwen3moe --type q4_1 --n-embd 128 --n-head 2 --n-head-kv 1 --head-dim 128 --n-ff 256 --n-expert 8 "
     "--n-expert-used 2 --seed 15 --n-ctx 512"},
    {q5_model_path, "engine-q5",
     "--type q5_1 --embd-type q8_0 --tokenizer bpe --seed 16 --n-ctx 512 --n-embd 128 --n-head 2 --n-head-kv 1 "
     "--n-ff 256 --n-layer 2"},
    {q5k_model_path, "engine-q5k",
     "--type q5_k --embd-type q8_0 --tokenizer bpe --seed 17 --n-ctx 512 --n-embd 256 --n-head 4 --n-head-kv 2 "
     "--n-ff 512 --n-layer 2"},
};

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof k_models / sizeof *k_models; i++)
        if (test_gen_model(k_models[i].path, 512, k_models[i].tag, k_models[i].args)) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof k_models / sizeof *k_models; i++) unlink(k_models[i].path);
    return 0;
}

typedef struct {
    int32_t prompt[80];
    int n_prompt;
    int32_t out[MAXOUT];
    int n_out;
    int finished, n_cached;
} req_t;

static void make_requests(req_t *r)
{
    unsigned x = 7;
    for (int i = 0; i < NREQ; i++) {
        r[i].n_prompt = 3 + 13 * i; /* 3 .. 68 tokens: several blocks, chunked prefills */
        for (int j = 0; j < r[i].n_prompt; j++) {
            x = x * 1103515245u + 12345u;
            r[i].prompt[j] = (int32_t)(10 + (x >> 8) % 400);
        }
        r[i].n_out = r[i].finished = r[i].n_cached = 0;
    }
}

static engine_config_t small_cfg(int max_seqs, int kv_blocks, int budget)
{
    engine_config_t c = engine_config_default();
    c.model_path = model_path;
    c.threads = 2;
    c.block_size = 16;
    c.kv_blocks = kv_blocks;
    c.max_num_seqs = max_seqs;
    c.max_num_batched_tokens = budget;
    c.kv_type = RT_TYPE_F32;
    return c;
}

static void add(engine_t *e, req_t *r, uint64_t id)
{
    engine_request_t q = {.id = id, .prompt = r->prompt, .n_prompt = (size_t)r->n_prompt,
                          .sampling = sampler_params_default(), .max_tokens = MAXOUT, .ignore_eos = true};
    q.sampling.temperature = 0.0f;
    assert_int_equal(engine_add_request(e, &q), RT_OK);
}

/* JSON mode (ENGINE_CONSTRAINT_JSON_OBJECT) on a random model: every
 * output, greedy or sampled, with n-gram drafts or not, is a prefix of a
 * JSON object (the recognizer accepts it whole) with no end-of-generation
 * token in it; a request pushed towards '}' by a logit bias closes its
 * object and finishes STOP with text cJSON parses as an object */
static void json_mode(int spec_tokens)
{
    model_t *m = NULL;
    assert_int_equal(model_load(model_path, &m), RT_OK);
    const tok_vocab_t *v = model_vocab(m);
    const int32_t close = tok_find(v, "}");
    assert_true(close >= 0);
    engine_config_t c = small_cfg(8, 256, 256);
    c.spec.tokens = spec_tokens;
    c.spec.ngram_min = 1;
    c.spec.ngram_max = 3;
    c.spec.max_running = 8;
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    enum { N = 6, OUT = 120 };
    int32_t prompt[12], out[N][OUT];
    int n_out[N] = {0}, finish[N];
    const float bias = 30.0f;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 12; j++) prompt[j] = (int32_t)(20 + (i * 31 + j * 7) % 400);
        engine_request_t q = {.id = (uint64_t)i, .prompt = prompt, .n_prompt = 12,
                              .sampling = sampler_params_default(), .max_tokens = OUT,
                              .constraint = ENGINE_CONSTRAINT_JSON_OBJECT};
        q.sampling.temperature = i % 2 ? 0.9f : 0.0f;
        q.sampling.seed = 100 + (uint64_t)i;
        if (i == N - 1) {
            q.logit_bias_ids = &close;
            q.logit_bias = &bias;
            q.n_logit_bias = 1;
        }
        assert_int_equal(engine_add_request(e, &q), RT_OK);
    }
    engine_event_t ev[256];
    for (int step = 0; engine_has_work(e); step++) {
        size_t n = 0;
        assert_int_equal(engine_step(e, ev, 256, &n, NULL), RT_OK);
        for (size_t k = 0; k < n; k++) {
            const int i = (int)ev[k].request_id;
            if (ev[k].kind == ENGINE_EV_TOKEN) out[i][n_out[i]++] = ev[k].token;
            if (ev[k].kind == ENGINE_EV_FINISH) finish[i] = ev[k].finish;
        }
        assert_true(step < 5000);
    }
    for (int i = 0; i < N; i++) {
        char text[OUT * 64 + 1];
        size_t len = 0;
        for (int j = 0; j < n_out[i]; j++) {
            assert_false(tok_is_eog(v, out[i][j]));
            len += tok_token_to_piece(v, out[i][j], text + len, sizeof text - 1 - len, false);
        }
        text[len] = 0;
        json_state_t st;
        json_state_init(&st, true);
        assert_true(json_state_feed(&st, text, len));
        assert_true(n_out[i] > 0);
        if (finish[i] == ENGINE_FINISH_STOP) {
            assert_true(json_state_done(&st));
            cJSON *j = cJSON_Parse(text);
            assert_non_null(j);
            assert_true(cJSON_IsObject(j));
            cJSON_Delete(j);
        } else {
            assert_int_equal(finish[i], ENGINE_FINISH_LENGTH);
            assert_int_equal(n_out[i], OUT);
        }
    }
    assert_int_equal(finish[N - 1], ENGINE_FINISH_STOP);
    engine_destroy(e);
    model_free(m);
}

static void test_json_mode(void **state)
{
    (void)state;
    json_mode(0);
    json_mode(4);
}

/* run until idle; requests in `late` join after `join_step` steps */
static void run(engine_t *e, req_t *r, int n_first, int join_step, engine_step_stats_t *last)
{
    engine_event_t ev[256];
    for (int i = 0; i < n_first; i++) add(e, &r[i], (uint64_t)i);
    for (int step = 0; engine_has_work(e) || step <= join_step; step++) {
        if (step == join_step)
            for (int i = n_first; i < NREQ; i++) add(e, &r[i], (uint64_t)i);
        size_t n = 0;
        assert_int_equal(engine_step(e, ev, 256, &n, last), RT_OK);
        for (size_t k = 0; k < n; k++) {
            req_t *q = &r[ev[k].request_id];
            if (ev[k].kind == ENGINE_EV_TOKEN) {
                assert_true(q->n_out < MAXOUT);
                q->out[q->n_out++] = ev[k].token;
            } else if (ev[k].kind == ENGINE_EV_FINISH) {
                q->finished = ev[k].finish;
                q->n_cached = ev[k].n_cached;
            }
        }
        assert_true(step < 10000);
    }
}

static void test_batched_equals_one_at_a_time(void **state)
{
    (void)state;
    req_t alone[NREQ], batched[NREQ];
    make_requests(alone);
    make_requests(batched);
    engine_t *e = NULL;
    engine_step_stats_t st;
    /* one at a time */
    for (int i = 0; i < NREQ; i++) {
        engine_config_t c = small_cfg(1, 64, 512);
        assert_int_equal(engine_create(&c, &e), RT_OK);
        req_t one[NREQ];
        memcpy(one, alone, sizeof one);
        engine_event_t ev[64];
        add(e, &one[i], (uint64_t)i);
        while (engine_has_work(e)) {
            size_t n = 0;
            assert_int_equal(engine_step(e, ev, 64, &n, &st), RT_OK);
            for (size_t k = 0; k < n; k++)
                if (ev[k].kind == ENGINE_EV_TOKEN) alone[i].out[alone[i].n_out++] = ev[k].token;
                else if (ev[k].kind == ENGINE_EV_FINISH) alone[i].finished = ev[k].finish;
        }
        engine_destroy(e);
        assert_int_equal(alone[i].n_out, MAXOUT);
        assert_int_equal(alone[i].finished, ENGINE_FINISH_LENGTH);
    }
    /* together, half joining mid-flight, small token budget: chunked prefill */
    engine_config_t c = small_cfg(4, 64, 32);
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, batched, NREQ / 2, 3, &st);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(batched[i].n_out, MAXOUT);
        assert_memory_equal(batched[i].out, alone[i].out, sizeof(int32_t) * MAXOUT);
    }
    assert_int_equal(st.blocks_used, 0);
    engine_destroy(e);
}

static void test_prefix_cache_hit(void **state)
{
    (void)state;
    req_t a[NREQ], b[NREQ];
    make_requests(a);
    make_requests(b);
    engine_config_t c = small_cfg(2, 64, 512);
    engine_t *e = NULL;
    engine_step_stats_t st;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, a, NREQ, 0, &st);
    /* the same prompts again: every full block but the last token's is cached */
    for (int i = 0; i < NREQ; i++) b[i].n_out = 0;
    run(e, b, NREQ, 0, &st);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(b[i].n_cached, ((b[i].n_prompt - 1) / 16) * 16);
        assert_memory_equal(a[i].out, b[i].out, sizeof(int32_t) * MAXOUT);
    }
    bp_event_t evs[512];
    const size_t ne = engine_kv_events_drain(e, evs, 512);
    assert_true(ne > 0);
    for (size_t k = 1; k < ne; k++) assert_true(evs[k].id > evs[k - 1].id);
    engine_destroy(e);
}

static void test_small_pool_preempts_and_completes(void **state)
{
    (void)state;
    req_t r[NREQ], ref[NREQ];
    make_requests(r);
    make_requests(ref);
    engine_t *e = NULL;
    engine_step_stats_t st;
    engine_config_t big = small_cfg(4, 64, 64);
    assert_int_equal(engine_create(&big, &e), RT_OK);
    run(e, ref, NREQ, 0, &st);
    engine_destroy(e);
    /* 9 blocks of 16: the longest request alone needs 6 */
    engine_config_t c = small_cfg(4, 9, 64);
    assert_int_equal(engine_create(&c, &e), RT_OK);
    run(e, r, NREQ, 0, &st);
    for (int i = 0; i < NREQ; i++) {
        assert_int_equal(r[i].n_out, MAXOUT);
        assert_int_equal(r[i].finished, ENGINE_FINISH_LENGTH);
        assert_memory_equal(r[i].out, ref[i].out, sizeof(int32_t) * MAXOUT); /* recompute, same tokens */
    }
    assert_true(st.n_preempted_total > 0);
    assert_int_equal(st.blocks_used, 0);
    engine_destroy(e);
}

static void test_random_cancels_return_every_block(void **state)
{
    (void)state;
    unsigned x = 99;
    for (int round = 0; round < 4; round++) {
        req_t r[NREQ];
        make_requests(r);
        engine_config_t c = small_cfg(3, 8 + 4 * round, 24 + 8 * round);
        engine_t *e = NULL;
        engine_step_stats_t st;
        assert_int_equal(engine_create(&c, &e), RT_OK);
        for (int i = 0; i < NREQ; i++) add(e, &r[i], (uint64_t)i);
        engine_event_t ev[64];
        int live = NREQ;
        for (int step = 0; engine_has_work(e) && step < 2000; step++) {
            x = x * 1103515245u + 12345u;
            if ((x >> 16) % 5 == 0) (void)engine_cancel(e, (x >> 8) % NREQ);
            size_t n = 0;
            assert_int_equal(engine_step(e, ev, 64, &n, &st), RT_OK);
            for (size_t k = 0; k < n; k++)
                if (ev[k].kind == ENGINE_EV_FINISH) live--;
        }
        assert_false(engine_has_work(e));
        assert_int_equal(live, 0);
        assert_int_equal(st.blocks_used, 0);
        assert_int_equal(engine_cancel(e, 0), RT_ERR_NOT_FOUND);
        engine_destroy(e);
    }
}

/* More cancellations than one step's event buffer holds: with the smallest
 * buffer allowed (2 x max_num_seqs), every cancelled request still gets
 * exactly one FINISH (CANCELLED), over several calls, and none is lost. */
static void test_mass_cancel_small_event_buffer(void **state)
{
    (void)state;
    enum { SEQS = 2, N = 4 * SEQS }; /* the engine holds 4 x max_num_seqs requests */
    req_t r[NREQ];
    make_requests(r);
    engine_config_t c = small_cfg(SEQS, 64, 64);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    for (int i = 0; i < N; i++) add(e, &r[i % NREQ], (uint64_t)i);
    engine_event_t ev[2 * SEQS];
    size_t n = 0;
    int finished[N] = {0};
    assert_int_equal(engine_step(e, ev, 2 * SEQS, &n, NULL), RT_OK); /* two start running */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(ev[k].kind, ENGINE_EV_TOKEN);
    for (int i = 0; i < N; i++) assert_int_equal(engine_cancel(e, (uint64_t)i), RT_OK);
    int calls = 0;
    while (engine_has_work(e)) {
        assert_true(++calls < 100);
        assert_int_equal(engine_step(e, ev, 2 * SEQS, &n, NULL), RT_OK);
        assert_true(n <= 2 * SEQS);
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(ev[k].kind, ENGINE_EV_FINISH); /* no token for a cancelled request */
            assert_int_equal(ev[k].finish, ENGINE_FINISH_CANCELLED);
            finished[ev[k].request_id]++;
        }
    }
    assert_true(calls >= 2); /* N cancellations did not fit one call */
    for (int i = 0; i < N; i++) assert_int_equal(finished[i], 1);
    engine_destroy(e);
}

static void test_bad_requests(void **state)
{
    (void)state;
    engine_config_t c = small_cfg(2, 16, 64);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    int32_t p[2] = {1, 1 << 29};
    engine_request_t q = {.id = 1, .prompt = p, .n_prompt = 2, .sampling = sampler_params_default(), .max_tokens = 4};
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID); /* token out of range */
    q.n_prompt = 0;
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID); /* empty */
    q.n_prompt = 1;
    q.max_tokens = 0;
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID);
    q.max_tokens = 4;
    assert_int_equal(engine_add_request(e, &q), RT_OK);
    assert_int_equal(engine_add_request(e, &q), RT_ERR_INVALID); /* duplicate live id */
    engine_destroy(e);
}


/* ------------------------------------------------ logits, references */

#define LMAXOUT 8  /* output tokens per request in the logits tests */
#define LNREQ 16
#define LMAXPROMPT 300

/* every request's logits at every output step, recorded by the observer */
typedef struct {
    float *logits; /* (LNREQ, LMAXOUT, n_vocab) */
    int n_vocab;
    int seen[LNREQ][LMAXOUT];
} rec_t;

static void observe(void *ud, uint64_t id, int step, const float *logits, int n_vocab)
{
    rec_t *r = ud;
    assert_true(id < LNREQ && step >= 0 && step < LMAXOUT && n_vocab == r->n_vocab);
    r->seen[id][step]++;
    memcpy(r->logits + ((size_t)id * LMAXOUT + (size_t)step) * (size_t)n_vocab, logits,
           sizeof(float) * (size_t)n_vocab);
}

static rec_t *rec_new(int n_vocab)
{
    rec_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->n_vocab = n_vocab;
    r->logits = calloc((size_t)LNREQ * LMAXOUT * (size_t)n_vocab, sizeof(float));
    assert_non_null(r->logits);
    return r;
}

static void rec_free(rec_t *r)
{
    free(r->logits);
    free(r);
}

static const float *rec_at(const rec_t *r, int id, int step)
{
    return r->logits + ((size_t)id * LMAXOUT + (size_t)step) * (size_t)r->n_vocab;
}

typedef struct {
    int32_t prompt[LMAXPROMPT];
    int n_prompt;
    int top;               /* top_logprobs asked for */
    float temperature;     /* 0: greedy */
    int32_t out[LMAXOUT];
    int n_out;
    engine_event_t tok_ev[LMAXOUT];
    engine_event_t fin;
} lreq_t;

static void lreq_prompt(lreq_t *q, int n, unsigned seed)
{
    memset(q, 0, sizeof *q);
    q->n_prompt = n;
    for (int j = 0; j < n; j++) {
        seed = seed * 1103515245u + 12345u;
        q->prompt[j] = (int32_t)(10 + (seed >> 8) % 480);
    }
}

static engine_config_t lcfg(const char *path, int max_seqs, int kv_blocks, int budget, rt_type_t kv_type)
{
    engine_config_t c = engine_config_default();
    c.model_path = path;
    c.threads = 2;
    c.block_size = 16;
    c.kv_blocks = kv_blocks;
    c.max_num_seqs = max_seqs;
    c.max_num_batched_tokens = budget;
    c.kv_type = kv_type;
    return c;
}

static void ladd(engine_t *e, lreq_t *q, uint64_t id)
{
    engine_request_t r = {.id = id, .prompt = q->prompt, .n_prompt = (size_t)q->n_prompt,
                          .sampling = sampler_params_default(), .max_tokens = LMAXOUT, .ignore_eos = true,
                          .top_logprobs = q->top};
    r.sampling.temperature = q->temperature;
    r.sampling.seed = 1000 + id;
    q->n_out = 0;
    assert_int_equal(engine_add_request(e, &r), RT_OK);
}

/* requests [0, n_first) now, [n_first, n) after join_step steps; until idle */
static void lrun(engine_t *e, lreq_t *q, int n, int n_first, int join_step, engine_step_stats_t *last)
{
    engine_event_t ev[256];
    for (int i = 0; i < n_first; i++) ladd(e, &q[i], (uint64_t)i);
    for (int step = 0; engine_has_work(e) || step <= join_step; step++) {
        if (step == join_step)
            for (int i = n_first; i < n; i++) ladd(e, &q[i], (uint64_t)i);
        size_t ne = 0;
        assert_int_equal(engine_step(e, ev, 256, &ne, last), RT_OK);
        for (size_t k = 0; k < ne; k++) {
            lreq_t *r = &q[ev[k].request_id];
            if (ev[k].kind == ENGINE_EV_TOKEN) {
                assert_true(r->n_out < LMAXOUT);
                r->tok_ev[r->n_out] = ev[k];
                r->out[r->n_out++] = ev[k].token;
            } else if (ev[k].kind == ENGINE_EV_FINISH) {
                r->fin = ev[k];
            }
        }
        assert_true(step < 20000);
    }
}

/* the vocabulary size of the engine c makes */
static int lvocab(const engine_config_t *c)
{
    engine_t *e = NULL;
    assert_int_equal(engine_create(c, &e), RT_OK);
    const int V = engine_n_vocab(e);
    engine_destroy(e);
    return V;
}

/* one engine, requests q[0..n), logits recorded into rec */
static void lrun_fresh(const engine_config_t *c, lreq_t *q, int n, int n_first, int join_step, rec_t *rec,
                       engine_step_stats_t *last)
{
    engine_t *e = NULL;
    assert_int_equal(engine_create(c, &e), RT_OK);
    engine_set_logits_observer(e, observe, rec);
    lrun(e, q, n, n_first, join_step, last);
    engine_destroy(e);
}

/* logits of the last of tokens[0..n) from one model_forward over all of
 * them in one batch, with the engine's numerics (packed matmuls, engine
 * attention and KV layout) */
static void direct_logits(const char *path, rt_type_t kv_type, const int32_t *tokens, int n, float *out)
{
    model_t *m = NULL;
    kv_cache_t *kv = NULL;
    model_ctx_t *c = NULL;
    assert_int_equal(model_load(path, &m), RT_OK);
    assert_int_equal(model_pack_weights(m), RT_OK);
    assert_int_equal(kv_cache_create_layout(m, 32, 16, kv_type, KV_LAYOUT_ENGINE, &kv), RT_OK);
    assert_int_equal(model_ctx_create(m, 512, 2, &c), RT_OK);
    model_ctx_set_matmul(c, MODEL_MATMUL_PACKED);
    model_ctx_set_attn_order(c, MODEL_ATTN_ENGINE);
    int32_t blocks[32], pos[512], seq[512];
    uint8_t want[512];
    assert_true(n <= 512);
    for (int i = 0; i < 32; i++) blocks[i] = 31 - i;
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = 0, want[i] = i == n - 1;
    kv_block_table_t t = {blocks, 32};
    model_batch_t b = {n, tokens, pos, seq, want, &t, 1};
    assert_int_equal(model_forward(c, kv, &b, out), RT_OK);
    model_ctx_destroy(c);
    kv_cache_destroy(kv);
    model_free(m);
}

/* ------------------------------------------------------- top logprobs */

static void test_top_logprobs(void **state)
{
    (void)state;
    lreq_t q[3];
    lreq_prompt(&q[0], 21, 5);
    q[0].top = ENGINE_MAX_TOP_LOGPROBS;
    lreq_prompt(&q[1], 9, 6);
    q[1].top = 3;
    q[1].temperature = 0.9f;
    lreq_prompt(&q[2], 30, 7); /* no top logprobs */
    engine_config_t c = lcfg(model_path, 4, 64, 512, RT_TYPE_F32);
    const int V = lvocab(&c);
    rec_t *rec = rec_new(V);
    engine_step_stats_t st;
    lrun_fresh(&c, q, 3, 3, 0, rec, &st);
    for (int i = 0; i < 3; i++) assert_int_equal(q[i].n_out, LMAXOUT);

    /* request 0, greedy, 20 alternatives: against a double-precision
     * log-softmax of model_forward's logits for the sequence so far */
    float *ref = malloc(sizeof(float) * (size_t)V);
    int32_t toks[LMAXPROMPT + LMAXOUT];
    memcpy(toks, q[0].prompt, sizeof(int32_t) * (size_t)q[0].n_prompt);
    for (int k = 0; k < LMAXOUT; k++) {
        const engine_event_t *x = &q[0].tok_ev[k];
        const int n = q[0].n_prompt + k;
        direct_logits(model_path, RT_TYPE_F32, toks, n, ref);
        assert_memory_equal(ref, rec_at(rec, 0, k), sizeof(float) * (size_t)V);
        double mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++) mx = ref[v] > mx ? ref[v] : mx;
        for (int v = 0; v < V; v++) sum += exp((double)ref[v] - mx);
        const double lse = mx + log(sum);
        assert_int_equal(x->n_top, ENGINE_MAX_TOP_LOGPROBS);
        bool taken[4096] = {false};
        assert_true(V <= 4096);
        for (int j = 0; j < x->n_top; j++) {
            /* the j-th best of the reference: highest logit not taken, lower id on ties */
            int best = -1;
            for (int v = 0; v < V; v++)
                if (!taken[v] && (best < 0 || ref[v] > ref[best])) best = v;
            taken[best] = true;
            assert_int_equal(x->top_ids[j], best);
            assert_float_equal(x->top_logprobs[j], (float)((double)ref[best] - lse), 1e-5);
            if (j > 0) assert_true(x->top_logprobs[j] <= x->top_logprobs[j - 1]);
        }
        /* greedy: the chosen token is the best one, same logprob bits */
        assert_int_equal(x->token, x->top_ids[0]);
        assert_memory_equal(&x->logprob, &x->top_logprobs[0], sizeof(float));
        toks[n] = x->token;
    }
    /* request 1, sampled, 3 alternatives: sorted, and the chosen token's
     * logprob is its entry when it is among them */
    for (int k = 0; k < LMAXOUT; k++) {
        const engine_event_t *x = &q[1].tok_ev[k];
        assert_int_equal(x->n_top, 3);
        assert_true(x->top_logprobs[0] >= x->top_logprobs[1] && x->top_logprobs[1] >= x->top_logprobs[2]);
        for (int j = 0; j < 3; j++)
            if (x->top_ids[j] == x->token) assert_memory_equal(&x->logprob, &x->top_logprobs[j], sizeof(float));
    }
    /* request 2 asked for no logprobs: none computed */
    for (int k = 0; k < LMAXOUT; k++) {
        assert_int_equal(q[2].tok_ev[k].n_top, 0);
        assert_true(q[2].tok_ev[k].logprob == 0.0f);
    }
    free(ref);
    rec_free(rec);

    /* out of range */
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    engine_request_t r = {.id = 1, .prompt = q[0].prompt, .n_prompt = 4, .sampling = sampler_params_default(),
                          .max_tokens = 2, .top_logprobs = ENGINE_MAX_TOP_LOGPROBS + 1};
    assert_int_equal(engine_add_request(e, &r), RT_ERR_INVALID);
    r.top_logprobs = -1;
    assert_int_equal(engine_add_request(e, &r), RT_ERR_INVALID);
    r.top_logprobs = ENGINE_MAX_TOP_LOGPROBS;
    assert_int_equal(engine_add_request(e, &r), RT_OK);
    engine_destroy(e);
}

/* ------------------------------------------- timings and prefix counters */

static double real_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* t_scheduled lies within the step that first scheduled the request,
 * t_prefill_done within the step that computed its last prompt token
 * (the one with its first TOKEN); never-scheduled requests report 0 */
static void test_finish_timings(void **state)
{
    (void)state;
    lreq_t q[3];
    lreq_prompt(&q[0], 70, 1); /* 5 steps of 16-token chunks */
    lreq_prompt(&q[1], 5, 2);
    lreq_prompt(&q[2], 5, 3);
    engine_config_t c = lcfg(model_path, 1, 64, 16, RT_TYPE_F32);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    for (int i = 0; i < 3; i++) ladd(e, &q[i], (uint64_t)i);
    assert_int_equal(engine_cancel(e, 2), RT_OK); /* cancelled while waiting */
    double t_before[64], t_after[64];
    int first_sched[3] = {-1, -1, -1}, first_tok[3] = {-1, -1, -1}, fin_step[3] = {-1, -1, -1};
    engine_event_t ev[64];
    int step = 0;
    for (; engine_has_work(e); step++) {
        assert_true(step < 64);
        engine_step_stats_t st;
        size_t ne = 0;
        t_before[step] = real_now();
        assert_int_equal(engine_step(e, ev, 64, &ne, &st), RT_OK);
        t_after[step] = real_now();
        for (size_t k = 0; k < ne; k++) {
            const int id = (int)ev[k].request_id;
            if (ev[k].kind == ENGINE_EV_TOKEN && first_tok[id] < 0) first_tok[id] = step;
            if (ev[k].kind == ENGINE_EV_FINISH) {
                q[id].fin = ev[k];
                fin_step[id] = step;
            }
        }
    }
    first_sched[0] = 0;
    first_sched[1] = fin_step[0] + 1; /* max_num_seqs 1: admitted once request 0 is done */
    /* request 0: scheduled in step 0, prompt done in step 4 (70 = 4 * 16 + 6) */
    assert_int_equal(first_tok[0], 4);
    for (int i = 0; i < 2; i++) {
        const engine_event_t *f = &q[i].fin;
        assert_int_equal(f->finish, ENGINE_FINISH_LENGTH);
        assert_true(f->t_scheduled >= t_before[first_sched[i]] && f->t_scheduled <= t_after[first_sched[i]]);
        assert_true(f->t_prefill_done >= t_before[first_tok[i]] && f->t_prefill_done <= t_after[first_tok[i]]);
        assert_true(f->t_prefill_done >= f->t_scheduled);
    }
    assert_true(q[0].fin.t_prefill_done > t_after[0]); /* chunked: done steps after it started */
    assert_int_equal(q[2].fin.finish, ENGINE_FINISH_CANCELLED);
    assert_true(q[2].fin.t_scheduled == 0.0 && q[2].fin.t_prefill_done == 0.0);
    assert_int_equal(fin_step[2], 0);
    engine_destroy(e);
}

static void test_prefix_counters(void **state)
{
    (void)state;
    lreq_t q[2];
    lreq_prompt(&q[0], 50, 9);
    lreq_prompt(&q[1], 20, 10);
    engine_config_t c = lcfg(model_path, 2, 64, 512, RT_TYPE_F32);
    engine_t *e = NULL;
    engine_step_stats_t st;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    lrun(e, q, 2, 2, 0, &st);
    assert_int_equal(st.prefix_query_tokens_total, 70);
    assert_int_equal(st.prefix_hit_tokens_total, 0);
    /* again: (50 - 1) / 16 = 3 and (20 - 1) / 16 = 1 full blocks hit */
    lrun(e, q, 2, 2, 0, &st);
    assert_int_equal(st.prefix_query_tokens_total, 140);
    assert_int_equal(st.prefix_hit_tokens_total, 48 + 16);
    assert_int_equal(q[0].fin.n_cached, 48);
    assert_int_equal(q[1].fin.n_cached, 16);
    engine_destroy(e);
}

/* ---------------------------------------------- split attention (long) */

/* One sequence past an attention chunk (CPU_ATTN_ENGINE_CHUNK positions):
 * its decode steps split the attention over the threads (forward.c:
 * fwd_attn_split; one sequence, one kv head, 2 threads) and must give the
 * bits of one unsplit forward over the sequence so far. */
static void test_long_sequence_split_attention(void **state)
{
    (void)state;
    engine_config_t c = lcfg(q_model_path, 4, 64, 512, RT_TYPE_F16);
    const int V = lvocab(&c);
    rec_t *rec = rec_new(V);
    engine_step_stats_t st;
    lreq_t p;
    lreq_prompt(&p, 290, 99);
    lrun_fresh(&c, &p, 1, 1, 0, rec, &st);
    assert_int_equal(p.n_out, LMAXOUT);
    float *direct = malloc(sizeof(float) * (size_t)V);
    int32_t toks[LMAXPROMPT + LMAXOUT];
    memcpy(toks, p.prompt, sizeof(int32_t) * 290);
    memcpy(toks + 290, p.out, sizeof p.out);
    for (int k = 0; k < LMAXOUT; k++) {
        direct_logits(q_model_path, RT_TYPE_F16, toks, 290 + k, direct);
        assert_memory_equal(direct, rec_at(rec, 0, k), sizeof(float) * (size_t)V);
    }
    free(direct);
    rec_free(rec);
}

/* ------------------------------------------------------ batch invariance */

static void assert_same_run(const lreq_t *a, const rec_t *ra, int ia, const lreq_t *b, const rec_t *rb, int ib,
                            const char *what)
{
    assert_int_equal(a->n_out, LMAXOUT);
    assert_int_equal(b->n_out, LMAXOUT);
    if (memcmp(a->out, b->out, sizeof a->out) != 0) fail_msg("%s: generated tokens differ", what);
    for (int k = 0; k < LMAXOUT; k++) {
        assert_int_equal(ra->seen[ia][k], 1);
        assert_int_equal(rb->seen[ib][k], 1);
        if (memcmp(rec_at(ra, ia, k), rec_at(rb, ib, k), sizeof(float) * (size_t)ra->n_vocab) != 0)
            fail_msg("%s: logits of output step %d differ (isa %s)", what, k, cpu_isa_name(cpu_quant_get_isa()));
    }
}

/* one prompt: chunk sizes 1, 7, 16, 512, the prefix from the cache (one
 * token left to compute, and a prompt extending an earlier request's output:
 * cached blocks holding generated tokens) give the same bits at every step
 * as one cold unchunked run, which gives the bits of one model_forward over
 * the sequence so far in llama.cpp's order */
static void chunking_and_cache(const char *path, rt_type_t kv_type)
{
    engine_config_t c = lcfg(path, 4, 64, 512, kv_type);
    const int V = lvocab(&c);
    rec_t *ref = rec_new(V), *rec = rec_new(V);
    engine_step_stats_t st;
    lreq_t p, r;
    lreq_prompt(&p, 60, 77);
    lrun_fresh(&c, &p, 1, 1, 0, ref, &st);
    float *direct = malloc(sizeof(float) * (size_t)V);
    int32_t toks[LMAXPROMPT + LMAXOUT];
    memcpy(toks, p.prompt, sizeof(int32_t) * 60);
    memcpy(toks + 60, p.out, sizeof p.out);
    for (int k = 0; k < LMAXOUT; k += 3) {
        direct_logits(path, kv_type, toks, 60 + k, direct);
        assert_memory_equal(direct, rec_at(ref, 0, k), sizeof(float) * (size_t)V);
    }
    free(direct);

    const int budgets[4] = {1, 7, 16, 512};
    for (int bi = 0; bi < 4; bi++) {
        engine_config_t cb = lcfg(path, budgets[bi] < 4 ? budgets[bi] : 4, 64, budgets[bi], kv_type);
        memset(rec->seen, 0, sizeof rec->seen);
        r = p;
        lrun_fresh(&cb, &r, 1, 1, 0, rec, &st);
        assert_same_run(&p, ref, 0, &r, rec, 0, "chunked prefill");
    }

    /* prefix cache, in one engine with 16-token chunks */
    engine_config_t cc = lcfg(path, 4, 64, 16, kv_type);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&cc, &e), RT_OK);
    engine_set_logits_observer(e, observe, rec);
    memset(rec->seen, 0, sizeof rec->seen);
    r = p;
    lrun(e, &r, 1, 1, 0, &st);
    assert_same_run(&p, ref, 0, &r, rec, 0, "warm-up run");
    memset(rec->seen, 0, sizeof rec->seen);
    lrun(e, &r, 1, 1, 0, &st);
    assert_int_equal(r.fin.n_cached, 48);
    assert_same_run(&p, ref, 0, &r, rec, 0, "prompt from the prefix cache");

    /* 33 tokens of it: 32 cached, one token to compute */
    lreq_t p33 = p, cold33;
    p33.n_prompt = 33;
    cold33 = p33;
    rec_t *ref33 = rec_new(V);
    lrun_fresh(&c, &cold33, 1, 1, 0, ref33, &st);
    memset(rec->seen, 0, sizeof rec->seen);
    lrun(e, &p33, 1, 1, 0, &st);
    assert_int_equal(p33.fin.n_cached, 32);
    assert_same_run(&cold33, ref33, 0, &p33, rec, 0, "one prompt token after the cache");

    /* a next turn: the prompt, its output and 9 more tokens; the cached
     * blocks hold 4 generated tokens (positions 60..63) */
    lreq_t turn, cold_turn;
    lreq_prompt(&turn, 60 + LMAXOUT + 9, 5);
    memcpy(turn.prompt, p.prompt, sizeof(int32_t) * 60);
    memcpy(turn.prompt + 60, p.out, sizeof p.out);
    cold_turn = turn;
    memset(ref33->seen, 0, sizeof ref33->seen);
    lrun_fresh(&c, &cold_turn, 1, 1, 0, ref33, &st);
    memset(rec->seen, 0, sizeof rec->seen);
    lrun(e, &turn, 1, 1, 0, &st);
    assert_int_equal(turn.fin.n_cached, 64);
    assert_same_run(&cold_turn, ref33, 0, &turn, rec, 0, "next turn over cached output blocks");
    engine_destroy(e);
    rec_free(ref33);
    rec_free(ref);
    rec_free(rec);
}

/* expert parallelism: a rank packs only its share of the experts (8 experts
 * over 2 ranks: half of them each, the rest of the model whole) */
static void test_expert_share_packing(void **state)
{
    (void)state;
    size_t bytes[3];
    const int share[3][2] = {{0, 1}, {0, 2}, {1, 2}};
    for (int i = 0; i < 3; i++) {
        model_t *m = NULL;
        assert_int_equal(model_load(moe_model_path, &m), RT_OK);
        assert_int_equal(model_pack_weights_experts(m, share[i][0], share[i][1]), RT_OK);
        bytes[i] = model_packed_bytes(m);
        model_free(m);
    }
    assert_true(bytes[1] < bytes[0]);
    assert_true(bytes[1] == bytes[2]);            /* 4 experts each */
    assert_true(bytes[0] - bytes[1] < bytes[1]);  /* what it leaves out (the other rank's experts) is less than what it keeps */
    model_t *m = NULL;
    assert_int_equal(model_load(moe_model_path, &m), RT_OK);
    assert_int_equal(model_pack_weights_experts(m, 2, 2), RT_ERR_INVALID);
    model_free(m);
}

/* disaggregation's hand-off: a prefill_only request on one engine, its
 * blocks exported and imported into another, give the second engine's run
 * of the whole request the bits of a cold run; a full pool imports what fits */
static void test_kv_handoff(void **state)
{
    (void)state;
    engine_config_t c = lcfg(model_path, 4, 64, 512, RT_TYPE_F16);
    const int V = lvocab(&c);
    rec_t *ref = rec_new(V), *rec = rec_new(V);
    engine_step_stats_t st;
    lreq_t p, r;
    lreq_prompt(&p, 60, 91);
    lrun_fresh(&c, &p, 1, 1, 0, ref, &st);

    /* the prefill side: the 3 full blocks a decode engine can take (the
     * 4th holds the last prompt token, whose logits it computes itself) */
    engine_config_t cp = lcfg(model_path, 4, 64, 16, RT_TYPE_F16); /* chunked, too */
    engine_t *pe = NULL;
    assert_int_equal(engine_create(&cp, &pe), RT_OK);
    engine_set_logits_observer(pe, observe, rec);
    engine_request_t pr = {.id = 0, .prompt = p.prompt, .n_prompt = 48, .sampling = sampler_params_default(),
                           .max_tokens = 1, .prefill_only = true};
    assert_int_equal(engine_add_request(pe, &pr), RT_OK);
    engine_event_t ev[64];
    int n_finish = 0, n_tokens = 0;
    while (engine_has_work(pe)) {
        size_t ne = 0;
        assert_int_equal(engine_step(pe, ev, 64, &ne, &st), RT_OK);
        for (size_t k = 0; k < ne; k++) {
            n_tokens += ev[k].kind == ENGINE_EV_TOKEN;
            if (ev[k].kind == ENGINE_EV_FINISH) {
                n_finish++;
                assert_int_equal(ev[k].finish, ENGINE_FINISH_PREFILL);
                assert_int_equal(ev[k].n_generated, 0);
                assert_true(ev[k].t_prefill_done > 0);
            }
        }
    }
    assert_int_equal(n_finish, 1);
    assert_int_equal(n_tokens, 0);
    for (int k = 0; k < LMAXOUT; k++) assert_int_equal(rec->seen[0][k], 0); /* no logits */
    const size_t bb = engine_kv_block_bytes(pe);
    assert_true(bb > 0);
    uint8_t *kv = malloc(4 * bb);
    assert_non_null(kv);
    size_t n_out = 9;
    engine_kv_export(pe, p.prompt, 4, kv, &n_out); /* the 4th block was never computed */
    assert_int_equal(n_out, 3);

    /* the decode side: a different pool, another request's blocks in it */
    engine_config_t cd = lcfg(model_path, 4, 40, 512, RT_TYPE_F16);
    engine_t *de = NULL;
    assert_int_equal(engine_create(&cd, &de), RT_OK);
    lreq_t other;
    lreq_prompt(&other, 40, 3);
    lrun(de, &other, 1, 1, 0, &st);
    size_t n_in = 0;
    engine_kv_import(de, p.prompt, 3, kv, &n_in);
    assert_int_equal(n_in, 3);
    engine_kv_import(de, p.prompt, 3, kv, &n_in); /* again: already cached, nothing changes */
    assert_int_equal(n_in, 3);
    engine_set_logits_observer(de, observe, rec);
    r = p;
    lrun(de, &r, 1, 1, 0, &st);
    assert_int_equal(r.fin.n_cached, 48);
    assert_same_run(&p, ref, 0, &r, rec, 0, "decode after a KV hand-off");
    engine_destroy(de);

    /* a pool of 2 blocks takes the first 2; an engine without the prefix exports nothing */
    engine_config_t c2 = lcfg(model_path, 1, 2, 512, RT_TYPE_F16);
    assert_int_equal(engine_create(&c2, &de), RT_OK);
    engine_kv_import(de, p.prompt, 3, kv, &n_in);
    assert_int_equal(n_in, 2);
    engine_kv_export(de, p.prompt, 3, kv, &n_out);
    assert_int_equal(n_out, 2);
    engine_destroy(de);
    engine_kv_export(pe, other.prompt, 2, kv, &n_out);
    assert_int_equal(n_out, 0);
    engine_destroy(pe);
    free(kv);
    rec_free(ref);
    rec_free(rec);
}

/* 16 sequences of mixed lengths (1..96 tokens, half joining mid-flight,
 * chunked prefills sharing steps with decodes; then a pool small enough to
 * preempt) give every sequence the bits it gets alone */
static void company(const char *path, rt_type_t kv_type)
{
    engine_config_t c1 = lcfg(path, 1, 64, 512, kv_type);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c1, &e), RT_OK);
    const int V = engine_n_vocab(e);
    engine_destroy(e);
    lreq_t alone[LNREQ], together[LNREQ];
    for (int i = 0; i < LNREQ; i++) {
        lreq_prompt(&alone[i], i == 0 ? 1 : 1 + (i * 37) % 96, 300 + (unsigned)i);
        alone[i].temperature = i % 3 == 0 ? 0.8f : 0.0f; /* some sampled, same seeds */
    }
    rec_t *ra = rec_new(V), *rb = rec_new(V);
    engine_step_stats_t st;
    for (int i = 0; i < LNREQ; i++) {
        lreq_t one[LNREQ];
        memcpy(one, alone, sizeof one);
        assert_int_equal(engine_create(&c1, &e), RT_OK);
        engine_set_logits_observer(e, observe, ra);
        ladd(e, &one[i], (uint64_t)i);
        engine_event_t ev[8];
        while (engine_has_work(e)) {
            size_t ne = 0;
            assert_int_equal(engine_step(e, ev, 8, &ne, &st), RT_OK);
            for (size_t k = 0; k < ne; k++)
                if (ev[k].kind == ENGINE_EV_TOKEN) alone[i].out[alone[i].n_out++] = ev[k].token;
        }
        engine_destroy(e);
    }
    engine_config_t cb = lcfg(path, 16, 128, 40, kv_type);
    memcpy(together, alone, sizeof together);
    lrun_fresh(&cb, together, LNREQ, LNREQ / 2, 3, rb, &st);
    for (int i = 0; i < LNREQ; i++) assert_same_run(&alone[i], ra, i, &together[i], rb, i, "16 sequences in one step");
    assert_int_equal(st.n_preempted_total, 0);

    /* 14 blocks: preemption by recompute */
    engine_config_t cp = lcfg(path, 16, 14, 40, kv_type);
    memcpy(together, alone, sizeof together);
    memset(rb->seen, 0, sizeof rb->seen);
    lrun_fresh(&cp, together, LNREQ, LNREQ, 0, rb, &st);
    assert_true(st.n_preempted_total > 0);
    for (int i = 0; i < LNREQ; i++) assert_same_run(&alone[i], ra, i, &together[i], rb, i, "with preemption");
    rec_free(ra);
    rec_free(rb);
}

static void test_batch_invariance_chunking_and_cache(void **state)
{
    (void)state;
    const cpu_isa_t best = cpu_quant_detect_isa();
    for (int isa = CPU_ISA_AVX512; isa >= CPU_ISA_SCALAR; isa--) {
        if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
        chunking_and_cache(q_model_path, RT_TYPE_F16);
        chunking_and_cache(q_model_path, RT_TYPE_F32);
        chunking_and_cache(q5_model_path, RT_TYPE_F16);
        chunking_and_cache(q5k_model_path, RT_TYPE_F16);
    }
    chunking_and_cache(model_path, RT_TYPE_F16);
    cpu_quant_set_isa(best);
}

static void test_batch_invariance_company(void **state)
{
    (void)state;
    const cpu_isa_t best = cpu_quant_detect_isa();
    for (int isa = CPU_ISA_AVX512; isa >= CPU_ISA_SCALAR; isa--) {
        if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
        company(q_model_path, RT_TYPE_F16);
        company(q5_model_path, RT_TYPE_F16);
        company(q5k_model_path, RT_TYPE_F16);
    }
    cpu_quant_set_isa(best);
    company(q_model_path, RT_TYPE_F32);
    company(model_path, RT_TYPE_F16);
}

/* mixture of experts: each expert runs over the rows that chose it, gathered
 * from whatever shares the step; a token's bits must not depend on that */
static void test_batch_invariance_moe(void **state)
{
    (void)state;
    chunking_and_cache(moe_model_path, RT_TYPE_F16);
    company(moe_model_path, RT_TYPE_F16);
    chunking_and_cache(mix_model_path, RT_TYPE_F32);
    company(mix_model_path, RT_TYPE_F16);
    chunking_and_cache(q3_model_path, RT_TYPE_F16);
    company(q3_model_path, RT_TYPE_F16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_one_at_a_time),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_prefix_cache_hit),
        cmocka_unit_test(test_small_pool_preempts_and_completes),
        cmocka_unit_test(test_random_cancels_return_every_block),
        cmocka_unit_test(test_mass_cancel_small_event_buffer),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_top_logprobs),
        cmocka_unit_test(test_long_sequence_split_attention),
        cmocka_unit_test(test_finish_timings),
        cmocka_unit_test(test_prefix_counters),
        cmocka_unit_test(test_batch_invariance_chunking_and_cache),
        cmocka_unit_test(test_batch_invariance_company),
        cmocka_unit_test(test_batch_invariance_moe),
        cmocka_unit_test(test_kv_handoff),
        cmocka_unit_test(test_expert_share_packing),
    };
    return cmocka_run_group_tests_name("engine", tests, setup, teardown);
}
