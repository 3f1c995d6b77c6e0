/*
 * rb_output.h - what rotor-bench shows and writes: the live progress line,
 * the terminal summary table, the JSON summary and the HDF5 run file
 * (layout in docs/rotor-bench.md), and `compare` over two run files.
 *
 * Ownership: rb_output_summary_json returns a cJSON tree the caller deletes;
 * rb_output_h5_read_summary returns a malloc'd string the caller frees.
 */
#ifndef ROTOR_RB_OUTPUT_H
#define ROTOR_RB_OUTPUT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rb_metrics.h"

#define RB_VERSION "0.1.0"

typedef struct {
    bool warmup;             /* still in the warmup phase */
    int64_t done, total;     /* finished requests of the phase; total -1 = unknown */
    int64_t errors;
    size_t in_flight;
    double elapsed_s;        /* since the phase started */
    double duration_s;       /* --duration (0 = none), for the remaining estimate */
} rb_progress_t;

/* One progress line, rewritten in place ("\r...", cleared to the end). */
void rb_output_progress(FILE *f, const rb_progress_t *p);

/* The summary table: metric rows x p50/p90/p95/p99/mean/max, throughputs,
 * goodput, errors by kind, client CPU per token. */
void rb_output_table(FILE *f, const rb_summary_t *s);

/* Add to o the SLOs that are set: "ttft_ms", "itl_ms", "latency_ms". */
void rb_output_slo_json(cJSON *o, const rb_slo_t *slo);

/* The JSON summary {"params": params (copied), "requests": ..., ...}. */
cJSON *rb_output_summary_json(const rb_summary_t *s, const cJSON *params);

typedef struct {
    const char *url, *model, *endpoint, *command_line;
    const char *params_json;  /* the params object as text */
    const char *summary_json; /* the whole JSON summary as text */
    double start_wall_time;   /* epoch s */
    double duration_s;
} rb_h5_meta_t;

/* Write the run file (overwrites path). */
rt_status_t rb_output_h5(const char *path, const rb_h5_meta_t *m, const rb_records_t *rs);
/* The /summary summary_json attribute of a run file (*out malloc'd). */
rt_status_t rb_output_h5_read_summary(const char *path, char **out);

/* `rotor-bench compare A B`: both runs' metrics with B/A; 0 on success. */
int rb_compare_main(const char *a, const char *b, FILE *f);

#endif
