/*
 * rb_output_h5.c - rotor-bench's run file (HDF5, serial API; layout in
 * docs/rotor-bench.md):
 *
 *   /requests     one compound record per request (warmup ones flagged)
 *   /token_times  one compound record per content chunk
 *   /meta         attributes: version, url, model, endpoint, command line,
 *                 params_json, start_wall_time, duration_s
 *   /summary      attribute summary_json (the JSON summary)
 *
 * Written once at the end of a run. Datasets are 1-D, chunked and
 * extendible (so an empty one is valid); file compounds are packed.
 * Strings in attributes are variable-length UTF-8 (h5py reads str).
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rb_output.h"

#define RB_H5_LAYOUT 1
#define RB_H5_ERR_LEN 32

typedef struct {
    uint64_t index;
    int32_t session, turn;
    uint8_t warmup;
    double t_send, t_first, t_end;
    int32_t input_tokens, output_tokens, http_status;
    char error[RB_H5_ERR_LEN];
} h5_req_t;

typedef struct {
    uint64_t request;
    int32_t index;
    double t;
} h5_tok_t;

/* "what: <HDF5's innermost message>" as the thread's error. */
static herr_t err_walk(unsigned n, const H5E_error2_t *e, void *arg)
{
    (void)n;
    snprintf(arg, 160, "%s(): %s", e->func_name ? e->func_name : "?", e->desc ? e->desc : "?");
    return 0;
}

static rt_status_t h5_fail(const char *what)
{
    char m[160] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, err_walk, m);
    return rt_error_set(RT_ERR_IO, "rotor-bench: HDF5 %s%s%s", what, m[0] ? ": " : " failed", m);
}

static hid_t str_fixed(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, n) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

static hid_t str_var(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

#define INS(t, T, f, h5t) ok &= H5Tinsert(t, #f, HOFFSET(T, f), h5t) >= 0

static hid_t req_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(h5_req_t)), s = str_fixed(RB_H5_ERR_LEN);
    int ok = t >= 0 && s >= 0;
    if (ok) {
        INS(t, h5_req_t, index, H5T_NATIVE_UINT64);
        INS(t, h5_req_t, session, H5T_NATIVE_INT32);
        INS(t, h5_req_t, turn, H5T_NATIVE_INT32);
        INS(t, h5_req_t, warmup, H5T_NATIVE_UINT8);
        INS(t, h5_req_t, t_send, H5T_NATIVE_DOUBLE);
        INS(t, h5_req_t, t_first, H5T_NATIVE_DOUBLE);
        INS(t, h5_req_t, t_end, H5T_NATIVE_DOUBLE);
        INS(t, h5_req_t, input_tokens, H5T_NATIVE_INT32);
        INS(t, h5_req_t, output_tokens, H5T_NATIVE_INT32);
        INS(t, h5_req_t, http_status, H5T_NATIVE_INT32);
        INS(t, h5_req_t, error, s);
    }
    if (s >= 0) H5Tclose(s);
    if (!ok && t >= 0) H5Tclose(t);
    return ok ? t : H5I_INVALID_HID;
}

static hid_t tok_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(h5_tok_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, h5_tok_t, request, H5T_NATIVE_UINT64);
        INS(t, h5_tok_t, index, H5T_NATIVE_INT32);
        INS(t, h5_tok_t, t, H5T_NATIVE_DOUBLE);
    }
    if (!ok && t >= 0) H5Tclose(t);
    return ok ? t : H5I_INVALID_HID;
}

#undef INS

static rt_status_t attr_str(hid_t obj, const char *name, const char *v)
{
    hid_t t = str_var(), sp = H5Screate(H5S_SCALAR);
    hid_t a = t >= 0 && sp >= 0 ? H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    const char *s = v ? v : "";
    rt_status_t st = a >= 0 && H5Awrite(a, t, &s) >= 0 ? RT_OK : h5_fail(name);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return st;
}

static rt_status_t attr_num(hid_t obj, const char *name, hid_t type, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp >= 0 ? H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    rt_status_t st = a >= 0 && H5Awrite(a, type, v) >= 0 ? RT_OK : h5_fail(name);
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return st;
}

