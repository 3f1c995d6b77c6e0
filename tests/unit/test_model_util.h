/* test_model_util.h - for unit tests that need a small model: write one with
 * rotor-model (found beside the test binary, in ../bin/) into /tmp. */
#ifndef ROTOR_TEST_MODEL_UTIL_H
#define ROTOR_TEST_MODEL_UTIL_H

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* path receives /tmp/rotor-test-TAG-PID.gguf; gen_args go to `rotor-model gen`.
 * Returns 0 on success (cmocka group setup convention). */
static inline int test_gen_model(char *path, size_t cap, const char *tag, const char *gen_args)
{
    char exe[512], cmd[1600];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    snprintf(path, cap, "/tmp/rotor-test-%s-%d.gguf", tag, (int)getpid());
    snprintf(cmd, sizeof cmd, "%s/../bin/rotor-model gen --out %s %s >/dev/null 2>&1", dirname(exe), path,
             gen_args);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
