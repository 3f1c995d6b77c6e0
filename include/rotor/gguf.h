/*
 * gguf.h - GGUF (v2, v3) reader over mmap, and a writer.
 *
 * The reader validates everything before handing it out: magic, version,
 * counts against the file size, string lengths, array lengths, tensor
 * dimensions and types, that every tensor's data lies inside the file and is
 * aligned. A hostile file yields RT_ERR_FORMAT (or RT_ERR_UNSUPPORTED) with a
 * message naming the problem; never an out-of-bounds read.
 *
 * Ownership: gguf_ctx_t owns the mapping and all parsed metadata. Strings and
 * tensor data pointers returned by accessors point into the mapping or into
 * ctx-owned memory and stay valid until gguf_close().
 */
#ifndef ROTOR_GGUF_H
#define ROTOR_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"
#include "rotor/types.h"

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type_t;

typedef struct {
    uint64_t len;
    const char *data; /* not NUL-terminated in general; see gguf_get_str */
} gguf_str_t;

typedef struct gguf_ctx gguf_ctx_t;

typedef struct {
    const char *name;               /* NUL-terminated, owned by ctx */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];      /* ne[0] is the contiguous (row) dimension */
    rt_type_t type;
    uint64_t offset;                /* relative to the data section */
    size_t nbytes;
    const void *data;               /* into the mapping */
} gguf_tensor_info_t;

/* Open and validate a GGUF file. On success *out owns the mapping. */
rt_status_t gguf_open(const char *path, gguf_ctx_t **out);
/* Parse a GGUF image held in memory (not copied; must outlive ctx). Used by
 * the fuzzer and tests. */
rt_status_t gguf_open_buffer(const void *buf, size_t size, gguf_ctx_t **out);
void gguf_close(gguf_ctx_t *ctx);

uint32_t gguf_version(const gguf_ctx_t *ctx);
size_t gguf_alignment(const gguf_ctx_t *ctx);
size_t gguf_data_offset(const gguf_ctx_t *ctx);
size_t gguf_file_size(const gguf_ctx_t *ctx);

/* ---- metadata ---- */
int64_t gguf_kv_count(const gguf_ctx_t *ctx);
/* Index of key, or -1. */
int64_t gguf_find_key(const gguf_ctx_t *ctx, const char *key);
const char *gguf_kv_key(const gguf_ctx_t *ctx, int64_t i);
gguf_type_t gguf_kv_type(const gguf_ctx_t *ctx, int64_t i);
/* For arrays: element type and count. */
gguf_type_t gguf_arr_type(const gguf_ctx_t *ctx, int64_t i);
uint64_t gguf_arr_len(const gguf_ctx_t *ctx, int64_t i);
/* Raw pointer to a numeric array's elements (little-endian, packed). NULL for
 * string arrays. */
const void *gguf_arr_data(const gguf_ctx_t *ctx, int64_t i);
/* j-th string of a string array. */
gguf_str_t gguf_arr_str(const gguf_ctx_t *ctx, int64_t i, uint64_t j);
/* Scalar value of kv i converted to the requested type; false if kv i is not
 * a scalar of a compatible kind (any integer/bool for int, any number for f). */
bool gguf_kv_as_i64(const gguf_ctx_t *ctx, int64_t i, int64_t *out);
bool gguf_kv_as_f64(const gguf_ctx_t *ctx, int64_t i, double *out);
/* String value; NUL-terminated copy owned by ctx. NULL if not a string. */
const char *gguf_kv_as_str(const gguf_ctx_t *ctx, int64_t i);

/* Convenience lookups by key with a default when missing or mistyped. */
int64_t gguf_get_i64(const gguf_ctx_t *ctx, const char *key, int64_t dflt);
double gguf_get_f64(const gguf_ctx_t *ctx, const char *key, double dflt);
const char *gguf_get_str(const gguf_ctx_t *ctx, const char *key, const char *dflt);

/* ---- tensors ---- */
int64_t gguf_tensor_count(const gguf_ctx_t *ctx);
const gguf_tensor_info_t *gguf_tensor(const gguf_ctx_t *ctx, int64_t i);
/* By name, or NULL. */
const gguf_tensor_info_t *gguf_find_tensor(const gguf_ctx_t *ctx, const char *name);

/* ---- writer ----
 * Builds a GGUF v3 file in memory-light fashion: metadata and tensor infos are
 * collected, tensor data is copied on add, everything is written by
 * gguf_writer_write(). The writer owns copies of all keys, values and data. */
typedef struct gguf_writer gguf_writer_t;

rt_status_t gguf_writer_create(gguf_writer_t **out);
void gguf_writer_destroy(gguf_writer_t *w);
rt_status_t gguf_writer_set_u32(gguf_writer_t *w, const char *key, uint32_t v);
rt_status_t gguf_writer_set_i32(gguf_writer_t *w, const char *key, int32_t v);
rt_status_t gguf_writer_set_u64(gguf_writer_t *w, const char *key, uint64_t v);
rt_status_t gguf_writer_set_f32(gguf_writer_t *w, const char *key, float v);
rt_status_t gguf_writer_set_bool(gguf_writer_t *w, const char *key, bool v);
rt_status_t gguf_writer_set_str(gguf_writer_t *w, const char *key, const char *v);
/* Numeric array: n elements of type et (not STRING/ARRAY), data copied. */
rt_status_t gguf_writer_set_arr(gguf_writer_t *w, const char *key, gguf_type_t et,
                                const void *data, uint64_t n);
/* String array: n NUL-terminated strings, copied. */
rt_status_t gguf_writer_set_arr_str(gguf_writer_t *w, const char *key, const char *const *strs,
                                    uint64_t n);
/* Tensor with dims ne[0..n_dims) (ne[0] contiguous) of type t; data holds
 * rt_type_row_size(t, ne[0]) * (ne[1]*ne[2]*ne[3]) bytes, copied. */
rt_status_t gguf_writer_add_tensor(gguf_writer_t *w, const char *name, rt_type_t t, int n_dims,
                                   const int64_t *ne, const void *data);
rt_status_t gguf_writer_write(gguf_writer_t *w, const char *path);

#endif
