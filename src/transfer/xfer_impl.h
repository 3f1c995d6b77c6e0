/*
 * xfer_impl.h - private to src/transfer: the transfer object and the
 * backends' ops table (transfer.h is the interface).
 */
#ifndef ROTOR_XFER_IMPL_H
#define ROTOR_XFER_IMPL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/transfer.h"

/* one posted send: its buffer (owned) and the backend's handle */
typedef struct {
    void *buf;
    double t_post;   /* CLOCK_MONOTONIC when posted */
    MPI_Request req; /* mpi */
    void *handle;    /* ucx: the request, or NULL once complete */
} xfer_send_t;

typedef struct {
    const char *name;
    /* collective over comm (every rank of it creates its transfer); NULL: nothing to set up */
    rt_status_t (*init)(xfer_t *x);
    void (*fini)(xfer_t *x);
    rt_status_t (*post)(xfer_t *x, int peer, int tag, void *buf, size_t len, xfer_send_t *s);
    int (*test)(xfer_t *x, xfer_send_t *s); /* 1 once complete */
    /* a message that arrived through the transport (xfer_poll); NULL: the
     * backend's messages come through the control inbox (mpi) */
    int (*poll)(xfer_t *x, int tag, const uint8_t **buf, size_t *len, int *from);
} xfer_ops_t;

/* staging buffers kept for reuse, at most */
#define XFER_POOL 4

struct xfer {
    const xfer_ops_t *ops;
    MPI_Comm comm;      /* the ranks that exchange hand-offs (not owned) */
    int world_rank;
    int *comm_of_world; /* (world size) rank in comm of each world rank, or -1; owned */
    void *be;           /* the backend's state, owned by it */
    xfer_send_t *sends; /* (cap) pending, their buffers owned */
    size_t n, cap;
    void *pool[XFER_POOL]; /* (n_pool) completed sends' buffers, owned */
    size_t n_pool;
};

extern const xfer_ops_t xfer_backend_mpi, xfer_backend_ucx;

#endif
