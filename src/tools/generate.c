/*
 * generate.c - `rotor generate`: load a GGUF, prefill a prompt, decode N
 * tokens, print the text (or, with --json, ids, text and measured speeds).
 * A single process: no MPI, no server. Used by tests and the benchmark.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rotor/chat.h"
#include "rotor/cpu_quant.h"
#include "rotor/log.h"
#include "rotor/model.h"
#include "rotor/sampler.h"
#include "tools/tools.h"

#define GEN_UBATCH 512
#define GEN_MAX_STOPS 16

typedef struct {
    const char *model;
    const char *prompt;
    const char *tokens;      /* comma-separated ids, instead of prompt */
    int prompt_tokens;       /* synthetic prompt of this many tokens */
    int n_predict;
    int threads;
    bool json, ignore_eos, chat, warmup;
    bool engine_numerics;    /* --numerics engine: the engine's packed GEMM + invariant attention */
    const char *kv_type;
    const char *chat_template; /* family name overriding the GGUF's template */
    const char *logits_out;
    const char *stops[GEN_MAX_STOPS];
    int n_stops;
    sampler_params_t sp;
} gen_opts_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void gen_usage(FILE *f)
{
    fprintf(f,
            "usage: rotor generate --model FILE (--prompt TEXT | --tokens ID,ID,.. | --prompt-tokens N) [options]\n"
            "  -n, --n-predict N        tokens to generate (default 32)\n"
            "  --temp T                 temperature, 0 = greedy (default 0)\n"
            "  --top-k K --top-p P --min-p P\n"
            "  --repeat-penalty R --frequency-penalty F --presence-penalty P --penalty-last-n N\n"
            "  --seed S                 sampling seed (default 42)\n"
            "  --stop STR               stop string (repeatable)\n"
            "  --threads N              CPU threads (default: all cores)\n"
            "  --chat                   render the prompt as a user message with the chat template\n"
            "  --chat-template NAME     chatml, llama3, llama2, mistral: override the GGUF's template\n"
            "  --ignore-eos             keep generating past end-of-generation tokens\n"
            "  --kv-type f16|f32        KV cache element type (default f16)\n"
            "  --numerics NAME          llamacpp (default: llama.cpp's dot-product orders, its bits) or\n"
            "                           engine (the serving engine's: packed int8 GEMM, one attention order)\n"
            "  --logits-out FILE        write the first step's logits (f32, n_vocab) to FILE\n"
            "  --warmup                 run the prompt once untimed first (page faults, caches), as a\n"
            "                           long-running server would be; for benchmarks\n"
            "  --json                   print one JSON object: ids, text, timings\n");
}

