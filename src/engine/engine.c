/*
 * engine.c - the scheduler of one worker's engine (see engine.h): a request
 * table, a waiting queue and a running list; each step schedules decodes
 * first, then chunked prefills under the token budget, builds one
 * model_batch_t over the paged KV pool, runs the backend, samples, commits
 * full blocks to the prefix cache and emits events. Preemption by recompute
 * when the pool cannot hold a running sequence's next token.
 *
 * Memory: request slots (prompt+output token arrays, block tables, samplers)
 * are allocated when a request is added and freed when it finishes; the
 * per-step buffers (batch arrays, logits) are allocated once at create.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rotor/block_pool.h"
#include "rotor/engine.h"
#include "rotor/json_grammar.h"
#include "rotor/kvbm.h"
#include "rotor/log.h"
#include "rotor/spec_ngram.h"
#include "rotor/threadpool.h"

extern const engine_backend_ops_t engine_backend_cpu;
extern const engine_backend_ops_t engine_backend_sim;
extern const engine_backend_ops_t engine_backend_cuda;

static const engine_backend_ops_t *const engine_backends[] = {&engine_backend_cpu, &engine_backend_sim,
                                                              &engine_backend_cuda};

const engine_backend_ops_t *engine_backend_find(const char *name)
{
    for (size_t i = 0; i < sizeof engine_backends / sizeof *engine_backends; i++)
        if (strcmp(engine_backends[i]->name, name ? name : "cpu") == 0) return engine_backends[i];
    return NULL;
}

engine_config_t engine_config_default(void)
{
    engine_config_t c = {.backend = "cpu", .threads = 0, .block_size = 16, .kv_blocks = 0,
                         .kv_bytes = 256ll << 20, .max_num_seqs = 64, .max_num_batched_tokens = 512,
                         .max_model_len = 0, .kv_type = RT_TYPE_F16, .cuda_device = -1, .cuda_graph_max_tokens = 512,
                         .cuda_gemv_max_tokens = 8,
                         .gpu_memory_utilization = 0.9};
    c.sim.gpu = "h100";
    c.sim.shape = "file";
    c.sim.mfu = 0.5;
    c.sim.mbu = 0.8;
    c.sim.overhead_s = 150e-6;
    c.sim.weight_bytes = 2;
    c.sim.kv_bytes = 2;
    c.sim.gpu_memory_utilization = 0.9;
    c.sim.link_gbps = 50;
    return c;
}

typedef enum { SEQ_FREE = 0, SEQ_WAITING, SEQ_RUNNING } seq_state_t;

/* every token's bytes, for constrained decoding: token i's are
 * bytes[off[i] .. off[i + 1]); none for control tokens */
typedef struct {
    char *bytes;   /* owned */
    uint32_t *off; /* (n_vocab + 1) owned */
} token_pieces_t;

typedef struct {
    seq_state_t state;
    uint64_t id;
    int32_t *tokens;       /* (n_prompt + max_tokens) prompt then output, owned */
    int n_prompt, n_tokens, max_tokens, min_tokens;
    int n_computed;        /* tokens whose KV is in the cache */
    int n_draft;           /* speculative tokens after n_tokens (in tokens[]) fed in this step */
    int draft_len;         /* the most drafts to feed next time (adapts to what was accepted) */
    int n_cached;          /* prompt tokens that came from the prefix cache */
    int32_t *blocks;       /* (max_blocks) block table, owned */
    int n_blocks, max_blocks;
    int n_committed;       /* leading full blocks already in the prefix cache */
    uint64_t *seq_hashes;  /* (max_blocks) chained hashes of the full blocks, owned */
    uint64_t *blk_hashes;  /* (max_blocks) owned */
    sampler_t *sampler;    /* owned */
    bool ignore_eos, cancelled;
    int32_t *stop_tokens;  /* owned */
    int n_stop_tokens;
    int top_n;             /* top logprobs per token */
    bool want_logprob;     /* the chosen token's logprob per token */
    bool prefill_only;     /* finish with PREFILL once the prompt is computed */
    bool prompt_lp;        /* PROMPT_LOGPROB events for its prompt tokens */
    int lp_next;           /* the next prompt token to give a PROMPT_LOGPROB (1 .. n_prompt) */
    double t_scheduled;    /* CLOCK_REALTIME s of its first step, 0 before */
    double t_prefill_done; /* CLOCK_REALTIME s when its prompt was first all computed */
    uint64_t admit_order;  /* for preemption: the newest running goes first */
    int constraint;        /* engine_constraint_t */
    json_state_t json;     /* ENGINE_CONSTRAINT_JSON_OBJECT: the output so far */
    const token_pieces_t *pieces; /* the engine's, when constrained */
} seq_t;

struct engine {
    engine_config_t cfg;
    const engine_backend_ops_t *ops;
    void *backend;
    const tok_vocab_t *vocab;
    int n_vocab, n_blocks, max_model_len;
    int32_t *eog;          /* (n_eog) the vocabulary's end-of-generation ids, owned */
    int n_eog;
    bp_pool_t *pool;
    seq_t *seqs;           /* (max_slots) */
    int max_slots;
    int *waiting;          /* (max_slots) FIFO of slot indices */
    int n_waiting;
    int *running;          /* (max_num_seqs) slot indices */
    int n_running;
    uint64_t admit_counter;
    int n_preempted;
    int64_t prefix_query, prefix_hit; /* prompt tokens looked up / found at first admission */
    kvbm_t *kvbm;                     /* the host tier (G2), NULL if none */
    kvbm_disk_t *disk;                /* the disk tier (G3), NULL if none */
    void *scratch_out, *scratch_in;   /* a block each: offload to disk / onboard from it */
    int64_t offloaded, onboarded;     /* blocks, ever */
    int64_t spec_drafted, spec_accepted; /* speculative draft tokens verified / accepted, ever */
    engine_logits_fn observer;
    void *observer_ud;
    /* per-step buffers, (max_num_batched_tokens) */
    int32_t *b_tokens, *b_pos, *b_seq;
    uint8_t *b_logits;
    kv_block_table_t *b_tables; /* (max_num_seqs) */
    int *b_slot;                /* (max_num_seqs) slot of batch sequence i */
    int *b_count;               /* (max_num_seqs) tokens of batch sequence i */
    int *b_lp;                  /* (max_num_seqs) its prompt-logprob rows (PROMPT_LOGPROB events) */
    /* rows sampled ahead in parallel (presample): batch index, logits row, result */
    int *pre_idx, *pre_row;     /* (max_num_seqs) */
    engine_event_t *pre;        /* (max_num_seqs) TOKEN event of batch sequence i, if pre_ok[i] */
    uint8_t *pre_ok;            /* (max_num_seqs) */
    int *order;                 /* (max_slots) scratch copy of running */
    uint8_t *scheduled;         /* (max_slots) scheduled in this step */
    float *logits;              /* (max_num_seqs * (1 + spec.tokens) + ENGINE_PROMPT_LOGPROB_ROWS, n_vocab) */
    token_pieces_t pieces;      /* built at the first constrained request */
};

