/* test_forward.c - the batched, paged forward pass: two sequences in one
 * batch, with their KV blocks interleaved in the pool, give bit-identical
 * logits to each sequence run alone; decode steps after a batched prefill
 * match too; bad batches are refused. The model is written by
 * rotor-model (found beside this binary: ../bin/rotor-model). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_model_util.h"
#include "rotor/model.h"

static char model_path[512];

static int setup(void **state)
{
    (void)state;
    return test_gen_model(model_path, sizeof model_path, "forward", "--type q8_0 --tokenizer bpe --seed 3");
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    return 0;
}

/* run tokens[0..n) of one sequence at positions p0.., logits of the last */
static void run_seq(model_ctx_t *c, kv_cache_t *kv, const int32_t *blocks, int nb, const int32_t *tok, int n,
                    int p0, float *logits)
{
    int32_t pos[64], seq[64];
    uint8_t want[64];
    for (int i = 0; i < n; i++) {
        pos[i] = p0 + i;
        seq[i] = 0;
        want[i] = i == n - 1;
    }
    kv_block_table_t t = {blocks, nb};
    model_batch_t b = {n, tok, pos, seq, want, &t, 1};
    assert_int_equal(model_forward(c, kv, &b, logits), RT_OK);
}

static void test_two_sequences_in_one_batch(void **state)
{
    (void)state;
    model_t *m = NULL;
    assert_int_equal(model_load(model_path, &m), RT_OK);
    const int V = model_hparams(m)->n_vocab;
    kv_cache_t *kv = NULL;
    model_ctx_t *c = NULL;
    assert_int_equal(kv_cache_create(m, 16, 4, RT_TYPE_F16, &kv), RT_OK);
    assert_int_equal(model_ctx_create(m, 64, 2, &c), RT_OK);
    const int32_t ta[7] = {5, 17, 99, 3, 250, 11, 42}, tb[5] = {7, 300, 8, 120, 64};
    /* alone: A in blocks 0,1 ; B in blocks 2,3 */
    const int32_t ba[2] = {0, 1}, bb[2] = {2, 3};
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V), *l2 = malloc(sizeof(float) * 2 * V);
    run_seq(c, kv, ba, 2, ta, 7, 0, la);
    run_seq(c, kv, bb, 2, tb, 5, 0, lb);
    /* together, interleaved tokens, other blocks (A: 9, 4; B: 6, 13) */
    const int32_t ba2[2] = {9, 4}, bb2[2] = {6, 13};
    kv_block_table_t tables[2] = {{ba2, 2}, {bb2, 2}};
    int32_t tok[12], pos[12], seq[12];
    uint8_t want[12];
    int n = 0;
    for (int i = 0; i < 7; i++) {
        tok[n] = ta[i], pos[n] = i, seq[n] = 0, want[n] = i == 6;
        n++;
        if (i < 5) {
            tok[n] = tb[i], pos[n] = i, seq[n] = 1, want[n] = i == 4;
            n++;
        }
    }
    model_batch_t b = {n, tok, pos, seq, want, tables, 2};
    assert_int_equal(model_forward(c, kv, &b, l2), RT_OK);
    /* logits come in batch order: B's last token (pos 4) precedes A's (pos 6) */
    assert_memory_equal(l2, lb, sizeof(float) * V);
    assert_memory_equal(l2 + V, la, sizeof(float) * V);

    /* one decode step each, batched, equals one step each alone */
    const int32_t na = 77, nbt = 78;
    float *da = malloc(sizeof(float) * V), *db = malloc(sizeof(float) * V);
    run_seq(c, kv, ba, 2, &na, 1, 7, da);
    run_seq(c, kv, bb, 2, &nbt, 1, 5, db);
    int32_t t2[2] = {na, nbt}, p2[2] = {7, 5}, s2[2] = {0, 1};
    uint8_t w2[2] = {1, 1};
    model_batch_t b2 = {2, t2, p2, s2, w2, tables, 2};
    assert_int_equal(model_forward(c, kv, &b2, l2), RT_OK);
    assert_memory_equal(l2, da, sizeof(float) * V);
    assert_memory_equal(l2 + V, db, sizeof(float) * V);
    free(la), free(lb), free(l2), free(da), free(db);
    model_ctx_destroy(c);
    kv_cache_destroy(kv);
    model_free(m);
}

static void test_bad_batches_are_refused(void **state)
{
    (void)state;
    model_t *m = NULL;
    assert_int_equal(model_load(model_path, &m), RT_OK);
    kv_cache_t *kv = NULL;
    model_ctx_t *c = NULL;
    assert_int_equal(kv_cache_create(m, 2, 4, RT_TYPE_F16, &kv), RT_OK);
    assert_int_equal(model_ctx_create(m, 8, 1, &c), RT_OK);
    float *l = malloc(sizeof(float) * model_hparams(m)->n_vocab);
    const int32_t blocks[2] = {0, 1}, bad_block[1] = {7};
    kv_block_table_t t = {blocks, 2}, tb = {bad_block, 1};
    int32_t tok = 1, pos = 0, seq = 0, big = 1 << 30, far = 8;
    uint8_t want = 1;
    model_batch_t b1 = {1, &big, &pos, &seq, &want, &t, 1};
    assert_int_equal(model_forward(c, kv, &b1, l), RT_ERR_RANGE); /* token id */
    model_batch_t b2 = {1, &tok, &far, &seq, &want, &t, 1};
    assert_int_equal(model_forward(c, kv, &b2, l), RT_ERR_RANGE); /* no block for position 8 */
    model_batch_t b3 = {1, &tok, &pos, &seq, &want, &tb, 1};
    assert_int_equal(model_forward(c, kv, &b3, l), RT_ERR_RANGE); /* block id out of the pool */
    model_batch_t b4 = {9, &tok, &pos, &seq, &want, &t, 1};
    assert_int_equal(model_forward(c, kv, &b4, l), RT_ERR_RANGE); /* more tokens than the ctx holds */
    free(l);
    model_ctx_destroy(c);
    kv_cache_destroy(kv);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_sequences_in_one_batch),
        cmocka_unit_test(test_bad_batches_are_refused),
    };
    return cmocka_run_group_tests_name("forward", tests, setup, teardown);
}
