/*
 * test_quant.c - tensor types, fp16/bf16 conversions, reference quantizers
 * (known answers derived by hand from ggml's algorithms), dot products on
 * every ISA against a double-precision reference, and batch invariance of
 * cpu_matmul.
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
#include <immintrin.h>

#include "cpu/quant_impl.h"
#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/types.h"

static const rt_type_t k_weight_types[] = {
    RT_TYPE_F32,  RT_TYPE_F16,  RT_TYPE_BF16, RT_TYPE_Q4_0, RT_TYPE_Q4_1,
    RT_TYPE_Q5_0, RT_TYPE_Q5_1, RT_TYPE_Q8_0, RT_TYPE_Q2_K, RT_TYPE_Q3_K,
    RT_TYPE_Q4_K, RT_TYPE_Q5_K, RT_TYPE_Q6_K,
};
#define N_WTYPES (sizeof(k_weight_types) / sizeof(k_weight_types[0]))

#include "test_rng.h"

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---------------------------------------------------------------- traits */

static void test_traits(void **state) {
    (void)state;
    assert_int_equal(rt_type_traits(RT_TYPE_Q4_0)->type_size, 18);
    assert_int_equal(rt_type_traits(RT_TYPE_Q4_1)->type_size, 20);
    assert_int_equal(rt_type_traits(RT_TYPE_Q5_0)->type_size, 22);
    assert_int_equal(rt_type_traits(RT_TYPE_Q5_1)->type_size, 24);
    assert_int_equal(rt_type_traits(RT_TYPE_Q8_0)->type_size, 34);
    assert_int_equal(rt_type_traits(RT_TYPE_Q8_1)->type_size, 36);
    assert_int_equal(rt_type_traits(RT_TYPE_Q2_K)->type_size, 84);
    assert_int_equal(rt_type_traits(RT_TYPE_Q3_K)->type_size, 110);
    assert_int_equal(rt_type_traits(RT_TYPE_Q4_K)->type_size, 144);
    assert_int_equal(rt_type_traits(RT_TYPE_Q5_K)->type_size, 176);
    assert_int_equal(rt_type_traits(RT_TYPE_Q6_K)->type_size, 210);
    assert_int_equal(rt_type_traits(RT_TYPE_Q8_K)->type_size, 292);
    assert_int_equal(rt_type_traits(RT_TYPE_Q6_K)->block_size, 256);
    assert_int_equal(rt_type_traits(RT_TYPE_Q4_1)->vec_dot_type, RT_TYPE_Q8_1);
    assert_int_equal(rt_type_traits(RT_TYPE_Q5_0)->vec_dot_type, RT_TYPE_Q8_0);
    assert_int_equal(rt_type_traits(RT_TYPE_Q6_K)->vec_dot_type, RT_TYPE_Q8_K);
    assert_int_equal(rt_type_traits(RT_TYPE_F16)->vec_dot_type, RT_TYPE_F16);
    assert_null(rt_type_traits(4));
    assert_null(rt_type_traits(-1));
    assert_null(rt_type_traits(1000));
    assert_string_equal(rt_type_name(RT_TYPE_Q4_K), "q4_K");
    assert_string_equal(rt_type_name(77), "unknown");
    assert_int_equal(rt_type_parse("Q4_1"), RT_TYPE_Q4_1);
    assert_int_equal(rt_type_parse("bf16"), RT_TYPE_BF16);
    assert_int_equal(rt_type_parse("q4_k"), RT_TYPE_Q4_K);
    assert_int_equal(rt_type_parse("q7_0"), -1);
    assert_int_equal(rt_type_row_size(RT_TYPE_Q4_1, 1536), 48 * 20);
    assert_int_equal(rt_type_row_size(RT_TYPE_F16, 576), 1152);
    for (size_t i = 0; i < N_WTYPES; i++)
        assert_true(rt_type_traits(k_weight_types[i])->supported);
}

/* ---------------------------------------------------------- fp16 / bf16 */

__attribute__((target("f16c"))) static uint16_t hw_f2h(float f) {
    return _cvtss_sh(f, 0);
}
__attribute__((target("f16c"))) static float hw_h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

