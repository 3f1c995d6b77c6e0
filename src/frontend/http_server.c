/*
 * http_server.c - rank 0's HTTP endpoint on libevent's evhttp: the listener,
 * routing, API key, limits, the small endpoints (/v1/models, /health,
 * /metrics), replies, and the orderly drain. Completions live in
 * fe_generate.c.
 *
 * Limits, and how each is enforced:
 *   - slow clients: evhttp_set_timeout(server:timeout_s) is an inactivity
 *     timeout on reading the request and on writing the reply; a client that
 *     stops sending its headers or body, or stops reading its stream, is
 *     dropped. A request waiting for tokens is not subject to it.
 *   - headers: at most FE_MAX_HEADERS_BYTES (evhttp answers 400 above).
 *   - body: evhttp reads at most max_body_bytes + max(max_body_bytes, 1 MiB)
 *     (above that it answers its own 413 page without reading the body);
 *     bodies over max_body_bytes but under that hard cap get an OpenAI JSON
 *     413 from us. So the usual case (a client sending a somewhat large
 *     body) gets JSON, and a huge body is never read into memory.
 *   - concurrency: more than server:max_queued_requests live requests get
 *     429 with Retry-After. The listen backlog is FE_LISTEN_BACKLOG and the
 *     open-file limit is raised to its hard maximum, so thousands of
 *     streaming connections can be held.
 *
 * The listener is made with evconnlistener_new_bind (to choose the backlog)
 * and handed to evhttp_bind_listener; the bound port is read back with
 * getsockname, so server:port = 0 works.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frontend/fe_server_impl.h"
#include "frontend/openai_render.h"
#include "rotor/log.h"

#define FE_MAX_HEADERS_BYTES (64 * 1024)
#define FE_LISTEN_BACKLOG 4096
#define FE_DRAIN_HARD_EXTRA_S                                                                      \
    10.0 /* after the grace period, wait this long for engines' last events */

const char *fe_status_phrase(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

void fe_reply(fe_server_t *fe, struct evhttp_request *req, int status, const char *content_type,
              const char *body, size_t len) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    struct evbuffer *b = evbuffer_new();
    if (b) evbuffer_add(b, body, len);
    evhttp_send_reply(req, status, fe_status_phrase(status), b);
    if (b) evbuffer_free(b);
    fe_metrics_observe_http(fe->metrics, status);
}

void fe_reply_error(fe_server_t *fe, struct evhttp_request *req, const oai_error_t *e) {
    char *body = oai_render_error(e);
    static const char fallback[] =
        "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
        "\"param\":null,\"code\":null}}";
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (e->status == 429) evhttp_add_header(h, "Retry-After", "1");
    if (e->status == 401) evhttp_add_header(h, "WWW-Authenticate", "Bearer");
    if (body)
        fe_reply(fe, req, e->status, "application/json", body, strlen(body));
    else
        fe_reply(fe, req, e->status, "application/json", fallback, sizeof fallback - 1);
    cJSON_free(body);
}

void fe_reply_json(fe_server_t *fe, struct evhttp_request *req, int status, cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        oai_error_t e;
        oai_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        fe_reply_error(fe, req, &e);
        return;
    }
    fe_reply(fe, req, status, "application/json", s, strlen(s));
    cJSON_free(s);
}

/* ------------------------------------------------------------ endpoints */

static void get_models(fe_server_t *fe, struct evhttp_request *req, const char *which) {
    cJSON *list = oai_models(fe->model_name, fe->created, fe->model.n_ctx);
    if (!which || !list) {
        fe_reply_json(fe, req, 200, list);
        return;
    }
    /* GET /v1/models/{id}: the model object itself */
    if (strcmp(which, fe->model_name) != 0) {
        cJSON_Delete(list);
        oai_error_t e;
        char shown[128];
        oai_utf8_sanitize(which, strlen(which), shown, sizeof shown);
        oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                      "The model `%s` does not exist.", shown);
        fe_reply_error(fe, req, &e);
        return;
    }
    cJSON *m = cJSON_DetachItemFromArray(cJSON_GetObjectItemCaseSensitive(list, "data"), 0);
    cJSON_Delete(list);
    fe_reply_json(fe, req, 200, m);
}

static void get_health(fe_server_t *fe, struct evhttp_request *req) {
    dispatch_status_t st = {0};
    fe->dispatch.ops->status(fe->dispatch.self, &st);
    bool ok = !fe->draining && st.n_workers > 0 && st.n_up == st.n_workers;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "status", ok ? "ok" : fe->draining ? "draining" : "unavailable");
        cJSON_AddNumberToObject(o, "workers", st.n_workers);
        cJSON_AddNumberToObject(o, "workers_up", st.n_up);
    }
    fe_reply_json(fe, req, ok ? 200 : 503, o);
}

