/*
 * chat.c - chat templates: recognize the family of a GGUF's Jinja
 * tokenizer.chat_template by its markers and render messages with C code for
 * that family, producing the same text as llama.cpp's
 * llama_chat_apply_template (llm_chat_detect_template / llm_chat_apply_template).
 *
 * Families and llama.cpp's names for them:
 *   chatml             <|im_start|>role\ncontent<|im_end|>\n
 *   llama3             <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
 *   llama2-sys         [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST]assistant</s>
 *   llama2-sys-bos     same, with <s> before each later [INST]
 *   llama2-sys-strip   same as llama2-sys, contents trimmed
 *   mistral (llama2)   [INST] user [/INST]... (system prompt as plain text)
 *   mistral-v1/v3/v3-tekken  the official Mistral variants
 */
#include "rotor/chat.h"

#include "chat/chat_impl.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    chat_tmpl_t t;
} names[] = {
    {"chatml", CHAT_TMPL_CHATML},
    {"llama3", CHAT_TMPL_LLAMA3},
    {"llama2", CHAT_TMPL_LLAMA2},
    {"llama2-sys", CHAT_TMPL_LLAMA2},
    {"llama2-sys-bos", CHAT_TMPL_LLAMA2_SYS_BOS},
    {"llama2-sys-strip", CHAT_TMPL_LLAMA2_SYS_STRIP},
    {"mistral", CHAT_TMPL_MISTRAL},
    {"mistral-v1", CHAT_TMPL_MISTRAL_V1},
    {"mistral-v3", CHAT_TMPL_MISTRAL_V3},
    {"mistral-v3-tekken", CHAT_TMPL_MISTRAL_V3_TEKKEN},
};

chat_tmpl_t chat_template_from_name(const char *name) {
    if (!name) return CHAT_TMPL_UNKNOWN;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return names[i].t;
    return CHAT_TMPL_UNKNOWN;
}

const char *chat_template_name(chat_tmpl_t t) {
    switch (t) {
    case CHAT_TMPL_CHATML:
        return "chatml";
    case CHAT_TMPL_LLAMA3:
        return "llama3";
    case CHAT_TMPL_LLAMA2:
        return "llama2";
    case CHAT_TMPL_MISTRAL:
        return "mistral";
    case CHAT_TMPL_LLAMA2_SYS_BOS:
        return "llama2-sys-bos";
    case CHAT_TMPL_LLAMA2_SYS_STRIP:
        return "llama2-sys-strip";
    case CHAT_TMPL_MISTRAL_V1:
        return "mistral-v1";
    case CHAT_TMPL_MISTRAL_V3:
        return "mistral-v3";
    case CHAT_TMPL_MISTRAL_V3_TEKKEN:
        return "mistral-v3-tekken";
    default:
        return "unknown";
    }
}

chat_tmpl_t chat_template_detect(const char *jinja) {
    if (!jinja || !*jinja) return CHAT_TMPL_UNKNOWN;
    chat_tmpl_t named = chat_template_from_name(jinja);
    if (named != CHAT_TMPL_UNKNOWN) return named;
#define HAS(s) (strstr(jinja, (s)) != NULL)
    if (HAS("<|im_start|>")) {
        /* Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) are ChatML-like
         * but not ChatML */
        return HAS("<|im_sep|>") || HAS("<end_of_utterance>") ? CHAT_TMPL_UNKNOWN
                                                              : CHAT_TMPL_CHATML;
    }
    if (strncmp(jinja, "mistral", 7) == 0 || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return CHAT_TMPL_UNKNOWN; /* mistral v7: not supported */
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]")) return CHAT_TMPL_MISTRAL_V1;
            if (HAS("\"[INST]\"")) return CHAT_TMPL_MISTRAL_V3_TEKKEN;
            return CHAT_TMPL_MISTRAL_V3;
        }
        if (HAS("content.strip()")) return CHAT_TMPL_LLAMA2_SYS_STRIP;
        if (HAS("bos_token + '[INST]")) return CHAT_TMPL_LLAMA2_SYS_BOS;
        if (HAS("<<SYS>>")) return CHAT_TMPL_LLAMA2;
        return CHAT_TMPL_MISTRAL;
    }
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return CHAT_TMPL_LLAMA3;
#undef HAS
    return CHAT_TMPL_UNKNOWN;
}

