/* test_hlog.c - the HDF5 job log: records written from the test thread come
 * back field by field through the HDF5 C API after close (every dataset,
 * /kv_events, /transfers and /planner included); a full queue drops and
 * counts; after a flush interval the records are readable (by another
 * process, in SWMR mode) before the log is closed. Bad arguments fail.
 *
 * HLOG_TEST_KEEP=path keeps the round-trip file there (tests/py/
 * test_hlog_h5py.py reads it with h5py). Run as `test_hlog --swmr-count FILE`
 * the binary prints the record counts of FILE opened for SWMR reading (the
 * flush test starts itself that way: only one thread of a process may call
 * the non-thread-safe HDF5 while the log's writer thread runs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rotor/hlog.h"

extern char **environ;

#define N_REQ 300
#define N_TOK_REQ 100 /* requests with tokens */
#define TOK_PER_REQ 50
#define N_STEP 2000
#define N_WORKER 20
#define N_KV 4200 /* KV events: more than one 4096-record chunk */
#define N_XFER 3 /* KV transfers (disaggregation) */
#define N_PLAN 3 /* SLO planner intervals */
#define N_DSET 7
#define T0 1.7e9

static const char *const dset_names[N_DSET] = {"requests", "tokens", "steps", "workers",
                                               "kv_events", "transfers", "planner"};

/* ---- records the tests write ----------------------------------------- */

static hlog_request_t gen_request(int i)
{
    hlog_request_t r;
    memset(&r, 0, sizeof r);
    r.id = 1000 + (uint64_t)i;
    r.worker = i % 11 == 0 ? -1 : i % 3 + 1;
    r.t_arrival = T0 + i;
    r.t_routed = r.t_arrival + 0.0001;
    r.t_scheduled = i % 11 == 0 ? 0 : r.t_arrival + 0.002;
    r.t_prefill_done = i % 11 == 0 ? 0 : r.t_arrival + 0.01;
    r.t_first_token = i % 11 == 0 ? 0 : r.t_arrival + 0.0125;
    r.t_finish = r.t_arrival + 0.5 + i * 1e-3;
    r.queue_wait_s = i % 11 == 0 ? 0 : r.t_scheduled - r.t_routed;
    r.tokens_in = 10 + i;
    r.tokens_out = i < N_TOK_REQ ? TOK_PER_REQ : i % 17;
    r.tokens_cached = i % 4 * 16;
    r.route_overlap_blocks = i % 5 - 1; /* -1: no estimate */
    r.http_status = i % 11 == 0 ? 503 : 200;
    snprintf(r.finish_reason, sizeof r.finish_reason, "%s",
             i % 11 == 0 ? "error" : (i % 2 ? "stop" : "length"));
    if (i % 11 == 0) snprintf(r.error, sizeof r.error, "worker %d is down (request %d)", 2, i);
    if (i == 7) memset(r.finish_reason, 'x', sizeof r.finish_reason); /* no NUL: truncated */
    return r;
}

static double gen_token_t(int req, int idx) { return T0 + req + 0.0125 + 0.004 * idx; }

static hlog_step_t gen_step(int i)
{
    return (hlog_step_t){.worker = i % 2 + 1,
                         .t = T0 + i * 0.01,
                         .step_s = 0.003 + i * 1e-6,
                         .n_seqs = i % 64,
                         .n_prefill_tokens = i % 5 * 100,
                         .n_decode_tokens = i % 64,
                         .n_running = i % 64,
                         .n_waiting = i % 9,
                         .blocks_used = i % 1000,
                         .blocks_cached = i % 77,
                         .blocks_free = 1000 - i % 1000,
                         .spec_draft_tokens = i % 7 * 4,
                         .spec_accepted_tokens = i % 7 * 3};
}

static hlog_worker_t gen_worker(int i)
{
    hlog_worker_t w;
    memset(&w, 0, sizeof w);
    w.rank = i % 3;
    w.t = T0 + i;
    snprintf(w.kind, sizeof w.kind, "%s", i % 2 ? "down" : "up");
    snprintf(w.role, sizeof w.role, "%s", i % 3 ? "worker" : "router");
    snprintf(w.detail, sizeof w.detail, "event %d", i);
    return w;
}

/* KV event i: worker 1..3 with ids 1, 2, ... each; hashes with the high bit
 * set (the file must keep all 64 bits); event 11's kind has no NUL. */
