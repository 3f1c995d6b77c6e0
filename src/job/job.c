/*
 * job.c - `rotor serve`: MPI_Init, roles, then rank 0 runs the front end and
 * the router on a libevent loop while worker ranks run their engines
 * (worker.c). A job of one rank serves with an in-process engine.
 *
 * Shutdown (SIGINT or SIGTERM to rank 0, e.g. Ctrl-C, scancel, mpirun
 * forwarding): the front end stops admitting (503), in-flight requests get
 * job:shutdown_grace_s to finish and are cancelled after it, rank 0 sends
 * SHUTDOWN to every worker and waits for their BYE, flushes the HDF5 log, and
 * every rank leaves through MPI_Finalize with exit code 0. A second signal
 * cuts the grace period short.
 */
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "job_impl.h"
#include "topology.h"
#include "rotor/chat.h"
#include "rotor/frontend.h"
#include "rotor/gguf.h"
#include "rotor/log.h"
#include "rotor/tokenizer.h"

#define ROTOR_VERSION_STR "0.1.0"

static rt_status_t apply_overrides(cfg_t *cfg, int n, char **kv)
{
    for (int i = 0; i < n; i++) {
        char key[256];
        const char *eq = strchr(kv[i], '=');
        if (!eq || eq == kv[i] || (size_t)(eq - kv[i]) >= sizeof key)
            return rt_error_set(RT_ERR_INVALID, "--set '%s': expected section:key=value", kv[i]);
        memcpy(key, kv[i], (size_t)(eq - kv[i]));
        key[eq - kv[i]] = '\0';
        rt_status_t st = cfg_set(cfg, key, eq + 1);
        if (st) return st;
    }
    return RT_OK;
}

static rt_status_t mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return rt_error_set(RT_ERR_INVALID, "log:dir: path too long");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return rt_error_set(RT_ERR_IO, "log:dir: mkdir %s: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return RT_OK;
}

/* Write path atomically (temporary file + rename). */
static rt_status_t write_file_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return rt_error_set(RT_ERR_IO, "write %s: %s", tmp, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return rt_error_set(RT_ERR_IO, "write %s: %s", path, strerror(errno));
    }
    return RT_OK;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *b = realloc(buf, cap);
            if (!b) break;
            buf = b;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) break;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

/* ------------------------------------------------------------ rank 0 */

typedef struct {
    struct event_base *base;
    const cfg_t *cfg;
    fe_server_t *fe;
    dispatch_t dispatch;
    int local; /* in-process engine (one-rank job) */
    int n_signals;
    int stopping;
    char endpoint_path[PATH_MAX];
    char pid_path[PATH_MAX];
} router_t;

static void on_workers_stopped(void *arg)
{
    router_t *r = arg;
    event_base_loopexit(r->base, NULL);
}

static void on_drained(void *arg)
{
    router_t *r = arg;
    RT_LOG_INFO("front end drained; stopping workers");
    if (r->local) event_base_loopexit(r->base, NULL);
    else dispatch_mpi_shutdown(r->dispatch, cfg_float(r->cfg, "job:heartbeat_timeout_s"), on_workers_stopped, r);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    router_t *r = arg;
    r->n_signals++;
    if (r->n_signals == 1) {
        double grace = cfg_float(r->cfg, "job:shutdown_grace_s");
        RT_LOG_INFO("signal %d: shutting down (in-flight requests have %.1f s to finish)", (int)sig, grace);
        r->stopping = 1;
        if (r->endpoint_path[0]) unlink(r->endpoint_path);
        fe_server_drain(r->fe, grace, on_drained, r);
    } else {
        RT_LOG_WARN("signal %d again: cancelling in-flight requests now", (int)sig);
        fe_server_drain(r->fe, 0, on_drained, r);
    }
}