/* ---------------------------------------------------------------- helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now_real_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void seq_free(seq_t *s)
{
    free(s->tokens);
    free(s->blocks);
    free(s->seq_hashes);
    free(s->blk_hashes);
    free(s->stop_tokens);
    sampler_destroy(s->sampler);
    memset(s, 0, sizeof *s);
}

/* give back every block of s (prefix-cached ones stay cached) */
static void seq_release_blocks(engine_t *e, seq_t *s)
{
    if (s->n_blocks && bp_release(e->pool, s->blocks, (size_t)s->n_blocks) != RT_OK)
        abort(); /* a block table holding a reference we do not own: broken invariant */
    s->n_blocks = 0;
    s->n_committed = 0;
    s->n_computed = 0;
}

static bool is_stop_token(const engine_t *e, const seq_t *s, int32_t t)
{
    if (!s->ignore_eos && tok_is_eog(e->vocab, t)) return true;
    for (int i = 0; i < s->n_stop_tokens; i++)
        if (s->stop_tokens[i] == t) return true;
    return false;
}

/* hash the full blocks of s's tokens [0, n_computed) not yet committed and
 * put them in the prefix cache */
static void seq_commit_blocks(engine_t *e, seq_t *s)
{
    const int B = e->cfg.block_size;
    const int full = s->n_computed / B;
    while (s->n_committed < full) {
        const int j = s->n_committed;
        const uint64_t parent = j ? s->seq_hashes[j - 1] : 0;
        s->blk_hashes[j] = bp_hash_block(s->tokens + (size_t)j * B, B);
        s->seq_hashes[j] = j ? bp_hash_chain(parent, s->blk_hashes[j]) : s->blk_hashes[j];
        int32_t use = s->blocks[j];
        if (bp_commit_full(e->pool, s->blocks[j], s->blk_hashes[j], s->seq_hashes[j], j ? &parent : NULL, B,
                           &use) == RT_OK)
            s->blocks[j] = use; /* may be another block caching the same prefix */
        s->n_committed++;
    }
}

/* make room for s's positions [0, upto): allocate blocks past its table */
static rt_status_t seq_grow(engine_t *e, seq_t *s, int upto)
{
    const int B = e->cfg.block_size;
    const int need = (upto + B - 1) / B - s->n_blocks;
    if (need <= 0) return RT_OK;
    if (s->n_blocks + need > s->max_blocks) return rt_error_set(RT_ERR_INTERNAL, "engine: block table overflow");
    rt_status_t st = bp_alloc(e->pool, (size_t)need, s->blocks + s->n_blocks);
    if (st) return st;
    s->n_blocks += need;
    return RT_OK;
}

static void running_remove(engine_t *e, int slot)
{
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i] == slot) {
            memmove(e->running + i, e->running + i + 1, (size_t)(e->n_running - i - 1) * sizeof *e->running);
            e->n_running--;
            return;
        }
}

static void waiting_remove(engine_t *e, int slot)
{
    for (int i = 0; i < e->n_waiting; i++)
        if (e->waiting[i] == slot) {
            memmove(e->waiting + i, e->waiting + i + 1, (size_t)(e->n_waiting - i - 1) * sizeof *e->waiting);
            e->n_waiting--;
            return;
        }
}

/* preempt the most recently admitted running sequence (other than keep):
 * release its KV, back to the front of the waiting queue to be recomputed */
static bool preempt_one(engine_t *e, int keep)
{
    int victim = -1;
    for (int i = 0; i < e->n_running; i++) {
        const int sl = e->running[i];
        if (sl == keep || e->scheduled[sl]) continue; /* never one already in this batch */
        if (victim < 0 || e->seqs[sl].admit_order > e->seqs[victim].admit_order) victim = sl;
    }
    if (victim < 0) return false;
    seq_t *s = &e->seqs[victim];
    running_remove(e, victim);
    seq_release_blocks(e, s);
    s->state = SEQ_WAITING;
    memmove(e->waiting + 1, e->waiting, (size_t)e->n_waiting * sizeof *e->waiting);
    e->waiting[0] = victim;
    e->n_waiting++;
    e->n_preempted++;
    return true;
}

static void emit(engine_event_t *ev, size_t cap, size_t *n, engine_event_t x)
{
    if (*n < cap) ev[(*n)++] = x;
}

static void finish(engine_t *e, int slot, engine_finish_t why, engine_event_t *ev, size_t cap, size_t *n)
{
    seq_t *s = &e->seqs[slot];
    engine_event_t x = {.kind = ENGINE_EV_FINISH, .request_id = s->id, .finish = why, .n_prompt = s->n_prompt,
                        .n_cached = s->n_cached, .n_generated = s->n_tokens - s->n_prompt,
                        .t_scheduled = s->t_scheduled, .t_prefill_done = s->t_prefill_done};
    emit(ev, cap, n, x);
    if (s->state == SEQ_RUNNING) running_remove(e, slot);
    else if (s->state == SEQ_WAITING) waiting_remove(e, slot);
    seq_release_blocks(e, s);
    seq_free(s);
}

/* ------------------------------------------------------------------- step */

static void publish_tier(engine_t *e, bp_event_kind_t kind, int32_t tier, const kvbm_key_t *k)
{
    const bp_event_t ev = {.kind = kind, .tier = tier, .block_id = -1, .seq_hash = k->seq_hash,
                           .block_hash = k->block_hash, .parent_hash = k->has_parent ? k->parent_hash : 0,
                           .has_parent = k->has_parent, .n_tokens = k->n_tokens};
    bp_publish(e->pool, &ev);
}

/* a block leaving G2 (or G1, without G2) for the disk tier; a write error
 * loses only the block */
static void to_disk(engine_t *e, const kvbm_key_t *key, const void *src)
{
    kvbm_key_t dropped;
    bool did_drop, stored;
    if (kvbm_disk_put(e->disk, key, src, &dropped, &did_drop, &stored) != RT_OK)
        RT_LOG_WARN("KV disk tier: %s; the block is dropped", rt_error_msg());
    if (did_drop) publish_tier(e, BP_EV_REMOVED, BP_TIER_G3, &dropped);
    if (stored) publish_tier(e, BP_EV_STORED, BP_TIER_G3, key);
}

/* bp_alloc evicts block id from G1: keep a copy in the host tier (G2), and
 * what that drops on disk (G3); without G2, straight to disk */
static void offload(void *ud, int32_t id, const bp_block_info_t *info)
{
    engine_t *e = ud;
    const kvbm_key_t key = {.seq_hash = info->seq_hash, .block_hash = info->block_hash,
                            .parent_hash = info->parent_hash, .has_parent = info->has_parent,
                            .n_tokens = info->n_tokens};
    if (!e->kvbm) {
        e->ops->block_read(e->backend, id, e->scratch_out);
        to_disk(e, &key, e->scratch_out);
        e->offloaded++;
        return;
    }
    kvbm_key_t dropped;
    bool did_drop;
    void *buf = kvbm_put(e->kvbm, &key, &dropped, &did_drop);
    if (did_drop) { /* buf holds the dropped block's bytes until read over below */
        publish_tier(e, BP_EV_REMOVED, BP_TIER_G2, &dropped);
        if (e->disk) to_disk(e, &dropped, buf);
    }
    if (!buf) return; /* already held there */
    e->ops->block_read(e->backend, id, buf);
    e->offloaded++;
    publish_tier(e, BP_EV_STORED, BP_TIER_G2, &key);
}