static hlog_kv_event_t gen_kv_event(int i)
{
    hlog_kv_event_t e;
    memset(&e, 0, sizeof e);
    e.worker = i % 3 + 1;
    e.id = (uint64_t)(i / 3 + 1);
    e.t = T0 + i * 0.001;
    e.seq_hash = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    e.block_hash = 0xC2B2AE3D27D4EB4Full * (uint64_t)(i + 1) | 0x8000000000000000ull;
    e.has_parent = i % 4 != 0;
    e.parent_hash = e.has_parent ? 0x9E3779B97F4A7C15ull * (uint64_t)i : 0;
    e.n_tokens = 1 + i % 32;
    e.tier = i % 5 == 4 ? 2 : 1;
    snprintf(e.kind, sizeof e.kind, "%s", i % 7 == 6 ? "cleared" : (i % 3 == 1 ? "removed" : "stored"));
    if (i == 11) memset(e.kind, 'y', sizeof e.kind); /* no NUL: truncated */
    return e;
}

/* KV transfer i: every field distinct per record; ids and bytes beyond 32
 * bits (the file must keep all 64). */
static hlog_transfer_t gen_transfer(int i)
{
    hlog_transfer_t x;
    memset(&x, 0, sizeof x);
    x.id = 0x8000000000001000ull + (uint64_t)i;
    x.prefill_worker = 1 + i % 2;
    x.decode_worker = 3 + i;
    x.n_blocks = 5 + 7 * i;
    x.n_imported = 4 + 7 * i - i % 2;
    x.bytes = ((int64_t)1 << 33) + (int64_t)i * 123456789;
    x.t_prefill_done = T0 + 10 + i;
    x.t_sent = x.t_prefill_done + 0.0001 * (i + 1);
    x.t_received = x.t_sent + 0.002 * (i + 1);
    x.t_imported = x.t_received + 0.0003 * (i + 1);
    return x;
}

/* Planner interval i: every field distinct per record; a hold, a move to
 * prefill and a move to decode; interval 2's reason has no NUL (cut to 127). */
static hlog_planner_t gen_planner(int i)
{
    static const char *const action[N_PLAN] = {"hold", "to_prefill", "to_decode"};
    static const int32_t moved[N_PLAN] = {-1, 4, 2};
    hlog_planner_t p;
    memset(&p, 0, sizeof p);
    p.t = T0 + 20 + 5 * i + 0.001 * i;
    p.ttft_mean_s = 0.25 + 0.5 * i;
    p.itl_mean_s = 0.02 + 0.003 * i;
    p.n_ttft = 40 + 3 * i;
    p.n_itl = 900 + 11 * i;
    p.n_prefill = 1 + i;
    p.n_decode = 5 - i;
    p.prefill_queue = 7 + 2 * i;
    p.rank_moved = moved[i % N_PLAN];
    p.n_moved = i == 0 ? 0 : i;
    p.target_prefill = i == 0 ? -1 : 3 + i;
    p.prefill_tps = 1000.5 * i;
    p.decode_tps = 77.25 + i;
    p.prefill_cap_tps = 5000.0 + 0.5 * i;
    p.decode_cap_tps = 300.125 * (i + 1);
    snprintf(p.action, sizeof p.action, "%s", action[i % N_PLAN]);
    if (i == 0)
        snprintf(p.why, sizeof p.why, "ttft %.3f s and itl %.3f s within targets", p.ttft_mean_s,
                 p.itl_mean_s);
    else if (i == 1)
        snprintf(p.why, sizeof p.why, "ttft %.3f s over 1.000 s, itl under headroom",
                 p.ttft_mean_s);
    else
        memset(p.why, 'z', sizeof p.why); /* no NUL: truncated */
    return p;
}

/* Push everything from the test thread; tokens in batches of 1..7, KV
 * events in batches of 1..8 with an empty batch (a no-op) now and then. */
