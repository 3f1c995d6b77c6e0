/*
 * hlog_h5.c - the HDF5 file of the job log (layout in docs/hdf5-log.md).
 *
 * One file, created with the default (serial) driver and the latest file
 * format so that it can be written in SWMR mode: after the layout is made
 * (the /meta group and its attributes, seven empty extendible datasets with
 * their "units" attributes) the file switches to single-writer/multiple-
 * reader writing, and h5py (`h5py.File(p, "r", swmr=True)`) can read it
 * while the job runs. Each dataset is 1-D, unlimited and chunked; an append
 * extends it and writes the new records as one hyperslab. In-memory records
 * are the C structs of rotor/hlog.h (compound types built with HOFFSET); the
 * file types are the same compounds packed (no padding). Fixed-length
 * strings are H5T_C_S1, NUL-terminated.
 *
 * Only hlog writer threads call this file, and every entry point holds the
 * process-wide HDF5 lock (h5u_lock), so that several logs, or a log and a
 * KV disk tier, in one process never call the non-thread-safe HDF5 at the
 * same time. HDF5's automatic error printing
 * is turned off while any log is open; failures are reported as rt_status_t
 * with the HDF5 error stack's messages. The generic HDF5 steps (attributes,
 * string types, tables, errors) are in h5util.c, shared with rotor-bench.
 */
#include "hlog/hlog_h5.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hlog/h5util.h"

#ifndef ROTOR_VERSION
#define ROTOR_VERSION "0.1.0"
#endif

#define HLOG_LAYOUT_VERSION 3 /* 2: /kv_events, /requests route_overlap_blocks; 3: /transfers, /planner */
#define WHO "hlog" /* prefix of error messages */

typedef struct {
    const char *name;  /* dataset path */
    hsize_t chunk;     /* records per chunk */
    const char *units; /* the dataset's "units" attribute */
    hid_t mem_type;    /* compound matching the C struct */
    hid_t dset;
    hsize_t n; /* records written */
} h5_table_t;

struct hlog_h5 {
    hid_t file;
    h5_table_t tab[HLOG_KIND_COUNT];
};

/* Serialises every HDF5 call of this file; guards the fields below too. */

static const size_t kind_size[HLOG_KIND_COUNT] = {
    sizeof(hlog_request_t), sizeof(hlog_token_rec_t), sizeof(hlog_step_t), sizeof(hlog_worker_t),
    sizeof(hlog_kv_event_t), sizeof(hlog_transfer_t), sizeof(hlog_planner_t)};

size_t hlog_kind_size(hlog_kind_t k) { return kind_size[k]; }

static const char *const final_u64[] = {"dropped_records", "n_requests", "n_tokens", "n_steps",
                                        "n_workers", "n_kv_events", "n_transfers",
                                        "n_planner"};

/* ---- types ----------------------------------------------------------- */

#define INS(t, T, field, h5t) ok &= H5Tinsert(t, #field, HOFFSET(T, field), h5t) >= 0
/* INS_STR: a char-array field, stored as a NUL-terminated string of its size. */
#define INS_STR(t, T, field)                                                                       \
    ok &= h5u_insert_str(t, #field, HOFFSET(T, field), sizeof(((T *)0)->field)) >= 0

static hid_t request_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_request_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, hlog_request_t, id, H5T_NATIVE_UINT64);
        INS(t, hlog_request_t, worker, H5T_NATIVE_INT32);
        INS(t, hlog_request_t, t_arrival, H5T_NATIVE_DOUBLE);
        INS(t, hlog_request_t, t_routed, H5T_NATIVE_DOUBLE);
        INS(t, hlog_request_t, t_scheduled, H5T_NATIVE_DOUBLE);
        INS(t, hlog_request_t, t_prefill_done, H5T_NATIVE_DOUBLE);
        INS(t, hlog_request_t, t_first_token, H5T_NATIVE_DOUBLE);
        INS(t, hlog_request_t, t_finish, H5T_NATIVE_DOUBLE);
        INS(t, hlog_request_t, queue_wait_s, H5T_NATIVE_DOUBLE);
        INS(t, hlog_request_t, tokens_in, H5T_NATIVE_INT32);
        INS(t, hlog_request_t, tokens_out, H5T_NATIVE_INT32);
        INS(t, hlog_request_t, tokens_cached, H5T_NATIVE_INT32);
        INS(t, hlog_request_t, route_overlap_blocks, H5T_NATIVE_INT32);
        INS(t, hlog_request_t, http_status, H5T_NATIVE_INT32);
        INS_STR(t, hlog_request_t, finish_reason);
        INS_STR(t, hlog_request_t, error);
    }
    return h5u_compound_end(t, ok);
}

