/*
 * ep.c - expert parallelism across the ranks of one engine instance
 * (roles:ep; engine.h engine_ep_t, model.h model_ctx_set_expert_parallel).
 *
 * The instance's first rank (the leader) runs the engine as any worker does;
 * the others (expert ranks) hold the same model and a KV cache of the same
 * shape, and step with it: before each forward pass the leader broadcasts the
 * batch over the instance's communicator (its length, then the bytes: a
 * header, the token arrays, the block tables), every rank runs it, and each
 * MoE layer computes this rank's experts (e % size == rank) and sums the
 * experts' output slots over the instance with MPI_Allreduce. Attention and
 * the dense layers run on every rank alike (replicated); only the experts
 * are split. KV blocks the leader writes from outside a forward pass (a
 * disaggregated hand-off imported, a KV tier onboarded) are broadcast too,
 * so every rank's replicated cache stays the same. A length of 0 tells the
 * expert ranks to stop.
 *
 * Data-parallel attention (roles:ep_attention = data_parallel): every rank
 * of the instance is a worker of its own (its own requests from rank 0, its
 * own batch, KV cache and scheduler); only the experts are shared. In each
 * MoE layer the rows for each expert travel to its rank and back, two
 * MPI_Alltoallv (model.h, model_ctx_set_expert_parallel_dp), so the
 * instance's worker loops step together: each turn they agree with one
 * MPI_Allreduce whether any rank has work (then every rank steps, and a
 * rank whose step made no exchange runs an empty forward pass that serves
 * the others' rows) and whether all are done (then all stop).
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "job_impl.h"
#include "rotor/log.h"

struct job_ep {
    MPI_Comm comm; /* the instance's (not owned) */
    engine_ep_t eng;
    uint8_t *buf;  /* (cap) the packed batch */
    size_t cap;
    bool dp;       /* data-parallel attention */
    /* the exchange's receive buffers, used in turn (model.h: valid until
     * the second call after), and displacements; owned */
    uint8_t *rx[2];
    size_t rx_cap[2];
    int turn;
    int *displ;    /* (2 * size) send, then receive displacements */
    long exchanges;
};

static void ep_alltoall(void *ud, const void *send, const int *send_bytes, void **recv, int *recv_bytes)
{
    job_ep_t *ep = ud;
    const int S = ep->eng.size;
    MPI_Alltoall(send_bytes, 1, MPI_INT, recv_bytes, 1, MPI_INT, ep->comm);
    int *sd = ep->displ, *rd = ep->displ + S;
    size_t total = 0;
    for (int r = 0, s_off = 0; r < S; r++) {
        sd[r] = s_off;
        s_off += send_bytes[r];
        rd[r] = (int)total;
        total += (size_t)recv_bytes[r];
    }
    if (total > (size_t)INT32_MAX) RT_PANIC("expert parallelism: an exchange of %zu bytes", total);
    const int t = ep->turn;
    if (total > ep->rx_cap[t]) {
        uint8_t *b = realloc(ep->rx[t], total);
        if (!b) RT_PANIC("expert parallelism: out of memory for a %zu-byte exchange", total);
        ep->rx[t] = b;
        ep->rx_cap[t] = total;
    }
    MPI_Alltoallv(send, send_bytes, sd, MPI_BYTE, ep->rx[t], recv_bytes, rd, MPI_BYTE, ep->comm);
    *recv = ep->rx[t];
    ep->turn ^= 1;
    ep->exchanges++;
}

bool job_ep_dp(const job_ep_t *ep) { return ep && ep->dp; }

long job_ep_exchanges(const job_ep_t *ep) { return ep ? ep->exchanges : 0; }

bool job_ep_sync(job_ep_t *ep, bool has_work, bool done, bool *any_work)
{
    int v[2] = {has_work ? 1 : 0, done ? 0 : 1}, r[2];
    MPI_Allreduce(v, r, 2, MPI_INT, MPI_MAX, ep->comm);
    *any_work = r[0] != 0;
    return r[1] != 0;
}

static void ep_combine(void *ud, float *buf, size_t n)
{
    job_ep_t *ep = ud;
    /* every slot holds one rank's value and the others' zeros: the sum is exact */
    for (size_t off = 0; off < n;) {
        const int chunk = n - off > (size_t)(1 << 30) ? 1 << 30 : (int)(n - off);
        MPI_Allreduce(MPI_IN_PLACE, buf + off, chunk, MPI_FLOAT, MPI_SUM, ep->comm);
        off += (size_t)chunk;
    }
}

static uint8_t *ep_room(job_ep_t *ep, size_t len)
{
    if (len > ep->cap) {
        uint8_t *b = realloc(ep->buf, len);
        if (!b) RT_PANIC("expert parallelism: out of memory for a %zu-byte batch", len);
        ep->buf = b;
        ep->cap = len;
    }
    return ep->buf;
}

/* a message: cmd, then for EP_BATCH n_tokens, n_seqs, block entries in all
 * tables and the arrays; for EP_BLOCK the block id, a pad word and its bytes */
enum { EP_BATCH = 1, EP_BLOCK = 2 };
enum { EP_HDR = 4 };

static void ep_send(job_ep_t *ep, int64_t len)
{
    MPI_Bcast(&len, 1, MPI_INT64_T, 0, ep->comm);
    MPI_Bcast(ep->buf, (int)len, MPI_BYTE, 0, ep->comm);
}

/* the leader wrote a KV block (a hand-off imported, a tier onboarded): the
 * other ranks' replicated caches take the same bytes */