static void write_all(hlog_t *h)
{
    for (int i = 0; i < N_WORKER; i++) {
        hlog_worker_t w = gen_worker(i);
        hlog_worker(h, &w);
    }
    for (int r = 0; r < N_TOK_REQ; r++) {
        double t[8];
        int idx = 0;
        while (idx < TOK_PER_REQ) {
            int n = 1 + (r + idx) % 7;
            if (n > TOK_PER_REQ - idx) n = TOK_PER_REQ - idx;
            for (int j = 0; j < n; j++) t[j] = gen_token_t(r, idx + j);
            hlog_tokens(h, 1000 + (uint64_t)r, idx, t, (size_t)n);
            idx += n;
        }
    }
    for (int i = 0; i < N_STEP; i++) {
        hlog_step_t s = gen_step(i);
        hlog_step(h, &s);
    }
    hlog_kv_event_t ev[8];
    for (int i = 0, b = 0; i < N_KV; b++) {
        int n = 1 + b % 8;
        if (n > N_KV - i) n = N_KV - i;
        for (int j = 0; j < 8; j++) ev[j] = gen_kv_event(i + j); /* beyond n: must not be logged */
        if (b % 5 == 0) hlog_kv_events(h, ev, 0);
        hlog_kv_events(h, ev, (size_t)n);
        i += n;
    }
    for (int i = 0; i < N_XFER; i++) {
        hlog_transfer_t x = gen_transfer(i);
        hlog_transfer(h, &x);
    }
    for (int i = 0; i < N_PLAN; i++) {
        hlog_planner_t p = gen_planner(i);
        hlog_planner(h, &p);
    }
    for (int i = 0; i < N_REQ; i++) {
        hlog_request_t r = gen_request(i);
        hlog_request(h, &r);
    }
}

/* ---- reading back with the HDF5 C API -------------------------------- */

static hid_t str_t(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    return t;
}

#define INS(t, T, f, h5t) assert_true(H5Tinsert(t, #f, HOFFSET(T, f), h5t) >= 0)

static hid_t read_type(int k)
{
    hid_t t, s1, s2, s3;
    switch (k) {
    case 0:
        t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_request_t));
        s1 = str_t(HLOG_REASON_LEN);
        s2 = str_t(HLOG_ERROR_LEN);
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
        INS(t, hlog_request_t, finish_reason, s1);
        INS(t, hlog_request_t, error, s2);
        H5Tclose(s1);
        H5Tclose(s2);
        return t;
    case 1: {
        typedef struct {
            uint64_t request_id;
            int32_t index;
            double t;
        } tok_t;
        t = H5Tcreate(H5T_COMPOUND, sizeof(tok_t));
        INS(t, tok_t, request_id, H5T_NATIVE_UINT64);
        INS(t, tok_t, index, H5T_NATIVE_INT32);
        INS(t, tok_t, t, H5T_NATIVE_DOUBLE);
        return t;
    }
    case 2:
        t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_step_t));
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
        return t;
    case 3:
        t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_worker_t));
        s1 = str_t(HLOG_KIND_LEN);
        s2 = str_t(HLOG_ROLE_LEN);
        s3 = str_t(HLOG_ERROR_LEN);
        INS(t, hlog_worker_t, rank, H5T_NATIVE_INT32);
        INS(t, hlog_worker_t, t, H5T_NATIVE_DOUBLE);
        INS(t, hlog_worker_t, kind, s1);
        INS(t, hlog_worker_t, role, s2);
        INS(t, hlog_worker_t, detail, s3);
        H5Tclose(s1);
        H5Tclose(s2);
        H5Tclose(s3);
        return t;
    case 4:
        t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_kv_event_t));
        s1 = str_t(HLOG_KIND_LEN);
        INS(t, hlog_kv_event_t, worker, H5T_NATIVE_INT32);
        INS(t, hlog_kv_event_t, t, H5T_NATIVE_DOUBLE);
        INS(t, hlog_kv_event_t, id, H5T_NATIVE_UINT64);
        INS(t, hlog_kv_event_t, kind, s1);
        INS(t, hlog_kv_event_t, seq_hash, H5T_NATIVE_UINT64);
        INS(t, hlog_kv_event_t, block_hash, H5T_NATIVE_UINT64);
        INS(t, hlog_kv_event_t, parent_hash, H5T_NATIVE_UINT64);
        INS(t, hlog_kv_event_t, has_parent, H5T_NATIVE_INT32);
        INS(t, hlog_kv_event_t, n_tokens, H5T_NATIVE_INT32);
        INS(t, hlog_kv_event_t, tier, H5T_NATIVE_INT32);
        H5Tclose(s1);
        return t;
    case 5:
        t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_transfer_t));
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
        return t;
    default:
        t = H5Tcreate(H5T_COMPOUND, sizeof(hlog_planner_t));
        s1 = str_t(HLOG_KIND_LEN);
        s2 = str_t(HLOG_ERROR_LEN);
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
        INS(t, hlog_planner_t, action, s1);
        INS(t, hlog_planner_t, why, s2);
        H5Tclose(s1);
        H5Tclose(s2);
        return t;
    }
}

