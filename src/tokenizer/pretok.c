/*
 * pretok.c - the BPE pre-tokenizer: split text into words with the regexes
 * llama.cpp uses for each tokenizer.ggml.pre type, then byte-level encode
 * each word.
 *
 * Like llama.cpp's unicode_regex_split, the regexes of a type are applied in
 * turn: each one splits every piece the previous ones produced into matches
 * and the gaps between them (nothing is dropped). A piece is matched as its
 * own subject, so anchors and lookaheads stop at the piece's edges.
 *
 * The text is first decoded leniently (invalid bytes become U+FFFD, as in
 * llama.cpp) and re-encoded as valid UTF-8 for PCRE2 (UTF + UCP), with code
 * points PCRE2 cannot hold (surrogates from lenient decoding) stood in for
 * by a private-use character of the same class ("other").
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "rotor/status.h"
#include "tokenizer/tok_impl.h"

/* Regexes, written as llama.cpp spells them (see llm_tokenizer_bpe). */
#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RX_LLAMA3                                                                                  \
    RX_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"       \
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2                                                                                   \
    RX_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"            \
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_TEKKEN                                                                                  \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|"                        \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}|"                 \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_GPT4O                                                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" RX_CONTRACT "?|"        \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" RX_CONTRACT "?|"        \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_PORO " ?[^(\\s|.,!?…。，、।۔،)]+"

typedef struct {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *rx[TOK_MAX_REGEX];
    bool ignore_merges;
    bool add_bos;
} pre_def_t;

static const pre_def_t pre_defs[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2", {RX_LLAMA3}, true, true},
    {"dbrx|smaug-bpe|chatglm-bpe", {RX_LLAMA3}, false, false},
    {"deepseek-llm",
     {"[\r\n]",
      "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-"
      "\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}"
      "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}"
      "\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-"
      "\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-"
      "\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-"
      "\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-"
      "\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}"
      "\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-"
      "\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-"
      "\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}"
      "\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"
      "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-"
      "\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-"
      "\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-"
      "\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-"
      "\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}"
      "-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
      "\\x{1E900}-\\x{1E943}]+",
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     false,
     false},
    {"deepseek-coder",
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
     false,
     false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]"}, false, false},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b",
     {"\\p{N}", RX_GPT2},
     false,
     false},
    {"gpt-2|mpt|olmo|jais|trillion|granite-docling|phi-2|jina-es|jina-de|jina-v2-es|jina-v2-de|"
     "jina-v1-en|jina-v2-code|roberta-bpe",
     {RX_GPT2},
     false,
     false},
    {"qwen2|deepseek-r1-qwen|stablelm2|megrez|hunyuan", {RX_QWEN2}, false, false},
    {"poro-chat|bloom|gpt3-finnish", {RX_PORO}, false, false},
    {"viking", {RX_PORO, "\\p{N}"}, false, false},
    {"tekken", {RX_TEKKEN}, true, true},
    {"gpt-4o", {RX_GPT4O}, false, false},
};

static bool name_in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

void tok_pretok_free(tok_pretok_t *p) {
    for (int i = 0; i < p->n; i++)
        pcre2_code_free((pcre2_code *)p->code[i]);
    p->n = 0;
}

rt_status_t tok_pretok_init(tok_pretok_t *p, const char *pre, bool *ignore_merges, bool *add_bos) {
    const pre_def_t *d = NULL;
    if (!pre || !*pre) pre = "default";
    for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++) {
        if (name_in_list(pre_defs[i].names, pre)) {
            d = &pre_defs[i];
            break;
        }
    }
    if (!d)
        return rt_error_set(RT_ERR_UNSUPPORTED, "tokenizer: unknown pre-tokenizer type '%s'", pre);
    memset(p, 0, sizeof *p);
    for (int i = 0; i < TOK_MAX_REGEX && d->rx[i]; i++) {
        int err;
        PCRE2_SIZE eoff;
        pcre2_code *c =
            pcre2_compile((PCRE2_SPTR)d->rx[i], PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &eoff, NULL);
        if (!c) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(err, msg, sizeof msg);
            tok_pretok_free(p);
            return rt_error_set(RT_ERR_INTERNAL, "tokenizer: regex %d of '%s' at %zu: %s", i, pre,
                                (size_t)eoff, (const char *)msg);
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* falls back to the interpreter on failure */
        p->code[p->n++] = c;
    }
    p->rx = d->rx;
    *ignore_merges = d->ignore_merges;
    *add_bos = d->add_bos;
    return RT_OK;
}

