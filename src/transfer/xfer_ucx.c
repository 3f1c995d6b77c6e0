/*
 * xfer_ucx.c - the transfer layer's ucx backend (UCP tag API).
 *
 * Every rank of the transfer's communicator makes a UCP context and worker
 * (one thread: UCS_THREAD_MODE_SINGLE) and the ranks exchange their worker
 * addresses once (MPI_Allgatherv); an endpoint to a peer is made at the first
 * send to it. A message is one tagged send, tag = (sender's world rank << 32)
 * | the message's tag; UCX picks the protocol and transport (eager or
 * rendezvous; shared memory, CMA or RDMA). The receiver probes for the tag
 * (any sender), receives into a buffer of the transfer's (grown as needed)
 * and waits for the receive to complete, progressing its worker.
 */
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

#include "transfer/xfer_impl.h"

typedef struct {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_ep_h *eps;   /* (comm size) made at the first send; NULL before */
    char *addrs;     /* every rank's worker address, back to back */
    int *addr_off;   /* (comm size) */
    int comm_size;
    uint8_t *rx;     /* (rx_cap) the last message xfer_poll returned */
    size_t rx_cap;
} ucx_t;

static void ucx_send_done(void *req, ucs_status_t st, void *ud)
{
    (void)req;
    (void)st;
    (void)ud;
}

static void ucx_recv_done(void *req, ucs_status_t st, const ucp_tag_recv_info_t *info, void *ud)
{
    (void)req;
    (void)st;
    (void)info;
    (void)ud;
}

static rt_status_t ucx_fail(const char *what, ucs_status_t st)
{
    return rt_error_set(RT_ERR_IO, "transfer (ucx): %s: %s", what, ucs_status_string(st));
}

static void ucx_fini(xfer_t *x)
{
    ucx_t *u = x->be;
    if (!u) return;
    if (u->eps)
        for (int i = 0; i < u->comm_size; i++)
            if (u->eps[i]) {
                ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE};
                void *r = ucp_ep_close_nbx(u->eps[i], &p);
                if (UCS_PTR_IS_PTR(r)) {
                    while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(u->worker);
                    ucp_request_free(r);
                }
            }
    if (u->worker) ucp_worker_destroy(u->worker);
    if (u->ctx) ucp_cleanup(u->ctx);
    free(u->eps);
    free(u->addrs);
    free(u->addr_off);
    free(u->rx);
    free(u);
    x->be = NULL;
}

static rt_status_t ucx_init(xfer_t *x)
{
    if (x->comm == MPI_COMM_NULL) return rt_error_set(RT_ERR_INVALID, "transfer (ucx): no communicator");
    ucx_t *u = calloc(1, sizeof *u);
    if (!u) return rt_error_set(RT_ERR_NOMEM, "transfer (ucx): out of memory");
    x->be = u;
    MPI_Comm_size(x->comm, &u->comm_size);
    ucp_config_t *cfg;
    ucs_status_t s = ucp_config_read(NULL, NULL, &cfg);
    rt_status_t st = RT_OK;
    if (s != UCS_OK) st = ucx_fail("ucp_config_read", s);
    if (!st) {
        ucp_params_t p = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG};
        s = ucp_init(&p, cfg, &u->ctx);
        ucp_config_release(cfg);
        if (s != UCS_OK) st = ucx_fail("ucp_init", s);
    }
    if (!st) {
        ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                                  .thread_mode = UCS_THREAD_MODE_SINGLE};
        if ((s = ucp_worker_create(u->ctx, &wp, &u->worker)) != UCS_OK) st = ucx_fail("ucp_worker_create", s);
    }
    /* the collective below runs on every rank whatever happened here, so no
     * rank waits for one that gave up: a failed rank sends an empty address */
    ucp_address_t *addr = NULL;
    size_t alen = 0;
    if (!st && (s = ucp_worker_get_address(u->worker, &addr, &alen)) != UCS_OK) st = ucx_fail("address", s);
    int mine = st ? 0 : (int)alen, ok = !st, all_ok = 0;
    u->addr_off = calloc((size_t)u->comm_size, sizeof *u->addr_off);
    int *lens = calloc((size_t)u->comm_size, sizeof *lens);
    u->eps = calloc((size_t)u->comm_size, sizeof *u->eps);
    if (!u->addr_off || !lens || !u->eps) abort(); /* out of memory at start; the collectives cannot be skipped */
    MPI_Allgather(&mine, 1, MPI_INT, lens, 1, MPI_INT, x->comm);
    size_t total = 0;
    for (int i = 0; i < u->comm_size; i++) {
        u->addr_off[i] = (int)total;
        total += (size_t)lens[i];
    }
    u->addrs = malloc(total ? total : 1);
    if (!u->addrs) abort();
    MPI_Allgatherv(st ? NULL : addr, mine, MPI_BYTE, u->addrs, lens, u->addr_off, MPI_BYTE, x->comm);
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, x->comm);
    if (addr) ucp_worker_release_address(u->worker, addr);
    free(lens);
    if (!st && !all_ok) st = rt_error_set(RT_ERR_IO, "transfer (ucx): another rank could not start UCX");
    return st;
}

