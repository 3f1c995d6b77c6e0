/*
 * rb_workload.c - rotor-bench's workloads: synthetic, shared prefixes,
 * multi-turn sessions and Mooncake trace replay. Builds each request's JSON
 * body (cJSON) and says when it may be sent. See rb_workload.h, and
 * docs/bench-workloads.md for what is sent and how tokens are counted.
 *
 * Reproducibility: every random draw comes from a generator derived from
 * (seed, what is being made): item index, prefix number, user, session and
 * turn, so an item's content does not depend on the order the load engine
 * asks for items or on when completions arrive. Trace blocks are seeded by
 * their hash id alone, so they are the same across runs and seeds.
 *
 * Prompts are token ids (sent as a token-id array) when a tokenizer is loaded
 * and the API is /v1/completions ("id mode"); text otherwise.
 */
#include "rb_workload.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rb_prompt.h"
#include "rb_rng.h"
#include "rb_trace.h"

#define WL_MAX_LEN (1 << 24) /* drawn lengths are clipped to [1, this] */

/* What a generator is for (mixed into its seed). */
enum { WL_S_ITEM = 1, WL_S_PREFIX, WL_S_SYSTEM, WL_S_USER, WL_S_TURN, WL_S_EXTRA, WL_S_SPAN };

/* A prompt, or a piece of one: ids in id mode, else text. tokens: its count
 * (exact with a tokenizer). */
typedef struct {
    int32_t *ids;
    size_t n, cap;
    char *text;
    size_t len, tcap;
    int32_t tokens;
} wl_prompt_t;

typedef struct {
    int32_t turn;        /* turns handed out */
    bool in_flight;      /* a turn was handed out and has not completed */
    double due;          /* when the next turn may go (RB_ASAP before turn 0) */
    cJSON *hist;         /* chat: the messages so far (owned) */
    int32_t hist_tokens; /* chat: tokens of the messages' contents */
    wl_prompt_t acc;     /* completions: the prompt so far */
} wl_session_t;

struct rb_workload {
    rb_workload_opts_t o; /* string pointers replaced by our copies */
    char *model, *gguf, *trace_path;
    rb_prompt_t *pr;
    bool id_mode;
    bool failed;
    char err[512];
    uint64_t made; /* items handed out (the next item's index) */
    int64_t total; /* -1: open-ended */
    /* prefix (shared parts, built at create) */
    wl_prompt_t system, *users, *prefixes;
    /* sessions */
    wl_session_t *sess;
    int64_t sess_made, sess_cap;
    /* trace */
    rb_trace_t *trace;
    size_t trace_n;  /* lines used (cap applied) */
    rb_item_t ahead; /* the next trace item, built ahead of its time */
    bool have_ahead;
};

void rb_workload_opts_default(rb_workload_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->kind = RB_WL_SYNTHETIC;
    o->api = RB_API_CHAT;
    o->input_mean = 550, o->input_stddev = 0;
    o->output_mean = 150, o->output_stddev = 0;
    o->ignore_eos = true;
    o->stream = true;
    o->n_sessions = 10, o->turns = 3;
    o->speed = 1;
    o->block_tokens = 512;
}

/* ---- helpers ---- */

static void wl_rng(rb_rng_t *r, uint64_t seed, uint64_t tag, uint64_t a, uint64_t b) {
    uint64_t x = tag * 0x9e3779b97f4a7c15ull;
    x = rb_splitmix64(&x) ^ a;
    x = rb_splitmix64(&x) ^ b;
    rb_rng_seed2(r, seed, rb_splitmix64(&x));
}

static int32_t wl_len(rb_rng_t *r, double mean, double sd) {
    double v = nearbyint(rb_rng_normal(r, mean, sd));
    return v < 1 ? 1 : v > WL_MAX_LEN ? WL_MAX_LEN : (int32_t)v;
}

static void wl_prompt_free(wl_prompt_t *p) {
    free(p->ids);
    free(p->text);
    memset(p, 0, sizeof *p);
}