static hid_t token_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_token_rec_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, hlog_token_rec_t, request_id, H5T_NATIVE_UINT64);
        INS(t, hlog_token_rec_t, index, H5T_NATIVE_INT32);
        INS(t, hlog_token_rec_t, t, H5T_NATIVE_DOUBLE);
    }
    return h5u_compound_end(t, ok);
}

static hid_t kv_event_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_kv_event_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, hlog_kv_event_t, worker, H5T_NATIVE_INT32);
        INS(t, hlog_kv_event_t, t, H5T_NATIVE_DOUBLE);
        INS(t, hlog_kv_event_t, id, H5T_NATIVE_UINT64);
        INS_STR(t, hlog_kv_event_t, kind);
        INS(t, hlog_kv_event_t, seq_hash, H5T_NATIVE_UINT64);
        INS(t, hlog_kv_event_t, block_hash, H5T_NATIVE_UINT64);
        INS(t, hlog_kv_event_t, parent_hash, H5T_NATIVE_UINT64);
        INS(t, hlog_kv_event_t, has_parent, H5T_NATIVE_INT32);
        INS(t, hlog_kv_event_t, n_tokens, H5T_NATIVE_INT32);
        INS(t, hlog_kv_event_t, tier, H5T_NATIVE_INT32);
    }
    return h5u_compound_end(t, ok);
}

static hid_t transfer_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_transfer_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, hlog_transfer_t, id, H5T_NATIVE_UINT64);
        INS(t, hlog_transfer_t, prefill_worker, H5T_NATIVE_INT32);
        INS(t, hlog_transfer_t, decode_worker, H5T_NATIVE_INT32);
        INS(t, hlog_transfer_t, n_blocks, H5T_NATIVE_INT32);
        INS(t, hlog_transfer_t, n_imported, H5T_NATIVE_INT32);
        INS(t, hlog_transfer_t, bytes, H5T_NATIVE_INT64);
        INS(t, hlog_transfer_t, t_prefill_done, H5T_NATIVE_DOUBLE);
        INS(t, hlog_transfer_t, t_sent, H5T_NATIVE_DOUBLE);
        INS(t, hlog_transfer_t, t_received, H5T_NATIVE_DOUBLE);
        INS(t, hlog_transfer_t, t_imported, H5T_NATIVE_DOUBLE);
    }
    return h5u_compound_end(t, ok);
}

static hid_t planner_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_planner_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, hlog_planner_t, t, H5T_NATIVE_DOUBLE);
        INS(t, hlog_planner_t, ttft_mean_s, H5T_NATIVE_DOUBLE);
        INS(t, hlog_planner_t, itl_mean_s, H5T_NATIVE_DOUBLE);
        INS(t, hlog_planner_t, n_ttft, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, n_itl, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, n_prefill, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, n_decode, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, prefill_queue, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, rank_moved, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, n_moved, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, target_prefill, H5T_NATIVE_INT32);
        INS(t, hlog_planner_t, prefill_tps, H5T_NATIVE_DOUBLE);
        INS(t, hlog_planner_t, decode_tps, H5T_NATIVE_DOUBLE);
        INS(t, hlog_planner_t, prefill_cap_tps, H5T_NATIVE_DOUBLE);
        INS(t, hlog_planner_t, decode_cap_tps, H5T_NATIVE_DOUBLE);
        INS_STR(t, hlog_planner_t, action);
        INS_STR(t, hlog_planner_t, why);
    }
    return h5u_compound_end(t, ok);
}

static hid_t step_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_step_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, hlog_step_t, worker, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, t, H5T_NATIVE_DOUBLE);
        INS(t, hlog_step_t, step_s, H5T_NATIVE_DOUBLE);
        INS(t, hlog_step_t, n_seqs, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, n_prefill_tokens, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, n_decode_tokens, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, n_running, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, n_waiting, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, blocks_used, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, blocks_cached, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, blocks_free, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, spec_draft_tokens, H5T_NATIVE_INT32);
        INS(t, hlog_step_t, spec_accepted_tokens, H5T_NATIVE_INT32);
    }
    return h5u_compound_end(t, ok);
}

static hid_t worker_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_worker_t));
    int ok = t >= 0;
    if (ok) {
        INS(t, hlog_worker_t, rank, H5T_NATIVE_INT32);
        INS(t, hlog_worker_t, t, H5T_NATIVE_DOUBLE);
        INS_STR(t, hlog_worker_t, kind);
        INS_STR(t, hlog_worker_t, role);
        INS_STR(t, hlog_worker_t, detail);
    }
    return h5u_compound_end(t, ok);
}

#undef INS_STR
#undef INS

/* ---- /meta ----------------------------------------------------------- */