/* Blocks hit..full-1 of s from the host tier, else the disk tier, while
 * they have them and G1 has room: each is copied into a fresh G1 block and
 * committed there (a G1 STORED event). Returns the new hit count. */
static int onboard(engine_t *e, seq_t *s, int hit, int full)
{
    const int B = e->cfg.block_size;
    for (; hit < full; hit++) {
        /* found (now its tier's most recent, so the evictions bp_alloc may
         * cause - one G1 block, one drop of the least recent per tier -
         * spare it; a disk block is in scratch_in, which offload leaves) */
        const void *src = e->kvbm ? kvbm_get(e->kvbm, s->seq_hashes[hit]) : NULL;
        if (!src && e->disk && kvbm_disk_get(e->disk, s->seq_hashes[hit], e->scratch_in) == RT_OK)
            src = e->scratch_in;
        int32_t id;
        if (!src || bp_alloc(e->pool, 1, &id) != RT_OK) break;
        e->ops->block_write(e->backend, id, src);
        int32_t use = id;
        if (bp_commit_full(e->pool, id, s->blk_hashes[hit], s->seq_hashes[hit], hit ? &s->seq_hashes[hit - 1] : NULL,
                           B, &use) != RT_OK)
            abort(); /* a block just allocated and held: broken invariant */
        s->blocks[hit] = use;
        e->onboarded++;
    }
    return hit;
}

/* admit slot: prefix-match its full blocks (never the one holding the last
 * known token, whose logits we need), in G1 and then in the host tier */
static void admit(engine_t *e, int slot)
{
    seq_t *s = &e->seqs[slot];
    const int B = e->cfg.block_size;
    const int full = (s->n_tokens - 1) / B;
    for (int j = 0; j < full; j++) {
        s->blk_hashes[j] = bp_hash_block(s->tokens + (size_t)j * B, B);
        s->seq_hashes[j] = j ? bp_hash_chain(s->seq_hashes[j - 1], s->blk_hashes[j]) : s->blk_hashes[j];
    }
    /* prompt logprobs still owed: compute the prompt from its start */
    const bool whole = s->prompt_lp && s->lp_next < s->n_prompt;
    int hit = whole ? 0 : (int)bp_match_prefix(e->pool, s->seq_hashes, (size_t)full, s->blocks);
    if ((e->kvbm || e->disk) && !whole) hit = onboard(e, s, hit, full);
    s->n_blocks = hit;
    s->n_committed = hit;
    s->n_computed = hit * B;
    s->state = SEQ_RUNNING;
    s->admit_order = ++e->admit_counter;
    e->running[e->n_running++] = slot;
}

typedef struct {
    int nt, nseq, n_pre, n_dec, budget;
    int lp_rows; /* logits rows left for prompt logprobs */
} plan_t;

/* put up to max tokens of slot's pending tokens (and its s->n_draft draft
 * tokens) in the batch; 0 if no room */
static int schedule(engine_t *e, plan_t *pl, int slot, bool may_preempt)
{
    seq_t *s = &e->seqs[slot];
    int chunk = s->n_tokens + s->n_draft - s->n_computed;
    if (chunk > pl->budget) chunk = pl->budget;
    /* prompt logprobs owed: positions lp_next - 1 .. n_prompt - 2 give them,
     * a row each, as many as the step has rows left */
    int lp = 0;
    const int lp_lo = s->prompt_lp && s->lp_next - 1 > s->n_computed ? s->lp_next - 1 : s->n_computed;
    if (s->prompt_lp && lp_lo <= s->n_prompt - 2) {
        const int lp_hi = s->n_computed + chunk - 1 < s->n_prompt - 2 ? s->n_computed + chunk - 1 : s->n_prompt - 2;
        lp = lp_hi >= lp_lo ? lp_hi - lp_lo + 1 : 0;
        if (lp > pl->lp_rows) {
            lp = pl->lp_rows;
            chunk = lp_lo + lp - s->n_computed;
        }
    }
    if (chunk <= 0) return 0;
    while (seq_grow(e, s, s->n_computed + chunk) != RT_OK) {
        if (!may_preempt || !preempt_one(e, slot)) return 0;
    }
    const int i = pl->nseq++;
    e->b_tables[i] = (kv_block_table_t){s->blocks, s->n_blocks};
    e->b_slot[i] = slot;
    e->b_count[i] = chunk;
    e->b_lp[i] = lp;
    pl->lp_rows -= lp;
    for (int k = 0; k < chunk; k++) {
        const int p = s->n_computed + k;
        e->b_tokens[pl->nt] = s->tokens[p];
        e->b_pos[pl->nt] = p;
        e->b_seq[pl->nt] = i;
        /* the last token's and the drafts', and the prompt logprobs' */
        e->b_logits[pl->nt] = (p >= s->n_tokens - 1 && !s->prefill_only) || (p >= lp_lo && p < lp_lo + lp);
        pl->nt++;
    }
    pl->budget -= chunk;
    if (s->n_computed == s->n_tokens - 1 && s->n_tokens > s->n_prompt) pl->n_dec += chunk;
    else pl->n_pre += chunk;
    return chunk;
}

/* Schedule a decode (one pending token) with up to spec.tokens n-gram
 * drafts: tokens it may still emit bound them (the drafts and the bonus
 * token all fit tokens[] and the block table), and so do the step's budget
 * and free blocks, since drafts never preempt anyone. Falls back to a plain
 * decode, which may preempt. */
static int schedule_decode(engine_t *e, plan_t *pl, int slot, bool draft)
{
    seq_t *s = &e->seqs[slot];
    s->n_draft = 0;
    if (draft) {
        int k = s->draft_len, left = s->max_tokens - (s->n_tokens - s->n_prompt);
        if (left > e->max_model_len - s->n_tokens) left = e->max_model_len - s->n_tokens;
        if (k > left - 1) k = left - 1;
        if (k > pl->budget - 1) k = pl->budget - 1;
        if (k > 0)
            s->n_draft = spec_ngram_propose(s->tokens, s->n_tokens, e->cfg.spec.ngram_min, e->cfg.spec.ngram_max,
                                            s->tokens + s->n_tokens, k);
        if (s->n_draft > 0) {
            const int got = schedule(e, pl, slot, false);
            if (got == 1 + s->n_draft) return got;
            if (got) abort(); /* the budget was checked: a partial draft is a broken invariant */
            s->n_draft = 0;
        }
    }
    return schedule(e, pl, slot, true);
}

/* Sample s's next token from its logits row lg, append it and emit its
 * TOKEN event; the finish reason it brings (NONE: go on). */
/* s's next token from its logits row lg (modified: penalties, temperature):
 * the TOKEN event, not yet emitted; s itself is not advanced. Touches only
 * s and its sampler, so different sequences' rows may be drawn at once. */