static rt_status_t wl_ids_append(wl_prompt_t *p, const int32_t *ids, size_t n) {
    if (p->n + n > p->cap) {
        size_t nc = p->cap ? p->cap : 256;
        while (nc < p->n + n)
            nc *= 2;
        int32_t *ni = realloc(p->ids, nc * sizeof *ni);
        if (!ni) return rt_error_set(RT_ERR_NOMEM, "out of memory (%zu prompt ids)", nc);
        p->ids = ni;
        p->cap = nc;
    }
    memcpy(p->ids + p->n, ids, n * sizeof *ids);
    p->n += n;
    p->tokens = (int32_t)p->n;
    return RT_OK;
}

/* Append a shared part (built by wl_part_make) to a prompt. */
static rt_status_t wl_prompt_add(rb_workload_t *w, wl_prompt_t *p, const wl_prompt_t *part) {
    if (w->id_mode) return wl_ids_append(p, part->ids, part->n);
    rt_status_t st =
        rb_str_append(&p->text, &p->len, &p->tcap, part->text ? part->text : "", part->len);
    if (!st) p->tokens += part->tokens; /* an estimate; wl_prompt_own recounts */
    return st;
}

/* Append n_own random tokens; p->tokens becomes the exact count of the whole
 * prompt (id mode: its length; text: head and new part counted together). */
static rt_status_t wl_prompt_own(rb_workload_t *w, wl_prompt_t *p, rb_rng_t *r, int32_t n_own) {
    rt_status_t st;
    if (w->id_mode) {
        int32_t *ids = malloc((size_t)n_own * sizeof *ids);
        if (!ids) return rt_error_set(RT_ERR_NOMEM, "out of memory (%d prompt ids)", n_own);
        rb_prompt_random_ids(w->pr, r, ids, (size_t)n_own);
        st = wl_ids_append(p, ids, (size_t)n_own);
        free(ids);
        return st;
    }
    char *t = NULL;
    size_t tl = 0;
    int32_t total = 0;
    if ((st = rb_prompt_text(w->pr, r, p->text ? p->text : "", p->len, n_own, &t, &tl, &total)))
        return st;
    st = rb_str_append(&p->text, &p->len, &p->tcap, t, tl);
    free(t);
    if (!st) p->tokens = total;
    return st;
}

/* A shared part of n tokens from its own generator. */
static rt_status_t wl_part_make(rb_workload_t *w, uint64_t tag, uint64_t a, int32_t n,
                                wl_prompt_t *part) {
    rb_rng_t r;
    wl_rng(&r, w->o.seed, tag, a, 0);
    memset(part, 0, sizeof *part);
    rt_status_t st = wl_prompt_own(w, part, &r, n);
    if (st) wl_prompt_free(part);
    return st;
}

/* The prompt as JSON: an id array or a string (NUL-terminated text). */
static cJSON *wl_prompt_json(rb_workload_t *w, const wl_prompt_t *p) {
    if (w->id_mode) return cJSON_CreateIntArray(p->ids, (int)p->n);
    return cJSON_CreateString(p->text ? p->text : "");
}

static cJSON *wl_message(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", role) ||
        !cJSON_AddStringToObject(m, "content", content)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* Finish a body: root holds "model" and "messages"/"prompt"; add the rest,
 * print it into it->body and free root. */
static rt_status_t wl_body(rb_workload_t *w, cJSON *root, int32_t max_tokens, rb_item_t *it) {
    bool ok = root != NULL;
    ok = ok && cJSON_AddNumberToObject(root, "max_tokens", max_tokens);
    if (w->o.api == RB_API_CHAT)
        ok = ok && cJSON_AddNumberToObject(root, "max_completion_tokens", max_tokens);
    ok = ok && cJSON_AddBoolToObject(root, "stream", w->o.stream);
    if (ok && w->o.stream) {
        cJSON *so = cJSON_AddObjectToObject(root, "stream_options");
        ok = so && cJSON_AddBoolToObject(so, "include_usage", 1);
    }
    if (w->o.ignore_eos) ok = ok && cJSON_AddBoolToObject(root, "ignore_eos", 1);
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!s) return rt_error_set(RT_ERR_NOMEM, "out of memory (request body)");
    it->body = s;
    it->body_len = strlen(s);
    it->max_tokens = max_tokens;
    return RT_OK;
}

