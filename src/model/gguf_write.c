/*
 * gguf_write.c - GGUF v3 writer (little-endian).
 *
 * Every metadata entry is serialized into its own byte blob when it is set
 * (key, type, value exactly as they will appear in the file), so writing the
 * file is a matter of concatenating blobs. Setting a key that already exists
 * replaces its blob in place (the entry keeps its position). Tensor data is
 * copied on add; offsets are assigned at write time, each tensor starting at
 * a multiple of the alignment (general.alignment if set, else 32) relative to
 * the data section, with zero padding between tensors and after the last.
 *
 * The file is written to "<path>.tmp" and renamed over <path> on success, so
 * a failed write never leaves a half-written model behind.
 */
#include "rotor/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_WRITER_MAX_NAME 63 /* llama.cpp's GGML_MAX_NAME is 64 with the NUL */

typedef struct {
    char *key;
    uint8_t *blob; /* serialized entry: key string, type, value */
    size_t len;
} gw_kv_t;

typedef struct {
    char *name;
    rt_type_t type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    void *data; /* (nbytes) owned copy */
    size_t nbytes;
} gw_tensor_t;

struct gguf_writer {
    gw_kv_t *kv; /* (n_kv) in insertion order */
    size_t n_kv, cap_kv;
    gw_tensor_t *tensors; /* (n_tensors) in insertion order */
    size_t n_tensors, cap_tensors;
    size_t alignment;
};

/* A growable byte buffer used to build one kv blob. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} gw_buf_t;

static void buf_put(gw_buf_t *b, const void *src, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->len + n) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

/* Little-endian encoders, independent of the host byte order. */
static void buf_le(gw_buf_t *b, uint64_t v, size_t n)
{
    uint8_t t[8];
    for (size_t i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, t, n);
}

static void buf_u32(gw_buf_t *b, uint32_t v) { buf_le(b, v, 4); }
static void buf_u64(gw_buf_t *b, uint64_t v) { buf_le(b, v, 8); }

static void buf_str(gw_buf_t *b, const char *s, size_t n)
{
    buf_u64(b, n);
    buf_put(b, s, n);
}

static size_t scalar_size(gguf_type_t t)
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

/* Append n elements of scalar type t from host memory, as little-endian. */
static void buf_elems(gw_buf_t *b, gguf_type_t t, const void *data, uint64_t n)
{
    size_t es = scalar_size(t);
    const uint8_t *p = data;
    for (uint64_t i = 0; i < n; i++, p += es) {
        uint64_t v = 0;
        switch (es) {
        case 1: v = *p; break;
        case 2: { uint16_t x; memcpy(&x, p, 2); v = x; break; }
        case 4: { uint32_t x; memcpy(&x, p, 4); v = x; break; }
        default: memcpy(&v, p, 8); break;
        }
        if (t == GGUF_TYPE_BOOL) v = v != 0;
        buf_le(b, v, es);
    }
}

rt_status_t gguf_writer_create(gguf_writer_t **out)
{
    gguf_writer_t *w = calloc(1, sizeof *w);
    if (!w) return rt_error_set(RT_ERR_NOMEM, "gguf writer: out of memory");
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return RT_OK;
}

void gguf_writer_destroy(gguf_writer_t *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].blob);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->tensors);
    free(w);
}

/* Start a blob for key: its string and the value type. */
static rt_status_t kv_begin(const gguf_writer_t *w, const char *key, gguf_type_t t, gw_buf_t *b)
{
    if (!w || !key || !*key)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: empty metadata key");
    /* the writer lays out the data by it, so it must be the u32 it expects */
    if (t != GGUF_TYPE_UINT32 && strcmp(key, "general.alignment") == 0)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: general.alignment must be set as a u32");
    memset(b, 0, sizeof *b);
    buf_str(b, key, strlen(key));
    buf_u32(b, (uint32_t)t);
    return RT_OK;
}

/* Store a finished blob under key, replacing an existing entry. Takes b. */
static rt_status_t kv_commit(gguf_writer_t *w, const char *key, gw_buf_t *b)
{
    if (b->oom) {
        free(b->p);
        return rt_error_set(RT_ERR_NOMEM, "gguf writer: out of memory for key '%s'", key);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].blob);
            w->kv[i].blob = b->p;
            w->kv[i].len = b->len;
            return RT_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? 2 * w->cap_kv : 32;
        gw_kv_t *nk = realloc(w->kv, nc * sizeof *nk);
        if (!nk) goto oom;
        w->kv = nk;
        w->cap_kv = nc;
    }
    char *k = strdup(key);
    if (!k) goto oom;
    w->kv[w->n_kv++] = (gw_kv_t){k, b->p, b->len};
    return RT_OK;
