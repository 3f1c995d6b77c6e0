/*
 * test_sim.c - the sim backend: its time model against figures computed
 * here by hand (Llama-3-8B's published parameter count and KV size, the
 * roofline of a decode and of a prefill on an H100, an MoE's experts), and
 * the engine running over it: every step sleeps at least the modelled time,
 * the tokens are a fixed function of the prompt (any batch company), the KV
 * pool follows the GPU's memory, prefix caching works, bad settings are
 * refused with a message.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rotor/engine.h"
#include "rotor/sim_model.h"
#include "test_model_util.h"

static char model_path[256];

static int setup(void **state)
{
    (void)state;
    return test_gen_model(model_path, sizeof model_path, "sim",
                          "--tokenizer bpe --n-vocab 2000 --n-ctx 512 --n-layer 2 --n-embd 64 --n-head 4 --n-head-kv 2 "
                          "--n-ff 128");
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    return 0;
}

static sim_cost_t h100(void)
{
    return (sim_cost_t){.gpu = *sim_gpu_find("h100"), .mfu = 0.5, .mbu = 0.8, .overhead_s = 150e-6,
                        .weight_bytes = 2, .kv_bytes = 2};
}

static void test_llama3_8b_figures(void **state)
{
    (void)state;
    sim_shape_t s;
    assert_int_equal(sim_shape_preset("llama3-8b", &s), RT_OK);
    /* Meta's model card: 8.03B parameters; 128 KiB of BF16 KV per token */
    assert_true(fabs(sim_params_total(&s) - 8.03e9) < 0.01e9);
    assert_true(sim_kv_bytes_per_token(&s, &(sim_cost_t){.kv_bytes = 2}) == 131072.0);
    const sim_cost_t c = h100();
    /* one decode token at position 1023: the weights (less the embedding) and
     * 1024 tokens of KV from HBM at 80% of 3.35 TB/s, + 150 us */
    const double bytes = (8.03e9 - 128256.0 * 4096) * 2 + 1024 * 131072.0;
    const double want = 150e-6 + bytes / (3350e9 * 0.8);
    const double got = sim_step_seconds(&s, &c, 1, 1, 1024, 1024);
    assert_true(fabs(got - want) / want < 0.01);
    assert_true(got > 5.5e-3 && got < 6.5e-3); /* ~6 ms: ~160 tokens/s, the bandwidth bound */
    /* a 4096-token prefill is compute-bound: 2 x 7.5G x 4096 + attention over a triangle */
    const double attended = 4096.0 * 4097.0 / 2;
    const double flops = 2 * (8.03e9 - 2 * 128256.0 * 4096) * 4096 + 2 * 128256.0 * 4096 + 4 * 32 * 4096.0 * attended;
    const double want_p = 150e-6 + flops / (989e12 * 0.5);
    const double got_p = sim_step_seconds(&s, &c, 4096, 1, attended, 4096);
    assert_true(fabs(got_p - want_p) / want_p < 0.01);
    /* an empty step is the overhead alone */
    assert_true(sim_step_seconds(&s, &c, 0, 0, 0, 0) == 150e-6);
    assert_int_equal(sim_shape_preset("gpt-5", &s), RT_ERR_NOT_FOUND);
    assert_null(sim_gpu_find("tpu"));
    assert_non_null(sim_gpu_find("b200"));
}