static hsize_t dset_len(hid_t file, const char *name)
{
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t s = H5Dget_space(d);
    hsize_t n = 0, maxn = 0;
    assert_int_equal(H5Sget_simple_extent_ndims(s), 1);
    H5Sget_simple_extent_dims(s, &n, &maxn);
    assert_true(maxn == H5S_UNLIMITED);
    H5Sclose(s);
    H5Dclose(d);
    return n;
}

/* Read all records of dataset k into a malloc'd array (caller frees). */
static void *read_all(hid_t file, int k, size_t elem, hsize_t *n)
{
    *n = dset_len(file, dset_names[k]);
    void *buf = calloc(*n ? *n : 1, elem);
    hid_t d = H5Dopen2(file, dset_names[k], H5P_DEFAULT);
    hid_t t = read_type(k);
    assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Tclose(t);
    H5Dclose(d);
    return buf;
}

static char *attr_str(hid_t obj, const char *name)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *s = NULL;
    assert_true(H5Aread(a, t, &s) >= 0);
    char *copy = strdup(s);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);
    return copy;
}

static double attr_f64(hid_t obj, const char *name)
{
    double v = -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    return v;
}

static uint64_t attr_u64(hid_t obj, const char *name)
{
    uint64_t v = UINT64_MAX;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Aread(a, H5T_NATIVE_UINT64, &v) >= 0);
    H5Aclose(a);
    return v;
}

static void tmp_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "hlog_test_%d_%s.h5", (int)getpid(), tag);
}

