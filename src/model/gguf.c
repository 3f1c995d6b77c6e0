/*
 * gguf.c - GGUF v2/v3 reader over mmap.
 *
 * The parser walks the header with a bounds-checked cursor: every read checks
 * the bytes left, every count is checked against what the remaining bytes
 * could possibly hold, so a hostile file cannot make us allocate absurd
 * amounts or read past the end. Tensor infos are validated (dims, type,
 * element count overflow, data range and alignment) before anyone sees them.
 */
#include "rotor/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_ARRAY_DEPTH 1 /* arrays of arrays are refused */
#define GGUF_MAX_KEY_LEN 65535

typedef struct {
    gguf_str_t key;
    char *key_cstr;
    gguf_type_t type;
    /* scalars */
    union {
        uint64_t u;
        int64_t i;
        double f;
    } val;
    gguf_str_t str;
    char *str_cstr;
    /* arrays */
    gguf_type_t arr_type;
    uint64_t arr_len;
    const uint8_t *arr_data;   /* numeric: packed elements in the file */
    gguf_str_t *arr_strs;      /* string arrays: arr_len entries, owned */
} gguf_kv_t;

struct gguf_ctx {
    const uint8_t *base;
    size_t size;
    bool owns_map;
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    int64_t n_kv;
    gguf_kv_t *kv;
    int64_t n_tensors;
    gguf_tensor_info_t *tensors;
};

typedef struct {
    const uint8_t *p;
    size_t left;
    size_t pos;
} cursor_t;

