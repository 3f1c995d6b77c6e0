/*
 * test_attn_engine.c - the engine's RMSNorm, and its attention (cpu_attn_engine) against a
 * double-precision softmax attention over the same paged cache, for f16 and
 * f32 caches, several head groupings and lengths around chunk and block
 * edges; a head's bits do not depend on the heads computed with it.
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

#define TEST_RNG_SEED 0x5851F42D4C957F2Dull
#include "test_rng.h"

#include "rotor/cpu_ops.h"
#include "rotor/cpu_quant.h"
#include "rotor/types.h"


enum { BS = 32, NB = 12, HD = 64, NKV = 2, KVD = NKV * HD, MAXG = 6 };

typedef struct {
    bool f16;
    void *k, *v;       /* engine layout, NB blocks */
    float *kf, *vf;    /* the same values as floats: [block][pos][kvd] */
    int32_t blocks[NB];
} cache_t;

static void cache_make(cache_t *c, bool f16)
{
    const size_t n = (size_t)NB * BS * KVD, elt = f16 ? 2 : 4;
    c->f16 = f16;
    c->k = malloc(n * elt);
    c->v = malloc(n * elt);
    c->kf = malloc(n * sizeof(float));
    c->vf = malloc(n * sizeof(float));
    for (int b = 0; b < NB; b++)
        for (int j = 0; j < BS; j++)
            for (int d = 0; d < KVD; d++) {
                float kx = nrand() * 2.0f, vx = nrand();
                const size_t ik = ((size_t)b * KVD + d) * BS + j, iv = ((size_t)b * BS + j) * KVD + d;
                if (f16) {
                    const uint16_t hk = rt_fp32_to_fp16(kx), hv = rt_fp32_to_fp16(vx);
                    ((uint16_t *)c->k)[ik] = hk;
                    ((uint16_t *)c->v)[iv] = hv;
                    kx = rt_fp16_to_fp32(hk);
                    vx = rt_fp16_to_fp32(hv);
                } else {
                    ((float *)c->k)[ik] = kx;
                    ((float *)c->v)[iv] = vx;
                }
                c->kf[((size_t)b * BS + j) * KVD + d] = kx;
                c->vf[((size_t)b * BS + j) * KVD + d] = vx;
            }
    for (int i = 0; i < NB; i++) c->blocks[i] = (i * 5 + 3) % NB; /* scattered */
}

static void cache_free(cache_t *c)
{
    free(c->k);
    free(c->v);
    free(c->kf);
    free(c->vf);
}

/* double-precision reference for one head */
static void reference(const cache_t *c, const float *q, int hoff, int n_pos, float scale, double *out)
{
    double *s = malloc(sizeof(double) * (size_t)n_pos), mx = -INFINITY, sum = 0;
    for (int i = 0; i < n_pos; i++) {
        const float *kr = c->kf + ((size_t)c->blocks[i / BS] * BS + i % BS) * KVD + hoff;
        double a = 0;
        for (int d = 0; d < HD; d++) a += (double)q[d] * kr[d];
        s[i] = a * scale;
        mx = s[i] > mx ? s[i] : mx;
    }
    for (int i = 0; i < n_pos; i++) sum += (s[i] = exp(s[i] - mx));
    for (int d = 0; d < HD; d++) out[d] = 0;
    for (int i = 0; i < n_pos; i++) {
        const float *vr = c->vf + ((size_t)c->blocks[i / BS] * BS + i % BS) * KVD + hoff;
        for (int d = 0; d < HD; d++) out[d] += s[i] / sum * vr[d];
    }
    free(s);
}

