/*
 * bigalloc.c - see rotor/bigalloc.h: mmap with 2 MiB of slack, the unaligned
 * head and the tail cut off again, then madvise(MADV_HUGEPAGE) and every page
 * committed (MADV_POPULATE_WRITE, or a write per 4 KiB on old kernels).
 */
#include "rotor/bigalloc.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#define RT_HUGE_PAGE ((size_t)2 << 20)

static size_t big_len(size_t n) { return (n + RT_HUGE_PAGE - 1) & ~(RT_HUGE_PAGE - 1); }

void *rt_big_alloc(size_t n)
{
    if (n == 0 || n > SIZE_MAX - 2 * RT_HUGE_PAGE) return NULL;
    const size_t len = big_len(n), map = len + RT_HUGE_PAGE;
    char *raw = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)raw + RT_HUGE_PAGE - 1) & ~(uintptr_t)(RT_HUGE_PAGE - 1));
    if (p > raw) (void)munmap(raw, (size_t)(p - raw));
    if (raw + map > p + len) (void)munmap(p + len, (size_t)(raw + map - (p + len)));
#ifdef MADV_HUGEPAGE
    (void)madvise(p, len, MADV_HUGEPAGE); /* advice: without THP the pages stay small */
#endif
    /* commit every page now: the first decode steps over fresh KV blocks
     * no longer stop for page faults (each zeroes 2 MiB), and memory that is
     * not there fails here, at start, instead of killing a rank mid-request */
    int populated = -1;
#ifdef MADV_POPULATE_WRITE
    populated = madvise(p, len, MADV_POPULATE_WRITE);
    if (populated != 0 && errno != EINVAL) { /* EINVAL: a kernel before 5.14 */
        (void)munmap(p, len);
        return NULL;
    }
#endif
    if (populated != 0)
        for (size_t o = 0; o < len; o += 4096) ((volatile char *)p)[o] = 0;
    return p;
}

void rt_big_free(void *p, size_t n)
{
    if (p) (void)munmap(p, big_len(n));
}
