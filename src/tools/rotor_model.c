/*
 * rotor_model.c - the rotor-model tool: inspect GGUF files and generate small
 * random llama-style models that llama.cpp loads and runs.
 *
 *   rotor-model info FILE [--json]
 *   rotor-model gen --out FILE [options]      (rotor-model gen --help)
 *   rotor-model export-tokenizer MODEL.gguf DIR  (Hugging Face tokenizer files;
 *                                                tokenizer_export.c)
 *
 * gen writes a dense decoder (arch llama, qwen2, or "mistral", which llama.cpp
 * knows only as llama, so it is written with llama metadata and the Mistral
 * chat template) with deterministic random weights: each tensor draws from
 * its own generator seeded by (--seed, tensor name), so the float values of
 * a tensor do not depend on --type or on which other tensors exist, and a
 * q8_0 model is the quantization of the f32 model with the same seed.
 *
 * Scales, chosen so activations stay near unit RMS whatever the width:
 * matrices N(0, 1/sqrt(row length)) (= N(0, 0.036) at n_embd 768, the same
 * order as real checkpoints' 0.02), embeddings N(0, 1/sqrt(n_embd)) so the
 * logits have unit spread, norm weights 1 + U(-0.1, 0.1), biases N(0, 0.02).
 *
 * Quantized types need each row length (n_embd, n_ff) to be a multiple of
 * the type's block size (32, or 256 for K-quants); gen refuses otherwise
 * (no silent fallback to another type).
 *
 * The tokenizer is built deterministically by model_vocab.c.
 */
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <xxhash.h>
#include <stdlib.h>
#include <string.h>

#include "model_vocab.h"
#include "tokenizer_export.h"
#include "rotor/cpu_quant.h"
#include "rotor/gguf.h"
#include "rotor/status.h"
#include "rotor/types.h"

#define PROG "rotor-model"

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": error: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* ======================================================================
 * info
 * ====================================================================== */

static const char *gguf_type_name(gguf_type_t t)
{
    static const char *names[GGUF_TYPE_COUNT] = {"u8",  "i8",  "u16", "i16",  "u32", "i32", "f32",
                                                 "bool", "str", "arr", "u64", "i64", "f64"};
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "?";
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (len == 2 && c < 0xc2) return 0;                       /* overlong */
    if (len == 3 && c == 0xe0 && s[1] < 0xa0) return 0;       /* overlong */
    if (len == 3 && c == 0xed && s[1] >= 0xa0) return 0;      /* surrogate */
    if (len == 4 && (c > 0xf4 || (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))) return 0;
    return len;
}

/* Print a string quoted, JSON-escaped (valid for both outputs); invalid
 * UTF-8 bytes become U+FFFD. At most max bytes of it, then "...". */
static void print_quoted(FILE *f, const char *p, size_t n, size_t max)
{
    const unsigned char *s = (const unsigned char *)p;
    bool cut = n > max;
    if (cut) n = max;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c == '\r') {
            fputs("\\r", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0) {
                fputs("\\ufffd", f);
                i++;
            } else {
                fwrite(s + i, 1, k, f);
                i += k;
            }
        }
    }
    if (cut) fputs("...", f);
    fputc('"', f);
}

static void print_double(FILE *f, double v, bool json)
{
    if (json && !isfinite(v))
        fputs("null", f);
    else
        fprintf(f, "%.9g", v);
}

/* Element j of a numeric array as text. */
static void print_arr_elem(FILE *f, gguf_type_t t, const uint8_t *p, uint64_t j, bool json)
{
    switch (t) {
    case GGUF_TYPE_UINT8: fprintf(f, "%u", p[j]); break;
    case GGUF_TYPE_INT8: fprintf(f, "%d", (int8_t)p[j]); break;
    case GGUF_TYPE_BOOL: fputs(p[j] ? "true" : "false", f); break;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p + 2 * j, 2); fprintf(f, "%u", v); break; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p + 2 * j, 2); fprintf(f, "%d", v); break; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p + 4 * j, 4); fprintf(f, "%u", v); break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p + 4 * j, 4); fprintf(f, "%d", v); break; }
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, p + 4 * j, 4); print_double(f, v, json); break; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p + 8 * j, 8); fprintf(f, "%llu", (unsigned long long)v); break; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p + 8 * j, 8); fprintf(f, "%lld", (long long)v); break; }
    case GGUF_TYPE_FLOAT64: { double v; memcpy(&v, p + 8 * j, 8); print_double(f, v, json); break; }
    default: fputs("null", f); break;
    }
}

#define INFO_ARR_HEAD 8     /* array elements shown */
#define INFO_STR_MAX 160    /* bytes of a string value shown in text mode */