static void test_moe_experts(void **state)
{
    (void)state;
    /* 8 experts of ff 1024, 2 per token */
    const sim_shape_t s = {.n_layer = 4, .n_embd = 512, .n_head = 8, .n_head_kv = 8, .head_dim = 64, .n_ff = 1024,
                           .n_vocab = 1000, .n_expert = 8, .n_expert_used = 2, .n_ff_exp = 1024};
    const double attn = 512.0 * (2 * 512 + 2 * 512), expert = 3.0 * 512 * 1024, router = 512.0 * 8;
    const double head = 1000.0 * 512;
    assert_true(sim_params_total(&s) == 4 * (attn + router + 8 * expert) + 2 * head);
    assert_true(sim_params_active(&s) == 4 * (attn + router + 2 * expert) + head);
    /* memory-bound: one token reads 2 experts, many tokens all 8 */
    sim_cost_t c = h100();
    c.overhead_s = 0;
    const double one = sim_step_seconds(&s, &c, 1, 1, 1, 1), many = sim_step_seconds(&s, &c, 64, 0, 64, 64);
    const double bw = 3350e9 * 0.8;
    assert_true(fabs(one - ((4 * (attn + router + 2 * expert) + head) * 2 + 1 * 2 * 4 * 512 * 2.0) / bw) < 1e-12);
    assert_true(many > one * 2.5);
}

static engine_config_t sim_config(void)
{
    engine_config_t c = engine_config_default();
    c.backend = "sim";
    c.model_path = model_path;
    c.max_num_seqs = 8;
    c.max_num_batched_tokens = 64;
    /* a slow "GPU", so steps take milliseconds */
    c.sim.tflops = 1e-3;
    c.sim.hbm_gbps = 0.1;
    return c;
}

static void run(engine_t *e, int n, const int32_t *const *prompts, const size_t *lens, int gen, int32_t out[][16])
{
    for (int i = 0; i < n; i++) {
        engine_request_t r = {.id = (uint64_t)i + 1, .prompt = prompts[i], .n_prompt = lens[i],
                              .sampling = sampler_params_default(), .max_tokens = gen, .ignore_eos = true};
        r.sampling.temperature = 0.8f; /* any sampling lands on the backend's token */
        r.sampling.seed = 5 + (uint64_t)i;
        assert_int_equal(engine_add_request(e, &r), RT_OK);
    }
    int got[8] = {0};
    engine_event_t ev[64];
    while (engine_has_work(e)) {
        size_t ne = 0;
        engine_step_stats_t st;
        assert_int_equal(engine_step(e, ev, 64, &ne, &st), RT_OK);
        for (size_t k = 0; k < ne; k++)
            if (ev[k].kind == ENGINE_EV_TOKEN) {
                const int i = (int)ev[k].request_id - 1;
                out[i][got[i]++] = ev[k].token;
            }
    }
    for (int i = 0; i < n; i++) assert_int_equal(got[i], gen);
}

static void test_engine_over_sim(void **state)
{
    (void)state;
    engine_config_t c = sim_config();
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    engine_step_stats_t s0;
    engine_stats(e, &s0);
    assert_int_equal(s0.blocks_total, 1 << 18); /* 72 GiB of an H100 for a tiny model: the cap */
    int32_t a[40], b[21];
    for (int i = 0; i < 40; i++) a[i] = 100 + 7 * i;
    for (int i = 0; i < 21; i++) b[i] = 900 + 3 * i;
    const int32_t *pa[1] = {a}, *pb[1] = {b}, *pab[2] = {a, b};
    const size_t la[1] = {40}, lb[1] = {21}, lab[2] = {40, 21};
    int32_t alone_a[1][16], alone_b[1][16], both[2][16], again[1][16];
    run(e, 1, pa, la, 12, alone_a);
    run(e, 1, pb, lb, 12, alone_b);
    run(e, 2, pab, lab, 12, both);
    assert_memory_equal(alone_a[0], both[0], 12 * sizeof(int32_t));
    assert_memory_equal(alone_b[0], both[1], 12 * sizeof(int32_t));
    for (int i = 0; i < 12; i++) {
        assert_true(alone_a[0][i] >= 500 && alone_a[0][i] < 1500); /* the middle of the vocabulary */
    }
    /* the prefix cache is the engine's own: a repeat finds a's full blocks */
    engine_stats(e, &s0);
    const int64_t hits = s0.prefix_hit_tokens_total;
    run(e, 1, pa, la, 12, again);
    engine_stats(e, &s0);
    assert_int_equal(s0.prefix_hit_tokens_total - hits, 32);
    assert_memory_equal(again[0], alone_a[0], 12 * sizeof(int32_t));
    engine_destroy(e);
}

