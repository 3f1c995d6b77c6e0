/* test_forward.c - the batched, paged forward pass: two sequences in one
 * batch, with their KV blocks interleaved in the pool, give bit-identical
 * logits to each sequence run alone; decode steps after a batched prefill
 * match too; the engine's data-parallel forward (whole sequences per thread,
 * for batches of 8+ tokens per thread) gives each sequence's logits the
 * bits of its forward alone; with the batch-invariant attention order, every token's logits
 * are the same in one 100-token batch as in chunks of 1 to 13 (the matmuls'
 * batched tiles against the dot tiles, wide rows); bad batches are refused.
 * The models are written by rotor-model (found beside this binary:
 * ../bin/rotor-model). */
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
#include "rotor/cpu_quant.h"
#include "rotor/model.h"

static char model_path[512];
/* q4_1 with a wide FFN (2048: 64 blocks per row for the down projection) */
static char wide_path[512];
/* f32 weights, 3 query heads of 64 per kv head: no activation quantization
 * to absorb a last-bit difference in the attention */
static char gqa_path[512];

static int setup(void **state)
{
    (void)state;
    if (test_gen_model(model_path, sizeof model_path, "forward", "--type q8_0 --tokenizer bpe --seed 3")) return -1;
    if (test_gen_model(gqa_path, sizeof gqa_path, "forward-gqa",
                       "--type f32 --tokenizer bpe --seed 9 --n-embd 384 --n-head 6 --n-head-kv 2 --n-ff 256"))
        return -1;
    return test_gen_model(wide_path, sizeof wide_path, "forward-wide",
                          "--type q4_1 --embd-type q8_0 --tokenizer bpe --seed 5 --n-embd 128 --n-head 2 "
                          "--n-head-kv 1 --n-ff 2048");
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_path);
    unlink(wide_path);
    unlink(gqa_path);
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

/* The engine's setup (packed weights, engine attention and KV layout), 2 or 3
 * threads: 16 sequences prefilled in one batch of 48 tokens, then two decode
 * steps of 16 tokens (data-parallel where each thread gets 8+ tokens of whole
 * sequences: all three steps with 2 threads, the prefill with 3) against the
 * same sequences run one forward each (too small to split that way) in
 * another cache with other blocks: the same bits. */
static void data_parallel_same_bits(const char *path, int threads)
{
    enum { S = 16, P = 3 };
    model_t *m = NULL;
    assert_int_equal(model_load(path, &m), RT_OK);
    assert_int_equal(model_pack_weights(m), RT_OK);
    const int V = model_hparams(m)->n_vocab;
    kv_cache_t *kv[2] = {NULL, NULL};
    model_ctx_t *c = NULL;
    for (int k = 0; k < 2; k++)
        assert_int_equal(kv_cache_create_layout(m, 2 * S, 16, RT_TYPE_F16, KV_LAYOUT_ENGINE, &kv[k]), RT_OK);
    assert_int_equal(model_ctx_create(m, S * P, threads, &c), RT_OK);
    model_ctx_set_attn_order(c, MODEL_ATTN_ENGINE);
    model_ctx_set_matmul(c, MODEL_MATMUL_PACKED);
    int32_t blk[2][S];
    kv_block_table_t tables[2][S];
    for (int s = 0; s < S; s++) {
        blk[0][s] = s, blk[1][s] = 2 * S - 1 - 2 * s; /* another block for each sequence in the second cache */
        tables[0][s] = (kv_block_table_t){&blk[0][s], 1};
        tables[1][s] = (kv_block_table_t){&blk[1][s], 1};
    }
    float *batched = malloc(sizeof(float) * (size_t)V * S), *alone = malloc(sizeof(float) * (size_t)V * S);
    int32_t tok[S * P], pos[S * P], seq[S * P];
    uint8_t want[S * P];
    for (int step = 0; step < 3; step++) {
        const int per = step == 0 ? P : 1, p0 = step == 0 ? 0 : P + step - 1;
        for (int s = 0; s < S; s++)
            for (int j = 0; j < per; j++) {
                const int i = s * per + j;
                tok[i] = (int32_t)((s * 131 + (p0 + j) * 17 + 5) % (V - 10) + 5);
                pos[i] = p0 + j, seq[i] = s, want[i] = j == per - 1;
            }
        model_batch_t b = {S * per, tok, pos, seq, want, tables[0], S};
        assert_int_equal(model_forward(c, kv[0], &b, batched), RT_OK);
        for (int s = 0; s < S; s++) {
            int32_t zero[P] = {0};
            model_batch_t one = {per, tok + s * per, pos + s * per, zero, want + s * per, &tables[1][s], 1};
            assert_int_equal(model_forward(c, kv[1], &one, alone + (size_t)s * V), RT_OK);
        }
        for (int s = 0; s < S; s++)
            if (memcmp(batched + (size_t)s * V, alone + (size_t)s * V, sizeof(float) * (size_t)V) != 0)
                fail_msg("%s, %d threads, step %d sequence %d: data-parallel batch and alone differ", path, threads,
                         step, s);
    }
    free(batched);
    free(alone);
    model_ctx_destroy(c);
    kv_cache_destroy(kv[0]);
    kv_cache_destroy(kv[1]);
    model_free(m);
}

static void test_data_parallel_same_bits(void **state)
{
    (void)state;
    data_parallel_same_bits(wide_path, 2); /* q4_1: packed GEMM */
    data_parallel_same_bits(gqa_path, 2);  /* f32: cpu_matmul; 3 query heads per kv head */
    data_parallel_same_bits(wide_path, 3); /* three shares of the 48-token prefill */
}