/* Group the engine ranks into instances of per_engine consecutive ones:
 * every engine rank but an instance's first becomes JOB_ROLE_EXPERT, unless
 * dp (data-parallel attention: each is a worker of its own); *color
 * receives this rank's instance (MPI_UNDEFINED if it runs no engine). */
static rt_status_t job_instances(job_role_t *roles, int size, int per_engine, bool dp, int rank, int *color)
{
    int n_engine = 0;
    for (int r = 0; r < size; r++) n_engine += job_role_is_engine(roles[r]);
    if (per_engine > 1 && n_engine % per_engine)
        return rt_error_set(RT_ERR_INVALID, "roles:ep: %d engine ranks do not split into instances of %d",
                            n_engine, per_engine);
    int index = 0, leader = -1;
    for (int r = 0; r < size; r++) {
        if (!job_role_is_engine(roles[r])) continue;
        if (r == rank) *color = index / per_engine;
        if (index % per_engine == 0) {
            leader = r;
        } else if (!dp) {
            if (roles[r] != roles[leader])
                return rt_error_set(RT_ERR_INVALID, "roles:ep: rank %d (%s) and rank %d (%s) would share an engine "
                                    "instance; an instance's ranks need one role",
                                    leader, job_role_name(roles[leader]), r, job_role_name(roles[r]));
            roles[r] = JOB_ROLE_EXPERT;
        }
        index++;
    }
    return RT_OK;
}

static int model_ctx_len(const cfg_t *cfg, const gguf_ctx_t *g)
{
    int64_t c = cfg_int(cfg, "model:ctx_size");
    if (c > 0) return (int)c;
    char key[128];
    snprintf(key, sizeof key, "%s.context_length", gguf_get_str(g, "general.architecture", "llama"));
    int64_t v = gguf_get_i64(g, key, 2048);
    return v > 0 && v <= INT32_MAX ? (int)v : 2048;
}