static void get_metrics(fe_server_t *fe, struct evhttp_request *req) {
    dispatch_status_t st = {0};
    fe->dispatch.ops->status(fe->dispatch.self, &st);
    char *text = fe_metrics_render(fe->metrics, &st, (int)fe->n_live);
    if (!text) {
        oai_error_t e;
        oai_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        fe_reply_error(fe, req, &e);
        return;
    }
    fe_reply(fe, req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

/* ------------------------------------------------------------- routing */

static const char *method_name(enum evhttp_cmd_type c) {
    switch (c) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "?";
    }
}

/* Constant-time comparison of the bearer token with the key. */
static bool key_matches(const char *got, const char *key) {
    size_t gl = strlen(got), kl = strlen(key);
    unsigned char diff = (unsigned char)(gl != kl);
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)(key[i] ^ (i < gl ? got[i] : 0));
    return diff == 0;
}

static bool authorized(fe_server_t *fe, struct evhttp_request *req, oai_error_t *e) {
    if (!fe->api_key) return true;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h) {
        oai_error_set(e, 401, "invalid_request_error", "invalid_api_key", NULL,
                      "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.");
        return false;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0 || !key_matches(h + 7, fe->api_key)) {
        oai_error_set(e, 401, "invalid_request_error", "invalid_api_key", NULL,
                      "Incorrect API key provided.");
        return false;
    }
    return true;
}

static void on_request(struct evhttp_request *req, void *arg) {
    fe_server_t *fe = arg;
    double t_arrival = hlog_now();
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *p = uri ? evhttp_uri_get_path(uri) : NULL;
    char path[256];
    snprintf(path, sizeof path, "%s", p && *p ? p : "/");
    size_t pl = strlen(path);
    if (pl > 1 && path[pl - 1] == '/') path[--pl] = '\0'; /* "/v1/models/" = "/v1/models" */

    oai_error_t e;
    const char *want = NULL; /* the method the path takes */
    enum {
        R_NONE,
        R_CHAT,
        R_COMPL,
        R_MODELS,
        R_MODEL,
        R_HEALTH,
        R_METRICS,
        R_TOKENIZE,
        R_DETOKENIZE
    } route = R_NONE;
    if (strcmp(path, "/v1/chat/completions") == 0)
        route = R_CHAT, want = "POST";
    else if (strcmp(path, "/v1/completions") == 0)
        route = R_COMPL, want = "POST";
    else if (strcmp(path, "/v1/models") == 0)
        route = R_MODELS, want = "GET";
    else if (strncmp(path, "/v1/models/", 11) == 0)
        route = R_MODEL, want = "GET";
    else if (strcmp(path, "/health") == 0)
        route = R_HEALTH, want = "GET";
    else if (strcmp(path, "/metrics") == 0)
        route = R_METRICS, want = "GET";
    else if (strcmp(path, "/tokenize") == 0)
        route = R_TOKENIZE, want = "POST";
    else if (strcmp(path, "/detokenize") == 0)
        route = R_DETOKENIZE, want = "POST";

    char shown[160];
    oai_utf8_sanitize(path, strlen(path), shown, sizeof shown);
    if (route == R_NONE) {
        oai_error_set(&e, 404, "invalid_request_error", "not_found", NULL, "Invalid URL (%s %s)",
                      method_name(cmd), shown);
        fe_reply_error(fe, req, &e);
        return;
    }
    if (strcmp(method_name(cmd), want) != 0) {
        oai_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                      "Method %s is not allowed on %s (use %s)", method_name(cmd), shown, want);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", want);
        fe_reply_error(fe, req, &e);
        return;
    }
    bool keyed = strncmp(path, "/v1/", 4) == 0 || route == R_TOKENIZE || route == R_DETOKENIZE;
    if (keyed && !authorized(fe, req, &e)) {
        fe_reply_error(fe, req, &e);
        return;
    }
    switch (route) {
    case R_CHAT:
        fe_generate(fe, req, OAI_CHAT, t_arrival);
        break;
    case R_COMPL:
        fe_generate(fe, req, OAI_COMPLETION, t_arrival);
        break;
    case R_MODELS:
        get_models(fe, req, NULL);
        break;
    case R_MODEL: {
        char *id = evhttp_decode_uri(path + 11);
        get_models(fe, req, id ? id : path + 11);
        free(id);
        break;
    }
    case R_HEALTH:
        get_health(fe, req);
        break;
    case R_METRICS:
        get_metrics(fe, req);
        break;
    case R_TOKENIZE:
        fe_tokenize(fe, req);
        break;
    case R_DETOKENIZE:
        fe_detokenize(fe, req);
        break;
    default:
        break;
    }
}

