/*
 * threadpool.h - a fixed pool of worker threads for data-parallel kernels.
 *
 * threadpool_run(pool, fn, arg) calls fn(arg, ith, nth) once for every share
 * ith in [0, nth) (nth = the pool's size) and returns when all are done.
 * Share ith normally runs on thread ith (the caller is thread 0), but a
 * thread that is free takes the share of one that has not started (a
 * descheduled worker on a shared core): fn may key work ranges and scratch
 * on ith, never on the thread it runs on. Calls for different shares run
 * concurrently; one share never runs twice. Workers
 * spin briefly on an atomic generation counter, then sleep on a condition
 * variable, so back-to-back kernels (hundreds per token) cost no syscalls.
 * Work partitioning is the callee's job (threadpool_split gives even ranges).
 *
 * Ownership: the pool owns its threads; destroy joins them.
 */
#ifndef ROTOR_THREADPOOL_H
#define ROTOR_THREADPOOL_H

#include <stdint.h>

#include "rotor/status.h"

typedef struct threadpool threadpool_t;
typedef void (*threadpool_fn)(void *arg, int ith, int nth);

rt_status_t threadpool_create(int n_threads, threadpool_t **out);
void threadpool_destroy(threadpool_t *pool);
int threadpool_size(const threadpool_t *pool);
/* Run fn on all threads; not reentrant (one run at a time per pool). */
void threadpool_run(threadpool_t *pool, threadpool_fn fn, void *arg);

/* [*lo, *hi) = the ith of nth near-equal parts of [0, n), aligned to `align`. */
static inline void threadpool_split(int64_t n, int ith, int nth, int64_t align, int64_t *lo, int64_t *hi)
{
    int64_t blocks = (n + align - 1) / align;
    int64_t per = blocks / nth, rem = blocks % nth;
    int64_t b0 = ith * per + (ith < rem ? ith : rem);
    int64_t b1 = b0 + per + (ith < rem ? 1 : 0);
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}

#endif