typedef struct {
    uint32_t start, len; /* in code points */
} span_t;

typedef struct {
    span_t *v;
    size_t n, cap;
} spans_t;

static rt_status_t spans_push(spans_t *s, uint32_t start, uint32_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        span_t *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) return rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = (span_t){start, len};
    return RT_OK;
}

/* Match one regex over one span, pushing matches and gaps to out. */
static rt_status_t split_span(pcre2_code *code, pcre2_match_data *md, const char *subj,
                              const uint32_t *off, const uint32_t *b2c, span_t sp, spans_t *out) {
    const char *s = subj + off[sp.start];
    size_t sl = off[sp.start + sp.len] - off[sp.start];
    size_t base = off[sp.start];
    size_t pos = 0, start = 0;
    rt_status_t st;
    while (start < sl) {
        int rc = pcre2_match(code, (PCRE2_SPTR)s, sl, start, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(code, (PCRE2_SPTR)s, sl, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                             NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return rt_error_set(RT_ERR_INTERNAL, "tokenizer: regex match: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: step over one character */
            if (ms >= sl) break;
            start = ms + tok_utf8_len((uint8_t)s[ms]);
            continue;
        }
        if (ms > pos && (st = spans_push(out, b2c[base + pos], b2c[base + ms] - b2c[base + pos])))
            return st;
        if ((st = spans_push(out, b2c[base + ms], b2c[base + me] - b2c[base + ms]))) return st;
        pos = start = me;
    }
    if (pos < sl && (st = spans_push(out, b2c[base + pos], b2c[base + sl] - b2c[base + pos])))
        return st;
    return RT_OK;
}

rt_status_t tok_pretok_split(const tok_vocab_t *v, const char *text, size_t len, tok_word_fn fn,
                             void *arg) {
    rt_status_t st = RT_OK;
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    uint32_t *off = malloc((len + 1) * sizeof *off);
    char *subj = malloc(len * 4 + 1);
    uint32_t *b2c = malloc((len * 4 + 1) * sizeof *b2c);
    char *word = NULL;
    size_t word_cap = 0;
    spans_t a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    if (!cps || !off || !subj || !b2c) {
        st = rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
        goto out;
    }

    /* decode, and build the PCRE2 subject with offsets both ways */
    uint32_t n = 0, sb = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = tok_utf8_decode(text, len, &i);
        uint32_t sub = (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF ? 0xE000 : cp;
        cps[n] = cp;
        off[n] = sb;
        b2c[sb] = n;
        sb += (uint32_t)tok_utf8_encode(sub, subj + sb);
        n++;
    }
    off[n] = sb;
    b2c[sb] = n;
    if (n == 0) goto out;

    if ((st = spans_push(&a, 0, n))) goto out;
    for (int r = 0; r < v->pretok.n; r++) {
        pcre2_code *code = (pcre2_code *)v->pretok.code[r];
        md = pcre2_match_data_create_from_pattern(code, NULL);
        if (!md) {
            st = rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
            goto out;
        }
        b.n = 0;
        for (size_t i = 0; i < a.n; i++)
            if ((st = split_span(code, md, subj, off, b2c, a.v[i], &b))) goto out;
        pcre2_match_data_free(md);
        md = NULL;
        spans_t t = a;
        a = b;
        b = t;
    }

    /* byte-level encode each word and hand it out */
    for (size_t i = 0; i < a.n; i++) {
        size_t need = (size_t)a.v[i].len * 4 * 2 + 1, wl = 0;
        if (need > word_cap) {
            char *nw = realloc(word, need);
            if (!nw) {
                st = rt_error_set(RT_ERR_NOMEM, "tokenizer: out of memory");
                goto out;
            }
            word = nw;
            word_cap = need;
        }
        for (uint32_t k = a.v[i].start; k < a.v[i].start + a.v[i].len; k++) {
            char u[4];
            size_t ul = tok_utf8_encode(cps[k], u);
            for (size_t j = 0; j < ul; j++) {
                uint8_t by = (uint8_t)u[j];
                memcpy(word + wl, v->byte_utf8[by], v->byte_utf8_len[by]);
                wl += v->byte_utf8_len[by];
            }
        }
        if ((st = fn(word, wl, arg))) goto out;
    }
out:
    pcre2_match_data_free(md);
    free(a.v);
    free(b.v);
    free(word);
    free(b2c);
    free(subj);
    free(off);
    free(cps);
    return st;
}
