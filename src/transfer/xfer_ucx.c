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
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

#include "transfer/xfer_impl.h"

/* UCX is loaded when a ucx transfer is made (dlopen), not linked: a rank
 * that never uses it never loads UCX's memory hooks (libucm) at start,
 * which AddressSanitizer's interceptors and Open MPI's own lazy loading of
 * UCX do not expect. The functions used, from libucp and its libucs. */
static struct {
    void *lib;
    ucs_status_t (*config_read)(const char *, const char *, ucp_config_t **);
    void (*config_release)(ucp_config_t *);
    ucs_status_t (*init_version)(unsigned, unsigned, const ucp_params_t *, const ucp_config_t *, ucp_context_h *);
    void (*cleanup)(ucp_context_h);
    ucs_status_t (*worker_create)(ucp_context_h, const ucp_worker_params_t *, ucp_worker_h *);
    void (*worker_destroy)(ucp_worker_h);
    ucs_status_t (*worker_get_address)(ucp_worker_h, ucp_address_t **, size_t *);
    void (*worker_release_address)(ucp_worker_h, ucp_address_t *);
    unsigned (*worker_progress)(ucp_worker_h);
    ucs_status_t (*ep_create)(ucp_worker_h, const ucp_ep_params_t *, ucp_ep_h *);
    ucs_status_ptr_t (*ep_close_nbx)(ucp_ep_h, const ucp_request_param_t *);
    ucs_status_t (*request_check_status)(void *);
    void (*request_free)(void *);
    ucs_status_ptr_t (*tag_send_nbx)(ucp_ep_h, const void *, size_t, ucp_tag_t, const ucp_request_param_t *);
    ucp_tag_message_h (*tag_probe_nb)(ucp_worker_h, ucp_tag_t, ucp_tag_t, int, ucp_tag_recv_info_t *);
    ucs_status_ptr_t (*tag_msg_recv_nbx)(ucp_worker_h, void *, size_t, ucp_tag_message_h,
                                         const ucp_request_param_t *);
    const char *(*status_string)(ucs_status_t);
} U;

static rt_status_t ucx_load(void)
{
    if (U.lib) return RT_OK;
    void *lib = dlopen("libucp.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return rt_error_set(RT_ERR_UNSUPPORTED, "transfer (ucx): cannot load libucp.so.0: %s", dlerror());
    static const char *const names[] = {
        "ucp_config_read",    "ucp_config_release",   "ucp_init_version",        "ucp_cleanup",
        "ucp_worker_create",  "ucp_worker_destroy",   "ucp_worker_get_address",  "ucp_worker_release_address",
        "ucp_worker_progress", "ucp_ep_create",       "ucp_ep_close_nbx",        "ucp_request_check_status",
        "ucp_request_free",   "ucp_tag_send_nbx",     "ucp_tag_probe_nb",        "ucp_tag_msg_recv_nbx",
        "ucs_status_string"};
    void *fn[sizeof names / sizeof names[0]];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!(fn[i] = dlsym(lib, names[i]))) {
            dlclose(lib);
            return rt_error_set(RT_ERR_UNSUPPORTED, "transfer (ucx): libucp.so.0 has no %s", names[i]);
        }
    size_t k = 0;
    /* object pointers to function pointers: POSIX guarantees dlsym's results convert */
#define UCX_TAKE(f) memcpy(&U.f, &fn[k++], sizeof U.f)
    UCX_TAKE(config_read);
    UCX_TAKE(config_release);
    UCX_TAKE(init_version);
    UCX_TAKE(cleanup);
    UCX_TAKE(worker_create);
    UCX_TAKE(worker_destroy);
    UCX_TAKE(worker_get_address);
    UCX_TAKE(worker_release_address);
    UCX_TAKE(worker_progress);
    UCX_TAKE(ep_create);
    UCX_TAKE(ep_close_nbx);
    UCX_TAKE(request_check_status);
    UCX_TAKE(request_free);
    UCX_TAKE(tag_send_nbx);
    UCX_TAKE(tag_probe_nb);
    UCX_TAKE(tag_msg_recv_nbx);
    UCX_TAKE(status_string);
#undef UCX_TAKE
    U.lib = lib; /* kept to exit: UCX does not expect to be unloaded */
    return RT_OK;
}

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
    return rt_error_set(RT_ERR_IO, "transfer (ucx): %s: %s", what, U.status_string(st));
}

