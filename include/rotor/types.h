/*
 * types.h - tensor element types (the GGML/GGUF type ids), their block
 * layout, and conversions between them.
 *
 * Quantized types store blocks of `block_size` elements in `type_size` bytes;
 * the block structs are bit-compatible with ggml's so GGUF files are read in
 * place. Every weight type has a "vec_dot type": the format activations are
 * converted to before dot products with rows of that weight type (as in
 * ggml: Q4_0/Q8_0 -> Q8_0, Q4_1 -> Q8_1, Q4_K/Q6_K -> Q8_K, F16 -> F16,
 * BF16 -> BF16, F32 -> F32). Using the same vec_dot types as llama.cpp makes
 * our logits track llama.cpp's closely.
 */
#ifndef ROTOR_TYPES_H
#define ROTOR_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

typedef enum {
    RT_TYPE_F32 = 0,
    RT_TYPE_F16 = 1,
    RT_TYPE_Q4_0 = 2,
    RT_TYPE_Q4_1 = 3,
    RT_TYPE_Q5_0 = 6,
    RT_TYPE_Q5_1 = 7,
    RT_TYPE_Q8_0 = 8,
    RT_TYPE_Q8_1 = 9,
    RT_TYPE_Q2_K = 10,
    RT_TYPE_Q3_K = 11,
    RT_TYPE_Q4_K = 12,
    RT_TYPE_Q5_K = 13,
    RT_TYPE_Q6_K = 14,
    RT_TYPE_Q8_K = 15,
    RT_TYPE_BF16 = 30,
    RT_TYPE_COUNT = 40, /* upper bound of ids we know; not a type */
} rt_type_t;

typedef struct {
    const char *name;       /* "q4_1" */
    int64_t block_size;     /* elements per block (1 for f32/f16/bf16) */
    size_t type_size;       /* bytes per block */
    bool is_quantized;
    bool supported;         /* we can dequantize it and use it as weights */
    rt_type_t vec_dot_type; /* activation format for dot products */
} rt_type_traits_t;

/* Traits of a type id, or NULL when the id is unknown. */
const rt_type_traits_t *rt_type_traits(int type);
/* Name of a type ("f16"), "unknown" for unknown ids. */
const char *rt_type_name(int type);
/* Parse a name ("q4_1", "Q4_1", "f16"); returns -1 if unknown. */
int rt_type_parse(const char *name);
/* Bytes taken by n elements of type t (n must be a multiple of block_size). */
size_t rt_type_row_size(rt_type_t t, int64_t n);

/* Scalar IEEE half and bfloat16 conversions (round to nearest even). */
float rt_fp16_to_fp32(uint16_t h);
uint16_t rt_fp32_to_fp16(float f);
float rt_bf16_to_fp32(uint16_t h);
uint16_t rt_fp32_to_bf16(float f);

#endif
