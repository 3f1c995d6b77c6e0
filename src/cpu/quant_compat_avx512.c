/*
 * quant_compat_avx512.c - Q4_1 x Q8_1 and Q8_0 x Q8_0 dot tiles in the exact
 * floating-point order llama.cpp's x86 kernels use, so rotor's logits match
 * llama.cpp's bit for bit on models such as SmolLM2 whose activations are
 * re-quantized every layer (there a one-ulp difference flips a Q8 rounding
 * and the logits drift by percents).
 *
 * The order, per (weight row, activation row) pair:
 *   for each 32-block b:  lanes[l] = integer sum of the 4 products of
 *                         elements 4l..4l+3 (exact, however computed)
 *                         acc[l]   = fma(dw_b * dx_b, (float)lanes[l], acc[l])
 *                         (Q4_1)  mins = fma(m_b, s_b, mins)
 *   result = hsum8(acc) (+ mins), hsum8 = ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))
 * Every pair has its own accumulators: batch invariant as required by
 * cpu_quant.h. Compiled with -mavx512*; called only after cpuid.
 */
#define COMPAT_DOT4(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define COMPAT_NAME(t) cpu_compat_##t##_avx512
#include "cpu/quant_compat_body.h"