/* ---- tests ----------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    (void)state;
    char path[256];
    const char *keep = getenv("HLOG_TEST_KEEP");
    if (keep && *keep)
        snprintf(path, sizeof path, "%s", keep);
    else
        tmp_path(path, sizeof path, "roundtrip");
    const char *config = "[roles]\nrouter = 0\nworker = 1-2\n";
    hlog_t *h = NULL;
    double before = hlog_now();
    hlog_config_t cfg = {.flush_interval_s = 0.05, .queue_records = 1 << 16};
    assert_int_equal(hlog_open(path, &cfg, "smollm2.gguf", config, "0:router 1-2:worker", &h),
                     RT_OK);
    assert_non_null(h);
    write_all(h);
    assert_int_equal(hlog_dropped(h), 0);
    assert_int_equal(hlog_close(h), RT_OK);
    double after = hlog_now();

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);

    /* /meta */
    hid_t g = H5Gopen2(f, "meta", H5P_DEFAULT);
    assert_true(g >= 0);
    char *s = attr_str(g, "model");
    assert_string_equal(s, "smollm2.gguf");
    free(s);
    s = attr_str(g, "config");
    assert_string_equal(s, config);
    free(s);
    s = attr_str(g, "roles");
    assert_string_equal(s, "0:router 1-2:worker");
    free(s);
    s = attr_str(g, "rotor_version");
    assert_true(strlen(s) > 0);
    free(s);
    s = attr_str(g, "hostname");
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    assert_string_equal(s, host);
    free(s);
    double t_start = attr_f64(g, "start_time"), t_end = attr_f64(g, "end_time");
    assert_true(t_start >= before - 1e-3 && t_start <= t_end && t_end <= after + 1e-3);
    assert_int_equal(attr_u64(g, "dropped_records"), 0);
    assert_int_equal(attr_u64(g, "n_requests"), N_REQ);
    assert_int_equal(attr_u64(g, "n_tokens"), N_TOK_REQ * TOK_PER_REQ);
    assert_int_equal(attr_u64(g, "n_steps"), N_STEP);
    assert_int_equal(attr_u64(g, "n_workers"), N_WORKER);
    assert_int_equal(attr_u64(g, "n_kv_events"), N_KV);
    assert_int_equal(attr_u64(g, "n_transfers"), N_XFER);
    assert_int_equal(attr_u64(g, "n_planner"), N_PLAN);
    int32_t layout = -1;
    hid_t a = H5Aopen(g, "layout_version", H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Aread(a, H5T_NATIVE_INT32, &layout) >= 0);
    H5Aclose(a);
    assert_int_equal(layout, 3);
    H5Gclose(g);

    /* /requests */
    hsize_t n;
    hlog_request_t *rq = read_all(f, 0, sizeof *rq, &n);
    assert_int_equal(n, N_REQ);
    for (int i = 0; i < N_REQ; i++) {
        hlog_request_t e = gen_request(i), *r = &rq[i];
        assert_int_equal(r->id, e.id);
        assert_int_equal(r->worker, e.worker);
        assert_true(r->t_arrival == e.t_arrival);
        assert_true(r->t_routed == e.t_routed);
        assert_true(r->t_scheduled == e.t_scheduled);
        assert_true(r->t_prefill_done == e.t_prefill_done);
        assert_true(r->t_first_token == e.t_first_token);
        assert_true(r->t_finish == e.t_finish);
        assert_true(r->queue_wait_s == e.queue_wait_s);
        assert_int_equal(r->tokens_in, e.tokens_in);
        assert_int_equal(r->tokens_out, e.tokens_out);
        assert_int_equal(r->tokens_cached, e.tokens_cached);
        assert_int_equal(r->route_overlap_blocks, e.route_overlap_blocks);
        assert_int_equal(r->http_status, e.http_status);
        if (i == 7)
            assert_string_equal(r->finish_reason, "xxxxxxxxxxxxxxx");
        else
            assert_string_equal(r->finish_reason, e.finish_reason);
        assert_string_equal(r->error, e.error);
    }
    assert_string_equal(rq[11].error, "worker 2 is down (request 11)");
    free(rq);

    /* /tokens: push order, contiguous indices per request */
    struct {
        uint64_t request_id;
        int32_t index;
        double t;
    } *tk = read_all(f, 1, sizeof *tk, &n);
    assert_int_equal(n, N_TOK_REQ * TOK_PER_REQ);
    for (int r = 0; r < N_TOK_REQ; r++)
        for (int j = 0; j < TOK_PER_REQ; j++) {
            size_t k = (size_t)r * TOK_PER_REQ + (size_t)j;
            assert_int_equal(tk[k].request_id, 1000 + r);
            assert_int_equal(tk[k].index, j);
            assert_true(tk[k].t == gen_token_t(r, j));
        }
    free(tk);

    /* /steps */
    hlog_step_t *st = read_all(f, 2, sizeof *st, &n);
    assert_int_equal(n, N_STEP);
    for (int i = 0; i < N_STEP; i++) {
        hlog_step_t e = gen_step(i);
        assert_int_equal(st[i].worker, e.worker);
        assert_true(st[i].t == e.t);
        assert_true(st[i].step_s == e.step_s);
        assert_int_equal(st[i].n_seqs, e.n_seqs);
        assert_int_equal(st[i].n_prefill_tokens, e.n_prefill_tokens);
        assert_int_equal(st[i].n_decode_tokens, e.n_decode_tokens);
        assert_int_equal(st[i].n_running, e.n_running);
        assert_int_equal(st[i].n_waiting, e.n_waiting);
        assert_int_equal(st[i].blocks_used, e.blocks_used);
        assert_int_equal(st[i].blocks_cached, e.blocks_cached);
        assert_int_equal(st[i].blocks_free, e.blocks_free);
    }
    free(st);

    /* /workers */
    hlog_worker_t *wk = read_all(f, 3, sizeof *wk, &n);
    assert_int_equal(n, N_WORKER);
    for (int i = 0; i < N_WORKER; i++) {
        hlog_worker_t e = gen_worker(i);
        assert_int_equal(wk[i].rank, e.rank);
        assert_true(wk[i].t == e.t);
        assert_string_equal(wk[i].kind, e.kind);
        assert_string_equal(wk[i].role, e.role);
        assert_string_equal(wk[i].detail, e.detail);
    }
    free(wk);

    /* /kv_events: push order, every field; the empty batches added nothing */
    hlog_kv_event_t *kv = read_all(f, 4, sizeof *kv, &n);
    assert_int_equal(n, N_KV);
    for (int i = 0; i < N_KV; i++) {
        hlog_kv_event_t e = gen_kv_event(i);
        assert_int_equal(kv[i].worker, e.worker);
        assert_true(kv[i].t == e.t);
        assert_int_equal(kv[i].id, e.id);
        if (i == 11)
            assert_string_equal(kv[i].kind, "yyyyyyyyyyyyyyy");
        else
            assert_string_equal(kv[i].kind, e.kind);
        assert_true(kv[i].seq_hash == e.seq_hash);
        assert_true(kv[i].block_hash == e.block_hash);
        assert_true(kv[i].parent_hash == e.parent_hash);
        assert_int_equal(kv[i].has_parent, e.has_parent);
        assert_int_equal(kv[i].n_tokens, e.n_tokens);
        assert_int_equal(kv[i].tier, e.tier);
    }
    assert_string_equal(kv[6].kind, "cleared");
    assert_true(kv[0].seq_hash == 0x9E3779B97F4A7C15ull && kv[0].parent_hash == 0);
    assert_true(kv[5].parent_hash == 0x9E3779B97F4A7C15ull * 5);
    free(kv);

    /* /transfers: push order, every field, all 64 bits of id and bytes */
    hlog_transfer_t *xf = read_all(f, 5, sizeof *xf, &n);
    assert_int_equal(n, N_XFER);
    for (int i = 0; i < N_XFER; i++) {
        hlog_transfer_t e = gen_transfer(i);
        assert_true(xf[i].id == e.id);
        assert_int_equal(xf[i].prefill_worker, e.prefill_worker);
        assert_int_equal(xf[i].decode_worker, e.decode_worker);
        assert_int_equal(xf[i].n_blocks, e.n_blocks);
        assert_int_equal(xf[i].n_imported, e.n_imported);
        assert_true(xf[i].bytes == e.bytes);
        assert_true(xf[i].t_prefill_done == e.t_prefill_done);
        assert_true(xf[i].t_sent == e.t_sent);
        assert_true(xf[i].t_received == e.t_received);
        assert_true(xf[i].t_imported == e.t_imported);
    }
    assert_true(xf[0].id == 0x8000000000001000ull && xf[1].id == 0x8000000000001001ull);
    assert_true(xf[1].bytes == ((int64_t)1 << 33) + 123456789);
    assert_int_equal(xf[0].decode_worker, 3);
    assert_int_equal(xf[1].decode_worker, 4);
    free(xf);

    /* /planner: push order, every field; the unterminated reason is cut */
    hlog_planner_t *pl = read_all(f, 6, sizeof *pl, &n);
    assert_int_equal(n, N_PLAN);
    for (int i = 0; i < N_PLAN; i++) {
        hlog_planner_t e = gen_planner(i);
        assert_true(pl[i].t == e.t);
        assert_true(pl[i].ttft_mean_s == e.ttft_mean_s);
        assert_true(pl[i].itl_mean_s == e.itl_mean_s);
        assert_int_equal(pl[i].n_ttft, e.n_ttft);
        assert_int_equal(pl[i].n_itl, e.n_itl);
        assert_int_equal(pl[i].n_prefill, e.n_prefill);
        assert_int_equal(pl[i].n_decode, e.n_decode);
        assert_int_equal(pl[i].prefill_queue, e.prefill_queue);
        assert_int_equal(pl[i].rank_moved, e.rank_moved);
        assert_int_equal(pl[i].n_moved, e.n_moved);
        assert_int_equal(pl[i].target_prefill, e.target_prefill);
        assert_true(pl[i].prefill_tps == e.prefill_tps && pl[i].decode_tps == e.decode_tps);
        assert_true(pl[i].prefill_cap_tps == e.prefill_cap_tps && pl[i].decode_cap_tps == e.decode_cap_tps);
        assert_string_equal(pl[i].action, e.action);
        if (i == 2) {
            char cut[HLOG_ERROR_LEN];
            memset(cut, 'z', sizeof cut - 1);
            cut[sizeof cut - 1] = 0;
            assert_string_equal(pl[i].why, cut);
        } else {
            assert_string_equal(pl[i].why, e.why);
        }
    }
    assert_string_equal(pl[0].action, "hold");
    assert_int_equal(pl[0].rank_moved, -1);
    assert_string_equal(pl[1].action, "to_prefill");
    assert_string_equal(pl[1].why, "ttft 0.750 s over 1.000 s, itl under headroom");
    assert_string_equal(pl[2].action, "to_decode");
    free(pl);

    /* every dataset says its units */
    for (int k = 0; k < N_DSET; k++) {
        hid_t d = H5Dopen2(f, dset_names[k], H5P_DEFAULT);
        char *u = attr_str(d, "units");
        assert_non_null(strstr(u, "CLOCK_REALTIME"));
        free(u);
        H5Dclose(d);
    }
    assert_true(H5Fclose(f) >= 0);
    if (!(keep && *keep)) unlink(path);
}

