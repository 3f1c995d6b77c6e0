/*
 * tokenize.c - the `rotor tokenize` and `rotor chat-template` subcommands,
 * thin command-line fronts over tokenizer.h and chat.h used by the tests
 * that compare rotor with llama.cpp.
 *
 *   rotor tokenize --model FILE (--text T | --file F) [--no-add-special]
 *                  [--no-parse-special] [--json]
 *       prints the ids, space-separated, or {"ids":[...],"pieces":[...]}
 *       (pieces rendered with special tokens, invalid UTF-8 as U+FFFD).
 *   rotor tokenize --model FILE --dump-vocab
 *       prints the vocabulary's special ids, flags, EOG and control sets and
 *       every token's piece in hex, as one JSON object (for tests).
 *   rotor chat-template --model FILE --messages-json FILE [--template NAME]
 *                  [--no-gen-prompt]
 *       prints the rendered prompt with no trailing newline. The messages
 *       file holds [{"role":..,"content":..}, ...] (or {"messages": [...]}).
 *       --template names a family (chatml, llama3, llama2, mistral, ...)
 *       and makes --model optional.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/chat.h"
#include "rotor/gguf.h"
#include "rotor/status.h"
#include "rotor/tokenizer.h"
#include "tools/tools.h"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

/* Copy of s[0..n) with invalid UTF-8 replaced by U+FFFD (for JSON output). */
static char *utf8_sanitize(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1);
    size_t w = 0;
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t need = c < 0x80                 ? 1
                      : c >= 0xc2 && c <= 0xdf ? 2
                      : c >= 0xe0 && c <= 0xef ? 3
                      : c >= 0xf0 && c <= 0xf4 ? 4
                                               : 0;
        bool ok = need > 0 && i + need <= n;
        for (size_t k = 1; ok && k < need; k++)
            ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && need >= 3) {
            unsigned c1 = p[i + 1];
            ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 > 0x9f) &&
                 !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 > 0x8f);
        }
        if (ok && c != 0) {
            memcpy(out + w, s + i, need);
            w += need;
            i += need;
        } else {
            memcpy(out + w, "\xef\xbf\xbd", 3);
            w += 3;
            i += 1;
        }
    }
    out[w] = '\0';
    return out;
}

static int open_vocab(const char *model, gguf_ctx_t **g, tok_vocab_t **v) {
    rt_status_t st = gguf_open(model, g);
    if (st) {
        fprintf(stderr, "rotor: %s: %s\n", model, rt_error_msg());
        return 1;
    }
    if (v && (st = tok_vocab_from_gguf(*g, v))) {
        fprintf(stderr, "rotor: %s: %s\n", model, rt_error_msg());
        gguf_close(*g);
        *g = NULL;
        return 1;
    }
    return 0;
}

static void print_hex_pieces(const tok_vocab_t *v, bool special) {
    int32_t n = tok_n_vocab(v);
    for (int32_t i = 0; i < n; i++) {
        char buf[1024];
        size_t l = tok_token_to_piece(v, i, buf, sizeof buf, special);
        printf("%s\"", i ? "," : "");
        for (size_t k = 0; k < l && k < sizeof buf; k++)
            printf("%02x", (unsigned char)buf[k]);
        printf("\"");
    }
}

/* --dump-vocab: special ids, flags, the end-of-generation and control sets,
 * and every token's piece (hex) without and with special rendering. */
static int dump_vocab(const char *model) {
    gguf_ctx_t *g = NULL;
    tok_vocab_t *v = NULL;
    if (open_vocab(model, &g, &v)) return 1;
    int32_t n = tok_n_vocab(v);
    printf("{\"n_vocab\":%d,\"kind\":\"%s\",\"pre\":\"%s\",\"bos\":%d,\"eos\":%d,\"eot\":%d,"
           "\"add_bos\":%s,\"add_eos\":%s,\"eog\":[",
           n, tok_kind(v) == TOK_KIND_SPM ? "spm" : "bpe", tok_pre(v), tok_bos(v), tok_eos(v),
           tok_eot(v), tok_add_bos(v) ? "true" : "false", tok_add_eos(v) ? "true" : "false");
    bool first = true;
    for (int32_t i = 0; i < n; i++) {
        if (tok_is_eog(v, i)) {
            printf("%s%d", first ? "" : ",", i);
            first = false;
        }
    }
    printf("],\"control\":[");
    first = true;
    for (int32_t i = 0; i < n; i++) {
        if (tok_is_control(v, i)) {
            printf("%s%d", first ? "" : ",", i);
            first = false;
        }
    }
    printf("],\"pieces\":[");
    print_hex_pieces(v, false);
    printf("],\"pieces_special\":[");
    print_hex_pieces(v, true);
    printf("]}\n");
    tok_vocab_destroy(v);
    gguf_close(g);
    return 0;
}

