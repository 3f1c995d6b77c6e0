/*
 * test_packed.c - the engine's packed int8 GEMM (cpu_packed.h): results
 * against a double-precision reference built from the dequantized weights and
 * activations, bit-identity across ISAs, activation row counts, tiles and row
 * ranges, the activation quantizer on odd inputs, and error returns.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define TEST_RNG_SEED 0x243F6A8885A308D3ull
#include "test_rng.h"

#include "rotor/cpu_packed.h"
#include "rotor/cpu_quant.h"
#include "rotor/types.h"


static const rt_type_t k_types[] = {RT_TYPE_Q4_0, RT_TYPE_Q4_1, RT_TYPE_Q8_0, RT_TYPE_Q4_K,
                                    RT_TYPE_Q6_K, RT_TYPE_Q5_0, RT_TYPE_Q5_1, RT_TYPE_Q5_K};

/* the K-quants are packed only where a fast kernel runs them (AVX2,
 * AVX-512), Q5_0/Q5_1 only for AVX-512; K-quant rows are whole 256-element
 * super-blocks */
static bool type_ok(rt_type_t t)
{
    const cpu_isa_t cur = cpu_quant_get_isa();
    cpu_quant_set_isa(cpu_quant_detect_isa());
    const bool ok = cpu_packed_supported(t);
    cpu_quant_set_isa(cur);
    return ok;
}
static int64_t n_in_for(rt_type_t t, int64_t n)
{
    return t == RT_TYPE_Q4_K || t == RT_TYPE_Q5_K || t == RT_TYPE_Q6_K ? 512 : n;
}

typedef struct {
    rt_type_t t;
    int64_t n_out, n_in, m;
    size_t w_stride, x_stride;
    void *w, *packed, *x;
    float *xf, *y, *y2;
} case_t;

static void case_make(case_t *c, rt_type_t t, int64_t n_out, int64_t n_in, int64_t m)
{
    c->t = t, c->n_out = n_out, c->n_in = n_in, c->m = m;
    c->w_stride = rt_type_row_size(t, n_in);
    c->w = malloc(c->w_stride * (size_t)n_out);
    float *row = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t r = 0; r < n_out; r++) {
        const float scale = 0.02f * (float)(1 + r % 7);
        for (int64_t j = 0; j < n_in; j++) row[j] = scale * nrand() + (r % 3 == 0 ? 0.01f : 0.0f);
        assert_int_equal(cpu_quantize_row(t, row, (char *)c->w + (size_t)r * c->w_stride, n_in), RT_OK);
    }
    free(row);
    const cpu_isa_t cur = cpu_quant_get_isa(); /* packed where supported, then run on any ISA */
    cpu_quant_set_isa(cpu_quant_detect_isa());
    const size_t ps = cpu_packed_size(t, n_out, n_in);
    cpu_quant_set_isa(cur);
    assert_true(ps > 0);
    c->packed = aligned_alloc(64, (ps + 63) & ~(size_t)63);
    assert_int_equal(cpu_pack_weights(t, c->w, c->w_stride, n_out, n_in, c->packed), RT_OK);
    c->x_stride = cpu_act8_row_size(n_in) + 20; /* odd stride on purpose */
    c->x = malloc(c->x_stride * (size_t)m);
    c->xf = malloc(sizeof(float) * (size_t)(n_in * m));
    for (int64_t i = 0; i < m * n_in; i++) c->xf[i] = nrand() * (i % 11 == 0 ? 4.0f : 1.0f);
    for (int64_t i = 0; i < m; i++) cpu_act8_quantize(c->xf + i * n_in, (char *)c->x + (size_t)i * c->x_stride, n_in);
    c->y = malloc(sizeof(float) * (size_t)(n_out * m));
    c->y2 = malloc(sizeof(float) * (size_t)(n_out * m));
}

static void case_free(case_t *c)
{
    free(c->w);
    free(c->packed);
    free(c->x);
    free(c->xf);
    free(c->y);
    free(c->y2);
}