static void ucx_fini(xfer_t *x)
{
    ucx_t *u = x->be;
    if (!u) return;
    if (u->eps)
        for (int i = 0; i < u->comm_size; i++)
            if (u->eps[i]) {
                ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE};
                void *r = U.ep_close_nbx(u->eps[i], &p);
                if (UCS_PTR_IS_PTR(r)) {
                    while (U.request_check_status(r) == UCS_INPROGRESS) U.worker_progress(u->worker);
                    U.request_free(r);
                }
            }
    if (u->worker) U.worker_destroy(u->worker);
    if (u->ctx) U.cleanup(u->ctx);
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
    /* a rank that cannot load UCX still joins the collectives below (with no
     * address), so the others learn of it instead of waiting */
    const rt_status_t loaded = ucx_load();
    ucx_t *u = calloc(1, sizeof *u);
    if (!u) return rt_error_set(RT_ERR_NOMEM, "transfer (ucx): out of memory");
    x->be = u;
    MPI_Comm_size(x->comm, &u->comm_size);
    ucp_config_t *cfg;
    ucs_status_t s = UCS_OK;
    rt_status_t st = loaded;
    if (!st && (s = U.config_read(NULL, NULL, &cfg)) != UCS_OK) st = ucx_fail("ucp_config_read", s);
    if (!st) {
        ucp_params_t p = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG};
        s = U.init_version(UCP_API_MAJOR, UCP_API_MINOR, &p, cfg, &u->ctx);
        U.config_release(cfg);
        if (s != UCS_OK) st = ucx_fail("ucp_init", s);
    }
    if (!st) {
        ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                                  .thread_mode = UCS_THREAD_MODE_SINGLE};
        if ((s = U.worker_create(u->ctx, &wp, &u->worker)) != UCS_OK) st = ucx_fail("ucp_worker_create", s);
    }
    /* the collective below runs on every rank whatever happened here, so no
     * rank waits for one that gave up: a failed rank sends an empty address */
    ucp_address_t *addr = NULL;
    size_t alen = 0;
    if (!st && (s = U.worker_get_address(u->worker, &addr, &alen)) != UCS_OK) st = ucx_fail("address", s);
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
    if (addr) U.worker_release_address(u->worker, addr);
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
        ucs_status_t s = U.ep_create(u->worker, &p, &u->eps[c]);
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
    void *r = U.tag_send_nbx(ep, buf, len, t, &p);
    if (UCS_PTR_IS_ERR(r)) return ucx_fail("ucp_tag_send_nbx", UCS_PTR_STATUS(r));
    s->handle = r; /* NULL: done already */
    U.worker_progress(u->worker);
    return RT_OK;
}

static int ucx_test(xfer_t *x, xfer_send_t *s)
{
    ucx_t *u = x->be;
    if (!s->handle) return 1;
    U.worker_progress(u->worker);
    if (U.request_check_status(s->handle) == UCS_INPROGRESS) return 0;
    U.request_free(s->handle);
    s->handle = NULL;
    return 1;
}

static int ucx_poll(xfer_t *x, int tag, const uint8_t **buf, size_t *len, int *from)
{
    ucx_t *u = x->be;
    U.worker_progress(u->worker);
    if (tag < 0) return 0;
    ucp_tag_recv_info_t info;
    ucp_tag_message_h m = U.tag_probe_nb(u->worker, (uint32_t)tag, 0xffffffffull, 1, &info);
    if (!m) return 0;
    if (info.length > u->rx_cap) {
        uint8_t *b = realloc(u->rx, info.length);
        if (!b) abort(); /* the message is taken off the wire: nowhere to put it is fatal */
        u->rx = b;
        u->rx_cap = info.length;
    }
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK, .cb.recv = ucx_recv_done};
    void *r = U.tag_msg_recv_nbx(u->worker, u->rx, info.length, m, &p);
    if (UCS_PTR_IS_ERR(r)) return 0;
    if (r) {
        while (U.request_check_status(r) == UCS_INPROGRESS) U.worker_progress(u->worker);
        U.request_free(r);
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