static const size_t gguf_scalar_size[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = 1,   [GGUF_TYPE_INT8] = 1,    [GGUF_TYPE_UINT16] = 2,
    [GGUF_TYPE_INT16] = 2,   [GGUF_TYPE_UINT32] = 4,  [GGUF_TYPE_INT32] = 4,
    [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,    [GGUF_TYPE_STRING] = 0,
    [GGUF_TYPE_ARRAY] = 0,   [GGUF_TYPE_UINT64] = 8,  [GGUF_TYPE_INT64] = 8,
    [GGUF_TYPE_FLOAT64] = 8,
};

static rt_status_t cur_read(cursor_t *c, void *dst, size_t n, const char *what)
{
    if (n > c->left)
        return rt_error_set(RT_ERR_FORMAT, "gguf: truncated file: %s at byte %zu needs %zu bytes, %zu left",
                            what, c->pos, n, c->left);
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    c->pos += n;
    return RT_OK;
}

static rt_status_t cur_skip(cursor_t *c, size_t n, const char *what)
{
    if (n > c->left)
        return rt_error_set(RT_ERR_FORMAT, "gguf: truncated file: %s at byte %zu needs %zu bytes, %zu left",
                            what, c->pos, n, c->left);
    c->p += n;
    c->left -= n;
    c->pos += n;
    return RT_OK;
}

static rt_status_t cur_str(cursor_t *c, gguf_str_t *s, const char *what)
{
    uint64_t len = 0;
    rt_status_t st = cur_read(c, &len, 8, what);
    if (st) return st;
    if (len > c->left)
        return rt_error_set(RT_ERR_FORMAT, "gguf: %s: string length %llu at byte %zu runs past the end of the file",
                            what, (unsigned long long)len, c->pos - 8);
    s->len = len;
    s->data = (const char *)c->p;
    return cur_skip(c, (size_t)len, what);
}

static char *str_dup(gguf_str_t s)
{
    char *r = malloc(s.len + 1);
    if (!r) return NULL;
    memcpy(r, s.data, s.len);
    r[s.len] = '\0';
    return r;
}

static rt_status_t parse_kv(cursor_t *c, gguf_kv_t *kv, int64_t idx)
{
    rt_status_t st = cur_str(c, &kv->key, "metadata key");
    if (st) return st;
    if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN)
        return rt_error_set(RT_ERR_FORMAT, "gguf: metadata key %lld has invalid length %llu",
                            (long long)idx, (unsigned long long)kv->key.len);
    if (memchr(kv->key.data, '\0', kv->key.len))
        return rt_error_set(RT_ERR_FORMAT, "gguf: metadata key %lld contains a NUL byte", (long long)idx);
    kv->key_cstr = str_dup(kv->key);
    if (!kv->key_cstr) return rt_error_set(RT_ERR_NOMEM, "gguf: out of memory");
    uint32_t t = 0;
    if ((st = cur_read(c, &t, 4, "metadata value type"))) return st;
    if (t >= GGUF_TYPE_COUNT)
        return rt_error_set(RT_ERR_FORMAT, "gguf: key '%s' has unknown value type %u", kv->key_cstr, t);
    kv->type = (gguf_type_t)t;
    if (kv->type == GGUF_TYPE_STRING) {
        if ((st = cur_str(c, &kv->str, kv->key_cstr))) return st;
        kv->str_cstr = str_dup(kv->str);
        if (!kv->str_cstr) return rt_error_set(RT_ERR_NOMEM, "gguf: out of memory");
        return RT_OK;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        uint8_t buf[8] = {0};
        if ((st = cur_read(c, buf, gguf_scalar_size[t], kv->key_cstr))) return st;
        switch (kv->type) {
        case GGUF_TYPE_UINT8: kv->val.u = buf[0]; break;
        case GGUF_TYPE_BOOL: kv->val.u = buf[0] != 0; break;
        case GGUF_TYPE_INT8: kv->val.i = (int8_t)buf[0]; break;
        case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, buf, 2); kv->val.u = v; break; }
        case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, buf, 2); kv->val.i = v; break; }
        case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, buf, 4); kv->val.u = v; break; }
        case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, buf, 4); kv->val.i = v; break; }
        case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, buf, 4); kv->val.f = v; break; }
        case GGUF_TYPE_UINT64: memcpy(&kv->val.u, buf, 8); break;
        case GGUF_TYPE_INT64: memcpy(&kv->val.i, buf, 8); break;
        case GGUF_TYPE_FLOAT64: memcpy(&kv->val.f, buf, 8); break;
        default: break;
        }
        return RT_OK;
    }
    /* array */
    uint32_t at = 0;
    uint64_t n = 0;
    if ((st = cur_read(c, &at, 4, "array element type"))) return st;
    if ((st = cur_read(c, &n, 8, "array length"))) return st;
    if (at >= GGUF_TYPE_COUNT)
        return rt_error_set(RT_ERR_FORMAT, "gguf: key '%s': array of unknown element type %u", kv->key_cstr, at);
    if (at == GGUF_TYPE_ARRAY)
        return rt_error_set(RT_ERR_UNSUPPORTED, "gguf: key '%s': arrays of arrays are not supported", kv->key_cstr);
    kv->arr_type = (gguf_type_t)at;
    kv->arr_len = n;
    if (at == GGUF_TYPE_STRING) {
        /* each string needs at least its 8-byte length */
        if (n > c->left / 8)
            return rt_error_set(RT_ERR_FORMAT, "gguf: key '%s': array length %llu is more than the file can hold",
                                kv->key_cstr, (unsigned long long)n);
        kv->arr_strs = malloc((n ? n : 1) * sizeof *kv->arr_strs);
        if (!kv->arr_strs) return rt_error_set(RT_ERR_NOMEM, "gguf: out of memory");
        for (uint64_t j = 0; j < n; j++)
            if ((st = cur_str(c, &kv->arr_strs[j], kv->key_cstr))) return st;
        return RT_OK;
    }
    size_t es = gguf_scalar_size[at];
    if (n > c->left / es)
        return rt_error_set(RT_ERR_FORMAT, "gguf: key '%s': array length %llu runs past the end of the file",
                            kv->key_cstr, (unsigned long long)n);
    kv->arr_data = c->p;
    return cur_skip(c, (size_t)n * es, kv->key_cstr);
}