/* A root object with "model" and the prompt (taken over, also on failure). */
static cJSON *wl_root(rb_workload_t *w, cJSON *prompt) {
    cJSON *root = cJSON_CreateObject();
    if (!root || !prompt || !cJSON_AddStringToObject(root, "model", w->model) ||
        !cJSON_AddItemToObject(root, w->o.api == RB_API_CHAT ? "messages" : "prompt", prompt)) {
        cJSON_Delete(root);
        cJSON_Delete(prompt);
        return NULL;
    }
    return root;
}

/* Body for a one-shot prompt: chat: one user message; completions: prompt. */
static rt_status_t wl_body_single(rb_workload_t *w, const wl_prompt_t *p, int32_t max_tokens,
                                  rb_item_t *it) {
    cJSON *pj;
    if (w->o.api == RB_API_CHAT) {
        pj = cJSON_CreateArray();
        cJSON *m = wl_message("user", p->text ? p->text : "");
        if (!pj || !m || !cJSON_AddItemToArray(pj, m)) {
            cJSON_Delete(pj);
            cJSON_Delete(m);
            pj = NULL;
        }
    } else {
        pj = wl_prompt_json(w, p);
    }
    return wl_body(w, wl_root(w, pj), max_tokens, it);
}

static void wl_item_init(rb_item_t *it, uint64_t index, bool warmup) {
    memset(it, 0, sizeof *it);
    it->index = index;
    it->session = it->turn = -1;
    it->t_arrival = RB_ASAP;
    it->warmup = warmup;
}

/* ---- synthetic and prefix ---- */

static rt_status_t wl_make_single(rb_workload_t *w, bool shared, rb_item_t *it) {
    uint64_t idx = w->made;
    rb_rng_t r;
    wl_rng(&r, w->o.seed, WL_S_ITEM, idx, 0);
    int32_t n_in = wl_len(&r, w->o.input_mean, w->o.input_stddev);
    int32_t n_out = wl_len(&r, w->o.output_mean, w->o.output_stddev);
    wl_prompt_t p = {0};
    rt_status_t st = RT_OK;
    if (shared && w->o.kind == RB_WL_PREFIX) {
        if (w->o.system_prompt_tokens > 0) st = wl_prompt_add(w, &p, &w->system);
        if (!st && w->users) st = wl_prompt_add(w, &p, &w->users[idx % (uint64_t)w->o.n_users]);
        if (!st && w->prefixes)
            st = wl_prompt_add(w, &p, &w->prefixes[rb_rng_below(&r, (uint64_t)w->o.n_prefixes)]);
    }
    if (!st) st = wl_prompt_own(w, &p, &r, n_in);
    if (!st) {
        wl_item_init(it, idx, (int64_t)idx < w->o.n_warmup);
        it->input_tokens = p.tokens;
        st = wl_body_single(w, &p, n_out, it);
    }
    wl_prompt_free(&p);
    return st;
}

/* ---- sessions ---- */

