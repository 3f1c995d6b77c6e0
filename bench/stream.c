/*
 * stream.c - rotor-stream: how fast this machine moves memory, the ceiling
 * for decode (which reads every weight once per token).
 *
 * Two kernels over arrays far larger than the last-level cache:
 *   triad: a[i] = b[i] + s * c[i]     (STREAM's triad; counts 3 arrays of
 *          bytes per pass, the STREAM convention; with write-allocate the
 *          hardware really moves 4, so this understates the bus a little)
 *   read:  sum of b[i] as 64-bit integers (read-only, like decode's weights;
 *          integer adds so the compiler vectorises without -ffast-math),
 *          with software prefetch 8 KiB ahead as rotor's weight kernels do
 * Each kernel runs `reps` times on `threads` pthreads, each thread on its own
 * contiguous slice (first-touched by that thread). Reports the best and the
 * median rate in GB/s (1e9 bytes/s).
 *
 * Also one core's 512-bit FMA and VNNI issue rates (the compute ceiling;
 * JSON fma512_g_per_s, vnni512_g_per_s, -1 without AVX-512), and the round
 * trip of a cache line between the first two CPUs this process may run on (two threads pinned there, ping-ponging a flag): what
 * every fork/join and every hand-over of data between rotor's threads pays.
 * On a VM it tells where the host placed the vCPUs: on one cloud host here
 * it is ~100 ns at times (sharing a last-level cache) and ~400 ns at others
 * (two dies), and decode speeds follow (docs/performance.md).
 *
 *   rotor-stream [--threads N] [--size-mib M] [--reps R] [--json] [--latency-only]
 */
/* a sanitizer build (make asan) is built at -O1: its instruction-rate loops
 * are not the optimized ones, and say so in the JSON ("sanitized") */
#if defined(__SANITIZE_ADDRESS__)
#define ROTOR_STREAM_SANITIZED 1
#else
#define ROTOR_STREAM_SANITIZED 0
#endif
#include <errno.h>
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    size_t n;        /* elements per array */
    int threads;
    int reps;
    double *a, *b, *c; /* (n) each */
    pthread_barrier_t start, done;
    int kernel;      /* 0 init, 1 triad, 2 read, -1 quit */
    uint64_t sink[64]; /* per-thread read sums so the loads stay */
} stream_t;

typedef struct {
    stream_t *st;
    int id;
} worker_arg_t;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void slice(const stream_t *st, int id, size_t *lo, size_t *hi)
{
    size_t per = (st->n + (size_t)st->threads - 1) / (size_t)st->threads;
    per = (per + 7) & ~(size_t)7; /* 64-byte aligned slices */
    *lo = per * (size_t)id < st->n ? per * (size_t)id : st->n;
    *hi = *lo + per < st->n ? *lo + per : st->n;
}

/* software prefetch distance of the read kernel, the one rotor's packed
 * weight kernels use (PK_PREFETCH_BYTES): without it the hardware
 * prefetcher alone reads ~15-25% slower than those kernels stream weights,
 * and the roofline would not be a ceiling */
#define READ_PREFETCH_U64 1024

static uint64_t read_sum(const uint64_t *restrict p, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* one 64-byte line per step */
        __builtin_prefetch(p + i + READ_PREFETCH_U64, 0, 3);
        s0 += p[i] + p[i + 4];
        s1 += p[i + 1] + p[i + 5];
        s2 += p[i + 2] + p[i + 6];
        s3 += p[i + 3] + p[i + 7];
    }
    for (; i < n; i++)
        s0 += p[i];
    return s0 + s1 + s2 + s3;
}

