/*
 * quant_dispatch.c - picks the SIMD kernels at run time and implements the
 * public row-level entry points of cpu_quant.h on top of them.
 *
 * The ISA is detected once (cpuid via __builtin_cpu_supports); ROTOR_ISA=
 * scalar|avx2|avx512 in the environment, or cpu_quant_set_isa(), forces a
 * lower one. Types without a kernel for the chosen ISA use the scalar one.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/quant_impl.h"

static _Atomic int g_isa = -1;

cpu_isa_t cpu_quant_detect_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        return CPU_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        return CPU_ISA_AVX2;
#endif
    return CPU_ISA_SCALAR;
}

static cpu_isa_t isa_from_env(cpu_isa_t best) {
    const char *e = getenv("ROTOR_ISA");
    cpu_isa_t want = best;
    if (e == NULL || *e == '\0') return best;
    if (strcmp(e, "scalar") == 0)
        want = CPU_ISA_SCALAR;
    else if (strcmp(e, "avx2") == 0)
        want = CPU_ISA_AVX2;
    else if (strcmp(e, "avx512") == 0)
        want = CPU_ISA_AVX512;
    return want < best ? want : best;
}

cpu_isa_t cpu_quant_get_isa(void) {
    int isa = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (isa < 0) {
        isa = (int)isa_from_env(cpu_quant_detect_isa());
        atomic_store(&g_isa, isa);
    }
    return (cpu_isa_t)isa;
}

cpu_isa_t cpu_quant_set_isa(cpu_isa_t isa) {
    cpu_isa_t best = cpu_quant_detect_isa();
    if ((int)isa < 0) isa = CPU_ISA_SCALAR;
    if (isa > best) isa = best;
    atomic_store(&g_isa, (int)isa);
    return isa;
}

const char *cpu_isa_name(cpu_isa_t isa) {
    switch (isa) {
    case CPU_ISA_SCALAR:
        return "scalar";
    case CPU_ISA_AVX2:
        return "avx2";
    case CPU_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

cpu_dot_tile_fn cpu_dot_kernel(rt_type_t t) {
    if ((int)t < 0 || t >= RT_TYPE_COUNT) return NULL;
    cpu_dot_tile_fn fn = NULL;
    switch (cpu_quant_get_isa()) {
    case CPU_ISA_AVX512:
        fn = cpu_dot_avx512[t];
        if (fn == NULL) fn = cpu_dot_avx2[t];
        break;
    case CPU_ISA_AVX2:
        fn = cpu_dot_avx2[t];
        break;
    case CPU_ISA_SCALAR:
        break;
    }
    return fn ? fn : cpu_dot_scalar[t];
}

bool cpu_dot_gemv_prefetches(rt_type_t t) {
    return cpu_quant_get_isa() == CPU_ISA_AVX512 && (int)t >= 0 && (int)t < 64 &&
           (cpu_dot_avx512_gemv_prefetch >> t & 1);
}

static const cpu_gemm8_t gemm8_q4_1_avx512 = {cpu_compat_q4_1_gemm8_prep_avx512, cpu_compat_q4_1_gemm8_avx512};
static const cpu_gemm8_t gemm8_q8_0_avx512 = {cpu_compat_q8_0_gemm8_prep_avx512, cpu_compat_q8_0_gemm8_avx512};

const cpu_gemm8_t *cpu_gemm8_kernel(rt_type_t t) {
    if (cpu_quant_get_isa() != CPU_ISA_AVX512) return NULL;
    if (t == RT_TYPE_Q4_1) return &gemm8_q4_1_avx512;
    if (t == RT_TYPE_Q8_0) return &gemm8_q8_0_avx512;
    return NULL;
}

rt_status_t cpu_dequantize_row(rt_type_t t, const void *src, float *dst, int64_t n) {
    return cpu_ref_dequantize(t, src, dst, n);
}

rt_status_t cpu_quantize_row(rt_type_t t, const float *src, void *dst, int64_t n) {
    return cpu_ref_quantize(t, src, dst, n);
}

void cpu_quantize_act(rt_type_t vt, const float *src, void *dst, int64_t n) {
    if (cpu_quant_get_isa() == CPU_ISA_AVX512 &&
        (vt == RT_TYPE_Q8_0 || vt == RT_TYPE_Q8_1 || vt == RT_TYPE_Q8_K || vt == RT_TYPE_F16 ||
         vt == RT_TYPE_BF16)) {
        cpu_quantize_act_avx512(vt, src, dst, n);
        return;
    }
    if (vt == RT_TYPE_Q8_0 || vt == RT_TYPE_Q8_1) {
        cpu_compat_quantize_q8(src, dst, n, vt == RT_TYPE_Q8_1);
        return;
    }
    (void)cpu_ref_quantize(vt, src, dst, n);
}

float cpu_vec_dot(rt_type_t t, int64_t n, const void *w, const void *a) {
    cpu_dot_tile_fn fn = cpu_dot_kernel(t);
    float out[CPU_DOT_NW * CPU_DOT_NR] = {0};
    if (fn != NULL) fn(n, w, 0, 1, a, 0, 1, out);
    return out[0];
}