/* Turn t of session s: the history so far plus a new user prompt. */
static rt_status_t wl_make_turn(rb_workload_t *w, int32_t s, rb_item_t *it) {
    wl_session_t *ss = &w->sess[s];
    rb_rng_t r;
    wl_rng(&r, w->o.seed, WL_S_TURN, (uint64_t)s, (uint64_t)ss->turn);
    int32_t n_in = wl_len(&r, w->o.input_mean, w->o.input_stddev);
    int32_t n_out = wl_len(&r, w->o.output_mean, w->o.output_stddev);
    rt_status_t st = RT_OK;
    /* turn 0 begins with the shared system prompt and the user's context */
    wl_prompt_t pre = {0}, user = {0};
    if (ss->turn == 0) {
        if (w->o.system_prompt_tokens > 0) st = wl_prompt_add(w, &pre, &w->system);
        if (!st && w->o.user_context_tokens > 0 &&
            !(st = wl_part_make(w, WL_S_USER, (uint64_t)s, w->o.user_context_tokens, &user)))
            st = wl_prompt_add(w, &pre, &user);
    }
    cJSON *root = NULL;
    if (st) goto out;
    if (w->o.api == RB_API_CHAT) {
        if ((st = wl_prompt_own(w, &pre, &r, n_in))) goto out;
        cJSON *m = wl_message("user", pre.text);
        if (!m || !cJSON_AddItemToArray(ss->hist, m)) {
            cJSON_Delete(m);
            st = rt_error_set(RT_ERR_NOMEM, "out of memory (session history)");
            goto out;
        }
        ss->hist_tokens += pre.tokens;
        root = wl_root(w, cJSON_CreateArrayReference(ss->hist->child)); /* not copied */
        it->input_tokens = ss->hist_tokens;
    } else {
        if (ss->turn == 0 && (st = wl_prompt_add(w, &ss->acc, &pre))) goto out;
        if ((st = wl_prompt_own(w, &ss->acc, &r, n_in))) goto out;
        root = wl_root(w, wl_prompt_json(w, &ss->acc));
        it->input_tokens = ss->acc.tokens;
    }
    st = wl_body(w, root, n_out, it);
out:
    wl_prompt_free(&pre);
    wl_prompt_free(&user);
    return st;
}

/* The session whose next turn is due at now (earliest due first), or -1;
 * *wait: the earliest time one becomes due (INFINITY if none). */
static int32_t wl_session_due(const rb_workload_t *w, double now, double *wait) {
    int32_t best = -1;
    double best_due = INFINITY;
    *wait = INFINITY;
    for (int32_t s = 0; s < w->o.n_sessions; s++) {
        const wl_session_t *ss = &w->sess[s];
        if (ss->in_flight || ss->turn >= w->o.turns) continue;
        if (ss->due <= now) {
            if (ss->due < best_due) best = s, best_due = ss->due;
        } else if (ss->due < *wait) {
            *wait = ss->due;
        }
    }
    return best;
}

static void wl_session_complete(rb_workload_t *w, const rb_item_t *it, bool ok, const char *text,
                                double now) {
    if (it->session < 0 || it->session >= w->o.n_sessions) return;
    wl_session_t *ss = &w->sess[it->session];
    if (!ss->in_flight || it->turn != ss->turn - 1) return; /* not this session's open turn */
    const char *answer = ok && text ? text : "";
    rt_status_t st = RT_OK;
    if (w->o.api == RB_API_CHAT) {
        cJSON *m = wl_message("assistant", answer);
        if (!m || !cJSON_AddItemToArray(ss->hist, m)) {
            cJSON_Delete(m);
            st = rt_error_set(RT_ERR_NOMEM, "out of memory (session history)");
        }
        int32_t n = 0;
        if (!st && !(st = rb_prompt_count(w->pr, answer, strlen(answer), &n))) ss->hist_tokens += n;
    } else if (w->id_mode) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (*answer && !(st = rb_prompt_encode(w->pr, answer, strlen(answer), &ids, &n)))
            st = wl_ids_append(&ss->acc, ids, n);
        free(ids);
    } else {
        st = rb_str_append(&ss->acc.text, &ss->acc.len, &ss->acc.tcap, answer, strlen(answer));
    }
    if (st) {
        w->failed = true;
        snprintf(w->err, sizeof w->err, "session %d: %s", it->session, rt_error_msg());
        fprintf(stderr, "rotor-bench: workload: %s\n", w->err);
    }
    ss->in_flight = false;
    ss->due = now + w->o.think_time_s;
}

/* ---- trace ---- */

/* Line i's time on the clock of its phase: warmup lines from the first line,
 * measured lines from the first measured line (the load engine restarts its
 * clock when the measured phase begins). */
static double wl_trace_due(const rb_workload_t *w, size_t i) {
    size_t base = (int64_t)i < w->o.n_warmup ? 0 : (size_t)w->o.n_warmup;
    return (w->trace->lines[i].timestamp_ms - w->trace->lines[base].timestamp_ms) / 1000.0 /
           w->o.speed;
}

