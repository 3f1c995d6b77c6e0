/* test_chat.c - chat template detection from Jinja sources and rendering of
 * each family, against strings written out by hand from llama.cpp's
 * llm_chat_apply_template (tests/py compares with llama.cpp itself). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "rotor/chat.h"

static const char *smollm2_jinja =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char *llama3_jinja =
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
    "message['content'] | trim + '<|eot_id|>' %}";
static const char *llama2_jinja =
    "{% if messages[0]['role'] == 'system' %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' %}{% endif %}{{ '[INST] ' + content + ' [/INST]' }}";
static const char *mistral_jinja =
    "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% endfor %}";

static void test_detect(void **state) {
    (void)state;
    assert_int_equal(chat_template_detect(smollm2_jinja), CHAT_TMPL_CHATML);
    assert_int_equal(chat_template_detect(llama3_jinja), CHAT_TMPL_LLAMA3);
    assert_int_equal(chat_template_detect(llama2_jinja), CHAT_TMPL_LLAMA2);
    assert_int_equal(chat_template_detect(mistral_jinja), CHAT_TMPL_MISTRAL);
    assert_int_equal(chat_template_detect("{{ bos_token + '[INST] ' }}<<SYS>>"),
                     CHAT_TMPL_LLAMA2_SYS_BOS);
    assert_int_equal(chat_template_detect("[INST] <<SYS>> {{ content.strip() }}"),
                     CHAT_TMPL_LLAMA2_SYS_STRIP);
    assert_int_equal(chat_template_detect("[AVAILABLE_TOOLS] [INST] x"), CHAT_TMPL_MISTRAL_V1);
    assert_int_equal(chat_template_detect("[AVAILABLE_TOOLS]{{ '[INST]' }}"), CHAT_TMPL_MISTRAL_V3);
    assert_int_equal(chat_template_detect("[AVAILABLE_TOOLS]{{ \"[INST]\" }}"),
                     CHAT_TMPL_MISTRAL_V3_TEKKEN);
    assert_int_equal(chat_template_detect("<|im_start|><|im_sep|>"), CHAT_TMPL_UNKNOWN);
    assert_int_equal(chat_template_detect("{{ messages }}"), CHAT_TMPL_UNKNOWN);
    assert_int_equal(chat_template_detect(""), CHAT_TMPL_UNKNOWN);
    assert_int_equal(chat_template_detect(NULL), CHAT_TMPL_UNKNOWN);
    /* a family name is accepted where a template is expected */
    assert_int_equal(chat_template_detect("llama3"), CHAT_TMPL_LLAMA3);
}

static void test_names(void **state) {
    (void)state;
    for (int t = CHAT_TMPL_CHATML; t <= CHAT_TMPL_MISTRAL_V3_TEKKEN; t++)
        assert_int_equal(chat_template_from_name(chat_template_name((chat_tmpl_t)t)), t);
    assert_int_equal(chat_template_from_name("llama2-sys"), CHAT_TMPL_LLAMA2);
    assert_int_equal(chat_template_from_name("nope"), CHAT_TMPL_UNKNOWN);
    assert_int_equal(chat_template_from_name(NULL), CHAT_TMPL_UNKNOWN);
    assert_string_equal(chat_template_name(CHAT_TMPL_UNKNOWN), "unknown");
}

static const chat_msg_t conv[] = {
    {.role = "system", .content = "Be brief."},
    {.role = "user", .content = " Hi "},
    {.role = "assistant", .content = "Hello."},
    {.role = "user", .content = "Bye"},
};

static void expect_render(chat_tmpl_t t, bool gen, const char *want) {
    char *out = NULL;
    assert_int_equal(chat_render(t, conv, 4, gen, NULL, NULL, &out), RT_OK);
    assert_string_equal(out, want);
    free(out);
}