static void render_llama2(sbuf_t *b, chat_tmpl_t t, const chat_msg_t *m, size_t n, const char *bos,
                          const char *eos) {
    bool sys_ok = t != CHAT_TMPL_MISTRAL;
    bool bos_inside = t == CHAT_TMPL_LLAMA2_SYS_BOS;
    bool strip = t == CHAT_TMPL_LLAMA2_SYS_STRIP;
    bool inside = true; /* the first [INST] goes without BOS */
    sb_puts(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            inside = true;
            if (bos_inside) sb_puts(b, bos);
            sb_puts(b, "[INST] ");
        }
        const char *role = m[i].role;
        if (strcmp(role, "system") == 0) {
            if (sys_ok) sb_puts(b, "<<SYS>>\n");
            strip ? sb_put_trimmed(b, m[i].content) : sb_puts(b, m[i].content);
            sb_puts(b, sys_ok ? "\n<</SYS>>\n\n" : "\n");
        } else if (strcmp(role, "user") == 0) {
            strip ? sb_put_trimmed(b, m[i].content) : sb_puts(b, m[i].content);
            sb_puts(b, " [/INST]");
        } else {
            strip ? sb_put_trimmed(b, m[i].content) : sb_puts(b, m[i].content);
            sb_puts(b, eos);
            inside = false;
        }
    }
}

static void render_mistral(sbuf_t *b, chat_tmpl_t t, const chat_msg_t *m, size_t n,
                           const char *eos) {
    const char *lead = t == CHAT_TMPL_MISTRAL_V1 ? " " : "";
    const char *trail = t == CHAT_TMPL_MISTRAL_V3_TEKKEN ? "" : " ";
    bool trim = t == CHAT_TMPL_MISTRAL_V3;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            sb_puts(b, lead);
            sb_puts(b, "[INST]");
            sb_puts(b, trail);
            inside = true;
        }
        const char *role = m[i].role;
        if (strcmp(role, "system") == 0) {
            sb_puts(b, m[i].content);
            sb_puts(b, "\n\n");
        } else if (strcmp(role, "user") == 0) {
            sb_puts(b, m[i].content);
            sb_puts(b, lead);
            sb_puts(b, "[/INST]");
        } else {
            sb_puts(b, trail);
            trim ? sb_put_trimmed(b, m[i].content) : sb_puts(b, m[i].content);
            sb_puts(b, eos);
            inside = false;
        }
    }
}

rt_status_t chat_render(chat_tmpl_t t, const chat_msg_t *msgs, size_t n_msgs,
                        bool add_generation_prompt, const char *bos, const char *eos, char **out) {
    sbuf_t b = {0};
    if (!out || (n_msgs && !msgs))
        return rt_error_set(RT_ERR_INVALID, "chat_render: bad arguments");
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return rt_error_set(RT_ERR_INVALID, "chat_render: message %zu lacks role or content",
                                i);
    if (!bos) bos = "<s>";
    if (!eos) eos = "</s>";
    sb_puts(&b, ""); /* a valid empty string even for zero messages */
    switch (t) {
    case CHAT_TMPL_CHATML:
        for (size_t i = 0; i < n_msgs; i++) {
            sb_puts(&b, "<|im_start|>");
            sb_puts(&b, msgs[i].role);
            sb_puts(&b, "\n");
            sb_puts(&b, msgs[i].content);
            sb_puts(&b, "<|im_end|>\n");
        }
        if (add_generation_prompt) sb_puts(&b, "<|im_start|>assistant\n");
        break;
    case CHAT_TMPL_LLAMA3:
        for (size_t i = 0; i < n_msgs; i++) {
            sb_puts(&b, "<|start_header_id|>");
            sb_puts(&b, msgs[i].role);
            sb_puts(&b, "<|end_header_id|>\n\n");
            sb_put_trimmed(&b, msgs[i].content);
            sb_puts(&b, "<|eot_id|>");
        }
        if (add_generation_prompt) sb_puts(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_TMPL_LLAMA2:
    case CHAT_TMPL_LLAMA2_SYS_BOS:
    case CHAT_TMPL_LLAMA2_SYS_STRIP:
    case CHAT_TMPL_MISTRAL:
        render_llama2(&b, t, msgs, n_msgs, bos, eos);
        break;
    case CHAT_TMPL_MISTRAL_V1:
    case CHAT_TMPL_MISTRAL_V3:
    case CHAT_TMPL_MISTRAL_V3_TEKKEN:
        render_mistral(&b, t, msgs, n_msgs, eos);
        break;
    default:
        free(b.s);
        return rt_error_set(RT_ERR_UNSUPPORTED, "chat_render: unknown chat template");
    }
    if (b.oom) {
        free(b.s);
        return rt_error_set(RT_ERR_NOMEM, "chat_render: out of memory");
    }
    *out = b.s;
    return RT_OK;
}