oom:
    free(b->p);
    return rt_error_set(RT_ERR_NOMEM, "gguf writer: out of memory for key '%s'", key);
}

static rt_status_t set_scalar(gguf_writer_t *w, const char *key, gguf_type_t t, uint64_t bits)
{
    gw_buf_t b = {0};
    rt_status_t st = kv_begin(w, key, t, &b);
    if (st) return st;
    buf_le(&b, bits, scalar_size(t));
    return kv_commit(w, key, &b);
}

rt_status_t gguf_writer_set_u32(gguf_writer_t *w, const char *key, uint32_t v)
{
    if (key && strcmp(key, "general.alignment") == 0) {
        if (v == 0 || (v & (v - 1)) != 0 || v > 65536)
            return rt_error_set(RT_ERR_INVALID,
                                "gguf writer: general.alignment %u is not a power of two up to 65536", v);
    }
    rt_status_t st = set_scalar(w, key, GGUF_TYPE_UINT32, v);
    if (st == RT_OK && strcmp(key, "general.alignment") == 0) w->alignment = v;
    return st;
}

rt_status_t gguf_writer_set_i32(gguf_writer_t *w, const char *key, int32_t v)
{
    return set_scalar(w, key, GGUF_TYPE_INT32, (uint32_t)v);
}

rt_status_t gguf_writer_set_u64(gguf_writer_t *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, GGUF_TYPE_UINT64, v);
}

rt_status_t gguf_writer_set_f32(gguf_writer_t *w, const char *key, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    return set_scalar(w, key, GGUF_TYPE_FLOAT32, bits);
}

rt_status_t gguf_writer_set_bool(gguf_writer_t *w, const char *key, bool v)
{
    return set_scalar(w, key, GGUF_TYPE_BOOL, v ? 1 : 0);
}

rt_status_t gguf_writer_set_str(gguf_writer_t *w, const char *key, const char *v)
{
    if (!v) return rt_error_set(RT_ERR_INVALID, "gguf writer: NULL string for key '%s'", key ? key : "");
    gw_buf_t b = {0};
    rt_status_t st = kv_begin(w, key, GGUF_TYPE_STRING, &b);
    if (st) return st;
    buf_str(&b, v, strlen(v));
    return kv_commit(w, key, &b);
}

rt_status_t gguf_writer_set_arr(gguf_writer_t *w, const char *key, gguf_type_t et, const void *data,
                                uint64_t n)
{
    if (scalar_size(et) == 0)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: key '%s': arrays of type %d are not numeric",
                            key ? key : "", (int)et);
    if (n && !data)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: key '%s': NULL array data", key ? key : "");
    gw_buf_t b = {0};
    rt_status_t st = kv_begin(w, key, GGUF_TYPE_ARRAY, &b);
    if (st) return st;
    buf_u32(&b, (uint32_t)et);
    buf_u64(&b, n);
    buf_elems(&b, et, data, n);
    return kv_commit(w, key, &b);
}

rt_status_t gguf_writer_set_arr_str(gguf_writer_t *w, const char *key, const char *const *strs,
                                    uint64_t n)
{
    if (n && !strs)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: key '%s': NULL string array", key ? key : "");
    for (uint64_t i = 0; i < n; i++)
        if (!strs[i])
            return rt_error_set(RT_ERR_INVALID, "gguf writer: key '%s': string %llu is NULL",
                                key ? key : "", (unsigned long long)i);
    gw_buf_t b = {0};
    rt_status_t st = kv_begin(w, key, GGUF_TYPE_ARRAY, &b);
    if (st) return st;
    buf_u32(&b, GGUF_TYPE_STRING);
    buf_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) buf_str(&b, strs[i], strlen(strs[i]));
    return kv_commit(w, key, &b);
}

