/* test_openai_parse.c - the front end's request parsing (every field, its
 * defaults, and the 400 each bad value gets, naming the parameter), its
 * JSON rendering (responses, chunks, usage, logprobs, errors, models), and
 * the token -> text path of a choice (UTF-8-safe streaming, stop strings
 * held back and cut, end-of-generation not rendered) on a generated
 * byte-level BPE vocabulary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/fe_request.h"
#include "frontend/openai_parse.h"
#include "frontend/openai_render.h"
#include "rotor/gguf.h"
#include "rotor/tokenizer.h"
#include "test_model_util.h"

static const oai_defaults_t defaults = {
    .temperature = 0.7f, .top_k = 5, .top_p = 0.9f, .min_p = 0.05f};

static rt_status_t parse(oai_kind_t kind, const char *body, oai_request_t *r, oai_error_t *e) {
    return oai_parse(kind, body, strlen(body), &defaults, r, e);
}

/* ------------------------------------------------------------- parsing */

static void test_chat_all_fields(void **state) {
    (void)state;
    oai_request_t r;
    oai_error_t e;
    const char *body =
        "{\"model\": \"m\", \"messages\": [{\"role\": \"developer\", \"content\": \"sys\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": "
        "\"text\", \"text\": "
        "\"b\"}]},"
        " {\"role\": \"assistant\", \"content\": null}],"
        " \"max_tokens\": 10, \"max_completion_tokens\": 12, \"temperature\": 0, \"top_p\": 0.5, "
        "\"top_k\": -1,"
        " \"min_p\": 0.1, \"seed\": -3, \"stop\": [\"x\", \"\", \"yz\"], \"stop_token_ids\": [7, "
        "8], \"n\": 3,"
        " \"presence_penalty\": 1.5, \"frequency_penalty\": -1, \"repetition_penalty\": 1.2,"
        " \"logprobs\": true, \"top_logprobs\": 4, \"ignore_eos\": true, \"skip_special_tokens\": "
        "false,"
        " \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"user\": \"u\", "
        "\"logit_bias\": {\"15\": -100, \"7\": 2.5}, \"unknown\": [1]}";
    assert_int_equal(parse(OAI_CHAT, body, &r, &e), RT_OK);
    assert_int_equal(r.n_logit_bias, 2);
    assert_int_equal(r.logit_bias_ids[0], 15);
    assert_true(r.logit_bias[0] == -100.0f);
    assert_int_equal(r.logit_bias_ids[1], 7);
    assert_true(r.logit_bias[1] == 2.5f);
    assert_string_equal(r.model, "m");
    assert_int_equal(r.n_msgs, 3);
    assert_string_equal(r.msgs[0].role, "system");
    assert_string_equal(r.msgs[0].content, "sys");
    assert_string_equal(r.msgs[1].role, "user");
    assert_string_equal(r.msgs[1].content, "a\nb");
    assert_string_equal(r.msgs[2].role, "assistant");
    assert_string_equal(r.msgs[2].content, "");
    assert_true(r.add_generation_prompt);
    assert_int_equal(r.max_tokens, 12); /* max_completion_tokens wins */
    assert_true(r.sampling.temperature == 0.0f);
    assert_true(r.sampling.top_p == 0.5f);
    assert_int_equal(r.sampling.top_k, 0);
    assert_true(fabsf(r.sampling.min_p - 0.1f) < 1e-6f);
    assert_true(r.has_seed);
    assert_true(r.sampling.seed == (uint64_t)(int64_t)-3);
    assert_int_equal(r.n_stops, 2); /* the empty stop is dropped */
    assert_string_equal(r.stops[0], "x");
    assert_string_equal(r.stops[1], "yz");
    assert_int_equal(r.n_stop_token_ids, 2);
    assert_int_equal(r.stop_token_ids[1], 8);
    assert_int_equal(r.n, 3);
    assert_true(r.sampling.presence_penalty == 1.5f && r.sampling.frequency_penalty == -1.0f);
    assert_true(fabsf(r.sampling.repetition_penalty - 1.2f) < 1e-6f);
    assert_int_equal(r.sampling.penalty_last_n, -1);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 4);
    assert_true(r.ignore_eos && !r.skip_special_tokens && r.stream && r.include_usage);
    oai_request_free(&r);
}