static rt_status_t write_meta(hid_t file, const hlog_h5_meta_t *m)
{
    hid_t g = H5Gcreate2(file, "meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return h5u_fail(WHO, "create /meta");
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
    int32_t layout = HLOG_LAYOUT_VERSION;
    uint64_t zero = 0;
    double end_time = 0;
    rt_status_t st = h5u_attr_str(WHO, g, "rotor_version", ROTOR_VERSION);
    if (!st) st = h5u_attr_write(WHO, g, "layout_version", H5T_NATIVE_INT32, &layout);
    if (!st) st = h5u_attr_str(WHO, g, "model", m->model);
    if (!st) st = h5u_attr_str(WHO, g, "config", m->config_text);
    if (!st) st = h5u_attr_str(WHO, g, "roles", m->roles);
    if (!st) st = h5u_attr_write(WHO, g, "start_time", H5T_NATIVE_DOUBLE, &m->start_time);
    if (!st) st = h5u_attr_str(WHO, g, "hostname", host);
    if (!st)
        st = h5u_attr_str(WHO, g, "units",
                          "start_time, end_time: s since the Unix epoch (CLOCK_REALTIME); "
                          "dropped_records, n_*: records; end_time, dropped_records and n_* "
                          "are 0 until the log is closed");
    /* The closing attributes exist from the start (0 while the job runs) and
     * are overwritten at close: a file in SWMR mode is not meant to get new
     * attributes. */
    if (!st) st = h5u_attr_write(WHO, g, "end_time", H5T_NATIVE_DOUBLE, &end_time);
    for (size_t i = 0; !st && i < sizeof final_u64 / sizeof *final_u64; i++)
        st = h5u_attr_write(WHO, g, final_u64[i], H5T_NATIVE_UINT64, &zero);
    H5Gclose(g);
    return st;
}

/* ---- datasets -------------------------------------------------------- */

static const h5_table_t table_init[HLOG_KIND_COUNT] = {
    [HLOG_KIND_REQUEST] = {"requests", 1024,
                           "t_*: s since the Unix epoch (CLOCK_REALTIME), 0 = never; "
                           "queue_wait_s: s; tokens_*: tokens; http_status: HTTP status code",
                           H5I_INVALID_HID, H5I_INVALID_HID, 0},
    [HLOG_KIND_TOKEN] = {"tokens", 8192,
                         "t: s since the Unix epoch (CLOCK_REALTIME); index: 0-based token "
                         "position in the completion",
                         H5I_INVALID_HID, H5I_INVALID_HID, 0},
    [HLOG_KIND_STEP] = {"steps", 4096,
                        "t: step end, s since the Unix epoch (CLOCK_REALTIME); step_s: s; "
                        "n_seqs, n_running, n_waiting: sequences; n_*_tokens: tokens; "
                        "blocks_*: KV-cache blocks",
                        H5I_INVALID_HID, H5I_INVALID_HID, 0},
    [HLOG_KIND_WORKER] = {"workers", 256, "t: s since the Unix epoch (CLOCK_REALTIME)",
                          H5I_INVALID_HID, H5I_INVALID_HID, 0},
    [HLOG_KIND_KV_EVENT] = {"kv_events", 4096,
                            "t: s since the Unix epoch (CLOCK_REALTIME), when rank 0 received it; "
                            "n_tokens: tokens; tier: 1 = G1 (the KV pool), 2 = G2 (host memory), 3 = G3 (disk)",
                            H5I_INVALID_HID, H5I_INVALID_HID, 0},
    [HLOG_KIND_TRANSFER] = {"transfers", 1024,
                            "t_*: s since the Unix epoch (CLOCK_REALTIME); n_blocks, n_imported: "
                            "KV blocks; bytes: bytes; prefill_worker, decode_worker: ranks",
                            H5I_INVALID_HID, H5I_INVALID_HID, 0},
    [HLOG_KIND_PLANNER] = {"planner", 256,
                           "t: s since the Unix epoch (CLOCK_REALTIME), when rank 0 received the "
                           "decision; *_mean_s: s; n_ttft: first tokens; n_itl: token gaps; "
                           "n_prefill, n_decode: ranks; prefill_queue: prompts; rank_moved: rank, "
                           "-1 = none",
                           H5I_INVALID_HID, H5I_INVALID_HID, 0},
};

/* Close every handle of f (ignoring errors), restore error printing, free. */
static herr_t release(hlog_h5_t *f)
{
    herr_t r = 0;
    for (int k = 0; k < HLOG_KIND_COUNT; k++) {
        if (f->tab[k].dset >= 0 && H5Dclose(f->tab[k].dset) < 0) r = -1;
        if (f->tab[k].mem_type >= 0 && H5Tclose(f->tab[k].mem_type) < 0) r = -1;
    }
    if (f->file >= 0 && H5Fclose(f->file) < 0) r = -1;
    h5u_user_end();
    free(f);
    return r;
}

rt_status_t hlog_h5_create(const char *path, const hlog_h5_meta_t *meta, hlog_h5_t **out)
{
    hlog_h5_t *f = calloc(1, sizeof *f);
    if (!f) return rt_error_set(RT_ERR_NOMEM, "hlog: out of memory");
    f->file = H5I_INVALID_HID;
    memcpy(f->tab, table_init, sizeof table_init);
    h5u_lock();
    rt_status_t st = h5u_user_begin(WHO);
    if (st) {
        h5u_unlock();
        free(f);
        return st;
    }

    f->tab[HLOG_KIND_REQUEST].mem_type = request_type();
    f->tab[HLOG_KIND_TOKEN].mem_type = token_type();
    f->tab[HLOG_KIND_STEP].mem_type = step_type();
    f->tab[HLOG_KIND_WORKER].mem_type = worker_type();
    f->tab[HLOG_KIND_KV_EVENT].mem_type = kv_event_type();
    f->tab[HLOG_KIND_TRANSFER].mem_type = transfer_type();
    f->tab[HLOG_KIND_PLANNER].mem_type = planner_type();
    for (int k = 0; k < HLOG_KIND_COUNT; k++)
        if (f->tab[k].mem_type < 0) st = h5u_fail(WHO, "compound type");

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (!st && (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) < 0))
        st = h5u_fail(WHO, "file access properties");
    if (!st) st = h5u_file_create(WHO, path, fapl, &f->file);
    if (fapl >= 0) H5Pclose(fapl);
    if (!st) st = write_meta(f->file, meta);
    for (int k = 0; !st && k < HLOG_KIND_COUNT; k++) {
        h5_table_t *t = &f->tab[k];
        st = h5u_table_create(WHO, f->file, t->name, t->mem_type, t->chunk, t->units, NULL, 0,
                              &t->dset);
    }
    if (!st && H5Fstart_swmr_write(f->file) < 0) st = h5u_fail(WHO, "H5Fstart_swmr_write");
    if (st) release(f);
    h5u_unlock();
    if (!st) *out = f;
    return st;
}