static void print_value(FILE *f, const gguf_ctx_t *g, int64_t i, bool json)
{
    gguf_type_t t = gguf_kv_type(g, i);
    if (t == GGUF_TYPE_STRING) {
        const char *s = gguf_kv_as_str(g, i);
        print_quoted(f, s, strlen(s), json ? SIZE_MAX : INFO_STR_MAX);
    } else if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
        double v = 0;
        gguf_kv_as_f64(g, i, &v);
        print_double(f, v, json);
    } else if (t == GGUF_TYPE_BOOL) {
        int64_t v = 0;
        gguf_kv_as_i64(g, i, &v);
        fputs(v ? "true" : "false", f);
    } else if (t == GGUF_TYPE_UINT64) {
        int64_t v;
        if (gguf_kv_as_i64(g, i, &v))
            fprintf(f, "%lld", (long long)v);
        else
            fputs(json ? "null" : "(> INT64_MAX)", f);
    } else if (t != GGUF_TYPE_ARRAY) {
        int64_t v = 0;
        gguf_kv_as_i64(g, i, &v);
        fprintf(f, "%lld", (long long)v);
    } else {
        gguf_type_t et = gguf_arr_type(g, i);
        uint64_t n = gguf_arr_len(g, i), show = n < INFO_ARR_HEAD ? n : INFO_ARR_HEAD;
        fputc('[', f);
        for (uint64_t j = 0; j < show; j++) {
            if (j) fputs(", ", f);
            if (et == GGUF_TYPE_STRING) {
                gguf_str_t s = gguf_arr_str(g, i, j);
                print_quoted(f, s.data, s.len, json ? SIZE_MAX : 48);
            } else {
                print_arr_elem(f, et, gguf_arr_data(g, i), j, json);
            }
        }
        if (!json && show < n) fputs(", ...", f);
        fputc(']', f);
    }
}

