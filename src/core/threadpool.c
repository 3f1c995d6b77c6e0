/*
 * threadpool.c - fork/join pool: a generation counter bumped per run, workers
 * spin on it (then block on a condvar after a spin budget), a done counter the
 * caller spins on. One run at a time.
 *
 * A run's nth shares are claimed, not assigned: share i is taken by the
 * first thread whose compare-and-swap moves claimed[i] from the previous
 * generation to this one. Each thread tries its own share first, then the
 * others, so when a worker is descheduled (another process on its core) the
 * threads that are running do its share instead of waiting a scheduler slice
 * for it to start: a decode step (hundreds of runs) no longer collapses when
 * a core is shared. The caller waits only for shares in progress.
 */
#include "rotor/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define TP_SPIN_ITERS 200000
#define TP_PAUSE_ITERS 4096

struct threadpool {
    int n;
    pthread_t *threads;
    threadpool_fn fn;
    void *arg;
    _Atomic uint64_t gen;
    _Atomic uint64_t *claimed; /* [n]: the generation that took share i */
    _Atomic int done;          /* shares finished in this run */
    _Atomic bool stop;
    _Atomic int sleepers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    threadpool_t *pool;
    int ith;
} tp_worker_arg_t;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Run every share of generation g this thread can still claim, its own
 * (start) first. fn and arg are those of run g: the caller set them before
 * publishing g and changes them only after all of g's shares are done. */
static void tp_take_shares(threadpool_t *pool, uint64_t g, int start)
{
    for (int k = 0; k < pool->n; k++) {
        const int i = (start + k) % pool->n;
        uint64_t expect = g - 1;
        if (atomic_load_explicit(&pool->claimed[i], memory_order_relaxed) != expect) continue;
        if (!atomic_compare_exchange_strong_explicit(&pool->claimed[i], &expect, g, memory_order_acq_rel,
                                                     memory_order_relaxed))
            continue;
        pool->fn(pool->arg, i, pool->n);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_acq_rel);
    }
}

static void *tp_worker(void *p)
{
    tp_worker_arg_t *wa = p;
    threadpool_t *pool = wa->pool;
    int ith = wa->ith;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&pool->stop, memory_order_acquire)) {
            if (++spins < TP_SPIN_ITERS) {
                /* pause first; yield once the wait is long (oversubscribed cores) */
                if (spins < TP_PAUSE_ITERS) cpu_relax();
                else sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        seen = g;
        tp_take_shares(pool, g, ith);
    }
    return NULL;
}

rt_status_t threadpool_create(int n_threads, threadpool_t **out)
{
    if (n_threads < 1 || n_threads > 1024)
        return rt_error_set(RT_ERR_RANGE, "threadpool: thread count %d out of range 1..1024", n_threads);
    threadpool_t *pool = calloc(1, sizeof *pool);
    if (!pool) return rt_error_set(RT_ERR_NOMEM, "threadpool: out of memory");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    pool->claimed = calloc((size_t)n_threads, sizeof *pool->claimed);
    if (!pool->threads || !pool->claimed) {
        free(pool->threads);
        free(pool->claimed);
        free(pool);
        return rt_error_set(RT_ERR_NOMEM, "threadpool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        tp_worker_arg_t *wa = malloc(sizeof *wa);
        if (wa) {
            wa->pool = pool;
            wa->ith = i;
        }
        if (!wa || pthread_create(&pool->threads[i], NULL, tp_worker, wa) != 0) {
            free(wa);
            pool->n = i; /* join only those started */
            threadpool_destroy(pool);
            return rt_error_set(RT_ERR_NOMEM, "threadpool: cannot start thread %d", i);
        }
    }
    *out = pool;
    return RT_OK;
}

void threadpool_destroy(threadpool_t *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, true);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool->claimed);
    free(pool);
}

int threadpool_size(const threadpool_t *pool) { return pool->n; }

void threadpool_run(threadpool_t *pool, threadpool_fn fn, void *arg)
{
    if (pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    const uint64_t g = atomic_fetch_add(&pool->gen, 1) + 1;
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
    tp_take_shares(pool, g, 0);
    for (int spins = 0; atomic_load_explicit(&pool->done, memory_order_acquire) < pool->n; spins++) {
        if (spins < TP_PAUSE_ITERS) cpu_relax();
        else sched_yield();
    }
}