static void test_response_format(void **state) {
    (void)state;
    oai_request_t r;
    oai_error_t e;
    assert_int_equal(parse(OAI_CHAT,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                           "\"response_format\":{\"type\":\"json_object\"}}",
                           &r, &e),
                     RT_OK);
    assert_true(r.json_object);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"response_format\":{\"type\":\"text\"}}",
                           &r, &e),
                     RT_OK);
    assert_false(r.json_object);
    oai_request_free(&r);
    /* tools the model may not call do not conflict */
    assert_int_equal(parse(OAI_CHAT,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":"
                           "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\","
                           "\"response_format\":{\"type\":\"json_object\"}}",
                           &r, &e),
                     RT_OK);
    assert_true(r.json_object);
    oai_request_free(&r);
}

static void test_defaults(void **state) {
    (void)state;
    oai_request_t r;
    oai_error_t e;
    assert_int_equal(parse(OAI_CHAT,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                           "\"seed\":null,\"stop\":null,\"max_tokens\":null}",
                           &r, &e),
                     RT_OK);
    assert_int_equal(r.max_tokens, 0);
    assert_true(r.sampling.temperature == defaults.temperature);
    assert_int_equal(r.sampling.top_k, 5);
    assert_true(r.sampling.top_p == defaults.top_p && r.sampling.min_p == defaults.min_p);
    assert_true(r.sampling.repetition_penalty == 1.0f);
    assert_false(r.has_seed);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.n_stops, 0);
    assert_false(r.logprobs || r.stream || r.include_usage || r.ignore_eos);
    assert_true(r.skip_special_tokens);
    oai_request_free(&r);
}

static void test_completion_prompts(void **state) {
    (void)state;
    oai_request_t r;
    oai_error_t e;
    assert_int_equal(
        parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"abc\",\"stop\":\"q\"}", &r, &e),
        RT_OK);
    assert_string_equal(r.prompt, "abc");
    assert_null(r.prompt_ids);
    assert_int_equal(r.n_stops, 1);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"one\"]}", &r, &e),
                     RT_OK);
    assert_string_equal(r.prompt, "one");
    oai_request_free(&r);
    assert_int_equal(
        parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2,3],\"logprobs\":3}", &r, &e),
        RT_OK);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[2], 3);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 3);
    assert_false(r.echo);
    oai_request_free(&r);
    /* lm-evaluation-harness's loglikelihood request */
    assert_int_equal(parse(OAI_COMPLETION,
                           "{\"model\":\"m\",\"prompt\":[[7,8,9]],\"max_tokens\":1,\"logprobs\":1,\"echo\":true,"
                           "\"temperature\":0,\"seed\":1234}",
                           &r, &e),
                     RT_OK);
    assert_true(r.echo);
    assert_true(r.logprobs);
    assert_int_equal(r.n_prompt_ids, 3);
    oai_request_free(&r);
    assert_int_equal(
        parse(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[4,5]],\"logprobs\":0}", &r, &e),
        RT_OK);
    assert_int_equal(r.n_prompt_ids, 2);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 0);
    oai_request_free(&r);
}