/* --------------------------------------------------------------- drain */

static void on_drain_done(evutil_socket_t fd, short what, void *arg) {
    fe_server_t *fe = arg;
    if (fe->drain_done) return;
    fe->drain_done = true;
    evtimer_del(fe->ev_grace);
    evtimer_del(fe->ev_hard);
    if (fe->done) fe->done(fe->done_arg);
}

void fe_drain_check(fe_server_t *fe) {
    if (!fe->draining || fe->drain_done || fe->n_live > 0) return;
    const struct timeval zero = {0, 0};
    if (!evtimer_pending(fe->ev_done, NULL)) evtimer_add(fe->ev_done, &zero);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg) {
    fe_server_t *fe = arg;
    if (fe->n_live)
        RT_LOG_INFO("front end: grace period over; cancelling %zu requests", fe->n_live);
    fe_cancel_all(fe, "The server is shutting down; the request was cancelled.");
    fe_drain_check(fe);
}

static void on_drain_hard(evutil_socket_t fd, short what, void *arg) {
    fe_server_t *fe = arg;
    RT_LOG_WARN("front end: %zu requests still wait for their engines' last event; stopping anyway",
                fe->n_live);
    on_drain_done(-1, 0, fe);
}

void fe_server_drain(fe_server_t *fe, double grace_s, void (*done)(void *arg), void *arg) {
    if (!fe) return;
    fe->done = done;
    fe->done_arg = arg;
    if (fe->drain_done) return; /* done() was called already */
    fe->draining = true;
    if (grace_s <= 0) {
        evtimer_del(fe->ev_grace);
        on_grace_over(-1, 0, fe);
        grace_s = 0;
    } else {
        struct timeval tv = {(time_t)grace_s,
                             (suseconds_t)((grace_s - (double)(time_t)grace_s) * 1e6)};
        evtimer_add(fe->ev_grace, &tv);
    }
    double hard = grace_s + FE_DRAIN_HARD_EXTRA_S;
    struct timeval th = {(time_t)hard, (suseconds_t)((hard - (double)(time_t)hard) * 1e6)};
    evtimer_add(fe->ev_hard, &th);
    fe_drain_check(fe);
}

size_t fe_server_n_active(const fe_server_t *fe) {
    return fe ? fe->n_live : 0;
}

const char *fe_server_endpoint(const fe_server_t *fe) {
    return fe ? fe->endpoint : "";
}

/* -------------------------------------------------------------- set-up */

static rt_status_t bind_listener(fe_server_t *fe, const char *host, int port) {
    struct evutil_addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int gai = evutil_getaddrinfo(host, ps, &hints, &ai);
    if (gai != 0 || !ai)
        return rt_error_set(RT_ERR_INVALID, "server:host: cannot resolve '%s': %s", host,
                            evutil_gai_strerror(gai));
    fe->listener = evconnlistener_new_bind(
        fe->base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        FE_LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    int err = errno;
    evutil_freeaddrinfo(ai);
    if (!fe->listener)
        return rt_error_set(RT_ERR_IO,
                            "cannot listen on %s:%d: %s (server:host / server:port; e.g. "
                            "--set server:port=8001 or ROTOR_SERVER_PORT=8001; port 0 picks a free one)",
                            host, port, strerror(err));
    if (!evhttp_bind_listener(fe->http, fe->listener)) {
        evconnlistener_free(fe->listener);
        fe->listener = NULL;
        return rt_error_set(RT_ERR_INTERNAL, "evhttp_bind_listener failed");
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evconnlistener_get_fd(fe->listener), (struct sockaddr *)&ss, &sl) != 0)
        return rt_error_set(RT_ERR_IO, "getsockname: %s", strerror(errno));
    int bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    /* a wildcard address is not one clients can use: name the machine */
    char name[96];
    const char *shown = host;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        if (gethostname(name, sizeof name) == 0) {
            name[sizeof name - 1] = '\0';
            shown = name;
        }
    }
    if (strchr(shown, ':'))
        snprintf(fe->endpoint, sizeof fe->endpoint, "[%s]:%d", shown, bound);
    else
        snprintf(fe->endpoint, sizeof fe->endpoint, "%s:%d", shown, bound);
    return RT_OK;
}

