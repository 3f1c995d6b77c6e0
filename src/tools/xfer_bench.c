/*
 * xfer_bench.c - `mpirun -np 2 rotor xfer-bench [--bytes N,M,...] [--reps R]`:
 * the raw transport bandwidth between two ranks for messages of the sizes
 * given, the reference bench/bench_disagg.py divides KV hand-offs by.
 *
 * Rank 1 sends N bytes (MPI_Send from a buffer it reuses, touched once) to
 * rank 0, which receives them into a reused buffer and answers one byte;
 * rank 1 times the round trip, and the one-way time is that less half a
 * 1-byte round trip. Prints one JSON object per size on rank 0's stdout:
 * bytes, reps, the median and best GB/s (1e9 bytes/s), and the 1-byte
 * one-way time in us.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools.h"

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median round trip (seconds, on rank 1) of an n-byte message 1 -> 0 and
 * a 1-byte answer; the same on rank 0 after the last one */
static double round_trip(int rank, char *buf, long n, int reps, double *best, double *times)
{
    char ack = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    for (int i = -2; i < reps; i++) { /* two warm-ups */
        const double t0 = MPI_Wtime();
        if (rank == 1) {
            MPI_Send(buf, (int)n, MPI_BYTE, 0, 7, MPI_COMM_WORLD);
            MPI_Recv(&ack, 1, MPI_BYTE, 0, 8, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (rank == 0) {
            MPI_Recv(buf, (int)n, MPI_BYTE, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(&ack, 1, MPI_BYTE, 1, 8, MPI_COMM_WORLD);
        }
        if (i >= 0) times[i] = MPI_Wtime() - t0;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    double r[2] = {times[0], times[reps / 2]};
    MPI_Bcast(r, 2, MPI_DOUBLE, 1, MPI_COMM_WORLD);
    *best = r[0];
    return r[1];
}

int cmd_xfer_bench(int argc, char **argv)
{
    const char *sizes = "65536,1048576,4194304,16777216,67108864";
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc) sizes = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: mpirun -np 2 rotor xfer-bench [--bytes N,M,...] [--reps R]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 100000) {
        fprintf(stderr, "rotor xfer-bench: --reps must be 1..100000\n");
        return 2;
    }
    MPI_Init(NULL, NULL);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0) fprintf(stderr, "rotor xfer-bench: run it as 2 ranks (mpirun -np 2), not %d\n", size);
        MPI_Finalize();
        return 2;
    }
    double *times = malloc((size_t)reps * sizeof *times);
    double best1;
    char one = 0;
    if (!times) MPI_Abort(MPI_COMM_WORLD, 1);
    const double lat = round_trip(rank, &one, 1, reps, &best1, times) / 2; /* one way */
    const double lat_best = best1 / 2;
    int rc = 0;
    for (const char *p = sizes; *p;) {
        char *end;
        const long n = strtol(p, &end, 10);
        if (end == p || n < 1 || n > (1L << 30)) {
            if (rank == 0) fprintf(stderr, "rotor xfer-bench: bad size in --bytes '%s' (1 to 2^30)\n", sizes);
            rc = 2;
            break;
        }
        p = *end == ',' ? end + 1 : end;
        char *buf = malloc((size_t)n);
        if (!buf) MPI_Abort(MPI_COMM_WORLD, 1);
        memset(buf, 1, (size_t)n);
        double best;
        const double med = round_trip(rank, buf, n, reps, &best, times) - lat; /* less the answer's way */
        if (rank == 0)
            printf("{\"bytes\": %ld, \"reps\": %d, \"gbps_median\": %.4f, \"gbps_best\": %.4f, "
                   "\"latency_us\": %.2f}\n",
                   n, reps, (double)n / med / 1e9, (double)n / (best - lat_best) / 1e9, lat * 1e6);
        fflush(stdout);
        free(buf);
    }
    free(times);
    MPI_Finalize();
    return rc;
}