static void test_fp16(void **state) {
    (void)state;
    /* every half round-trips (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = rt_fp16_to_fp32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_int_equal(rt_fp32_to_fp16(f) & 0x7e00, 0x7e00);
            continue;
        }
        assert_int_equal(rt_fp32_to_fp16(f), h);
    }
    assert_int_equal(rt_fp32_to_fp16(65504.0f), 0x7bff);
    assert_int_equal(rt_fp32_to_fp16(65519.996f), 0x7bff);
    assert_int_equal(rt_fp32_to_fp16(65520.0f), 0x7c00); /* tie -> even = inf */
    assert_int_equal(rt_fp32_to_fp16(-1e9f), 0xfc00);
    assert_int_equal(rt_fp32_to_fp16(INFINITY), 0x7c00);
    assert_int_equal(rt_fp32_to_fp16(-0.0f), 0x8000);
    assert_int_equal(rt_fp32_to_fp16(0x1p-24f), 0x0001);   /* smallest subnormal */
    assert_int_equal(rt_fp32_to_fp16(0x1p-25f), 0x0000);   /* tie -> even (0) */
    assert_int_equal(rt_fp32_to_fp16(0x1.8p-24f), 0x0002); /* tie -> even (2) */
    assert_int_equal(rt_fp32_to_fp16(0x1.000002p-25f), 0x0001);
    assert_int_equal(rt_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);            /* tie -> even */
    assert_int_equal(rt_fp32_to_fp16(1.0f + 0x1p-11f + 0x1p-10f), 0x3c02); /* tie -> even */
    assert_int_equal(rt_fp32_to_fp16(0x1.ffcp-15f), 0x0400); /* rounds up into normals */
    assert_true(isnan(rt_fp16_to_fp32(rt_fp32_to_fp16(NAN))));
    assert_float_equal(rt_fp16_to_fp32(0x0001), 0x1p-24f, 0.0f);
    assert_float_equal(rt_fp16_to_fp32(0xc000), -2.0f, 0.0f);
    /* bit-exact with the F16C instructions on random and extreme floats */
    if (__builtin_cpu_supports("f16c")) {
        for (int i = 0; i < 2000000; i++) {
            uint32_t u = (uint32_t)(urand() * 4294967296.0);
            if (i & 1) /* concentrate on the half range */
                u = (u & 0x80000000u) | (0x33000000u + (u % 0x15000000u));
            const float f = bitsf(u);
            assert_int_equal(rt_fp32_to_fp16(f), hw_f2h(f));
        }
        for (uint32_t h = 0; h < 65536; h++) {
            const float a = rt_fp16_to_fp32((uint16_t)h), b = hw_h2f((uint16_t)h);
            assert_int_equal(fbits(a), fbits(b));
        }
    }
    /* the row converters (F16C when present) agree with the scalar ones */
    float row[1003];
    uint16_t hrow[1003];
    for (int i = 0; i < 1003; i++) row[i] = i % 97 == 0 ? NAN : i % 89 == 0 ? 7e4f : nrand() * (i % 5 == 0 ? 1e-6f : 10.0f);
    cpu_f32_to_f16_row(row, hrow, 1003);
    for (int i = 0; i < 1003; i++) assert_int_equal(hrow[i], rt_fp32_to_fp16(row[i]));
    cpu_f16_to_f32_row(hrow, row, 1003);
    for (int i = 0; i < 1003; i++) assert_int_equal(fbits(row[i]), fbits(rt_fp16_to_fp32(hrow[i])));
}

static void test_bf16(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = rt_bf16_to_fp32((uint16_t)h);
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) {
            assert_true(isnan(f));
            continue;
        }
        assert_int_equal(rt_fp32_to_bf16(f), h);
    }
    assert_int_equal(rt_fp32_to_bf16(bitsf(0x3f808000u)), 0x3f80); /* tie -> even */
    assert_int_equal(rt_fp32_to_bf16(bitsf(0x3f818000u)), 0x3f82); /* tie -> even */
    assert_int_equal(rt_fp32_to_bf16(bitsf(0x3f808001u)), 0x3f81);
    assert_int_equal(rt_fp32_to_bf16(bitsf(0x7f7fffffu)), 0x7f80); /* overflow -> inf */
    assert_int_equal(rt_fp32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(rt_fp32_to_bf16(bitsf(0x00018000u)), 0x0002); /* subnormal tie */
    assert_int_equal(rt_fp32_to_bf16(bitsf(0x7f800001u)), 0x7fc0); /* NaN gets quieted */
    assert_true(isnan(rt_bf16_to_fp32(rt_fp32_to_bf16(NAN))));
}