static rt_status_t parse_tensor(cursor_t *c, gguf_tensor_info_t *ti, int64_t idx)
{
    gguf_str_t name;
    rt_status_t st = cur_str(c, &name, "tensor name");
    if (st) return st;
    if (name.len == 0 || name.len > 1024)
        return rt_error_set(RT_ERR_FORMAT, "gguf: tensor %lld has invalid name length %llu", (long long)idx,
                            (unsigned long long)name.len);
    char *nm = str_dup(name);
    if (!nm) return rt_error_set(RT_ERR_NOMEM, "gguf: out of memory");
    ti->name = nm;
    uint32_t nd = 0;
    if ((st = cur_read(c, &nd, 4, "tensor dimension count"))) return st;
    if (nd == 0 || nd > GGUF_MAX_DIMS)
        return rt_error_set(RT_ERR_FORMAT, "gguf: tensor '%s' has %u dimensions (1..%d allowed)", nm, nd,
                            GGUF_MAX_DIMS);
    ti->n_dims = (int)nd;
    int64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t v = 0;
        if ((st = cur_read(c, &v, 8, "tensor dimension"))) return st;
        if (v == 0 || v > (uint64_t)INT64_MAX / 2)
            return rt_error_set(RT_ERR_FORMAT, "gguf: tensor '%s' dimension %u is %llu (invalid)", nm, d,
                                (unsigned long long)v);
        if ((uint64_t)nel > (uint64_t)INT64_MAX / v)
            return rt_error_set(RT_ERR_FORMAT, "gguf: tensor '%s' element count overflows (dimension %u)", nm, d);
        ti->ne[d] = (int64_t)v;
        nel *= (int64_t)v;
    }
    uint32_t t = 0;
    if ((st = cur_read(c, &t, 4, "tensor type"))) return st;
    const rt_type_traits_t *tr = rt_type_traits((int)t);
    if (!tr || tr->block_size <= 0 || tr->type_size == 0)
        return rt_error_set(RT_ERR_UNSUPPORTED, "gguf: tensor '%s' has unknown tensor type %u", nm, t);
    ti->type = (rt_type_t)t;
    if (ti->ne[0] % tr->block_size != 0)
        return rt_error_set(RT_ERR_FORMAT, "gguf: tensor '%s': row dimension %lld is not a multiple of the %s block size %lld",
                            nm, (long long)ti->ne[0], tr->name, (long long)tr->block_size);
    uint64_t nblocks = (uint64_t)nel / (uint64_t)tr->block_size;
    if (nblocks > SIZE_MAX / tr->type_size)
        return rt_error_set(RT_ERR_FORMAT, "gguf: tensor '%s' size overflows", nm);
    ti->nbytes = (size_t)nblocks * tr->type_size;
    if ((st = cur_read(c, &ti->offset, 8, "tensor data offset"))) return st;
    return RT_OK;
}

static rt_status_t gguf_parse(gguf_ctx_t *ctx)
{
    cursor_t c = {ctx->base, ctx->size, 0};
    char magic[4] = {0};
    rt_status_t st = cur_read(&c, magic, 4, "magic");
    if (st) return st;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return rt_error_set(RT_ERR_FORMAT, "gguf: bad magic (not a GGUF file): %02x %02x %02x %02x",
                            (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
    if ((st = cur_read(&c, &ctx->version, 4, "version"))) return st;
    if (ctx->version == 1)
        return rt_error_set(RT_ERR_UNSUPPORTED, "gguf: version 1 files are not supported (v2 and v3 are)");
    if (ctx->version != 2 && ctx->version != 3) {
        if ((ctx->version & 0xffff) == 0)
            return rt_error_set(RT_ERR_UNSUPPORTED, "gguf: big-endian file (version %u byte-swapped) not supported",
                                ctx->version);
        return rt_error_set(RT_ERR_UNSUPPORTED, "gguf: unknown version %u", ctx->version);
    }
    uint64_t n_tensors = 0, n_kv = 0;
    if ((st = cur_read(&c, &n_tensors, 8, "tensor count"))) return st;
    if ((st = cur_read(&c, &n_kv, 8, "metadata count"))) return st;
    /* a kv needs >= 8+1+4+1 bytes, a tensor info >= 8+1+4+8+4+8 */
    if (n_kv > c.left / 14)
        return rt_error_set(RT_ERR_FORMAT, "gguf: metadata count %llu is more than the file can hold",
                            (unsigned long long)n_kv);
    if (n_tensors > c.left / 33)
        return rt_error_set(RT_ERR_FORMAT, "gguf: tensor count %llu is more than the file can hold",
                            (unsigned long long)n_tensors);
    ctx->kv = calloc(n_kv ? n_kv : 1, sizeof *ctx->kv);
    ctx->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *ctx->tensors);
    if (!ctx->kv || !ctx->tensors) return rt_error_set(RT_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < n_kv; i++) {
        ctx->n_kv = (int64_t)i + 1; /* so close() frees partial state */
        if ((st = parse_kv(&c, &ctx->kv[i], (int64_t)i))) return st;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(ctx->kv[j].key_cstr, ctx->kv[i].key_cstr) == 0)
                return rt_error_set(RT_ERR_FORMAT, "gguf: duplicate metadata key '%s'", ctx->kv[i].key_cstr);
    }
    ctx->n_kv = (int64_t)n_kv;
    ctx->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = gguf_find_key(ctx, "general.alignment");
    if (ai >= 0) {
        int64_t a;
        if (!gguf_kv_as_i64(ctx, ai, &a) || a <= 0 || a > 65536 || (a & (a - 1)) != 0)
            return rt_error_set(RT_ERR_FORMAT, "gguf: general.alignment must be a power of two up to 65536");
        ctx->alignment = (size_t)a;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        ctx->n_tensors = (int64_t)i + 1;
        if ((st = parse_tensor(&c, &ctx->tensors[i], (int64_t)i))) return st;
    }
    ctx->n_tensors = (int64_t)n_tensors;
    size_t off = c.pos;
    size_t al = ctx->alignment;
    off = (off + al - 1) / al * al;
    if (n_tensors > 0 && off > ctx->size)
        return rt_error_set(RT_ERR_FORMAT, "gguf: truncated file: data section at byte %zu is past the end (%zu bytes)",
                            off, ctx->size);
    ctx->data_offset = off;
    size_t data_size = ctx->size > off ? ctx->size - off : 0;
    for (int64_t i = 0; i < ctx->n_tensors; i++) {
        gguf_tensor_info_t *ti = &ctx->tensors[i];
        if (ti->offset % al != 0)
            return rt_error_set(RT_ERR_FORMAT, "gguf: tensor '%s' data offset %llu is not aligned to %zu",
                                ti->name, (unsigned long long)ti->offset, al);
        if (ti->offset > data_size || ti->nbytes > data_size - ti->offset)
            return rt_error_set(RT_ERR_FORMAT,
                                "gguf: tensor '%s' data (offset %llu, %zu bytes) runs past the end of the file",
                                ti->name, (unsigned long long)ti->offset, ti->nbytes);
        ti->data = ctx->base + off + ti->offset;
        for (int64_t j = 0; j < i; j++)
            if (strcmp(ctx->tensors[j].name, ti->name) == 0)
                return rt_error_set(RT_ERR_FORMAT, "gguf: duplicate tensor name '%s'", ti->name);
    }
    return RT_OK;
}

