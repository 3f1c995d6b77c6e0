/*
 * xfer.c - the transfer layer (include/rotor/transfer.h): backend registry
 * and the mpi backend.
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rotor/transfer.h"

typedef struct {
    MPI_Request req;
    void *buf;
} xfer_send_t;

typedef struct {
    const char *name;
    rt_status_t (*post)(xfer_t *x, int peer, int tag, void *buf, size_t len, xfer_send_t *s);
    int (*test)(xfer_send_t *s); /* 1 once complete */
} xfer_ops_t;

struct xfer {
    const xfer_ops_t *ops;
    xfer_send_t *sends; /* (cap) pending, their buffers owned */
    size_t n, cap;
    int64_t n_sent, bytes;
};

/* ------------------------------------------------------------------ mpi */

static rt_status_t mpi_post(xfer_t *x, int peer, int tag, void *buf, size_t len, xfer_send_t *s)
{
    (void)x;
    if (MPI_Isend(buf, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &s->req) != MPI_SUCCESS)
        return rt_error_set(RT_ERR_IO, "transfer (mpi): MPI_Isend of %zu bytes to rank %d failed", len, peer);
    return RT_OK;
}

static int mpi_test(xfer_send_t *s)
{
    int flag = 0;
    MPI_Test(&s->req, &flag, MPI_STATUS_IGNORE);
    return flag;
}

static const xfer_ops_t xfer_mpi = {.name = "mpi", .post = mpi_post, .test = mpi_test};
static const xfer_ops_t *const xfer_backends[] = {&xfer_mpi};

/* ------------------------------------------------------------ interface */

rt_status_t xfer_create(const char *backend, xfer_t **out)
{
    const xfer_ops_t *ops = NULL;
    for (size_t i = 0; i < sizeof xfer_backends / sizeof xfer_backends[0]; i++)
        if (strcmp(xfer_backends[i]->name, backend) == 0) ops = xfer_backends[i];
    if (!ops) return rt_error_set(RT_ERR_INVALID, "transfer: unknown backend '%s' (mpi)", backend);
    xfer_t *x = calloc(1, sizeof *x);
    if (!x) return rt_error_set(RT_ERR_NOMEM, "transfer: out of memory");
    x->ops = ops;
    *out = x;
    return RT_OK;
}

rt_status_t xfer_send(xfer_t *x, int peer, int tag, void *buf, size_t len)
{
    if (len > XFER_MAX_BYTES)
        return rt_error_set(RT_ERR_RANGE, "transfer: %zu bytes is more than one message carries (%zu)", len,
                            XFER_MAX_BYTES);
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 16;
        xfer_send_t *s = realloc(x->sends, cap * sizeof *s);
        if (!s) return rt_error_set(RT_ERR_NOMEM, "transfer: out of memory");
        x->sends = s;
        x->cap = cap;
    }
    xfer_send_t *s = &x->sends[x->n];
    rt_status_t st = x->ops->post(x, peer, tag, buf, len, s);
    if (st) return st;
    s->buf = buf;
    x->n++;
    x->n_sent++;
    x->bytes += (int64_t)len;
    return RT_OK;
}

void xfer_progress(xfer_t *x)
{
    size_t j = 0;
    for (size_t i = 0; i < x->n; i++) {
        if (x->ops->test(&x->sends[i])) free(x->sends[i].buf);
        else x->sends[j++] = x->sends[i];
    }
    x->n = j;
}

void xfer_stats(const xfer_t *x, xfer_stats_t *out)
{
    *out = (xfer_stats_t){.sends = x->n_sent, .bytes = x->bytes, .pending = (int64_t)x->n};
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void xfer_destroy(xfer_t *x, double timeout_s)
{
    if (!x) return;
    const double end = mono_s() + timeout_s;
    while (x->n && mono_s() < end) {
        xfer_progress(x);
        if (x->n) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    free(x->sends); /* what is left is abandoned with its buffers (transfer.h) */
    free(x);
}