static void *worker(void *argp)
{
    worker_arg_t *arg = argp;
    stream_t *st = arg->st;
    size_t lo, hi;
    slice(st, arg->id, &lo, &hi);
    double *restrict a = st->a, *restrict b = st->b, *restrict c = st->c;
    const double s = 3.0;
    for (;;) {
        pthread_barrier_wait(&st->start);
        int k = st->kernel;
        if (k < 0)
            break;
        if (k == 0) {
            for (size_t i = lo; i < hi; i++) {
                a[i] = 0.0;
                b[i] = 1.0;
                c[i] = 2.0;
            }
        } else if (k == 1) {
            for (size_t i = lo; i < hi; i++)
                a[i] = b[i] + s * c[i];
        } else {
            st->sink[arg->id] += read_sum((const uint64_t *)(b + lo), hi - lo);
        }
        pthread_barrier_wait(&st->done);
    }
    return NULL;
}

/* Run one kernel on all threads; returns the wall time. */
static double run_kernel(stream_t *st, int kernel)
{
    st->kernel = kernel;
    double t0 = now_s();
    pthread_barrier_wait(&st->start);
    pthread_barrier_wait(&st->done);
    return now_s() - t0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double *alloc_array(size_t bytes)
{
    void *p = NULL;
    size_t align = 2u << 20;
    bytes = (bytes + align - 1) / align * align;
    if (posix_memalign(&p, align, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

/* ---- core-to-core round trip ---- */

#define PING_ROUNDS 100000

typedef struct {
    _Alignas(64) _Atomic long flag; /* 2i - 1: ping i sent, 2i: answered; -1: stop */
    int cpu;
} ping_t;

static int pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *pong(void *arg)
{
    ping_t *p = arg;
    if (pin_to(p->cpu) != 0) return NULL;
    for (long i = 1; i <= PING_ROUNDS; i++) {
        long v;
        while ((v = atomic_load_explicit(&p->flag, memory_order_acquire)) != 2 * i - 1)
            if (v < 0) return NULL;
        atomic_store_explicit(&p->flag, 2 * i, memory_order_release);
    }
    return NULL;
}

/* ns per round trip between the first two CPUs of the affinity mask, or -1
 * when there are fewer than two or they cannot be pinned */
static double core_round_trip_ns(void)
{
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) != 0) return -1;
    int cpus[2], n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &mask)) cpus[n++] = c;
    if (n < 2) return -1;
    static ping_t p;
    atomic_store(&p.flag, 0);
    p.cpu = cpus[1];
    pthread_t t;
    if (pthread_create(&t, NULL, pong, &p) != 0) return -1;
    cpu_set_t old;
    pthread_getaffinity_np(pthread_self(), sizeof old, &old);
    double ns = -1;
    if (pin_to(cpus[0]) == 0) {
        /* a pong that could not pin itself never answers: give up after 10 s */
        const double t0 = now_s();
        long i = 1;
        for (; i <= PING_ROUNDS; i++) {
            atomic_store_explicit(&p.flag, 2 * i - 1, memory_order_release);
            long spins = 0;
            while (atomic_load_explicit(&p.flag, memory_order_acquire) != 2 * i)
                if (++spins % 4096 == 0 && now_s() - t0 > 10) break;
            if (atomic_load_explicit(&p.flag, memory_order_acquire) != 2 * i) break;
        }
        if (i > PING_ROUNDS) ns = (now_s() - t0) / PING_ROUNDS * 1e9;
    }
    atomic_store_explicit(&p.flag, -1, memory_order_release);
    pthread_join(t, NULL);
    pthread_setaffinity_np(pthread_self(), sizeof old, &old);
    return ns;
}

/* One core's vector issue rate, the ceiling of compute-bound work (prefill,
 * batched decode) as the bandwidth is decode's: 12 independent register
 * chains of 512-bit FMAs, and of 512-bit VNNI vpdpbusd (rotor's packed int8
 * GEMM), in G instructions per second; best of 5 runs of ~240 M each. -1
 * where the CPU lacks the instructions. On a Zen 5 both are ~2 per cycle; a
 * Zen 4 splits 512-bit operations in two and issues ~1 per cycle. */
