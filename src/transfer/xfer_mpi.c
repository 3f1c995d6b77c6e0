/*
 * xfer_mpi.c - the transfer layer's mpi backend: MPI_Isend on
 * MPI_COMM_WORLD; the receiver takes the message from its control inbox.
 */
#include "transfer/xfer_impl.h"

static rt_status_t mpi_post(xfer_t *x, int peer, int tag, void *buf, size_t len, xfer_send_t *s)
{
    (void)x;
    if (MPI_Isend(buf, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &s->req) != MPI_SUCCESS)
        return rt_error_set(RT_ERR_IO, "transfer (mpi): MPI_Isend of %zu bytes to rank %d failed", len, peer);
    return RT_OK;
}

static int mpi_test(xfer_t *x, xfer_send_t *s)
{
    (void)x;
    int flag = 0;
    MPI_Test(&s->req, &flag, MPI_STATUS_IGNORE);
    return flag;
}

const xfer_ops_t xfer_backend_mpi = {.name = "mpi", .post = mpi_post, .test = mpi_test};