typedef struct {
    oai_kind_t kind;
    const char *body;
    const char *param;   /* expected param ("" = null) */
    const char *message; /* a substring of the message */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {OAI_CHAT, "", "", "empty"},
    {OAI_CHAT, "{", "", "not valid JSON"},
    {OAI_CHAT, "{} x", "", "unexpected data"},
    {OAI_CHAT, "[]", "", "must be a JSON object"},
    {OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model",
     "'model' is required"},
    {OAI_CHAT, "{\"model\":1,\"messages\":[]}", "model", "must be a string"},
    {OAI_CHAT, "{\"model\":\"m\"}", "messages", "'messages' is required"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":{}}", "messages", "must be an array"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "at least one"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[5]}", "messages[0]", "must be an object"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages[0].role",
     "must be a string"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}",
     "messages[0].role", "'function' is not supported"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":{}}]}",
     "messages[0].content", "must be a string or an array"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
     "messages[0].content", "'image_url' is not supported"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\u00ff\xff\"}]}",
     "messages[0].content", "not valid UTF-8"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"1\"}",
     "temperature", "must be a number"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":-0.1}",
     "temperature", "at least 0"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":1.01}",
     "top_p", "at most 1"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_k\":2.5}",
     "top_k", "must be an integer"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":true}",
     "max_tokens", "must be an integer, not a boolean"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":0}",
     "n", "between 1 and 16"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",null]}",
     "stop", "entry 1 is null"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"1\",\"2\","
     "\"3\",\"4\","
     "\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
     "stop", "at most 16"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}",
     "top_logprobs", "needs 'logprobs'"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
     "\"top_logprobs\":21}",
     "top_logprobs", "between 0 and 20"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{}}",
     "stream_options", "only allowed when 'stream' is true"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,"
     "\"stream_options\":{\"include_usage\":1}}",
     "stream_options.include_usage", "must be a boolean"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}", "seed",
     "must be an integer"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"frequency_penalty\":"
     "2.1}",
     "frequency_penalty", "at most 2"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"repetition_penalty\":"
     "0}",
     "repetition_penalty", "greater than 0"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", "tools", "must be {"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "tools", "must be an array"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"sometimes\"}", "tool_choice", "must be"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}",
     "tool_choice", "not in 'tools'"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", "tool_choice", "needs 'tools'"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[{}]}", "functions", "use 'tools'"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", "tools", "chat completions"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}",
     "messages", "only for assistant"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{}}]}]}",
     "messages[0].tool_calls", "must be"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"1\":"
     "101}}",
     "logit_bias", "from -100 to 100"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"1\":"
     "\"5\"}}",
     "logit_bias", "from -100 to 100"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"a1\":"
     "5}}",
     "logit_bias", "token ids"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"-3\":"
     "5}}",
     "logit_bias", "token ids"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":[1]}",
     "logit_bias", "must be an object"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
     "\"type\":"
     "\"json_schema\",\"json_schema\":{\"name\":\"a\"}}}",
     "response_format", "not supported"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{"
     "\"type\":\"xml\"}}",
     "response_format", "must be"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":"
     "\"json_object\"}",
     "response_format", "must be"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
     "\"function\",\"function\":{\"name\":\"f\"}}],\"response_format\":{\"type\":\"json_object\"}}",
     "response_format", "tools"},
    {OAI_CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop_token_ids\":[-1]"
     "}",
     "stop_token_ids", "token ids"},
    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"user\":5}",
     "user", "must be a string"},
    {OAI_COMPLETION, "{\"model\":\"m\"}", "prompt", "'prompt' is required"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":5}", "prompt", "must be a string"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[]}", "prompt", "must not be empty"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[]]}", "prompt", "must not be empty"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", "prompt", "batched prompts"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,\"a\"]}", "prompt", "entry 1 is a string"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2.5]}", "prompt", "entry 1 is out of range"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}", "logprobs",
     "between 0 and 5"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"echo\":\"yes\"}", "echo", "boolean"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"s\"}", "suffix",
     "not supported"},
    {OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":3}", "best_of",
     "not supported"},
};

/* tools, tool_choice, parallel_tool_calls, assistant tool_calls and tool
 * results in the messages */
static void test_tools(void **state) {
    (void)state;
    oai_request_t r;
    oai_error_t e;
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}},\"parallel_tool_calls\":false}";
    assert_int_equal(parse(OAI_CHAT, body, &r, &e), RT_OK);
    assert_int_equal(r.n_tools, 1);
    assert_string_equal(r.tools[0], "{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":"
                                    "{\"type\":\"object\"}}}");
    assert_int_equal(r.tool_choice, OAI_TOOLS_NAMED);
    assert_string_equal(r.tool_choice_name, "get");
    assert_false(r.parallel_tool_calls);
    assert_int_equal(r.n_msgs, 3);
    assert_string_equal(r.msgs[1].content, "");
    assert_int_equal(r.msgs[1].n_tool_calls, 1);
    assert_string_equal(r.msgs[1].tool_calls[0].name, "get");
    assert_string_equal(r.msgs[1].tool_calls[0].arguments, "{\"city\": \"Paris\"}");
    assert_string_equal(r.msgs[2].role, "tool");
    assert_string_equal(r.msgs[2].content, "sunny");
    oai_request_free(&r);
    /* defaults: auto with tools, none without; "required"; "none" */
    assert_int_equal(parse(OAI_CHAT,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                           "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}",
                           &r, &e),
                     RT_OK);
    assert_int_equal(r.tool_choice, OAI_TOOLS_AUTO);
    assert_true(r.parallel_tool_calls);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e),
                     RT_OK);
    assert_int_equal(r.tool_choice, OAI_TOOLS_NONE);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_CHAT,
                           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[],"
                           "\"tool_choice\":\"none\"}",
                           &r, &e),
                     RT_OK);
    assert_int_equal(r.tool_choice, OAI_TOOLS_NONE);
    oai_request_free(&r);
}