static rt_status_t wl_make_trace(rb_workload_t *w, size_t i, rb_item_t *it) {
    const rb_trace_line_t *l = &w->trace->lines[i];
    size_t n = (size_t)l->input_length, pos = 0;
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return rt_error_set(RT_ERR_NOMEM, "out of memory (%zu prompt ids)", n);
    rb_rng_t r;
    for (int32_t b = 0; b < l->n_hash && pos < n; b++) {
        size_t k = n - pos < (size_t)w->o.block_tokens ? n - pos : (size_t)w->o.block_tokens;
        wl_rng(&r, 0, WL_S_SPAN, (uint64_t)l->hash_ids[b], 0); /* the hash id alone */
        rb_prompt_random_ids(w->pr, &r, ids + pos, k);
        pos += k;
    }
    if (pos < n) { /* more tokens than the blocks hold: this request's own */
        wl_rng(&r, w->o.seed, WL_S_EXTRA, i, 0);
        rb_prompt_random_ids(w->pr, &r, ids + pos, n - pos);
    }
    wl_item_init(it, i, (int64_t)i < w->o.n_warmup);
    it->t_arrival = wl_trace_due(w, i);
    wl_prompt_t p = {.ids = ids, .n = n, .cap = n, .tokens = (int32_t)n};
    rt_status_t st = RT_OK;
    if (!w->id_mode) {
        /* text: decoded once; re-encoding may merge tokens at span edges,
         * so the count is taken from the text */
        if (!(st = rb_prompt_decode(w->pr, ids, n, &p.text, &p.len, &p.tcap)))
            st = rb_prompt_count(w->pr, p.text, p.len, &p.tokens);
    }
    if (!st) {
        it->input_tokens = p.tokens;
        st = wl_body_single(w, &p, l->output_length, it);
    }
    wl_prompt_free(&p);
    return st;
}

/* ---- create / destroy ---- */

static rt_status_t wl_check(const rb_workload_opts_t *o) {
#define BAD(...) return rt_error_set(RT_ERR_INVALID, __VA_ARGS__)
    if (!o->model || !*o->model)
        BAD("workload: a model name is needed (the \"model\" of every request)");
    if (o->n_requests < 0 || o->n_warmup < 0)
        BAD("workload: request and warmup counts must be >= 0");
    if (o->kind != RB_WL_TRACE) {
        if (!(o->input_mean >= 1) || !(o->output_mean >= 1))
            BAD("workload: input and output length means must be >= 1 token");
        if (!(o->input_stddev >= 0) || !(o->output_stddev >= 0))
            BAD("workload: length stddevs must be >= 0");
    }
    if (o->n_prefixes < 0 || o->prefix_tokens < 0 || o->system_prompt_tokens < 0 ||
        o->user_context_tokens < 0 || o->n_users < 0)
        BAD("workload: prefix, system prompt, user context and user counts must be >= 0");
    switch (o->kind) {
    case RB_WL_SYNTHETIC:
        break;
    case RB_WL_PREFIX:
        if ((o->n_prefixes > 0) != (o->prefix_tokens > 0))
            BAD("workload prefix: shared prefixes need both a count and a length (got %d prefixes "
                "of %d tokens)",
                o->n_prefixes, o->prefix_tokens);
        if (o->user_context_tokens > 0 && o->n_users < 1)
            BAD("workload prefix: per-user context needs a number of users >= 1");
        if (o->n_prefixes == 0 && o->system_prompt_tokens == 0 && o->user_context_tokens == 0)
            BAD("workload prefix: give shared prefixes (count and tokens) or a system prompt / "
                "user context");
        break;
    case RB_WL_SESSIONS:
        if (o->n_sessions < 1 || o->turns < 1)
            BAD("workload sessions: sessions and turns must be >= 1");
        if (!(o->think_time_s >= 0)) BAD("workload sessions: think time must be >= 0");
        break;
    case RB_WL_TRACE:
        if (!o->trace_path || !*o->trace_path) BAD("workload trace: a trace file is needed");
        if (!(o->speed > 0) || !isfinite(o->speed)) BAD("workload trace: speed must be > 0");
        if (o->block_tokens < 1) BAD("workload trace: block tokens must be >= 1");
        break;
    default:
        BAD("workload: unknown kind %d", (int)o->kind);
    }
    if (o->api != RB_API_CHAT && o->api != RB_API_COMPLETIONS)
        BAD("workload: unknown API %d", (int)o->api);
    return RT_OK;
#undef BAD
}

