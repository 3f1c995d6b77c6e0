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

/* staging buffers kept for reuse, at most */
#define XFER_POOL 4

/* a staging buffer's header, right before the bytes it lends */
typedef struct {
    size_t cap;
    size_t pad; /* keeps the bytes 16-byte aligned */
} xfer_buf_hdr_t;

struct xfer {
    const xfer_ops_t *ops;
    xfer_send_t *sends; /* (cap) pending, their buffers owned */
    size_t n, cap;
    void *pool[XFER_POOL]; /* (n_pool) completed sends' buffers, owned */
    size_t n_pool;
    int64_t n_sent, bytes;
};

static xfer_buf_hdr_t *hdr_of(void *buf) { return (xfer_buf_hdr_t *)buf - 1; }

void *xfer_buffer(xfer_t *x, size_t len)
{
    if (len > XFER_MAX_BYTES) return NULL;
    size_t best = x->n_pool;
    for (size_t i = 0; i < x->n_pool; i++)
        if (hdr_of(x->pool[i])->cap >= len && (best == x->n_pool || hdr_of(x->pool[i])->cap < hdr_of(x->pool[best])->cap))
            best = i;
    if (best < x->n_pool) {
        void *b = x->pool[best];
        x->pool[best] = x->pool[--x->n_pool];
        return b;
    }
    xfer_buf_hdr_t *h = malloc(sizeof *h + len);
    if (!h) return NULL;
    h->cap = len;
    return h + 1;
}

void xfer_buffer_return(xfer_t *x, void *buf)
{
    if (!buf) return;
    if (x->n_pool < XFER_POOL) {
        x->pool[x->n_pool++] = buf;
        return;
    }
    /* full: keep the larger buffers */
    size_t small = 0;
    for (size_t i = 1; i < x->n_pool; i++)
        if (hdr_of(x->pool[i])->cap < hdr_of(x->pool[small])->cap) small = i;
    if (hdr_of(x->pool[small])->cap < hdr_of(buf)->cap) {
        free(hdr_of(x->pool[small]));
        x->pool[small] = buf;
    } else {
        free(hdr_of(buf));
    }
}

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
    if (len > hdr_of(buf)->cap) abort(); /* more than xfer_buffer lent: broken invariant */
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 16;
        xfer_send_t *s = realloc(x->sends, cap * sizeof *s);
        if (!s) {
            xfer_buffer_return(x, buf);
            return rt_error_set(RT_ERR_NOMEM, "transfer: out of memory");
        }
        x->sends = s;
        x->cap = cap;
    }
    xfer_send_t *s = &x->sends[x->n];
    rt_status_t st = x->ops->post(x, peer, tag, buf, len, s);
    if (st) {
        xfer_buffer_return(x, buf);
        return st;
    }
    s->buf = buf;
    x->n++;
    x->n_sent++;
    x->bytes += (int64_t)len;
    return RT_OK;
}

size_t xfer_progress(xfer_t *x)
{
    size_t j = 0;
    for (size_t i = 0; i < x->n; i++) {
        if (x->ops->test(&x->sends[i])) xfer_buffer_return(x, x->sends[i].buf);
        else x->sends[j++] = x->sends[i];
    }
    x->n = j;
    return j;
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

size_t xfer_flush(xfer_t *x, double timeout_s)
{
    const double end = mono_s() + timeout_s;
    while (xfer_progress(x) && mono_s() < end) {
    }
    return x->n;
}

void xfer_destroy(xfer_t *x, double timeout_s)
{
    if (!x) return;
    xfer_flush(x, timeout_s);
    free(x->sends); /* what is left is abandoned with its buffers (transfer.h) */
    for (size_t i = 0; i < x->n_pool; i++) free(hdr_of(x->pool[i]));
    free(x);
}