static engine_event_t draw_token(seq_t *s, float *lg)
{
    if (s->min_tokens) sampler_suppress(s->sampler, s->n_tokens - s->n_prompt < s->min_tokens);
    engine_event_t x = {.kind = ENGINE_EV_TOKEN, .request_id = s->id};
    if (s->top_n > 0) x.n_top = sampler_top_logprobs(s->sampler, lg, s->top_n, x.top_ids, x.top_logprobs);
    x.token = sampler_sample(s->sampler, lg, s->want_logprob ? &x.logprob : NULL);
    return x;
}

/* Constrained decoding (sampler_set_constraint): may token id come next? */
static bool constraint_allows(void *ud, int32_t id)
{
    const seq_t *s = ud;
    const uint32_t a = s->pieces->off[id], b = s->pieces->off[id + 1];
    if (a == b) return false; /* no text (control tokens, end of generation): the request ends when the object does */
    json_state_t t = s->json;
    return json_state_feed(&t, s->pieces->bytes + a, b - a);
}

static bool constraint_advance(seq_t *s, int32_t id)
{
    const uint32_t a = s->pieces->off[id], b = s->pieces->off[id + 1];
    return a < b && json_state_feed(&s->json, s->pieces->bytes + a, b - a);
}

/* the vocabulary's bytes, once, for the first constrained request */
static rt_status_t pieces_build(engine_t *e)
{
    if (e->pieces.off) return RT_OK;
    if (!e->vocab) return rt_error_set(RT_ERR_UNSUPPORTED, "engine: constrained decoding needs a tokenizer");
    size_t cap = (size_t)e->n_vocab * 8, n = 0;
    char *bytes = malloc(cap);
    uint32_t *off = malloc(((size_t)e->n_vocab + 1) * sizeof *off);
    char piece[256];
    for (int32_t i = 0; bytes && off && i < e->n_vocab; i++) {
        off[i] = (uint32_t)n;
        if (tok_is_control(e->vocab, i) || tok_is_eog(e->vocab, i)) continue;
        size_t k = tok_token_to_piece(e->vocab, i, piece, sizeof piece, false);
        if (k > sizeof piece) k = 0; /* longer than any piece should be: never allowed */
        if (n + k > cap) {
            char *g = realloc(bytes, cap * 2);
            if (!g) {
                free(bytes);
                bytes = NULL;
                break;
            }
            bytes = g;
            cap *= 2;
        }
        memcpy(bytes + n, piece, k);
        n += k;
    }
    if (!bytes || !off) {
        free(bytes);
        free(off);
        return rt_error_set(RT_ERR_NOMEM, "engine: out of memory");
    }
    off[e->n_vocab] = (uint32_t)n;
    e->pieces = (token_pieces_t){bytes, off};
    return RT_OK;
}

/* sample s's next token from lg, or take the one drawn ahead (pre), and
 * emit it */
static engine_finish_t sample_one(engine_t *e, seq_t *s, float *lg, const engine_event_t *pre, engine_event_t *ev,
                                  size_t cap, size_t *n)
{
    engine_event_t x;
    if (pre) {
        x = *pre;
    } else {
        if (e->observer) e->observer(e->observer_ud, s->id, s->n_tokens - s->n_prompt, lg, e->n_vocab);
        x = draw_token(s, lg);
    }
    const int32_t tok = x.token;
    /* constrained: the sampler chose an allowed token unless none was */
    if (s->constraint && !constraint_advance(s, tok)) return ENGINE_FINISH_STOP;
    sampler_accept(s->sampler, tok);
    s->tokens[s->n_tokens++] = tok;
    emit(ev, cap, n, x);
    if (is_stop_token(e, s, tok)) return ENGINE_FINISH_STOP;
    if (s->constraint && json_state_done(&s->json)) return ENGINE_FINISH_STOP; /* the object is whole */
    if (s->n_tokens - s->n_prompt >= s->max_tokens || s->n_tokens >= e->max_model_len) return ENGINE_FINISH_LENGTH;
    return ENGINE_FINISH_NONE;
}

/* PROMPT_LOGPROB events for s's next n prompt tokens from lg's n rows (the
 * logits after the token before each). */
static void emit_prompt_logprobs(engine_t *e, seq_t *s, const float *lg, int n, engine_event_t *ev, size_t cap,
                                 size_t *n_ev)
{
    for (int j = 0; j < n; j++, s->lp_next++) {
        const float *row = lg + (size_t)j * e->n_vocab;
        engine_event_t x = {.kind = ENGINE_EV_PROMPT_LOGPROB, .request_id = s->id, .position = s->lp_next,
                            .token = s->tokens[s->lp_next]};
        if (s->top_n > 0) x.n_top = sampler_top_logprobs(s->sampler, row, s->top_n, x.top_ids, x.top_logprobs);
        x.logprob = sampler_token_logprob(s->sampler, row, x.token);
        emit(ev, cap, n_ev, x);
    }
}

/* A decode with s->n_draft drafts at tokens[n_tokens..): its rows lg are
 * the logits after the pending token and after each draft. Sample them in
 * order exactly as plain decoding would, one token per row, keeping on
 * while the sampled token equals the draft the next row assumed; the first
 * mismatch (or a finish) drops the rest, and sets how many drafts the
 * sequence gets next time. The KV of every kept token is now
 * computed; the drafts' past it is overwritten later. Returns the rows
 * (1 + n_draft), all computed. */
static int sample_drafted(engine_t *e, int slot, float *lg, engine_event_t *ev, size_t cap, size_t *n)
{
    seq_t *s = &e->seqs[slot];
    const int k = s->n_draft;
    engine_finish_t why = ENGINE_FINISH_NONE;
    int accepted = 0;
    for (int j = 0; j <= k; j++) {
        const int32_t assumed = j < k ? s->tokens[s->n_tokens] : -1; /* sample_one overwrites it */
        why = sample_one(e, s, lg + (size_t)j * e->n_vocab, NULL, ev, cap, n);
        if (why || j == k || s->tokens[s->n_tokens - 1] != assumed) break;
        accepted++;
    }
    e->spec_drafted += k;
    e->spec_accepted += accepted;
    /* the next draft: twice as long after a full acceptance, else one past
     * what was kept, so a sequence whose drafts keep failing verifies one
     * draft token a step (a little compute) instead of spec.tokens */
    s->draft_len = accepted == k ? 2 * k : accepted + 1;
    if (s->draft_len > e->cfg.spec.tokens) s->draft_len = e->cfg.spec.tokens;
    s->n_draft = 0;
    s->n_computed = s->n_tokens - 1;
    seq_commit_blocks(e, s);
    if (why) finish(e, slot, why, ev, cap, n);
    return k + 1;
}

/* Rows sampled ahead, in parallel: a step's plain rows (one token of a
 * sequence that is not verifying drafts) are drawn on the backend's threads
 * into e->pre before the output loop emits them in order. Each sequence's
 * sampler is its own (its RNG, penalties, scratch), so the tokens are the
 * ones serial sampling would draw. The cost it spreads: a row's log-sum-exp
 * and selection over the vocabulary, about 40 us for 49,152 entries, which
 * at 64 sequences was half of a GPU decode step. */
typedef struct {
    engine_t *e;
    int n;
} presample_t;