/* the activation row as the kernel sees it: qs * d, from the row's bytes */
static void act_dequant(const void *x, int64_t n, float *out)
{
    const int64_t nb = n / 32;
    const int8_t *qs = x;
    const float *d = (const float *)((const char *)x + nb * 32);
    for (int64_t j = 0; j < n; j++) out[j] = (float)qs[j] * d[j / 32];
}

/* results against sum_k w[r][k] * a[i][k] in double over the dequantized
 * operands: only rounding of the float accumulation may differ */
static void check_reference(case_t *c)
{
    cpu_packed_matmul(c->t, c->n_in, c->n_out, c->packed, c->x, c->x_stride, c->m, c->y, c->n_out, 0, c->n_out);
    float *wd = malloc(sizeof(float) * (size_t)c->n_in), *ad = malloc(sizeof(float) * (size_t)c->n_in);
    for (int64_t i = 0; i < c->m; i++) {
        act_dequant((const char *)c->x + (size_t)i * c->x_stride, c->n_in, ad);
        for (int64_t j = 0; j < c->n_in; j++) /* the quantizer's own error is small too */
            assert_true(fabsf(ad[j] - c->xf[i * c->n_in + j]) <= 0.5f * fabsf(((const float *)((const char *)c->x + (size_t)i * c->x_stride + c->n_in))[j / 32]) + 1e-6f);
        for (int64_t r = 0; r < c->n_out; r++) {
            assert_int_equal(cpu_dequantize_row(c->t, (const char *)c->w + (size_t)r * c->w_stride, wd, c->n_in), RT_OK);
            double ref = 0, mag = 0;
            for (int64_t j = 0; j < c->n_in; j++) {
                ref += (double)wd[j] * ad[j];
                mag += fabs((double)wd[j] * ad[j]);
            }
            const double got = c->y[i * c->n_out + r];
            if (fabs(got - ref) > 1e-5 * mag + 1e-7)
                fail_msg("%s r=%lld i=%lld: %.9g vs reference %.9g (mag %.3g)", rt_type_name(c->t), (long long)r,
                         (long long)i, got, ref, mag);
        }
    }
    free(wd);
    free(ad);
}

static void test_against_reference(void **state)
{
    (void)state;
    const cpu_isa_t best = cpu_quant_detect_isa();
    for (size_t ti = 0; ti < sizeof k_types / sizeof *k_types; ti++)
        for (int isa = (int)best; isa >= CPU_ISA_SCALAR && type_ok(k_types[ti]); isa--) {
            cpu_quant_set_isa((cpu_isa_t)isa);
            case_t c;
            case_make(&c, k_types[ti], 37, n_in_for(k_types[ti], 160), 13);
            check_reference(&c);
            case_free(&c);
        }
    cpu_quant_set_isa(best);
}

/* every ISA, every m, every row range: the same bits; the last panel has 5
 * rows (53) or 13 (45: both 8-row halves of a 256-bit kernel in use) */
