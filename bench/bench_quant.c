/*
 * bench_quant.c - micro-benchmark of cpu_matmul: GEMV (m = 1, decode) in
 * GB/s of weights streamed, and prefill (m = 512) speedup over m GEMVs.
 *
 *   make BUILD=build build/librotor.a
 *   cc -O3 -std=c17 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_quant.c build/librotor.a \
 *      -lm -pthread -o build/bench_quant && build/bench_quant [scalar|avx2|avx512] [threads]
 *
 * Times are the best of many short runs (the machine may be shared); the
 * 2-thread numbers include a pthread_create per call.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rotor/cpu_quant.h"
#include "rotor/types.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    rt_type_t t;
    int64_t n_in, r0, r1, m;
    const void *W, *X;
    size_t ws, xs;
    float *Y;
    int64_t ys;
    int reps;
} job_t;

static void *run_job(void *p) {
    job_t *j = p;
    for (int r = 0; r < j->reps; r++)
        cpu_matmul(j->t, j->n_in, j->W, j->ws, j->X, j->xs, j->m, j->Y, j->ys, j->r0, j->r1);
    return NULL;
}

static double run(job_t base, int nth) {
    pthread_t th[8];
    job_t jobs[8];
    const int64_t rows = base.r1 - base.r0;
    double t0 = now();
    for (int i = 0; i < nth; i++) {
        jobs[i] = base;
        jobs[i].r0 = base.r0 + rows * i / nth;
        jobs[i].r1 = base.r0 + rows * (i + 1) / nth;
        if (i > 0) pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    run_job(&jobs[0]);
    for (int i = 1; i < nth; i++)
        pthread_join(th[i], NULL);
    return now() - t0;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        cpu_isa_t isa = strcmp(argv[1], "scalar") == 0 ? CPU_ISA_SCALAR
                        : strcmp(argv[1], "avx2") == 0 ? CPU_ISA_AVX2
                                                       : CPU_ISA_AVX512;
        cpu_quant_set_isa(isa);
    }
    const int nth = argc > 2 ? atoi(argv[2]) : 1;
    printf("isa %s, %d thread(s)\n", cpu_isa_name(cpu_quant_get_isa()), nth);
    const rt_type_t types[] = {RT_TYPE_Q4_1, RT_TYPE_Q4_0, RT_TYPE_Q8_0, RT_TYPE_Q4_K,
                               RT_TYPE_Q5_K, RT_TYPE_Q6_K, RT_TYPE_F16,  RT_TYPE_F32};
    const int64_t shapes[][2] = {{576, 1536}, {1536, 576}, {576, 49152}};
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
        for (size_t si = 0; si < 3; si++) {
            const rt_type_t t = types[ti];
            const rt_type_t vt = rt_type_traits(t)->vec_dot_type;
            const int64_t n_in = shapes[si][0], n_out = shapes[si][1];
            if (n_in % rt_type_traits(t)->block_size) continue;
            const size_t ws = rt_type_row_size(t, n_in), xs = rt_type_row_size(vt, n_in);
            const int64_t M = 512;
            float *fw = malloc(sizeof(float) * n_in);
            char *W = aligned_alloc(64, (ws * n_out + 63) / 64 * 64);
            char *X = aligned_alloc(64, (xs * M + 63) / 64 * 64);
            float *Y = malloc(sizeof(float) * n_out * M);
            for (int64_t r = 0; r < n_out; r++) {
                for (int64_t j = 0; j < n_in; j++)
                    fw[j] = (float)rand() / RAND_MAX - 0.5f;
                cpu_quantize_row(t, fw, W + r * ws, n_in);
            }
            for (int64_t i = 0; i < M; i++) {
                for (int64_t j = 0; j < n_in; j++)
                    fw[j] = (float)rand() / RAND_MAX - 0.5f;
                cpu_quantize_act(vt, fw, X + i * xs, n_in);
            }
            const double bytes = (double)ws * n_out;
            /* best of many short runs: the machine may be shared */
            job_t j = {t, n_in, 0, n_out, 1, W, X, ws, xs, Y, n_out, 1};
            j.reps = (int)(2e7 / bytes) + 1;
            double tg = 1e9;
            for (int it = 0; it < 200; it++) {
                const double d = run(j, nth) / j.reps;
                tg = d < tg ? d : tg;
            }
            /* prefill: 512 activation rows as 8 calls of m = 64 over row slices
             * of <= 2048 weight rows (short runs, best of several each) */
            job_t jp = j;
            jp.m = 64;
            jp.reps = 1;
            double tp = 0;
            for (int64_t r0 = 0; r0 < n_out; r0 += 2048) {
                jp.r0 = r0;
                jp.r1 = r0 + 2048 < n_out ? r0 + 2048 : n_out;
                for (int c = 0; c < M / 64; c++) {
                    jp.X = X + (size_t)c * 64 * xs;
                    double best = 1e9;
                    for (int it = 0; it < 6; it++) {
                        const double d = run(jp, nth);
                        best = d < best ? d : best;
                    }
                    tp += best;
                }
            }
            printf("%-5s %6lld x %-6lld %8.1f KB  gemv %8.2f us %7.1f GB/s   prefill m=512 (8x64) "
                   "%8.2f ms (%5.1fx vs 512 gemv)\n",
                   rt_type_name(t), (long long)n_out, (long long)n_in, bytes / 1024, tg * 1e6,
                   bytes / tg / 1e9, tp * 1e3, tg * M / tp);
            free(fw);
            free(W);
            free(X);
            free(Y);
        }
    }
    return 0;
}