static void presample_worker(void *arg, int ith, int nth)
{
    const presample_t *p = arg;
    engine_t *e = p->e;
    int64_t lo, hi;
    threadpool_split(p->n, ith, nth, 1, &lo, &hi);
    for (int64_t j = lo; j < hi; j++) {
        const int i = e->pre_idx[j];
        e->pre[i] = draw_token(&e->seqs[e->b_slot[i]], e->logits + (size_t)e->pre_row[j] * e->n_vocab);
    }
}

#define PRESAMPLE_MIN_ROWS 4 /* fewer: serially, as the output loop would */

static void presample(engine_t *e, int nseq)
{
    memset(e->pre_ok, 0, (size_t)nseq);
    threadpool_t *pool = e->ops->pool ? e->ops->pool(e->backend) : NULL;
    if (!pool || threadpool_size(pool) < 2 || nseq < PRESAMPLE_MIN_ROWS) return;
    int n = 0, row = 0; /* the rows as the output loop will walk them */
    for (int i = 0; i < nseq; i++) {
        const seq_t *s = &e->seqs[e->b_slot[i]];
        if (s->n_draft > 0) {
            row += s->n_draft + 1;
            continue;
        }
        row += e->b_lp[i];
        if (s->n_computed + e->b_count[i] != s->n_tokens || s->prefill_only) continue;
        e->pre_idx[n] = i;
        e->pre_row[n++] = row++;
    }
    if (n < PRESAMPLE_MIN_ROWS) return;
    if (e->observer) /* it sees the rows before sampling changes them */
        for (int j = 0; j < n; j++) {
            const seq_t *s = &e->seqs[e->b_slot[e->pre_idx[j]]];
            e->observer(e->observer_ud, s->id, s->n_tokens - s->n_prompt, e->logits + (size_t)e->pre_row[j] * e->n_vocab,
                        e->n_vocab);
        }
    presample_t p = {e, n};
    threadpool_run(pool, presample_worker, &p);
    for (int j = 0; j < n; j++) e->pre_ok[e->pre_idx[j]] = 1;
}

/* The engine's state (per-step fields zero). */
static void fill_stats(const engine_t *e, engine_step_stats_t *stats)
{
    bp_stats_t bs;
    bp_stats(e->pool, &bs);
    *stats = (engine_step_stats_t){.n_running = e->n_running, .n_waiting = e->n_waiting,
                                   .n_preempted_total = e->n_preempted, .blocks_total = bs.total,
                                   .blocks_used = bs.used, .blocks_cached = bs.cached, .blocks_free = bs.free,
                                   .prefix_query_tokens_total = e->prefix_query,
                                   .prefix_hit_tokens_total = e->prefix_hit,
                                   .kvbm_offloaded_total = e->offloaded,
                                   .kvbm_onboarded_total = e->onboarded,
                                   .spec_draft_tokens_total = e->spec_drafted,
                                   .spec_accepted_tokens_total = e->spec_accepted};
    kvbm_stats_t ks;
    if (e->kvbm) {
        kvbm_stats(e->kvbm, &ks);
        stats->kvbm_blocks = (int32_t)ks.held;
        stats->kvbm_capacity = (int32_t)ks.capacity;
    }
    if (e->disk) {
        kvbm_disk_stats(e->disk, &ks);
        stats->kvbm_disk_blocks = (int32_t)ks.held;
        stats->kvbm_disk_capacity = (int32_t)ks.capacity;
    }
}

rt_status_t engine_step(engine_t *e, engine_event_t *ev, size_t cap, size_t *n_events, engine_step_stats_t *stats)
{
    const double t0 = now_s(), t0_real = now_real_s();
    const int64_t drafted0 = e->spec_drafted, accepted0 = e->spec_accepted;
    size_t n = 0;
    *n_events = 0;
    const size_t need = engine_events_min(e);
    if (cap < need) return rt_error_set(RT_ERR_INVALID, "engine_step: event buffer of %zu < %zu", cap, need);
    /* cancelled requests end first; if their FINISH events leave less room
     * than a full step needs (a token and a finish per sequence), this call
     * only ends cancellations and the next one steps: no event is dropped */
    bool more_cancels = false;
    for (int i = 0; i < e->max_slots; i++) {
        if (e->seqs[i].state == SEQ_FREE || !e->seqs[i].cancelled) continue;
        if (n == cap) {
            more_cancels = true;
            break;
        }
        finish(e, i, ENGINE_FINISH_CANCELLED, ev, cap, &n);
    }
    if (more_cancels || cap - n < need) {
        if (stats) {
            fill_stats(e, stats);
            stats->step_s = now_s() - t0;
        }
        *n_events = n;
        return RT_OK;
    }

    /* prompt logprobs take the event buffer's room beyond the minimum */
    const size_t spare = cap - n - need;
    plan_t pl = {.budget = e->cfg.max_num_batched_tokens,
                 .lp_rows = spare < ENGINE_PROMPT_LOGPROB_ROWS ? (int)spare : ENGINE_PROMPT_LOGPROB_ROWS};
    /* 1. decodes first (one pending token), oldest first; preempting the
     * newest; with n-gram drafts while few sequences run (the step is
     * memory-bound there, so verifying drafts costs little) */
    memcpy(e->order, e->running, (size_t)e->n_running * sizeof *e->order);
    int n_order = e->n_running;
    const bool draft = e->cfg.spec.tokens > 0 && e->n_running <= e->cfg.spec.max_running;
    for (int r = 0; r < n_order && pl.budget > 0; r++) {
        const int sl = e->order[r];
        seq_t *s = &e->seqs[sl];
        if (s->state != SEQ_RUNNING || s->n_tokens - s->n_computed != 1 || e->scheduled[sl]) continue;
        if (schedule_decode(e, &pl, sl, draft && !s->prefill_only)) e->scheduled[sl] = 1;
    }
    /* 2. running prefills continue, chunked */
    for (int r = 0; r < e->n_running && pl.budget > 0; r++) {
        const int sl = e->running[r];
        if (e->scheduled[sl]) continue;
        if (schedule(e, &pl, sl, false)) e->scheduled[sl] = 1;
    }
    /* 3. admit waiting requests while there is budget, room and blocks */
    while (e->n_waiting > 0 && e->n_running < e->cfg.max_num_seqs && pl.budget > 0) {
        const int sl = e->waiting[0];
        admit(e, sl);
        memmove(e->waiting, e->waiting + 1, (size_t)(e->n_waiting - 1) * sizeof *e->waiting);
        e->n_waiting--;
        if (!schedule(e, &pl, sl, false)) {
            /* no blocks: back to the queue's front, as it was */
            seq_t *s = &e->seqs[sl];
            running_remove(e, sl);
            seq_release_blocks(e, s);
            s->state = SEQ_WAITING;
            memmove(e->waiting + 1, e->waiting, (size_t)e->n_waiting * sizeof *e->waiting);
            e->waiting[0] = sl;
            e->n_waiting++;
            break;
        }
        e->scheduled[sl] = 1;
        seq_t *s = &e->seqs[sl];
        if (s->t_scheduled == 0.0) { /* first admission (not a resumed preemption) */
            s->t_scheduled = t0_real;
            s->n_cached = s->n_computed;
            e->prefix_query += s->n_prompt;
            e->prefix_hit += s->n_computed;
        }
    }

    rt_status_t st = RT_OK;
    double forward_s = 0;
    if (pl.nseq > 0) {
        model_batch_t b = {pl.nt, e->b_tokens, e->b_pos, e->b_seq, e->b_logits, e->b_tables, pl.nseq};
        const double tf = now_s();
        st = e->ops->forward(e->backend, &b, e->logits);
        forward_s = now_s() - tf;
    }
    const double t_fwd_real = pl.nseq > 0 ? now_real_s() : t0_real;
    if (!st) presample(e, pl.nseq);
    /* outputs: advance, commit full blocks, sample where the batch had logits */
    int row = 0;
    for (int i = 0; i < pl.nseq; i++) {
        const int sl = e->b_slot[i];
        seq_t *s = &e->seqs[sl];
        e->scheduled[sl] = 0;
        if (st) {
            engine_event_t x = {.kind = ENGINE_EV_ERROR, .request_id = s->id, .status = st};
            emit(ev, cap, &n, x);
            finish(e, sl, ENGINE_FINISH_ERROR, ev, cap, &n);
            continue;
        }
        if (s->n_draft > 0) {
            row += sample_drafted(e, sl, e->logits + (size_t)row * e->n_vocab, ev, cap, &n);
            continue;
        }
        if (e->b_lp[i] > 0) {
            emit_prompt_logprobs(e, s, e->logits + (size_t)row * e->n_vocab, e->b_lp[i], ev, cap, &n);
            row += e->b_lp[i];
        }
        s->n_computed += e->b_count[i];
        if (s->t_prefill_done == 0.0 && s->n_computed >= s->n_prompt) s->t_prefill_done = t_fwd_real;
        seq_commit_blocks(e, s);
        if (s->n_computed != s->n_tokens) continue; /* prefill not done */
        if (s->prefill_only) { /* no logits were asked for: no row */
            finish(e, sl, ENGINE_FINISH_PREFILL, ev, cap, &n);
            continue;
        }
        const engine_finish_t why =
            sample_one(e, s, e->logits + (size_t)row++ * e->n_vocab, e->pre_ok[i] ? &e->pre[i] : NULL, ev, cap, &n);
        if (why) finish(e, sl, why, ev, cap, &n);
    }
    if (stats) {
        fill_stats(e, stats);
        stats->n_seqs = pl.nseq;
        stats->n_prefill_tokens = pl.n_pre;
        stats->n_decode_tokens = pl.n_dec;
        stats->n_spec_draft_tokens = (int)(e->spec_drafted - drafted0);
        stats->n_spec_accepted_tokens = (int)(e->spec_accepted - accepted0);
        stats->forward_s = forward_s;
        stats->step_s = now_s() - t0;
    }
    *n_events = n;
    return st;
}