/* A server holds a socket per client: let it have as many as allowed. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            RT_LOG_WARN("cannot raise the open-file limit: %s", strerror(errno));
    }
}

rt_status_t fe_server_create(struct event_base *base, const cfg_t *cfg, const fe_model_t *model,
                             dispatch_t dispatch, hlog_t *hlog, fe_server_t **out) {
    if (!base || !cfg || !model || !model->vocab || !model->model_name || !dispatch.ops || !out)
        return rt_error_set(RT_ERR_INVALID, "fe_server_create: bad arguments");
    if (model->n_ctx <= 1)
        return rt_error_set(RT_ERR_INVALID, "fe_server_create: context length %d", model->n_ctx);
    rt_status_t st;
    fe_server_t *fe = calloc(1, sizeof *fe);
    if (!fe) return rt_error_set(RT_ERR_NOMEM, "out of memory");
    fe->base = base;
    fe->cfg = cfg;
    fe->model = *model;
    fe->dispatch = dispatch;
    fe->hlog = hlog;
    fe->created = (int64_t)time(NULL);
    fe->next_seq = 1;
    fe->cap_hint = SIZE_MAX;
    fe->model_name = strdup(model->model_name);
    if (!fe->model_name) goto nomem;
    fe->model.model_name = fe->model_name;
    if (fe->model.chat_template == CHAT_TMPL_UNKNOWN) fe->model.chat_template = CHAT_TMPL_CHATML;

    const char *key = cfg_str(cfg, "server:api_key");
    if (key && *key && !(fe->api_key = strdup(key))) goto nomem;
    fe->max_body = (size_t)cfg_int(cfg, "server:max_body_bytes");
    fe->max_queued = (size_t)cfg_int(cfg, "server:max_queued_requests");
    fe->max_tokens_limit = (int)cfg_int(cfg, "server:max_tokens_limit");
    fe->default_max_tokens = (int)cfg_int(cfg, "sampling:max_tokens");
    fe->defaults = (oai_defaults_t){
        .temperature = (float)cfg_float(cfg, "sampling:temperature"),
        .top_k = (int32_t)cfg_int(cfg, "sampling:top_k"),
        .top_p = (float)cfg_float(cfg, "sampling:top_p"),
        .min_p = (float)cfg_float(cfg, "sampling:min_p"),
    };
    if (getrandom(&fe->salt, sizeof fe->salt, 0) != (ssize_t)sizeof fe->salt)
        fe->salt = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    fe->seed_state = fe->salt ^ 0x9e3779b97f4a7c15ULL;

    if ((st = fe_metrics_create(fe->model_name, &fe->metrics))) goto fail;
    fe->ev_grace = evtimer_new(base, on_grace_over, fe);
    fe->ev_hard = evtimer_new(base, on_drain_hard, fe);
    fe->ev_done = evtimer_new(base, on_drain_done, fe);
    fe->ev_pump = evtimer_new(base, fe_pump_backlog, fe);
    fe->chunk = evbuffer_new();
    fe->http = evhttp_new(base);
    if (!fe->ev_grace || !fe->ev_hard || !fe->ev_done || !fe->ev_pump || !fe->chunk || !fe->http)
        goto nomem;

    evhttp_set_timeout(fe->http, (int)cfg_int(cfg, "server:timeout_s"));
    evhttp_set_max_headers_size(fe->http, FE_MAX_HEADERS_BYTES);
    size_t slack = fe->max_body > (1u << 20) ? fe->max_body : (1u << 20);
    evhttp_set_max_body_size(fe->http, (ev_ssize_t)(fe->max_body + slack));
    evhttp_set_allowed_methods(fe->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                             EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(fe->http, "application/json");
    evhttp_set_gencb(fe->http, on_request, fe);

    if ((st = bind_listener(fe, cfg_str(cfg, "server:host"), (int)cfg_int(cfg, "server:port"))))
        goto fail;
    /* a client that leaves must not kill the process with SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    fe->dispatch.ops->set_sink(fe->dispatch.self,
                               (dispatch_sink_t){.on_event = fe_server_on_event, .ctx = fe});
    *out = fe;
    return RT_OK;
nomem:
    st = rt_error_set(RT_ERR_NOMEM, "out of memory");
fail:
    fe_server_destroy(fe);
    return st;
}

void fe_server_destroy(fe_server_t *fe) {
    if (!fe) return;
    /* no more events for us: the dispatcher may outlive the server */
    if (fe->dispatch.ops) fe->dispatch.ops->set_sink(fe->dispatch.self, (dispatch_sink_t){0});
    fe_free_all(fe);
    if (fe->http) evhttp_free(fe->http); /* frees the listener and every connection */
    if (fe->ev_grace) event_free(fe->ev_grace);
    if (fe->ev_hard) event_free(fe->ev_hard);
    if (fe->ev_done) event_free(fe->ev_done);
    if (fe->ev_pump) event_free(fe->ev_pump);
    if (fe->chunk) evbuffer_free(fe->chunk);
    fe_metrics_destroy(fe->metrics);
    free(fe->slots);
    free(fe->free_slots);
    free(fe->backlog);
    free(fe->api_key);
    free(fe->model_name);
    free(fe);
}
