/*
 * xfer.c - the transfer layer (include/rotor/transfer.h): the backend
 * registry, staging buffers and pending sends; the backends are
 * xfer_mpi.c and xfer_ucx.c.
 */
#include <mpi.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "transfer/xfer_impl.h"

/* a staging buffer's header, right before the bytes it lends */
typedef struct {
    size_t cap;
    size_t pad; /* keeps the bytes 16-byte aligned */
} xfer_buf_hdr_t;

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

static const xfer_ops_t *const xfer_backends[] = {&xfer_backend_mpi, &xfer_backend_ucx};

/* ------------------------------------------------------------ interface */

rt_status_t xfer_create(const char *backend, MPI_Comm comm, xfer_t **out)
{
    const xfer_ops_t *ops = NULL;
    for (size_t i = 0; i < sizeof xfer_backends / sizeof xfer_backends[0]; i++)
        if (strcmp(xfer_backends[i]->name, backend) == 0) ops = xfer_backends[i];
    if (!ops) return rt_error_set(RT_ERR_INVALID, "transfer: unknown backend '%s' (mpi, ucx)", backend);
    xfer_t *x = calloc(1, sizeof *x);
    if (!x) return rt_error_set(RT_ERR_NOMEM, "transfer: out of memory");
    x->ops = ops;
    x->comm = comm;
    MPI_Comm_rank(MPI_COMM_WORLD, &x->world_rank);
    /* peers are named by their world rank; a backend addresses them in comm */
    int world_size, comm_size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    x->comm_of_world = malloc((size_t)world_size * sizeof *x->comm_of_world);
    int *all = malloc((size_t)world_size * sizeof *all);
    if (!x->comm_of_world || !all) {
        free(all);
        xfer_destroy(x, 0);
        return rt_error_set(RT_ERR_NOMEM, "transfer: out of memory");
    }
    for (int r = 0; r < world_size; r++) {
        all[r] = r;
        x->comm_of_world[r] = -1;
    }
    if (comm != MPI_COMM_NULL) {
        MPI_Group gw, gc;
        MPI_Comm_size(comm, &comm_size);
        MPI_Comm_group(MPI_COMM_WORLD, &gw);
        MPI_Comm_group(comm, &gc);
        MPI_Group_translate_ranks(gw, world_size, all, gc, x->comm_of_world);
        for (int r = 0; r < world_size; r++)
            if (x->comm_of_world[r] == MPI_UNDEFINED) x->comm_of_world[r] = -1;
        MPI_Group_free(&gw);
        MPI_Group_free(&gc);
    }
    free(all);
    rt_status_t st = ops->init ? ops->init(x) : RT_OK;
    if (st) {
        if (ops->fini) ops->fini(x); /* what the failed backend set up */
        x->ops = &xfer_backend_mpi;  /* nothing more of it to tear down */
        xfer_destroy(x, 0);
        return st;
    }
    *out = x;
    return RT_OK;
}

int xfer_poll(xfer_t *x, int tag, const uint8_t **buf, size_t *len, int *from)
{
    return x->ops->poll ? x->ops->poll(x, tag, buf, len, from) : 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
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
    s->t_post = mono_s();
    x->n++;
    return RT_OK;
}

size_t xfer_progress(xfer_t *x)
{
    if (x->ops->poll) x->ops->poll(x, -1, NULL, NULL, NULL); /* tag -1: only progress the transport */
    size_t j = 0;
    for (size_t i = 0; i < x->n; i++) {
        if (x->ops->test(x, &x->sends[i])) xfer_buffer_return(x, x->sends[i].buf);
        else x->sends[j++] = x->sends[i];
    }
    x->n = j;
    return j;
}


/* a send pending this long is taken for stuck (its receiver stopped):
 * xfer_flush no longer waits for it, xfer_progress still tries */
#define XFER_STUCK_S 1.0

size_t xfer_flush(xfer_t *x, double timeout_s)
{
    const double t0 = mono_s(), end = t0 + timeout_s;
    while (xfer_progress(x) && mono_s() < end) {
        bool recent = false;
        for (size_t i = 0; i < x->n && !recent; i++) recent = t0 - x->sends[i].t_post < XFER_STUCK_S;
        if (!recent) break;
    }
    return x->n;
}

void xfer_destroy(xfer_t *x, double timeout_s)
{
    if (!x) return;
    xfer_flush(x, timeout_s);
    free(x->sends); /* what is left is abandoned with its buffers (transfer.h) */
    for (size_t i = 0; i < x->n_pool; i++) free(hdr_of(x->pool[i]));
    if (x->ops->fini) x->ops->fini(x);
    free(x->comm_of_world);
    free(x);
}
