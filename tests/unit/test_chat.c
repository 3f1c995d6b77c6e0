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
    {"system", "Be brief."},
    {"user", " Hi "},
    {"assistant", "Hello."},
    {"user", "Bye"},
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
    const chat_msg_t m[] = {{"user", "a"}, {"assistant", "b"}, {"user", "c"}};
    assert_int_equal(chat_render(CHAT_TMPL_LLAMA2_SYS_BOS, m, 3, true, "<B>", "<E>", &out), RT_OK);
    assert_string_equal(out, "[INST] a [/INST]b<E><B>[INST] c [/INST]");
    free(out);
    /* errors leave *out alone */
    out = (char *)"untouched";
    assert_int_equal(chat_render(CHAT_TMPL_UNKNOWN, m, 3, true, NULL, NULL, &out),
                     RT_ERR_UNSUPPORTED);
    const chat_msg_t bad[] = {{"user", NULL}};
    assert_int_equal(chat_render(CHAT_TMPL_CHATML, bad, 1, true, NULL, NULL, &out), RT_ERR_INVALID);
    assert_string_equal(out, "untouched");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_render_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