static void test_bad_requests(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case_t *c = &bad_cases[i];
        oai_request_t r;
        oai_error_t e = {0};
        rt_status_t st = parse(c->kind, c->body, &r, &e);
        if (st != RT_ERR_INVALID || e.status != 400 || strcmp(e.param, c->param) != 0 ||
            !strstr(e.message, c->message)) {
            print_error("case %zu (%s): status %d param '%s' message '%s'\n", i, c->body, e.status,
                        e.param, e.message);
            fail();
        }
        assert_string_equal(e.type, "invalid_request_error");
        assert_null(r.model); /* nothing is left allocated */
        assert_null(r.msgs);
        assert_null(r.stops);
    }
}

static void test_utf8(void **state) {
    (void)state;
    assert_true(oai_utf8_valid("plain", 5));
    assert_true(oai_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* é € 😀 */
    assert_false(oai_utf8_valid("\xc3", 1));                                /* truncated */
    assert_false(oai_utf8_valid("\xc0\xaf", 2));                            /* overlong */
    assert_false(oai_utf8_valid("\xed\xa0\x80", 3));                        /* surrogate */
    assert_false(oai_utf8_valid("\xf4\x90\x80\x80", 4));                    /* > U+10FFFF */
    assert_false(oai_utf8_valid("a\xffz", 3));
    char out[32];
    size_t n = oai_utf8_sanitize("a\xff\xc3\xa9\xe2\x82", 6, out, sizeof out);
    assert_string_equal(out, "a\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd");
    assert_int_equal(n, strlen(out));
    n = oai_utf8_sanitize("abcdef", 6, out, 4); /* truncated to fit */
    assert_string_equal(out, "abc");
}

/* ----------------------------------------------------------- rendering */

static cJSON *parse_json(const char *s) {
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    return j;
}

static void test_render_error(void **state) {
    (void)state;
    oai_error_t e;
    oai_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                  "The model `%s` does not exist.", "x\"y");
    char *s = oai_render_error(&e);
    cJSON *j = parse_json(s);
    cJSON *err = cJSON_GetObjectItem(j, "error");
    assert_string_equal(cJSON_GetObjectItem(err, "message")->valuestring,
                        "The model `x\"y` does not exist.");
    assert_string_equal(cJSON_GetObjectItem(err, "type")->valuestring, "invalid_request_error");
    assert_string_equal(cJSON_GetObjectItem(err, "param")->valuestring, "model");
    assert_string_equal(cJSON_GetObjectItem(err, "code")->valuestring, "model_not_found");
    cJSON_Delete(j);
    cJSON_free(s);
    oai_error_set(&e, 500, "server_error", NULL, NULL, "boom");
    s = oai_render_error(&e);
    assert_string_equal(s, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":"
                           "null,\"code\":null}}");
    cJSON_free(s);
}