static void test_queue_full_drops_and_counts(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "full");
    hlog_t *h = NULL;
    hlog_config_t cfg = {.flush_interval_s = 0.05, .queue_records = 8};
    assert_int_equal(hlog_open(path, &cfg, NULL, NULL, NULL, &h), RT_OK);
    /* a token batch larger than the whole queue never fits: all dropped */
    double t[9];
    for (int i = 0; i < 9; i++) t[i] = T0 + i;
    hlog_tokens(h, 1, 0, t, 9);
    assert_int_equal(hlog_dropped(h), 9);
    /* nor does a KV batch: all dropped; an empty batch drops nothing */
    hlog_kv_event_t ev[9];
    for (int i = 0; i < 9; i++) ev[i] = gen_kv_event(i);
    hlog_kv_events(h, ev, 9);
    assert_int_equal(hlog_dropped(h), 18);
    hlog_kv_events(h, ev, 0);
    assert_int_equal(hlog_dropped(h), 18);
    /* one transfer and one planner record fit the (nearly empty) queue */
    hlog_transfer_t x = gen_transfer(0);
    hlog_transfer(h, &x);
    hlog_planner_t p = gen_planner(1);
    hlog_planner(h, &p);
    assert_int_equal(hlog_dropped(h), 18);
    /* a flood of single records overruns the 8-record queue */
    enum { FLOOD = 200000 };
    for (int i = 0; i < FLOOD; i++) {
        hlog_step_t s = gen_step(i);
        hlog_step(h, &s);
    }
    uint64_t dropped = hlog_dropped(h);
    assert_true(dropped > 18);
    assert_int_equal(hlog_close(h), RT_OK);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hsize_t n_steps = dset_len(f, "steps");
    assert_int_equal(dset_len(f, "tokens"), 0);
    assert_int_equal(dset_len(f, "kv_events"), 0);
    assert_int_equal(dset_len(f, "transfers"), 1);
    assert_int_equal(dset_len(f, "planner"), 1);
    assert_int_equal(n_steps + (dropped - 18), FLOOD);
    hid_t g = H5Gopen2(f, "meta", H5P_DEFAULT);
    assert_int_equal(attr_u64(g, "dropped_records"), dropped);
    assert_int_equal(attr_u64(g, "n_steps"), n_steps);
    assert_int_equal(attr_u64(g, "n_kv_events"), 0);
    assert_int_equal(attr_u64(g, "n_transfers"), 1);
    assert_int_equal(attr_u64(g, "n_planner"), 1);
    H5Gclose(g);
    /* what was kept is in push order: strictly increasing times */
    hlog_step_t *st = read_all(f, 2, sizeof *st, &n_steps);
    for (hsize_t i = 1; i < n_steps; i++) assert_true(st[i].t > st[i - 1].t);
    free(st);
    H5Fclose(f);
    unlink(path);
}