/* ----------------------------------------------- reference quantizers */

static void test_kat_q8_0(void **state) {
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    block_q8_0 b;
    assert_int_equal(cpu_quantize_row(RT_TYPE_Q8_0, x, &b, 32), RT_OK);
    /* d = 16/127 -> half 0x3008; id = 7.9375 */
    assert_int_equal(b.d, 0x3008);
    assert_int_equal(b.qs[0], -127);
    assert_int_equal(b.qs[15], -8);
    assert_int_equal(b.qs[16], 0);
    assert_int_equal(b.qs[17], 8);
    assert_int_equal(b.qs[31], 119);
    /* the fast activation path gives the same bits on every ISA */
    for (int isa = 0; isa <= 2; isa++) {
        if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
        block_q8_0 c;
        cpu_quantize_act(RT_TYPE_Q8_0, x, &c, 32);
        assert_memory_equal(&b, &c, sizeof(b));
    }
    cpu_quant_set_isa(CPU_ISA_AVX512);
}

static void test_kat_q4_0_q4_1(void **state) {
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    block_q4_0 a;
    cpu_quantize_row(RT_TYPE_Q4_0, x, &a, 32);
    /* max = -16 -> d = 2 (0x4000), q = min(15, (int)(x/2 + 8.5)) */
    assert_int_equal(a.d, 0x4000);
    assert_int_equal(a.qs[0], 0x80);
    assert_int_equal(a.qs[1], 0x91);
    assert_int_equal(a.qs[15], 0xF8);

    for (int j = 0; j < 32; j++)
        x[j] = (float)j;
    block_q4_1 b;
    cpu_quantize_row(RT_TYPE_Q4_1, x, &b, 32);
    /* d = 31/15 -> 0x4022, m = 0, q = round(j * 15/31) */
    assert_int_equal(b.d, 0x4022);
    assert_int_equal(b.m, 0x0000);
    assert_int_equal(b.qs[0], 0x80);
    assert_int_equal(b.qs[1], 0x80);
    assert_int_equal(b.qs[2], 0x91);
    assert_int_equal(b.qs[15], 0xF7);
}

static void test_kat_k_quants(void **state) {
    (void)state;
    float x[256];
    for (int j = 0; j < 256; j++)
        x[j] = 1.0f;
    /* Q4_K of a constant: every sub-block scale 1/15, min 0 -> ls = 63,
     * lm = 0; d = (1/15)/63 -> half 0x1456; all quants 15 */
    block_q4_K k4;
    cpu_quantize_row(RT_TYPE_Q4_K, x, &k4, 256);
    assert_int_equal(k4.d, 0x1456);
    assert_int_equal(k4.dmin, 0);
    for (int j = 0; j < 4; j++) {
        assert_int_equal(k4.scales[j], 0xFF);
        assert_int_equal(k4.scales[j + 4], 0x00);
        assert_int_equal(k4.scales[j + 8], 0x0F);
    }
    for (int j = 0; j < 128; j++)
        assert_int_equal(k4.qs[j], 0xFF);
    /* Q6_K of a constant: make_qx_quants gives scale -1/32 for every group,
     * iscale = 4096, d = 2^-12 (0x0C00), scales -128, all quants 0 */
    block_q6_K k6;
    cpu_quantize_row(RT_TYPE_Q6_K, x, &k6, 256);
    assert_int_equal(k6.d, 0x0C00);
    for (int j = 0; j < 16; j++)
        assert_int_equal(k6.scales[j], -128);
    for (int j = 0; j < 128; j++)
        assert_int_equal(k6.ql[j], 0);
    for (int j = 0; j < 64; j++)
        assert_int_equal(k6.qh[j], 0);
    float y[256];
    cpu_dequantize_row(RT_TYPE_Q6_K, &k6, y, 256);
    for (int j = 0; j < 256; j++)
        assert_float_equal(y[j], 1.0f, 0.0f);
    /* Q8_K of a ramp: max = -128 -> iscale = 127/128, d = 128/127 */
    for (int j = 0; j < 256; j++)
        x[j] = (float)(j - 128);
    block_q8_K k8;
    cpu_quantize_row(RT_TYPE_Q8_K, x, &k8, 256);
    assert_float_equal(k8.d, 1.0f / (-127.f / -128.f), 0.0f);
    assert_int_equal(k8.qs[0], -127);
    assert_int_equal(k8.qs[1], -126);  /* -127 * 0.9921875 = -126.0 */
    assert_int_equal(k8.qs[64], -64);  /* -63.5 -> even */
    assert_int_equal(k8.qs[192], 64);  /* 63.5 -> even */
    assert_int_equal(k8.qs[255], 126); /* 125.99 */
    int sum = 0;
    for (int j = 0; j < 16; j++)
        sum += k8.qs[j];
    assert_int_equal(k8.bsums[0], sum);
    for (int isa = 0; isa <= 2; isa++) {
        if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
        block_q8_K c;
        cpu_quantize_act(RT_TYPE_Q8_K, x, &c, 256);
        assert_memory_equal(&k8, &c, sizeof(c));
    }
    cpu_quant_set_isa(CPU_ISA_AVX512);
}

