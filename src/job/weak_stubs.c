/*
 * weak_stubs.c - TEMPORARY: weak definitions of the front end, local
 * dispatcher and HDF5 log entry points so the tree links while those parts
 * are being written in parallel. The real definitions override these.
 */
#include "rotor/frontend.h"
#include "rotor/hlog.h"

#define WEAK __attribute__((weak))

WEAK rt_status_t fe_server_create(struct event_base *base, const cfg_t *cfg, const fe_model_t *model,
                                  dispatch_t dispatch, hlog_t *hlog, fe_server_t **out)
{
    return rt_error_set(RT_ERR_UNSUPPORTED, "front end not built yet");
}
WEAK const char *fe_server_endpoint(const fe_server_t *fe) { return ""; }
WEAK void fe_server_on_event(void *fe, const engine_event_t *ev, int worker) {}
WEAK void fe_server_drain(fe_server_t *fe, double grace_s, void (*done)(void *arg), void *arg) { done(arg); }
WEAK size_t fe_server_n_active(const fe_server_t *fe) { return 0; }
WEAK void fe_server_destroy(fe_server_t *fe) {}
WEAK rt_status_t dispatch_local_create(struct event_base *base, const engine_config_t *cfg, dispatch_t *out)
{
    return rt_error_set(RT_ERR_UNSUPPORTED, "local dispatcher not built yet");
}
WEAK void dispatch_local_destroy(dispatch_t d) {}
WEAK rt_status_t hlog_open(const char *path, const hlog_config_t *cfg, const char *meta_model,
                           const char *meta_config_text, const char *meta_roles, hlog_t **out)
{
    *out = NULL;
    return RT_OK;
}
WEAK void hlog_request(hlog_t *h, const hlog_request_t *r) {}
WEAK void hlog_tokens(hlog_t *h, uint64_t request_id, int32_t first_index, const double *t, size_t n) {}
WEAK void hlog_step(hlog_t *h, const hlog_step_t *s) {}
WEAK void hlog_worker(hlog_t *h, const hlog_worker_t *w) {}
WEAK rt_status_t hlog_close(hlog_t *h) { return RT_OK; }
WEAK uint64_t hlog_dropped(const hlog_t *h) { return 0; }
#include <time.h>
WEAK double hlog_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