static void test_render_chunks_and_responses(void **state) {
    (void)state;
    oai_head_t h = {.kind = OAI_CHAT, .id = "chatcmpl-1", .model = "m", .created = 1700000000};
    size_t len = 0;
    cJSON *c = oai_chunk(&h, 0, "assistant", "", NULL, NULL);
    char *s = oai_sse_event(c, &len);
    cJSON_Delete(c);
    assert_string_equal(
        s,
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
        "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
        "\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    assert_int_equal(len, strlen(s));
    free(s);
    c = oai_chunk(&h, 1, NULL, NULL, "length", NULL);
    s = cJSON_PrintUnformatted(c);
    assert_non_null(
        strstr(s, "\"index\":1,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\""));
    cJSON_free(s);
    cJSON_Delete(c);

    c = oai_usage_chunk(&h, oai_usage(5, 7, 2));
    s = cJSON_PrintUnformatted(c);
    assert_non_null(strstr(s,
                           "\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,"
                           "\"total_tokens\":12,\"prompt_tokens_details\":{\"cached_tokens\":2}}"));
    cJSON_free(s);
    cJSON_Delete(c);

    oai_head_t hc = {.kind = OAI_COMPLETION, .id = "cmpl-1", .model = "m", .created = 1};
    cJSON *choices = cJSON_CreateArray();
    cJSON_AddItemToArray(choices, oai_choice(OAI_COMPLETION, 0, "text", "stop", NULL));
    c = oai_response(&hc, choices, oai_usage(1, 1, 0));
    s = cJSON_PrintUnformatted(c);
    assert_string_equal(
        s, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\","
           "\"choices\":[{\"index\":0,\"text\":\"text\",\"logprobs\":null,\"finish_reason\":"
           "\"stop\"}],"
           "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2,"
           "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    cJSON_free(s);
    cJSON_Delete(c);

    choices = cJSON_CreateArray();
    cJSON_AddItemToArray(choices, oai_choice(OAI_CHAT, 0, "hi \"you\"", "length", NULL));
    c = oai_response(&h, choices, oai_usage(1, 1, 0));
    cJSON *msg =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "choices"), 0), "message");
    assert_string_equal(cJSON_GetObjectItem(msg, "role")->valuestring, "assistant");
    assert_string_equal(cJSON_GetObjectItem(msg, "content")->valuestring, "hi \"you\"");
    assert_string_equal(cJSON_GetObjectItem(c, "object")->valuestring, "chat.completion");
    cJSON_Delete(c);

    c = oai_models("m", 5, 2048);
    s = cJSON_PrintUnformatted(c);
    assert_string_equal(
        s, "{\"data\":[{\"id\":\"m\",\"object\":\"model\",\"created\":5,\"owned_by\":\"rotor\","
           "\"root\":\"m\",\"parent\":null,\"max_model_len\":2048}],\"object\":\"list\"}");
    cJSON_free(s);
    cJSON_Delete(c);
}

/* ----------------------------------------------- the text path (vocab) */

typedef struct {
    char path[256];
    gguf_ctx_t *g;
    tok_vocab_t *v;
} vocab_fixture_t;

static int vocab_setup(void **state) {
    vocab_fixture_t *f = calloc(1, sizeof *f);
    if (!f || test_gen_model(f->path, sizeof f->path, "oai", "--tokenizer bpe --n-vocab 600") != 0)
        return -1;
    if (gguf_open(f->path, &f->g) || tok_vocab_from_gguf(f->g, &f->v)) return -1;
    unlink(f->path);
    *state = f;
    return 0;
}

static int vocab_teardown(void **state) {
    vocab_fixture_t *f = *state;
    tok_vocab_destroy(f->v);
    gguf_close(f->g);
    free(f);
    return 0;
}

/* A request of n choices for the text path (no server). */
static fe_req_t *make_req(oai_kind_t kind, const char *body) {
    oai_request_t o;
    oai_error_t e;
    assert_int_equal(parse(kind, body, &o, &e), RT_OK);
    int32_t *prompt = malloc(sizeof *prompt);
    prompt[0] = 1;
    fe_req_t *r = NULL;
    assert_int_equal(fe_req_create(NULL, 9, 3, &o, prompt, 1, 16, &r), RT_OK);
    assert_null(o.model); /* taken */
    return r;
}

/* Feed text's tokens to choice 0; returns the concatenated deltas. Every
 * delta must be whole UTF-8 characters. *stopped_at: token index of the
 * stop, or -1. */
