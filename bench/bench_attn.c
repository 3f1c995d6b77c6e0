/*
 * bench_attn.c - micro-benchmark of the engine attention (cpu_attn_engine_part)
 * of one decode token: a GQA group of 3 query heads (SmolLM2's shape: head_dim
 * 64, kv_dim 192, blocks of 16) over n positions of an f16 cache, in chunks
 * of 256 as the forward splits it, over many "layers" so the cache is cold.
 * Prints GB/s of K and V read, and the ratio to a plain prefetching read of
 * the same bytes measured in the same run (the memory ceiling of one thread).
 *
 *   make BUILD=build build
 *   cc -O2 -march=native -std=c17 -D_GNU_SOURCE -Iinclude bench/bench_attn.c build/librotor.a -lm -pthread \
 *      -o build/bench_attn && build/bench_attn [positions=576] [layers=60] [repeats=20]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rotor/bigalloc.h"
#include "rotor/cpu_ops.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t read_sum(const uint64_t *p, size_t n)
{
    uint64_t s0 = 0, s1 = 0;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        __builtin_prefetch(p + i + 1024, 0, 3);
        s0 += p[i] + p[i + 2] + p[i + 4] + p[i + 6];
        s1 += p[i + 1] + p[i + 3] + p[i + 5] + p[i + 7];
    }
    return s0 + s1;
}

int main(int argc, char **argv)
{
    const int bs = 16, kvd = 192, hd = 64, G = 3, chunk = 256;
    const int n = argc > 1 ? atoi(argv[1]) : 576, layers = argc > 2 ? atoi(argv[2]) : 60;
    if (n < 1 || layers < 1) return 2;
    const int nblk = (n + bs - 1) / bs;
    const size_t per_layer = (size_t)nblk * bs * kvd, bytes = per_layer * 2 * (size_t)layers;
    uint16_t *K = rt_big_alloc(bytes), *V = rt_big_alloc(bytes);
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nblk);
    float *p = malloc(sizeof(float) * 4 * ((size_t)n + 64)), q[3 * 64], part[3 * (64 + 2)];
    if (!K || !V || !blocks || !p) return 1;
    for (size_t i = 0; i < per_layer * (size_t)layers; i++) {
        K[i] = (uint16_t)(0x3000 + i % 97);
        V[i] = (uint16_t)(0x3000 + i % 89);
    }
    for (int i = 0; i < nblk; i++) blocks[i] = i;
    for (int i = 0; i < 3 * 64; i++) q[i] = 0.01f * (float)(i % 13);
    double best = 1e9, best_read = 1e9;
    uint64_t sink = 0;
    const int reps = argc > 3 ? atoi(argv[3]) : 20;
    for (int rep = 0; rep < reps; rep++) { /* interleaved: attention, then a read of the same bytes */
        double t0 = now();
        for (int L = 0; L < layers; L++)
            for (int hk = 0; hk < kvd / hd; hk++)
                for (int p0 = 0; p0 < n; p0 += chunk)
                    cpu_attn_engine_part(q, G, hd, K + (size_t)L * per_layer, V + (size_t)L * per_layer, true, blocks,
                                         bs, kvd, hk * hd, hd, p0, p0 + chunk < n ? p0 + chunk : n, 0.125f, p, part,
                                         hd + 2);
        const double t = now() - t0;
        if (t < best) best = t;
        t0 = now();
        sink += read_sum((const uint64_t *)K, bytes / 8) + read_sum((const uint64_t *)V, bytes / 8);
        const double tr = now() - t0;
        if (tr < best_read) best_read = tr;
    }
    const double moved = 2.0 * (double)bytes;
    printf("%d positions x %d layers, %.1f MB of K and V: attention %.1f GB/s, plain read %.1f GB/s, ratio %.2f "
           "(checksum %u)\n",
           n, layers, moved / 1e6, moved / best / 1e9, moved / best_read / 1e9, best_read / best,
           (unsigned)(sink & 0xff));
    rt_big_free(K, bytes);
    rt_big_free(V, bytes);
    free(blocks);
    free(p);
    return 0;
}
