/*
 * hlog_h5.h - private to src/hlog: the HDF5 side of the job log (file
 * layout, compound types, append, flush, final attributes). hlog.c owns the
 * queue and the writer thread; every function here is called from that one
 * thread only, because Debian's HDF5 is not built thread-safe.
 *
 * Ownership: hlog_h5_t owns the HDF5 file and every handle in it; records
 * passed to hlog_h5_append stay the caller's.
 */
#ifndef ROTOR_HLOG_H5_H
#define ROTOR_HLOG_H5_H

#include <stddef.h>
#include <stdint.h>

#include "rotor/hlog.h"
#include "rotor/status.h"

/* One dataset per kind, in this order. */
typedef enum {
    HLOG_KIND_REQUEST = 0, /* /requests, hlog_request_t */
    HLOG_KIND_TOKEN,       /* /tokens, hlog_token_rec_t */
    HLOG_KIND_STEP,        /* /steps, hlog_step_t */
    HLOG_KIND_WORKER,      /* /workers, hlog_worker_t */
    HLOG_KIND_KV_EVENT,    /* /kv_events, hlog_kv_event_t */
    HLOG_KIND_TRANSFER,    /* /transfers, hlog_transfer_t */
    HLOG_KIND_PLANNER,     /* /planner, hlog_planner_t */
    HLOG_KIND_COUNT
} hlog_kind_t;

/* One generated token as stored in /tokens. */
typedef struct {
    uint64_t request_id;
    int32_t index; /* 0-based position in the completion */
    double t;      /* CLOCK_REALTIME s when the token reached the front end */
} hlog_token_rec_t;

/* Bytes of one in-memory record of kind k. */
size_t hlog_kind_size(hlog_kind_t k);

typedef struct {
    const char *model;       /* NULL: attribute not written */
    const char *config_text; /* NULL: attribute not written */
    const char *roles;       /* NULL: attribute not written */
    double start_time;       /* CLOCK_REALTIME s */
} hlog_h5_meta_t;

typedef struct hlog_h5 hlog_h5_t;

/* Create path (truncating) with the whole layout, write the /meta
 * attributes and switch the file to SWMR writing. */
rt_status_t hlog_h5_create(const char *path, const hlog_h5_meta_t *meta, hlog_h5_t **out);
/* Append n records of kind k (n may be 0). */
rt_status_t hlog_h5_append(hlog_h5_t *f, hlog_kind_t k, const void *recs, size_t n);
/* Push everything appended so far to the file (H5Fflush). */
rt_status_t hlog_h5_flush(hlog_h5_t *f);
/* Records of kind k in the file so far. */
uint64_t hlog_h5_count(const hlog_h5_t *f, hlog_kind_t k);
/* Write the closing /meta attributes (dropped_records, n_*, end_time), close
 * every handle and the file, free f. Always releases f; NULL is a no-op. */
rt_status_t hlog_h5_close(hlog_h5_t *f, uint64_t dropped, double end_time);

#endif