static void test_bits_everywhere(void **state)
{
    (void)state;
    const cpu_isa_t best = cpu_quant_detect_isa();
    static const int64_t n_outs[] = {53, 45};
    for (size_t ti = 0; ti < 2 * sizeof k_types / sizeof *k_types; ti++) {
        case_t c;
        if (!type_ok(k_types[ti / 2])) continue;
        cpu_quant_set_isa(CPU_ISA_SCALAR);
        case_make(&c, k_types[ti / 2], n_outs[ti % 2], n_in_for(k_types[ti / 2], 256), 19);
        cpu_packed_matmul(c.t, c.n_in, c.n_out, c.packed, c.x, c.x_stride, c.m, c.y, c.n_out, 0, c.n_out);
        for (int isa = (int)best; isa >= CPU_ISA_SCALAR; isa--) {
            cpu_quant_set_isa((cpu_isa_t)isa);
            /* the activation quantizer gives the same bytes on every ISA */
            void *xq = malloc(c.x_stride);
            for (int64_t i = 0; i < c.m; i++) {
                cpu_act8_quantize(c.xf + i * c.n_in, xq, c.n_in);
                assert_memory_equal(xq, (const char *)c.x + (size_t)i * c.x_stride, cpu_act8_row_size(c.n_in));
            }
            free(xq);
            /* one row at a time, 16-row ranges in reverse, all at once */
            for (int64_t i = 0; i < c.m; i++)
                cpu_packed_matmul(c.t, c.n_in, c.n_out, c.packed, (const char *)c.x + (size_t)i * c.x_stride,
                                  c.x_stride, 1, c.y2 + i * c.n_out, c.n_out, 0, c.n_out);
            assert_memory_equal(c.y, c.y2, sizeof(float) * (size_t)(c.n_out * c.m));
            memset(c.y2, 0, sizeof(float) * (size_t)(c.n_out * c.m));
            for (int64_t r = (c.n_out - 1) / 16 * 16; r >= 0; r -= 16)
                cpu_packed_matmul(c.t, c.n_in, c.n_out, c.packed, c.x, c.x_stride, c.m, c.y2, c.n_out, r,
                                  r + 16 < c.n_out ? r + 16 : c.n_out);
            assert_memory_equal(c.y, c.y2, sizeof(float) * (size_t)(c.n_out * c.m));
            for (int64_t m = 1; m <= c.m; m++) { /* every tile width, then 8 + rest */
                memset(c.y2, 0, sizeof(float) * (size_t)(c.n_out * c.m));
                cpu_packed_matmul(c.t, c.n_in, c.n_out, c.packed, c.x, c.x_stride, m, c.y2, c.n_out, 0, c.n_out);
                assert_memory_equal(c.y, c.y2, sizeof(float) * (size_t)(c.n_out * m));
            }
        }
        case_free(&c);
    }
    cpu_quant_set_isa(best);
}

/* The largest integer sums a 5-bit block can make: every stored quant 31
 * (one element per row at the other end, which sets the scale) times
 * activation quants of 127. A kernel summing too many vpmaddubsw pairs in
 * int16 (8 x 7874) wraps here; random data never gets near it. */
static void test_q5_extremes(void **state)
{
    (void)state;
    const cpu_isa_t best = cpu_quant_detect_isa();
    const rt_type_t ts[3] = {RT_TYPE_Q5_0, RT_TYPE_Q5_1, RT_TYPE_Q5_K};
    for (int ti = 0; ti < 3; ti++) {
        if (!type_ok(ts[ti])) continue;
        for (int isa = (int)best; isa >= CPU_ISA_SCALAR; isa--) {
            cpu_quant_set_isa((cpu_isa_t)isa);
            case_t c;
            case_make(&c, ts[ti], 21, 256, 3);
            float row[256];
            for (int64_t r = 0; r < c.n_out; r++) {
                for (int j = 0; j < 256; j++) /* Q5_0: d = -min / 16 and q = x / d + 16.5 -> 31 */
                    row[j] = j % 32 == 0 ? -1.0f : (ts[ti] == RT_TYPE_Q5_0 ? 0.9375f : 1.0f);
                assert_int_equal(cpu_quantize_row(c.t, row, (char *)c.w + (size_t)r * c.w_stride, 256), RT_OK);
            }
            const cpu_isa_t cur = cpu_quant_get_isa();
            cpu_quant_set_isa(best);
            assert_int_equal(cpu_pack_weights(c.t, c.w, c.w_stride, c.n_out, c.n_in, c.packed), RT_OK);
            cpu_quant_set_isa(cur);
            for (int64_t i = 0; i < c.m * c.n_in; i++) c.xf[i] = 1.0f;
            for (int64_t i = 0; i < c.m; i++) cpu_act8_quantize(c.xf + i * c.n_in, (char *)c.x + (size_t)i * c.x_stride, c.n_in);
            check_reference(&c);
            case_free(&c);
        }
    }
    cpu_quant_set_isa(best);
}