static char *feed(vocab_fixture_t *f, fe_req_t *r, const char *text, int *stopped_at,
                  int *n_tokens) {
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(f->v, text, strlen(text), false, false, &ids, &n), RT_OK);
    fe_text_opts_t o = fe_req_text_opts(r, f->v);
    static char out[FE_TEXT_SCRATCH];
    char *all = calloc(1, 4096);
    *stopped_at = -1;
    for (size_t i = 0; i < n; i++) {
        engine_event_t ev = {.kind = ENGINE_EV_TOKEN,
                             .request_id = r->choices[0].eid,
                             .token = ids[i],
                             .logprob = -0.25f};
        size_t len = 99;
        bool stop = fe_choice_token(&r->choices[0], &o, &ev, 100.0 + (double)i, out, &len);
        assert_int_equal(len, strlen(out));
        assert_true(oai_utf8_valid(out, len));
        strcat(all, out);
        if (stop && *stopped_at < 0) *stopped_at = (int)i;
    }
    engine_event_t fin = {.kind = ENGINE_EV_FINISH,
                          .request_id = r->choices[0].eid,
                          .finish =
                              *stopped_at >= 0 ? ENGINE_FINISH_CANCELLED : ENGINE_FINISH_LENGTH,
                          .n_prompt = 1,
                          .n_cached = 0,
                          .n_generated = (int)n};
    size_t len = 0;
    fe_choice_finish(&r->choices[0], &o, &fin, out, &len);
    assert_true(oai_utf8_valid(out, len));
    strcat(all, out);
    *n_tokens = (int)n;
    free(ids);
    return all;
}

static void test_text_path_utf8(void **state) {
    vocab_fixture_t *f = *state;
    fe_req_t *r = make_req(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"p\",\"stream\":true}");
    const char *text = "na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text \xf0\x9f\x98\x80!";
    int stopped, n;
    char *all = feed(f, r, text, &stopped, &n);
    assert_string_equal(all, text);
    assert_int_equal(stopped, -1);
    assert_string_equal(r->choices[0].finish_reason, "length");
    assert_int_equal(r->choices[0].n_tokens, n);
    assert_null(r->choices[0].text); /* streaming keeps no whole text */
    free(all);
    fe_req_destroy(r);
}

static void test_text_path_stop(void **state) {
    vocab_fixture_t *f = *state;
    fe_req_t *r =
        make_req(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"p\",\"stop\":[\"zzz\",\"is a\"]}");
    int stopped, n;
    char *all = feed(f, r, "hello world, this is a test", &stopped, &n);
    assert_string_equal(all, "hello world, this ");
    assert_string_equal(r->choices[0].text, all); /* non-streaming: the whole text */
    assert_true(stopped > 0);
    assert_string_equal(r->choices[0].finish_reason, "stop");
    assert_int_equal(r->choices[0].n_tokens,
                     stopped + 1); /* tokens after the stop are not counted */
    assert_true(r->choices[0].engine_done && r->choices[0].text_done);
    free(all);
    fe_req_destroy(r);

    /* a stop string at the very end still cuts, and a prefix of a stop that
     * never completes is released at the end */
    r = make_req(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"p\",\"stop\":\"test\"}");
    all = feed(f, r, "a test", &stopped, &n);
    assert_string_equal(all, "a ");
    free(all);
    fe_req_destroy(r);
    r = make_req(OAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"p\",\"stop\":\"tests\"}");
    all = feed(f, r, "a test", &stopped, &n);
    assert_string_equal(all, "a test");
    assert_string_equal(r->choices[0].finish_reason, "length");
    free(all);
    fe_req_destroy(r);
}

