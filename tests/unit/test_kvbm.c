/*
 * test_kvbm.c - the KV block manager's host tier (G2) and disk tier (G3,
 * HDF5): each tier alone (LRU order, drops, the host tier in a seeded
 * randomized run against a model kept by the test with the invariants
 * checked after every operation, the disk tier's rows read back and its
 * file removed), and the engine with them: a prefix evicted from the KV
 * pool comes back from host memory, from disk, or from both, with the same
 * logits to the bit and no prefill of those blocks, the tiers' events share
 * the engine's id sequence, and many requests over small pools give the
 * tokens each gives alone.
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

#include "rotor/engine.h"
#include "rotor/kvbm.h"
#include "test_model_util.h"

static char model_path[256];

static int setup(void **state)
{
    (void)state;
    return test_gen_model(model_path, sizeof model_path, "kvbm",
                          "--type q4_1 --embd-type q8_0 --tokenizer bpe --n-vocab 2000 --seed 21 --n-ctx 512 --n-embd 128 --n-head 2 "
                          "--n-head-kv 1 --n-ff 256 --n-layer 2");
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    return 0;
}

static void check_ok(const kvbm_t *t)
{
    if (kvbm_check(t) != RT_OK) fail_msg("kvbm_check: %s", rt_error_msg());
}

static kvbm_key_t key(uint64_t h) { return (kvbm_key_t){.seq_hash = h, .block_hash = ~h, .n_tokens = 16}; }

static void test_tier_lru(void **state)
{
    (void)state;
    kvbm_t *t = NULL;
    assert_int_equal(kvbm_create(1, 64, &t), RT_ERR_RANGE);
    assert_int_equal(kvbm_create(3, 64, &t), RT_OK);
    kvbm_key_t k, dropped;
    bool did;
    for (uint64_t h = 1; h <= 3; h++) {
        k = key(h);
        char *buf = kvbm_put(t, &k, &dropped, &did);
        assert_non_null(buf);
        assert_false(did);
        memset(buf, (int)h, 64);
    }
    k = key(2);
    assert_null(kvbm_put(t, &k, &dropped, &did)); /* held: the most recent now */
    assert_non_null(kvbm_get(t, 1));              /* 1 the most recent; 3 the least */
    k = key(4);
    assert_non_null(kvbm_put(t, &k, &dropped, &did));
    assert_true(did && dropped.seq_hash == 3 && dropped.block_hash == ~3ull);
    assert_null(kvbm_get(t, 3));
    const char *b1 = kvbm_get(t, 1);
    assert_true(b1[0] == 1 && b1[63] == 1);
    kvbm_stats_t s;
    kvbm_stats(t, &s);
    assert_int_equal(s.capacity, 3);
    assert_int_equal(s.held, 3);
    assert_int_equal(s.stored, 4);
    assert_int_equal(s.dropped, 1);
    assert_int_equal(s.hits, 2);
    check_ok(t);
    kvbm_destroy(t);
    kvbm_destroy(NULL);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* the tier against a model: an array of held hashes in recency order */
static void test_tier_randomized(void **state)
{
    (void)state;
    enum { CAP = 37, H = 120, OPS = 20000 };
    kvbm_t *t = NULL;
    assert_int_equal(kvbm_create(CAP, 8, &t), RT_OK);
    uint64_t model[CAP];
    int n = 0;
    uint64_t s = 2463534242ull;
    for (int op = 0; op < OPS; op++) {
        const uint64_t h = 1 + rnd(&s) % H;
        int at = -1;
        for (int i = 0; i < n; i++)
            if (model[i] == h) at = i;
        if (rnd(&s) % 3) { /* put */
            kvbm_key_t k = key(h), dropped;
            bool did;
            uint64_t *buf = kvbm_put(t, &k, &dropped, &did);
            if (at >= 0) {
                assert_null(buf);
                memmove(model + at, model + at + 1, (size_t)(n - at - 1) * sizeof *model);
                model[n - 1] = h;
            } else {
                assert_non_null(buf);
                *buf = h;
                if (n == CAP) {
                    assert_true(did && dropped.seq_hash == model[0]);
                    memmove(model, model + 1, (size_t)(n - 1) * sizeof *model);
                    n--;
                } else {
                    assert_false(did);
                }
                model[n++] = h;
            }
        } else { /* get */
            const uint64_t *b = kvbm_get(t, h);
            if (at < 0) {
                assert_null(b);
            } else {
                assert_non_null(b);
                assert_true(*b == h); /* the bytes stored with it */
                memmove(model + at, model + at + 1, (size_t)(n - at - 1) * sizeof *model);
                model[n - 1] = h;
            }
        }
        if (op % 7 == 0) check_ok(t);
    }
    kvbm_stats_t st;
    kvbm_stats(t, &st);
    assert_int_equal(st.held, n);
    kvbm_destroy(t);
}