static int parse_opts(int argc, char **argv, gen_opts_t *o)
{
    enum { O_TEMP = 256, O_TOPK, O_TOPP, O_MINP, O_REP, O_FREQ, O_PRES, O_LASTN, O_SEED, O_STOP, O_THREADS,
           O_JSON, O_IGN, O_CHAT, O_KV, O_LOGITS, O_TOKENS, O_PTOK, O_WARM, O_TMPL, O_NUM, O_HELP };
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},   {"prompt", required_argument, 0, 'p'},
        {"n-predict", required_argument, 0, 'n'}, {"temp", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK}, {"top-p", required_argument, 0, O_TOPP},
        {"min-p", required_argument, 0, O_MINP}, {"repeat-penalty", required_argument, 0, O_REP},
        {"frequency-penalty", required_argument, 0, O_FREQ},
        {"presence-penalty", required_argument, 0, O_PRES},
        {"penalty-last-n", required_argument, 0, O_LASTN}, {"seed", required_argument, 0, O_SEED},
        {"stop", required_argument, 0, O_STOP}, {"threads", required_argument, 0, O_THREADS},
        {"json", no_argument, 0, O_JSON}, {"ignore-eos", no_argument, 0, O_IGN},
        {"chat", no_argument, 0, O_CHAT}, {"kv-type", required_argument, 0, O_KV},
        {"logits-out", required_argument, 0, O_LOGITS}, {"tokens", required_argument, 0, O_TOKENS},
        {"prompt-tokens", required_argument, 0, O_PTOK}, {"help", no_argument, 0, O_HELP},
        {"warmup", no_argument, 0, O_WARM}, {"chat-template", required_argument, 0, O_TMPL},
        {"numerics", required_argument, 0, O_NUM}, {0, 0, 0, 0}};
    o->n_predict = 32;
    o->kv_type = "f16";
    o->sp = sampler_params_default();
    o->sp.temperature = 0.0f;
    o->sp.seed = 42;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "m:p:n:", lo, NULL)) != -1) {
        switch (ch) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'n': o->n_predict = atoi(optarg); break;
        case O_TEMP: o->sp.temperature = strtof(optarg, NULL); break;
        case O_TOPK: o->sp.top_k = atoi(optarg); break;
        case O_TOPP: o->sp.top_p = strtof(optarg, NULL); break;
        case O_MINP: o->sp.min_p = strtof(optarg, NULL); break;
        case O_REP: o->sp.repetition_penalty = strtof(optarg, NULL); break;
        case O_FREQ: o->sp.frequency_penalty = strtof(optarg, NULL); break;
        case O_PRES: o->sp.presence_penalty = strtof(optarg, NULL); break;
        case O_LASTN: o->sp.penalty_last_n = atoi(optarg); break;
        case O_SEED: o->sp.seed = strtoull(optarg, NULL, 0); break;
        case O_STOP:
            if (o->n_stops == GEN_MAX_STOPS) {
                fprintf(stderr, "rotor generate: at most %d --stop strings\n", GEN_MAX_STOPS);
                return -1;
            }
            o->stops[o->n_stops++] = optarg;
            break;
        case O_THREADS: o->threads = atoi(optarg); break;
        case O_JSON: o->json = true; break;
        case O_IGN: o->ignore_eos = true; break;
        case O_CHAT: o->chat = true; break;
        case O_KV: o->kv_type = optarg; break;
        case O_LOGITS: o->logits_out = optarg; break;
        case O_TOKENS: o->tokens = optarg; break;
        case O_PTOK: o->prompt_tokens = atoi(optarg); break;
        case O_WARM: o->warmup = true; break;
        case O_TMPL: o->chat_template = optarg; break;
        case O_NUM:
            if (strcmp(optarg, "engine") != 0 && strcmp(optarg, "llamacpp") != 0) {
                fprintf(stderr, "rotor generate: --numerics takes llamacpp or engine, not '%s'\n", optarg);
                return -1;
            }
            o->engine_numerics = strcmp(optarg, "engine") == 0;
            break;
        case O_HELP: gen_usage(stdout); exit(0);
        default: gen_usage(stderr); return -1;
        }
    }
    if (!o->model || (!o->prompt && !o->tokens && o->prompt_tokens <= 0)) {
        fprintf(stderr, "rotor generate: --model and one of --prompt, --tokens, --prompt-tokens are required\n");
        gen_usage(stderr);
        return -1;
    }
    if (o->n_predict < 0 || o->n_predict > 1000000 || o->threads < 0 || o->threads > 1024) {
        fprintf(stderr, "rotor generate: -n or --threads out of range\n");
        return -1;
    }
    return 0;
}

