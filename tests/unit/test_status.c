/*
 * test_status.c - the status type's error message: set, read, cleared, cut
 * at its size, and rewritten from itself (a caller adding context to the
 * error it got, rt_error_set(st, "ctx: %s", rt_error_msg())).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rotor/status.h"

static void test_message(void **state)
{
    (void)state;
    assert_int_equal(rt_error_set(RT_ERR_IO, "disk %d", 3), RT_ERR_IO);
    assert_string_equal(rt_error_msg(), "disk 3");
    assert_int_equal(rt_error_set(RT_ERR_IO, "tier: %s (%d blocks)", rt_error_msg(), 7), RT_ERR_IO);
    assert_string_equal(rt_error_msg(), "tier: disk 3 (7 blocks)");
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rt_error_set(RT_ERR_RANGE, "%s", big);
    assert_true(strlen(rt_error_msg()) > 100 && strlen(rt_error_msg()) < sizeof big - 1); /* cut, terminated */
    rt_error_clear();
    assert_string_equal(rt_error_msg(), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_message)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