rt_status_t gguf_writer_add_tensor(gguf_writer_t *w, const char *name, rt_type_t t, int n_dims,
                                   const int64_t *ne, const void *data)
{
    if (!w || !name || !*name) return rt_error_set(RT_ERR_INVALID, "gguf writer: empty tensor name");
    if (strlen(name) > GGUF_WRITER_MAX_NAME)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: tensor name '%s' is longer than %d bytes",
                            name, GGUF_WRITER_MAX_NAME);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: tensor '%s' has %d dimensions (1..%d allowed)",
                            name, n_dims, GGUF_MAX_DIMS);
    const rt_type_traits_t *tr = rt_type_traits((int)t);
    if (!tr) return rt_error_set(RT_ERR_INVALID, "gguf writer: tensor '%s' has unknown type %d", name, (int)t);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return rt_error_set(RT_ERR_INVALID, "gguf writer: duplicate tensor name '%s'", name);
    int64_t rows = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return rt_error_set(RT_ERR_INVALID, "gguf writer: tensor '%s' dimension %d is %lld", name, d,
                                (long long)ne[d]);
        if (d > 0) {
            if (rows > INT64_MAX / ne[d])
                return rt_error_set(RT_ERR_INVALID, "gguf writer: tensor '%s' is too large", name);
            rows *= ne[d];
        }
    }
    if (ne[0] % tr->block_size != 0)
        return rt_error_set(RT_ERR_INVALID,
                            "gguf writer: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                            name, (long long)ne[0], tr->name, (long long)tr->block_size);
    size_t row = rt_type_row_size(t, ne[0]);
    if (row == 0 || (uint64_t)rows > SIZE_MAX / row)
        return rt_error_set(RT_ERR_INVALID, "gguf writer: tensor '%s' is too large", name);
    size_t nbytes = row * (size_t)rows;
    if (!data) return rt_error_set(RT_ERR_INVALID, "gguf writer: tensor '%s' has no data", name);

    if (w->n_tensors == w->cap_tensors) {
        size_t nc = w->cap_tensors ? 2 * w->cap_tensors : 64;
        gw_tensor_t *nt = realloc(w->tensors, nc * sizeof *nt);
        if (!nt) return rt_error_set(RT_ERR_NOMEM, "gguf writer: out of memory");
        w->tensors = nt;
        w->cap_tensors = nc;
    }
    gw_tensor_t te = {.type = t, .n_dims = n_dims, .nbytes = nbytes};
    for (int d = 0; d < GGUF_MAX_DIMS; d++) te.ne[d] = d < n_dims ? ne[d] : 1;
    te.name = strdup(name);
    te.data = malloc(nbytes ? nbytes : 1);
    if (!te.name || !te.data) {
        free(te.name);
        free(te.data);
        return rt_error_set(RT_ERR_NOMEM, "gguf writer: out of memory for tensor '%s' (%zu bytes)", name,
                            nbytes);
    }
    memcpy(te.data, data, nbytes);
    w->tensors[w->n_tensors++] = te;
    return RT_OK;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static bool write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

static bool write_zeros(FILE *f, size_t n)
{
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (!write_all(f, zeros, k)) return false;
        n -= k;
    }
    return true;
}

rt_status_t gguf_writer_write(gguf_writer_t *w, const char *path)
{
    if (!w || !path || !*path) return rt_error_set(RT_ERR_INVALID, "gguf writer: no output path");
    rt_status_t st = RT_OK;
    size_t al = w->alignment;

    /* Header and tensor infos go to one buffer; offsets are known here. */
    gw_buf_t h = {0};
    buf_put(&h, "GGUF", 4);
    buf_u32(&h, 3);
    buf_u64(&h, w->n_tensors);
    buf_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) buf_put(&h, w->kv[i].blob, w->kv[i].len);
    size_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const gw_tensor_t *t = &w->tensors[i];
        buf_str(&h, t->name, strlen(t->name));
        buf_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) buf_u64(&h, (uint64_t)t->ne[d]);
        buf_u32(&h, (uint32_t)t->type);
        buf_u64(&h, off);
        off = align_up(off + t->nbytes, al);
    }
    if (h.oom) {
        free(h.p);
        return rt_error_set(RT_ERR_NOMEM, "gguf writer: out of memory for the header");
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(h.p);
        return rt_error_set(RT_ERR_NOMEM, "gguf writer: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = rt_error_set(RT_ERR_IO, "gguf writer: cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    bool ok = write_all(f, h.p, h.len) && write_zeros(f, align_up(h.len, al) - h.len);
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const gw_tensor_t *t = &w->tensors[i];
        ok = write_all(f, t->data, t->nbytes) && write_zeros(f, align_up(t->nbytes, al) - t->nbytes);
    }
    if (!ok) {
        st = rt_error_set(RT_ERR_IO, "gguf writer: write to %s failed: %s", tmp, strerror(errno));
        fclose(f);
        remove(tmp);
        goto out;
    }
    if (fclose(f) != 0) {
        st = rt_error_set(RT_ERR_IO, "gguf writer: closing %s failed: %s", tmp, strerror(errno));
        remove(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        st = rt_error_set(RT_ERR_IO, "gguf writer: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
    }
out:
    free(tmp);
    free(h.p);
    return st;
}