static char *wl_strdup(const char *s) {
    return s ? strdup(s) : NULL;
}

rt_status_t rb_workload_create(const rb_workload_opts_t *o, rb_workload_t **out) {
    rt_status_t st = wl_check(o);
    if (st) return st;
    rb_workload_t *w = calloc(1, sizeof *w);
    if (!w) return rt_error_set(RT_ERR_NOMEM, "out of memory");
    w->o = *o;
    w->model = wl_strdup(o->model);
    w->gguf = wl_strdup(o->tokenizer_gguf);
    w->trace_path = wl_strdup(o->trace_path);
    w->o.model = w->model, w->o.tokenizer_gguf = w->gguf, w->o.trace_path = w->trace_path;
    if (!w->model || (o->tokenizer_gguf && !w->gguf) || (o->trace_path && !w->trace_path)) {
        st = rt_error_set(RT_ERR_NOMEM, "out of memory");
        goto err;
    }
    if ((st = rb_prompt_create(w->gguf, &w->pr))) goto err;
    w->id_mode = rb_prompt_exact(w->pr) && o->api == RB_API_COMPLETIONS;

    int64_t n = o->n_requests;
    switch (o->kind) {
    case RB_WL_SYNTHETIC:
        w->total = n > 0 ? o->n_warmup + n : -1;
        break;
    case RB_WL_PREFIX:
        w->total = n > 0 ? o->n_warmup + n : -1;
        if (o->n_prefixes > 0) {
            if (!(w->prefixes = calloc((size_t)o->n_prefixes, sizeof *w->prefixes))) goto nomem;
            for (int j = 0; j < o->n_prefixes; j++)
                if ((st = wl_part_make(w, WL_S_PREFIX, (uint64_t)j, o->prefix_tokens,
                                       &w->prefixes[j])))
                    goto err;
        }
        if (o->user_context_tokens > 0) {
            if (!(w->users = calloc((size_t)o->n_users, sizeof *w->users))) goto nomem;
            for (int u = 0; u < o->n_users; u++)
                if ((st = wl_part_make(w, WL_S_USER, (uint64_t)u, o->user_context_tokens,
                                       &w->users[u])))
                    goto err;
        }
        break;
    case RB_WL_SESSIONS:
        w->sess_cap = (int64_t)o->n_sessions * o->turns;
        if (n > 0 && n < w->sess_cap) w->sess_cap = n;
        w->total = o->n_warmup + w->sess_cap;
        if (!(w->sess = calloc((size_t)o->n_sessions, sizeof *w->sess))) goto nomem;
        for (int s = 0; s < o->n_sessions; s++) {
            w->sess[s].due = RB_ASAP;
            if (o->api == RB_API_CHAT && !(w->sess[s].hist = cJSON_CreateArray())) goto nomem;
        }
        break;
    case RB_WL_TRACE:
        if ((st = rb_trace_load(w->trace_path, &w->trace))) goto err;
        w->trace_n = w->trace->n;
        if (n > 0 && (uint64_t)(o->n_warmup + n) < w->trace_n)
            w->trace_n = (size_t)(o->n_warmup + n);
        w->total = (int64_t)w->trace_n;
        break;
    }
    if (o->system_prompt_tokens > 0 && (o->kind == RB_WL_PREFIX || o->kind == RB_WL_SESSIONS) &&
        (st = wl_part_make(w, WL_S_SYSTEM, 0, o->system_prompt_tokens, &w->system)))
        goto err;
    *out = w;
    return RT_OK;
nomem:
    st = rt_error_set(RT_ERR_NOMEM, "out of memory");
err:
    rb_workload_destroy(w);
    return st;
}