/* more activation rows than one pass takes (chunks of 64 rows) */
static void test_many_rows(void **state)
{
    (void)state;
    case_t c;
    case_make(&c, RT_TYPE_Q4_1, 32, 64, 150);
    cpu_packed_matmul(c.t, c.n_in, c.n_out, c.packed, c.x, c.x_stride, c.m, c.y, c.n_out, 0, c.n_out);
    for (int64_t i = 0; i < c.m; i += 7) {
        cpu_packed_matmul(c.t, c.n_in, c.n_out, c.packed, (const char *)c.x + (size_t)i * c.x_stride, c.x_stride, 1,
                          c.y2, c.n_out, 0, c.n_out);
        assert_memory_equal(c.y + i * c.n_out, c.y2, sizeof(float) * (size_t)c.n_out);
    }
    check_reference(&c);
    case_free(&c);
}

/* zero blocks, huge values, inf, NaN and a subnormal scale: same bytes on
 * every ISA, no undefined conversions, zero blocks quantize to zero */
static void test_act_quantize_odd_inputs(void **state)
{
    (void)state;
    const int64_t n = 160;
    float x[160];
    for (int j = 0; j < 160; j++) x[j] = 0.0f;           /* block 0: zeros */
    for (int j = 32; j < 64; j++) x[j] = 1e30f * (j % 2 ? 1 : -1); /* block 1: huge */
    for (int j = 64; j < 96; j++) x[j] = (float)j;
    x[70] = INFINITY;                                   /* block 2: inf */
    for (int j = 96; j < 128; j++) x[j] = -0.5f;
    x[100] = NAN;                                       /* block 3: NaN */
    for (int j = 128; j < 160; j++) x[j] = 5e-38f * (float)(j - 144); /* block 4: d = amax / 127 subnormal */
    const size_t rs = cpu_act8_row_size(n);
    assert_int_equal(rs, 5 * 48);
    uint8_t ref[5 * 48], got[5 * 48];
    const cpu_isa_t best = cpu_quant_detect_isa();
    cpu_quant_set_isa(CPU_ISA_SCALAR);
    cpu_act8_quantize(x, ref, n);
    for (int j = 0; j < 32; j++) assert_int_equal(((const int8_t *)ref)[j], 0);
    assert_int_equal(((const int8_t *)ref)[32], -127);
    assert_int_equal(((const int8_t *)ref)[33], 127);
    float d4;
    memcpy(&d4, ref + 160 + 4 * 4, 4);
    assert_true(d4 > 0.0f && d4 < 1.17549435e-38f);          /* subnormal scale */
    assert_int_equal(((const int8_t *)ref)[128], -127);     /* -16 * 5e-38 / d4 */
    for (int isa = (int)best; isa > CPU_ISA_SCALAR; isa--) {
        cpu_quant_set_isa((cpu_isa_t)isa);
        cpu_act8_quantize(x, got, n);
        assert_memory_equal(ref, got, rs);
    }
    cpu_quant_set_isa(best);
}

static void test_errors(void **state)
{
    (void)state;
    uint8_t buf[64];
    assert_false(cpu_packed_supported(RT_TYPE_F16));
    assert_false(cpu_packed_supported(RT_TYPE_Q3_K));
    assert_int_equal(cpu_packed_size(RT_TYPE_Q4_K, 16, 128), 0); /* not whole super-blocks */
    assert_true(cpu_packed_supported(RT_TYPE_Q4_1));
    assert_int_equal(cpu_packed_size(RT_TYPE_F16, 16, 64), 0);
    assert_int_equal(cpu_packed_size(RT_TYPE_Q8_0, 16, 48), 0);
    assert_int_equal(cpu_packed_size(RT_TYPE_Q4_1, 17, 64), 2 * 2 * 16 * 20);
    assert_int_equal(cpu_pack_weights(RT_TYPE_F32, buf, 4, 1, 16, buf), RT_ERR_UNSUPPORTED);
    assert_int_equal(cpu_pack_weights(RT_TYPE_Q8_0, buf, 34, 1, 48, buf), RT_ERR_RANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference), cmocka_unit_test(test_bits_everywhere),
        cmocka_unit_test(test_many_rows),
        cmocka_unit_test(test_q5_extremes),         cmocka_unit_test(test_act_quantize_odd_inputs),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