/* ---- the engine with a host tier ---- */

typedef struct {
    float first[4096]; /* the first token's logits */
    int n_vocab;
    int have;
} first_logits_t;

static void observe(void *ud, uint64_t id, int step, const float *logits, int n_vocab)
{
    first_logits_t *f = ud;
    (void)id;
    if (step != 0 || n_vocab > 4096) return;
    memcpy(f->first, logits, sizeof(float) * (size_t)n_vocab);
    f->n_vocab = n_vocab;
    f->have = 1;
}

/* q4_1, 2 layers, kv_dim 64, f16: 2 x 2 x 16 x 64 x 2 = 8 KiB a block */
#define BLOCK_BYTES 8192

static engine_config_t config(int64_t kv_blocks, int64_t host_blocks)
{
    engine_config_t c = engine_config_default();
    c.model_path = model_path;
    c.threads = 1;
    c.kv_blocks = kv_blocks;
    c.max_num_seqs = 4;
    c.max_num_batched_tokens = 64;
    c.host_kv_bytes = host_blocks * BLOCK_BYTES;
    return c;
}

/* run one greedy request to its end; returns its cached prompt tokens */
static int run1(engine_t *e, uint64_t id, const int32_t *p, int n, int gen, int32_t *out)
{
    engine_request_t r = {.id = id, .prompt = p, .n_prompt = (size_t)n, .sampling = sampler_params_default(),
                          .max_tokens = gen, .ignore_eos = true};
    r.sampling.temperature = 0;
    assert_int_equal(engine_add_request(e, &r), RT_OK);
    engine_event_t ev[64];
    int got = 0, cached = -1;
    while (engine_has_work(e)) {
        size_t ne = 0;
        assert_int_equal(engine_step(e, ev, 64, &ne, NULL), RT_OK);
        for (size_t k = 0; k < ne; k++) {
            if (ev[k].kind == ENGINE_EV_TOKEN && out) out[got++] = ev[k].token;
            if (ev[k].kind == ENGINE_EV_FINISH) cached = ev[k].n_cached;
        }
    }
    return cached;
}

static void prompt(int32_t *p, int n, int salt)
{
    for (int i = 0; i < n; i++) p[i] = 3 + (salt * 131 + i * 17) % 1900;
}

/* tiers: none; host (32 blocks); host (2 blocks) and disk (32): a's
 * blocks go on to disk; disk alone */
static const struct {
    int host, disk;
} k_tiers[] = {{0, 0}, {32, 0}, {2, 32}, {0, 32}};