static void print_tensor_json(FILE *f, const gguf_tensor_info_t *t)
{
    fputs("{\"name\": ", f);
    print_quoted(f, t->name, strlen(t->name), SIZE_MAX);
    fprintf(f, ", \"type\": \"%s\", \"type_id\": %d, \"dims\": [", rt_type_name(t->type), (int)t->type);
    for (int d = 0; d < t->n_dims; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    fprintf(f, "], \"offset\": %llu, \"bytes\": %zu}", (unsigned long long)t->offset, t->nbytes);
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: " PROG " info FILE [--json]\n");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1])
            return fail("info: unknown option '%s'", argv[i]);
        else if (path)
            return fail("info: more than one file given ('%s', '%s')", path, argv[i]);
        else
            path = argv[i];
    }
    if (!path) return fail("info: no file given (usage: " PROG " info FILE [--json])");
    gguf_ctx_t *g;
    rt_status_t st = gguf_open(path, &g);
    if (st) return fail("%s: %s", rt_status_str(st), rt_error_msg());

    FILE *f = stdout;
    int64_t nkv = gguf_kv_count(g), nt = gguf_tensor_count(g);
    if (json) {
        fprintf(f, "{\"file\": ");
        print_quoted(f, path, strlen(path), SIZE_MAX);
        fprintf(f, ", \"version\": %u, \"alignment\": %zu, \"data_offset\": %zu, \"file_size\": %zu,\n",
                gguf_version(g), gguf_alignment(g), gguf_data_offset(g), gguf_file_size(g));
        fputs(" \"metadata\": [", f);
        for (int64_t i = 0; i < nkv; i++) {
            const char *k = gguf_kv_key(g, i);
            gguf_type_t t = gguf_kv_type(g, i);
            fprintf(f, "%s\n  {\"key\": ", i ? "," : "");
            print_quoted(f, k, strlen(k), SIZE_MAX);
            fprintf(f, ", \"type\": \"%s\"", gguf_type_name(t));
            if (t == GGUF_TYPE_ARRAY)
                fprintf(f, ", \"elem_type\": \"%s\", \"len\": %llu, \"head\": ",
                        gguf_type_name(gguf_arr_type(g, i)), (unsigned long long)gguf_arr_len(g, i));
            else
                fputs(", \"value\": ", f);
            print_value(f, g, i, true);
            fputc('}', f);
        }
        fputs("],\n \"tensors\": [", f);
        for (int64_t i = 0; i < nt; i++) {
            fputs(i ? ",\n  " : "\n  ", f);
            print_tensor_json(f, gguf_tensor(g, i));
        }
        fputs("]}\n", f);
    } else {
        fprintf(f, "%s: GGUF v%u, %lld metadata, %lld tensors, alignment %zu, data at %zu, %zu bytes\n", path,
                gguf_version(g), (long long)nkv, (long long)nt, gguf_alignment(g), gguf_data_offset(g),
                gguf_file_size(g));
        fputs("metadata:\n", f);
        for (int64_t i = 0; i < nkv; i++) {
            gguf_type_t t = gguf_kv_type(g, i);
            char tn[48];
            if (t == GGUF_TYPE_ARRAY)
                snprintf(tn, sizeof tn, "arr[%s,%llu]", gguf_type_name(gguf_arr_type(g, i)),
                         (unsigned long long)gguf_arr_len(g, i));
            else
                snprintf(tn, sizeof tn, "%s", gguf_type_name(t));
            fprintf(f, "  %-44s %-14s ", gguf_kv_key(g, i), tn);
            print_value(f, g, i, false);
            fputc('\n', f);
        }
        fputs("tensors:\n", f);
        size_t total = 0;
        for (int64_t i = 0; i < nt; i++) {
            const gguf_tensor_info_t *t = gguf_tensor(g, i);
            char dims[96];
            int o = 0;
            for (int d = 0; d < t->n_dims; d++)
                o += snprintf(dims + o, sizeof dims - (size_t)o, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
            fprintf(f, "  %-32s %-5s [%s]%*s offset %-12llu %zu bytes\n", t->name, rt_type_name(t->type), dims,
                    o < 20 ? 20 - o : 0, "", (unsigned long long)t->offset, t->nbytes);
            total += t->nbytes;
        }
        fprintf(f, "tensor data: %zu bytes\n", total);
    }
    gguf_close(g);
    if (fflush(f) != 0 || ferror(f)) return fail("info: writing the output failed");
    return 0;
}

/* ======================================================================
 * random numbers: splitmix64 stream, Box-Muller normals
 * ====================================================================== */

typedef struct {
    uint64_t s;
    bool has_spare;
    double spare;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

static double rng_normal(rng_t *r)
{
    if (r->has_spare) {
        r->has_spare = false;
        return r->spare;
    }
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    r->spare = rad * sin(th);
    r->has_spare = true;
    return rad * cos(th);
}

/* per-tensor seed: xxHash of the tensor name */
static uint64_t name_hash(const char *s) { return XXH3_64bits(s, strlen(s)); }

/* ======================================================================
 * gen
 * ====================================================================== */

typedef enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_MISTRAL, ARCH_QWEN2MOE, ARCH_QWEN3, ARCH_QWEN3MOE } arch_t;

static const char *const arch_gguf_name[] = {"llama", "qwen2", "llama", "qwen2moe", "qwen3", "qwen3moe"};

typedef struct {
    const char *out;
    arch_t arch;
    bool spm;
    const char *pre;
    int type, embd_type, output_type; /* rt_type_t; -1 = same as type */
    int64_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int64_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp; /* experts: 0 = a dense FFN */
    int64_t head_dim; /* 0: n_embd / n_head */
    float rope_base, rms_eps;
    bool rope_neox, tied, qkv_bias, tiny_vocab;
    uint64_t seed;
    float init_scale;
    const char *name;
} gen_opts_t;

/* llama.cpp's general.file_type (LLAMA_FTYPE_*) for a whole-model type. */
static uint32_t file_type_of(int t)
{
    switch (t) {
    case RT_TYPE_F32: return 0;
    case RT_TYPE_F16: return 1;
    case RT_TYPE_Q4_0: return 2;
    case RT_TYPE_Q4_1: return 3;
    case RT_TYPE_Q8_0: return 7;
    case RT_TYPE_Q5_0: return 8;
    case RT_TYPE_Q5_1: return 9;
    case RT_TYPE_Q2_K: return 10;
    case RT_TYPE_Q3_K: return 11; /* Q3_K_S: every matrix q3_K */
    case RT_TYPE_Q4_K: return 14; /* Q4_K_S: every matrix q4_K */
    case RT_TYPE_Q5_K: return 16; /* Q5_K_S */
    case RT_TYPE_Q6_K: return 18;
    case RT_TYPE_BF16: return 32;
    default: return 0;
    }
}

static bool gen_type_allowed(int t)
{
    return t == RT_TYPE_F32 || t == RT_TYPE_F16 || t == RT_TYPE_BF16 || t == RT_TYPE_Q8_0 || t == RT_TYPE_Q4_0 ||
           t == RT_TYPE_Q4_1 || t == RT_TYPE_Q5_0 || t == RT_TYPE_Q5_1 || t == RT_TYPE_Q2_K || t == RT_TYPE_Q3_K ||
           t == RT_TYPE_Q4_K || t == RT_TYPE_Q5_K || t == RT_TYPE_Q6_K;
}

typedef enum { INIT_MATRIX, INIT_EMBD, INIT_NORM, INIT_BIAS } init_t;

/* Generate tensor `name` (ne0 x ne1, ne1 = 1 for vectors) with its own RNG
 * stream, convert it to type t and add it to the writer. */
static int add_random3(gguf_writer_t *w, const gen_opts_t *o, const char *name, int t, init_t init, int64_t ne0,
                       int64_t ne1, int64_t ne2);

static int add_random(gguf_writer_t *w, const gen_opts_t *o, const char *name, int t, init_t init, int64_t ne0,
                      int64_t ne1)
{
    return add_random3(w, o, name, t, init, ne0, ne1, 1);
}

/* the same for a stack of ne2 matrices (GGUF shape [ne0, ne1, ne2]: experts) */
static int add_random3(gguf_writer_t *w, const gen_opts_t *o, const char *name, int t, init_t init, int64_t ne0,
                       int64_t ne1, int64_t ne2)
{
    const int64_t rows = ne1 * ne2;
    const rt_type_traits_t *tr = rt_type_traits(t);
    if (ne0 % tr->block_size != 0)
        return fail("gen: tensor %s: row length %lld is not a multiple of the %s block size %lld; "
                    "choose dimensions that are multiples of %lld or another type",
                    name, (long long)ne0, tr->name, (long long)tr->block_size, (long long)tr->block_size);
    size_t n = (size_t)ne0 * (size_t)rows, row = rt_type_row_size(t, ne0);
    float *src = malloc(n * sizeof *src);
    void *dst = t == RT_TYPE_F32 ? (void *)src : malloc(row * (size_t)rows);
    if (!src || !dst) {
        free(src);
        return fail("gen: out of memory for tensor %s (%zu elements)", name, n);
    }
    rng_t r = {.s = o->seed ^ name_hash(name)};
    rng_next(&r);
    double sd = init == INIT_MATRIX ? o->init_scale / sqrt((double)ne0)
              : init == INIT_EMBD   ? o->init_scale / sqrt((double)o->n_embd)
                                    : 0.02;
    for (size_t i = 0; i < n; i++)
        src[i] = init == INIT_NORM ? (float)(1.0 + 0.2 * (rng_uniform(&r) - 0.5)) : (float)(sd * rng_normal(&r));
    int rc = 0;
    for (int64_t i = 0; t != RT_TYPE_F32 && i < rows; i++) {
        const float *s = src + (size_t)i * (size_t)ne0;
        uint8_t *d = (uint8_t *)dst + (size_t)i * row;
        if (t == RT_TYPE_F16 || t == RT_TYPE_BF16) {
            for (int64_t j = 0; j < ne0; j++) {
                uint16_t h = t == RT_TYPE_F16 ? rt_fp32_to_fp16(s[j]) : rt_fp32_to_bf16(s[j]);
                memcpy(d + 2 * j, &h, 2);
            }
        } else {
            rt_status_t st = cpu_quantize_row((rt_type_t)t, s, d, ne0);
            if (st) {
                rc = fail("gen: quantizing %s to %s: %s", name, tr->name, rt_error_msg());
                break;
            }
        }
    }
    if (!rc) {
        int64_t ne[3] = {ne0, ne1, ne2};
        rt_status_t st = gguf_writer_add_tensor(w, name, (rt_type_t)t, ne2 > 1 ? 3 : ne1 > 1 ? 2 : 1, ne, dst);
        if (st) rc = fail("gen: %s", rt_error_msg());
    }
    if (dst != src) free(dst);
    free(src);
    return rc;
}

#define CHECK(call)                                                                                     \
    do {                                                                                                \
        if ((call) != RT_OK) {                                                                          \
            rc = fail("gen: %s", rt_error_msg());                                                      \
            goto out;                                                                                   \
        }                                                                                               \
    } while (0)

static int gen_write(const gen_opts_t *o)
{
    int rc = 0;
    model_vocab_t v = {0};
    gguf_writer_t *w = NULL;

    bool ok = o->spm ? model_vocab_build_spm(&v, (size_t)o->n_vocab, o->tiny_vocab)
                     : model_vocab_build_bpe(&v, (size_t)o->n_vocab, o->tiny_vocab);
    if (!ok) {
        rc = fail("gen: out of memory building the vocabulary");
        goto out;
    }
    const int64_t n_vocab = (int64_t)v.n;
    const int64_t head_dim = o->head_dim ? o->head_dim : o->n_embd / o->n_head, n_embd_kv = head_dim * o->n_head_kv;
    const int64_t n_q = head_dim * o->n_head;
    const bool qk_norm = o->arch == ARCH_QWEN3 || o->arch == ARCH_QWEN3MOE;
    /* llama.cpp has no "mistral" architecture: mistral-style models are llama */
    const char *arch = arch_gguf_name[o->arch];
    const int embd_t = o->embd_type >= 0 ? o->embd_type : o->type;
    const int out_t = o->output_type >= 0 ? o->output_type : o->type;
    char key[128], name[64];

    if (gguf_writer_create(&w)) {
        rc = fail("gen: %s", rt_error_msg());
        goto out;
    }
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    CHECK(gguf_writer_set_str(w, "general.architecture", arch));
    if (o->name) {
        CHECK(gguf_writer_set_str(w, "general.name", o->name));
    } else {
        char nm[96];
        snprintf(nm, sizeof nm, "rotor-random-%s-%s", o->arch == ARCH_MISTRAL ? "mistral" : arch,
                 rt_type_name(o->type));
        CHECK(gguf_writer_set_str(w, "general.name", nm));
    }
    CHECK(gguf_writer_set_u32(w, "general.file_type", file_type_of(o->type)));
    CHECK(gguf_writer_set_u32(w, "general.quantization_version", 2));
    CHECK(gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)n_vocab));
    CHECK(gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)o->n_ctx));
    CHECK(gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)o->n_embd));
    CHECK(gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)o->n_layer));
    CHECK(gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)o->n_ff));
    CHECK(gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)o->n_head));
    CHECK(gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)o->n_head_kv));
    CHECK(gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), o->rms_eps));
    CHECK(gguf_writer_set_f32(w, KEY("rope.freq_base"), o->rope_base));
    CHECK(gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)head_dim));
    if (o->head_dim) {
        CHECK(gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)head_dim));
        CHECK(gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)head_dim));
    }
    if (o->n_expert > 0) {
        CHECK(gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)o->n_expert));
        CHECK(gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)o->n_expert_used));
    }
    if (o->arch == ARCH_QWEN2MOE || o->arch == ARCH_QWEN3MOE)
        CHECK(gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)o->n_ff_exp));
    if (o->arch == ARCH_QWEN2MOE)
        CHECK(gguf_writer_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)o->n_ff_shexp));