static void tokenize_usage(void) {
    fprintf(stderr, "usage: rotor tokenize --model FILE (--text T | --file F) [--no-add-special]\n"
                    "                      [--no-parse-special] [--json]\n"
                    "       rotor tokenize --model FILE --dump-vocab\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    bool add_special = true, parse_special = true, json = false, dump = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(a, "--text") == 0 && i + 1 < argc)
            text = argv[++i];
        else if (strcmp(a, "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(a, "--no-add-special") == 0)
            add_special = false;
        else if (strcmp(a, "--no-parse-special") == 0)
            parse_special = false;
        else if (strcmp(a, "--json") == 0)
            json = true;
        else if (strcmp(a, "--dump-vocab") == 0)
            dump = true;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            tokenize_usage();
            return 0;
        } else {
            fprintf(stderr, "rotor tokenize: unknown argument '%s'\n", a);
            tokenize_usage();
            return 2;
        }
    }
    if (model && dump && !text && !file) return dump_vocab(model);
    if (!model || (!text && !file) || (text && file)) {
        tokenize_usage();
        return 2;
    }
    size_t len = 0;
    char *owned = NULL;
    if (file) {
        owned = read_file(file, &len);
        if (!owned) {
            fprintf(stderr, "rotor tokenize: cannot read %s\n", file);
            return 1;
        }
        text = owned;
    } else {
        len = strlen(text);
    }

    gguf_ctx_t *g = NULL;
    tok_vocab_t *v = NULL;
    int rc = open_vocab(model, &g, &v);
    int32_t *ids = NULL;
    size_t n = 0;
    if (rc) goto out;
    if (tok_encode(v, text, len, add_special, parse_special, &ids, &n)) {
        fprintf(stderr, "rotor tokenize: %s\n", rt_error_msg());
        rc = 1;
        goto out;
    }
    if (!json) {
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    } else {
        cJSON *root = cJSON_CreateObject();
        cJSON *jids = cJSON_AddArrayToObject(root, "ids");
        cJSON *jp = cJSON_AddArrayToObject(root, "pieces");
        for (size_t i = 0; i < n; i++) {
            char buf[512];
            size_t pl = tok_token_to_piece(v, ids[i], buf, sizeof buf, true);
            char *piece = utf8_sanitize(buf, pl < sizeof buf ? pl : sizeof buf);
            cJSON_AddItemToArray(jids, cJSON_CreateNumber(ids[i]));
            cJSON_AddItemToArray(jp, cJSON_CreateString(piece ? piece : ""));
            free(piece);
        }
        char *s = cJSON_PrintUnformatted(root);
        printf("%s\n", s ? s : "{}");
        free(s);
        cJSON_Delete(root);
    }
out:
    free(ids);
    tok_vocab_destroy(v);
    if (g) gguf_close(g);
    free(owned);
    return rc;
}

static void chat_usage(void) {
    fprintf(stderr,
            "usage: rotor chat-template --model FILE --messages-json FILE [--template NAME]\n"
            "                           [--no-gen-prompt]\n");
}

int cmd_chat_template(int argc, char **argv) {
    const char *model = NULL, *msgs_path = NULL, *tmpl_name = NULL;
    bool gen_prompt = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(a, "--messages-json") == 0 && i + 1 < argc)
            msgs_path = argv[++i];
        else if (strcmp(a, "--template") == 0 && i + 1 < argc)
            tmpl_name = argv[++i];
        else if (strcmp(a, "--no-gen-prompt") == 0)
            gen_prompt = false;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            chat_usage();
            return 0;
        } else {
            fprintf(stderr, "rotor chat-template: unknown argument '%s'\n", a);
            chat_usage();
            return 2;
        }
    }
    if (!msgs_path || (!model && !tmpl_name)) {
        chat_usage();
        return 2;
    }

    int rc = 1;
    gguf_ctx_t *g = NULL;
    cJSON *root = NULL;
    chat_msg_t *msgs = NULL;
    char *json = NULL, *prompt = NULL;
    chat_tmpl_t t = CHAT_TMPL_UNKNOWN;
    if (tmpl_name) {
        t = chat_template_from_name(tmpl_name);
        if (t == CHAT_TMPL_UNKNOWN) {
            fprintf(stderr, "rotor chat-template: unknown template '%s'\n", tmpl_name);
            goto out;
        }
    } else {
        if (open_vocab(model, &g, NULL)) goto out;
        const char *jinja = gguf_get_str(g, "tokenizer.chat_template", NULL);
        if (!jinja) {
            fprintf(stderr, "rotor chat-template: %s has no tokenizer.chat_template\n", model);
            goto out;
        }
        t = chat_template_detect(jinja);
        if (t == CHAT_TMPL_UNKNOWN) {
            fprintf(stderr, "rotor chat-template: chat template of %s not recognized\n", model);
            goto out;
        }
    }

    size_t jl;
    json = read_file(msgs_path, &jl);
    if (!json) {
        fprintf(stderr, "rotor chat-template: cannot read %s\n", msgs_path);
        goto out;
    }
    root = cJSON_ParseWithLength(json, jl);
    const cJSON *arr = root;
    if (cJSON_IsObject(root)) arr = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(arr)) {
        fprintf(stderr, "rotor chat-template: %s: expected a JSON array of messages\n", msgs_path);
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
    msgs = calloc(n + 1, sizeof *msgs);
    if (!msgs) goto out;
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            fprintf(stderr, "rotor chat-template: message %zu needs string role and content\n", k);
            goto out;
        }
        msgs[k].role = role->valuestring;
        msgs[k].content = content->valuestring;
        k++;
    }
    if (chat_render(t, msgs, k, gen_prompt, NULL, NULL, &prompt)) {
        fprintf(stderr, "rotor chat-template: %s\n", rt_error_msg());
        goto out;
    }
    fwrite(prompt, 1, strlen(prompt), stdout);
    fflush(stdout);
    rc = 0;
out:
    free(prompt);
    free(msgs);
    cJSON_Delete(root);
    free(json);
    if (g) gguf_close(g);
    return rc;
}
