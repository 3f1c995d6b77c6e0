/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Parses the input with gguf_open_buffer and, when the reader accepts it,
 * touches everything the accessors hand out: every key, every scalar through
 * every conversion, every array element (numeric bytes and each string's
 * bytes), every tensor's name, dims and every byte of its data. Any read the
 * reader did not bounds-check shows up under AddressSanitizer.
 *
 * Built by tests/fuzz/run_fuzz.sh (clang -fsanitize=fuzzer,address,undefined)
 * and, with replay_main.c, by the Makefile as build/tests/fuzz_gguf_replay.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/gguf.h"

#include "fuzz_touch.h"


static size_t elem_size(gguf_type_t t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static uint64_t walk_kv(const gguf_ctx_t *g, int64_t i)
{
    uint64_t h = 0;
    const char *key = gguf_kv_key(g, i);
    if (!key) abort(); /* every index in range has a key */
    h += touch(key, strlen(key));
    if (gguf_find_key(g, key) != i) abort(); /* keys are unique */
    gguf_type_t t = gguf_kv_type(g, i);
    if ((unsigned)t >= GGUF_TYPE_COUNT) abort();

    int64_t iv;
    double dv;
    if (gguf_kv_as_i64(g, i, &iv)) h += (uint64_t)iv;
    if (gguf_kv_as_f64(g, i, &dv)) h += (uint64_t)(dv == dv);
    const char *s = gguf_kv_as_str(g, i);
    if (s) h += touch(s, strlen(s));
    h += (uint64_t)gguf_get_i64(g, key, 7);
    h += (uint64_t)(gguf_get_f64(g, key, 0.5) != 0);
    const char *gs = gguf_get_str(g, key, NULL);
    if (gs) h += touch(gs, strlen(gs));
    if ((t == GGUF_TYPE_STRING) != (s != NULL)) abort();

    gguf_type_t at = gguf_arr_type(g, i);
    uint64_t n = gguf_arr_len(g, i);
    if (t != GGUF_TYPE_ARRAY) {
        if (n != 0) abort();
        return h;
    }
    if (at == GGUF_TYPE_STRING) {
        if (gguf_arr_data(g, i) != NULL) abort();
        for (uint64_t j = 0; j < n; j++) {
            gguf_str_t e = gguf_arr_str(g, i, j);
            if (e.len && !e.data) abort();
            h += touch(e.data, e.len);
        }
        gguf_str_t past = gguf_arr_str(g, i, n); /* out of range: must be harmless */
        h += past.len;
    } else {
        size_t es = elem_size(at);
        if (es == 0) abort(); /* arrays of arrays / unknown types were refused */
        const void *d = gguf_arr_data(g, i);
        if (n && !d) abort();
        h += touch(d, (size_t)n * es);
    }
    return h;
}

static uint64_t walk_tensor(const gguf_ctx_t *g, int64_t i)
{
    const gguf_tensor_info_t *t = gguf_tensor(g, i);
    if (!t || !t->name) abort();
    uint64_t h = touch(t->name, strlen(t->name));
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) abort();
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->ne[d] < 1) abort();
        h += (uint64_t)t->ne[d];
    }
    if (!rt_type_traits((int)t->type)) abort();
    const gguf_tensor_info_t *f = gguf_find_tensor(g, t->name);
    if (!f) abort();
    h += (uint64_t)t->offset + t->nbytes;
    if (t->nbytes && !t->data) abort();
    if (t->data) {
        /* the data lies inside the data section, at its aligned offset */
        if ((size_t)t->offset % gguf_alignment(g) != 0) abort();
        h += touch(t->data, t->nbytes);
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_ctx_t *g = NULL;
    if (gguf_open_buffer(data, size, &g) != RT_OK) return 0;
    uint64_t h = gguf_version(g) + gguf_alignment(g) + gguf_data_offset(g) + gguf_file_size(g);
    if (gguf_data_offset(g) > size && gguf_tensor_count(g) > 0) abort();
    int64_t nkv = gguf_kv_count(g), nt = gguf_tensor_count(g);
    for (int64_t i = 0; i < nkv; i++) h += walk_kv(g, i);
    for (int64_t i = 0; i < nt; i++) h += walk_tensor(g, i);
    /* out-of-range indices must be refused, not read */
    if (gguf_kv_key(g, nkv) || gguf_kv_key(g, -1) || gguf_tensor(g, nt) || gguf_tensor(g, -1)) abort();
    h += (uint64_t)gguf_find_key(g, "general.architecture");
    h += gguf_find_tensor(g, "token_embd.weight") != NULL;
    fuzz_sink = h;
    gguf_close(g);
    return 0;
}