/* ------------------------------------------------------------- lifecycle */

/* min_tokens: what may not end the request early - end-of-generation ids
 * (unless ignored) and its stop tokens */
static rt_status_t suppress_ends(const engine_t *e, sampler_t *sm, const engine_request_t *r)
{
    const size_t n = (r->ignore_eos ? 0 : (size_t)e->n_eog) + r->n_stop_tokens;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return rt_error_set(RT_ERR_NOMEM, "engine: out of memory");
    size_t k = 0;
    for (int i = 0; !r->ignore_eos && i < e->n_eog; i++) ids[k++] = e->eog[i];
    for (size_t i = 0; i < r->n_stop_tokens; i++) ids[k++] = r->stop_tokens[i];
    const rt_status_t st = sampler_set_suppressed(sm, ids, k);
    free(ids);
    return st;
}

rt_status_t engine_add_request(engine_t *e, const engine_request_t *r)
{
    if (!r->prompt || r->n_prompt == 0) return rt_error_set(RT_ERR_INVALID, "engine: empty prompt");
    if (r->max_tokens < 1) return rt_error_set(RT_ERR_INVALID, "engine: max_tokens must be at least 1");
    if (r->min_tokens < 0 || r->min_tokens > r->max_tokens)
        return rt_error_set(RT_ERR_INVALID, "engine: min_tokens %d outside 0..max_tokens (%d)", r->min_tokens,
                            r->max_tokens);
    if (r->top_logprobs < 0 || r->top_logprobs > ENGINE_MAX_TOP_LOGPROBS)
        return rt_error_set(RT_ERR_INVALID, "engine: top_logprobs %d out of range 0..%d", r->top_logprobs,
                            ENGINE_MAX_TOP_LOGPROBS);
    if ((int64_t)r->n_prompt >= e->max_model_len)
        return rt_error_set(RT_ERR_INVALID, "engine: prompt of %zu tokens does not fit max_model_len %d", r->n_prompt,
                            e->max_model_len);
    for (size_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->n_vocab)
            return rt_error_set(RT_ERR_INVALID, "engine: prompt token %d out of range (vocab %d)", r->prompt[i],
                                e->n_vocab);
    for (int i = 0; i < e->max_slots; i++)
        if (e->seqs[i].state != SEQ_FREE && e->seqs[i].id == r->id)
            return rt_error_set(RT_ERR_INVALID, "engine: request id %llu is already live", (unsigned long long)r->id);
    int slot = -1;
    for (int i = 0; i < e->max_slots && slot < 0; i++)
        if (e->seqs[i].state == SEQ_FREE) slot = i;
    if (slot < 0) return rt_error_set(RT_ERR_FULL, "engine: %d requests queued or running", e->max_slots);
    seq_t *s = &e->seqs[slot];
    int total = (int)r->n_prompt + r->max_tokens;
    if (total > e->max_model_len) total = e->max_model_len;
    const int B = e->cfg.block_size;
    s->max_blocks = (total + B - 1) / B;
    s->tokens = malloc((size_t)total * sizeof *s->tokens);
    s->blocks = malloc((size_t)s->max_blocks * sizeof *s->blocks);
    s->seq_hashes = malloc((size_t)s->max_blocks * sizeof *s->seq_hashes);
    s->blk_hashes = malloc((size_t)s->max_blocks * sizeof *s->blk_hashes);
    s->stop_tokens = malloc((r->n_stop_tokens ? r->n_stop_tokens : 1) * sizeof *s->stop_tokens);
    rt_status_t st = RT_OK;
    if (!s->tokens || !s->blocks || !s->seq_hashes || !s->blk_hashes || !s->stop_tokens)
        st = rt_error_set(RT_ERR_NOMEM, "engine: out of memory");
    else
        st = sampler_create(&r->sampling, e->n_vocab, &s->sampler);
    if (!st && r->n_logit_bias) st = sampler_set_logit_bias(s->sampler, r->logit_bias_ids, r->logit_bias, r->n_logit_bias);
    if (!st && r->min_tokens > 0) st = suppress_ends(e, s->sampler, r);
    if (!st && r->constraint) {
        if (r->constraint != ENGINE_CONSTRAINT_JSON_OBJECT)
            st = rt_error_set(RT_ERR_INVALID, "engine: unknown constraint %d", r->constraint);
        else if (!(st = pieces_build(e))) {
            s->constraint = r->constraint;
            s->pieces = &e->pieces;
            json_state_init(&s->json, true);
            sampler_set_constraint(s->sampler, constraint_allows, s);
        }
    }
    if (st) {
        seq_free(s);
        return st;
    }
    memcpy(s->tokens, r->prompt, r->n_prompt * sizeof *s->tokens);
    if (r->n_stop_tokens) memcpy(s->stop_tokens, r->stop_tokens, r->n_stop_tokens * sizeof *s->stop_tokens);
    for (size_t i = 0; i < r->n_prompt; i++) sampler_accept(s->sampler, r->prompt[i]);
    s->id = r->id;
    s->n_prompt = s->n_tokens = (int)r->n_prompt;
    s->max_tokens = r->max_tokens;
    s->min_tokens = r->min_tokens;
    s->n_stop_tokens = (int)r->n_stop_tokens;
    s->ignore_eos = r->ignore_eos;
    s->top_n = r->top_logprobs;
    s->want_logprob = r->logprobs || r->top_logprobs > 0;
    s->prefill_only = r->prefill_only;
    s->draft_len = e->cfg.spec.tokens;
    s->prompt_lp = r->prompt_logprobs && !r->prefill_only;
    s->lp_next = 1;
    s->state = SEQ_WAITING;
    e->waiting[e->n_waiting++] = slot;
    return RT_OK;
}

