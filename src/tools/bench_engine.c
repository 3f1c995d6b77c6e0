/*
 * bench_engine.c - `rotor bench-engine`: drive the engine in one process and
 * report, as JSON, (1) aggregate decode throughput with N concurrent
 * sequences for each N in --seqs, and (2) time to first token of a request
 * whose --prefix-tokens prefix is in the prefix cache versus cold. Every figure
 * comes from the same run; bench/bench_batch.py prints the ratios.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rotor/engine.h"
#include "tools/tools.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill_prompt(int32_t *p, int n, unsigned seed, int n_vocab)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        /* ordinary tokens: skip the specials at the start and the end of big vocabularies */
        p[i] = n_vocab > 1000 ? (int32_t)(300 + (seed >> 8) % (unsigned)(n_vocab - 600))
                              : (int32_t)((seed >> 8) % (unsigned)n_vocab);
    }
}

/* decode throughput with n sequences: prefill all, then time the steps in
 * which every sequence decodes, less the first two (warm-up: the cuda
 * backend runs a batch shape eagerly the first time and records its graph
 * the second) */
static rt_status_t run_decode(engine_t *e, int n, int prompt, int gen, double *tok_s, double *forward_share)
{
    int32_t *p = malloc(sizeof(int32_t) * (size_t)prompt);
    engine_event_t *ev = malloc(sizeof(engine_event_t) * 4096);
    if (!p || !ev) {
        free(p);
        free(ev);
        return rt_error_set(RT_ERR_NOMEM, "out of memory");
    }
    rt_status_t st = RT_OK;
    for (int i = 0; i < n && !st; i++) {
        fill_prompt(p, prompt, 1000u + (unsigned)i, engine_n_vocab(e));
        engine_request_t r = {.id = (uint64_t)i + 1, .prompt = p, .n_prompt = (size_t)prompt,
                              .sampling = sampler_params_default(), .max_tokens = gen, .ignore_eos = true};
        r.sampling.temperature = 0.0f;
        st = engine_add_request(e, &r);
    }
    long decoded = 0;
    double t_dec = 0, t_fwd = 0;
    int warm = 2;
    engine_step_stats_t ss;
    while (!st && engine_has_work(e)) {
        size_t ne = 0;
        const double t0 = now_s();
        st = engine_step(e, ev, 4096, &ne, &ss);
        const double dt = now_s() - t0;
        if (ss.n_prefill_tokens == 0 && ss.n_decode_tokens == n && warm-- <= 0) { /* a pure decode step of all n */
            t_dec += dt;
            t_fwd += ss.forward_s;
            decoded += ss.n_decode_tokens;
        }
    }
    *tok_s = t_dec > 0 ? (double)decoded / t_dec : 0;
    *forward_share = t_dec > 0 ? t_fwd / t_dec : 0;
    free(p);
    free(ev);
    return st;
}

static rt_status_t run_ttft(engine_t *e, const int32_t *prompt, int n, uint64_t id, double *ttft)
{
    engine_event_t ev[256];
    engine_request_t r = {.id = id, .prompt = prompt, .n_prompt = (size_t)n, .sampling = sampler_params_default(),
                          .max_tokens = 1, .ignore_eos = true};
    r.sampling.temperature = 0.0f;
    const double t0 = now_s();
    rt_status_t st = engine_add_request(e, &r);
    *ttft = -1;
    while (!st && engine_has_work(e)) {
        size_t ne = 0;
        st = engine_step(e, ev, 256, &ne, NULL);
        for (size_t k = 0; k < ne; k++)
            if (ev[k].kind == ENGINE_EV_TOKEN && *ttft < 0) *ttft = now_s() - t0;
    }
    return st;
}