/* Activation quantizers: fast path == reference bits on random data,
 * including exact .5 ties. */
static void test_act_quant_bits(void **state) {
    (void)state;
    enum { N = 4096 };
    static float x[N];
    static uint8_t a[N * 4], b[N * 4];
    const rt_type_t vts[] = {RT_TYPE_Q8_0, RT_TYPE_Q8_1, RT_TYPE_Q8_K,
                             RT_TYPE_F16,  RT_TYPE_BF16, RT_TYPE_F32};
    for (int rep = 0; rep < 20; rep++) {
        for (int j = 0; j < N; j++)
            x[j] = rep % 2 ? nrand() * 3.0f : (float)((int)(nrand() * 20)) * 0.5f;
        for (size_t t = 0; t < sizeof(vts) / sizeof(vts[0]); t++) {
            /* Q8_0/Q8_1 activations follow llama.cpp's run-time quantizer
             * (id = 127/amax, round half to even); the rest the reference */
            if (vts[t] == RT_TYPE_Q8_0 || vts[t] == RT_TYPE_Q8_1)
                cpu_compat_quantize_q8(x, a, N, vts[t] == RT_TYPE_Q8_1);
            else
                cpu_quantize_row(vts[t], x, a, N);
            for (int isa = 0; isa <= 2; isa++) {
                if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
                memset(b, 0xAA, sizeof(b));
                cpu_quantize_act(vts[t], x, b, N);
                assert_memory_equal(a, b, rt_type_row_size(vts[t], N));
            }
        }
    }
    /* f16/bf16 conversions of special values (16-wide body + scalar tail) */
    static const uint32_t specials[] = {
        0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffa00000u, 0x00000001u,
        0x80000001u, 0x3f808000u, 0x3f818000u, 0x477ff000u, 0x477fefffu, 0x33000000u,
        0x33000001u, 0x387fc000u, 0x00018000u, 0x7f7fffffu, 0x80000000u, 0x3c000800u,
        0x38800000u, 0xc7800000u, 0x3f800000u, 0x12345678u, 0xdeadbeefu};
    enum { NS = sizeof(specials) / sizeof(specials[0]) };
    float sx[NS];
    memcpy(sx, specials, sizeof(sx));
    for (int vt = 0; vt < 2; vt++) {
        const rt_type_t t = vt ? RT_TYPE_BF16 : RT_TYPE_F16;
        uint16_t ra[NS], rb[NS];
        cpu_quantize_row(t, sx, ra, NS);
        for (int isa = 0; isa <= 2; isa++) {
            if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
            cpu_quantize_act(t, sx, rb, NS);
            assert_memory_equal(ra, rb, sizeof(ra));
        }
    }
    cpu_quant_set_isa(CPU_ISA_AVX512);
}


/* llama.cpp-order Q4_1/Q8_0 kernels: the same bits on every ISA, and the
 * activation quantizer rounds halves to even (ggml's run-time quantizer). */