static void check(bool f16)
{
    cache_t c;
    cache_make(&c, f16);
    float q[MAXG * HD], out[MAXG * HD], one[HD], p[4 * NB * BS];
    double ref[HD];
    const float scale = 0.125f;
    const cpu_isa_t best = cpu_quant_detect_isa();
    const int lens[] = {1, 2, 15, 16, 17, 31, 32, 33, 100, NB * BS};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const int n_pos = lens[li];
        for (int G = 1; G <= MAXG; G++) {
            for (int i = 0; i < G * HD; i++) q[i] = nrand();
            const int hoff = (G % NKV) * HD;
            cpu_attn_engine(q, G, HD, c.k, c.v, f16, c.blocks, BS, KVD, hoff, HD, n_pos, scale, p, out, HD);
            for (int g = 0; g < G; g++) {
                reference(&c, q + g * HD, hoff, n_pos, scale, ref);
                double err = 0, mag = 0;
                for (int d = 0; d < HD; d++) {
                    err = fmax(err, fabs(out[g * HD + d] - ref[d]));
                    mag = fmax(mag, fabs(ref[d]));
                }
                if (err > 2e-5 * (mag + 1e-3))
                    fail_msg("f16=%d n_pos=%d G=%d head %d: error %.3g (magnitude %.3g)", f16, n_pos, G, g, err, mag);
                /* alone, and on every ISA: the same bits */
                for (int isa = (int)best; isa >= CPU_ISA_SCALAR; isa--) {
                    cpu_quant_set_isa((cpu_isa_t)isa);
                    cpu_attn_engine(q + g * HD, 1, HD, c.k, c.v, f16, c.blocks, BS, KVD, hoff, HD, n_pos, scale, p,
                                    one, HD);
                    if (memcmp(one, out + g * HD, sizeof one) != 0)
                        fail_msg("f16=%d n_pos=%d G=%d head %d: bits differ alone on isa %s", f16, n_pos, G, g,
                                 cpu_isa_name((cpu_isa_t)isa));
                }
                cpu_quant_set_isa(best);
            }
        }
    }
    cache_free(&c);
}

static void test_f32_cache(void **state)
{
    (void)state;
    check(false);
}

static void test_f16_cache(void **state)
{
    (void)state;
    check(true);
}

/* a score far below the others gives an exact zero weight, a NaN query
 * does not crash */
static void test_extremes(void **state)
{
    (void)state;
    cache_t c;
    cache_make(&c, false);
    float q[HD], out[HD], p[4 * NB * BS];
    for (int d = 0; d < HD; d++) q[d] = 0.0f;
    cpu_attn_engine(q, 1, HD, c.k, c.v, false, c.blocks, BS, KVD, 0, HD, 40, 1.0f, p, out, HD);
    /* all scores 0: the plain mean of the 40 value rows */
    for (int d = 0; d < HD; d++) {
        double m = 0;
        for (int i = 0; i < 40; i++) m += c.vf[((size_t)c.blocks[i / BS] * BS + i % BS) * KVD + d];
        assert_true(fabs(out[d] - m / 40) < 1e-5);
    }
    q[0] = NAN;
    cpu_attn_engine(q, 1, HD, c.k, c.v, false, c.blocks, BS, KVD, 0, HD, 40, 1.0f, p, out, HD);
    cache_free(&c);
}

/* the engine's RMSNorm against double precision, odd lengths included */
static void test_rmsnorm_engine(void **state)
{
    (void)state;
    float x[1000], w[1000], y[1000];
    const int lens[] = {1, 15, 16, 17, 576, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const int n = lens[li];
        for (int i = 0; i < n; i++) x[i] = nrand() * 3.0f, w[i] = 1.0f + 0.1f * nrand();
        cpu_rmsnorm_engine(x, w, y, n, 1e-5f);
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        const double sc = 1.0 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++) {
            const double ref = x[i] * sc * w[i];
            if (fabs(y[i] - ref) > 2e-6 * fabs(ref) + 1e-7) fail_msg("n=%d i=%d: %.9g vs %.9g", n, i, y[i], ref);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_engine),
        cmocka_unit_test(test_f32_cache),
        cmocka_unit_test(test_f16_cache),
        cmocka_unit_test(test_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
