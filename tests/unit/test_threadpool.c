/* test_threadpool.c - every share runs once per call, ranges cover the work
 * exactly, many back-to-back runs (as in a decode step) stay correct, also
 * with more threads than cores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <string.h>

#include "rotor/threadpool.h"

typedef struct {
    _Atomic int calls;
    _Atomic int seen[8];
    int64_t n;
    int *hits;
} job_t;

static void work(void *arg, int ith, int nth)
{
    job_t *j = arg;
    atomic_fetch_add(&j->calls, 1);
    atomic_fetch_add(&j->seen[ith], 1);
    int64_t lo, hi;
    threadpool_split(j->n, ith, nth, 4, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) j->hits[i]++;
}

static void test_runs_every_thread_and_covers_range(void **state)
{
    (void)state;
    for (int nt = 1; nt <= 4; nt++) {
        threadpool_t *p = NULL;
        assert_int_equal(threadpool_create(nt, &p), RT_OK);
        assert_int_equal(threadpool_size(p), nt);
        int hits[1001];
        memset(hits, 0, sizeof hits);
        job_t j = {.n = 1001, .hits = hits};
        for (int r = 0; r < 2000; r++) threadpool_run(p, work, &j);
        assert_int_equal(atomic_load(&j.calls), 2000 * nt);
        for (int t = 0; t < nt; t++) assert_int_equal(atomic_load(&j.seen[t]), 2000);
        for (int i = 0; i < 1001; i++) assert_int_equal(hits[i], 2000);
        threadpool_destroy(p);
    }
}

/* more threads than cores (this machine has 2): descheduled workers' shares
 * are taken by others; every share still runs exactly once per run and never
 * twice at the same time */
typedef struct {
    _Atomic int running[16];
    _Atomic int runs[16];
    _Atomic int overlap;
} share_job_t;

static void share_work(void *arg, int ith, int nth)
{
    share_job_t *j = arg;
    assert_true(nth == 12);
    if (atomic_fetch_add(&j->running[ith], 1) != 0) atomic_fetch_add(&j->overlap, 1);
    for (volatile int spin = 0; spin < 200 * (ith + 1); spin++) {
    }
    atomic_fetch_add(&j->runs[ith], 1);
    atomic_fetch_sub(&j->running[ith], 1);
}

static void test_shares_once_when_oversubscribed(void **state)
{
    (void)state;
    threadpool_t *p = NULL;
    assert_int_equal(threadpool_create(12, &p), RT_OK);
    share_job_t j;
    memset(&j, 0, sizeof j);
    for (int r = 0; r < 3000; r++) {
        threadpool_run(p, share_work, &j);
        for (int i = 0; i < 12; i++) assert_int_equal(atomic_load(&j.runs[i]), r + 1); /* all done on return */
    }
    assert_int_equal(atomic_load(&j.overlap), 0);
    threadpool_destroy(p);
}

static void test_split_is_exact(void **state)
{
    (void)state;
    for (int64_t n = 0; n < 100; n++)
        for (int nth = 1; nth <= 5; nth++) {
            int64_t prev = 0;
            for (int i = 0; i < nth; i++) {
                int64_t lo, hi;
                threadpool_split(n, i, nth, 16, &lo, &hi);
                assert_int_equal(lo, prev);
                assert_true(hi >= lo);
                assert_true(lo % 16 == 0 || lo == n);
                prev = hi;
            }
            assert_int_equal(prev, n);
        }
}

static void test_bad_size(void **state)
{
    (void)state;
    threadpool_t *p = NULL;
    assert_int_equal(threadpool_create(0, &p), RT_ERR_RANGE);
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_every_thread_and_covers_range),
        cmocka_unit_test(test_shares_once_when_oversubscribed),
        cmocka_unit_test(test_split_is_exact),
        cmocka_unit_test(test_bad_size),
    };
    return cmocka_run_group_tests_name("threadpool", tests, NULL, NULL);
}