#define RATE_ITERS 20000000L
#define RATE_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* name(): RATE_ITERS timed steps of the 12 chains declared by RATE_DECL_name
 * and advanced by RATE_STEP_name; their lane-wise sum (RATE_ADD_name,
 * wrapping for integers) goes to a volatile through LANE0 so the loop stays */
#define ISSUE_RATE_FN(name, isa, T, LANE0)                                                         \
    __attribute__((target(isa))) static double name(void)                                          \
    {                                                                                              \
        RATE_CHAINS(RATE_DECL_##name)                                                              \
        const double t0 = now_s();                                                                 \
        for (long i = 0; i < RATE_ITERS; i++) {                                                    \
            RATE_CHAINS(RATE_STEP_##name)                                                          \
        }                                                                                          \
        const double dt = now_s() - t0;                                                            \
        T s = a0;                                                                                  \
        RATE_CHAINS(RATE_ADD_##name)                                                               \
        volatile double sink = (double)LANE0(s);                                                   \
        (void)sink;                                                                                \
        return 12.0 * RATE_ITERS / dt / 1e9;                                                       \
    }

#define RATE_DECL_fma512_rate(k) __m512 a##k = _mm512_set1_ps((float)(k));
#define RATE_STEP_fma512_rate(k) a##k = _mm512_fmadd_ps(a##k, _mm512_set1_ps(0.999f), _mm512_set1_ps(0.001f));
#define RATE_ADD_fma512_rate(k) s = _mm512_add_ps(s, a##k);
ISSUE_RATE_FN(fma512_rate, "avx512f", __m512, _mm512_cvtss_f32)

#define RATE_DECL_vnni512_rate(k) __m512i a##k = _mm512_set1_epi32(k);
#define RATE_STEP_vnni512_rate(k) a##k = _mm512_dpbusd_epi32(a##k, _mm512_set1_epi8(3), _mm512_set1_epi8(5));
#define RATE_ADD_vnni512_rate(k) s = _mm512_add_epi32(s, a##k);
#define RATE_LANE0_EPI32(v) _mm_cvtsi128_si32(_mm512_castsi512_si128(v))
ISSUE_RATE_FN(vnni512_rate, "avx512f,avx512vnni", __m512i, RATE_LANE0_EPI32)

/* One core's ceiling for rotor's packed int8 GEMM: its instruction mix per
 * 32-element block of a 16-row panel and one sequence (packed_avx512.c,
 * tile: 8 vpdpbusd in two chains, their sum converted, times the scales'
 * product, into an FMA chain, and the min term's FMA), on 6 independent
 * chains, in G multiply-adds per second (512 per block). Where vpdpbusd and
 * FMA share pipes (Zen 4) this is ~8/11 of 64 x the vpdpbusd rate. */
#define GEMM_BLOCK_STEP(k)                                                                         \
    a##k = _mm512_dpbusd_epi32(a##k, w0, x0);                                                      \
    b##k = _mm512_dpbusd_epi32(b##k, w1, x1);                                                      \
    a##k = _mm512_dpbusd_epi32(a##k, w1, x0);                                                      \
    b##k = _mm512_dpbusd_epi32(b##k, w0, x1);                                                      \
    a##k = _mm512_dpbusd_epi32(a##k, w0, x1);                                                      \
    b##k = _mm512_dpbusd_epi32(b##k, w1, x0);                                                      \
    a##k = _mm512_dpbusd_epi32(a##k, w1, x1);                                                      \
    b##k = _mm512_dpbusd_epi32(b##k, w0, x0);                                                      \
    f##k = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a##k, b##k)), _mm512_mul_ps(g##k, sc), f##k); \
    g##k = _mm512_fmadd_ps(mw, sa, g##k);
#define GEMM_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define GEMM_DECL(k)                                                                               \
    __m512i a##k = _mm512_set1_epi32(k), b##k = _mm512_set1_epi32(2 * k);                          \
    __m512 f##k = _mm512_set1_ps((float)k), g##k = _mm512_set1_ps(1.0f + (float)k);
#define GEMM_SUM(k) s = _mm512_add_ps(s, f##k);
__attribute__((target("avx512f,avx512vnni"))) static double gemm512_rate(void)
{
    const __m512i w0 = _mm512_set1_epi8(3), w1 = _mm512_set1_epi8(7), x0 = _mm512_set1_epi8(5),
                  x1 = _mm512_set1_epi8(-2);
    const __m512 sc = _mm512_set1_ps(1e-30f), mw = _mm512_set1_ps(0.5f), sa = _mm512_set1_ps(0.25f);
    GEMM_CHAINS(GEMM_DECL)
    const double t0 = now_s();
    for (long i = 0; i < RATE_ITERS; i++) {
        GEMM_CHAINS(GEMM_BLOCK_STEP)
    }
    const double dt = now_s() - t0;
    __m512 s = _mm512_setzero_ps();
    GEMM_CHAINS(GEMM_SUM)
    volatile double sink = (double)_mm512_cvtss_f32(s);
    (void)sink;
    return 6.0 * RATE_ITERS * 512.0 / dt / 1e9;
}

static double best_rate(double (*fn)(void))
{
    double best = 0;
    for (int r = 0; r < 5; r++) {
        const double g = fn();
        best = g > best ? g : best;
    }
    return best;
}

static void vector_rates(double *fma, double *vnni, double *gemm)
{
    __builtin_cpu_init();
    const int f = __builtin_cpu_supports("avx512f"), v = f && __builtin_cpu_supports("avx512vnni");
    *fma = f ? best_rate(fma512_rate) : -1;
    *vnni = v ? best_rate(vnni512_rate) : -1;
    *gemm = v ? best_rate(gemm512_rate) : -1;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--threads N] [--size-mib M] [--reps R] [--json] [--latency-only]\n", argv0);
}

int main(int argc, char **argv)
{
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = nproc > 0 ? (int)nproc : 1, reps = 10, json = 0, latency_only = 0;
    long size_mib = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size-mib") && i + 1 < argc)
            size_mib = atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--latency-only"))
            latency_only = 1;
        else {
            usage(argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || reps < 1 || size_mib < 1) {
        usage(argv[0]);
        return 2;
    }

    const double rt_ns = core_round_trip_ns();
    if (latency_only) {
        if (json) printf("{\"core_round_trip_ns\": %.1f}\n", rt_ns);
        else if (rt_ns < 0) printf("rotor-stream: core-to-core round trip unavailable (fewer than two CPUs)\n");
        else printf("rotor-stream: core-to-core round trip %.1f ns\n", rt_ns);
        return 0;
    }
    stream_t st = {0};
    st.threads = threads;
    st.reps = reps;
    size_t bytes = (size_t)size_mib << 20;
    st.n = bytes / sizeof(double);
    st.a = alloc_array(bytes);
    st.b = alloc_array(bytes);
    st.c = alloc_array(bytes);
    double *t_triad = calloc((size_t)reps, sizeof *t_triad);
    double *t_read = calloc((size_t)reps, sizeof *t_read);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    worker_arg_t *args = calloc((size_t)threads, sizeof *args);
    if (!st.a || !st.b || !st.c || !t_triad || !t_read || !tid || !args) {
        fprintf(stderr, "rotor-stream: out of memory (3 x %ld MiB)\n", size_mib);
        return 1;
    }
    pthread_barrier_init(&st.start, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&st.done, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        args[i] = (worker_arg_t){&st, i};
        int rc = pthread_create(&tid[i], NULL, worker, &args[i]);
        if (rc) {
            fprintf(stderr, "rotor-stream: pthread_create: %s\n", strerror(rc));
            return 1;
        }
    }

    run_kernel(&st, 0); /* first touch by the owning thread */
    run_kernel(&st, 1); /* warm-up */
    run_kernel(&st, 2);
    for (int r = 0; r < reps; r++) { /* interleaved, so drift hits both alike */
        t_triad[r] = run_kernel(&st, 1);
        t_read[r] = run_kernel(&st, 2);
    }
    st.kernel = -1;
    pthread_barrier_wait(&st.start);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);

    /* check the triad really ran: a = 1 + 3 * 2 */
    if (st.a[0] != 7.0 || st.a[st.n - 1] != 7.0) {
        fprintf(stderr, "rotor-stream: triad result wrong (%g)\n", st.a[0]);
        return 1;
    }
    double fma_g, vnni_g, gemm_g;
    vector_rates(&fma_g, &vnni_g, &gemm_g);
    qsort(t_triad, (size_t)reps, sizeof *t_triad, cmp_double);
    qsort(t_read, (size_t)reps, sizeof *t_read, cmp_double);
    const double triad_bytes = 3.0 * (double)bytes, read_bytes = (double)bytes;
    double med_triad = reps % 2 ? t_triad[reps / 2] : (t_triad[reps / 2 - 1] + t_triad[reps / 2]) / 2;
    double med_read = reps % 2 ? t_read[reps / 2] : (t_read[reps / 2 - 1] + t_read[reps / 2]) / 2;
    double triad_best = triad_bytes / t_triad[0] / 1e9, triad_med = triad_bytes / med_triad / 1e9;
    double read_best = read_bytes / t_read[0] / 1e9, read_med = read_bytes / med_read / 1e9;
    uint64_t sink = 0;
    for (int i = 0; i < threads; i++)
        sink += st.sink[i];

    if (json) {
        printf("{\"threads\": %d, \"array_mib\": %ld, \"reps\": %d, "
               "\"triad_gbs_best\": %.3f, \"triad_gbs_median\": %.3f, "
               "\"read_gbs_best\": %.3f, \"read_gbs_median\": %.3f, "
               "\"triad_bytes_per_pass\": %.0f, \"read_bytes_per_pass\": %.0f, "
               "\"core_round_trip_ns\": %.1f, \"fma512_g_per_s\": %.3f, \"vnni512_g_per_s\": %.3f, "
               "\"int8_gemm_gmac_per_s\": %.1f, \"sanitized\": %s, \"checksum\": %llu}\n",
               threads, size_mib, reps, triad_best, triad_med, read_best, read_med, triad_bytes,
               read_bytes, rt_ns, fma_g, vnni_g, gemm_g, ROTOR_STREAM_SANITIZED ? "true" : "false",
               (unsigned long long)(sink & 0xffff));
    } else {
        printf("rotor-stream: %d threads, 3 x %ld MiB arrays, %d reps\n", threads, size_mib, reps);
        printf("  %-6s %10s %10s   (GB/s = 1e9 B/s)\n", "kernel", "best", "median");
        printf("  %-6s %10.2f %10.2f   a = b + s*c, 3 arrays counted\n", "triad", triad_best,
               triad_med);
        printf("  %-6s %10.2f %10.2f   sum(b), 1 array\n", "read", read_best, read_med);
        if (rt_ns >= 0) printf("  core-to-core round trip %.1f ns (first two CPUs)\n", rt_ns);
        if (fma_g > 0)
            printf("  one core: %.2f G 512-bit FMA/s, %.2f G 512-bit vpdpbusd/s\n", fma_g, vnni_g);
        if (gemm_g > 0)
            printf("  one core: the packed int8 GEMM's instruction mix at most %.1f G multiply-adds/s\n", gemm_g);
        else
            printf("  one core: no AVX-512\n");
    }
    pthread_barrier_destroy(&st.start);
    pthread_barrier_destroy(&st.done);
    free(args);
    free(tid);
    free(t_read);
    free(t_triad);
    free(st.a);
    free(st.b);
    free(st.c);
    return 0;
}