/* Build the prompt's token ids (malloc'd). */
static rt_status_t build_prompt(const model_t *m, const gen_opts_t *o, int32_t **ids, size_t *n)
{
    const tok_vocab_t *v = model_vocab(m);
    if (o->tokens) {
        size_t cap = 1;
        for (const char *s = o->tokens; *s; s++) cap += *s == ',';
        int32_t *r = malloc(cap * sizeof *r);
        if (!r) return rt_error_set(RT_ERR_NOMEM, "out of memory");
        size_t k = 0;
        const char *s = o->tokens;
        while (*s) {
            char *end;
            long t = strtol(s, &end, 10);
            if (end == s || t < 0 || t >= model_hparams(m)->n_vocab) {
                free(r);
                return rt_error_set(RT_ERR_INVALID, "--tokens: bad token id near '%s'", s);
            }
            r[k++] = (int32_t)t;
            s = *end == ',' ? end + 1 : end;
            if (*end && *end != ',') {
                free(r);
                return rt_error_set(RT_ERR_INVALID, "--tokens: expected comma near '%s'", end);
            }
        }
        *ids = r;
        *n = k;
        return RT_OK;
    }
    if (o->prompt_tokens > 0) {
        /* synthetic prompt: deterministic ordinary tokens, BOS first if the model uses one */
        int32_t *r = malloc((size_t)o->prompt_tokens * sizeof *r);
        if (!r) return rt_error_set(RT_ERR_NOMEM, "out of memory");
        uint64_t x = 12345;
        int nv = tok_n_vocab(v);
        for (int i = 0; i < o->prompt_tokens; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            r[i] = (int32_t)(300 + (x >> 33) % (uint64_t)(nv > 600 ? nv - 600 : 1));
        }
        if (tok_add_bos(v) && tok_bos(v) >= 0) r[0] = tok_bos(v);
        *ids = r;
        *n = (size_t)o->prompt_tokens;
        return RT_OK;
    }
    const char *text = o->prompt;
    char *rendered = NULL;
    if (o->chat) {
        chat_tmpl_t t;
        if (o->chat_template) {
            t = chat_template_from_name(o->chat_template);
            if (t == CHAT_TMPL_UNKNOWN)
                return rt_error_set(RT_ERR_INVALID, "--chat-template: unknown template '%s'", o->chat_template);
        } else {
            const char *jinja = gguf_get_str(model_gguf(m), "tokenizer.chat_template", "");
            t = chat_template_detect(jinja);
            if (t == CHAT_TMPL_UNKNOWN) {
                RT_LOG_WARN("the model's chat template is not one rotor knows; using ChatML "
                            "(--chat-template or [model] chat_template overrides)");
                t = CHAT_TMPL_CHATML;
            }
        }
        chat_msg_t msg = {.role = "user", .content = o->prompt};
        const char *bos = tok_bos(v) >= 0 ? tok_text(v, tok_bos(v)) : "";
        const char *eos = tok_eos(v) >= 0 ? tok_text(v, tok_eos(v)) : "";
        rt_status_t st = chat_render(t, &msg, 1, true, bos, eos, &rendered);
        if (st) return st;
        text = rendered;
    }
    rt_status_t st = tok_encode(v, text, strlen(text), true, o->chat, ids, n);
    free(rendered);
    if (st == RT_OK && *n == 0) {
        free(*ids);
        return rt_error_set(RT_ERR_INVALID, "the prompt encodes to no tokens");
    }
    return st;
}

