/*
 * types.c - the table of tensor element types (ggml/GGUF ids, block sizes,
 * vec_dot types) and exact scalar fp16/bf16 conversions.
 *
 * Conversions round to nearest even, keep infinities, quiet NaNs the way
 * x86 F16C does (the top mantissa bits are kept, the quiet bit is set) and
 * produce/consume subnormals, so they give the same bits as ggml on x86.
 */
#include "rotor/types.h"

#include <string.h>
#include <strings.h>

#define T(id_, name_, bs_, ts_, q_, sup_, vt_)                                                     \
    [id_] = {.name = name_,                                                                        \
             .block_size = bs_,                                                                    \
             .type_size = ts_,                                                                     \
             .is_quantized = q_,                                                                   \
             .supported = sup_,                                                                    \
             .vec_dot_type = vt_}

static const rt_type_traits_t rt_traits[RT_TYPE_COUNT] = {
    T(RT_TYPE_F32, "f32", 1, 4, false, true, RT_TYPE_F32),
    T(RT_TYPE_F16, "f16", 1, 2, false, true, RT_TYPE_F16),
    T(RT_TYPE_BF16, "bf16", 1, 2, false, true, RT_TYPE_BF16),
    T(RT_TYPE_Q4_0, "q4_0", 32, 18, true, true, RT_TYPE_Q8_0),
    T(RT_TYPE_Q4_1, "q4_1", 32, 20, true, true, RT_TYPE_Q8_1),
    T(RT_TYPE_Q5_0, "q5_0", 32, 22, true, true, RT_TYPE_Q8_0),
    T(RT_TYPE_Q5_1, "q5_1", 32, 24, true, true, RT_TYPE_Q8_1),
    T(RT_TYPE_Q8_0, "q8_0", 32, 34, true, true, RT_TYPE_Q8_0),
    /* activation-only types: no dot product with them as weights */
    T(RT_TYPE_Q8_1, "q8_1", 32, 36, true, false, RT_TYPE_Q8_1),
    T(RT_TYPE_Q2_K, "q2_K", 256, 84, true, true, RT_TYPE_Q8_K),
    T(RT_TYPE_Q3_K, "q3_K", 256, 110, true, true, RT_TYPE_Q8_K),
    T(RT_TYPE_Q4_K, "q4_K", 256, 144, true, true, RT_TYPE_Q8_K),
    T(RT_TYPE_Q5_K, "q5_K", 256, 176, true, true, RT_TYPE_Q8_K),
    T(RT_TYPE_Q6_K, "q6_K", 256, 210, true, true, RT_TYPE_Q8_K),
    T(RT_TYPE_Q8_K, "q8_K", 256, 292, true, false, RT_TYPE_Q8_K),
};

#undef T

const rt_type_traits_t *rt_type_traits(int type) {
    if (type < 0 || type >= RT_TYPE_COUNT || rt_traits[type].name == NULL) return NULL;
    return &rt_traits[type];
}

const char *rt_type_name(int type) {
    const rt_type_traits_t *tr = rt_type_traits(type);
    return tr ? tr->name : "unknown";
}

int rt_type_parse(const char *name) {
    if (name == NULL) return -1;
    for (int t = 0; t < RT_TYPE_COUNT; t++) {
        if (rt_traits[t].name && strcasecmp(rt_traits[t].name, name) == 0) return t;
    }
    return -1;
}

size_t rt_type_row_size(rt_type_t t, int64_t n) {
    const rt_type_traits_t *tr = rt_type_traits((int)t);
    if (tr == NULL || n < 0) return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float rt_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        return f32_from_bits(f32_bits((float)mant * 0x1p-24f) | sign);
    }
    if (exp == 31) /* inf, or NaN made quiet (as F16C does) */
        return f32_from_bits(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t rt_fp32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) /* NaN: quiet it, keep the top payload bits */
        return sign | 0x7e00u | (uint16_t)((x >> 13) & 0x3ffu);
    if (x >= 0x477ff000u) /* >= 65520 rounds to infinity */
        return sign | 0x7c00u;
    if (x < 0x38800000u) {
        /* result is subnormal or zero: let the FPU round at 2^-24 by adding
         * 0.5 (whose ulp is 2^-24); the low bits are then the half mantissa */
        float r = f32_from_bits(x) + 0.5f;
        return sign | (uint16_t)(f32_bits(r) - 0x3f000000u);
    }
    uint32_t odd = (x >> 13) & 1u;
    x += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
    return sign | (uint16_t)(x >> 13);
}

float rt_bf16_to_fp32(uint16_t h) {
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t rt_fp32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet it (as ggml) */
        return (uint16_t)((x >> 16) | 64u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