void rb_workload_destroy(rb_workload_t *w) {
    if (!w) return;
    if (w->prefixes)
        for (int j = 0; j < w->o.n_prefixes; j++)
            wl_prompt_free(&w->prefixes[j]);
    if (w->users)
        for (int u = 0; u < w->o.n_users; u++)
            wl_prompt_free(&w->users[u]);
    free(w->prefixes);
    free(w->users);
    wl_prompt_free(&w->system);
    if (w->sess)
        for (int s = 0; s < w->o.n_sessions; s++) {
            cJSON_Delete(w->sess[s].hist);
            wl_prompt_free(&w->sess[s].acc);
        }
    free(w->sess);
    if (w->have_ahead) rb_item_free(&w->ahead);
    rb_trace_destroy(w->trace);
    rb_prompt_destroy(w->pr);
    free(w->model);
    free(w->gguf);
    free(w->trace_path);
    free(w);
}

/* ---- the load engine's side ---- */

static bool wl_fail(rb_workload_t *w, double *next_at) {
    w->failed = true;
    snprintf(w->err, sizeof w->err, "%s", rt_error_msg());
    fprintf(stderr, "rotor-bench: workload: %s\n", w->err);
    if (next_at) *next_at = INFINITY;
    return false;
}

bool rb_workload_next(rb_workload_t *w, double now, rb_item_t *it, double *next_at) {
    if (next_at) *next_at = INFINITY;
    if (w->failed || rb_workload_exhausted(w)) return false;
    rt_status_t st;
    switch (w->o.kind) {
    case RB_WL_SYNTHETIC:
    case RB_WL_PREFIX:
        if ((st = wl_make_single(w, true, it))) return wl_fail(w, next_at);
        break;
    case RB_WL_SESSIONS: {
        if ((int64_t)w->made < w->o.n_warmup) { /* one-shot synthetic requests */
            if ((st = wl_make_single(w, false, it))) return wl_fail(w, next_at);
            break;
        }
        double wait;
        int32_t s = wl_session_due(w, now, &wait);
        if (s < 0) {
            if (next_at) *next_at = wait;
            return false;
        }
        wl_session_t *ss = &w->sess[s];
        wl_item_init(it, w->made, false);
        it->session = s;
        it->turn = ss->turn;
        it->t_arrival = ss->due < 0 ? RB_ASAP : ss->due;
        if ((st = wl_make_turn(w, s, it))) return wl_fail(w, next_at);
        ss->turn++;
        ss->in_flight = true;
        w->sess_made++;
        break;
    }
    case RB_WL_TRACE: {
        size_t i = (size_t)w->made;
        if (!w->have_ahead) {
            if ((st = wl_make_trace(w, i, &w->ahead))) return wl_fail(w, next_at);
            w->have_ahead = true;
        }
        if (w->ahead.t_arrival > now) {
            if (next_at) *next_at = w->ahead.t_arrival;
            return false;
        }
        *it = w->ahead;
        w->have_ahead = false;
        /* the next one is built on the next call, ahead of its time */
        break;
    }
    }
    w->made++;
    if (next_at) *next_at = now;
    return true;
}

void rb_workload_complete(rb_workload_t *w, const rb_item_t *it, bool ok, const char *response_text,
                          double now) {
    if (w->o.kind == RB_WL_SESSIONS && it->session >= 0)
        wl_session_complete(w, it, ok, response_text, now);
}

bool rb_workload_exhausted(const rb_workload_t *w) {
    if (w->failed) return true;
    switch (w->o.kind) {
    case RB_WL_SESSIONS:
        return (int64_t)w->made >= w->o.n_warmup && w->sess_made >= w->sess_cap;
    case RB_WL_TRACE:
        return w->made >= w->trace_n;
    default:
        return w->total >= 0 && (int64_t)w->made >= w->total;
    }
}

int64_t rb_workload_total(const rb_workload_t *w) {
    return w->total;
}

bool rb_workload_exact_tokens(const rb_workload_t *w) {
    return rb_prompt_exact(w->pr);
}

const char *rb_workload_error(const rb_workload_t *w) {
    return w->failed ? w->err : NULL;
}

void rb_item_free(rb_item_t *it) {
    if (!it) return;
    cJSON_free(it->body);
    it->body = NULL;
    it->body_len = 0;
}