int cmd_generate(int argc, char **argv)
{
    gen_opts_t o = {0};
    if (parse_opts(argc, argv, &o) != 0) return 2;
    int rc = 1;
    model_t *m = NULL;
    kv_cache_t *kv = NULL;
    model_ctx_t *ctx = NULL;
    sampler_t *smp = NULL;
    stop_matcher_t *stop = NULL;
    int32_t *prompt = NULL, *out_ids = NULL, *blocks = NULL, *pos = NULL, *seq = NULL;
    uint8_t *want = NULL;
    float *logits = NULL;
    char *text = NULL;
    size_t n_prompt = 0;
    rt_status_t st;

    if ((st = model_load(o.model, &m))) goto fail;
    const model_hparams_t *hp = model_hparams(m);
    const tok_vocab_t *voc = model_vocab(m);
    if ((st = build_prompt(m, &o, &prompt, &n_prompt))) goto fail;
    size_t n_ctx = n_prompt + (size_t)o.n_predict;
    if (n_ctx > (size_t)hp->n_ctx_train && hp->n_ctx_train >= 4096) {
        st = rt_error_set(RT_ERR_RANGE, "prompt (%zu) + n_predict (%d) exceed the model context %d", n_prompt,
                          o.n_predict, hp->n_ctx_train);
        goto fail;
    }
    const int bs = 16;
    int n_blocks = (int)((n_ctx + bs - 1) / bs);
    rt_type_t kvt = strcmp(o.kv_type, "f32") == 0 ? RT_TYPE_F32 : RT_TYPE_F16;
    if ((st = kv_cache_create_layout(m, n_blocks, bs, kvt, o.engine_numerics ? KV_LAYOUT_ENGINE : KV_LAYOUT_LLAMACPP,
                                     &kv)))
        goto fail;
    int ub = n_prompt < GEN_UBATCH ? (int)n_prompt : GEN_UBATCH;
    if (o.engine_numerics && (st = model_pack_weights(m))) goto fail;
    if ((st = model_ctx_create(m, ub, o.threads, &ctx))) goto fail;
    if (o.engine_numerics) {
        model_ctx_set_matmul(ctx, MODEL_MATMUL_PACKED);
        model_ctx_set_attn_order(ctx, MODEL_ATTN_ENGINE);
    }
    if ((st = sampler_create(&o.sp, hp->n_vocab, &smp))) goto fail;
    if ((st = stop_matcher_create(o.stops, (size_t)o.n_stops, &stop))) goto fail;
    blocks = malloc((size_t)n_blocks * sizeof *blocks);
    pos = malloc((size_t)ub * sizeof *pos);
    seq = calloc((size_t)ub, sizeof *seq);
    want = calloc((size_t)ub, 1);
    logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    out_ids = malloc(((size_t)o.n_predict + 1) * sizeof *out_ids);
    size_t text_cap = (size_t)o.n_predict * 64 + 64;
    text = malloc(text_cap);
    if (!blocks || !pos || !seq || !want || !logits || !out_ids || !text) {
        st = rt_error_set(RT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    text[0] = '\0';
    for (int i = 0; i < n_blocks; i++) blocks[i] = i;
    kv_block_table_t table = {blocks, n_blocks};
    for (size_t i = 0; i < n_prompt; i++) sampler_accept(smp, prompt[i]);

    /* prefill in micro-batches of up to GEN_UBATCH tokens (twice with
     * --warmup: the first pass is untimed and its KV is overwritten) */
    double t0 = now_s();
    for (int pass = o.warmup ? 0 : 1; pass < 2; pass++) {
    t0 = now_s();
    for (size_t s0 = 0; s0 < n_prompt; s0 += (size_t)ub) {
        int nt = (int)(n_prompt - s0 < (size_t)ub ? n_prompt - s0 : (size_t)ub);
        for (int i = 0; i < nt; i++) {
            pos[i] = (int32_t)(s0 + (size_t)i);
            want[i] = (s0 + (size_t)i == n_prompt - 1);
        }
        model_batch_t b = {nt, prompt + s0, pos, seq, want, &table, 1};
        if ((st = model_forward(ctx, kv, &b, logits))) goto fail;
    }
    }
    double t1 = now_s();
    if (o.logits_out) {
        FILE *f = fopen(o.logits_out, "wb");
        if (!f || fwrite(logits, sizeof *logits, (size_t)hp->n_vocab, f) != (size_t)hp->n_vocab) {
            if (f) fclose(f);
            st = rt_error_set(RT_ERR_IO, "cannot write %s", o.logits_out);
            goto fail;
        }
        fclose(f);
    }

    /* decode */
    int n_out = 0;
    size_t text_len = 0;
    tok_stream_t ts = {0};
    const char *finish = "length";
    bool stop_hit = false;
    char piece[256], safe[512];
    double t2 = t1;
    for (int step = 0; step < o.n_predict; step++) {
        if (step > 0) {
            int32_t tok = out_ids[n_out - 1];
            int32_t p = (int32_t)(n_prompt + (size_t)n_out - 1);
            uint8_t w = 1;
            int32_t s0 = 0;
            model_batch_t b = {1, &tok, &p, &s0, &w, &table, 1};
            if ((st = model_forward(ctx, kv, &b, logits))) goto fail;
        }
        int32_t id = sampler_sample(smp, logits, NULL);
        sampler_accept(smp, id);
        out_ids[n_out++] = id;
        if (step == 0) t2 = now_s();
        if (!o.ignore_eos && tok_is_eog(voc, id)) {
            finish = "stop";
            break;
        }
        size_t np = tok_stream_push(voc, &ts, id, piece, sizeof piece, false);
        size_t nsafe = 0;
        bool stopped = stop_matcher_push(stop, piece, np, safe, sizeof safe, &nsafe);
        if (text_len + nsafe + 1 < text_cap) {
            memcpy(text + text_len, safe, nsafe);
            text_len += nsafe;
            text[text_len] = '\0';
        }
        if (!o.json) {
            fwrite(safe, 1, nsafe, stdout);
            fflush(stdout);
        }
        if (stopped) {
            finish = "stop";
            stop_hit = true;
            break;
        }
    }
    if (!stop_hit) {
        size_t np = tok_stream_flush(&ts, piece, sizeof piece);
        size_t nsafe = 0;
        bool stopped = stop_matcher_push(stop, piece, np, safe, sizeof safe, &nsafe);
        if (!stopped) nsafe += stop_matcher_flush(stop, safe + nsafe, sizeof safe - nsafe);
        if (text_len + nsafe + 1 < text_cap) {
            memcpy(text + text_len, safe, nsafe);
            text_len += nsafe;
            text[text_len] = '\0';
        }
        if (!o.json) fwrite(safe, 1, nsafe, stdout);
    }
    double t3 = now_s();
    double prefill_s = t1 - t0, decode_s = t3 - t2;
    int decode_tokens = n_out > 1 ? n_out - 1 : 0;
    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON *ids = cJSON_AddArrayToObject(j, "ids");
        for (int i = 0; i < n_out; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(out_ids[i]));
        cJSON *pids = cJSON_AddArrayToObject(j, "prompt_ids");
        for (size_t i = 0; i < n_prompt; i++) cJSON_AddItemToArray(pids, cJSON_CreateNumber(prompt[i]));
        cJSON_AddStringToObject(j, "text", text);
        cJSON_AddStringToObject(j, "finish_reason", finish);
        cJSON_AddNumberToObject(j, "prefill_tokens", (double)n_prompt);
        cJSON_AddNumberToObject(j, "prefill_s", prefill_s);
        cJSON_AddNumberToObject(j, "prefill_tok_s", prefill_s > 0 ? (double)n_prompt / prefill_s : 0);
        cJSON_AddNumberToObject(j, "decode_tokens", decode_tokens);
        cJSON_AddNumberToObject(j, "decode_s", decode_s);
        cJSON_AddNumberToObject(j, "decode_tok_s", decode_s > 0 ? decode_tokens / decode_s : 0);
        cJSON_AddNumberToObject(j, "model_bytes_per_token", (double)model_bytes_per_token(m));
        cJSON_AddNumberToObject(j, "n_params", (double)model_n_params(m));
        cJSON_AddStringToObject(j, "weight_type", model_weight_type_name(m));
        cJSON_AddNumberToObject(j, "threads", model_ctx_threads(ctx));
        cJSON_AddStringToObject(j, "isa", cpu_isa_name(cpu_quant_get_isa()));
        char *s = cJSON_PrintUnformatted(j);
        if (s) puts(s);
        free(s);
        cJSON_Delete(j);
    } else {
        fprintf(stderr, "\n[prompt %zu tokens at %.1f tok/s, generated %d tokens at %.1f tok/s, finish %s]\n",
                n_prompt, prefill_s > 0 ? n_prompt / prefill_s : 0, n_out,
                decode_s > 0 ? decode_tokens / decode_s : 0, finish);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "rotor generate: %s: %s\n", rt_status_str(st), rt_error_msg());
done:
    free(text);
    free(out_ids);
    free(logits);
    free(want);
    free(seq);
    free(pos);
    free(blocks);
    free(prompt);
    stop_matcher_destroy(stop);
    sampler_destroy(smp);
    model_ctx_destroy(ctx);
    kv_cache_destroy(kv);
    model_free(m);
    return rc;
}