static void test_text_path_eos_and_logprobs(void **state) {
    vocab_fixture_t *f = *state;
    fe_req_t *r =
        make_req(OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                           "\"logprobs\":true,\"top_logprobs\":2}");
    fe_text_opts_t o = fe_req_text_opts(r, f->v);
    static char out[FE_TEXT_SCRATCH];
    size_t len;
    int32_t a = tok_find(f->v, "a");
    assert_true(a >= 0 && tok_eos(f->v) >= 0);
    engine_event_t ev = {.kind = ENGINE_EV_TOKEN,
                         .token = a,
                         .logprob = -0.5f,
                         .n_top = 2,
                         .top_ids = {a, tok_eos(f->v)},
                         .top_logprobs = {-0.5f, -1.5f}};
    assert_false(fe_choice_token(&r->choices[0], &o, &ev, 1.0, out, &len));
    assert_string_equal(out, "a");
    ev.token = tok_eos(f->v); /* end of generation: counted, logged, not rendered */
    assert_false(fe_choice_token(&r->choices[0], &o, &ev, 2.0, out, &len));
    assert_int_equal(len, 0);
    engine_event_t fin = {.kind = ENGINE_EV_FINISH,
                          .finish = ENGINE_FINISH_STOP,
                          .n_prompt = 1,
                          .n_cached = 0,
                          .t_scheduled = 0.5,
                          .t_prefill_done = 0.75};
    fe_choice_finish(&r->choices[0], &o, &fin, out, &len);
    assert_string_equal(r->choices[0].text, "a");
    assert_string_equal(r->choices[0].finish_reason, "stop");
    assert_int_equal(r->choices[0].n_tokens, 2);

    cJSON *lp = oai_lp_take(&r->choices[0].lp);
    cJSON *content = cJSON_GetObjectItem(lp, "content");
    assert_int_equal(cJSON_GetArraySize(content), 2);
    cJSON *e0 = cJSON_GetArrayItem(content, 0);
    assert_string_equal(cJSON_GetObjectItem(e0, "token")->valuestring, "a");
    assert_true(cJSON_GetObjectItem(e0, "logprob")->valuedouble == -0.5);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(e0, "bytes"), 0)->valueint, 'a');
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(e0, "top_logprobs")), 2);
    cJSON_Delete(lp);
    assert_null(oai_lp_take(&r->choices[0].lp));

    /* the timeline record */
    r->t_arrival = 0.25;
    r->t_finish = 3.0;
    r->choices[0].submitted = true;
    r->choices[0].worker = 2;
    r->choices[0].t_routed = 0.3;
    hlog_request_t rec;
    fe_req_hlog_record(r, 0, &rec);
    assert_true(rec.id == FE_EID(9, 3, 0));
    assert_int_equal(rec.worker, 2);
    assert_true(rec.t_first_token == 1.0 && rec.t_finish == 3.0 && rec.t_prefill_done == 0.75);
    assert_true(fabs(rec.queue_wait_s - 0.2) < 1e-9);
    assert_int_equal(rec.tokens_in, 1);
    assert_int_equal(rec.tokens_out, 2);
    assert_string_equal(rec.finish_reason, "stop");
    assert_string_equal(rec.error, "");
    int p, c, k;
    fe_req_usage(r, &p, &c, &k);
    assert_true(p == 1 && c == 2 && k == 0);
    fe_req_destroy(r);
}

static void test_legacy_logprobs(void **state) {
    vocab_fixture_t *f = *state;
    oai_lp_t lp = {0};
    int32_t a = tok_find(f->v, "a"), b = tok_find(f->v, "b");
    engine_event_t ev = {.kind = ENGINE_EV_TOKEN,
                         .token = a,
                         .logprob = -0.1f,
                         .n_top = 2,
                         .top_ids = {b, a},
                         .top_logprobs = {-0.05f, -0.1f}};
    assert_true(oai_lp_add(&lp, OAI_COMPLETION, f->v, &ev, 2, 0));
    ev.token = b;
    ev.top_ids[0] = a;
    ev.top_ids[1] = tok_find(f->v, "c");
    assert_true(oai_lp_add(&lp, OAI_COMPLETION, f->v, &ev, 1, 1));
    cJSON *o = oai_lp_take(&lp);
    char *s = cJSON_PrintUnformatted(o);
    assert_string_equal(
        s,
        "{\"tokens\":[\"a\",\"b\"],\"token_logprobs\":[-0.10000000149011612,-0.10000000149011612],"
        "\"top_logprobs\":[{\"b\":-0.05000000074505806,\"a\":-0.10000000149011612},"
        "{\"a\":-0.05000000074505806,\"b\":-0.10000000149011612}],\"text_offset\":[0,1]}");
    cJSON_free(s);
    cJSON_Delete(o);
    oai_lp_clear(&lp);
}

int main(void) {
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_chat_all_fields),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_response_format),
        cmocka_unit_test(test_completion_prompts),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_tools),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_render_error),
        cmocka_unit_test(test_render_chunks_and_responses),
    };
    const struct CMUnitTest with_vocab[] = {
        cmocka_unit_test(test_text_path_utf8),
        cmocka_unit_test(test_text_path_stop),
        cmocka_unit_test(test_text_path_eos_and_logprobs),
        cmocka_unit_test(test_legacy_logprobs),
    };
    int fails = cmocka_run_group_tests_name("openai_parse", plain, NULL, NULL);
    fails +=
        cmocka_run_group_tests_name("openai_text_path", with_vocab, vocab_setup, vocab_teardown);
    return fails;
}