static void ep_block_write(void *ud, int32_t id, const void *src, size_t bytes)
{
    job_ep_t *ep = ud;
    const int64_t len = (int64_t)(4 * sizeof(int32_t) + bytes);
    int32_t *p = (int32_t *)(void *)ep_room(ep, (size_t)len);
    p[0] = EP_BLOCK;
    p[1] = id;
    p[2] = p[3] = 0;
    memcpy(p + 4, src, bytes);
    ep_send(ep, len);
}

static void ep_step(void *ud, const model_batch_t *b)
{
    job_ep_t *ep = ud;
    int64_t n_ids = 0;
    for (int s = 0; s < b->n_seqs; s++) n_ids += b->seq_tables[s].n_blocks;
    const size_t T = (size_t)b->n_tokens, S = (size_t)b->n_seqs;
    int64_t len = (int64_t)(sizeof(int32_t) * (EP_HDR + 3 * T + S + (size_t)n_ids) + T);
    int32_t *p = (int32_t *)(void *)ep_room(ep, (size_t)len);
    p[0] = EP_BATCH;
    p[1] = b->n_tokens;
    p[2] = b->n_seqs;
    p[3] = (int32_t)n_ids;
    int32_t *q = p + EP_HDR;
    memcpy(q, b->tokens, T * sizeof *q);
    memcpy(q + T, b->pos, T * sizeof *q);
    memcpy(q + 2 * T, b->seq, T * sizeof *q);
    int32_t *nb = q + 3 * T, *ids = nb + S;
    for (size_t s = 0; s < S; s++) {
        nb[s] = b->seq_tables[s].n_blocks;
        memcpy(ids, b->seq_tables[s].blocks, (size_t)nb[s] * sizeof *ids);
        ids += nb[s];
    }
    memcpy(ids, b->logits, T);
    ep_send(ep, len);
}

rt_status_t job_ep_create(MPI_Comm comm, bool dp, job_ep_t **out)
{
    job_ep_t *ep = calloc(1, sizeof *ep);
    if (!ep) return rt_error_set(RT_ERR_NOMEM, "expert parallelism: out of memory");
    ep->comm = comm;
    ep->dp = dp;
    MPI_Comm_rank(comm, &ep->eng.rank);
    MPI_Comm_size(comm, &ep->eng.size);
    if (dp) {
        ep->displ = malloc(2 * (size_t)ep->eng.size * sizeof *ep->displ);
        if (!ep->displ) {
            free(ep);
            return rt_error_set(RT_ERR_NOMEM, "expert parallelism: out of memory");
        }
        ep->eng.alltoall = ep_alltoall;
    } else {
        ep->eng.combine = ep_combine;
        ep->eng.step = ep->eng.rank == 0 ? ep_step : NULL;
        ep->eng.block_write = ep->eng.rank == 0 ? ep_block_write : NULL;
    }
    ep->eng.ud = ep;
    *out = ep;
    return RT_OK;
}

const engine_ep_t *job_ep_engine(const job_ep_t *ep) { return ep ? &ep->eng : NULL; }

void job_ep_stop(job_ep_t *ep)
{
    if (!ep || ep->dp || ep->eng.rank != 0) return;
    int64_t len = 0;
    MPI_Bcast(&len, 1, MPI_INT64_T, 0, ep->comm);
}

void job_ep_destroy(job_ep_t *ep)
{
    if (!ep) return;
    free(ep->buf);
    free(ep->rx[0]);
    free(ep->rx[1]);
    free(ep->displ);
    free(ep);
}

int job_ep_follower_main(const cfg_t *cfg, job_ep_t *ep)
{
    engine_config_t ec;
    engine_t *e = NULL;
    rt_status_t st = engine_config_from_cfg(cfg, NULL, &ec);
    ec.ep = &ep->eng;
    if (!st) st = engine_create(&ec, &e);
    if (st) {
        RT_LOG_ERROR("engine: %s", rt_error_msg());
        return 1;
    }
    RT_LOG_INFO("expert rank %d of %d up: experts e %% %d == %d of %s", ep->eng.rank, ep->eng.size, ep->eng.size,
                ep->eng.rank, ec.model_path);
    kv_block_table_t *tables = NULL;
    size_t tables_cap = 0;
    long steps = 0;
    for (;;) {
        int64_t len = 0;
        MPI_Bcast(&len, 1, MPI_INT64_T, 0, ep->comm);
        if (len == 0) break;
        int32_t *p = (int32_t *)(void *)ep_room(ep, (size_t)len);
        MPI_Bcast(ep->buf, (int)len, MPI_BYTE, 0, ep->comm);
        if (p[0] == EP_BLOCK) {
            if ((st = engine_kv_block_write(e, p[1], p + 4, (size_t)len - 4 * sizeof(int32_t))))
                RT_PANIC("expert rank: %s", rt_error_msg());
            continue;
        }
        const size_t T = (size_t)p[1], S = (size_t)p[2];
        const int32_t *q = p + EP_HDR, *nb = q + 3 * T, *ids = nb + S;
        if (S > tables_cap) {
            kv_block_table_t *t = realloc(tables, S * sizeof *t);
            if (!t) RT_PANIC("expert rank: out of memory");
            tables = t;
            tables_cap = S;
        }
        for (size_t s = 0; s < S; s++) {
            tables[s] = (kv_block_table_t){ids, nb[s]};
            ids += nb[s];
        }
        const model_batch_t b = {.n_tokens = (int)T, .tokens = q, .pos = q + T, .seq = q + 2 * T,
                                 .logits = (const uint8_t *)ids, .seq_tables = tables, .n_seqs = (int)S};
        /* a failure here would leave the leader's collectives waiting: fatal */
        if ((st = engine_forward_batch(e, &b))) RT_PANIC("expert rank: forward pass: %s", rt_error_msg());
        steps++;
    }
    RT_LOG_INFO("expert rank stopped after %ld steps", steps);
    free(tables);
    engine_destroy(e);
    return 0;
}
