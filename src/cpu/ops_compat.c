/*
 * ops_compat.c - attention, softmax and SwiGLU in the floating-point order
 * of llama.cpp's x86-64 AVX-512 CPU backend (the reference our tests compare
 * against), written as portable C over explicit 16-lane arrays so the result
 * is the same on every ISA (GCC's target_clones only makes it faster).
 *
 *  - exp: the single-precision scheme of ARM's optimized-routines that ggml
 *    vectorizes (2^n * p(b) with a degree-5 polynomial, n = round(x/ln2)),
 *    with its coefficients, so softmax and SiLU agree to the bit;
 *  - 16-lane reductions in the order of _mm512_reduce_add_ps;
 *  - dot products: "gemm" order (one 16-lane FMA chain, llamafile's tinyBLAS,
 *    used by llama.cpp when a step has 2+ query tokens) or "gemv" order (four
 *    16-lane chains over 64-element steps, ggml_vec_dot_f16/f32, one token).
 */
#include "rotor/cpu_ops.h"

#include <math.h>
#include <string.h>

#include "rotor/cpu_quant.h"
#include "rotor/fast_exp.h"
#include "rotor/types.h"

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define COMPAT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define COMPAT_CLONES
#endif

/* _mm512_reduce_add_ps's order (GCC): halves, quarters, then pairs */
static inline float reduce16(const float a[16])
{
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++) t3[i] = a[8 + i] + a[i];
    for (int i = 0; i < 4; i++) t6[i] = t3[4 + i] + t3[i];
    const float t80 = t6[0] + t6[2], t81 = t6[1] + t6[3];
    return t80 + t81;
}

static inline float compat_exp1(float x)
{
    float n;
    const float j = rt_exp_poly(x, &n);
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    return scalbnf(j, (int)n);
}

void cpu_compat_swiglu_avx512(float *g, const float *u, int n);
void cpu_compat_attn_head_avx512(const float *q, const float *kt, const float *vt, int hd, int n_pos,
                                 int n_pad, float scale, bool gemm, bool kq_gemv_always, bool round_p_f16,
                                 float *p, float *out);

static bool compat_has_avx512(void)
{
#if defined(__x86_64__)
    /* follows the kernels' ISA choice (ROTOR_ISA can force a lower one) */
    return cpu_quant_get_isa() == CPU_ISA_AVX512;
#else
    return false;
#endif
}

COMPAT_CLONES
void cpu_compat_swiglu(float *g, const float *u, int n)
{
    if (compat_has_avx512()) {
        cpu_compat_swiglu_avx512(g, u, n);
        return;
    }
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            const float x = g[i + l];
            g[i + l] = (x / (1.0f + compat_exp1(0.0f - x))) * u[i + l];
        }
    for (; i < n; i++) g[i] = (g[i] / (1.0f + expf(-g[i]))) * u[i];
}

void cpu_compat_softmax(float *x, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        float e[16];
        for (int l = 0; l < 16; l++) e[l] = compat_exp1(x[i + l] - mx);
        for (int l = 0; l < 16; l++) x[i + l] = e[l];
        sum += (double)reduce16(e);
    }
    for (; i < n; i++) {
        const float e = expf(x[i] - mx);
        sum += (double)e;
        x[i] = e;
    }
    const float inv = (float)(1.0 / sum);
    for (i = 0; i < n; i++) x[i] *= inv;
}

/* gemm order: one 16-lane FMA chain over n (n % 16 == 0) */
static inline float dot_gemm(const float *a, const float *b, int n)
{
    float acc[16] = {0};
    for (int i = 0; i < n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
    return reduce16(acc);
}

float cpu_compat_dot_f32_gemm(const float *a, const float *b, int n) { return dot_gemm(a, b, n); }

/* gemv order: four 16-lane chains per 64 elements, then leftovers in double */
static inline float dot_gemv(const float *a, const float *b, int n)
{
    float s[4][16] = {{0}};
    const int np = n & ~63;
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++) s[j][l] = fmaf(a[i + 16 * j + l], b[i + 16 * j + l], s[j][l]);
    for (int l = 0; l < 16; l++) {
        s[0][l] += s[2][l];
        s[1][l] += s[3][l];
    }
    for (int l = 0; l < 16; l++) s[0][l] += s[1][l];
    double sum = reduce16(s[0]);
    for (int i = np; i < n; i++) sum += (double)(a[i] * b[i]);
    return (float)sum;
}

/*
 * One (query head, query token) of attention over n_pos cached positions.
 *   q: (hd) query (already rounded to f16 by the caller when K is f16)
 *   kt: (n_pad, hd) keys, rows >= n_pos unused; vt: (hd, n_pad) values
 *   transposed, zero in columns >= n_pos; n_pad = n_pos rounded up to 64
 *   p: (n_pad) scratch; out: (hd)
 *   gemm: the step had 2+ query tokens of this sequence (llama.cpp's
 *   tinyBLAS path) - chooses the dot order; kq_gemv_always: K is f32, where
 *   llama.cpp always uses the gemv order for KQ; round_p_f16: V is f16, so
 *   the probabilities are rounded to f16 first (ggml's vec_dot_type).
 */
COMPAT_CLONES
void cpu_compat_attn_head(const float *q, const float *kt, const float *vt, int hd, int n_pos, int n_pad,
                          float scale, bool gemm, bool kq_gemv_always, bool round_p_f16, float *p, float *out)
{
    if (compat_has_avx512()) {
        cpu_compat_attn_head_avx512(q, kt, vt, hd, n_pos, n_pad, scale, gemm, kq_gemv_always, round_p_f16, p, out);
        return;
    }
    const bool kq_gemm = gemm && !kq_gemv_always && hd % 16 == 0;
    float mx = -INFINITY;
    for (int i = 0; i < n_pos; i++) {
        const float s = (kq_gemm ? dot_gemm(kt + (size_t)i * hd, q, hd) : dot_gemv(kt + (size_t)i * hd, q, hd)) * scale;
        p[i] = s;
        if (s > mx) mx = s;
    }
    /* softmax: exp in 16-lane groups, group sums added in double */
    double sum = 0.0;
    const int n16 = (n_pos + 15) & ~15;
    for (int i = n_pos; i < n16; i++) p[i] = 0.0f;
    for (int i = 0; i < n16; i += 16) {
        float e[16];
        for (int l = 0; l < 16; l++) e[l] = i + l < n_pos ? compat_exp1(p[i + l] - mx) : 0.0f;
        for (int l = 0; l < 16; l++) p[i + l] = e[l];
        sum += (double)reduce16(e);
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n_pos; i++) p[i] *= inv;
    for (int i = n_pos; i < n_pad; i++) p[i] = 0.0f;
    if (round_p_f16)
        for (int i = 0; i < n_pos; i++) p[i] = rt_fp16_to_fp32(rt_fp32_to_fp16(p[i]));
    for (int d = 0; d < hd; d++) {
        const float *v = vt + (size_t)d * n_pad;
        out[d] = gemm ? dot_gemm(v, p, n_pad) : dot_gemv(v, p, n_pad);
    }
}