#undef KEY

    CHECK(model_vocab_write_gguf(w, &v, o->pre, o->arch == ARCH_MISTRAL));

    /* tensors: token_embd, blocks, output_norm, output */
    if ((rc = add_random(w, o, "token_embd.weight", embd_t, INIT_EMBD, o->n_embd, n_vocab))) goto out;
    for (int64_t l = 0; l < o->n_layer; l++) {
        static const struct {
            const char *name;
            init_t init;
            int in, out; /* 0 n_embd, 1 n_embd_kv, 2 n_ff, 3 n_head x head_dim, 4 head_dim; -1 vector */
        } k_layer[] = {
            {"attn_norm.weight", INIT_NORM, 0, -1},  {"attn_q.weight", INIT_MATRIX, 0, 3},
            {"attn_q.bias", INIT_BIAS, 3, -1},       {"attn_k.weight", INIT_MATRIX, 0, 1},
            {"attn_k.bias", INIT_BIAS, 1, -1},       {"attn_v.weight", INIT_MATRIX, 0, 1},
            {"attn_v.bias", INIT_BIAS, 1, -1},       {"attn_q_norm.weight", INIT_NORM, 4, -1},
            {"attn_k_norm.weight", INIT_NORM, 4, -1}, {"attn_output.weight", INIT_MATRIX, 3, 0},
            {"ffn_norm.weight", INIT_NORM, 0, -1},   {"ffn_gate.weight", INIT_MATRIX, 0, 2},
            {"ffn_up.weight", INIT_MATRIX, 0, 2},    {"ffn_down.weight", INIT_MATRIX, 2, 0},
        };
        const int64_t dim[5] = {o->n_embd, n_embd_kv, o->n_ff, n_q, head_dim};
        for (size_t k = 0; k < sizeof k_layer / sizeof k_layer[0]; k++) {
            if (k_layer[k].init == INIT_BIAS && !o->qkv_bias) continue;
            if (k_layer[k].in == 4 && !qk_norm) continue;
            if (o->n_expert > 0 && (k_layer[k].in == 2 || k_layer[k].out == 2)) continue;
            snprintf(name, sizeof name, "blk.%lld.%s", (long long)l, k_layer[k].name);
            bool vec = k_layer[k].out < 0;
            rc = add_random(w, o, name, vec ? RT_TYPE_F32 : o->type, k_layer[k].init, dim[k_layer[k].in],
                            vec ? 1 : dim[k_layer[k].out]);
            if (rc) goto out;
        }
        if (o->n_expert > 0) { /* the router (f32, as llama.cpp's quantizer keeps it), the experts, qwen2moe's shared one */
            const int64_t E = o->n_embd, FX = o->n_ff_exp, NX = o->n_expert, FS = o->n_ff_shexp;
#define ADD3(nm, t, a, b, c)                                                        \
    snprintf(name, sizeof name, "blk.%lld." nm ".weight", (long long)l);          \
    if ((rc = add_random3(w, o, name, t, INIT_MATRIX, a, b, c))) goto out;
            ADD3("ffn_gate_inp", RT_TYPE_F32, E, NX, 1);
            ADD3("ffn_gate_exps", o->type, E, FX, NX);
            ADD3("ffn_up_exps", o->type, E, FX, NX);
            ADD3("ffn_down_exps", o->type, FX, E, NX);
            if (o->arch == ARCH_QWEN2MOE) {
                ADD3("ffn_gate_inp_shexp", RT_TYPE_F32, E, 1, 1);
                ADD3("ffn_gate_shexp", o->type, E, FS, 1);
                ADD3("ffn_up_shexp", o->type, E, FS, 1);
                ADD3("ffn_down_shexp", o->type, FS, E, 1);
            }
#undef ADD3
        }
    }
    if ((rc = add_random(w, o, "output_norm.weight", RT_TYPE_F32, INIT_NORM, o->n_embd, 1))) goto out;
    if (!o->tied && (rc = add_random(w, o, "output.weight", out_t, INIT_EMBD, o->n_embd, n_vocab))) goto out;

    CHECK(gguf_writer_write(w, o->out));
    fprintf(stderr, PROG ": wrote %s: %s (as %s), %s, %lld layers, n_embd %lld, vocab %lld (%s)\n", o->out,
            o->arch == ARCH_MISTRAL ? "mistral" : arch, arch, rt_type_name(o->type), (long long)o->n_layer,
            (long long)o->n_embd, (long long)n_vocab, o->spm ? "spm" : "bpe");