rt_status_t engine_cancel(engine_t *e, uint64_t id)
{
    for (int i = 0; i < e->max_slots; i++)
        if (e->seqs[i].state != SEQ_FREE && e->seqs[i].id == id) {
            e->seqs[i].cancelled = true;
            return RT_OK;
        }
    return rt_error_set(RT_ERR_NOT_FOUND, "engine: no live request %llu", (unsigned long long)id);
}

int engine_n_vocab(const engine_t *e) { return e->n_vocab; }

rt_status_t engine_kv_block_write(engine_t *e, int32_t id, const void *src, size_t bytes)
{
    if (!e->ops->block_write || bytes != engine_kv_block_bytes(e) || id < 0 || id >= e->n_blocks)
        return rt_error_set(RT_ERR_INVALID, "engine: KV block %d of %zu bytes does not fit this engine", id, bytes);
    e->ops->block_write(e->backend, id, src);
    return RT_OK;
}

rt_status_t engine_forward_batch(engine_t *e, const model_batch_t *b)
{
    if (b->n_tokens > e->cfg.max_num_batched_tokens || b->n_seqs > e->cfg.max_num_seqs)
        return rt_error_set(RT_ERR_INVALID, "engine: a batch of %d tokens, %d sequences is over this engine's %d, %d",
                            b->n_tokens, b->n_seqs, e->cfg.max_num_batched_tokens, e->cfg.max_num_seqs);
    return e->ops->forward(e->backend, b, e->logits);
}

void engine_set_logits_observer(engine_t *e, engine_logits_fn fn, void *ud)
{
    e->observer = fn;
    e->observer_ud = ud;
}

bool engine_has_work(const engine_t *e) { return e->n_running > 0 || e->n_waiting > 0; }

size_t engine_kv_block_bytes(const engine_t *e) { return e->ops->block_bytes ? e->ops->block_bytes(e->backend) : 0; }

void engine_kv_export(engine_t *e, const int32_t *tokens, size_t n_blocks, void *dst, size_t *n_out)
{
    *n_out = 0;
    const size_t bb = engine_kv_block_bytes(e);
    if ((!bb && !e->ops->kv_virtual) || !n_blocks) return;
    uint64_t *blk = malloc(n_blocks * sizeof *blk), *seq = malloc(n_blocks * sizeof *seq);
    int32_t *ids = malloc(n_blocks * sizeof *ids);
    if (!blk || !seq || !ids) goto out; /* out of memory: nothing exported, the receiver computes it */
    bp_hash_blocks(tokens, n_blocks * (size_t)e->cfg.block_size, e->cfg.block_size, blk, seq);
    const size_t k = bp_match_prefix(e->pool, seq, n_blocks, ids); /* references, while we read */
    for (size_t j = 0; bb && j < k; j++) e->ops->block_read(e->backend, ids[j], (char *)dst + j * bb);
    if (k && bp_release(e->pool, ids, k) != RT_OK) abort(); /* the references just taken: broken invariant */
    *n_out = k;
out:
    free(blk);
    free(seq);
    free(ids);
}

void engine_kv_import(engine_t *e, const int32_t *tokens, size_t n_blocks, const void *src, size_t *n_in)
{
    *n_in = 0;
    const size_t bb = engine_kv_block_bytes(e);
    if ((!bb && !e->ops->kv_virtual) || !n_blocks) return;
    const int B = e->cfg.block_size;
    uint64_t *blk = malloc(n_blocks * sizeof *blk), *seq = malloc(n_blocks * sizeof *seq);
    int32_t *ids = malloc(n_blocks * sizeof *ids);
    if (!blk || !seq || !ids) goto out;
    bp_hash_blocks(tokens, n_blocks * (size_t)e->cfg.block_size, e->cfg.block_size, blk, seq);
    /* hold what is cached already, then fill the rest; every block stays
     * held until the end, so no allocation here evicts another of them */
    size_t k = bp_match_prefix(e->pool, seq, n_blocks, ids);
    for (; k < n_blocks; k++) {
        int32_t id;
        if (bp_alloc(e->pool, 1, &id) != RT_OK) break;
        if (bb) e->ops->block_write(e->backend, id, (const char *)src + k * bb);
        int32_t use = id;
        if (bp_commit_full(e->pool, id, blk[k], seq[k], k ? &seq[k - 1] : NULL, B, &use) != RT_OK)
            abort(); /* a block just allocated and held: broken invariant */
        ids[k] = use;
    }
    /* one call, leaves first to the LRU list (block_pool.h) */
    if (k && bp_release(e->pool, ids, k) != RT_OK) abort();
    *n_in = k;
out:
    free(blk);
    free(seq);
    free(ids);
}

double engine_kv_transfer_s(const engine_t *e, size_t n_blocks)
{
    return e->ops->kv_transfer_s ? e->ops->kv_transfer_s(e->backend, n_blocks) : 0.0;
}

size_t engine_kv_events_drain(engine_t *e, bp_event_t *out, size_t max) { return bp_events_drain(e->pool, out, max); }

void engine_destroy(engine_t *e)
{
    if (!e) return;
    if (e->seqs)
        for (int i = 0; i < e->max_slots; i++)
            if (e->seqs[i].state != SEQ_FREE) {
                seq_release_blocks(e, &e->seqs[i]);
                seq_free(&e->seqs[i]);
            }
    free(e->seqs);
    free(e->waiting);
    free(e->running);
    free(e->order);
    free(e->scheduled);
    free(e->b_tokens);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_logits);
    free(e->b_tables);
    free(e->b_slot);
    free(e->b_count);
    free(e->b_lp);
    free(e->pre_idx);
    free(e->pre_row);
    free(e->pre);
    free(e->pre_ok);
    free(e->pieces.bytes);
    free(e->pieces.off);
    free(e->eog);
    free(e->logits);
    kvbm_destroy(e->kvbm);
    kvbm_disk_destroy(e->disk);
    free(e->scratch_out);
    free(e->scratch_in);
    bp_destroy(e->pool);
    if (e->ops && e->backend) e->ops->destroy(e->backend);
    free(e);
}