static void chunked_vs_whole(cpu_isa_t isa, rt_type_t kv_type)
{
    enum { N = 100 };
    if (cpu_quant_set_isa(isa) != isa) return;
    model_t *m = NULL;
    assert_int_equal(model_load(wide_path, &m), RT_OK);
    const int V = model_hparams(m)->n_vocab;
    kv_cache_t *kv = NULL;
    model_ctx_t *c = NULL;
    assert_int_equal(kv_cache_create(m, 8, 16, kv_type, &kv), RT_OK);
    assert_int_equal(model_ctx_create(m, N, 2, &c), RT_OK);
    model_ctx_set_attn_order(c, MODEL_ATTN_INVARIANT);
    float *whole = malloc(sizeof(float) * (size_t)V * N), *part = malloc(sizeof(float) * (size_t)V * N);
    int32_t tok[N], pos[N], seq[N] = {0}, blocks[8] = {5, 2, 7, 0, 3, 1, 6, 4};
    uint8_t want[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 37 + 11) % (V - 20) + 10), pos[i] = i, want[i] = 1;
    kv_block_table_t t = {blocks, 8};
    model_batch_t b = {N, tok, pos, seq, want, &t, 1};
    assert_int_equal(model_forward(c, kv, &b, whole), RT_OK);
    int done = 0;
    for (int chunk = 1; done < N; chunk = chunk % 13 + 1) {
        const int n = N - done < chunk ? N - done : chunk;
        model_batch_t bc = {n, tok + done, pos + done, seq, want, &t, 1};
        assert_int_equal(model_forward(c, kv, &bc, part + (size_t)done * V), RT_OK);
        done += n;
    }
    for (int i = 0; i < N; i++)
        if (memcmp(whole + (size_t)i * V, part + (size_t)i * V, sizeof(float) * (size_t)V) != 0)
            fail_msg("token %d: logits differ between one batch and chunks (isa %s)", i, cpu_isa_name(isa));
    free(whole);
    free(part);
    model_ctx_destroy(c);
    kv_cache_destroy(kv);
    model_free(m);
}

static void test_invariant_order_chunked_equals_whole(void **state)
{
    (void)state;
    const cpu_isa_t best = cpu_quant_detect_isa();
    for (int isa = CPU_ISA_AVX512; isa >= CPU_ISA_SCALAR; isa--) {
        chunked_vs_whole((cpu_isa_t)isa, RT_TYPE_F16);
        chunked_vs_whole((cpu_isa_t)isa, RT_TYPE_F32);
    }
    cpu_quant_set_isa(best);
}

/* llama.cpp's order, decode on AVX-512: when every sequence of a batch has
 * one token, the query heads of a kv head are computed together
 * (cpu_compat_attn_group_decode_avx512); when another sequence brings two,
 * one head at a time. Sequence 0's logits are the same bits either way, step
 * by step past 64 positions (whole 16-position chunks, a tail, several
 * 64-groups of the value pass), over scattered blocks. */
static void decode_steps(int other_tokens, int steps, float *out)
{
    model_t *m = NULL;
    assert_int_equal(model_load(gqa_path, &m), RT_OK);
    const int V = model_hparams(m)->n_vocab;
    kv_cache_t *kv = NULL;
    model_ctx_t *c = NULL;
    assert_int_equal(kv_cache_create(m, 16, 16, RT_TYPE_F16, &kv), RT_OK);
    assert_int_equal(model_ctx_create(m, 8, 2, &c), RT_OK);
    int32_t ba[5] = {9, 2, 14, 0, 11}, bb[10] = {5, 1, 10, 3, 8, 6, 15, 4, 13, 7};
    kv_block_table_t tables[2] = {{ba, 5}, {bb, 10}};
    float *logits = malloc(sizeof(float) * 3 * (size_t)V);
    int32_t t0 = 17, p0 = 0, p1 = 0;
    for (int st = 0; st < steps; st++) {
        int32_t tok[3] = {t0, 29 + st, 31 + st}, pos[3] = {p0, p1, p1 + 1}, seq[3] = {0, 1, 1};
        uint8_t want[3] = {1, 0, 0};
        model_batch_t b = {1 + other_tokens, tok, pos, seq, want, tables, 2};
        assert_int_equal(model_forward(c, kv, &b, logits), RT_OK);
        memcpy(out + (size_t)st * V, logits, sizeof(float) * (size_t)V);
        t0 = (int32_t)((t0 * 31 + st * 7 + 3) % (V - 20) + 10);
        p0++;
        p1 += other_tokens;
    }
    free(logits);
    model_ctx_destroy(c);
    kv_cache_destroy(kv);
    model_free(m);
}

static void test_compat_decode_group_same_bits(void **state)
{
    (void)state;
    enum { STEPS = 75 };
    model_t *m = NULL;
    assert_int_equal(model_load(gqa_path, &m), RT_OK);
    const size_t n = (size_t)STEPS * (size_t)model_hparams(m)->n_vocab;
    model_free(m);
    float *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    decode_steps(2, STEPS, ref); /* head by head */
    decode_steps(1, STEPS, got); /* all decode: heads of a group together */
    for (size_t i = 0; i < n; i++)
        if (memcmp(&ref[i], &got[i], sizeof(float)) != 0)
            fail_msg("logit %zu of %zu (step %zu) differs: %.9g vs %.9g", i, n, i / (n / STEPS), (double)got[i],
                     (double)ref[i]);
    free(ref);
    free(got);
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
        cmocka_unit_test(test_data_parallel_same_bits),
        cmocka_unit_test(test_invariant_order_chunked_equals_whole),
        cmocka_unit_test(test_compat_decode_group_same_bits),
        cmocka_unit_test(test_bad_batches_are_refused),
    };
    return cmocka_run_group_tests_name("forward", tests, setup, teardown);
}