/* every step lasts at least what the time model says (a lower bound: no
 * wall-clock limit), here a decode-only step of 2 sequences */
static void test_steps_take_the_modelled_time(void **state)
{
    (void)state;
    engine_config_t c = sim_config();
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    int32_t p[2][20];
    for (int i = 0; i < 20; i++) p[0][i] = 50 + i, p[1][i] = 60 + i;
    for (int i = 0; i < 2; i++) {
        engine_request_t r = {.id = (uint64_t)i + 1, .prompt = p[i], .n_prompt = 20,
                              .sampling = sampler_params_default(), .max_tokens = 4, .ignore_eos = true};
        assert_int_equal(engine_add_request(e, &r), RT_OK);
    }
    const sim_shape_t shape = {.n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 2, .head_dim = 16,
                               .n_ff = 128, .n_vocab = 2000};
    sim_cost_t cost = {.gpu = *sim_gpu_find("h100"), .mfu = c.sim.mfu, .mbu = c.sim.mbu,
                       .overhead_s = c.sim.overhead_s, .weight_bytes = c.sim.weight_bytes, .kv_bytes = c.sim.kv_bytes};
    cost.gpu.tflops = c.sim.tflops;
    cost.gpu.hbm_gbps = c.sim.hbm_gbps;
    engine_event_t ev[64];
    int decode_steps = 0;
    while (engine_has_work(e)) {
        size_t ne = 0;
        engine_step_stats_t st;
        assert_int_equal(engine_step(e, ev, 64, &ne, &st), RT_OK);
        if (st.n_prefill_tokens == 0 && st.n_decode_tokens == 2) {
            /* positions 20 + k of both: each attends to 21 + k, KV of 21 + k */
            const int k = decode_steps++;
            const double want = sim_step_seconds(&shape, &cost, 2, 2, 2.0 * (21 + k), 2.0 * (21 + k));
            assert_true(want > 2e-3); /* the slow GPU: milliseconds */
            assert_true(st.step_s >= want);
        }
    }
    assert_int_equal(decode_steps, 3);
    engine_destroy(e);
}

static void test_bad_settings(void **state)
{
    (void)state;
    engine_config_t c = sim_config();
    engine_t *e = NULL;
    c.sim.gpu = "tpu";
    assert_int_equal(engine_create(&c, &e), RT_ERR_INVALID);
    assert_non_null(strstr(rt_error_msg(), "sim:gpu"));
    c = sim_config();
    c.sim.shape = "gpt-5";
    assert_int_equal(engine_create(&c, &e), RT_ERR_NOT_FOUND);
    assert_non_null(strstr(rt_error_msg(), "llama3-8b"));
    /* a model too big for the GPU's memory: 8B BF16 weights on an L40S at 30% */
    c = sim_config();
    c.sim.shape = "llama3-8b";
    c.sim.gpu = "l40s";
    c.sim.gpu_memory_utilization = 0.3;
    assert_int_equal(engine_create(&c, &e), RT_ERR_RANGE);
    assert_non_null(strstr(rt_error_msg(), "leave no room"));
    /* the same on an H100 at 90%: (72 GiB - 16 GB) / (16 x 128 KiB) blocks */
    c.sim.gpu = "h100";
    c.sim.gpu_memory_utilization = 0.9;
    assert_int_equal(engine_create(&c, &e), RT_OK);
    engine_step_stats_t s;
    engine_stats(e, &s);
    const double want = (80.0 * 1073741824.0 * 0.9 - 8.03e9 * 2) / (16 * 131072.0);
    assert_true(fabs(s.blocks_total - want) < want * 0.01);
    engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3_8b_figures),           cmocka_unit_test(test_moe_experts),
        cmocka_unit_test(test_engine_over_sim),             cmocka_unit_test(test_steps_take_the_modelled_time),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
