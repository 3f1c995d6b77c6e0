/* test_forward_noalloc.c - a decode step (and a prefill chunk) of
 * model_forward allocates no memory, and neither does an engine step
 * (batched decode with sampling and top logprobs, prefill chunks, finishing):
 * also with 16 sequences, whose decode steps take the data-parallel forward;
 * malloc and friends are counted by wrappers defined in this binary (they
 * interpose on glibc's). Not under AddressSanitizer, which owns malloc
 * itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_model_util.h"
#include "rotor/engine.h"
#include "rotor/model.h"

#if defined(__SANITIZE_ADDRESS__)
#define NOALLOC_COUNTING 0
#else
#define NOALLOC_COUNTING 1
static _Atomic long g_allocs;
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
void *malloc(size_t n) { atomic_fetch_add(&g_allocs, 1); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add(&g_allocs, 1); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add(&g_allocs, 1); return __libc_realloc(p, n); }
void *aligned_alloc(size_t al, size_t n) { atomic_fetch_add(&g_allocs, 1); return __libc_memalign(al, n); }
int posix_memalign(void **p, size_t al, size_t n)
{
    atomic_fetch_add(&g_allocs, 1);
    *p = __libc_memalign(al, n);
    return *p ? 0 : 12;
}
#endif

static char model_path[512], moe_path[512];

static int setup(void **state)
{
    (void)state;
    if (test_gen_model(moe_path, sizeof moe_path, "noalloc-moe",
                       "--arch qwen2moe --type q4_1 --n-expert 8 --n-expert-used 2 --seed 5"))
        return -1;
    return test_gen_model(model_path, sizeof model_path, "noalloc", "--type q4_1 --tokenizer bpe --seed 4");
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    unlink(moe_path);
    return 0;
}

static void test_forward_allocates_nothing(void **state)
{
    (void)state;
    if (!NOALLOC_COUNTING) skip();
    model_t *m = NULL;
    kv_cache_t *kv = NULL;
    model_ctx_t *c = NULL;
    assert_int_equal(model_load(model_path, &m), RT_OK);
    assert_int_equal(kv_cache_create(m, 8, 16, RT_TYPE_F16, &kv), RT_OK);
#if NOALLOC_COUNTING
    const long at_create = atomic_load(&g_allocs);
#endif
    assert_int_equal(model_ctx_create(m, 32, 2, &c), RT_OK);
#if NOALLOC_COUNTING
    assert_true(atomic_load(&g_allocs) > at_create); /* the counter does see the library's allocations */
#endif
    float *logits = malloc(sizeof(float) * model_hparams(m)->n_vocab);
    const int32_t blocks[8] = {3, 1, 4, 0, 5, 2, 7, 6};
    kv_block_table_t t = {blocks, 8};
    int32_t tok[32], pos[32], seq[32] = {0};
    uint8_t want[32] = {0};
    for (int i = 0; i < 32; i++) tok[i] = 10 + 7 * i, pos[i] = i;
    want[31] = 1;
    model_batch_t pre = {32, tok, pos, seq, want, &t, 1};
    assert_int_equal(model_forward(c, kv, &pre, logits), RT_OK); /* warm-up: first-touch only */
#if NOALLOC_COUNTING
    const long before = atomic_load(&g_allocs);
    assert_int_equal(model_forward(c, kv, &pre, logits), RT_OK); /* a prefill chunk */
    for (int step = 0; step < 40; step++) {                   /* decode steps */
        int32_t tk = 5 + step, p = 32 + step, s = 0;
        uint8_t w = 1;
        model_batch_t dec = {1, &tk, &p, &s, &w, &t, 1};
        assert_int_equal(model_forward(c, kv, &dec, logits), RT_OK);
    }
    assert_int_equal(atomic_load(&g_allocs) - before, 0);
#endif
    free(logits);
    model_ctx_destroy(c);
    kv_cache_destroy(kv);
    model_free(m);
}

/* n_req requests of 10, 20, 30, 40 tokens (cycling), max_seqs at once;
 * spec_tokens > 0: with n-gram speculative decoding */
static void engine_steps_allocate_nothing(const char *path, int n_req, int max_seqs, int budget, int spec_tokens)
{
    engine_config_t c = engine_config_default();
    c.spec.tokens = spec_tokens;
    c.spec.ngram_min = 1;
    c.spec.ngram_max = 3;
    c.spec.max_running = max_seqs;
    c.model_path = path;
    c.threads = 2;
    c.kv_blocks = 64 * (n_req + 3) / 4;
    c.max_num_seqs = max_seqs;
    c.max_num_batched_tokens = budget;
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    int32_t prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = 10 + 11 * i;
    for (int r = 0; r < n_req; r++) {
        engine_request_t q = {.id = (uint64_t)r, .prompt = prompt, .n_prompt = (size_t)(10 + 10 * (r % 4)),
                              .sampling = sampler_params_default(), .max_tokens = 30 + r % 4,
                              .ignore_eos = true, .top_logprobs = 5 * (r % 4)};
        q.sampling.temperature = r % 2 ? 0.7f : 0.0f;
        q.sampling.repetition_penalty = 1.1f;
        assert_int_equal(engine_add_request(e, &q), RT_OK);
    }
    engine_event_t ev[64]; /* 2 x max_num_seqs or more */
    engine_step_stats_t st;
    size_t n = 0;
    assert_int_equal(engine_step(e, ev, 64, &n, &st), RT_OK); /* warm-up: first-touch only */
#if NOALLOC_COUNTING
    const long before = atomic_load(&g_allocs);
    int steps = 0, finished = 0;
    for (; engine_has_work(e); steps++) {
        assert_int_equal(engine_step(e, ev, 64, &n, &st), RT_OK);
        for (size_t k = 0; k < n; k++) finished += ev[k].kind == ENGINE_EV_FINISH;
    }
    assert_int_equal(atomic_load(&g_allocs) - before, 0);
    assert_int_equal(finished, n_req);
    assert_true(steps > 30);
    if (spec_tokens) assert_true(st.spec_draft_tokens_total > 0); /* drafts were verified */
#endif
    engine_destroy(e);
}

static void test_engine_step_allocates_nothing(void **state)
{
    (void)state;
    if (!NOALLOC_COUNTING) skip();
    engine_steps_allocate_nothing(model_path, 4, 4, 24, 0);
    engine_steps_allocate_nothing(model_path, 16, 16, 64, 0); /* 16 decoding sequences: the data-parallel forward */
    engine_steps_allocate_nothing(moe_path, 4, 4, 24, 0);      /* mixture of experts: gathered rows, shared expert */
    engine_steps_allocate_nothing(moe_path, 16, 16, 64, 0);
    engine_steps_allocate_nothing(model_path, 4, 4, 24, 4);   /* speculative decoding: drafts and their rows */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_forward_allocates_nothing),
                                       cmocka_unit_test(test_engine_step_allocates_nothing)};
    return cmocka_run_group_tests_name("forward-noalloc", tests, setup, teardown);
}