/* the KV block manager's tiers the config asks for, and the pool's hook */
static rt_status_t engine_tiers_create(engine_t *e, const engine_config_t *cfg)
{
    const bool disk = cfg->disk_kv_dir && cfg->disk_kv_dir[0] && cfg->disk_kv_bytes > 0;
    if (cfg->host_kv_bytes <= 0 && !disk) return RT_OK;
    if (!e->ops->block_bytes)
        return rt_error_set(RT_ERR_UNSUPPORTED, "kvbm: the %s backend has no KV bytes to offload", e->ops->name);
    const size_t bb = e->ops->block_bytes(e->backend);
    rt_status_t st;
    if (cfg->host_kv_bytes > 0 && (st = kvbm_create(cfg->host_kv_bytes / (int64_t)bb, bb, &e->kvbm)))
        return rt_error_set(st, "kvbm:host_bytes: %lld bytes make %lld blocks of %zu bytes (2 to 2^30 are needed)",
                            (long long)cfg->host_kv_bytes, (long long)(cfg->host_kv_bytes / (int64_t)bb), bb);
    if (disk) {
        static _Atomic unsigned n_files;
        char path[4096];
        snprintf(path, sizeof path, "%s/rotor-kv-%d-%u.h5", cfg->disk_kv_dir, (int)getpid(), n_files++);
        if ((st = kvbm_disk_create(path, cfg->disk_kv_bytes / (int64_t)bb, bb, &e->disk))) {
            char why[400]; /* the message is about to be rewritten */
            snprintf(why, sizeof why, "%s", rt_error_msg());
            return rt_error_set(st, "kvbm:disk_dir / disk_bytes (%lld blocks of %zu bytes): %s",
                                (long long)(cfg->disk_kv_bytes / (int64_t)bb), bb, why);
        }
        e->scratch_out = malloc(bb);
        e->scratch_in = malloc(bb);
        if (!e->scratch_out || !e->scratch_in) return rt_error_set(RT_ERR_NOMEM, "kvbm: out of memory");
    }
    bp_set_evict_hook(e->pool, offload, e);
    return RT_OK;
}

rt_status_t engine_create(const engine_config_t *cfg, engine_t **out)
{
    rt_status_t st;
    if (cfg->block_size < 1 || cfg->block_size > 1024 || cfg->max_num_seqs < 1 || cfg->max_num_batched_tokens < 1 ||
        cfg->max_num_seqs > cfg->max_num_batched_tokens)
        return rt_error_set(RT_ERR_INVALID, "engine: block_size, max_num_seqs or max_num_batched_tokens out of range");
    if (cfg->spec.tokens < 0 || cfg->spec.tokens > ENGINE_MAX_SPEC_TOKENS ||
        (cfg->spec.tokens > 0 && (cfg->spec.ngram_min < 1 || cfg->spec.ngram_max < cfg->spec.ngram_min)))
        return rt_error_set(RT_ERR_INVALID, "engine: speculative tokens %d (0..%d) or n-gram lengths %d..%d out of range",
                            cfg->spec.tokens, ENGINE_MAX_SPEC_TOKENS, cfg->spec.ngram_min, cfg->spec.ngram_max);
    const engine_backend_ops_t *ops = engine_backend_find(cfg->backend);
    if (!ops) return rt_error_set(RT_ERR_NOT_FOUND, "engine: unknown backend '%s'", cfg->backend);
    engine_t *e = calloc(1, sizeof *e);
    if (!e) return rt_error_set(RT_ERR_NOMEM, "engine: out of memory");
    e->cfg = *cfg;
    e->ops = ops;
    int n_ctx = 0;
    if ((st = ops->create(cfg, &e->backend, &e->n_blocks, &e->n_vocab, &e->vocab, &n_ctx))) goto err;
    e->max_model_len = cfg->max_model_len > 0 ? cfg->max_model_len : n_ctx;
    for (int i = 0; e->vocab && i < e->n_vocab; i++) e->n_eog += tok_is_eog(e->vocab, i);
    e->eog = malloc((size_t)(e->n_eog ? e->n_eog : 1) * sizeof *e->eog);
    if (!e->eog) {
        st = rt_error_set(RT_ERR_NOMEM, "engine: out of memory");
        goto err;
    }
    for (int i = 0, k = 0; e->vocab && i < e->n_vocab; i++)
        if (tok_is_eog(e->vocab, i)) e->eog[k++] = i;
    if ((st = bp_create(e->n_blocks, cfg->block_size, 0, &e->pool))) goto err;
    if ((st = engine_tiers_create(e, cfg))) goto err;
    e->max_slots = 4 * cfg->max_num_seqs;
    const size_t T = (size_t)cfg->max_num_batched_tokens, S = (size_t)cfg->max_num_seqs;
    e->seqs = calloc((size_t)e->max_slots, sizeof *e->seqs);
    e->waiting = calloc((size_t)e->max_slots, sizeof *e->waiting);
    e->running = calloc((size_t)e->max_slots, sizeof *e->running);
    e->order = calloc((size_t)e->max_slots, sizeof *e->order);
    e->scheduled = calloc((size_t)e->max_slots, 1);
    e->b_tokens = calloc(T, sizeof *e->b_tokens);
    e->b_pos = calloc(T, sizeof *e->b_pos);
    e->b_seq = calloc(T, sizeof *e->b_seq);
    e->b_logits = calloc(T, 1);
    e->b_tables = calloc(S, sizeof *e->b_tables);
    e->b_slot = calloc(S, sizeof *e->b_slot);
    e->b_count = calloc(S, sizeof *e->b_count);
    e->b_lp = calloc(S, sizeof *e->b_lp);
    e->pre_idx = calloc(S, sizeof *e->pre_idx);
    e->pre_row = calloc(S, sizeof *e->pre_row);
    e->pre = calloc(S, sizeof *e->pre);
    e->pre_ok = calloc(S, 1);
    e->logits = calloc((S * (size_t)(1 + cfg->spec.tokens) + ENGINE_PROMPT_LOGPROB_ROWS) * (size_t)e->n_vocab,
                       sizeof *e->logits);
    if (!e->seqs || !e->waiting || !e->running || !e->order || !e->scheduled || !e->b_tokens || !e->b_pos ||
        !e->b_seq || !e->b_logits || !e->b_tables || !e->b_slot || !e->b_count || !e->b_lp || !e->logits ||
        !e->pre_idx || !e->pre_row || !e->pre || !e->pre_ok) {
        st = rt_error_set(RT_ERR_NOMEM, "engine: out of memory");
        goto err;
    }
    *out = e;
    return RT_OK;
err:
    engine_destroy(e);
    return st;
}

int engine_max_model_len(const engine_t *e) { return e->max_model_len; }

size_t engine_events_min(const engine_t *e) { return (size_t)e->cfg.max_num_seqs * (size_t)(2 + e->cfg.spec.tokens); }

size_t engine_events_room(const engine_t *e)
{
    return engine_events_min(e) + (size_t)e->max_slots + ENGINE_PROMPT_LOGPROB_ROWS;
}

void engine_stats(const engine_t *e, engine_step_stats_t *stats) { fill_stats(e, stats); }