static rt_status_t gguf_open_common(const uint8_t *base, size_t size, bool owns, gguf_ctx_t **out)
{
    gguf_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        if (owns) munmap((void *)base, size);
        return rt_error_set(RT_ERR_NOMEM, "gguf: out of memory");
    }
    ctx->base = base;
    ctx->size = size;
    ctx->owns_map = owns;
    rt_status_t st = gguf_parse(ctx);
    if (st) {
        gguf_close(ctx);
        return st;
    }
    *out = ctx;
    return RT_OK;
}

rt_status_t gguf_open(const char *path, gguf_ctx_t **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rt_error_set(RT_ERR_IO, "gguf: cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return rt_error_set(RT_ERR_IO, "gguf: cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return rt_error_set(RT_ERR_IO, "gguf: %s is not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return rt_error_set(RT_ERR_FORMAT, "gguf: truncated file: %s has only %lld bytes", path,
                            (long long)sb.st_size);
    }
    /* populate: fault the whole file in at load, not in the first forward pass */
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return rt_error_set(RT_ERR_IO, "gguf: cannot mmap %s: %s", path, strerror(e));
    rt_status_t st = gguf_open_common(m, (size_t)sb.st_size, true, out);
    if (st) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", rt_error_msg());
        rt_error_set(st, "%s (in %s)", msg, path);
    }
    return st;
}

rt_status_t gguf_open_buffer(const void *buf, size_t size, gguf_ctx_t **out)
{
    if (!buf && size) return rt_error_set(RT_ERR_INVALID, "gguf: NULL buffer");
    return gguf_open_common(buf, size, false, out);
}

void gguf_close(gguf_ctx_t *ctx)
{
    if (!ctx) return;
    for (int64_t i = 0; i < ctx->n_kv; i++) {
        free(ctx->kv[i].key_cstr);
        free(ctx->kv[i].str_cstr);
        free(ctx->kv[i].arr_strs);
    }
    free(ctx->kv);
    for (int64_t i = 0; i < ctx->n_tensors; i++) free((void *)ctx->tensors[i].name);
    free(ctx->tensors);
    if (ctx->owns_map) munmap((void *)ctx->base, ctx->size);
    free(ctx);
}