/* 1-D dataset name of n records of mem_type (file type: packed copy). */
static rt_status_t write_table(hid_t file, const char *name, hid_t mem_type, const void *recs, size_t n,
                               const char *units)
{
    hsize_t dims = n, maxdims = H5S_UNLIMITED, chunk = n < 1 ? 1 : n > 65536 ? 65536 : n;
    hid_t sp = H5Screate_simple(1, &dims, &maxdims), dcpl = H5Pcreate(H5P_DATASET_CREATE),
          ft = H5Tcopy(mem_type), d = H5I_INVALID_HID;
    rt_status_t st = RT_OK;
    if (sp < 0 || dcpl < 0 || ft < 0 || H5Tpack(ft) < 0 || H5Pset_chunk(dcpl, 1, &chunk) < 0)
        st = h5_fail(name);
    if (!st && (d = H5Dcreate2(file, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) st = h5_fail(name);
    if (!st && n && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, recs) < 0) st = h5_fail(name);
    if (!st) st = attr_str(d, "units", units);
    if (d >= 0) H5Dclose(d);
    if (ft >= 0) H5Tclose(ft);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return st;
}

static rt_status_t write_meta(hid_t file, const rb_h5_meta_t *m)
{
    hid_t g = H5Gcreate2(file, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return h5_fail("/meta");
    int32_t layout = RB_H5_LAYOUT;
    rt_status_t st = attr_str(g, "rotor_bench_version", RB_VERSION);
    if (!st) st = attr_num(g, "layout_version", H5T_NATIVE_INT32, &layout);
    if (!st) st = attr_str(g, "url", m->url);
    if (!st) st = attr_str(g, "model", m->model);
    if (!st) st = attr_str(g, "endpoint", m->endpoint);
    if (!st) st = attr_str(g, "command_line", m->command_line);
    if (!st) st = attr_str(g, "params_json", m->params_json);
    if (!st) st = attr_num(g, "start_wall_time", H5T_NATIVE_DOUBLE, &m->start_wall_time);
    if (!st) st = attr_num(g, "duration_s", H5T_NATIVE_DOUBLE, &m->duration_s);
    if (!st)
        st = attr_str(g, "units",
                      "start_wall_time: s since the Unix epoch (CLOCK_REALTIME) at t = 0 of "
                      "/requests and /token_times; duration_s: s");
    H5Gclose(g);
    if (st) return st;
    g = H5Gcreate2(file, "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return h5_fail("/summary");
    st = attr_str(g, "summary_json", m->summary_json);
    H5Gclose(g);
    return st;
}

rt_status_t rb_output_h5(const char *path, const rb_h5_meta_t *m, const rb_records_t *rs)
{
    if (H5open() < 0) return rt_error_set(RT_ERR_IO, "rotor-bench: H5open failed");
    H5E_auto2_t old_f;
    void *old_d;
    H5Eget_auto2(H5E_DEFAULT, &old_f, &old_d);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    rt_status_t st = RT_OK;
    h5_req_t *req = calloc(rs->n_req ? rs->n_req : 1, sizeof *req);
    h5_tok_t *tok = calloc(rs->n_tok ? rs->n_tok : 1, sizeof *tok);
    hid_t rt = req_type(), tt = tok_type(), file = H5I_INVALID_HID;
    if (!req || !tok) st = rt_error_set(RT_ERR_NOMEM, "rotor-bench: out of memory for the run file");
    if (!st && (rt < 0 || tt < 0)) st = h5_fail("compound type");
    if (!st) {
        size_t nt = 0;
        for (size_t i = 0; i < rs->n_req; i++) {
            const rb_req_t *q = &rs->req[i];
            h5_req_t *d = &req[i];
            d->index = q->index;
            d->session = q->session;
            d->turn = q->turn;
            d->warmup = q->warmup;
            d->t_send = q->t_send;
            d->t_first = q->t_first;
            d->t_end = q->t_end;
            d->input_tokens = q->input_tokens;
            d->output_tokens = q->output_tokens;
            d->http_status = q->http_status;
            snprintf(d->error, sizeof d->error, "%s", rb_err_kind_name(q->err));
            for (uint32_t k = 0; k < q->n_tok; k++, nt++) {
                tok[nt].request = q->index;
                tok[nt].index = (int32_t)k;
                tok[nt].t = rs->tok[q->tok_off + k];
            }
        }
        file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        if (file < 0) {
            char w[512];
            snprintf(w, sizeof w, "create %s", path);
            st = h5_fail(w);
        }
        if (!st) st = write_meta(file, m);
        if (!st)
            st = write_table(file, "requests", rt, req, rs->n_req,
                             "t_send, t_first, t_end: s since the run's start (CLOCK_MONOTONIC; "
                             "warmup requests are negative); t_first NaN if no content came; "
                             "*_tokens: tokens; http_status: 0 if no response; error: kind or \"\"");
        if (!st)
            st = write_table(file, "token_times", tt, tok, nt,
                             "request: /requests index; index: chunk position in the response; "
                             "t: arrival, s since the run's start (CLOCK_MONOTONIC)");
        if (file >= 0 && H5Fclose(file) < 0 && !st) st = h5_fail("close");
    }
    if (rt >= 0) H5Tclose(rt);
    if (tt >= 0) H5Tclose(tt);
    free(req);
    free(tok);
    H5Eset_auto2(H5E_DEFAULT, old_f, old_d);
    return st;
}

rt_status_t rb_output_h5_read_summary(const char *path, char **out)
{
    if (H5open() < 0) return rt_error_set(RT_ERR_IO, "rotor-bench: H5open failed");
    H5E_auto2_t old_f;
    void *old_d;
    H5Eget_auto2(H5E_DEFAULT, &old_f, &old_d);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    rt_status_t st = RT_OK;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = f >= 0 ? H5Aopen_by_name(f, "summary", "summary_json", H5P_DEFAULT, H5P_DEFAULT) : -1;
    hid_t t = str_var();
    char *s = NULL;
    if (f < 0) st = rt_error_set(RT_ERR_IO, "rotor-bench: cannot open %s as HDF5", path);
    else if (a < 0) st = rt_error_set(RT_ERR_FORMAT, "rotor-bench: %s has no /summary summary_json", path);
    else if (t < 0 || H5Aread(a, t, &s) < 0 || !s) st = h5_fail("read summary_json");
    if (!st) {
        *out = strdup(s);
        if (!*out) st = rt_error_set(RT_ERR_NOMEM, "rotor-bench: out of memory");
    }
    if (s) H5free_memory(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (f >= 0) H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, old_f, old_d);
    return st;
}
