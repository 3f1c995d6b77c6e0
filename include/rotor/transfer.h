/*
 * transfer.h - disaggregation's transfer layer: moves a request's KV blocks
 * from the prefill rank that computed them to the decode rank that goes on
 * with the request.
 *
 * Backends sit behind an ops table chosen by name (disagg:transfer):
 *   mpi   MPI_Isend on MPI_COMM_WORLD, over whatever transport Open MPI picks
 *         (shared memory inside a node; UCX, verbs or TCP across nodes); the
 *         receiver takes it from its control inbox (ctrl_try_recv);
 *   ucx   a UCP worker per rank, tagged sends (ucp_tag_send_nbx) to endpoints
 *         made from worker addresses exchanged once over comm; UCX picks the
 *         transport (shared memory, CMA, RDMA); the receiver takes it with
 *         xfer_poll.
 * An NCCL backend (GPU memory) fits the same calls.
 *
 * A hand-off is one message (ctrl.h, CTRL_TAG_KV): ctrl_kv_t, the request,
 * the blocks. Peers are named by their rank in MPI_COMM_WORLD.
 *
 * Ownership: the transfer owns its staging buffers. xfer_buffer lends one
 * to the caller, who fills it and passes it to xfer_send (or gives it back
 * with xfer_buffer_return); once the send completes it returns to the pool,
 * already faulted in, for the next hand-off (as a registered-memory pool
 * would be for RDMA). Single-threaded: one worker loop calls everything.
 */
#ifndef ROTOR_TRANSFER_H
#define ROTOR_TRANSFER_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

typedef struct xfer xfer_t;

/* A transfer over backend ("mpi", "ucx") among the ranks of comm (not owned;
 * it must outlive the transfer). Collective over comm: every rank of it
 * calls it (ucx exchanges worker addresses). RT_ERR_INVALID for an unknown
 * name; a backend's own failure says why. */
rt_status_t xfer_create(const char *backend, MPI_Comm comm, xfer_t **out);
/* A message with tag that arrived through the transport itself (ucx): 1 with
 * *buf (the transfer's, valid until the next call), its length and the
 * sender's world rank; 0 if none (always 0 for mpi, whose messages come
 * through the control inbox). */
int xfer_poll(xfer_t *x, int tag, const uint8_t **buf, size_t *len, int *from);
/* A staging buffer of at least len bytes (the pool's smallest that fits, or
 * a new one); NULL when out of memory or len > XFER_MAX_BYTES. */
void *xfer_buffer(xfer_t *x, size_t len);
/* Give back a buffer from xfer_buffer unsent. */
void xfer_buffer_return(xfer_t *x, void *buf);
/* Post buf (from xfer_buffer; len bytes of it) to rank peer with tag: the
 * transfer owns it again. Never blocks. On an error the buffer has gone
 * back to the pool. */
rt_status_t xfer_send(xfer_t *x, int peer, int tag, void *buf, size_t len);
/* Complete what has been sent (frees those buffers); call from the loop.
 * Returns the sends still pending. */
size_t xfer_progress(xfer_t *x);
/* Progress until nothing is pending or timeout_s passed; returns the sends
 * still pending. Two-sided transports (MPI without single-copy shared memory)
 * move a large message only while both ranks are inside MPI calls: a rank
 * that posted a hand-off flushes it before computing again. Sends pending
 * for a second or more (a receiver that stopped) are not waited for. */
size_t xfer_flush(xfer_t *x, double timeout_s);
/* Wait up to timeout_s for pending sends, then free everything (a send to a
 * rank that never receives is abandoned, its buffer leaked). NULL: no-op. */
void xfer_destroy(xfer_t *x, double timeout_s);
/* The largest message a backend carries. */
#define XFER_MAX_BYTES ((size_t)1 << 30)

#endif
