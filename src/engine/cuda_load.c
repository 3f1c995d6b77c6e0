/*
 * cuda_load.c - dlopen librotor_cuda.so (cuda_load.h).
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rotor/cuda_load.h"

#define CUDA_LIB "librotor_cuda.so"

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static const rt_cuda_api_t *loaded;

static void *try_open(const char *path, char *tried, size_t n)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const size_t used = strlen(tried);
        const char *err = dlerror();
        snprintf(tried + used, n - used, "%s%.300s (%.300s)", used ? "; " : "", path, err ? err : "?");
    }
    return h;
}

rt_status_t rt_cuda_load(const rt_cuda_api_t **out)
{
    pthread_mutex_lock(&load_lock);
    rt_status_t st = RT_OK;
    if (!loaded) {
        char tried[2048] = "", path[PATH_MAX + 32];
        void *h = NULL;
        const char *env = getenv("ROTOR_CUDA_LIB");
        if (env && *env) h = try_open(env, tried, sizeof tried);
        if (!h) {
            char exe[PATH_MAX];
            const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
            if (n > 0) {
                exe[n] = '\0';
                char *slash = strrchr(exe, '/');
                if (slash) *slash = '\0';
                snprintf(path, sizeof path, "%s/../lib/%s", exe, CUDA_LIB);
                h = try_open(path, tried, sizeof tried);
            }
        }
        if (!h) h = try_open(CUDA_LIB, tried, sizeof tried);
        if (!h) {
            st = rt_error_set(RT_ERR_UNAVAILABLE, "cuda: %s could not be loaded (rotor builds it where nvcc is): %s",
                              CUDA_LIB, tried);
        } else {
            const rt_cuda_api_t *(*get)(void) = (const rt_cuda_api_t *(*)(void))dlsym(h, "rt_cuda_api");
            const rt_cuda_api_t *api = get ? get() : NULL;
            if (!api || api->version != RT_CUDA_API_VERSION)
                st = rt_error_set(RT_ERR_UNAVAILABLE, "cuda: %s has %s (rotor wants interface version %d)", CUDA_LIB,
                                  api ? "another interface version" : "no rt_cuda_api", RT_CUDA_API_VERSION);
            else loaded = api;
        }
    }
    pthread_mutex_unlock(&load_lock);
    if (!st) *out = loaded;
    return st;
}