out:
    gguf_writer_destroy(w);
    model_vocab_free(&v);
    return rc;
}

static void gen_usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " gen --out FILE [options]\n"
            "  --type T            weight matrices: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k (default f32)\n"
            "  --embd-type T       token_embd.weight (default: --type)\n"
            "  --output-type T     output.weight (default: --type)\n"
            "  --arch A            llama | qwen2 | qwen3 | mistral (written as llama) | qwen2moe | qwen3moe\n"
            "                      (default llama)\n"
            "  --head-dim N        per-head size (default n_embd / n_head; written as attention.key_length)\n"
            "  --n-expert N        mixture of experts: N experts per layer (llama: Mixtral-style; qwen2moe: 4)\n"
            "  --n-expert-used K   experts per token (2)\n"
            "  --n-ff-exp N        an expert's hidden size (llama: n_ff; qwen2moe: n_ff / 2)\n"
            "  --n-ff-shexp N      qwen2moe's shared expert hidden size (n_ff)\n"
            "  --tokenizer K       spm | bpe (default: spm for llama/mistral, bpe for qwen2)\n"
            "  --pre NAME          tokenizer.ggml.pre for bpe (default \"default\")\n"
            "  --n-layer N (2) --n-embd N (64) --n-head N (4) --n-head-kv N (2) --n-ff N (128)\n"
            "  --n-vocab N (512)   vocab size: the tokenizer's pieces, padded up to N\n"
            "  --n-ctx N (256) --rope-base F (10000; qwen2 1e6) --rms-eps F (1e-5; qwen2 1e-6)\n"
            "  --rope-neox         NeoX rope (only qwen2 has it in llama.cpp; implied there)\n"
            "  --tied-embeddings   no output.weight (llama.cpp uses token_embd)\n"
            "  --qkv-bias          attn_q/k/v biases (implied by qwen2)\n"
            "  --tiny-vocab        only specials, bytes and a few pieces; ignores --n-vocab (small test files)\n"
            "  --seed S (1) --init-scale F (1.0) --name NAME\n"
            "  --preset f16-100m   ~134M-parameter llama (768 x 12 layers, ff 2048, vocab 32000 spm, f16)\n"
            "  --preset moe-q4k    Mixtral-style, ~370M parameters, ~110M active (768 x 8 layers, 8 experts\n"
            "                      of ff 2048, 2 per token, vocab 32000 spm, q4_k)\n");
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static int cmd_gen(int argc, char **argv)
{
    gen_opts_t o = {
        .arch = ARCH_LLAMA, .pre = "default", .type = RT_TYPE_F32, .embd_type = -1, .output_type = -1,
        .n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 2, .n_ff = 128, .n_vocab = 512, .n_ctx = 256,
        .rope_base = 0, .rms_eps = 0, .seed = 1, .init_scale = 1.0f,
    };
    int tok = -1; /* -1 default, 0 bpe, 1 spm */
    enum {
        O_OUT = 256, O_TYPE, O_EMBD_TYPE, O_OUTPUT_TYPE, O_ARCH, O_TOK, O_PRE, O_NLAYER, O_NEMBD, O_NHEAD,
        O_NHEADKV, O_NFF, O_NVOCAB, O_NCTX, O_ROPE_BASE, O_RMS_EPS, O_NEOX, O_TIED, O_QKV_BIAS, O_TINY, O_SEED,
        O_SCALE, O_NAME, O_PRESET, O_HELP, O_NEXP, O_NEXPUSED, O_NFFEXP, O_NFFSH, O_HEADDIM
    };
    static const struct option lo[] = {
        {"out", required_argument, 0, O_OUT}, {"type", required_argument, 0, O_TYPE},
        {"embd-type", required_argument, 0, O_EMBD_TYPE},
        {"output-type", required_argument, 0, O_OUTPUT_TYPE}, {"arch", required_argument, 0, O_ARCH},
        {"tokenizer", required_argument, 0, O_TOK}, {"pre", required_argument, 0, O_PRE},
        {"n-layer", required_argument, 0, O_NLAYER}, {"n-embd", required_argument, 0, O_NEMBD},
        {"n-head", required_argument, 0, O_NHEAD}, {"n-head-kv", required_argument, 0, O_NHEADKV},
        {"n-ff", required_argument, 0, O_NFF}, {"n-vocab", required_argument, 0, O_NVOCAB},
        {"n-ctx", required_argument, 0, O_NCTX}, {"rope-base", required_argument, 0, O_ROPE_BASE},
        {"rms-eps", required_argument, 0, O_RMS_EPS}, {"rope-neox", no_argument, 0, O_NEOX},
        {"tied-embeddings", no_argument, 0, O_TIED}, {"qkv-bias", no_argument, 0, O_QKV_BIAS},
        {"tiny-vocab", no_argument, 0, O_TINY}, {"seed", required_argument, 0, O_SEED},
        {"init-scale", required_argument, 0, O_SCALE}, {"name", required_argument, 0, O_NAME},
        {"preset", required_argument, 0, O_PRESET}, {"help", no_argument, 0, O_HELP},
        {"n-expert", required_argument, 0, O_NEXP}, {"n-expert-used", required_argument, 0, O_NEXPUSED},
        {"n-ff-exp", required_argument, 0, O_NFFEXP}, {"n-ff-shexp", required_argument, 0, O_NFFSH},
        {"head-dim", required_argument, 0, O_HEADDIM},
        {0, 0, 0, 0},
    };
    int c, li = -1;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", lo, &li)) != -1) {
        const char *opt = li >= 0 ? lo[li].name : "?";
        int64_t *dst = NULL, max = 1 << 20;
        switch (c) {
        case O_OUT: o.out = optarg; break;
        case O_TYPE:
        case O_EMBD_TYPE:
        case O_OUTPUT_TYPE: {
            int t = rt_type_parse(optarg);
            if (t < 0 || !gen_type_allowed(t))
                return fail("gen: unknown or unsupported type '%s' (f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k)", optarg);
            *(c == O_TYPE ? &o.type : c == O_EMBD_TYPE ? &o.embd_type : &o.output_type) = t;
            break;
        }
        case O_ARCH:
            if (strcmp(optarg, "llama") == 0) o.arch = ARCH_LLAMA;
            else if (strcmp(optarg, "qwen2") == 0) o.arch = ARCH_QWEN2;
            else if (strcmp(optarg, "mistral") == 0) o.arch = ARCH_MISTRAL;
            else if (strcmp(optarg, "qwen2moe") == 0) o.arch = ARCH_QWEN2MOE;
            else if (strcmp(optarg, "qwen3") == 0) o.arch = ARCH_QWEN3;
            else if (strcmp(optarg, "qwen3moe") == 0) o.arch = ARCH_QWEN3MOE;
            else return fail("gen: unknown --arch '%s' (llama, qwen2, qwen3, mistral, qwen2moe, qwen3moe)", optarg);
            break;
        case O_TOK:
            if (strcmp(optarg, "spm") == 0) tok = 1;
            else if (strcmp(optarg, "bpe") == 0) tok = 0;
            else return fail("gen: unknown --tokenizer '%s' (spm, bpe)", optarg);
            break;
        case O_PRE: o.pre = optarg; break;
        case O_NLAYER: dst = &o.n_layer; max = 1024; break;
        case O_NEMBD: dst = &o.n_embd; max = 65536; break;
        case O_NHEAD: dst = &o.n_head; max = 1024; break;
        case O_NHEADKV: dst = &o.n_head_kv; max = 1024; break;
        case O_NFF: dst = &o.n_ff; max = 262144; break;
        case O_NVOCAB: dst = &o.n_vocab; max = 1 << 20; break;
        case O_NCTX: dst = &o.n_ctx; max = 1 << 24; break;
        case O_NEXP: dst = &o.n_expert; max = 256; break;
        case O_NEXPUSED: dst = &o.n_expert_used; max = 256; break;
        case O_NFFEXP: dst = &o.n_ff_exp; max = 262144; break;
        case O_NFFSH: dst = &o.n_ff_shexp; max = 262144; break;
        case O_HEADDIM: dst = &o.head_dim; max = 1024; break;
        case O_ROPE_BASE:
        case O_RMS_EPS:
        case O_SCALE: {
            char *end;
            double d = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(d > 0) || !isfinite(d))
                return fail("gen: --%s needs a positive number, not '%s'", opt, optarg);
            *(c == O_ROPE_BASE ? &o.rope_base : c == O_RMS_EPS ? &o.rms_eps : &o.init_scale) = (float)d;
            break;
        }
        case O_NEOX: o.rope_neox = true; break;
        case O_TIED: o.tied = true; break;
        case O_QKV_BIAS: o.qkv_bias = true; break;
        case O_TINY: o.tiny_vocab = true; break;
        case O_SEED: {
            char *end;
            unsigned long long s = strtoull(optarg, &end, 0);
            if (*optarg == '\0' || *end != '\0') return fail("gen: --seed needs an integer, not '%s'", optarg);
            o.seed = s;
            break;
        }
        case O_NAME: o.name = optarg; break;
        case O_PRESET:
            if (strcmp(optarg, "f16-100m") == 0) {
                o.type = RT_TYPE_F16;
                o.n_embd = 768, o.n_layer = 12, o.n_head = 12, o.n_head_kv = 12, o.n_ff = 2048;
                o.n_vocab = 32000, o.n_ctx = 2048;
                tok = 1;
                o.name = o.name ? o.name : "rotor-random-llama-100m-f16";
            } else if (strcmp(optarg, "moe-q4k") == 0) { /* Mixtral's shape, small */
                o.type = RT_TYPE_Q4_K;
                o.n_embd = 768, o.n_layer = 8, o.n_head = 12, o.n_head_kv = 4, o.n_ff = 2048;
                o.n_expert = 8, o.n_expert_used = 2;
                o.n_vocab = 32000, o.n_ctx = 2048;
                tok = 1;
                o.name = o.name ? o.name : "rotor-random-mixtral-370m-q4_k";
            } else {
                return fail("gen: unknown --preset '%s' (f16-100m, moe-q4k)", optarg);
            }
            break;
        case O_HELP: gen_usage(stdout); return 0;
        case ':': return fail("gen: option '%s' needs a value", argv[optind - 1]);
        default: return fail("gen: unknown option '%s' (see " PROG " gen --help)", argv[optind - 1]);
        }
        if (dst && !parse_i64(optarg, 1, max, dst))
            return fail("gen: --%s needs an integer in 1..%lld, not '%s'", opt, (long long)max, optarg);
        li = -1;
    }
    if (optind < argc) return fail("gen: unexpected argument '%s'", argv[optind]);
    if (!o.out) return fail("gen: --out FILE is required");

    const bool qwen = o.arch == ARCH_QWEN2 || o.arch == ARCH_QWEN2MOE || o.arch == ARCH_QWEN3 ||
                      o.arch == ARCH_QWEN3MOE;
    const bool qwen3 = o.arch == ARCH_QWEN3 || o.arch == ARCH_QWEN3MOE;
    if (qwen) o.rope_neox = true;
    if (qwen && !qwen3) o.qkv_bias = true;
    if (o.rope_neox && !qwen)
        return fail("gen: --rope-neox: llama.cpp fixes the rope type by architecture (llama/mistral: normal, "
                    "qwen2: neox); use --arch qwen2");
    o.spm = tok < 0 ? !qwen : tok == 1;
    if (o.rope_base == 0) o.rope_base = qwen ? 1e6f : 10000.0f;
    if (o.rms_eps == 0) o.rms_eps = qwen ? 1e-6f : 1e-5f;
    if ((o.arch == ARCH_QWEN2MOE || o.arch == ARCH_QWEN3MOE) && o.n_expert == 0) o.n_expert = 4;
    if ((o.arch == ARCH_QWEN2 || o.arch == ARCH_QWEN3) && o.n_expert > 0)
        return fail("gen: --n-expert: use --arch qwen2moe or qwen3moe");
    if (o.arch == ARCH_MISTRAL && o.n_expert > 0)
        return fail("gen: --n-expert: write Mixtral-style models as --arch llama");
    if (o.n_expert > 0) {
        if (o.n_expert_used == 0) o.n_expert_used = o.n_expert < 2 ? o.n_expert : 2;
        if (o.n_expert_used > o.n_expert)
            return fail("gen: --n-expert-used %lld is more than --n-expert %lld", (long long)o.n_expert_used,
                        (long long)o.n_expert);
        if (o.n_ff_exp == 0) o.n_ff_exp = o.arch == ARCH_LLAMA ? o.n_ff : o.n_ff / o.n_expert_used;
        if (o.arch == ARCH_LLAMA && o.n_ff_exp != o.n_ff)
            return fail("gen: llama.cpp sizes a llama model's experts by n_ff: --n-ff-exp must equal --n-ff");
        if (o.arch == ARCH_QWEN2MOE && o.n_ff_shexp == 0) o.n_ff_shexp = o.n_ff;
    } else if (o.n_expert_used || o.n_ff_exp || o.n_ff_shexp) {
        return fail("gen: --n-expert-used, --n-ff-exp and --n-ff-shexp need --n-expert");
    }
    if (!o.head_dim && o.n_embd % o.n_head != 0)
        return fail("gen: n_embd %lld is not a multiple of n_head %lld (or give --head-dim)", (long long)o.n_embd,
                    (long long)o.n_head);
    const int64_t hd = o.head_dim ? o.head_dim : o.n_embd / o.n_head;
    if (hd % 2 != 0) return fail("gen: head dimension %lld must be even (rope)", (long long)hd);
    if (o.n_head_kv > o.n_head || o.n_head % o.n_head_kv != 0)
        return fail("gen: n_head %lld is not a multiple of n_head_kv %lld", (long long)o.n_head,
                    (long long)o.n_head_kv);
    /* quantized types: every row length must hold whole blocks */
    const int ts[3] = {o.type, o.embd_type >= 0 ? o.embd_type : o.type, o.output_type >= 0 ? o.output_type : o.type};
    for (int i = 0; i < 3; i++) {
        int64_t bs = rt_type_traits(ts[i])->block_size;
        if (i == 0 && ((o.n_ff_exp && o.n_ff_exp % bs != 0) || (o.n_ff_shexp && o.n_ff_shexp % bs != 0)))
            return fail("gen: type %s needs the experts' hidden sizes (%lld, %lld) to be multiples of %lld",
                        rt_type_name(ts[i]), (long long)o.n_ff_exp, (long long)o.n_ff_shexp, (long long)bs);
        if (i == 0 && (hd * o.n_head) % bs != 0)
            return fail("gen: type %s needs n_head x head_dim (%lld) to be a multiple of %lld", rt_type_name(ts[i]),
                        (long long)(hd * o.n_head), (long long)bs);
        if (o.n_embd % bs != 0 || (i == 0 && o.n_ff % bs != 0))
            return fail("gen: type %s needs row lengths that are multiples of %lld, but n_embd is %lld%s%lld; "
                        "no fallback: pick multiples of %lld or another type",
                        rt_type_name(ts[i]), (long long)bs, (long long)o.n_embd, i == 0 ? " and n_ff " : "",
                        i == 0 ? (long long)o.n_ff : 0LL, (long long)bs);
    }
    return gen_write(&o);
}

/* ====================================================================== */

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " info FILE [--json]\n"
               "       " PROG " gen --out FILE [options]   (see " PROG " gen --help)\n"
               "       " PROG " export-tokenizer MODEL.gguf DIR\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "gen") == 0) return cmd_gen(argc - 1, argv + 1);
    if (strcmp(argv[1], "export-tokenizer") == 0) return tokenizer_export_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return fail("unknown command '%s'", argv[1]);
}
