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
 * Strings in attributes are variable-length UTF-8 (h5py reads str). The
 * generic HDF5 steps are src/hlog/h5util.c's, shared with the job log.
 */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hlog/h5util.h"
#include "rb_output.h"

#define RB_H5_LAYOUT 1
#define RB_H5_ERR_LEN 32
#define RB_H5_CHUNK_MAX 65536 /* records per chunk at most */
#define WHO "rotor-bench: HDF5" /* prefix of error messages */

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

#define INS(t, T, f, h5t) ok &= H5Tinsert(t, #f, HOFFSET(T, f), h5t) >= 0
/* INS_STR: a char-array field, stored as a NUL-terminated string of its size. */
#define INS_STR(t, T, f) ok &= h5u_insert_str(t, #f, HOFFSET(T, f), sizeof(((T *)0)->f)) >= 0

static hid_t req_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(h5_req_t));
    int ok = t >= 0;
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
        INS_STR(t, h5_req_t, error);
    }
    return h5u_compound_end(t, ok);
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
    return h5u_compound_end(t, ok);
}

#undef INS_STR
#undef INS

/* String attribute; NULL is written as "". */
static rt_status_t attr_str(hid_t obj, const char *name, const char *v)
{
    return h5u_attr_str(WHO, obj, name, v ? v : "");
}

/* The 1-D table name of the n records recs of mem_type, with its units. */
static rt_status_t write_table(hid_t file, const char *name, hid_t mem_type, const void *recs,
                               size_t n, const char *units)
{
    hsize_t chunk = n < 1 ? 1 : n > RB_H5_CHUNK_MAX ? RB_H5_CHUNK_MAX : n;
    hid_t d = H5I_INVALID_HID;
    rt_status_t st = h5u_table_create(WHO, file, name, mem_type, chunk, units, recs, n, &d);
    if (!st) H5Dclose(d);
    return st;
}

static rt_status_t write_meta(hid_t file, const rb_h5_meta_t *m)
{
    hid_t g = H5Gcreate2(file, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return h5u_fail(WHO, "create /meta");
    int32_t layout = RB_H5_LAYOUT;
    rt_status_t st = attr_str(g, "rotor_bench_version", RB_VERSION);
    if (!st) st = h5u_attr_write(WHO, g, "layout_version", H5T_NATIVE_INT32, &layout);
    if (!st) st = attr_str(g, "url", m->url);
    if (!st) st = attr_str(g, "model", m->model);
    if (!st) st = attr_str(g, "endpoint", m->endpoint);
    if (!st) st = attr_str(g, "command_line", m->command_line);
    if (!st) st = attr_str(g, "params_json", m->params_json);
    if (!st)
        st = h5u_attr_write(WHO, g, "start_wall_time", H5T_NATIVE_DOUBLE, &m->start_wall_time);
    if (!st) st = h5u_attr_write(WHO, g, "duration_s", H5T_NATIVE_DOUBLE, &m->duration_s);
    if (!st)
        st = attr_str(g, "units",
                      "start_wall_time: s since the Unix epoch (CLOCK_REALTIME) at t = 0 of "
                      "/requests and /token_times; duration_s: s");
    H5Gclose(g);
    if (st) return st;
    g = H5Gcreate2(file, "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return h5u_fail(WHO, "create /summary");
    st = attr_str(g, "summary_json", m->summary_json);
    H5Gclose(g);
    return st;
}

rt_status_t rb_output_h5(const char *path, const rb_h5_meta_t *m, const rb_records_t *rs)
{
    h5u_quiet_t quiet;
    rt_status_t st = h5u_quiet_begin(WHO, &quiet);
    if (st) return st;
    h5_req_t *req = calloc(rs->n_req ? rs->n_req : 1, sizeof *req);
    h5_tok_t *tok = calloc(rs->n_tok ? rs->n_tok : 1, sizeof *tok);
    hid_t rt = req_type(), tt = tok_type(), file = H5I_INVALID_HID;
    if (!req || !tok) st = rt_error_set(RT_ERR_NOMEM, "rotor-bench: out of memory for the run file");
    if (!st && (rt < 0 || tt < 0)) st = h5u_fail(WHO, "compound type");
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
        st = h5u_file_create(WHO, path, H5P_DEFAULT, &file);
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
        if (file >= 0 && H5Fclose(file) < 0 && !st) st = h5u_fail(WHO, "close");
    }
    if (rt >= 0) H5Tclose(rt);
    if (tt >= 0) H5Tclose(tt);
    free(req);
    free(tok);
    h5u_quiet_end(&quiet);
    return st;
}

rt_status_t rb_output_h5_read_summary(const char *path, char **out)
{
    h5u_quiet_t quiet;
    rt_status_t st = h5u_quiet_begin(WHO, &quiet);
    if (st) return st;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = f >= 0 ? H5Aopen_by_name(f, "summary", "summary_json", H5P_DEFAULT, H5P_DEFAULT) : -1;
    hid_t t = h5u_str_utf8();
    char *s = NULL;
    if (f < 0) st = rt_error_set(RT_ERR_IO, "rotor-bench: cannot open %s as HDF5", path);
    else if (a < 0) st = rt_error_set(RT_ERR_FORMAT, "rotor-bench: %s has no /summary summary_json", path);
    else if (t < 0 || H5Aread(a, t, &s) < 0 || !s) st = h5u_fail(WHO, "read summary_json");
    if (!st) {
        *out = strdup(s);
        if (!*out) st = rt_error_set(RT_ERR_NOMEM, "rotor-bench: out of memory");
    }
    if (s) H5free_memory(s);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (f >= 0) H5Fclose(f);
    h5u_quiet_end(&quiet);
    return st;
}