/* Run this binary with --swmr-count path; parse its N_DSET counts. Returns
 * the child's exit status. */
static int child_counts(const char *path, unsigned long long c[N_DSET])
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char exe[] = "/proc/self/exe", flag[] = "--swmr-count";
    char *argv[] = {exe, flag, (char *)path, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, exe, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    assert_non_null(in);
    int got = fscanf(in, "%llu %llu %llu %llu %llu %llu %llu", &c[0], &c[1], &c[2], &c[3], &c[4],
                     &c[5], &c[6]);
    fclose(in);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != N_DSET) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void test_flush_interval_makes_records_readable(void **state)
{
    (void)state;
    char path[256];
    tmp_path(path, sizeof path, "flush");
    hlog_t *h = NULL;
    hlog_config_t cfg = {.flush_interval_s = 0.2, .queue_records = 1 << 16};
    assert_int_equal(hlog_open(path, &cfg, "m", NULL, NULL, &h), RT_OK);
    write_all(h);
    /* wait past the interval, then ask another process (a SWMR reader, as
     * h5py would be) until it sees every record; the log is still open and
     * idle. The 600-try cap only keeps a broken writer from hanging. */
    sleep_s(0.5);
    unsigned long long c[N_DSET] = {0};
    int rc = -1;
    for (int tries = 0; tries < 600; tries++) {
        rc = child_counts(path, c);
        if (rc == 0 && c[0] == N_REQ && c[1] == N_TOK_REQ * TOK_PER_REQ && c[2] == N_STEP &&
            c[3] == N_WORKER && c[4] == N_KV && c[5] == N_XFER && c[6] == N_PLAN)
            break;
        sleep_s(0.1);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(c[0], N_REQ);
    assert_int_equal(c[1], N_TOK_REQ * TOK_PER_REQ);
    assert_int_equal(c[2], N_STEP);
    assert_int_equal(c[3], N_WORKER);
    assert_int_equal(c[4], N_KV);
    assert_int_equal(c[5], N_XFER);
    assert_int_equal(c[6], N_PLAN);
    /* more records after an idle period are flushed too */
    for (int i = 0; i < 10; i++) {
        hlog_worker_t w = gen_worker(i);
        hlog_worker(h, &w);
    }
    sleep_s(0.5);
    for (int tries = 0; tries < 600; tries++) {
        rc = child_counts(path, c);
        if (rc == 0 && c[3] == N_WORKER + 10) break;
        sleep_s(0.1);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(c[3], N_WORKER + 10);
    assert_int_equal(c[4], N_KV);
    assert_int_equal(c[5], N_XFER);
    assert_int_equal(c[6], N_PLAN);
    assert_int_equal(hlog_close(h), RT_OK);
    unlink(path);
}

static void test_two_logs_at_once(void **state)
{
    (void)state;
    char pa[256], pb[256];
    tmp_path(pa, sizeof pa, "two_a");
    tmp_path(pb, sizeof pb, "two_b");
    hlog_t *a = NULL, *b = NULL;
    hlog_config_t cfg = {.flush_interval_s = 0.01, .queue_records = 1 << 16};
    assert_int_equal(hlog_open(pa, &cfg, "a", NULL, NULL, &a), RT_OK);
    assert_int_equal(hlog_open(pb, &cfg, "b", NULL, NULL, &b), RT_OK);
    write_all(a);
    write_all(b);
    write_all(a);
    assert_int_equal(hlog_close(b), RT_OK);
    assert_int_equal(hlog_close(a), RT_OK);
    const char *paths[2] = {pa, pb};
    for (int i = 0; i < 2; i++) {
        int times = i == 0 ? 2 : 1;
        hid_t f = H5Fopen(paths[i], H5F_ACC_RDONLY, H5P_DEFAULT);
        assert_true(f >= 0);
        assert_int_equal(dset_len(f, "requests"), times * N_REQ);
        assert_int_equal(dset_len(f, "tokens"), times * N_TOK_REQ * TOK_PER_REQ);
        assert_int_equal(dset_len(f, "steps"), times * N_STEP);
        assert_int_equal(dset_len(f, "workers"), times * N_WORKER);
        assert_int_equal(dset_len(f, "kv_events"), times * N_KV);
        assert_int_equal(dset_len(f, "transfers"), times * N_XFER);
        assert_int_equal(dset_len(f, "planner"), times * N_PLAN);
        H5Fclose(f);
        unlink(paths[i]);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    hlog_t *h = NULL;
    assert_int_equal(hlog_open("no-such-dir/x/log.h5", NULL, NULL, NULL, NULL, &h), RT_ERR_IO);
    assert_null(h);
    assert_non_null(strstr(rt_error_msg(), "no-such-dir/x/log.h5"));
    hlog_config_t bad = {.flush_interval_s = -1};
    assert_int_equal(hlog_open("x.h5", &bad, NULL, NULL, NULL, &h), RT_ERR_RANGE);
    assert_int_equal(hlog_open(NULL, NULL, NULL, NULL, NULL, &h), RT_ERR_INVALID);
    assert_null(h);
    assert_int_equal(hlog_close(NULL), RT_OK);
    double a = hlog_now(), b = hlog_now();
    assert_true(a > 1.6e9 && b >= a);
}

/* Child mode: print the N_DSET dataset lengths of a file being written. */
static int swmr_count(const char *path)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    if (f < 0) return 2;
    for (int k = 0; k < N_DSET; k++) {
        hid_t d = H5Dopen2(f, dset_names[k], H5P_DEFAULT);
        if (d < 0) return 3;
        hid_t s = H5Dget_space(d);
        hsize_t n = 0;
        H5Sget_simple_extent_dims(s, &n, NULL);
        printf("%llu ", (unsigned long long)n);
        H5Sclose(s);
        H5Dclose(d);
    }
    printf("\n");
    H5Fclose(f);
    return 0;
}

/* Child mode for tests/py/test_hlog_h5py.py: write every record, then wait
 * to be killed (the log is never closed). */
static int write_and_wait(const char *path)
{
    hlog_t *h = NULL;
    hlog_config_t cfg = {.flush_interval_s = 0.1, .queue_records = 1 << 16};
    if (hlog_open(path, &cfg, "killed", NULL, NULL, &h) != RT_OK) {
        fprintf(stderr, "%s\n", rt_error_msg());
        return 1;
    }
    write_all(h);
    for (;;) pause();
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--swmr-count")) return swmr_count(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--write-and-wait")) return write_and_wait(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_queue_full_drops_and_counts),
        cmocka_unit_test(test_flush_interval_makes_records_readable),
        cmocka_unit_test(test_two_logs_at_once),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
