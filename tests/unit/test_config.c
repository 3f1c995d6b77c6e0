/* test_config.c - the INI config layer: defaults, parsing, bounds, unknown
 * keys, environment overrides, help output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rotor/config.h"

static char *write_ini(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/rotor-test-%d.ini", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults(void **state)
{
    (void)state;
    cfg_t *c = NULL;
    assert_int_equal(cfg_load(NULL, &c), RT_OK);
    assert_int_equal(cfg_int(c, "model:threads"), 0);
    assert_true(cfg_float(c, "sampling:top_p") == 1.0);
    assert_string_equal(cfg_str(c, "log:level"), "info");
    cfg_destroy(c);
}

static void test_parse_values(void **state)
{
    (void)state;
    char *p = write_ini("[model]\nthreads = 3\n[sampling]\ntemperature = 0.25\n[log]\nlevel = debug\n");
    cfg_t *c = NULL;
    assert_int_equal(cfg_load(p, &c), RT_OK);
    assert_int_equal(cfg_int(c, "model:threads"), 3);
    assert_true(cfg_float(c, "sampling:temperature") == 0.25);
    assert_string_equal(cfg_str(c, "log:level"), "debug");
    cfg_destroy(c);
    unlink(p);
}

static void test_unknown_key_is_refused(void **state)
{
    (void)state;
    char *p = write_ini("[model]\nthreadz = 3\n");
    cfg_t *c = NULL;
    assert_int_equal(cfg_load(p, &c), RT_ERR_NOT_FOUND);
    assert_null(c);
    assert_non_null(strstr(rt_error_msg(), "model:threadz"));
    unlink(p);
}

static void test_bounds_and_types(void **state)
{
    (void)state;
    cfg_t *c = NULL;
    char *p = write_ini("[sampling]\ntop_p = 1.5\n");
    assert_int_equal(cfg_load(p, &c), RT_ERR_RANGE);
    assert_non_null(strstr(rt_error_msg(), "sampling:top_p"));
    p = write_ini("[model]\nthreads = many\n");
    assert_int_equal(cfg_load(p, &c), RT_ERR_INVALID);
    assert_non_null(strstr(rt_error_msg(), "model:threads"));
    unlink(p);
}

static void test_env_override(void **state)
{
    (void)state;
    setenv("ROTOR_MODEL_THREADS", "7", 1);
    cfg_t *c = NULL;
    assert_int_equal(cfg_load(NULL, &c), RT_OK);
    assert_int_equal(cfg_int(c, "model:threads"), 7);
    cfg_destroy(c);
    setenv("ROTOR_MODEL_THREADS", "-1", 1);
    assert_int_equal(cfg_load(NULL, &c), RT_ERR_RANGE);
    unsetenv("ROTOR_MODEL_THREADS");
}

static void test_missing_file(void **state)
{
    (void)state;
    cfg_t *c = NULL;
    assert_int_equal(cfg_load("/nonexistent/rotor.ini", &c), RT_ERR_IO);
    assert_non_null(strstr(rt_error_msg(), "/nonexistent/rotor.ini"));
}

static void test_help_lists_every_key(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cfg_print_help(f, true);
    fclose(f);
    for (const cfg_key_t *k = cfg_keys(); k->key; k++) {
        const char *name = strchr(k->key, ':') + 1;
        assert_non_null(strstr(buf, name));
        assert_true(k->doc && k->doc[0]);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),           cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_unknown_key_is_refused), cmocka_unit_test(test_bounds_and_types),
        cmocka_unit_test(test_env_override),       cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_help_lists_every_key),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