rt_status_t hlog_h5_append(hlog_h5_t *f, hlog_kind_t k, const void *recs, size_t n)
{
    if (n == 0) return RT_OK;
    h5_table_t *t = &f->tab[k];
    h5u_lock();
    rt_status_t st = h5u_table_append(WHO, t->dset, t->name, t->mem_type, t->n, recs, n);
    h5u_unlock();
    if (!st) t->n += n;
    return st;
}

rt_status_t hlog_h5_flush(hlog_h5_t *f)
{
    h5u_lock();
    rt_status_t st = H5Fflush(f->file, H5F_SCOPE_GLOBAL) < 0 ? h5u_fail(WHO, "H5Fflush") : RT_OK;
    h5u_unlock();
    return st;
}

uint64_t hlog_h5_count(const hlog_h5_t *f, hlog_kind_t k) { return f->tab[k].n; }

rt_status_t hlog_h5_close(hlog_h5_t *f, uint64_t dropped, double end_time)
{
    if (!f) return RT_OK;
    rt_status_t st = RT_OK;
    h5u_lock();
    hid_t g = H5Gopen2(f->file, "meta", H5P_DEFAULT);
    if (g < 0) st = h5u_fail(WHO, "open /meta");
    uint64_t v[] = {dropped,
                    f->tab[HLOG_KIND_REQUEST].n,
                    f->tab[HLOG_KIND_TOKEN].n,
                    f->tab[HLOG_KIND_STEP].n,
                    f->tab[HLOG_KIND_WORKER].n,
                    f->tab[HLOG_KIND_KV_EVENT].n,
                    f->tab[HLOG_KIND_TRANSFER].n,
                    f->tab[HLOG_KIND_PLANNER].n};
    _Static_assert(sizeof v / sizeof *v == sizeof final_u64 / sizeof *final_u64,
                   "one value per closing attribute");
    for (size_t i = 0; !st && i < sizeof final_u64 / sizeof *final_u64; i++)
        st = h5u_attr_update(WHO, g, final_u64[i], H5T_NATIVE_UINT64, &v[i]);
    if (!st) st = h5u_attr_update(WHO, g, "end_time", H5T_NATIVE_DOUBLE, &end_time);
    if (g >= 0) H5Gclose(g);
    if (release(f) < 0 && !st) st = rt_error_set(RT_ERR_IO, "hlog: closing the file failed");
    h5u_unlock();
    return st;
}
