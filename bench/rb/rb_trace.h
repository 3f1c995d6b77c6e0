/*
 * rb_trace.h - Mooncake trace reader for rotor-bench's trace replay.
 *
 * The format (as Mooncake publishes it, and as Dynamo and AIPerf read it):
 * JSON Lines, one request per line,
 *   {"timestamp": 27482, "input_length": 6955, "output_length": 52,
 *    "hash_ids": [46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 2353, 2354]}
 * timestamp: ms since the trace began (any number >= 0; lines sorted by it);
 * input_length, output_length: integers >= 1; hash_ids: integers >= 0, one
 * per block of (usually 512) prompt tokens, equal ids meaning equal blocks.
 * hash_ids may be missing or empty (then nothing is shared). Unknown fields
 * are ignored; blank lines are skipped. Anything else is refused with the
 * file name and line number.
 *
 * Ownership: rb_trace_t owns its lines and their hash id arrays.
 */
#ifndef ROTOR_RB_TRACE_H
#define ROTOR_RB_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "rotor/status.h"

typedef struct {
    double timestamp_ms;
    int32_t input_length, output_length;
    int32_t n_hash;
    const int64_t *hash_ids; /* (n_hash), into the trace's pool */
    size_t hash_off;         /* where they start in the pool */
    int64_t line;            /* 1-based line number in the file */
} rb_trace_line_t;

typedef struct {
    rb_trace_line_t *lines; /* (n) in file order */
    size_t n;
    int64_t *hash_pool; /* every line's hash ids, back to back */
} rb_trace_t;

/* Read and validate a trace file. */
rt_status_t rb_trace_load(const char *path, rb_trace_t **out);
/* The same from text in memory; name is used in error messages. */
rt_status_t rb_trace_parse(const char *text, size_t len, const char *name, rb_trace_t **out);
void rb_trace_destroy(rb_trace_t *t);

#endif
