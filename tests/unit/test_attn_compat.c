/*
 * test_attn_compat.c - the llama.cpp-order attention of one head over an f16
 * paged cache (llama.cpp's layout: K rows, V transposed within blocks) gives
 * the same bits read in place (cpu_compat_attn_head_paged_avx512) and over
 * f32 copies gathered once for a prefill (cpu_compat_attn_head_gathered_avx512),
 * in both dot-product orders (gemm: several tokens; gemv: decode), for lengths
 * around the 16-position chunks and blocks, head sizes with and without a
 * 64-element remainder. AVX-512 only (skipped elsewhere).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "test_rng.h"

#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/types.h"

enum { BS = 16, NB = 24, MAXHD = 128, NKV = 2 };

static void same_bits(int hd)
{
    const int kvd = NKV * hd, cap = NB * BS;
    uint16_t *k = malloc(sizeof(uint16_t) * (size_t)NB * BS * kvd), *v = malloc(sizeof(uint16_t) * (size_t)NB * BS * kvd);
    float *kt = malloc(sizeof(float) * (size_t)cap * hd), *vt = malloc(sizeof(float) * (size_t)cap * hd);
    float q[MAXHD], *p = malloc(sizeof(float) * (size_t)(cap + 64)), a[MAXHD], g[MAXHD];
    int32_t blocks[NB];
    for (size_t i = 0; i < (size_t)NB * BS * kvd; i++) {
        k[i] = rt_fp32_to_fp16(nrand());
        v[i] = rt_fp32_to_fp16(nrand());
    }
    for (int i = 0; i < NB; i++) blocks[i] = (i * 7 + 3) % NB; /* scattered */
    for (int d = 0; d < hd; d++) q[d] = rt_fp16_to_fp32(rt_fp32_to_fp16(0.3f * nrand()));
    const int hk = 1, lens[] = {1, 15, 16, 17, 63, 64, 65, 100, 255, 256, 300, cap};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int n_pos = lens[li], n_pad = (n_pos + 63) & ~63;
        /* the gather forward.c does: K rows, V transposed (hd rows of n_pad) */
        for (int i = 0; i < n_pos; i++)
            for (int d = 0; d < hd; d++)
                kt[(size_t)i * hd + d] =
                    rt_fp16_to_fp32(k[((size_t)blocks[i / BS] * BS + i % BS) * kvd + (size_t)hk * hd + d]);
        for (int d = 0; d < hd; d++)
            for (int i = 0; i < n_pad; i++)
                vt[(size_t)d * n_pad + i] =
                    i < n_pos ? rt_fp16_to_fp32(v[(size_t)blocks[i / BS] * BS * kvd + (size_t)(hk * hd + d) * BS + i % BS])
                              : 0.0f;
        for (int gemm = 0; gemm < 2; gemm++) {
            cpu_compat_attn_head_paged_avx512(q, k, v, blocks, BS, kvd, hk * hd, hd, n_pos, 0.125f, gemm, p, a);
            cpu_compat_attn_head_gathered_avx512(q, kt, vt, n_pad, hd, n_pos, 0.125f, gemm, p, g);
            if (memcmp(a, g, sizeof(float) * (size_t)hd) != 0) /* a swapped K row fails it */
                fail_msg("hd %d, %d positions, %s: in place and gathered differ", hd, n_pos, gemm ? "gemm" : "gemv");
        }
    }
    free(k), free(v), free(kt), free(vt), free(p);
}

static void test_in_place_equals_gathered(void **state)
{
    (void)state;
    if (cpu_quant_detect_isa() != CPU_ISA_AVX512) skip();
    same_bits(64);
    same_bits(128);
    same_bits(80); /* a 16-element remainder after the 64-element steps */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_in_place_equals_gathered)};
    return cmocka_run_group_tests_name("attn-compat", tests, NULL, NULL);
}