int cmd_bench_engine(int argc, char **argv)
{
    engine_config_t cfg = engine_config_default();
    const char *seqs = "1,4,16,64";
    int prompt = 32, gen = 64, prefix = 1024;
    static const struct option lo[] = {{"model", required_argument, 0, 'm'},   {"seqs", required_argument, 0, 's'},
                                       {"prompt-tokens", required_argument, 0, 'p'},
                                       {"gen", required_argument, 0, 'n'},     {"prefix-tokens", required_argument, 0, 'x'},
                                       {"threads", required_argument, 0, 't'}, {"backend", required_argument, 0, 'b'},
                                       {"cuda-graph-max-tokens", required_argument, 0, 'g'},
                                       {"cuda-gemv-max-tokens", required_argument, 0, 'v'}, {0, 0, 0, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "m:s:p:n:x:t:b:g:v:", lo, NULL)) != -1) {
        switch (ch) {
        case 'm': cfg.model_path = optarg; break;
        case 's': seqs = optarg; break;
        case 'p': prompt = atoi(optarg); break;
        case 'n': gen = atoi(optarg); break;
        case 'x': prefix = atoi(optarg); break;
        case 't': cfg.threads = atoi(optarg); break;
        case 'b': cfg.backend = optarg; break;
        case 'g': cfg.cuda_graph_max_tokens = atoi(optarg); break;
        case 'v': cfg.cuda_gemv_max_tokens = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: rotor bench-engine --model FILE [--seqs 1,4,16,64] [--prompt-tokens 32] "
                            "[--gen 64] [--prefix-tokens 1024] [--threads N] [--backend cpu|cuda|sim] "
                            "[--cuda-graph-max-tokens N] [--cuda-gemv-max-tokens N]\n");
            return 2;
        }
    }
    if (!cfg.model_path || prompt < 1 || gen < 4 || prefix < 32 || cfg.cuda_graph_max_tokens < 0 ||
        cfg.cuda_gemv_max_tokens < 0) {
        fprintf(stderr, "rotor bench-engine: --model is required; sizes must be positive\n");
        return 2;
    }
    cJSON *j = cJSON_CreateObject(), *dec = cJSON_AddArrayToObject(j, "decode");
    rt_status_t st = RT_OK;
    char *list = strdup(seqs);
    for (char *tok = strtok(list, ","); tok && !st; tok = strtok(NULL, ",")) {
        const int n = atoi(tok);
        engine_config_t c = cfg;
        c.max_num_seqs = n;
        c.max_num_batched_tokens = n * prompt > 512 ? n * prompt : 512;
        c.kv_blocks = (int64_t)n * ((prompt + gen) / c.block_size + 2) + 8;
        engine_t *e = NULL;
        double tps = 0;
        double share = 0;
        if ((st = engine_create(&c, &e)) == RT_OK) st = run_decode(e, n, prompt, gen, &tps, &share);
        engine_destroy(e);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seqs", n);
        cJSON_AddNumberToObject(o, "decode_tok_s", tps);
        cJSON_AddNumberToObject(o, "forward_share", share);
        cJSON_AddItemToArray(dec, o);
    }
    free(list);
    if (!st) {
        engine_config_t c = cfg;
        c.max_num_seqs = 4;
        c.max_num_batched_tokens = 512;
        c.kv_blocks = 3 * (prefix / c.block_size + 4);
        engine_t *e = NULL;
        int32_t *p = malloc(sizeof(int32_t) * (size_t)(prefix + 16));
        double cold = 0, warm = 0;
        if (!p) st = rt_error_set(RT_ERR_NOMEM, "out of memory");
        if (!st) st = engine_create(&c, &e);
        if (!st) {
            fill_prompt(p, prefix + 16, 77u, engine_n_vocab(e));
            st = run_ttft(e, p, prefix + 8, 1, &cold); /* cold: the whole prompt is prefilled */
            p[prefix + 8] = p[prefix + 9];           /* a different ending after the shared prefix */
            if (!st) st = run_ttft(e, p, prefix + 9, 2, &warm); /* its first prefix/16 blocks are cached */
        }
        cJSON_AddNumberToObject(j, "prefix_tokens", prefix);
        cJSON_AddNumberToObject(j, "ttft_cold_s", cold);
        cJSON_AddNumberToObject(j, "ttft_cached_s", warm);
        engine_destroy(e);
        free(p);
    }
    if (st) {
        fprintf(stderr, "rotor bench-engine: %s: %s\n", rt_status_str(st), rt_error_msg());
        cJSON_Delete(j);
        return 1;
    }
    char *s = cJSON_PrintUnformatted(j);
    puts(s);
    free(s);
    cJSON_Delete(j);
    return 0;
}