uint32_t gguf_version(const gguf_ctx_t *ctx) { return ctx->version; }
size_t gguf_alignment(const gguf_ctx_t *ctx) { return ctx->alignment; }
size_t gguf_data_offset(const gguf_ctx_t *ctx) { return ctx->data_offset; }
size_t gguf_file_size(const gguf_ctx_t *ctx) { return ctx->size; }
int64_t gguf_kv_count(const gguf_ctx_t *ctx) { return ctx->n_kv; }

int64_t gguf_find_key(const gguf_ctx_t *ctx, const char *key)
{
    for (int64_t i = 0; i < ctx->n_kv; i++)
        if (ctx->kv[i].key_cstr && strcmp(ctx->kv[i].key_cstr, key) == 0) return i;
    return -1;
}

static const gguf_kv_t *kv_at(const gguf_ctx_t *ctx, int64_t i)
{
    return (i >= 0 && i < ctx->n_kv) ? &ctx->kv[i] : NULL;
}

const char *gguf_kv_key(const gguf_ctx_t *ctx, int64_t i)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    return kv ? kv->key_cstr : NULL;
}

gguf_type_t gguf_kv_type(const gguf_ctx_t *ctx, int64_t i)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    return kv ? kv->type : GGUF_TYPE_COUNT;
}

gguf_type_t gguf_arr_type(const gguf_ctx_t *ctx, int64_t i)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    return (kv && kv->type == GGUF_TYPE_ARRAY) ? kv->arr_type : GGUF_TYPE_COUNT;
}

uint64_t gguf_arr_len(const gguf_ctx_t *ctx, int64_t i)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    return (kv && kv->type == GGUF_TYPE_ARRAY) ? kv->arr_len : 0;
}

const void *gguf_arr_data(const gguf_ctx_t *ctx, int64_t i)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    return (kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type != GGUF_TYPE_STRING) ? kv->arr_data : NULL;
}

gguf_str_t gguf_arr_str(const gguf_ctx_t *ctx, int64_t i, uint64_t j)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    gguf_str_t none = {0, ""};
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || j >= kv->arr_len)
        return none;
    return kv->arr_strs[j];
}

static bool type_is_signed(gguf_type_t t)
{
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

static bool type_is_unsigned(gguf_type_t t)
{
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_BOOL;
}

bool gguf_kv_as_i64(const gguf_ctx_t *ctx, int64_t i, int64_t *out)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    if (!kv) return false;
    if (type_is_signed(kv->type)) {
        *out = kv->val.i;
        return true;
    }
    if (type_is_unsigned(kv->type)) {
        if (kv->val.u > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)kv->val.u;
        return true;
    }
    return false;
}

bool gguf_kv_as_f64(const gguf_ctx_t *ctx, int64_t i, double *out)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    if (!kv) return false;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) {
        *out = kv->val.f;
        return true;
    }
    int64_t v;
    if (gguf_kv_as_i64(ctx, i, &v)) {
        *out = (double)v;
        return true;
    }
    return false;
}

const char *gguf_kv_as_str(const gguf_ctx_t *ctx, int64_t i)
{
    const gguf_kv_t *kv = kv_at(ctx, i);
    return (kv && kv->type == GGUF_TYPE_STRING) ? kv->str_cstr : NULL;
}

int64_t gguf_get_i64(const gguf_ctx_t *ctx, const char *key, int64_t dflt)
{
    int64_t v;
    return gguf_kv_as_i64(ctx, gguf_find_key(ctx, key), &v) ? v : dflt;
}

double gguf_get_f64(const gguf_ctx_t *ctx, const char *key, double dflt)
{
    double v;
    return gguf_kv_as_f64(ctx, gguf_find_key(ctx, key), &v) ? v : dflt;
}

const char *gguf_get_str(const gguf_ctx_t *ctx, const char *key, const char *dflt)
{
    const char *s = gguf_kv_as_str(ctx, gguf_find_key(ctx, key));
    return s ? s : dflt;
}

int64_t gguf_tensor_count(const gguf_ctx_t *ctx) { return ctx->n_tensors; }

const gguf_tensor_info_t *gguf_tensor(const gguf_ctx_t *ctx, int64_t i)
{
    return (i >= 0 && i < ctx->n_tensors) ? &ctx->tensors[i] : NULL;
}

const gguf_tensor_info_t *gguf_find_tensor(const gguf_ctx_t *ctx, const char *name)
{
    for (int64_t i = 0; i < ctx->n_tensors; i++)
        if (strcmp(ctx->tensors[i].name, name) == 0) return &ctx->tensors[i];
    return NULL;
}