static void test_render(void **state) {
    (void)state;
    expect_render(CHAT_TMPL_CHATML, true,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                  "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                  "<|im_start|>assistant\n");
    expect_render(CHAT_TMPL_CHATML, false,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n"
                  "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n");
    expect_render(CHAT_TMPL_LLAMA3, true,
                  "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render(
        CHAT_TMPL_LLAMA2, true,
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi  [/INST]Hello.</s>[INST] Bye [/INST]");
    expect_render(CHAT_TMPL_LLAMA2_SYS_BOS, true,
                  "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi  [/INST]Hello.</s><s>[INST] Bye "
                  "[/INST]");
    expect_render(CHAT_TMPL_LLAMA2_SYS_STRIP, true,
                  "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello.</s>[INST] Bye [/INST]");
    expect_render(CHAT_TMPL_MISTRAL, true,
                  "[INST] Be brief.\n Hi  [/INST]Hello.</s>[INST] Bye [/INST]");
    expect_render(CHAT_TMPL_MISTRAL_V1, true,
                  " [INST] Be brief.\n\n Hi  [/INST] Hello.</s> [INST] Bye [/INST]");
    expect_render(CHAT_TMPL_MISTRAL_V3, true,
                  "[INST] Be brief.\n\n Hi [/INST] Hello.</s>[INST] Bye[/INST]");
    expect_render(CHAT_TMPL_MISTRAL_V3_TEKKEN, true,
                  "[INST]Be brief.\n\n Hi [/INST]Hello.</s>[INST]Bye[/INST]");
}

static void test_render_edge_cases(void **state) {
    (void)state;
    char *out = NULL;
    /* no messages: an empty string, or just the generation prompt */
    assert_int_equal(chat_render(CHAT_TMPL_CHATML, NULL, 0, false, NULL, NULL, &out), RT_OK);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(chat_render(CHAT_TMPL_CHATML, NULL, 0, true, NULL, NULL, &out), RT_OK);
    assert_string_equal(out, "<|im_start|>assistant\n");
    free(out);
    /* custom BOS/EOS texts */
    const chat_msg_t m[] = {
        {.role = "user", .content = "a"}, {.role = "assistant", .content = "b"}, {.role = "user", .content = "c"}};
    assert_int_equal(chat_render(CHAT_TMPL_LLAMA2_SYS_BOS, m, 3, true, "<B>", "<E>", &out), RT_OK);
    assert_string_equal(out, "[INST] a [/INST]b<E><B>[INST] c [/INST]");
    free(out);
    /* errors leave *out alone */
    out = (char *)"untouched";
    assert_int_equal(chat_render(CHAT_TMPL_UNKNOWN, m, 3, true, NULL, NULL, &out),
                     RT_ERR_UNSUPPORTED);
    const chat_msg_t bad[] = {{.role = "user", .content = NULL}};
    assert_int_equal(chat_render(CHAT_TMPL_CHATML, bad, 1, true, NULL, NULL, &out), RT_ERR_INVALID);
    assert_string_equal(out, "untouched");
}

/* Hermes-style tools on ChatML: the system turn, an assistant's calls
 * (arguments given as a JSON object's text, and as a plain string), a run
 * of tool results as one user turn; without tools, chat_render's text;
 * other families refuse. */
static void test_render_tools(void **state) {
    (void)state;
    const char *tools[2] = {"{\"type\":\"function\",\"function\":{\"name\":\"f\"}}",
                            "{\"type\":\"function\",\"function\":{\"name\":\"g\"}}"};
    const chat_tool_call_t calls[2] = {{"f", "{\"x\": 1}"}, {"g\"q", "not json"}};
    const chat_msg_t m[] = {
        {.role = "system", .content = "Be brief."},
        {.role = "user", .content = "Hi"},
        {.role = "assistant", .content = "", .tool_calls = calls, .n_tool_calls = 2},
        {.role = "tool", .content = "one"},
        {.role = "tool", .content = "two"},
        {.role = "assistant", .content = "Done."},
    };
    char *out = NULL;
    assert_int_equal(chat_render_tools(CHAT_TMPL_CHATML, m, 6, tools, 2, true, NULL, NULL, &out), RT_OK);
    const char *want =
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to help with the "
        "user's request.\n\nThe functions you can call are described in JSON inside <tools></tools> tags:\n"
        "<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"f\"}}\n"
        "{\"type\":\"function\",\"function\":{\"name\":\"g\"}}\n</tools>\n\n"
        "To call a function, reply with a JSON object holding the function's name and its arguments inside "
        "<tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>\n"
        "<tool_call>\n{\"name\": \"g\\\"q\", \"arguments\": \"not json\"}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\none\n</tool_response>\n<tool_response>\ntwo\n</tool_response>"
        "<|im_end|>\n"
        "<|im_start|>assistant\nDone.<|im_end|>\n<|im_start|>assistant\n";
    assert_string_equal(out, want);
    free(out);
    /* no tools, no calls: chat_render's text, every family */
    char *plain = NULL;
    assert_int_equal(chat_render_tools(CHAT_TMPL_LLAMA3, conv, 4, NULL, 0, true, NULL, NULL, &out), RT_OK);
    assert_int_equal(chat_render(CHAT_TMPL_LLAMA3, conv, 4, true, NULL, NULL, &plain), RT_OK);
    assert_string_equal(out, plain);
    free(out);
    free(plain);
    /* tools without a system message: a system turn of its own */
    assert_int_equal(chat_render_tools(CHAT_TMPL_CHATML, m + 1, 1, tools, 1, false, NULL, NULL, &out), RT_OK);
    assert_true(strncmp(out, "<|im_start|>system\n# Tools\n", 27) == 0);
    assert_non_null(strstr(out, "</tools>"));
    assert_true(strstr(out, "<|im_start|>user\nHi<|im_end|>\n") != NULL);
    free(out);
    /* Llama 3: the tools open the first user turn, calls are JSON joined
     * by "; ", results are ipython turns */
    assert_int_equal(chat_render_tools(CHAT_TMPL_LLAMA3, m, 6, tools, 1, true, NULL, NULL, &out), RT_OK);
    const char *want3 =
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nYou can call the functions described below in JSON. To "
        "call one, answer with only a JSON object {\"name\": function name, \"parameters\": object of argument "
        "names and values}, and nothing else.\n\n{\"type\":\"function\",\"function\":{\"name\":\"f\"}}\n\nHi"
        "<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"f\", \"parameters\": {\"x\": 1}}; "
        "{\"name\": \"g\\\"q\", \"parameters\": \"not json\"}<|eot_id|>"
        "<|start_header_id|>ipython<|end_header_id|>\n\none<|eot_id|>"
        "<|start_header_id|>ipython<|end_header_id|>\n\ntwo<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nDone.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n";
    assert_string_equal(out, want3);
    free(out);
    /* forced openings */
    char *p = chat_tool_call_prefix(CHAT_TMPL_CHATML, "f\"");
    assert_string_equal(p, "<tool_call>\n{\"name\": \"f\\\"\", \"arguments\": ");
    free(p);
    p = chat_tool_call_prefix(CHAT_TMPL_LLAMA3, NULL);
    assert_string_equal(p, "{\"name\": \"");
    free(p);
    assert_null(chat_tool_call_prefix(CHAT_TMPL_MISTRAL, "f"));
    /* tools or tool messages on another family: refused */
    assert_int_equal(chat_render_tools(CHAT_TMPL_LLAMA2, m, 2, tools, 1, true, NULL, NULL, &out), RT_ERR_UNSUPPORTED);
    assert_int_equal(chat_render_tools(CHAT_TMPL_MISTRAL, m, 4, NULL, 0, true, NULL, NULL, &out),
                     RT_ERR_UNSUPPORTED);
}

static void expect_calls_in(chat_tmpl_t t, const char *text, size_t want_n, size_t want_content, const char *name0,
                            const char *args0) {
    chat_parsed_call_t *calls = NULL;
    size_t n = 99, content = 99;
    assert_int_equal(chat_parse_tool_calls(t, text, strlen(text), &calls, &n, &content), RT_OK);
    assert_int_equal(n, want_n);
    assert_int_equal(content, want_n ? want_content : strlen(text)); /* no call: all of it is content */
    if (n) {
        assert_string_equal(calls[0].name, name0);
        assert_string_equal(calls[0].arguments, args0);
    } else
        assert_null(calls);
    chat_parsed_calls_free(calls, n);
}

static void expect_calls(const char *text, size_t want_n, size_t want_content, const char *name0,
                         const char *args0) {
    expect_calls_in(CHAT_TMPL_CHATML, text, want_n, want_content, name0, args0);
}

static void test_parse_tool_calls(void **state) {
    (void)state;
    /* content, then two calls; arguments come back compact */
    const char *two = "Let me look.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>\n"
                      "<tool_call>{\"name\":\"g\",\"parameters\":{}}</tool_call>";
    expect_calls(two, 2, 12, "f", "{\"x\":[1,2]}");
    chat_parsed_call_t *calls = NULL;
    size_t n = 0, content = 0;
    assert_int_equal(chat_parse_tool_calls(CHAT_TMPL_CHATML, two, strlen(two), &calls, &n, &content), RT_OK);
    assert_string_equal(calls[1].name, "g");
    assert_string_equal(calls[1].arguments, "{}");
    chat_parsed_calls_free(calls, n);
    /* the last block unclosed (generation stopped at it) */
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}", 1, 0, "f", "{}");
    /* the outer brace dropped, text after it: the two values one by one */
    expect_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": \n{\"a\":\"b\"}\n</tool_call>\nMore.", 1, 0, "f",
                 "{\"a\":\"b\"}");
    /* not calls: no name, arguments not an object, broken JSON, no block */
    expect_calls("<tool_call>{\"arguments\": {}}</tool_call>", 0, 0, NULL, NULL);
    expect_calls("<tool_call>{\"name\": \"f\", \"arguments\": 3}</tool_call>", 0, 0, NULL, NULL);
    expect_calls("<tool_call>{\"name\": \"f\", \"argu</tool_call>", 0, 0, NULL, NULL);
    expect_calls("Just text.", 0, 0, NULL, NULL);
    /* a bad block skipped, a good one kept; content ends at the first block */
    expect_calls("A <tool_call>{]</tool_call><tool_call>{\"name\":\"h\",\"arguments\":{}}</tool_call>", 1, 1, "h",
                 "{}");
    /* Llama 3: the whole answer; after <|python_tag|>; two joined by ";";
     * the outer brace dropped; text is not a call */
    const chat_tmpl_t L3 = CHAT_TMPL_LLAMA3;
    expect_calls_in(L3, " {\"name\": \"f\", \"parameters\": {\"x\": 1}}", 1, 0, "f", "{\"x\":1}");
    expect_calls_in(L3, "<|python_tag|>{\"name\": \"f\", \"arguments\": {}}", 1, 0, "f", "{}");
    expect_calls_in(L3, "{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"parameters\": {\"y\": 2}}", 2, 0,
                    "f", "{}");
    expect_calls_in(L3, "{\"name\": \"f\", \"parameters\": {\"a\": \"b\"}", 1, 0, "f", "{\"a\":\"b\"}");
    expect_calls_in(L3, "The answer is {\"name\": \"f\", \"parameters\": {}}", 0, 0, NULL, NULL);
    expect_calls_in(L3, "{\"no\": 1}", 0, 0, NULL, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_render_edge_cases),
        cmocka_unit_test(test_render_tools),
        cmocka_unit_test(test_parse_tool_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
