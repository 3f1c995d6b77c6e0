/* test_bigalloc.c - rt_big_alloc: 2 MiB aligned, zeroed, writable to its
 * last byte, freed again; 0 bytes is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "rotor/bigalloc.h"

static void test_aligned_zeroed_writable(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 4096, (2u << 20) - 1, 2u << 20, (5u << 20) + 123};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        const size_t n = sizes[k];
        unsigned char *p = rt_big_alloc(n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % (2u << 20), 0);
        for (size_t i = 0; i < n; i += 4093) assert_int_equal(p[i], 0);
        assert_int_equal(p[n - 1], 0);
        memset(p, 0xA5, n);
        assert_int_equal(p[n - 1], 0xA5);
        rt_big_free(p, n);
    }
    rt_big_free(NULL, 10); /* no-op */
}

static void test_zero_bytes_refused(void **state)
{
    (void)state;
    assert_null(rt_big_alloc(0));
    assert_null(rt_big_alloc(SIZE_MAX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aligned_zeroed_writable),
        cmocka_unit_test(test_zero_bytes_refused),
    };
    return cmocka_run_group_tests_name("bigalloc", tests, NULL, NULL);
}