static ucp_ep_h ucx_ep(xfer_t *x, int peer, rt_status_t *st)
{
    ucx_t *u = x->be;
    const int c = x->comm_of_world[peer];
    if (c < 0) {
        *st = rt_error_set(RT_ERR_INVALID, "transfer (ucx): rank %d is not in the transfer's communicator", peer);
        return NULL;
    }
    if (!u->eps[c]) {
        ucp_ep_params_t p = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS,
                             .address = (const ucp_address_t *)(const void *)(u->addrs + u->addr_off[c])};
        ucs_status_t s = ucp_ep_create(u->worker, &p, &u->eps[c]);
        if (s != UCS_OK) {
            u->eps[c] = NULL;
            *st = ucx_fail("ucp_ep_create", s);
            return NULL;
        }
    }
    return u->eps[c];
}

static rt_status_t ucx_post(xfer_t *x, int peer, int tag, void *buf, size_t len, xfer_send_t *s)
{
    ucx_t *u = x->be;
    rt_status_t st = RT_OK;
    ucp_ep_h ep = ucx_ep(x, peer, &st);
    if (!ep) return st;
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK, .cb.send = ucx_send_done};
    const ucp_tag_t t = ((ucp_tag_t)(uint32_t)x->world_rank << 32) | (uint32_t)tag;
    void *r = ucp_tag_send_nbx(ep, buf, len, t, &p);
    if (UCS_PTR_IS_ERR(r)) return ucx_fail("ucp_tag_send_nbx", UCS_PTR_STATUS(r));
    s->handle = r; /* NULL: done already */
    ucp_worker_progress(u->worker);
    return RT_OK;
}

static int ucx_test(xfer_t *x, xfer_send_t *s)
{
    ucx_t *u = x->be;
    if (!s->handle) return 1;
    ucp_worker_progress(u->worker);
    if (ucp_request_check_status(s->handle) == UCS_INPROGRESS) return 0;
    ucp_request_free(s->handle);
    s->handle = NULL;
    return 1;
}

static int ucx_poll(xfer_t *x, int tag, const uint8_t **buf, size_t *len, int *from)
{
    ucx_t *u = x->be;
    ucp_worker_progress(u->worker);
    if (tag < 0) return 0;
    ucp_tag_recv_info_t info;
    ucp_tag_message_h m = ucp_tag_probe_nb(u->worker, (uint32_t)tag, 0xffffffffull, 1, &info);
    if (!m) return 0;
    if (info.length > u->rx_cap) {
        uint8_t *b = realloc(u->rx, info.length);
        if (!b) abort(); /* the message is taken off the wire: nowhere to put it is fatal */
        u->rx = b;
        u->rx_cap = info.length;
    }
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK, .cb.recv = ucx_recv_done};
    void *r = ucp_tag_msg_recv_nbx(u->worker, u->rx, info.length, m, &p);
    if (UCS_PTR_IS_ERR(r)) return 0;
    if (r) {
        while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(u->worker);
        ucp_request_free(r);
    }
    *buf = u->rx;
    *len = info.length;
    *from = (int)(info.sender_tag >> 32);
    return 1;
}

const xfer_ops_t xfer_backend_ucx = {.name = "ucx",
                                     .init = ucx_init,
                                     .fini = ucx_fini,
                                     .post = ucx_post,
                                     .test = ucx_test,
                                     .poll = ucx_poll};