static void test_engine_onboards_from_host(void **state)
{
    (void)state;
    int32_t a[81], b[81], c[81];
    prompt(a, 81, 1);
    prompt(b, 81, 2);
    prompt(c, 81, 3);
    for (size_t v = 0; v < sizeof k_tiers / sizeof *k_tiers; v++) {
        const int with_tier = k_tiers[v].host || k_tiers[v].disk;
        /* 11 blocks: a, b and c need 6 each (5 full, cached after); b takes
         * the 6 free, c the last free one and a's 5 (the least recent) */
        engine_config_t cfg = config(11, k_tiers[v].host);
        cfg.disk_kv_dir = "/tmp";
        cfg.disk_kv_bytes = k_tiers[v].disk * BLOCK_BYTES;
        engine_t *e = NULL;
        assert_int_equal(engine_create(&cfg, &e), RT_OK);
        first_logits_t cold = {0}, warm = {0};
        engine_set_logits_observer(e, observe, &cold);
        int32_t ta[4], ta2[4];
        assert_int_equal(run1(e, 1, a, 81, 4, ta), 0);
        engine_set_logits_observer(e, NULL, NULL);
        assert_int_equal(run1(e, 2, b, 81, 4, NULL), 0);
        assert_int_equal(run1(e, 3, c, 81, 4, NULL), 0);
        engine_set_logits_observer(e, observe, &warm);
        const int cached = run1(e, 4, a, 81, 4, ta2);
        engine_step_stats_t st;
        engine_stats(e, &st);
        if (!with_tier) { /* a's blocks were evicted and are gone */
            assert_int_equal(cached, 0);
            assert_int_equal(st.kvbm_capacity, 0);
        } else { /* all 5 full blocks of a's 80 leading tokens come back */
            assert_int_equal(cached, 80);
            assert_int_equal(st.kvbm_onboarded_total, 5);
            assert_true(st.kvbm_offloaded_total >= 5);
            assert_int_equal(st.kvbm_capacity, k_tiers[v].host);
            assert_int_equal(st.kvbm_disk_capacity, k_tiers[v].disk);
            if (k_tiers[v].disk) assert_true(st.kvbm_disk_blocks >= 3);
            /* the same bytes of KV: the same logits, bit for bit, and tokens */
            assert_true(cold.have && warm.have && cold.n_vocab == warm.n_vocab);
            assert_memory_equal(cold.first, warm.first, sizeof(float) * (size_t)cold.n_vocab);
            assert_memory_equal(ta, ta2, sizeof ta);
            /* G2 events in the engine's one id sequence, with a's hashes */
            /* the tiers' events in the engine's one id sequence; a's 5 blocks
             * (its first 5 G1 STORED events) went to G2 and/or G3 and back
             * to G1 */
            bp_event_t evs[512];
            const size_t n = engine_kv_events_drain(e, evs, 512);
            uint64_t a_hash[5];
            int n_a = 0;
            for (size_t i = 0; i < n; i++) {
                if (i) assert_true(evs[i].id == evs[i - 1].id + 1);
                if (n_a < 5 && evs[i].tier == BP_TIER_G1 && evs[i].kind == BP_EV_STORED) a_hash[n_a++] = evs[i].seq_hash;
            }
            assert_int_equal(n_a, 5);
            for (int j = 0; j < 5; j++) {
                int g1 = 0, g2 = 0, g3 = 0;
                for (size_t i = 0; i < n; i++)
                    if (evs[i].kind == BP_EV_STORED && evs[i].seq_hash == a_hash[j]) {
                        g1 += evs[i].tier == BP_TIER_G1;
                        g2 += evs[i].tier == BP_TIER_G2;
                        g3 += evs[i].tier == BP_TIER_G3;
                    }
                assert_int_equal(g1, 2);
                assert_int_equal(g2, k_tiers[v].host ? 1 : 0);
                if (!k_tiers[v].host) assert_int_equal(g3, 1);
                if (k_tiers[v].host == 2) assert_true(g3 <= 1); /* the ones the 2-block host tier dropped */
            }
        }
        engine_destroy(e);
    }
}

/* Many requests sharing prefixes over a 12-block pool (preemptions too), a
 * 4-block host tier and an 8-block disk tier, several at a time with cancellations: every finished request's
 * tokens equal what it gives alone in a large pool. */
static void test_engine_randomized(void **state)
{
    (void)state;
    enum { N = 24, GEN = 6 };
    int32_t p[N][70];
    int len[N];
    int32_t want[N][GEN];
    uint64_t s = 77;
    for (int i = 0; i < N; i++) {
        len[i] = 20 + (int)(rnd(&s) % 50);
        prompt(p[i], len[i], (int)(rnd(&s) % 4)); /* 4 shared prefixes */
        for (int k = 48; k < len[i]; k++) p[i][k] = 5 + (int)(rnd(&s) % 1800);
    }
    engine_config_t big = config(256, 0);
    engine_t *e = NULL;
    assert_int_equal(engine_create(&big, &e), RT_OK);
    for (int i = 0; i < N; i++) run1(e, (uint64_t)i + 1, p[i], len[i], GEN, want[i]);
    engine_destroy(e);

    engine_config_t small = config(12, 4);
    small.disk_kv_dir = "/tmp";
    small.disk_kv_bytes = 8 * BLOCK_BYTES;
    assert_int_equal(engine_create(&small, &e), RT_OK);
    int32_t got[N][GEN];
    int n_got[N] = {0}, done[N] = {0}, cancelled[N] = {0};
    int next = 0;
    engine_event_t ev[64];
    while (next < N || engine_has_work(e)) {
        while (next < N && (next < 3 || rnd(&s) % 2)) { /* join mid-flight */
            engine_request_t r = {.id = (uint64_t)next + 1, .prompt = p[next], .n_prompt = (size_t)len[next],
                                  .sampling = sampler_params_default(), .max_tokens = GEN, .ignore_eos = true};
            r.sampling.temperature = 0;
            assert_int_equal(engine_add_request(e, &r), RT_OK);
            next++;
            if (rnd(&s) % 2) break;
        }
        if (next > 0 && rnd(&s) % 11 == 0) { /* cancel one at random */
            const int i = (int)(rnd(&s) % (uint64_t)next);
            if (!done[i] && engine_cancel(e, (uint64_t)i + 1) == RT_OK) cancelled[i] = 1;
        }
        size_t ne = 0;
        assert_int_equal(engine_step(e, ev, 64, &ne, NULL), RT_OK);
        for (size_t k = 0; k < ne; k++) {
            const int i = (int)ev[k].request_id - 1;
            if (ev[k].kind == ENGINE_EV_TOKEN) got[i][n_got[i]++] = ev[k].token;
            if (ev[k].kind == ENGINE_EV_FINISH) done[i] = 1;
        }
    }
    int compared = 0;
    for (int i = 0; i < N; i++) {
        assert_true(done[i]);
        if (cancelled[i]) continue;
        assert_int_equal(n_got[i], GEN);
        assert_memory_equal(got[i], want[i], sizeof want[i]);
        compared++;
    }
    assert_true(compared >= N / 3);
    engine_step_stats_t st;
    engine_stats(e, &st);
    assert_true(st.kvbm_offloaded_total > 0 && st.kvbm_onboarded_total > 0);
    assert_int_equal(st.blocks_used, 0); /* every block back */
    engine_destroy(e);
}