static int router_main(const cfg_t *cfg, const char *config_path, const job_role_t *roles, int n_ranks,
                       const char *placement, const job_topo_id_t *ids)
{
    const char *model_path = cfg_str(cfg, "model:path");
    const char *log_dir = cfg_str(cfg, "log:dir");
    int rc = 1;
    router_t r = {.cfg = cfg, .local = n_ranks == 1};
    gguf_ctx_t *g = NULL;
    tok_vocab_t *vocab = NULL;
    hlog_t *hlog = NULL;
    struct event *sig_int = NULL, *sig_term = NULL;
    char *config_text = NULL;
    char name_buf[256], roles_text[4096] = "", path[PATH_MAX];
    struct event_config *ecfg = NULL;

    /* every client connection is a descriptor: take the hard limit */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rt_status_t st;
    if ((st = mkdir_p(log_dir))) goto out;
    if ((st = gguf_open(model_path, &g)) || (st = tok_vocab_from_gguf(g, &vocab))) goto out;

    /* model identity, template, context */
    const char *name = cfg_str(cfg, "server:model_name");
    if (!*name) {
        const char *base = strrchr(model_path, '/');
        snprintf(name_buf, sizeof name_buf, "%s", base ? base + 1 : model_path);
        size_t n = strlen(name_buf);
        if (n > 5 && strcmp(name_buf + n - 5, ".gguf") == 0) name_buf[n - 5] = '\0';
        name = name_buf;
    }
    chat_tmpl_t tmpl;
    const char *tname = cfg_str(cfg, "model:chat_template");
    if (*tname) {
        if ((tmpl = chat_template_from_name(tname)) == CHAT_TMPL_UNKNOWN) {
            st = rt_error_set(RT_ERR_INVALID, "model:chat_template: unknown template '%s'", tname);
            goto out;
        }
    } else if ((tmpl = chat_template_detect(gguf_get_str(g, "tokenizer.chat_template", ""))) == CHAT_TMPL_UNKNOWN) {
        RT_LOG_WARN("the model's chat template is not one rotor knows; using ChatML (model:chat_template overrides)");
        tmpl = CHAT_TMPL_CHATML;
    }
    fe_model_t fm = {.vocab = vocab, .chat_template = tmpl, .model_name = name, .n_ctx = model_ctx_len(cfg, g)};

    for (int i = 0; i < n_ranks; i++) {
        size_t l = strlen(roles_text);
        snprintf(roles_text + l, sizeof roles_text - l, "%s%d:%s", i ? "," : "", i, job_role_name(roles[i]));
    }
    if (*placement) {
        size_t l = strlen(roles_text);
        snprintf(roles_text + l, sizeof roles_text - l, "; placement: %.2000s", placement);
    }

    /* HDF5 log */
    if (cfg_bool(cfg, "log:hdf5")) {
        const char *jobid = getenv("SLURM_JOB_ID");
        if (jobid) {
            snprintf(path, sizeof path, "%s/rotor-%s.h5", log_dir, jobid);
        } else {
            char stamp[32];
            time_t now = time(NULL);
            strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", gmtime(&now));
            snprintf(path, sizeof path, "%s/rotor-%s-%d.h5", log_dir, stamp, (int)getpid());
        }
        config_text = read_text(config_path);
        hlog_config_t hc = {.flush_interval_s = cfg_float(cfg, "log:flush_interval_s"), .queue_records = 1 << 20};
        if ((st = hlog_open(path, &hc, model_path, config_text ? config_text : "", roles_text, &hlog))) goto out;
        if (hlog) RT_LOG_INFO("HDF5 log: %s", path);
    }

    ecfg = event_config_new();
    if (ecfg) event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    r.base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    if (!r.base) {
        st = rt_error_set(RT_ERR_NOMEM, "libevent: cannot create the event loop");
        goto out;
    }
    if (r.local) {
        engine_config_t ec;
        if ((st = engine_config_from_cfg(cfg, NULL, &ec))) goto out;
        RT_LOG_INFO("one rank: serving with an in-process engine");
        if ((st = dispatch_local_create(r.base, &ec, &r.dispatch))) goto out;
    } else {
        if ((st = dispatch_mpi_create(r.base, cfg, roles, ids, n_ranks, hlog, &r.dispatch))) goto out;
    }
    if ((st = fe_server_create(r.base, cfg, &fm, r.dispatch, hlog, &r.fe))) goto out;
    r.dispatch.ops->set_sink(r.dispatch.self, (dispatch_sink_t){.on_event = fe_server_on_event, .ctx = r.fe});

    sig_int = evsignal_new(r.base, SIGINT, on_signal, &r);
    sig_term = evsignal_new(r.base, SIGTERM, on_signal, &r);
    if (!sig_int || !sig_term || evsignal_add(sig_int, NULL) || evsignal_add(sig_term, NULL)) {
        st = rt_error_set(RT_ERR_INTERNAL, "libevent: cannot watch signals");
        goto out;
    }

    const char *ep = fe_server_endpoint(r.fe);
    char line[512];
    /* scripts signal rank 0 itself (mpirun turns a signal into SIGKILL after a second) */
    snprintf(r.pid_path, sizeof r.pid_path, "%s/rank0.pid", log_dir);
    snprintf(line, sizeof line, "%d\n", (int)getpid());
    if ((st = write_file_atomic(r.pid_path, line))) goto out;
    snprintf(r.endpoint_path, sizeof r.endpoint_path, "%s/endpoint", log_dir);
    snprintf(line, sizeof line, "%s\n", ep);
    if ((st = write_file_atomic(r.endpoint_path, line))) goto out;
    RT_LOG_INFO("serving %s on http://%s (endpoint file %s)", name, ep, r.endpoint_path);
    printf("\nrotor is serving %s at http://%s/v1\n"
           "try:\n  curl http://%s/v1/chat/completions -H 'Content-Type: application/json' \\\n"
           "    -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello! Who are you?\"}]}'\n"
           "Ctrl-C stops it.\n\n",
           name, ep, ep, name);
    fflush(stdout);

    event_base_dispatch(r.base);
    rc = 0;
    RT_LOG_INFO("stopped");
out:
    if (st) {
        RT_LOG_ERROR("%s", rt_error_msg());
        fprintf(stderr, "rotor serve: %s\n", rt_error_msg());
    }
    if (r.endpoint_path[0]) unlink(r.endpoint_path);
    if (r.pid_path[0]) unlink(r.pid_path);
    if (r.fe) fe_server_destroy(r.fe);
    if (r.dispatch.self) {
        if (r.local) dispatch_local_destroy(r.dispatch);
        else dispatch_mpi_destroy(r.dispatch);
    }
    if (hlog) {
        uint64_t dropped = hlog_dropped(hlog);
        if (hlog_close(hlog)) {
            RT_LOG_ERROR("HDF5 log: %s", rt_error_msg());
            rc = 1;
        }
        if (dropped) RT_LOG_WARN("HDF5 log: %llu records dropped (queue full)", (unsigned long long)dropped);
    }
    /* Slurm may send more SIGTERMs (slurmstepd, srun, the batch script): once
     * the loop's handlers are gone they must not kill rank 0 mid-cleanup */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    if (sig_int) event_free(sig_int);
    if (sig_term) event_free(sig_term);
    if (r.base) event_base_free(r.base);
    if (ecfg) event_config_free(ecfg);
    tok_vocab_destroy(vocab);
    gguf_close(g);
    free(config_text);
    if (r.pid_path[0]) {
        /* logs/<job>/rank0.status: how rank 0 ended, for a job script whose
         * srun does not notice the end of its tasks (seen with Slurm 22.05's
         * heterogeneous steps: jobs/rotor-hetjob.sbatch) */
        char status_path[PATH_MAX + 16], code[16];
        snprintf(status_path, sizeof status_path, "%.*s/rank0.status",
                 (int)(strlen(r.pid_path) - strlen("/rank0.pid")), r.pid_path);
        snprintf(code, sizeof code, "%d\n", rc);
        if (write_file_atomic(status_path, code)) fprintf(stderr, "rotor serve: %s\n", rt_error_msg());
    }
    return rc;
}

