/*
 * rb_trace.c - read and validate a Mooncake JSONL trace (cJSON per line).
 * See rb_trace.h.
 */
#include "rb_trace.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integer value of a JSON number in [lo, hi], or false. */
static bool tr_int(const cJSON *j, double lo, double hi, int64_t *v) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi) return false;
    *v = (int64_t)d;
    return true;
}

/* Parse one non-blank line into *l; hash ids are appended to the pool
 * (l->hash_ids is set once the pool stops moving; l->hash_off says where). */
static rt_status_t tr_line(const char *s, size_t n, const char *name, int64_t lineno,
                           rb_trace_line_t *l, int64_t **pool, size_t *pool_n, size_t *pool_cap) {
    cJSON *o = cJSON_ParseWithLength(s, n);
    rt_status_t st = RT_OK;
    if (!cJSON_IsObject(o)) {
        st = rt_error_set(RT_ERR_FORMAT, "%s:%lld: not a JSON object", name, (long long)lineno);
        goto out;
    }
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input_length");
    const cJSON *outl = cJSON_GetObjectItemCaseSensitive(o, "output_length");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hash_ids");
    const char *missing = !ts ? "timestamp" : !in ? "input_length" : !outl ? "output_length" : NULL;
    if (missing) {
        st = rt_error_set(RT_ERR_FORMAT, "%s:%lld: missing \"%s\"", name, (long long)lineno,
                          missing);
        goto out;
    }
    if (!cJSON_IsNumber(ts) || !isfinite(ts->valuedouble) || ts->valuedouble < 0) {
        st = rt_error_set(RT_ERR_FORMAT, "%s:%lld: \"timestamp\" must be a number >= 0 (ms)", name,
                          (long long)lineno);
        goto out;
    }
    int64_t vin, vout;
    if (!tr_int(in, 1, INT32_MAX, &vin) || !tr_int(outl, 1, INT32_MAX, &vout)) {
        st = rt_error_set(RT_ERR_FORMAT, "%s:%lld: \"%s\" must be an integer >= 1", name,
                          (long long)lineno,
                          !tr_int(in, 1, INT32_MAX, &vin) ? "input_length" : "output_length");
        goto out;
    }
    l->timestamp_ms = ts->valuedouble;
    l->input_length = (int32_t)vin;
    l->output_length = (int32_t)vout;
    l->line = lineno;
    l->n_hash = 0;
    l->hash_ids = NULL;
    l->hash_off = *pool_n;
    if (h && !cJSON_IsNull(h)) {
        if (!cJSON_IsArray(h)) {
            st = rt_error_set(RT_ERR_FORMAT, "%s:%lld: \"hash_ids\" must be an array", name,
                              (long long)lineno);
            goto out;
        }
        int k = cJSON_GetArraySize(h);
        if (*pool_n + (size_t)k > *pool_cap) {
            size_t nc = *pool_cap ? *pool_cap : 1024;
            while (nc < *pool_n + (size_t)k)
                nc *= 2;
            int64_t *np = realloc(*pool, nc * sizeof *np);
            if (!np) {
                st = rt_error_set(RT_ERR_NOMEM, "out of memory (%zu hash ids)", nc);
                goto out;
            }
            *pool = np;
            *pool_cap = nc;
        }
        const cJSON *e;
        int i = 0;
        cJSON_ArrayForEach(e, h) {
            int64_t v;
            if (!tr_int(e, 0, 9007199254740992.0, &v)) { /* 2^53: exact in a double */
                st =
                    rt_error_set(RT_ERR_FORMAT, "%s:%lld: \"hash_ids\"[%d] must be an integer >= 0",
                                 name, (long long)lineno, i);
                goto out;
            }
            (*pool)[*pool_n + (size_t)i++] = v;
        }
        *pool_n += (size_t)k;
        l->n_hash = k;
    }
out:
    cJSON_Delete(o);
    return st;
}

rt_status_t rb_trace_parse(const char *text, size_t len, const char *name, rb_trace_t **out) {
    rb_trace_t *t = calloc(1, sizeof *t);
    if (!t) return rt_error_set(RT_ERR_NOMEM, "out of memory");
    size_t cap = 0, pool_n = 0, pool_cap = 0;
    rt_status_t st = RT_OK;
    int64_t lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *s = text + pos;
        size_t n = end - pos;
        pos = end + 1;
        lineno++;
        size_t k = 0;
        while (k < n && strchr(" \t\r", s[k]))
            k++;
        if (k == n) continue; /* blank */
        if (t->n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            rb_trace_line_t *nl2 = realloc(t->lines, nc * sizeof *nl2);
            if (!nl2) {
                st = rt_error_set(RT_ERR_NOMEM, "out of memory (%zu trace lines)", nc);
                goto err;
            }
            t->lines = nl2;
            cap = nc;
        }
        rb_trace_line_t *l = &t->lines[t->n];
        if ((st = tr_line(s, n, name, lineno, l, &t->hash_pool, &pool_n, &pool_cap))) goto err;
        if (t->n > 0 && l->timestamp_ms < t->lines[t->n - 1].timestamp_ms) {
            st = rt_error_set(
                RT_ERR_FORMAT,
                "%s:%lld: timestamp %.17g is before the previous line's %.17g (a Mooncake trace is "
                "sorted by timestamp; sort it first)",
                name, (long long)lineno, l->timestamp_ms, t->lines[t->n - 1].timestamp_ms);
            goto err;
        }
        t->n++;
    }
    if (t->n == 0) {
        st = rt_error_set(RT_ERR_FORMAT, "%s: the trace has no requests", name);
        goto err;
    }
    for (size_t i = 0; i < t->n; i++)
        t->lines[i].hash_ids = t->lines[i].n_hash ? t->hash_pool + t->lines[i].hash_off : NULL;
    *out = t;
    return RT_OK;
err:
    rb_trace_destroy(t);
    return st;
}

rt_status_t rb_trace_load(const char *path, rb_trace_t **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return rt_error_set(RT_ERR_IO, "trace %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    rt_status_t st = RT_OK;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, nc);
            if (!nb) {
                st = rt_error_set(RT_ERR_NOMEM, "trace %s: out of memory (%zu bytes)", path, nc);
                break;
            }
            buf = nb;
            cap = nc;
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) {
            if (ferror(f))
                st = rt_error_set(RT_ERR_IO, "trace %s: read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!st) st = rb_trace_parse(buf ? buf : "", len, path, out);
    free(buf);
    return st;
}

void rb_trace_destroy(rb_trace_t *t) {
    if (!t) return;
    free(t->lines);
    free(t->hash_pool);
    free(t);
}