/* the disk tier alone: rows written and read back, LRU drops, the file
 * there while the tier is and gone after */
static void test_disk_tier(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "/tmp/rotor-test-kvdisk-%d.h5", (int)getpid());
    kvbm_disk_t *d = NULL;
    assert_int_equal(kvbm_disk_create(path, 1, 64, &d), RT_ERR_RANGE);
    assert_int_equal(kvbm_disk_create("/nonexistent-dir/x.h5", 4, 64, &d), RT_ERR_IO);
    assert_int_equal(kvbm_disk_create(path, 2, 64, &d), RT_OK);
    assert_int_equal(access(path, F_OK), 0);
    char buf[64], back[64];
    kvbm_key_t dropped;
    bool did, stored;
    for (uint64_t h = 1; h <= 3; h++) {
        memset(buf, (int)(0x40 + h), sizeof buf);
        kvbm_key_t k = key(h);
        assert_int_equal(kvbm_disk_put(d, &k, buf, &dropped, &did, &stored), RT_OK);
        assert_true(stored);
        assert_true(did == (h == 3) && (!did || dropped.seq_hash == 1));
    }
    kvbm_key_t k2 = key(2);
    assert_int_equal(kvbm_disk_put(d, &k2, buf, &dropped, &did, &stored), RT_OK);
    assert_false(stored || did); /* held: the most recent */
    assert_int_equal(kvbm_disk_get(d, 1, back), RT_ERR_NOT_FOUND);
    assert_int_equal(kvbm_disk_get(d, 2, back), RT_OK);
    memset(buf, 0x42, sizeof buf);
    assert_memory_equal(back, buf, sizeof buf);
    assert_int_equal(kvbm_disk_get(d, 3, back), RT_OK);
    memset(buf, 0x43, sizeof buf);
    assert_memory_equal(back, buf, sizeof buf);
    if (kvbm_disk_check(d) != RT_OK) fail_msg("%s", rt_error_msg());
    kvbm_stats_t st;
    kvbm_disk_stats(d, &st);
    assert_int_equal(st.held, 2);
    assert_int_equal(st.dropped, 1);
    kvbm_disk_destroy(d);
    assert_int_equal(access(path, F_OK), -1); /* a cache: removed */
    kvbm_disk_destroy(NULL);
}

static void test_bad_tier(void **state)
{
    (void)state;
    engine_config_t c = config(12, 0);
    c.host_kv_bytes = 8192; /* one block */
    engine_t *e = NULL;
    assert_int_equal(engine_create(&c, &e), RT_ERR_RANGE);
    assert_non_null(strstr(rt_error_msg(), "kvbm:host_bytes"));
    c = config(12, 0); /* a disk tier where no folder is */
    c.disk_kv_dir = "/nonexistent-rotor-dir";
    c.disk_kv_bytes = 1 << 20;
    assert_int_equal(engine_create(&c, &e), RT_ERR_IO);
    assert_non_null(strstr(rt_error_msg(), "kvbm:disk_dir"));
    assert_non_null(strstr(rt_error_msg(), "/nonexistent-rotor-dir/rotor-kv-"));
    c = config(12, 0);
    c.backend = "sim"; /* no KV bytes to offload */
    c.host_kv_bytes = 1 << 20;
    assert_int_equal(engine_create(&c, &e), RT_ERR_UNSUPPORTED);
    assert_non_null(strstr(rt_error_msg(), "sim"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tier_lru),          cmocka_unit_test(test_tier_randomized),
        cmocka_unit_test(test_engine_onboards_from_host), cmocka_unit_test(test_engine_randomized),
        cmocka_unit_test(test_disk_tier),         cmocka_unit_test(test_bad_tier),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