static void test_compat_kernels(void **state) {
    (void)state;
    enum { N = 576, R = 4 };
    static float w[R * N], x[N];
    static uint8_t wq[R * N * 2], xq[N * 2];
    for (int j = 0; j < R * N; j++) w[j] = nrand();
    for (int j = 0; j < N; j++) x[j] = nrand() * (j % 97 == 0 ? 40.0f : 1.0f);
    const rt_type_t types[] = {RT_TYPE_Q4_1, RT_TYPE_Q8_0};
    for (int t = 0; t < 2; t++) {
        const rt_type_t vt = rt_type_traits(types[t])->vec_dot_type;
        const size_t rb = rt_type_row_size(types[t], N);
        for (int r = 0; r < R; r++) cpu_quantize_row(types[t], w + r * N, wq + r * rb, N);
        cpu_compat_quantize_q8(x, xq, N, vt == RT_TYPE_Q8_1);
        float ref[R], got[R];
        cpu_quant_set_isa(CPU_ISA_SCALAR);
        cpu_matmul(types[t], N, wq, rb, xq, 0, 1, ref, R, 0, R);
        for (int isa = 1; isa <= 2; isa++) {
            if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
            cpu_matmul(types[t], N, wq, rb, xq, 0, 1, got, R, 0, R);
            assert_memory_equal(ref, got, sizeof ref);
        }
        for (int r = 0; r < R; r++) { /* and close to the exact dot */
            float dw[N], dx[N];
            cpu_dequantize_row(types[t], wq + r * rb, dw, N);
            cpu_dequantize_row(RT_TYPE_Q8_0 == vt ? RT_TYPE_Q8_0 : RT_TYPE_Q8_1, xq, dx, N);
            double e = 0, mag = 0;
            for (int j = 0; j < N; j++) {
                e += (double)dw[j] * dx[j];
                mag += fabs((double)dw[j] * dx[j]);
            }
            /* Q4_1: the min term uses s = fp16(d * sum q), an fp16 rounding */
            assert_true(fabs(ref[r] - e) <= mag * (t == 0 ? 2e-3 : 1e-5));
        }
    }
    /* 2.5 * (127/127) rounds to 2 (half to even); the reference rounds to 3 */
    float tie[32] = {127.0f, 2.5f, -2.5f, 3.5f};
    block_q8_0 a, b;
    cpu_compat_quantize_q8(tie, &a, 32, false);
    cpu_quantize_row(RT_TYPE_Q8_0, tie, &b, 32);
    assert_int_equal(a.qs[1], 2);
    assert_int_equal(a.qs[2], -2);
    assert_int_equal(a.qs[3], 4);
    assert_int_equal(b.qs[1], 3);
    cpu_quant_set_isa(CPU_ISA_AVX512);
}

/* ------------------------------------------------ round-trip error bounds */

static void test_roundtrip_error(void **state) {
    (void)state;
    enum { N = 8192 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    struct {
        rt_type_t t;
        double max_rel_rmse;
    } cases[] = {
        {RT_TYPE_F32, 0.0},    {RT_TYPE_F16, 0.0005}, {RT_TYPE_BF16, 0.004}, {RT_TYPE_Q8_0, 0.006},
        {RT_TYPE_Q8_1, 0.006}, {RT_TYPE_Q8_K, 0.008}, {RT_TYPE_Q4_0, 0.12},  {RT_TYPE_Q4_1, 0.11},
        {RT_TYPE_Q5_0, 0.06},  {RT_TYPE_Q5_1, 0.055}, {RT_TYPE_Q2_K, 0.45},  {RT_TYPE_Q3_K, 0.22},
        {RT_TYPE_Q4_K, 0.11},  {RT_TYPE_Q5_K, 0.055}, {RT_TYPE_Q6_K, 0.028},
    };
    for (int j = 0; j < N; j++)
        x[j] = nrand();
    double sx2 = 0;
    for (int j = 0; j < N; j++)
        sx2 += (double)x[j] * x[j];
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        assert_int_equal(cpu_quantize_row(cases[c].t, x, q, N), RT_OK);
        assert_int_equal(cpu_dequantize_row(cases[c].t, q, y, N), RT_OK);
        double se = 0;
        for (int j = 0; j < N; j++)
            se += ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
        const double rel = sqrt(se / sx2);
        if (rel > cases[c].max_rel_rmse)
            fail_msg("%s: relative rmse %g > %g", rt_type_name(cases[c].t), rel,
                     cases[c].max_rel_rmse);
    }
    /* per-element bound for Q8_0: |err| <= d/2 (+ half rounding of d) */
    cpu_quantize_row(RT_TYPE_Q8_0, x, q, N);
    cpu_dequantize_row(RT_TYPE_Q8_0, q, y, N);
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        for (int j = 0; j < 32; j++)
            assert_true(fabsf(y[b * 32 + j] - x[b * 32 + j]) <= amax / 127 * 0.5f + amax * 1e-3f);
    }
    /* unsupported ids are refused */
    assert_int_equal(cpu_dequantize_row((rt_type_t)4, q, y, 32), RT_ERR_INVALID);
}