/* ------------------------------------------------------------ all ranks */

static volatile sig_atomic_t worker_signalled;
static void worker_on_signal(int sig)
{
    (void)sig;
    worker_signalled = 1; /* rank 0 orchestrates the shutdown */
}

int job_serve(const char *config_path, int n_overrides, char **overrides)
{
    int provided = 0, rank = 0, size = 1;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "rotor serve: MPI_Init failed\n");
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rt_log_set_identity(rank, "init");

    cfg_t *cfg = NULL;
    job_role_t *roles = calloc((size_t)size, sizeof *roles);
    rt_status_t st = roles ? cfg_load(config_path, &cfg) : RT_ERR_NOMEM;
    if (!st) st = apply_overrides(cfg, n_overrides, overrides);
    if (!st) {
        int lvl = rt_log_level_parse(cfg_str(cfg, "log:level"));
        if (lvl < 0) st = rt_error_set(RT_ERR_INVALID, "log:level: unknown level '%s'", cfg_str(cfg, "log:level"));
        else rt_log_set_level((rt_log_level_t)lvl);
    }
    if (!st && !*cfg_str(cfg, "model:path"))
        st = rt_error_set(RT_ERR_INVALID, "model:path is empty: set it in %s or with --set model:path=FILE.gguf",
                          config_path);
    if (!st) st = job_roles_parse(cfg, size, roles);
    if (!st) st = job_planner_config_check(cfg);
    /* engine instances: tp * ep consecutive engine ranks each, with their own
     * communicator; an instance's first rank leads it, the others become
     * expert ranks (roles:ep, ep.c) */
    const int per_engine = st ? 1 : (int)(cfg_int(cfg, "roles:tp") * cfg_int(cfg, "roles:ep"));
    int color = MPI_UNDEFINED;
    const char *ep_attn = cfg_str(cfg, "roles:ep_attention");
    const bool ep_dp = strcmp(ep_attn, "data_parallel") == 0;
    if (!st && !ep_dp && strcmp(ep_attn, "replicated") != 0)
        st = rt_error_set(RT_ERR_INVALID, "roles:ep_attention: '%s' is not replicated or data_parallel", ep_attn);
    if (!st) st = job_instances(roles, size, per_engine, ep_dp, rank, &color);
    if (st) {
        /* every rank reads the same config: all refuse it, rank 0 says why */
        if (rank == 0) fprintf(stderr, "rotor serve: %s\n", rt_error_msg());
        cfg_destroy(cfg);
        free(roles);
        MPI_Finalize();
        return 1;
    }
    rt_log_set_identity(rank, job_role_name(roles[rank]));

    /* where every rank sits: prefill ranks pair with the nearest decode rank */
    job_topo_id_t me;
    memset(&me, 0, sizeof me);
    if (job_topo_id_self(&me)) RT_LOG_WARN("topology: %s", rt_error_msg());
    job_topo_id_t *ids = calloc((size_t)size, sizeof *ids);
    int *pair = calloc((size_t)size, sizeof *pair);
    job_near_t *near = calloc((size_t)size, sizeof *near);
    char placement[2048] = "";
    if (!ids || !pair || !near) RT_PANIC("out of memory");
    MPI_Allgather(&me, sizeof me, MPI_BYTE, ids, sizeof me, MPI_BYTE, MPI_COMM_WORLD);
    if (job_topo_pair(size, roles, ids, pair, near) == RT_OK) {
        job_topo_describe(size, pair, near, placement, sizeof placement);
        if (rank == 0 && *placement) RT_LOG_INFO("placement: %s", placement);
    }
    free(pair);
    free(near);

    MPI_Comm engine_comm = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, color, rank, &engine_comm);
    job_ep_t *ep = NULL;
    if (per_engine > 1 && engine_comm != MPI_COMM_NULL && job_ep_create(engine_comm, ep_dp, &ep))
        RT_PANIC("expert parallelism: %s", rt_error_msg());
    /* the worker ranks (instance leaders), among which KV hand-offs travel */
    MPI_Comm xfer_comm = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, rank > 0 && job_role_is_engine(roles[rank]) ? 0 : MPI_UNDEFINED, rank, &xfer_comm);

    int rc;
    if (rank == 0) {
        rc = router_main(cfg, config_path, roles, size, placement, ids);
    } else if (roles[rank] == JOB_ROLE_PLANNER) {
        rc = job_planner_main(cfg);
    } else {
        struct sigaction sa = {.sa_handler = worker_on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        int esize = 1;
        MPI_Comm_size(engine_comm, &esize);
        RT_LOG_DEBUG("engine instance %d: %d rank(s)", color, esize);
        rc = roles[rank] == JOB_ROLE_EXPERT ? job_ep_follower_main(cfg, ep) : job_worker_main(cfg, roles[rank], ep, xfer_comm);
    }
    job_ep_destroy(ep);
    if (xfer_comm != MPI_COMM_NULL) MPI_Comm_free(&xfer_comm);
    if (engine_comm != MPI_COMM_NULL) MPI_Comm_free(&engine_comm);
    /* a failed rank takes the job down rather than leaving others waiting */
    if (rc != 0 && size > 1) {
        RT_LOG_ERROR("rank %d failed; aborting the job", rank);
        MPI_Abort(MPI_COMM_WORLD, rc);
    }
    cfg_destroy(cfg);
    free(roles);
    free(ids);
    MPI_Finalize();
    return rc;
}