/* ------------------------------------------------------- dot products */

/* Double-precision reference: dequantized weight . dequantized activation.
 * For Q4_1/Q5_1 the min term uses the activation's stored s = d*sum(q)
 * (rounded to fp16 by design, as in ggml) instead of the exact sum. */
static double ref_dot(rt_type_t t, int64_t n, const void *w, const void *a) {
    static float dw[1 << 14], da[1 << 14];
    static uint8_t wcopy[1 << 16];
    const rt_type_t vt = rt_type_traits(t)->vec_dot_type;
    double s = 0;
    if (vt == RT_TYPE_Q8_1) {
        const size_t bs = rt_type_traits(t)->type_size;
        memcpy(wcopy, w, rt_type_row_size(t, n));
        for (int64_t b = 0; b < n / 32; b++) {
            rt_half m;
            memcpy(&m, wcopy + b * bs + 2, 2);
            const block_q8_1 *ab = (const block_q8_1 *)a + b;
            s += (double)rt_fp16_to_fp32(m) * rt_fp16_to_fp32(ab->s);
            memset(wcopy + b * bs + 2, 0, 2); /* m = 0: dequant gives q*d */
        }
        w = wcopy;
    }
    cpu_dequantize_row(t, w, dw, n);
    cpu_dequantize_row(vt, a, da, n);
    for (int64_t i = 0; i < n; i++)
        s += (double)dw[i] * da[i];
    return s;
}

static double abs_dot(rt_type_t t, int64_t n, const void *w, const void *a) {
    static float dw[1 << 14], da[1 << 14];
    cpu_dequantize_row(t, w, dw, n);
    cpu_dequantize_row(rt_type_traits(t)->vec_dot_type, a, da, n);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += fabs((double)dw[i] * da[i]);
    return s;
}

static void test_vec_dot(void **state) {
    (void)state;
    static const int64_t lens[] = {96, 256, 512, 768, 800, 1536, 4096, 40, 23};
    static float xw[4096], xa[4096];
    static uint8_t w[4096 * 4], a[4096 * 4];
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        const rt_type_t t = k_weight_types[ti];
        const rt_type_t vt = rt_type_traits(t)->vec_dot_type;
        for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
            const int64_t n = lens[li];
            if (n % rt_type_traits(t)->block_size != 0) continue;
            for (int rep = 0; rep < 4; rep++) {
                for (int64_t j = 0; j < n; j++) {
                    xw[j] = nrand() * (rep == 3 ? 100.0f : 1.0f);
                    xa[j] = nrand() + (rep == 2 ? 0.5f : 0.0f);
                }
                cpu_quantize_row(t, xw, w, n);
                cpu_quantize_row(vt, xa, a, n);
                const double ref = ref_dot(t, n, w, a);
                const double mag = abs_dot(t, n, w, a);
                cpu_quant_set_isa(CPU_ISA_SCALAR);
                const float scalar = cpu_vec_dot(t, n, w, a);
                for (int isa = 0; isa <= 2; isa++) {
                    if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
                    const float got = cpu_vec_dot(t, n, w, a);
                    /* only float rounding of scales and partial sums */
                    const double tol = mag * 2e-6 + 1e-30;
                    if (fabs(got - ref) > tol || fabs(got - scalar) > tol)
                        fail_msg("%s n=%lld isa=%s: got %.9g ref %.9g scalar %.9g (tol %g)",
                                 rt_type_name(t), (long long)n, cpu_isa_name((cpu_isa_t)isa), got,
                                 ref, scalar, tol);
                }
            }
        }
    }
    cpu_quant_set_isa(CPU_ISA_AVX512);
}

/* ------------------------------------------------- matmul invariance */

static void matmul_invariance(const int N_IN) {
    enum { N_OUT = 37, M = 64, MAX_IN = 800 };
    static float xw[N_OUT * MAX_IN], xa[M * MAX_IN];
    static uint8_t W[N_OUT * MAX_IN * 4], X[M * MAX_IN * 4];
    static float Y64[M * N_OUT], Yk[M * N_OUT], Y1[N_OUT];
    for (int j = 0; j < N_OUT * N_IN; j++)
        xw[j] = nrand();
    for (int j = 0; j < M * N_IN; j++)
        xa[j] = nrand();
    for (size_t ti = 0; ti < N_WTYPES; ti++) {
        const rt_type_t t = k_weight_types[ti];
        const rt_type_t vt = rt_type_traits(t)->vec_dot_type;
        if (N_IN % rt_type_traits(t)->block_size != 0) continue;
        const size_t ws = rt_type_row_size(t, N_IN), xs = rt_type_row_size(vt, N_IN);
        for (int r = 0; r < N_OUT; r++)
            cpu_quantize_row(t, xw + r * N_IN, W + r * ws, N_IN);
        for (int isa = 0; isa <= 2; isa++) {
            if ((int)cpu_quant_set_isa((cpu_isa_t)isa) != isa) continue;
            for (int i = 0; i < M; i++)
                cpu_quantize_act(vt, xa + i * N_IN, X + i * xs, N_IN);
            cpu_matmul(t, N_IN, W, ws, X, xs, M, Y64, N_OUT, 0, N_OUT);
            /* each row alone (m = 1) */
            for (int i = 0; i < M; i++) {
                cpu_matmul(t, N_IN, W, ws, X + i * xs, xs, 1, Y1, N_OUT, 0, N_OUT);
                assert_memory_equal(Y1, Y64 + i * N_OUT, sizeof(Y1));
                /* and cpu_vec_dot agrees bit for bit */
                for (int r = 0; r < N_OUT; r += 9) {
                    const float d = cpu_vec_dot(t, N_IN, W + r * ws, X + i * xs);
                    assert_int_equal(fbits(d), fbits(Y64[i * N_OUT + r]));
                }
            }
            /* m = 7 tiles at odd offsets, and split row ranges */
            memset(Yk, 0, sizeof(Yk));
            for (int i0 = 0; i0 < M; i0 += 7) {
                const int mm = M - i0 < 7 ? M - i0 : 7;
                cpu_matmul(t, N_IN, W, ws, X + i0 * xs, xs, mm, Yk + i0 * N_OUT, N_OUT, 0, 11);
                cpu_matmul(t, N_IN, W, ws, X + i0 * xs, xs, mm, Yk + i0 * N_OUT, N_OUT, 11, N_OUT);
            }
            if (memcmp(Yk, Y64, sizeof(Yk)) != 0)
                fail_msg("%s isa=%s: m=7 differs from m=64", rt_type_name(t),
                         cpu_isa_name((cpu_isa_t)isa));
            /* and the values are right */
            for (int i = 0; i < M; i += 13)
                for (int r = 0; r < N_OUT; r += 5) {
                    const double ref = ref_dot(t, N_IN, W + r * ws, X + i * xs);
                    const double mag = abs_dot(t, N_IN, W + r * ws, X + i * xs);
                    assert_true(fabs(Y64[i * N_OUT + r] - ref) <= mag * 2e-6 + 1e-30);
                }
        }
    }
    cpu_quant_set_isa(CPU_ISA_AVX512);
}

static void test_matmul_batch_invariance(void **state) {
    (void)state;
    matmul_invariance(512);
    matmul_invariance(800); /* odd number of 32-blocks: tail paths */
    matmul_invariance(80);  /* float types: masked tails */
    matmul_invariance(88);  /* and a tail of 8 for the 16-element F16 steps */
}

static void test_isa_select(void **state) {
    (void)state;
    const cpu_isa_t best = cpu_quant_detect_isa();
    assert_int_equal(cpu_quant_set_isa(CPU_ISA_SCALAR), CPU_ISA_SCALAR);
    assert_int_equal(cpu_quant_get_isa(), CPU_ISA_SCALAR);
    assert_int_equal(cpu_quant_set_isa(CPU_ISA_AVX512), best);
    assert_string_equal(cpu_isa_name(CPU_ISA_AVX2), "avx2");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traits),
        cmocka_unit_test(test_isa_select),
        cmocka_unit_test(test_fp16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_kat_q8_0),
        cmocka_unit_test(test_kat_q4_0_q4_1),
        cmocka_unit_test(test_kat_k_quants),
        cmocka_unit_test(test_act_quant_bits),
        cmocka_unit_test(test_compat_kernels),
        cmocka_unit_test(test_roundtrip_error),
        cmocka_unit_test(test_vec_dot),
        cmocka_unit_test(test_matmul_batch_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
